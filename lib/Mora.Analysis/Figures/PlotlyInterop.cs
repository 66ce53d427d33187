using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Plotly.NET;

namespace Mora.Figures;

/// <summary>
/// The few Plotly.NET calls whose signatures carry FSharp.Core types (FSharpOption, FSharpFunc), made by reflection.
/// Why: inside the .NET Interactive kernel, Plotly.NET binds to the kernel's FSharp.Core 10.0 while the C# script loader
/// gives code it loads (this library, notebook cells) a second FSharp.Core 10.1 from the NuGet cache, so a compiled call
/// such as <c>Chart.withTitle(...)</c> fails with MissingMethodException (the two FSharpFunc types differ). Reflection
/// takes the FSharp.Core types from Plotly.NET's own signatures, so it works in the kernel and in a plain process alike.
/// </summary>
public static class PlotlyInterop
{
    static readonly Type ChartType = typeof(Plotly.NET.Chart);

    static MethodInfo Method(Type type, string name, int parameters) =>
        type.GetMethods(BindingFlags.Public | BindingFlags.Static).Single(m => m.Name == name && m.GetParameters().Length == parameters);

    /// <summary>Calls an F# function value (FSharpFunc&lt;GenericChart, GenericChart&gt;) on a chart.</summary>
    static GenericChart Apply(object fsharpFunc, GenericChart chart) =>
        (GenericChart)fsharpFunc.GetType().GetMethod("Invoke", [typeof(GenericChart)])!.Invoke(fsharpFunc, [chart])!;

    /// <summary>FSharpOption&lt;T&gt;.Some(value) for the option type <paramref name="optionType"/> (None is null).</summary>
    static object Some(Type optionType, object value) => optionType.GetMethod("Some", BindingFlags.Public | BindingFlags.Static)!.Invoke(null, [value])!;

    public static GenericChart WithTitle(GenericChart chart, string title)
    {
        var m = ChartType.GetMethods(BindingFlags.Public | BindingFlags.Static).First(m => m.Name == "withTitle" && m.GetParameters()[0].ParameterType == typeof(string));
        var args = m.GetParameters().Select((p, i) => i == 0 ? (object?)title : null).ToArray();
        return Apply(m.Invoke(null, args)!, chart);
    }

    public static GenericChart WithLayout(GenericChart chart, Layout layout) => Apply(Method(ChartType, "withLayout", 1).Invoke(null, [layout])!, chart);

    /// <summary>A whole HTML page for the chart with plotly.js inlined (opens without network).</summary>
    public static string OfflineHtml(GenericChart chart, string title)
    {
        var init = Method(typeof(DisplayOptions), "init", 7);
        var ps = init.GetParameters();
        var args = new object?[ps.Length];
        args[0] = Some(ps[0].ParameterType, title);
        args[^1] = Some(ps[^1].ParameterType, PlotlyJSReference.Full);
        var options = (DisplayOptions)init.Invoke(null, args)!;
        var withOptions = Method(ChartType, "withDisplayOptions", 1);
        return StableIds(GenericChart.toEmbeddedHTML(Apply(withOptions.Invoke(null, [options])!, chart)));
    }

    static readonly Regex Guid = new("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?<=renderPlotly_)[0-9a-f]{32}", RegexOptions.Compiled);

    /// <summary>Plotly.NET names each chart's div and render function with fresh GUIDs, so the same data gave a different
    /// file every time. Each GUID becomes a name derived from the page with the GUIDs taken out (the same chart, the same
    /// bytes; two different charts on one page still differ), valid as an HTML id and inside a JavaScript name.</summary>
    public static string StableIds(string html)
    {
        var ids = Guid.Matches(html).Select(m => m.Value).Distinct().ToList();
        if (ids.Count == 0) return html;
        byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes(Guid.Replace(html, "")));
        string stem = Convert.ToHexString(hash, 0, 6).ToLowerInvariant();
        for (int i = 0; i < ids.Count; i++) html = html.Replace(ids[i], $"chart_{stem}_{i}");
        return html;
    }
}

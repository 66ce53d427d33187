using System.Net;
using Plotly.NET;

namespace Mora.Figures;

/// <summary>
/// A chart as the notebooks show it, in the three forms that common viewers render with no network:
/// <list type="bullet">
/// <item><c>application/vnd.plotly.v1+json</c>: the Plotly figure (data, layout); VS Code and JupyterLab draw it,
/// interactive, with their own plotly.js;</item>
/// <item><c>image/png</c>: the same curves drawn by ScottPlot (GitHub's viewer and nbconvert show it);</item>
/// <item><c>text/html</c>: that PNG as an inline image, so an HTML view needs no script and no CDN.</item>
/// </list>
/// <c>notebooks/setup.dib</c> registers one formatter per form; <see cref="RunFigures"/> and the notebooks' <c>Mora.Notebooks.NotebookCharts</c>
/// make them.
/// </summary>
/// <param name="Chart">the interactive chart (also what the offline HTML figure files hold)</param>
/// <param name="Png">the static rendering</param>
/// <param name="Title">the chart's title (the image's alt text)</param>
public sealed record ChartFigure(GenericChart Chart, byte[] Png, string Title)
{
    public const string PlotlyMimeType = "application/vnd.plotly.v1+json", PngMimeType = "image/png", HtmlMimeType = "text/html";

    /// <summary>The forms a notebook output carries, in the order a front end should prefer them.</summary>
    public static readonly string[] MimeTypes = [HtmlMimeType, PlotlyMimeType, PngMimeType];

    /// <summary>The Plotly figure as JSON: <c>{"data": [...], "layout": {...}}</c>.</summary>
    public string PlotlyJson() => GenericChart.toFigureJson(Chart);

    public string PngBase64() => Convert.ToBase64String(Png);

    /// <summary>The PNG as an inline HTML image (no script).</summary>
    public string Html() => $"<img alt=\"{WebUtility.HtmlEncode(Title)}\" style=\"max-width: 100%\" src=\"data:image/png;base64,{PngBase64()}\" />";

    /// <summary>The output for one of <see cref="MimeTypes"/>.</summary>
    public string Format(string mimeType) => mimeType switch
    {
        HtmlMimeType => Html(),
        PlotlyMimeType => PlotlyJson(),
        PngMimeType => PngBase64(),
        _ => throw new ArgumentException($"a chart is shown as {string.Join(", ", MimeTypes)}, not {mimeType}", nameof(mimeType)),
    };
}

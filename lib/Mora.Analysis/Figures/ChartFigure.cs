using Plotly.NET;

namespace Mora.Figures;

/// <summary>
/// A chart as the notebooks show it, in the two forms that common viewers render with no network, each stored once:
/// <list type="bullet">
/// <item><c>application/vnd.plotly.v1+json</c>: the Plotly figure (data, layout); VS Code and JupyterLab draw it,
/// interactive, with their own plotly.js;</item>
/// <item><c>image/png</c>: the same curves drawn by ScottPlot (GitHub's viewer, nbconvert's HTML — as an inline image,
/// no script, no CDN — and any front end without a Plotly renderer show it).</item>
/// </list>
/// (An HTML form holding the PNG again was dropped: it doubled every chart in the file and no viewer needs it.)
/// <c>notebooks/setup.dib</c> registers one formatter per form; <see cref="RunFigures"/> and the notebooks' <c>Mora.Notebooks.NotebookCharts</c>
/// make them.
/// </summary>
/// <param name="Chart">the interactive chart (also what the offline HTML figure files hold)</param>
/// <param name="Png">the static rendering</param>
/// <param name="Title">the chart's title (the image's alt text)</param>
public sealed record ChartFigure(GenericChart Chart, byte[] Png, string Title)
{
    public const string PlotlyMimeType = "application/vnd.plotly.v1+json", PngMimeType = "image/png";

    /// <summary>The forms a notebook output carries, in the order a front end should prefer them.</summary>
    public static readonly string[] MimeTypes = [PlotlyMimeType, PngMimeType];

    /// <summary>The Plotly figure as JSON: <c>{"data": [...], "layout": {...}}</c>.</summary>
    public string PlotlyJson() => GenericChart.toFigureJson(Chart);

    public string PngBase64() => Convert.ToBase64String(Png);

    /// <summary>The output for one of <see cref="MimeTypes"/>.</summary>
    public string Format(string mimeType) => mimeType switch
    {
        PlotlyMimeType => PlotlyJson(),
        PngMimeType => PngBase64(),
        _ => throw new ArgumentException($"a chart is shown as {string.Join(", ", MimeTypes)}, not {mimeType}", nameof(mimeType)),
    };
}

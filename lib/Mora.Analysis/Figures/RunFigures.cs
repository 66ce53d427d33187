using Mora.IO;
using Mora.Training;
using Plotly.NET;
using Plotly.NET.CSharp;
using Chart = Plotly.NET.CSharp.Chart;

namespace Mora.Figures;

/// <summary>One curve of a figure: its legend name and its points.</summary>
public sealed record Curve(string Name, IReadOnlyList<double> X, IReadOnlyList<double> Y);

/// <summary>
/// Figures of run logs, each written twice: an interactive offline HTML page (Plotly.NET, plotly.js inlined, so it opens
/// without network; legend entries toggle curves) and a static PNG (ScottPlot, headless). Both written atomically.
/// </summary>
public static class RunFigures
{
    static RunFigures() => ScottPlot.Fonts.Default = "DejaVu Sans";

    /// <summary>Exponential moving average (TensorBoard-style smoothing; 0 = none).</summary>
    public static IReadOnlyList<double> Smooth(IReadOnlyList<double> y, double weight)
    {
        if (weight is < 0 or >= 1 || double.IsNaN(weight)) throw new ArgumentException($"smoothing must be in [0, 1), got {weight}", nameof(weight));
        if (weight == 0 || y.Count == 0) return y;
        var result = new double[y.Count];
        double last = y[0];
        for (int i = 0; i < y.Count; i++) { last = weight * last + (1 - weight) * y[i]; result[i] = last; }
        return result;
    }

    /// <summary>A curve per run of one logged column ("loss", "lr", or a metric such as "char_acc"); runs without it are skipped.</summary>
    public static List<Curve> Curves(IEnumerable<(string Name, RunLog Log)> runs, string column, double smoothing = 0)
    {
        var curves = new List<Curve>();
        foreach (var (name, log) in runs)
        {
            var points = log.Rows.Select(r => (r.Step, Value: column switch
            {
                "loss" => (double?)r.Loss,
                "lr" => r.LearningRate,
                "grad_norm" => r.GradNorm,
                "tokens_per_s" => r.TokensPerSecond,
                _ => r.Metrics.TryGetValue(column, out var v) ? v : null,
            })).Where(p => p.Value is not null).ToList();
            if (points.Count == 0) continue;
            var y = points.Select(p => p.Value!.Value).ToList();
            curves.Add(new Curve(name, points.Select(p => (double)p.Step).ToList(), column == "loss" ? Smooth(y, smoothing) : y));
        }
        return curves;
    }

    /// <summary>The chart of <paramref name="curves"/> as a notebook shows it: interactive (Plotly) and static (PNG);
    /// <see cref="Write"/> saves the same figure.</summary>
    public static ChartFigure LineChart(IReadOnlyList<Curve> curves, string title, string xLabel, string yLabel, bool logY = false)
    {
        if (curves.Count == 0) throw new ArgumentException($"no data to plot for '{title}'", nameof(curves));
        var combined = Chart.Combine(curves.Select(c => Chart.Line<double, double, string>(c.X, c.Y, Name: c.Name)));
        var chart = PlotlyInterop.WithTitle(combined, title)
            .WithXAxisStyle<double, double, string>(TitleText: xLabel)
            .WithYAxisStyle<double, double, string>(TitleText: yLabel, AxisType: logY ? StyleParam.AxisType.Log : StyleParam.AxisType.Linear);

        var plot = new ScottPlot.Plot();
        foreach (var c in curves)
        {
            var ys = logY ? c.Y.Select(v => Math.Log10(Math.Max(v, 1e-12))).ToArray() : c.Y.ToArray();
            var line = plot.Add.ScatterLine(c.X.ToArray(), ys);
            line.LegendText = c.Name;
            line.LineWidth = 2;
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(logY ? $"log10 {yLabel}" : yLabel);
        plot.ShowLegend(ScottPlot.Edge.Right);   // beside the axes, so no curve is hidden
        return new ChartFigure(chart, plot.GetImageBytes(900, 520, ScottPlot.ImageFormat.Png), title);
    }

    /// <summary>Writes <c>{basePath}.html</c> (interactive, plotly.js inlined) and <c>{basePath}.png</c>; returns both paths.</summary>
    public static (string Html, string Png) Write(IReadOnlyList<Curve> curves, string title, string xLabel, string yLabel, string basePath, bool logY = false) =>
        Save(LineChart(curves, title, xLabel, yLabel, logY), basePath);

    /// <summary>Writes a figure as <c>{basePath}.html</c> and <c>{basePath}.png</c>, each atomically; returns both paths.</summary>
    public static (string Html, string Png) Save(ChartFigure figure, string basePath)
    {
        string html = basePath + ".html", png = basePath + ".png";
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(basePath))!);
        AtomicFile.WriteText(html, PlotlyInterop.OfflineHtml(figure.Chart, figure.Title));
        AtomicFile.Write(png, s => s.Write(figure.Png));
        return (html, png);
    }

    public static List<(string Name, RunLog Log)> FindRuns(string root)
    {
        if (!Directory.Exists(root)) throw new ArgumentException($"no folder {Path.GetFullPath(root)}", nameof(root));
        return Directory.GetFiles(root, Trainer.LogFile, SearchOption.AllDirectories)
            .Where(f => !f.Contains(Path.DirectorySeparatorChar + Trainer.CheckpointDir + Path.DirectorySeparatorChar))
            .Order(StringComparer.Ordinal)
            .Select(f => (Path.GetRelativePath(root, Path.GetDirectoryName(f)!), RunLog.ReadCsv(f)))
            .ToList();
    }

    /// <summary>The standard figures of a folder of runs: training loss (raw and smoothed, log scale) and every evaluation
    /// metric by step. Returns the files written.</summary>
    public static List<string> PlotRuns(string runsRoot, string outDir, string prefix, double smoothing = 0.6)
    {
        var runs = FindRuns(runsRoot);
        if (runs.Count == 0) throw new ArgumentException($"no {Trainer.LogFile} under {Path.GetFullPath(runsRoot)}", nameof(runsRoot));
        var written = new List<string>();
        var (h, p) = Write(Curves(runs, "loss", smoothing), $"{prefix}: training loss (EMA {smoothing})", "step", "loss", SafePath.Under(outDir, $"{SafePath.Name(prefix, nameof(prefix))}-loss", nameof(prefix)), logY: true);
        written.Add(h); written.Add(p);
        foreach (var metric in runs.SelectMany(r => r.Log.MetricNames).Distinct().Order(StringComparer.Ordinal))
        {
            (h, p) = Write(Curves(runs, metric), $"{prefix}: {metric} by step", "step", metric, SafePath.Under(outDir, $"{prefix}-{metric}", $"metric name '{metric}' (a column of a log.csv)"));
            written.Add(h); written.Add(p);
        }
        return written;
    }
}

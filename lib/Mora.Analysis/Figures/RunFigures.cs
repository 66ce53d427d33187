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
    /// <param name="byMethod">colour each curve named after a method (lora, mora-…, full; a rank or seed suffix allowed) with
    /// that method's colour (<see cref="MethodColours"/>), as the seed-band charts do, and draw the other curves (a floor,
    /// a chance level) as grey dotted reference lines</param>
    /// <param name="logX">a logarithmic x axis (a sweep over parameter counts); the PNG plots log10 of x</param>
    /// <param name="markers">a marker at every point (where each point is a measurement of its own, as a rate of a frontier)</param>
    public static ChartFigure LineChart(IReadOnlyList<Curve> curves, string title, string xLabel, string yLabel, bool logY = false, bool byMethod = false, bool logX = false,
        bool markers = false)
    {
        if (curves.Count == 0) throw new ArgumentException($"no data to plot for '{title}'", nameof(curves));
        var methods = curves.Select(c => byMethod ? MethodOf(c.Name) : null).ToList();
        var colours = byMethod ? MethodColours(methods.OfType<string>()) : new Dictionary<string, string>();
        string? Colour(int i) => !byMethod ? null : methods[i] is { } m ? colours[m] : "#555555";
        // Curves of one method after its first (its other ranks) are dashed, so the colour says the method and the dash the rank.
        var nth = methods.Select((m, i) => m is null ? 0 : methods.Take(i).Count(o => o == m)).ToList();
        var combined = Chart.Combine(curves.Select((c, i) => Colour(i) is { } colour
            ? Chart.Line<double, double, string>(c.X, c.Y, Name: c.Name, ShowMarkers: markers && methods[i] is not null, LineColor: Color.fromHex(colour),
                LineDash: methods[i] is null ? StyleParam.DrawingStyle.Dot : nth[i] switch { 0 => StyleParam.DrawingStyle.Solid, 1 => StyleParam.DrawingStyle.Dash, _ => StyleParam.DrawingStyle.DashDot })
            : Chart.Line<double, double, string>(c.X, c.Y, Name: c.Name, ShowMarkers: markers)));
        var chart = PlotlyInterop.WithTitle(combined, title)
            .WithXAxisStyle<double, double, string>(TitleText: xLabel, AxisType: logX ? StyleParam.AxisType.Log : StyleParam.AxisType.Linear)
            .WithYAxisStyle<double, double, string>(TitleText: yLabel, AxisType: logY ? StyleParam.AxisType.Log : StyleParam.AxisType.Linear);

        var plot = new ScottPlot.Plot();
        for (int i = 0; i < curves.Count; i++)
        {
            var c = curves[i];
            var ys = logY ? c.Y.Select(v => Math.Log10(Math.Max(v, 1e-12))).ToArray() : c.Y.ToArray();
            var xs = logX ? c.X.Select(v => Math.Log10(Math.Max(v, 1e-12))).ToArray() : c.X.ToArray();
            var line = plot.Add.ScatterLine(xs, ys);
            line.LegendText = c.Name;
            line.LineWidth = 2;
            line.MarkerSize = markers && (!byMethod || methods[i] is not null) ? 7 : 0;
            if (Colour(i) is { } colour)
            {
                line.Color = ScottPlot.Color.FromHex(colour);
                if (methods[i] is null) line.LinePattern = ScottPlot.LinePattern.Dotted;
                else if (nth[i] > 0) line.LinePattern = nth[i] == 1 ? ScottPlot.LinePattern.Dashed : ScottPlot.LinePattern.DenselyDashed;
            }
        }
        plot.Title(title);
        plot.XLabel(logX ? $"log10 {xLabel}" : xLabel);
        plot.YLabel(logY ? $"log10 {yLabel}" : yLabel);
        plot.ShowLegend(ScottPlot.Edge.Right);   // beside the axes, so no curve is hidden
        return new ChartFigure(chart, plot.GetImageBytes(900, 520, ScottPlot.ImageFormat.Png), title);
    }

    // ---------------------------------------------------------------- runs that differ only by seed

    /// <summary>The runs of one configuration (a method at a rank) that differ only by seed: <see cref="Name"/> is the run
    /// name without its <c>-seedN</c> (with any folder before it), <see cref="Method"/> without its <c>-rN</c>.</summary>
    public sealed record SeedGroup(string Name, string Method, int Rank, IReadOnlyList<Curve> Runs);

    static readonly System.Text.RegularExpressions.Regex SeedSuffix = new(@"-seed(\d+)$"), RankSuffix = new(@"-r(\d+)$");

    /// <summary>Curves grouped by configuration, in the order each first appears (a curve whose name has no <c>-seedN</c>
    /// is a group of its own).</summary>
    public static List<SeedGroup> BySeed(IEnumerable<Curve> curves) =>
        curves.GroupBy(c => SeedSuffix.Replace(c.Name, ""))
            .Select(g =>
            {
                string folder = g.Key.Contains('/') ? g.Key[..(g.Key.LastIndexOf('/') + 1)] : "", run = g.Key[folder.Length..];
                var rank = RankSuffix.Match(run);
                return new SeedGroup(g.Key, RankSuffix.Replace(run, ""), rank.Success ? int.Parse(rank.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0, g.ToList());
            }).ToList();

    /// <summary>The seeds' mean and their lowest and highest value at each x that every run of the group has.</summary>
    public static (double[] X, double[] Mean, double[] Low, double[] High) Band(SeedGroup group)
    {
        var common = group.Runs.Select(r => r.X.ToHashSet()).Aggregate((a, b) => { a.IntersectWith(b); return a; });
        var x = common.Order().ToArray();
        var at = group.Runs.Select(r => r.X.Select((v, i) => (v, i)).GroupBy(p => p.v).ToDictionary(p => p.Key, p => r.Y[p.Last().i])).ToList();
        var values = x.Select(v => at.Select(d => d[v]).ToArray()).ToArray();
        return (x, values.Select(v => v.Average()).ToArray(), values.Select(v => v.Min()).ToArray(), values.Select(v => v.Max()).ToArray());
    }

    /// <summary>The method a curve is named after (its name without a folder, a note in parentheses, a <c>-seedN</c>, a <c>-rN</c> or <c> r=N</c>), or
    /// null when it names none (lora, dora, full, relora, remora, remora4, mora-…).</summary>
    public static string? MethodOf(string curveName)
    {
        string name = curveName[(curveName.LastIndexOf('/') + 1)..];
        name = System.Text.RegularExpressions.Regex.Replace(name, @" \([^()]*\)$", "");     // a note after the name: "lora-r8 (chose 0.01)"
        name = System.Text.RegularExpressions.Regex.Replace(SeedSuffix.Replace(name, ""), @"(-r\d+| r=\d+)$", "");
        return name is "lora" or "dora" or "full" or "relora" or "remora" or "remora4" || name.StartsWith("mora-", StringComparison.Ordinal) || name == "mora" ? name : null;
    }

    /// <summary>A colour per method, the same in every chart of the kit (the Tableau 10 palette): LoRA blue, full
    /// fine-tuning grey, rotation orange, sharing green; other methods take the unused colours in order of appearance.</summary>
    public static IReadOnlyDictionary<string, string> MethodColours(IEnumerable<string> methods)
    {
        var fixedColours = new Dictionary<string, string>
        {
            ["lora"] = "#1f77b4", ["mora-rotation"] = "#ff7f0e", ["mora-sharing"] = "#2ca02c", ["full"] = "#7f7f7f",
            ["mora-truncation"] = "#8c564b", ["mora"] = "#2ca02c", ["mora-decouple"] = "#9467bd", ["dora"] = "#17becf", ["relora"] = "#aec7e8", ["remora"] = "#ffbb78", ["remora4"] = "#d62728",
        };
        string[] spare = ["#e377c2", "#bcbd22", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5"];
        var colours = new Dictionary<string, string>();
        int next = 0;
        foreach (var m in methods.Distinct())
            colours[m] = fixedColours.TryGetValue(m, out var c) ? c : spare[next++ % spare.Length];
        return colours;
    }

    static readonly string[] PlotlyDashes = ["solid", "dash", "dot", "dashdot"];

    /// <summary>One trace of a seed-band chart, so that a caller can show or hide the traces of some groups (a dropdown).</summary>
    public sealed record BandTrace(SeedGroup Group, bool OnDemand);

    /// <summary>Runs that differ only by seed, as a class reads them at a glance: one colour per method (dashes tell its
    /// ranks apart), the mean over seeds as a line and the seeds' range (lowest to highest) as a band; each run on its own
    /// one legend click away (hidden until asked, interactive form). The static form draws the means and bands.</summary>
    public static ChartFigure SeedBands(IReadOnlyList<Curve> curves, string title, string xLabel, string yLabel, bool logY = false) =>
        SeedBands(curves, title, xLabel, yLabel, logY, out _);

    /// <inheritdoc cref="SeedBands(IReadOnlyList{Curve}, string, string, string, bool)"/>
    /// <param name="traces">the interactive form's traces in order (band edges, mean, then each run)</param>
    public static ChartFigure SeedBands(IReadOnlyList<Curve> curves, string title, string xLabel, string yLabel, bool logY, out IReadOnlyList<BandTrace> traces)
    {
        if (curves.Count == 0) throw new ArgumentException($"no data to plot for '{title}'", nameof(curves));
        var groups = BySeed(curves);
        var bands = groups.Select(Band).ToList();     // once a group: both forms draw the same mean and range
        var colours = MethodColours(groups.Select(g => g.Method));
        var ranks = groups.Select(g => g.Rank).Distinct().Order().ToList();
        int Dash(SeedGroup g) => ranks.IndexOf(g.Rank) % PlotlyDashes.Length;
        var charts = new List<GenericChart>();
        var order = new List<BandTrace>();
        GenericChart Trace(Action<Trace2D> style)
        {
            var t = new Trace2D("scatter");
            style(t);
            return GenericChart.ofTraceObject(true, t);
        }
        foreach (var (g, (x, mean, low, high)) in groups.Zip(bands))
        {
            string colour = colours[g.Method], name = g.Runs.Count > 1 ? $"{g.Name} (mean of {g.Runs.Count} seeds)" : g.Runs[0].Name;
            if (g.Runs.Count > 1)
            {
                charts.Add(Trace(t =>
                {
                    t.SetProperty("x", x); t.SetProperty("y", high); t.SetProperty("mode", "lines"); t.SetProperty("line", new { width = 0, color = colour });
                    t.SetProperty("showlegend", false); t.SetProperty("legendgroup", g.Name); t.SetProperty("hoverinfo", "skip");
                }));
                charts.Add(Trace(t =>
                {
                    t.SetProperty("x", x); t.SetProperty("y", low); t.SetProperty("mode", "lines"); t.SetProperty("line", new { width = 0, color = colour });
                    t.SetProperty("fill", "tonexty"); t.SetProperty("fillcolor", Rgba(colour, 0.2));
                    t.SetProperty("showlegend", false); t.SetProperty("legendgroup", g.Name); t.SetProperty("hoverinfo", "skip");
                }));
                order.Add(new BandTrace(g, false)); order.Add(new BandTrace(g, false));
            }
            charts.Add(Trace(t =>
            {
                t.SetProperty("x", x); t.SetProperty("y", mean); t.SetProperty("mode", "lines"); t.SetProperty("name", name);
                t.SetProperty("line", new { width = 2.5, color = colour, dash = PlotlyDashes[Dash(g)] }); t.SetProperty("legendgroup", g.Name);
            }));
            order.Add(new BandTrace(g, false));
            if (g.Runs.Count < 2) continue;
            for (int i = 0; i < g.Runs.Count; i++)
            {
                var run = g.Runs[i];
                bool first = i == 0;
                charts.Add(Trace(t =>
                {
                    t.SetProperty("x", run.X.ToArray()); t.SetProperty("y", run.Y.ToArray()); t.SetProperty("mode", "lines");
                    t.SetProperty("name", first ? $"{g.Name}: each seed" : run.Name); t.SetProperty("showlegend", first);
                    t.SetProperty("legendgroup", g.Name + " seeds"); t.SetProperty("visible", "legendonly"); t.SetProperty("opacity", 0.6);
                    t.SetProperty("line", new { width = 1, color = colour, dash = PlotlyDashes[Dash(g)] });
                    t.SetProperty("hovertext", run.Name);
                }));
                order.Add(new BandTrace(g, true));
            }
        }
        traces = order;
        var chart = PlotlyInterop.WithTitle(Chart.Combine(charts), title)
            .WithXAxisStyle<double, double, string>(TitleText: xLabel)
            .WithYAxisStyle<double, double, string>(TitleText: yLabel, AxisType: logY ? StyleParam.AxisType.Log : StyleParam.AxisType.Linear);
        var layout = new Layout();
        layout.SetProperty("legend", new { font = new { size = 11 }, tracegroupgap = 2 });
        chart = PlotlyInterop.WithLayout(chart, layout);

        var plot = new ScottPlot.Plot();
        ScottPlot.LinePattern[] patterns = [ScottPlot.LinePattern.Solid, ScottPlot.LinePattern.Dashed, ScottPlot.LinePattern.Dotted, ScottPlot.LinePattern.DenselyDashed];
        double[] Scale(double[] v) => logY ? v.Select(y => Math.Log10(Math.Max(y, 1e-12))).ToArray() : v;
        foreach (var (g, (x, mean, low, high)) in groups.Zip(bands))
        {
            var colour = ScottPlot.Color.FromHex(colours[g.Method]);
            if (g.Runs.Count > 1 && x.Length > 1)
            {
                var fill = plot.Add.FillY(x, Scale(low), Scale(high));
                fill.FillColor = colour.WithAlpha(0.2);
                fill.LineWidth = 0;
            }
            var line = plot.Add.ScatterLine(x, Scale(mean));
            line.Color = colour;
            line.LinePattern = patterns[Dash(g)];
            line.LineWidth = 2.5f;
            line.LegendText = g.Runs.Count > 1 ? $"{g.Name} (mean, range of {g.Runs.Count} seeds)" : g.Runs[0].Name;
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(logY ? $"log10 {yLabel}" : yLabel);
        plot.ShowLegend(ScottPlot.Edge.Right);
        if (groups.Count > 10) plot.Legend.FontSize = 10;
        int width = groups.Count > 10 ? 1100 : 900;
        return new ChartFigure(chart, plot.GetImageBytes(width, 520, ScottPlot.ImageFormat.Png), title);
    }

    static string Rgba(string hex, double alpha)
    {
        int v = Convert.ToInt32(hex.TrimStart('#'), 16);
        return FormattableString.Invariant($"rgba({(v >> 16) & 255},{(v >> 8) & 255},{v & 255},{alpha})");
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

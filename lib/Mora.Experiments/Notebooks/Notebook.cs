using System.Reflection;
using Microsoft.Data.Analysis;
using Plotly.NET;

namespace Mora.Notebooks;

/// <summary>
/// What the notebooks share (they load it through <c>notebooks/setup.csx</c>): the fast/full preset, where runs and
/// figures go, records as DataFrames, and charts as notebook HTML.
/// <list type="bullet">
/// <item><c>MORA_NOTEBOOK_PRESET</c> = fast | full overrides the preset a notebook names near its top (the tests run
/// every notebook with fast).</item>
/// <item><c>MORA_NOTEBOOK_OUT</c> moves runs and figures out of the repository (the tests use a temporary folder, so
/// running them never touches the committed figures).</item>
/// </list>
/// </summary>
public static class Notebook
{
    public const string PresetVariable = "MORA_NOTEBOOK_PRESET", OutVariable = "MORA_NOTEBOOK_OUT";
    public static readonly string[] Presets = ["fast", "full"];

    /// <summary>The preset to run: <c>MORA_NOTEBOOK_PRESET</c> when set, else <paramref name="chosen"/>.</summary>
    /// <exception cref="ArgumentException">an unknown preset, naming where it came from</exception>
    public static string Preset(string chosen)
    {
        string? env = Environment.GetEnvironmentVariable(PresetVariable);
        string preset = string.IsNullOrWhiteSpace(env) ? chosen : env.Trim().ToLowerInvariant();
        if (!Presets.Contains(preset))
            throw new ArgumentException(string.IsNullOrWhiteSpace(env)
                ? $"preset '{chosen}' is not known: use fast or full"
                : $"{PresetVariable}='{env}' is not known: use fast or full", string.IsNullOrWhiteSpace(env) ? nameof(chosen) : PresetVariable);
        Console.WriteLine($"preset: {preset}" + (string.IsNullOrWhiteSpace(env) ? $" (set {PresetVariable}=fast|full to override)" : $" (from {PresetVariable})"));
        return preset;
    }

    /// <summary>The repository root: the folder above the working directory (the kernel starts in notebooks/) that holds
    /// Mora.Notebooks.csproj.</summary>
    public static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Mora.Notebooks.csproj"))) return dir.FullName;
            throw new DirectoryNotFoundException($"no Mora.Notebooks.csproj above {Directory.GetCurrentDirectory()}: open the notebook from the repository's notebooks/ folder");
        }
    }

    /// <summary>The root that runs/ and figures/ are written under when <c>MORA_NOTEBOOK_OUT</c> is set (the runner's
    /// <c>--write</c> sets it to the repository to publish; the tests to a temporary folder); null otherwise.</summary>
    public static string? OutputRoot => Environment.GetEnvironmentVariable(OutVariable) is { Length: > 0 } o ? Path.GetFullPath(o) : null;

    /// <summary>A path as the notebooks print it: relative to the repository (no machine's folders in committed outputs).</summary>
    public static string Show(string path) => Path.GetRelativePath(RepoRoot, Path.GetFullPath(path));

    /// <summary>figures/notebooks/&lt;notebook&gt;/ under <see cref="OutputRoot"/>; without it runs/figures/notebooks/&lt;notebook&gt;/
    /// in the repository (ignored by git), so running a notebook never rewrites the published figures (created).</summary>
    public static string FiguresDir(string notebook)
    {
        string root = OutputRoot is { } o ? Path.Combine(o, "figures") : Path.Combine(RepoRoot, "runs", "figures");
        string dir = IO.SafePath.Under(Path.Combine(root, "notebooks"), notebook, nameof(notebook));
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>runs/notebooks/&lt;name&gt;/ (a resumable experiment folder: rerunning a finished cell reads its results).</summary>
    public static string RunsDir(string name) => IO.SafePath.Under(RunsRoot, name, nameof(name));

    /// <summary>runs/notebooks/ under <see cref="OutputRoot"/>, else in the repository (ignored by git): where every
    /// notebook's experiment folders are.</summary>
    public static string RunsRoot => Path.Combine(OutputRoot ?? RepoRoot, "runs", "notebooks");

    /// <summary>Records (or any objects) as a DataFrame, one column per public property: whole numbers as Int64, other
    /// numbers as Double, the rest as strings.</summary>
    public static DataFrame Table<T>(IEnumerable<T> rows)
    {
        var list = rows.ToList();
        var props = typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetIndexParameters().Length == 0).ToList();
        var columns = new List<DataFrameColumn>();
        foreach (var p in props)
        {
            var t = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
            if (t == typeof(int) || t == typeof(long) || t == typeof(short))
                columns.Add(new Int64DataFrameColumn(p.Name, list.Select(r => p.GetValue(r) is { } v ? (long?)Convert.ToInt64(v) : null)));
            else if (t == typeof(double) || t == typeof(float) || t == typeof(decimal))
                columns.Add(new DoubleDataFrameColumn(p.Name, list.Select(r => p.GetValue(r) is { } v ? (double?)Convert.ToDouble(v) : null)));   // shown to 4 significant digits (TableHtml); small values such as a merge error stay
            else
                columns.Add(new StringDataFrameColumn(p.Name, list.Select(r => p.GetValue(r) switch
                {
                    null => "",
                    IEnumerable<double> xs => string.Join(" ", xs.Select(x => x.ToString("G4", System.Globalization.CultureInfo.InvariantCulture))),
                    var v => v.ToString() ?? "",
                })));
        }
        return new DataFrame(columns);
    }

    /// <summary>A DataFrame as an HTML table (the first <paramref name="maxRows"/> rows) that fits its cell: numbers to four
    /// significant digits (whole numbers from 1,000 up as they are), and a table wider than the cell scrolls inside it.</summary>
    public static string TableHtml(DataFrame df, int maxRows = 60)
    {
        static string E(object? v) => System.Net.WebUtility.HtmlEncode(v switch
        {
            null => "",
            double d => Cell(d),
            float f => Cell(f),
            var o => o.ToString(),
        }) ?? "";
        var sb = new System.Text.StringBuilder("<div style=\"overflow-x:auto\"><table><thead><tr>");
        foreach (var c in df.Columns) sb.Append("<th>").Append(E(c.Name)).Append("</th>");
        sb.Append("</tr></thead><tbody>");
        for (long i = 0; i < Math.Min(df.Rows.Count, maxRows); i++)
        {
            sb.Append("<tr>");
            foreach (var c in df.Columns) sb.Append("<td>").Append(E(c[i])).Append("</td>");
            sb.Append("</tr>");
        }
        sb.Append("</tbody></table></div>");
        if (df.Rows.Count > maxRows) sb.Append($"<p>({df.Rows.Count - maxRows} more rows)</p>");
        return sb.ToString();
    }

    /// <summary>A number as a table cell shows it: four significant digits, or a whole number from 1,000 up.</summary>
    public static string Cell(double d) =>
        double.IsFinite(d) && Math.Abs(d) >= 1000 ? d.ToString("0", System.Globalization.CultureInfo.InvariantCulture) : d.ToString("G4", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>A chart as notebook HTML (plotly.js from its CDN; the saved figures inline it instead).</summary>
    public static string ChartHtml(GenericChart chart) => GenericChart.toChartHTML(chart);   // fresh ids: one chart may be shown twice on a page
}

/// <summary>Experiment results as DataFrames, one row a run, one column per evaluation step (as the paper's tables).</summary>
public static class ResultTables
{
    public static DataFrame Memorization(IReadOnlyList<Experiments.RunRecord> runs)
    {
        var columns = RunColumns(runs, Experiments.MemorizationExperiment.CharAccuracy);
        columns.Add(new DoubleDataFrameColumn("exact_match %", runs.Select(r => (double?)Math.Round(100 * r.Score(Experiments.MemorizationExperiment.ExactMatch), 1))));
        columns.Add(new DoubleDataFrameColumn("final_loss", runs.Select(r => (double?)Math.Round(r.FinalLoss, 4))));
        return new DataFrame(columns);
    }

    /// <summary>A committed CSV (a summary, a sweep, paired differences) as a DataFrame: numeric columns as numbers.</summary>
    public static DataFrame Committed(string path)
    {
        var table = Experiments.CsvTable.Read(path);
        var columns = new List<DataFrameColumn>();
        foreach (var h in table.Header)
        {
            var cells = table.Rows.Select(r => r[h]).ToList();
            columns.Add(cells.All(c => c.Length == 0 || double.TryParse(c, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _))
                ? new DoubleDataFrameColumn(h, cells.Select(c => c.Length == 0 ? null : (double?)double.Parse(c, System.Globalization.CultureInfo.InvariantCulture)))
                : new StringDataFrameColumn(h, cells));
        }
        return new DataFrame(columns);
    }

    public static DataFrame Gsm8k(IReadOnlyList<Experiments.RunRecord> runs)
    {
        var columns = RunColumns(runs, Experiments.Gsm8kExperiment.Accuracy);
        columns.Add(new DoubleDataFrameColumn("final_loss", runs.Select(r => (double?)Math.Round(r.FinalLoss, 4))));
        return new DataFrame(columns);
    }

    /// <summary>method, rank, seed, trainable, then "<paramref name="metric"/> %@step" for every evaluated step (the runs'
    /// scores <c>{metric}_step{s}</c>).</summary>
    static List<DataFrameColumn> RunColumns(IReadOnlyList<Experiments.RunRecord> all, string metric)
    {
        string prefix = metric + "_step";
        var runs = all.Select(r => (r.Method, r.Rank, r.Seed, Trainable: r.TrainableParameters,
            At: r.Scores.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => int.Parse(kv.Key[prefix.Length..], System.Globalization.CultureInfo.InvariantCulture), kv => kv.Value))).ToList();
        var columns = new List<DataFrameColumn>
        {
            new StringDataFrameColumn("method", runs.Select(r => r.Method)),
            new Int64DataFrameColumn("rank", runs.Select(r => (long?)r.Rank)),
            new Int64DataFrameColumn("seed", runs.Select(r => (long?)r.Seed)),
            new Int64DataFrameColumn("trainable", runs.Select(r => (long?)r.Trainable)),
        };
        foreach (int s in runs.SelectMany(r => r.At.Keys).Distinct().Order())
            columns.Add(new DoubleDataFrameColumn($"{metric} %@{s}", runs.Select(r => r.At.TryGetValue(s, out var v) ? (double?)Math.Round(100 * v, 1) : null)));
        return columns;
    }

    /// <summary>One row per run of every experiment: steps, first/last/min loss and the last value of each metric.</summary>
    public static DataFrame RunSummary(IReadOnlyList<(string Experiment, string Run, Training.RunLog Log)> runs)
    {
        var metrics = runs.SelectMany(r => r.Log.MetricNames).Distinct().Order(StringComparer.Ordinal).ToList();
        var columns = new List<DataFrameColumn>
        {
            new StringDataFrameColumn("experiment", runs.Select(r => r.Experiment)),
            new StringDataFrameColumn("run", runs.Select(r => r.Run)),
            new Int64DataFrameColumn("steps", runs.Select(r => (long?)(r.Log.Rows.Count == 0 ? 0 : r.Log.Rows[^1].Step))),
            new DoubleDataFrameColumn("first_loss", runs.Select(r => r.Log.Rows.Count == 0 ? null : (double?)Math.Round(r.Log.Rows[0].Loss, 4))),
            new DoubleDataFrameColumn("last_loss", runs.Select(r => r.Log.Rows.Count == 0 ? null : (double?)Math.Round(r.Log.Rows[^1].Loss, 4))),
            new DoubleDataFrameColumn("min_loss", runs.Select(r => r.Log.Rows.Count == 0 ? null : (double?)Math.Round(r.Log.Rows.Min(x => x.Loss), 4))),
        };
        foreach (var m in metrics)
            columns.Add(new DoubleDataFrameColumn($"last {m}", runs.Select(r => r.Log.Rows.LastOrDefault(x => x.Metrics.ContainsKey(m)) is { } row ? (double?)Math.Round(row.Metrics[m], 4) : null)));
        return new DataFrame(columns);
    }
}

/// <summary>Charts the notebooks show beyond line plots: heatmaps of ΔW structure and the interactive comparison of runs.</summary>
public static class NotebookCharts
{
    static GenericChart Titled(GenericChart chart, string title) => Figures.PlotlyInterop.WithTitle(chart, title);

    /// <summary>Matrices side by side in one heatmap (a NaN gap between them), each panel named under it, row 0 at the top as
    /// a matrix is printed; written as HTML + PNG under <paramref name="basePath"/>; returns the chart.</summary>
    public static Figures.ChartFigure Heatmaps(IReadOnlyList<(string Name, double[,] Z)> panels, string title, string basePath)
    {
        int rows = panels.Max(p => p.Z.GetLength(0)), gap = 2;
        int cols = panels.Sum(p => p.Z.GetLength(1) + gap) - gap;
        var z = new double[rows][];
        for (int i = 0; i < rows; i++) z[i] = Enumerable.Repeat(double.NaN, cols).ToArray();
        int at = 0;
        var centres = new List<double>();
        foreach (var (_, m) in panels)
        {
            for (int i = 0; i < m.GetLength(0); i++) for (int j = 0; j < m.GetLength(1); j++) z[i][at + j] = m[i, j];
            centres.Add(at + (m.GetLength(1) - 1) / 2.0);
            at += m.GetLength(1) + gap;
        }
        var names = panels.Select(p => p.Name).ToArray();
        var chart = Titled(Plotly.NET.CSharp.Chart.Heatmap<double, int, int, string>(z.Select(r => (IEnumerable<double>)r)), title);
        var layout = new Layout();
        layout.SetProperty("xaxis", new { tickmode = "array", tickvals = centres.ToArray(), ticktext = names, showgrid = false, zeroline = false });
        layout.SetProperty("yaxis", new { autorange = "reversed", title = new { text = "row of ΔW" }, showgrid = false, zeroline = false });
        chart = Figures.PlotlyInterop.WithLayout(chart, layout);
        var plot = new ScottPlot.Plot();
        var grid = new double[rows, cols];
        for (int i = 0; i < rows; i++) for (int j = 0; j < cols; j++) grid[i, j] = z[i][j];
        plot.Add.Heatmap(grid);     // ScottPlot draws row 0 at the top, cell (i, j) centred on (j, rows - 1 - i)
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(centres.ToArray(), names);
        var rowTicks = Enumerable.Range(0, rows).Where(i => i % 4 == 0 || i == rows - 1).ToArray();
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(rowTicks.Select(i => rows - 1.0 - i).ToArray(), rowTicks.Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        plot.Axes.Left.Label.Text = "row of ΔW";
        plot.Title(title);
        var figure = new Figures.ChartFigure(chart, plot.GetImageBytes(1200, 380, ScottPlot.ImageFormat.Png), title);
        Figures.RunFigures.Save(figure, basePath);
        return figure;
    }

    /// <summary>Every run of every experiment in one interactive chart: the training loss (EMA <paramref name="smoothing"/>)
    /// by step, one colour per method, the mean over seeds with the seeds' range as a band
    /// (<see cref="Figures.RunFigures.SeedBands(IReadOnlyList{Figures.Curve}, string, string, string, bool)"/>), each run one
    /// legend click away; one dropdown shows all experiments or one, another switches the y axis between log and linear.
    /// Written as HTML + PNG under <paramref name="basePath"/> when given.</summary>
    public static Figures.ChartFigure CompareRuns(IReadOnlyList<(string Experiment, string Run, Training.RunLog Log)> runs, double smoothing, string? basePath = null)
    {
        var curves = runs.Select(r => Figures.RunFigures.Curves([($"{r.Experiment}/{r.Run}", r.Log)], "loss", smoothing).Single()).ToList();
        var lines = Figures.RunFigures.SeedBands(curves, $"training loss by step (EMA {smoothing}; mean and range over seeds)", "step", "loss", logY: true, out var traces);
        if (basePath is not null) Figures.RunFigures.Save(lines, basePath);
        string ExperimentOf(Figures.RunFigures.BandTrace t) => t.Group.Name[..t.Group.Name.IndexOf('/')];
        var experiments = traces.Select(ExperimentOf).Distinct().ToList();
        object Shown(Figures.RunFigures.BandTrace t, bool chosen) => !chosen ? false : t.OnDemand ? "legendonly" : true;
        object Button(string label, Func<Figures.RunFigures.BandTrace, bool> chosen) =>
            new { label, method = "restyle", args = new object[] { new { visible = traces.Select(t => Shown(t, chosen(t))).ToArray() } } };
        var buttons = new List<object> { Button("all experiments", _ => true) };
        buttons.AddRange(experiments.Select(e => Button(e, t => ExperimentOf(t) == e)));
        var layout = new Layout();
        layout.SetProperty("updatemenus", new object[]
        {
            new { buttons, direction = "down", x = 0.0, xanchor = "left", y = 1.18, yanchor = "top", showactive = true },
            new
            {
                buttons = new object[]
                {
                    new { label = "log y", method = "relayout", args = new object[] { new Dictionary<string, object> { ["yaxis.type"] = "log" } } },
                    new { label = "linear y", method = "relayout", args = new object[] { new Dictionary<string, object> { ["yaxis.type"] = "linear" } } },
                },
                type = "buttons", direction = "right", x = 0.45, xanchor = "left", y = 1.18, yanchor = "top",
            },
        });
        layout.SetProperty("margin", new { t = 110 });
        // The static form shows every experiment's means and bands (the dropdown and the buttons need the interactive one).
        return lines with { Chart = Figures.PlotlyInterop.WithLayout(lines.Chart, layout) };
    }
}

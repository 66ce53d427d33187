using System.Globalization;
using System.Text;
using Mora.Adapters;
using Mora.IO;

namespace Mora.Experiments;

/// <summary>One tuning run of a learning-rate sweep (a row of <c>lr-sweep.csv</c>): <c>Metric</c> is the score the rule
/// maximises (character accuracy, accuracy, minus an answer loss, or minus a perplexity), <c>FinalLoss</c> the run's last training loss (the
/// tie-break), <c>Chosen</c> whether the rule chose this rate for its method and rank, and <c>AtEdge</c> is true on the
/// chosen row when it is still at an end of the grid after the extensions allowed.</summary>
public sealed record SweepPoint(string Method, int Rank, double LearningRate, double Metric, double FinalLoss, bool Chosen = false, bool AtEdge = false);

/// <summary>
/// The learning-rate rule every reproduction states and uses, so that methods are compared at their own best rate, not at
/// one shared rate (LoRA's output is scaled by α/r = 2 while MoRA's M starts at zero with scale 1, so one rate is a different
/// step size for each):
/// <list type="number">
/// <item>Train each method and rank for a short budget at every rate of a log-spaced grid, on a tuning seed that is not one of
/// the evaluation seeds (so the reported seeds are not the ones the rate was picked on).</item>
/// <item>Choose the rate with the best final metric; a tie (within 1e-9) goes to the lower final training loss.</item>
/// <item>When the best rate is at an end of the grid, extend the grid by one step of its ratio beyond that end and try again,
/// at most <see cref="MaxExtensions"/> times; a choice still at an end is flagged (<see cref="SweepPoint.AtEdge"/>).</item>
/// </list>
/// </summary>
public static class LearningRateSweep
{
    public const string File = "lr-sweep.csv";
    public const int MaxExtensions = 2;

    /// <summary>The rule's wording, as tables and the README print it.</summary>
    public static string Rule(IReadOnlyList<double> grid, int steps, int seed, string metric) =>
        $"learning rate per method and rank: best final {metric} after {steps} steps on tuning seed {seed} over {{{string.Join(", ", grid.Select(Lr))}}} " +
        $"(log-spaced; extended by one step past an end when the best is there, up to {MaxExtensions} times; ties to the lower training loss)";

    /// <summary>The rate of every configuration of <paramref name="spec"/>: its fixed rate when it has no grid, else the
    /// rule's choice, with <paramref name="train"/> training one tuning run (configuration, rate) and returning its final
    /// metric (higher is better: an accuracy, or minus a loss or a perplexity) and training loss. Prints each choice
    /// under <paramref name="label"/>'s name for the configuration, with <paramref name="scoredOn"/> saying what the metric
    /// was measured on and <paramref name="show"/> how a metric prints (default: as a percentage). Returns the rates and
    /// every tuning run (the rows of <c>lr-sweep.csv</c>).</summary>
    public static (Dictionary<(string Method, int Rank), double> Rates, IReadOnlyList<SweepPoint> Points) TuneAll(ExperimentSpec spec,
        Func<Configuration, double, (double Metric, double FinalLoss)> train, Func<Configuration, string> label, string scoredOn, TextWriter output,
        Func<double, string>? show = null)
    {
        show ??= m => $"{100 * m:0.0} %";
        var rates = new Dictionary<(string, int), double>();
        var points = new List<SweepPoint>();
        foreach (var c in spec.Configurations())
        {
            if (spec.GridFor(c) is not { } grid) { rates[(c.Method, c.Rank)] = spec.FixedLr(c); continue; }
            var (chosen, tried) = Choose(c.Method, c.Rank, grid, lr => train(c, lr));
            rates[(c.Method, c.Rank)] = chosen;
            points.AddRange(tried);
            output.WriteLine($"{label(c)}: learning rate {Lr(chosen)} chosen on {scoredOn} ({string.Join(", ", tried.Select(p => $"{Lr(p.LearningRate)} → {(p.Metric == double.MinValue ? "diverged" : show(p.Metric))}"))})");
        }
        return (rates, points);
    }

    /// <summary>Runs the rule for one method and rank. <paramref name="train"/> trains one tuning run at a rate and returns its
    /// final metric (higher is better) and final training loss; it should reuse a finished run's result.</summary>
    public static (double Chosen, IReadOnlyList<SweepPoint> Points) Choose(string method, int rank, IReadOnlyList<double> grid,
        Func<double, (double Metric, double FinalLoss)> train)
    {
        CheckGrid(grid, nameof(grid));
        var rates = grid.Order().ToList();
        double ratio = rates.Count > 1 ? rates[1] / rates[0] : 1;
        var tried = new SortedDictionary<double, (double Metric, double FinalLoss)>();
        foreach (var lr in rates) tried[lr] = Score(train, lr);
        int extensions = 0;
        while (true)
        {
            double best = Best(tried);
            bool low = best == tried.Keys.First(), high = best == tried.Keys.Last();
            if (ratio <= 1 || !(low || high) || extensions == MaxExtensions)
            {
                if (tried[best].Metric == double.MinValue)   // every rate diverged, the extensions below the grid too
                    throw new ArgumentException($"every learning rate tried for {method} at r = {rank} diverged ({string.Join(", ", tried.Keys.Select(Lr))}); give a grid of lower rates",
                        method == MethodSpec.Full.Name ? nameof(FineTuningSpec.FullLrGrid) : nameof(FineTuningSpec.AdapterLrGrid));
                var points = tried.Select(kv => new SweepPoint(method, rank, kv.Key, kv.Value.Metric, kv.Value.FinalLoss, kv.Key == best,
                    kv.Key == best && ratio > 1 && (low || high))).ToList();
                return (best, points);
            }
            double next = low ? tried.Keys.First() / ratio : tried.Keys.Last() * ratio;
            tried[next] = Score(train, next);
            extensions++;
        }
    }

    static (double, double) Score(Func<double, (double Metric, double FinalLoss)> train, double lr)
    {
        var (m, loss) = train(lr);
        // A diverged or empty run scores worst, and is kept in the table as it is.
        return (double.IsFinite(m) ? m : double.MinValue, double.IsFinite(loss) ? loss : double.MaxValue);
    }

    static double Best(SortedDictionary<double, (double Metric, double FinalLoss)> tried)
    {
        double best = double.NaN; (double Metric, double FinalLoss) b = default;
        foreach (var (lr, v) in tried)   // ascending rates: among equals the lower rate stays
            if (double.IsNaN(best) || v.Metric > b.Metric + 1e-9 || (Math.Abs(v.Metric - b.Metric) <= 1e-9 && v.FinalLoss < b.FinalLoss)) { best = lr; b = v; }
        return best;
    }

    /// <summary>Throws naming <paramref name="name"/> unless the grid holds distinct positive finite rates.</summary>
    public static void CheckGrid(IReadOnlyList<double> grid, string name)
    {
        if (grid.Count == 0) throw new ArgumentException($"{name}: name at least one learning rate", name);
        foreach (var v in grid)
            if (!(v > 0) || !double.IsFinite(v)) throw new ArgumentException($"{name}: learning rates must be positive, got {v}", name);
        if (grid.Distinct().Count() != grid.Count) throw new ArgumentException($"{name}: a learning rate is listed twice ({string.Join(", ", grid.Select(Lr))})", name);
    }

    /// <summary>n rates from <paramref name="from"/>, <paramref name="perDecade"/> per decade (2: 1e-3, 3.16e-3, 1e-2, …).</summary>
    public static IReadOnlyList<double> LogGrid(double from, int n, int perDecade = 2) =>
        Enumerable.Range(0, n).Select(i => double.Parse((from * Math.Pow(10, (double)i / perDecade)).ToString("G3", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)).ToList();

    /// <summary>A rate as folders and tables print it (3 significant digits).</summary>
    public static string Lr(double lr) => lr.ToString("G3", CultureInfo.InvariantCulture);

    /// <summary>What a tuning run that diverged scores (<see cref="Mora.Training.TrainingDivergedException"/>): the worst,
    /// so it is never the choice; printed and written as "diverged".</summary>
    public static (double Metric, double FinalLoss) Diverged => (double.MinValue, double.MaxValue);

    static string Cell(double v) => v is double.MinValue or double.MaxValue or double.NegativeInfinity or double.PositiveInfinity ? "diverged" : v.ToString("0.0000", CultureInfo.InvariantCulture);

    /// <summary>The figure files a sweep is drawn in, beside <see cref="File"/>.</summary>
    public static IReadOnlyList<string> FigureFiles { get; } = ["lr-sweep.html", "lr-sweep.png"];

    /// <summary>The sweep drawn: the score the rule maximises against the rate (log axis), one line per method and rank with
    /// a marker per rate tried, the chosen rate in its legend name; diverged rates are left out of the lines and named in
    /// the title. <paramref name="horizon"/> says what the runs were tuned on against what is reported (e.g. "tuned on 60
    /// steps, reported at 200"), so a reader sees where the two differ.</summary>
    public static Mora.Figures.ChartFigure Figure(IReadOnlyList<SweepPoint> points, string horizon)
    {
        int diverged = points.Count(p => p.Metric == double.MinValue);
        string title = $"learning-rate sweep, {horizon}{(diverged > 0 ? $"; {diverged} diverged left out" : "")}";
        return Mora.Figures.RunFigures.LineChart(Curves(points), title, "learning rate", "tuning score (higher is better)",
            byMethod: true, logX: true, markers: true);
    }

    /// <summary>The sweep's lines: per method and rank the score at each rate that did not diverge, named with the chosen rate.</summary>
    public static IReadOnlyList<Mora.Figures.Curve> Curves(IReadOnlyList<SweepPoint> points)
    {
        var curves = new List<Mora.Figures.Curve>();
        foreach (var g in points.GroupBy(p => (p.Method, p.Rank)))
        {
            var ok = g.Where(p => p.Metric != double.MinValue && double.IsFinite(p.Metric)).OrderBy(p => p.LearningRate).ToList();
            if (ok.Count == 0) continue;
            string name = g.Key.Rank == 0 || g.Key.Method == MethodSpec.Full.Name ? g.Key.Method : $"{g.Key.Method}-r{g.Key.Rank}";
            string chosen = g.FirstOrDefault(p => p.Chosen) is { } c ? $" (chose {Lr(c.LearningRate)}{(c.AtEdge ? ", at an end" : "")})" : "";
            curves.Add(new Mora.Figures.Curve(name + chosen, ok.Select(p => p.LearningRate).ToList(), ok.Select(p => p.Metric).ToList()));
        }
        return curves;
    }

    /// <summary>What the sweep of <paramref name="spec"/> was tuned on against what it reports, as the figure says it.</summary>
    public static string Horizon(ExperimentSpec spec) => Horizon(spec.TuneSteps, spec.Steps, spec.TuneSeed);

    /// <summary>The horizons as the figure says them.</summary>
    public static string Horizon(int tuneSteps, int steps, int tuneSeed) =>
        tuneSteps == steps ? $"tuned on the reported {steps} steps (seed {tuneSeed})" : $"tuned on {tuneSteps} steps (seed {tuneSeed}), reported at {steps}";

    /// <summary>The sweep's rows read back from <paramref name="path"/> ("diverged" cells as the worst score). Reads the
    /// earlier pretraining dialect too (<c>method,lr,metric,&lt;metric&gt;,steps,seed,diverged,chosen</c>, where the metric
    /// column names a perplexity: its score is minus it, rank 0, no training loss); anything else is refused naming the file.</summary>
    public static IReadOnlyList<SweepPoint> Read(string path)
    {
        static double Value(string s, double diverged) => s == "diverged" ? diverged : double.Parse(s, CultureInfo.InvariantCulture);
        var table = CsvTable.Read(path);
        if (!table.Header.Contains("learning_rate") && table.Header.Contains("lr") && table.Header.Contains("metric") && table.Header.Contains("chosen"))
            return table.Rows.Select(r =>
            {
                string metric = r["metric"];
                if (!r.TryGetValue(metric, out var cell)) throw new ArgumentException($"{path}: its metric column names '{metric}', which it does not have", nameof(path));
                bool diverged = r.TryGetValue("diverged", out var d) && d == "1";
                return new SweepPoint(r["method"], 0, Value(r["lr"], double.NaN), diverged ? double.MinValue : -Value(cell, double.MaxValue), double.NaN, r["chosen"] == "1");
            }).ToList();
        string[] expected = ["method", "rank", "learning_rate", "metric", "final_loss", "chosen", "at_edge"];
        if (expected.FirstOrDefault(c => !table.Header.Contains(c)) is { } missing)
            throw new ArgumentException($"{path}: no '{missing}' column (a sweep table has {string.Join(",", expected)}; it has {string.Join(",", table.Header)})", nameof(path));
        return table.Rows.Select(r => new SweepPoint(r["method"], int.Parse(r["rank"], CultureInfo.InvariantCulture), Value(r["learning_rate"], double.NaN),
            Value(r["metric"], double.MinValue), Value(r["final_loss"], double.MaxValue), r["chosen"] == "1", r["at_edge"] == "1")).ToList();
    }

    /// <summary>Writes the sweep's rows (atomically).</summary>
    public static void Write(string path, IEnumerable<SweepPoint> points)
    {
        var sb = new StringBuilder("method,rank,learning_rate,metric,final_loss,chosen,at_edge\n");
        foreach (var p in points)
            sb.Append(CultureInfo.InvariantCulture, $"{p.Method},{p.Rank},{Lr(p.LearningRate)},{Cell(p.Metric)},{Cell(p.FinalLoss)},{(p.Chosen ? 1 : 0)},{(p.AtEdge ? 1 : 0)}\n");
        AtomicFile.WriteText(path, sb.ToString());
    }
}

/// <summary>A finished job's sweep drawn from its folder (<c>plot --sweep</c>): <see cref="LearningRateSweep.File"/> read back,
/// the horizons from its spec.json (when the folder has one), the figure written beside them.</summary>
public static class SweepFigure
{
    public static (string Html, string Png) Draw(string folder)
    {
        string csv = Path.Combine(folder, LearningRateSweep.File), specPath = Path.Combine(folder, ExperimentFolder.SpecFile);
        if (!System.IO.File.Exists(csv)) throw new ArgumentException($"{folder}: no {LearningRateSweep.File} (a job that tuned its rates writes one)", nameof(folder));
        // Without a spec.json (an earlier job): the tuning budget as the sweep's own rows give it (the earlier dialect has them).
        var rows = CsvTable.Read(csv).Rows;
        string horizon = rows.Count > 0 && rows[0].TryGetValue("steps", out var st) && rows[0].TryGetValue("seed", out var sd)
            ? $"tuned on {st} steps (seed {sd}); reported horizon: table.txt" : "horizons: table.txt";
        if (System.IO.File.Exists(specPath))
        {
            var spec = System.Text.Json.Nodes.JsonNode.Parse(System.IO.File.ReadAllText(specPath))!.AsObject();
            int Int(string key) => spec[key] is { } v ? v.GetValue<int>() : throw new ArgumentException($"{specPath}: no '{key}'", nameof(folder));
            int tune = Int(nameof(ExperimentSpec.TuneSteps)), steps = Int(nameof(ExperimentSpec.Steps)), seed = Int(nameof(ExperimentSpec.TuneSeed));
            horizon = LearningRateSweep.Horizon(tune, steps, seed);
        }
        return Mora.Figures.RunFigures.Save(LearningRateSweep.Figure(LearningRateSweep.Read(csv), horizon), Path.Combine(folder, "lr-sweep"));
    }
}

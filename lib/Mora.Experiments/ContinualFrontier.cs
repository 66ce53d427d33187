using System.Globalization;
using System.Text;
using Mora.Adapters;
using Mora.Evaluation;
using Mora.Figures;
using Mora.IO;
using Mora.Training;

namespace Mora.Experiments;

/// <summary>
/// The acquisition–forgetting frontier of continual pretraining (<see cref="ContinualSpec.Frontier"/>): a learning rate
/// trades what a method absorbs against what it forgets, so one tuned rate per method compares two points chosen by a
/// score that ignores forgetting. Here every rate of the grids is a point: the k-th rate point is one fixed-rate
/// <see cref="ContinualExperiment"/> (folder <c>lr-&lt;adapter rate&gt;/</c>, the k-th adapter rate beside the k-th full
/// fine-tuning rate) on every seed at the full horizon, and every point continues the one base in <c>base/</c>.
/// Reported: per method, rank and rate the mean [95 % interval] over seeds of acquisition and forgetting
/// (<see cref="File"/>, the summary tables' dialect; every run in <see cref="RunsFile"/>), which rates lie on each
/// method's own frontier, and two figures (acquisition against forgetting, one line per method through its rates, the
/// base's score as a dotted line).
/// </summary>
public sealed class ContinualFrontier(ContinualSpec spec) : IJob
{
    public const string Kind = "continual-frontier", File = Kind + ".csv", RunsFile = Kind + "-runs.csv";
    /// <summary>The figures: new-fact character accuracy, and exact match, against forgetting.</summary>
    public static IReadOnlyList<string> FigureFiles { get; } = [Kind + "-char.html", Kind + "-char.png", Kind + "-exact.html", Kind + "-exact.png"];
    /// <summary>The measures each point reports: acquisition, then forgetting.</summary>
    public static IReadOnlyList<string> Measures { get; } =
        [ContinualExperiment.NewExact, ContinualExperiment.NewChar, ContinualExperiment.NewAnswerLoss, ContinualExperiment.Forgetting, ContinualExperiment.OriginalExact];

    public ContinualSpec Spec { get; } = spec;
    string IJob.Kind => Kind;
    ExperimentSpec IJob.Spec => Spec;
    bool IJob.PlotsRuns => false;
    public IReadOnlyList<string> ReportFiles => [ExperimentFolder.SpecFile, File, RunsFile, .. FigureFiles];

    /// <summary>The fixed-rate job of each rate point, in rate order: the spec with the k-th rates and no grid.</summary>
    public static IReadOnlyList<ContinualSpec> Points(ContinualSpec spec)
    {
        bool adapters = spec.Methods.Any(m => m.Method != AdapterMethod.Full), full = spec.Methods.Any(m => m.Method == AdapterMethod.Full);
        int n = adapters ? spec.AdapterLrGrid.Count : spec.FullLrGrid.Count;
        var a = spec.AdapterLrGrid.Order().ToList();
        var f = spec.FullLrGrid.Order().ToList();
        return Enumerable.Range(0, n).Select(k => spec with
        {
            Frontier = false, AdapterLrGrid = [], FullLrGrid = [],
            AdapterLr = adapters ? a[k] : spec.AdapterLr, FullLr = full ? f[k] : spec.FullLr,
        }).ToList();
    }

    /// <summary>A rate point's folder name (by its adapter rate, or its full fine-tuning rate when it runs full only).</summary>
    static string Folder(ContinualSpec point) =>
        "lr-" + LearningRateSweep.Lr(point.Methods.Any(m => m.Method != AdapterMethod.Full) ? point.AdapterLr : point.FullLr);

    /// <summary>Runs every rate point in <paramref name="outDir"/> (each reusing what it finished before), writes the
    /// frontier's tables and figures, and prints its table.</summary>
    public JobResult Run(string outDir, TextWriter? output = null, CancellationToken cancel = default, RunOptions? options = null)
    {
        options ??= new RunOptions();
        output ??= TextWriter.Null;
        Spec.Validate();
        if (!Spec.Frontier) throw new ArgumentException($"{nameof(ContinualSpec.Frontier)}: a frontier job needs a frontier spec (a tuned job is a {nameof(ContinualExperiment)})", nameof(spec));
        outDir = OutputFolders.Check(outDir, nameof(outDir));
        OutputFolders.CheckNotAnotherJobs(outDir, nameof(outDir), options.Command ?? "", options.Overwrite, f => ExperimentFolder.HoldsSettingsOf(f, Spec));
        var points = Points(Spec);
        var runs = new List<RunRecord>();
        using (RunFolder.Lock(outDir, output))
        {
            ExperimentFolder.Claim(outDir, Spec, Kind, Spec.BaseModel is { } given ? GivenBase.Read(given).Inputs : [], options.Fresh, output);
            string baseDir = Path.Combine(outDir, "base");
            for (int k = 0; k < points.Count; k++)
            {
                var p = points[k];
                output.WriteLine($"rate point {k + 1} of {points.Count}: adapters at {LearningRateSweep.Lr(p.AdapterLr)}, full fine-tuning at {LearningRateSweep.Lr(p.FullLr)} ({ExperimentFolder.Show(Path.Combine(outDir, Folder(p)))})");
                runs.AddRange(new ContinualExperiment(p, baseDir).Run(Path.Combine(outDir, Folder(p)), output, cancel, options with { Command = null }).Runs);
            }
            // Everything below is computed from the per-run table as written (scores to 4 decimals), so the committed table
            // is reproduced from the committed CSV exactly.
            AtomicFile.WriteText(Path.Combine(outDir, RunsFile), SeedReport.RunsCsv(runs, new ContinualExperiment(Spec).Columns, withDiverged: true));
            runs = SeedReport.ReadRuns(Path.Combine(outDir, RunsFile)).ToList();
            var result = new JobResult(Spec, runs, [], new Dictionary<(string, int), double>());
            AtomicFile.WriteText(Path.Combine(outDir, File), SummaryCsv(runs));
            WriteFigures(runs, outDir);
            string table = FormatTable(runs);
            output.WriteLine();
            output.WriteLine(table);
            output.WriteLine($"tables: {ExperimentFolder.Show(Path.Combine(outDir, File))} (per method, rank and rate), {RunsFile} (per run)");
            return result with { Table = table };
        }
    }

    /// <summary>The runs of each method, rank and rate, in rate order.</summary>
    static IEnumerable<IGrouping<(string Method, int Rank, double Lr), RunRecord>> Groups(IEnumerable<RunRecord> runs) =>
        runs.GroupBy(r => (r.Method, r.Rank, Lr: r.LearningRate)).OrderBy(g => g.First().Method == MethodSpec.Full.Name).ThenBy(g => g.Key.Method, StringComparer.Ordinal)
            .ThenBy(g => g.Key.Rank).ThenBy(g => g.Key.Lr);

    /// <summary>The frontier's table: the summary tables' dialect, a row per method, rank and rate (with the runs that
    /// diverged, left out of its statistics).</summary>
    public static string SummaryCsv(IReadOnlyList<RunRecord> runs)
    {
        var lines = Groups(runs).Select(g => SeedReport.SummaryCsv(g.ToList(), Measures, withDiverged: true).Split('\n')).ToList();
        return lines.Count == 0 ? SeedReport.SummaryCsv([], Measures, withDiverged: true) : lines[0][0] + "\n" + string.Concat(lines.Select(l => l[1] + "\n"));
    }

    /// <summary>One point: a method, rank and rate with its acquisition and forgetting over seeds.</summary>
    public sealed record Point(string Method, int Rank, double Lr, long Parameters, int Seeds, MeanInterval Exact, MeanInterval Char, MeanInterval AnswerLoss, MeanInterval Forgetting, MeanInterval Retained)
    {
        /// <summary>Whether <paramref name="other"/> absorbs at least as much and forgets at most as much, one of them strictly (by the means).</summary>
        public bool DominatedBy(Point other) =>
            other.Char.Mean >= Char.Mean && other.Forgetting.Mean <= Forgetting.Mean && (other.Char.Mean > Char.Mean || other.Forgetting.Mean < Forgetting.Mean);
    }

    /// <summary>Every point, in the table's order.</summary>
    public static IReadOnlyList<Point> PointsOf(IReadOnlyList<RunRecord> runs) => Groups(runs.Where(r => !r.Diverged)).Select(g =>
    {
        MeanInterval M(string s) => SeedStatistics.Mean95(g.Select(r => r.Score(s)));
        return new Point(g.Key.Method, g.Key.Rank, g.Key.Lr, g.First().TrainableParameters, g.Count(), M(ContinualExperiment.NewExact), M(ContinualExperiment.NewChar),
            M(ContinualExperiment.NewAnswerLoss), M(ContinualExperiment.Forgetting), M(ContinualExperiment.OriginalExact));
    }).ToList();

    static string Label(Point p) => p.Rank == 0 ? p.Method : $"{p.Method}-r{p.Rank}";

    void WriteFigures(IReadOnlyList<RunRecord> runs, string outDir)
    {
        var points = PointsOf(runs);
        if (points.Count == 0)     // every run diverged: the figures say so rather than being missing
        {
            foreach (var name in new[] { "char", "exact" })
                RunFigures.Save(RunFigures.LineChart([new Curve("no point (every run diverged)", [0], [0])], "continual: acquisition against forgetting", "forgetting", "acquisition"),
                    Path.Combine(outDir, $"{Kind}-{name}"));
            return;
        }
        double xMin = points.Min(p => p.Forgetting.Mean), xMax = points.Max(p => p.Forgetting.Mean);
        foreach (var (measure, name, before) in new[] { (ContinualExperiment.NewChar, "char", (double?)runs.Where(r => !r.Diverged).Average(r => r.Score(ContinualExperiment.NewCharBefore))), (ContinualExperiment.NewExact, "exact", null) })
        {
            var curves = points.GroupBy(Label).Select(g => new Curve(g.Key, g.Select(p => p.Forgetting.Mean).ToList(),
                g.Select(p => 100 * (measure == ContinualExperiment.NewChar ? p.Char.Mean : p.Exact.Mean)).ToList())).ToList();
            if (before is { } b) curves.Add(new Curve("base before training", [xMin, xMax], [100 * b, 100 * b]));
            string what = measure == ContinualExperiment.NewChar ? "character accuracy" : "exact match";
            var figure = RunFigures.LineChart(curves,
                $"continual: acquisition against forgetting, a point per rate (mean of {Spec.Seeds.Count} seeds)",
                $"forgetting: rise of held-out loss, original domain (nats/{new ContinualExperiment(Spec).Unit}); rates in order", $"new-fact {what} (%)", byMethod: true, markers: true);
            RunFigures.Save(figure, Path.Combine(outDir, $"{Kind}-{name}"));
        }
    }

    /// <summary>The printed table: per method, rank and rate, acquisition and forgetting as mean [95 % interval] over seeds,
    /// and whether the rate is on the method's own frontier (no other rate of it absorbs more and forgets less).</summary>
    public string FormatTable(IReadOnlyList<RunRecord> runs)
    {
        var points = PointsOf(runs);
        if (points.Count == 0) return $"Continual pretraining, the frontier: every one of the {runs.Count} runs diverged.";
        var first = runs.First(r => !r.Diverged);
        string unit = new ContinualExperiment(Spec).Unit;
        var sb = new StringBuilder();
        sb.AppendLine($"Continual pretraining, the acquisition–forgetting frontier over every rate ({Spec.NewEntities} fictional companies × 3 facts, {Spec.DocumentsPerEntity} prose documents each" +
                      $"{new ContinualExperiment(Spec).Scored}; {(Spec.BaseModel is { } b ? $"base {b}" : $"{Spec.Model} model")}, {Spec.Steps} steps at every rate, nothing tuned; " +
                      $"seeds {string.Join(",", Spec.Seeds)}; mean [95 % t interval] over seeds)");
        sb.AppendLine($"base: held-out loss on the original domain {first.Score(ContinualExperiment.HeldOutLossBefore):F4} nats/{unit}, original answers exact match {100 * first.Score(ContinualExperiment.OriginalExactBefore):F1} %; " +
                      $"on the scored new facts (mean over seeds) char accuracy {100 * runs.Where(r => !r.Diverged).Average(x => x.Score(ContinualExperiment.NewCharBefore)):F1} %, answer loss {runs.Where(r => !r.Diverged).Average(x => x.Score(ContinualExperiment.NewAnswerLossBefore)):F4}");
        sb.AppendLine($"{"method",-14} {"r",3} {"params",9} {"lr",8} {"new exact %",20} {"new char acc %",20} {"new answer loss",24} {"forgetting (Δ loss)",24} {"orig exact %",18}  frontier");
        foreach (var p in points)
        {
            bool onFrontier = !points.Any(o => o.Method == p.Method && o.Rank == p.Rank && p.DominatedBy(o));
            sb.AppendLine($"{p.Method,-14} {(p.Rank == 0 ? "-" : p.Rank.ToString(CultureInfo.InvariantCulture)),3} {p.Parameters,9:N0} {LearningRateSweep.Lr(p.Lr),8} " +
                          $"{p.Exact.Format(100),20} {p.Char.Format(100),20} {p.AnswerLoss.Format(1, "0.0000"),24} {p.Forgetting.Format(1, "0.0000"),24} {p.Retained.Format(100),18}  {(onFrontier ? "✓" : "")}");
        }
        int diverged = runs.Count(r => r.Diverged);
        sb.AppendLine($"frontier ✓: no other rate of the same method has at least as high a mean char accuracy and at most as much mean forgetting, one of them strictly (by the means; the intervals say how far apart they are)." +
                      (diverged > 0 ? $" {diverged} diverged run(s) left out." : ""));
        // Across methods, per other method and rank: how many LoRA points (any rank) one of its points dominates, and how
        // many of its points one LoRA point dominates.
        var lora = points.Where(p => p.Method == MethodSpec.Lora.Name).ToList();
        foreach (var g in points.Where(p => p.Method != MethodSpec.Lora.Name).GroupBy(Label))
        {
            int beats = lora.Count(l => g.Any(p => l.DominatedBy(p))), beaten = g.Count(p => lora.Any(l => p.DominatedBy(l)));
            sb.AppendLine($"{g.Key}: dominates {beats} of LoRA's {lora.Count} points; {beaten} of its {g.Count()} points are dominated by one of LoRA's.");
        }
        return sb.ToString().TrimEnd();
    }
}

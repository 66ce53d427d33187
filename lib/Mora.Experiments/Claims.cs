using System.Globalization;
using System.Text;
using Mora.Evaluation;
using Mora.Model;
using System.Text.Json;

namespace Mora.Experiments;

/// <summary>What a committed result says about one of the paper's claims.</summary>
public enum Verdict { Supported, Contradicted, NotResolved }

/// <summary>The kind of claim, which fixes its test: "A beats B" (one-sided paired t) or "A is on par with B" (TOST against a
/// margin fixed in advance).</summary>
public enum Hypothesis { Beats, OnPar }

/// <summary>One row of the README's results table: the paper's claim, the kit's setting, the measured difference with its
/// 95 % interval, the verdict, and the committed file and command it comes from; with the declared analysis:
/// <see cref="Statistic"/> (the primary statistic and its test), <see cref="P"/> (that test's p-value) and
/// <see cref="AdjustedP"/> (Holm-adjusted across the table; NaN when the row cannot be tested), a threshold-free
/// <see cref="Secondary"/> measure, and <see cref="Timing"/>: whether the run and its analysis were declared before the
/// run or after it (post hoc).</summary>
public sealed record ClaimResult(string Claim, string Setting, string Measured, Verdict Verdict, string Source, string Command)
{
    public string Statistic { get; init; } = "";
    public double P { get; init; } = double.NaN;
    public double AdjustedP { get; init; } = double.NaN;
    /// <summary>The contrary test's p-value (the method worse; for "on par", beyond the margin) and its adjusted value: a ✗ rests on it.</summary>
    public double ContraryP { get; init; } = double.NaN;
    public double AdjustedContraryP { get; init; } = double.NaN;
    public string Secondary { get; init; } = "";
    public string Timing { get; init; } = "";
}

/// <summary>
/// The paper's claims checked against the kit's committed results (paper: Jiang et al. 2024, §4.1–4.4), by an analysis
/// declared here, in code, for every result it reads (<see cref="Declarations"/>):
/// <list type="bullet">
/// <item>Each claim's primary statistic is the per-seed paired difference of one metric at the run's reported horizon
/// (its last evaluated step): character accuracy (memorisation, continual), exact match (GSM8K-style), held-out
/// perplexity (pretraining). A threshold-free or second measure is printed beside it and decides nothing.</item>
/// <item>"A beats B": the one-sided paired t-test of H₀: mean(A − B) ≤ 0 (<see cref="Inference.Superiority"/>).</item>
/// <item>"A is on par with B": equivalence by two one-sided tests (TOST) against ±<see cref="ParMargin"/> (5 accuracy
/// points, also printed relative to the baseline's mean) (<see cref="Inference.Equivalence"/>).</item>
/// <item>Holm's correction over the claim's and the contrary test's p-values of every testable row, as one family
/// (<see cref="Inference.Holm"/>): ✓ when the claim's adjusted p-value is below <see cref="Alpha"/>; ✗ when the contrary
/// test's is (the method is worse; or, for "on par", the difference lies beyond the margin); otherwise not resolved. A row
/// with fewer than <see cref="MinSeeds"/> seeds, or no spread at all, is not tested.</item>
/// <item>"On par" is not tested where both methods' means lie within the margin of the base's floor (its score before
/// fine-tuning, where the job measured it): two methods that both stay at the floor are equal for a reason that says
/// nothing of the claim.</item>
/// <item>A result whose run, or whose analysis, was designed after seeing another result says so in its row
/// (<see cref="Timing"/>).</item>
/// </list>
/// The README's results section is <see cref="Markdown"/> of <see cref="Evaluate"/>, between <see cref="Begin"/> and
/// <see cref="End"/>; a test holds the README to the files, so no number there is typed by hand.
/// </summary>
public static class Claims
{
    public const string Begin = "<!-- results:begin (generated from committed files: dotnet run -c Release -- claims --write-readme) -->";
    public const string End = "<!-- results:end -->";
    /// <summary>Half-width of "on par", in accuracy points (0.05 = 5 points), fixed before the GSM8K-style runs.</summary>
    public const double ParMargin = 0.05;
    /// <summary>The family-wise level of the table: a verdict holds when its Holm-adjusted p-value is below it.</summary>
    public const double Alpha = 0.05;
    /// <summary>Seeds a test needs: with two, t(0.975, 1) = 12.7 makes any interval nearly meaningless.</summary>
    public const int MinSeeds = 3;

    /// <summary>When each committed result's run and analysis were declared, as its row says. Every folder of
    /// <see cref="Sources"/> has one (a test holds it): a new result is declared here, before its run, and says so.</summary>
    public static IReadOnlyDictionary<string, string> Timing { get; } = new Dictionary<string, string>
    {
        ["figures/memorization-cpu-regimes"] = "run declared before it ran; test and Holm correction chosen after it (post hoc)",
        ["figures/memorization-cpu-low-regime"] = "post hoc: run designed after the 200-step r = 1 row came back unresolved; test chosen after it",
        ["figures/instruct-cpu"] = "run, rates grid, ±5-point margin and test (TOST by the bootstrap over items × seeds) declared before its results were seen",
        ["figures/gsm8k-cpu-unseen"] = "preset, ±5-point margin and bootstrap test declared before it ran; the floor rule (no \"on par\" within the margin of the base's floor) added after its tuning runs sat at the floor (post hoc)",
        ["figures/gsm8k-cpu-regimes"] = "run and ±5-point margin declared before it ran; TOST and Holm chosen after it (post hoc)",
        ["figures/gsm8k-cpu-hour"] = "run and ±5-point margin declared before it ran; TOST and Holm chosen after it (post hoc)",
        ["figures/pretrain-cpu"] = "run declared before it ran; test and Holm correction chosen after it (post hoc)",
        ["figures/pretrain-remora-cycle"] = "run, rates grid and test declared before it ran",
        ["figures/pretrain-remora-cycle-r2"] = "run, rates grid and test declared before it ran",
        ["figures/continual-cpu"] = "post hoc: rerun with both designs after an earlier run; test chosen after it",
    };

    /// <summary>The declared primary statistic and test of each kind of result (the reader of a folder names its kind).</summary>
    public static IReadOnlyDictionary<string, (Hypothesis Hypothesis, string Statistic)> Declarations { get; } = new Dictionary<string, (Hypothesis, string)>
    {
        ["memorization"] = (Hypothesis.Beats, "char. accuracy at the last step; paired t, one-sided"),
        ["gsm8k"] = (Hypothesis.OnPar, $"exact match at the last step; TOST ±{100 * ParMargin:0} points (bootstrap over items × seeds where items are stored, else paired t)"),
        ["instruct"] = (Hypothesis.OnPar, $"exact match at the last step; TOST ±{100 * ParMargin:0} points, bootstrap over items × seeds"),
        ["pretrain"] = (Hypothesis.Beats, "held-out perplexity (lower is better); paired t, one-sided"),
        ["continual"] = (Hypothesis.Beats, "answer char. accuracy on the new facts; paired t, one-sided"),
    };

    /// <summary>A row before the table's correction: its text, its per-seed differences (oriented so that the claim says
    /// they are positive, or near zero for "on par") and its kind.</summary>
    sealed record Pending(ClaimResult Row, IReadOnlyList<double> Differences, Hypothesis Hypothesis)
    {
        /// <summary>The declared test's p-value and its contrary's when the row is tested otherwise than by its per-seed
        /// differences (GSM8K's bootstrap over items × seeds).</summary>
        public (double P, double Contrary)? Given { get; init; }
        /// <summary>Not tested whatever its differences (an "on par" at the floor, <see cref="OnParRows"/>).</summary>
        public bool Untestable { get; init; }
    }

    /// <summary>Every claim the committed results under <paramref name="repoRoot"/> speak to, in the paper's order, each
    /// tested as declared and Holm-corrected across the table.</summary>
    public static IReadOnlyList<ClaimResult> Evaluate(string repoRoot)
    {
        var pending = new List<Pending>();
        foreach (var source in Sources)
        {
            string folder = Path.Combine(repoRoot, source.Replace('/', Path.DirectorySeparatorChar));
            // A newer result supersedes an older one as soon as its folder exists; an incomplete one is then an error that names
            // the missing file, not a silent return to the older result.
            if (!Directory.Exists(folder) || Superseded.TryGetValue(source, out var newer) && Directory.Exists(Path.Combine(repoRoot, newer))) continue;
            string kind = source.Split('/')[1].Split('-')[0];
            var read = kind switch
            {
                "memorization" => (Action<string, string, List<Pending>>)Memorisation,
                "gsm8k" => MathReasoning,
                "instruct" => InstructionTuning,
                "pretrain" => Pretraining,
                "continual" => Continual,
                _ => throw new InvalidOperationException($"no claim reader for '{kind}' ({source})"),
            };
            if (!Timing.TryGetValue(source, out var timing)) throw new InvalidOperationException($"{source}: no declared analysis (Claims.Timing)");
            int before = pending.Count;
            read(repoRoot, folder, pending);
            for (int i = before; i < pending.Count; i++)
                pending[i] = pending[i] with { Row = pending[i].Row with { Statistic = Declarations[kind].Statistic, Timing = timing } };
        }
        return Decide(pending);
    }

    /// <summary>The declared test of each row, Holm's correction over the testable rows' claims and contraries together, and
    /// the verdicts.</summary>
    static List<ClaimResult> Decide(List<Pending> pending)
    {
        var tests = pending.Select(p => p.Untestable ? null : p.Given ?? (Testable(p.Differences) ? Test(p.Hypothesis, p.Differences) : ((double P, double Contrary)?)null)).ToList();
        var tested = Enumerable.Range(0, pending.Count).Where(i => tests[i] is not null).ToList();
        // One family: every row's claim and its contrary, so the chance of any false ✓ or ✗ in the table stays ≤ α.
        var both = Inference.Holm(tested.Select(i => tests[i]!.Value.P).Concat(tested.Select(i => tests[i]!.Value.Contrary)).ToList());
        var results = pending.Select(p => p.Row with { Verdict = Verdict.NotResolved }).ToList();
        for (int j = 0; j < tested.Count; j++)
        {
            int i = tested[j];
            double adjusted = both[j], contrary = both[tested.Count + j];
            results[i] = results[i] with
            {
                P = tests[i]!.Value.P, AdjustedP = adjusted, ContraryP = tests[i]!.Value.Contrary, AdjustedContraryP = contrary, Verdict = Decide(adjusted, contrary),
            };
        }
        return results;
    }

    /// <summary>✓ when the claim's adjusted p-value is below <see cref="Alpha"/>, ✗ when the contrary test's is, otherwise not resolved.</summary>
    public static Verdict Decide(double adjustedP, double adjustedContraryP) =>
        adjustedP < Alpha ? Verdict.Supported : adjustedContraryP < Alpha ? Verdict.Contradicted : Verdict.NotResolved;

    /// <summary>Whether differences can be tested: at least <see cref="MinSeeds"/> of them and some spread (identical
    /// per-seed differences say nothing about the next seed).</summary>
    public static bool Testable(IReadOnlyList<double> d) => d.Count >= MinSeeds && d.Max() > d.Min();

    /// <summary>The declared test's p-value and its contrary's: for "beats", H₀: mean ≤ 0 and H₀: mean ≥ 0; for "on par",
    /// TOST against ±<see cref="ParMargin"/>, and the test that the difference lies beyond the margin on either side
    /// (the smaller one-sided p-value, doubled).</summary>
    public static (double P, double Contrary) Test(Hypothesis hypothesis, IReadOnlyList<double> d) => hypothesis switch
    {
        Hypothesis.Beats => (Inference.Superiority(d).P, Inference.Superiority(d.Select(x => -x).ToList()).P),
        _ => (Inference.Equivalence(d, ParMargin).P,
              Math.Min(1, 2 * Math.Min(Inference.Superiority(d.Select(x => x - ParMargin).ToList()).P, Inference.Superiority(d.Select(x => -x - ParMargin).ToList()).P))),
    };

    /// <summary>The folders the claims are read from, in the paper's order (a missing folder leaves its claims out). Each
    /// kind is read by the claim reader its name starts with.</summary>
    public static IReadOnlyList<string> Sources { get; } =
    [
        "figures/memorization-cpu-regimes", "figures/memorization-cpu-low-regime",
        "figures/instruct-cpu",
        "figures/gsm8k-cpu-regimes", "figures/gsm8k-cpu-unseen", "figures/gsm8k-cpu-hour",
        "figures/continual-cpu", "figures/pretrain-cpu", "figures/pretrain-remora-cycle", "figures/pretrain-remora-cycle-r2",
    ];

    /// <summary>Older results that speak to the same claim as a newer one: read only while the newer folder is missing.</summary>
    public static IReadOnlyDictionary<string, string> Superseded { get; } = new Dictionary<string, string>
    {
        ["figures/gsm8k-cpu-hour"] = "figures/gsm8k-cpu-regimes",
    };

    /// <summary>Per seed, <paramref name="column"/> of <paramref name="method"/> minus that of <paramref name="baseline"/> (at
    /// <paramref name="rank"/> when the table has ranks), over the seeds both have a number for (a diverged run has none).</summary>
    static List<double> PerSeed(CsvTable runs, string path, string column, string method, string baseline, string? rank)
    {
        if (!runs.Header.Contains(column)) throw new FormatException($"{path}: no column '{column}'");
        Dictionary<string, double> Of(string m) => runs.Rows
            .Where(r => r["method"] == m && (rank is null || r["rank"] == rank) && double.TryParse(r[column], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v))
            .ToDictionary(r => r["seed"], r => Num(r[column]));
        var a = Of(method);
        var b = Of(baseline);
        return a.Keys.Intersect(b.Keys).OrderBy(k => int.Parse(k, CultureInfo.InvariantCulture)).Select(k => a[k] - b[k]).ToList();
    }

    /// <summary>The MoRA runs of a per-run table grouped by (method, rank), the low ranks first, then in table order.</summary>
    static IEnumerable<IGrouping<(string Method, string Rank), IReadOnlyDictionary<string, string>>> ByRank(CsvTable runs) =>
        runs.Rows.Where(r => r["method"].StartsWith("mora-", StringComparison.Ordinal)).GroupBy(r => (Method: r["method"], Rank: r["rank"]))
            .OrderBy(g => int.Parse(g.Key.Rank, CultureInfo.InvariantCulture));

    static void Memorisation(string repoRoot, string memo, List<Pending> results)
    {
        var spec = SpecOf(memo, MemorizationSpec.FromPreset);
        var memoSummary = SeedReport.ReadSummary(Path.Combine(memo, MemorizationExperiment.SummaryFile));
        string runsPath = Path.Combine(memo, MemorizationExperiment.TableFile);
        var runs = CsvTable.Read(runsPath);
        var at = runs.Header.Where(h => h.StartsWith("char_acc_step", StringComparison.Ordinal))
            .Select(m => int.Parse(m["char_acc_step".Length..], CultureInfo.InvariantCulture)).Order().ToList();
        if (at.Count < 2) throw new FormatException($"{runsPath}: a curve's trend needs two evaluated steps, found {at.Count}");
        string lastStep = $"char_acc_step{at[^1]}";
        // Steps to 95 % character accuracy, censored at the budget (a run that never gets there counts as needing it all).
        double StepsTo95(IReadOnlyDictionary<string, string> r) => Inference.StepsToThreshold(at.Select(s => (s, Num(r[$"char_acc_step{s}"]))).ToList(), 0.95, spec.Steps);
        foreach (var g in ByRank(runs))
        {
            var diffs = PerSeed(runs, runsPath, lastStep, g.Key.Method, "lora", g.Key.Rank);
            var d = SeedStatistics.Mean95(diffs);
            IReadOnlyDictionary<string, string> Row(string method) => memoSummary.Rows.Single(r => r["method"] == method && r["rank"] == g.Key.Rank);
            string Mean(string method) => $"{100 * Num(Row(method)[lastStep + "_mean"]):0.0} %";
            string Trend(string method) => SeedReport.Trend(Num(Row(method)[$"char_acc_step{at[^2]}_mean"]), Num(Row(method)[lastStep + "_mean"]), at[^1] - at[^2]);
            var steps = runs.Rows.Where(r => r["rank"] == g.Key.Rank).GroupBy(r => r["method"]).ToDictionary(x => x.Key, x => x.ToDictionary(r => r["seed"], StepsTo95));
            var stepDiffs = steps[g.Key.Method].Keys.Intersect(steps["lora"].Keys).Select(k => steps[g.Key.Method][k] - steps["lora"][k]).ToList();
            bool censored = steps[g.Key.Method].Values.Concat(steps["lora"].Values).All(v => v >= spec.Steps);
            int rank = int.Parse(g.Key.Rank, CultureInfo.InvariantCulture);
            results.Add(new Pending(new ClaimResult("Memorisation (§4.1): MoRA > LoRA at equal parameters",
                $"UUID pairs ({spec.Pairs} a seed), {Model(spec)}, r = {rank} ({Regime(spec, rank)}), {g.Key.Method}, {spec.Steps} steps, {Rates(spec)}, {d.N} seeds",
                $"char. accuracy at step {at[^1]}: {g.Key.Method} {Mean(g.Key.Method)} ({Trend(g.Key.Method)}), LoRA {Mean("lora")} ({Trend("lora")}); difference {d.Format(100)} points",
                Verdict.NotResolved, Rel(repoRoot, runsPath), Command(memo))
            {
                Secondary = censored ? $"steps to 95 %: neither reaches it within {spec.Steps} steps"
                    : $"steps to 95 % (censored at {spec.Steps}): difference {SeedStatistics.Mean95(stepDiffs).Format(1, "0")}",
            }, diffs, Hypothesis.Beats));
        }
    }

    static void MathReasoning(string repoRoot, string math, List<Pending> results)
    {
        var spec = SpecOf(math, Gsm8kSpec.FromPreset);
        string floorPath = Path.Combine(math, Gsm8kExperiment.FloorFile);
        double? floorMean = File.Exists(floorPath) ? CsvTable.Read(floorPath).Rows.Average(r => Num(r["base_accuracy"])) : null;
        string floor = floorMean is { } f ? $"; the base before fine-tuning {100 * f:0.0} %" : "";
        string dedup = spec.TrainFile is not null ? "" : spec.UnseenSkeletons ? ", arithmetic skeletons unseen in the training problems and the pretraining's worked problems" : ", deduplicated by exact question only";
        OnParRows(repoRoot, math, Gsm8kExperiment.TableFile, Gsm8kExperiment.ItemsFile, "Math reasoning (§4.3, GSM8K): MoRA on par with LoRA", floor, floorMean,
            (method, rank, seeds) => $"GSM8K-style problems ({spec.TestProblems} held out{dedup}), {Model(spec)}, r = {rank} ({Regime(spec, rank)}), {method}, {spec.Steps} steps, {Rates(spec)}, {seeds} seeds",
            results);
    }

    /// <summary>Paper §4.2: instruction tuning, where the base already holds the knowledge and rank should not matter.</summary>
    static void InstructionTuning(string repoRoot, string folder, List<Pending> results)
    {
        var spec = SpecOf(folder, InstructionSpec.FromPreset);
        var floors = CsvTable.Read(Path.Combine(folder, InstructionExperiment.FloorFile)).Rows;
        double floorMean = floors.Average(r => Num(r["base_accuracy"]));
        string floor = $"; the base before fine-tuning {100 * floorMean:0.0} % with the instruction prompt, " +
                       $"{100 * floors.Average(r => Num(r["base_own_format_accuracy"])):0.0} % in its own notation";
        OnParRows(repoRoot, folder, InstructionExperiment.TableFile, InstructionExperiment.ItemsFile, "Instruction tuning (§4.2): MoRA on par with LoRA", floor, floorMean,
            (method, rank, seeds) => $"arithmetic facts the base learned as drills, asked as instructions ({spec.TrainFacts} fine-tuned on, {spec.TestFacts} others scored), {Model(spec)}, " +
                                     $"r = {rank} ({Regime(spec, rank)}), {method}, {spec.Steps} steps, {Rates(spec)}, {seeds} seeds",
            results);
    }

    /// <summary>The "on par" rows of a table of exact-match accuracies by step (<c>accuracy_step{s}</c>): per MoRA method and
    /// rank against LoRA at the last step, tested by the bootstrap over items × seeds when the job stored its items, else by
    /// paired t over seeds; not tested where LoRA's mean lies within the margin of <paramref name="floorMean"/>.</summary>
    static void OnParRows(string repoRoot, string folder, string tableFile, string itemsFile, string claim, string floor, double? floorMean, Func<string, int, int, string> setting, List<Pending> results)
    {
        string path = Path.Combine(folder, tableFile);
        var runs = CsvTable.Read(path);
        string lastAcc = runs.Header.Where(h => h.StartsWith("accuracy_step", StringComparison.Ordinal))
            .MaxBy(h => int.Parse(h["accuracy_step".Length..], CultureInfo.InvariantCulture)) ?? throw new FormatException($"{path}: no accuracy_step column");
        string itemsPath = Path.Combine(folder, itemsFile);
        var items = File.Exists(itemsPath) ? CsvTable.Read(itemsPath) : null;
        foreach (var g in ByRank(runs))
        {
            var diffs = PerSeed(runs, path, lastAcc, g.Key.Method, "lora", g.Key.Rank);
            var d = SeedStatistics.Mean95(diffs);
            double loraMean = runs.Rows.Where(r => r["method"] == "lora" && r["rank"] == g.Key.Rank).Average(r => Num(r[lastAcc]));
            double methodMean = runs.Rows.Where(r => r["method"] == g.Key.Method && r["rank"] == g.Key.Rank).Average(r => Num(r[lastAcc]));
            bool atFloor = floorMean is { } fm && Math.Max(loraMean, methodMean) - fm < ParMargin;
            var boot = items is null || atFloor ? null : ItemBootstrap(items, itemsPath, g.Key.Method, g.Key.Rank);
            string difference = boot is null ? $"difference {d.Format(100)} points"
                : $"difference {boot.Value.Test.Difference.Format(100)} points (paired bootstrap over {boot.Value.Items} items × {boot.Value.Seeds} seeds)";
            results.Add(new Pending(new ClaimResult(claim, setting(g.Key.Method, int.Parse(g.Key.Rank, CultureInfo.InvariantCulture), d.N),
                $"exact match at step {lastAcc["accuracy_step".Length..]}: LoRA {100 * loraMean:0.0} %{floor}; {difference} " +
                $"(on par: within ±{100 * ParMargin:0} points, ±{100 * ParMargin / loraMean:0} % of LoRA's mean)",
                Verdict.NotResolved, Rel(repoRoot, path), Command(folder))
            {
                Secondary = atFloor ? $"not tested: both {g.Key.Method} ({100 * methodMean:0.0} %) and LoRA ({100 * loraMean:0.0} %) are within the ±{100 * ParMargin:0}-point margin of the base's floor ({100 * floorMean!.Value:0.0} %), where equivalence is a floor effect"
                    : boot is null ? "per-item correctness not stored by this run (no bootstrap over items)" : $"paired t over seeds: difference {d.Format(100)} points",
            }, diffs, Hypothesis.OnPar) { Given = boot?.Tests, Untestable = atFloor });
        }
    }

    /// <summary>The paired bootstrap over items × seeds (<see cref="Inference.PairedBootstrap"/>) of <paramref name="method"/>
    /// against LoRA at <paramref name="rank"/>, over the seeds both have, with the declared TOST's p-value and its contrary's
    /// (the difference beyond the margin on either side: the smaller one-sided share, doubled), from the same resamples.</summary>
    static (TestResult Test, (double P, double Contrary) Tests, int Items, int Seeds)? ItemBootstrap(CsvTable items, string path, string method, string rank)
    {
        Dictionary<string, List<double>> Of(string m) => items.Rows.Where(r => r["method"] == m && r["rank"] == rank).GroupBy(r => r["seed"])
            .ToDictionary(g => g.Key, g => g.OrderBy(r => int.Parse(r["item"], CultureInfo.InvariantCulture)).Select(r => Num(r["correct"])).ToList());
        var a = Of(method);
        var b = Of("lora");
        var seeds = a.Keys.Intersect(b.Keys).OrderBy(k => int.Parse(k, CultureInfo.InvariantCulture)).ToList();
        if (seeds.Count < MinSeeds) return null;
        var xa = seeds.Select(k => (IReadOnlyList<double>)a[k]).ToList();
        var xb = seeds.Select(k => (IReadOnlyList<double>)b[k]).ToList();
        if (xa.Concat(xb).Select(x => x.Count).Distinct().Count() != 1) throw new FormatException($"{path}: {method} and lora at r = {rank} do not score the same items on every seed");
        if (xa.Zip(xb).All(p => p.First.SequenceEqual(p.Second))) return null;     // no spread at all: left to the per-seed rule, which does not test it
        var test = Inference.PairedBootstrap(xa, xb, ParMargin);
        IReadOnlyList<IReadOnlyList<double>> Shift(List<IReadOnlyList<double>> x) => x.Select(v => (IReadOnlyList<double>)v.Select(y => y + ParMargin).ToList()).ToList();
        double above = Inference.PairedBootstrap(xa, Shift(xb)).P, below = Inference.PairedBootstrap(xb, Shift(xa)).P;   // H₀: d ≤ +δ; H₀: d ≥ −δ
        return (test, (test.P, Math.Min(1, 2 * Math.Min(above, below))), xa[0].Count, seeds.Count);
    }

    /// <summary>Paper §4.4: pretraining from scratch; lower held-out perplexity is better, so "A ≥ B" holds when B − A lies above 0.</summary>
    static void Pretraining(string repoRoot, string folder, List<Pending> results)
    {
        var summary = SeedReport.ReadSummary(Path.Combine(folder, PretrainExperiment.SummaryFile)).Rows.ToDictionary(r => r["method"]);
        // The settings as the run printed them: the first line of table.txt names the model, steps, rank budget and merge interval.
        string table = File.ReadAllLines(Path.Combine(folder, "table.txt"))[0];
        string Setting(string pattern) => System.Text.RegularExpressions.Regex.Match(table, pattern) is { Success: true } m ? m.Groups[1].Value
            : throw new FormatException($"{Path.Combine(folder, "table.txt")}:1: no '{pattern}' in '{table}'");
        string model = Setting(@"\((\w+) model"), every = Setting(@"merge every (\d+) steps"), budget = Setting(@"rank budget r = (\d+)");
        bool validated = File.ReadAllText(Path.Combine(folder, "table.txt")).Contains("validation perplexity", StringComparison.Ordinal);
        string path = Path.Combine(folder, PretrainExperiment.TableFile);
        var runs = CsvTable.Read(path);
        // Four decimals, as the files hold them (table.txt rounds the unrounded means to three).
        string Ppl(string m) => $"{summary[m]["heldout_ppl_mean"]} [{summary[m]["heldout_ppl_ci_low"]}, {summary[m]["heldout_ppl_ci_high"]}]";
        foreach (var (a, b, claim) in new[]
        {
            ("remora", "relora", "Pretraining (§4.4): ReMoRA ≥ ReLoRA"), ("remora4", "relora", "Pretraining (§4.4): ReMoRA ≥ ReLoRA, the reference's 4-type cycle"),
            ("mora", "lora", "Pretraining (§4.4): MoRA ≥ LoRA"),
        })
        {
            if (!summary.ContainsKey(a) || !summary.ContainsKey(b)) continue;
            var diffs = PerSeed(runs, path, PretrainExperiment.HeldOutPerplexity, a, b, null);      // A − B: lower is better
            var d = SeedStatistics.Mean95(diffs);
            results.Add(new Pending(new ClaimResult(claim,
                $"a generated language learned from scratch, {model} model, rank budget r = {budget}, {(a.StartsWith("remora", StringComparison.Ordinal) ? $"merged and re-initialised every {every} steps (ReMoRA {(a == "remora4" ? "cycling sharing types 1 → 2 → 3 → 4" : "switching sharing types 1 ↔ 2")}), warm-up restarted" : "no merges")}, " +
                $"{(validated ? "rates tuned on a validation split" : "rates tuned on the held-out split itself")}, {d.N} seeds",
                $"held-out perplexity: {a} {Ppl(a)}, {b} {Ppl(b)}; difference {d.Format(1, "0.0000")} (lower is better)",
                Verdict.NotResolved, Rel(repoRoot, path), Command(folder))
            {
                Secondary = $"held-out loss (nats a character): difference {SeedStatistics.Mean95(PerSeed(runs, path, PretrainExperiment.HeldOutLoss, a, b, null)).Format(1, "0.0000")}",
            }, diffs.Select(x => -x).ToList(), Hypothesis.Beats));
        }
    }

    /// <summary>Paper §4.3 (continual pretraining on a new domain), in spirit: acquisition is the character accuracy of
    /// answers to questions on the new facts; "MoRA absorbs the domain better" holds when MoRA − LoRA lies above 0.</summary>
    static void Continual(string repoRoot, string folder, List<Pending> results)
    {
        string table = File.ReadAllLines(Path.Combine(folder, "table.txt"))[0];
        var setting = System.Text.RegularExpressions.Regex.Match(table, @"\((.*?); seeds");
        if (!setting.Success) throw new FormatException($"{Path.Combine(folder, "table.txt")}:1: no '(…; seeds' in '{table}'");
        string path = Path.Combine(folder, ContinualExperiment.TableFile);
        var runs = CsvTable.Read(path);
        foreach (var g in ByRank(runs))
        {
            var diffs = PerSeed(runs, path, ContinualExperiment.NewChar, g.Key.Method, "lora", g.Key.Rank);
            var d = SeedStatistics.Mean95(diffs);
            var loss = SeedStatistics.Mean95(PerSeed(runs, path, ContinualExperiment.NewAnswerLoss, g.Key.Method, "lora", g.Key.Rank));
            results.Add(new Pending(new ClaimResult("Continual pretraining (§4.3, in spirit): MoRA absorbs a new domain better than LoRA",
                $"facts about fictional entities in varied prose, questions in an unseen phrasing; {setting.Groups[1].Value}; {g.Key.Method}, r = {g.Key.Rank}, tuned rates, {d.N} seeds",
                $"character accuracy of answers on the new facts: difference {d.Format(100)} points (forgetting: `{ContinualExperiment.PairedFile}`)",
                Verdict.NotResolved, Rel(repoRoot, path), Command(folder))
            {
                Secondary = $"answer loss (nats a character, lower is better): difference {loss.Format(1, "0.000")}",
            }, diffs, Hypothesis.Beats));
        }
    }

    /// <summary>The settings of a committed result: its spec.json, or (for results committed before the spec was copied
    /// beside them) the preset its COMMAND.txt names, which then must name no other setting.</summary>
    static TSpec SpecOf<TSpec>(string folder, Func<string, TSpec> fromPreset) where TSpec : FineTuningSpec
    {
        string path = Path.Combine(folder, ExperimentFolder.SpecFile);
        if (File.Exists(path))
        {
            // The device is blank in a stored spec (not part of an experiment's identity): read it as the default.
            var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path)) as System.Text.Json.Nodes.JsonObject ?? throw new FormatException($"{path}: not a JSON object");
            node.Remove("Device");
            // A GSM8K spec.json written before skeletons were held out held out exact questions only.
            if (typeof(TSpec) == typeof(Gsm8kSpec) && !node.ContainsKey(nameof(Gsm8kSpec.UnseenSkeletons))) node[nameof(Gsm8kSpec.UnseenSkeletons)] = false;
            return node.Deserialize<TSpec>() ?? throw new FormatException($"{path}: empty");
        }
        string command = Command(folder);
        var args = command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        int at = Array.IndexOf(args, "--preset");
        var other = args.Where(a => a.StartsWith("--", StringComparison.Ordinal) && a is not ("--" or "--preset" or "--out" or "--figures" or "--threads")).ToList();
        if (at < 0 || at + 1 >= args.Length || other.Count > 0)
            throw new FormatException($"{Path.Combine(folder, "COMMAND.txt")}: without a spec.json the command must be a plain preset, got '{command}'");
        return fromPreset(args[at + 1]);
    }

    static string Model(ExperimentSpec spec) => $"{spec.Model} model (hidden {LlamaConfig.Preset(spec.Model, 128).HiddenSize})";

    /// <summary>r/d with the paper's regime it stands for: low (its r = 8 on 4096, 0.2 %) up to 1 %, high (its r = 256, 6 %) above.</summary>
    static string Regime(ExperimentSpec spec, int rank)
    {
        double ratio = (double)rank / LlamaConfig.Preset(spec.Model, 128).HiddenSize;
        return $"{(ratio <= 0.01 ? "low" : "high")} regime, r/d = {100 * ratio:0.#} %";
    }

    static string Rates(FineTuningSpec spec) => spec.AdapterLrGrid.Count > 0 ? "tuned rates" : "one untuned rate";

    static double Num(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    public static string Symbol(Verdict v) => v switch { Verdict.Supported => "✓", Verdict.Contradicted => "✗", _ => "not resolved at this scale" };

    /// <summary>A p-value as the table prints it: three significant decimals, "&lt; 0.001" below that, "—" when not tested.</summary>
    public static string FormatP(double p) => double.IsNaN(p) ? "—" : p < 0.001 ? "< 0.001" : p.ToString("0.000", CultureInfo.InvariantCulture);

    /// <summary>The README's results table (between the markers).</summary>
    public static string Markdown(IReadOnlyList<ClaimResult> results)
    {
        var sb = new StringBuilder();
        sb.AppendLine(Begin);
        sb.AppendLine("| the paper's claim | the kit's setting | primary statistic and test (declared) | measured (mean [95 % interval] over seeds) | p (Holm-adjusted) | verdict | declared | file |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var r in results)
            sb.AppendLine($"| {r.Claim} | {r.Setting} | {r.Statistic} | {r.Measured}; {r.Secondary} | {FormatP(r.P)} ({FormatP(r.AdjustedP)})" +
                $"{(r.Verdict == Verdict.Contradicted ? $"; contrary {FormatP(r.ContraryP)} ({FormatP(r.AdjustedContraryP)})" : "")} | {Symbol(r.Verdict)} | {r.Timing} | [`{r.Source}`]({r.Source}) |");
        sb.AppendLine();
        int tested = results.Count(r => !double.IsNaN(r.AdjustedP));
        sb.AppendLine($"Holm's correction runs over the {2 * tested} p-values of the {tested} tested rows (each row's claim and its contrary: worse, " +
                      $"or for \"on par\" beyond the margin on either side) at α = {Alpha}, so any false ✓ or ✗ in the table has a chance of at most {Alpha}. " +
                      "The interval printed is the two-sided 95 % one; a one-sided test at 0.05, and TOST at 0.05, correspond to the 90 % interval.");
        sb.AppendLine();
        sb.AppendLine("Commands:");
        sb.AppendLine();
        foreach (var c in results.Select(r => r.Command).Distinct()) sb.AppendLine($"- `{c}`");
        sb.Append(End);
        return sb.ToString();
    }

    /// <summary><paramref name="readme"/> with its results section replaced by <paramref name="section"/>.</summary>
    public static string Splice(string readme, string section)
    {
        int a = readme.IndexOf(Begin, StringComparison.Ordinal), b = readme.IndexOf(End, StringComparison.Ordinal);
        if (a < 0 || b < a) throw new FormatException($"README.md has no results section between '{Begin}' and '{End}'");
        return readme[..a] + section + readme[(b + End.Length)..];
    }

    static string Rel(string root, string path) => Path.GetRelativePath(root, path).Replace('\\', '/');

    static string Command(string folder)
    {
        string path = Path.Combine(folder, "COMMAND.txt");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: every committed result needs the command that made it", path);
        return File.ReadAllLines(path).FirstOrDefault(l => l.Trim().Length > 0)?.Trim() ?? throw new FormatException($"{path}: empty");
    }
}

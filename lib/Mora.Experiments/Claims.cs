using System.Globalization;
using System.Text;
using Mora.Evaluation;
using Mora.Model;
using System.Text.Json;

namespace Mora.Experiments;

/// <summary>What a committed result says about one of the paper's claims.</summary>
public enum Verdict { Supported, Contradicted, NotResolved }

/// <summary>One row of the README's results table: the paper's claim, the kit's setting, the measured difference with its
/// 95 % interval, the verdict, and the committed file and command it comes from.</summary>
public sealed record ClaimResult(string Claim, string Setting, string Measured, Verdict Verdict, string Source, string Command);

/// <summary>
/// The paper's claims checked against the kit's committed results (paper: Jiang et al. 2024, §4.1–4.4). Each verdict is a
/// rule on a per-seed paired difference and its 95 % t interval (<see cref="SeedStatistics.Paired95"/>):
/// <list type="bullet">
/// <item>A verdict needs at least <see cref="MinSeeds"/> seeds and a non-zero spread; otherwise not resolved.</item>
/// <item>"A beats B": ✓ when the interval lies above 0, ✗ when it lies below 0, otherwise not resolved at this scale.</item>
/// <item>"A is on par with B": ✓ when the interval lies inside ±<see cref="ParMargin"/>, ✗ when it lies wholly outside, otherwise not resolved.</item>
/// </list>
/// The README's results section is <see cref="Markdown"/> of <see cref="Evaluate"/>, between <see cref="Begin"/> and
/// <see cref="End"/>; a test holds the README to the files, so no number there is typed by hand.
/// </summary>
public static class Claims
{
    public const string Begin = "<!-- results:begin (generated from committed files: dotnet run -c Release -- claims --write-readme) -->";
    public const string End = "<!-- results:end -->";
    /// <summary>Half-width of "on par", in accuracy points (0.05 = 5 points).</summary>
    public const double ParMargin = 0.05;

    /// <summary>Every claim the committed results under <paramref name="repoRoot"/> speak to, in the paper's order.</summary>
    public static IReadOnlyList<ClaimResult> Evaluate(string repoRoot)
    {
        var results = new List<ClaimResult>();
        foreach (var source in Sources)
        {
            string folder = Path.Combine(repoRoot, source.Replace('/', Path.DirectorySeparatorChar));
            // A newer result supersedes an older one as soon as its folder exists; an incomplete one is then an error that names
            // the missing file, not a silent return to the older result.
            if (!Directory.Exists(folder) || Superseded.TryGetValue(source, out var newer) && Directory.Exists(Path.Combine(repoRoot, newer))) continue;
            var read = source.Split('/')[1].Split('-')[0] switch
            {
                "memorization" => (Action<string, string, List<ClaimResult>>)Memorisation,
                "gsm8k" => MathReasoning,
                "pretrain" => Pretraining,
                "continual" => Continual,
                var kind => throw new InvalidOperationException($"no claim reader for '{kind}' ({source})"),
            };
            read(repoRoot, folder, results);
        }
        return results;
    }

    /// <summary>The folders the claims are read from, in the paper's order (a missing folder leaves its claims out). Each
    /// kind is read by the claim reader its name starts with.</summary>
    public static IReadOnlyList<string> Sources { get; } =
    [
        "figures/memorization-cpu-regimes", "figures/memorization-cpu-low-regime",
        "figures/gsm8k-cpu-regimes", "figures/gsm8k-cpu-hour",
        "figures/pretrain-cpu", "figures/continual-cpu",
    ];

    /// <summary>Older results that speak to the same claim as a newer one: read only while the newer folder is missing.</summary>
    public static IReadOnlyDictionary<string, string> Superseded { get; } = new Dictionary<string, string>
    {
        ["figures/gsm8k-cpu-hour"] = "figures/gsm8k-cpu-regimes",
    };

    static void Memorisation(string repoRoot, string memo, List<ClaimResult> results)
    {
        var spec = SpecOf(memo, MemorizationSpec.FromPreset);
        var memoSummary = SeedReport.ReadSummary(Path.Combine(memo, MemorizationExperiment.SummaryFile));
        var memoPaired = SeedReport.ReadPaired(Path.Combine(memo, MemorizationExperiment.PairedFile));
        var at = memoPaired.Select(r => r.Metric).Where(m => m.StartsWith("char_acc_step", StringComparison.Ordinal))
            .Select(m => int.Parse(m["char_acc_step".Length..], CultureInfo.InvariantCulture)).Distinct().Order().ToList();
        if (at.Count < 2) throw new FormatException($"{Path.Combine(memo, MemorizationExperiment.PairedFile)}: a curve's trend needs two evaluated steps, found {at.Count}");
        string lastStep = $"char_acc_step{at[^1]}";
        foreach (var row in memoPaired.Where(r => r.Metric == lastStep && r.Method.StartsWith("mora-", StringComparison.Ordinal)))
        {
            var d = Interval(row);
            int rank = int.Parse(row.Rank, CultureInfo.InvariantCulture);
            IReadOnlyDictionary<string, string> Row(string method) => memoSummary.Rows.Single(r => r["method"] == method && r["rank"] == rank.ToString(CultureInfo.InvariantCulture));
            string Mean(string method) => $"{100 * Num(Row(method)[lastStep + "_mean"]):0.0} %";
            string Trend(string method) => SeedReport.Trend(Num(Row(method)[$"char_acc_step{at[^2]}_mean"]), Num(Row(method)[lastStep + "_mean"]), at[^1] - at[^2]);
            results.Add(new ClaimResult("Memorisation (§4.1): MoRA > LoRA at equal parameters",
                $"UUID pairs ({spec.Pairs} a seed), {Model(spec)}, r = {rank} ({Regime(spec, rank)}), {row.Method}, {spec.Steps} steps, {Rates(spec)}, {d.N} seeds",
                $"char. accuracy at step {at[^1]}: {row.Method} {Mean(row.Method)} ({Trend(row.Method)}), LoRA {Mean("lora")} ({Trend("lora")}); difference {d.Format(100)} points",
                Greater(d), Rel(repoRoot, Path.Combine(memo, MemorizationExperiment.PairedFile)), Command(memo)));
        }
    }

    static void MathReasoning(string repoRoot, string math, List<ClaimResult> results)
    {
        var spec = SpecOf(math, Gsm8kSpec.FromPreset);
        var mathRuns = CsvTable.Read(Path.Combine(math, Gsm8kExperiment.TableFile));
        string lastAcc = mathRuns.Header.Where(h => h.StartsWith("accuracy_step", StringComparison.Ordinal)).Last();
        var lora = mathRuns.Rows.Where(r => r["method"] == "lora").ToList();
        foreach (var g in mathRuns.Rows.Where(r => r["method"].StartsWith("mora-", StringComparison.Ordinal)).GroupBy(r => (Method: r["method"], Rank: r["rank"])))
        {
            var baseline = lora.Where(r => r["rank"] == g.Key.Rank).ToDictionary(r => int.Parse(r["seed"], CultureInfo.InvariantCulture), r => double.Parse(r[lastAcc], CultureInfo.InvariantCulture));
            var d = SeedStatistics.Paired95(g.ToDictionary(r => int.Parse(r["seed"], CultureInfo.InvariantCulture), r => double.Parse(r[lastAcc], CultureInfo.InvariantCulture)), baseline);
            results.Add(new ClaimResult("Math reasoning (§4.3, GSM8K): MoRA on par with LoRA",
                $"GSM8K-style problems ({spec.TestProblems} held out), {Model(spec)}, r = {g.Key.Rank} ({Regime(spec, int.Parse(g.Key.Rank, CultureInfo.InvariantCulture))}), {g.Key.Method}, {spec.Steps} steps, {Rates(spec)}, {d.N} seeds",
                $"exact match at step {lastAcc["accuracy_step".Length..]}: difference {d.Format(100)} points (on par: within ±{100 * ParMargin:0} points)",
                OnPar(d), Rel(repoRoot, Path.Combine(math, Gsm8kExperiment.TableFile)), Command(math)));
        }
    }

    /// <summary>Paper §4.4: pretraining from scratch; lower held-out perplexity is better, so "A ≥ B" is ✓ when A − B lies below 0.</summary>
    static void Pretraining(string repoRoot, string folder, List<ClaimResult> results)
    {
        var summary = SeedReport.ReadSummary(Path.Combine(folder, PretrainExperiment.SummaryFile)).Rows.ToDictionary(r => r["method"]);
        // The settings as the run printed them: the first line of table.txt names the model, steps, rank budget and merge interval.
        string table = File.ReadAllLines(Path.Combine(folder, "table.txt"))[0];
        string Setting(string pattern) => System.Text.RegularExpressions.Regex.Match(table, pattern) is { Success: true } m ? m.Groups[1].Value
            : throw new FormatException($"{Path.Combine(folder, "table.txt")}:1: no '{pattern}' in '{table}'");
        string model = Setting(@"\((\w+) model"), every = Setting(@"merge every (\d+) steps"), budget = Setting(@"rank budget r = (\d+)");
        bool validated = File.ReadAllText(Path.Combine(folder, "table.txt")).Contains("validation perplexity", StringComparison.Ordinal);
        var paired = SeedReport.ReadPaired(Path.Combine(folder, PretrainExperiment.PairedFile)).Where(r => r.Metric == PretrainExperiment.HeldOutPerplexity)
            .ToDictionary(r => $"{r.Method}-{r.Baseline}");
        // Four decimals, as the files hold them (table.txt rounds the unrounded means to three).
        string Ppl(string m) => $"{summary[m]["heldout_ppl_mean"]} [{summary[m]["heldout_ppl_ci_low"]}, {summary[m]["heldout_ppl_ci_high"]}]";
        foreach (var (a, b, claim) in new[] { ("remora", "relora", "Pretraining (§4.4): ReMoRA ≥ ReLoRA"), ("mora", "lora", "Pretraining (§4.4): MoRA ≥ LoRA") })
        {
            if (!paired.TryGetValue($"{a}-{b}", out var row)) continue;
            int n = row.Seeds;
            var d = new MeanInterval(Num(row.Mean), Num(row.Low), Num(row.High), n, 0);
            results.Add(new ClaimResult(claim,
                $"a generated language learned from scratch, {model} model, rank budget r = {budget}, {(a == "remora" ? $"merged and re-initialised every {every} steps (ReMoRA switching sharing types 1 ↔ 2), warm-up restarted" : "no merges")}, " +
                $"{(validated ? "rates tuned on a validation split" : "rates tuned on the held-out split itself")}, {n} seeds",
                $"held-out perplexity: {a} {Ppl(a)}, {b} {Ppl(b)}; difference {row.Mean} [{row.Low}, {row.High}] (lower is better)",
                Greater(new MeanInterval(-d.Mean, -d.High, -d.Low, n, 0)), Rel(repoRoot, Path.Combine(folder, PretrainExperiment.PairedFile)), Command(folder)));
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

    /// <summary>Paper §4.3 (continual pretraining on a new domain), in spirit: acquisition is the character accuracy of
    /// answers to questions on the new facts; "MoRA absorbs the domain better" is ✓ when MoRA − LoRA lies above 0.</summary>
    static void Continual(string repoRoot, string folder, List<ClaimResult> results)
    {
        string table = File.ReadAllLines(Path.Combine(folder, "table.txt"))[0];
        var setting = System.Text.RegularExpressions.Regex.Match(table, @"\((.*?); seeds");
        if (!setting.Success) throw new FormatException($"{Path.Combine(folder, "table.txt")}:1: no '(…; seeds' in '{table}'");
        foreach (var row in SeedReport.ReadPaired(Path.Combine(folder, ContinualExperiment.PairedFile)).Where(r => r.Metric == ContinualExperiment.NewChar))
        {
            var d = new MeanInterval(Num(row.Mean), Num(row.Low), Num(row.High), row.Seeds, 0);
            results.Add(new ClaimResult("Continual pretraining (§4.3, in spirit): MoRA absorbs a new domain better than LoRA",
                $"facts about fictional entities in varied prose, questions in an unseen phrasing; {setting.Groups[1].Value}; {row.Method}, r = {row.Rank}, tuned rates, {row.Seeds} seeds",
                $"character accuracy of answers on the new facts: difference {d.Format(100)} points (forgetting: `{ContinualExperiment.PairedFile}`)",
                Greater(d), Rel(repoRoot, Path.Combine(folder, ContinualExperiment.PairedFile)), Command(folder)));
        }
    }

    static double Num(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    /// <summary>Seeds a verdict needs: with two, t(0.975, 1) = 12.7 makes any interval nearly meaningless.</summary>
    public const int MinSeeds = 3;

    /// <summary>Whether an interval can carry a verdict: at least <see cref="MinSeeds"/> seeds and some spread (identical
    /// per-seed differences give a zero-width t interval, which says nothing about the next seed).</summary>
    static bool Resolvable(MeanInterval d) => d.N >= MinSeeds && d.High > d.Low;

    /// <summary>✓ above 0, ✗ below 0, otherwise (or when not <see cref="Resolvable"/>) not resolved.</summary>
    public static Verdict Greater(MeanInterval d) =>
        !Resolvable(d) ? Verdict.NotResolved : d.Low > 0 ? Verdict.Supported : d.High < 0 ? Verdict.Contradicted : Verdict.NotResolved;

    /// <summary>✓ inside ±<see cref="ParMargin"/>, ✗ wholly outside it, otherwise (or when not <see cref="Resolvable"/>) not resolved.</summary>
    public static Verdict OnPar(MeanInterval d) =>
        !Resolvable(d) ? Verdict.NotResolved
        : d.Low >= -ParMargin && d.High <= ParMargin ? Verdict.Supported
        : d.Low > ParMargin || d.High < -ParMargin ? Verdict.Contradicted : Verdict.NotResolved;

    public static string Symbol(Verdict v) => v switch { Verdict.Supported => "✓", Verdict.Contradicted => "✗", _ => "not resolved at this scale" };

    /// <summary>The README's results table (between the markers).</summary>
    public static string Markdown(IReadOnlyList<ClaimResult> results)
    {
        var sb = new StringBuilder();
        sb.AppendLine(Begin);
        sb.AppendLine("| the paper's claim | the kit's setting | measured (mean [95 % interval] over seeds) | verdict | file |");
        sb.AppendLine("|---|---|---|---|---|");
        foreach (var r in results)
            sb.AppendLine($"| {r.Claim} | {r.Setting} | {r.Measured} | {Symbol(r.Verdict)} | [`{r.Source}`]({r.Source}) |");
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

    static MeanInterval Interval(SeedReport.PairedRow row)
    {
        double low = Num(row.Low), high = Num(row.High);
        int n = row.Seeds;
        return new MeanInterval(Num(row.Mean), low, high, n, n > 1 ? (high - low) / 2 / SeedStatistics.StudentT975(n - 1) * Math.Sqrt(n) : 0);
    }

    static string Rel(string root, string path) => Path.GetRelativePath(root, path).Replace('\\', '/');

    static string Command(string folder)
    {
        string path = Path.Combine(folder, "COMMAND.txt");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: every committed result needs the command that made it", path);
        return File.ReadAllLines(path).FirstOrDefault(l => l.Trim().Length > 0)?.Trim() ?? throw new FormatException($"{path}: empty");
    }
}

using System.Globalization;
using System.Text.RegularExpressions;

namespace Mora.Tests;

/// <summary>README's numbers in the training example, the <c>designs</c> and the cost sections are the committed files'
/// numbers: each test rebuilds the README text from figures/… and fails when either side is edited alone. A failure prints
/// the expected text, to paste into README after a fresh run.</summary>
public class ReadmeNumbersTests
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    static string Readme => TestSupport.Docs;      // README.md and the documents beside lib/, figures/, notebooks/
    static string Figures(params string[] parts) => Path.Combine([TestSupport.RepoRoot, "figures", .. parts]);

    internal static List<Dictionary<string, string>> Csv(string path)
    {
        var lines = File.ReadAllLines(path).Where(l => l.Length > 0).ToList();
        var header = lines[0].Split(',');
        return lines.Skip(1).Select(l => header.Zip(l.Split(',')).ToDictionary(p => p.First, p => p.Second)).ToList();
    }

    internal static double D(string s) => double.Parse(s, Inv);

    static void AssertReadmeHas(string expected, string what) =>
        Assert.True(Readme.Contains(expected, StringComparison.Ordinal), $"README.md does not have {what}; from the committed files it reads:\n{expected}");

    // ---------------------------------------------------------------- the quick start

    /// <summary>The README's quick start shows what the main job printed last (its table) and how long the two commands
    /// took, from figures/quickstart/ (main-job.txt: the job's output; times.csv: command, seconds, cores, libtorch
    /// threads, as measured), so the first numbers a newcomer reads are a committed run's.</summary>
    [Fact]
    public void TheQuickStartIsTheCommittedMainJobAndItsTimes()
    {
        string readme = File.ReadAllText(Path.Combine(TestSupport.RepoRoot, "README.md"));
        var printed = File.ReadAllLines(Figures("quickstart", "main-job.txt"));
        int head = Array.FindLastIndex(printed, l => l.StartsWith("Character-level accuracy", StringComparison.Ordinal));
        Assert.True(head >= 0, "main-job.txt holds no final table");
        var table = printed[head..].TakeWhile(l => l.Length > 0 && !l.StartsWith("tables:", StringComparison.Ordinal) && !l.StartsWith("figures:", StringComparison.Ordinal)).ToList();
        Assert.True(table.Count >= 5, "the table has its methods");
        Assert.Contains("```\n" + string.Join("\n", table) + "\n```", readme);
        var times = Csv(Figures("quickstart", "times.csv"));
        Assert.Equal(["main job", "test suite"], times.Select(t => t["command"]));
        foreach (var t in times)
        {
            double seconds = D(t["seconds"]);
            string shown = seconds < 120 ? $"{seconds:0} s" : $"{seconds / 60:0} min";
            Assert.Contains($"{t["command"]}: {shown} on {t["cores"]} cores ({t["threads"]} libtorch thread", readme);
        }
    }

    // ---------------------------------------------------------------- the training example

    static readonly Dictionary<string, string> ExampleLabels = new()
    {
        ["Lora"] = "LoRA r = 8 (all linear layers)", ["Mora"] = "MoRA rotation, r = 8 budget", ["Full"] = "full fine-tuning",
    };

    [Fact]
    public void TheExampleTableIsTheCommittedRun()
    {
        var rows = ReadmeExampleResult.Read(ReadmeExampleResult.CommittedFile);
        Assert.Equal(ReadmeExampleResult.Methods, rows.Select(r => r.Method));
        foreach (var r in rows)
            AssertReadmeHas($"| {ExampleLabels[r.Method]} {ReadmeExampleResult.TableCells(r)}", $"the example table's {r.Method} row");
        AssertReadmeHas($"(tiny model, CPU: {rows[0].SnippetSeconds:F0} s on {rows[0].CpuThreads} cores when recorded", "the example's run time");
        AssertReadmeHas($"What it printed on {rows[0].CpuThreads} CPU cores", "the example's core count");
        // The sentence under the table: MoRA ahead of LoRA in character accuracy, both far behind full fine-tuning.
        var by = rows.ToDictionary(r => r.Method);
        AssertReadmeHas("At this scale MoRA is ahead of LoRA and both are far behind full fine-tuning.", "the sentence under the example table");
        Assert.True(by["Mora"].CharAcc > by["Lora"].CharAcc && by["Full"].CharAcc > by["Mora"].CharAcc + 0.2,
            "README says MoRA is ahead of LoRA and both far behind full fine-tuning; the committed run says otherwise");
    }

    // ---------------------------------------------------------------- designs

    const string DesignsFolder = "256x256-r8";

    [Fact]
    public void TheDesignsTableIsTheCommittedRun()
    {
        string table = File.ReadAllText(Figures("designs", DesignsFolder, "designs.txt"));
        string command = File.ReadAllText(Figures("designs", DesignsFolder, "COMMAND.txt")).Trim();
        string readme = Readme;
        string lead = $"`{command["dotnet run -c Release -- ".Length..]}` wrote `figures/designs/{DesignsFolder}/designs.txt`";
        Assert.StartsWith("dotnet run -c Release -- designs ", command);
        int at = readme.IndexOf(lead, StringComparison.Ordinal);
        Assert.True(at >= 0, $"README.md has no line '{lead}'");
        var block = new Regex(@"```\n(.*?)```", RegexOptions.Singleline).Match(readme, at);
        Assert.True(block.Success, "no code block after the designs line");
        Assert.Equal(table, block.Groups[1].Value);

        var rows = Csv(Figures("designs", DesignsFolder, "designs.csv"));
        string Rank(string type) => rows.Single(r => r["type"] == type)["rank"];
        long parameters = long.Parse(rows[0]["parameters"], Inv);
        Assert.All(rows, r => Assert.Equal(parameters, long.Parse(r["parameters"], Inv)));
        int loraRank = int.Parse(Regex.Match(table, @"LoRA at r = \d+ reaches rank ≤ (\d+)").Groups[1].Value, Inv);
        AssertReadmeHas($"With the same {parameters.ToString("N0", Inv)} parameters LoRA's ΔW has rank ≤ {loraRank}, the sharing designs rank r̂ = {Rank("Sharing")}, " +
                        $"and decoupling/rotation rank {Rank("Rotation")} (full).", "the sentence under the designs table");
        Assert.Equal(Rank("Sharing"), rows.Single(r => r["type"] == "Sharing")["r_hat"]);
        Assert.Equal(Rank("Rotation"), Rank("Decouple"));
    }

    // ---------------------------------------------------------------- cost benchmark

    internal const string BenchBegin = "<!-- bench numbers: generated from figures/bench/ (ReadmeNumbersTests.BenchBlock); change the files, not these lines -->";
    internal const string BenchEnd = "<!-- end of bench numbers -->";

    static string F3(double v) => v.ToString("F3", Inv);
    static string F2(double v) => v.ToString("F2", Inv);
    static string Verdict(double ratio, double target) => ratio <= target ? "met" : $"missed by {100 * (ratio / target - 1):F0} %";

    static string DesignLabel(string method) => method switch
    {
        "mora-truncation" => "truncation (Eq. 4–5)",
        "mora-sharing" => "sharing (type 1)",
        "mora-sharingadjacent" => "sharing, adjacent (type 2)",
        "mora-sharingadjacenttiled" => "sharing, adjacent + tiled (type 3)",
        "mora-sharingstriderepeated" => "sharing, stride + runs (type 4)",
        "mora-decouple" => "decoupling (Eq. 8)",
        "mora-rotation" => "rotation (type 6)",
        _ => method,
    };

    /// <summary>The README's bench numbers, rebuilt from figures/bench/full (the full preset), figures/bench/reference-merge
    /// (the second run: the r = 8 layer rows again, and the merge against the reference's algorithm) and
    /// figures/bench/full-before-optimisation.</summary>
    internal static string BenchBlock()
    {
        var full = Csv(Figures("bench", "full", "layer.csv"));
        var before = Csv(Figures("bench", "full-before-optimisation", "layer.csv"));
        var second = Csv(Figures("bench", "reference-merge", "layer.csv"));
        var merge = Csv(Figures("bench", "reference-merge", "merge.csv"));
        var train = Csv(Figures("bench", "full", "train.csv"));
        string fullMd = File.ReadAllText(Figures("bench", "full", "bench.md"));
        string secondMd = File.ReadAllText(Figures("bench", "reference-merge", "bench.md"));
        string Command(string folder) => File.ReadAllText(Figures("bench", folder, "COMMAND.txt")).Trim()["dotnet run -c Release -- ".Length..];
        Dictionary<string, string>? Row(List<Dictionary<string, string>> rows, string method, int r) =>
            rows.SingleOrDefault(x => x["d"] == "4096" && x["k"] == "4096" && x["tokens"] == "2048" && x["method"] == method && x["r"] == $"{r}");
        double Lora(List<Dictionary<string, string>> rows, string method, int r) => D(Row(rows, method, r)!["ratio_to_lora"]);

        List<double> Gflops(string md) => Regex.Matches(md, @"\| \d+x\d+ \| \d+ \| ([\d.]+) \|").Select(m => D(m.Groups[1].Value)).ToList();
        var gflops = Gflops(fullMd);
        var gflops2 = Gflops(secondMd);
        var baseRow = Row(full, "base", 0)!;
        double iqr = 100 * (D(baseRow["p75_ms"]) - D(baseRow["p25_ms"])) / D(baseRow["median_ms"]);
        double wall = D(Regex.Match(secondMd, @"Wall time of the whole benchmark: (\d+) s").Groups[1].Value);
        var trainHeading = Regex.Match(fullMd, @"A whole training step of the (\w+) model \(batch (\d+)");

        var sb = new System.Text.StringBuilder();
        sb.AppendLine(BenchBegin);
        sb.AppendLine($"- `figures/bench/full/`: `{Command("full")}` (wall time not recorded). The base layer ran at {gflops.Min():F0}–{gflops.Max():F0} GFLOP/s; " +
                      $"at 4096×4096 and 2048 tokens its times spread by {iqr:F0} % (IQR over the median).");
        sb.AppendLine($"- `figures/bench/reference-merge/`: `{Command("reference-merge")}` ({wall:F0} s on the shared 2 cores): the r = 8 layer rows again, and ΔW and merge against the reference merge algorithm. " +
                      $"Its base layer ran at {gflops2.Min():F0}–{gflops2.Max():F0} GFLOP/s: the machine was busier than in the full run, so its times are longer and noisier; ratios within the run still compare like with like.");
        sb.AppendLine();
        sb.AppendLine("| 4096×4096, 2048 tokens, CPU float32 | × LoRA (same params), full run | floor | × LoRA, second run | before optimising |");
        sb.AppendLine("|---|---:|---:|---:|---:|");
        foreach (var (label, method, r) in new[] { ("MoRA rotation (type 6), r = 8", "mora-rotation", 8), ("MoRA sharing (type 1), r = 8", "mora-sharing", 8),
                     ("MoRA sharing (type 1), r = 256", "mora-sharing", 256), ("MoRA rotation, r = 256 (r̂ = 1448 does not divide 4096)", "mora-rotation", 256), ("DoRA, r = 8", "dora", 8) })
        {
            var f = Row(full, method, r)!;
            var s2 = Row(second, method, r);
            sb.AppendLine($"| {label} | {F3(D(f["ratio_to_lora"]))} | {F3(D(f["floor_ratio_to_lora"]))} | {(s2 is null ? "not run" : F3(D(s2["ratio_to_lora"])))} | {F3(Lora(before, method, r))} |");
        }
        sb.AppendLine();
        double rot = Lora(full, "mora-rotation", 8), rot2 = Lora(second, "mora-rotation", 8), share256 = Lora(full, "mora-sharing", 256);
        sb.AppendLine($"- **Targets.** Sharing at r = 256: {F3(share256)}× LoRA against ≤ 1.05×, {Verdict(share256, 1.05)}. " +
                      $"Rotation at r = 8: {F3(rot)}× in the full run and {F3(rot2)}× in the second, against ≤ 1.10×: {Verdict(rot, 1.10)} in the full run, {Verdict(rot2, 1.10)} in the second; " +
                      $"its arithmetic floor is {F3(D(Row(full, "mora-rotation", 8)!["floor_ratio_to_lora"]))}×.");
        sb.AppendLine($"- **Peak memory** of rotation at r = 8 (one forward + backward, above the level before it): {D(Row(before, "mora-rotation", 8)!["peak_extra_mi_b"]):F0} MiB before the optimisation, " +
                      $"{D(Row(full, "mora-rotation", 8)!["peak_extra_mi_b"]):F0} MiB in the full run, {D(Row(second, "mora-rotation", 8)!["peak_extra_mi_b"]):F0} MiB in the second (LoRA: {D(Row(full, "lora", 8)!["peak_extra_mi_b"]):F0} and {D(Row(second, "lora", 8)!["peak_extra_mi_b"]):F0} MiB).");
        var lora = train.Single(t => t["method"] == "lora");
        string Step(string method) => (D(train.Single(t => t["method"] == method)["step_ms"]) / D(lora["step_ms"])).ToString("F2", Inv) + "×";
        sb.AppendLine($"- **A training step** of the {trainHeading.Groups[1].Value} model (batch {trainHeading.Groups[2].Value}, full run), relative to LoRA's time: " +
                      string.Join(", ", train.Where(t => t["method"] != "lora").Select(t => $"{(t["method"].StartsWith("mora-") ? DesignLabel(t["method"]) : t["method"] == "full" ? "full fine-tuning" : "DoRA")} {Step(t["method"])}")) + ".");
        sb.AppendLine();
        sb.AppendLine($"ΔW and merge at r = {merge[0]["r"]} (second run; medians; the reference's ΔW is kongds/MoRA get_delta_weight, its merge that and W += ΔW):");
        sb.AppendLine();
        sb.AppendLine("| design | shape | r̂ | kit ΔW ms | reference ΔW ms | kit merge ms | reference merge ms | reference ÷ kit merge | kit merge, % of a layer step |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var m in merge)
        {
            bool has = m["reference_merge_ms"] != "";
            sb.AppendLine($"| {DesignLabel(m["method"])} | {m["d"]}×{m["k"]} | {m["r_hat"]} | {F2(D(m["materialise_ms"]))} | {(has ? F2(D(m["reference_delta_ms"])) : "no such type")} | {F2(D(m["merge_ms"]))} | " +
                          $"{(has ? F2(D(m["reference_merge_ms"])) : "no such type")} | {(has ? D(m["speed_up"]).ToString("F1", Inv) + "×" : "—")} | {F2(D(m["percent_of_layer_step"]))} |");
        }
        var withReference = merge.Where(m => m["reference_merge_ms"] != "").ToList();
        sb.AppendLine();
        sb.AppendLine("- **Kit against the reference merge algorithm:** " + string.Join("; ", withReference.GroupBy(m => $"{m["d"]}×{m["k"]}").Select(g =>
            $"at {g.Key} the reference took {g.Min(m => D(m["speed_up"])):F1}–{g.Max(m => D(m["speed_up"])):F1}× the kit's merge time")) +
            " (types 1, 2, 3, 4, 6; one run on a busy shared machine).");
        double mergeErr = merge.Max(m => D(m["merge_error_vs_delta_weight"]));
        sb.AppendLine($"- The kit's ΔW and the reference algorithm's differ by at most {withReference.Max(m => D(m["max_abs_diff"])).ToString("0.0E+0", Inv)} (float32, the reference's float32 RoPE angles for type 6); " +
                      $"the kit's in-place merge equals W + ΔW {(mergeErr == 0 ? "exactly" : "to " + mergeErr.ToString("0.0E+0", Inv))}.");
        sb.AppendLine($"- Merge under 1 % of one forward + backward of the layer: {merge.Count(m => D(m["percent_of_layer_step"]) < 1)} of {merge.Count} design × shape pairs.");
        sb.Append(BenchEnd);
        return sb.ToString();
    }

    [Fact]
    public void TheBenchNumbersAreTheCommittedRuns()
    {
        string readme = Readme;
        int begin = readme.IndexOf(BenchBegin, StringComparison.Ordinal), end = readme.IndexOf(BenchEnd, StringComparison.Ordinal);
        Assert.True(begin >= 0 && end > begin, "README.md has no generated bench block");
        string expected = BenchBlock();
        Assert.True(readme[begin..(end + BenchEnd.Length)] == expected, $"README's bench block differs from figures/bench/; it should read:\n{expected}");
        // Outside the block, the cost section quotes no measured number: every digit there is a formula, a target or a name.
        int section = readme.IndexOf("## Cost:", StringComparison.Ordinal), next = readme.IndexOf("\n## ", section + 1, StringComparison.Ordinal);
        string outside = readme[section..begin] + readme[(end + BenchEnd.Length)..next];
        var allowed = new Regex(@"4·d·k|6·\(d \+ k\)·r|6·r̂·c|≤ 1\.05×|≤ 1\.10×|1 %|full-before-optimisation|bfloat16|float32|2-core|2 cores|type \d|types \d–\d|types \d and \d|Eq\. \d+|W₀|\b\d+x\d+\b|4096×4096|4096×11008|r = 8|r = 256|--preset \w+|--ranks \d+|--tokens \d+|--train-steps \d+|--shapes[ \dx]+");
        var digits = Regex.Matches(allowed.Replace(outside, ""), @"\d+(\.\d+)?").Select(m => m.Value).ToList();
        Assert.True(digits.Count == 0, $"the cost section quotes numbers outside the generated block: {string.Join(", ", digits)}");
    }
}

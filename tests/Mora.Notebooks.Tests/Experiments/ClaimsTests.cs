using Mora.Adapters;
using Mora.Evaluation;
using Mora.Experiments;

namespace Mora.Tests;

/// <summary>The claims table: verdict rules on intervals, the table read from result files laid out as the experiments
/// write them (seeded random values), the README splice, errors that name the file, and the README held to the committed
/// results.</summary>
public class ClaimsTests
{
    static MeanInterval D(double low, double high, int n = 5) => new((low + high) / 2, low, high, n, 0.01);

    [Fact]
    public void VerdictRules()
    {
        // ✓ on the claim's Holm-adjusted p-value, ✗ on the contrary test's, otherwise not resolved.
        Assert.Equal(Verdict.Supported, Claims.Decide(0.01, 1));
        Assert.Equal(Verdict.Contradicted, Claims.Decide(0.9, 0.01));
        Assert.Equal(Verdict.NotResolved, Claims.Decide(0.06, 0.4));
        Assert.Equal("not resolved at this scale", Claims.Symbol(Verdict.NotResolved));
        // Testable: at least three seeds and some spread.
        Assert.False(Claims.Testable([0.3, 0.3, 0.3]));
        Assert.False(Claims.Testable([0.1, 0.2]));
        Assert.True(Claims.Testable([0.1, 0.2, 0.15]));
        var rng = new Random(TestSupport.Seed());
        List<double> Draw(double mean, double sd, int n = 5) => Enumerable.Range(0, n).Select(_ => mean + sd * (rng.NextDouble() - 0.5) * 3.4).ToList();
        // "Beats": one-sided t; the contrary is the test that B beats A.
        var better = Claims.Test(Hypothesis.Beats, Draw(0.2, 0.02));
        Assert.True(better.P < 0.001 && better.Contrary > 0.999, $"{better}");
        var worse = Claims.Test(Hypothesis.Beats, Draw(-0.2, 0.02));
        Assert.True(worse.P > 0.999 && worse.Contrary < 0.001, $"{worse}");
        // "On par": TOST against ±5 points; the contrary is beyond the margin on either side.
        var par = Claims.Test(Hypothesis.OnPar, Draw(0.001, 0.005));
        Assert.True(par.P < 0.001 && par.Contrary > 0.99, $"{par}");
        var apart = Claims.Test(Hypothesis.OnPar, Draw(-0.2, 0.01));
        Assert.True(apart.P > 0.999 && apart.Contrary < 0.001, $"{apart}");
        var wide = Claims.Test(Hypothesis.OnPar, Draw(0.02, 0.2));
        Assert.True(wide.P > 0.05 && wide.Contrary > 0.05, $"{wide}");
    }

    /// <summary>Holm across the table: a row whose own p-value is below 0.05 is not ✓ once the table's other rows are
    /// counted (the memorisation r = 16 row of the committed results, p ≈ 0.02, is the real case).</summary>
    [Fact]
    public void HolmAcrossTheTableDecidesTheVerdict()
    {
        var rng = new Random(TestSupport.Seed());
        string root = FakeRepo(rng, moraGain: 0.2);
        var rows = Claims.Evaluate(root);
        var tested = rows.Where(r => !double.IsNaN(r.AdjustedP)).ToList();
        // One family: every tested row's claim and its contrary.
        var adjusted = Inference.Holm(tested.Select(r => r.P).Concat(tested.Select(r => r.ContraryP)).ToList());
        Assert.Equal(adjusted, tested.Select(r => r.AdjustedP).Concat(tested.Select(r => r.AdjustedContraryP)));
        Assert.All(tested, r => Assert.True(r.AdjustedP >= r.P && r.AdjustedContraryP >= r.ContraryP));
        Assert.All(rows.Where(r => r.Verdict == Verdict.Contradicted), r => Assert.True(r.AdjustedContraryP < Claims.Alpha));
        Assert.All(rows.Where(r => r.Verdict == Verdict.Supported), r => Assert.True(r.AdjustedP < Claims.Alpha));
        Assert.All(rows, r => Assert.False(string.IsNullOrEmpty(r.Timing), $"{r.Source}: no declared timing"));
        Assert.All(rows, r => Assert.False(string.IsNullOrEmpty(r.Statistic)));
        Assert.All(Claims.Sources, s => Assert.True(Claims.Timing.ContainsKey(s), $"{s}: no declaration in Claims.Timing"));
        string md = Claims.Markdown(rows);
        Assert.Contains("| p (Holm-adjusted) |", md);
        Assert.Contains($"Holm's correction runs over the {2 * tested.Count} p-values of the {tested.Count} tested rows", md);
        Assert.All(rows.Where(r => r.Verdict == Verdict.Contradicted), r => Assert.Contains($"; contrary {Claims.FormatP(r.ContraryP)} ({Claims.FormatP(r.AdjustedContraryP)})", md));
    }

    /// <summary>A memorisation run with character accuracy <paramref name="at"/> at each evaluation step.</summary>
    static RunRecord Memo(MemorizationSpec spec, string method, int rank, int seed, Func<int, double> at) =>
        new(method, rank, seed, 1000, 0.01, spec.EvalSteps.ToDictionary(MemorizationExperiment.CharAccuracyAt, at)
            .Append(KeyValuePair.Create(MemorizationExperiment.ExactMatch, 0.0)).ToDictionary(), 1, 1);

    /// <summary>The summary and paired tables the memorisation job writes of <paramref name="runs"/>.</summary>
    static void WriteTables(string folder, MemorizationSpec spec, IReadOnlyList<RunRecord> runs)
    {
        var experiment = new MemorizationExperiment(spec);
        File.WriteAllText(Path.Combine(folder, MemorizationExperiment.TableFile), SeedReport.RunsCsv(runs, experiment.Columns, false));
        File.WriteAllText(Path.Combine(folder, MemorizationExperiment.SummaryFile), SeedReport.SummaryCsv(runs, experiment.SummaryScores));
        File.WriteAllText(Path.Combine(folder, MemorizationExperiment.PairedFile), SeedReport.PairedCsv(experiment.Paired(runs)));
    }

    /// <summary>A repository with a memorisation and a GSM8K result in the experiments' own formats.</summary>
    static string FakeRepo(Random rng, double moraGain)
    {
        string root = TestSupport.TempDir();
        string memo = Path.Combine(root, "figures", "memorization-cpu-regimes");
        Directory.CreateDirectory(memo);
        var spec = MemorizationSpec.FromPreset("cpu-regimes");
        var runs = new List<RunRecord>();
        foreach (int seed in spec.Seeds)
            foreach (var (m, r) in spec.Configurations())
            {
                double acc = 0.3 + 0.05 * rng.NextDouble() + (m.StartsWith("mora") ? moraGain : 0);
                runs.Add(Memo(spec, m, r, seed, s => acc * s / spec.Steps));
            }
        WriteTables(memo, spec, runs);
        File.WriteAllText(Path.Combine(memo, "COMMAND.txt"), "dotnet run -c Release -- memorization --preset cpu-regimes --steps 200\n");
        ExperimentFolder.Claim(memo, spec with { Pairs = 7 }, MemorizationExperiment.Name);   // spec.json as the job writes it (device blank); it wins over COMMAND.txt
        string math = Path.Combine(root, "figures", "gsm8k-cpu-hour");
        Directory.CreateDirectory(math);
        var lines = new List<string> { "method,rank,seed,trainable_parameters,accuracy_step80,accuracy_step160,final_loss" };
        foreach (int seed in new[] { 0, 1, 2 })
            foreach (var m in new[] { "lora", "mora-rotation" })
                lines.Add($"{m},8,{seed},100,0.1,{0.2 + 0.001 * rng.NextDouble():0.0000},1.5");
        File.WriteAllLines(Path.Combine(math, Gsm8kExperiment.TableFile), lines);
        File.WriteAllText(Path.Combine(math, "COMMAND.txt"), "dotnet run -c Release -- gsm8k --preset cpu-hour\n");
        string pre = Path.Combine(root, "figures", "pretrain-cpu");
        Directory.CreateDirectory(pre);
        var summary = new List<string> { "method,seeds,lr,trainable_parameters,heldout_ppl_mean,heldout_ppl_low95,heldout_ppl_high95,heldout_ppl_sd,heldout_loss_mean,diverged_runs" };
        foreach (var m in new[] { "lora", "relora", "mora", "remora", "full" })
        {
            double ppl = 1.7 + 0.1 * rng.NextDouble();
            summary.Add($"{m},3,0.01,100,{ppl:0.0000},{ppl - 0.01:0.0000},{ppl + 0.01:0.0000},0.005,0.5,0");
        }
        File.WriteAllLines(Path.Combine(pre, "pretrain-summary.csv"), summary);
        // Per run: ReMoRA's perplexity 0.06–0.08 above ReLoRA's on every seed (worse); MoRA's 0–0.02 above LoRA's (spans 0).
        File.WriteAllLines(Path.Combine(pre, PretrainExperiment.TableFile), ["method,seed,heldout_loss,heldout_ppl",
            "relora,1,0.5,1.70", "relora,2,0.5,1.71", "relora,3,0.5,1.72", "remora,1,0.55,1.76", "remora,2,0.55,1.78", "remora,3,0.55,1.80",
            "lora,1,0.5,1.75", "lora,2,0.5,1.75", "lora,3,0.5,1.75", "mora,1,0.5,1.75", "mora,2,0.5,1.76", "mora,3,0.5,1.77"]);
        // ReMoRA's perplexity above ReLoRA's on every seed (worse); MoRA's interval spans 0.
        File.WriteAllLines(Path.Combine(pre, "pretrain-paired.csv"), ["comparison,seeds,ppl_diff_mean,ppl_diff_low95,ppl_diff_high95,per_seed,verdict",
            "remora-relora,3,0.0723,0.0436,0.1009,1:0.06 2:0.07 3:0.08,worse", "mora-lora,3,0.01,-0.02,0.04,1:0.0 2:0.01 3:0.02,spans"]);
        File.WriteAllText(Path.Combine(pre, "COMMAND.txt"), "dotnet run -c Release -- pretrain --preset cpu\n(run from a published copy)\n");
        File.WriteAllText(Path.Combine(pre, "table.txt"), "Held-out perplexity after pretraining from scratch (tiny model, 320 steps of 16×128 characters, rank budget r = 8, merge every 80 steps; seeds 1,2,3)\n" +
            "Learning rate per method: lowest validation perplexity (150 documents apart from the held-out ones) over [0.001] after 160 steps on seed 0 (lr-sweep.csv).\n");
        string cont = Path.Combine(root, "figures", "continual-cpu");
        Directory.CreateDirectory(cont);
        File.WriteAllLines(Path.Combine(cont, "continual-paired.csv"), ["comparison,rank,measure,seeds,mean,low,high",
            "mora-rotation - lora,8,new_exact_match,10,-0.0056,-0.0281,0.0170", "mora-rotation - lora,8,new_char_acc,10,0.0300,0.0100,0.0500"]);
        // Per run: answers' character accuracy 1–5 points above LoRA's on every one of 10 seeds.
        File.WriteAllLines(Path.Combine(cont, ContinualExperiment.TableFile), ["method,rank,seed,new_char_acc,new_answer_loss",
            .. Enumerable.Range(0, 10).SelectMany(seed =>
            {
                double lora = 0.25 + 0.05 * rng.NextDouble();
                return new[] { $"lora,8,{seed},{lora:0.0000},0.5", $"mora-rotation,8,{seed},{lora + 0.01 + 0.04 * rng.NextDouble():0.0000},0.49" };
            })]);
        File.WriteAllText(Path.Combine(cont, "table.txt"), "Continual pretraining on a new domain (12 fictional companies × 3 facts; tiny model, 150 steps; seeds 0,1; mean)\n");
        File.WriteAllText(Path.Combine(cont, "COMMAND.txt"), "OMP_NUM_THREADS=1 dotnet run -c Release -- continual --preset cpu\n");
        return root;
    }

    [Fact]
    public void TableComesFromTheFiles()
    {
        var rng = new Random(TestSupport.Seed());
        var better = Claims.Evaluate(FakeRepo(rng, moraGain: 0.2));
        Assert.Equal(6, better.Count);   // two memorisation regimes, one math row, two pretraining rows, one continual row
        var continual = better.Single(r => r.Claim.StartsWith("Continual"));
        Assert.Equal(Verdict.Supported, continual.Verdict);           // char. accuracy 1–5 points above LoRA
        Assert.Contains("12 fictional companies × 3 facts; tiny model, 150 steps; mora-rotation, r = 8, tuned rates, 10 seeds", continual.Setting);
        Assert.Matches(@"difference [1-5]\.\d \[\d\.\d, \d\.\d\] points", continual.Measured);
        Assert.Equal(Verdict.Contradicted, better.Single(r => r.Claim.Contains("ReMoRA ≥ ReLoRA")).Verdict);
        Assert.Equal(Verdict.NotResolved, better.Single(r => r.Claim.Contains("MoRA ≥ LoRA")).Verdict);
        var remora = better.First(r => r.Claim.Contains("ReMoRA ≥ ReLoRA"));
        Assert.Equal("dotnet run -c Release -- pretrain --preset cpu", remora.Command);   // the first line of COMMAND.txt
        Assert.Contains("tiny model, rank budget r = 8, merged and re-initialised every 80 steps", remora.Setting);
        Assert.Contains("rates tuned on a validation split", remora.Setting);
        Assert.Equal(["Memorisation", "Memorisation", "Math", "Continual", "Pretraining", "Pretraining"], better.Select(r => r.Claim.Split(' ')[0]));   // the paper's order
        Assert.All(better.Take(2), r => Assert.Equal(Verdict.Supported, r.Verdict));
        Assert.Contains("r = 1 (low regime", better[0].Setting);
        Assert.StartsWith("UUID pairs (7 a seed), medium model (hidden 256)", better[0].Setting);
        Assert.Contains("mora-rotation", better[0].Setting);
        Assert.Contains("r = 16 (high regime", better[1].Setting);
        Assert.Contains("200 steps", better[0].Setting);
        // Each curve's state at the end, from the summary's last two evaluations (the fake curves rise linearly).
        Assert.Matches(@"mora-rotation \d+\.\d % \(still rising: \+\d+\.\d points over the last 40 steps\), LoRA \d+\.\d % \(still rising", better[0].Measured);
        Assert.Equal(Verdict.Supported, better[2].Verdict);           // math within ±0.1 point: on par
        var worse = Claims.Evaluate(FakeRepo(rng, moraGain: -0.2));
        Assert.All(worse.Take(2), r => Assert.Equal(Verdict.Contradicted, r.Verdict));
        string md = Claims.Markdown(better);
        Assert.StartsWith(Claims.Begin, md);
        Assert.EndsWith(Claims.End, md);
        Assert.Contains("[`figures/memorization-cpu-regimes/memorization.csv`]", md);
        Assert.Contains("- `dotnet run -c Release -- memorization --preset cpu-regimes --steps 200`", md);
        string readme = $"# T\nbefore\n{Claims.Begin}\nold\n{Claims.End}\nafter\n";
        Assert.Equal($"# T\nbefore\n{md}\nafter\n", Claims.Splice(readme, md));
        Assert.Throws<FormatException>(() => Claims.Splice("no markers", md));
    }

    /// <summary>A longer low-regime run is read as a further memorisation row; a newer GSM8K run supersedes the old one.</summary>
    [Fact]
    public void FurtherRunsJoinAndNewerOnesSupersede()
    {
        var rng = new Random(TestSupport.Seed());
        string root = FakeRepo(rng, moraGain: 0.2);
        string low = Path.Combine(root, "figures", "memorization-cpu-low-regime");
        Directory.CreateDirectory(low);
        var spec = MemorizationSpec.FromPreset("cpu-low-regime");
        var runs = spec.Seeds.SelectMany(seed => spec.Configurations().Select(c =>
            Memo(spec, c.Method, c.Rank, seed, s => s >= 500 ? 0.6 + 0.01 * rng.NextDouble() : 0.3))).ToList();
        WriteTables(low, spec, runs);
        File.WriteAllText(Path.Combine(low, "COMMAND.txt"), "dotnet run -c Release -- memorization --preset cpu-low-regime\n");
        string newer = Path.Combine(root, "figures", "gsm8k-cpu-regimes");
        Directory.CreateDirectory(newer);
        File.WriteAllLines(Path.Combine(newer, Gsm8kExperiment.TableFile), ["method,rank,seed,trainable_parameters,learning_rate,accuracy_step100,final_loss",
            .. new[] { 0, 1, 2, 3, 4 }.SelectMany(seed => new[] { $"lora,1,{seed},100,0.01,{0.3 + 0.01 * rng.NextDouble():0.0000},1", $"mora-rotation,1,{seed},100,0.01,{0.3 + 0.01 * rng.NextDouble():0.0000},1" })]);
        // A newer folder without its command is an error naming it, not a silent return to the older result.
        Assert.Contains(Path.Combine("gsm8k-cpu-regimes", "COMMAND.txt"), Assert.Throws<FileNotFoundException>(() => Claims.Evaluate(root)).Message);
        File.WriteAllText(Path.Combine(newer, "COMMAND.txt"), "dotnet run -c Release -- gsm8k --preset cpu-regimes\n");
        var all = Claims.Evaluate(root);
        var memo = all.Where(r => r.Claim.StartsWith("Memorisation")).ToList();
        Assert.Equal(3, memo.Count);
        Assert.Contains("r = 1 (low regime", memo[2].Setting);
        Assert.Contains("600 steps", memo[2].Setting);
        Assert.Contains("(flat: ", memo[2].Measured);                 // no change over the last 100 steps beyond noise of 1 point
        Assert.Contains("figures/memorization-cpu-low-regime/", memo[2].Source);
        var math = all.Single(r => r.Claim.StartsWith("Math"));        // the old tiny-model run is superseded, not listed beside it
        Assert.Contains("figures/gsm8k-cpu-regimes/", math.Source);
        Assert.Contains("r = 1 (low regime", math.Setting);
        Assert.Contains("200 steps", math.Setting);                     // the settings of the preset its COMMAND.txt names
        Assert.Equal(Verdict.Supported, math.Verdict);                 // within ±1 point of LoRA on every seed
        Assert.DoesNotContain(all, r => r.Source.Contains("gsm8k-cpu-hour"));
    }

    /// <summary>Writes a fake on-par result into <paramref name="folder"/>: LoRA and rotation at r = 1 over 5 seeds, each item
    /// easy or hard for both alike, rotation's rate <paramref name="gap"/> higher; per-item rows, the floor and the table.
    /// Returns the per-seed item scores of rotation and LoRA.</summary>
    static (List<IReadOnlyList<double>> A, List<IReadOnlyList<double>> B) WriteOnPar(Random rng, string folder, string table, string items, string floor, string floorRow, IReadOnlyList<int> seeds, int steps, double gap)
    {
        const int count = 300;
        var lines = new List<string> { $"method,rank,seed,trainable_parameters,learning_rate,accuracy_step{steps},final_loss" };
        var rows = new List<string> { "method,rank,seed,item,answer,correct" };
        var a = new List<IReadOnlyList<double>>();
        var b = new List<IReadOnlyList<double>>();
        var easiness = Enumerable.Range(0, count).Select(_ => rng.NextDouble()).ToList();     // items are easy or hard for every method alike
        foreach (int seed in seeds)
            foreach (var m in new[] { "lora", "mora-rotation" })
            {
                var right = easiness.Select(u => u + 0.1 * rng.NextDouble() < 0.35 + (m == "lora" ? 0 : gap) ? 1.0 : 0.0).ToList();
                (m == "lora" ? b : a).Add(right);
                lines.Add($"{m},1,{seed},100,0.01,{right.Average():0.0000},1");
                rows.AddRange(right.Select((c, i) => $"{m},1,{seed},{i},{(c == 1 ? 7 : 8)},{c}"));
            }
        File.WriteAllLines(Path.Combine(folder, table), lines);
        File.WriteAllLines(Path.Combine(folder, items), rows);
        File.WriteAllLines(Path.Combine(folder, floor), [floorRow.Split('|')[0], .. seeds.Select(s => $"{s},{floorRow.Split('|')[1]}")]);
        return (a, b);
    }

    /// <summary>A fake repository with a GSM8K cpu-unseen result at r = 1 (LoRA and rotation) whose base scored
    /// <paramref name="floor"/>; returns its root and the per-seed item scores of rotation and LoRA.</summary>
    static (string Root, List<IReadOnlyList<double>> A, List<IReadOnlyList<double>> B) Gsm8kRepo(Random rng, double gap, string floor)
    {
        string root = FakeRepo(rng, moraGain: 0.2);
        string folder = Path.Combine(root, "figures", "gsm8k-cpu-regimes");
        Directory.CreateDirectory(folder);
        var spec = Gsm8kSpec.FromPreset("cpu-unseen") with { Ranks = [1], Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation)], MethodRanks = new Dictionary<string, IReadOnlyList<int>>() };
        ExperimentFolder.Claim(folder, spec, Gsm8kExperiment.Name);
        var (a, b) = WriteOnPar(rng, folder, Gsm8kExperiment.TableFile, Gsm8kExperiment.ItemsFile, Gsm8kExperiment.FloorFile, $"seed,base_accuracy,base_no_answer|{floor},0.1000",
            spec.Seeds, spec.Steps, gap);
        File.WriteAllText(Path.Combine(folder, "COMMAND.txt"), "dotnet run -c Release -- gsm8k --preset cpu-unseen\n");
        return (root, a, b);
    }

    /// <summary>With per-item correctness stored, a GSM8K row is tested by the paired bootstrap over items × seeds: equal
    /// per-item rates come out on par, a 30-point gap beyond the margin; the floor and the skeleton hold-out are named.</summary>
    [Theory]
    [InlineData(0.0, Verdict.Supported)]
    [InlineData(0.3, Verdict.Contradicted)]
    public void Gsm8kRowsAreTestedByTheBootstrapOverItemsWhenItemsAreStored(double gap, Verdict expected)
    {
        var (root, a, b) = Gsm8kRepo(new Random(TestSupport.Seed()), gap, "0.0400");
        var math = Claims.Evaluate(root).Single(r => r.Claim.StartsWith("Math"));
        var boot = Mora.Evaluation.Inference.PairedBootstrap(a, b, Claims.ParMargin);
        Assert.Equal(expected, math.Verdict);
        Assert.Equal(boot.P, math.P, 12);
        Assert.Contains($"difference {boot.Difference.Format(100)} points (paired bootstrap over 300 items × 5 seeds)", math.Measured);
        Assert.Contains("the base before fine-tuning 4.0 %", math.Measured);
        Assert.Contains("arithmetic skeletons unseen in the training problems and the pretraining's worked problems", math.Setting);
        Assert.StartsWith("paired t over seeds: difference", math.Secondary);
        Assert.Contains("bootstrap over items × seeds", math.Statistic);
    }

    /// <summary>Two methods that both stay at the base's floor are not "on par" in any sense the claim means: such a row is
    /// not tested, and says why.</summary>
    [Fact]
    public void OnParIsNotTestedAtTheFloor()
    {
        var (root, _, _) = Gsm8kRepo(new Random(TestSupport.Seed()), 0, "0.3300");
        var math = Claims.Evaluate(root).Single(r => r.Claim.StartsWith("Math"));
        Assert.Equal(Verdict.NotResolved, math.Verdict);
        Assert.True(double.IsNaN(math.P));
        Assert.StartsWith("not tested: both mora-rotation", math.Secondary);
        Assert.Contains("of the base's floor (33.0 %)", math.Secondary);
    }

    /// <summary>An instruction-tuning result is read as its own claim (paper §4.2), after memorisation and before math, tested
    /// the same way; its floor names both the instruction prompt's score and the base's own notation's.</summary>
    [Fact]
    public void InstructionTuningIsItsOwnClaim()
    {
        var rng = new Random(TestSupport.Seed());
        string root = FakeRepo(rng, moraGain: 0.2);
        string folder = Path.Combine(root, "figures", "instruct-cpu");
        Directory.CreateDirectory(folder);
        var spec = InstructionSpec.FromPreset("cpu") with { Ranks = [1], Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation)], MethodRanks = new Dictionary<string, IReadOnlyList<int>>() };
        ExperimentFolder.Claim(folder, spec, InstructionExperiment.Name);
        var (a, b) = WriteOnPar(rng, folder, InstructionExperiment.TableFile, InstructionExperiment.ItemsFile, InstructionExperiment.FloorFile,
            "seed,base_accuracy,base_own_format_accuracy,test_facts_in_corpus|0.0000,0.8100,0.9900", spec.Seeds, spec.Steps, 0);
        File.WriteAllText(Path.Combine(folder, "COMMAND.txt"), "dotnet run -c Release -- instruct --preset cpu\n");

        var all = Claims.Evaluate(root);
        Assert.Equal(["Memorisation", "Memorisation", "Instruction", "Math", "Continual", "Pretraining", "Pretraining"], all.Select(r => r.Claim.Split(' ')[0]));
        var row = all.Single(r => r.Claim.StartsWith("Instruction tuning (§4.2)"));
        Assert.Equal(Verdict.Supported, row.Verdict);
        Assert.Equal(Mora.Evaluation.Inference.PairedBootstrap(a, b, Claims.ParMargin).P, row.P, 12);
        Assert.Contains("the base before fine-tuning 0.0 % with the instruction prompt, 81.0 % in its own notation", row.Measured);
        Assert.Contains("arithmetic facts the base learned as drills, asked as instructions (200 fine-tuned on, 400 others scored), tiny model", row.Setting);
        Assert.Contains("r = 1 (high regime, r/d = 1.6 %)", row.Setting);     // the tiny model's width is 64: r = 1 is above the paper's low ratio
        Assert.Contains("run, rates grid, ±5-point margin and test", row.Timing);
    }

    [Fact]
    public void MissingOrBrokenFilesAreNamed()
    {
        var rng = new Random(TestSupport.Seed());
        string root = FakeRepo(rng, 0);
        string perRun = Path.Combine(root, "figures", "memorization-cpu-regimes", MemorizationExperiment.TableFile);
        File.AppendAllText(perRun, "mora-rotation,1,9\n");
        var e = Assert.Throws<FormatException>(() => Claims.Evaluate(root));
        Assert.Contains("memorization.csv:", e.Message);
        File.Delete(perRun);
        Assert.Contains("memorization.csv", Assert.Throws<FileNotFoundException>(() => Claims.Evaluate(root)).Message);
        root = FakeRepo(rng, 0);
        File.Delete(Path.Combine(root, "figures", "gsm8k-cpu-hour", "COMMAND.txt"));
        Assert.Contains("needs the command", Assert.Throws<FileNotFoundException>(() => Claims.Evaluate(root)).Message);
    }
}

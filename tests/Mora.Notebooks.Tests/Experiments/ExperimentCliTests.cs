using Mora.Experiments;

namespace Mora.Tests;

/// <summary>The experiment commands end to end, in a real process: the main job at its smallest preset writes a table with
/// every method and figures; bad arguments are named; a run killed midway resumes to the same table.</summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class ExperimentCliTests
{
    static string Dll => Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.dll");
    static (int Code, string Output) Cli(string args) => NativeAndBuildTests.Run("dotnet", $"\"{Dll}\" {args}");

    [Fact]
    public void MemorizationSmokeRunWritesTableAndFigures()
    {
        string dir = TestSupport.TempDir();
        var (code, output) = Cli($"memorization --preset smoke --out \"{dir}/out\" --figures \"{dir}/fig\"");
        Assert.True(code == 0, output);
        Assert.Contains("Character-level accuracy (%)", output);
        var table = File.ReadAllLines(Path.Combine(dir, "out", MemorizationExperiment.TableFile));
        Assert.Equal("method,rank,seed,trainable_parameters,learning_rate,char_acc_step20,char_acc_step40,exact_match,final_loss", table[0]);
        Assert.Equal(["lora", "mora-rotation", "full"], table.Skip(1).Select(l => l.Split(',')[0]));
        foreach (var row in table.Skip(1))
        {
            var cells = row.Split(',');
            foreach (var c in cells.Skip(4)) Assert.InRange(double.Parse(c, System.Globalization.CultureInfo.InvariantCulture), 0, 10);
            Assert.True(long.Parse(cells[3]) > 0);
        }
        Assert.Equal(4, File.ReadAllLines(Path.Combine(dir, "fig", MemorizationExperiment.SummaryFile)).Length);
        foreach (var f in new[] { "memorization-loss", "memorization-char_acc", "memorization-exact_match" })
        {
            var png = File.ReadAllBytes(Path.Combine(dir, "fig", f + ".png"));
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
            string html = File.ReadAllText(Path.Combine(dir, "fig", f + ".html"));
            Assert.Contains("Plotly.newPlot", html);
            Assert.DoesNotMatch("<script[^>]*src=\"https?://", html);   // plotly.js inlined: opens offline
            Assert.True(html.Length > 1_000_000, "plotly.js should be inlined");
            Assert.Contains("lora-r8-seed0", html);
        }
        Assert.Contains("memorization --preset smoke", File.ReadAllText(Path.Combine(dir, "fig", "COMMAND.txt")));
        // The rank command analyses what each run learned: LoRA's ΔW has rank ≤ r = 8, MoRA rotation's more.
        var (rc, spectra) = Cli($"rank --runs \"{dir}/out\"");
        Assert.True(rc == 0, spectra);
        double MeanRank(string run) => double.Parse(spectra.Split('\n').Single(l => l.StartsWith(run + " ")).Split(' ', StringSplitOptions.RemoveEmptyEntries)[3], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(MeanRank("lora-r8-seed0"), 1, 8);
        Assert.True(MeanRank("mora-rotation-r8-seed0") > 8, spectra);
        Assert.Equal(1 + 3 * 14, File.ReadAllLines(Path.Combine(dir, "out", "learned-spectra.csv")).Length);
        // Started again, it finds every run finished and prints the same table without training.
        var (again, output2) = Cli($"memorization --preset smoke --out \"{dir}/out\" --figures \"{dir}/fig\"");
        Assert.True(again == 0, output2);
        Assert.DoesNotContain("train step", output2);
        Assert.Contains("finished before, reusing its result.json", output2);
        Assert.Contains("reusing the pretrained base", output2);
        Assert.Equal(table, File.ReadAllLines(Path.Combine(dir, "out", MemorizationExperiment.TableFile)));
        // Other settings in the same folder are refused naming them, with the remedy; nothing trains, nothing is rewritten.
        var (pairs, refusal) = Cli($"memorization --preset smoke --pairs 9 --out \"{dir}/out\"");
        Assert.True(pairs == 2, refusal);
        Assert.Contains("--pairs 8 → 9", refusal);
        Assert.Contains("--fresh", refusal);
        var (steps, refusal2) = Cli($"memorization --preset smoke --steps 80 --out \"{dir}/out\"");
        Assert.True(steps == 2, refusal2);
        Assert.Contains("--steps 40 → 80", refusal2);
        // Even with the folder's settings deleted by hand, a result made under other settings is never reused (it once
        // crashed with KeyNotFoundException: the old result had no step 80).
        File.Delete(Path.Combine(dir, "out", ExperimentFolder.SpecFile));
        File.Delete(Path.Combine(dir, "out", ExperimentFolder.InputsFile));
        var (deleted, refusal3) = Cli($"memorization --preset smoke --steps 80 --out \"{dir}/out\"");
        Assert.True(deleted == 2, refusal3);
        Assert.Contains("result.json was made from other settings or inputs", refusal3);
        Assert.DoesNotContain("KeyNotFoundException", refusal3);
        Assert.Equal(table, File.ReadAllLines(Path.Combine(dir, "out", MemorizationExperiment.TableFile)));
    }

    [Fact]
    public void TunedRunPicksEachMethodsRateOnItsOwnSeedAndReportsIntervals()
    {
        string dir = TestSupport.TempDir();
        var (code, output) = Cli($"memorization --preset smoke-tuned --out \"{dir}/out\" --figures \"{dir}/fig\"");
        Assert.True(code == 0, output);
        var sweep = File.ReadAllLines(Path.Combine(dir, "out", LearningRateSweep.File));
        Assert.Equal("method,rank,learning_rate,metric,final_loss,chosen,at_edge", sweep[0]);
        var rows = sweep.Skip(1).Select(l => l.Split(',')).ToList();
        Assert.Equal(["full", "lora", "mora-rotation"], rows.Select(r => r[0]).Distinct().Order());
        foreach (var g in rows.GroupBy(r => r[0]))
        {
            Assert.True(g.Count() >= 2, $"{g.Key}: at least the grid's two rates");
            var chosen = Assert.Single(g, r => r[5] == "1");
            // The table's runs trained at the chosen rate, and the chosen rate scored best in the sweep.
            double best = g.Where(r => r[3] != "diverged").Max(r => double.Parse(r[3], System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(best, double.Parse(chosen[3], System.Globalization.CultureInfo.InvariantCulture));
            var runs = File.ReadAllLines(Path.Combine(dir, "out", MemorizationExperiment.TableFile)).Skip(1).Select(l => l.Split(',')).Where(r => r[0] == g.Key).ToList();
            Assert.Equal(2, runs.Count);
            Assert.All(runs, r => Assert.Equal(chosen[2], r[4]));
        }
        // The sweep is drawn beside its table, in the figures folder too, its horizons in the title.
        foreach (var f in LearningRateSweep.FigureFiles)
            Assert.True(File.Exists(Path.Combine(dir, "fig", f)), f);
        Assert.Contains("learning-rate sweep, tuned on", File.ReadAllText(Path.Combine(dir, "fig", "lr-sweep.html")));
        // Tuning runs used seed 100 only and live apart from the reported runs.
        Assert.All(Directory.GetDirectories(Path.Combine(dir, "out", "sweep")), d => Assert.Contains("-seed100-lr", Path.GetFileName(d)));
        Assert.DoesNotContain(Directory.GetDirectories(Path.Combine(dir, "out", "runs")), d => d.Contains("seed100"));
        // Intervals, the paired differences, the floor and the rule are reported.
        Assert.Contains("mean [95 % interval] over seeds", output);
        Assert.Contains("Floor: the pretrained base scores", output);
        Assert.Contains("mora-rotation − lora at r=8, step 40, per seed:", output);
        Assert.Contains("Rates: learning rate per method and rank: best final character accuracy after 20 steps on tuning seed 100", output);
        var paired = File.ReadAllLines(Path.Combine(dir, "fig", MemorizationExperiment.PairedFile));
        Assert.Equal("rank,method,baseline,metric,seeds,mean_difference,ci_low,ci_high", paired[0]);
        Assert.Contains(paired, l => l.StartsWith("8,mora-rotation,lora,char_acc_step40,2,", StringComparison.Ordinal));
        Assert.Equal(3, File.ReadAllLines(Path.Combine(dir, "fig", MemorizationExperiment.FloorFile)).Length);
        Assert.Contains("char_acc_step40_ci_low", File.ReadAllLines(Path.Combine(dir, "fig", MemorizationExperiment.SummaryFile))[0]);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(Path.Combine(dir, "fig", MemorizationExperiment.MeanFigure + ".png"))[..4]);
        Assert.Contains("floor: base model", File.ReadAllText(Path.Combine(dir, "fig", MemorizationExperiment.MeanFigure + ".html")));
        // The tables read back as the notebooks read committed results.
        var (back, floors) = MemorizationExperiment.ReadTables(Path.Combine(dir, "out"));
        Assert.Equal(6, back.Count);
        Assert.Equal([0, 1], floors.Select(f => f.Seed));
        var first = File.ReadAllLines(Path.Combine(dir, "out", MemorizationExperiment.TableFile))[1].Split(',');
        Assert.Equal(double.Parse(first[5], System.Globalization.CultureInfo.InvariantCulture), back[0].Score(MemorizationExperiment.CharAccuracyAt(20)), 12);
        Assert.Equal(double.Parse(first[4], System.Globalization.CultureInfo.InvariantCulture), back[0].LearningRate, 12);
        var df = Mora.Notebooks.ResultTables.Committed(Path.Combine(dir, "out", LearningRateSweep.File));
        Assert.Equal(sweep.Length - 1, df.Rows.Count);
        Assert.IsType<Microsoft.Data.Analysis.DoubleDataFrameColumn>(df.Columns["learning_rate"]);
        Assert.IsType<Microsoft.Data.Analysis.StringDataFrameColumn>(df.Columns["method"]);
        // Run again: every tuning and reported run is reused.
        var (again, output2) = Cli($"memorization --preset smoke-tuned --out \"{dir}/out\" --figures \"{dir}/fig\"");
        Assert.True(again == 0, output2);
        Assert.DoesNotContain("train step", output2);
        Assert.Equal(sweep, File.ReadAllLines(Path.Combine(dir, "out", LearningRateSweep.File)));
    }

    [Theory]
    [InlineData("memorization --preset smoke-tuned --tune-seed 1", "--tune-seed")]
    [InlineData("memorization --preset smoke-tuned --lr-grid 0.01 -1", "--lr-grid")]
    [InlineData("memorization --preset smoke-tuned --full-lr-grid 0.01 0.01", "--full-lr-grid")]
    [InlineData("memorization --preset smoke-tuned --tune-steps 0", "--tune-steps")]
    [InlineData("gsm8k --preset smoke --lr-grid 0.01 0.03 --tune-steps 5", "--validation-problems")]
    [InlineData("memorization --preset huge", "--preset")]
    [InlineData("memorization --preset smoke --methods lora bora", "--methods")]
    [InlineData("memorization --preset smoke --methods mora-9", "--methods")]
    [InlineData("memorization --preset smoke --steps 0", "--steps")]
    [InlineData("memorization --preset smoke --steps 41", "--steps")]
    [InlineData("memorization --preset smoke --ranks 0", "--ranks")]
    [InlineData("memorization --preset smoke --lr -1", "--lr")]
    [InlineData("memorization --preset smoke --model giant", "preset")]
    [InlineData("memorization --preset smoke --device tpu", "device")]
    [InlineData("plot --runs /nonexistent/folder", "--runs")]
    [InlineData("plot --runs . --name ../escape", "--name")]
    public void BadExperimentArgumentsNameTheProblem(string args, string expected)
    {
        var (code, output) = Cli(args);
        Assert.NotEqual(0, code);
        Assert.Contains("error:", output);
        Assert.Contains(expected, output);
    }

    [Fact]
    public void ChangedSettingsInTheSameFolderAreRefused()
    {
        string dir = TestSupport.TempDir();
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, MemorizationExperiment.SpecFile), "{\"Preset\": \"other\"}");
        var (code, output) = Cli($"memorization --preset smoke --out \"{dir}\"");
        Assert.Equal(2, code);
        Assert.Contains("other settings", output);
        Assert.Equal("{\"Preset\": \"other\"}", File.ReadAllText(Path.Combine(dir, MemorizationExperiment.SpecFile)));   // nothing overwritten
    }

    [Fact]
    public void KilledMidwayItResumesToTheSameTable()
    {
        string straight = TestSupport.TempDir(), killed = TestSupport.TempDir();
        var (code, output) = Cli($"memorization --preset smoke --out \"{straight}\"");
        Assert.True(code == 0, output);

        // Kill the process (not a polite cancel) once the first fine-tuning run has a checkpoint.
        TestSupport.KillWhenExists($"\"{Dll}\" memorization --preset smoke --out \"{killed}\"", Path.Combine(killed, "runs", "lora-r8-seed0", "checkpoints", "latest.json"));
        Assert.False(File.Exists(Path.Combine(killed, MemorizationExperiment.TableFile)));
        var (again, output2) = Cli($"memorization --preset smoke --out \"{killed}\"");
        Assert.True(again == 0, output2);
        Assert.Matches(@"lora-r8-seed0: resuming from step \d+", output2);
        Assert.Equal(File.ReadAllText(Path.Combine(straight, MemorizationExperiment.TableFile)), File.ReadAllText(Path.Combine(killed, MemorizationExperiment.TableFile)));
        // The resumed run's log has every step once.
        var log = Mora.Training.RunLog.ReadCsv(Path.Combine(killed, "runs", "lora-r8-seed0", "log.csv"));
        Assert.Equal(Enumerable.Range(1, 40).Select(i => (long)i), log.Rows.Select(r => r.Step));
    }

    [Fact]
    public void Gsm8kSmokeRunWritesTableAndFigures()
    {
        string dir = TestSupport.TempDir();
        var (code, output) = Cli($"gsm8k --preset smoke --out \"{dir}/out\" --figures \"{dir}/fig\"");
        Assert.True(code == 0, output);
        Assert.Contains("Exact-match accuracy (%)", output);
        var table = File.ReadAllLines(Path.Combine(dir, "out", Gsm8kExperiment.TableFile));
        Assert.Equal("method,rank,seed,trainable_parameters,learning_rate,accuracy_step20,final_loss", table[0]);
        Assert.Equal(["lora", "mora-rotation", "full"], table.Skip(1).Select(l => l.Split(',')[0]));
        Assert.All(table.Skip(1), row => Assert.InRange(double.Parse(row.Split(',')[5], System.Globalization.CultureInfo.InvariantCulture), 0, 1));
        foreach (var f in new[] { "gsm8k-loss.png", "gsm8k-accuracy.png", "gsm8k-accuracy.html", "table.txt", "COMMAND.txt", Gsm8kExperiment.SummaryFile,
                                  Gsm8kExperiment.ItemsFile, Gsm8kExperiment.FloorFile })
            Assert.True(File.Exists(Path.Combine(dir, "fig", f)), f);
        Assert.Contains("test and validation skeletons unseen", output);
        Assert.Contains("Base before fine-tuning (the floor)", output);

        // Per item and run: the answer given at the last step and whether it is right; they add up to the run's accuracy.
        var items = CsvTable.Read(Path.Combine(dir, "fig", Gsm8kExperiment.ItemsFile));
        Assert.Equal("method,rank,seed,item,answer,correct", string.Join(',', items.Header));
        Assert.Equal(3 * 8, items.Rows.Count);
        foreach (var row in table.Skip(1).Select(l => l.Split(',')))
        {
            var mine = items.Rows.Where(r => r["method"] == row[0] && r["rank"] == row[1] && r["seed"] == row[2]).ToList();
            Assert.Equal(Enumerable.Range(0, 8).Select(i => i.ToString()), mine.Select(r => r["item"]));
            Assert.Equal(double.Parse(row[5], System.Globalization.CultureInfo.InvariantCulture), mine.Average(r => double.Parse(r["correct"])), 4);
            var perRun = CsvTable.Read(Path.Combine(dir, "out", "runs", row[1] == "0" ? $"{row[0]}-seed{row[2]}" : $"{row[0]}-r{row[1]}-seed{row[2]}", ItemScores.RunFile));
            Assert.All(perRun.Rows, r => Assert.Equal(r["answer"] == r["expected"] ? "1" : "0", r["correct"]));
        }
        var floor = CsvTable.Read(Path.Combine(dir, "fig", Gsm8kExperiment.FloorFile));
        Assert.Equal("seed,base_accuracy,base_no_answer", string.Join(',', floor.Header));
        Assert.InRange(double.Parse(floor.Rows.Single()["base_accuracy"], System.Globalization.CultureInfo.InvariantCulture), 0, 1);
    }

    /// <summary>The instruction-tuning contrast end to end at test size: per-run and job items that add up to each run's
    /// accuracy, strict scoring (an item is right only when the response line is exactly the value and a full stop), and a
    /// floor with the base's score in its own notation and the share of test facts its corpus holds.</summary>
    [Fact]
    public void InstructSmokeRunWritesItemsAndTheBasesFloor()
    {
        string dir = TestSupport.TempDir();
        var (code, output) = Cli($"instruct --preset smoke --out \"{dir}/out\" --figures \"{dir}/fig\"");
        Assert.True(code == 0, output);
        Assert.Contains("Exact match (%) of the response on 16 arithmetic facts asked as instructions", output);
        Assert.Contains("in its own drill notation (what it knows)", output);
        var table = File.ReadAllLines(Path.Combine(dir, "out", InstructionExperiment.TableFile));
        Assert.Equal("method,rank,seed,trainable_parameters,learning_rate,accuracy_step20,final_loss", table[0]);
        Assert.Equal(["lora", "mora-rotation", "full"], table.Skip(1).Select(l => l.Split(',')[0]));
        var items = CsvTable.Read(Path.Combine(dir, "fig", InstructionExperiment.ItemsFile));
        Assert.Equal(3 * 16, items.Rows.Count);
        foreach (var row in table.Skip(1).Select(l => l.Split(',')))
        {
            var mine = items.Rows.Where(r => r["method"] == row[0] && r["seed"] == row[2]).ToList();
            Assert.Equal(double.Parse(row[5], System.Globalization.CultureInfo.InvariantCulture), mine.Average(r => double.Parse(r["correct"])), 4);
            var perRun = CsvTable.Read(Path.Combine(dir, "out", "runs", row[1] == "0" ? $"{row[0]}-seed{row[2]}" : $"{row[0]}-r{row[1]}-seed{row[2]}", ItemScores.RunFile));
            Assert.All(perRun.Rows, r => Assert.Equal(r["answer"] == r["expected"] ? "1" : "0", r["correct"]));
            Assert.All(perRun.Rows, r => Assert.Matches(@"^-?\d+\.$", r["expected"]));
        }
        var floor = CsvTable.Read(Path.Combine(dir, "fig", InstructionExperiment.FloorFile));
        Assert.Equal("seed,base_accuracy,base_own_format_accuracy,test_facts_in_corpus", string.Join(',', floor.Header));
        Assert.InRange(double.Parse(floor.Rows.Single()["test_facts_in_corpus"], System.Globalization.CultureInfo.InvariantCulture), 0.01, 1);
    }

    /// <summary>An instruction and its response: the drill's expression written out, the value and a full stop.</summary>
    [Fact]
    public void InstructionFormatKeepsTheDrillsExpression()
    {
        var fact = new Mora.Data.ArithmeticFact(12, '+', 7, 19);
        Assert.Equal("12+7 = <<12+7=19>>19", fact.Drill);
        Assert.Equal("Instruction: Compute 12+7.\nResponse: 12+7=", InstructionExperiment.Prompt(fact));
        Assert.Equal("19.", InstructionExperiment.Response(fact));
        var rng = new Random(TestSupport.Seed());
        var style = new Mora.Data.MathStyle { MinSteps = 1, MaxSteps = 2, MaxStart = 20, MaxOperand = 10, MaxFactor = 3 };
        foreach (var f in Enumerable.Range(0, 200).Select(_ => Mora.Data.ArithmeticFact.Next(rng, style)))
            Assert.Equal(f.C, f.Op switch { '+' => f.A + f.B, '-' => f.A - f.B, '*' => f.A * f.B, _ => f.A / f.B });
    }

    [Fact]
    public void Gsm8kTunedRunScoresTuningOnValidationProblemsAndReportsPairedDifferences()
    {
        string dir = TestSupport.TempDir();
        var (code, output) = Cli($"gsm8k --preset smoke-tuned --out \"{dir}/out\" --figures \"{dir}/fig\"");
        Assert.True(code == 0, output);
        Assert.Contains("chosen on the validation split", output);
        Assert.Contains("Rates: learning rate per method and rank: best final accuracy on 8 validation problems after 10 steps on tuning seed 100", output);
        Assert.Contains("mora-rotation − lora at r=8, step 20, per seed:", output);
        var sweep = File.ReadAllLines(Path.Combine(dir, "fig", LearningRateSweep.File)).Skip(1).Select(l => l.Split(',')).ToList();
        Assert.Equal(3, sweep.Count(r => r[5] == "1"));
        var table = File.ReadAllLines(Path.Combine(dir, "out", Gsm8kExperiment.TableFile)).Skip(1).Select(l => l.Split(',')).ToList();
        Assert.Equal(6, table.Count);   // 3 methods × 2 seeds, all on the one base
        Assert.All(table, r => Assert.Equal(sweep.Single(x => x[0] == r[0] && x[5] == "1")[2], r[4]));
        Assert.Single(Directory.GetDirectories(Path.Combine(dir, "out"), "base-seed*"));
        var paired = File.ReadAllLines(Path.Combine(dir, "fig", Gsm8kExperiment.PairedFile));
        Assert.Contains(paired, l => l.StartsWith("8,mora-rotation,lora,accuracy_step20,2,", StringComparison.Ordinal));
    }

    [Fact]
    public void Gsm8kRunsOnTheRealGsm8kFiles()
    {
        string gsm = TestSupport.Gsm8kDir;
        string dir = TestSupport.TempDir();
        var (code, output) = Cli($"gsm8k --preset smoke --train-file \"{gsm}/train.jsonl\" --test-file \"{gsm}/test.jsonl\" --train-problems 12 --test-problems 3 " +
                                 $"--context 2048 --pretrain-steps 0 --steps 2 --methods lora --out \"{dir}\"");
        Assert.True(code == 0, output);
        Assert.Contains("12 training and 3 test problems", output);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(dir, Gsm8kExperiment.TableFile)).Length);
    }

    [Theory]
    [InlineData("gsm8k --preset nope", "--preset")]
    [InlineData("gsm8k --preset smoke --train-file /nonexistent.jsonl --test-file /nonexistent.jsonl", "--train-file")]
    [InlineData("gsm8k --preset smoke --test-file README.md", "--train-file")]
    [InlineData("gsm8k --preset smoke --base /tmp", "--base")]
    [InlineData("gsm8k --preset smoke --methods qlora", "--methods")]
    [InlineData("gsm8k --preset smoke --context 64", "--context")]
    public void BadGsm8kArgumentsNameTheProblem(string args, string expected)
    {
        var (code, output) = Cli(args + $" --out \"{TestSupport.TempDir()}\"");
        Assert.Equal(2, code);
        Assert.Contains(expected, output);
    }

    [Fact]
    public void ABaseWithBadWeightsFailsBeforeAnythingIsWritten()
    {
        string baseDir = TestSupport.TempDir(), outDir = Path.Combine(TestSupport.TempDir(), "out");
        using (var rng = TestSupport.TorchSeed())
        {
            using (var model = new Mora.Model.LlamaForCausalLM(Mora.Model.LlamaConfig.Tiny()))
                Mora.Model.ModelIO.Save(model, baseDir);
            using var wrong = randn(3, 4);
            Mora.IO.SafeTensors.Save(Path.Combine(baseDir, Mora.Model.ModelIO.WeightsFile), [("model.embed_tokens.weight", wrong)]);
        }
        var (code, output) = Cli($"gsm8k --preset smoke --base \"{baseDir}\" --out \"{outDir}\"");
        Assert.True(code is 1 or 2, $"exit {code}: {output}");
        Assert.Contains("model.embed_tokens.weight", output);
        Assert.False(File.Exists(Path.Combine(outDir, Gsm8kExperiment.SpecFile)), "spec.json was written before the base was checked");
    }

    [Fact]
    public void MalformedGsm8kFileNamesFileAndLine()
    {
        string dir = TestSupport.TempDir();
        string bad = Path.Combine(dir, "bad.jsonl");
        File.WriteAllText(bad, "{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"question\": \"q2\"}\n");
        var (code, output) = Cli($"gsm8k --preset smoke --train-file \"{bad}\" --test-file \"{bad}\" --out \"{dir}/out\"");
        Assert.Equal(2, code);                      // bad input: exit 2, no stack trace
        Assert.DoesNotContain("   at ", output);
        Assert.Contains($"{bad}:2: missing field \"answer\"", output);
    }
}

using System.Globalization;
using Mora.Data;
using Mora.Experiments;

namespace Mora.Tests;

/// <summary>The generated pretraining corpus: deterministic from its seed, with disjoint splits and learnable structure.</summary>
public class PretrainCorpusTests
{
    [Fact]
    public void TheSameSeedGivesTheSameCorpusAndAnotherSeedAnother()
    {
        int seed = TestSupport.Seed();
        var a = SyntheticLanguage.Generate(seed, 300, 40);
        var b = SyntheticLanguage.Generate(seed, 300, 40);
        Assert.Equal(a.Train, b.Train);
        Assert.Equal(a.HeldOut, b.HeldOut);
        var c = SyntheticLanguage.Generate(seed + 1, 300, 40);
        Assert.NotEqual(a.Train, c.Train);
        Assert.Equal(300, a.Train.Count);
        Assert.Equal(40, a.HeldOut.Count);
    }

    [Fact]
    public void TheSplitsShareNoDocumentAndUseOneLexicon()
    {
        var corpus = SyntheticLanguage.Generate(TestSupport.Seed(), 2000, 200);
        Assert.Empty(corpus.HeldOut.Intersect(corpus.Train));
        Assert.Equal(corpus.HeldOut.Count, corpus.HeldOut.Distinct().Count());
        // Every word is a determiner, "that", "is"/"are", "." or a lexicon word (with the plural / agreement -s).
        var lexicon = corpus.Language.Nouns.SelectMany(n => n).Concat(corpus.Language.Verbs.Select(v => v.Stem))
            .Concat(corpus.Language.Intransitives.Select(v => v.Stem)).Concat(corpus.Language.SizeAdjectives).Concat(corpus.Language.ColourAdjectives)
            .Concat(["the", "a", "every", "some", "that", "is", "are", "."]).ToHashSet();
        foreach (var word in corpus.Train.Concat(corpus.HeldOut).SelectMany(d => d.Split(' ')))
            Assert.True(lexicon.Contains(word) || (word.EndsWith('s') && lexicon.Contains(word[..^1])), $"'{word}' is not a word of the language");
        // Agreement is learnable structure: a singular subject after "a" takes a verb with -s.
        var tok = new CharTokenizer(strict: true);
        foreach (var d in corpus.Train.Take(50)) Assert.Equal(d.Length, tok.Encode(d).Length);   // only characters of the tokenizer
    }

    [Fact]
    public void BadSizesAreNamed()
    {
        Assert.Equal("trainDocuments", Assert.Throws<ArgumentException>(() => SyntheticLanguage.Generate(0, 0, 5)).ParamName);
        Assert.Equal("heldOutDocuments", Assert.Throws<ArgumentException>(() => SyntheticLanguage.Generate(0, 5, 0)).ParamName);
        Assert.Equal("classes", Assert.Throws<ArgumentException>(() => SyntheticLanguage.Create(0, classes: 1)).ParamName);
    }

    [Fact]
    public void ADivergedRunsResultIsWrittenAndReadBack()
    {
        string dir = TestSupport.TempDir();
        var run = new RunRecord(PretrainMethod.Full.Name(), 0, 1, 100, 0.1,
            new Dictionary<string, double> { [PretrainExperiment.HeldOutLoss] = double.NaN, [PretrainExperiment.HeldOutPerplexity] = double.NaN }, double.NaN, 0, Diverged: true) { Identity = "abc" };
        ExperimentFolder.WriteResult(dir, run);
        var back = ExperimentFolder.ReadResult(dir, "abc")!;
        Assert.True(back.Diverged);
        Assert.True(double.IsNaN(back.Score(PretrainExperiment.HeldOutPerplexity)));
        Assert.Equal("full", back.Method);
        Assert.Contains("\"NaN\"", File.ReadAllText(Path.Combine(dir, ExperimentFolder.ResultFile)));
        // Made under another job's identity, it is refused, not reused.
        Assert.Contains("--fresh", Assert.Throws<ArgumentException>(() => ExperimentFolder.ReadResult(dir, "other")).Message);
    }

    [Fact]
    public void SpecValidationNamesTheProperty()
    {
        var smoke = PretrainSpec.FromPreset("smoke");
        foreach (var (bad, name) in new (PretrainSpec, string)[]
                 {
                     (smoke with { TuneSeed = smoke.Seeds[0] }, "TuneSeed"), (smoke with { Steps = 7 }, "Steps"), (smoke with { RestartWarmupSteps = 3 }, "RestartWarmupSteps"),
                     (smoke with { LrGrid = [0.01, -1] }, "LrGrid"), (smoke with { Methods = [] }, "Methods"), (smoke with { BlockSize = 9999 }, "BlockSize"),
                     (smoke with { Model = "giant" }, "Model"), (smoke with { Rank = 0 }, "Rank"),
                 })
            Assert.Equal(name, Assert.Throws<ArgumentException>(() => bad.Validate()).ParamName);
        Assert.Equal("Preset", Assert.Throws<ArgumentException>(() => PretrainSpec.FromPreset("huge")).ParamName);
        Assert.Equal(PretrainMethod.Remora, PretrainMethods.Parse("ReMoRA"));
        // The reference's two ReMoRA schedules: remora alternates types 1 ↔ 2, remora4 cycles 1 → 2 → 3 → 4.
        Assert.Equal(PretrainMethod.Remora4, PretrainMethods.Parse("remora4"));
        Assert.True(PretrainMethod.Remora4.Merges());
        Assert.Equal([MoraType.Sharing, MoraType.SharingAdjacent], PretrainMethod.Remora.Schedule(80)!.Types);
        Assert.Equal([MoraType.Sharing, MoraType.SharingAdjacent, MoraType.SharingAdjacentTiled, MoraType.SharingStrideRepeated], PretrainMethod.Remora4.Schedule(80)!.Types);
        Assert.Equal(MoraType.Sharing, PretrainMethod.Remora4.Adapter(8)!.MoraType);
        var cycles = new PretrainExperiment(smoke with { Methods = [PretrainMethod.Relora, PretrainMethod.Remora, PretrainMethod.Remora4] });
        Assert.Equal([("remora", "relora"), ("remora4", "relora"), ("remora4", "remora")], cycles.Comparisons);
        Assert.Equal("m", Assert.Throws<ArgumentException>(() => PretrainMethods.Parse("dora", "m")).ParamName);
    }
}

/// <summary>The pretrain command end to end at its smoke preset, in a real process.</summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class PretrainCliTests
{
    static string Dll => Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.dll");
    static (int Code, string Output) Cli(string args) => NativeAndBuildTests.Run("dotnet", $"\"{Dll}\" {args}");

    [Fact]
    public void SmokeRunWritesEveryTableWithItsStatisticsAndResumes()
    {
        string dir = TestSupport.TempDir();
        string args = $"pretrain --preset smoke --threads 1 --out \"{dir}/out\" --figures \"{dir}/fig\"";
        var (code, output) = Cli(args);
        Assert.True(code == 0, output);
        Assert.Contains("Held-out perplexity after pretraining from scratch", output);
        string[] methods = ["lora", "relora", "mora", "remora", "full"];

        var runs = File.ReadAllLines(Path.Combine(dir, "fig", PretrainExperiment.TableFile));
        Assert.Equal("method,rank,seed,trainable_parameters,learning_rate,heldout_loss,heldout_ppl,final_loss,diverged", runs[0]);
        Assert.Equal(2 * methods.Length, runs.Length - 1);
        foreach (var row in runs.Skip(1).Select(r => r.Split(',')))
        {
            double ppl = double.Parse(row[6], CultureInfo.InvariantCulture);
            Assert.InRange(ppl, 1, 101);                                                  // at most uniform over the vocabulary
            Assert.InRange(ppl / Math.Exp(double.Parse(row[5], CultureInfo.InvariantCulture)), 0.9999, 1.0001);   // exp of the mean loss (4 decimals printed)
            Assert.Equal(row[0] == "full" ? "0" : "4", row[1]);                          // the smoke preset's rank budget; full has none
        }
        // LoRA and MoRA train as many parameters at one rank budget (within 3 %: r̂ is rounded to an integer at r = 4); full trains all.
        long Params(string m) => long.Parse(runs.Skip(1).First(r => r.StartsWith(m + ",")).Split(',')[3]);
        Assert.InRange(Params("mora") / (double)Params("lora"), 0.97, 1.03);
        Assert.Equal(Params("lora"), Params("relora"));
        Assert.True(Params("full") > 3 * Params("lora"));

        var summary = File.ReadAllLines(Path.Combine(dir, "fig", PretrainExperiment.SummaryFile));
        Assert.StartsWith("method,rank,seeds,trainable_parameters,learning_rate,heldout_ppl_mean,heldout_ppl_ci_low,heldout_ppl_ci_high,heldout_ppl_sd,heldout_loss_mean,", summary[0]);
        Assert.EndsWith(",diverged_runs", summary[0]);
        Assert.Equal(methods, summary.Skip(1).Select(l => l.Split(',')[0]));
        foreach (var row in summary.Skip(1).Select(r => r.Split(',').Skip(5).Take(3).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()))
            Assert.True(row[1] <= row[0] && row[0] <= row[2], "the interval holds the mean");
        var paired = SeedReport.ReadPaired(Path.Combine(dir, "fig", PretrainExperiment.PairedFile)).Where(p => p.Metric == PretrainExperiment.HeldOutPerplexity).ToList();
        Assert.Equal(["remora-relora", "mora-lora", "relora-lora", "remora-mora", "remora-full"], paired.Select(p => $"{p.Method}-{p.Baseline}"));
        Assert.All(paired, p => Assert.Equal(2, p.Seeds));

        var sweep = File.ReadAllLines(Path.Combine(dir, "fig", PretrainExperiment.SweepFile));
        Assert.Equal("method,rank,learning_rate,metric,final_loss,chosen,at_edge", sweep[0]);   // the one rule's table: metric = minus the validation perplexity
        Assert.InRange(sweep.Length - 1, 2 * methods.Length, (2 + LearningRateSweep.MaxExtensions) * methods.Length);
        foreach (var m in methods) Assert.Single(sweep.Skip(1), l => l.StartsWith(m + ",") && l.Split(',')[5] == "1");
        Assert.All(sweep.Skip(1).Select(l => l.Split(',')[3]), v => Assert.True(v == "diverged" || double.Parse(v, CultureInfo.InvariantCulture) < -1));
        Assert.All(Directory.GetDirectories(Path.Combine(dir, "out", "sweep")),                       // the tuning seed, not an evaluation seed
            d => Assert.Equal(0, System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(d, Mora.Training.Trainer.ManifestFile)))!["seed"]!.GetValue<int>()));
        foreach (var f in new[] { "pretrain-loss", "pretrain-heldout_ppl", "pretrain-heldout-mean", "pretrain-lr" })
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(Path.Combine(dir, "fig", f + ".png"))[..4]);
        Assert.Contains("pretrain --preset smoke", File.ReadAllText(Path.Combine(dir, "fig", "COMMAND.txt")));
        Assert.Contains("remora − relora", File.ReadAllText(Path.Combine(dir, "fig", "table.txt")));

        // Interrupted: one run's result removed and its checkpoints kept; the rerun reuses the rest and resumes that one.
        string reloraDir = Path.Combine(dir, "out", "runs", "relora-seed2");
        File.Delete(Path.Combine(reloraDir, ExperimentFolder.ResultFile));
        var (again, output2) = Cli(args);
        Assert.True(again == 0, output2);
        Assert.Contains("finished before, reusing its result.json", output2);
        Assert.Contains("relora-seed2:", output2);
        Assert.Equal(runs, File.ReadAllLines(Path.Combine(dir, "out", PretrainExperiment.TableFile)));   // the same table
    }

    [Theory]
    [InlineData("pretrain --preset huge", "--preset")]
    [InlineData("pretrain --preset smoke --methods lora dora", "--methods")]
    [InlineData("pretrain --preset smoke --steps 0", "--steps")]
    [InlineData("pretrain --preset smoke --steps 7", "--steps")]
    [InlineData("pretrain --preset smoke --tune-seed 1", "--tune-seed")]
    [InlineData("pretrain --preset smoke --lr-grid 0.01 0", "--lr-grid")]
    [InlineData("pretrain --preset smoke --restart-warmup 3", "--restart-warmup")]
    [InlineData("pretrain --preset smoke --rank 0", "--rank")]
    [InlineData("pretrain --preset smoke --threads 0", "--threads")]
    [InlineData("pretrain --preset smoke --model giant", "--model")]
    public void BadArgumentsExitTwoNamingTheOption(string args, string option)
    {
        var (code, output) = Cli(args);
        Assert.True(code == 2, output);
        Assert.Contains("error:", output);
        Assert.Contains(option, output);
    }
}

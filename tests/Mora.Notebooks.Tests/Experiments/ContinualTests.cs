using System.Globalization;
using Mora.Data;
using Mora.Evaluation;
using Mora.Experiments;
using Mora.Model;
using Mora.Training;
using TorchSharp;

namespace Mora.Tests;

/// <summary>The continual experiment's metrics on hand-made cases and its verdict rule (fast).</summary>
public class ContinualMetricsTests
{
    [Fact]
    public void HeldOutLossOfAModelWithAZeroHeadIsLogVocab()
    {
        // Hand-made case: with the output head zeroed every logit is 0, so each predicted token costs exactly ln V.
        using var _ = TestSupport.TorchSeed();
        var tok = new CharTokenizer();
        using var model = new LlamaForCausalLM(LlamaConfig.Tiny(tok.VocabSize));
        using (torch.no_grad()) model.named_parameters().Single(p => p.name == "lm_head.weight").parameter.zero_();
        var examples = new[] { "Varnholt Works makes rope.", "In 1901, Kelvaro was born.", "ab" }
            .Select(t => new LmExample([tok.BosId, .. tok.Encode(t), tok.EosId], 0)).ToList();
        double loss = Metrics.HeldOutLoss(model, examples, tok.PadId, batchSize: 2);
        Assert.Equal(Math.Log(tok.VocabSize), loss, 5);                       // tolerance 1e-5 (float32 logits)
        Assert.True(model.training);                                          // the mode is restored
    }

    [Fact]
    public void HeldOutLossWeighsEveryTokenOnceAcrossBatches()
    {
        // A random model: the loss over all examples equals the token-weighted mean of each example's own loss, whatever the batching.
        using var _ = TestSupport.TorchSeed();
        var tok = new CharTokenizer();
        using var model = new LlamaForCausalLM(LlamaConfig.Tiny(tok.VocabSize));
        var rng = new Random(TestSupport.Seed());
        var examples = Enumerable.Range(0, 7).Select(_ => new LmExample([tok.BosId, .. Enumerable.Range(0, 3 + rng.Next(20)).Select(_ => 4 + rng.Next(90)), tok.EosId], 0)).ToList();
        double weighted = examples.Sum(e => Metrics.HeldOutLoss(model, [e], tok.PadId) * (e.Tokens.Length - 1)) / examples.Sum(e => e.Tokens.Length - 1);
        Assert.Equal(weighted, Metrics.HeldOutLoss(model, examples, tok.PadId, batchSize: 3), 4);   // tolerance 1e-4
        Assert.Equal(weighted, Metrics.HeldOutLoss(model, examples, tok.PadId, batchSize: 64), 4);
    }

    [Fact]
    public void AnswerScoresOnAHandMadeCase()
    {
        // The scoring Metrics.Answers applies to greedy answers: exact match and position-wise character accuracy.
        var s = Metrics.Memorization(["1874", "Ostrelle", "rop"], ["1874", "Quenmoor", "rope"]);
        Assert.Equal(1.0 / 3, s.ExactMatch, 12);
        Assert.Equal((1 + 0 + 0.75) / 3, s.CharAccuracy, 12);      // "Ostrelle" vs "Quenmoor": no position agrees
    }

    static RunRecord Run(string method, int seed, double newChar, double forgetting = 0.1) =>
        new(method, 8, seed, 1000, 1e-3, new Dictionary<string, double>
        {
            [ContinualExperiment.NewExact] = 0, [ContinualExperiment.NewChar] = newChar, [ContinualExperiment.NewCharBefore] = 0.1, [ContinualExperiment.NewAnswerLoss] = 2.0,
            [ContinualExperiment.NewAnswerLossBefore] = 2.5, [ContinualExperiment.HeldOutLossBefore] = 1.0, [ContinualExperiment.HeldOutLossAfter] = 1.0 + forgetting,
            [ContinualExperiment.Forgetting] = forgetting, [ContinualExperiment.OriginalExactBefore] = 0.5, [ContinualExperiment.OriginalExact] = 0.4,
        }, 0.5, 1);

    [Fact]
    public void TheVerdictFollowsThePairedInterval()
    {
        var rng = new Random(TestSupport.Seed());
        var lora = Enumerable.Range(0, 5).Select(s => Run("lora", s, 0.3 + 0.1 * rng.NextDouble())).ToList();
        double Char(RunRecord r) => r.Score(ContinualExperiment.NewChar);
        List<RunRecord> Mora(double shift, double noise) => lora.Select(l => Run("mora-rotation", l.Seed, Char(l) + shift + noise * (rng.NextDouble() - 0.5))).ToList();
        var experiment = new ContinualExperiment(ContinualSpec.FromPreset("smoke"));
        Assert.StartsWith("✓", experiment.Verdict([.. lora, .. Mora(0.1, 0.01)], "mora-rotation", 8));
        Assert.StartsWith("✗", experiment.Verdict([.. lora, .. Mora(-0.1, 0.01)], "mora-rotation", 8));
        var mixed = lora.Select((l, i) => Run("mora-rotation", l.Seed, Char(l) + (i % 2 == 0 ? 0.05 : -0.05))).ToList();
        Assert.Equal("not resolved at this scale", experiment.Verdict([.. lora, .. mixed], "mora-rotation", 8));
        // The paired table holds every measure, with the per-seed difference as its mean; full fine-tuning is not compared.
        var paired = experiment.Paired([.. lora, .. mixed, Run("full", 0, 0.9)]);
        Assert.Equal(ContinualExperiment.Measures, paired.Select(p => p.Metric));
        Assert.Equal(mixed.Zip(lora, (m, l) => Char(m) - Char(l)).Average(), paired.Single(p => p.Metric == ContinualExperiment.NewChar).Difference.Mean, 12);
    }
}

/// <summary>The continual command end to end in a real process: smoke preset, resume, bad arguments.</summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class ContinualCliTests
{
    static string Dll => Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.dll");
    static (int Code, string Output) Cli(string args) => NativeAndBuildTests.Run("dotnet", $"\"{Dll}\" {args}");

    [Fact]
    public void SmokeRunWritesTablesSweepAndFiguresAndReusesThem()
    {
        string dir = TestSupport.TempDir();
        var (code, output) = Cli($"continual --preset smoke --out \"{dir}/out\" --figures \"{dir}/fig\"");
        Assert.True(code == 0, output);
        Assert.Contains("Continual pretraining on a new domain", output);
        Assert.Contains("mora-rotation − lora, r = 8, new_char_acc", output);
        var table = File.ReadAllLines(Path.Combine(dir, "fig", ContinualExperiment.TableFile));
        Assert.StartsWith("method,rank,seed,trainable_parameters,learning_rate,new_exact_match,new_char_acc", table[0]);
        Assert.Equal(["lora", "mora-rotation", "full", "lora", "mora-rotation", "full"], table.Skip(1).Select(l => l.Split(',')[0]));
        foreach (var row in table.Skip(1))
            foreach (var c in row.Split(',').Skip(5)) Assert.InRange(double.Parse(c, CultureInfo.InvariantCulture), -10, 10);
        // The sweep (the shared rule, LearningRateSweep): every grid value of every method on the tuning seed, plus the
        // extensions past an end; exactly one chosen per method, and the runs use it.
        var sweep = File.ReadAllLines(Path.Combine(dir, "fig", ContinualExperiment.SweepFile)).Select(l => l.Split(',')).ToList();
        Assert.Equal("method,rank,learning_rate,metric,final_loss,chosen,at_edge", string.Join(",", sweep[0]));
        Assert.Equal(3, sweep.Skip(1).Select(s => s[0]).Distinct().Count());
        foreach (var g in sweep.Skip(1).GroupBy(s => s[0]))
        {
            Assert.InRange(g.Count(), 2, 2 + LearningRateSweep.MaxExtensions);
            Assert.All(g, s => Assert.True(s[3] == "diverged" || double.Parse(s[3], CultureInfo.InvariantCulture) < 0));   // minus an answer loss
            string lr = Assert.Single(g, s => s[5] == "1")[2];
            Assert.All(table.Skip(1).Select(l => l.Split(',')).Where(r => r[0] == g.Key), r => Assert.Equal(lr, r[4]));
        }
        Assert.True(Directory.Exists(Path.Combine(dir, "out", "sweep", "lora-r8-seed100-lr0.003")));
        Assert.Contains("Rates: learning rate per method and rank: best final score (minus the teacher-forced answer loss", output);
        Assert.Equal(4, File.ReadAllLines(Path.Combine(dir, "fig", ContinualExperiment.SummaryFile)).Length);
        Assert.Equal(1 + ContinualExperiment.Measures.Count, File.ReadAllLines(Path.Combine(dir, "fig", ContinualExperiment.PairedFile)).Length);
        foreach (var f in new[] { "continual-acquisition", "continual-forgetting", "continual-new_char_acc", "continual-heldout_loss" })
        {
            var png = File.ReadAllBytes(Path.Combine(dir, "fig", f + ".png"));
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
            Assert.Contains("Plotly.newPlot", File.ReadAllText(Path.Combine(dir, "fig", f + ".html")));
        }
        Assert.Contains("continual --preset smoke", File.ReadAllText(Path.Combine(dir, "fig", "COMMAND.txt")));
        // Started again it trains nothing and writes the same table.
        var (again, output2) = Cli($"continual --preset smoke --out \"{dir}/out\" --figures \"{dir}/fig\"");
        Assert.True(again == 0, output2);
        Assert.DoesNotContain("train step", output2);
        Assert.Contains("reusing the pretrained base", output2);
        Assert.Contains("finished before, reusing its result.json", output2);
        Assert.Equal(table, File.ReadAllLines(Path.Combine(dir, "out", ContinualExperiment.TableFile)));
    }

    [Fact]
    public void KilledMidwayItResumesToTheSameTable()
    {
        string straight = TestSupport.TempDir(), killed = TestSupport.TempDir();
        const string args = "continual --preset smoke --steps 40 --eval-points 2 --seeds 0";
        var (code, output) = Cli($"{args} --out \"{straight}\"");
        Assert.True(code == 0, output);
        TestSupport.KillWhenExists($"\"{Dll}\" {args} --out \"{killed}\"", Path.Combine(killed, "runs", "lora-r8-seed0", "checkpoints", "latest.json"));
        Assert.False(File.Exists(Path.Combine(killed, ContinualExperiment.TableFile)));
        var (again, output2) = Cli($"{args} --out \"{killed}\"");
        Assert.True(again == 0, output2);
        Assert.Contains("reusing the pretrained base", output2);
        Assert.Equal(File.ReadAllText(Path.Combine(straight, ContinualExperiment.TableFile)), File.ReadAllText(Path.Combine(killed, ContinualExperiment.TableFile)));
        var log = RunLog.ReadCsv(Path.Combine(killed, "runs", "lora-r8-seed0", "log.csv"));
        Assert.Equal(Enumerable.Range(1, 40).Select(i => (long)i), log.Rows.Select(r => r.Step));
    }

    [Theory]
    [InlineData("continual --preset huge", "--preset")]
    [InlineData("continual --preset smoke --steps 0", "--steps")]
    [InlineData("continual --preset smoke --lr-grid 0.001 -1", "--lr-grid")]
    [InlineData("continual --preset smoke --full-lr-grid 0.001 0.001", "--full-lr-grid")]
    [InlineData("continual --preset smoke --tune-seed 1", "--tune-seed")]
    [InlineData("continual --preset smoke --new-entities 0", "--new-entities")]
    [InlineData("continual --preset smoke --tune-steps 0", "--tune-steps")]
    [InlineData("continual --preset smoke --lr 0.01", "'--lr'")]               // every rate is tuned: no fixed-rate option
    [InlineData("continual --preset smoke --methods lora bora", "--methods")]
    public void BadArgumentsExit2NamingTheOption(string args, string option)
    {
        var (code, output) = Cli(args);
        Assert.True(code == 2, output);
        Assert.Contains("error:", output);
        Assert.Contains(option, output);
    }
}

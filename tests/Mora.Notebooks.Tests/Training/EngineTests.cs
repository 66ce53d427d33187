using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.Experiments;
using Mora.Analysis;
using Mora.Model;
using Mora.Training;

namespace Mora.Tests;

/// <summary>A tiny base model pretrained once on other UUID pairs (so its head has learnt the UUID format), shared by the engine tests.</summary>
public sealed class PretrainedTinyBase
{
    public string Dir { get; } = TestSupport.TempDir();
    public MemorizationTask Task { get; } = new(UuidPairs.Generate(8, seed: 1));
    public double PretrainFirstLoss { get; }
    public double PretrainLastLoss { get; }

    public PretrainedTinyBase()
    {
        using var rng = TestSupport.TorchSeed();
        var pre = new MemorizationTask(UuidPairs.Generate(512, seed: 99));
        using var model = pre.NewModel(LlamaConfig.Tiny(), seed: 0);
        var result = new Trainer(model, new TrainConfig { Steps = 150, BatchSize = 32, LearningRate = 3e-3, WarmupSteps = 10, ShowProgress = false }, pre.Train).Run();
        PretrainFirstLoss = result.Log.Rows[0].Loss;
        PretrainLastLoss = result.Log.Rows[^1].Loss;
        ModelIO.Save(model, Dir);
    }

    public LlamaForCausalLM Load() => ModelIO.Load(Dir);
}

/// <summary>Runs alone: the trainer seeds torch's process-wide generator (dropout, adapter init), which parallel tests would disturb.</summary>
[CollectionDefinition("Engine", DisableParallelization = true)]
public sealed class EngineCollection;

/// <summary>The trainer: every method learns, resume is exact, NaN stops cleanly, logs and manifests are complete.</summary>
[Collection("Engine")]
[Trait("Speed", "Slow")]
public class EngineTests(PretrainedTinyBase fixture) : IClassFixture<PretrainedTinyBase>
{
    static TrainConfig Quick(int steps, string? dir = null) => new()
    {
        Steps = steps, BatchSize = 16, LearningRate = 1e-2, WarmupSteps = 10, ShowProgress = false, OutputDir = dir,
    };

    [Fact]
    public void PretrainingLearnsTheFormat() =>
        // Stated factor: 4.6 (uniform over 101 tokens) down to below 2.8 (the hex entropy is ln 16 ≈ 2.77) in 150 steps.
        Assert.True(fixture.PretrainLastLoss < fixture.PretrainFirstLoss / 1.6, $"pretraining loss {fixture.PretrainFirstLoss:F3} -> {fixture.PretrainLastLoss:F3}");

    public static TheoryData<string, double> Methods => new()
    {
        // method, the factor by which the mean loss of the last 10 steps must fall below that of the first 10 (150 steps, 8 pairs).
        { "lora", 1.25 }, { "dora", 1.2 }, { "mora-rotation", 1.25 }, { "mora-sharing", 1.25 }, { "mora-decouple", 1.2 }, { "full", 3.0 },
    };

    static AdapterConfig Recipe(string method) => method switch
    {
        "lora" => AdapterConfig.Lora(r: 8),
        "dora" => AdapterConfig.Dora(r: 8),
        "mora-rotation" => AdapterConfig.Mora(r: 8, MoraType.Rotation),
        "mora-sharing" => AdapterConfig.Mora(r: 8, MoraType.Sharing),
        "mora-decouple" => AdapterConfig.Mora(r: 8, MoraType.Decouple),
        _ => AdapterConfig.Full(),
    };

    [Theory]
    [MemberData(nameof(Methods))]
    public void EveryMethodDrivesTheLossDown(string method, double factor)
    {
        using var rng = TestSupport.TorchSeed();
        using var model = fixture.Load();
        var adapter = Recipe(method);
        Peft.Inject(model, adapter);
        var config = Quick(150) with { LearningRate = method == "full" ? 3e-3 : 1e-2, EvalEvery = 75 };
        var result = new Trainer(model, config, fixture.Task.Train, fixture.Task.Evaluate, adapter).Run();
        double first = result.Log.Rows.Take(10).Average(r => r.Loss), last = result.Log.Rows.TakeLast(10).Average(r => r.Loss);
        Assert.True(last < first / factor, $"{method}: loss {first:F3} -> {last:F3}, needed a factor {factor}");
        Assert.Equal(150, result.Log.Rows.Count);
        Assert.InRange(result.FinalMetrics["char_acc"], 0, 1);
        Assert.Equal(result.FinalMetrics["char_acc"], result.Log.Rows[^1].Metrics["char_acc"]);
        Assert.True(result.Log.Rows[74].Metrics.ContainsKey("exact_match"));
        if (method != "full") Assert.True(result.TrainableParameters < result.TotalParameters / 4);
    }

    [Fact]
    public void ResumingGivesTheSameContinuationAsNotStopping()
    {
        using var rng = TestSupport.TorchSeed();
        string straight = TestSupport.TempDir(), interrupted = TestSupport.TempDir();
        TrainConfig Config(string dir) => Quick(30, dir) with { CheckpointEvery = 10, KeepCheckpoints = 2, Seed = TestSupport.Seed(), GradAccumulation = 2, BatchSize = 4 };

        using var a = fixture.Load();
        Peft.Inject(a, AdapterConfig.Mora(8, MoraType.Rotation));
        var full = new Trainer(a, Config(straight), fixture.Task.Train).Run();

        using var b = fixture.Load();
        Peft.Inject(b, AdapterConfig.Mora(8, MoraType.Rotation));
        using var cancel = new CancellationTokenSource();
        var first = new Trainer(b, Config(interrupted), fixture.Task.Train);
        first.StepCompleted += s => { if (s == 17) cancel.Cancel(); };
        Assert.ThrowsAny<OperationCanceledException>(() => first.Run(cancel.Token));
        Assert.Equal(17, RunLog.ReadCsv(Path.Combine(interrupted, Trainer.LogFile)).Rows.Count);   // the log as of the stop

        using var c = fixture.Load();                       // a fresh process would start like this
        Peft.Inject(c, AdapterConfig.Mora(8, MoraType.Rotation));
        var resumed = new Trainer(c, Config(interrupted), fixture.Task.Train).Run();
        Assert.Equal(10, resumed.ResumedFromStep);
        Assert.Equal(full.Log.Rows.Select(r => r.Step), resumed.Log.Rows.Select(r => r.Step));       // no step twice, none missing
        Assert.Equal(full.Log.Rows.Select(r => r.Loss), resumed.Log.Rows.Select(r => r.Loss));       // bit-identical on CPU
        Assert.Equal(full.Log.Rows.Select(r => r.Tokens), resumed.Log.Rows.Select(r => r.Tokens));
        var onDisk = RunLog.ReadCsv(Path.Combine(interrupted, Trainer.LogFile));
        Assert.Equal(full.Log.Rows.Select(r => r.Loss), onDisk.Rows.Select(r => r.Loss));
        foreach (var ((_, pa), (_, pc)) in a.named_parameters().Zip(c.named_parameters()))
            Assert.Equal(0, TestSupport.MaxAbs(pa, pc));
        Assert.Equal(["step-20", "step-30"], Directory.GetDirectories(Path.Combine(interrupted, Trainer.CheckpointDir)).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void ResumeRefusesChangedSettings()
    {
        using var rng = TestSupport.TorchSeed();
        string dir = TestSupport.TempDir();
        using var a = fixture.Load();
        Peft.Inject(a, AdapterConfig.Lora(4));
        new Trainer(a, Quick(5, dir), fixture.Task.Train).Run();
        using var b = fixture.Load();
        Peft.Inject(b, AdapterConfig.Lora(4));
        var e = Assert.Throws<ResumeRefusedException>(() => new Trainer(b, Quick(5, dir) with { LearningRate = 0.5 }, fixture.Task.Train).Run());
        Assert.Contains("LearningRate", e.Message);
        using var c = fixture.Load();
        Peft.Inject(c, AdapterConfig.Lora(8));                      // other shapes
        var m = Assert.Throws<CheckpointMismatchException>(() => new Trainer(c, Quick(5, dir), fixture.Task.Train).Run());
        Assert.Contains(m.Problems, p => p.Contains("lora_A.weight") && p.Contains("shape"));
    }

    [Fact]
    public void NanLossStopsWithAClearMessageAndKeepsTheLastGoodCheckpoint()
    {
        using var rng = TestSupport.TorchSeed();
        string dir = TestSupport.TempDir();
        using var model = fixture.Load();
        Peft.Inject(model, AdapterConfig.Mora(8, MoraType.Sharing));
        var trainer = new Trainer(model, Quick(40, dir) with { CheckpointEvery = 5, LogEvery = 1 }, fixture.Task.Train);
        trainer.StepCompleted += s =>
        {
            if (s != 12) return;
            using var _ = no_grad();
            ((MoraLinear)Peft.Adapters(model)[0].Layer).M.fill_(double.NaN);   // a fault after step 12
        };
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Run());
        Assert.Equal(13, e.Step);
        Assert.Equal(10, e.LastCheckpointStep);
        Assert.Contains("step 13", e.Message);
        Assert.Contains("learning rate", e.Message);
        Assert.Contains("step-10", Checkpoints.Latest(dir));
        var log = RunLog.ReadCsv(Path.Combine(dir, Trainer.LogFile));
        Assert.Equal(Enumerable.Range(1, 12).Select(i => (long)i), log.Rows.Select(r => r.Step));
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, Trainer.ManifestFile)))!;
        Assert.Equal("diverged", manifest["status"]!.GetValue<string>());
        // The kept checkpoint still resumes (and the fault is gone with a fresh model).
        using var again = fixture.Load();
        Peft.Inject(again, AdapterConfig.Mora(8, MoraType.Sharing));
        var resumed = new Trainer(again, Quick(40, dir) with { CheckpointEvery = 5, LogEvery = 1 }, fixture.Task.Train).Run();
        Assert.Equal(10, resumed.ResumedFromStep);
        Assert.Equal(40, resumed.Log.Rows.Count);
    }

    [Fact]
    public void SameSeedGivesABitIdenticalLogAndFilesAreComplete()
    {
        using var rng = TestSupport.TorchSeed();
        string d1 = TestSupport.TempDir(), d2 = TestSupport.TempDir();
        RunLog Run(string dir)
        {
            using var again = TestSupport.TorchSeed();    // re-seeded: the same draws for both runs
            using var m = fixture.Load();
            Peft.Inject(m, AdapterConfig.Lora(8, 16, "q_proj", "v_proj") with { Dropout = 0.1 });
            return new Trainer(m, Quick(12, dir) with { Seed = 7, EvalEvery = 6 }, fixture.Task.Train, fixture.Task.Evaluate, AdapterConfig.Lora(8)).Run().Log;
        }
        var l1 = Run(d1);
        var l2 = Run(d2);
        Assert.Equal(l1.Rows.Select(r => r.Loss), l2.Rows.Select(r => r.Loss));
        Assert.Equal(l1.Rows.Select(r => r.GradNorm), l2.Rows.Select(r => r.GradNorm));

        string csv = File.ReadAllText(Path.Combine(d1, Trainer.LogFile));
        Assert.StartsWith("step,tokens,loss,lr,grad_norm,tokens_per_s,wall_s,char_acc,exact_match\n", csv);
        var df = l1.ToDataFrame();
        Assert.Equal(12, df.Rows.Count);
        Assert.Equal(9, df.Columns.Count);
        Assert.Null(df["char_acc"][0]);
        Assert.NotNull(df["char_acc"][5]);
        Assert.Equal(l1.ToCsv(), RunLog.ReadCsv(Path.Combine(d1, Trainer.LogFile)).ToCsv());

        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(d1, Trainer.ManifestFile)))!;
        Assert.Equal("completed", manifest["status"]!.GetValue<string>());
        Assert.Equal("Lora", manifest["method"]!.GetValue<string>());
        Assert.Equal(7, manifest["seed"]!.GetValue<int>());
        Assert.Equal("cpu", manifest["device"]!.GetValue<string>().ToLowerInvariant()[..3]);
        Assert.True(manifest["trainable_parameters"]!.GetValue<long>() > 0);
        Assert.Equal(64, manifest["model"]!["hidden_size"]!.GetValue<int>());
        Assert.Matches("^[0-9a-f]{40}$", manifest["git_commit"]!.GetValue<string>());
        Assert.NotNull(manifest["final_metrics"]!["char_acc"]);
        Assert.Empty(Directory.GetFiles(d1, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void LearningRateScheduleAndValidation()
    {
        using var rng = TestSupport.TorchSeed();
        var c = new TrainConfig { Steps = 110, WarmupSteps = 10, LearningRate = 1.0, MinLrRatio = 0.1 };
        Assert.Equal(0.1, c.LearningRateAt(1), 12);
        Assert.Equal(1.0, c.LearningRateAt(10), 12);
        Assert.Equal(0.55, c.LearningRateAt(60), 12);        // half-way through the cosine: (1 + 0.1) / 2
        Assert.Equal(0.1, c.LearningRateAt(110), 12);
        Assert.Equal(0.55, (c with { Schedule = LrSchedule.Linear }).LearningRateAt(60), 12);
        Assert.Equal(1.0, (c with { Schedule = LrSchedule.Constant }).LearningRateAt(110), 12);
        foreach (var (bad, field) in new (TrainConfig, string)[]
                 {
                     (new() { LearningRate = 0 }, "LearningRate"), (new() { LearningRate = -1 }, "LearningRate"), (new() { Steps = 0 }, "Steps"),
                     (new() { BatchSize = 0 }, "BatchSize"), (new() { GradAccumulation = 0 }, "GradAccumulation"), (new() { DType = "int8" }, "DType"),
                     (new() { Device = ComputeDevice.Cuda(7) }, "Device"), (new() { Beta2 = 1 }, "Beta2"), (new() { MinLrRatio = 2 }, "MinLrRatio"),
                 })
            Assert.Equal(field, Assert.Throws<ArgumentException>(() => bad.Validate()).ParamName);
        using var model = fixture.Load();
        Assert.Throws<InvalidOperationException>(() => { foreach (var p in model.parameters()) p.requires_grad = false; new Trainer(model, Quick(1), fixture.Task.Train).Run(); });
        Assert.Throws<ArgumentException>(() => new Trainer(model, Quick(1), [new LmExample(new int[300], 0)]));
    }
}

/// <summary>The evaluation metrics and the ΔW analysis, on hand-made cases.</summary>
public class MetricTests
{
    [Fact]
    public void CharacterAccuracyAndExactMatch()
    {
        using var rng = TestSupport.TorchSeed();
        Assert.Equal(1.0, Metrics.CharAccuracy("abcd", "abcd"));
        Assert.Equal(0.75, Metrics.CharAccuracy("abxd", "abcd"));
        Assert.Equal(0.5, Metrics.CharAccuracy("ab", "abcd"));            // missing characters count wrong
        Assert.Equal(1.0, Metrics.CharAccuracy("abcdef", "abcd"));        // extra ones are ignored
        Assert.Equal(0.0, Metrics.CharAccuracy("", "abcd"));
        Assert.Equal(0.0, Metrics.CharAccuracy("bcd", "abcd"));          // position by position: a shifted answer is wrong
        var s = Metrics.Memorization(["abcd", "abxd", ""], ["abcd", "abcd", "abcd"]);
        Assert.Equal(1.0 / 3, s.ExactMatch, 12);
        Assert.Equal((1 + 0.75 + 0) / 3, s.CharAccuracy, 12);
        Assert.Throws<ArgumentException>(() => Metrics.Memorization(["a"], ["a", "b"]));
    }

    [Fact]
    public void MathExactMatch()
    {
        using var rng = TestSupport.TorchSeed();
        var s = Metrics.Math(["so #### 12", "#### 1,000", "I think 7", "no idea", "#### 5"], [12m, 1000m, 7m, 3m, 6m]);
        Assert.Equal(3, s.Correct);
        Assert.Equal(1, s.NoAnswer);
        Assert.Equal(0.6, s.ExactMatch, 12);
        Assert.Equal([12m, 1000m, 7m, null, 5m], s.Answers);          // per item, in order: what the bootstrap over items reads
        Assert.Equal([true, true, true, false, false], s.Right);
    }

    [Fact]
    public void DeltaWeightSpectraOfLoraMoraAndFullFineTuning()
    {
        using var rng = TestSupport.TorchSeed();
        using var model = new LlamaForCausalLM(LlamaConfig.Tiny(50));
        Peft.Inject(model, AdapterConfig.Lora(4, 8, "q_proj"));
        using (no_grad()) foreach (var (_, a) in Peft.Adapters(model)) ((LoraLinear)a).B.normal_();
        var lora = DeltaWeightAnalysis.Analyze(model);
        Assert.Equal(2, lora.Count);
        Assert.All(lora, s => { Assert.Equal(4, s.Rank); Assert.InRange(s.EffectiveRank, 1, 4); Assert.Equal(64, s.SingularValues.Length); });

        using var m2 = new LlamaForCausalLM(LlamaConfig.Tiny(50));
        Peft.Inject(m2, AdapterConfig.Mora(4, MoraType.Rotation, "q_proj"));
        using (no_grad()) foreach (var (_, a) in Peft.Adapters(m2)) ((MoraLinear)a).M.normal_();
        Assert.All(DeltaWeightAnalysis.Analyze(m2), s => Assert.True(s.Rank > 4 * 4, $"MoRA rank {s.Rank}"));

        using var m3 = new LlamaForCausalLM(LlamaConfig.Tiny(50));
        Peft.Inject(m3, AdapterConfig.Full("v_proj"));
        var v = Peft.Adapters(m3)[0].Layer;
        using (no_grad()) { using var u = randn(64, 1); using var w = randn(1, 64); v.BaseWeight.add_(u.matmul(w)); }   // a rank-1 change
        var full = DeltaWeightAnalysis.Analyze(m3);
        Assert.Equal(1, full[0].Rank);
        Assert.Equal(1.0, full[0].EffectiveRank, 4);   // float32 round-off in W − W₀ leaves singular values ~1e-7 of the largest
        Assert.Throws<ArgumentException>(() => DeltaWeightAnalysis.Analyze(m3, 0));
    }
}

public class ProgressTests
{
    [Fact]
    public void LineProgressThrottlesButAlwaysShowsTheEnd()
    {
        using var rng = TestSupport.TorchSeed();
        var lines = new List<string>();
        var progress = new LineProgress(lines.Add, TimeSpan.FromHours(1));
        var empty = new Dictionary<string, double>();
        for (int s = 1; s <= 100; s++) progress.Report(new TrainProgress(s, 100, 1.5, 1e-3, 1000, TimeSpan.FromSeconds(s), empty));
        Assert.Equal(2, lines.Count);                   // the first report, then the last
        Assert.StartsWith("train step 100/100 (100 %) loss 1.5", lines[^1]);
        var mid = new TrainProgress(40, 100, 1.234, 1e-3, 5120, TimeSpan.FromSeconds(12), new Dictionary<string, double> { ["char_acc"] = 0.75 });
        Assert.Equal("train step 40/100 (40 %) loss 1.234 lr 1.0e-03 5,120 tok/s 0:00:12 elapsed, 0:00:18 left char_acc 0.75", mid.ToString());
    }
}

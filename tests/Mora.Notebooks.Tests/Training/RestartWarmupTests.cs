using Mora.Adapters;
using Mora.Experiments;
using Mora.Model;
using Mora.Training;

namespace Mora.Tests;

/// <summary>ReLoRA's jagged schedule: after each merge the learning rate warms up again.</summary>
public class RestartWarmupTests
{
    [Fact]
    public void TheRateRampsAgainAfterEachMergeAndIsUnchangedOtherwise()
    {
        var c = new TrainConfig { Steps = 100, WarmupSteps = 10, LearningRate = 1.0, MinLrRatio = 0.1, RestartWarmupSteps = 5 };
        // Before the first merge (after step 30) and without a merge interval: the plain schedule.
        for (int s = 1; s <= 30; s++) Assert.Equal(c.LearningRateAt(s), c.LearningRateAt(s, 30), 15);
        for (int s = 1; s <= 100; s++) Assert.Equal(c.LearningRateAt(s), c.LearningRateAt(s, 0), 15);
        // After the merge: 1/5, 2/5, … of the schedule's value at step 35, then the plain schedule again.
        double top = c.LearningRateAt(35);
        for (int k = 1; k <= 5; k++) Assert.Equal(top * k / 5, c.LearningRateAt(30 + k, 30), 15);
        Assert.True(c.LearningRateAt(31, 30) < c.LearningRateAt(30, 30) / 4, "the first step after a merge should run at a fifth of the rate");
        for (int s = 36; s <= 60; s++) Assert.Equal(c.LearningRateAt(s), c.LearningRateAt(s, 30), 15);
        // The same after the second and third merges; the rate rises within each ramp.
        foreach (int merge in new[] { 60, 90 })
            for (int k = 1; k < 5; k++) Assert.True(c.LearningRateAt(merge + k + 1, 30) > c.LearningRateAt(merge + k, 30));
        Assert.Equal(c.LearningRateAt(95) / 5, c.LearningRateAt(91, 30), 15);
        // Without a restart warm-up the merge interval changes nothing (the default: old runs keep their schedule).
        var plain = c with { RestartWarmupSteps = 0 };
        for (int s = 1; s <= 100; s++) Assert.Equal(plain.LearningRateAt(s), plain.LearningRateAt(s, 30), 15);
        Assert.Equal("RestartWarmupSteps", Assert.Throws<ArgumentException>(() => (c with { RestartWarmupSteps = -1 }).Validate()).ParamName);
    }

    [Fact]
    public void ACheckpointWrittenBeforeTheSettingExistedStillResumes()
    {
        using var rng = TestSupport.TorchSeed();
        var spec = PretrainSpec.FromPreset("smoke");
        var (_, train, _, _) = PretrainExperiment.Data(spec);
        string dir = TestSupport.TempDir();
        var config = new TrainConfig { Steps = 4, BatchSize = 2, CheckpointEvery = 2, OutputDir = dir, ShowProgress = false };
        using (var a = PretrainExperiment.NewModel(spec, PretrainMethod.Lora, 1))
        {
            using var cancel = new CancellationTokenSource();
            var first = new Trainer(a, config, train);
            first.StepCompleted += s => { if (s == 3) cancel.Cancel(); };
            Assert.ThrowsAny<OperationCanceledException>(() => first.Run(cancel.Token));
        }
        // An older kit wrote state.json without RestartWarmupSteps (and no checksums): remove both, as such a checkpoint reads.
        string state = Path.Combine(Checkpoints.Latest(dir)!, "state.json");
        File.Delete(Path.Combine(Checkpoints.Latest(dir)!, RunFolder.ChecksumsFile));
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(state))!;
        Assert.True(node["train"]!.AsObject().Remove("RestartWarmupSteps"));
        File.WriteAllText(state, node.ToJsonString());
        using var b = PretrainExperiment.NewModel(spec, PretrainMethod.Lora, 1);
        Assert.Equal(2, new Trainer(b, config, train).Run().ResumedFromStep);
        // … while a run that now asks for a restart warm-up is told the settings changed.
        using var c = PretrainExperiment.NewModel(spec, PretrainMethod.Lora, 1);
        var e = Assert.Throws<ResumeRefusedException>(() => new Trainer(c, config with { Steps = 4, RestartWarmupSteps = 1 }, train).Run());
        Assert.Contains("RestartWarmupSteps", e.Message);
    }

    [Fact]
    [Trait("Speed", "Slow")]
    public void TheTrainerLogsTheRestartedRateAndAReLoRARunResumesExactly()
    {
        using var rng = TestSupport.TorchSeed();
        var spec = PretrainSpec.FromPreset("smoke");
        var (_, train, _, _) = PretrainExperiment.Data(spec);
        string straight = TestSupport.TempDir(), interrupted = TestSupport.TempDir();
        TrainConfig Config(string dir) => new()
        {
            Steps = 12, BatchSize = 4, LearningRate = 1e-2, WarmupSteps = 2, RestartWarmupSteps = 2, Seed = TestSupport.Seed(),
            OutputDir = dir, CheckpointEvery = 5, ShowProgress = false,
        };
        foreach (var method in new[] { PretrainMethod.Relora, PretrainMethod.Remora })
        {
            using var a = PretrainExperiment.NewModel(spec, method, 3);
            var full = new Trainer(a, Config(Path.Combine(straight, method.Name())), train) { ReMerge = method.Schedule(4) }.Run();
            // The logged rate: plain up to the merge after step 4, a fresh ramp at steps 5-6 and 9-10.
            var lr = full.Log.Rows.Select(r => r.LearningRate).ToList();
            var c = Config("");
            Assert.Equal(c.LearningRateAt(6) / 2, lr[4], 12);
            Assert.Equal(c.LearningRateAt(6), lr[5], 12);
            Assert.Equal(c.LearningRateAt(10) / 2, lr[8], 12);
            // The merge after the last step (12) zeroed the adapters' Adam state and kept that of the embeddings, norms and head.
            var (moments, meta) = Mora.IO.SafeTensors.Load(Path.Combine(Checkpoints.Latest(Path.Combine(straight, method.Name()))!, "optimizer.safetensors"));
            var names = meta.Where(m => m.Key.EndsWith(".name")).ToDictionary(m => m.Value, m => m.Key[..^5]);
            var adapterStates = names.Where(n => n.Key.Contains("lora_")).ToList();
            Assert.NotEmpty(adapterStates);
            Assert.All(adapterStates, n => Assert.Equal("0", meta[n.Value + ".step"]));
            Assert.All(adapterStates, n => Assert.Equal(0, TestSupport.MaxAbs(moments[n.Value + ".exp_avg"])));
            Assert.Equal("12", meta[names["model.embed_tokens.weight"] + ".step"]);
            Assert.True(TestSupport.MaxAbs(moments[names["model.embed_tokens.weight"] + ".exp_avg"]) > 0);
            foreach (var t in moments.Values) t.Dispose();

            // Stopped at step 7 (checkpoint at 5, after the first merge), resumed in a fresh model: the same log and weights.
            using var b = PretrainExperiment.NewModel(spec, method, 3);
            using var cancel = new CancellationTokenSource();
            var first = new Trainer(b, Config(Path.Combine(interrupted, method.Name())), train) { ReMerge = method.Schedule(4) };
            first.StepCompleted += s => { if (s == 7) cancel.Cancel(); };
            Assert.ThrowsAny<OperationCanceledException>(() => first.Run(cancel.Token));
            using var d = PretrainExperiment.NewModel(spec, method, 3);
            var resumed = new Trainer(d, Config(Path.Combine(interrupted, method.Name())), train) { ReMerge = method.Schedule(4) }.Run();
            Assert.Equal(5, resumed.ResumedFromStep);
            Assert.Equal(full.Log.Rows.Select(r => r.Loss), resumed.Log.Rows.Select(r => r.Loss));
            foreach (var ((name, pa), (_, pd)) in a.named_parameters().Zip(d.named_parameters()))
                Assert.True(TestSupport.MaxAbs(pa, pd) == 0, $"{method.Name()}: {name} differs after resuming");
            if (method == PretrainMethod.Remora)
                Assert.All(Peft.Adapters(d), l => Assert.Equal(((MoraLinear)l.Layer).Type, ((MoraLinear)Peft.Adapters(a).First(x => x.Name == l.Name).Layer).Type));

            // A checkpoint past a merge without its merged weights (as written before they were saved) is refused, not
            // resumed on the unmerged base.
            string old = Path.Combine(interrupted, method.Name() + "-old");
            using (var e = PretrainExperiment.NewModel(spec, method, 3))
            {
                using var stop = new CancellationTokenSource();
                var t = new Trainer(e, Config(old), train) { ReMerge = method.Schedule(4) };
                t.StepCompleted += s => { if (s == 7) stop.Cancel(); };
                Assert.ThrowsAny<OperationCanceledException>(() => t.Run(stop.Token));
            }
            File.Delete(Path.Combine(Checkpoints.Latest(old)!, "merged.safetensors"));
            File.Delete(Path.Combine(Checkpoints.Latest(old)!, RunFolder.ChecksumsFile));     // nor checksums, then
            using var f = PretrainExperiment.NewModel(spec, method, 3);
            var refused = Assert.Throws<ResumeRefusedException>(() => new Trainer(f, Config(old), train) { ReMerge = method.Schedule(4) }.Run());
            Assert.Contains("past the merge at step 4 but holds no merged.safetensors", refused.Message);
        }
    }
}

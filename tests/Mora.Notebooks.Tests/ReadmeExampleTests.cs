using Mora.Adapters;
using Mora.Data;
using Mora.Experiments;
using Mora.Model;
using Mora.Training;

namespace Mora.Tests;

/// <summary>The README's code, run as written (keep the two in step).</summary>
public class ReadmeExampleTests
{
    [Fact]
    public void OperatorExample()
    {
        using var rng = TestSupport.TorchSeed();
        // README: "The operators"
        var op = CompressDecompress.ForLoraRank(d: 4096, k: 4096, r: 8, MoraType.Rotation);   // r̂ = 256
        using var M = randn(op.RHat, op.RHat);
        using var x = randn(2, 4096);
        using var h = op.Forward(x, M);          // f_decomp(M f_comp(x)), shape [2, 4096]
        using var dW = op.DeltaWeight(M);        // the 4096 × 4096 ΔW, built without a loop
        Assert.Equal(256, op.RHat);
        Assert.Equal(new long[] { 2, 4096 }, h.shape);
        using var viaW = x.matmul(dW.t());
        Assert.True(TestSupport.MaxAbs(h, viaW) / TestSupport.MaxAbs(viaW) < 1e-4);
        Assert.Equal(4096, op.ExpectedRank());
    }

    [Fact]
    public void AdapterExample()
    {
        using var rng = TestSupport.TorchSeed();
        var model = new ToyModel(dtype: ScalarType.Float32);
        string dir = TestSupport.TempDir();
        // README: "Adapters on a model"
        var config = AdapterConfig.Mora(r: 4, type: MoraType.Rotation, "q_proj", "v_proj");
        Peft.Inject(model, config);                 // base frozen; q_proj and v_proj wrapped
        Console.WriteLine(Peft.Describe(model));    // per-layer r̂, parameters, LoRA budget
        AdapterIO.Save(model, config, dir);         // adapter_model.safetensors + adapter_config.json (PEFT layout)
        Peft.MergeAll(model);                       // fold ΔW into W for inference
        var swapped = config with { Method = AdapterMethod.Lora };   // one argument swaps the method

        string described = Peft.Describe(model);
        Assert.Contains("layers.0.q_proj", described);
        Assert.Contains("trainable", described);
        Assert.True(File.Exists(Path.Combine(dir, AdapterIO.WeightsFile)));
        Assert.Equal(AdapterMethod.Lora, swapped.Method);
        Peft.Inject(new ToyModel(dtype: ScalarType.Float32), swapped);
    }

    [Fact]
    public void MemorizationExample()
    {
        using var rng = TestSupport.TorchSeed();
        string runs = TestSupport.TempDir();
        var printed = new List<string>();
        // README: "Train LoRA, MoRA and full fine-tuning on UUID pairs" (paths under a temporary folder here)
        var task = new MemorizationTask(UuidPairs.Generate(count: 16, seed: 1));        // 16 key → value UUID pairs
        var pretrain = new MemorizationTask(UuidPairs.Generate(count: 512, seed: 2));   // other pairs: the base learns the format
        using (var baseModel = pretrain.NewModel(LlamaConfig.Tiny(), seed: 0))
        {
            new Trainer(baseModel, new TrainConfig { Steps = 150, BatchSize = 32, LearningRate = 3e-3, ShowProgress = false }, pretrain.Train).Run();
            ModelIO.Save(baseModel, Path.Combine(runs, "base"));
        }
        foreach (var (adapter, lr) in new[] { (AdapterConfig.Lora(r: 8), 1e-2), (AdapterConfig.Mora(r: 8, MoraType.Rotation), 1e-2), (AdapterConfig.Full(), 3e-3) })
        {
            using var model = ModelIO.Load(Path.Combine(runs, "base"));
            Peft.Inject(model, adapter);
            var config = new TrainConfig { Steps = 200, BatchSize = 16, LearningRate = lr, EvalEvery = 50, OutputDir = Path.Combine(runs, adapter.Method.ToString()), ShowProgress = false };
            var run = new Trainer(model, config, task.Train, task.Evaluate, adapter).Run();
            printed.Add($"{adapter.Method}: char acc {run.FinalMetrics["char_acc"]:P1}, exact {run.FinalMetrics["exact_match"]:P1}, " +
                        $"{run.TrainableParameters:N0} trainable, loss {run.Log.Rows[0].Loss:F2} -> {run.Log.Rows[^1].Loss:F2}");
        }
        foreach (var line in printed) Console.WriteLine(line);

        Assert.Equal(3, printed.Count);
        foreach (var method in new[] { "Lora", "Mora", "Full" })
        {
            var log = RunLog.ReadCsv(Path.Combine(runs, method, Trainer.LogFile));
            Assert.Equal(200, log.Rows.Count);
            Assert.Equal(4, log.Rows.Count(r => r.Metrics.ContainsKey("char_acc")));
            Assert.True(log.Rows.TakeLast(10).Average(r => r.Loss) < log.Rows.Take(10).Average(r => r.Loss));
        }
    }
}

using Mora.Adapters;

namespace Mora.Tests;

/// <summary>The README's code, run as written (keep the two in step).</summary>
public class ReadmeExampleTests
{
    [Fact]
    public void OperatorExample()
    {
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
}

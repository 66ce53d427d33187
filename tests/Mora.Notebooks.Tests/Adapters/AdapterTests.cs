using Mora.Adapters;
using Mora.IO;
using TorchSharp.Modules;

namespace Mora.Tests;

/// <summary>A small model tree with every kind of parent injection must handle: plain fields, a ModuleList, a
/// Sequential, and a tied output head (typed Linear: never targeted by all-linear).</summary>
public sealed class ToyModel : nn.Module<Tensor, Tensor>
{
    public readonly Embedding embed_tokens;
    public readonly ModuleList<nn.Module<Tensor, Tensor>> layers;
    public readonly Sequential mlp;
    public readonly Linear lm_head;

    public ToyModel(int vocab = 11, int hidden = 24, ScalarType dtype = ScalarType.Float64) : base("ToyModel")
    {
        embed_tokens = nn.Embedding(vocab, hidden, dtype: dtype);
        layers = nn.ModuleList<nn.Module<Tensor, Tensor>>(new ToyAttention(hidden, dtype), new ToyAttention(hidden, dtype));
        mlp = nn.Sequential(("up_proj", nn.Linear(hidden, 2 * hidden, dtype: dtype)), ("act", nn.ReLU()), ("down_proj", nn.Linear(2 * hidden, hidden, dtype: dtype)));
        lm_head = nn.Linear(hidden, vocab, hasBias: false, dtype: dtype);
        lm_head.weight = embed_tokens.weight!;              // tied
        RegisterComponents();
    }

    public override Tensor forward(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var h = embed_tokens.forward(tokens);
        foreach (var l in layers) h = h + l.forward(h);
        h = h + mlp.forward(h);
        return lm_head.forward(h).MoveToOuterDisposeScope();
    }
}

public sealed class ToyAttention : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> q_proj, k_proj, v_proj, o_proj;
    public ToyAttention(int hidden, ScalarType dtype) : base("ToyAttention")
    {
        q_proj = nn.Linear(hidden, hidden, hasBias: false, dtype: dtype);
        k_proj = nn.Linear(hidden, hidden, hasBias: false, dtype: dtype);
        v_proj = nn.Linear(hidden, hidden, hasBias: false, dtype: dtype);
        o_proj = nn.Linear(hidden, hidden, hasBias: false, dtype: dtype);
        RegisterComponents();
    }
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var q = q_proj.forward(x); var k = k_proj.forward(x); var v = v_proj.forward(x);
        var att = softmax(q.matmul(k.transpose(-1, -2)) / Math.Sqrt(q.shape[^1]), -1);
        return o_proj.forward(att.matmul(v)).MoveToOuterDisposeScope();
    }
}

/// <summary>Adapters behind one abstraction, injection, whole-model operations, ReMoRA, IO and argument checks.
/// Tolerance 1e-10 (float64) unless stated.</summary>
public class AdapterTests
{
    static readonly AdapterConfig[] Methods =
    [
        AdapterConfig.Lora(4, 8, AdapterConfig.AllLinear),
        AdapterConfig.Lora(4, 8, AdapterConfig.AllLinear) with { UseRsLora = true },
        AdapterConfig.Dora(4, 8, AdapterConfig.AllLinear),
        AdapterConfig.Mora(4, MoraType.Rotation, AdapterConfig.AllLinear),
        AdapterConfig.Mora(4, MoraType.Sharing, AdapterConfig.AllLinear),
        AdapterConfig.Full(AdapterConfig.AllLinear),
    ];
    public static IEnumerable<object[]> AllMethods() => Enumerable.Range(0, Methods.Length).Select(i => new object[] { i, Methods[i].Method + (Methods[i].UseRsLora ? "+rs" : "") + " " + Methods[i].MoraType });

    static Tensor Tokens(int seed) { using var g = new torch.Generator((ulong)seed); return randint(0, 11, [3, 7], dtype: ScalarType.Int64, generator: g); }

    /// <summary>Perturbs every trainable adapter parameter (B and M start at zero, which would hide errors).</summary>
    static void Perturb(nn.Module model)
    {
        using var _ = no_grad();
        foreach (var (_, a) in Peft.Adapters(model))
            foreach (var (_, p) in a.AdapterParameters()) { using var n = randn_like(p) * 0.1; p.add_(n); }
    }

    [Theory, MemberData(nameof(AllMethods))]
    public void InjectsAllLinearExceptTheHeadAndStartsAsTheBaseModel(int index, string name)
    {
        using var rng = TestSupport.TorchSeed(index);
        var model = new ToyModel();
        using var tokens = Tokens(TestSupport.Seed());
        using var before = model.forward(tokens);
        var injected = Peft.Inject(model, Methods[index]);
        Assert.Equal(new[] { "layers.0.q_proj", "layers.0.k_proj", "layers.0.v_proj", "layers.0.o_proj",
                             "layers.1.q_proj", "layers.1.k_proj", "layers.1.v_proj", "layers.1.o_proj", "mlp.up_proj", "mlp.down_proj" },
                     injected.Select(i => i.Name));
        Assert.All(injected, i => Assert.Equal(Methods[index].Method, i.Layer.Method));
        Assert.IsType<Linear>(model.lm_head);
        using var after = model.forward(tokens);
        Assert.True(TestSupport.MaxAbs(after, before) <= 1e-12, $"{name}: the adapted model differs from the base at initialisation");
        // The replaced modules are what the forward uses and what named_modules reports.
        Assert.Equal(10, model.named_modules().Count(m => m.module is AdaptedLinear));
    }

    [Theory, MemberData(nameof(AllMethods))]
    public void ForwardEqualsMergedWeightsAndMergeUnmergeRestores(int index, string name)
    {
        using var rng = TestSupport.TorchSeed(100 + index);
        var model = new ToyModel();
        var config = Methods[index];
        Peft.Inject(model, config);
        Perturb(model);
        if (config.Method == AdapterMethod.Full)
            using (no_grad()) foreach (var (_, a) in Peft.Adapters(model)) { using var n = randn_like(a.BaseWeight) * 0.1; a.BaseWeight.add_(n); }
        using var tokens = Tokens(TestSupport.Seed(1));
        using var y = model.forward(tokens);
        // x (W₀ + ΔW)ᵀ for each adapted layer
        foreach (var (path, a) in Peft.Adapters(model))
        {
            using var x = randn(4, a.InFeatures, dtype: ScalarType.Float64);
            using var w0 = config.Method == AdapterMethod.Full ? a.BaseWeight.detach() - a.DeltaWeight() : a.BaseWeight.detach().clone();
            using var delta = a.DeltaWeight();
            using var expected = nn.functional.linear(x, w0 + delta, a.Base.bias);
            using var got = a.forward(x);
            double err = TestSupport.MaxAbs(got, expected);
            Assert.True(err <= 1e-10, $"{name} {path}: |layer(x) − x(W₀+ΔW)ᵀ| = {err:g3}");
            Assert.True(TestSupport.MaxAbs(delta) > 0, $"{name} {path}: ΔW is zero after perturbing");
        }
        if (config.Method == AdapterMethod.Full) { Assert.Throws<InvalidOperationException>(() => Peft.UnmergeAll(model)); return; }
        var w0s = Peft.Adapters(model).Select(a => a.Layer.BaseWeight.detach().clone()).ToList();
        Peft.MergeAll(model);
        using var merged = model.forward(tokens);
        Assert.True(TestSupport.MaxAbs(merged, y) <= 1e-10, $"{name}: merged model output differs");
        Peft.UnmergeAll(model);
        foreach (var ((path, a), w0) in Peft.Adapters(model).Zip(w0s))
            Assert.True(TestSupport.MaxAbs(a.BaseWeight, w0) <= 1e-10, $"{name} {path}: unmerge did not restore W₀");
        using var again = model.forward(tokens);
        Assert.True(TestSupport.MaxAbs(again, y) <= 1e-10);
    }

    [Theory, MemberData(nameof(AllMethods))]
    public void EnableDisableAndTrainableCounts(int index, string name)
    {
        using var rng = TestSupport.TorchSeed(200 + index);
        var model = new ToyModel();
        var (_, totalBefore) = Peft.CountParameters(model);
        Assert.Equal(11 * 24 + 2 * 4 * 24 * 24 + (24 * 48 + 48) + (48 * 24 + 24), totalBefore);   // tied head counted once
        var config = Methods[index];
        var injected = Peft.Inject(model, config);
        var (trainable, total) = Peft.CountParameters(model);
        long adapterSum = injected.Sum(i => i.Layer.AdapterParameterCount);
        if (config.Method == AdapterMethod.Full) { Assert.Equal(totalBefore, trainable); Assert.Equal(totalBefore, total); }
        else
        {
            Assert.Equal(adapterSum, trainable);
            Assert.Equal(totalBefore + adapterSum, total);
            long expected = config.Method switch
            {
                AdapterMethod.Lora => 8 * (24 + 24) * 4 + (48 + 24) * 4 * 2,
                AdapterMethod.Dora => 8 * ((24 + 24) * 4 + 24) + (48 + 24) * 4 * 2 + 48 + 24,
                _ => injected.Sum(i => (long)((MoraLinear)i.Layer).RHat * ((MoraLinear)i.Layer).RHat),
            };
            Assert.Equal(expected, trainable);
        }
        Perturb(model);
        using var tokens = Tokens(5);
        using var on = model.forward(tokens);
        Peft.SetEnabled(model, false);
        using var off = model.forward(tokens);
        Peft.SetEnabled(model, true);
        using var on2 = model.forward(tokens);
        Assert.True(TestSupport.MaxAbs(on, off) > 1e-6, $"{name}: disabling changed nothing");
        Assert.Equal(0.0, TestSupport.MaxAbs(on, on2));
    }

    [Fact]
    public void DisabledAdapterEqualsTheBaseModel()
    {
        using var rng = TestSupport.TorchSeed(300);
        var model = new ToyModel();
        using var tokens = Tokens(6);
        using var baseOut = model.forward(tokens);
        Peft.Inject(model, AdapterConfig.Mora(4, MoraType.Rotation, AdapterConfig.AllLinear));
        Perturb(model);
        Peft.SetEnabled(model, false);
        using var off = model.forward(tokens);
        Assert.True(TestSupport.MaxAbs(off, baseOut) <= 1e-12);
    }

    [Fact]
    public void ReMoRAMergesReinitialisesAndSwitchesDesignWithoutChangingTheFunction()
    {
        using var rng = TestSupport.TorchSeed(400);
        var model = new ToyModel();
        Peft.Inject(model, AdapterConfig.Mora(4, MoraType.Sharing, "q_proj", "v_proj"));
        var layers = Peft.Adapters(model).Select(a => (MoraLinear)a.Layer).ToList();
        var mParams = layers.Select(l => l.M).ToList();
        Perturb(model);
        using var tokens = Tokens(7);
        using var before = model.forward(tokens);
        var schedule = ReMergeSchedule.Alternating(every: 3);
        Assert.False(schedule.AfterStep(model, 2));
        Assert.True(schedule.AfterStep(model, 3));
        using var after = model.forward(tokens);
        Assert.True(TestSupport.MaxAbs(after, before) <= 1e-10, "merge-and-reinit changed the model's function");
        Assert.All(layers, l => Assert.Equal(0.0, TestSupport.MaxAbs(l.M)));
        Assert.All(layers, l => Assert.False(l.Merged));
        Assert.All(layers, l => Assert.Equal(MoraType.SharingAdjacent, l.Type));            // step 3 / every 3 = stretch 1
        Assert.True(layers.Select(l => l.M).Zip(mParams).All(p => ReferenceEquals(p.First, p.Second)), "the optimizer's parameters were replaced");
        Perturb(model);
        Assert.True(schedule.AfterStep(model, 6));
        Assert.All(layers, l => Assert.Equal(MoraType.Sharing, l.Type));
        // The reference's default cycle (remora_types = 4): 1 → 2 → 3 → 4 → 1, one type a stretch, the function kept at every merge.
        var cycle = ReMergeSchedule.ReferenceCycle(every: 2);
        var seen = new List<MoraType>();
        for (int step = 1; step <= 10; step++)
        {
            Perturb(model);
            using var pre = model.forward(tokens);
            if (!cycle.AfterStep(model, step)) continue;
            using var post = model.forward(tokens);
            Assert.True(TestSupport.MaxAbs(post, pre) <= 1e-10, $"step {step}: the merge changed the model's function");
            seen.Add(layers[0].Type);
            Assert.All(layers, l => Assert.Equal(cycle.TypeAfter(step), l.Type));
        }
        Assert.Equal([MoraType.SharingAdjacent, MoraType.SharingAdjacentTiled, MoraType.SharingStrideRepeated, MoraType.Sharing, MoraType.SharingAdjacent], seen);
        // ReLoRA for LoRA and DoRA keeps the function too
        foreach (var cfg in new[] { AdapterConfig.Lora(4, 8, "q_proj"), AdapterConfig.Dora(4, 8, "q_proj") })
        {
            var m2 = new ToyModel();
            Peft.Inject(m2, cfg);
            Perturb(m2);
            using var b2 = m2.forward(tokens);
            Peft.MergeAndReinit(m2);
            using var a2 = m2.forward(tokens);
            Assert.True(TestSupport.MaxAbs(a2, b2) <= 1e-10, $"{cfg.Method}: merge-and-reinit changed the function");
        }
        // a rotation switch with an odd r̂ is refused, naming the argument
        var odd = new MoraLinear(nn.Linear(37, 90, dtype: ScalarType.Float64), 3, MoraType.Sharing, rHat: 19);
        var e = Assert.Throws<ArgumentException>(() => odd.SwitchType(MoraType.Rotation));
        Assert.Equal("rHat", e.ParamName);
    }

    [Theory]
    [InlineData(0)] [InlineData(2)] [InlineData(3)]
    public void AdapterSaveLoadRoundTripsWithPeftNames(int index)
    {
        using var rng = TestSupport.TorchSeed(500 + index);
        var config = Methods[index];
        var model = new ToyModel();
        Peft.Inject(model, config);
        Perturb(model);
        string dir = TestSupport.TempDir();
        AdapterIO.Save(model, config, dir);
        var (entries, _, _) = SafeTensors.ReadHeader(Path.Combine(dir, AdapterIO.WeightsFile));
        Assert.Contains(entries, e => e.Name == "base_model.model.layers.0.q_proj.lora_A.weight");
        if (config.Method != AdapterMethod.Mora) Assert.Contains(entries, e => e.Name == "base_model.model.mlp.down_proj.lora_B.weight");
        else Assert.DoesNotContain(entries, e => e.Name.Contains("lora_B"));
        if (config.Method == AdapterMethod.Dora) Assert.Contains(entries, e => e.Name == "base_model.model.layers.1.v_proj.lora_magnitude_vector");   // PEFT's name
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterIO.ConfigFile)))!.AsObject();
        if (config.Method == AdapterMethod.Mora)
        {
            Assert.True(json["use_mora"]!.GetValue<bool>());
            Assert.Equal((int)config.MoraType, json["mora_type"]!.GetValue<int>());
        }
        else Assert.False(json.ContainsKey("use_mora") || json.ContainsKey("mora_type"), "official PEFT's LoraConfig rejects use_mora / mora_type");
        Assert.Equal(config.Method == AdapterMethod.Dora, json["use_dora"]!.GetValue<bool>());
        Assert.Equal(config.R, json["r"]!.GetValue<int>());

        // load into a fresh copy of the same base model
        var fresh = new ToyModel();
        using (no_grad())
            foreach (var ((n1, p1), (n2, p2)) in fresh.named_parameters().Zip(model.named_parameters().Where(p => !p.name.Contains("lora_"))))
                p1.copy_(p2);
        AdapterIO.Load(fresh, dir);
        using var tokens = Tokens(8);
        using var y1 = model.forward(tokens);
        using var y2 = fresh.forward(tokens);
        Assert.True(TestSupport.MaxAbs(y1, y2) <= 1e-12);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void LoadingIntoAMismatchedModelListsEveryProblem()
    {
        using var rng = TestSupport.TorchSeed();
        var model = new ToyModel();
        var config = AdapterConfig.Mora(4, MoraType.Rotation, "q_proj", "v_proj");
        Peft.Inject(model, config);
        string dir = TestSupport.TempDir();
        AdapterIO.Save(model, config, dir);
        var other = new ToyModel(hidden: 32);
        Peft.Inject(other, config with { TargetModules = ["q_proj", "k_proj"] });
        var e = Assert.Throws<AdapterMismatchException>(() => AdapterIO.LoadWeights(other, dir));
        Assert.Contains(e.Problems, p => p.StartsWith("missing tensor base_model.model.layers.0.k_proj.lora_A.weight"));
        Assert.Contains(e.Problems, p => p.StartsWith("unexpected tensor base_model.model.layers.1.v_proj.lora_A.weight"));
        Assert.Contains(e.Problems, p => p.Contains("layers.0.q_proj.lora_A.weight: file has shape"));
        Assert.Equal(6, e.Problems.Count);   // 2 shape, 2 missing, 2 unexpected
        Directory.Delete(dir, true);
    }

    [Fact]
    public void InjectionErrorsNameTheProblem()
    {
        using var rng = TestSupport.TorchSeed();
        var e1 = Assert.Throws<ArgumentException>(() => Peft.Inject(new ToyModel(), AdapterConfig.Lora(4, 8, "nothing_like_this")));
        Assert.Equal("TargetModules", e1.ParamName);
        Assert.Contains("layers.0.q_proj", e1.Message);      // lists what exists
        var e2 = Assert.Throws<ArgumentException>(() => Peft.Inject(new ToyModel(), AdapterConfig.Lora(4, 8, "lm_head")));
        Assert.Contains("typed Linear", e2.Message);
        var twice = new ToyModel();
        Peft.Inject(twice, AdapterConfig.Lora(4, 8, "q_proj"));
        Assert.Throws<InvalidOperationException>(() => Peft.Inject(twice, AdapterConfig.Lora(4, 8, "k_proj")));
    }

    [Fact]
    public void CachedOperatorTablesSurviveTheCallersDisposeScope()
    {
        using var rng = TestSupport.TorchSeed();
        var op = new CompressDecompress(40, 90, 20, MoraType.Rotation);
        using var m = randn(20, 20, dtype: ScalarType.Float64);
        using var x = randn(2, 90, dtype: ScalarType.Float64);
        using (var scope = NewDisposeScope()) { op.Forward(x, m); op.DeltaWeight(m); }
        using var y = op.Forward(x, m);
        using var dw = op.DeltaWeight(m);
        using var expected = x.matmul(dw.t());
        Assert.True(TestSupport.MaxAbs(y, expected) <= 1e-10);
    }
}

public class HalfPrecisionTests
{
    /// <summary>Counting, injection and a forward in the GPU dtypes (run on CPU here): bfloat16 and float16.
    /// Tolerance: 2e-2 relative (8-bit and 11-bit mantissas).</summary>
    [Theory]
    [InlineData(ScalarType.BFloat16)] [InlineData(ScalarType.Float16)]
    public void CountsAndForwardInHalfPrecision(ScalarType dt)
    {
        using var rng = TestSupport.TorchSeed();
        var model = new ToyModel(dtype: dt);
        var (_, total) = Peft.CountParameters(model);
        Assert.Equal(11 * 24 + 2 * 4 * 24 * 24 + (24 * 48 + 48) + (48 * 24 + 24), total);   // tied head once
        Peft.Inject(model, AdapterConfig.Mora(4, MoraType.Rotation, "q_proj"));
        var layer = (Mora.Adapters.MoraLinear)Peft.Adapters(model)[0].Layer;
        Assert.Equal(dt, layer.M.dtype);
        using (no_grad()) { using var m = randn(layer.RHat, layer.RHat).to(dt); layer.M.copy_(m); }
        using var x = randn(3, 24).to(dt);
        using var y = layer.forward(x).to(ScalarType.Float64);
        using var dw = layer.DeltaWeight().to(ScalarType.Float64);
        using var w = layer.BaseWeight.to(ScalarType.Float64);
        using var expected = x.to(ScalarType.Float64).matmul((w + dw).t());
        Assert.True(TestSupport.MaxAbs(y, expected) / TestSupport.MaxAbs(expected) < 2e-2);
    }

    [Theory]
    [InlineData(@".*(?<x>q)_proj", "(?<name>")]
    [InlineData(@".*(?'x'q)_proj", "(?'name'")]
    [InlineData(@".*[a-z-[x]]_proj", "subtraction")]
    [InlineData(@".*\p{L}_proj", "Unicode category")]
    [InlineData(@".*q_pro{,1}j", "{,n}")]
    [InlineData(@"(?n).*(q)_proj", "option n")]
    [InlineData(@"(q)\k<1>", "backreference")]
    [InlineData(@"\Gq_proj", "\\G")]
    public void APatternThatDotNetReadsOtherwiseThanPythonIsRefusedNamingTheConstruct(string pattern, string named)
    {
        var e = Assert.Throws<ArgumentException>(() => PythonRegex.Check(pattern, "TargetModulesRegex"));
        Assert.Contains(named, e.Message);
        Assert.Equal("TargetModulesRegex", e.ParamName);
        Assert.Throws<ArgumentException>(() => new AdapterConfig { TargetModulesRegex = pattern }.Validate());
    }

    [Theory]
    [InlineData(@".*\.(q|v)_proj", "model.layers.0.self_attn.q_proj", true)]
    [InlineData(@"model\.layers\.[0-9]+\.self_attn\.(q|k)_proj", "model.layers.12.self_attn.k_proj", true)]
    [InlineData(@".*(?<=attn\.)v_proj", "model.layers.3.self_attn.v_proj", true)]
    [InlineData(@".*(?<!attn\.)v_proj", "model.layers.3.self_attn.v_proj", false)]
    [InlineData(@".*[]x-]_proj", "model.layers.3.mlp.x_proj", true)]
    [InlineData(@".*[a\-[]_proj", "model.layers.3.mlp.[_proj", true)]
    [InlineData(@"(?i).*Q_PROJ\Z", "model.layers.0.self_attn.q_proj", true)]
    [InlineData(@".*q_pro{1,2}j", "model.layers.0.self_attn.q_proj", true)]
    public void PatternsPythonAndDotNetReadAlikeAreAcceptedAndMatchAsPythonDoes(string pattern, string path, bool matches)
    {
        // expected values are Python 3.11's re.fullmatch(pattern, path) is not None
        Assert.Null(PythonRegex.DotNetOnly(pattern));
        PythonRegex.Check(pattern, "p");
        Assert.Equal(matches, PythonRegex.FullMatch(pattern, path));
    }

    [Fact]
    public void DoraTrainingWithDropoutIsPeftsFormAndWithoutItThePapers()
    {
        // PEFT's DoraLinearLayer.forward: y = W0 x + b + (m/|V| - 1) W0 drop(x) + (m/|V|) s B A drop(x), the same dropout
        // mask in both terms; in eval (or p = 0) it is (m/|V|)(W0 x + s B A x) + b. Float64, tolerance 1e-12 relative.
        using var seed = TestSupport.TorchSeed();
        var g = TestSupport.Generator();
        const int k = 24, d = 16, r = 4;
        using var baseLayer = nn.Linear(k, d, hasBias: true, dtype: ScalarType.Float64);
        using var layer = new DoraLinear(baseLayer, r, alpha: 8, dropout: 0.3);
        using (no_grad())
        {
            layer.B.copy_(randn(d, r, dtype: ScalarType.Float64, generator: g));
            layer.Magnitude.mul_(1 + 0.1 * randn(d, dtype: ScalarType.Float64, generator: g));
        }
        using var x = randn(5, k, dtype: ScalarType.Float64, generator: g);
        using var w = layer.BaseWeight.detach();
        using var v = w + layer.B.detach().matmul(layer.A.detach()) * layer.Scaling;
        using var scale = layer.Magnitude.detach() / linalg.vector_norm(v, 2, [1L]);
        using var bias = baseLayer.bias!.detach();
        layer.train();
        manual_seed(TestSupport.Seed(1));
        using var y = layer.forward(x);
        manual_seed(TestSupport.Seed(1));
        using var xd = nn.functional.dropout(x, 0.3, true);
        Assert.True(TestSupport.MaxAbs(xd, x) > 0.1, "dropout dropped nothing");
        using var expected = x.matmul(w.t()) + bias + (scale - 1) * xd.matmul(w.t()) + scale * (xd.matmul(layer.A.detach().t()).matmul(layer.B.detach().t()) * layer.Scaling);
        Assert.True(TestSupport.MaxAbs(y, expected) <= 1e-12 * TestSupport.MaxAbs(expected, zeros_like(expected)), $"train: {TestSupport.MaxAbs(y, expected)}");
        layer.eval();
        using var ye = layer.forward(x);
        using var paper = scale * (x.matmul(w.t()) + x.matmul(layer.A.detach().t()).matmul(layer.B.detach().t()) * layer.Scaling) + bias;
        Assert.True(TestSupport.MaxAbs(ye, paper) <= 1e-12 * TestSupport.MaxAbs(paper, zeros_like(paper)), $"eval: {TestSupport.MaxAbs(ye, paper)}");
    }
}

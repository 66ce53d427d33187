using Mora.Adapters;
using Mora.Data;
using Mora.IO;
using Mora.Model;

namespace Mora.Tests;

/// <summary>The LLaMA-style model: shapes, names, the causal mask, the KV cache, safetensors round trips.</summary>
public class ModelTests
{
    /// <summary>A tiny model initialised from torch's generator: call inside <see cref="TestSupport.TorchSeed"/>.</summary>
    static LlamaForCausalLM NewModel(LlamaConfig? config = null) => new(config ?? LlamaConfig.Tiny(100));

    [Fact]
    public void ShapesAndHuggingFaceNames()
    {
        using var rng = TestSupport.TorchSeed();
        using var model = NewModel();
        using var ids = randint(0, 100, [3, 17]);
        using var logits = model.forward(ids);
        Assert.Equal(new long[] { 3, 17, 100 }, logits.shape);
        var names = model.named_parameters().Select(p => p.name).ToHashSet();
        foreach (var n in new[] { "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                     "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight", "model.layers.1.self_attn.v_proj.weight",
                     "model.layers.1.self_attn.o_proj.weight", "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight",
                     "model.layers.1.mlp.down_proj.weight", "model.layers.1.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight" })
            Assert.Contains(n, names);
        Assert.Equal(3 + 2 * 9, names.Count);   // embed, norm, head + 9 per layer
        Assert.Equal(new long[] { 172, 64 }, model.named_parameters().First(p => p.name == "model.layers.0.mlp.gate_proj.weight").parameter.shape);
    }

    [Fact]
    public void GroupedQueryAttentionAndTiedHead()
    {
        var config = LlamaConfig.Tiny(50) with { NumAttentionHeads = 4, NumKeyValueHeads = 2, TieWordEmbeddings = true };
        using var rng = TestSupport.TorchSeed();
        using var model = NewModel(config);
        Assert.DoesNotContain(model.named_parameters(), p => p.name == "lm_head.weight");
        Assert.Equal(new long[] { 32, 64 }, model.named_parameters().First(p => p.name == "model.layers.0.self_attn.k_proj.weight").parameter.shape);
        using var ids = randint(0, 50, [2, 9]);
        using var logits = model.forward(ids);
        Assert.Equal(new long[] { 2, 9, 50 }, logits.shape);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ChangingAFutureTokenDoesNotChangePastLogits(bool withMora)
    {
        using var rng = TestSupport.TorchSeed();
        using var model = NewModel();
        if (withMora)
        {
            Peft.Inject(model, AdapterConfig.Mora(4, MoraType.Rotation));
            using var _ = no_grad();
            foreach (var (_, layer) in Peft.Adapters(model)) ((MoraLinear)layer).M.normal_(0, 0.1);
        }
        model.eval();
        using var ids = randint(4, 100, [2, 20]);
        using var changed = ids.clone();
        changed[.., 12] = (ids[.., 12] + 1) % 100;
        using var a = model.forward(ids);
        using var b = model.forward(changed);
        // Tolerance: exact in float32 up to summation order, 1e-5.
        Assert.True(TestSupport.MaxAbs(a[.., ..12], b[.., ..12]) < 1e-5, "logits before the changed position moved");
        Assert.True(TestSupport.MaxAbs(a[.., 12..], b[.., 12..]) > 1e-4, "logits from the changed position on should differ");
    }

    [Fact]
    public void KvCacheGivesTheSameLogitsAsTheFullForward()
    {
        using var rng = TestSupport.TorchSeed();
        using var model = NewModel(LlamaConfig.Tiny(100) with { NumKeyValueHeads = 2 });
        model.eval();
        using var ids = randint(0, 100, [3, 15]);
        using var full = model.forward(ids);
        using var cache = model.NewCache(3, 15);
        using var part1 = model.Forward(ids[.., ..7], cache);     // a prompt
        using var part2 = model.Forward(ids[.., 7..9], cache);    // two at once (explicit mask path)
        var singles = Enumerable.Range(9, 6).Select(i => model.Forward(ids[.., i..(i + 1)], cache)).ToList();
        using var joined = cat([part1, part2, .. singles], 1);
        Assert.Equal(15, cache.Length);
        Assert.True(TestSupport.MaxAbs(full, joined) < 1e-5, "cached decoding must match the full forward (tolerance 1e-5)");
        foreach (var s in singles) s.Dispose();
        Assert.Throws<InvalidOperationException>(() => model.Forward(ids[.., ..1], cache));   // full cache
    }

    [Fact]
    public void SafetensorsRoundTripInHuggingFaceLayout()
    {
        string dir = TestSupport.TempDir();
        using var rng = TestSupport.TorchSeed();
        using var model = NewModel();
        ModelIO.Save(model, dir);
        var (entries, metadata, _) = SafeTensors.ReadHeader(Path.Combine(dir, ModelIO.WeightsFile));
        Assert.Contains(entries, e => e.Name == "model.layers.0.self_attn.q_proj.weight" && e.DType == "F32");
        Assert.Equal("pt", metadata["format"]);
        string configJson = File.ReadAllText(Path.Combine(dir, ModelIO.ConfigFile));
        Assert.Contains("\"hidden_size\": 64", configJson);
        Assert.Contains("\"model_type\": \"llama\"", configJson);

        using var loaded = ModelIO.Load(dir);
        Assert.Equal(model.Config, loaded.Config);
        using var ids = randint(0, 100, [2, 11]);
        model.eval(); loaded.eval();
        using var a = model.forward(ids);
        using var b = loaded.forward(ids);
        Assert.Equal(0, TestSupport.MaxAbs(a, b));
    }

    [Fact]
    public void SavingWithAdaptersWritesTheBaseOrTheMergedModel()
    {
        string plain = TestSupport.TempDir(), merged = TestSupport.TempDir();
        using var rng = TestSupport.TorchSeed();
        using var model = NewModel();
        Peft.Inject(model, AdapterConfig.Mora(4, MoraType.Sharing, "q_proj", "down_proj"));
        using (no_grad()) foreach (var (_, a) in Peft.Adapters(model)) ((MoraLinear)a).M.normal_(0, 0.1);
        model.eval();
        using var ids = randint(0, 100, [2, 8]);
        using var adapted = model.forward(ids);
        AdaptedModelIO.Save(model, plain);
        AdaptedModelIO.Save(model, merged, mergeAdapters: true);
        Assert.DoesNotContain(SafeTensors.ReadHeader(Path.Combine(plain, ModelIO.WeightsFile)).Entries, e => e.Name.Contains("lora") || e.Name.Contains("base_layer"));
        using var baseModel = ModelIO.Load(plain);
        using var mergedModel = ModelIO.Load(merged);
        baseModel.eval(); mergedModel.eval();
        using var fromMerged = mergedModel.forward(ids);
        using var fromBase = baseModel.forward(ids);
        Assert.True(TestSupport.MaxAbs(adapted, fromMerged) < 1e-4, "merged checkpoint must compute the adapted model (tolerance 1e-4)");
        Assert.True(TestSupport.MaxAbs(adapted, fromBase) > 1e-3, "the plain save holds the base weights only");
        // Loading base weights into an adapted model keeps its adapters.
        AdaptedModelIO.LoadWeights(model, plain);
        Assert.Equal(2 * 2, Peft.Adapters(model).Count);
        // The model's own ModelIO knows nothing of adapters: it refuses the adapted model, naming a parameter and the way.
        foreach (var refused in new[] { Record.Exception(() => ModelIO.Save(model, TestSupport.TempDir())), Record.Exception(() => ModelIO.LoadWeights(model, plain)) })
        {
            var e = Assert.IsType<ArgumentException>(refused);
            Assert.Contains("base_layer", e.Message);
            Assert.Contains("AdaptedModelIO", e.Message);
        }
    }

    /// <summary>Without adapters the adapter-aware save writes the same files as the model's own, byte for byte; the
    /// model's save takes only the weights its config describes, naming what does not fit.</summary>
    [Fact]
    public void AdapterAwareSavingOfAPlainModelIsTheModelsOwn()
    {
        string own = TestSupport.TempDir(), adapted = TestSupport.TempDir();
        using var rng = TestSupport.TorchSeed();
        using var model = NewModel();
        ModelIO.Save(model, own);
        AdaptedModelIO.Save(model, adapted);
        foreach (var file in new[] { ModelIO.WeightsFile, ModelIO.ConfigFile, ModelIO.GenerationConfigFile })
            Assert.Equal(File.ReadAllBytes(Path.Combine(own, file)), File.ReadAllBytes(Path.Combine(adapted, file)));
        var weights = ModelIO.StateDict(model);
        try
        {
            var dropped = weights.Where(w => w.Name != "model.norm.weight").ToList();
            var e = Assert.Throws<ArgumentException>(() => ModelIO.Save(model, dropped, TestSupport.TempDir()));
            Assert.Contains("missing model.norm.weight", e.Message);
            using var extra = randn(3);
            e = Assert.Throws<ArgumentException>(() => ModelIO.Save(model, [.. weights, ("lora_A.weight", extra)], TestSupport.TempDir()));
            Assert.Contains("lora_A.weight is not a weight of the config", e.Message);
        }
        finally { foreach (var (_, t) in weights) t.Dispose(); }
    }

    [Fact]
    public void MismatchedCheckpointListsEveryProblem()
    {
        string dir = TestSupport.TempDir();
        using var rng = TestSupport.TorchSeed();
        using var small = NewModel();
        ModelIO.Save(small, dir);
        var tensors = SafeTensors.Load(Path.Combine(dir, ModelIO.WeightsFile)).Tensors;
        tensors.Remove("model.norm.weight", out var removed); removed!.Dispose();
        tensors["model.extra.weight"] = ones(3);
        SafeTensors.Save(Path.Combine(dir, ModelIO.WeightsFile), tensors.Select(kv => (kv.Key, kv.Value)));
        using var wider = new LlamaForCausalLM(LlamaConfig.Tiny(100) with { IntermediateSize = 100 });
        var e = Assert.Throws<CheckpointMismatchException>(() => ModelIO.LoadWeights(wider, dir));
        Assert.Contains(e.Problems, p => p.Contains("missing tensor model.norm.weight"));
        Assert.Contains(e.Problems, p => p.Contains("unexpected tensor model.extra.weight"));
        Assert.Equal(3 * 2, e.Problems.Count(p => p.Contains("file has shape")));   // gate, up, down in two layers
        foreach (var t in tensors.Values) t.Dispose();
        Assert.Throws<FileNotFoundException>(() => ModelIO.Load(TestSupport.TempDir()));
    }

    [Theory]
    [InlineData("{\"hidden_size\": 64}", "vocab_size", "'vocab_size' is missing")]
    [InlineData("{\"vocab_size\": 10, \"hidden_size\": 66, \"intermediate_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 4}", "hidden_size", "not divisible")]
    [InlineData("{\"model_type\": \"gpt2\"}", "model_type", "'model_type' 'gpt2'")]
    [InlineData("{not json", null, "not valid JSON")]
    [InlineData("{\"vocab_size\": 10, \"hidden_size\": 64, \"vocab_size\": 20}", null, "vocab_size")]   // Python keeps the last silently
    public void BadConfigJsonNamesTheProblem(string json, string? field, string expected)
    {
        var e = Assert.Throws<ModelFormatException>(() => LlamaConfig.FromJson(json, "some/config.json"));
        Assert.StartsWith("some/config.json: ", e.Message);
        Assert.Equal("some/config.json", e.File);
        Assert.Equal(field, e.Field);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void AbsentKeyValueHeadsTakeTransformersDefaultPerModelType()
    {
        // transformers 4.40: LlamaConfig num_key_value_heads=None → heads; MistralConfig default 8; Qwen2Config default 32;
        // an explicit null → heads in all three
        string Json(string type, string kv) =>
            $"{{\"model_type\": \"{type}\", \"vocab_size\": 10, \"hidden_size\": 64, \"intermediate_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 32{kv}, \"use_sliding_window\": false, \"sliding_window\": null}}";
        Assert.Equal(32, LlamaConfig.FromJson(Json("llama", "").Replace(", \"use_sliding_window\": false, \"sliding_window\": null", "")).NumKeyValueHeads);
        Assert.Equal(8, LlamaConfig.FromJson(Json("mistral", "").Replace(", \"use_sliding_window\": false", "")).NumKeyValueHeads);
        Assert.Equal(32, LlamaConfig.FromJson(Json("qwen2", "")).NumKeyValueHeads);
        Assert.Equal(32, LlamaConfig.FromJson(Json("qwen2", ", \"num_key_value_heads\": null")).NumKeyValueHeads);
        Assert.Equal(4, LlamaConfig.FromJson(Json("qwen2", ", \"num_key_value_heads\": 4")).NumKeyValueHeads);
        var e = Assert.Throws<ModelFormatException>(() => LlamaConfig.FromJson(Json("qwen2", "").Replace("\"num_attention_heads\": 32", "\"num_attention_heads\": 16")));
        Assert.Contains("num_key_value_heads", e.Message);          // 16 heads and the default 32 key/value heads: refused, named
    }

    [Fact]
    public void ConfigValidationNamesTheField()
    {
        Assert.Contains("num_attention_heads", Assert.Throws<ArgumentException>(() => new LlamaConfig { HiddenSize = 64, NumAttentionHeads = 5, NumKeyValueHeads = 5 }.Validate()).Message);
        Assert.Contains("num_key_value_heads", Assert.Throws<ArgumentException>(() => new LlamaConfig { NumKeyValueHeads = 3 }.Validate()).Message);
        Assert.Contains("vocab_size", Assert.Throws<ArgumentException>(() => new LlamaConfig { VocabSize = 0 }.Validate()).Message);
        Assert.Throws<ArgumentException>(() => LlamaConfig.Preset("huge", 10));
        foreach (var name in LlamaConfig.PresetNames) LlamaConfig.Preset(name, 100).Validate();
    }

    public static TheoryData<string> Families() => new() { "tiny", "gqa-tied", "qwen2", "llama-attention-bias", "mistral" };

    static LlamaConfig Family(string name) => name switch
    {
        "gqa-tied" => LlamaConfig.Tiny(50) with { NumKeyValueHeads = 2, TieWordEmbeddings = true },
        "qwen2" => LlamaConfig.Tiny(50) with { ModelType = ModelType.Qwen2, NumKeyValueHeads = 2, BosTokenId = null, EosTokenId = null },
        "llama-attention-bias" => LlamaConfig.Tiny(50) with { AttentionBias = true },
        "mistral" => LlamaConfig.Tiny(50) with { ModelType = ModelType.Mistral, SlidingWindow = 3 },
        _ => LlamaConfig.Tiny(50),
    };

    /// <summary>The tensors a config says a checkpoint holds (what the loader checks headers against, before building
    /// the model) are exactly the model's parameters, names, shapes and order, and the parameter count adds up.</summary>
    [Theory, MemberData(nameof(Families))]
    public void TensorShapesAreTheModelsParameters(string family)
    {
        var config = Family(family);
        using var rng = TestSupport.TorchSeed();
        using var model = new LlamaForCausalLM(config);
        var parameters = model.named_parameters().Select(p => (p.name, p.parameter.shape)).ToList();
        var expected = config.TensorShapes();
        Assert.Equal(expected.Select(e => e.Name), parameters.Select(p => p.name));
        Assert.All(expected.Zip(parameters), z => Assert.Equal(z.First.Shape, z.Second.shape));
        Assert.Equal(parameters.Sum(p => p.shape.Aggregate(1L, (a, b) => a * b)), config.ParameterCount);
        Assert.Equal(family is "qwen2" or "llama-attention-bias", parameters.Any(p => p.name == "model.layers.0.self_attn.q_proj.bias"));
        Assert.Equal(family == "llama-attention-bias", parameters.Any(p => p.name == "model.layers.0.self_attn.o_proj.bias"));
        // Biases start at zero (transformers' _init_weights), weights at N(0, initializer_range²).
        foreach (var (name, p) in model.named_parameters().Where(p => p.name.EndsWith(".bias")))
            Assert.Equal(0, TestSupport.MaxAbs(p));
    }

    /// <summary>Adapters wrap biased projections: the base layer's bias is applied (a fresh LoRA or MoRA adapter computes
    /// the base model exactly), kept frozen, saved under the plain name, and a merged save reloads to the adapted model.</summary>
    [Theory]
    [InlineData(AdapterMethod.Lora)]
    [InlineData(AdapterMethod.Mora)]
    public void AdaptersWrapBiasedProjections(AdapterMethod method)
    {
        using var rng = TestSupport.TorchSeed();
        using var model = ModelIO.Load(Path.Combine(InteropModelTests.Models, "s_qwen2_bias"));
        model.eval();
        var (ids, expected) = InteropModelTests.Reference("s_qwen2_bias");
        using (ids) using (expected)
        using (no_grad())
        {
            Peft.Inject(model, method == AdapterMethod.Lora ? AdapterConfig.Lora(4, 8) : AdapterConfig.Mora(4, MoraType.Sharing));
            using var fresh = model.forward(ids);
            Assert.True(TestSupport.MaxAbs(fresh, expected) < 1e-4, "a fresh adapter over biased q/k/v must compute the base model (tolerance 1e-4 to transformers)");
            var q = Peft.Adapters(model).First(a => a.Name.EndsWith("layers.0.self_attn.q_proj")).Layer;
            Assert.NotNull(q.Base.bias);
            Assert.False(q.Base.bias!.requires_grad);
            foreach (var (_, a) in Peft.Adapters(model))
                foreach (var (_, p) in a.AdapterParameters()) p.normal_(0, 0.05);
            using var adapted = model.forward(ids);
            Assert.True(TestSupport.MaxAbs(adapted, expected) > 1e-3, "the adapters should now change the logits");
            string plain = TestSupport.TempDir(), merged = TestSupport.TempDir();
            AdaptedModelIO.Save(model, plain);
            AdaptedModelIO.Save(model, merged, mergeAdapters: true);
            Assert.Contains(SafeTensors.ReadHeader(Path.Combine(plain, ModelIO.WeightsFile)).Entries, e => e.Name == "model.layers.0.self_attn.q_proj.bias");
            using var basePart = ModelIO.Load(plain);
            using var mergedModel = ModelIO.Load(merged);
            basePart.eval(); mergedModel.eval();
            using var b = basePart.forward(ids);
            using var m = mergedModel.forward(ids);
            Assert.True(TestSupport.MaxAbs(b, expected) < 1e-4, "the plain save holds the base weights and biases");
            Assert.True(TestSupport.MaxAbs(m, adapted) < 1e-4, "the merged save computes the adapted model (tolerance 1e-4)");
        }
    }

    /// <summary>attention_dropout acts only while training (as transformers): eval logits equal the model without it.</summary>
    [Fact]
    public void AttentionDropoutActsOnlyWhileTraining()
    {
        using var rng = TestSupport.TorchSeed();
        using var plain = NewModel();
        using var dropped = new LlamaForCausalLM(plain.Config with { AttentionDropout = 0.5 });
        using (no_grad()) foreach (var ((_, a), (_, b)) in plain.named_parameters().Zip(dropped.named_parameters())) b.copy_(a);
        using var ids = randint(0, 100, [2, 10]);
        plain.eval(); dropped.eval();
        using var a1 = plain.forward(ids);
        using var b1 = dropped.forward(ids);
        Assert.Equal(0, TestSupport.MaxAbs(a1, b1));
        dropped.train();
        using var t1 = dropped.forward(ids);
        using var t2 = dropped.forward(ids);
        Assert.True(TestSupport.MaxAbs(t1, t2) > 1e-3, "training forwards should differ under attention dropout 0.5");
        Assert.True(TestSupport.MaxAbs(t1, a1) > 1e-3);
    }

    /// <summary>Generation stops at any of the config's eos ids (Llama 3.1 lists several) and runs to the limit when there is none.</summary>
    [Fact]
    public void GenerationStopsAtAnyEosId()
    {
        using var rng = TestSupport.TorchSeed();
        using var model = NewModel(LlamaConfig.Tiny(100) with { EosTokenIds = TokenIds.None });
        int[] prompt = [1, 5, 6];
        var free = TextGenerator.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = 8 })[0];
        Assert.Equal(8, free.Length);
        int first = free[2], second = free[5];
        var stop = free.TakeWhile(t => t != first && t != second).ToArray();
        using var listed = new LlamaForCausalLM(model.Config with { EosTokenIds = new TokenIds(second, first) });
        using (no_grad()) foreach (var ((_, a), (_, b)) in model.named_parameters().Zip(listed.named_parameters())) b.copy_(a);
        Assert.Equal(stop, TextGenerator.Generate(listed, [prompt], new GenerationOptions { MaxNewTokens = 8 })[0]);
    }

    [Fact]
    public void GreedyAndSampledGeneration()
    {
        using var rng = TestSupport.TorchSeed();
        using var model = NewModel();
        var prompts = new List<int[]> { new[] { 1, 5, 6 }, new[] { 1, 7 }, new[] { 1, 8, 9 } };
        var greedy = TextGenerator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = 6, EosId = -1 });
        Assert.All(greedy, g => Assert.Equal(6, g.Length));
        // Greedy equals argmax of the full forward, token by token.
        var seq = prompts[0].ToList();
        for (int i = 0; i < 6; i++)
        {
            using var ids = tensor(seq.Select(x => (long)x).ToArray(), [1, seq.Count]);
            using var logits = model.forward(ids);
            seq.Add((int)logits[0, -1].argmax().item<long>());
        }
        Assert.Equal(seq.Skip(3).ToArray(), greedy[0]);
        var topK1 = TextGenerator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = 6, EosId = -1, Temperature = 1, TopK = 1 });
        Assert.Equal(greedy, topK1);
        var s1 = TextGenerator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = 6, EosId = -1, Temperature = 1.5, TopP = 0.9, Seed = 3 });
        var s2 = TextGenerator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = 6, EosId = -1, Temperature = 1.5, TopP = 0.9, Seed = 3 });
        Assert.Equal(s1, s2);
        // EOS cuts the output.
        int eos = greedy[1][2];
        var cut = TextGenerator.Generate(model, [prompts[1]], new GenerationOptions { MaxNewTokens = 6, EosId = eos });
        Assert.Equal(greedy[1].TakeWhile(t => t != eos).ToArray(), cut[0]);
        Assert.Throws<ArgumentException>(() => TextGenerator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = 0 }));
    }
}

using System.Text.Json;
using Mora.IO;
using Mora.Model;
using Xunit.Abstractions;

namespace Mora.Tests;

/// <summary>
/// The checkpoints of tests/data/interop/models (written by transformers 4.40 with the logits it computed; README there):
/// the kit loads each and reproduces its logits within the fixtures' tolerance, 1e-4 max abs (fp32), for one sequence
/// and for two as a batch, also through the KV cache where a config field changes it (Mistral's sliding window, dynamic
/// RoPE), and writes config.json and generation_config.json as transformers wrote them.
/// </summary>
public class InteropModelTests(ITestOutputHelper output)
{
    /// <summary>The fixtures' tolerance (index.json tolerance_logits_abs).</summary>
    const double Tolerance = 1e-4;

    public static string Models => Path.Combine(TestSupport.TestData, "interop", "models");

    public static readonly string[] Fixtures = ["h_mha_untied", "h_gqa_tied", "s_llama_rope_linear4", "s_llama_rope_dynamic2", "s_mistral_window8", "s_qwen2_bias"];

    public static TheoryData<string, string> References()
    {
        var data = new TheoryData<string, string>();
        foreach (var f in Fixtures)
        {
            data.Add(f, "reference.json");
            if (File.Exists(Path.Combine(Models, f, "reference_batch2.json"))) data.Add(f, "reference_batch2.json");
        }
        return data;
    }

    /// <summary>input_ids [batch, length] and logits [batch, length, vocab] of a reference file.</summary>
    public static (Tensor Ids, Tensor Logits) Reference(string fixture, string file = "reference.json")
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Models, fixture, file)));
        var root = doc.RootElement;
        var ids = root.GetProperty("input_ids").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt64()).ToArray()).ToArray();
        var logits = root.GetProperty("logits").EnumerateArray()
            .SelectMany(b => b.EnumerateArray().SelectMany(t => t.EnumerateArray().Select(x => (float)x.GetDouble()))).ToArray();
        long batch = ids.Length, length = ids[0].Length;
        return (tensor(ids.SelectMany(r => r).ToArray(), [batch, length]), tensor(logits, [batch, length, logits.Length / (batch * length)]));
    }

    [Theory]
    [MemberData(nameof(References))]
    public void EveryFixtureMatchesTransformersLogits(string fixture, string file)
    {
        using var torchRng = TestSupport.TorchSeed();     // loading builds a model: its init draws from torch's global generator
        using var model = ModelIO.Load(Path.Combine(Models, fixture));
        model.eval();
        var (ids, expected) = Reference(fixture, file);
        using (ids) using (expected)
        using (no_grad())
        {
            using var logits = model.forward(ids);
            Assert.Equal(expected.shape, logits.shape);
            double diff = TestSupport.MaxAbs(logits, expected);
            output.WriteLine($"{fixture}/{file}: max |Δlogit| = {diff:E2}");
            Assert.True(diff < Tolerance, $"{fixture}/{file}: max |Δlogit| {diff:E2} ≥ {Tolerance}");
        }
    }

    [Fact]
    public void FixturesLoadAsTheirFamilies()
    {
        var mistral = ModelIO.ReadConfig(Path.Combine(Models, "s_mistral_window8"));
        Assert.Equal(ModelType.Mistral, mistral.ModelType);
        Assert.Equal(8, mistral.AttentionWindow);
        var qwen = ModelIO.ReadConfig(Path.Combine(Models, "s_qwen2_bias"));
        Assert.Equal(ModelType.Qwen2, qwen.ModelType);
        Assert.True(qwen.QkvBias && !qwen.OutputBias);
        Assert.Null(qwen.AttentionWindow);             // use_sliding_window false: full attention
        Assert.Null(qwen.BosTokenId);                  // Qwen2's config.json has no bos/eos
        Assert.Empty(qwen.EosTokenIds);
        Assert.Equal(new RopeScaling { Type = RopeType.Linear, Factor = 4 }, ModelIO.ReadConfig(Path.Combine(Models, "s_llama_rope_linear4")).RopeScaling);
        Assert.Equal(new RopeScaling { Type = RopeType.Dynamic, Factor = 2 }, ModelIO.ReadConfig(Path.Combine(Models, "s_llama_rope_dynamic2")).RopeScaling);
    }

    /// <summary>Cached decoding (a prompt, one chunk of 3, then one token at a time) against the full forward and the
    /// fixture: the sliding window is applied by absolute position, so the two must agree (tolerance 1e-5 between the
    /// kit's own paths, 1e-4 to transformers).</summary>
    [Theory]
    [InlineData("s_mistral_window8")]
    [InlineData("h_gqa_tied")]
    [InlineData("s_llama_rope_linear4")]
    [InlineData("s_qwen2_bias")]
    public void CachedDecodingMatchesTheFullForwardAndTheFixture(string fixture)
    {
        using var torchRng = TestSupport.TorchSeed();     // loading builds a model: its init draws from torch's global generator
        using var model = ModelIO.Load(Path.Combine(Models, fixture));
        model.eval();
        var (ids, expected) = Reference(fixture);
        using (ids) using (expected)
        using (no_grad())
        {
            long len = ids.shape[1];
            using var full = model.forward(ids);
            using var cache = model.NewCache(ids.shape[0], len);
            var parts = new List<Tensor> { model.Forward(ids[.., ..5], cache), model.Forward(ids[.., 5..8], cache) };
            for (long i = 8; i < len; i++) parts.Add(model.Forward(ids[.., (int)i..(int)(i + 1)], cache));
            using var cached = cat(parts, 1);
            foreach (var p in parts) p.Dispose();
            double toFull = TestSupport.MaxAbs(cached, full), toFixture = TestSupport.MaxAbs(cached, expected);
            output.WriteLine($"{fixture}: cached vs full {toFull:E2}, cached vs transformers {toFixture:E2}");
            Assert.True(toFull < 1e-5, $"cached decoding differs from the full forward by {toFull:E2}");
            Assert.True(toFixture < Tolerance, $"cached decoding differs from transformers by {toFixture:E2}");
        }
    }

    [Fact]
    public void GreedyGenerationPastTheWindowFollowsTheFullForward()
    {
        using var torchRng = TestSupport.TorchSeed();     // loading builds a model: its init draws from torch's global generator
        using var model = ModelIO.Load(Path.Combine(Models, "s_mistral_window8"));
        var (ids, expected) = Reference("s_mistral_window8");
        ids.Dispose(); expected.Dispose();
        var rng = new Random(TestSupport.Seed());
        var prompt = Enumerable.Range(0, 6).Select(_ => rng.Next(3, 80)).ToArray();
        var generated = TextGenerator.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = 14, EosId = -1 })[0];
        Assert.Equal(14, generated.Length);      // 6 + 14 = 20 positions, well past the window of 8
        var seq = prompt.ToList();
        using (no_grad())
            for (int i = 0; i < 14; i++)
            {
                using var x = tensor(seq.Select(v => (long)v).ToArray(), [1, seq.Count]);
                using var logits = model.forward(x);
                seq.Add((int)logits[0, -1].argmax().item<long>());
            }
        Assert.Equal(seq.Skip(6).ToArray(), generated);
    }

    /// <summary>
    /// Dynamic NTK scaling with a KV cache, as transformers 4.40 computes it: each forward call rotates its new queries
    /// and keys with the base for that call's length (offset + new tokens), and cached keys keep the rotation they got.
    /// So decoding token by token past max_position_embeddings (32) is not the full forward of the fixture (every
    /// position rotated with the base for 64). A reference written here from the formula (per-position bases, plain
    /// causal attention over the safetensors weights) is first checked against the fixture (all positions at the base
    /// for 64), then against the kit's cached decoding (position p at the base for p + 1; a prompt of 20 at the plain base).
    /// </summary>
    [Fact]
    public void DynamicRopeWithACacheRotatesEachStepWithItsOwnBase()
    {
        using var torchRng = TestSupport.TorchSeed();     // loading builds a model: its init draws from torch's global generator
        string dir = Path.Combine(Models, "s_llama_rope_dynamic2");
        using var model = ModelIO.Load(dir);
        model.eval();
        var c = model.Config;
        var (ids, expected) = Reference("s_llama_rope_dynamic2");
        var (weights, _) = SafeTensors.Load(Path.Combine(dir, ModelIO.WeightsFile));
        try
        {
            using var _ = no_grad();
            long len = ids.shape[1];
            int d = c.HeadDim, m = c.MaxPositionEmbeddings;
            double Base(long seqLen) => seqLen > m ? c.RopeTheta * Math.Pow(2.0 * seqLen / m - 1, d / (d - 2.0)) : c.RopeTheta;

            using var refFull = ReferenceForward(weights, c, ids, Enumerable.Repeat(Base(len), (int)len).ToArray());
            double refVsFixture = TestSupport.MaxAbs(refFull, expected);
            Assert.True(refVsFixture < Tolerance, $"the test's reference misses the fixture by {refVsFixture:E2}");

            const int prompt = 20;
            using var cache = model.NewCache(1, len);
            var parts = new List<Tensor> { model.Forward(ids[.., ..prompt], cache) };
            for (int i = prompt; i < len; i++) parts.Add(model.Forward(ids[.., i..(i + 1)], cache));
            using var cached = cat(parts, 1);
            foreach (var p in parts) p.Dispose();
            var bases = Enumerable.Range(0, (int)len).Select(p => p < prompt ? Base(prompt) : Base(p + 1)).ToArray();
            using var refCached = ReferenceForward(weights, c, ids, bases);
            double diff = TestSupport.MaxAbs(cached, refCached);
            output.WriteLine($"dynamic rope: reference vs fixture {refVsFixture:E2}, cached decoding vs per-step reference {diff:E2}");
            Assert.True(diff < Tolerance, $"cached decoding differs from the per-step-base reference by {diff:E2}");
            // Up to max_position_embeddings nothing is rescaled: cached = full forward of that prefix.
            using var prefix = model.forward(ids[.., ..m]);
            Assert.True(TestSupport.MaxAbs(cached[.., ..m], prefix) < 1e-5, "below max_position_embeddings the cache must give the plain forward");
            // Past it the cached steps differ from the full forward (as in transformers).
            Assert.True(TestSupport.MaxAbs(cached[.., m..], expected[.., m..]) > 1e-3, "past max_position_embeddings the cached steps should differ from the full forward");
            // One cached call over the whole sequence is the full forward.
            using var cache2 = model.NewCache(1, len);
            using var once = model.Forward(ids, cache2);
            Assert.True(TestSupport.MaxAbs(once, expected) < Tolerance);
        }
        finally
        {
            ids.Dispose(); expected.Dispose();
            foreach (var t in weights.Values) t.Dispose();
        }
    }

    /// <summary>A LLaMA forward written from the definitions (RMSNorm, RoPE with a base per position for that position's
    /// query and key, causal softmax attention, SwiGLU), straight from the checkpoint's tensors, float64.</summary>
    static Tensor ReferenceForward(Dictionary<string, Tensor> w, LlamaConfig c, Tensor ids, double[] bases)
    {
        using var scope = NewDisposeScope();
        Tensor W(string n) => w[n].to(ScalarType.Float64);
        Tensor Norm(Tensor x, Tensor g) => x * (x.pow(2).mean([-1], keepdim: true) + c.RmsNormEps).rsqrt() * g;
        int h = c.NumAttentionHeads, kvh = c.NumKeyValueHeads, d = c.HeadDim;
        long t = ids.shape[1];
        var angle = new double[t * d];
        for (int p = 0; p < t; p++)
            for (int i = 0; i < d / 2; i++)
            {
                double a = p * Math.Pow(bases[p], -2.0 * i / d);
                angle[p * d + i] = a; angle[p * d + i + d / 2] = a;
            }
        var ang = tensor(angle, [t, d]);
        Tensor Rope(Tensor x)   // [b, heads, t, d]
        {
            var x1 = x[.., .., .., ..(d / 2)]; var x2 = x[.., .., .., (d / 2)..];
            return x * ang.cos() + cat([-x2, x1], -1) * ang.sin();
        }
        var x = W("model.embed_tokens.weight").index_select(0, ids.flatten()).view(1, t, -1);
        var causal = ones(new long[] { t, t }, dtype: ScalarType.Bool).tril();
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            var a = Norm(x, W(p + "input_layernorm.weight"));
            var q = Rope(a.matmul(W(p + "self_attn.q_proj.weight").t()).view(1, t, h, d).transpose(1, 2));
            var k = Rope(a.matmul(W(p + "self_attn.k_proj.weight").t()).view(1, t, kvh, d).transpose(1, 2)).repeat_interleave(h / kvh, 1);
            var v = a.matmul(W(p + "self_attn.v_proj.weight").t()).view(1, t, kvh, d).transpose(1, 2).repeat_interleave(h / kvh, 1);
            var scores = q.matmul(k.transpose(2, 3)) / Math.Sqrt(d);
            var attn = scores.masked_fill(causal.logical_not(), double.NegativeInfinity).softmax(-1).matmul(v);
            x = x + attn.transpose(1, 2).reshape(1, t, h * d).matmul(W(p + "self_attn.o_proj.weight").t());
            var b = Norm(x, W(p + "post_attention_layernorm.weight"));
            var gate = b.matmul(W(p + "mlp.gate_proj.weight").t());
            x = x + (nn.functional.silu(gate) * b.matmul(W(p + "mlp.up_proj.weight").t())).matmul(W(p + "mlp.down_proj.weight").t());
        }
        x = Norm(x, W("model.norm.weight"));
        var head = w.ContainsKey("lm_head.weight") ? W("lm_head.weight") : W("model.embed_tokens.weight");
        return x.matmul(head.t()).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>config.json and generation_config.json written by the kit for each fixture's config are the files
    /// transformers wrote, byte for byte, except for its <c>transformers_version</c> line (the kit does not claim one).</summary>
    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void ConfigFilesAreWrittenAsTransformersWritesThem(string fixture)
    {
        string dir = Path.Combine(Models, fixture);
        static string WithoutVersion(string text) => string.Join("\n", text.Split('\n').Where(l => !l.Contains("\"transformers_version\"")))
            .Replace(",\n}", "\n}");
        var config = ModelIO.ReadConfig(dir);
        Assert.Equal(WithoutVersion(File.ReadAllText(Path.Combine(dir, ModelIO.ConfigFile))), WithoutVersion(config.ToJson("float32")));
        Assert.Equal(WithoutVersion(File.ReadAllText(Path.Combine(dir, ModelIO.GenerationConfigFile))), config.GenerationConfigJson());
        // Reading back what was written gives the same config.
        Assert.Equal(config, LlamaConfig.FromJson(config.ToJson(), "written"));
    }

    public static TheoryData<string> FixtureNames() => new(Fixtures);

    /// <summary>The kit's save of a loaded fixture, single-file and sharded, reloads to the same model (logits equal
    /// exactly), in transformers' layout: shard names, index total_size and weight_map, safetensors metadata.</summary>
    [Theory]
    [InlineData("s_qwen2_bias")]
    [InlineData("s_llama_rope_dynamic2")]
    [InlineData("s_mistral_window8")]
    public void SaveAndReloadRoundTripSingleAndSharded(string fixture)
    {
        using var torchRng = TestSupport.TorchSeed();     // loading builds a model: its init draws from torch's global generator
        using var model = ModelIO.Load(Path.Combine(Models, fixture));
        model.eval();
        var (ids, expected) = Reference(fixture);
        using (ids) using (expected)
        using (no_grad())
        {
            using var logits = model.forward(ids);
            string single = TestSupport.TempDir(), sharded = Path.Combine(TestSupport.TempDir(), "new-folder");
            ModelIO.Save(model, single);
            Assert.Equal([ModelIO.ConfigFile, ModelIO.GenerationConfigFile, ModelIO.WeightsFile], Directory.GetFiles(single).Select(Path.GetFileName).Order());
            const long shard = 40_000;     // bytes: the fixtures hold ~100-200 kB
            ModelIO.Save(model, sharded, maxShardBytes: shard);
            var files = Directory.GetFiles(sharded).Select(Path.GetFileName).Order().ToList();
            Assert.DoesNotContain(ModelIO.WeightsFile, files);
            Assert.Contains(ModelIO.IndexFile, files);
            var shards = files.Where(f => f!.StartsWith("model-")).ToList();
            Assert.True(shards.Count >= 3, $"expected several shards, got {string.Join(", ", files)}");
            Assert.All(shards, s => Assert.Matches($"^model-\\d{{5}}-of-{shards.Count:00000}\\.safetensors$", s));
            using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(sharded, ModelIO.IndexFile)));
            long total = index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64();
            var map = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
            long sum = 0;
            foreach (var s in shards)
            {
                var (entries, meta, _) = SafeTensors.ReadHeader(Path.Combine(sharded, s!));
                Assert.Equal("pt", meta["format"]);
                long bytes = entries.Sum(e => e.End - e.Begin);
                Assert.True(bytes <= shard || entries.Count == 1, $"{s} holds {bytes} bytes in {entries.Count} tensors");
                Assert.All(entries, e => Assert.Equal(s, map[e.Name]));
                sum += bytes;
            }
            Assert.Equal(sum, total);
            Assert.Equal(model.Config.TensorShapes().Select(t => t.Name).Order(), map.Keys.Order());
            foreach (var dir in new[] { single, sharded })
            {
                using var back = ModelIO.Load(dir);
                back.eval();
                Assert.Equal(model.Config, back.Config);
                using var again = back.forward(ids);
                Assert.Equal(0, TestSupport.MaxAbs(logits, again));
            }
        }
    }
}

using Mora.Model;

namespace Mora.Tests;

/// <summary>
/// The RoPE scaling rules of <see cref="Rotary"/> checked against values computed here, independently, from the published
/// formulas (linear: positions / factor; dynamic NTK: transformers 4.40's LlamaDynamicNTKScalingRotaryEmbedding;
/// llama3: transformers' _compute_llama3_parameters / Llama 3.1's reference), and their edge cases. Linear and dynamic are
/// also checked end to end by the interop fixtures (InteropModelTests); llama3 has no fixture, so it is pinned here.
/// Tolerance: 1e-12 relative for the float64 frequencies, 1e-6 for the float32 tables.
/// </summary>
public class RopeScalingTests
{
    static double[] Default(int dim, double theta) => Enumerable.Range(0, dim / 2).Select(i => 1.0 / Math.Pow(theta, 2.0 * i / dim)).ToArray();

    static void Close(double[] expected, double[] actual, double rel = 1e-12)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= rel * Math.Abs(expected[i]), $"θ_{i}: expected {expected[i]:R}, got {actual[i]:R}");
    }

    /// <summary>Llama 3.1's rule written out from its definition (wavelength bands, linear ramp in 1/wavelength).</summary>
    static double[] Llama3Reference(int dim, double theta, double factor, double low, double high, double oldContext)
    {
        var result = new double[dim / 2];
        for (int i = 0; i < dim / 2; i++)
        {
            double f = 1.0 / Math.Pow(theta, 2.0 * i / dim);
            double wavelength = 2 * Math.PI / f;
            if (wavelength < oldContext / high) result[i] = f;
            else if (wavelength > oldContext / low) result[i] = f / factor;
            else
            {
                double smooth = (oldContext / wavelength - low) / (high - low);
                result[i] = (1 - smooth) * f / factor + smooth * f;
            }
        }
        return result;
    }

    static readonly RopeScaling Llama31 = new() { Type = RopeType.Llama3, Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 8192 };

    [Fact]
    public void Llama3FrequenciesFollowThePublishedRule()
    {
        // Llama 3.1 8B: head_dim 128, rope_theta 500000, factor 8, low 1, high 4, original context 8192.
        var kit = RotaryEmbedding.InverseFrequencies(128, 500000, Llama31, 131072, 100);
        Close(Llama3Reference(128, 500000, 8, 1, 4, 8192), kit);
        var plain = Default(128, 500000);
        // The three bands are all present: high frequencies kept, low ones divided by 8, a ramp between.
        Assert.Equal(1.0, kit[0]);
        Assert.Equal(1.0, kit[^1] * 8 / plain[^1], 12);
        int kept = Enumerable.Range(0, 64).Count(i => Math.Abs(kit[i] / plain[i] - 1) < 1e-13);
        int divided = Enumerable.Range(0, 64).Count(i => Math.Abs(kit[i] * 8 / plain[i] - 1) < 1e-13);
        Assert.True(kept > 10 && divided > 10 && kept + divided < 64, $"kept {kept}, divided {divided}");
        // Every frequency is scaled by a ratio in [1/8, 1] and the sequence keeps decreasing.
        for (int i = 0; i < 64; i++)
        {
            double ratio = kit[i] / plain[i];
            Assert.InRange(ratio, 1 / 8.0 - 1e-15, 1 + 1e-15);
            if (i > 0) Assert.True(kit[i] < kit[i - 1], $"θ_{i} ≥ θ_{i - 1}");
        }
        // Other random parameters, seeded.
        var rng = new Random(TestSupport.Seed());
        for (int k = 0; k < 20; k++)
        {
            int dim = 2 * rng.Next(2, 80);
            double theta = Math.Pow(10, rng.NextDouble() * 3 + 3), factor = 1 + rng.NextDouble() * 31, low = 0.5 + rng.NextDouble() * 2, high = low + 0.1 + rng.NextDouble() * 6;
            int old = rng.Next(16, 20000);
            var s = new RopeScaling { Type = RopeType.Llama3, Factor = factor, LowFreqFactor = low, HighFreqFactor = high, OriginalMaxPositionEmbeddings = old };
            Close(Llama3Reference(dim, theta, factor, low, high, old), RotaryEmbedding.InverseFrequencies(dim, theta, s, 4 * old, 7));
        }
    }

    [Fact]
    public void Llama3EdgeCases()
    {
        // Factor 1 is the identity, whatever the bands.
        Close(Default(64, 500000), RotaryEmbedding.InverseFrequencies(64, 500000, Llama31 with { Factor = 1 }, 0, 0));
        // low = high would divide by zero in the ramp: refused, naming the field (transformers' _validate_llama3_parameters).
        var e = Assert.Throws<ArgumentException>(() => (Llama31 with { LowFreqFactor = 4, HighFreqFactor = 4 }).Validate());
        Assert.Equal("rope_scaling.high_freq_factor", e.ParamName);
        Assert.Equal("rope_scaling.factor", Assert.Throws<ArgumentException>(() => (Llama31 with { Factor = 0.5 }).Validate()).ParamName);
        Assert.Equal("rope_scaling.factor", Assert.Throws<ArgumentException>(() => (Llama31 with { Factor = double.PositiveInfinity }).Validate()).ParamName);
        Assert.Equal("rope_scaling.original_max_position_embeddings", Assert.Throws<ArgumentException>(() => (Llama31 with { OriginalMaxPositionEmbeddings = 0 }).Validate()).ParamName);
        // The sequence length does not matter for llama3 (its frequencies are fixed).
        Assert.Equal(RotaryEmbedding.InverseFrequencies(128, 500000, Llama31, 131072, 5), RotaryEmbedding.InverseFrequencies(128, 500000, Llama31, 131072, 100_000));
    }

    [Fact]
    public void Llama31ConfigReadsAndWritesBack()
    {
        string json = """
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
             "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 131072,
             "rope_theta": 500000.0, "bos_token_id": 60, "eos_token_id": [61, 62, 63],
             "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
            """;
        var c = LlamaConfig.FromJson(json);
        Assert.Equal(Llama31, c.RopeScaling);
        Assert.Equal(new TokenIds(61, 62, 63), c.EosTokenIds);
        string written = c.ToJson();
        Assert.Contains("\"rope_type\": \"llama3\"", written);
        Assert.Contains("\"factor\": 8.0", written);
        Assert.Contains("\"original_max_position_embeddings\": 8192", written);
        Assert.Contains("\"eos_token_id\": [\n    61,\n    62,\n    63\n  ]", written);
        Assert.Equal(c, LlamaConfig.FromJson(written));
        // 4.45 writes both keys when a config said "type": accepted when they agree.
        Assert.Equal(Llama31, LlamaConfig.FromJson(json.Replace("\"rope_type\": \"llama3\"", "\"rope_type\": \"llama3\", \"type\": \"llama3\"")).RopeScaling);
        // {"rope_type": "default"} is plain RoPE.
        Assert.Null(LlamaConfig.FromJson(json.Replace("\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"", "\"rope_type\": \"default\"")).RopeScaling);
        // A llama3 model runs, and its tables are outer(positions, θ) of the rule.
        using var rng = TestSupport.TorchSeed();
        using var model = new LlamaForCausalLM(c);
        using var ids = randint(0, 64, [1, 9]);
        using var logits = model.forward(ids);
        Assert.True(logits.isfinite().all().item<bool>());
        var (cos, sin) = RotaryEmbedding.Angles(8, 3, 5, 500000, Llama31, 131072, CPU);
        var inv = Llama3Reference(8, 500000, 8, 1, 4, 8192);
        for (int t = 0; t < 5; t++)
            for (int i = 0; i < 8; i++)
            {
                double angle = (3 + t) * inv[i % 4];
                Assert.Equal(Math.Cos(angle), cos[t, i].item<float>(), 1e-6);
                Assert.Equal(Math.Sin(angle), sin[t, i].item<float>(), 1e-6);
            }
        cos.Dispose(); sin.Dispose();
    }

    [Fact]
    public void LinearScalingDividesThePositions()
    {
        var rng = new Random(TestSupport.Seed());
        var s = new RopeScaling { Type = RopeType.Linear, Factor = 1 + rng.NextDouble() * 7 };
        int dim = 16; long offset = rng.Next(0, 500), length = 11;
        var (cos, sin) = RotaryEmbedding.Angles(dim, offset, length, 10000, s, 2048, CPU);
        var inv = Default(dim, 10000);
        for (int t = 0; t < length; t++)
            for (int i = 0; i < dim; i++)
            {
                double angle = (offset + t) / s.Factor * inv[i % (dim / 2)];
                Assert.Equal(Math.Cos(angle), cos[t, i].item<float>(), 1e-6);
                Assert.Equal(Math.Sin(angle), sin[t, i].item<float>(), 1e-6);
            }
        cos.Dispose(); sin.Dispose();
        // The frequencies themselves are untouched.
        Close(Default(dim, 10000), RotaryEmbedding.InverseFrequencies(dim, 10000, s, 2048, 4096));
    }

    [Fact]
    public void DynamicScalingRaisesTheBaseOnlyPastTheContext()
    {
        var s = new RopeScaling { Type = RopeType.Dynamic, Factor = 2 };
        // The fixture's case (README): d = 12, max_position_embeddings 32, 64 tokens: θ → θ·3^(d/(d−2)).
        Close(Default(12, 10000 * Math.Pow(3, 12.0 / 10)), RotaryEmbedding.InverseFrequencies(12, 10000, s, 32, 64));
        // At or below the context nothing changes.
        Close(Default(12, 10000), RotaryEmbedding.InverseFrequencies(12, 10000, s, 32, 32));
        Close(Default(12, 10000), RotaryEmbedding.InverseFrequencies(12, 10000, s, 32, 1));
        // In general base·(s·L/M − (s − 1))^(d/(d−2)).
        var rng = new Random(TestSupport.Seed());
        for (int k = 0; k < 10; k++)
        {
            int dim = 2 * rng.Next(2, 64), m = rng.Next(8, 4096);
            long len = m + rng.Next(1, 10 * m);
            double factor = 1 + rng.NextDouble() * 7, theta = Math.Pow(10, 3 + rng.NextDouble() * 3);
            double b = theta * Math.Pow(factor * len / m - (factor - 1), dim / (dim - 2.0));
            Close(Default(dim, b), RotaryEmbedding.InverseFrequencies(dim, theta, s with { Factor = factor }, m, len));
        }
        // The model accepts sequences past max_position_embeddings only with dynamic scaling.
        using var rngT = TestSupport.TorchSeed();
        var config = LlamaConfig.Tiny(50) with { MaxPositionEmbeddings = 8 };
        using var plain = new LlamaForCausalLM(config);
        using var ids = randint(0, 50, [1, 12]);
        Assert.Throws<ArgumentException>(() => plain.forward(ids));
        using var dynamic = new LlamaForCausalLM(config with { RopeScaling = s });
        using var logits = dynamic.forward(ids);
        Assert.Equal(new long[] { 1, 12, 50 }, logits.shape);
    }
}

using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Fluent;
using Mora.IO;
using Mora.Model;

namespace Mora.Tests;

/// <summary>
/// What <see cref="ModelIO.Load"/> refuses, and how: every config.json field that changes the computation and is not
/// modelled, mistyped and out-of-range values, huge sizes (before any allocation), broken indexes and shards, non-finite
/// weights, a tied head that differs from the embedding, files that are not regular or lie outside the folder. Each case
/// starts from a fixture of tests/data/interop and asserts the documented exception naming the file and the field.
/// </summary>
public class ModelFolderTests
{
    static string Fixture(string name) => Path.Combine(InteropModelTests.Models, name);

    /// <summary>A copy of a fixture folder (config, generation config, weights) to mutate.</summary>
    static string Copy(string name)
    {
        string dir = TestSupport.TempDir();
        foreach (var f in Directory.GetFiles(Fixture(name)).Where(f => !Path.GetFileName(f).StartsWith("reference")))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        return dir;
    }

    static string Config(string dir) => Path.Combine(dir, ModelIO.ConfigFile);

    static void EditConfig(string dir, Action<JsonObject> edit)
    {
        var o = JsonNode.Parse(File.ReadAllText(Config(dir)))!.AsObject();
        edit(o);
        File.WriteAllText(Config(dir), o.ToJsonString());
    }

    /// <summary>Runs <paramref name="f"/> with a guard against a hang or a huge allocation and returns its exception.</summary>
    static Exception? Within(Action f) => TestSupport.Unhung(f, "loading the model folder");

    static ModelFormatException Refused(string dir, string? field, string file = ModelIO.ConfigFile)
    {
        var e = Within(() => { using var m = ModelIO.Load(dir); });
        var refused = Assert.IsType<ModelFormatException>(e);
        Assert.Equal(Path.Combine(Path.GetFullPath(dir), file), refused.File);
        Assert.Equal(field, refused.Field);
        Assert.StartsWith(refused.File + ": ", refused.Message);
        if (field is not null) Assert.Contains($"'{field}'", refused.Message);
        return refused;
    }

    public static TheoryData<string, string, string?, string, string> RefusedFields() => new()
    {
        // fixture, field, JSON value (null: remove the field), field the error names, text it must contain
        { "h_mha_untied", "model_type", "3", "model_type", "must be a string" },
        { "h_mha_untied", "model_type", "\"gpt2\"", "model_type", "'gpt2'" },
        { "h_mha_untied", "bos_token_id", "\"1\"", "bos_token_id", "must be an integer" },
        { "h_mha_untied", "eos_token_id", "[]", "eos_token_id", "empty list" },
        { "h_mha_untied", "eos_token_id", "[2, \"3\"]", "eos_token_id", "list of integers" },
        { "h_mha_untied", "hidden_size", "[32]", "hidden_size", "must be an integer" },
        { "h_mha_untied", "hidden_size", "32.5", "hidden_size", "must be an integer" },
        { "h_mha_untied", "hidden_size", "-32", "hidden_size", "must be positive" },
        { "h_mha_untied", "hidden_size", "10000000", "hidden_size", "10,000,000" },
        { "h_mha_untied", "num_hidden_layers", "60000", "num_hidden_layers", "60,000" },
        { "h_mha_untied", "vocab_size", "1000000000", "vocab_size", "1,000,000,000" },
        { "h_mha_untied", "intermediate_size", "99999999999", "intermediate_size", "out of range" },
        { "h_mha_untied", "vocab_size", null, "vocab_size", "is missing" },
        { "h_mha_untied", "num_key_value_heads", "3", "num_key_value_heads", "not a multiple" },
        { "h_mha_untied", "rope_theta", "1e400", "rope_theta", "finite number" },
        { "h_mha_untied", "rope_theta", "\"1e4\"", "rope_theta", "finite number" },
        { "h_mha_untied", "rope_theta", "-1.0", "rope_theta", "positive" },
        { "h_mha_untied", "rms_norm_eps", "0", "rms_norm_eps", "positive" },
        { "h_mha_untied", "tie_word_embeddings", "\"yes\"", "tie_word_embeddings", "true or false" },
        { "h_mha_untied", "hidden_act", "\"gelu\"", "hidden_act", "'gelu'" },
        { "h_mha_untied", "mlp_bias", "true", "mlp_bias", "not modelled" },
        { "h_mha_untied", "head_dim", "16", "head_dim", "differs" },
        { "h_mha_untied", "partial_rotary_factor", "0.5", "partial_rotary_factor", "not modelled" },
        { "h_mha_untied", "quantization_config", "{\"quant_method\": \"bitsandbytes\", \"load_in_4bit\": true}", "quantization_config", "quantized" },
        { "h_mha_untied", "rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": 10000.0}", "rope_parameters", "transformers 5" },
        { "h_mha_untied", "torch_dtype", "\"int8\"", "torch_dtype", "'int8'" },
        { "h_mha_untied", "torch_dtype", "5", "torch_dtype", "must be a string" },
        { "h_mha_untied", "attention_dropout", "1.5", "attention_dropout", "[0, 1)" },
        { "h_mha_untied", "sliding_window", "8", "sliding_window", "not a LLaMA field" },
        { "h_mha_untied", "architectures", "[\"LlamaForSequenceClassification\"]", "architectures", "LlamaForCausalLM" },
        { "h_mha_untied", "architectures", "\"LlamaForCausalLM\"", "architectures", "list of class names" },
        { "h_mha_untied", "rope_scaling", "{\"type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 32}", "rope_scaling.type", "'yarn'" },
        { "h_mha_untied", "rope_scaling", "{\"rope_type\": \"longrope\", \"short_factor\": [1.0], \"long_factor\": [2.0]}", "rope_scaling.type", "'longrope'" },
        { "h_mha_untied", "rope_scaling", "{\"type\": \"su\", \"factor\": 2.0}", "rope_scaling.type", "'su'" },
        { "h_mha_untied", "rope_scaling", "{\"type\": \"linear\"}", "rope_scaling.factor", "is missing" },
        { "h_mha_untied", "rope_scaling", "{\"type\": \"linear\", \"factor\": 0.5}", "rope_scaling.factor", "≥ 1" },
        { "h_mha_untied", "rope_scaling", "{\"type\": \"linear\", \"factor\": \"2\"}", "rope_scaling.factor", "finite number" },
        { "h_mha_untied", "rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0, \"original_max_position_embeddings\": 64}", "rope_scaling.original_max_position_embeddings", "not read" },
        { "h_mha_untied", "rope_scaling", "{\"type\": \"linear\", \"rope_type\": \"dynamic\", \"factor\": 2.0}", "rope_scaling", "disagree" },
        { "h_mha_untied", "rope_scaling", "{\"factor\": 2.0}", "rope_scaling", "no 'type'" },
        { "h_mha_untied", "rope_scaling", "[\"linear\", 2.0]", "rope_scaling", "must be an object" },
        { "h_mha_untied", "rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 4.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}", "rope_scaling.high_freq_factor", "greater than low_freq_factor" },
        { "h_mha_untied", "rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0}", "rope_scaling.original_max_position_embeddings", "is missing" },
        { "h_mha_untied", "pretraining_tp", "0", "pretraining_tp", "positive" },
        { "s_mistral_window8", "sliding_window", "0", "sliding_window", "positive" },
        { "s_mistral_window8", "sliding_window", "\"8\"", "sliding_window", "must be an integer" },
        { "s_mistral_window8", "rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}", "rope_scaling", "mistral or qwen2" },
        { "s_mistral_window8", "attention_bias", "true", "attention_bias", "LLaMA field" },
        { "s_mistral_window8", "architectures", "[\"LlamaForCausalLM\"]", "architectures", "MistralForCausalLM" },
        { "s_qwen2_bias", "use_sliding_window", "true", "use_sliding_window", "max_window_layers" },
        { "s_qwen2_bias", "attention_bias", "true", "attention_bias", "LLaMA field" },
        { "s_qwen2_bias", "use_sliding_window", "1", "use_sliding_window", "true or false" },
    };

    [Theory, MemberData(nameof(RefusedFields))]
    public void AConfigFieldThatIsNotModelledOrIsMistypedIsRefusedByName(string fixture, string field, string? json, string named, string text)
    {
        string dir = Copy(fixture);
        EditConfig(dir, o => { if (json is null) o.Remove(field); else o[field] = JsonNode.Parse(json); });
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Refused(dir, named);
        Assert.Contains(text, e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 << 20, "refusing a config allocated more than 64 MB");
    }

    [Fact]
    public void TheCombinationPretrainingTpWithAttentionBiasIsRefusedButEachAloneLoads()
    {
        using var rng = TestSupport.TorchSeed();           // building a model (ModelIO.Load) draws from torch's global generator
        string dir = Copy("h_mha_untied");
        EditConfig(dir, o => o["pretraining_tp"] = 2);
        using (var m = ModelIO.Load(dir)) Assert.Equal(2, m.Config.PretrainingTp);   // the same linear map: accepted
        EditConfig(dir, o => o["attention_bias"] = true);
        Assert.Contains("drops the biases", Refused(dir, "pretraining_tp").Message.Replace("computes the sliced projections without their biases", "drops the biases"));
        EditConfig(dir, o => o["pretraining_tp"] = 1);
        // attention_bias alone is modelled, so now the file lacks the biases it implies.
        var e = Assert.Throws<CheckpointMismatchException>(() => ModelIO.Load(dir));
        Assert.Contains(e.Problems, p => p.Contains("missing tensor model.layers.0.self_attn.o_proj.bias"));
        Assert.Equal(4 * 2, e.Problems.Count);     // q, k, v, o biases of two layers
    }

    /// <summary>A model too large for the machine (sizes each within the field limits) is refused from config.json alone,
    /// with its parameter count (a model built first would take terabytes: the refusal is the
    /// config's, its type says so).</summary>
    [Fact]
    public void AModelLargerThanMemoryIsRefusedBeforeAnythingIsAllocated()
    {
        string dir = Copy("h_mha_untied");
        EditConfig(dir, o => { o["hidden_size"] = 65536; o["intermediate_size"] = 1 << 20; o["num_hidden_layers"] = 1000; o["num_attention_heads"] = 512; o["num_key_value_heads"] = 512; });
        var e = Refused(dir, null);
        Assert.Contains("parameters", e.Message);
        Assert.Contains("GB", e.Message);
        Assert.Throws<ArgumentException>(() => new LlamaForCausalLM(ModelIO.ReadConfig(dir)));
    }

    static readonly string[] Pool = ["null", "0", "-1", "1", "2.5", "1e400", "\"text\"", "true", "[]", "[1, 2]", "{}", "2147483648", "65536", "\"silu\""];

    /// <summary>Random mutations of config.json fields (a value from a pool of wrong types, signs and sizes, or the field
    /// removed): loading either succeeds (finite logits) or throws ModelFormatException naming config.json, or
    /// CheckpointMismatchException when the config is valid but the tensors no longer fit; never another exception, a
    /// hang or a huge allocation.</summary>
    [Fact]
    public void MutatedConfigsLoadOrAreRefusedByName()
    {
        using var rng = TestSupport.TorchSeed();           // building a model (ModelIO.Load) draws from torch's global generator
        string template = Copy("s_llama_rope_linear4");
        var original = JsonNode.Parse(File.ReadAllText(Config(template)))!.AsObject();
        var fields = original.Select(kv => kv.Key).Concat(["head_dim", "mlp_bias", "sliding_window"]).ToArray();
        int loaded = 0, refused = 0, mismatched = 0;
        var gen = from f in Gen.Choose(0, fields.Length - 1) from v in Gen.Choose(-1, Pool.Length - 1) select (f, v);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            string dir = TestSupport.TempDir();
            foreach (var file in Directory.GetFiles(template)) File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
            EditConfig(dir, o => { if (t.v < 0) o.Remove(fields[t.f]); else o[fields[t.f]] = JsonNode.Parse(Pool[t.v]); });
            var e = Within(() =>
            {
                using var m = ModelIO.Load(dir);
                using var ids = tensor(new long[] { 1, 2, 3 }, [1, 3]);
                using var logits = m.forward(ids);
                Assert.True(logits.isfinite().all().item<bool>());
            });
            switch (e)
            {
                case null: loaded++; break;
                case ModelFormatException mf:
                    Assert.Equal(Config(Path.GetFullPath(dir)), mf.File);
                    refused++;
                    break;
                case CheckpointMismatchException cm:
                    Assert.Contains(Path.GetFullPath(dir), cm.Message);
                    mismatched++;
                    break;
                default: throw new Xunit.Sdk.XunitException($"{fields[t.f]} = {(t.v < 0 ? "(removed)" : Pool[t.v])}: undocumented {e.GetType().Name}: {e.Message}");
            }
            return true;
        }).Check(TestSupport.Property(150));
        Assert.True(loaded > 5 && refused > 50 && mismatched > 0, $"loaded {loaded}, refused {refused}, mismatched {mismatched}");
    }

    // ---- weight files

    /// <summary>A sharded copy of a fixture (the kit writes transformers' layout).</summary>
    static string Sharded(string fixture = "h_mha_untied")
    {
        string dir = Path.Combine(TestSupport.TempDir(), "sharded");
        using var m = ModelIO.Load(Fixture(fixture));
        ModelIO.Save(m, dir, maxShardBytes: 30_000);
        return dir;
    }

    static string Index(string dir) => Path.Combine(dir, ModelIO.IndexFile);

    static void EditIndex(string dir, Action<JsonObject> edit)
    {
        var o = JsonNode.Parse(File.ReadAllText(Index(dir)))!.AsObject();
        edit(o);
        File.WriteAllText(Index(dir), o.ToJsonString());
    }

    [Fact]
    public void ABrokenIndexIsRefusedNamingTheIndexAndTheField()
    {
        using var rng = TestSupport.TorchSeed();           // building a model (ModelIO.Load) draws from torch's global generator
        string dir = Sharded();
        using (var ok = ModelIO.Load(dir)) { }
        var shards = Directory.GetFiles(dir, "model-*").Select(Path.GetFileName).Order().ToList();
        Assert.True(shards.Count >= 3);

        EditIndex(dir, o => o["weight_map"]!["model.norm.weight"] = 3);
        Assert.Contains("must be a shard file name", Refused(dir, "weight_map['model.norm.weight']", ModelIO.IndexFile).Message);

        dir = Sharded();
        EditIndex(dir, o => o["weight_map"]!["model.norm.weight"] = "../elsewhere.safetensors");
        Refused(dir, "weight_map['model.norm.weight']", ModelIO.IndexFile);

        dir = Sharded();
        EditIndex(dir, o => o["metadata"]!["total_size"] = "123");
        Refused(dir, "metadata.total_size", ModelIO.IndexFile);

        dir = Sharded();
        EditIndex(dir, o => o.Remove("weight_map"));
        Refused(dir, "weight_map", ModelIO.IndexFile);

        dir = Sharded();
        File.WriteAllText(Index(dir), "[1, 2");
        Assert.Contains("not valid JSON", Refused(dir, null, ModelIO.IndexFile).Message);

        // A shard the index names but the folder lacks.
        dir = Sharded();
        File.Delete(Path.Combine(dir, shards[1]!));
        Assert.Contains($"names the shard {shards[1]}", Refused(dir, FieldNaming(dir, shards[1]!), ModelIO.IndexFile).Message);

        // The index says one shard, the tensor is in another.
        dir = Sharded();
        EditIndex(dir, o => o["weight_map"]!["model.norm.weight"] = shards[0]);
        Assert.Contains("but the tensor is in", Refused(dir, "weight_map['model.norm.weight']", ModelIO.IndexFile).Message);

        // A tensor in a shard that the index does not list.
        dir = Sharded();
        EditIndex(dir, o => o["weight_map"]!.AsObject().Remove("model.norm.weight"));
        Assert.Contains("does not list 'model.norm.weight'", Refused(dir, "weight_map", ModelIO.IndexFile).Message);
    }

    /// <summary>Random mutations of a shard of a fixture (byte flips, truncation, a wrong header length, header numbers
    /// swapped for huge or negative ones, JSON characters, garbage: PropertyTests.Mutate) and of its index (an entry or
    /// the metadata set to a value of the wrong type or removed): loading either succeeds or throws one of the documented
    /// exceptions naming the file at fault; never another exception or a hang.</summary>
    [Fact]
    public void MutatedShardsAndIndexesLoadOrAreRefusedByName()
    {
        using var rng = TestSupport.TorchSeed();           // building a model (ModelIO.Load) draws from torch's global generator
        string template = Sharded();
        var shardNames = Directory.GetFiles(template, "model-*").Select(Path.GetFileName).Order().ToArray();
        var tensorsInIndex = JsonNode.Parse(File.ReadAllText(Index(template)))!["weight_map"]!.AsObject().Select(kv => kv.Key).ToArray();
        var outcomes = new Dictionary<string, int>();
        var gen =
            from target in Gen.Choose(0, shardNames.Length)          // a shard, or (== Length) the index
            from kind in Gen.Choose(0, 6)
            from a in Gen.Choose(0, int.MaxValue)
            from b in Gen.Choose(0, int.MaxValue)
            from c in Gen.Choose(0, int.MaxValue)
            select (target, kind, a, b, c);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            string dir = TestSupport.TempDir();
            foreach (var file in Directory.GetFiles(template)) File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
            string victim;
            if (t.target < shardNames.Length)
            {
                victim = Path.Combine(Path.GetFullPath(dir), shardNames[t.target]!);
                File.WriteAllBytes(victim, PropertyTests.Mutate(File.ReadAllBytes(victim), t.kind, t.a, t.b, t.c));
            }
            else
            {
                victim = Index(Path.GetFullPath(dir));
                string key = tensorsInIndex[t.a % tensorsInIndex.Length];
                EditIndex(dir, o =>
                {
                    var value = t.kind == 0 ? null : JsonNode.Parse(Pool[t.b % Pool.Length]);
                    if (t.c % 3 == 0) o["metadata"] = value is null ? null : new JsonObject { ["total_size"] = value };
                    else if (t.kind == 0) o["weight_map"]!.AsObject().Remove(key);
                    else o["weight_map"]![key] = value;
                });
            }
            var e = Within(() => { using var m = ModelIO.Load(dir); });
            string outcome = e switch
            {
                null => "loaded",
                SafeTensorsFormatException sf when sf.Message.StartsWith(victim) => "safetensors",
                // A renamed tensor in a shard is caught by the index cross-check, which names the index.
                ModelFormatException mf when mf.File == victim || mf.File == Index(Path.GetFullPath(dir)) => "model-format",
                CheckpointMismatchException cm when cm.Message.Contains(Path.GetFullPath(dir)) => "mismatch",
                _ => throw new Xunit.Sdk.XunitException($"mutation {t} of {Path.GetFileName(victim)}: undocumented {e.GetType().Name}: {e.Message}"),
            };
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            return true;
        }).Check(TestSupport.Property(300));
        Assert.True(outcomes.GetValueOrDefault("loaded") > 10 && outcomes.GetValueOrDefault("safetensors") > 50 && outcomes.GetValueOrDefault("model-format") > 10,
            string.Join(", ", outcomes.Select(kv => $"{kv.Key} {kv.Value}")));
    }

    /// <summary>The first tensor the index maps to <paramref name="shard"/> (the field a missing shard is reported under).</summary>
    static string FieldNaming(string dir, string shard)
    {
        var map = JsonNode.Parse(File.ReadAllText(Index(dir)))!["weight_map"]!.AsObject();
        return $"weight_map['{map.First(kv => kv.Value!.GetValue<string>() == shard).Key}']";
    }

    [Fact]
    public void ATruncatedShardOrAHeaderWithStringOffsetsNamesTheShard()
    {
        using var rng = TestSupport.TorchSeed();           // building a model (ModelIO.Load) draws from torch's global generator
        string dir = Sharded();
        string shard = Directory.GetFiles(dir, "model-00002-*").Single();
        byte[] bytes = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, bytes[..(bytes.Length - 10)]);
        var e = Assert.IsType<SafeTensorsFormatException>(Within(() => { using var m = ModelIO.Load(dir); }));
        Assert.Contains(shard, e.Message);
        Assert.Contains("truncated", e.Message);

        dir = Sharded();
        shard = Directory.GetFiles(dir, "model-00002-*").Single();
        bytes = File.ReadAllBytes(shard);
        int headerLength = (int)BitConverter.ToUInt64(bytes, 0);
        string header = System.Text.Encoding.UTF8.GetString(bytes, 8, headerLength);
        var m = System.Text.RegularExpressions.Regex.Match(header, "\"data_offsets\":\\[(\\d+),(\\d+)\\]");
        string mutated = header[..m.Index] + $"\"data_offsets\":[\"{m.Groups[1].Value}\",{m.Groups[2].Value}]" + header[(m.Index + m.Length)..];
        mutated = mutated.TrimEnd() + new string(' ', Math.Max(0, headerLength - mutated.TrimEnd().Length));
        Assert.Equal(headerLength, System.Text.Encoding.UTF8.GetByteCount(mutated));
        File.WriteAllBytes(shard, [.. bytes[..8], .. System.Text.Encoding.UTF8.GetBytes(mutated), .. bytes[(8 + headerLength)..]]);
        e = Assert.IsType<SafeTensorsFormatException>(Within(() => { using var model = ModelIO.Load(dir); }));
        Assert.Contains(shard, e.Message);
        Assert.Contains("data_offsets", e.Message);
    }

    [Fact]
    public void HeadersAreCheckedAgainstTheConfigBeforeTheModelIsBuilt()
    {
        // Integer weights, a wrong shape, a missing and an extra tensor: all listed from the headers.
        string dir = Copy("h_gqa_tied");
        string file = Path.Combine(dir, ModelIO.WeightsFile);
        var (tensors, _) = SafeTensors.Load(file);
        tensors["model.norm.weight"] = tensors["model.norm.weight"].to(ScalarType.Int64);
        tensors.Remove("model.layers.1.mlp.up_proj.weight", out var removed); removed!.Dispose();
        tensors["model.layers.0.mlp.down_proj.weight"] = zeros(3, 3);
        tensors["model.layers.9.self_attn.q_proj.weight"] = zeros(2);
        tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = ones(4);     // a buffer older checkpoints store: tolerated
        SafeTensors.Save(file, tensors.Select(kv => (kv.Key, kv.Value)));
        foreach (var t in tensors.Values) t.Dispose();
        var e = Assert.Throws<CheckpointMismatchException>(() => ModelIO.Load(dir));
        Assert.Equal(4, e.Problems.Count);
        Assert.Contains(e.Problems, p => p.Contains("model.norm.weight: file has dtype I64"));
        Assert.Contains(e.Problems, p => p.Contains("missing tensor model.layers.1.mlp.up_proj.weight"));
        Assert.Contains(e.Problems, p => p.Contains("model.layers.0.mlp.down_proj.weight: file has shape [3, 3]"));
        Assert.Contains(e.Problems, p => p.Contains("unexpected tensor model.layers.9.self_attn.q_proj.weight"));
    }

    [Fact]
    public void NonFiniteWeightsAreRefusedNamingTensorAndFileUnlessAllowed()
    {
        using var torchRng = TestSupport.TorchSeed();      // building a model (ModelIO.Load) draws from torch's global generator
        string dir = Copy("s_qwen2_bias");
        string file = Path.Combine(dir, ModelIO.WeightsFile);
        var (tensors, _) = SafeTensors.Load(file);
        var rng = new Random(TestSupport.Seed());
        var bias = tensors["model.layers.1.self_attn.k_proj.bias"];
        bias[rng.Next((int)bias.shape[0])] = float.NaN;
        SafeTensors.Save(file, tensors.Select(kv => (kv.Key, kv.Value)));
        foreach (var t in tensors.Values) t.Dispose();
        var e = Refused(dir, "model.layers.1.self_attn.k_proj.bias", ModelIO.WeightsFile);
        Assert.Contains("1 non-finite", e.Message);
        using var m = ModelIO.Load(dir, allowNonFinite: true);
        Assert.False(m.named_parameters().First(p => p.name == "model.layers.1.self_attn.k_proj.bias").parameter.isfinite().all().item<bool>());
        // LoadWeights into an existing model checks every tensor before the first copy: the model is left as it was.
        using var fresh = ModelIO.Load(Fixture("s_qwen2_bias"));
        var before = fresh.Model.EmbedTokens.weight!.clone();
        using (no_grad()) fresh.Model.EmbedTokens.weight!.add_(1);
        Assert.IsType<ModelFormatException>(Record.Exception(() => ModelIO.LoadWeights(fresh, dir)));
        Assert.Equal(1.0, TestSupport.MaxAbs(fresh.Model.EmbedTokens.weight!, before), 5);
    }

    [Fact]
    public void ATiedHeadStoredInTheFileMustEqualTheEmbedding()
    {
        using var rng = TestSupport.TorchSeed();           // building a model (ModelIO.Load) draws from torch's global generator
        string dir = Copy("h_gqa_tied");
        string file = Path.Combine(dir, ModelIO.WeightsFile);
        var (tensors, _) = SafeTensors.Load(file);
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone();
        SafeTensors.Save(file, tensors.Select(kv => (kv.Key, kv.Value)));
        using (var same = ModelIO.Load(dir)) Assert.True(same.Config.TieWordEmbeddings);     // equal: fine
        using var g = TestSupport.Generator();
        tensors["lm_head.weight"].add_(randn(tensors["lm_head.weight"].shape, generator: g) * 1e-3);
        SafeTensors.Save(file, tensors.Select(kv => (kv.Key, kv.Value)));
        foreach (var t in tensors.Values) t.Dispose();
        Assert.Contains("tie_word_embeddings", Refused(dir, "lm_head.weight", ModelIO.WeightsFile).Message);
    }

    /// <summary>Weight files as transformers picks them: model.safetensors first, so a stale index whose shards are gone
    /// does not stop a folder that has the single file.</summary>
    [Fact]
    public void TheSingleFileWinsOverAStaleIndex()
    {
        using var rng = TestSupport.TorchSeed();           // building a model (ModelIO.Load) draws from torch's global generator
        string dir = Copy("h_mha_untied");
        File.WriteAllText(Index(dir), "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\"}}");
        Assert.Equal([Path.Combine(dir, ModelIO.WeightsFile)], ModelIO.WeightFiles(dir));
        using var m = ModelIO.Load(dir);
        Assert.True(ModelIO.IsComplete(dir));
    }

    /// <summary>Saving over an existing save replaces its weight files (no stale single file shadowing new shards, no
    /// stale index or shard), and a folder whose config.json is missing — an interrupted save — is never loaded.</summary>
    [Fact]
    public void SavingInPlaceRemovesTheOtherLayoutAndAFolderWithoutConfigIsNotAModel()
    {
        using var rng = TestSupport.TorchSeed();           // building a model (ModelIO.Load) draws from torch's global generator
        using var model = ModelIO.Load(Fixture("h_mha_untied"));
        string dir = TestSupport.TempDir();
        File.WriteAllText(Path.Combine(dir, ModelIO.TokenizerFile), "{}");       // a file the save must keep
        ModelIO.Save(model, dir);
        ModelIO.Save(model, dir, maxShardBytes: 30_000);
        var files = Directory.GetFiles(dir).Select(Path.GetFileName).ToList();
        Assert.DoesNotContain(ModelIO.WeightsFile, files);
        Assert.Contains(ModelIO.IndexFile, files);
        Assert.Contains(ModelIO.TokenizerFile, files);
        using (var back = ModelIO.Load(dir)) { }
        ModelIO.Save(model, dir);
        files = Directory.GetFiles(dir).Select(Path.GetFileName).ToList();
        Assert.Equal([ModelIO.ConfigFile, ModelIO.GenerationConfigFile, ModelIO.WeightsFile, ModelIO.TokenizerFile], files.Order());
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(dir)!, $".{Path.GetFileName(dir)}.saving-*"));

        File.Delete(Config(dir));
        Assert.False(ModelIO.IsComplete(dir));
        var e = Assert.Throws<FileNotFoundException>(() => ModelIO.Load(dir));
        Assert.Contains("interrupted save", e.Message);
    }

    // ---- files that are not what they claim

    [DllImport("libc", SetLastError = true)]
    static extern int mkfifo(string path, uint mode);

    [Fact]
    public void OnlyRegularFilesInsideTheFolderAreRead()
    {
        using var rng = TestSupport.TorchSeed();           // building a model (ModelIO.Load) draws from torch's global generator
        Assert.True(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "these checks need a Unix file system (links, FIFOs)");
        string outside = TestSupport.TempDir();
        string secret = Path.Combine(outside, "secret.txt");
        File.WriteAllText(secret, "TOP-SECRET-CONTENT");

        // A shard that is a link outside the folder: refused without reading it.
        string dir = Copy("h_mha_untied");
        string weights = Path.Combine(dir, ModelIO.WeightsFile);
        File.Move(weights, Path.Combine(outside, "weights.safetensors"));
        File.CreateSymbolicLink(weights, Path.Combine(outside, "weights.safetensors"));
        var e = Refused(dir, null, ModelIO.WeightsFile);
        Assert.Contains("outside the folder", e.Message);

        // config.json linked to a file outside: refused, its bytes never appear.
        dir = Copy("h_mha_untied");
        File.Delete(Config(dir));
        File.CreateSymbolicLink(Config(dir), secret);
        var c = Refused(dir, null);
        Assert.DoesNotContain("TOP-SECRET", c.Message);
        Assert.Contains("outside the folder", c.Message);

        // model.safetensors → /dev/zero (outside, and a device): refused at once.
        dir = Copy("h_mha_untied");
        File.Delete(Path.Combine(dir, ModelIO.WeightsFile));
        File.CreateSymbolicLink(Path.Combine(dir, ModelIO.WeightsFile), "/dev/zero");
        Assert.Contains("outside the folder", Refused(dir, null, ModelIO.WeightsFile).Message);

        // A FIFO in place of the weights or the config: refused without opening it (opening would wait for a writer).
        dir = Copy("h_mha_untied");
        File.Delete(Path.Combine(dir, ModelIO.WeightsFile));
        Assert.Equal(0, mkfifo(Path.Combine(dir, ModelIO.WeightsFile), 0x1b6));
        Assert.Contains("not a regular file", Refused(dir, null, ModelIO.WeightsFile).Message);
        File.Delete(Config(dir));
        Assert.Equal(0, mkfifo(Config(dir), 0x1b6));
        Assert.Contains("not a regular file", Refused(dir, null).Message);

        // A link inside the folder is fine, and so is the Hugging Face hub cache (snapshots/<rev>/file → ../../blobs/<hash>).
        string repo = Path.Combine(TestSupport.TempDir(), "models--org--tiny");
        string blobs = Path.Combine(repo, "blobs"), snapshot = Path.Combine(repo, "snapshots", "0123abcd");
        Directory.CreateDirectory(blobs); Directory.CreateDirectory(snapshot);
        foreach (var f in new[] { ModelIO.ConfigFile, ModelIO.WeightsFile })
        {
            string blob = Path.Combine(blobs, $"hash-{f}");
            File.Copy(Path.Combine(Fixture("h_mha_untied"), f), blob);
            File.CreateSymbolicLink(Path.Combine(snapshot, f), Path.Combine("..", "..", "blobs", $"hash-{f}"));
        }
        using (var m = ModelIO.Load(snapshot)) Assert.Equal(100, m.Config.VocabSize);
    }
}

using System.Collections;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.IO;
using static TorchSharp.torch;

namespace Mora.Model;

/// <summary>The decoder families the kit builds (config.json's <c>model_type</c>); all three are LLaMA's block with
/// these differences, as in transformers 4.40: Mistral adds a sliding attention window, Qwen2 biases q/k/v.</summary>
public enum ModelType { Llama, Mistral, Qwen2 }

/// <summary>config.json's <c>eos_token_id</c>: one id or a list (Llama 3.1 lists three); generation stops at any of them.
/// Compared by value.</summary>
public sealed class TokenIds : IReadOnlyList<int>, IEquatable<TokenIds>
{
    readonly int[] _ids;
    public TokenIds(params int[] ids) => _ids = (int[])ids.Clone();
    public static TokenIds None { get; } = new();
    public static TokenIds Of(int? id) => id is { } v ? new(v) : None;

    /// <summary>The first id (what a single-id API uses), or null when there is none.</summary>
    public int? First => _ids.Length > 0 ? _ids[0] : null;
    public int Count => _ids.Length;
    public int this[int index] => _ids[index];
    public IEnumerator<int> GetEnumerator() => ((IEnumerable<int>)_ids).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    public bool Equals(TokenIds? other) => other is not null && _ids.AsSpan().SequenceEqual(other._ids);
    public override bool Equals(object? obj) => Equals(obj as TokenIds);
    public override int GetHashCode() { var h = new HashCode(); foreach (int i in _ids) h.Add(i); return h.ToHashCode(); }
    public override string ToString() => _ids.Length == 1 ? _ids[0].ToString() : $"[{string.Join(", ", _ids)}]";
}

/// <summary>
/// A LLaMA-style decoder's config.json, with the Hugging Face names (<c>hidden_size</c>, <c>num_hidden_layers</c>, …), so
/// a LLaMA, Mistral or Qwen2 checkpoint is read as transformers 4.40 reads it and the kit's own models are written in
/// the same layout. Every field that changes the computation is either modelled (RoPE scaling linear / dynamic / llama3,
/// Mistral's sliding window, Qwen2's and <c>attention_bias</c>'s biases, attention dropout) or refused by
/// <see cref="FromJson"/> with the file and the field. Presets run from <see cref="Tiny"/> (tests, seconds on a CPU) to
/// <see cref="Laptop"/> (a laptop GPU).
/// </summary>
public sealed record LlamaConfig
{
    /// <summary><c>model_type</c>: which transformers class the checkpoint is (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM).</summary>
    public ModelType ModelType { get; init; } = ModelType.Llama;
    public int VocabSize { get; init; } = 128;
    public int HiddenSize { get; init; } = 64;
    public int IntermediateSize { get; init; } = 172;
    public int NumHiddenLayers { get; init; } = 2;
    public int NumAttentionHeads { get; init; } = 4;
    /// <summary>Key/value heads (grouped-query attention); equal to the attention heads for plain multi-head attention.</summary>
    public int NumKeyValueHeads { get; init; } = 4;
    /// <summary>Context length (longest sequence the model is built for; see <see cref="ContextLength"/>).</summary>
    public int MaxPositionEmbeddings { get; init; } = 256;
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000;
    /// <summary>When true the output head reuses the token embedding (no <c>lm_head.weight</c> is stored).</summary>
    public bool TieWordEmbeddings { get; init; }
    /// <summary><c>bos_token_id</c>; null when config.json has none (Qwen2 keeps it in generation_config.json).</summary>
    public int? BosTokenId { get; init; } = 1;
    /// <summary><c>eos_token_id</c>, one id or several.</summary>
    public TokenIds EosTokenIds { get; init; } = new(2);
    /// <summary>The first <c>eos_token_id</c>; setting it sets <see cref="EosTokenIds"/> to that one id.</summary>
    public int? EosTokenId { get => EosTokenIds.First; init => EosTokenIds = TokenIds.Of(value); }
    /// <summary><c>pad_token_id</c> (no effect on the computation; kept so a saved config says what the file said).</summary>
    public int? PadTokenId { get; init; }
    /// <summary><c>rope_scaling</c> (LLaMA only): null for plain RoPE.</summary>
    public RopeScaling? RopeScaling { get; init; }
    /// <summary><c>attention_bias</c> (LLaMA): q, k, v and o projections carry a bias. Qwen2 always biases q, k, v (not o).</summary>
    public bool AttentionBias { get; init; }
    /// <summary><c>attention_dropout</c>: dropout on the attention probabilities while training (as transformers); none in eval.</summary>
    public double AttentionDropout { get; init; }
    /// <summary><c>sliding_window</c>: Mistral's query at position i sees the keys i − W … i (W + 1 keys); null = all.
    /// Qwen2 stores it but uses it only with <see cref="UseSlidingWindow"/>, which the kit refuses.</summary>
    public int? SlidingWindow { get; init; }
    /// <summary>Qwen2's <c>use_sliding_window</c> (must be false).</summary>
    public bool UseSlidingWindow { get; init; }
    /// <summary>Qwen2's <c>max_window_layers</c> (read by transformers only with a sliding window; kept for saving).</summary>
    public int MaxWindowLayers { get; init; } = 28;
    /// <summary><c>initializer_range</c>: the standard deviation of the initial weights (<see cref="LlamaForCausalLM.InitWeights"/>).</summary>
    public double InitializerRange { get; init; } = 0.02;
    /// <summary><c>use_cache</c> (no effect on the kit, which caches when asked; kept for saving).</summary>
    public bool UseCache { get; init; } = true;
    /// <summary><c>pretraining_tp</c> (LLaMA): transformers splits each projection into this many slices and sums them, the
    /// same linear map up to float round-off; accepted, except with <see cref="AttentionBias"/> (4.40 then drops the biases).</summary>
    public int PretrainingTp { get; init; } = 1;

    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>q_proj, k_proj and v_proj carry a bias (Qwen2, or <c>attention_bias</c>).</summary>
    public bool QkvBias => ModelType == ModelType.Qwen2 || AttentionBias;
    /// <summary>o_proj carries a bias (<c>attention_bias</c> only).</summary>
    public bool OutputBias => AttentionBias;
    /// <summary>The attention window the forward applies: Mistral's <c>sliding_window</c>, else none.</summary>
    public int? AttentionWindow => ModelType == ModelType.Mistral ? SlidingWindow : null;
    /// <summary>The longest sequence (cache included) the kit runs: <see cref="MaxPositionEmbeddings"/>, unlimited with
    /// dynamic RoPE scaling, whose rule is made for longer sequences.</summary>
    public long ContextLength => RopeScaling is { Type: RopeType.Dynamic } ? long.MaxValue : MaxPositionEmbeddings;

    // ---- size limits, checked before anything is allocated

    /// <summary>Largest <c>vocab_size</c> accepted (2²⁴).</summary>
    public const int MaxVocabSize = 1 << 24;
    /// <summary>Largest <c>hidden_size</c> and <c>intermediate_size</c> accepted (2²⁰; LLaMA 3.1 405B: 16 384 and 53 248).</summary>
    public const int MaxWidth = 1 << 20;
    /// <summary>Largest <c>num_hidden_layers</c> accepted (LLaMA 3.1 405B has 126).</summary>
    public const int MaxLayers = 1024;
    /// <summary>Largest <c>num_attention_heads</c> accepted.</summary>
    public const int MaxHeads = 4096;
    /// <summary>Largest <c>max_position_embeddings</c> and <c>sliding_window</c> accepted (2²⁶).</summary>
    public const int MaxPositions = 1 << 26;
    /// <summary>Largest model the kit builds: 1 TiB of parameters (and on a CPU, no more than the machine's memory).</summary>
    public const long MaxModelBytes = 1L << 40;

    /// <summary>2 layers, hidden 64: a training step takes milliseconds on a CPU (tests, quick checks).</summary>
    public static LlamaConfig Tiny(int vocabSize = 128) => new() { VocabSize = vocabSize };
    /// <summary>4 layers, hidden 128: the default for CPU experiments (minutes on 2 cores).</summary>
    public static LlamaConfig Small(int vocabSize = 128) => new()
    { VocabSize = vocabSize, HiddenSize = 128, IntermediateSize = 344, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 4, MaxPositionEmbeddings = 512 };
    /// <summary>6 layers, hidden 256: longer CPU runs (an hour) or a quick GPU run.</summary>
    public static LlamaConfig Medium(int vocabSize = 128) => new()
    { VocabSize = vocabSize, HiddenSize = 256, IntermediateSize = 688, NumHiddenLayers = 6, NumAttentionHeads = 8, NumKeyValueHeads = 8, MaxPositionEmbeddings = 512 };
    /// <summary>12 layers, hidden 768 (~85 M parameters plus embeddings): fits a laptop GPU with 6–8 GB.</summary>
    public static LlamaConfig Laptop(int vocabSize = 128) => new()
    { VocabSize = vocabSize, HiddenSize = 768, IntermediateSize = 2048, NumHiddenLayers = 12, NumAttentionHeads = 12, NumKeyValueHeads = 12, MaxPositionEmbeddings = 1024 };

    public static IReadOnlyList<string> PresetNames { get; } = ["tiny", "small", "medium", "laptop"];

    /// <summary>A preset by name (tiny, small, medium, laptop).</summary>
    public static LlamaConfig Preset(string name, int vocabSize) => name.ToLowerInvariant() switch
    {
        "tiny" => Tiny(vocabSize),
        "small" => Small(vocabSize),
        "medium" => Medium(vocabSize),
        "laptop" => Laptop(vocabSize),
        _ => throw new ArgumentException($"unknown model preset '{name}'; use one of {string.Join(", ", PresetNames)}", nameof(name)),
    };

    /// <summary>Checks every size and option; throws <see cref="ArgumentException"/> whose ParamName is the config.json field.</summary>
    public LlamaConfig Validate()
    {
        static void Range(long v, long max, string name)
        {
            if (v <= 0) throw new ArgumentException($"{name} must be positive, got {v}", name);
            if (v > max) throw new ArgumentException($"{name} {v:N0} is larger than the kit accepts ({max:N0})", name);
        }
        if (!Enum.IsDefined(ModelType)) throw new ArgumentException($"model_type {ModelType} is not one the kit builds", "model_type");
        Range(VocabSize, MaxVocabSize, "vocab_size"); Range(HiddenSize, MaxWidth, "hidden_size"); Range(IntermediateSize, MaxWidth, "intermediate_size");
        Range(NumHiddenLayers, MaxLayers, "num_hidden_layers"); Range(NumAttentionHeads, MaxHeads, "num_attention_heads");
        Range(NumKeyValueHeads, MaxHeads, "num_key_value_heads"); Range(MaxPositionEmbeddings, MaxPositions, "max_position_embeddings");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new ArgumentException($"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}", "hidden_size");
        if (HeadDim % 2 != 0)
            throw new ArgumentException($"head dimension hidden_size / num_attention_heads = {HeadDim} must be even for rotary embeddings", "hidden_size");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new ArgumentException($"num_attention_heads {NumAttentionHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}", "num_key_value_heads");
        if (!(RmsNormEps > 0) || double.IsInfinity(RmsNormEps)) throw new ArgumentException($"rms_norm_eps must be a finite positive number, got {RmsNormEps}", "rms_norm_eps");
        if (!(RopeTheta > 0) || double.IsInfinity(RopeTheta)) throw new ArgumentException($"rope_theta must be a finite positive number, got {RopeTheta}", "rope_theta");
        if (!(AttentionDropout >= 0 && AttentionDropout < 1)) throw new ArgumentException($"attention_dropout must be in [0, 1), got {AttentionDropout}", "attention_dropout");
        if (!(InitializerRange >= 0) || double.IsInfinity(InitializerRange)) throw new ArgumentException($"initializer_range must be a finite number ≥ 0, got {InitializerRange}", "initializer_range");
        if (PretrainingTp <= 0) throw new ArgumentException($"pretraining_tp must be positive, got {PretrainingTp}", "pretraining_tp");
        if (PretrainingTp > 1 && AttentionBias)
            throw new ArgumentException($"pretraining_tp {PretrainingTp} with attention_bias true is refused: transformers 4.40 then computes the sliced projections without their biases", "pretraining_tp");
        if (BosTokenId < 0) throw new ArgumentException($"bos_token_id must be ≥ 0, got {BosTokenId}", "bos_token_id");
        if (EosTokenIds.Any(i => i < 0)) throw new ArgumentException($"eos_token_id must be ≥ 0, got {EosTokenIds}", "eos_token_id");
        if (ModelType != ModelType.Llama && AttentionBias)
            throw new ArgumentException($"attention_bias is a LLaMA field; {Name(ModelType)} has its own fixed biases", "attention_bias");
        if (RopeScaling is { } rs)
        {
            if (ModelType != ModelType.Llama)
                throw new ArgumentException($"rope_scaling on a {Name(ModelType)} model is refused: transformers 4.40 ignores it there and later versions apply it", "rope_scaling");
            rs.Validate();
            if (rs.Type == RopeType.Dynamic && HeadDim <= 2)
                throw new ArgumentException($"dynamic rope_scaling needs a head dimension above 2 (its exponent is d/(d−2)), got {HeadDim}", "rope_scaling");
        }
        if (SlidingWindow is { } w) Range(w, MaxPositions, "sliding_window");
        if (SlidingWindow is not null && ModelType == ModelType.Llama)
            throw new ArgumentException("sliding_window is not a LLaMA field (transformers' LlamaModel would ignore it); a Mistral checkpoint has model_type \"mistral\"", "sliding_window");
        if (UseSlidingWindow)
            throw new ArgumentException("use_sliding_window true is refused: transformers versions disagree on which layers it windows (with max_window_layers) and 4.40's eager and SDPA attention disagree too", "use_sliding_window");
        if (MaxWindowLayers < 0) throw new ArgumentException($"max_window_layers must be ≥ 0, got {MaxWindowLayers}", "max_window_layers");
        _ = ParameterCount;   // throws when the sizes overflow
        return this;
    }

    static string Name(ModelType t) => t switch { ModelType.Llama => "llama", ModelType.Mistral => "mistral", _ => "qwen2" };

    /// <summary>The transformers class of the family (config.json's <c>architectures</c>).</summary>
    public string Architecture => ModelType switch { ModelType.Llama => "LlamaForCausalLM", ModelType.Mistral => "MistralForCausalLM", _ => "Qwen2ForCausalLM" };

    /// <summary>The tensors a checkpoint of this config holds, under their Hugging Face names and shapes, in
    /// transformers' state-dict order (a tied head is not stored). <see cref="LlamaForCausalLM"/> has exactly these parameters.</summary>
    public IReadOnlyList<(string Name, long[] Shape)> TensorShapes()
    {
        long h = HiddenSize, kv = (long)NumKeyValueHeads * HeadDim, i = IntermediateSize;
        var list = new List<(string, long[])> { ("model.embed_tokens.weight", [VocabSize, h]) };
        for (int l = 0; l < NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            list.Add((p + "self_attn.q_proj.weight", [h, h]));
            if (QkvBias) list.Add((p + "self_attn.q_proj.bias", [h]));
            list.Add((p + "self_attn.k_proj.weight", [kv, h]));
            if (QkvBias) list.Add((p + "self_attn.k_proj.bias", [kv]));
            list.Add((p + "self_attn.v_proj.weight", [kv, h]));
            if (QkvBias) list.Add((p + "self_attn.v_proj.bias", [kv]));
            list.Add((p + "self_attn.o_proj.weight", [h, h]));
            if (OutputBias) list.Add((p + "self_attn.o_proj.bias", [h]));
            list.Add((p + "mlp.gate_proj.weight", [i, h]));
            list.Add((p + "mlp.up_proj.weight", [i, h]));
            list.Add((p + "mlp.down_proj.weight", [h, i]));
            list.Add((p + "input_layernorm.weight", [h]));
            list.Add((p + "post_attention_layernorm.weight", [h]));
        }
        list.Add(("model.norm.weight", [h]));
        if (!TieWordEmbeddings) list.Add(("lm_head.weight", [VocabSize, h]));
        return list;
    }

    /// <summary>The number of parameters (checked arithmetic: sizes that overflow throw <see cref="ArgumentException"/>).</summary>
    public long ParameterCount
    {
        get
        {
            // Closed form of TensorShapes(), so a huge config is sized without listing its layers.
            try
            {
                checked
                {
                    long h = HiddenSize, kv = (long)NumKeyValueHeads * HeadDim, i = IntermediateSize, v = VocabSize;
                    long perLayer = h * h * 2 + kv * h * 2 + 3 * i * h + 2 * h + (QkvBias ? h + 2 * kv : 0) + (OutputBias ? h : 0);
                    return v * h * (TieWordEmbeddings ? 1 : 2) + h + perLayer * NumHiddenLayers;
                }
            }
            catch (OverflowException) { throw new ArgumentException("the sizes of the config overflow a 64-bit parameter count", "hidden_size"); }
        }
    }

    /// <summary>Refuses, before anything is allocated, a model whose parameters would take more than
    /// <see cref="MaxModelBytes"/> in <paramref name="dtype"/>, or, on a CPU, more than the machine's memory as .NET reports it
    /// (<see cref="GCMemoryInfo.TotalAvailableMemoryBytes"/>, which honours a container's limit).</summary>
    public void CheckFits(ScalarType dtype, Device? device)
    {
        long count = ParameterCount;
        int size = dtype switch { ScalarType.Float64 or ScalarType.Int64 => 8, ScalarType.Float16 or ScalarType.BFloat16 => 2, _ => 4 };
        double bytes = (double)count * size;
        string what = $"the model has {count:N0} parameters ({bytes / 1e9:0.###} GB as {dtype}: hidden_size {HiddenSize}, intermediate_size {IntermediateSize}, num_hidden_layers {NumHiddenLayers}, vocab_size {VocabSize})";
        if (bytes > MaxModelBytes) throw new ArgumentException($"{what}, more than the kit builds ({MaxModelBytes / 1e9:0} GB)", "num_hidden_layers");
        if (device is null || device.type == TorchSharp.DeviceType.CPU)
        {
            long memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
            if (memory > 0 && bytes > memory)
                throw new ArgumentException($"{what}, more than this machine's memory ({memory / 1e9:0.#} GB)", "num_hidden_layers");
        }
    }

    // ---- writing

    /// <summary>The config.json text transformers' <c>save_pretrained</c> writes for this model (4.40's fields of the
    /// family's config class, keys sorted, Python's number format), without <c>transformers_version</c>: the kit is not
    /// transformers, and transformers reads a config without it.</summary>
    public string ToJson(string torchDtype = "float32")
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(Architecture),
            ["model_type"] = Name(ModelType),
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["hidden_act"] = "silu",
            ["initializer_range"] = InitializerRange,
            ["attention_dropout"] = AttentionDropout,
            ["use_cache"] = UseCache,
            ["torch_dtype"] = torchDtype,
        };
        AddTokenIds(o);
        switch (ModelType)
        {
            case ModelType.Llama:
                o["attention_bias"] = AttentionBias;
                o["pretraining_tp"] = PretrainingTp;
                o["rope_scaling"] = RopeScaling is null ? null : RopeScalingJson(RopeScaling);
                break;
            case ModelType.Mistral:
                o["sliding_window"] = SlidingWindow;
                break;
            case ModelType.Qwen2:
                o["sliding_window"] = SlidingWindow;
                o["use_sliding_window"] = UseSlidingWindow;
                o["max_window_layers"] = MaxWindowLayers;
                break;
        }
        return PythonJson.Serialize(o);
    }

    /// <summary>generation_config.json as transformers writes it for a model built from its config
    /// (<c>GenerationConfig.from_model_config</c>): <c>_from_model_config</c> and the special token ids the config has.</summary>
    public string GenerationConfigJson()
    {
        var o = new JsonObject { ["_from_model_config"] = true };
        AddTokenIds(o);
        return PythonJson.Serialize(o);
    }

    void AddTokenIds(JsonObject o)
    {
        if (BosTokenId is { } bos) o["bos_token_id"] = bos;
        if (EosTokenIds.Count == 1) o["eos_token_id"] = EosTokenIds[0];
        else if (EosTokenIds.Count > 1) o["eos_token_id"] = new JsonArray(EosTokenIds.Select(i => (JsonNode)i).ToArray());
        if (PadTokenId is { } pad) o["pad_token_id"] = pad;
    }

    /// <summary>linear and dynamic as {"factor", "type"} (transformers 4.40 accepts exactly these two keys), llama3 with
    /// "rope_type" and its three fields, as Llama 3.1's config.json.</summary>
    static JsonObject RopeScalingJson(RopeScaling s) => s.Type == RopeType.Llama3
        ? new JsonObject
        {
            ["rope_type"] = s.Name, ["factor"] = s.Factor, ["low_freq_factor"] = s.LowFreqFactor,
            ["high_freq_factor"] = s.HighFreqFactor, ["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings,
        }
        : new JsonObject { ["type"] = s.Name, ["factor"] = s.Factor };

    // ---- reading

    /// <summary>
    /// Reads a Hugging Face config.json of a LLaMA, Mistral or Qwen2 model as transformers 4.40 does (its defaults for a
    /// missing field, per family), except that the five sizes are required. Throws <see cref="ModelFormatException"/>
    /// naming <paramref name="source"/> and the field for invalid JSON, a mistyped or out-of-range value, and every field
    /// that would change the computation and is not modelled: another <c>model_type</c> or <c>architectures</c>,
    /// <c>hidden_act</c> other than silu, <c>mlp_bias</c>, a <c>head_dim</c> other than hidden_size / num_attention_heads,
    /// <c>partial_rotary_factor</c>, <c>quantization_config</c>, <c>rope_parameters</c> and <c>layer_types</c>
    /// (transformers 5's layout), an unknown or mistyped <c>rope_scaling</c> (yarn, longrope, su, … are named),
    /// <c>use_sliding_window</c>, <c>sliding_window</c> on LLaMA, <c>attention_bias</c> or <c>rope_scaling</c> on Mistral/Qwen2,
    /// an unknown <c>torch_dtype</c>.
    /// </summary>
    public static LlamaConfig FromJson(string json, string source = "config.json")
    {
        JsonObject o;
        try
        {
            o = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { MaxDepth = 32, AllowDuplicateProperties = false }) as JsonObject
                ?? throw new ModelFormatException(source, null, "is not a JSON object");
        }
        catch (JsonException e) { throw new ModelFormatException(source, null, $"is not valid JSON ({e.Message})", e); }
        var f = new Fields(o, source);

        var type = f.String("model_type") switch
        {
            null or "llama" => ModelType.Llama,
            "mistral" => ModelType.Mistral,
            "qwen2" => ModelType.Qwen2,
            var other => throw f.Refuse("model_type", $"'{other}' is not a LLaMA-style decoder this kit can load (model_type 'llama', 'mistral' or 'qwen2')"),
        };
        string family = Name(type);
        var defaults = new LlamaConfig { ModelType = type };
        if (f.Node("architectures") is { } arch)
        {
            if (arch is not JsonArray list || list.Any(a => a is not JsonValue v || v.GetValueKind() != JsonValueKind.String))
                throw f.Refuse("architectures", $"must be a list of class names, got {Fields.Show(arch)}");
            string expected = defaults.Architecture;
            if (list.Count > 0 && !list.Any(a => a!.GetValue<string>() == expected))
                throw f.Refuse("architectures", $"{Fields.Show(arch)} is not {expected}: the kit builds the causal language model of model_type '{family}' (another head has other weights)");
        }
        if (f.String("hidden_act") is { } act && act != "silu")
            throw f.Refuse("hidden_act", $"'{act}' is not supported (LLaMA, Mistral and Qwen2 use silu)");
        if (f.Bool("mlp_bias", false)) throw f.Refuse("mlp_bias", "true is not modelled (biases on gate_proj, up_proj, down_proj)");
        foreach (var name in new[] { "quantization_config", "rope_parameters", "layer_types" })
            if (f.Node(name) is not null)
                throw f.Refuse(name, name == "quantization_config"
                    ? "is present: quantized checkpoints are not read (the kit computes in float32, bfloat16 or float16 from plain weights)"
                    : "is present: that is transformers 5's layout, which the kit does not read yet (its rotary and per-layer attention settings would be ignored)");
        if (f.Number("partial_rotary_factor", 1) != 1) throw f.Refuse("partial_rotary_factor", "other than 1 is not modelled (RoPE on part of each head)");
        foreach (var dtypeField in new[] { "torch_dtype", "dtype" })
            if (f.String(dtypeField) is { } dt && dt is not ("float32" or "float16" or "bfloat16" or "float64" or "float" or "half" or "double"))
                throw f.Refuse(dtypeField, $"'{dt}' is not a floating dtype the kit knows (float32, bfloat16, float16, float64)");

        int vocab = f.Int("vocab_size"), hidden = f.Int("hidden_size"), intermediate = f.Int("intermediate_size");
        int layers = f.Int("num_hidden_layers"), heads = f.Int("num_attention_heads");
        if (f.IntOrNull("head_dim") is { } headDim && heads > 0 && headDim * (long)heads != hidden)
            throw f.Refuse("head_dim", $"{headDim} differs from hidden_size / num_attention_heads = {hidden} / {heads}: a separate head dimension is not modelled");

        bool llama = type == ModelType.Llama, mistral = type == ModelType.Mistral, qwen2 = type == ModelType.Qwen2;
        var config = new LlamaConfig
        {
            ModelType = type,
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            // transformers 4.40 defaults: num_key_value_heads absent = heads (MistralConfig: 8, Qwen2Config: 32), null = heads;
            // max_position_embeddings 2048 / 131072 / 32768.
            NumKeyValueHeads = f.IntOrNull("num_key_value_heads") ?? (!f.Has("num_key_value_heads") && (mistral || type == ModelType.Qwen2) ? (mistral ? 8 : 32) : heads),
            MaxPositionEmbeddings = f.IntOrNull("max_position_embeddings") ?? (llama ? 2048 : mistral ? 4096 * 32 : 32768),
            RmsNormEps = f.Number("rms_norm_eps", 1e-6),
            RopeTheta = f.Number("rope_theta", 10000),
            TieWordEmbeddings = f.Bool("tie_word_embeddings", false),
            BosTokenId = f.Has("bos_token_id") ? f.IntOrNull("bos_token_id") : qwen2 ? null : 1,
            EosTokenIds = f.Has("eos_token_id") ? f.Ids("eos_token_id") : qwen2 ? TokenIds.None : new TokenIds(2),
            PadTokenId = f.IntOrNull("pad_token_id"),
            RopeScaling = f.Has("rope_scaling") ? ParseRopeScaling(f, llama) : null,
            AttentionBias = f.Bool("attention_bias", false),
            AttentionDropout = f.Number("attention_dropout", 0),
            // MistralConfig and Qwen2Config default sliding_window to 4096; null in the file means no window.
            SlidingWindow = f.Has("sliding_window") ? f.IntOrNull("sliding_window") : llama ? null : 4096,
            UseSlidingWindow = qwen2 && f.Bool("use_sliding_window", false),
            MaxWindowLayers = qwen2 ? f.IntOrNull("max_window_layers") ?? 28 : 28,
            InitializerRange = f.Number("initializer_range", 0.02),
            UseCache = f.Bool("use_cache", true),
            PretrainingTp = llama ? f.IntOrNull("pretraining_tp") ?? 1 : 1,
        };
        try { return config.Validate(); }
        catch (ArgumentException e) { throw new ModelFormatException(source, e.ParamName, Fields.WithoutParam(e), e); }
    }

    static RopeScaling? ParseRopeScaling(Fields f, bool llama)
    {
        var node = f.Node("rope_scaling");
        if (node is null) return null;
        if (node is not JsonObject o) throw f.Refuse("rope_scaling", $"must be an object or null, got {Fields.Show(node)}");
        if (!llama) throw f.Refuse("rope_scaling", "on a mistral or qwen2 model is refused: transformers 4.40 ignores it there and later versions apply it");
        var g = new Fields(o, f.Source, "rope_scaling.");
        string? typeName = g.String("type"), ropeType = g.String("rope_type");
        if (typeName is not null && ropeType is not null && typeName != ropeType)
            throw f.Refuse("rope_scaling", $"has type '{typeName}' and rope_type '{ropeType}', which disagree");
        string? name = ropeType ?? typeName;
        if (name is null) throw f.Refuse("rope_scaling", $"has no 'type' or 'rope_type': {Fields.Show(node)}");
        RopeType? type = name switch
        {
            "linear" => RopeType.Linear,
            "dynamic" => RopeType.Dynamic,
            "llama3" => RopeType.Llama3,
            "default" => null,
            _ => throw f.Refuse("rope_scaling.type", $"'{name}' is not supported (the kit models linear, dynamic and llama3; yarn, longrope, su and others are refused)"),
        };
        string[] known = type == RopeType.Llama3
            ? ["type", "rope_type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"]
            : ["type", "rope_type", "factor"];
        if (o.Select(kv => kv.Key).FirstOrDefault(k => !known.Contains(k)) is { } extra)
            throw f.Refuse($"rope_scaling.{extra}", $"is not read for rope type '{name}' (the kit reads {string.Join(", ", known)})");
        if (type is null) return null;   // {"rope_type": "default"}: plain RoPE
        var s = new RopeScaling { Type = type.Value, Factor = g.Number("factor") };
        if (type == RopeType.Llama3)
            s = s with
            {
                LowFreqFactor = g.Number("low_freq_factor"), HighFreqFactor = g.Number("high_freq_factor"),
                OriginalMaxPositionEmbeddings = g.Int("original_max_position_embeddings"),
            };
        return s;
    }

    /// <summary>Typed reads of a JSON object's fields; every error names the source file and the field.</summary>
    sealed class Fields(JsonObject o, string source, string prefix = "")
    {
        public string Source => source;

        public ModelFormatException Refuse(string field, string problem) => new(source, field, problem);

        public bool Has(string name) => o.ContainsKey(name);
        public JsonNode? Node(string name) => o.TryGetPropertyValue(name, out var n) ? n : null;

        public static string Show(JsonNode? node)
        {
            string s = node?.ToJsonString() ?? "null";
            return s.Length <= 60 ? s : s[..57] + "…";
        }

        /// <summary>The message of an ArgumentException without .NET's " (Parameter 'x')" suffix.</summary>
        public static string WithoutParam(ArgumentException e)
        {
            string m = e.Message;
            int at = m.LastIndexOf(" (Parameter '", StringComparison.Ordinal);
            string text = at >= 0 ? m[..at] : m;
            return e.ParamName is { } p && text.StartsWith(p + " ", StringComparison.Ordinal) ? text[(p.Length + 1)..] : text;
        }

        JsonValue? Value(string name, string kind)
        {
            var n = Node(name);
            if (n is null) return null;
            return n as JsonValue ?? throw Refuse(prefix + name, $"must be {kind}, got {Show(n)}");
        }

        public string? String(string name)
        {
            var v = Value(name, "a string");
            if (v is null) return null;
            return v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Refuse(prefix + name, $"must be a string, got {Show(v)}");
        }

        public bool Bool(string name, bool fallback)
        {
            var v = Value(name, "true or false");
            if (v is null) return Has(name) ? throw Refuse(prefix + name, "must be true or false, got null") : fallback;
            return v.GetValueKind() switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Refuse(prefix + name, $"must be true or false, got {Show(v)}"),
            };
        }

        public int? IntOrNull(string name)
        {
            var v = Value(name, "an integer");
            if (v is null) return null;
            if (v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<JsonElement>(out var e) || !e.TryGetInt64(out long l))
                throw Refuse(prefix + name, $"must be an integer, got {Show(v)}");
            if (l is < int.MinValue or > int.MaxValue) throw Refuse(prefix + name, $"{l} is out of range");
            return (int)l;
        }

        public int Int(string name) => Has(name) && Node(name) is not null
            ? IntOrNull(name)!.Value
            : throw Refuse(prefix + name, "is missing");

        public double Number(string name, double? fallback = null)
        {
            var v = Value(name, "a number");
            if (v is null)
                return Has(name) ? throw Refuse(prefix + name, "must be a number, got null") : fallback ?? throw Refuse(prefix + name, "is missing");
            if (v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<JsonElement>(out var e) || !e.TryGetDouble(out double d) || !double.IsFinite(d))
                throw Refuse(prefix + name, $"must be a finite number, got {Show(v)}");
            return d;
        }

        public TokenIds Ids(string name)
        {
            var n = Node(name);
            if (n is null) return TokenIds.None;
            if (n is JsonArray a)
            {
                if (a.Count == 0) throw Refuse(prefix + name, "is an empty list");
                var ids = new int[a.Count];
                for (int i = 0; i < a.Count; i++)
                {
                    if (a[i] is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<JsonElement>(out var e) || !e.TryGetInt32(out ids[i]))
                        throw Refuse(prefix + name, $"must be an integer or a list of integers, got {Show(n)}");
                }
                return new TokenIds(ids);
            }
            return TokenIds.Of(IntOrNull(name));
        }
    }
}

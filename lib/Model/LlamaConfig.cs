using System.Text.Json;
using System.Text.Json.Nodes;

namespace Mora.Model;

/// <summary>
/// The sizes of a LLaMA-style decoder, with the Hugging Face <c>config.json</c> names (<c>hidden_size</c>,
/// <c>num_hidden_layers</c>, …) so a small local LLaMA-family checkpoint can be read and the kit's own models written
/// in the same layout. Presets run from <see cref="Tiny"/> (tests, seconds on a CPU) to <see cref="Laptop"/> (a laptop GPU).
/// </summary>
public sealed record LlamaConfig
{
    public int VocabSize { get; init; } = 128;
    public int HiddenSize { get; init; } = 64;
    public int IntermediateSize { get; init; } = 172;
    public int NumHiddenLayers { get; init; } = 2;
    public int NumAttentionHeads { get; init; } = 4;
    /// <summary>Key/value heads (grouped-query attention); equal to the attention heads for plain multi-head attention.</summary>
    public int NumKeyValueHeads { get; init; } = 4;
    /// <summary>Context length (longest sequence the model is built for).</summary>
    public int MaxPositionEmbeddings { get; init; } = 256;
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000;
    /// <summary>When true the output head reuses the token embedding (no <c>lm_head.weight</c> is stored).</summary>
    public bool TieWordEmbeddings { get; init; }
    public int BosTokenId { get; init; } = 1;
    public int EosTokenId { get; init; } = 2;

    public int HeadDim => HiddenSize / NumAttentionHeads;

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

    /// <summary>Checks every size; throws <see cref="ArgumentException"/> naming the field.</summary>
    public LlamaConfig Validate()
    {
        void Positive(int v, string name) { if (v <= 0) throw new ArgumentException($"{name} must be positive, got {v}", name); }
        Positive(VocabSize, "vocab_size"); Positive(HiddenSize, "hidden_size"); Positive(IntermediateSize, "intermediate_size");
        Positive(NumHiddenLayers, "num_hidden_layers"); Positive(NumAttentionHeads, "num_attention_heads");
        Positive(NumKeyValueHeads, "num_key_value_heads"); Positive(MaxPositionEmbeddings, "max_position_embeddings");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new ArgumentException($"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}", "hidden_size");
        if (HeadDim % 2 != 0)
            throw new ArgumentException($"head dimension hidden_size / num_attention_heads = {HeadDim} must be even for rotary embeddings", "hidden_size");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new ArgumentException($"num_attention_heads {NumAttentionHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}", "num_key_value_heads");
        if (!(RmsNormEps > 0)) throw new ArgumentException($"rms_norm_eps must be positive, got {RmsNormEps}", "rms_norm_eps");
        if (!(RopeTheta > 0)) throw new ArgumentException($"rope_theta must be positive, got {RopeTheta}", "rope_theta");
        return this;
    }

    /// <summary>The Hugging Face <c>config.json</c> text (model_type llama, architectures LlamaForCausalLM).</summary>
    public string ToJson(string torchDtype = "float32")
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
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
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["hidden_act"] = "silu",
            ["torch_dtype"] = torchDtype,
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Reads a Hugging Face LLaMA <c>config.json</c>; a missing or invalid field is named with the file.</summary>
    public static LlamaConfig FromJson(string json, string source = "config.json")
    {
        JsonObject o;
        try { o = JsonNode.Parse(json) as JsonObject ?? throw new FormatException("not a JSON object"); }
        catch (JsonException e) { throw new FormatException($"{source}: invalid JSON ({e.Message})", e); }
        if (o["model_type"]?.GetValue<string>() is { } type && type is not ("llama" or "mistral" or "qwen2"))
            throw new FormatException($"{source}: model_type '{type}' is not a LLaMA-style decoder this kit can load");
        if (o["hidden_act"]?.GetValue<string>() is { } act && act != "silu")
            throw new FormatException($"{source}: hidden_act '{act}' is not supported (LLaMA uses silu)");
        int Int(string name, int? fallback = null)
        {
            var node = o[name];
            if (node is null) return fallback ?? throw new FormatException($"{source}: missing '{name}'");
            try { return node.GetValue<int>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException) { throw new FormatException($"{source}: '{name}' must be an integer, got {node.ToJsonString()}", e); }
        }
        double Num(string name, double fallback)
        {
            var node = o[name];
            if (node is null) return fallback;
            try { return node.GetValue<double>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException) { throw new FormatException($"{source}: '{name}' must be a number, got {node.ToJsonString()}", e); }
        }
        int vocab = Int("vocab_size"), hidden = Int("hidden_size"), intermediate = Int("intermediate_size");
        int layers = Int("num_hidden_layers"), heads = Int("num_attention_heads");
        int FirstId(string name, int fallback) => o[name] switch
        {
            null => fallback,
            JsonArray a when a.Count > 0 => a[0]!.GetValue<int>(),
            var n => n.GetValue<int>(),
        };
        var config = new LlamaConfig
        {
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            NumKeyValueHeads = Int("num_key_value_heads", heads),
            MaxPositionEmbeddings = Int("max_position_embeddings", 2048),
            RmsNormEps = Num("rms_norm_eps", 1e-6),
            RopeTheta = Num("rope_theta", 10000),
            TieWordEmbeddings = o["tie_word_embeddings"]?.GetValue<bool>() ?? false,
            BosTokenId = FirstId("bos_token_id", 1),
            EosTokenId = FirstId("eos_token_id", 2),
        };
        try { return config.Validate(); }
        catch (ArgumentException e) { throw new FormatException($"{source}: {e.Message}", e); }
    }
}

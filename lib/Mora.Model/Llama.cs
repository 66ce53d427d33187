using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Model;

/// <summary>RMSNorm (Zhang &amp; Sennrich 2019): x / √(mean(x²) + ε) · g, computed in float32 whatever the model's dtype.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double _eps;

    public RmsNorm(int size, double eps, Device? device = null, ScalarType? dtype = null) : base(nameof(RmsNorm))
    {
        _eps = eps;
        weight = new Parameter(ones(size, dtype: dtype ?? ScalarType.Float32, device: device));
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normed = x32 * x32.pow(KeptScalars.Of(2)).mean([-1], keepdim: true).add(KeptScalars.Of(_eps), KeptScalars.One).rsqrt();   // kept scalars (KeptScalars)
        return (normed.to(x.dtype) * weight).MoveToOuterDisposeScope();
    }
}

/// <summary>Keys and values of past positions, per layer, for generation (filled in place, no re-allocation per token).</summary>
public sealed class KvCache : IDisposable
{
    readonly Tensor[] _keys, _values;
    public long Length { get; private set; }
    public long Capacity { get; }
    public long Batch { get; }

    public KvCache(LlamaConfig config, long batch, long capacity, Device device, ScalarType dtype)
    {
        if (capacity > config.ContextLength)
            throw new ArgumentException($"a cache of {capacity} positions exceeds the model's context of {config.ContextLength} (max_position_embeddings)", nameof(capacity));
        Capacity = capacity; Batch = batch;
        _keys = new Tensor[config.NumHiddenLayers];
        _values = new Tensor[config.NumHiddenLayers];
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            _keys[i] = zeros([batch, config.NumKeyValueHeads, capacity, config.HeadDim], dtype, device);
            _values[i] = zeros([batch, config.NumKeyValueHeads, capacity, config.HeadDim], dtype, device);
        }
    }

    /// <summary>Writes this step's keys and values at [Length, Length + t) and returns views of everything so far.</summary>
    internal (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        long t = k.shape[2];
        if (Length + t > Capacity)
            throw new InvalidOperationException($"the KV cache holds {Capacity} positions; {Length} used, {t} more asked");
        using (var kSlot = _keys[layer].narrow(2, Length, t)) kSlot.copy_(k);
        using (var vSlot = _values[layer].narrow(2, Length, t)) vSlot.copy_(v);
        return (_keys[layer].narrow(2, 0, Length + t), _values[layer].narrow(2, 0, Length + t));
    }

    internal void Advance(long t) => Length += t;

    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}

/// <summary>Causal multi-head (or grouped-query) self-attention with <c>q_proj k_proj v_proj o_proj</c>: biased q/k/v for
/// Qwen2 and <c>attention_bias</c> (o too for the latter), Mistral's sliding window, attention dropout while training.</summary>
public sealed class LlamaAttention : nn.Module
{
    // Typed Module<Tensor, Tensor> (not Linear, which is sealed) so Peft.Inject can put adapters here.
    internal nn.Module<Tensor, Tensor> q_proj, k_proj, v_proj, o_proj;
    readonly LlamaConfig _c;

    public LlamaAttention(LlamaConfig c, Device? device, ScalarType? dtype) : base(nameof(LlamaAttention))
    {
        _c = c;
        int kv = c.NumKeyValueHeads * c.HeadDim;
        q_proj = nn.Linear(c.HiddenSize, c.HiddenSize, hasBias: c.QkvBias, device: device, dtype: dtype);
        k_proj = nn.Linear(c.HiddenSize, kv, hasBias: c.QkvBias, device: device, dtype: dtype);
        v_proj = nn.Linear(c.HiddenSize, kv, hasBias: c.QkvBias, device: device, dtype: dtype);
        o_proj = nn.Linear(c.HiddenSize, c.HiddenSize, hasBias: c.OutputBias, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>Which keys each new query sees, [t, past + t] (true = attends), or null when plain causal attention says it:
    /// query i at absolute position p = past + i sees keys j with j ≤ p and, with a window W, j ≥ p − W
    /// (transformers 4.40's AttentionMaskConverter._make_causal_mask with sliding_window: W + 1 keys).</summary>
    internal static Tensor? Mask(long past, long t, int? window, Device device)
    {
        bool windowBites = window is { } w && past + t - 1 - w > 0;
        if (!windowBites && (past == 0 || t == 1)) return null;
        var keys = arange(past + t, device: device).unsqueeze(0);
        var queries = (arange(t, device: device) + past).unsqueeze(1);
        var allowed = keys <= queries;
        return windowBites ? allowed.logical_and_(keys >= queries - window!.Value) : allowed;
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, KvCache? cache, int layer)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        int h = _c.NumAttentionHeads, kvh = _c.NumKeyValueHeads, hd = _c.HeadDim;
        var q = q_proj.forward(x).view(b, t, h, hd).transpose(1, 2);
        var k = k_proj.forward(x).view(b, t, kvh, hd).transpose(1, 2);
        var v = v_proj.forward(x).view(b, t, kvh, hd).transpose(1, 2);
        q = Rotary.Apply(q, cos, sin);
        k = Rotary.Apply(k, cos, sin);
        long past = cache?.Length ?? 0;
        if (cache is not null) (k, v) = cache.Append(layer, k, v);
        if (kvh != h)
        {
            k = k.repeat_interleave(h / kvh, dim: 1);
            v = v.repeat_interleave(h / kvh, dim: 1);
        }
        // attention_dropout: dropout on the attention probabilities while training (transformers' LlamaSdpaAttention).
        double dropout = training ? _c.AttentionDropout : 0;
        var mask = Mask(past, t, _c.AttentionWindow, x.device);
        var y = mask is null
            ? nn.functional.scaled_dot_product_attention(q, k, v, null, dropout, past == 0 && t > 1)
            : nn.functional.scaled_dot_product_attention(q, k, v, mask, dropout);
        var merged = y.transpose(1, 2).reshape(b, t, h * hd);
        return o_proj.forward(merged).MoveToOuterDisposeScope();
    }
}

/// <summary>SwiGLU feed-forward: down_proj(silu(gate_proj x) ⊙ up_proj x).</summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    internal nn.Module<Tensor, Tensor> gate_proj, up_proj, down_proj;

    public LlamaMlp(LlamaConfig c, Device? device, ScalarType? dtype) : base(nameof(LlamaMlp))
    {
        gate_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false, device: device, dtype: dtype);
        up_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false, device: device, dtype: dtype);
        down_proj = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var hidden = nn.functional.silu(gate_proj.forward(x)) * up_proj.forward(x);
        return down_proj.forward(hidden).MoveToOuterDisposeScope();
    }
}

/// <summary>One pre-norm block: x + attn(norm(x)), then + mlp(norm(·)).</summary>
public sealed class LlamaDecoderLayer : nn.Module
{
    internal readonly LlamaAttention self_attn;
    internal readonly LlamaMlp mlp;
    internal readonly RmsNorm input_layernorm, post_attention_layernorm;

    public LlamaDecoderLayer(LlamaConfig c, Device? device, ScalarType? dtype) : base(nameof(LlamaDecoderLayer))
    {
        self_attn = new LlamaAttention(c, device, dtype);
        mlp = new LlamaMlp(c, device, dtype);
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, KvCache? cache, int layer)
    {
        using var scope = NewDisposeScope();
        var h = x + self_attn.Forward(input_layernorm.forward(x), cos, sin, cache, layer);
        var y = h + mlp.forward(post_attention_layernorm.forward(h));
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>The decoder stack: embed_tokens, layers, final norm (Hugging Face's <c>LlamaModel</c>).</summary>
public sealed class LlamaModel : nn.Module
{
    internal readonly Embedding embed_tokens;
    internal readonly ModuleList<LlamaDecoderLayer> layers;
    internal readonly RmsNorm norm;
    readonly LlamaConfig _c;

    public LlamaModel(LlamaConfig c, Device? device, ScalarType? dtype) : base(nameof(LlamaModel))
    {
        _c = c;
        embed_tokens = nn.Embedding(c.VocabSize, c.HiddenSize, device: device, dtype: dtype);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new LlamaDecoderLayer(c, device, dtype)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        RegisterComponents();
    }

    public Embedding EmbedTokens => embed_tokens;

    /// <summary>Hidden states [batch, length, hidden] after the final norm.</summary>
    public Tensor Forward(Tensor inputIds, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        long t = inputIds.shape[1], offset = cache?.Length ?? 0;
        if (offset + t > _c.ContextLength)
            throw new ArgumentException($"sequence of {offset + t} positions exceeds the model's context of {_c.MaxPositionEmbeddings} (max_position_embeddings)", nameof(inputIds));
        var (cos, sin) = RotaryEmbedding.Angles(_c.HeadDim, offset, t, _c.RopeTheta, _c.RopeScaling, _c.MaxPositionEmbeddings, inputIds.device);
        var x = embed_tokens.forward(inputIds);
        for (int i = 0; i < layers.Count; i++) x = layers[i].Forward(x, cos, sin, cache, i);
        cache?.Advance(t);
        return norm.forward(x).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A LLaMA-style causal language model (Hugging Face's <c>LlamaForCausalLM</c>): token embedding, RMSNorm, rotary
/// positions, causal attention with <c>q_proj k_proj v_proj o_proj</c>, SwiGLU MLP with <c>gate_proj up_proj down_proj</c>,
/// and a tied or separate output head. Its parameter names are Hugging Face's (<c>model.layers.0.self_attn.q_proj.weight</c>),
/// so <see cref="ModelIO"/> reads and writes checkpoints in that layout and PEFT-style target names work unchanged.
/// </summary>
public sealed class LlamaForCausalLM : nn.Module<Tensor, Tensor>
{
    internal readonly LlamaModel model;
    internal nn.Module<Tensor, Tensor>? lm_head;

    public LlamaConfig Config { get; }

    /// <param name="config">sizes (validated)</param>
    /// <param name="device">where the weights live (CPU when null)</param>
    /// <param name="dtype">weight dtype (float32 when null; bfloat16 on a GPU)</param>
    public LlamaForCausalLM(LlamaConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(LlamaForCausalLM))
    {
        Config = config.Validate();
        config.CheckFits(dtype ?? ScalarType.Float32, device);     // before anything is allocated
        model = new LlamaModel(config, device, dtype);
        if (!config.TieWordEmbeddings)
            lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
        InitWeights();
    }

    public LlamaModel Model => model;
    public Device Device => model.EmbedTokens.weight!.device;
    public ScalarType DType => model.EmbedTokens.weight!.dtype;

    /// <summary>Hugging Face's initialisation (LlamaPreTrainedModel._init_weights): every linear and embedding weight
    /// ~ N(0, σ²) with σ = <paramref name="std"/> or the config's <c>initializer_range</c> (0.02), biases 0, norms 1.</summary>
    public void InitWeights(double? std = null)
    {
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else if (!name.EndsWith("layernorm.weight", StringComparison.Ordinal) && name != "model.norm.weight")
                p.normal_(0, std ?? Config.InitializerRange);
        }
    }

    /// <summary>Logits [batch, length, vocab] for token ids [batch, length].</summary>
    public override Tensor forward(Tensor inputIds) => Forward(inputIds, null);

    /// <summary>Logits for the new tokens; with a cache, positions continue from what it holds and it is extended.</summary>
    public Tensor Forward(Tensor inputIds, KvCache? cache)
    {
        if (inputIds.dim() != 2) throw new ArgumentException($"token ids must be [batch, length], got [{string.Join(", ", inputIds.shape)}]", nameof(inputIds));
        using var scope = NewDisposeScope();
        var h = model.Forward(inputIds, cache);
        var logits = lm_head is null ? nn.functional.linear(h, model.EmbedTokens.weight!) : lm_head.forward(h);
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>A cache for <paramref name="batch"/> sequences of up to <paramref name="capacity"/> positions.</summary>
    public KvCache NewCache(long batch, long capacity) => new(Config, batch, capacity, Device, DType);
}

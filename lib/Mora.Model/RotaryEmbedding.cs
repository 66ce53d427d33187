using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Model;

/// <summary>The frequency rule of a checkpoint's rotary embedding: config.json's <c>rope_scaling</c> <c>type</c> (or
/// <c>rope_type</c>, its name since transformers 4.43).</summary>
public enum RopeType
{
    /// <summary>Position interpolation (kaiokendev; Chen et al. 2023, arXiv 2306.15595): positions divided by the factor.</summary>
    Linear,
    /// <summary>Dynamic NTK scaling (/u/bloc97, /u/emozilla): the base grows with the sequence length once it exceeds
    /// <c>max_position_embeddings</c>.</summary>
    Dynamic,
    /// <summary>Llama 3.1's rule: low frequencies divided by the factor, high ones kept, a smooth ramp between.</summary>
    Llama3,
}

/// <summary>
/// config.json's <c>rope_scaling</c>, parsed once (<see cref="LlamaConfig.FromJson"/>) into a typed value. Only the
/// fields of its <see cref="Type"/> mean anything: <see cref="Factor"/> for every type; <see cref="LowFreqFactor"/>,
/// <see cref="HighFreqFactor"/> and <see cref="OriginalMaxPositionEmbeddings"/> for <see cref="RopeType.Llama3"/>.
/// </summary>
public sealed record RopeScaling
{
    public required RopeType Type { get; init; }
    /// <summary><c>factor</c>: the context extension (≥ 1).</summary>
    public required double Factor { get; init; }
    /// <summary>llama3 <c>low_freq_factor</c> (Llama 3.1: 1).</summary>
    public double LowFreqFactor { get; init; } = 1;
    /// <summary>llama3 <c>high_freq_factor</c> (Llama 3.1: 4); must exceed <see cref="LowFreqFactor"/>.</summary>
    public double HighFreqFactor { get; init; } = 4;
    /// <summary>llama3 <c>original_max_position_embeddings</c>: the context the model was pre-trained with (Llama 3.1: 8192).</summary>
    public int OriginalMaxPositionEmbeddings { get; init; } = 8192;

    /// <summary>Throws <see cref="ArgumentException"/> naming the field (<c>rope_scaling.factor</c>, …).</summary>
    public RopeScaling Validate()
    {
        // transformers 4.40 requires factor > 1 (_rope_scaling_validation); 4.43+ warns below 1. Factor 1 is the identity for
        // linear and llama3 and is accepted; below 1 (or not finite) it is refused.
        if (!(Factor >= 1) || double.IsInfinity(Factor))
            throw new ArgumentException($"rope_scaling.factor must be a finite number ≥ 1, got {Factor}", "rope_scaling.factor");
        if (Type == RopeType.Llama3)
        {
            if (!(LowFreqFactor > 0) || double.IsInfinity(LowFreqFactor))
                throw new ArgumentException($"rope_scaling.low_freq_factor must be a finite positive number, got {LowFreqFactor}", "rope_scaling.low_freq_factor");
            // The ramp divides by high − low (transformers' _compute_llama3_parameters; _validate_llama3_parameters asks for high > low).
            if (!(HighFreqFactor > LowFreqFactor) || double.IsInfinity(HighFreqFactor))
                throw new ArgumentException($"rope_scaling.high_freq_factor must be a finite number greater than low_freq_factor {LowFreqFactor}, got {HighFreqFactor}", "rope_scaling.high_freq_factor");
            if (OriginalMaxPositionEmbeddings <= 0)
                throw new ArgumentException($"rope_scaling.original_max_position_embeddings must be positive, got {OriginalMaxPositionEmbeddings}", "rope_scaling.original_max_position_embeddings");
        }
        return this;
    }

    /// <summary>The <c>type</c> / <c>rope_type</c> name in config.json.</summary>
    public string Name => Type switch { RopeType.Linear => "linear", RopeType.Dynamic => "dynamic", _ => "llama3" };
}

/// <summary>
/// The model's rotary embedding (transformers' LlamaRotaryEmbedding): the angles t·θ_i of each forward call under the
/// checkpoint's <see cref="RopeScaling"/>. Linear scaling divides t, dynamic NTK and llama3 change θ_i
/// (<see cref="InverseFrequencies"/>); the tables and the rotation R_t itself are <see cref="Rotary"/>, the code MoRA's
/// rotation design uses too.
/// </summary>
public static class RotaryEmbedding
{
    /// <summary>The model's tables for plain RoPE: cos and sin for positions [offset, offset + length), each [length, headDim], in float32.</summary>
    public static (Tensor Cos, Tensor Sin) Angles(int headDim, long offset, long length, double theta, Device device) =>
        Rotary.Tables(headDim, offset, length, theta, ScalarType.Float32, device);

    /// <summary>The model's tables with the checkpoint's <paramref name="scaling"/> (null = plain RoPE), for the new
    /// positions [offset, offset + length) of a forward call whose sequence so far is offset + length long, in float32.
    /// With a KV cache the keys already cached keep the angles they were given (as in transformers, whose cache stores
    /// rotated keys), so under dynamic scaling each call's new positions use the base for that call's length.</summary>
    public static (Tensor Cos, Tensor Sin) Angles(int headDim, long offset, long length, double theta, RopeScaling? scaling,
        long maxPositionEmbeddings, Device device)
    {
        using var scope = NewDisposeScope();
        var invFreq = tensor(InverseFrequencies(headDim, theta, scaling, maxPositionEmbeddings, offset + length), ScalarType.Float64, device);
        var pos = arange(offset, offset + length, 1, ScalarType.Float64, device);
        // Linear scaling (position interpolation; transformers' LlamaLinearScalingRotaryEmbedding): t ↦ t / factor.
        if (scaling is { Type: RopeType.Linear }) pos = pos / scaling.Factor;
        var (cos, sin) = Rotary.Tables(pos, invFreq, ScalarType.Float32);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// θ_i for i = 0 … dim/2 − 1 under a checkpoint's scaling, for a forward call over a sequence of
    /// <paramref name="sequenceLength"/> positions (only dynamic scaling reads it):
    /// <list type="bullet">
    /// <item>none, linear: θ_i = base^(−2i/dim) (<see cref="Rotary.InverseFrequencies"/>; linear scaling divides the
    /// positions instead, in <see cref="Angles(int, long, long, double, RopeScaling?, long, Device)"/>);</item>
    /// <item>dynamic (transformers 4.40's LlamaDynamicNTKScalingRotaryEmbedding.forward, 4.45's _compute_dynamic_ntk_parameters):
    /// with L = sequenceLength, M = max_position_embeddings, s = factor, d = dim, when L &gt; M the base becomes
    /// base · (s·L/M − (s − 1))^(d/(d−2)); otherwise it is unchanged;</item>
    /// <item>llama3 (transformers' _compute_llama3_parameters, Llama 3.1): with wavelength λ_i = 2π/θ_i, old context C =
    /// original_max_position_embeddings, λ_low = C/low_freq_factor, λ_high = C/high_freq_factor: λ_i &lt; λ_high keeps θ_i,
    /// λ_i &gt; λ_low gives θ_i/s, and between them θ_i ((1 − g)/s + g) with g = (C/λ_i − low_freq_factor)/(high_freq_factor − low_freq_factor).</item>
    /// </list>
    /// Transformers 4.40 keeps a dynamic base once it has grown (its buffer is overwritten) and 4.45 keeps the largest one
    /// until a call is shorter than M; the kit computes it from each call's own length, which is the same for a model's
    /// first forward and for generation (lengths only grow).
    /// </summary>
    public static double[] InverseFrequencies(int dim, double theta, RopeScaling? scaling = null, long maxPositionEmbeddings = 0, long sequenceLength = 0)
    {
        double b = theta;
        if (scaling is { Type: RopeType.Dynamic } && sequenceLength > maxPositionEmbeddings)
            b = theta * Math.Pow(scaling.Factor * sequenceLength / maxPositionEmbeddings - (scaling.Factor - 1), dim / (dim - 2.0));
        double[] inv;
        using (var t = Rotary.InverseFrequencies(dim, b, CPU)) inv = t.data<double>().ToArray();
        if (scaling is { Type: RopeType.Llama3 } s)
        {
            double c = s.OriginalMaxPositionEmbeddings, lowWavelength = c / s.LowFreqFactor, highWavelength = c / s.HighFreqFactor;
            for (int i = 0; i < inv.Length; i++)
            {
                double wavelength = 2 * Math.PI / inv[i];
                if (wavelength < highWavelength) continue;                          // high frequency: kept
                if (wavelength > lowWavelength) { inv[i] /= s.Factor; continue; }   // low frequency: interpolated by the factor
                double g = (c / wavelength - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                inv[i] = (1 - g) * inv[i] / s.Factor + g * inv[i];
            }
        }
        return inv;
    }
}

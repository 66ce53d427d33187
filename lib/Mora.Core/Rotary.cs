using TorchSharp;
using static TorchSharp.torch;

namespace Mora;

/// <summary>
/// The rotation R_t of rotary position embedding, written once for the model's RoPE (Su et al. 2021, in Hugging Face's
/// "rotate half" layout, so real checkpoints load) and for MoRA's rotation design (paper Eq. 9, type 6, where block t of
/// the input is rotated by R_t before M):
/// <code>
///   R_t x = x ∘ cos_t + rotate_half(x) ∘ sin_t,   rotate_half([x₁, x₂]) = [−x₂, x₁]
///   angles t·θ_i,  θ_i = base^(−2i/dim),  each angle used twice ([θ, θ] layout)
/// </code>
/// A checkpoint may change the angles (config.json's <c>rope_scaling</c>: the model's <c>Mora.Model.RotaryEmbedding</c>
/// computes its positions and θ_i and builds the tables here with <see cref="Tables(Tensor, Tensor, ScalarType)"/>).
/// The tables are computed in float64 and then cast. Because sin_t has the same value on both halves,
/// R_tᵀ = R_{−t} (<see cref="ApplyTransposed"/>), which MoRA uses to form M R_t row by row.
/// </summary>
public static class Rotary
{
    /// <summary>cos and sin of the angles t·θ_i for positions t in [offset, offset + length), each [length, dim], computed in
    /// float64 on <paramref name="device"/> and cast to <paramref name="dtype"/> (plain RoPE, no scaling).</summary>
    public static (Tensor Cos, Tensor Sin) Tables(int dim, long offset, long length, double theta, ScalarType dtype, Device device)
    {
        using var scope = NewDisposeScope();
        var invFreq = InverseFrequencies(dim, theta, device);
        var pos = arange(offset, offset + length, 1, ScalarType.Float64, device);
        var (cos, sin) = Tables(pos, invFreq, dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>θ_i = base^(−2i/dim) for i = 0 … dim/2 − 1 (Su et al. 2021, Eq. 15; transformers'
    /// _compute_default_rope_parameters), float64 on <paramref name="device"/>.</summary>
    public static Tensor InverseFrequencies(int dim, double theta, Device device)
    {
        using var exponents = arange(0, dim, 2, ScalarType.Float64, device) / dim;
        using var powers = pow(theta, exponents);
        return powers.reciprocal();
    }

    /// <summary>cos and sin of the angles outer(positions, θ) in the [θ, θ] layout, each [positions, 2·θ], from float64
    /// <paramref name="positions"/> and <paramref name="inverseFrequencies"/>, cast to <paramref name="dtype"/>.</summary>
    public static (Tensor Cos, Tensor Sin) Tables(Tensor positions, Tensor inverseFrequencies, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var freqs = outer(positions, inverseFrequencies);
        var emb = cat([freqs, freqs], -1);
        return (emb.cos().to(dtype).MoveToOuterDisposeScope(), emb.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>rotate_half over the last dimension: [x₁, x₂] ↦ [−x₂, x₁] (the matrix P with R_t = diag(cos_t) + diag(sin_t) P).</summary>
    public static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        using var x1 = x.narrow(-1, 0, half);
        using var x2 = x.narrow(-1, half, half);
        using var neg = x2.neg();
        return cat([neg, x1], -1);
    }

    /// <summary>R_t x over the last dimension: x ∘ cos + rotate_half(x) ∘ sin (tables broadcast against x, cast to its dtype);
    /// the model applies it to q and k [batch, heads, length, headDim].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin) => Rotate(x, cos, sin, transposed: false);

    /// <summary>R_tᵀ x = R_{−t} x = x ∘ cos − rotate_half(x) ∘ sin. Applied to the rows of M it gives M R_t (row i of M R_t
    /// is R_tᵀ applied to row i of M).</summary>
    public static Tensor ApplyTransposed(Tensor x, Tensor cos, Tensor sin) => Rotate(x, cos, sin, transposed: true);

    static Tensor Rotate(Tensor x, Tensor cos, Tensor sin, bool transposed)
    {
        using var scope = NewDisposeScope();
        var rotated = RotateHalf(x);
        var c = cos.to(x.dtype); var s = sin.to(x.dtype);
        var turned = rotated * s;
        return (transposed ? x * c - turned : x * c + turned).MoveToOuterDisposeScope();
    }
}

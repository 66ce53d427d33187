using TorchSharp;
using static TorchSharp.torch;

namespace Mora;

/// <summary>
/// f_comp : ℝᵏ → ℝ^Width of MoRA (paper §3.1), one fixed linear map S, and its shares of the update ΔW = T M S:
/// the forward (<see cref="Apply"/>, and <see cref="TimesM"/> = M f_comp(x)), the product "M S" written out
/// (<see cref="MTimesS"/>), and its axis of the in-place merge (<see cref="MergeColumns"/>). Width is r̂, or n·r̂ for the
/// blockwise maps (Eq. 8–9), whose M acts on each of the n blocks.
/// </summary>
public abstract class CompressionMap(int k, int rHat)
{
    /// <summary>in_features.</summary>
    public int K { get; } = k;
    /// <summary>Side of M.</summary>
    public int RHat { get; } = rHat;
    /// <summary>How many slots f_comp writes (what the decompression map reads): r̂, or n·r̂ for the blockwise maps.</summary>
    public virtual int Width => RHat;

    /// <summary>f_comp x: (…, k) → (…, r̂), or (…, n, r̂) for the blockwise maps.</summary>
    public abstract Tensor Apply(Tensor x);

    /// <summary>M f_comp(x) (M acting on every block for the blockwise maps): (…, k) → (…, r̂) or (…, n, r̂).</summary>
    public virtual Tensor TimesM(Tensor x, Tensor m)
    {
        using var c = Apply(x);
        return c.matmul(m.t());
    }

    /// <summary>"M S": the product of M (block-diagonal diag(M, …) for the blockwise maps) with this map's matrix S, so that
    /// ΔW = T·(M S) for the decompression map's T. Returns at least the first <paramref name="rows"/> of its Width rows, × k.</summary>
    public abstract Tensor MTimesS(Tensor m, long rows);

    /// <summary>This map's axis (W's columns) of the in-place merge, or null where its structure allows no view.</summary>
    public virtual MergeAxis? MergeColumns(bool contiguous) => null;

    /// <summary>W ← W + s·T M S in place through views, where both maps give their axis; false otherwise (nothing done).</summary>
    public bool TryMerge(Tensor w, Tensor m, double scale, DecompressionMap decompression)
    {
        bool contiguous = w.is_contiguous();
        if (MergeColumns(contiguous) is not { } columns || decompression.MergeRows(contiguous) is not { } rows) return false;
        using var scope = NewDisposeScope();
        AddInto(rows.W(columns.W(w)), m, scale, columns, rows);
        return true;
    }

    /// <summary>Adds s·M, broadcast over the merge view of W.</summary>
    protected virtual void AddInto(Tensor target, Tensor m, double scale, MergeAxis columns, MergeAxis rows) =>
        target.add_(rows.M(columns.M(m)), alpha: scale);
}

/// <summary>Paper Eq. 4, truncation: f_comp keeps the first r̂ inputs (zero-filled when k &lt; r̂). S = [I 0], so M S is M's
/// first min(k, r̂) columns padded to k, and the merge adds M's corner to W's.</summary>
public sealed class Truncate(int k, int rHat) : CompressionMap(k, rHat)
{
    public override Tensor Apply(Tensor x) => Slots.Resize(x, -1, RHat);
    public override Tensor MTimesS(Tensor m, long rows) => Slots.Resize(m, 1, K);
    public override MergeAxis? MergeColumns(bool contiguous) =>
        new(t => t.narrow(1, 0, Math.Min(K, RHat)), t => t.narrow(1, 0, Math.Min(K, RHat)));
}

/// <summary>
/// The cyclic fill shared by Eq. 6 (types 1, 4) and Eq. 8–9: x ↦ x[p mod k] for p &lt; n·r̂, n = ⌈k/r̂⌉, cut into n blocks
/// of r̂ (<see cref="Apply"/>); its transpose adds column p into column p mod k (<see cref="Fold"/>). Where the reference
/// pads with x[:pad] (needing k ≥ r̂/2) this equals it, and keeps working for layers smaller than r̂.
/// </summary>
sealed class CyclicFill
{
    public int K { get; }
    public int RHat { get; }
    /// <summary>n = ⌈k / r̂⌉.</summary>
    public int Blocks { get; }
    readonly PerDevice<Tensor>? _index;     // p ↦ p mod k, when k is not a multiple of r̂

    public CyclicFill(int k, int rHat)
    {
        (K, RHat, Blocks) = (k, rHat, BlockCount(k, rHat));
        if (Blocks * rHat != k) _index = PerDevice<Tensor>.Index(Enumerable.Range(0, Blocks * rHat).Select(p => (long)(p % k)).ToArray());
    }

    /// <summary>n = ⌈k / r̂⌉: how many r̂-blocks the filled input has.</summary>
    public static int BlockCount(int k, int rHat) => (k + rHat - 1) / rHat;

    /// <summary>(…, k) → (…, n, r̂).</summary>
    public Tensor Apply(Tensor x)
    {
        long[] shape = [.. x.shape[..^1], Blocks, RHat];
        if (_index is null) return x.reshape(shape);
        long wrap = (long)Blocks * RHat - K;                     // x, then x's first `wrap` entries
        if (wrap <= K)
        {
            // A concatenation, not a gather: its backward is two slices added, where index_select's is a scatter-add.
            using var head = x.narrow(-1, 0, wrap);
            using var joined = cat([x, head], -1);
            return joined.reshape(shape);
        }
        using var filled = x.index_select(-1, _index.Get(x.device));
        return filled.reshape(shape);
    }

    /// <summary>The transpose: columns p of a (rows × n·r̂) matrix added into column p mod k.</summary>
    public Tensor Fold(Tensor wide)
    {
        if (_index is null) return wide.alias();
        using var outT = zeros([wide.shape[0], K], wide.dtype, wide.device);
        return outT.index_add(1, _index.Get(wide.device), wide, 1.0);
    }
}

/// <summary>Paper Eq. 6 by stride (reference types 1, 4): fill cyclically to n·r̂ and sum the n blocks, so input j lands in
/// slot j mod r̂. (M S)_{:,j} = Σ_{p: p mod k = j} M_{:, p mod r̂}; with r̂ | k the merge views W's columns as (k/r̂, r̂).</summary>
public sealed class StrideSum(int k, int rHat) : CompressionMap(k, rHat)
{
    readonly CyclicFill _fill = new(k, rHat);

    public override Tensor Apply(Tensor x)
    {
        using var blocks = _fill.Apply(x);
        return blocks.sum(-2);
    }

    public override Tensor MTimesS(Tensor m, long rows)
    {
        using var wide = m.repeat(1, _fill.Blocks);
        return _fill.Fold(wide);
    }

    public override MergeAxis? MergeColumns(bool contiguous) => contiguous && K % RHat == 0
        ? new(t => Slots.Split(t, 1, K / RHat, RHat), t => Slots.Split(t, 1, 1, RHat)) : null;
}

/// <summary>Paper Eq. 6 by adjacent groups (reference types 2, 3): r̂ contiguous groups of the input summed, the first
/// m = k mod r̂ groups of q + 1 inputs then r̂ − m of q (q = k div r̂). (M S)_{:,j} = M_{:, group(j)}; with r̂ | k the merge
/// views W's columns as (r̂, k/r̂).</summary>
public sealed class AdjacentSum : CompressionMap
{
    readonly int _long, _short, _longGroups;
    readonly PerDevice<Tensor> _groupOfInput;

    public AdjacentSum(int k, int rHat) : base(k, rHat)
    {
        _short = k / rHat; _long = _short + 1; _longGroups = k - rHat * _short;
        _groupOfInput = PerDevice<Tensor>.Index(Slots.Runs(k, rHat));
    }

    public override Tensor Apply(Tensor x)
    {
        long[] lead = x.shape[..^1];
        var parts = new List<Tensor>(2);
        try
        {
            if (_longGroups > 0)
            {
                using var head = x.narrow(-1, 0, (long)_longGroups * _long).reshape([.. lead, _longGroups, _long]);
                parts.Add(head.sum(-1));
            }
            int rest = RHat - _longGroups;
            if (rest > 0)
            {
                if (_short == 0) parts.Add(zeros([.. lead, rest], x.dtype, x.device));
                else
                {
                    using var tail = x.narrow(-1, (long)_longGroups * _long, (long)rest * _short).reshape([.. lead, rest, _short]);
                    parts.Add(tail.sum(-1));
                }
            }
            return parts.Count == 1 ? parts[0].alias() : cat(parts, -1);
        }
        finally { foreach (var p in parts) p.Dispose(); }
    }

    public override Tensor MTimesS(Tensor m, long rows) => m.index_select(1, _groupOfInput.Get(m.device));

    public override MergeAxis? MergeColumns(bool contiguous) => contiguous && K % RHat == 0
        ? new(t => Slots.Split(t, 1, RHat, K / RHat), t => Slots.Split(t, 1, RHat, 1)) : null;
}

/// <summary>
/// The blockwise compressions (paper Eq. 8–9): the cyclically filled input kept as n blocks of r̂, block t going through
/// its own core C_t (M, or M R_t for the rotation). diag(C₀, …, C_{n−1}) F is written out only for the row blocks the
/// output reads (⌈rows/r̂⌉ of them: wide layers need fewer than n). With d = k = n·r̂, ΔW is block-diagonal and the merge
/// adds the cores to W's n diagonal r̂×r̂ blocks.
/// </summary>
public abstract class BlockCompression : CompressionMap
{
    private protected readonly CyclicFill Fill;

    private protected BlockCompression(int k, int rHat) : base(k, rHat) => Fill = new CyclicFill(k, rHat);

    /// <summary>n = ⌈k / r̂⌉.</summary>
    public int Blocks => Fill.Blocks;
    public override int Width => Fill.Blocks * RHat;

    /// <summary>The cores C_t, (n, r̂, r̂).</summary>
    public abstract Tensor Cores(Tensor m);

    public override Tensor MTimesS(Tensor m, long rows)
    {
        using var scope = NewDisposeScope();
        int rowBlocks = (int)Math.Min(Blocks, (rows + RHat - 1) / RHat);
        var cores = Cores(m).narrow(0, 0, rowBlocks);
        using var eye = torch.eye(Blocks, dtype: m.dtype, device: m.device);
        var diag = einsum("tab,ts->tasb", cores, eye.narrow(0, 0, rowBlocks)).reshape(rowBlocks * RHat, Width);
        return Fill.Fold(diag).MoveToOuterDisposeScope();
    }

    public override MergeAxis? MergeColumns(bool contiguous) => contiguous && K == Width
        ? new(t => Slots.Split(t, 1, Blocks, RHat), t => t) : null;

    /// <summary>The target is W viewed as (n, r̂, n, r̂): its diagonal over the block axes gets the cores.</summary>
    protected override void AddInto(Tensor target, Tensor m, double scale, MergeAxis columns, MergeAxis rows)
    {
        var diagonal = target.diagonal(0, 0, 2);                        // (r̂, r̂, n), a view of W's diagonal blocks
        diagonal.add_(Cores(m).permute(1, 2, 0), alpha: scale);
    }
}

/// <summary>Paper Eq. 8, decoupling by reshape (type 5): f_comp(x) is the n filled blocks; every block goes through the same
/// M (core C_t = M).</summary>
public sealed class ReshapeBlocks(int k, int rHat) : BlockCompression(k, rHat)
{
    public override Tensor Apply(Tensor x) => Fill.Apply(x);
    public override Tensor Cores(Tensor m) => m.unsqueeze(0).expand(Fill.Blocks, RHat, RHat);
}

/// <summary>
/// Paper Eq. 9 (reference type 6): block t of the filled input rotated by the RoPE rotation R_t (<see cref="Rotary"/>,
/// angles t·θ_i, θ_i = 10000^(−2i/r̂)) before M, so the blocks are told apart; core C_t = M R_t. The forward either rotates
/// M's n copies (n·r̂² values) and makes one batched product over the blocks (no rotated copy of the input kept for the
/// backward), or rotates the input (tokens·n·r̂ values) and makes one matrix product (fewer kernels, no transposing
/// copies): <see cref="RotationFormulation"/>, chosen per device. <see cref="Apply"/> returns the rotated blocks.
/// Tables are built once per device and dtype.
/// </summary>
public sealed class RotatedBlocks : BlockCompression
{
    /// <summary>RoPE base (the reference's 10000).</summary>
    public const double RopeBase = 10000.0;

    readonly PerDevice<(Tensor Cos, Tensor Sin)> _tables;
    readonly PerDevice<Tensor> _signedSin;

    /// <exception cref="ArgumentException">odd <paramref name="rHat"/></exception>
    public RotatedBlocks(int k, int rHat) : base(k, rHat)
    {
        if (rHat % 2 != 0)
            throw new ArgumentException($"the rotation design (type 6) needs an even r̂, got {rHat}", nameof(rHat));
        _tables = new((device, dtype) => Rotary.Tables(RHat, 0, Fill.Blocks, RopeBase, dtype, device),
                      t => (t.Cos.DetachFromDisposeScope(), t.Sin.DetachFromDisposeScope()));
        _signedSin = new((device, dtype) =>
        {
            var (_, sin) = Tables(device, dtype);
            using var sign = cat([full(rHat / 2, -1.0, dtype: dtype, device: device), ones(rHat / 2, dtype: dtype, device: device)]);
            return sin * sign;
        }, t => t.DetachFromDisposeScope());
    }

    /// <summary>cos and sin of block t's angles, (n, r̂) each.</summary>
    public (Tensor Cos, Tensor Sin) Tables(Device device, ScalarType dtype) => _tables.Get(device, dtype);

    /// <summary>R_t x_t for every block: (…, k) → (…, n, r̂).</summary>
    public override Tensor Apply(Tensor x)
    {
        using var blocks = Fill.Apply(x);
        return Rotate(blocks, Tables(x.device, x.dtype).Cos, _signedSin.Get(x.device, x.dtype), transposed: false);
    }

    /// <summary>
    /// R_t x (or R_tᵀ x) over the last axis, by <see cref="Rotary"/>'s rotation R_t x = x∘cos_t + rotate_half(x)∘sin_t
    /// written with one roll: rotate_half([x₁, x₂]) = [−x₂, x₁] and sin_t = [s, s] (each angle used twice), so
    /// rotate_half(x)∘sin_t = roll(x, r̂/2)∘[−s, s] (<c>_signedSin</c>). The same products and sums, so the same values bit
    /// for bit ((−a)·b = a·(−b) in IEEE arithmetic), in four kernels where narrow, neg and cat took five, and two where
    /// their backward took seven (figures/bench/launches; addcmul would save one kernel forward and cost one backward).
    /// R_tᵀ x = x∘cos_t − rotate_half(x)∘sin_t.
    /// </summary>
    static Tensor Rotate(Tensor x, Tensor cos, Tensor signedSin, bool transposed)
    {
        using var rolled = x.roll(x.shape[^1] / 2, -1);                   // [x₂, x₁]
        using var straight = x * cos;
        using var turned = rolled * signedSin;                             // rotate_half(x)∘sin_t
        return transposed ? straight - turned : straight + turned;
    }

    /// <summary>M R_t x_t for every block, (…, k) → (…, n, r̂), by the formulation <see cref="RotationFormulations.For"/>
    /// gives for x's device: (M R_t) x_t as one batched product over the blocks, or M (R_t x_t) as one matrix product.</summary>
    public override Tensor TimesM(Tensor x, Tensor m)
    {
        if (RotationFormulations.For(x.device.type) == RotationFormulation.RotateInput)
        {
            using var rotated = Apply(x);                                  // (…, n, r̂): R_t x_t
            return rotated.matmul(m.t());
        }
        using var blocks = Fill.Apply(x);                                  // (…, n, r̂)
        using var cores = Cores(m);                                        // (n, r̂, r̂)
        return einsum("...nr,nsr->...ns", blocks, cores);
    }

    /// <summary>M R_t for every block, (n, r̂, r̂): row i of M R_t is R_tᵀ applied to row i of M.</summary>
    public override Tensor Cores(Tensor m)
    {
        using var c = Tables(m.device, m.dtype).Cos.unsqueeze(1);         // (n, 1, r̂)
        using var s = _signedSin.Get(m.device, m.dtype).unsqueeze(1);
        using var rows = m.unsqueeze(0);                                   // (1, r̂, r̂)
        return Rotate(rows, c, s, transposed: true);
    }
}

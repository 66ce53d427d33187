using TorchSharp;
using static TorchSharp.torch;

namespace Mora;

/// <summary>
/// f_decomp : ℝ^Width → ℝᵈ of MoRA (paper §3.1), one fixed linear map T that copies slots to outputs, and its shares of
/// ΔW = T M S. Because T only copies (or zero-fills), the forward and the ΔW share are the same operation along a different
/// axis: <see cref="Apply"/> acts on the last dimension of the compressed activations, <see cref="TimesRows"/> on the rows
/// of "M S" (T·X). <see cref="MergeRows"/> is its axis of the in-place merge.
/// </summary>
public abstract class DecompressionMap(int d, int width)
{
    /// <summary>out_features.</summary>
    public int D { get; } = d;
    /// <summary>How many slots it reads: r̂, or n·r̂ after the blockwise maps.</summary>
    public int Width { get; } = width;
    /// <summary>How many leading slots the d outputs read: min(d, Width).</summary>
    public long RowsRead => Math.Min(D, Width);

    /// <summary>T along axis <paramref name="dim"/>: size Width (or at least <see cref="RowsRead"/>) → d.</summary>
    protected abstract Tensor ApplyAlong(Tensor x, int dim);

    /// <summary>f_decomp h: (…, Width) → (…, d).</summary>
    public virtual Tensor Apply(Tensor h) => ApplyAlong(h, -1);

    /// <summary>T·X for X with the Width slots as rows (at least the first <see cref="RowsRead"/>): (rows × k) → (d × k).</summary>
    public Tensor TimesRows(Tensor x) => ApplyAlong(x, 0);

    /// <summary>This map's axis (W's rows) of the in-place merge, or null where its structure allows no view.</summary>
    public virtual MergeAxis? MergeRows(bool contiguous) => null;
}

/// <summary>Paper Eq. 5, truncation: the r̂ outputs padded with zeros to d (cut when d &lt; r̂); the merge adds M's corner.</summary>
public sealed class ZeroPad(int d, int width) : DecompressionMap(d, width)
{
    protected override Tensor ApplyAlong(Tensor x, int dim) => Slots.Resize(x, dim, D);
    public override MergeAxis? MergeRows(bool contiguous) =>
        new(t => t.narrow(0, 0, RowsRead), t => t.narrow(0, 0, RowsRead));
}

/// <summary>Paper Eq. 7 by tiling (reference types 1, 3): output i reads slot i mod r̂. With r̂ | d the merge views W's rows
/// as (d/r̂, r̂).</summary>
public class Tile(int d, int width) : DecompressionMap(d, width)
{
    protected override Tensor ApplyAlong(Tensor x, int dim) => Slots.Tile(x, dim, D);
    public override MergeAxis? MergeRows(bool contiguous) => contiguous && D % Width == 0
        ? new(t => Slots.Split(t, 0, D / Width, Width), t => Slots.Split(t, 0, 1, Width)) : null;
}

/// <summary>Paper Eq. 7 by contiguous runs (reference types 2, 4): slot g repeated over the g-th of r̂ contiguous runs of the
/// outputs (the first d mod r̂ runs one longer). With r̂ | d the merge views W's rows as (r̂, d/r̂).</summary>
public sealed class RepeatRuns(int d, int width) : DecompressionMap(d, width)
{
    readonly PerDevice<Tensor> _runOfOutput = PerDevice<Tensor>.Index(Slots.Runs(d, width));

    protected override Tensor ApplyAlong(Tensor x, int dim) => x.index_select(dim, _runOfOutput.Get(x.device));
    public override MergeAxis? MergeRows(bool contiguous) => contiguous && D % Width == 0
        ? new(t => Slots.Split(t, 0, Width, D / Width), t => Slots.Split(t, 0, Width, 1)) : null;
}

/// <summary>Paper Eq. 8–10 (types 5, 6): the n block outputs of r̂ concatenated (Width = n·r̂), then tiled to d (output i
/// reads i mod n·r̂). With d = n·r̂ the merge views W's rows as (n, r̂), the row-block axis of a block-diagonal ΔW.</summary>
public sealed class ConcatTile(int d, int width, int rHat) : Tile(d, width)
{
    /// <summary>(…, n, r̂) → (…, d).</summary>
    public override Tensor Apply(Tensor h)
    {
        using var flat = h.flatten(-2);                                     // (…, n·r̂): concatenated block outputs
        return base.Apply(flat);
    }

    public override MergeAxis? MergeRows(bool contiguous) => contiguous && D == Width
        ? new(t => Slots.Split(t, 0, Width / rHat, rHat), t => t) : null;
}

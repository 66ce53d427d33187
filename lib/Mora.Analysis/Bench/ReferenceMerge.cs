using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Bench;

/// <summary>
/// The reference's merge algorithm, for the benchmark to time the kit's merge against: ΔW as the reference code builds it
/// (kongds/MoRA, peft-mora fork, <c>Linear.get_delta_weight</c> in <c>peft/tuners/lora/layer.py</c>), then
/// <c>W += ΔW</c> as its <c>merge</c> does. Written in TorchSharp from reading that code: the same loops, the same tensor
/// operations and the same intermediate shapes, per <c>mora_type</c>:
/// <list type="bullet">
/// <item>types 1 and 4 (compression by stride): an r̂ × k matrix filled by a Python-level loop over the k + pad input
/// positions i, one column slice at a time, <c>w[:, i % k] += M[:, i % r̂]</c>; then the rows tiled (type 1) or each
/// row repeated over a contiguous run with <c>repeat_interleave</c> (type 4);</item>
/// <item>types 2 and 3 (adjacent groups): vectorised, <c>repeat_interleave</c> of M's column slices (the first k mod r̂
/// columns one longer), then of the row slices (type 2) or the rows tiled (type 3);</item>
/// <item>type 6 (rotation): a zero (k + pad) × k matrix, a loop over the r̂-blocks writing M R_t into diagonal block t
/// (with the last block's pad columns wrapped to the first columns), then the rows cut to d or tiled to it. The RoPE
/// tables are computed as the reference does (float32 angles, cast to M's dtype) and kept after the first call, as the
/// reference keeps <c>self.cos</c>/<c>self.sin</c>.</item>
/// </list>
/// The reference has no merge for the paper's truncation (Eq. 4–5) and decoupling (Eq. 8): its forward has no branch for
/// them, so this class refuses <see cref="MoraType.Truncation"/> and <see cref="MoraType.Decouple"/>. With a single
/// r̂-block (k ≤ r̂) its type-6 loop never runs and the line after it reads an unbound loop variable (Python's
/// UnboundLocalError); this class throws <see cref="NotSupportedException"/> there, saying so. Left out: the reference's
/// cast of float16 weights to float32 on a CPU (the benchmark runs float32 on a CPU, or a GPU dtype on a GPU).
/// </summary>
public sealed class ReferenceMerge : IDisposable
{
    public int D { get; }
    public int K { get; }
    public int RHat { get; }
    public MoraType Type { get; }
    Tensor? cos, sin;

    /// <exception cref="ArgumentException">a design the reference does not have, or a bad size</exception>
    public ReferenceMerge(int d, int k, int rHat, MoraType type)
    {
        if (d <= 0) throw new ArgumentException($"out_features (d) must be positive, got {d}", nameof(d));
        if (k <= 0) throw new ArgumentException($"in_features (k) must be positive, got {k}", nameof(k));
        if (rHat <= 0) throw new ArgumentException($"r̂ must be positive, got {rHat}", nameof(rHat));
        if (!MoraTypes.Reference.Contains(type))
            throw new ArgumentException($"the reference code has no merge for {type} (it implements mora_type {string.Join(", ", MoraTypes.Reference.Select(t => (int)t))})", nameof(type));
        (D, K, RHat, Type) = (d, k, rHat, type);
    }

    public void Dispose() { cos?.Dispose(); sin?.Dispose(); cos = sin = null; }

    /// <summary>Whether the reference merges this design (types 1, 2, 3, 4, 6).</summary>
    public static bool Has(MoraType type) => MoraTypes.Reference.Contains(type);

    /// <summary>Whether the reference's merge runs for a <paramref name="k"/>-input layer at <paramref name="rHat"/>: it has the
    /// type, and for rotation more than one r̂-block (with one, the reference crashes; <see cref="Merge"/> throws there).</summary>
    public static bool Runs(int k, int rHat, MoraType type) => Has(type) && (type != MoraType.Rotation || (k + rHat - 1) / rHat >= 2);

    /// <summary>The reference's <c>merge</c>: <c>W += get_delta_weight()</c>.</summary>
    public void Merge(Tensor w, Tensor m)
    {
        using var _ = no_grad();
        using var delta = DeltaWeight(m);
        w.add_(delta);
    }

    /// <summary>The reference's <c>get_delta_weight</c> for M (the r̂ × r̂ <c>lora_A.weight</c>): d × k.</summary>
    public Tensor DeltaWeight(Tensor m)
    {
        if (m.dim() != 2 || m.shape[0] != RHat || m.shape[1] != RHat)
            throw new ArgumentException($"M must be {RHat}×{RHat}, got shape [{string.Join(", ", m.shape)}]", nameof(m));
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        int r = RHat, inF = K, outF = D;
        int padSize = inF % r != 0 ? r - inF % r : 0;
        int repeatTime = outF / r + (outF % r != 0 ? 1 : 0);
        Tensor w = Type switch
        {
            MoraType.Sharing => TileRows(StrideColumnsByLoop(m, padSize), repeatTime),
            MoraType.SharingAdjacent => InterleaveRows(InterleaveColumns(m)),
            MoraType.SharingAdjacentTiled => TileRows(InterleaveColumns(m), repeatTime),
            MoraType.SharingStrideRepeated => InterleaveRows(StrideColumnsByLoop(m, padSize)),
            MoraType.Rotation => RotatedBlocksByLoop(m, padSize),
            _ => throw new InvalidOperationException($"no reference merge for {Type}"),
        };
        return w.MoveToOuterDisposeScope();
    }

    // w = zeros(r, in_f); for i in range(in_f + pad_size): w[:, i % in_f] += aw[:, i % r]
    Tensor StrideColumnsByLoop(Tensor aw, int padSize)
    {
        int r = RHat, inF = K;
        var w = zeros(r, inF).to(aw.dtype, aw.device);
        for (int i = 0; i < inF + padSize; i++)
        {
            using var column = w.select(1, i % inF);
            using var source = aw.select(1, i % r);
            column.add_(source);
        }
        return w;
    }

    // cat([w] * repeat_time, dim=0)[:out_f]
    Tensor TileRows(Tensor w, int repeatTime) =>
        cat(Enumerable.Repeat(w, repeatTime).ToArray(), 0)[TensorIndex.Slice(stop: D)];

    // mr, nr = size//r + 1, size//r; m = size - r*nr: the first m slots repeated mr times, the rest nr times
    (long Mr, long Nr, long M) Runs(int size) { long nr = size / RHat; return (nr + 1, nr, size - RHat * nr); }

    Tensor InterleaveColumns(Tensor w)
    {
        var (mr, nr, m) = Runs(K);
        return cat([w[TensorIndex.Colon, TensorIndex.Slice(stop: m)].repeat_interleave(mr, dim: 1),
                    w[TensorIndex.Colon, TensorIndex.Slice(m)].repeat_interleave(nr, dim: 1)], 1);
    }

    Tensor InterleaveRows(Tensor w)
    {
        var (mr, nr, m) = Runs(D);
        return cat([w[TensorIndex.Slice(stop: m)].repeat_interleave(mr, dim: 0),
                    w[TensorIndex.Slice(m)].repeat_interleave(nr, dim: 0)], 0);
    }

    Tensor RotatedBlocksByLoop(Tensor aw, int padSize)
    {
        int r = RHat, inF = K, outF = D;
        var w = zeros(inF + padSize, inF).to(aw.dtype, aw.device);
        int rb1 = inF % r == 0 ? inF / r : inF / r + 1;
        int rb2 = outF % r == 0 ? outF / r : outF / r + 1;
        int sumInter = rb1, repeatTime = rb2;
        if (cos is null || sin is null)
        {
            // inv_freq = 1 / 10000^(arange(0, r, 2).float() / r); emb = cat(outer(arange(rb1), inv_freq) twice)
            using var tables = NewDisposeScope();
            var invFreq = 1.0 / pow(10000, arange(0, r, 2).@float() / r);
            var freqs = outer(arange(rb1), invFreq);
            var emb = cat([freqs, freqs], -1);
            cos = emb.cos().unsqueeze(0).to(w.device).to(w.dtype).DetachFromDisposeScope();   // kept, as self.cos
            sin = emb.sin().unsqueeze(0).to(w.device).to(w.dtype).DetachFromDisposeScope();
        }
        var aw2 = cat([aw[TensorIndex.Colon, TensorIndex.Slice(r / 2)], -aw[TensorIndex.Colon, TensorIndex.Slice(stop: r / 2)]], -1);
        Tensor Block(int t) => aw2 * sin[TensorIndex.Colon, t] + aw * cos[TensorIndex.Colon, t];
        for (int t = 0; t < sumInter - 1; t++)
        {
            using var block = Block(t);
            w[TensorIndex.Slice(t * r, (t + 1) * r), TensorIndex.Slice(t * r, (t + 1) * r)] = block;
        }
        if (sumInter - 1 < 1)
            throw new NotSupportedException($"the reference's type-6 merge fails for a {outF}×{inF} layer at r̂ = {r}: with a single r̂-block " +
                                            "its loop never runs and the next line reads the unbound loop variable (UnboundLocalError)");
        int i = sumInter - 1;
        using var last = Block(i);
        w[TensorIndex.Slice(i * r), TensorIndex.Slice(i * r)] = last[TensorIndex.Colon, TensorIndex.Slice(stop: r - padSize)];
        if (padSize > 0)
            w[TensorIndex.Slice(i * r), TensorIndex.Slice(stop: padSize)] = last[TensorIndex.Colon, TensorIndex.Slice(r - padSize)];
        return inF < outF ? cat(Enumerable.Repeat(w, repeatTime).ToArray(), 0)[TensorIndex.Slice(stop: outF)] : w[TensorIndex.Slice(stop: outF)];
    }
}

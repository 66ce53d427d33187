using TorchSharp;
using static TorchSharp.torch;

namespace Mora;

/// <summary>
/// The parameter-free operators of MoRA (paper §3.1) for one d × k layer: f_comp : ℝᵏ → ℝ^r̂, f_decomp : ℝ^r̂ → ℝᵈ,
/// and the update they build around the trainable square matrix M (r̂ × r̂, nn.Linear layout: out = M·in):
/// <code>
///   h = ΔW x = f_decomp( M · f_comp(x) )                      (paper Eq. 3)      → <see cref="Forward"/>
///   ΔW      = the d × k matrix of that linear map             (written out)      → <see cref="DeltaWeight"/>
/// </code>
/// Every design is one of four input maps and four output maps, each a gather, a reshape or a sum:
/// <list type="bullet">
/// <item>inputs — truncate (Eq. 4); fill cyclically to n·r̂ and sum the n blocks (types 1, 4); sum r̂ contiguous groups
/// (types 2, 3); fill cyclically to n·r̂ and keep the n blocks apart (Eq. 8), rotating block t by R_t (Eq. 9, type 6);</item>
/// <item>outputs — zero-pad (Eq. 5); tile i ↦ i mod r̂ (types 1, 3); repeat each slot over a contiguous run (types 2, 4);
/// concatenate the n block outputs and tile them to d (Eq. 8–10).</item>
/// </list>
/// Where the reference code needs k ≥ r̂/2 (it pads with x[:pad]) this fills cyclically, x[p mod k], which equals the
/// reference wherever the reference runs and keeps working for layers smaller than r̂. Index tensors are built once per
/// device; the RoPE tables once per device and dtype (computed in float64, then cast).
/// </summary>
public sealed class CompressDecompress
{
    /// <summary>out_features (rows of ΔW).</summary>
    public int D { get; }
    /// <summary>in_features (columns of ΔW).</summary>
    public int K { get; }
    /// <summary>Side of the square matrix M.</summary>
    public int RHat { get; }
    public MoraType Type { get; }
    /// <summary>n = ⌈k / r̂⌉: how many r̂-blocks the cyclically filled input has (stride and blockwise designs).</summary>
    public int Blocks { get; }

    /// <summary>RoPE base of the rotation design (the reference's 10000).</summary>
    public const double RopeBase = 10000.0;

    readonly long[]? _fill;        // p ↦ p mod k for p < n·r̂, when k is not a multiple of r̂
    readonly long[]? _groupOfInput;   // types 2, 3: input j ↦ its group (for ΔW)
    readonly long[]? _outIndex;    // output i ↦ slot it reads (tiling / runs / block tiling); null when a plain narrow
    readonly int _adjM, _adjLong, _adjShort;   // types 2, 3: m groups of (q+1), then r̂ − m groups of q, q = k div r̂
    readonly Dictionary<(DeviceType, int), Tensor?[]> _indices = new();
    readonly Dictionary<(DeviceType, int, ScalarType), (Tensor Cos, Tensor Sin)> _rope = new();
    readonly object _gate = new();

    /// <param name="d">out_features, &gt; 0</param>
    /// <param name="k">in_features, &gt; 0</param>
    /// <param name="rHat">side of M: 0 &lt; r̂ ≤ max(d, k); even for rotation</param>
    /// <param name="type">the design</param>
    /// <exception cref="ArgumentException">naming the offending argument</exception>
    public CompressDecompress(int d, int k, int rHat, MoraType type)
    {
        if (d <= 0) throw new ArgumentException($"out_features (d) must be positive, got {d}", nameof(d));
        if (k <= 0) throw new ArgumentException($"in_features (k) must be positive, got {k}", nameof(k));
        if (!Enum.IsDefined(type)) throw new ArgumentException($"unknown MoRA type {(int)type}", nameof(type));
        if (rHat <= 0) throw new ArgumentException($"r̂ must be positive, got {rHat}", nameof(rHat));
        if (rHat > Math.Max(d, k))
            throw new ArgumentException($"r̂ = {rHat} is larger than the {d}×{k} layer allows (at most max(d, k) = {Math.Max(d, k)}); lower the rank", nameof(rHat));
        if (type == MoraType.Rotation && rHat % 2 != 0)
            throw new ArgumentException($"the rotation design (type 6) needs an even r̂, got {rHat}", nameof(rHat));
        (D, K, RHat, Type) = (d, k, rHat, type);
        Blocks = (k + rHat - 1) / rHat;

        bool strideIn = type is MoraType.Sharing or MoraType.SharingStrideRepeated || type.IsBlockwise();
        if (strideIn && Blocks * rHat != k)
            _fill = Enumerable.Range(0, Blocks * rHat).Select(p => (long)(p % k)).ToArray();

        if (type is MoraType.SharingAdjacent or MoraType.SharingAdjacentTiled)
        {
            _adjShort = k / rHat; _adjLong = _adjShort + 1; _adjM = k - rHat * _adjShort;
            _groupOfInput = Runs(k, rHat);
        }

        _outIndex = type switch
        {
            MoraType.Sharing or MoraType.SharingAdjacentTiled when d > rHat => Enumerable.Range(0, d).Select(i => (long)(i % rHat)).ToArray(),
            MoraType.SharingAdjacent or MoraType.SharingStrideRepeated => Runs(d, rHat),
            MoraType.Decouple or MoraType.Rotation when d > Blocks * rHat => Enumerable.Range(0, d).Select(i => (long)(i % (Blocks * rHat))).ToArray(),
            _ => null,
        };
    }

    /// <summary>For size s split into r̂ contiguous runs (the first s mod r̂ runs one longer): position ↦ run.</summary>
    static long[] Runs(int size, int rHat)
    {
        int q = size / rHat, m = size - rHat * q;
        var group = new long[size];
        int at = 0;
        for (int g = 0; g < rHat && at < size; g++)
            for (int c = 0; c < (g < m ? q + 1 : q); c++) group[at++] = g;
        return group;
    }

    /// <summary>Builds the operators for a layer from the LoRA rank (r̂ by <paramref name="rule"/>).</summary>
    public static CompressDecompress ForLoraRank(int d, int k, int r, MoraType type, RHatRule rule = RHatRule.RoundHalfUp) =>
        new(d, k, global::Mora.RHat.FromLoraRank(d, k, r, type, rule), type);

    // ---------------------------------------------------------------- f_comp

    /// <summary>f_comp: (…, k) → (…, r̂), or (…, n, r̂) for the blockwise designs (rotated for type 6).</summary>
    public Tensor Compress(Tensor x)
    {
        CheckInput(x);
        var ix = Indices(x.device);
        switch (Type)
        {
            case MoraType.Truncation:
                return K >= RHat ? x.narrow(-1, 0, RHat) : nn.functional.pad(x, [0, RHat - K]);
            case MoraType.Sharing or MoraType.SharingStrideRepeated:
            {
                using var blocks = FillBlocks(x, ix);
                return blocks.sum(-2);
            }
            case MoraType.SharingAdjacent or MoraType.SharingAdjacentTiled:
                return SumRuns(x);
            case MoraType.Decouple:
                return FillBlocks(x, ix);
            default: // Rotation
            {
                using var blocks = FillBlocks(x, ix);
                var (cos, sin) = Rope(x.device, x.dtype);
                using var half = RotateHalf(blocks);
                using var a = blocks * cos;
                using var b = half * sin;
                return a + b;                                  // R_t x_t = x_t ∘ cos_t + rotate_half(x_t) ∘ sin_t
            }
        }
    }

    /// <summary>(…, k) → (…, n, r̂): x[p mod k] for p &lt; n·r̂, cut into blocks.</summary>
    Tensor FillBlocks(Tensor x, Tensor?[] ix)
    {
        long[] shape = [.. x.shape[..^1], Blocks, RHat];
        if (ix[0] is null) return x.reshape(shape);
        long wrap = (long)Blocks * RHat - K;                     // p ↦ p mod k for p < n·r̂: x, then x's first `wrap` entries
        if (wrap <= K)
        {
            // A concatenation, not a gather: its backward is two slices added, where index_select's is a scatter-add.
            using var head = x.narrow(-1, 0, wrap);
            using var joined = cat([x, head], -1);
            return joined.reshape(shape);
        }
        using var filled = x.index_select(-1, ix[0]!);
        return filled.reshape(shape);
    }

    /// <summary>Types 2, 3: sums of r̂ contiguous groups, m = k mod r̂ groups of q + 1 then r̂ − m of q (q = k div r̂).</summary>
    Tensor SumRuns(Tensor x)
    {
        long[] lead = x.shape[..^1];
        var parts = new List<Tensor>(2);
        try
        {
            if (_adjM > 0)
            {
                using var head = x.narrow(-1, 0, (long)_adjM * _adjLong).reshape([.. lead, _adjM, _adjLong]);
                parts.Add(head.sum(-1));
            }
            int rest = RHat - _adjM;
            if (rest > 0)
            {
                if (_adjShort == 0) parts.Add(zeros([.. lead, rest], x.dtype, x.device));
                else
                {
                    using var tail = x.narrow(-1, (long)_adjM * _adjLong, (long)rest * _adjShort).reshape([.. lead, rest, _adjShort]);
                    parts.Add(tail.sum(-1));
                }
            }
            return parts.Count == 1 ? parts[0].alias() : cat(parts, -1);
        }
        finally { foreach (var p in parts) p.Dispose(); }
    }

    /// <summary>rotate_half of RoPE over the last dimension: [x₁, x₂] ↦ [−x₂, x₁].</summary>
    static Tensor RotateHalf(Tensor x)
    {
        long h = x.shape[^1] / 2;
        using var x1 = x.narrow(-1, 0, h);
        using var x2 = x.narrow(-1, h, h);
        using var neg = x2.neg();
        return cat([neg, x1], -1);
    }

    // ---------------------------------------------------------------- f_decomp

    /// <summary>f_decomp: (…, r̂) or (…, n, r̂) → (…, d).</summary>
    public Tensor Decompress(Tensor h)
    {
        var ix = Indices(h.device);
        if (Type.IsBlockwise())
        {
            using var flat = h.flatten(-2);                                   // (…, n·r̂): concatenated block outputs
            return TileTo(flat);
        }
        if (Type == MoraType.Truncation)
            return D <= RHat ? h.narrow(-1, 0, D) : nn.functional.pad(h, [0, D - RHat]);
        if (Type is MoraType.Sharing or MoraType.SharingAdjacentTiled) return TileTo(h);
        return h.index_select(-1, ix[1]!);                                    // contiguous runs (types 2, 4)
    }

    /// <summary>Output i reads slot i mod w of the last dimension (w its width), for i &lt; d. Done as repeat + narrow:
    /// on CPU a last-dimension index_select measured ~27× slower (2.1 vs 0.08 ms for 512×128 → 512×1024).</summary>
    Tensor TileTo(Tensor h)
    {
        long width = h.shape[^1];
        if (D <= width) return h.narrow(-1, 0, D);
        var repeats = Enumerable.Repeat(1L, (int)h.dim()).ToArray();
        repeats[^1] = (D + width - 1) / width;
        using var tiled = h.repeat(repeats);
        return tiled.narrow(-1, 0, D);
    }

    // ---------------------------------------------------------------- ΔW x and ΔW

    /// <summary>ΔW x = f_decomp(M f_comp(x)) for x of shape (…, k); M is r̂ × r̂ (out = M·in).</summary>
    public Tensor Forward(Tensor x, Tensor m)
    {
        CheckM(m);
        if (Type == MoraType.Rotation)
        {
            // M (R_t x_t) = (M R_t) x_t: rotate M's n copies (n·r̂² values) instead of the input (tokens·n·r̂ values), then
            // one batched product over the blocks. Same FLOPs for M, no rotated copy of the input kept for the backward.
            CheckInput(x);
            var ix = Indices(x.device);
            using var blocks = FillBlocks(x, ix);                              // (…, n, r̂)
            using var rotated = RotatedBlocks(m);                              // (n, r̂, r̂)
            using var y = einsum("...nr,nsr->...ns", blocks, rotated);
            return Decompress(y);
        }
        using var c = Compress(x);
        using var mc = c.matmul(m.t());
        return Decompress(mc);
    }

    /// <summary>
    /// ΔW written out (d × k, M's dtype and device), with gathers and one index_add, no loop over rows or columns:
    /// <code>
    ///  truncation      ΔW = [M 0; 0 0] cut to d × k
    ///  types 1, 4      (M S)_{:,j} = Σ_{p: p mod k = j} M_{:, p mod r̂}      (S: the stride-sum compressor)
    ///  types 2, 3      (M S)_{:,j} = M_{:, group(j)}
    ///  types 1, 3      ΔW_{i,:} = (M S)_{i mod r̂, :}                         (tiling)
    ///  types 2, 4      ΔW_{i,:} = (M S)_{run(i), :}                           (contiguous runs)
    ///  Eq. 8 / type 6  ΔW = fold_k( tile_d( diag(M R₀, …, M R_{n−1}) ) ),  M R_t = M∘cos_t + rotate_cols(M∘sin_t)
    /// </code>
    /// </summary>
    public Tensor DeltaWeight(Tensor m)
    {
        CheckM(m);
        var ix = Indices(m.device);
        using var scope = NewDisposeScope();
        Tensor result;
        if (Type == MoraType.Truncation)
        {
            using var corner = m.narrow(0, 0, Math.Min(D, RHat)).narrow(1, 0, Math.Min(K, RHat));
            result = nn.functional.pad(corner, [0, K - Math.Min(K, RHat), 0, D - Math.Min(D, RHat)]);
        }
        else if (Type.IsBlockwise())
        {
            Tensor blocks = Type == MoraType.Decouple ? m.unsqueeze(0).expand(Blocks, RHat, RHat) : RotatedBlocks(m);   // (n, r̂, r̂): M R_t
            // Only the row blocks that reach the output are built: ⌈d/r̂⌉ of them when d < n·r̂ (wide layers).
            int rowBlocks = ix[1] is null ? (D + RHat - 1) / RHat : Blocks;
            using var eye = torch.eye(Blocks, dtype: m.dtype, device: m.device);
            var diag = einsum("tab,ts->tasb", blocks.narrow(0, 0, rowBlocks), eye.narrow(0, 0, rowBlocks))
                .reshape(rowBlocks * RHat, Blocks * RHat);
            var rows = ix[1] is null ? diag.narrow(0, 0, D) : diag.index_select(0, ix[1]!);
            result = FoldColumns(rows, ix[0]);
        }
        else
        {
            Tensor ms = Type is MoraType.Sharing or MoraType.SharingStrideRepeated
                ? FoldColumns(m.repeat(1, Blocks), ix[0])                      // r̂ × k
                : m.index_select(1, ix[2]!);                                   // r̂ × k
            result = ix[1] is null ? ms.narrow(0, 0, D) : ms.index_select(0, ix[1]!);
        }
        return result.contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>M R_t for every block t, (n, r̂, r̂): R_t x = x ∘ cos_t + rotate_half(x) ∘ sin_t = (diag(cos_t) + diag(sin_t) P) x,
    /// so M R_t = M diag(cos_t) + (M diag(sin_t)) P, and right-multiplying by P maps columns [A₁, A₂] to [A₂, −A₁].</summary>
    Tensor RotatedBlocks(Tensor m)
    {
        using var scope = NewDisposeScope();
        var (cos, sin) = Rope(m.device, m.dtype);                             // (n, r̂)
        var ms = m.unsqueeze(0) * sin.unsqueeze(1);                           // M diag(sin_t)
        long h = RHat / 2;
        var rotated = cat([ms.narrow(2, h, h), ms.narrow(2, 0, h).neg()], 2);  // (M diag(sin_t)) P
        return (m.unsqueeze(0) * cos.unsqueeze(1) + rotated).MoveToOuterDisposeScope();
    }

    /// <summary>W ← W + <paramref name="scale"/>·ΔW in place (a merge), without writing ΔW out where its structure allows:
    /// for decoupling and rotation with d = k = n·r̂, ΔW is block-diagonal and only the n diagonal r̂×r̂ blocks of W change;
    /// truncation adds M to W's top-left corner; for the sharing designs (1–4) with r̂ dividing d and k, ΔW[i, j] =
    /// M[slot(i), slot(j)] is added by broadcasting M over a 4-d view of W. Other shapes add <see cref="DeltaWeight"/>.</summary>
    public void AddDeltaWeightTo(Tensor w, Tensor m, double scale = 1.0)
    {
        CheckM(m);
        if (w.dim() != 2 || w.shape[0] != D || w.shape[1] != K)
            throw new ArgumentException($"W must be {D}×{K}, got shape [{string.Join(", ", w.shape)}]", nameof(w));
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        if (Type.IsBlockwise() && K == Blocks * RHat && D == K && w.is_contiguous())
        {
            var blocks = Type == MoraType.Decouple ? m.unsqueeze(0).expand(Blocks, RHat, RHat) : RotatedBlocks(m);
            var diagonal = w.view(Blocks, RHat, Blocks, RHat).diagonal(0, 0, 2);     // (r̂, r̂, n), a view of W's diagonal blocks
            diagonal.add_(blocks.permute(1, 2, 0), alpha: scale);
            return;
        }
        if (Type == MoraType.Truncation)
        {
            using var corner = m.narrow(0, 0, Math.Min(D, RHat)).narrow(1, 0, Math.Min(K, RHat));
            using var target = w.narrow(0, 0, Math.Min(D, RHat)).narrow(1, 0, Math.Min(K, RHat));
            target.add_(corner, alpha: scale);
            return;
        }
        if (K % RHat == 0 && D % RHat == 0 && w.is_contiguous() && !Type.IsBlockwise())
        {
            int q = D / RHat, p = K / RHat;
            // Output i reads slot i mod r̂ (tiled: types 1, 3) or run i div q (types 2, 4); input j feeds slot j mod r̂
            // (strided: types 1, 4) or group j div p (adjacent: types 2, 3). W viewed with the matching axes gets M broadcast.
            bool tiledOut = Type is MoraType.Sharing or MoraType.SharingAdjacentTiled;
            bool stridedIn = Type is MoraType.Sharing or MoraType.SharingStrideRepeated;
            long[] wShape = [.. tiledOut ? new long[] { q, RHat } : [RHat, q], .. stridedIn ? new long[] { p, RHat } : [RHat, p]];
            long[] mShape = [.. tiledOut ? new long[] { 1, RHat } : [RHat, 1], .. stridedIn ? new long[] { 1, RHat } : [RHat, 1]];
            w.view(wShape).add_(m.view(mShape), alpha: scale);
            return;
        }
        w.add_(DeltaWeight(m), alpha: scale);
    }

    /// <summary>Columns p of a (rows × n·r̂) matrix added into column p mod k (the transpose of the cyclic fill).</summary>
    Tensor FoldColumns(Tensor wide, Tensor? fill)
    {
        if (fill is null) return wide;
        var outT = zeros([wide.shape[0], K], wide.dtype, wide.device);
        return outT.index_add(1, fill, wide, 1.0);
    }

    /// <summary>ΔW as the Jacobian of <see cref="Forward"/>: the forward applied to the k unit vectors (a check, and
    /// the definition the golden vectors use).</summary>
    public Tensor DeltaWeightFromForward(Tensor m)
    {
        using var eye = torch.eye(K, dtype: m.dtype, device: m.device);
        using var cols = Forward(eye, m);                                     // row j = ΔW e_j
        return cols.t().contiguous();
    }

    /// <summary>The rank of ΔW for a generic (random) M. Derivation: ΔW = T M S with T (d × r̂) and S (r̂ × k) fixed 0/1
    /// maps; for the sharing designs S has rank min(r̂, k) (every slot gets an input once k ≥ r̂; distinct inputs reach
    /// distinct slots when k &lt; r̂) and T rank min(r̂, d) (the first outputs read distinct slots), so rank ΔW =
    /// min(r̂, d, k); truncation keeps a min(d, r̂) × min(k, r̂) corner of M. The blockwise designs are
    /// diag(M R_t) (invertible for a generic M: rank n·r̂) followed by the cyclic fold (rank k) and row tiling (rank
    /// min(d, n·r̂)), so rank ΔW = min(d, k): the high rank MoRA is after.</summary>
    public int ExpectedRank() => Type.IsBlockwise() ? Math.Min(D, K) : Math.Min(RHat, Math.Min(D, K));

    // ---------------------------------------------------------------- tables

    Tensor?[] Indices(Device device)
    {
        var key = (device.type, device.index);
        lock (_gate)
        {
            if (_indices.TryGetValue(key, out var found)) return found;
            // Cached for the operator's lifetime: detached from whatever dispose scope the caller has open.
            Tensor? Make(long[]? a) => a is null ? null : tensor(a, dtype: ScalarType.Int64, device: device).DetachFromDisposeScope();
            var made = new[] { Make(_fill), Make(_outIndex), Make(_groupOfInput) };
            _indices[key] = made;
            return made;
        }
    }

    /// <summary>cos and sin of block t's angles t·θ_i, θ_i = 10000^(−2i/r̂), each angle used twice (RoPE's [θ, θ] layout):
    /// (n, r̂) tables.</summary>
    (Tensor Cos, Tensor Sin) Rope(Device device, ScalarType dtype)
    {
        var key = (device.type, device.index, dtype);
        lock (_gate)
        {
            if (_rope.TryGetValue(key, out var found)) return found;
            using var scope = NewDisposeScope();
            var inv = pow(RopeBase, -arange(0, RHat, 2, dtype: ScalarType.Float64) / (double)RHat);
            var t = arange(Blocks, dtype: ScalarType.Float64);
            var freqs = outer(t, inv);
            var emb = cat([freqs, freqs], -1);
            var made = (emb.cos().to(dtype, device).DetachFromDisposeScope(), emb.sin().to(dtype, device).DetachFromDisposeScope());
            _rope[key] = made;
            return made;
        }
    }

    void CheckInput(Tensor x)
    {
        if (x.dim() < 1 || x.shape[^1] != K)
            throw new ArgumentException($"input's last dimension must be in_features = {K}, got shape [{string.Join(", ", x.shape)}]", nameof(x));
    }

    void CheckM(Tensor m)
    {
        if (m.dim() != 2 || m.shape[0] != RHat || m.shape[1] != RHat)
            throw new ArgumentException($"M must be {RHat}×{RHat}, got shape [{string.Join(", ", m.shape)}]", nameof(m));
    }

    public override string ToString() => $"{Type} (type {(int)Type}) {D}×{K}, r̂ = {RHat}";
}

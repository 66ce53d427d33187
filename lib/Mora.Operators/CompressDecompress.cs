using TorchSharp;
using static TorchSharp.torch;

namespace Mora;

/// <summary>
/// The parameter-free operators of MoRA (paper §3.1) for one d × k layer, as the paper builds them: a compression map
/// f_comp : ℝᵏ → ℝ^r̂ (<see cref="CompressionMap"/>) and a decompression map f_decomp : ℝ^r̂ → ℝᵈ
/// (<see cref="DecompressionMap"/>) around the trainable square matrix M (r̂ × r̂, nn.Linear layout: out = M·in):
/// <code>
///   h = ΔW x = f_decomp( M · f_comp(x) )                      (paper Eq. 3)      → <see cref="Forward"/>
///   ΔW      = T · (M S), S and T the maps' fixed matrices     (written out)      → <see cref="DeltaWeight"/>
/// </code>
/// A design is a pair of maps, chosen in <see cref="Maps"/>:
/// <list type="bullet">
/// <item>f_comp — <see cref="Truncate"/> (Eq. 4), <see cref="StrideSum"/> (Eq. 6 by stride, types 1, 4),
/// <see cref="AdjacentSum"/> (Eq. 6 by adjacent groups, types 2, 3), <see cref="ReshapeBlocks"/> (Eq. 8),
/// <see cref="RotatedBlocks"/> (Eq. 9, type 6);</item>
/// <item>f_decomp — <see cref="ZeroPad"/> (Eq. 5), <see cref="Tile"/> (Eq. 7, types 1, 3), <see cref="RepeatRuns"/> (Eq. 7,
/// types 2, 4), <see cref="ConcatTile"/> (Eq. 8–10).</item>
/// </list>
/// This class checks arguments and composes the two maps; each map holds its forward, its share of ΔW and its axis of
/// the in-place merge.
/// </summary>
public sealed class CompressDecompress
{
    /// <summary>out_features (rows of ΔW).</summary>
    public int D { get; }
    /// <summary>in_features (columns of ΔW).</summary>
    public int K { get; }
    /// <summary>Side of the square matrix M.</summary>
    public int RHat { get; }
    /// <summary>The design (a paper design or a registered one, <see cref="MoraDesigns"/>).</summary>
    public MoraDesign Design { get; }
    /// <summary>The paper's design this is.</summary>
    /// <exception cref="InvalidOperationException">a registered design of one's own, which has no <see cref="MoraType"/> (use <see cref="Design"/>)</exception>
    public MoraType Type => Design.BuiltIn ?? throw new InvalidOperationException($"design '{Design.Name}' is not one of the paper's; use Design");
    /// <summary>n = ⌈k / r̂⌉: how many r̂-blocks the cyclically filled input has (stride and blockwise designs).</summary>
    public int Blocks { get; }
    /// <summary>f_comp of this design.</summary>
    public CompressionMap Compression { get; }
    /// <summary>f_decomp of this design.</summary>
    public DecompressionMap Decompression { get; }

    /// <summary>RoPE base of the rotation design (the reference's 10000).</summary>
    public const double RopeBase = RotatedBlocks.RopeBase;

    /// <param name="d">out_features, &gt; 0</param>
    /// <param name="k">in_features, &gt; 0</param>
    /// <param name="rHat">side of M: 0 &lt; r̂ ≤ max(d, k); even for rotation</param>
    /// <param name="type">the design</param>
    /// <exception cref="ArgumentException">naming the offending argument</exception>
    public CompressDecompress(int d, int k, int rHat, MoraType type)
        : this(d, k, rHat, Enum.IsDefined(type) ? MoraDesign.Of(type) : throw new ArgumentException($"unknown MoRA type {(int)type}", nameof(type))) { }

    /// <param name="d">out_features, &gt; 0</param>
    /// <param name="k">in_features, &gt; 0</param>
    /// <param name="rHat">side of M: 0 &lt; r̂ ≤ max(d, k); even where the design needs it</param>
    /// <param name="design">the design: a paper design or a registered one</param>
    public CompressDecompress(int d, int k, int rHat, MoraDesign design)
    {
        ArgumentNullException.ThrowIfNull(design);
        if (d <= 0) throw new ArgumentException($"out_features (d) must be positive, got {d}", nameof(d));
        if (k <= 0) throw new ArgumentException($"in_features (k) must be positive, got {k}", nameof(k));
        if (rHat <= 0) throw new ArgumentException($"r̂ must be positive, got {rHat}", nameof(rHat));
        if (rHat > Math.Max(d, k))
            throw new ArgumentException($"r̂ = {rHat} is larger than the {d}×{k} layer allows (at most max(d, k) = {Math.Max(d, k)}); lower the rank", nameof(rHat));
        if (design.EvenRHat && rHat % 2 != 0) throw new ArgumentException($"design {design.Name} needs an even r̂, got {rHat}", nameof(rHat));
        (D, K, RHat, Design) = (d, k, rHat, design);
        Blocks = CyclicFill.BlockCount(k, rHat);
        (Compression, Decompression) = design.Maps(d, k, rHat);
    }

    /// <summary>The design as a pair of maps: the one place a <see cref="MoraType"/> is looked at.</summary>
    /// <exception cref="ArgumentException">r̂ odd for the rotation design (from <see cref="RotatedBlocks"/>)</exception>
    public static (CompressionMap Compression, DecompressionMap Decompression) Maps(int d, int k, int rHat, MoraType type)
    {
        return type switch
        {
            MoraType.Truncation => Pair(new Truncate(k, rHat), w => new ZeroPad(d, w)),
            MoraType.Sharing => Pair(new StrideSum(k, rHat), w => new Tile(d, w)),
            MoraType.SharingAdjacent => Pair(new AdjacentSum(k, rHat), w => new RepeatRuns(d, w)),
            MoraType.SharingAdjacentTiled => Pair(new AdjacentSum(k, rHat), w => new Tile(d, w)),
            MoraType.SharingStrideRepeated => Pair(new StrideSum(k, rHat), w => new RepeatRuns(d, w)),
            MoraType.Decouple => Pair(new ReshapeBlocks(k, rHat), w => new ConcatTile(d, w, rHat)),
            MoraType.Rotation => Pair(new RotatedBlocks(k, rHat), w => new ConcatTile(d, w, rHat)),
            _ => throw new ArgumentException($"unknown MoRA type {(int)type}", nameof(type)),
        };
        static (CompressionMap, DecompressionMap) Pair(CompressionMap c, Func<int, DecompressionMap> decompression) =>
            (c, decompression(c.Width));
    }

    /// <summary>Builds the operators for a layer from the LoRA rank (r̂ by <paramref name="rule"/>).</summary>
    public static CompressDecompress ForLoraRank(int d, int k, int r, MoraType type, RHatRule rule = RHatRule.RoundHalfUp) =>
        new(d, k, ParameterBudget.RHat(d, k, r, type, rule), type);

    /// <summary>Builds the operators for a layer from the LoRA rank (r̂ by <paramref name="rule"/>), for any design.</summary>
    public static CompressDecompress ForLoraRank(int d, int k, int r, MoraDesign design, RHatRule rule = RHatRule.RoundHalfUp) =>
        new(d, k, ParameterBudget.RHat(d, k, r, design, rule), design);

    /// <summary>f_comp: (…, k) → (…, r̂), or (…, n, r̂) for the blockwise designs (rotated for type 6).</summary>
    public Tensor Compress(Tensor x)
    {
        CheckInput(x);
        return Compression.Apply(x);
    }

    /// <summary>f_decomp: (…, r̂) or (…, n, r̂) → (…, d).</summary>
    public Tensor Decompress(Tensor h) => Decompression.Apply(h);

    /// <summary>ΔW x = f_decomp(M f_comp(x)) for x of shape (…, k); M is r̂ × r̂ (out = M·in).</summary>
    public Tensor Forward(Tensor x, Tensor m)
    {
        CheckM(m);
        CheckInput(x);
        using var y = Compression.TimesM(x, m);
        return Decompression.Apply(y);
    }

    /// <summary>ΔW = T·(M S) written out (d × k, M's dtype and device), with gathers and one index_add, no loop over rows
    /// or columns; on wide blockwise layers only the row blocks the output reads are built.</summary>
    public Tensor DeltaWeight(Tensor m)
    {
        CheckM(m);
        if (Compression is ForwardCompression { DeltaWeight: { } own }) return own(m);
        using var scope = NewDisposeScope();
        var ms = Compression.MTimesS(m, Decompression.RowsRead);
        return Decompression.TimesRows(ms).contiguous().MoveToOuterDisposeScope();
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
        if (Compression.TryMerge(w, m, scale, Decompression)) return;
        using var delta = DeltaWeight(m);
        w.add_(delta, alpha: scale);
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
    /// <remarks>For a registered design of one's own, which has no derivation here, the numerical rank of its ΔW for a
    /// seeded random M (float64).</remarks>
    public int ExpectedRank()
    {
        if (Design.BuiltIn is not null) return Compression is BlockCompression ? Math.Min(D, K) : Math.Min(RHat, Math.Min(D, K));
        using var scope = NewDisposeScope();
        var m = randn(RHat, RHat, dtype: ScalarType.Float64, generator: new torch.Generator(7));
        return (int)linalg.matrix_rank(DeltaWeight(m)).ToInt64();
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

    public override string ToString() => Design.BuiltIn is { } t ? $"{t} (type {(int)t}) {D}×{K}, r̂ = {RHat}" : $"{Design.Name} {D}×{K}, r̂ = {RHat}";
}

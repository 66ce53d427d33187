namespace Mora;

/// <summary>
/// The compress/decompress designs of MoRA (Jiang et al. 2024, arXiv 2405.12130, §3.1) and of its reference code
/// (the peft-mora fork, <c>mora_type</c>). The numeric values of reference types are the reference's own numbers, so an
/// <c>adapter_config.json</c> round-trips; <see cref="Truncation"/> and <see cref="Decouple"/> appear in the paper but
/// have no reference number (0 and 5 here; the reference would not understand them).
/// </summary>
public enum MoraType
{
    /// <summary>Paper Eq. 4–5: f_comp keeps the first r̂ inputs, f_decomp pads the r̂ outputs with zeros.
    /// ΔW is M in the top-left corner: rank ≤ min(r̂, d, k).</summary>
    Truncation = 0,

    /// <summary>Reference type 1 (paper Eq. 6–7, sharing rows and columns, groups by stride): input j is summed into
    /// slot j mod r̂ (the input is repeated cyclically to a multiple of r̂); output i reads slot i mod r̂ (tiling).</summary>
    Sharing = 1,

    /// <summary>Reference type 2: adjacent groups on both sides: inputs split into r̂ contiguous groups whose sums form the
    /// compressed vector (the first k mod r̂ groups one longer); each output slot is repeated over a contiguous run.</summary>
    SharingAdjacent = 2,

    /// <summary>Reference type 3: compress as type 2 (adjacent groups), decompress as type 1 (tiling).</summary>
    SharingAdjacentTiled = 3,

    /// <summary>Reference type 4: compress as type 1 (groups by stride), decompress as type 2 (contiguous runs).</summary>
    SharingStrideRepeated = 4,

    /// <summary>Paper Eq. 8, decoupling by reshape: x is cut into n = ⌈k/r̂⌉ blocks of r̂ (repeated cyclically to fill the
    /// last); every block goes through the same M and the outputs are concatenated: ΔW is block-diagonal diag(M, …, M),
    /// rank min(d, k) for a generic M.</summary>
    Decouple = 5,

    /// <summary>Reference type 6 (paper Eq. 9–10): decoupling plus a RoPE-style rotation of block t by angles
    /// t·10000^(−2i/r̂) before M, so that blocks are told apart: ΔW = diag(M R₀, M R₁, …), rank min(d, k).
    /// Needs an even r̂.</summary>
    Rotation = 6,
}

/// <summary>How r̂ is derived from the LoRA rank r at equal parameters: r̂² ≈ (d + k)·r.</summary>
public enum RHatRule
{
    /// <summary>The reference's rule: ⌊√((d+k)r) + 0.5⌋ (round half up), then down to an even number for rotation.</summary>
    RoundHalfUp,
    /// <summary>The paper's ⌊√((d+k)r)⌋, then down to an even number for rotation.</summary>
    Floor,
}

public static class MoraTypes
{
    /// <summary>All designs, in the paper's order.</summary>
    public static readonly IReadOnlyList<MoraType> All =
        [MoraType.Truncation, MoraType.Sharing, MoraType.SharingAdjacent, MoraType.SharingAdjacentTiled,
         MoraType.SharingStrideRepeated, MoraType.Decouple, MoraType.Rotation];

    /// <summary>The designs the reference code implements (mora_type 1, 2, 3, 4, 6).</summary>
    public static readonly IReadOnlyList<MoraType> Reference =
        [MoraType.Sharing, MoraType.SharingAdjacent, MoraType.SharingAdjacentTiled, MoraType.SharingStrideRepeated, MoraType.Rotation];

    /// <summary>The design's name as the command line writes it (lower case: "rotation", "sharingadjacent").</summary>
    public static string Name(MoraType type) => type.ToString().ToLowerInvariant();

    /// <summary>The one design parser: a number ("6", as <c>mora_type</c> in an adapter_config.json) or a name ("rotation",
    /// case-insensitive, '-' and '_' ignored).</summary>
    /// <exception cref="ArgumentException">unknown design, naming <paramref name="paramName"/></exception>
    public static MoraType Parse(string text, string paramName = "type")
    {
        bool isNumber = int.TryParse(text, out int n);
        if (isNumber && Enum.IsDefined(typeof(MoraType), n)) return (MoraType)n;
        if (!isNumber && Enum.TryParse(text.Replace("-", "").Replace("_", ""), ignoreCase: true, out MoraType t) && Enum.IsDefined(t)) return t;
        throw new ArgumentException($"unknown MoRA design '{text}'; use one of {string.Join(", ", All.Select(a => $"{(int)a} ({a})"))}", paramName);
    }

    /// <summary>True for the designs that treat the input as independent blocks (decouple, rotation).</summary>
    public static bool IsBlockwise(this MoraType t) => t is MoraType.Decouple or MoraType.Rotation;
}

/// <summary>r̂ and the parameter budget (paper §3: MoRA spends LoRA's (d + k)·r parameters on one r̂ × r̂ matrix).</summary>
public static class ParameterBudget
{
    /// <summary>r̂ for a d × k layer (d = out_features, k = in_features) at LoRA rank <paramref name="r"/>.</summary>
    /// <exception cref="ArgumentException">r, d or k not positive</exception>
    public static int RHat(int d, int k, int r, MoraType type, RHatRule rule = RHatRule.RoundHalfUp)
    {
        if (r <= 0) throw new ArgumentException($"LoRA rank must be positive, got {r}", nameof(r));
        if (d <= 0) throw new ArgumentException($"out_features must be positive, got {d}", nameof(d));
        if (k <= 0) throw new ArgumentException($"in_features must be positive, got {k}", nameof(k));
        double root = Math.Sqrt((double)(d + k) * r);
        int rHat = rule == RHatRule.RoundHalfUp ? (int)Math.Floor(root + 0.5) : (int)Math.Floor(root);
        if (type == MoraType.Rotation) rHat = rHat / 2 * 2;
        if (rHat <= 0) throw new ArgumentException($"r = {r} gives r̂ = 0 for a {d}×{k} layer", nameof(r));
        return rHat;
    }

    /// <summary>r̂ for a d × k layer at LoRA rank <paramref name="r"/>, for any design (even where it needs it).</summary>
    public static int RHat(int d, int k, int r, MoraDesign design, RHatRule rule = RHatRule.RoundHalfUp)
    {
        ArgumentNullException.ThrowIfNull(design);
        if (design.BuiltIn is { } t) return RHat(d, k, r, t, rule);
        int rHat = RHat(d, k, r, MoraType.Sharing, rule);
        if (design.EvenRHat) rHat = rHat / 2 * 2;
        if (rHat <= 0) throw new ArgumentException($"r = {r} gives r̂ = 0 for a {d}×{k} layer", nameof(r));
        return rHat;
    }

    /// <summary>LoRA's trainable parameters: A (r × k) and B (d × r).</summary>
    public static long LoraParameters(int d, int k, int r) => (long)(d + k) * r;

    /// <summary>MoRA's trainable parameters: the square matrix M.</summary>
    public static long MoraParameters(int rHat) => (long)rHat * rHat;
}

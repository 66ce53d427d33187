namespace Mora.Adapters;

/// <summary>Which parameter-efficient method (or none) adapts the targeted layers.</summary>
public enum AdapterMethod
{
    /// <summary>LoRA (Hu et al. 2021): ΔW = (α/r)·B A, A Kaiming-uniform, B zero.</summary>
    Lora,
    /// <summary>DoRA (Liu et al. 2024): W' = m ∘ (W₀ + (α/r) B A) / ‖W₀ + (α/r) B A‖ (row norms, detached in forward).</summary>
    Dora,
    /// <summary>MoRA: ΔW = f_decomp(M f_comp(·)), M zero-initialised, scaling 1 as in the reference.</summary>
    Mora,
    /// <summary>Full fine-tuning: every parameter of the model trains; ΔW is reported as W − W₀.</summary>
    Full,
}

/// <summary>
/// One adapter recipe, swappable with one argument: <c>config with { Method = AdapterMethod.Mora }</c>.
/// The names follow PEFT's LoraConfig and the MoRA fork (r, lora_alpha, target_modules, use_rslora, use_mora, mora_type).
/// </summary>
public sealed record AdapterConfig
{
    /// <summary>The choice of <see cref="TargetModules"/> that adapts every linear layer except <see cref="ExcludeModules"/>.</summary>
    public const string AllLinear = "all-linear";

    public AdapterMethod Method { get; init; } = AdapterMethod.Lora;
    /// <summary>LoRA rank r; for MoRA the rank whose parameter budget (d + k)·r sets r̂.</summary>
    public int R { get; init; } = 8;
    /// <summary>LoRA/DoRA α; scaling α/r (or α/√r with <see cref="UseRsLora"/>). MoRA ignores it (scaling 1).</summary>
    public double Alpha { get; init; } = 16;
    public bool UseRsLora { get; init; }
    public double Dropout { get; init; }
    public MoraType MoraType { get; init; } = MoraType.Rotation;
    public RHatRule RHatRule { get; init; } = RHatRule.RoundHalfUp;
    /// <summary>Module names to adapt, matched against the last dotted parts of each module's path (q_proj matches
    /// layers.0.self_attn.q_proj), or the single entry <see cref="AllLinear"/>.</summary>
    public IReadOnlyList<string> TargetModules { get; init; } = ["q_proj", "k_proj", "v_proj", "o_proj"];
    /// <summary>Modules never adapted by <see cref="AllLinear"/> (the output head by default, as in PEFT).</summary>
    public IReadOnlyList<string> ExcludeModules { get; init; } = ["lm_head", "output", "head"];

    public static AdapterConfig Lora(int r = 8, double alpha = 16, params string[] targets) =>
        new() { Method = AdapterMethod.Lora, R = r, Alpha = alpha, TargetModules = targets.Length > 0 ? targets : [AllLinear] };
    public static AdapterConfig Dora(int r = 8, double alpha = 16, params string[] targets) =>
        new() { Method = AdapterMethod.Dora, R = r, Alpha = alpha, TargetModules = targets.Length > 0 ? targets : [AllLinear] };
    public static AdapterConfig Mora(int r = 8, MoraType type = MoraType.Rotation, params string[] targets) =>
        new() { Method = AdapterMethod.Mora, R = r, MoraType = type, TargetModules = targets.Length > 0 ? targets : [AllLinear] };
    public static AdapterConfig Full(params string[] targets) =>
        new() { Method = AdapterMethod.Full, TargetModules = targets.Length > 0 ? targets : [AllLinear] };

    /// <summary>Checks every field; throws <see cref="ArgumentException"/> naming the field.</summary>
    public AdapterConfig Validate()
    {
        if (!Enum.IsDefined(Method)) throw new ArgumentException($"unknown adapter method {(int)Method}", nameof(Method));
        if (Method != AdapterMethod.Full && R <= 0) throw new ArgumentException($"rank r must be positive, got {R}", nameof(R));
        if (Method is AdapterMethod.Lora or AdapterMethod.Dora && (double.IsNaN(Alpha) || Alpha <= 0))
            throw new ArgumentException($"lora_alpha must be positive, got {Alpha}", nameof(Alpha));
        if (Dropout is < 0 or >= 1 || double.IsNaN(Dropout)) throw new ArgumentException($"dropout must be in [0, 1), got {Dropout}", nameof(Dropout));
        if (!Enum.IsDefined(MoraType)) throw new ArgumentException($"unknown MoRA type {(int)MoraType}", nameof(MoraType));
        if (TargetModules is null || TargetModules.Count == 0 || TargetModules.Any(string.IsNullOrWhiteSpace))
            throw new ArgumentException("target_modules must name at least one module (or 'all-linear')", nameof(TargetModules));
        return this;
    }
}

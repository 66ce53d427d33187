using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Adapters;

/// <summary>
/// MoRA: y = x W₀ᵀ + b + f_decomp(M f_comp(x)), M ∈ ℝ^{r̂×r̂} zero-initialised (so the layer starts as W₀), scaling 1
/// as in the reference. M is stored as <c>lora_A.weight</c>, the reference fork's name. r̂² trainable parameters,
/// r̂ ≈ √((d + k)·r) for LoRA-rank parity.
/// </summary>
public sealed class MoraLinear : AdaptedLinear
{
    readonly Linear lora_A;
    CompressDecompress _op;

    public int LoraRank { get; }
    public double DropoutP { get; }
    public CompressDecompress Operators => _op;
    /// <summary>The paper's design (throws for a registered design of one's own: see <see cref="Design"/>).</summary>
    public MoraType Type => _op.Type;
    /// <summary>The design, a paper design or a registered one.</summary>
    public MoraDesign Design => _op.Design;
    public int RHat => _op.RHat;
    public override AdapterMethod Method => AdapterMethod.Mora;

    /// <param name="baseLayer">the frozen layer</param>
    /// <param name="r">the LoRA rank whose budget r̂ matches</param>
    /// <param name="type">the compress/decompress design</param>
    /// <param name="rule">how r̂ is rounded</param>
    /// <param name="dropout">dropout on the adapter's input while training (PEFT's lora_dropout)</param>
    /// <param name="rHat">an explicit r̂ (overrides <paramref name="r"/>)</param>
    public MoraLinear(Linear baseLayer, int r, MoraType type = MoraType.Rotation, RHatRule rule = RHatRule.RoundHalfUp, double dropout = 0, int? rHat = null)
        : this(baseLayer, r, Enum.IsDefined(type) ? MoraDesign.Of(type) : throw new ArgumentException($"unknown MoRA type {(int)type}", nameof(type)), rule, dropout, rHat) { }

    /// <param name="baseLayer">the frozen layer</param>
    /// <param name="r">the LoRA rank whose budget r̂ matches</param>
    /// <param name="design">the compress/decompress design: a paper design or a registered one (<see cref="MoraDesigns"/>)</param>
    /// <param name="rule">how r̂ is rounded</param>
    /// <param name="dropout">dropout on the adapter's input while training (PEFT's lora_dropout)</param>
    /// <param name="rHat">an explicit r̂ (overrides <paramref name="r"/>)</param>
    public MoraLinear(Linear baseLayer, int r, MoraDesign design, RHatRule rule = RHatRule.RoundHalfUp, double dropout = 0, int? rHat = null)
        : base(nameof(MoraLinear), baseLayer)
    {
        if (r <= 0) throw new ArgumentException($"LoRA rank must be positive, got {r}", nameof(r));
        if (r > Math.Min(InFeatures, OutFeatures))
            throw new ArgumentException($"rank {r} is larger than the {OutFeatures}×{InFeatures} layer allows (min(d, k) = {Math.Min(InFeatures, OutFeatures)})", nameof(r));
        LoraRank = r;
        DropoutP = dropout;
        int side = rHat ?? ParameterBudget.RHat(OutFeatures, InFeatures, r, design, rule);
        _op = new CompressDecompress(OutFeatures, InFeatures, side, design);
        lora_A = nn.Linear(side, side, hasBias: false, device: WeightDevice, dtype: WeightType);
        FreezeBase();
        ResetAdapter();
        RegisterComponents();
    }

    /// <summary>The square matrix M (out = M·in).</summary>
    public Parameter M => lora_A.weight!;

    public override void ResetAdapter()
    {
        using var _ = no_grad();
        M.zero_();
    }

    /// <summary>Switches the design keeping r̂ and M (ReMoRA alternates designs between merges; call it after a merge).</summary>
    /// <exception cref="ArgumentException">r̂ does not suit <paramref name="type"/> (rotation needs it even)</exception>
    /// <exception cref="InvalidOperationException">while merged: the merged ΔW was built with the old design</exception>
    public void SwitchType(MoraType type)
    {
        if (Merged) throw new InvalidOperationException("unmerge before switching the MoRA design, or use Peft.MergeAndReinit");
        _op = new CompressDecompress(OutFeatures, InFeatures, RHat, type);
    }

    protected override Tensor AdapterForward(Tensor x)
    {
        using var xd = ApplyDropout(x, DropoutP);
        return _op.Forward(xd, M);
    }

    public override Tensor DeltaWeight() => _op.DeltaWeight(M);

    /// <summary>W₀ ← W₀ + ΔW, in place and, for the regular shapes, without writing ΔW out (<see cref="CompressDecompress.AddDeltaWeightTo"/>).</summary>
    public override void Merge()
    {
        if (Merged) return;
        using var m = M.detach();
        _op.AddDeltaWeightTo(BaseWeight, m);
        Merged = true;
    }

    public override void Unmerge()
    {
        if (!Merged) return;
        using var m = M.detach();
        _op.AddDeltaWeightTo(BaseWeight, m, -1.0);
        Merged = false;
    }

    public override IEnumerable<(string Name, Parameter Parameter)> AdapterParameters()
    {
        yield return ("lora_A.weight", M);
    }
}

/// <summary>Full fine-tuning as a baseline behind the same interface: W itself trains; ΔW = W − W₀ (a frozen copy
/// of the starting weight is kept for that); "merged" always, since W already holds the update. Disabling it
/// computes with W₀.</summary>
public sealed class FullLinear : AdaptedLinear
{
    readonly Tensor _initial;
    public override AdapterMethod Method => AdapterMethod.Full;

    public FullLinear(Linear baseLayer) : base(nameof(FullLinear), baseLayer)
    {
        base_layer.weight!.requires_grad = true;
        if (base_layer.bias is not null) base_layer.bias.requires_grad = true;
        using (no_grad()) _initial = base_layer.weight!.detach().clone();
        Merged = true;
        RegisterComponents();
    }

    protected override Tensor AdapterForward(Tensor x) => throw new InvalidOperationException("full fine-tuning has no separate adapter path");

    public override Tensor forward(Tensor x)
    {
        if (Enabled) return base_layer.forward(x);
        return nn.functional.linear(x, _initial, base_layer.bias);
    }

    public override Tensor DeltaWeight()
    {
        using var _ = no_grad();
        return BaseWeight - _initial;
    }

    public override void Merge() { }

    /// <summary>Full fine-tuning has nothing to fold in: W already is the weight.</summary>
    public override void MergeIntoBase() { }

    public override void Unmerge() =>
        throw new InvalidOperationException("full fine-tuning cannot be unmerged: W is the trained weight itself (DeltaWeight() gives W − W₀)");

    /// <summary>Makes the current weight the new W₀ (ΔW becomes zero).</summary>
    public override void ResetAdapter()
    {
        using var _ = no_grad();
        _initial.copy_(BaseWeight);
    }

    public override IEnumerable<(string Name, Parameter Parameter)> AdapterParameters()
    {
        yield return ("base_layer.weight", BaseWeight);
        if (base_layer.bias is not null) yield return ("base_layer.bias", base_layer.bias);
    }
}

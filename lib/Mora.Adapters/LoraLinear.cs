using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Adapters;

/// <summary>LoRA: ΔW = s·B A with A ∈ ℝ^{r×k} (Kaiming-uniform, a = √5, as nn.Linear and PEFT), B ∈ ℝ^{d×r} (zero),
/// s = α/r, or α/√r with rsLoRA (Kalajdzievski 2023). (d + k)·r trainable parameters.</summary>
public class LoraLinear : AdaptedLinear
{
    protected readonly Linear lora_A;
    protected readonly Linear lora_B;

    public int R { get; }
    public double Alpha { get; }
    public bool UseRsLora { get; }
    public double DropoutP { get; }
    /// <summary>s: α/r, or α/√r with rsLoRA.</summary>
    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(R) : Alpha / R;
    public override AdapterMethod Method => AdapterMethod.Lora;

    /// <summary>How the adapter started (PEFT's init_lora_weights).</summary>
    public LoraInit Init { get; }

    public LoraLinear(Linear baseLayer, int r, double alpha, bool useRsLora = false, double dropout = 0, LoraInit init = LoraInit.Default)
        : this(baseLayer, r, alpha, useRsLora, dropout, init, nameof(LoraLinear)) { }

    protected LoraLinear(Linear baseLayer, int r, double alpha, bool useRsLora, double dropout, LoraInit init, string name)
        : base(name, baseLayer)
    {
        if (r <= 0) throw new ArgumentException($"LoRA rank must be positive, got {r}", nameof(r));
        if (r > Math.Min(InFeatures, OutFeatures))
            throw new ArgumentException($"LoRA rank {r} is larger than the {OutFeatures}×{InFeatures} layer allows (min(d, k) = {Math.Min(InFeatures, OutFeatures)})", nameof(r));
        if (alpha <= 0 || double.IsNaN(alpha)) throw new ArgumentException($"lora_alpha must be positive, got {alpha}", nameof(alpha));
        if (!Enum.IsDefined(init)) throw new ArgumentException($"unknown LoRA initialisation {(int)init}", nameof(init));
        (R, Alpha, UseRsLora, DropoutP, Init) = (r, alpha, useRsLora, dropout, init);
        lora_A = nn.Linear(InFeatures, r, hasBias: false, device: WeightDevice, dtype: WeightType);
        lora_B = nn.Linear(r, OutFeatures, hasBias: false, device: WeightDevice, dtype: WeightType);
        FreezeBase();
        if (init == LoraInit.None)
        {
            // PEFT's init_lora_weights=False skips reset_lora_parameters: A and B keep nn.Linear's initialisation.
            using var _ = no_grad();
            nn.init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
            nn.init.kaiming_uniform_(lora_B.weight!, a: Math.Sqrt(5));
        }
        else ResetAdapter();
        RegisterComponents();
    }

    public Parameter A => lora_A.weight!;
    public Parameter B => lora_B.weight!;

    /// <summary>A fresh start with ΔW = 0 (PEFT's <c>reset_lora_parameters</c>): A Kaiming-uniform (a = √5), or
    /// N(0, (1/r)²) for <see cref="LoraInit.Gaussian"/>; B = 0. (ReLoRA restarts this way whatever <see cref="Init"/> was.)</summary>
    public override void ResetAdapter()
    {
        using var _ = no_grad();
        if (Init == LoraInit.Gaussian) nn.init.normal_(lora_A.weight!, 0, 1.0 / R);
        else nn.init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
        lora_B.weight!.zero_();
    }

    protected override Tensor AdapterForward(Tensor x)
    {
        using var xd = ApplyDropout(x, DropoutP);
        return LowRank(xd);
    }

    /// <summary>s·x Aᵀ Bᵀ of an input already dropped out.</summary>
    protected Tensor LowRank(Tensor xd)
    {
        using var a = lora_A.forward(xd);
        using var b = lora_B.forward(a);
        return b.mul(KeptScalars.Of(Scaling));
    }

    /// <summary>s·B A.</summary>
    public override Tensor DeltaWeight()
    {
        using var ba = B.matmul(A);
        return ba.mul(KeptScalars.Of(Scaling));
    }

    public override IEnumerable<(string Name, Parameter Parameter)> AdapterParameters()
    {
        yield return ("lora_A.weight", A);
        yield return ("lora_B.weight", B);
    }
}

/// <summary>
/// DoRA (Liu et al. 2024): W' = m ∘ V / ‖V‖ with V = W₀ + s·B A and ‖·‖ the norm of each output row (PEFT's layout),
/// m ∈ ℝᵈ initialised to ‖W₀‖. As in the paper (§4.3) and PEFT, the norm is detached in the forward:
/// y = (m/‖V‖) ∘ (x W₀ᵀ + s·x Aᵀ Bᵀ) + b; while training with dropout, PEFT's form (see <see cref="forward"/>).
/// ΔW = W' − W₀. (d + k)·r + d trainable parameters.
/// </summary>
public sealed class DoraLinear : LoraLinear
{
    readonly Parameter lora_magnitude_vector;
    Tensor? _mergedScale;

    public override AdapterMethod Method => AdapterMethod.Dora;

    public DoraLinear(Linear baseLayer, int r, double alpha, bool useRsLora = false, double dropout = 0, LoraInit init = LoraInit.Default)
        : base(baseLayer, r, alpha, useRsLora, dropout, init, nameof(DoraLinear))
    {
        // m = ‖W₀ + s·B A‖ (PEFT's dora_init): ‖W₀‖ when B starts at zero.
        using (no_grad())
        {
            using var v = Directional();
            lora_magnitude_vector = new Parameter(RowNorm(v).detach().clone(), requires_grad: true);
        }
        // LoraLinear's constructor already registered the components, so a second RegisterComponents() is a no-op.
        register_parameter(nameof(lora_magnitude_vector), lora_magnitude_vector);
    }

    public Parameter Magnitude => lora_magnitude_vector;

    static Tensor RowNorm(Tensor w) => linalg.vector_norm(w, 2, [1L], keepdim: false);

    /// <summary>V = W₀ + s·B A (W₀ being the unmerged base weight).</summary>
    Tensor Directional()
    {
        using var lora = base.DeltaWeight();
        return BaseWeight + lora;
    }

    public override void ResetAdapter()
    {
        base.ResetAdapter();
        if (lora_magnitude_vector is null) return;     // called from the base constructor before m exists
        using var _ = no_grad();
        using var norm = RowNorm(BaseWeight);
        lora_magnitude_vector.copy_(norm);
    }

    public override Tensor forward(Tensor x)
    {
        if (!Enabled || Merged) return base_layer.forward(x);
        if (x.shape[^1] != InFeatures)
            throw new ArgumentException($"DoraLinear: input's last dimension must be {InFeatures}, got shape [{string.Join(", ", x.shape)}]", nameof(x));
        using var scope = NewDisposeScope();
        Tensor norm;
        using (no_grad()) { using var v = Directional(); norm = RowNorm(v); }
        var scale = lora_magnitude_vector / norm;                          // gradient flows to m only (norm detached)
        var baseOut = nn.functional.linear(x, BaseWeight);
        var xd = ApplyDropout(x, DropoutP);
        var lora = LowRank(xd);
        // PEFT (DoraLinearLayer.forward, 0.10–0.13): y = W₀x + b + (m/‖V‖ − 1)·W₀·drop(x) + (m/‖V‖)·s·B A drop(x).
        // Without dropout (p = 0, or in eval) that is (m/‖V‖)·(W₀x + s·B A x) + b, the paper's form.
        var y = DropoutP > 0 && training
            ? baseOut.add(scale.sub(KeptScalars.One) * nn.functional.linear(xd, BaseWeight), KeptScalars.One).add(scale * lora, KeptScalars.One)
            : scale * baseOut.add(lora, KeptScalars.One);
        if (base_layer.bias is not null) y = y.add(base_layer.bias, KeptScalars.One);
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>W' − W₀ = (m/‖V‖) ∘ V − W₀.</summary>
    public override Tensor DeltaWeight()
    {
        using var scope = NewDisposeScope();
        var w0 = Merged ? Unmerged() : BaseWeight.alias();
        var v = w0 + base.DeltaWeight();
        var merged = (lora_magnitude_vector / RowNorm(v)).unsqueeze(1) * v;
        return (merged - w0).MoveToOuterDisposeScope();
    }

    Tensor Unmerged()
    {
        using var lora = base.DeltaWeight();
        using var v = BaseWeight / _mergedScale!.unsqueeze(1);
        return v - lora;
    }

    /// <summary>W ← (m/‖V‖) ∘ V; the scale is kept so <see cref="Unmerge"/> can invert it.</summary>
    public override void Merge()
    {
        if (Merged) return;
        using var _ = no_grad();
        using var v = Directional();
        _mergedScale?.Dispose();
        _mergedScale = lora_magnitude_vector.detach() / RowNorm(v);
        using var merged = _mergedScale.unsqueeze(1) * v;
        BaseWeight.copy_(merged);
        Merged = true;
    }

    public override void Unmerge()
    {
        if (!Merged) return;
        using var _ = no_grad();
        using var w0 = Unmerged();
        BaseWeight.copy_(w0);
        _mergedScale!.Dispose();
        _mergedScale = null;
        Merged = false;
    }

    public override void MergeIntoBase()
    {
        base.MergeIntoBase();        // merge, then ResetAdapter: m = ‖W₀ + ΔW‖ for the new W₀, B = 0
        _mergedScale?.Dispose();
        _mergedScale = null;
    }

    public override IEnumerable<(string Name, Parameter Parameter)> AdapterParameters()
    {
        foreach (var p in base.AdapterParameters()) yield return p;
        yield return ("lora_magnitude_vector", lora_magnitude_vector);    // PEFT's name in the state dict and in its files
    }
}

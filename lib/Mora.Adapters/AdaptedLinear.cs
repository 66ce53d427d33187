using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Adapters;

/// <summary>
/// A frozen linear layer W₀ plus a trainable update ΔW: y = x (W₀ + ΔW)ᵀ + b. Every method gives the same four
/// things: <see cref="DeltaWeight"/> (the update written out, d × k), <see cref="Merge"/> / <see cref="Unmerge"/>
/// (fold ΔW into W₀ and back), <see cref="Enabled"/> (off = the base layer alone), and <see cref="ResetAdapter"/>
/// (re-initialise, for ReLoRA/ReMoRA). Parameter names follow PEFT: <c>base_layer.weight</c>, <c>lora_A.weight</c>, …
/// </summary>
public abstract class AdaptedLinear : nn.Module<Tensor, Tensor>
{
    /// <summary>The wrapped layer; its weight and bias are frozen (except for full fine-tuning).</summary>
    protected readonly Linear base_layer;

    public int InFeatures { get; }
    public int OutFeatures { get; }
    /// <summary>When false the layer computes the base layer alone (and the adapter gets no gradient).</summary>
    public bool Enabled { get; set; } = true;
    /// <summary>True after <see cref="Merge"/>: W₀ holds W₀ + ΔW and the forward is the base layer alone.</summary>
    public bool Merged { get; protected set; }
    public abstract AdapterMethod Method { get; }

    protected AdaptedLinear(string name, Linear baseLayer) : base(name)
    {
        base_layer = baseLayer ?? throw new ArgumentNullException(nameof(baseLayer));
        OutFeatures = (int)baseLayer.weight!.shape[0];
        InFeatures = (int)baseLayer.weight!.shape[1];
    }

    public Linear Base => base_layer;
    public Parameter BaseWeight => base_layer.weight!;
    protected Device WeightDevice => base_layer.weight!.device;
    protected ScalarType WeightType => base_layer.weight!.dtype;

    protected void FreezeBase()
    {
        base_layer.weight!.requires_grad = false;
        if (base_layer.bias is not null) base_layer.bias.requires_grad = false;
    }

    /// <summary>ΔW x (already scaled) for the additive methods.</summary>
    protected abstract Tensor AdapterForward(Tensor x);

    /// <summary>The update ΔW as a d × k tensor (a new tensor; the caller disposes it).</summary>
    public abstract Tensor DeltaWeight();

    /// <summary>The adapter's own trainable parameters, with their PEFT-style names relative to this layer.</summary>
    public abstract IEnumerable<(string Name, Parameter Parameter)> AdapterParameters();

    /// <summary>Re-initialises the adapter in place (same Parameter objects, so an optimizer keeps pointing at them).</summary>
    public abstract void ResetAdapter();

    public override Tensor forward(Tensor x)
    {
        if (x.shape[^1] != InFeatures)
            throw new ArgumentException($"{GetType().Name}: input's last dimension must be {InFeatures}, got shape [{string.Join(", ", x.shape)}]", nameof(x));
        var y = base_layer.forward(x);
        if (!Enabled || Merged) return y;
        using var delta = AdapterForward(x);
        using (y) return y.add(delta, KeptScalars.One);     // a kept alpha: a temporary one can be finalised mid-call (KeptScalars)
    }

    /// <summary>W₀ ← W₀ + ΔW. Idempotent.</summary>
    public virtual void Merge()
    {
        if (Merged) return;
        using var _ = no_grad();
        using var delta = DeltaWeight();
        BaseWeight.add_(delta);
        Merged = true;
    }

    /// <summary>W₀ ← W₀ − ΔW. Idempotent.</summary>
    public virtual void Unmerge()
    {
        if (!Merged) return;
        using var _ = no_grad();
        using var delta = DeltaWeight();
        BaseWeight.sub_(delta);
        Merged = false;
    }

    /// <summary>ReLoRA/ReMoRA step: W₀ ← W₀ + ΔW for good, then the adapter restarts from its initial state
    /// (ΔW = 0), so the layer computes the same function before and after.</summary>
    public virtual void MergeIntoBase()
    {
        if (Merged) Unmerge();
        Merge();
        Merged = false;
        ResetAdapter();
    }

    /// <summary>Trainable parameters of the adapter (elements).</summary>
    public long AdapterParameterCount => AdapterParameters().Sum(p => p.Parameter.numel());

    protected Tensor ApplyDropout(Tensor x, double p) => p > 0 && training ? nn.functional.dropout(x, p, training) : x.alias();
}

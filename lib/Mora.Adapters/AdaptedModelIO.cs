using Mora.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Adapters;

/// <summary>
/// Model checkpoints of a model with adapters (<see cref="Peft.Inject"/>), in <see cref="ModelIO"/>'s Hugging Face
/// folder format: its base weights under their plain names (a wrapped layer's <c>base_layer.weight</c> as
/// <c>….q_proj.weight</c>, the adapters' own parameters left out, a ΔW already merged in taken out again), or with every
/// enabled adapter's ΔW folded in (<c>mergeAdapters</c>: PEFT's <c>merge_and_unload()</c> then
/// <c>save_pretrained</c>). Loading base weights into such a model keeps its adapters. A model without adapters gives the
/// same files as <see cref="ModelIO.Save(LlamaForCausalLM, string, long)"/>.
/// </summary>
public static class AdaptedModelIO
{
    /// <summary>The model's base weights under their Hugging Face names: adapters are left out (or folded in with
    /// <paramref name="mergeAdapters"/>), <c>base_layer</c> is dropped from wrapped names, a tied head is not repeated.
    /// The caller disposes the tensors.</summary>
    public static List<(string Name, Tensor Tensor)> BaseStateDict(LlamaForCausalLM model, bool mergeAdapters = false)
    {
        var result = new List<(string, Tensor)>();
        using var _ = no_grad();
        foreach (var (hfName, p, layer) in BaseParameters(model))
        {
            bool isWeight = layer is not null and not FullLinear && hfName.EndsWith(".weight", StringComparison.Ordinal);
            bool add = isWeight && mergeAdapters && !layer!.Merged && layer.Enabled;       // fold ΔW in
            bool subtract = isWeight && !mergeAdapters && layer!.Merged;                   // already folded: take it out
            if (add || subtract)
            {
                using var delta = layer!.DeltaWeight();
                using var typed = delta.to(p.dtype);
                result.Add((hfName, add ? p + typed : p - typed));
            }
            else result.Add((hfName, p.detach().clone()));
        }
        return result;
    }

    /// <summary>Writes the base model (or, with <paramref name="mergeAdapters"/>, the merged one) as
    /// <see cref="ModelIO.Save(LlamaForCausalLM, string, long)"/> does: the files transformers' <c>from_pretrained</c> reads.</summary>
    public static void Save(LlamaForCausalLM model, string directory, bool mergeAdapters = false, long maxShardBytes = ModelIO.DefaultMaxShardBytes)
    {
        if (maxShardBytes <= 0) throw new ArgumentException($"the largest shard must be positive, got {maxShardBytes}", nameof(maxShardBytes));
        var tensors = BaseStateDict(model, mergeAdapters);
        try { ModelIO.Save(model, tensors, directory, maxShardBytes); }
        finally { foreach (var (_, t) in tensors) t.Dispose(); }
    }

    /// <summary>Copies the weights of a Hugging Face folder into the model's base layers; its adapters are kept and
    /// untouched (checks as <see cref="ModelIO.LoadWeights(LlamaForCausalLM, string, bool)"/>).</summary>
    public static void LoadWeights(LlamaForCausalLM model, string directory, bool allowNonFinite = false) =>
        ModelIO.LoadWeights(model, BaseParameters(model).Select(t => (t.Name, t.Parameter)).ToList(), directory, allowNonFinite);

    /// <summary>The model's base parameters under their Hugging Face names: a wrapped layer's <c>base_layer.weight</c>
    /// (and <c>.bias</c>) under the plain name (with the adapter that wraps it), the adapters' own parameters left out.</summary>
    static List<(string Name, Parameter Parameter, AdaptedLinear? Layer)> BaseParameters(LlamaForCausalLM model)
    {
        var adapters = Peft.Adapters(model).ToDictionary(a => a.Name, a => a.Layer);
        var result = new List<(string, Parameter, AdaptedLinear?)>();
        foreach (var (name, p) in model.named_parameters())
        {
            int at = name.IndexOf(".base_layer.", StringComparison.Ordinal);
            if (at >= 0) result.Add((name[..at] + name[(at + ".base_layer".Length)..], p, adapters[name[..at]]));
            else if (!adapters.Keys.Any(a => name.StartsWith(a + ".", StringComparison.Ordinal))) result.Add((name, p, null));   // not lora_A, lora_B, magnitude
        }
        return result;
    }
}

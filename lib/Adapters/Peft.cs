using System.Reflection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Adapters;

/// <summary>
/// Puts adapters into any TorchSharp module tree, as PEFT's <c>get_peft_model</c> and the "LLMs from scratch"
/// replace-linear helper do: every <see cref="Linear"/> whose path matches <see cref="AdapterConfig.TargetModules"/> is
/// replaced by an <see cref="AdaptedLinear"/> wrapping it, the rest of the model is frozen (except for full
/// fine-tuning), and whole-model merge / unmerge / enable / count / ReMoRA act on the adapters found.
/// A parent may hold the linear in a field typed <c>Module&lt;Tensor, Tensor&gt;</c> (or <c>IModule&lt;…&gt;</c>), in a
/// <c>ModuleList&lt;Module&lt;Tensor, Tensor&gt;&gt;</c>, or in a <c>Sequential</c>; TorchSharp's <c>Linear</c> class is
/// sealed, so a field typed <c>Linear</c> cannot hold an adapter and is reported as an error.
/// </summary>
public static class Peft
{
    /// <summary>The adapted layers injected, by module path.</summary>
    public static IReadOnlyList<(string Name, AdaptedLinear Layer)> Inject(nn.Module model, AdapterConfig config)
    {
        ArgumentNullException.ThrowIfNull(model);
        config.Validate();
        if (Adapters(model).Count > 0)
            throw new InvalidOperationException("the model already has adapters; build a fresh model to inject another set");

        var linears = model.named_modules().Where(m => m.module is Linear).Select(m => (m.name, linear: (Linear)m.module)).ToList();
        var targets = linears.Where(l => Matches(l.name, config)).ToList();
        if (targets.Count == 0)
            throw new ArgumentException(
                $"target_modules [{string.Join(", ", config.TargetModules)}] match no linear layer; the model's linear layers are: " +
                (linears.Count == 0 ? "(none)" : string.Join(", ", linears.Select(l => l.name))), nameof(config.TargetModules));

        if (config.Method == AdapterMethod.Full)
            foreach (var p in model.parameters()) p.requires_grad = true;
        else
            foreach (var p in model.parameters()) p.requires_grad = false;

        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var injected = new List<(string, AdaptedLinear)>();
        foreach (var (name, linear) in targets)
        {
            AdaptedLinear layer = config.Method switch
            {
                AdapterMethod.Lora => new LoraLinear(linear, config.R, config.Alpha, config.UseRsLora, config.Dropout),
                AdapterMethod.Dora => new DoraLinear(linear, config.R, config.Alpha, config.UseRsLora, config.Dropout),
                AdapterMethod.Mora => new MoraLinear(linear, config.R, config.MoraType, config.RHatRule, config.Dropout),
                _ => new FullLinear(linear),
            };
            int dot = name.LastIndexOf('.');
            var parent = dot < 0 ? model : modules[name[..dot]];
            Replace(parent, dot < 0 ? name : name[(dot + 1)..], linear, layer, name);
            injected.Add((name, layer));
        }
        return injected;
    }

    /// <summary>Whether a module path is targeted: an exact path, a match of its last dotted parts, or all-linear.</summary>
    public static bool Matches(string path, AdapterConfig config)
    {
        string last = path[(path.LastIndexOf('.') + 1)..];
        if (config.TargetModules.Count == 1 && config.TargetModules[0] == AdapterConfig.AllLinear)
            return !config.ExcludeModules.Any(e => path == e || last == e || path.EndsWith("." + e, StringComparison.Ordinal));
        return config.TargetModules.Any(t => path == t || path.EndsWith("." + t, StringComparison.Ordinal));
    }

    static void Replace(nn.Module parent, string child, Linear old, AdaptedLinear replacement, string path)
    {
        if (parent is ModuleList<nn.Module<Tensor, Tensor>> list && int.TryParse(child, out int index))
        {
            list[index] = replacement;      // the list's setter updates its registration too
            return;
        }
        bool replaced = false;
        if (parent is Sequential)
        {
            var mods = (List<nn.IModule<Tensor, Tensor>>)typeof(Sequential).GetField("_modules", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(parent)!;
            int at = mods.FindIndex(m => ReferenceEquals(m, old));
            if (at >= 0) { mods[at] = replacement; replaced = true; }
        }
        for (var type = parent.GetType(); type is not null && type != typeof(nn.Module); type = type.BaseType)
        {
            foreach (var field in type.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.DeclaredOnly))
            {
                if (!ReferenceEquals(field.GetValue(parent), old)) continue;
                if (!field.FieldType.IsAssignableFrom(replacement.GetType()))
                    throw new ArgumentException(
                        $"{path}: field '{field.Name}' of {type.Name} is typed {field.FieldType.Name}, which cannot hold an adapter " +
                        "(TorchSharp's Linear is sealed); declare it as Module<Tensor, Tensor>", nameof(parent));
                field.SetValue(parent, replacement);
                replaced = true;
            }
        }
        if (!replaced)
            throw new ArgumentException($"{path}: could not find where {parent.GetType().Name} holds this layer (a field, a ModuleList or a Sequential)", nameof(parent));
        var registered = (TorchSharp.Utils.OrderedDict<string, nn.Module>)typeof(nn.Module)
            .GetField("_internal_submodules", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(parent)!;
        registered[child] = replacement;    // keeps the order of registration, so state_dict order is unchanged
    }

    /// <summary>Every adapted layer in the model, by path.</summary>
    public static IReadOnlyList<(string Name, AdaptedLinear Layer)> Adapters(nn.Module model) =>
        model.named_modules().Where(m => m.module is AdaptedLinear).Select(m => (m.name, (AdaptedLinear)m.module)).ToList();

    public static void MergeAll(nn.Module model) { foreach (var (_, a) in Adapters(model)) a.Merge(); }
    public static void UnmergeAll(nn.Module model) { foreach (var (_, a) in Adapters(model)) a.Unmerge(); }
    public static void SetEnabled(nn.Module model, bool enabled) { foreach (var (_, a) in Adapters(model)) a.Enabled = enabled; }

    /// <summary>Trainable and total parameter elements, each tensor counted once even where modules share it (tied
    /// embeddings, for instance).</summary>
    public static (long Trainable, long Total) CountParameters(nn.Module model)
    {
        var seen = new HashSet<(IntPtr, long, string)>();
        long trainable = 0, total = 0;
        foreach (var p in model.parameters())
        {
            if (!seen.Add(Identity(p))) continue;
            total += p.numel();
            if (p.requires_grad) trainable += p.numel();
        }
        return (trainable, total);
    }

    /// <summary>A per-layer table: method, shape, r (and r̂ for MoRA), trainable parameters, and the LoRA budget at the
    /// same r for comparison; then the model's trainable / total parameters.</summary>
    public static string Describe(nn.Module model)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"{"module",-32} {"method",-6} {"d x k",-11} {"r",4} {"r̂",5} {"design",-22} {"params",10} {"LoRA (d+k)r",12}");
        foreach (var (name, a) in Adapters(model))
        {
            int r = a switch { LoraLinear l => l.R, MoraLinear m => m.LoraRank, _ => 0 };
            string rHat = a is MoraLinear mm ? mm.RHat.ToString() : "-";
            string design = a is MoraLinear md ? $"{md.Type} ({(int)md.Type})" : "-";
            string lora = r > 0 ? RHat.LoraParameters(a.OutFeatures, a.InFeatures, r).ToString("N0") : "-";
            sb.AppendLine($"{name,-32} {a.Method,-6} {$"{a.OutFeatures}x{a.InFeatures}",-11} {(r > 0 ? r.ToString() : "-"),4} {rHat,5} {design,-22} {a.AdapterParameterCount,10:N0} {lora,12}");
        }
        var (trainable, total) = CountParameters(model);
        sb.Append($"trainable {trainable:N0} of {total:N0} parameters ({100.0 * trainable / Math.Max(1, total):F3} %)");
        return sb.ToString();
    }

    /// <summary>Where a tensor's elements live: TorchSharp gives two modules that tie a weight two different wrappers
    /// of one storage, so the storage pointer, offset and shape identify it, not the wrapper.</summary>
    static (IntPtr, long, string) Identity(Tensor p)
    {
        IntPtr ptr;
        switch (p.dtype)
        {
            case ScalarType.Float32: ptr = p.storage<float>().data_ptr(); break;
            case ScalarType.Float64: ptr = p.storage<double>().data_ptr(); break;
            case ScalarType.Float16 or ScalarType.BFloat16 when p.device_type == DeviceType.CPU:
                // TorchSharp's Storage<T> has no 16-bit float type; on CPU the tensor's byte span starts at its data.
                ptr = AddressOf(p) - (nint)(p.storage_offset() * p.ElementSize);
                break;
            default: ptr = p.Handle; break;   // (16-bit on CUDA: tied wrappers would be counted twice)
        }
        return (ptr, p.storage_offset(), string.Join(",", p.shape));
    }

    static unsafe nint AddressOf(Tensor p)
    {
        fixed (byte* at = p.bytes) return (nint)at;
    }

    /// <summary>
    /// ReLoRA / ReMoRA (paper §3.2): W₀ ← W₀ + ΔW, then the adapter starts again from its initial state (MoRA: M = 0;
    /// LoRA: new A, B = 0; DoRA: m = ‖W₀‖), keeping the same Parameter objects. For MoRA, <paramref name="nextType"/>
    /// switches the design for the next stretch (the paper alternates the sharing scheme; r̂ is kept). The caller
    /// should reset the optimizer's state for the adapter parameters (ReLoRA does), since their meaning changed.
    /// </summary>
    public static void MergeAndReinit(nn.Module model, MoraType? nextType = null)
    {
        foreach (var (_, a) in Adapters(model))
        {
            a.MergeIntoBase();
            if (nextType is { } t && a is MoraLinear m) m.SwitchType(t);
        }
    }
}

/// <summary>When to merge and re-initialise during training (ReLoRA/ReMoRA), and which MoRA design each stretch uses.</summary>
/// <param name="Every">merge every this many optimizer steps (&gt; 0)</param>
/// <param name="Types">MoRA designs to cycle through, one per stretch (empty: keep the design)</param>
public sealed record ReMergeSchedule(int Every, IReadOnlyList<MoraType> Types)
{
    /// <summary>The paper's alternation between the two sharing schemes (reference types 1 and 2, stride vs adjacent groups).</summary>
    public static ReMergeSchedule Alternating(int every) => new(every, [MoraType.Sharing, MoraType.SharingAdjacent]);

    /// <summary>Call after optimizer step <paramref name="step"/> (1-based); returns true when it merged (reset the
    /// optimizer state then).</summary>
    public bool AfterStep(nn.Module model, long step)
    {
        if (Every <= 0) throw new ArgumentException($"merge interval must be positive, got {Every}", nameof(Every));
        if (step <= 0 || step % Every != 0) return false;
        Peft.MergeAndReinit(model, TypeAfter(step));
        return true;
    }

    /// <summary>The MoRA design in use after step <paramref name="step"/> (null: the layers' own, before the first merge
    /// or with no <see cref="Types"/>).</summary>
    public MoraType? TypeAfter(long step) => Types.Count == 0 || step < Every ? null : Types[(int)(step / Every % Types.Count)];

    /// <summary>On resuming at step <paramref name="step"/>: puts the MoRA layers in the design that stretch uses
    /// (the merged weights themselves come from the checkpoint).</summary>
    public void Restore(nn.Module model, long step)
    {
        if (TypeAfter(step) is not { } type) return;
        foreach (var (_, a) in Peft.Adapters(model))
            if (a is MoraLinear m && m.Type != type) m.SwitchType(type);
    }
}

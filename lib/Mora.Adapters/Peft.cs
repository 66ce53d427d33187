using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;
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
    /// <summary>The adapters <see cref="Inject"/> would create: which module, its shape, and its own r and α.</summary>
    public sealed record PlannedAdapter(string Name, int OutFeatures, int InFeatures, int R, double Alpha);

    /// <summary>
    /// Which modules <paramref name="config"/> adapts in <paramref name="model"/>, and with which r and α, decided as
    /// PEFT decides it (PEFT 0.10–0.19 <c>check_target_module_exists</c>, <c>_maybe_include_all_linear_layers</c> and
    /// <c>LoraModel._create_and_replace</c>), without allocating anything:
    /// <list type="bullet">
    /// <item>every module path is tried; one excluded by <c>exclude_modules</c> (a regex: full match; a list: the path or
    /// its end after a '.') is skipped;</item>
    /// <item>a regex <c>target_modules</c> must match the whole path; a list entry matches the path itself, or its end
    /// after a '.', and only in that second case does <c>layers_to_transform</c> filter: the layer index is the number
    /// after <c>.{layers_pattern}.</c> (any name when the pattern is empty), the last such in the path;</item>
    /// <item>"all-linear" is the list of the last names of all linear layers except the output head;</item>
    /// <item>a matched module that is not a linear layer is an error (PEFT would adapt an embedding, the kit cannot);</item>
    /// <item>r and α: a <c>rank_pattern</c> / <c>alpha_pattern</c> key applies when the path matches the regex
    /// <c>.*\.{key}$</c> (PEFT ≤ 0.14; ≥ 0.15: <c>(.*\.)?({key})$</c>), the first such key in the file's order; failing that, a
    /// key equal to the path. PEFT ≤ 0.13 and the MoRA fork look for one key over rank_pattern then alpha_pattern and
    /// use it for both; later versions look in each separately. Where these versions give a module different values, the
    /// config is refused (<see cref="ArgumentException"/> naming RankPattern or AlphaPattern) instead of choosing one.</item>
    /// </list>
    /// </summary>
    /// <exception cref="ArgumentException">no module matches, a non-linear module matches, a pattern cannot be read or is
    /// ambiguous across PEFT versions (ParamName: the config property)</exception>
    public static IReadOnlyList<PlannedAdapter> Plan(nn.Module model, AdapterConfig config)
    {
        ArgumentNullException.ThrowIfNull(model);
        config.Validate();
        var modules = Candidates(model);
        var linears = modules.Where(m => m.Shape is not null).ToList();
        IReadOnlyList<string>? names = config.TargetModulesRegex is not null ? null
            : config.IsAllLinear
                ? linears.Select(m => Last(m.Path)).Where(n => !AdapterConfig.HeadNames.Contains(n)).Distinct().ToList()
                : config.TargetModules;
        var plan = new List<PlannedAdapter>();
        foreach (var (path, module, shape) in modules)
        {
            bool targeted;
            try { targeted = !Excluded(path, config) && Targeted(path, config, names); }
            catch (RegexMatchTimeoutException e)
            { throw new ArgumentException($"a module pattern took too long to match '{path}' ({e.Pattern})", nameof(config.TargetModules), e); }
            if (!targeted) continue;
            if (shape is not { } s)
                throw new ArgumentException(
                    $"target_modules match {path}, a {module.GetType().Name}: only linear layers can be adapted (PEFT would adapt it with another layer type)",
                    nameof(config.TargetModules));
            var (r, alpha) = RankAndAlpha(path, config);
            plan.Add(new PlannedAdapter(path, s.Out, s.In, r, alpha));
        }
        if (plan.Count == 0)
            throw new ArgumentException(
                $"target_modules {(config.TargetModulesRegex is { } rx ? $"'{rx}' (a regex)" : $"[{string.Join(", ", config.TargetModules)}]")}" +
                $"{(config.LayersToTransform is { Count: > 0 } l ? $" in layers [{string.Join(", ", l)}]" : "")} match no linear layer; the model's linear layers are: " +
                (linears.Count == 0 ? "(none)" : string.Join(", ", linears.Select(l => l.Path))), nameof(config.TargetModules));
        return plan;
    }

    /// <summary>Every module by path with its shape (d, k) when it is a linear layer; an adapted layer counts as the
    /// linear layer it wraps and its own parts (base_layer, lora_A, …) are not listed.</summary>
    static List<(string Path, nn.Module Module, (int Out, int In)? Shape)> Candidates(nn.Module model)
    {
        var result = new List<(string, nn.Module, (int, int)?)>();
        var adapted = new List<string>();
        foreach (var (name, module) in model.named_modules())
        {
            if (adapted.Any(a => name.StartsWith(a + ".", StringComparison.Ordinal))) continue;
            (int, int)? shape = module switch
            {
                AdaptedLinear a => (a.OutFeatures, a.InFeatures),
                Linear l => ((int)l.weight!.shape[0], (int)l.weight!.shape[1]),
                _ => null,
            };
            if (module is AdaptedLinear) adapted.Add(name);
            result.Add((name, module, shape));
        }
        return result;
    }

    static string Last(string path) => path[(path.LastIndexOf('.') + 1)..];

    static bool Excluded(string path, AdapterConfig config) =>
        config.ExcludeModulesRegex is { } rx && PythonRegex.FullMatch(rx, path)
        || config.ExcludeModules.Any(e => path == e || path.EndsWith("." + e, StringComparison.Ordinal));

    static bool Targeted(string path, AdapterConfig config, IReadOnlyList<string>? names)
    {
        if (names is null) return PythonRegex.FullMatch(config.TargetModulesRegex!, path);
        if (names.Contains(path)) return true;                  // named directly: no layer filter (as in PEFT)
        if (!names.Any(t => path.EndsWith("." + t, StringComparison.Ordinal))) return false;
        if (config.LayersToTransform is not { Count: > 0 } layers) return true;
        var patterns = config.LayersPattern is { Count: > 0 } p ? p : null;
        Match? m = null;
        if (patterns is null) m = PythonRegex.MatchAtStart(@".*\.[^.]*\.(\d+)\.", path);
        else
            foreach (var pattern in patterns)
                if ((m = PythonRegex.MatchAtStart(@".*\." + pattern + @"\.(\d+)\.", path)).Success) break;
        if (m is null || !m.Success) return false;
        if (!int.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int index))
            throw new ArgumentException($"layers_pattern: the layer index of '{path}' reads '{m.Groups[1].Value}', not a number", nameof(config.LayersPattern));
        return layers.Contains(index);
    }

    /// <summary>The module's r and α under rank_pattern / alpha_pattern, checked to be the same in every PEFT version.</summary>
    static (int R, double Alpha) RankAndAlpha(string path, AdapterConfig config)
    {
        if (config.RankPattern.Count == 0 && config.AlphaPattern.Count == 0) return (config.R, config.Alpha);
        var ranks = config.RankPattern;
        var alphas = config.AlphaPattern;
        bool Old(string key) => PythonRegex.MatchAtStart(@".*\." + key + "$", path).Success;          // PEFT ≤ 0.14
        bool New(string key) => PythonRegex.MatchAtStart(@"(.*\.)?(" + key + ")$", path).Success;     // PEFT ≥ 0.15
        string FirstKey(IEnumerable<string> keys, Func<string, bool> matches) => keys.FirstOrDefault(matches) ?? path;
        int R(string key) => ranks.FirstOrDefault(p => p.Key == key) is { Key: not null } hit ? hit.Value : config.R;
        double A(string key) => alphas.FirstOrDefault(p => p.Key == key) is { Key: not null } hit ? hit.Value : config.Alpha;
        try
        {
            string shared = FirstKey(ranks.Select(p => p.Key).Concat(alphas.Select(p => p.Key)), Old);      // ≤ 0.13, the fork
            var v013 = (R(shared), A(shared));
            var v014 = (R(FirstKey(ranks.Select(p => p.Key), Old)), A(FirstKey(alphas.Select(p => p.Key), Old)));
            var v015 = (R(FirstKey(ranks.Select(p => p.Key), New)), A(FirstKey(alphas.Select(p => p.Key), New)));
            if (v013 != v014 || v014 != v015)
            {
                string field = v013.Item1 != v014.Item1 || v014.Item1 != v015.Item1 ? nameof(config.RankPattern) : nameof(config.AlphaPattern);
                throw new ArgumentException(
                    $"{(field == nameof(config.RankPattern) ? "rank_pattern" : "alpha_pattern")}: PEFT versions disagree on module {path}: " +
                    $"(r, α) = {v013} in PEFT ≤ 0.13 and the MoRA fork, {v014} in 0.14, {v015} in ≥ 0.15; " +
                    "write keys that only one key of rank_pattern and alpha_pattern matches, with a '.' before the module name", field);
            }
            return v013;
        }
        catch (RegexMatchTimeoutException e)
        { throw new ArgumentException($"a rank_pattern / alpha_pattern key took too long to match '{path}' ({e.Pattern})", nameof(config.RankPattern), e); }
    }

    /// <summary>The adapted layers injected, by module path (the modules and r, α of <see cref="Plan"/>).</summary>
    public static IReadOnlyList<(string Name, AdaptedLinear Layer)> Inject(nn.Module model, AdapterConfig config)
    {
        ArgumentNullException.ThrowIfNull(model);
        config.Validate();
        if (Adapters(model).Count > 0)
            throw new InvalidOperationException("the model already has adapters; build a fresh model to inject another set");
        var plan = Plan(model, config);

        if (config.Method == AdapterMethod.Full)
            foreach (var p in model.parameters()) p.requires_grad = true;
        else
            foreach (var p in model.parameters()) p.requires_grad = false;

        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var injected = new List<(string, AdaptedLinear)>();
        foreach (var planned in plan)
        {
            string name = planned.Name;
            var linear = (Linear)modules[name];
            AdaptedLinear layer = config.Method switch
            {
                AdapterMethod.Lora => new LoraLinear(linear, planned.R, planned.Alpha, config.UseRsLora, config.Dropout, config.Init),
                AdapterMethod.Dora => new DoraLinear(linear, planned.R, planned.Alpha, config.UseRsLora, config.Dropout, config.Init),
                AdapterMethod.Mora => new MoraLinear(linear, planned.R, config.ResolvedDesign(), config.RHatRule, config.Dropout),
                _ => new FullLinear(linear),
            };
            int dot = name.LastIndexOf('.');
            var parent = dot < 0 ? model : modules[name[..dot]];
            Replace(parent, dot < 0 ? name : name[(dot + 1)..], linear, layer, name);
            injected.Add((name, layer));
        }
        return injected;
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
            string design = a is MoraLinear md ? md.Design.BuiltIn is { } t ? $"{t} ({(int)t})" : md.Design.Name : "-";
            string lora = r > 0 ? ParameterBudget.LoraParameters(a.OutFeatures, a.InFeatures, r).ToString("N0") : "-";
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

    /// <summary>ReMoRA as kongds/MoRA's <c>train.py</c> runs it by default (<c>remora_types = 4</c>): each merge moves to the
    /// next of reference types 1 → 2 → 3 → 4 → 1 (the four sharing schemes: stride and adjacent groups, and their two mixes).</summary>
    public static ReMergeSchedule ReferenceCycle(int every) => new(every, [MoraType.Sharing, MoraType.SharingAdjacent, MoraType.SharingAdjacentTiled, MoraType.SharingStrideRepeated]);

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
            if (a is MoraLinear m && m.Design.BuiltIn != type) m.SwitchType(type);
    }
}

using System.Text.RegularExpressions;

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

/// <summary>PEFT's <c>init_lora_weights</c> values that leave the base weights alone (the ones that change them,
/// "pissa", "olora", "loftq", "corda", are refused when read). Only a fresh adapter is affected: a loaded adapter's
/// tensors replace the initial values, as in PEFT.</summary>
public enum LoraInit
{
    /// <summary><c>true</c>: A Kaiming-uniform (a = √5, as nn.Linear), B = 0 (PEFT's default, after microsoft/LoRA).</summary>
    Default,
    /// <summary><c>"gaussian"</c>: A ~ N(0, (1/r)²), B = 0 (PEFT's <c>reset_lora_parameters</c>).</summary>
    Gaussian,
    /// <summary><c>false</c>: A and B both keep nn.Linear's initialisation (Kaiming-uniform), so ΔW ≠ 0 at the start.</summary>
    None,
}

/// <summary>
/// One adapter recipe, swappable with one argument: <c>config with { Method = AdapterMethod.Mora }</c>.
/// The names follow PEFT's LoraConfig and the MoRA fork (r, lora_alpha, target_modules, use_rslora, rank_pattern,
/// alpha_pattern, layers_to_transform, layers_pattern, exclude_modules, use_mora, mora_type), and so do their
/// meanings: which modules are adapted and with which r and α is decided by <see cref="Peft.Plan"/> exactly as PEFT's
/// <c>check_target_module_exists</c> and <c>_create_and_replace</c> decide it.
/// </summary>
public sealed record AdapterConfig
{
    /// <summary>The choice of <see cref="TargetModules"/> that adapts every linear layer except the output head
    /// (PEFT's "all-linear").</summary>
    public const string AllLinear = "all-linear";

    /// <summary>The names of output heads that "all-linear" leaves out (PEFT leaves out the model's output embedding,
    /// <c>lm_head</c> in every LLaMA-style model), matched against a module's last name.</summary>
    public static readonly IReadOnlyList<string> HeadNames = ["lm_head", "output", "head"];

    public AdapterMethod Method { get; init; } = AdapterMethod.Lora;
    /// <summary>LoRA rank r (PEFT's <c>r</c>); for MoRA the rank whose parameter budget (d + k)·r sets r̂.</summary>
    public int R { get; init; } = 8;
    /// <summary>LoRA/DoRA α (<c>lora_alpha</c>); scaling α/r (or α/√r with <see cref="UseRsLora"/>). MoRA ignores it (scaling 1).</summary>
    public double Alpha { get; init; } = 16;
    public bool UseRsLora { get; init; }
    public double Dropout { get; init; }
    /// <summary>How a fresh LoRA/DoRA adapter starts (<c>init_lora_weights</c>).</summary>
    public LoraInit Init { get; init; } = LoraInit.Default;
    public MoraType MoraType { get; init; } = MoraType.Rotation;
    /// <summary>A registered design of one's own (<see cref="MoraDesigns.Register"/>), by name, used instead of
    /// <see cref="MoraType"/> when set (MoRA only). Saved in the kit's side file; the fork has no such design.</summary>
    public string? Design { get; init; }

    /// <summary>The MoRA design this config adapts with: <see cref="Design"/> when set, else <see cref="MoraType"/>.</summary>
    /// <exception cref="ArgumentException"><see cref="Design"/> names no registered design</exception>
    public MoraDesign ResolvedDesign() => Design is { } name ? MoraDesigns.Parse(name, nameof(Design)) : MoraDesign.Of(MoraType);
    public RHatRule RHatRule { get; init; } = RHatRule.RoundHalfUp;

    /// <summary>PEFT's <c>target_modules</c> as a list: a module is adapted when its path equals an entry or ends
    /// with "." + an entry (q_proj matches model.layers.0.self_attn.q_proj); or the single entry <see cref="AllLinear"/>.
    /// Ignored when <see cref="TargetModulesRegex"/> is set.</summary>
    public IReadOnlyList<string> TargetModules { get; init; } = ["q_proj", "k_proj", "v_proj", "o_proj"];
    /// <summary>PEFT's <c>target_modules</c> as one string: a regular expression that must match the whole module
    /// path (Python's <c>re.fullmatch</c>). When set it replaces <see cref="TargetModules"/>.</summary>
    public string? TargetModulesRegex { get; init; }
    /// <summary>PEFT's <c>exclude_modules</c> (PEFT ≥ 0.14) as a list: modules never adapted, by path or by "." + entry
    /// at the end of the path, whatever the targets say. ("all-linear" leaves out <see cref="HeadNames"/> in any case.)</summary>
    public IReadOnlyList<string> ExcludeModules { get; init; } = [];
    /// <summary>PEFT's <c>exclude_modules</c> as one string: a regular expression matched against the whole path.</summary>
    public string? ExcludeModulesRegex { get; init; }

    /// <summary>PEFT's <c>rank_pattern</c>, in the file's order: a module whose path matches key (a regular expression,
    /// see <see cref="Peft.Plan"/>) gets rank value instead of <see cref="R"/>.</summary>
    public IReadOnlyList<KeyValuePair<string, int>> RankPattern { get; init; } = [];
    /// <summary>PEFT's <c>alpha_pattern</c>, in the file's order: α per module instead of <see cref="Alpha"/>.</summary>
    public IReadOnlyList<KeyValuePair<string, double>> AlphaPattern { get; init; } = [];
    /// <summary>PEFT's <c>layers_to_transform</c>: only modules in these layer indices are adapted (null or empty: all).
    /// As in PEFT it filters list targets matched by suffix only (not an exact path, not a regex).</summary>
    public IReadOnlyList<int>? LayersToTransform { get; init; }
    /// <summary>PEFT's <c>layers_pattern</c>: the name of the layer list the index follows ("layers"); null or empty:
    /// any name.</summary>
    public IReadOnlyList<string>? LayersPattern { get; init; }

    public static AdapterConfig Lora(int r = 8, double alpha = 16, params string[] targets) =>
        new() { Method = AdapterMethod.Lora, R = r, Alpha = alpha, TargetModules = targets.Length > 0 ? targets : [AllLinear] };
    public static AdapterConfig Dora(int r = 8, double alpha = 16, params string[] targets) =>
        new() { Method = AdapterMethod.Dora, R = r, Alpha = alpha, TargetModules = targets.Length > 0 ? targets : [AllLinear] };
    public static AdapterConfig Mora(int r = 8, MoraType type = MoraType.Rotation, params string[] targets) =>
        new() { Method = AdapterMethod.Mora, R = r, MoraType = type, TargetModules = targets.Length > 0 ? targets : [AllLinear] };
    public static AdapterConfig Full(params string[] targets) =>
        new() { Method = AdapterMethod.Full, TargetModules = targets.Length > 0 ? targets : [AllLinear] };

    /// <summary>True when the targets are the single entry <see cref="AllLinear"/> (and no regex).</summary>
    public bool IsAllLinear => TargetModulesRegex is null && TargetModules is [AllLinear];

    /// <summary>Checks every field; throws <see cref="ArgumentException"/> naming the field (its property name).</summary>
    public AdapterConfig Validate()
    {
        if (!Enum.IsDefined(Method)) throw new ArgumentException($"unknown adapter method {(int)Method}", nameof(Method));
        if (Method != AdapterMethod.Full && R <= 0) throw new ArgumentException($"rank r must be positive, got {R}", nameof(R));
        if (Method is AdapterMethod.Lora or AdapterMethod.Dora && (double.IsNaN(Alpha) || double.IsInfinity(Alpha) || Alpha <= 0))
            throw new ArgumentException($"lora_alpha must be positive, got {Alpha}", nameof(Alpha));
        if (Dropout is < 0 or >= 1 || double.IsNaN(Dropout)) throw new ArgumentException($"dropout must be in [0, 1), got {Dropout}", nameof(Dropout));
        if (!Enum.IsDefined(Init)) throw new ArgumentException($"unknown init_lora_weights {(int)Init}", nameof(Init));
        if (!Enum.IsDefined(MoraType)) throw new ArgumentException($"unknown MoRA type {(int)MoraType}", nameof(MoraType));
        if (Design is not null)
        {
            if (Method != AdapterMethod.Mora) throw new ArgumentException($"a design ('{Design}') is for MoRA, not {Method}", nameof(Design));
            if (ResolvedDesign().BuiltIn is not null) throw new ArgumentException($"'{Design}' is one of the paper's designs: set MoraType instead", nameof(Design));
        }
        if (!Enum.IsDefined(RHatRule)) throw new ArgumentException($"unknown r̂ rule {(int)RHatRule}", nameof(RHatRule));
        if (TargetModulesRegex is null && (TargetModules is null || TargetModules.Count == 0 || TargetModules.Any(string.IsNullOrWhiteSpace)))
            throw new ArgumentException("target_modules must name at least one module (or 'all-linear')", nameof(TargetModules));
        if (TargetModulesRegex is not null)
        {
            PythonRegex.Check(TargetModulesRegex, nameof(TargetModulesRegex));
            if (LayersToTransform is not null || LayersPattern is not null)
                throw new ArgumentException("layers_to_transform and layers_pattern cannot be used with a regex target_modules (PEFT refuses it too)", nameof(LayersToTransform));
        }
        if (ExcludeModules is null || ExcludeModules.Any(string.IsNullOrEmpty))
            throw new ArgumentException("exclude_modules entries must be non-empty names", nameof(ExcludeModules));
        if (ExcludeModulesRegex is not null) PythonRegex.Check(ExcludeModulesRegex, nameof(ExcludeModulesRegex));
        foreach (var (key, r) in RankPattern ?? throw new ArgumentException("rank_pattern must not be null", nameof(RankPattern)))
        {
            PythonRegex.Check(key, nameof(RankPattern));
            if (r <= 0) throw new ArgumentException($"rank_pattern['{key}'] must be a positive rank, got {r}", nameof(RankPattern));
        }
        foreach (var (key, a) in AlphaPattern ?? throw new ArgumentException("alpha_pattern must not be null", nameof(AlphaPattern)))
        {
            PythonRegex.Check(key, nameof(AlphaPattern));
            if (double.IsNaN(a) || double.IsInfinity(a) || a <= 0) throw new ArgumentException($"alpha_pattern['{key}'] must be positive, got {a}", nameof(AlphaPattern));
        }
        if (RankPattern.Select(p => p.Key).Distinct().Count() != RankPattern.Count) throw new ArgumentException("rank_pattern has a key twice", nameof(RankPattern));
        if (AlphaPattern.Select(p => p.Key).Distinct().Count() != AlphaPattern.Count) throw new ArgumentException("alpha_pattern has a key twice", nameof(AlphaPattern));
        if (LayersToTransform is { } layers && layers.Any(i => i < 0))
            throw new ArgumentException($"layers_to_transform must hold layer indices ≥ 0, got [{string.Join(", ", layers)}]", nameof(LayersToTransform));
        if (LayersPattern is { } patterns)
            foreach (var p in patterns) PythonRegex.Check(p, nameof(LayersPattern));
        return this;
    }
}

/// <summary>
/// PEFT matches module names with Python's <c>re</c>; the kit reads the same patterns with .NET's
/// <see cref="Regex"/>, whose syntax and backtracking agree with Python's for the constructs module patterns use
/// (literals, '.', classes, groups, alternation, quantifiers, anchors). A pattern .NET cannot parse (Python's
/// <c>(?P&lt;name&gt;…)</c>, for instance) is refused, never guessed.
/// </summary>
public static class PythonRegex
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(1);

    /// <summary>Python's <c>re.match(pattern, text)</c>: a match that starts at the beginning.</summary>
    public static Match MatchAtStart(string pattern, string text) => Build(@"\A(?:" + pattern + ")").Match(text);

    /// <summary>Python's <c>re.fullmatch(pattern, text)</c>.</summary>
    public static bool FullMatch(string pattern, string text) => Build(@"\A(?:" + pattern + @")\z").IsMatch(text);

    /// <summary>Throws <see cref="ArgumentException"/> (naming <paramref name="paramName"/>) when .NET cannot read the
    /// pattern in the forms the kit uses it.</summary>
    public static void Check(string pattern, string paramName)
    {
        if (pattern is null) throw new ArgumentException("a pattern is null", paramName);
        if (DotNetOnly(pattern) is { } construct)
            throw new ArgumentException($"'{pattern}' uses {construct}, which Python's re reads otherwise or refuses, while .NET would accept it: " +
                "refused rather than matched with another meaning (write it as Python reads it)", paramName);
        try { _ = Build(pattern); _ = Build(@"\A(?:" + pattern + @")\z"); _ = Build(@"\A(?:.*\." + pattern + "$)"); _ = Build(@"\A(?:(.*\.)?(" + pattern + ")$)"); }
        catch (ArgumentException e) { throw new ArgumentException($"'{pattern}' is not a regular expression the kit can read as Python's re does: {e.Message}", paramName, e); }
    }

    /// <summary>The first construct of <paramref name="pattern"/> that .NET and Python's <c>re</c> (3.8–3.13) read
    /// differently, or null: <c>{,n}</c> (Python: 0 to n times; .NET: literal text), character-class subtraction
    /// <c>[a-z-[aeiou]]</c> (Python: a class with '[' and a literal ']' after), <c>(?&lt;name&gt;…)</c> and
    /// <c>(?'name'…)</c> groups, <c>\k&lt;name&gt;</c>, <c>\p{…}</c>/<c>\P{…}</c>, <c>\G</c>, <c>\e</c>, <c>\c</c>,
    /// <c>\z</c>, the inline option <c>n</c> (Python refuses all of these), a global inline flag after the start (read
    /// differently by each), and conditionals (which Python reads too; refused because the kit does not check they agree). (<c>\Z</c> is end of text in Python and end or before a
    /// final newline in .NET: the same on module paths, which hold no newline, so it is read.)</summary>
    public static string? DotNetOnly(string pattern)
    {
        bool inClass = false;
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\' && i + 1 < pattern.Length)
            {
                char e = pattern[++i];
                if (e is 'p' or 'P' && i + 1 < pattern.Length && pattern[i + 1] == '{') return $"the Unicode category \\{e}{{…}}";
                if (!inClass && e == 'k' && i + 1 < pattern.Length && pattern[i + 1] is '<' or '\'' or '{') return "the named backreference \\k<…>";
                if (e is 'e' or 'c' or 'z') return $"the escape \\{e} (Python's re has none: \"bad escape\")";
                if (e == 'G') return "\\G";
                continue;
            }
            if (inClass)
            {
                if (c == '-' && i + 1 < pattern.Length && pattern[i + 1] == '[') return "character-class subtraction (-[…] inside […])";
                if (c == ']') inClass = false;
                continue;
            }
            if (c == '[')
            {
                inClass = true;
                if (i + 1 < pattern.Length && pattern[i + 1] == '^') i++;
                if (i + 1 < pattern.Length && pattern[i + 1] == ']') i++;      // a leading ']' is literal
                continue;
            }
            if (c == '{' && i + 1 < pattern.Length && pattern[i + 1] == ',') return "the quantifier {,n}";
            if (c == '(' && i + 2 < pattern.Length && pattern[i + 1] == '?')
            {
                char k = pattern[i + 2];
                if (k == '\'') return "the named group (?'name'…)";
                if (k == '<' && i + 3 < pattern.Length && pattern[i + 3] is not ('=' or '!')) return "the named group (?<name>…) (Python writes (?P<name>…))";
                if (k == '(') return "the conditional (?(…)…) (Python reads it, the kit does not check it reads it alike)";
                int j = i + 2;
                while (j < pattern.Length && char.IsAsciiLetter(pattern[j]) || j < pattern.Length && pattern[j] == '-') { if (pattern[j] == 'n') return "the inline option n (explicit capture)"; j++; }
                if (i > 0 && j > i + 2 && j < pattern.Length && pattern[j] == ')')
                    return "a global inline flag after the start (.NET applies it from there on, Python 3.8–3.10 to the whole pattern, 3.11+ refuses it)";
            }
        }
        return null;
    }

    static readonly Dictionary<string, Regex> Cache = new(StringComparer.Ordinal);

    static Regex Build(string pattern)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(pattern, out var r)) return r;
            r = new Regex(pattern, RegexOptions.CultureInvariant, Timeout);
            if (Cache.Count > 1000) Cache.Clear();
            Cache[pattern] = r;
            return r;
        }
    }
}

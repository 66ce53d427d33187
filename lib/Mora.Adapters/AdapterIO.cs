using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Adapters;

/// <summary>
/// An adapter folder the kit will not read, or a write the kit refuses: the message names the file, the field (a key
/// of <c>adapter_config.json</c>, a tensor name) and its value, and says why. Every problem with an adapter's files
/// is one of these (a missing file or folder: <see cref="FileNotFoundException"/>;
/// a malformed safetensors container: <see cref="SafeTensorsFormatException"/>, also a <see cref="FormatException"/>).
/// </summary>
public class AdapterFormatException : FormatException
{
    /// <summary>The file at fault (full path).</summary>
    public string FilePath { get; }
    /// <summary>The config key or tensor name at fault, if one.</summary>
    public string? Field { get; }
    /// <summary>The field's value as written in the file (JSON), if one.</summary>
    public string? Value { get; }

    public AdapterFormatException(string file, string? field, string? value, string problem, Exception? inner = null)
        : base(Compose(file, field, value, problem), inner) => (FilePath, Field, Value) = (file, field, value);

    protected AdapterFormatException(string file, string message) : base(message) => FilePath = file;

    static string Compose(string file, string? field, string? value, string problem) =>
        field is null ? $"{file}: {problem}"
        : value is null ? $"{file}: '{field}': {problem}"
        : $"{file}: '{field}' = {Clip(value)}: {problem}";

    static string Clip(string s) => s.Length <= 200 ? s : s[..200] + "…";
}

/// <summary>An adapter file whose tensors do not fit the model: every missing, unexpected or mis-shaped tensor (and
/// every module whose adapter differs from the config) is listed in <see cref="Problems"/>.</summary>
public sealed class AdapterMismatchException(string file, string message, IReadOnlyList<string> problems) : AdapterFormatException(file, message)
{
    public IReadOnlyList<string> Problems { get; } = problems;
}

/// <summary>
/// Saves and loads an adapter alone, as official PEFT (0.10–0.19) and the MoRA reference fork (kongds/MoRA peft-mora,
/// 0.9.0) write and read it, so an adapter trained here loads there and back:
/// <list type="bullet">
/// <item><c>adapter_model.safetensors</c>: tensors <c>base_model.model.&lt;module path&gt;.lora_A.weight</c> (LoRA's A;
/// MoRA's M), <c>.lora_B.weight</c>, <c>.lora_magnitude_vector</c> (DoRA's m: PEFT's name in every version, see
/// <c>get_peft_model_state_dict</c>; the kit also reads its old <c>.lora_magnitude_vector.weight</c>). The fork writes M
/// a second time as <c>lora_B.weight</c> (there lora_B is lora_A); the kit reads that copy when it equals M exactly and
/// writes M once (the fork reads both).</item>
/// <item><c>adapter_config.json</c>: for LoRA and DoRA exactly the keys PEFT 0.10's LoraConfig writes (every later
/// version knows them), for MoRA exactly the keys the fork writes (with <c>use_mora</c>, <c>mora_type</c>); nothing else,
/// since PEFT's config constructor rejects an unknown keyword.</item>
/// <item><c>mora_notebooks.json</c>: what PEFT has no field for (the kit's design name, the r̂ rule, the exclude list,
/// per-module r̂), beside them.</item>
/// </list>
/// Reading follows PEFT's meaning for every field of its LoraConfig: implemented (r, lora_alpha, lora_dropout,
/// target_modules as a list or a regex, exclude_modules, layers_to_transform, layers_pattern, rank_pattern,
/// alpha_pattern, use_rslora, use_dora, init_lora_weights true/false/"gaussian", the fork's use_mora/mora_type) or
/// refused with an <see cref="AdapterFormatException"/> naming the field (see <see cref="ReadConfig"/>).
/// </summary>
public static class AdapterIO
{
    public const string WeightsFile = "adapter_model.safetensors";
    public const string ConfigFile = "adapter_config.json";
    public const string KitFile = "mora_notebooks.json";

    /// <summary>The <c>mora_type</c> written for a registered design of one's own: a number the fork has no design for,
    /// the design itself named in <see cref="KitFile"/> (with its fingerprint). The fork's forward would fail on it, but
    /// its merge would silently compute an old sharing variant, so the config also carries <see cref="OwnDesignKey"/>,
    /// which the fork's LoraConfig rejects as an unexpected keyword: the fork refuses the adapter outright.</summary>
    public const int OwnDesignMoraType = -1;

    /// <summary>The key that makes the fork (and official PEFT) refuse an adapter of a design of one's own: its value is the design's name.</summary>
    public const string OwnDesignKey = "mora_notebooks_design";
    public const string Prefix = "base_model.model.";

    /// <summary>Largest <c>adapter_config.json</c> / <c>mora_notebooks.json</c> read (bytes).</summary>
    public const long MaxConfigBytes = 4L << 20;
    /// <summary>Largest <c>adapter_model.safetensors</c> read (bytes): 16 GiB, several times a rank-64 adapter of a 70B model.</summary>
    public const long MaxWeightsBytes = 16L << 30;

    /// <summary>The keys of official PEFT 0.10's LoraConfig, as its <c>save_pretrained</c> writes them (and the kit, for
    /// LoRA and DoRA).</summary>
    public static readonly IReadOnlyList<string> PeftLoraKeys =
    [
        "alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "fan_in_fan_out", "inference_mode",
        "init_lora_weights", "layer_replication", "layers_pattern", "layers_to_transform", "loftq_config", "lora_alpha",
        "lora_dropout", "megatron_config", "megatron_core", "modules_to_save", "peft_type", "r", "rank_pattern", "revision",
        "target_modules", "task_type", "use_dora", "use_rslora",
    ];

    /// <summary>The keys the MoRA fork's LoraConfig writes (PEFT 0.9's, no <c>layer_replication</c>, plus <c>use_mora</c>,
    /// <c>mora_type</c>); the kit writes exactly these for MoRA.</summary>
    public static readonly IReadOnlyList<string> ForkMoraKeys =
    [
        "alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "fan_in_fan_out", "inference_mode",
        "init_lora_weights", "layers_pattern", "layers_to_transform", "loftq_config", "lora_alpha", "lora_dropout",
        "megatron_config", "megatron_core", "modules_to_save", "mora_type", "peft_type", "r", "rank_pattern", "revision",
        "target_modules", "task_type", "use_dora", "use_mora", "use_rslora",
    ];

    // ------------------------------------------------------------------------------------------------------------
    // Saving

    /// <summary>Writes the adapters of <paramref name="model"/> (injected with <paramref name="config"/>) into a folder.</summary>
    /// <param name="model">the model holding the adapters</param>
    /// <param name="config">the config they were injected with (checked against them)</param>
    /// <param name="directory">the adapter folder (created)</param>
    /// <param name="baseModelNameOrPath">PEFT's <c>base_model_name_or_path</c>: the base's folder or hub name, when known
    /// (PEFT uses it only to find the base when none is given)</param>
    /// <exception cref="ArgumentException">the model's adapters are not what <paramref name="config"/> describes (it
    /// would write a config that means other adapters)</exception>
    public static void Save(nn.Module model, AdapterConfig config, string directory, string? baseModelNameOrPath = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        config.Validate();
        if (config.Method == AdapterMethod.Full)
            throw new NotSupportedException("full fine-tuning has no adapter to save; save the model's weights instead");
        var adapters = Peft.Adapters(model);
        if (adapters.Count == 0) throw new ArgumentException("the model has no adapters to save", nameof(model));
        foreach (var (name, a) in adapters)
            if (a.Merged) throw new InvalidOperationException($"{name} is merged; unmerge before saving the adapter alone");
        var differences = Differences(adapters, Peft.Plan(model, config), config);
        if (differences.Count > 0)
            throw new ArgumentException($"the model's adapters are not the ones the config describes, so the written config would mean other adapters:\n  {string.Join("\n  ", differences)}", nameof(config));
        var (targets, layers, layersPattern) = PeftTargets(model, adapters, config);

        Directory.CreateDirectory(directory);
        var tensors = adapters.SelectMany(a => a.Layer.AdapterParameters().Select(p => (Prefix + a.Name + "." + p.Name, (Tensor)p.Parameter)));
        SafeTensors.Save(Path.Combine(directory, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });

        bool mora = config.Method == AdapterMethod.Mora;
        var peft = new SortedDictionary<string, JsonNode?>(StringComparer.Ordinal)
        {
            ["alpha_pattern"] = new JsonObject(config.AlphaPattern.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)Number(p.Value)))),
            ["auto_mapping"] = null,
            ["base_model_name_or_path"] = baseModelNameOrPath,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = config.Init switch { LoraInit.Gaussian => JsonValue.Create("gaussian"), LoraInit.None => JsonValue.Create(false), _ => JsonValue.Create(true) },
            ["layers_pattern"] = layersPattern is null ? null : new JsonArray(layersPattern.Select(p => (JsonNode)JsonValue.Create(p)!).ToArray()),
            ["layers_to_transform"] = layers is null ? null : new JsonArray(layers.Select(i => (JsonNode)JsonValue.Create(i)!).ToArray()),
            ["loftq_config"] = new JsonObject(),
            ["lora_alpha"] = Number(config.Alpha),
            ["lora_dropout"] = config.Dropout,
            ["megatron_config"] = null,
            ["megatron_core"] = "megatron.core",
            ["modules_to_save"] = null,
            ["peft_type"] = "LORA",
            ["r"] = config.R,
            ["rank_pattern"] = new JsonObject(config.RankPattern.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)JsonValue.Create(p.Value)))),
            ["revision"] = null,
            ["target_modules"] = new JsonArray(targets.Select(t => (JsonNode)JsonValue.Create(t)!).ToArray()),
            ["task_type"] = "CAUSAL_LM",
            ["use_dora"] = config.Method == AdapterMethod.Dora,
            ["use_rslora"] = config.UseRsLora,
        };
        if (mora)
        {
            peft["use_mora"] = true;
            peft["mora_type"] = config.Design is null ? (int)config.MoraType : OwnDesignMoraType;
            if (config.Design is not null) peft[OwnDesignKey] = config.Design;
        }
        else peft["layer_replication"] = null;
        var root = new JsonObject(peft.Select(kv => KeyValuePair.Create(kv.Key, kv.Value)));
        AtomicFile.WriteText(Path.Combine(directory, ConfigFile), root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        var kit = new JsonObject
        {
            ["method"] = config.Method.ToString().ToLowerInvariant(),
            ["mora_design"] = mora ? config.Design ?? config.MoraType.ToString() : null,
            ["mora_design_fingerprint"] = mora && config.Design is not null ? config.ResolvedDesign().Fingerprint : null,
            ["rhat_rule"] = config.RHatRule.ToString(),
            ["init"] = config.Init.ToString(),
            ["target_modules"] = config.TargetModulesRegex is { } rx ? rx : new JsonArray(config.TargetModules.Select(t => (JsonNode)JsonValue.Create(t)!).ToArray()),
            ["exclude_modules"] = config.ExcludeModulesRegex is { } ex ? ex : new JsonArray(config.ExcludeModules.Select(t => (JsonNode)JsonValue.Create(t)!).ToArray()),
            ["modules"] = new JsonObject(adapters.Select(a => KeyValuePair.Create(a.Name, (JsonNode?)new JsonObject
            {
                ["out_features"] = a.Layer.OutFeatures,
                ["in_features"] = a.Layer.InFeatures,
                ["r"] = a.Layer switch { LoraLinear l => l.R, MoraLinear m => m.LoraRank, _ => 0 },
                ["lora_alpha"] = a.Layer is LoraLinear l2 ? Number(l2.Alpha) : null,
                ["r_hat"] = a.Layer is MoraLinear m2 ? m2.RHat : null,
                ["mora_type"] = a.Layer is MoraLinear m3 ? m3.Design.BuiltIn is { } t ? (int)t : OwnDesignMoraType : null,
            }))),
        };
        AtomicFile.WriteText(Path.Combine(directory, KitFile), kit.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>An integer-valued α as a JSON integer (as PEFT writes 8, not 8.0), else the number.</summary>
    static JsonNode Number(double x) => x == Math.Floor(x) && Math.Abs(x) < 1e15 ? JsonValue.Create((long)x) : JsonValue.Create(x);

    /// <summary>How the adapted set is written for PEFT: the last names of the adapted modules (as PEFT itself writes
    /// target_modules, with layers_to_transform), when PEFT's matching of those names over the model gives exactly the
    /// adapted modules; otherwise their full paths (PEFT matches a listed path exactly).</summary>
    static (IReadOnlyList<string> Targets, IReadOnlyList<int>? Layers, IReadOnlyList<string>? LayersPattern) PeftTargets(
        nn.Module model, IReadOnlyList<(string Name, AdaptedLinear Layer)> adapters, AdapterConfig config)
    {
        var adapted = adapters.Select(a => a.Name).ToHashSet(StringComparer.Ordinal);
        bool Gives(AdapterConfig c)
        {
            try { return Peft.Plan(model, c).Select(p => p.Name).ToHashSet(StringComparer.Ordinal).SetEquals(adapted); }
            catch (ArgumentException) { return false; }
        }
        var names = adapters.Select(a => a.Name[(a.Name.LastIndexOf('.') + 1)..]).Distinct().ToList();
        var bare = config with
        {
            TargetModules = names, TargetModulesRegex = null, ExcludeModules = [], ExcludeModulesRegex = null,
            RankPattern = [], AlphaPattern = [],
        };
        if (Gives(bare)) return (names, config.LayersToTransform, config.LayersPattern);
        var paths = adapters.Select(a => a.Name).ToList();
        if (Gives(bare with { TargetModules = paths, LayersToTransform = null, LayersPattern = null })) return (paths, null, null);
        throw new InvalidOperationException("no target_modules list selects exactly the adapted modules under PEFT's matching: " + string.Join(", ", paths));
    }

    /// <summary>Where the adapters in a model differ from what a config's plan makes (module set, method, r, α, rsLoRA,
    /// MoRA design and r̂): one line each.</summary>
    static List<string> Differences(IReadOnlyList<(string Name, AdaptedLinear Layer)> adapters, IReadOnlyList<Peft.PlannedAdapter> plan, AdapterConfig config)
    {
        var problems = new List<string>();
        var planned = plan.ToDictionary(p => p.Name, StringComparer.Ordinal);
        foreach (var (name, layer) in adapters)
        {
            if (!planned.TryGetValue(name, out var p)) { problems.Add($"{name} has an adapter the config does not target"); continue; }
            if (layer.Method != config.Method) { problems.Add($"{name}: method {layer.Method}, config {config.Method}"); continue; }
            switch (layer)
            {
                case LoraLinear l:
                    if (l.R != p.R) problems.Add($"{name}: r = {l.R}, config gives {p.R}");
                    if (l.Alpha != p.Alpha) problems.Add($"{name}: lora_alpha = {l.Alpha}, config gives {p.Alpha}");
                    if (l.UseRsLora != config.UseRsLora) problems.Add($"{name}: use_rslora = {l.UseRsLora}, config {config.UseRsLora}");
                    break;
                case MoraLinear m:
                    if (m.LoraRank != p.R) problems.Add($"{name}: r = {m.LoraRank}, config gives {p.R}");
                    var design = config.ResolvedDesign();
                    if (m.Design.Name != design.Name) problems.Add($"{name}: MoRA design {m.Design.Name}, config {design.Name}");
                    int rHat = SafeRHat(p.OutFeatures, p.InFeatures, p.R, design, config.RHatRule);
                    if (m.RHat != rHat) problems.Add($"{name}: r̂ = {m.RHat}, the config's r̂ rule gives {rHat}");
                    break;
            }
        }
        foreach (var p in plan)
            if (!adapters.Any(a => a.Name == p.Name)) problems.Add($"{p.Name} is targeted by the config but has no adapter");
        return problems;
    }

    static int SafeRHat(int d, int k, int r, MoraDesign design, RHatRule rule)
    {
        try { return ParameterBudget.RHat(d, k, r, design, rule); }
        catch (ArgumentException) { return 0; }
    }

    // ------------------------------------------------------------------------------------------------------------
    // Reading the config

    /// <summary>The fields of PEFT's LoraConfig (0.10–0.19) and its PeftConfig base that only describe where the adapter
    /// came from or how PEFT runs it, not what it computes: read past.</summary>
    static readonly HashSet<string> Metadata =
    [
        "base_model_name_or_path", "revision", "inference_mode", "auto_mapping", "peft_version", "megatron_core",
        "runtime_config",            // 0.12+: ephemeral_gpu_offload, where DoRA's norm is computed
        "qalora_group_size",         // used only with use_qalora (refused when true)
        "ensure_weight_tying",       // ties modules_to_save / trainable tokens (both refused when set)
    ];

    /// <summary>Fields that are accepted only while they are off (null, empty, false), with why the kit refuses them on.</summary>
    static readonly Dictionary<string, string> OffOnly = new()
    {
        ["modules_to_save"] = "PEFT saves and restores whole copies of these modules (a trained head or embedding); the kit does not load them",
        ["layer_replication"] = "PEFT duplicates decoder layers of the base before adapting them; the kit does not build that model",
        ["megatron_config"] = "Megatron parallel layers are not modelled",
        ["loftq_config"] = "LoftQ quantises the base weights the adapter was trained against",
        ["eva_config"] = "EVA initialisation is not modelled",
        ["corda_config"] = "CorDA rewrites the base weights the adapter was trained against",
        ["lora_ga_config"] = "LoRA-GA initialisation is not modelled",
        ["trainable_token_indices"] = "PEFT trains and saves rows of the embedding; the kit does not load them",
        ["alora_invocation_tokens"] = "activated LoRA applies the adapter only after an invocation sequence; not modelled",
        ["target_parameters"] = "LoRA on bare nn.Parameter tensors (MoE experts) is not modelled",
        ["use_bdlora"] = "block-diagonal LoRA is not modelled",
        ["arrow_config"] = "Arrow routing between adapters is not modelled",
        ["use_qalora"] = "QA-LoRA's pooled input is not modelled",
        ["lora_bias"] = "PEFT adds a trained bias to lora_B; the kit's adapters have none",
    };

    /// <summary>Fields whose meaning the kit implements.</summary>
    static readonly HashSet<string> Implemented =
    [
        "peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules",
        "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern", "bias", "fan_in_fan_out", "use_rslora",
        "use_dora", "init_lora_weights", "use_mora", "mora_type", OwnDesignKey,
    ];

    /// <summary>
    /// Reads <c>adapter_config.json</c> (and the kit's <c>mora_notebooks.json</c> if present) into an
    /// <see cref="AdapterConfig"/>, with PEFT's meaning for every field:
    /// <list type="bullet">
    /// <item>required: <c>peft_type</c> ("LORA"), <c>r</c> (an integer ≥ 1), <c>lora_alpha</c> (a number), <c>target_modules</c>
    /// (a list of names, "all-linear", or a regex string; null, which PEFT fills per architecture, is refused);</item>
    /// <item>implemented: lora_dropout, exclude_modules, layers_to_transform, layers_pattern, rank_pattern, alpha_pattern,
    /// use_rslora, use_dora, init_lora_weights (true, false, "gaussian": they only set a fresh adapter's start),
    /// use_mora and mora_type (the fork: 1, 2, 3, 4, 6; the kit's 0 and 5 only with its own sidecar), task_type
    /// (CAUSAL_LM or null);</item>
    /// <item>accepted only when off: bias ("none"), fan_in_fan_out (false), init_lora_weights "pissa"/"olora"/"loftq"/
    /// "corda"/"eva"/… refused, and modules_to_save, layer_replication, megatron_config, loftq_config, eva_config,
    /// corda_config, lora_ga_config, trainable_token_indices, alora_invocation_tokens, target_parameters, use_bdlora,
    /// arrow_config, use_qalora, lora_bias;</item>
    /// <item>read past (metadata): base_model_name_or_path, revision, inference_mode, auto_mapping, peft_version,
    /// megatron_core, runtime_config, qalora_group_size, ensure_weight_tying;</item>
    /// <item>any other key is refused: the kit cannot know that it does not change the math.</item>
    /// </list>
    /// </summary>
    /// <exception cref="AdapterFormatException">naming the file, the field and its value</exception>
    /// <exception cref="FileNotFoundException">no adapter_config.json</exception>
    public static AdapterConfig ReadConfig(string directory)
    {
        string dir = Folder(directory);
        string path = RegularFile(dir, ConfigFile, MaxConfigBytes);
        using var doc = ReadJson(path);
        var root = doc.RootElement;
        var keys = Keys(root, path);

        // peft_type first: another method's config would otherwise be reported by its first unknown key.
        string peftType = keys.TryGetValue("peft_type", out var pt) && pt.ValueKind == JsonValueKind.String ? pt.GetString()!
            : throw Bad(path, "peft_type", keys.TryGetValue("peft_type", out var given) ? given : null, "must be the string \"LORA\" (PEFT picks the config class by it)");
        if (peftType != "LORA") throw Bad(path, "peft_type", pt, "only LoRA adapters (with use_dora, or the MoRA fork's use_mora) are read");
        foreach (var (key, value) in keys)
        {
            if (Implemented.Contains(key) || Metadata.Contains(key)) continue;
            if (OffOnly.TryGetValue(key, out string? why))
            {
                if (!IsOff(value)) throw Bad(path, key, value, $"refused: {why}");
                continue;
            }
            throw Bad(path, key, value, "unknown field: the kit reads the fields of PEFT's LoraConfig (0.10–0.19) and the MoRA fork's use_mora / mora_type, and refuses any other, which might change what the adapter computes");
        }

        if (keys.TryGetValue("task_type", out var task) && task.ValueKind != JsonValueKind.Null && !(task.ValueKind == JsonValueKind.String && task.GetString() == "CAUSAL_LM"))
            throw Bad(path, "task_type", task, "only CAUSAL_LM (or null) is read: other task types add heads and modules_to_save the kit's causal LM does not have");
        int r = Int(path, keys, "r", required: true, fallback: 0);
        if (r < 1) throw Bad(path, "r", keys["r"], "the rank must be an integer ≥ 1");
        double alpha = Num(path, keys, "lora_alpha", required: true, fallback: 0);
        double dropout = Num(path, keys, "lora_dropout", required: false, fallback: 0);
        if (dropout is < 0 or >= 1) throw Bad(path, "lora_dropout", keys["lora_dropout"], "must be in [0, 1)");

        string bias = keys.TryGetValue("bias", out var b) ? b.ValueKind == JsonValueKind.String ? b.GetString()! : throw Bad(path, "bias", b, "must be a string") : "none";
        if (bias != "none")
            throw Bad(path, "bias", b, bias is "all" or "lora_only"
                ? "refused: PEFT trains the base layers' biases and saves them with the adapter; the kit keeps the base biases frozen"
                : "unknown value (PEFT knows \"none\", \"all\", \"lora_only\")");
        if (Bool(path, keys, "fan_in_fan_out", false))
            throw Bad(path, "fan_in_fan_out", keys["fan_in_fan_out"], "refused: it describes Conv1D weights stored (in, out); the kit's models have nn.Linear layers only");
        bool useRsLora = Bool(path, keys, "use_rslora", false);
        bool useDora = Bool(path, keys, "use_dora", false);
        bool useMora = Bool(path, keys, "use_mora", false);
        if (useMora && useDora) throw Bad(path, "use_dora", keys["use_dora"], "use_dora together with use_mora is refused (the fork computes MoRA and still builds a DoRA magnitude)");
        int moraTypeNumber = Int(path, keys, "mora_type", required: false, fallback: 1);   // the fork's default; unused without use_mora
        if (useMora && !Enum.IsDefined(typeof(MoraType), moraTypeNumber) && moraTypeNumber != OwnDesignMoraType)
            throw Bad(path, "mora_type", keys["mora_type"], "unknown MoRA design (the fork implements 1, 2, 3, 4 and 6)");

        var init = ReadInit(path, keys);
        var (targets, targetRegex) = ReadTargets(path, keys);
        var (exclude, excludeRegex) = ReadExclude(path, keys);
        var layers = ReadLayers(path, keys);
        var layersPattern = ReadLayersPattern(path, keys);
        // PEFT's LoraConfig.__post_init__ refuses these with any string target_modules, "all-linear" included.
        bool stringTargets = keys["target_modules"].ValueKind == JsonValueKind.String;
        if (stringTargets && (keys.TryGetValue("layers_to_transform", out var lt) && lt.ValueKind != JsonValueKind.Null))
            throw Bad(path, "layers_to_transform", lt, "cannot be used when target_modules is a string (a regex, or \"all-linear\"): PEFT refuses it too");
        if (stringTargets && (keys.TryGetValue("layers_pattern", out var lp) && lp.ValueKind != JsonValueKind.Null))
            throw Bad(path, "layers_pattern", lp, "cannot be used when target_modules is a string (a regex, or \"all-linear\"): PEFT refuses it too");
        var rankPattern = ReadPattern(path, keys, "rank_pattern", v => v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) && i >= 1 ? i : (int?)null, "a rank (an integer ≥ 1)");
        var alphaPattern = ReadPattern(path, keys, "alpha_pattern", v => v.ValueKind == JsonValueKind.Number && double.IsFinite(v.GetDouble()) ? v.GetDouble() : (double?)null, "a number");

        var config = new AdapterConfig
        {
            Method = useMora ? AdapterMethod.Mora : useDora ? AdapterMethod.Dora : AdapterMethod.Lora,
            R = r,
            Alpha = alpha,
            Dropout = dropout,
            UseRsLora = useRsLora,
            Init = init,
            MoraType = Enum.IsDefined(typeof(MoraType), moraTypeNumber) ? (MoraType)moraTypeNumber : MoraType.Sharing,
            TargetModules = targets ?? [AdapterConfig.AllLinear],
            TargetModulesRegex = targetRegex,
            ExcludeModules = exclude,
            ExcludeModulesRegex = excludeRegex,
            LayersToTransform = layers,
            LayersPattern = layersPattern,
            RankPattern = rankPattern,
            AlphaPattern = alphaPattern,
        };
        if (config.Method is AdapterMethod.Lora or AdapterMethod.Dora && !(alpha > 0))
            throw Bad(path, "lora_alpha", keys["lora_alpha"], "the kit needs a positive lora_alpha for LoRA and DoRA");

        string? kitDesign = null;
        string kitPath = Path.Combine(dir, KitFile);
        if (File.Exists(kitPath) || new FileInfo(kitPath).LinkTarget is not null)
            (config, kitDesign) = ReadKitFile(dir, config, useMora && moraTypeNumber == OwnDesignMoraType);
        if (useMora && moraTypeNumber == OwnDesignMoraType && config.Design is null)
            throw Bad(path, "mora_type", keys["mora_type"], $"{OwnDesignMoraType} marks a design of one's own, but no {KitFile} beside it names one");
        bool ownKey = keys.TryGetValue(OwnDesignKey, out var ownValue);
        if (ownKey != (config.Design is not null) || ownKey && (ownValue.ValueKind != JsonValueKind.String || ownValue.GetString() != config.Design))
            throw Bad(path, OwnDesignKey, ownKey ? ownValue : null, config.Design is null
                ? "belongs to an adapter of a design of one's own (mora_type -1 with the kit's side file naming it)"
                : $"must be \"{config.Design}\", the design {KitFile} names (it is what makes the fork refuse this adapter rather than compute another design)");
        if (useMora && !MoraTypes.Reference.Contains(config.MoraType) && kitDesign is null)
            throw Bad(path, "mora_type", keys["mora_type"],
                $"the fork implements mora_type 1, 2, 3, 4 and 6 (fails on others); the kit's own designs 0 and 5 are read only with the {KitFile} it writes beside them");

        try { return config.Validate(); }
        catch (ArgumentException e) { throw FromArgument(path, e, keys); }
    }

    static LoraInit ReadInit(string path, Dictionary<string, JsonElement> keys)
    {
        if (!keys.TryGetValue("init_lora_weights", out var v)) return LoraInit.Default;
        switch (v.ValueKind)
        {
            case JsonValueKind.True: return LoraInit.Default;
            case JsonValueKind.False: return LoraInit.None;
            case JsonValueKind.String:
                string s = v.GetString()!;
                if (s.Equals("gaussian", StringComparison.OrdinalIgnoreCase)) return LoraInit.Gaussian;
                if (s is "pissa" or "olora" or "loftq" or "corda" || s.StartsWith("pissa_niter_", StringComparison.Ordinal))
                    throw Bad(path, "init_lora_weights", v, "refused: this initialisation rewrites the base weights, so the adapter only works on the base PEFT modified (convert it to a plain LoRA in PEFT first)");
                throw Bad(path, "init_lora_weights", v, "refused: the kit implements true, false and \"gaussian\"");
            default: throw Bad(path, "init_lora_weights", v, "must be true, false or a string");
        }
    }

    static (IReadOnlyList<string>? Names, string? Regex) ReadTargets(string path, Dictionary<string, JsonElement> keys)
    {
        if (!keys.TryGetValue("target_modules", out var v) || v.ValueKind == JsonValueKind.Null)
            throw Bad(path, "target_modules", keys.TryGetValue("target_modules", out var n) ? n : null,
                "is missing: PEFT would fill in a default per model architecture; write the module names (e.g. [\"q_proj\", \"v_proj\"]) out");
        if (v.ValueKind == JsonValueKind.String)
        {
            string s = v.GetString()!;
            if (s.Equals(AdapterConfig.AllLinear, StringComparison.OrdinalIgnoreCase)) return (null, null);
            if (s.Length == 0) throw Bad(path, "target_modules", v, "an empty regex matches no module");
            try { PythonRegex.Check(s, "target_modules"); }
            catch (ArgumentException e) { throw Bad(path, "target_modules", v, e.Message, e); }
            return ([AdapterConfig.AllLinear], s);
        }
        var names = StringList(path, "target_modules", v, allowEmpty: false);
        if (names.Any(x => x.Equals(AdapterConfig.AllLinear, StringComparison.OrdinalIgnoreCase)))
            throw Bad(path, "target_modules", v, "\"all-linear\" inside a list is, for PEFT, the name of a module (none has it); write the string \"all-linear\"");
        return (names, null);
    }

    static (IReadOnlyList<string> Names, string? Regex) ReadExclude(string path, Dictionary<string, JsonElement> keys)
    {
        if (!keys.TryGetValue("exclude_modules", out var v) || v.ValueKind == JsonValueKind.Null) return ([], null);
        if (v.ValueKind == JsonValueKind.String)
        {
            string s = v.GetString()!;
            if (s.Length == 0) return ([], null);      // PEFT: an empty exclude_modules excludes nothing
            try { PythonRegex.Check(s, "exclude_modules"); }
            catch (ArgumentException e) { throw Bad(path, "exclude_modules", v, e.Message, e); }
            return ([], s);
        }
        return (StringList(path, "exclude_modules", v, allowEmpty: true), null);
    }

    static IReadOnlyList<int>? ReadLayers(string path, Dictionary<string, JsonElement> keys)
    {
        if (!keys.TryGetValue("layers_to_transform", out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number)
            return v.TryGetInt32(out int one) && one >= 0 ? [one] : throw Bad(path, "layers_to_transform", v, "must be a layer index (an integer ≥ 0) or a list of them");
        if (v.ValueKind != JsonValueKind.Array) throw Bad(path, "layers_to_transform", v, "must be a layer index (an integer ≥ 0) or a list of them");
        var list = new List<int>();
        foreach (var e in v.EnumerateArray())
            list.Add(e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int i) && i >= 0 ? i
                : throw Bad(path, "layers_to_transform", v, $"entry {e.GetRawText()} is not a layer index (an integer ≥ 0)"));
        return list;
    }

    static IReadOnlyList<string>? ReadLayersPattern(string path, Dictionary<string, JsonElement> keys)
    {
        if (!keys.TryGetValue("layers_pattern", out var v) || v.ValueKind == JsonValueKind.Null) return null;
        IReadOnlyList<string> list = v.ValueKind == JsonValueKind.String ? (v.GetString()!.Length == 0 ? [] : [v.GetString()!])
            : StringList(path, "layers_pattern", v, allowEmpty: true);
        foreach (var p in list)
        {
            try { PythonRegex.Check(p, "layers_pattern"); }
            catch (ArgumentException e) { throw Bad(path, "layers_pattern", v, e.Message, e); }
        }
        return list;
    }

    static IReadOnlyList<KeyValuePair<string, T>> ReadPattern<T>(string path, Dictionary<string, JsonElement> keys, string field, Func<JsonElement, T?> value, string what)
        where T : struct
    {
        if (!keys.TryGetValue(field, out var v) || v.ValueKind == JsonValueKind.Null) return [];
        if (v.ValueKind != JsonValueKind.Object) throw Bad(path, field, v, "must be an object mapping module patterns to values");
        var list = new List<KeyValuePair<string, T>>();
        foreach (var p in v.EnumerateObject())
        {
            if (list.Any(e => e.Key == p.Name)) throw Bad(path, field, v, $"key '{p.Name}' appears twice");
            if (p.Name.Length == 0) throw Bad(path, field, v, "a key is empty");
            var x = value(p.Value) ?? throw Bad(path, field, v, $"the value of '{p.Name}' ({p.Value.GetRawText()}) must be {what}");
            try { PythonRegex.Check(p.Name, field); }
            catch (ArgumentException e) { throw Bad(path, field, v, e.Message, e); }
            list.Add(KeyValuePair.Create(p.Name, x));
        }
        return list;
    }

    /// <summary>The kit's sidecar: the r̂ rule and design name (what PEFT has no field for), checked against the config.</summary>
    static (AdapterConfig Config, string? Design) ReadKitFile(string dir, AdapterConfig config, bool ownNumber)
    {
        string path = RegularFile(dir, KitFile, MaxConfigBytes);
        using var doc = ReadJson(path);
        var keys = Keys(doc.RootElement, path);
        string? Str(string key) => keys.TryGetValue(key, out var v) ? v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Null => null,
            _ => throw Bad(path, key, v, "must be a string"),
        } : null;
        string? method = Str("method");
        if (method is not null && !method.Equals(config.Method.ToString(), StringComparison.OrdinalIgnoreCase))
            throw Bad(path, "method", keys["method"], $"disagrees with {ConfigFile}, which describes {config.Method}");
        if (Str("rhat_rule") is { } rule)
        {
            if (!Enum.TryParse<RHatRule>(rule, ignoreCase: false, out var parsed) || !Enum.IsDefined(parsed))
                throw Bad(path, "rhat_rule", keys["rhat_rule"], $"unknown r̂ rule (known: {string.Join(", ", Enum.GetNames<RHatRule>())})");
            config = config with { RHatRule = parsed };
        }
        string? design = Str("mora_design");
        if (config.Method == AdapterMethod.Mora && design is not null)
        {
            MoraDesign named;
            try { named = MoraDesigns.Parse(design, "mora_design"); }
            catch (ArgumentException e) { throw Bad(path, "mora_design", keys["mora_design"], e.Message, e); }
            if (named.BuiltIn is { } t)
            {
                if (t != config.MoraType || ownNumber) throw Bad(path, "mora_design", keys["mora_design"], $"disagrees with mora_type {(ownNumber ? OwnDesignMoraType : (int)config.MoraType)} in {ConfigFile}");
            }
            else if (!ownNumber) throw Bad(path, "mora_design", keys["mora_design"], $"names a design of one's own, but mora_type in {ConfigFile} is {(int)config.MoraType}, not {OwnDesignMoraType}");
            else
            {
                string? recorded = Str("mora_design_fingerprint");
                if (recorded is null) throw Bad(path, "mora_design_fingerprint", keys.GetValueOrDefault("mora_design_fingerprint"), $"is missing: a design of one's own is read only with the fingerprint of what it computed");
                if (recorded != named.Fingerprint)
                    throw Bad(path, "mora_design_fingerprint", keys["mora_design_fingerprint"],
                        $"is {recorded}, but design '{named.Name}' as registered now computes {named.Fingerprint}: it was redefined since this adapter was saved (register the definition it was trained with)");
                config = config with { Design = named.Name };
            }
        }
        return (config, design);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Loading

    /// <summary>Loads an adapter folder into <paramref name="model"/>. Everything is checked before the model changes:
    /// the config (<see cref="ReadConfig"/>), the modules it adapts and their r, α (<see cref="Peft.Plan"/>; a model that
    /// already has adapters must have exactly those), every tensor's name, shape and dtype against the base (from the
    /// file's header, before any tensor is read), then every value (finite; the fork's second copy of M equal to the
    /// first). Then the adapters are injected (if the model has none) and the tensors copied in.</summary>
    /// <exception cref="AdapterFormatException">the config or a tensor, named</exception>
    /// <exception cref="AdapterMismatchException">tensors or adapters that do not fit, every one listed</exception>
    public static AdapterConfig Load(nn.Module model, string directory)
    {
        ArgumentNullException.ThrowIfNull(model);
        string dir = Folder(directory);
        var config = ReadConfig(dir);
        string configPath = Path.Combine(dir, ConfigFile);
        string weights = RegularFile(dir, WeightsFile, MaxWeightsBytes);
        IReadOnlyList<Peft.PlannedAdapter> plan;
        try { plan = Peft.Plan(model, config); }
        catch (ArgumentException e) { throw FromArgument(configPath, e, null); }
        var existing = Peft.Adapters(model);
        if (existing.Count > 0)
        {
            var differences = Differences(existing, plan, config);
            if (differences.Count > 0)
                throw new AdapterMismatchException(configPath, TensorMatch.Describe(configPath + " (the model already has adapters)", differences), differences);
        }
        var expected = Expected(plan, config, configPath);
        using var loaded = ReadTensors(weights, expected);
        if (existing.Count == 0)
        {
            try { Peft.Inject(model, config); }
            catch (ArgumentException e) { throw FromArgument(configPath, e, null); }
        }
        CopyInto(model, loaded);
        return config;
    }

    /// <summary>Copies the adapter tensors of a folder into a model that already has matching adapters (same checks of
    /// names, shapes, dtypes and values as <see cref="Load"/>; the config is not read).</summary>
    public static void LoadWeights(nn.Module model, string directory)
    {
        ArgumentNullException.ThrowIfNull(model);
        string dir = Folder(directory);
        string weights = RegularFile(dir, WeightsFile, MaxWeightsBytes);
        var expected = Peft.Adapters(model).SelectMany(a => a.Layer.AdapterParameters()
            .Select(p => new ExpectedTensor(Prefix + a.Name + "." + p.Name, p.Parameter.shape, a.Layer is MoraLinear))).ToList();
        using var loaded = ReadTensors(weights, expected);
        CopyInto(model, loaded);
    }

    /// <summary>One tensor an adapter needs, by its PEFT name; <paramref name="IsMora"/>: lora_A is M, and the fork's
    /// lora_B copy of it may come along.</summary>
    sealed record ExpectedTensor(string Name, long[] Shape, bool IsMora);

    /// <summary>The tensors a plan needs, with shapes from the base layers; an r the layer cannot take is named here,
    /// before anything is allocated.</summary>
    static List<ExpectedTensor> Expected(IReadOnlyList<Peft.PlannedAdapter> plan, AdapterConfig config, string configPath)
    {
        var list = new List<ExpectedTensor>();
        string rField = config.RankPattern.Count > 0 ? "rank_pattern" : "r";
        foreach (var p in plan)
        {
            string at = Prefix + p.Name + ".";
            if (p.R > Math.Min(p.OutFeatures, p.InFeatures))
                throw new AdapterFormatException(configPath, rField, p.R.ToString(CultureInfo.InvariantCulture),
                    $"rank {p.R} for {p.Name} is larger than its {p.OutFeatures}×{p.InFeatures} weight allows (min(d, k) = {Math.Min(p.OutFeatures, p.InFeatures)}); the kit refuses such ranks");
            switch (config.Method)
            {
                case AdapterMethod.Mora:
                    int rHat;
                    try { rHat = ParameterBudget.RHat(p.OutFeatures, p.InFeatures, p.R, config.ResolvedDesign(), config.RHatRule); }
                    catch (ArgumentException e) { throw new AdapterFormatException(configPath, rField, p.R.ToString(CultureInfo.InvariantCulture), $"{p.Name}: {e.Message}", e); }
                    list.Add(new ExpectedTensor(at + "lora_A.weight", [rHat, rHat], true));
                    break;
                default:
                    list.Add(new ExpectedTensor(at + "lora_A.weight", [p.R, p.InFeatures], false));
                    list.Add(new ExpectedTensor(at + "lora_B.weight", [p.OutFeatures, p.R], false));
                    if (config.Method == AdapterMethod.Dora) list.Add(new ExpectedTensor(at + "lora_magnitude_vector", [p.OutFeatures], false));
                    break;
            }
        }
        return list;
    }

    const string OldMagnitudeSuffix = ".lora_magnitude_vector.weight";

    /// <summary>Tensors read from an adapter file and checked, by the name the kit's parameters have.</summary>
    sealed class LoadedTensors : IDisposable
    {
        public readonly Dictionary<string, Tensor> ByName = new(StringComparer.Ordinal);
        public void Dispose() { foreach (var t in ByName.Values) t.Dispose(); }
    }

    static readonly HashSet<string> FloatTypes = ["F64", "F32", "F16", "BF16"];

    /// <summary>Checks the file's header against what is expected (names, shapes, dtypes: nothing is read before), then
    /// reads the tensors and checks their values.</summary>
    static LoadedTensors ReadTensors(string weights, IReadOnlyList<ExpectedTensor> expected)
    {
        var (entries, _, _) = SafeTensors.ReadHeader(weights);
        var byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
        var problems = new List<string>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        var source = new Dictionary<string, string>(StringComparer.Ordinal);     // parameter name → name in the file
        var forkCopies = new Dictionary<string, string>(StringComparer.Ordinal); // lora_B name in the file → lora_A parameter name
        string Shape(long[] s) => $"[{string.Join(", ", s)}]";
        foreach (var e in expected)
        {
            string? found = byName.ContainsKey(e.Name) ? e.Name : null;
            if (e.Name.EndsWith(".lora_magnitude_vector", StringComparison.Ordinal))
            {
                string old = e.Name + ".weight";
                if (byName.ContainsKey(old))
                {
                    if (found is not null) problems.Add($"{e.Name} and {old} are both present (PEFT's name and the kit's old name for one magnitude)");
                    found = old;
                }
            }
            if (found is null) { problems.Add($"missing tensor {e.Name} (shape {Shape(e.Shape)})"); continue; }
            used.Add(found);
            var entry = byName[found];
            if (!entry.Shape.SequenceEqual(e.Shape)) problems.Add($"{found}: file has shape {Shape(entry.Shape)}, model expects {Shape(e.Shape)}");
            else if (!FloatTypes.Contains(entry.DType)) problems.Add($"{found}: dtype {entry.DType} is not a floating-point type");
            else source[e.Name] = found;
            if (e.IsMora && e.Name.EndsWith(".lora_A.weight", StringComparison.Ordinal))
            {
                string copy = e.Name[..^"lora_A.weight".Length] + "lora_B.weight";
                if (byName.TryGetValue(copy, out var c))
                {
                    used.Add(copy);
                    if (!c.Shape.SequenceEqual(e.Shape)) problems.Add($"{copy}: file has shape {Shape(c.Shape)}, but as the fork's copy of M it must equal lora_A.weight {Shape(e.Shape)}");
                    else forkCopies[copy] = e.Name;
                }
            }
        }
        problems.AddRange(byName.Keys.Where(k => !used.Contains(k)).Order(StringComparer.Ordinal)
            .Select(k => $"unexpected tensor {k} (no adapted module has it)"));
        if (problems.Count > 0) throw new AdapterMismatchException(weights, TensorMatch.Describe(weights, problems), problems);

        var (tensors, _) = SafeTensors.Load(weights);
        var result = new LoadedTensors();
        try
        {
            foreach (var (name, t) in tensors)
            {
                using var finite = isfinite(t).all();
                if (!finite.item<bool>())
                {
                    using var bad = (~isfinite(t)).sum();
                    throw new AdapterFormatException(weights, name, null, $"{bad.item<long>()} of {t.numel()} values are not finite (NaN or ±inf)");
                }
            }
            foreach (var (copy, param) in forkCopies)
            {
                var a = tensors[source[param]];
                var b = tensors[copy];
                if (a.dtype != b.dtype || !a.bytes.SequenceEqual(b.bytes))
                    throw new AdapterFormatException(weights, copy, null,
                        $"differs from {source[param]}: the MoRA fork stores M twice (lora_B is the same module as lora_A), so the copy must equal M exactly");
            }
            foreach (var (param, name) in source) { result.ByName[param] = tensors[name]; tensors.Remove(name); }
        }
        catch { result.Dispose(); throw; }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
        return result;
    }

    static void CopyInto(nn.Module model, LoadedTensors loaded)
    {
        var targets = Peft.Adapters(model).SelectMany(a => a.Layer.AdapterParameters().Select(p => (Key: Prefix + a.Name + "." + p.Name, p.Parameter))).ToList();
        using var _ = no_grad();
        foreach (var (key, p) in targets)
        {
            using var moved = loaded.ByName[key].to(p.dtype, p.device);
            p.copy_(moved);
        }
    }

    // ------------------------------------------------------------------------------------------------------------
    // Files and fields

    /// <summary>The adapter folder as a full path; a missing one is a <see cref="FileNotFoundException"/> naming it.</summary>
    static string Folder(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        if (!Directory.Exists(full))
            throw File.Exists(full)
                ? new AdapterFormatException(full, null, null, "is a file; an adapter is a folder holding adapter_config.json and adapter_model.safetensors")
                : new FileNotFoundException($"adapter folder not found: {full} (an adapter is a folder holding {ConfigFile} and {WeightsFile})", full);
        return full;
    }

    /// <summary>A file of the adapter folder, checked to be a regular file inside it, of 1 to <paramref name="maxBytes"/>
    /// bytes: a symbolic link, a folder, a pipe or device (which report no size) or an oversized file is refused before
    /// it is opened.</summary>
    static string RegularFile(string dir, string name, long maxBytes)
    {
        string full = Path.GetFullPath(Path.Combine(dir, name));
        if (!string.Equals(Path.GetDirectoryName(full), dir, StringComparison.Ordinal))
            throw new AdapterFormatException(full, null, null, $"lies outside the adapter folder {dir}");
        var info = new FileInfo(full);
        if (info.LinkTarget is not null || (info.Exists && info.Attributes.HasFlag(FileAttributes.ReparsePoint)))
            throw new AdapterFormatException(full, null, null, "is a symbolic link; the kit reads an adapter's files only as regular files inside its folder");
        if (!info.Exists)
        {
            if (Directory.Exists(full)) throw new AdapterFormatException(full, null, null, "is a folder, not a file");
            throw new FileNotFoundException($"adapter file not found: {full}", full);
        }
        if (info.Length == 0) throw new AdapterFormatException(full, null, null, "is empty, or not a regular file (a pipe or a device)");
        if (info.Length > maxBytes) throw new AdapterFormatException(full, null, null, $"is {info.Length:N0} bytes, more than the {maxBytes:N0} the kit reads for this file");
        return full;
    }

    static JsonDocument ReadJson(string path)
    {
        byte[] bytes;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            if (stream.Length > MaxConfigBytes) throw new AdapterFormatException(path, null, null, $"is more than {MaxConfigBytes:N0} bytes");
            bytes = new byte[stream.Length];
            stream.ReadExactly(bytes);
        }
        try { return JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 32, AllowDuplicateProperties = false }); }
        catch (JsonException e) { throw new AdapterFormatException(path, null, null, $"invalid JSON at line {e.LineNumber + 1}: {e.Message}", e); }
    }

    /// <summary>The top-level fields of a JSON object; a duplicated key is refused (Python would keep the last silently).</summary>
    static Dictionary<string, JsonElement> Keys(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new AdapterFormatException(path, null, null, $"must hold a JSON object, not {root.ValueKind}");
        var keys = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var p in root.EnumerateObject())
            if (!keys.TryAdd(p.Name, p.Value)) throw Bad(path, p.Name, p.Value, "appears twice");
        return keys;
    }

    static AdapterFormatException Bad(string path, string field, JsonElement? value, string problem, Exception? inner = null) =>
        new(path, field, value is { ValueKind: not JsonValueKind.Undefined } v ? v.GetRawText() : null, problem, inner);

    static bool IsOff(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.False => true,
        JsonValueKind.Array => v.GetArrayLength() == 0,
        JsonValueKind.Object => !v.EnumerateObject().Any(),
        _ => false,
    };

    static int Int(string path, Dictionary<string, JsonElement> keys, string field, bool required, int fallback)
    {
        if (!keys.TryGetValue(field, out var v))
            return required ? throw Bad(path, field, null, "is missing (PEFT writes it in every adapter_config.json)") : fallback;
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Bad(path, field, v, "must be an integer");
    }

    static double Num(string path, Dictionary<string, JsonElement> keys, string field, bool required, double fallback)
    {
        if (!keys.TryGetValue(field, out var v))
            return required ? throw Bad(path, field, null, "is missing (PEFT writes it in every adapter_config.json)") : fallback;
        return v.ValueKind == JsonValueKind.Number && double.IsFinite(v.GetDouble()) ? v.GetDouble() : throw Bad(path, field, v, "must be a finite number");
    }

    static bool Bool(string path, Dictionary<string, JsonElement> keys, string field, bool fallback)
    {
        if (!keys.TryGetValue(field, out var v)) return fallback;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Bad(path, field, v, "must be true or false"),
        };
    }

    static List<string> StringList(string path, string field, JsonElement v, bool allowEmpty)
    {
        if (v.ValueKind != JsonValueKind.Array) throw Bad(path, field, v, "must be a list of module names or one regex string");
        var list = new List<string>();
        foreach (var e in v.EnumerateArray())
            list.Add(e.ValueKind == JsonValueKind.String && e.GetString()!.Length > 0 ? e.GetString()! : throw Bad(path, field, v, $"entry {e.GetRawText()} is not a non-empty string"));
        if (!allowEmpty && list.Count == 0) throw Bad(path, field, v, "an empty list adapts nothing");
        return list;
    }

    /// <summary>The config property named by an <see cref="ArgumentException"/> from validation or planning, as the
    /// adapter_config.json field it came from.</summary>
    static readonly Dictionary<string, string> FieldOf = new()
    {
        [nameof(AdapterConfig.R)] = "r", [nameof(AdapterConfig.Alpha)] = "lora_alpha", [nameof(AdapterConfig.Dropout)] = "lora_dropout",
        [nameof(AdapterConfig.TargetModules)] = "target_modules", [nameof(AdapterConfig.TargetModulesRegex)] = "target_modules",
        [nameof(AdapterConfig.ExcludeModules)] = "exclude_modules", [nameof(AdapterConfig.ExcludeModulesRegex)] = "exclude_modules",
        [nameof(AdapterConfig.RankPattern)] = "rank_pattern", [nameof(AdapterConfig.AlphaPattern)] = "alpha_pattern",
        [nameof(AdapterConfig.LayersToTransform)] = "layers_to_transform", [nameof(AdapterConfig.LayersPattern)] = "layers_pattern",
        [nameof(AdapterConfig.MoraType)] = "mora_type", [nameof(AdapterConfig.Init)] = "init_lora_weights", [nameof(AdapterConfig.RHatRule)] = "rhat_rule",
    };

    static AdapterFormatException FromArgument(string path, ArgumentException e, Dictionary<string, JsonElement>? keys)
    {
        string? field = e.ParamName is { } p && FieldOf.TryGetValue(p, out var f) ? f : e.ParamName;
        string? value = field is not null && keys is not null && keys.TryGetValue(field, out var v) ? v.GetRawText() : null;
        string message = e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "");
        return new AdapterFormatException(path, field, value, message, e);
    }
}

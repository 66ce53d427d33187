using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Adapters;

/// <summary>An adapter file that does not fit the model: every missing, unexpected or mis-shaped tensor is listed.</summary>
public sealed class AdapterMismatchException(string message, IReadOnlyList<string> problems) : ArgumentException(message)
{
    public IReadOnlyList<string> Problems { get; } = problems;
}

/// <summary>
/// Saves and loads an adapter alone, in the layout of PEFT and of the MoRA reference fork, so an adapter trained here
/// loads there and back: <c>adapter_model.safetensors</c> with tensors named
/// <c>base_model.model.&lt;module path&gt;.lora_A.weight</c> (MoRA's M; LoRA's A), <c>.lora_B.weight</c>,
/// <c>.lora_magnitude_vector.weight</c> (DoRA), and <c>adapter_config.json</c> with PEFT's LoraConfig fields plus the
/// fork's <c>use_mora</c> and <c>mora_type</c>. What PEFT has no field for (the r̂ rounding rule, design names) goes to
/// <c>mora_notebooks.json</c> beside them, so PEFT's strict config parser is not disturbed.
/// </summary>
public static class AdapterIO
{
    public const string WeightsFile = "adapter_model.safetensors";
    public const string ConfigFile = "adapter_config.json";
    public const string KitFile = "mora_notebooks.json";
    public const string Prefix = "base_model.model.";

    /// <summary>Writes the adapters of <paramref name="model"/> (injected with <paramref name="config"/>) into a folder.</summary>
    public static void Save(nn.Module model, AdapterConfig config, string directory)
    {
        if (config.Method == AdapterMethod.Full)
            throw new NotSupportedException("full fine-tuning has no adapter to save; save the model's weights instead");
        var adapters = Peft.Adapters(model);
        if (adapters.Count == 0) throw new ArgumentException("the model has no adapters to save", nameof(model));
        foreach (var (name, a) in adapters)
            if (a.Merged) throw new InvalidOperationException($"{name} is merged; unmerge before saving the adapter alone");

        Directory.CreateDirectory(directory);
        var tensors = adapters.SelectMany(a => a.Layer.AdapterParameters().Select(p => (Prefix + a.Name + "." + p.Name, (Tensor)p.Parameter)));
        SafeTensors.Save(Path.Combine(directory, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });

        bool all = config.TargetModules is [AdapterConfig.AllLinear];
        var peft = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["r"] = config.R,
            ["lora_alpha"] = config.Alpha,
            ["lora_dropout"] = config.Dropout,
            ["target_modules"] = all ? AdapterConfig.AllLinear : new JsonArray(config.TargetModules.Select(t => (JsonNode)JsonValue.Create(t)!).ToArray()),
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["use_rslora"] = config.UseRsLora,
            ["use_dora"] = config.Method == AdapterMethod.Dora,
            ["use_mora"] = config.Method == AdapterMethod.Mora,
            ["mora_type"] = (int)config.MoraType,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["modules_to_save"] = null,
            ["base_model_name_or_path"] = null,
        };
        AtomicFile.WriteText(Path.Combine(directory, ConfigFile), peft.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        var kit = new JsonObject
        {
            ["method"] = config.Method.ToString().ToLowerInvariant(),
            ["mora_design"] = config.MoraType.ToString(),
            ["rhat_rule"] = config.RHatRule.ToString(),
            ["exclude_modules"] = new JsonArray(config.ExcludeModules.Select(t => (JsonNode)JsonValue.Create(t)!).ToArray()),
            ["modules"] = new JsonObject(adapters.Select(a => KeyValuePair.Create(a.Name, (JsonNode?)new JsonObject
            {
                ["out_features"] = a.Layer.OutFeatures,
                ["in_features"] = a.Layer.InFeatures,
                ["r_hat"] = a.Layer is MoraLinear m ? m.RHat : null,
                ["mora_type"] = a.Layer is MoraLinear m2 ? (int)m2.Type : null,
            }))),
        };
        AtomicFile.WriteText(Path.Combine(directory, KitFile), kit.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Reads <c>adapter_config.json</c> (and the kit's sidecar if present) into an <see cref="AdapterConfig"/>.</summary>
    public static AdapterConfig ReadConfig(string directory)
    {
        string path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"adapter config not found: {path}", path);
        JsonNode root;
        try { root = JsonNode.Parse(File.ReadAllText(path)) ?? throw new FormatException($"{path}: empty JSON"); }
        catch (JsonException e) { throw new FormatException($"{path}: invalid JSON at line {e.LineNumber + 1}: {e.Message}", e); }

        T Get<T>(string key, T fallback)
        {
            var node = root[key];
            if (node is null) return fallback;
            try { return node.GetValue<T>(); }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            { throw new FormatException($"{path}: '{key}' should be a {typeof(T).Name}, got {node.ToJsonString()}", e); }
        }
        string peftType = Get("peft_type", "LORA");
        if (peftType != "LORA") throw new FormatException($"{path}: peft_type '{peftType}' is not supported (only LORA, with use_mora / use_dora)");
        var targetsNode = root["target_modules"] ?? throw new FormatException($"{path}: target_modules is missing");
        IReadOnlyList<string> targets = targetsNode is JsonArray arr ? arr.Select(n => n!.GetValue<string>()).ToList() : [targetsNode.GetValue<string>()];
        var method = Get("use_mora", false) ? AdapterMethod.Mora : Get("use_dora", false) ? AdapterMethod.Dora : AdapterMethod.Lora;
        var config = new AdapterConfig
        {
            Method = method,
            R = Get("r", 8),
            Alpha = Get("lora_alpha", 8.0),
            Dropout = Get("lora_dropout", 0.0),
            UseRsLora = Get("use_rslora", false),
            MoraType = MoraTypes.Parse(Get("mora_type", 1).ToString(System.Globalization.CultureInfo.InvariantCulture), "mora_type"),
            TargetModules = targets,
        };
        string kitPath = Path.Combine(directory, KitFile);
        if (File.Exists(kitPath))
        {
            try
            {
                var kit = JsonNode.Parse(File.ReadAllText(kitPath))!;
                if (kit["rhat_rule"]?.GetValue<string>() is { } rule)
                    config = config with { RHatRule = Enum.Parse<RHatRule>(rule) };
                if (kit["exclude_modules"] is JsonArray ex)
                    config = config with { ExcludeModules = ex.Select(n => n!.GetValue<string>()).ToList() };
            }
            catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
            { throw new FormatException($"{kitPath}: {e.Message}", e); }
        }
        try { return config.Validate(); }
        catch (ArgumentException e) { throw new FormatException($"{path}: {e.Message}", e); }
    }

    /// <summary>Loads an adapter folder into <paramref name="model"/>: injects adapters from its config if the model has
    /// none, then copies the tensors in. Throws <see cref="AdapterMismatchException"/> listing every mismatch.</summary>
    public static AdapterConfig Load(nn.Module model, string directory)
    {
        var config = ReadConfig(directory);
        if (Peft.Adapters(model).Count == 0) Peft.Inject(model, config);
        LoadWeights(model, directory);
        return config;
    }

    /// <summary>Copies the adapter tensors of a folder into a model that already has matching adapters.</summary>
    public static void LoadWeights(nn.Module model, string directory)
    {
        string path = Path.Combine(directory, WeightsFile);
        var (tensors, _) = SafeTensors.Load(path);
        try
        {
            var expected = Peft.Adapters(model)
                .SelectMany(a => a.Layer.AdapterParameters().Select(p => (Key: Prefix + a.Name + "." + p.Name, p.Parameter)))
                .ToList();
            var problems = TensorMatch.Problems(expected.Select(e => (e.Key, (Tensor)e.Parameter)), tensors, "file", "no adapted module has it");
            if (problems.Count > 0) throw new AdapterMismatchException(TensorMatch.Describe(path, problems), problems);
            using var _ = no_grad();
            foreach (var (key, p) in expected)
            {
                using var moved = tensors[key].to(p.dtype, p.device);
                p.copy_(moved);
            }
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }
}

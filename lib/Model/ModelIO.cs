using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Model;

/// <summary>A checkpoint whose tensors do not fit the model: every missing, unexpected or wrongly shaped tensor is listed.</summary>
public sealed class CheckpointMismatchException(string message, IReadOnlyList<string> problems) : ArgumentException(message)
{
    public IReadOnlyList<string> Problems { get; } = problems;
}

/// <summary>
/// Model weights in the Hugging Face layout: a folder with <c>config.json</c> and <c>model.safetensors</c> (or shards
/// named by <c>model.safetensors.index.json</c>), tensor names <c>model.layers.0.self_attn.q_proj.weight</c> …, and an
/// optional <c>tokenizer.json</c>. Only safetensors are read (no pickle, nothing executable). Files are written atomically.
/// </summary>
public static class ModelIO
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";
    public const string TokenizerFile = "tokenizer.json";

    /// <summary>The model's weights under their Hugging Face names: adapters are left out (or folded in with
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

    /// <summary>The model's base parameters under their Hugging Face names: a wrapped layer's <c>base_layer.weight</c>
    /// under the plain name (with the adapter that wraps it), the adapters' own parameters left out.</summary>
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

    /// <summary>Writes <c>config.json</c> and <c>model.safetensors</c> (Hugging Face layout) into <paramref name="directory"/>.</summary>
    public static void Save(LlamaForCausalLM model, string directory, bool mergeAdapters = false)
    {
        Directory.CreateDirectory(directory);
        var tensors = BaseStateDict(model, mergeAdapters);
        try
        {
            string dtype = model.DType switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", ScalarType.Float64 => "float64", _ => "float32" };
            SafeTensors.Save(Path.Combine(directory, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
            AtomicFile.WriteText(Path.Combine(directory, ConfigFile), model.Config.ToJson(dtype));
        }
        finally { foreach (var (_, t) in tensors) t.Dispose(); }
    }

    /// <summary>Reads <c>config.json</c> of a folder.</summary>
    public static LlamaConfig ReadConfig(string directory)
    {
        string path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"no {ConfigFile} in {Path.GetFullPath(directory)} (a model folder needs config.json and model.safetensors)", path);
        return LlamaConfig.FromJson(File.ReadAllText(path), path);
    }

    /// <summary>Builds the model a folder describes and loads its weights.</summary>
    public static LlamaForCausalLM Load(string directory, Device? device = null, ScalarType? dtype = null)
    {
        var config = ReadConfig(directory);
        var model = new LlamaForCausalLM(config, device, dtype);
        try { LoadWeights(model, directory); }
        catch { model.Dispose(); throw; }
        return model;
    }

    /// <summary>The weight files of a folder: the shards an index names, or <c>model.safetensors</c>.</summary>
    public static IReadOnlyList<string> WeightFiles(string directory)
    {
        string index = Path.Combine(directory, IndexFile);
        if (File.Exists(index))
        {
            JsonObject map;
            try { map = JsonNode.Parse(File.ReadAllText(index))?["weight_map"] as JsonObject ?? throw new FormatException($"{index}: no 'weight_map' object"); }
            catch (JsonException e) { throw new FormatException($"{index}: invalid JSON ({e.Message})", e); }
            var shards = map.Select(kv => kv.Value?.GetValue<string>() ?? throw new FormatException($"{index}: weight_map['{kv.Key}'] is not a file name")).Distinct().ToList();
            foreach (var s in shards)
                if (Path.GetFileName(s) != s) throw new FormatException($"{index}: shard name '{s}' must be a plain file name in the same folder");
            return shards.Select(s => Path.Combine(directory, s)).ToList();
        }
        string single = Path.Combine(directory, WeightsFile);
        if (!File.Exists(single))
        {
            // Pickled PyTorch weights can run code when read; the kit reads safetensors only and says so.
            var pickles = Directory.Exists(directory)
                ? Directory.GetFiles(directory).Select(Path.GetFileName).Where(f => f!.EndsWith(".bin") || f.EndsWith(".pt") || f.EndsWith(".pth") || f.EndsWith(".ckpt")).ToList()
                : [];
            string hint = pickles.Count == 0 ? ""
                : $" It holds {string.Join(", ", pickles)}: pickled PyTorch weights, which can execute code when loaded, so the kit never reads them;" +
                  " convert them once with Python's safetensors (safetensors.torch.save_file) or re-save the model with save_pretrained(safe_serialization=True).";
            throw new FileNotFoundException($"no {WeightsFile} or {IndexFile} in {Path.GetFullPath(directory)}.{hint}", single);
        }
        return [single];
    }

    /// <summary>Copies the weights of a Hugging Face folder into a model (adapters, if any, are kept and untouched).
    /// Throws <see cref="CheckpointMismatchException"/> listing every missing, unexpected or wrongly shaped tensor
    /// before anything is copied.</summary>
    public static void LoadWeights(LlamaForCausalLM model, string directory)
    {
        var files = WeightFiles(directory);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var f in files)
            {
                var (part, _) = SafeTensors.Load(f);
                foreach (var (k, v) in part)
                    if (!tensors.TryAdd(k, v)) { v.Dispose(); throw new FormatException($"{f}: tensor '{k}' also appears in another shard"); }
            }
            var targets = BaseParameters(model);
            var problems = TensorMatch.Problems(targets.Select(t => (t.Name, (Tensor)t.Parameter)), tensors, "file", "the model has no such weight",
                k => k.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)          // a buffer older checkpoints store
                     || k == "lm_head.weight" && model.Config.TieWordEmbeddings);          // some tied checkpoints repeat it
            if (problems.Count > 0) throw new CheckpointMismatchException(TensorMatch.Describe(Path.GetFullPath(directory), problems), problems);
            using var _ = no_grad();
            foreach (var (name, p, _) in targets)
            {
                using var moved = tensors[name].to(p.dtype, p.device);
                p.copy_(moved);
            }
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }
}

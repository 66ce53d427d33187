using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
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
/// Model weights in the Hugging Face layout, read and written as transformers 4.40 does: a folder with
/// <c>config.json</c>, <c>generation_config.json</c> and <c>model.safetensors</c> (or shards
/// <c>model-0000k-of-0000n.safetensors</c> named by <c>model.safetensors.index.json</c>), tensor names
/// <c>model.layers.0.self_attn.q_proj.weight</c> …, and an optional <c>tokenizer.json</c>. Only safetensors are read (no
/// pickle, nothing executable), only regular files inside the folder (<see cref="SafeFile"/>).
/// <para>Loading checks before it allocates: config.json is parsed and validated (<see cref="LlamaConfig.FromJson"/>),
/// the model's size is estimated, every safetensors header is read and its names, shapes, dtypes and counts are compared
/// with what the config describes; only then is the model built and the tensors copied in, one at a time, each checked
/// to be finite. Errors: <see cref="ModelFormatException"/> (config, index, folder), <see cref="SafeTensorsFormatException"/>
/// (a malformed safetensors file), <see cref="CheckpointMismatchException"/> (tensors that do not fit),
/// <see cref="FileNotFoundException"/> (no config.json or no weights).</para>
/// <para>Saving never leaves a half-saved model readable: into a new (or empty) folder everything is written into a
/// temporary sibling folder that is renamed into place; into a folder that already holds files, config.json is removed
/// first and written last, so until the weights are complete the folder has no config.json and <see cref="Load"/> refuses
/// it (a folder with weights but no config.json is an interrupted save, never a model).</para>
/// </summary>
public static class ModelIO
{
    public const string ConfigFile = "config.json";
    public const string GenerationConfigFile = "generation_config.json";
    public const string WeightsFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";
    public const string TokenizerFile = "tokenizer.json";

    /// <summary>transformers' default <c>max_shard_size</c> ("5GB" = 5·10⁹ bytes since 4.35).</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    static readonly Regex ShardName = new(@"^model-\d{5}-of-\d{5}\.safetensors$", RegexOptions.CultureInvariant);

    /// <summary>The model's weights under their Hugging Face names (its own parameters; a tied head is not repeated),
    /// copied; the caller disposes the tensors. A model with adapters (Mora.Adapters' <c>Peft.Inject</c>) holds other
    /// parameters (<c>base_layer</c>, <c>lora_A</c>, …) and is refused, naming them: its base or merged weights are
    /// <c>Mora.Adapters.AdaptedModelIO</c>'s.</summary>
    public static List<(string Name, Tensor Tensor)> StateDict(LlamaForCausalLM model)
    {
        var parameters = Parameters(model);
        using var _ = no_grad();
        return parameters.Select(p => (p.Name, p.Parameter.detach().clone())).ToList();
    }

    /// <summary>The model's parameters under their Hugging Face names, which must be exactly the weights its config
    /// describes (<see cref="LlamaConfig.TensorShapes"/>): anything else (an injected adapter) is refused, naming it.</summary>
    static List<(string Name, Parameter Parameter)> Parameters(LlamaForCausalLM model)
    {
        var expected = model.Config.TensorShapes().Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var result = model.named_parameters().Select(np => (np.name, np.parameter)).ToList();
        var other = result.Select(r => r.name).Where(n => !expected.Contains(n)).ToList();
        if (other.Count > 0)
            throw new ArgumentException($"the model holds parameters that are not weights of its LLaMA config ({string.Join(", ", other.Take(3))}" +
                $"{(other.Count > 3 ? $", … {other.Count} in all" : "")}): a model with adapters is saved and loaded through " +
                "Mora.Adapters.AdaptedModelIO (its base weights, or merged with mergeAdapters: true)", nameof(model));
        return result;
    }

    // ---- saving

    /// <summary>
    /// Writes the model as transformers' <c>save_pretrained(safe_serialization=True)</c>: config.json
    /// (<see cref="LlamaConfig.ToJson"/>), generation_config.json, and the weights in one <c>model.safetensors</c>, or, when
    /// they exceed <paramref name="maxShardBytes"/>, in shards <c>model-0000k-of-0000n.safetensors</c> with
    /// <c>model.safetensors.index.json</c> (<c>metadata.total_size</c> in bytes, <c>weight_map</c>). Shards are cut as
    /// transformers 4.40's <c>shard_checkpoint</c> does: tensors in state-dict order, a new shard when the next tensor
    /// would take the current one past the limit (a tensor larger than the limit gets a shard of its own). Weight files
    /// of an earlier save that this one does not write (the single file, the index, other shards) are removed, so the
    /// folder never mixes two saves. See the class summary for how a half-saved folder is never read.
    /// </summary>
    public static void Save(LlamaForCausalLM model, string directory, long maxShardBytes = DefaultMaxShardBytes)
    {
        if (maxShardBytes <= 0) throw new ArgumentException($"the largest shard must be positive, got {maxShardBytes}", nameof(maxShardBytes));
        var weights = StateDict(model);
        try { Save(model, weights, directory, maxShardBytes); }
        finally { foreach (var (_, t) in weights) t.Dispose(); }
    }

    /// <summary>Writes <paramref name="model"/>'s config (and dtype) with <paramref name="weights"/>, which must be
    /// exactly the tensors its config describes under their Hugging Face names and shapes (<see cref="StateDict"/>, or for a
    /// model with adapters <c>Mora.Adapters.AdaptedModelIO.BaseStateDict</c>), as <see cref="Save(LlamaForCausalLM, string, long)"/>
    /// does. The tensors are not disposed.</summary>
    public static void Save(LlamaForCausalLM model, IReadOnlyList<(string Name, Tensor Tensor)> weights, string directory, long maxShardBytes = DefaultMaxShardBytes)
    {
        if (maxShardBytes <= 0) throw new ArgumentException($"the largest shard must be positive, got {maxShardBytes}", nameof(maxShardBytes));
        var tensors = weights.ToList();
        var given = tensors.ToDictionary(t => t.Name, t => t.Tensor.shape, StringComparer.Ordinal);
        var problems = new List<string>();
        foreach (var (name, shape) in model.Config.TensorShapes())
        {
            if (!given.Remove(name, out var at)) problems.Add($"missing {name}");
            else if (!at.SequenceEqual(shape)) problems.Add($"{name} has shape [{string.Join(", ", at)}], the config's is [{string.Join(", ", shape)}]");
        }
        problems.AddRange(given.Keys.Select(n => $"{n} is not a weight of the config"));
        if (problems.Count > 0)
            throw new ArgumentException($"the weights to save do not fit the model's config: {string.Join("; ", problems.Take(5))}{(problems.Count > 5 ? $"; … {problems.Count} in all" : "")}", nameof(weights));
        string dtype = model.DType switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", ScalarType.Float64 => "float64", _ => "float32" };
        string configJson = model.Config.ToJson(dtype), generationJson = model.Config.GenerationConfigJson();
        var shards = Shard(tensors, maxShardBytes);
        string full = Path.GetFullPath(directory);
        bool fresh = !Directory.Exists(full) || !Directory.EnumerateFileSystemEntries(full).Any();
        if (fresh)
        {
            string parent = Path.GetDirectoryName(full.TrimEnd(Path.DirectorySeparatorChar)) ?? throw new ArgumentException($"cannot save into the root {full}", nameof(directory));
            Directory.CreateDirectory(parent);
            string tmp = Path.Combine(parent, $".{Path.GetFileName(full.TrimEnd(Path.DirectorySeparatorChar))}.saving-{Environment.ProcessId}-{Guid.NewGuid():N}");
            try
            {
                Directory.CreateDirectory(tmp);
                WriteWeights(tmp, shards);
                AtomicFile.WriteText(Path.Combine(tmp, GenerationConfigFile), generationJson);
                AtomicFile.WriteText(Path.Combine(tmp, ConfigFile), configJson);
                if (Directory.Exists(full)) Directory.Delete(full);      // empty (checked above)
                Directory.Move(tmp, full);
            }
            finally { if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true); }
        }
        else
        {
            // config.json marks a complete model: remove it first, write it last.
            string config = Path.Combine(full, ConfigFile);
            if (File.Exists(config)) File.Delete(config);
            var written = WriteWeights(full, shards);
            foreach (var file in Directory.GetFiles(full).Select(Path.GetFileName))
                if ((file == WeightsFile || file == IndexFile || ShardName.IsMatch(file!)) && !written.Contains(file!))
                    File.Delete(Path.Combine(full, file!));
            AtomicFile.WriteText(Path.Combine(full, GenerationConfigFile), generationJson);
            AtomicFile.WriteText(config, configJson);
        }
    }

    /// <summary>Groups tensors into shards of at most <paramref name="maxShardBytes"/> (transformers 4.40's shard_checkpoint).</summary>
    static List<List<(string Name, Tensor Tensor)>> Shard(List<(string Name, Tensor Tensor)> tensors, long maxShardBytes)
    {
        var shards = new List<List<(string, Tensor)>> { new() };
        long current = 0;
        foreach (var (name, t) in tensors)
        {
            long bytes = t.numel() * t.ElementSize;
            if (current + bytes > maxShardBytes && shards[^1].Count > 0) { shards.Add(new()); current = 0; }
            shards[^1].Add((name, t));
            current += bytes;
        }
        return shards;
    }

    /// <summary>Writes the weight files (each atomically) and returns their names.</summary>
    static HashSet<string> WriteWeights(string dir, List<List<(string Name, Tensor Tensor)>> shards)
    {
        var meta = new Dictionary<string, string> { ["format"] = "pt" };
        if (shards.Count == 1)
        {
            SafeTensors.Save(Path.Combine(dir, WeightsFile), shards[0], meta);
            return [WeightsFile];
        }
        var names = new HashSet<string> { IndexFile };
        var map = new JsonObject();
        long total = 0;
        for (int i = 0; i < shards.Count; i++)
        {
            string file = $"model-{i + 1:00000}-of-{shards.Count:00000}.safetensors";
            SafeTensors.Save(Path.Combine(dir, file), shards[i], meta);
            names.Add(file);
            foreach (var (name, t) in shards[i]) { map[name] = file; total += t.numel() * t.ElementSize; }
        }
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = map };
        AtomicFile.WriteText(Path.Combine(dir, IndexFile), PythonJson.Serialize(index));
        return names;
    }

    /// <summary>True when a folder holds a complete save: config.json and the weight files it needs (without reading them).</summary>
    public static bool IsComplete(string directory)
    {
        if (!File.Exists(Path.Combine(directory, ConfigFile))) return false;
        try { return WeightFiles(directory).All(File.Exists); }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException) { return false; }
    }

    // ---- loading

    /// <summary>Reads and validates <c>config.json</c> of a folder (<see cref="LlamaConfig.FromJson"/>).</summary>
    public static LlamaConfig ReadConfig(string directory)
    {
        string path = Path.GetFullPath(Path.Combine(directory, ConfigFile));
        if (!File.Exists(path) && new FileInfo(path).LinkTarget is null)
        {
            bool weights = File.Exists(Path.Combine(directory, WeightsFile)) || File.Exists(Path.Combine(directory, IndexFile));
            throw new FileNotFoundException($"no {ConfigFile} in {Path.GetFullPath(directory)} (a model folder needs config.json and model.safetensors" +
                (weights ? "; this one has weights without config.json, the mark of an interrupted save, so it is not read" : "") + ")", path);
        }
        string text = SafeFile.ReadText(path, directory, SafeFile.MaxJsonBytes, (p, m) => new ModelFormatException(p, null, m));
        return LlamaConfig.FromJson(text, path);
    }

    /// <summary>Builds the model a folder describes and loads its weights, checking everything it can before allocating
    /// (see the class summary).</summary>
    /// <param name="directory">the model folder</param>
    /// <param name="device">where the weights live (CPU when null)</param>
    /// <param name="dtype">weight dtype (float32 when null)</param>
    /// <param name="allowNonFinite">load weights that hold NaN or ±∞ instead of refusing them (off by default)</param>
    public static LlamaForCausalLM Load(string directory, Device? device = null, ScalarType? dtype = null, bool allowNonFinite = false)
    {
        var config = ReadConfig(directory);
        string configPath = Path.GetFullPath(Path.Combine(directory, ConfigFile));
        try { config.CheckFits(dtype ?? ScalarType.Float32, device); }
        catch (ArgumentException e) { throw new ModelFormatException(configPath, null, e.Message.Split(" (Parameter")[0], e); }
        using var checkpoint = Checkpoint.Open(directory);
        checkpoint.Check(config.TensorShapes(), config.TieWordEmbeddings);
        var model = new LlamaForCausalLM(config, device, dtype);
        try { checkpoint.CopyInto(Parameters(model), config.TieWordEmbeddings, allowNonFinite, verifyFirst: false); }
        catch { model.Dispose(); throw; }
        return model;
    }

    /// <summary>
    /// The weight files of a folder, chosen as transformers does: <c>model.safetensors</c> when it exists (a stale index
    /// beside it is ignored), else the shards <c>model.safetensors.index.json</c> names (sorted). Throws
    /// <see cref="ModelFormatException"/> for a malformed index or a shard the folder lacks, and
    /// <see cref="FileNotFoundException"/> when there are no weights (naming pickled files, which are never read).
    /// </summary>
    public static IReadOnlyList<string> WeightFiles(string directory)
    {
        string dir = Path.GetFullPath(directory);
        string single = Path.Combine(dir, WeightsFile);
        if (IsFile(single)) return [single];
        string index = Path.Combine(dir, IndexFile);
        if (IsFile(index)) return IndexShards(dir, index);
        // Pickled PyTorch weights can run code when read; the kit reads safetensors only and says so.
        var pickles = Directory.Exists(dir)
            ? Directory.GetFiles(dir).Select(Path.GetFileName).Where(f => f!.EndsWith(".bin") || f.EndsWith(".pt") || f.EndsWith(".pth") || f.EndsWith(".ckpt")).ToList()
            : [];
        string hint = pickles.Count == 0 ? ""
            : $" It holds {string.Join(", ", pickles)}: pickled PyTorch weights, which can execute code when loaded, so the kit never reads them;" +
              " convert them once with Python's safetensors (safetensors.torch.save_file) or re-save the model with save_pretrained(safe_serialization=True).";
        throw new FileNotFoundException($"no {WeightsFile} or {IndexFile} in {dir}.{hint}", single);
    }

    /// <summary>A file (a link counts when its target is one), as Python's os.path.isfile.</summary>
    static bool IsFile(string path)
    {
        try { return File.Exists(SafeFile.RealPath(path)); }
        catch (IOException) { return File.Exists(path); }
    }

    /// <summary>The shard files an index names, after checking its JSON: an object with a <c>weight_map</c> object of
    /// plain file names (optional <c>metadata.total_size</c>, an integer), every one present in the folder.</summary>
    static List<string> IndexShards(string dir, string index)
    {
        var (map, _) = ReadIndex(dir, index);
        var shards = map.Values.Distinct().Order(StringComparer.Ordinal).ToList();
        foreach (var shard in shards)
            if (!IsFile(Path.Combine(dir, shard)))
            {
                string tensor = map.First(kv => kv.Value == shard).Key;
                throw new ModelFormatException(index, $"weight_map['{tensor}']", $"names the shard {shard}, which {dir} does not have");
            }
        return shards.Select(s => Path.Combine(dir, s)).ToList();
    }

    static (Dictionary<string, string> Map, long? TotalSize) ReadIndex(string dir, string index)
    {
        string text = SafeFile.ReadText(index, dir, SafeFile.MaxJsonBytes, (p, m) => new ModelFormatException(p, null, m));
        JsonObject root;
        try { root = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { MaxDepth = 16, AllowDuplicateProperties = false }) as JsonObject ?? throw new ModelFormatException(index, null, "is not a JSON object"); }
        catch (JsonException e) { throw new ModelFormatException(index, null, $"is not valid JSON ({e.Message})", e); }
        long? total = null;
        if (root["metadata"] is { } meta)
        {
            if (meta is not JsonObject m) throw new ModelFormatException(index, "metadata", "must be an object");
            if (m["total_size"] is { } ts)
            {
                if (ts is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<JsonElement>(out var e) || !e.TryGetInt64(out long t) || t < 0)
                    throw new ModelFormatException(index, "metadata.total_size", $"must be a non-negative integer (bytes), got {Short(ts)}");
                total = t;
            }
        }
        if (root["weight_map"] is not JsonObject wm)
            throw new ModelFormatException(index, "weight_map", root.ContainsKey("weight_map") ? "must be an object of tensor name → shard file" : "is missing");
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in wm)
        {
            if (value is not JsonValue v || v.GetValueKind() != JsonValueKind.String)
                throw new ModelFormatException(index, $"weight_map['{name}']", $"must be a shard file name (a string), got {Short(value)}");
            string file = v.GetValue<string>();
            if (file.Length == 0 || file is "." or ".." || Path.GetFileName(file) != file || file.IndexOfAny(['/', '\\', '\0']) >= 0)
                throw new ModelFormatException(index, $"weight_map['{name}']", $"shard name '{file}' must be a plain file name in the same folder");
            map[name] = file;
        }
        if (map.Count == 0) throw new ModelFormatException(index, "weight_map", "is empty");
        return (map, total);
    }

    static string Short(JsonNode? n) { string s = n?.ToJsonString() ?? "null"; return s.Length <= 60 ? s : s[..57] + "…"; }

    /// <summary>Copies the weights of a Hugging Face folder into a model (a model with adapters: <c>Mora.Adapters.AdaptedModelIO.LoadWeights</c>,
    /// which keeps them). Every header is checked first (<see cref="CheckpointMismatchException"/> listing every missing,
    /// unexpected or wrongly shaped tensor), then every tensor is read and checked (finite, a repeated tied head equal to
    /// the embedding) before the first one is copied, so a refused checkpoint leaves the model as it was.</summary>
    public static void LoadWeights(LlamaForCausalLM model, string directory, bool allowNonFinite = false) =>
        LoadWeights(model, Parameters(model), directory, allowNonFinite);

    /// <summary>As <see cref="LoadWeights(LlamaForCausalLM, string, bool)"/>, into <paramref name="targets"/>: the
    /// parameters that hold <paramref name="model"/>'s weights under their Hugging Face names (for a model with adapters,
    /// the wrapped layers' base weights).</summary>
    public static void LoadWeights(LlamaForCausalLM model, IReadOnlyList<(string Name, Parameter Parameter)> targets, string directory, bool allowNonFinite = false)
    {
        using var checkpoint = Checkpoint.Open(directory);
        checkpoint.Check(targets.Select(t => (t.Name, t.Parameter.shape)).ToList(), model.Config.TieWordEmbeddings);
        checkpoint.CopyInto(targets, model.Config.TieWordEmbeddings, allowNonFinite, verifyFirst: true);
    }

    /// <summary>The open weight files of a folder and where each tensor is.</summary>
    sealed class Checkpoint : IDisposable
    {
        readonly List<SafeTensors.Reader> _readers = new();
        readonly Dictionary<string, (SafeTensors.Reader Reader, SafeTensors.Entry Entry)> _tensors = new(StringComparer.Ordinal);
        string _folder = "";

        public static Checkpoint Open(string directory)
        {
            var c = new Checkpoint { _folder = Path.GetFullPath(directory) };
            try
            {
                var files = WeightFiles(directory);
                string index = Path.Combine(c._folder, IndexFile);
                bool sharded = files.Count != 1 || Path.GetFileName(files[0]) != WeightsFile;
                foreach (var f in files)
                {
                    // A regular file inside the folder (no pipe, device, or link outside), checked before it is opened.
                    SafeFile.Check(f, c._folder, 8, long.MaxValue, (p, m) => new ModelFormatException(p, null, m));
                    var reader = SafeTensors.Open(f, c._folder);
                    c._readers.Add(reader);
                    foreach (var e in reader.Entries)
                        if (!c._tensors.TryAdd(e.Name, (reader, e)))
                            throw new ModelFormatException(f, e.Name, $"also appears in {Path.GetFileName(c._tensors[e.Name].Reader.Path)}: a tensor must be in one shard");
                }
                if (sharded)
                {
                    // The index and the shards must agree: each tensor where the index says, nothing the index leaves out.
                    var (map, _) = ReadIndex(c._folder, index);
                    foreach (var (name, file) in map)
                    {
                        if (!c._tensors.TryGetValue(name, out var at))
                            throw new ModelFormatException(index, $"weight_map['{name}']", $"names a tensor that {file} does not hold");
                        if (Path.GetFileName(at.Reader.Path) != file)
                            throw new ModelFormatException(index, $"weight_map['{name}']", $"says {file}, but the tensor is in {Path.GetFileName(at.Reader.Path)}");
                    }
                    if (c._tensors.Keys.FirstOrDefault(k => !map.ContainsKey(k)) is { } unlisted)
                        throw new ModelFormatException(index, "weight_map", $"does not list '{unlisted}', which {Path.GetFileName(c._tensors[unlisted].Reader.Path)} holds");
                }
                return c;
            }
            catch { c.Dispose(); throw; }
        }

        string Where(string name) => _readers.Count > 1 ? $" (in {Path.GetFileName(_tensors[name].Reader.Path)})" : "";

        /// <summary>Compares the headers with the expected tensors: names, shapes, floating dtypes, and nothing else
        /// (a stored rotary_emb.inv_freq buffer and, for a tied model, a repeated lm_head.weight are tolerated).</summary>
        public void Check(IReadOnlyList<(string Name, long[] Shape)> expected, bool tied)
        {
            var problems = new List<string>();
            var known = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (name, shape) in expected)
            {
                known.Add(name);
                if (!_tensors.TryGetValue(name, out var t)) problems.Add($"missing tensor {name} (shape [{string.Join(", ", shape)}])");
                else if (!t.Entry.Shape.SequenceEqual(shape))
                    problems.Add($"{name}: file has shape [{string.Join(", ", t.Entry.Shape)}], model expects [{string.Join(", ", shape)}]{Where(name)}");
                else if (!SafeTensors.IsFloating(t.Entry.DType))
                    problems.Add($"{name}: file has dtype {t.Entry.DType}, not a floating-point type{Where(name)}");
            }
            string? embed = expected.Select(e => e.Name).FirstOrDefault(n => n == "model.embed_tokens.weight");
            foreach (var name in _tensors.Keys.Where(k => !known.Contains(k)).Order(StringComparer.Ordinal))
            {
                if (name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)) continue;   // a buffer older checkpoints store
                if (name == "lm_head.weight" && tied && embed is not null)
                {
                    var (head, emb) = (_tensors[name].Entry, _tensors[embed].Entry);
                    if (head.Shape.SequenceEqual(emb.Shape)) continue;                         // compared by value when loaded
                    problems.Add($"lm_head.weight: file has shape [{string.Join(", ", head.Shape)}], but tie_word_embeddings makes it the embedding [{string.Join(", ", emb.Shape)}]");
                    continue;
                }
                problems.Add($"unexpected tensor {name} (the model has no such weight){Where(name)}");
            }
            if (problems.Count > 0) throw new CheckpointMismatchException(TensorMatch.Describe(_folder, problems), problems);
        }

        /// <summary>Copies every target from the files (converted to its dtype and device). Each tensor is checked to be
        /// finite unless <paramref name="allowNonFinite"/>; a tied model's stored lm_head.weight must equal the stored
        /// embedding. With <paramref name="verifyFirst"/> all checks run over all tensors before the first copy.</summary>
        public void CopyInto(IReadOnlyList<(string Name, Parameter Parameter)> targets, bool tied, bool allowNonFinite, bool verifyFirst)
        {
            if (tied && _tensors.ContainsKey("lm_head.weight") && _tensors.ContainsKey("model.embed_tokens.weight"))
            {
                var (headReader, headEntry) = _tensors["lm_head.weight"];
                var (embReader, embEntry) = _tensors["model.embed_tokens.weight"];
                using var head = headReader.Read(headEntry);
                using var emb = embReader.Read(embEntry);
                bool same = head.dtype == emb.dtype && head.shape.SequenceEqual(emb.shape) && Equal(head, emb);
                if (!same)
                    throw new ModelFormatException(headReader.Path, "lm_head.weight",
                        $"differs from model.embed_tokens.weight, but config.json has tie_word_embeddings true: transformers would silently use the embedding as the head; the kit refuses (set tie_word_embeddings false if the head is separate)");
            }
            if (verifyFirst && !allowNonFinite)
                foreach (var (name, _) in targets)
                {
                    var (reader, entry) = _tensors[name];
                    using var t = reader.Read(entry);
                    CheckFinite(t, name, reader.Path);
                }
            using var _ = no_grad();
            foreach (var (name, p) in targets)
            {
                var (reader, entry) = _tensors[name];
                using var t = reader.Read(entry);
                if (!verifyFirst && !allowNonFinite) CheckFinite(t, name, reader.Path);
                using var moved = t.to(p.dtype, p.device);
                p.copy_(moved);
            }
        }

        static bool Equal(Tensor a, Tensor b)
        {
            using var eq = a.eq(b);
            using var all = eq.all();
            return all.item<bool>();
        }

        static void CheckFinite(Tensor t, string name, string file)
        {
            if (!t.is_floating_point() || t.numel() == 0) return;
            using var finite = t.isfinite();
            using var all = finite.all();
            if (all.item<bool>()) return;
            using var bad = finite.logical_not().sum();
            throw new ModelFormatException(file, name, $"holds {bad.item<long>():N0} non-finite values (NaN or ±∞); such weights are refused (ModelIO.Load(…, allowNonFinite: true) loads them anyway)");
        }

        public void Dispose() { foreach (var r in _readers) r.Dispose(); }
    }
}

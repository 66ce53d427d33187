using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.IO;
using Mora.Training;

namespace Mora.Experiments;

/// <summary>A file a job is made from, identified by its content: <paramref name="Role"/> says what it is ("train file",
/// "base weights model.safetensors", …).</summary>
public sealed record InputFile(string Role, string Path);

/// <summary>
/// An experiment's output folder (one job a folder): what it was made from, by content, and who writes it.
/// <list type="bullet">
/// <item><c>spec.json</c>: the resolved settings (the device blanked: not part of the identity); <c>inputs.json</c>: the
/// job's kind and the SHA-256 of every file it was made from (a given base's weights, config and tokenizer; data files).
/// A rerun with other settings or inputs is refused naming what changed; <c>--fresh</c> (<see cref="Claim"/>'s
/// <c>fresh</c>) discards the folder's earlier runs instead.</item>
/// <item>One writer a folder (<see cref="RunFolder.Lock"/>).</item>
/// <item>Each run's <c>result.json</c> carries the job's identity, so a result made from other inputs is never reused.</item>
/// <item>A pretrained base is written whole with its checksums and reused only while complete
/// (<see cref="RunFolder.SaveModel"/>, <see cref="RunFolder.IsCompleteModel"/>).</item>
/// </list>
/// Refusals of other settings or inputs are <see cref="ArgumentException"/>s (parameter <c>outDir</c>) and happen before
/// anything is written; a spec.json, inputs.json or result.json that does not read as one is a <see cref="FormatException"/>
/// naming the file. With <c>--fresh</c> the earlier job is moved aside (<see cref="Discard"/>) before the comparison.
/// </summary>
public static partial class ExperimentFolder
{
    public const string SpecFile = "spec.json", InputsFile = "inputs.json", ResultFile = "result.json";
    internal static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };
    static readonly JsonSerializerOptions Results = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    // ------------------------------------------------------------------ identity

    /// <summary>Records the job's settings and inputs in <paramref name="outDir"/> (creating it), or refuses when the
    /// folder holds a job with other settings or inputs, naming what changed. With <paramref name="fresh"/> the folder's
    /// earlier job is discarded first (<see cref="Discard"/>). A spec.json written by an earlier version (other spellings,
    /// another property order, settings added since with their defaults) is compared by what it means and rewritten in
    /// today's form. Returns the job's identity (a hash of both), which every run's result carries.</summary>
    public static string Claim(string outDir, ExperimentSpec spec, string kind, IReadOnlyList<InputFile>? inputs = null, bool fresh = false, TextWriter? output = null)
    {
        inputs ??= [];
        string specPath = Path.Combine(outDir, SpecFile), inputsPath = Path.Combine(outDir, InputsFile);
        string json = Identity(JsonSerializer.SerializeToNode(spec, spec.GetType(), Indented));
        var hashes = new JsonObject { ["kind"] = kind, ["files"] = new JsonArray(inputs.Select(i => (JsonNode)new JsonObject
        {
            ["role"] = i.Role, ["path"] = Path.GetFullPath(i.Path), ["sha256"] = RunFolder.Sha256(i.Path),
        }).ToArray()) };
        if (fresh) Discard(outDir, output);
        if (File.Exists(specPath))
        {
            string existing = File.ReadAllText(specPath);
            string? canonical = existing == json ? json : Canonical(existing, spec.GetType());
            string job = KindOf(inputsPath, existing) is { } other && other != kind ? $"a {JobName(other)} job" : $"a {JobName(kind)} job";
            if (canonical != json)
                throw new ArgumentException($"{Show(outDir)} holds {job} with other settings ({Changes(canonical ?? existing, json)}; {Show(specPath)}). " +
                    $"Run with --fresh to discard its runs and start again, or choose another output folder", nameof(outDir));
            if (File.Exists(inputsPath) && InputChanges(inputsPath, hashes) is { Count: > 0 } changed)
                throw new ArgumentException($"{Show(outDir)} holds {job} made from other inputs: {string.Join("; ", changed)}. " +
                    $"Run with --fresh to discard its runs and start again from these inputs, or choose another output folder", nameof(outDir));
            if (!File.Exists(inputsPath) && inputs.Count > 0)
                output?.WriteLine($"{Show(outDir)}: no {InputsFile} (written by an earlier version); recording the inputs' checksums now");
        }
        Directory.CreateDirectory(outDir);
        AtomicFile.WriteText(specPath, json);
        AtomicFile.WriteText(inputsPath, hashes.ToJsonString(Indented));
        return Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(json + hashes["files"]!.ToJsonString())))[..16];
    }

    /// <summary>Whether <paramref name="folder"/> holds a spec.json of <paramref name="spec"/>'s settings (its published
    /// results are this job's).</summary>
    public static bool HoldsSettingsOf(string folder, ExperimentSpec spec)
    {
        string path = Path.Combine(folder, SpecFile);
        if (!File.Exists(path)) return false;
        string json = Identity(JsonSerializer.SerializeToNode(spec, spec.GetType(), Indented)), existing = File.ReadAllText(path);
        return existing == json || Canonical(existing, spec.GetType()) == json;
    }

    /// <summary>The spec's JSON with the device blanked: what identifies an experiment's settings.</summary>
    static string Identity(JsonNode? node)
    {
        if (node is JsonObject o && o.ContainsKey("Device")) o["Device"] = "";
        return node?.ToJsonString(Indented) ?? "null";
    }

    /// <summary>A stored spec read back and written in today's form, or null when it does not read as <paramref name="type"/>.</summary>
    static string? Canonical(string text, Type type)
    {
        try
        {
            if (JsonNode.Parse(text) is not JsonObject node) return null;
            node.Remove("Device");
            return node.Deserialize(type, Indented) is { } spec ? Identity(JsonSerializer.SerializeToNode(spec, type, Indented)) : null;
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or NotSupportedException) { return null; }
    }

    /// <summary>"Steps 40 → 80, Pairs 8 → 16": the top-level settings that differ between two spec JSONs.</summary>
    static string Changes(string before, string now)
    {
        JsonObject? a = null, b = JsonNode.Parse(now) as JsonObject;
        try { a = JsonNode.Parse(before) as JsonObject; } catch (JsonException) { }
        if (a is null || b is null) return "its spec.json is not a spec of this experiment";
        var names = a.Select(p => p.Key).Union(b.Select(p => p.Key)).Where(k => k is not ("Tunes" or "EvalSteps" or "Device"));
        var diff = names.Where(k => a[k]?.ToJsonString() != b[k]?.ToJsonString())
            .Select(k => $"{k} {Compact(a[k])} → {Compact(b[k])}").ToList();
        return diff.Count == 0 ? "its spec.json differs" : string.Join(", ", diff);
    }

    static string Compact(JsonNode? n) => n is null ? "(none)" : n.ToJsonString().Replace("\"", "");

    static List<string> InputChanges(string inputsPath, JsonObject now)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(inputsPath)); }
        catch (JsonException e) { throw new FormatException($"{inputsPath}: unreadable ({e.Message}); run with --fresh to start this folder again", e); }
        if (root is not JsonObject { } o || o["files"] is not JsonArray before)
            throw new FormatException($"{inputsPath}: not an inputs record (no 'files' array); run with --fresh to start this folder again");
        var old = new Dictionary<string, JsonObject>();
        foreach (var (entry, i) in before.Select((e, i) => (e, i)))
        {
            if (entry is not JsonObject f || Text(f["role"]) is not { } role || Text(f["sha256"]) is null)
                throw new FormatException($"{inputsPath}: files[{i}] is not a {{role, path, sha256}} record of strings; run with --fresh to start this folder again");
            if (!old.TryAdd(role, f))
                throw new FormatException($"{inputsPath}: files[{i}]: role '{role}' appears twice; run with --fresh to start this folder again");
        }
        var changes = new List<string>();
        foreach (var f in now["files"]!.AsArray().OfType<JsonObject>())
        {
            string role = f["role"]!.GetValue<string>();
            if (!old.Remove(role, out var was)) { changes.Add($"{role} {f["path"]} was not an input then"); continue; }
            if (Text(was["sha256"]) != f["sha256"]!.GetValue<string>())
                changes.Add($"the {role} ({f["path"]}) changed: sha256 {Short(was["sha256"])} then, {Short(f["sha256"])} now");
        }
        changes.AddRange(old.Select(kv => $"{kv.Key} ({kv.Value["path"]}) was an input then and is not now"));
        return changes;
    }

    /// <summary>A JSON string's value, or null for anything else (a number, an object, nothing).</summary>
    static string? Text(JsonNode? node) => node is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    static string Short(JsonNode? sha) => Text(sha) is { Length: >= 12 } s ? s[..12] + "…" : "(none)";

    /// <summary>The kind recorded in inputs.json, or (for a folder an earlier version wrote) the kind its spec.json's settings name.</summary>
    static string? KindOf(string inputsPath, string specJson)
    {
        try
        {
            if (File.Exists(inputsPath) && Text(JsonNode.Parse(File.ReadAllText(inputsPath))?["kind"]) is { } k) return k;
            var spec = JsonNode.Parse(specJson) as JsonObject;
            foreach (var (property, kind) in new[] { ("Pairs", "memorization"), ("TrainProblems", "gsm8k"), ("NewEntities", "continual"), ("MergeEvery", "pretrain") })
                if (spec?.ContainsKey(property) == true) return kind;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { }
        return null;
    }

    /// <summary>How messages name a job kind (its file prefix): memorisation, GSM8K, continual, pretraining.</summary>
    public static string JobName(string kind) => kind switch
    {
        "memorization" => "memorisation", "gsm8k" => "GSM8K", "continual" => "continual-pretraining", "pretrain" => "pretraining", _ => kind,
    };

    /// <summary>Discards the job an output folder holds, so a run with other settings or inputs starts there afresh: its
    /// settings and inputs (spec.json, inputs.json), its <c>runs/</c> and <c>sweep/</c>, its bases (<c>base/</c>,
    /// <c>base-seed&lt;n&gt;/</c>, each holding the <c>model/</c> the job wrote), its sweep and spectra tables, and the
    /// tables and figures it names after its kind (<c>&lt;kind&gt;.csv</c>, <c>&lt;kind&gt;-&lt;suffix&gt;.csv|png|json|html</c>).
    /// Nothing else is touched: a user's own files or folders beside the job (<c>baseline/</c>, <c>memorization notes.txt</c>)
    /// are left, and so is the figures folder (a publication, overwritten by the next run's). Nothing is deleted either:
    /// what is discarded moves into <c>.discarded-&lt;UTC time&gt;/</c> in the folder (named in the message; delete it when
    /// it is no longer wanted), so a file of yours that merely looked like the job's is never lost. A folder that holds no
    /// job (no spec.json) is left as it is.</summary>
    public static void Discard(string outDir, TextWriter? output = null)
    {
        string specPath = Path.Combine(outDir, SpecFile);
        if (!File.Exists(specPath)) return;
        string? kind = KindOf(Path.Combine(outDir, InputsFile), File.ReadAllText(specPath));
        var kept = new List<string>();
        int removed = 0;
        string bin = Path.Combine(outDir, $".discarded-{DateTime.UtcNow:yyyyMMdd-HHmmss-fff}");
        void Away(string entry, bool folder)
        {
            Directory.CreateDirectory(bin);
            string to = Path.Combine(bin, Path.GetFileName(entry));
            if (folder) Directory.Move(entry, to); else File.Move(entry, to);
            removed++;
        }
        foreach (var dir in Directory.GetDirectories(outDir))
        {
            string name = Path.GetFileName(dir);
            bool jobBase = JobBase().IsMatch(name) && Directory.Exists(Path.Combine(dir, "model"));
            bool ratePoint = RatePoint().IsMatch(name) && File.Exists(Path.Combine(dir, SpecFile));     // a frontier's lr-<rate>/ job
            if (new FileInfo(dir).LinkTarget is null && (name is "runs" or "sweep" || jobBase || ratePoint)) Away(dir, folder: true);
            else if (name.StartsWith("base", StringComparison.Ordinal)) kept.Add(name + "/");
        }
        foreach (var file in Directory.GetFiles(outDir))
        {
            string name = Path.GetFileName(file);
            if (name is SpecFile or InputsFile or LearningRateSweep.File or "learned-spectra.csv" or "learned-spectra.txt" || kind is not null && IsJobOutput(name, kind))
                Away(file, folder: false);
            else if (kind is not null && name.StartsWith(kind, StringComparison.Ordinal)) kept.Add(name);
        }
        output?.WriteLine($"--fresh: discarded the earlier {(kind is null ? "" : JobName(kind) + " ")}job in {Show(outDir)} ({removed} entries, moved to {Show(bin)}: delete it when you no longer need them)" +
            (kept.Count > 0 ? $"; left what the job did not write: {string.Join(", ", kept)}" : ""));
    }

    /// <summary>Whether <paramref name="name"/> is a table or figure a job of <paramref name="kind"/> writes: the kind,
    /// optionally a lower-case suffix, then one of the extensions tables and figures have.</summary>
    public static bool IsJobOutput(string name, string kind) =>
        name.StartsWith(kind, StringComparison.Ordinal) && JobOutputTail().IsMatch(name[kind.Length..]);

    [System.Text.RegularExpressions.GeneratedRegex(@"^base(-seed[0-9]+)?$")]
    private static partial System.Text.RegularExpressions.Regex JobBase();

    [System.Text.RegularExpressions.GeneratedRegex(@"^lr-[0-9][0-9.eE+-]*$")]
    private static partial System.Text.RegularExpressions.Regex RatePoint();

    [System.Text.RegularExpressions.GeneratedRegex(@"^(-[a-z0-9_]+(-[a-z0-9_]+)*)?\.(csv|png|json|html)$")]
    private static partial System.Text.RegularExpressions.Regex JobOutputTail();

    // ------------------------------------------------------------------ results

    /// <summary>A finished run's result, or null when the run has not finished. A result made from other inputs than
    /// <paramref name="identity"/> (the job's, from <see cref="Claim"/>) is refused: it would be reported under these.
    /// A result without an identity (written by an earlier version, before identities were recorded) is taken as it is:
    /// the folder's spec.json vouches for it.</summary>
    public static RunRecord? ReadResult(string runDir, string? identity)
    {
        string path = Path.Combine(runDir, ResultFile);
        if (!File.Exists(path)) return null;
        RunRecord record;
        try { record = JsonSerializer.Deserialize<RunRecord>(File.ReadAllText(path), Results) ?? throw new FormatException("empty"); }
        catch (Exception e) when (e is JsonException or FormatException or NotSupportedException)
        { throw new FormatException($"{path}: unreadable run result ({e.Message}); delete it to run that configuration again", e); }
        if (record.Scores is null || record.Method is null)
            throw new FormatException($"{path}: not a run result of this version (no Method or Scores; an earlier version wrote it); delete it to run that configuration again, or rerun the job with --fresh");
        if (identity is not null && record.Identity is { } made && made != identity)
            throw new ArgumentException($"{Show(path)} was made from other settings or inputs than this job's ({made}, now {identity}); " +
                "run with --fresh to discard the folder's runs and start again", "outDir");
        return record;
    }

    public static void WriteResult(string runDir, RunRecord result) =>
        AtomicFile.WriteText(Path.Combine(runDir, ResultFile), JsonSerializer.Serialize(result, Results));

    /// <summary>A small JSON value cached in <paramref name="path"/>: read when there, else computed and written atomically.</summary>
    public static T Cached<T>(string path, Func<T> compute)
    {
        if (File.Exists(path))
        {
            try { return JsonSerializer.Deserialize<T>(File.ReadAllText(path), Results) ?? throw new FormatException("empty"); }
            catch (Exception e) when (e is JsonException or FormatException) { throw new FormatException($"{path}: unreadable ({e.Message}); delete it to compute it again", e); }
        }
        var value = compute();
        AtomicFile.WriteText(path, JsonSerializer.Serialize(value, Results));
        return value;
    }

    /// <summary>Refuses to reuse a finished run that trained at another rate than <paramref name="lr"/>, the one this job
    /// now gives it (a sweep rerun after its runs were deleted can choose another): its numbers would be reported under the
    /// new rate. A result written before rates were recorded (<paramref name="recorded"/> = 0) is taken as it is.</summary>
    public static void CheckReusedRate(string runDir, double recorded, double lr)
    {
        if (recorded != 0 && Math.Abs(recorded - lr) > 1e-9 * Math.Max(Math.Abs(lr), 1e-300))
            throw new ArgumentException($"{Show(runDir)} finished at learning rate {recorded:G4}, but this job now trains it at {lr:G4} " +
                $"(was the sweep rerun?); delete {Show(runDir)} to train it at the new rate", "outDir");
    }

    // ------------------------------------------------------------------ printing

    /// <summary>Mean and sample standard deviation (0 for one value).</summary>
    public static (double Mean, double Sd) MeanSd(IEnumerable<double> values)
    {
        var v = values.ToList();
        double mean = v.Average();
        double sd = v.Count < 2 ? 0 : Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Count - 1));
        return (mean, sd);
    }

    /// <summary>A path as the experiments print it: relative to the working directory (the repository from the command
    /// line), so printed output holds no machine's folders.</summary>
    public static string Show(string path) => Path.GetRelativePath(Environment.CurrentDirectory, Path.GetFullPath(path));

    /// <summary>"12.3 ± 4.5" (percent) over several seeds, "12.3" for one.</summary>
    public static string Percent(IReadOnlyCollection<double> values)
    {
        var (m, sd) = MeanSd(values);
        return values.Count > 1 ? $"{100 * m:0.0} ± {100 * sd:0.0}" : $"{100 * m:0.0}";
    }
}

using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.IO;

namespace Mora.Experiments;

/// <summary>What the resumable experiments share: one settings file per output folder (a folder holds one job), run
/// results written atomically and read back on resume, and mean ± sd over seeds.</summary>
public static class ExperimentFolder
{
    public const string SpecFile = "spec.json", ResultFile = "result.json";
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Records the job's settings in <paramref name="outDir"/>, or refuses (naming <paramref name="outDir"/>) when the
    /// folder holds a job with other settings, so a resume never mixes two experiments. The device is not part of the
    /// settings: a <c>Device</c> property is written blank. A spec.json written by an earlier version (other spellings of
    /// the same methods, another property order) is compared by what it means, and then rewritten in today's form.</summary>
    public static void Claim<TSpec>(string outDir, TSpec spec, string kind)
    {
        string path = Path.Combine(outDir, SpecFile);
        string json = Identity(JsonSerializer.SerializeToNode(spec, Indented));
        if (File.Exists(path))
        {
            string existing = File.ReadAllText(path);
            if (existing != json && Canonical<TSpec>(existing) != json)
                throw new ArgumentException($"{outDir} holds a {kind} job with other settings ({path}); choose another output folder or delete it", nameof(outDir));
        }
        AtomicFile.WriteText(path, json);
    }

    /// <summary>The spec's JSON with the device blanked: what identifies an experiment.</summary>
    static string Identity(JsonNode? node)
    {
        if (node is JsonObject o && o.ContainsKey("Device")) o["Device"] = "";
        return node?.ToJsonString(Indented) ?? "null";
    }

    /// <summary>A stored spec read back and written in today's form, or null when it does not read as a <typeparamref name="TSpec"/>.</summary>
    static string? Canonical<TSpec>(string text)
    {
        try
        {
            if (JsonNode.Parse(text) is not JsonObject node) return null;
            node.Remove("Device");
            return node.Deserialize<TSpec>(Indented) is { } spec ? Identity(JsonSerializer.SerializeToNode(spec, Indented)) : null;
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or NotSupportedException) { return null; }
    }

    /// <summary>A finished run's result, or null when the run has not finished.</summary>
    public static T? ReadResult<T>(string runDir) where T : class
    {
        string path = Path.Combine(runDir, ResultFile);
        if (!File.Exists(path)) return null;
        try { return JsonSerializer.Deserialize<T>(File.ReadAllText(path)) ?? throw new FormatException("empty"); }
        catch (Exception e) when (e is JsonException or FormatException or NotSupportedException)
        { throw new FormatException($"{path}: unreadable run result ({e.Message}); delete it to run that method again", e); }
    }

    /// <summary>Refuses to reuse a finished run that trained at another rate than <paramref name="lr"/>, the one this job
    /// now gives it (a sweep rerun after its runs were deleted can choose another): its numbers would be reported under the
    /// new rate. A result written before rates were recorded (<paramref name="recorded"/> = 0) is taken as it is.</summary>
    public static void CheckReusedRate(string runDir, double recorded, double lr)
    {
        if (recorded != 0 && Math.Abs(recorded - lr) > 1e-9 * Math.Max(Math.Abs(lr), 1e-300))
            throw new ArgumentException($"{runDir} finished at learning rate {recorded:G4}, but this job now trains it at {lr:G4} " +
                $"(was the sweep rerun?); delete {runDir} to train it at the new rate", "outDir");
    }

    public static void WriteResult<T>(string runDir, T result) =>
        AtomicFile.WriteText(Path.Combine(runDir, ResultFile), JsonSerializer.Serialize(result, Indented));

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

using System.Text.Json.Nodes;

namespace Mora.Data;

/// <summary>One memorisation item: given <see cref="Key"/>, the model must produce <see cref="Value"/>.</summary>
public sealed record UuidPair(string Key, string Value);

/// <summary>
/// The paper's memorisation task (§4.1): N pairs of random UUIDs; fine-tuning must make the model map each key to its
/// value, which needs new knowledge rather than reasoning. Deterministic from a seed; keys are distinct.
/// </summary>
public static class UuidPairs
{
    /// <summary>The paper's N.</summary>
    public const int PaperCount = 10_000;

    /// <summary>Named sizes: paper (10,000), large (2,000), medium (500), small (100), tiny (16).</summary>
    public static IReadOnlyDictionary<string, int> Presets { get; } = new Dictionary<string, int>
    { ["paper"] = PaperCount, ["large"] = 2_000, ["medium"] = 500, ["small"] = 100, ["tiny"] = 16 };

    /// <summary>The prompt for a key and the answer the model is trained to produce after it.</summary>
    public static string Prompt(string key) => key + "=";

    /// <summary><paramref name="count"/> pairs of version-4 UUIDs (lower-case, 36 characters) from <paramref name="seed"/>.</summary>
    public static List<UuidPair> Generate(int count, int seed)
    {
        if (count <= 0) throw new ArgumentException($"the number of UUID pairs must be positive, got {count}", nameof(count));
        var rng = new Random(seed);
        var keys = new HashSet<string>();
        var result = new List<UuidPair>(count);
        var bytes = new byte[16];
        string Next()
        {
            rng.NextBytes(bytes);
            bytes[7] = (byte)(bytes[7] & 0x0F | 0x40);   // version 4 (Guid's byte order: the 3rd group's high nibble)
            bytes[8] = (byte)(bytes[8] & 0x3F | 0x80);   // RFC 4122 variant
            return new Guid(bytes).ToString("D");
        }
        while (result.Count < count)
        {
            string key = Next(), value = Next();
            if (keys.Add(key)) result.Add(new UuidPair(key, value));
        }
        return result;
    }

    public static void Write(string path, IEnumerable<UuidPair> pairs) =>
        Jsonl.Write(path, pairs, p => new JsonObject { ["key"] = p.Key, ["value"] = p.Value });

    /// <summary>Reads pairs written by <see cref="Write"/>; a bad line names the file and line.</summary>
    public static List<UuidPair> Read(string path)
    {
        var result = new List<UuidPair>();
        foreach (var (line, o) in Jsonl.Read(path))
            result.Add(new UuidPair(Jsonl.String(o, "key", path, line), Jsonl.String(o, "value", path, line)));
        return result;
    }
}

using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.IO;

namespace Mora.Data;

/// <summary>A line of a JSONL dataset that cannot be used; the message names the file and the 1-based line number.</summary>
public sealed class DatasetFormatException(string file, int line, string problem, Exception? inner = null)
    : FormatException($"{file}:{line}: {problem}", inner)
{
    public string File { get; } = file;
    public int Line { get; } = line;
    public string Problem { get; } = problem;
}

/// <summary>JSON Lines: one object a line, read with the line number of every record, written atomically.</summary>
public static class Jsonl
{
    /// <summary>Each non-blank line's object with its 1-based line number; a line that is not a JSON object throws
    /// <see cref="DatasetFormatException"/>.</summary>
    public static IEnumerable<(int Line, JsonObject Record)> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"dataset file not found: {Path.GetFullPath(path)}", path);
        int n = 0;
        foreach (var line in File.ReadLines(path, Encoding.UTF8))
        {
            n++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(line); }
            catch (JsonException e) { throw new DatasetFormatException(path, n, $"not valid JSON ({e.Message})", e); }
            if (node is not JsonObject o) throw new DatasetFormatException(path, n, "expected a JSON object");
            try { _ = o.Count; }         // JsonObject reads its properties lazily; a repeated name shows up here
            catch (ArgumentException e) { throw new DatasetFormatException(path, n, $"a property name appears twice ({e.Message})", e); }
            yield return (n, o);
        }
    }

    /// <summary>The string field <paramref name="name"/> of a record, or a <see cref="DatasetFormatException"/>.</summary>
    public static string String(JsonObject record, string name, string path, int line)
    {
        var node = record[name] ?? throw new DatasetFormatException(path, line, $"missing field \"{name}\"");
        if (node is JsonValue v && v.TryGetValue(out string? s)) return s;
        throw new DatasetFormatException(path, line, $"field \"{name}\" must be a string, got {node.ToJsonString()}");
    }

    /// <summary>Writes one object a line, atomically (a temporary file renamed into place).</summary>
    public static void Write<T>(string path, IEnumerable<T> records, Func<T, JsonObject> toJson)
    {
        AtomicFile.Write(path, stream =>
        {
            using var w = new StreamWriter(stream, new UTF8Encoding(false), leaveOpen: true) { NewLine = "\n" };
            foreach (var r in records) w.WriteLine(toJson(r).ToJsonString());
        });
    }
}

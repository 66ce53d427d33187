using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.IO;

namespace Mora.Data;

/// <summary>A line of a JSONL dataset that cannot be used; the message names the file and the 1-based line number
/// (<see cref="Line"/> 0: the file as a whole, e.g. empty or not a regular file).</summary>
public sealed class DatasetFormatException(string file, int line, string problem, Exception? inner = null)
    : FormatException(line > 0 ? $"{file}:{line}: {problem}" : $"{file}: {problem}", inner)
{
    public string File { get; } = file;
    public int Line { get; } = line;
    public string Problem { get; } = problem;
}

/// <summary>JSON Lines: one object a line, read with the line number of every record, written atomically.</summary>
public static class Jsonl
{
    /// <summary>UTF-8 that refuses invalid bytes instead of reading them as U+FFFD.</summary>
    static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The largest dataset file read: 4 GiB.</summary>
    public const long MaxBytes = 4L << 30;

    /// <summary>Each non-blank line's object with its 1-based line number. A line that is not valid UTF-8 or not a JSON
    /// object throws <see cref="DatasetFormatException"/> naming the file, the line and where in it.</summary>
    public static IEnumerable<(int Line, JsonObject Record)> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"dataset file not found: {Path.GetFullPath(path)}", path);
        int n = 0;
        foreach (var line in Lines(path))
        {
            n++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(line); }
            catch (JsonException e) { throw new DatasetFormatException(path, n, $"not valid JSON at byte {(e.BytePositionInLine ?? 0) + 1} of the line ({WithoutPosition(e.Message)})", e); }
            if (node is not JsonObject o) throw new DatasetFormatException(path, n, "expected a JSON object");
            try { _ = o.Count; }         // JsonObject reads its properties lazily; a repeated name shows up here
            catch (ArgumentException e) { throw new DatasetFormatException(path, n, $"a property name appears twice ({e.Message})", e); }
            yield return (n, o);
        }
    }

    /// <summary>The lines of a UTF-8 file (a byte-order mark skipped), decoded strictly: invalid UTF-8 is an error naming
    /// the line and the byte, not text with U+FFFD in it.</summary>
    static IEnumerable<string> Lines(string path)
    {
        // Never opened when it reports no bytes: an empty file has no lines, and a FIFO, socket or device (a link to
        // /dev/zero included) reports size 0 too, where opening would block or read forever. So those read as empty,
        // and the callers' "holds no problems (an empty file, or not a regular file)" names the file.
        var target = new FileInfo(SafeFile.RealPath(path));
        if (target.Exists && target.Length == 0) yield break;
        // else a regular file of bounded size
        long length = SafeFile.Check(path, null, 1, MaxBytes, (file, problem) => new DatasetFormatException(file, 0, problem));
        using var stream = new BufferedStream(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read), 1 << 16);
        long read = 0;
        using var buffer = new MemoryStream();
        int n = 0, b;
        bool first = true;
        while (true)
        {
            b = ++read > length ? -1 : stream.ReadByte();     // what is appended while it is read is not read
            if (b is '\n' or -1)
            {
                var bytes = buffer.ToArray();
                buffer.SetLength(0);
                n++;
                if (first && bytes.AsSpan().StartsWith(Encoding.UTF8.Preamble)) bytes = bytes[3..];
                first = false;
                if (b == -1 && bytes.Length == 0) yield break;
                string text;
                try { text = Strict.GetString(bytes).TrimEnd('\r'); }
                catch (DecoderFallbackException e)
                { throw new DatasetFormatException(path, n, $"not valid UTF-8 (byte 0x{(e.BytesUnknown is { Length: > 0 } u ? u[0] : 0):x2} at byte {e.Index + 1} of the line); save the file as UTF-8", e); }
                yield return text;
                if (b == -1) yield break;
            }
            else buffer.WriteByte((byte)b);
        }
    }

    /// <summary>A JSON error's message without System.Text.Json's " LineNumber: 0 | BytePositionInLine: n." (one line
    /// is parsed at a time, so its line number says nothing; the file's line is named instead).</summary>
    static string WithoutPosition(string message) =>
        System.Text.RegularExpressions.Regex.Replace(message, @"\s*(Path: \S*\s*\|\s*)?LineNumber: \d+ \| BytePositionInLine: \d+\.?", "").TrimEnd('.', ' ');

    /// <summary>The string field <paramref name="name"/> of a record, or a <see cref="DatasetFormatException"/>: missing, not
    /// a string, or not valid text (a lone surrogate, <c>"\ud800"</c>, which no UTF-8 text can hold).</summary>
    public static string String(JsonObject record, string name, string path, int line)
    {
        var node = record[name] ?? throw new DatasetFormatException(path, line, $"missing field \"{name}\"");
        string? s;
        try { if (node is not JsonValue v || !v.TryGetValue(out s)) s = null; }
        catch (Exception e) when (e is InvalidOperationException or JsonException or FormatException)
        { throw new DatasetFormatException(path, line, $"field \"{name}\" is not valid text ({WithoutPosition(e.Message)})", e); }
        if (s is null) throw new DatasetFormatException(path, line, $"field \"{name}\" must be a string, got {node.ToJsonString()}");
        if (s.Any(char.IsSurrogate) && !IsWellFormed(s))
            throw new DatasetFormatException(path, line, $"field \"{name}\" holds a lone surrogate (an escape such as \\ud800 without its pair), which no text can hold");
        return s;
    }

    static bool IsWellFormed(string s)
    {
        for (int i = 0; i < s.Length; i++)
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
            else if (char.IsSurrogate(s[i])) return false;
        return true;
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

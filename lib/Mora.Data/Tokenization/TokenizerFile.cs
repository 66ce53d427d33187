using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Mora.Data.Tokenization;

/// <summary>
/// A <c>tokenizer.json</c> (or <c>tokenizer_config.json</c>) that cannot be read as the Hugging Face tokenizers library
/// would read it: malformed (a string where a number is wanted, malformed merges or Unigram pieces, duplicate or negative
/// ids), using something the kit does not implement (refused rather than ignored), too large, not a regular file, or a
/// Split regex that ran past its time limit. <see cref="File"/> and <see cref="Field"/> (a JSON path such as
/// <c>pre_tokenizer.pretokenizers[0].pattern.Regex</c>) say where; the message names both and the value.
/// </summary>
public sealed class TokenizerFormatException : FormatException
{
    public string File { get; }
    public string Field { get; }

    public TokenizerFormatException(string file, string field, string problem, Exception? inner = null)
        : base(field.Length == 0 ? $"{file}: {problem}" : $"{file}: {field} {problem}", inner)
    { File = file; Field = field; }
}

/// <summary>Reads a tokenizer file safely: a regular file only (not a FIFO, device or directory: checked before it is
/// opened), inside the folder it is named in (a symbolic link out of it is refused before anything is read, but for the
/// Hugging Face hub cache's <c>blobs</c>, as <see cref="Mora.IO.SafeFile.Inside"/> allows), at most
/// <see cref="MaxBytes"/>, valid UTF-8 JSON.</summary>
static class TokenizerFile
{
    /// <summary>64 MiB: the largest real tokenizer.json files are about 30 MB.</summary>
    public const long MaxBytes = 64L << 20;

    public static JsonDocument Read(string path)
    {
        var info = new FileInfo(path);
        // Resolve a symbolic link to what it points at, so /dev/zero behind a link is seen as a device.
        FileSystemInfo target = info.LinkTarget is not null ? info.ResolveLinkTarget(returnFinalTarget: true) ?? info : info;
        if (!target.Exists && !Directory.Exists(target.FullName))
            throw new FileNotFoundException($"tokenizer file not found: {Path.GetFullPath(path)}", path);
        if (target is not FileInfo file || Directory.Exists(target.FullName))
            throw new TokenizerFormatException(path, "", "is a directory, not a file");
        if (!IsRegularFile(file))
            throw new TokenizerFormatException(path, "", "is empty or not a regular file (a FIFO, socket or device): refused without opening it");
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (info.LinkTarget is not null || Mora.IO.SafeFile.RealPath(folder) != folder)
        {
            string real;
            try { real = Mora.IO.SafeFile.RealPath(path); }
            catch (IOException e) { throw new TokenizerFormatException(path, "", $"its symbolic links cannot be followed ({e.Message})"); }
            if (!Mora.IO.SafeFile.Inside(real, folder))
                throw new TokenizerFormatException(path, "", $"is a link to a file outside its folder {folder}: refused without reading it (copy the file in instead)");
        }
        if (file.Length > MaxBytes)
            throw new TokenizerFormatException(path, "", $"is {file.Length:N0} bytes, more than the limit of {MaxBytes:N0} bytes (64 MiB) for a tokenizer file");
        byte[] bytes;
        using (var stream = new FileStream(file.FullName, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan))
        {
            // Read at most MaxBytes + 1 whatever the length said (a file may grow between the check and the read).
            using var buffer = new MemoryStream((int)Math.Min(file.Length + 1, MaxBytes + 1));
            var chunk = new byte[1 << 16];
            int n;
            while ((n = stream.Read(chunk, 0, chunk.Length)) > 0)
            {
                buffer.Write(chunk, 0, n);
                if (buffer.Length > MaxBytes)
                    throw new TokenizerFormatException(path, "", $"is more than the limit of {MaxBytes:N0} bytes (64 MiB) for a tokenizer file");
            }
            bytes = buffer.ToArray();
        }
        try
        {
            return JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 128, AllowTrailingCommas = false });
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException(path, "", $"is not valid JSON (invalid JSON: {e.Message})", e);
        }
    }

    /// <summary>
    /// A regular file, checked without opening it (opening a FIFO blocks until a writer comes). .NET has no managed
    /// API for the Unix file type, but stat(2) gives every FIFO, socket, character and block device a size of 0, and so
    /// does an empty file, which is no tokenizer either: a file is read only when it is not a directory or device and
    /// has a size above 0. A symbolic link is followed first (so a link to /dev/zero is refused too).
    /// </summary>
    static bool IsRegularFile(FileInfo f) =>
        (f.Attributes & (FileAttributes.Device | FileAttributes.Directory)) == 0 && f.Length > 0
        && !f.FullName.StartsWith(@"\\.\", StringComparison.Ordinal) && !f.FullName.StartsWith(@"\\?\GLOBALROOT", StringComparison.OrdinalIgnoreCase);
}

/// <summary>A JSON value with its path in the file, for errors that name the file, the field and the value.</summary>
readonly struct JNode
{
    public readonly JsonElement E;
    public readonly string Path;
    public readonly string File;

    public JNode(JsonElement e, string path, string file) { E = e; Path = path; File = file; }

    public JsonValueKind Kind => E.ValueKind;
    public bool IsNull => E.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined;

    string Sub(string name) => Path.Length == 0 ? name : $"{Path}.{name}";

    static readonly JsonSerializerOptions Readable = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A value as it reads in JSON (non-ASCII characters as themselves), cut at 80 characters.</summary>
    public static string Show(JsonElement e)
    {
        string raw = e.ValueKind == JsonValueKind.Undefined ? "(missing)" : JsonSerializer.Serialize(e, Readable);
        return raw.Length > 80 ? raw[..77] + "..." : raw;
    }

    public TokenizerFormatException Error(string problem) => new(File, Path, problem);
    public TokenizerFormatException Error(string field, string problem) => new(File, Sub(field), problem);

    /// <summary>The member <paramref name="name"/>; missing and null both give a node whose <see cref="IsNull"/> is true.</summary>
    public JNode this[string name]
    {
        get
        {
            if (E.ValueKind != JsonValueKind.Object) throw Error($"is {Show(E)}, not a JSON object");
            return E.TryGetProperty(name, out var v) ? new JNode(v, Sub(name), File) : new JNode(default, Sub(name), File);
        }
    }

    public bool Has(string name) => E.ValueKind == JsonValueKind.Object && E.TryGetProperty(name, out _);

    public JNode At(int i) => new(E[i], $"{Path}[{i}]", File);

    public int Count => E.ValueKind == JsonValueKind.Array ? E.GetArrayLength()
        : throw Error($"is {Show(E)}, not a JSON array");

    public IEnumerable<JNode> Items()
    {
        int n = Count, i = 0;
        foreach (var item in E.EnumerateArray()) yield return new JNode(item, $"{Path}[{i++}]", File);
        _ = n;
    }

    public IEnumerable<(string Name, JNode Value)> Members()
    {
        if (E.ValueKind != JsonValueKind.Object) throw Error($"is {Show(E)}, not a JSON object");
        foreach (var p in E.EnumerateObject()) yield return (p.Name, new JNode(p.Value, Sub(p.Name), File));
    }

    public string AsString()
    {
        if (E.ValueKind != JsonValueKind.String) throw Error($"is {Show(E)}, not a string");
        try
        {
            string s = E.GetString()!;
            if (HasLoneSurrogate(s)) throw Error($"is {Show(E)}, a string with a lone surrogate (not valid Unicode)");
            return s;
        }
        catch (InvalidOperationException e) { throw new TokenizerFormatException(File, Path, $"is {Show(E)}, not a valid Unicode string", e); }
    }

    public string? AsStringOrNull() => IsNull ? null : AsString();

    public bool AsBool() => E.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Error($"is {Show(E)}, not true or false"),
    };

    public bool AsBool(bool whenMissing) => IsNull ? whenMissing : AsBool();

    /// <summary>A non-negative integer that fits an int (token ids, lengths).</summary>
    public int AsIndex()
    {
        if (E.ValueKind != JsonValueKind.Number) throw Error($"is {Show(E)}, not a number");
        if (!E.TryGetInt64(out long v)) throw Error($"is {Show(E)}, not an integer");
        if (v < 0) throw Error($"is {v}, a negative number where an id or count is wanted");
        if (v > int.MaxValue - 1) throw Error($"is {v}, too large for an id or count");
        return (int)v;
    }

    public double AsDouble()
    {
        if (E.ValueKind != JsonValueKind.Number || !E.TryGetDouble(out double v) || !double.IsFinite(v))
            throw Error($"is {Show(E)}, not a finite number");
        return v;
    }

    public string Str(string name) => this[name] is var n && n.Kind == JsonValueKind.Undefined ? throw Error(name, "is missing") : n.AsString();
    public string? OptStr(string name) => this[name].AsStringOrNull();
    public bool Bool(string name) => this[name] is var n && n.Kind == JsonValueKind.Undefined ? throw Error(name, "is missing") : n.AsBool();
    public bool Bool(string name, bool whenMissing) => this[name].AsBool(whenMissing);
    public int Index(string name) => this[name] is var n && n.IsNull ? throw Error(name, "is missing") : n.AsIndex();
    public string Type => Str("type");

    public static bool HasLoneSurrogate(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (char.IsHighSurrogate(c)) { if (i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { i++; continue; } return true; }
            if (char.IsLowSurrogate(c)) return true;
        }
        return false;
    }

    public static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}

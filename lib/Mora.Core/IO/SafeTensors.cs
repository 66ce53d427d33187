using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.IO;

/// <summary>A safetensors file that is not well formed (a <see cref="FormatException"/>). The message names the file and the field.</summary>
public sealed class SafeTensorsFormatException(string message, Exception? inner = null) : FormatException(message, inner);

/// <summary>
/// The safetensors format (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of JSON
/// (<c>{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}</c>), then the raw
/// little-endian data. Only data is read, never code. The reader checks everything before it allocates: the header
/// length against the file, the JSON, every dtype, shape and offset pair (inside the data, sized to match, not
/// overlapping), so a corrupt or hostile file gives <see cref="SafeTensorsFormatException"/> and not a crash or a huge
/// allocation. As the reference reader, the tensors must tile the data exactly (no hole, nothing after the last one).
/// Only regular files are read (<see cref="SafeFile"/>: no pipe, device or empty file). Writes go to a temporary file
/// that is renamed into place.
/// </summary>
public static class SafeTensors
{
    /// <summary>Largest header accepted (the reference implementation's limit is 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    static readonly Dictionary<string, (ScalarType Type, int Size)> DTypes = new()
    {
        ["F64"] = (ScalarType.Float64, 8), ["F32"] = (ScalarType.Float32, 4), ["F16"] = (ScalarType.Float16, 2),
        ["BF16"] = (ScalarType.BFloat16, 2), ["I64"] = (ScalarType.Int64, 8), ["I32"] = (ScalarType.Int32, 4),
        ["I16"] = (ScalarType.Int16, 2), ["I8"] = (ScalarType.Int8, 1), ["U8"] = (ScalarType.Byte, 1), ["BOOL"] = (ScalarType.Bool, 1),
    };

    static string DTypeName(ScalarType t) => DTypes.FirstOrDefault(kv => kv.Value.Type == t).Key
        ?? throw new ArgumentException($"dtype {t} has no safetensors name", nameof(t));

    /// <summary>One tensor's entry in the header.</summary>
    public sealed record Entry(string Name, string DType, long[] Shape, long Begin, long End);

    /// <summary>Writes tensors (moved to CPU, made contiguous) and optional string metadata, atomically.</summary>
    public static void Save(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var dup = list.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"tensor name '{dup.Key}' appears twice", nameof(tensors));
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
        {
            var meta = new JsonObject();
            foreach (var (k, v) in metadata) meta[k] = v;
            header["__metadata__"] = meta;
        }
        long offset = 0;
        var blobs = new List<Tensor>();
        try
        {
            foreach (var (name, t) in list)
            {
                if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved", nameof(tensors));
                var cpuT = t.detach().cpu().contiguous();
                blobs.Add(cpuT);
                long bytes = cpuT.numel() * cpuT.ElementSize;
                header[name] = new JsonObject
                {
                    ["dtype"] = DTypeName(t.dtype),
                    ["shape"] = new JsonArray(t.shape.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray()),
                    ["data_offsets"] = new JsonArray(JsonValue.Create(offset), JsonValue.Create(offset + bytes)),
                };
                offset += bytes;
            }
            byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
            int padded = (json.Length + 7) / 8 * 8;
            AtomicFile.Write(path, stream =>
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
                stream.Write(len);
                stream.Write(json);
                for (int i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
                foreach (var b in blobs) if (b.numel() > 0) stream.Write(b.bytes);
            });
        }
        finally { foreach (var b in blobs) b.Dispose(); }
    }

    /// <summary>Reads and validates the header (no tensor data is read).</summary>
    public static (IReadOnlyList<Entry> Entries, IReadOnlyDictionary<string, string> Metadata, long DataStart) ReadHeader(string path)
    {
        using var stream = OpenRead(path);
        return ReadHeader(stream, path);
    }

    /// <summary>Opens a safetensors file after <see cref="SafeFile.Check"/>: a regular file of at least 8 bytes, and inside
    /// <paramref name="folder"/> when one is given (a link outside it is refused unread).</summary>
    static FileStream OpenRead(string path, string? folder = null)
    {
        if (!File.Exists(path) && !Directory.Exists(path) && new FileInfo(path).LinkTarget is null) throw new FileNotFoundException($"safetensors file not found: {path}", path);
        long length = SafeFile.Check(path, folder, 8, long.MaxValue, (p, m) => new SafeTensorsFormatException($"{p}: {m}"));
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        if (!stream.CanSeek || stream.Length != length)
        {
            stream.Dispose();
            throw new SafeTensorsFormatException($"{path}: changed while it was opened, or is not a regular file");
        }
        return stream;
    }

    static (IReadOnlyList<Entry>, IReadOnlyDictionary<string, string>, long) ReadHeader(Stream stream, string path)
    {
        long fileLength = stream.Length;
        if (fileLength < 8) throw new SafeTensorsFormatException($"{path}: file is {fileLength} bytes, shorter than the 8-byte header length");
        Span<byte> len = stackalloc byte[8];
        stream.ReadExactly(len);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(len);
        if (n > (ulong)MaxHeaderBytes || n > (ulong)(fileLength - 8))
            throw new SafeTensorsFormatException($"{path}: truncated, or not a safetensors file: its header length field says {n} bytes, but {fileLength - 8} bytes follow it (headers are at most {MaxHeaderBytes:N0})");
        var headerBytes = new byte[(int)n];
        stream.ReadExactly(headerBytes);
        if (!System.Text.Unicode.Utf8.IsValid(headerBytes))
            throw new SafeTensorsFormatException($"{path}: header is not valid UTF-8");
        long dataStart = 8 + (long)n, dataLength = fileLength - dataStart;

        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(headerBytes, new JsonDocumentOptions { MaxDepth = 8 });
            root = doc.RootElement.Clone();
        }
        catch (JsonException e) { throw new SafeTensorsFormatException($"{path}: header is not valid JSON: {e.Message}", e); }
        catch (ArgumentException e) { throw new SafeTensorsFormatException($"{path}: header is not valid UTF-8 JSON: {e.Message}", e); }
        if (root.ValueKind != JsonValueKind.Object) throw new SafeTensorsFormatException($"{path}: header must be a JSON object, got {root.ValueKind}");

        var entries = new List<Entry>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>();
        foreach (var prop in root.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (prop.Value.ValueKind != JsonValueKind.Object) throw new SafeTensorsFormatException($"{path}: __metadata__ must be an object of strings");
                foreach (var m in prop.Value.EnumerateObject())
                    metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()!
                        : throw new SafeTensorsFormatException($"{path}: __metadata__ value '{m.Name}' is not a string");
                continue;
            }
            if (!names.Add(prop.Name)) throw new SafeTensorsFormatException($"{path}: tensor '{prop.Name}' appears twice in the header");
            entries.Add(ParseEntry(prop, path, dataLength));
        }
        // As the reference reader (safetensors' Metadata::validate): the tensors tile the data exactly, in offset order,
        // with no overlap, no hole and nothing after the last one.
        var sorted = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ToList();
        long covered = 0;
        for (int i = 0; i < sorted.Count; i++)
        {
            if (sorted[i].Begin < covered)
                throw new SafeTensorsFormatException($"{path}: tensors '{sorted[i - 1].Name}' [{sorted[i - 1].Begin}, {sorted[i - 1].End}) and '{sorted[i].Name}' [{sorted[i].Begin}, {sorted[i].End}) overlap");
            if (sorted[i].Begin > covered)
                throw new SafeTensorsFormatException($"{path}: data bytes [{covered}, {sorted[i].Begin}) before tensor '{sorted[i].Name}' belong to no tensor (a hole in data_offsets)");
            covered = sorted[i].End;
        }
        if (covered != dataLength)
            throw new SafeTensorsFormatException($"{path}: the tensors' data_offsets end at byte {covered} of the data but {dataLength} bytes follow the header ({dataLength - covered} bytes belong to no tensor)");
        return (entries, metadata, dataStart);
    }

    static Entry ParseEntry(JsonProperty prop, string path, long dataLength)
    {
        string name = prop.Name;
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object) throw new SafeTensorsFormatException($"{path}: tensor '{name}' entry is not an object");
        if (!v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new SafeTensorsFormatException($"{path}: tensor '{name}' has no dtype string");
        string dtype = dt.GetString()!;
        if (!DTypes.TryGetValue(dtype, out var info))
            throw new SafeTensorsFormatException($"{path}: tensor '{name}' has unknown dtype '{dtype}' (known: {string.Join(", ", DTypes.Keys)})");
        if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new SafeTensorsFormatException($"{path}: tensor '{name}' has no shape array");
        var shape = new List<long>();
        long count = 1, span = 1;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                throw new SafeTensorsFormatException($"{path}: tensor '{name}' has a bad dimension {d.GetRawText()}");
            shape.Add(dim);
            if (shape.Count > 16) throw new SafeTensorsFormatException($"{path}: tensor '{name}' has more than 16 dimensions");
            // The element count, and the strides libtorch derives from the shape: a contiguous tensor's strides are products
            // of max(size, 1), so a zero-sized dimension does not stop the others from overflowing them ("Stride calculation
            // overflowed" from inside libtorch otherwise). Both must fit, in bytes, in a signed 64-bit integer.
            try { count = checked(count * dim); span = checked(span * Math.Max(dim, 1)); _ = checked(span * info.Size); }
            catch (OverflowException)
            {
                int rest = sh.GetArrayLength() - shape.Count;
                throw new SafeTensorsFormatException($"{path}: tensor '{name}' shape [{string.Join(", ", shape)}{(rest > 0 ? ", …" : "")}] overflows a 64-bit size or stride");
            }
        }
        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new SafeTensorsFormatException($"{path}: tensor '{name}' has no [begin, end] data_offsets");
        var bounds = off.EnumerateArray().ToArray();
        if (bounds[0].ValueKind != JsonValueKind.Number || bounds[1].ValueKind != JsonValueKind.Number
            || !bounds[0].TryGetInt64(out long begin) || !bounds[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw new SafeTensorsFormatException($"{path}: tensor '{name}' has bad data_offsets {off.GetRawText()}");
        if (end > dataLength)
            throw new SafeTensorsFormatException($"{path}: tensor '{name}' data_offsets [{begin}, {end}) run past the end of the data ({dataLength} bytes): the file is truncated or corrupt");
        long expected;
        try { expected = checked(count * info.Size); }
        catch (OverflowException) { throw new SafeTensorsFormatException($"{path}: tensor '{name}' is too large"); }
        if (end - begin != expected)
            throw new SafeTensorsFormatException($"{path}: tensor '{name}' {dtype}[{string.Join(", ", shape)}] needs {expected} bytes but data_offsets give {end - begin}");
        return new Entry(name, dtype, shape.ToArray(), begin, end);
    }

    /// <summary>Reads every tensor (on CPU, in the file's dtype), with the metadata.</summary>
    public static (Dictionary<string, Tensor> Tensors, IReadOnlyDictionary<string, string> Metadata) Load(string path)
    {
        using var reader = Open(path);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var e in reader.Entries) result[e.Name] = reader.Read(e);
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return (result, reader.Metadata);
    }

    /// <summary>Opens a file and reads its header (validated as <see cref="ReadHeader(string)"/>); tensors are then read one
    /// at a time with <see cref="Reader.Read"/>, so a large checkpoint is never held twice in memory. With
    /// <paramref name="folder"/>, the file must lie inside that folder (<see cref="SafeFile"/>).</summary>
    public static Reader Open(string path, string? folder = null)
    {
        var stream = OpenRead(path, folder);
        try
        {
            var (entries, metadata, dataStart) = ReadHeader(stream, path);
            return new Reader(path, stream, entries, metadata, dataStart);
        }
        catch { stream.Dispose(); throw; }
    }

    /// <summary>An open safetensors file whose header has been validated.</summary>
    public sealed class Reader : IDisposable
    {
        readonly FileStream _stream;
        readonly long _dataStart;

        internal Reader(string path, FileStream stream, IReadOnlyList<Entry> entries, IReadOnlyDictionary<string, string> metadata, long dataStart)
        {
            Path = path; _stream = stream; Entries = entries; Metadata = metadata; _dataStart = dataStart;
        }

        public string Path { get; }
        public IReadOnlyList<Entry> Entries { get; }
        public IReadOnlyDictionary<string, string> Metadata { get; }

        /// <summary>The torch dtype of a safetensors dtype name (F32, BF16, …).</summary>
        public static ScalarType TypeOf(string dtype) => DTypes[dtype].Type;

        /// <summary>Bytes read at a time: a tensor is filled in pieces of this size, so one larger than a .NET array
        /// (2 GiB: a 70B model's embedding) still loads, with bounded extra memory.</summary>
        const long ChunkBytes = 64L << 20;

        /// <summary>One tensor, on CPU in the file's dtype (the caller disposes it).</summary>
        public Tensor Read(Entry e)
        {
            var (type, size) = DTypes[e.DType];
            var t = empty(e.Shape, type);
            if (e.End == e.Begin) return t;
            try
            {
                _stream.Position = _dataStart + e.Begin;
                long count = (e.End - e.Begin) / size, perChunk = Math.Max(1, ChunkBytes / size);
                if (count <= perChunk)
                {
                    var buffer = new byte[e.End - e.Begin];
                    _stream.ReadExactly(buffer);
                    t.bytes = buffer;
                    return t;
                }
                using var flat = t.flatten();
                var chunk = new byte[perChunk * size];
                for (long start = 0; start < count; start += perChunk)
                {
                    long n = Math.Min(perChunk, count - start);
                    var piece = n == perChunk ? chunk : new byte[n * size];
                    _stream.ReadExactly(piece);
                    using var part = empty([n], type);
                    part.bytes = piece;
                    using var slot = flat.narrow(0, start, n);
                    slot.copy_(part);
                }
                return t;
            }
            catch (EndOfStreamException x)
            {
                t.Dispose();
                throw new SafeTensorsFormatException($"{Path}: file ended while reading tensor '{e.Name}' (truncated)", x);
            }
            catch { t.Dispose(); throw; }
        }

        public void Dispose() => _stream.Dispose();
    }

    /// <summary>True for the floating-point dtypes (F64, F32, F16, BF16).</summary>
    public static bool IsFloating(string dtype) => dtype is "F64" or "F32" or "F16" or "BF16";
}

/// <summary>How a set of loaded tensors fits the tensors a model expects, as one list of readable problems.</summary>
public static class TensorMatch
{
    /// <summary>Every expected tensor that is missing or has another shape, then every loaded tensor nothing expects
    /// (sorted), except those <paramref name="tolerated"/> accepts.</summary>
    /// <param name="expected">what the model needs, by name</param>
    /// <param name="found">what the file holds, by name</param>
    /// <param name="source">the word for where the tensors came from in a shape problem ("file", "checkpoint")</param>
    /// <param name="unexpectedReason">why an extra tensor is unexpected, shown in brackets</param>
    /// <param name="tolerated">extra tensors that are not a problem</param>
    public static List<string> Problems(IEnumerable<(string Name, Tensor Tensor)> expected, IReadOnlyDictionary<string, Tensor> found,
        string source, string unexpectedReason, Func<string, bool>? tolerated = null)
    {
        var problems = new List<string>();
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, p) in expected)
        {
            known.Add(name);
            if (!found.TryGetValue(name, out var t)) problems.Add($"missing tensor {name} (shape [{string.Join(", ", p.shape)}])");
            else if (!t.shape.SequenceEqual(p.shape))
                problems.Add($"{name}: {source} has shape [{string.Join(", ", t.shape)}], model expects [{string.Join(", ", p.shape)}]");
        }
        problems.AddRange(found.Keys.Where(k => !known.Contains(k) && tolerated?.Invoke(k) != true).Order(StringComparer.Ordinal)
            .Select(k => $"unexpected tensor {k} ({unexpectedReason})"));
        return problems;
    }

    /// <summary>"&lt;where&gt; does not fit the model (N problems):" and one problem a line.</summary>
    public static string Describe(string where, IReadOnlyList<string> problems) =>
        $"{where} does not fit the model ({problems.Count} problems):\n  " + string.Join("\n  ", problems);
}

/// <summary>Writes files through a temporary name in the same folder and a rename, so a reader never sees half a file
/// and an interrupted write leaves the old file intact.</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    public static void WriteText(string path, string text) => Write(path, s => s.Write(Encoding.UTF8.GetBytes(text)));
}

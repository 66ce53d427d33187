using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Mora.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Evidence;

/// <summary>
/// NumPy's <c>.npy</c> format, version 1.0 (numpy.lib.format: the magic <c>\x93NUMPY</c>, a header dict
/// <c>{'descr': '&lt;f4', 'fortran_order': False, 'shape': (2, 3), }</c> padded to a multiple of 64 bytes, then the data in C
/// order, little-endian), for the tensors the Python peers read with <c>numpy.load</c> where <c>safetensors</c> may not be
/// installed (Debian's python3-torch 1.13 has no safetensors). float32, float64 and int64; files written atomically.
/// </summary>
public static class Npy
{
    static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Writes <paramref name="t"/> (moved to the CPU; bfloat16 and float16 written as float32) to <paramref name="path"/>.</summary>
    public static void Save(string path, Tensor t)
    {
        using var scope = NewDisposeScope();
        var cpu = t.detach().cpu();
        if (cpu.dtype is ScalarType.BFloat16 or ScalarType.Float16) cpu = cpu.to(ScalarType.Float32);
        (string descr, int size) = cpu.dtype switch
        {
            ScalarType.Float32 => ("<f4", 4),
            ScalarType.Float64 => ("<f8", 8),
            ScalarType.Int64 => ("<i8", 8),
            _ => throw new ArgumentException($"Npy.Save: dtype {cpu.dtype} is not written (float32, float64, int64, or bfloat16/float16 as float32)", nameof(t)),
        };
        cpu = cpu.contiguous();
        string shape = cpu.dim() == 0 ? "()" : cpu.dim() == 1 ? $"({cpu.shape[0]},)" : $"({string.Join(", ", cpu.shape)})";
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}";
        int unpadded = Magic.Length + 2 + 2 + dict.Length + 1;
        string header = dict + new string(' ', (64 - unpadded % 64) % 64) + "\n";
        var bytes = new byte[cpu.numel() * size];
        switch (cpu.dtype)
        {
            case ScalarType.Float32: { var v = cpu.data<float>().ToArray(); for (int i = 0; i < v.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), v[i]); break; }
            case ScalarType.Float64: { var v = cpu.data<double>().ToArray(); for (int i = 0; i < v.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(8 * i), v[i]); break; }
            default: { var v = cpu.data<long>().ToArray(); for (int i = 0; i < v.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8 * i), v[i]); break; }
        }
        AtomicFile.Write(path, s =>
        {
            s.Write(Magic);
            s.WriteByte(1); s.WriteByte(0);
            var len = new byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)header.Length);
            s.Write(len);
            s.Write(Encoding.ASCII.GetBytes(header));
            s.Write(bytes);
        });
    }

    /// <summary>Reads a version 1.0 or 2.0 <c>.npy</c> file of little-endian float32, float64, int64 or int32 in C order.</summary>
    /// <exception cref="FormatException">naming the file and what is wrong (magic, header, dtype, Fortran order, size)</exception>
    public static Tensor Load(string path)
    {
        byte[] all = File.ReadAllBytes(path);
        if (all.Length < 10 || !all.AsSpan(0, 6).SequenceEqual(Magic)) throw new FormatException($"{path}: not a .npy file (no \\x93NUMPY magic)");
        int major = all[6];
        int headerLength, at;
        if (major == 1) { headerLength = BinaryPrimitives.ReadUInt16LittleEndian(all.AsSpan(8)); at = 10; }
        else if (major is 2 or 3) { headerLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(all.AsSpan(8)); at = 12; }
        else throw new FormatException($"{path}: .npy version {major} is not read (1, 2 or 3)");
        if (at + headerLength > all.Length) throw new FormatException($"{path}: the header runs past the end of the file");
        string header = Encoding.ASCII.GetString(all, at, headerLength);
        at += headerLength;
        string descr = Regex.Match(header, @"'descr':\s*'([^']*)'") is { Success: true } d ? d.Groups[1].Value : throw new FormatException($"{path}: header has no 'descr': {header.Trim()}");
        if (Regex.IsMatch(header, @"'fortran_order':\s*True")) throw new FormatException($"{path}: Fortran-ordered arrays are not read (save with numpy.ascontiguousarray)");
        var shapeText = Regex.Match(header, @"'shape':\s*\(([^)]*)\)") is { Success: true } sm ? sm.Groups[1].Value : throw new FormatException($"{path}: header has no 'shape': {header.Trim()}");
        long[] shape = shapeText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(x => long.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        long count = shape.Aggregate(1L, (a, b) => a * b);
        int size = descr switch { "<f4" or "<i4" => 4, "<f8" or "<i8" => 8, _ => throw new FormatException($"{path}: dtype '{descr}' is not read (little-endian float32, float64, int32, int64)") };
        if (all.Length - at != count * size) throw new FormatException($"{path}: {all.Length - at} data bytes for shape ({shapeText}) of {descr}, expected {count * size}");
        int start = at;
        return descr switch
        {
            "<f4" => tensor(Enumerable.Range(0, (int)count).Select(i => BinaryPrimitives.ReadSingleLittleEndian(all.AsSpan(start + 4 * i))).ToArray(), shape),
            "<f8" => tensor(Enumerable.Range(0, (int)count).Select(i => BinaryPrimitives.ReadDoubleLittleEndian(all.AsSpan(start + 8 * i))).ToArray(), shape),
            "<i4" => tensor(Enumerable.Range(0, (int)count).Select(i => (long)BinaryPrimitives.ReadInt32LittleEndian(all.AsSpan(start + 4 * i))).ToArray(), shape),
            _ => tensor(Enumerable.Range(0, (int)count).Select(i => BinaryPrimitives.ReadInt64LittleEndian(all.AsSpan(start + 8 * i))).ToArray(), shape),
        };
    }
}

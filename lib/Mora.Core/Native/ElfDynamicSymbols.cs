using System.Buffers.Binary;
using System.Text;

namespace Mora.Native;

/// <summary>The dynamic-linking facts of one ELF shared library that the libtorch binding needs: its soname, its
/// <c>DT_NEEDED</c> libraries, the global symbols it defines, and the unversioned global symbols it imports.</summary>
/// <param name="File">the file read</param>
/// <param name="Soname"><c>DT_SONAME</c>, or null</param>
/// <param name="Needed"><c>DT_NEEDED</c> entries in file order</param>
/// <param name="Defined">global, weak and unique symbols defined by the library (<c>.dynsym</c>, section index ≠ 0)</param>
/// <param name="ImportedUnversioned">undefined global (not weak) symbols without a symbol version: for
/// <c>libLibTorchSharp.so</c> these are exactly its libtorch imports (libc and libstdc++ imports carry GLIBC_* /
/// GLIBCXX_* versions)</param>
public sealed record ElfDynamicSymbols(string File, string? Soname, IReadOnlyList<string> Needed,
    IReadOnlySet<string> Defined, IReadOnlyList<string> ImportedUnversioned)
{
    const uint ShtDynsym = 11, ShtDynamic = 6, ShtGnuVersym = 0x6fffffff;
    const long DtNeeded = 1, DtSoname = 14;

    /// <summary>Reads a 64-bit little-endian ELF file's section headers and only its <c>.dynamic</c>, <c>.dynsym</c>,
    /// <c>.dynstr</c> and <c>.gnu.version</c> sections (libtorch_cpu.so is ~460 MB; these are ~10 MB of it).</summary>
    /// <exception cref="InvalidDataException">not an ELF file, not 64-bit little-endian, truncated or inconsistent; the
    /// message names the file</exception>
    public static ElfDynamicSymbols Read(string file)
    {
        using var fs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.RandomAccess);
        long length = fs.Length;
        byte[] eh = ReadAt(fs, 0, 64, file, "ELF header");
        if (eh[0] != 0x7f || eh[1] != (byte)'E' || eh[2] != (byte)'L' || eh[3] != (byte)'F')
            throw new InvalidDataException($"{file}: not an ELF file");
        if (eh[4] != 2 || eh[5] != 1)
            throw new InvalidDataException($"{file}: only 64-bit little-endian ELF is supported");
        long shoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(eh.AsSpan(0x28));
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(eh.AsSpan(0x3A));
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(eh.AsSpan(0x3C));
        if (shnum == 0 || shentsize < 64)
            throw new InvalidDataException($"{file}: no section headers (shnum {shnum}, shentsize {shentsize})");
        byte[] sh = ReadAt(fs, shoff, (long)shnum * shentsize, file, "section headers");

        (uint Type, long Offset, long Size, uint Link, long EntSize) Section(int i)
        {
            if (i < 0 || i >= shnum) throw new InvalidDataException($"{file}: section index {i} out of range ({shnum} sections)");
            var s = sh.AsSpan(i * shentsize, 64);
            return (BinaryPrimitives.ReadUInt32LittleEndian(s[4..]), (long)BinaryPrimitives.ReadUInt64LittleEndian(s[0x18..]),
                    (long)BinaryPrimitives.ReadUInt64LittleEndian(s[0x20..]), BinaryPrimitives.ReadUInt32LittleEndian(s[0x28..]),
                    (long)BinaryPrimitives.ReadUInt64LittleEndian(s[0x38..]));
        }
        int dynsym = -1, dynamic = -1, versym = -1;
        for (int i = 0; i < shnum; i++)
        {
            uint t = Section(i).Type;
            if (t == ShtDynsym) dynsym = i;
            else if (t == ShtDynamic) dynamic = i;
            else if (t == ShtGnuVersym) versym = i;
        }
        if (dynsym < 0) throw new InvalidDataException($"{file}: no .dynsym section (not a shared library?)");

        var stringTables = new Dictionary<uint, byte[]>();
        byte[] Strings(uint index)
        {
            if (!stringTables.TryGetValue(index, out var t))
            {
                var s = Section((int)index);
                stringTables[index] = t = ReadAt(fs, s.Offset, s.Size, file, $"string table (section {index})");
            }
            return t;
        }

        string? soname = null;
        var needed = new List<string>();
        if (dynamic >= 0)
        {
            var d = Section(dynamic);
            byte[] dyn = ReadAt(fs, d.Offset, d.Size, file, ".dynamic");
            byte[] dstr = Strings(d.Link);
            for (int at = 0; at + 16 <= dyn.Length; at += 16)
            {
                long tag = BinaryPrimitives.ReadInt64LittleEndian(dyn.AsSpan(at));
                if (tag == 0) break;
                ulong val = BinaryPrimitives.ReadUInt64LittleEndian(dyn.AsSpan(at + 8));
                if (tag == DtNeeded) needed.Add(CString(dstr, val, file));
                else if (tag == DtSoname) soname = CString(dstr, val, file);
            }
        }

        var ds = Section(dynsym);
        if (ds.EntSize != 24) throw new InvalidDataException($"{file}: .dynsym entry size {ds.EntSize}, expected 24");
        byte[] syms = ReadAt(fs, ds.Offset, ds.Size, file, ".dynsym");
        byte[] names = Strings(ds.Link);
        int count = syms.Length / 24;
        byte[]? versions = null;
        if (versym >= 0)
        {
            var v = Section(versym);
            versions = ReadAt(fs, v.Offset, v.Size, file, ".gnu.version");
            if (versions.Length < count * 2) throw new InvalidDataException($"{file}: .gnu.version shorter than .dynsym");
        }
        var defined = new HashSet<string>(count, StringComparer.Ordinal);
        var imported = new List<string>();
        for (int i = 1; i < count; i++)
        {
            var e = syms.AsSpan(i * 24, 24);
            uint nameOff = BinaryPrimitives.ReadUInt32LittleEndian(e);
            if (nameOff == 0) continue;
            int bind = e[4] >> 4;                    // 1 GLOBAL, 2 WEAK, 10 GNU_UNIQUE
            ushort shndx = BinaryPrimitives.ReadUInt16LittleEndian(e[6..]);
            if (shndx != 0)
            {
                if (bind is 1 or 2 or 10) defined.Add(CString(names, nameOff, file));
            }
            else if (bind == 1)
            {
                int version = versions is null ? 1 : BinaryPrimitives.ReadUInt16LittleEndian(versions.AsSpan(i * 2)) & 0x7fff;
                if (version <= 1) imported.Add(CString(names, nameOff, file));
            }
        }
        return new ElfDynamicSymbols(file, soname, needed, defined, imported);
    }

    static byte[] ReadAt(FileStream fs, long offset, long size, string file, string what)
    {
        if (offset < 0 || size < 0 || size > fs.Length - offset)
            throw new InvalidDataException($"{file}: truncated or corrupt ELF ({what} at offset {offset} + {size} past the end, {fs.Length} bytes)");
        if (size > int.MaxValue) throw new InvalidDataException($"{file}: {what} too large ({size} bytes)");
        var buf = new byte[size];
        fs.Position = offset;
        fs.ReadExactly(buf);
        return buf;
    }

    static string CString(byte[] table, ulong at, string file)
    {
        if (at >= (ulong)table.Length) throw new InvalidDataException($"{file}: string offset {at} past its table ({table.Length} bytes)");
        var rest = table.AsSpan((int)at);
        int end = rest.IndexOf((byte)0);
        if (end < 0) throw new InvalidDataException($"{file}: unterminated string at offset {at}");
        return Encoding.ASCII.GetString(rest[..end]);
    }
}

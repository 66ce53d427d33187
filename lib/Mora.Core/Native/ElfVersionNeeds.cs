using System.Buffers.Binary;
using System.Text;

namespace Mora.Native;

/// <summary>One entry of an ELF shared library's <c>.gnu.version_r</c> table: "this library needs
/// version <see cref="Version"/> of <see cref="File"/>".</summary>
/// <param name="File">the needed library, e.g. <c>libstdc++.so.6</c></param>
/// <param name="Version">the version name, e.g. <c>GLIBCXX_3.4.32</c></param>
/// <param name="Weak">whether <c>VER_FLG_WEAK</c> is set: the loader then tolerates a missing version</param>
/// <param name="FlagsOffset">file offset of the entry's 16-bit <c>vna_flags</c> field</param>
public readonly record struct ElfVersionNeed(string File, string Version, bool Weak, long FlagsOffset);

/// <summary>
/// Reads and edits the version-need table of a 64-bit little-endian ELF file (x86-64, arm64 Linux).
/// Used to make TorchSharp's native library load on systems whose libstdc++ predates GCC 13
/// (see <see cref="TorchRuntime"/>). Pure managed code: no tools such as patchelf are needed.
/// </summary>
public static class ElfVersionNeeds
{
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    /// <summary>Lists every (file, version) need of an ELF image.</summary>
    /// <exception cref="InvalidDataException">not a 64-bit little-endian ELF, or a table that runs past the end</exception>
    public static IReadOnlyList<ElfVersionNeed> Read(ReadOnlySpan<byte> elf, string name = "ELF image")
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException($"{name}: not an ELF file");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException($"{name}: only 64-bit little-endian ELF is supported");
        long shoff = (long)U64(elf, 0x28, name);
        int shentsize = U16(elf, 0x3A, name), shnum = U16(elf, 0x3C, name);
        if (shentsize < 64) throw new InvalidDataException($"{name}: bad section header size {shentsize}");
        var result = new List<ElfVersionNeed>();
        for (int s = 0; s < shnum; s++)
        {
            long sh = shoff + (long)s * shentsize;
            if (U32(elf, sh + 4, name) != ShtGnuVerneed) continue;
            long off = (long)U64(elf, sh + 0x18, name);
            uint strIndex = U32(elf, sh + 0x28, name);
            uint count = U32(elf, sh + 0x2C, name);
            long strOff = (long)U64(elf, shoff + strIndex * (long)shentsize + 0x18, name);
            long vn = off;
            for (uint i = 0; i < count; i++)
            {
                int cnt = U16(elf, vn + 2, name);
                string file = CString(elf, strOff + U32(elf, vn + 4, name), name);
                long aux = vn + U32(elf, vn + 8, name);
                for (int a = 0; a < cnt; a++)
                {
                    ushort flags = U16(elf, aux + 4, name);
                    string version = CString(elf, strOff + U32(elf, aux + 8, name), name);
                    result.Add(new ElfVersionNeed(file, version, (flags & VerFlgWeak) != 0, aux + 4));
                    uint next = U32(elf, aux + 12, name);
                    if (next == 0) break;
                    aux += next;
                }
                uint vnNext = U32(elf, vn + 12, name);
                if (vnNext == 0) break;
                vn += vnNext;
            }
        }
        return result;
    }

    /// <summary>Sets <c>VER_FLG_WEAK</c> on the need for <paramref name="version"/> in place.
    /// Returns how many entries changed (0 when already weak or absent). Only two bytes per entry change.</summary>
    public static int MarkWeak(Span<byte> elf, string version, string name = "ELF image") => SetWeak(elf, version, true, name);

    /// <summary>Clears <c>VER_FLG_WEAK</c> on <paramref name="version"/> (used by tests to rebuild the shipped file).</summary>
    public static int ClearWeak(Span<byte> elf, string version, string name = "ELF image") => SetWeak(elf, version, false, name);

    static int SetWeak(Span<byte> elf, string version, bool weak, string name)
    {
        int changed = 0;
        foreach (var need in Read(elf, name))
        {
            if (need.Version != version || need.Weak == weak) continue;
            var field = elf.Slice((int)need.FlagsOffset, 2);
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(field);
            BinaryPrimitives.WriteUInt16LittleEndian(field, weak ? (ushort)(flags | VerFlgWeak) : (ushort)(flags & ~VerFlgWeak));
            changed++;
        }
        return changed;
    }

    static void Check(ReadOnlySpan<byte> b, long at, int len, string name)
    {
        if (at < 0 || at + len > b.Length)
            throw new InvalidDataException($"{name}: truncated or corrupt ELF (offset {at} + {len} past end {b.Length})");
    }
    static ushort U16(ReadOnlySpan<byte> b, long at, string name) { Check(b, at, 2, name); return BinaryPrimitives.ReadUInt16LittleEndian(b.Slice((int)at, 2)); }
    static uint U32(ReadOnlySpan<byte> b, long at, string name) { Check(b, at, 4, name); return BinaryPrimitives.ReadUInt32LittleEndian(b.Slice((int)at, 4)); }
    static ulong U64(ReadOnlySpan<byte> b, long at, string name) { Check(b, at, 8, name); return BinaryPrimitives.ReadUInt64LittleEndian(b.Slice((int)at, 8)); }
    static string CString(ReadOnlySpan<byte> b, long at, string name)
    {
        Check(b, at, 1, name);
        var rest = b[(int)at..];
        int end = rest.IndexOf((byte)0);
        if (end < 0) throw new InvalidDataException($"{name}: unterminated string at offset {at}");
        return Encoding.ASCII.GetString(rest[..end]);
    }
}

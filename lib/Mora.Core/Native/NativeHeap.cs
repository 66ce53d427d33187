using System.Runtime.InteropServices;

namespace Mora.Native;

/// <summary>
/// glibc keeps memory that libtorch has freed in per-thread malloc arenas, so a process whose tensors are created on
/// many threads (a notebook kernel runs each cell on a pool thread) shows resident memory that grows although nothing is
/// leaked. <see cref="Trim"/> hands the free pages back to the system (glibc's <c>malloc_trim(0)</c>); memory tests call
/// it before they measure, so what they see is what is still in use.
/// </summary>
public static partial class NativeHeap
{
    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);

    /// <summary>Returns free heap pages to the system; false where not available (not Linux/glibc).</summary>
    public static bool Trim()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return MallocTrim(0) != 0; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }
}

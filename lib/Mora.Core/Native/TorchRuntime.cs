using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using TorchSharp;

namespace Mora.Native;

/// <summary>What <see cref="TorchRuntime.Ensure"/> found and did.</summary>
/// <param name="Action">"none needed" (Windows, macOS, or a libstdc++ that has the version), "patched", or "already patched"</param>
/// <param name="SystemLibStdCxx">the libstdc++ the check read (Linux only)</param>
/// <param name="Patched">files rewritten in this call</param>
/// <param name="Checked">every TorchSharp native library looked at</param>
public sealed record TorchNativeReport(string Action, string? SystemLibStdCxx, IReadOnlyList<string> Patched, IReadOnlyList<string> Checked)
{
    /// <summary>Which libtorch TorchSharp binds to: the package natives, or an installed PyTorch's
    /// (<see cref="LibTorchBinding"/>), with its symbol check.</summary>
    public LibTorchReport LibTorch { get; init; } = new("cpu", "package natives", null, []);
}

/// <summary>
/// Makes TorchSharp 0.107's native library load on Debian 12 / Ubuntu 22.04.
/// <para>
/// <c>libLibTorchSharp.so</c> is built with GCC 13 and records a need for <c>GLIBCXX_3.4.32</c> in its
/// <c>.gnu.version_r</c> table; libstdc++ 12 stops at 3.4.30, so the loader refuses the file and TorchSharp reports a
/// misleading "Failed to load native component". The only symbol tied to 3.4.32 is
/// <c>std::ios_base_library_init()</c>, which GCC 13's &lt;iostream&gt; references only to pin the version and no
/// relocation uses. Marking that one need weak (<c>VER_FLG_WEAK</c>) lets the loader accept the file, and everything
/// else binds as before.
/// </para>
/// <para>
/// <see cref="Ensure"/> does this before TorchSharp loads: it runs from this assembly's module initializer, which every
/// other assembly of the library runs before its own code (so merely using the library, from the command line, a test or a
/// notebook, applies it), edits every copy TorchSharp may load
/// (the app's output folder, the folder of TorchSharp.dll and its <c>cpu/</c> fallback, the NuGet cache copy a
/// notebook's <c>#r "nuget: ..."</c> loads), writes each through a temporary file and a rename, and does nothing on
/// Windows, on macOS, or where the system libstdc++ already has the version. Any other missing version is reported as
/// an error, not patched, because other symbols would then fail to bind.
/// </para>
/// <para>
/// It then binds TorchSharp to an installed PyTorch's libtorch when <c>MORA_LIBTORCH</c> is set or the kit was built
/// with <c>-p:TorchBackend=pytorch</c> (<see cref="LibTorchBinding"/>): the symbol check and the preload by full path
/// happen here, before TorchSharp's own loader runs.
/// </para>
/// </summary>
public static class TorchRuntime
{
    /// <summary>The one version need that is known to be safe to weaken (see the class remarks).</summary>
    public const string SafeToWeaken = "GLIBCXX_3.4.32";
    const string NativeName = "libLibTorchSharp.so";

    static readonly object Gate = new();
    static TorchNativeReport? _report;
    static Exception? _error;

    // The library's other assemblies run this initializer before their own code (lib/TorchRuntimeFirst.cs).
#pragma warning disable CA2255 // a library's module initializer on purpose: it must run before TorchSharp loads its native library
    [ModuleInitializer]
    internal static void Initialize()
    {
        try { Ensure(); } catch { /* kept in _error; rethrown with its message by Ensure() */ }
    }
#pragma warning restore CA2255

    /// <summary>Applies the fix once per process (later calls return the first report). Throws
    /// <see cref="PlatformNotSupportedException"/> with the reason when the native library cannot be made loadable.</summary>
    public static TorchNativeReport Ensure()
    {
        lock (Gate)
        {
            if (_error is null && _report is null)
            {
                try
                {
                    var report = Apply();
                    _report = report with { LibTorch = LibTorchBinding.Bind(report.Checked.FirstOrDefault()) };
                }
                catch (Exception e) { _error = e; }
            }
            if (_error is LibTorchException) throw new LibTorchException(_error.Message, _error);
            if (_error is not null) throw new PlatformNotSupportedException(_error.Message, _error);
            return _report!;
        }
    }

    static TorchNativeReport Apply()
    {
        if (!OperatingSystem.IsLinux())
            return new TorchNativeReport("none needed", null, [], []);
        var candidates = Candidates().ToList();   // the first is the copy TorchSharp's loader picks up first
        string? stdcxx = FindSystemLibStdCxx();
        byte[]? stdcxxBytes = stdcxx is null ? null : File.ReadAllBytes(stdcxx);
        bool Provides(string version) => stdcxxBytes is not null && Contains(stdcxxBytes, Encoding.ASCII.GetBytes(version + "\0"));

        var patched = new List<string>();
        var checkedFiles = new List<string>();
        bool sawPatchedAlready = false;
        foreach (string file in candidates)
        {
            checkedFiles.Add(file);
            byte[] bytes = File.ReadAllBytes(file);
            var needs = ElfVersionNeeds.Read(bytes, file);
            var missing = needs.Where(n => n.File.StartsWith("libstdc++", StringComparison.Ordinal) && !n.Weak && !Provides(n.Version)).ToList();
            if (missing.Count == 0)
            {
                sawPatchedAlready |= needs.Any(n => n.Version == SafeToWeaken && n.Weak);
                continue;
            }
            var unsafeMissing = missing.Where(n => n.Version != SafeToWeaken).Select(n => n.Version).ToList();
            if (unsafeMissing.Count > 0)
                throw new PlatformNotSupportedException(
                    $"{file} needs {string.Join(", ", unsafeMissing)} from libstdc++, which {stdcxx ?? "this system"} lacks. " +
                    "Only GLIBCXX_3.4.32 can be worked around; install a newer libstdc++ (GCC 13 or later).");
            ElfVersionNeeds.MarkWeak(bytes, SafeToWeaken, file);
            WriteAtomically(file, bytes);
            patched.Add(file);
        }
        string action = patched.Count > 0 ? "patched" : sawPatchedAlready ? "already patched" : "none needed";
        return new TorchNativeReport(action, stdcxx, patched, checkedFiles);
    }

    /// <summary>Every copy of the native library that TorchSharp's loader may pick up in this process.</summary>
    static IEnumerable<string> Candidates()
    {
        string rid = RuntimeInformation.OSArchitecture == Architecture.Arm64 ? "linux-arm64" : "linux-x64";
        var dirs = new List<string>();
        void Add(string? d) { if (!string.IsNullOrEmpty(d)) dirs.Add(Path.GetFullPath(d)); }

        Add(AppContext.BaseDirectory);
        Add(Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native"));
        string? tsDir = Path.GetDirectoryName(typeof(torch).Assembly.Location);   // typeof does not start TorchSharp
        if (!string.IsNullOrEmpty(tsDir))
        {
            Add(tsDir);
            Add(Path.Combine(tsDir, "cpu"));
            Add(Path.Combine(tsDir, "cuda"));
            Add(Path.Combine(tsDir, "runtimes", rid, "native"));
            Add(Path.Combine(tsDir, "..", "..", "runtimes", rid, "native"));      // TorchSharp.dll inside the NuGet cache
        }
        string version = typeof(torch).Assembly.GetName().Version is { } v ? $"{v.Major}.{v.Minor}.{v.Build}" : "";
        Add(Path.Combine(NuGetPackagesRoot, "torchsharp", version, "runtimes", rid, "native"));

        return dirs.Distinct(StringComparer.Ordinal)
                   .Select(d => Path.Combine(d, NativeName))
                   .Where(File.Exists)
                   .Select(f => Path.GetFullPath(new FileInfo(f).ResolveLinkTarget(true)?.FullName ?? f))
                   .Distinct(StringComparer.Ordinal);
    }

    /// <summary>NuGet's global packages folder: NUGET_PACKAGES, else ~/.nuget/packages.</summary>
    public static string NuGetPackagesRoot =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    static string? FindSystemLibStdCxx()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/maps"))
            {
                int at = line.IndexOf('/');
                if (at >= 0 && line.Contains("libstdc++.so", StringComparison.Ordinal)) return line[at..].Trim();
            }
        }
        catch (IOException) { }
        string[] known =
        [
            "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
            "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
        ];
        return known.FirstOrDefault(File.Exists);
    }

    static bool Contains(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle) >= 0;

    /// <summary>Writes next to <paramref name="path"/> and renames over it, so no reader sees a half-written file.</summary>
    static void WriteAtomically(string path, byte[] bytes)
    {
        string tmp = path + $".tmp-{Environment.ProcessId}";
        try
        {
            File.WriteAllBytes(tmp, bytes);
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(tmp, File.GetUnixFileMode(path));
            File.Move(tmp, path, overwrite: true);
        }
        catch (UnauthorizedAccessException e)
        {
            File.Delete(tmp);
            throw new PlatformNotSupportedException($"{path} must be patched to load on this system but is not writable: {e.Message}", e);
        }
    }
}

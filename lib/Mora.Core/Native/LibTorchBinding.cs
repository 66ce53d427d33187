using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Mora.Native;

/// <summary>A libtorch folder that TorchSharp cannot use: missing, unreadable, not ELF, or lacking symbols that
/// libLibTorchSharp.so imports. Thrown before anything native is loaded, so the process fails cleanly.</summary>
public sealed class LibTorchException(string message, Exception? inner = null) : PlatformNotSupportedException(message, inner);

/// <summary>Result of checking a libtorch folder against libLibTorchSharp.so (see <see cref="LibTorchBinding.Check"/>).</summary>
/// <param name="Folder">the libtorch folder</param>
/// <param name="TorchVersion">from <c>../version.py</c>, <c>../build-version</c>, or the NuGet package path; "unknown" otherwise</param>
/// <param name="LoadOrder">full paths in dependency order (each after every library of the folder it needs)</param>
/// <param name="SymbolsChecked">libtorch symbols libLibTorchSharp.so imports (undefined, global, unversioned)</param>
/// <param name="Missing">those no library of <see cref="LoadOrder"/> defines</param>
public sealed record LibTorchCheck(string Folder, string TorchVersion, IReadOnlyList<string> LoadOrder, int SymbolsChecked, IReadOnlyList<string> Missing)
{
    public bool AllResolve => Missing.Count == 0;
    public string Summary => AllResolve
        ? $"{SymbolsChecked.ToString("N0", CultureInfo.InvariantCulture)} libtorch symbols checked, all resolve"
        : $"{Missing.Count.ToString("N0", CultureInfo.InvariantCulture)} of {SymbolsChecked.ToString("N0", CultureInfo.InvariantCulture)} libtorch symbols do not resolve";
}

/// <summary>How this process binds TorchSharp to libtorch (shown by <c>info</c>).</summary>
/// <param name="Backend">the build's TorchBackend (cpu, cuda-linux, cuda-windows, pytorch)</param>
/// <param name="Source">"package natives", "MORA_LIBTORCH" or "python3 torch"</param>
/// <param name="Check">the symbol check of the folder used; null when the package natives are used</param>
/// <param name="Preloaded">libraries loaded by full path before TorchSharp's loader ran</param>
public sealed record LibTorchReport(string Backend, string Source, LibTorchCheck? Check, IReadOnlyList<string> Preloaded);

/// <summary>
/// Binds TorchSharp to the libtorch of an installed PyTorch (CPU or CUDA) instead of the NuGet libtorch natives.
/// <para>
/// Which libtorch is used: <c>MORA_LIBTORCH=&lt;folder holding libtorch_cpu.so&gt;</c> when set, in any build (it takes
/// precedence over the natives a cpu/cuda build carries); otherwise, in a <c>-p:TorchBackend=pytorch</c> build, the
/// folder <c>python3 -c "import torch; ..."</c> reports (<c>&lt;site-packages&gt;/torch/lib</c>); otherwise the package
/// natives, as before. No <c>LD_LIBRARY_PATH</c> is needed: the libraries are loaded by full path, dependencies first
/// (the order follows their <c>DT_NEEDED</c> entries), before TorchSharp's loader runs, which then finds them by soname.
/// </para>
/// <para>
/// Before loading anything, every libtorch symbol libLibTorchSharp.so imports is looked up in the folder's libraries
/// (their <c>.dynsym</c>); a folder that is missing symbols, or holds a file that is not a readable ELF library, raises
/// <see cref="LibTorchException"/> naming the folder, the torch version, the missing symbols and the versions known to
/// work, instead of a native crash or TorchSharp's generic load error.
/// </para>
/// </summary>
public static class LibTorchBinding
{
    /// <summary>The environment variable naming a libtorch folder.</summary>
    public const string EnvironmentVariable = "MORA_LIBTORCH";
    public const string KnownToWork =
        "libtorch 2.10.0 (the libtorch-cpu NuGet package TorchSharp 0.107.0 is built against) and PyTorch 2.11.0 (+cu130, measured on an NVIDIA H200, 2026-11-28)";
    const string PythonProbe = "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))";
    static readonly TimeSpan PythonTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The TorchBackend this assembly was built with (an <see cref="AssemblyMetadataAttribute"/> the csproj writes).</summary>
    public static string BuildBackend { get; } =
        typeof(LibTorchBinding).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == "TorchBackend")?.Value ?? "cpu";

    /// <summary>Chooses the folder (see the class remarks), checks it and preloads it. Called by <see cref="TorchRuntime.Ensure"/>
    /// after the libLibTorchSharp.so fix; <paramref name="libTorchSharp"/> is the copy TorchSharp will load.</summary>
    internal static LibTorchReport Bind(string? libTorchSharp)
    {
        string? env = Environment.GetEnvironmentVariable(EnvironmentVariable);
        string source;
        string folder;
        if (!string.IsNullOrWhiteSpace(env)) { source = EnvironmentVariable; folder = env.Trim(); }
        else if (BuildBackend == "pytorch") { source = "python3 torch"; folder = FindPythonTorch(); }
        else return PackageNatives(libTorchSharp);

        if (!OperatingSystem.IsLinux())
            throw new LibTorchException($"{EnvironmentVariable} / TorchBackend=pytorch is supported on Linux only (set here: {folder}).");
        if (libTorchSharp is null)
            throw new LibTorchException($"libLibTorchSharp.so (the TorchSharp package's native binding) was not found next to the app or in the NuGet cache; it is needed to use the libtorch in {folder}.");
        var check = Check(folder, libTorchSharp);
        if (ConflictingNatives(check.Folder) is { } other)
            throw new LibTorchException(
                $"{EnvironmentVariable}={check.Folder} cannot be used by this build: its native folder {Path.GetDirectoryName(other)} " +
                $"carries libtorch (TorchBackend={BuildBackend}), and TorchSharp's loader would load that libtorch_cpu.so beside " +
                $"the one in {check.Folder} (two copies abort the process). Build with -p:TorchBackend=pytorch " +
                $"(or run the GPU-server bundle: dotnet run -c Release -- bundle), or unset {EnvironmentVariable}.");
        if (!check.AllResolve)
            throw new LibTorchException(
                $"The libtorch in {check.Folder} (torch {check.TorchVersion}) does not match TorchSharp 0.107.0: {check.Summary} " +
                $"(e.g. {string.Join(", ", check.Missing.Take(5))}). Versions known to work: {KnownToWork}. " +
                $"Install a matching PyTorch (pip install torch==2.11.0), point {EnvironmentVariable} at a matching torch/lib, " +
                $"or unset {EnvironmentVariable} to use the NuGet CPU natives (a -p:TorchBackend=cpu build).");
        var loaded = new List<string>();
        foreach (string lib in check.LoadOrder.Append(libTorchSharp))
        {
            try { NativeLibrary.Load(lib); }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                throw new LibTorchException(
                    $"Loading {lib} failed (libtorch folder {check.Folder}, torch {check.TorchVersion}; loaded before it: " +
                    $"{(loaded.Count == 0 ? "none" : string.Join(", ", loaded.Select(Path.GetFileName)))}): {e.Message}. " +
                    $"Versions known to work: {KnownToWork}. Unset {EnvironmentVariable} to use the NuGet CPU natives.", e);
            }
            loaded.Add(lib);
        }
        return new LibTorchReport(BuildBackend, source, check, loaded);
    }

    /// <summary>
    /// The CPU package natives, preloaded by full path (Linux, a <c>cpu</c> build), so that a libtorch in the system's
    /// library path is never the one bound: in a notebook kernel TorchSharp.dll sits in the NuGet cache, away from the
    /// natives, and TorchSharp's loader asks the dynamic loader for <c>libtorch_cpu.so</c> by name, which finds, for
    /// instance, the libtorch 1.13 that Debian's python3-torch installs in /usr/lib/x86_64-linux-gnu, and then fails to
    /// load its binding. A library loaded by path answers later requests for its name. The folders tried: the binding's
    /// own, the app's (and its runtimes/linux-x64/native), then the libtorch-cpu-linux-x64 package in the NuGet cache,
    /// newest first; the first whose libraries define every symbol the binding imports is loaded. None found: nothing is
    /// preloaded (TorchSharp's own search runs as before).
    /// </summary>
    static LibTorchReport PackageNatives(string? libTorchSharp)
    {
        var none = new LibTorchReport(BuildBackend, "package natives", null, []);
        if (!OperatingSystem.IsLinux() || libTorchSharp is null || BuildBackend != "cpu") return none;
        foreach (string folder in PackageNativeFolders(libTorchSharp))
        {
            LibTorchCheck check;
            try { check = Check(folder, libTorchSharp); }
            catch (LibTorchException) { continue; }
            if (!check.AllResolve) continue;
            var loaded = new List<string>();
            foreach (string lib in check.LoadOrder)
            {
                try { NativeLibrary.Load(lib); }
                catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
                {
                    throw new LibTorchException($"Loading the package's {lib} failed (loaded before it: " +
                        $"{(loaded.Count == 0 ? "none" : string.Join(", ", loaded.Select(Path.GetFileName)))}): {e.Message}", e);
                }
                loaded.Add(lib);
            }
            return new LibTorchReport(BuildBackend, "package natives", check, loaded);
        }
        return none;
    }

    static IEnumerable<string> PackageNativeFolders(string libTorchSharp)
    {
        string rid = RuntimeInformation.OSArchitecture == Architecture.Arm64 ? "linux-arm64" : "linux-x64";
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var candidates = new List<string?>
        {
            Path.GetDirectoryName(libTorchSharp), AppContext.BaseDirectory, Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native"),
        };
        string package = Path.Combine(TorchRuntime.NuGetPackagesRoot, $"libtorch-cpu-{rid}");
        if (Directory.Exists(package))
            candidates.AddRange(Directory.GetDirectories(package).OrderByDescending(d => Version.TryParse(Path.GetFileName(d), out var v) ? v : new Version())
                .Select(d => Path.Combine(d, "runtimes", rid, "native")));
        foreach (string? c in candidates)
        {
            if (string.IsNullOrEmpty(c)) continue;
            string full = Path.GetFullPath(c);
            if (seen.Add(full) && File.Exists(Path.Combine(full, "libtorch_cpu.so"))) yield return full;
        }
    }

    /// <summary>A libtorch_cpu.so other than <paramref name="folder"/>'s in the folders the .NET host searches for
    /// native libraries (NATIVE_DLL_SEARCH_DIRECTORIES: a cpu/cuda build's app folder). TorchSharp's static constructor
    /// asks for <c>torch_cpu</c> by name there before any code of ours can intervene, which would load a second copy.</summary>
    static string? ConflictingNatives(string folder)
    {
        string mine = RealPath(Path.Combine(folder, "libtorch_cpu.so"));
        var dirs = (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") as string ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Append(Path.GetDirectoryName(typeof(TorchSharp.torch).Assembly.Location) ?? "");
        foreach (string d in dirs.Where(d => d.Length > 0))
        {
            string candidate = Path.Combine(d, "libtorch_cpu.so");
            if (File.Exists(candidate) && RealPath(candidate) != mine) return Path.GetFullPath(candidate);
        }
        return null;
    }

    static string RealPath(string file)
    {
        try { return Path.GetFullPath(new FileInfo(file).ResolveLinkTarget(true)?.FullName ?? file); }
        catch (IOException) { return Path.GetFullPath(file); }
    }

    /// <summary>Checks a libtorch folder against a libLibTorchSharp.so without loading anything: the load order from
    /// <c>DT_NEEDED</c>, and whether each imported libtorch symbol is defined by a library of that order.</summary>
    /// <exception cref="LibTorchException">the folder or libtorch_cpu.so is missing, or a file is not a readable ELF library</exception>
    public static LibTorchCheck Check(string folder, string libTorchSharp)
    {
        string full;
        try { full = Path.GetFullPath(folder); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        { throw new LibTorchException($"{EnvironmentVariable}: '{folder}' is not a usable path: {e.Message}", e); }
        string version = TorchVersion(full);
        if (!Directory.Exists(full))
            throw new LibTorchException($"The libtorch folder {full} does not exist. Set {EnvironmentVariable} to the folder holding libtorch_cpu.so (a PyTorch install's torch/lib), or unset it. Versions known to work: {KnownToWork}.");
        if (!File.Exists(Path.Combine(full, "libtorch_cpu.so")))
            throw new LibTorchException($"The libtorch folder {full} (torch {version}) holds no libtorch_cpu.so. Set {EnvironmentVariable} to a PyTorch install's torch/lib, or unset it. Versions known to work: {KnownToWork}.");

        var cache = new Dictionary<string, ElfDynamicSymbols>(StringComparer.Ordinal);
        ElfDynamicSymbols Elf(string file)
        {
            if (cache.TryGetValue(file, out var e)) return e;
            try { return cache[file] = ElfDynamicSymbols.Read(file); }
            catch (Exception x) when (x is InvalidDataException or IOException or UnauthorizedAccessException)
            {
                throw new LibTorchException(
                    $"Cannot use the libtorch in {full} (torch {version}): {(x is InvalidDataException ? x.Message : $"{file}: {x.Message}")}. " +
                    $"Versions known to work: {KnownToWork}. Install a matching PyTorch, or unset {EnvironmentVariable} to use the NuGet CPU natives.", x);
            }
        }

        var binding = Elf(libTorchSharp);
        // Roots: what libLibTorchSharp.so needs from this folder, then libtorch's CUDA half if present (TorchSharp asks
        // for torch_cuda by name); each root after the folder's libraries it needs, depth first.
        var roots = binding.Needed.Concat(["libc10.so", "libtorch_cpu.so", "libtorch.so", "libc10_cuda.so", "libtorch_cuda.so"])
                               .Where(n => File.Exists(Path.Combine(full, n))).Distinct(StringComparer.Ordinal);
        var order = new List<string>();
        var state = new Dictionary<string, bool>(StringComparer.Ordinal);   // false: visiting, true: done
        void Visit(string name)
        {
            if (state.ContainsKey(name)) return;                             // done, or a cycle (loader tolerates it)
            state[name] = false;
            string path = Path.Combine(full, name);
            foreach (string dep in Elf(path).Needed)
                if (File.Exists(Path.Combine(full, dep))) Visit(dep);
            state[name] = true;
            order.Add(path);
        }
        foreach (string r in roots) Visit(r);

        var missing = binding.ImportedUnversioned.Where(s => !order.Any(f => Elf(f).Defined.Contains(s))).ToList();
        return new LibTorchCheck(full, version, order, binding.ImportedUnversioned.Count, missing);
    }

    /// <summary>The torch version of a libtorch folder: <c>../version.py</c> (<c>__version__</c>, a PyTorch install),
    /// <c>../build-version</c> (a libtorch zip), the NuGet package path (<c>libtorch-*/VERSION/runtimes/...</c>), else "unknown".</summary>
    public static string TorchVersion(string folder)
    {
        try
        {
            string parent = Path.GetFullPath(Path.Combine(folder, ".."));
            string py = Path.Combine(parent, "version.py");
            if (File.Exists(py))
            {
                var m = Regex.Match(File.ReadAllText(py), @"^__version__\s*(?::\s*\w+\s*)?=\s*['""]([^'""]+)['""]", RegexOptions.Multiline);
                if (m.Success) return m.Groups[1].Value;
            }
            string bv = Path.Combine(parent, "build-version");
            if (File.Exists(bv) && File.ReadAllText(bv).Trim() is { Length: > 0 and < 64 } text) return text;
            var nuget = Regex.Match(Path.GetFullPath(folder).Replace('\\', '/'), @"/(libtorch-[^/]+)/(\d+\.\d+\.\d+[^/]*)/runtimes/");
            if (nuget.Success) return $"{nuget.Groups[2].Value} (NuGet {nuget.Groups[1].Value})";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { }
        return "unknown";
    }

    /// <summary>Asks the machine's python3 where torch keeps its libraries.</summary>
    static string FindPythonTorch()
    {
        string Fail(string why) => throw new LibTorchException(
            $"This kit was built with -p:TorchBackend=pytorch, {EnvironmentVariable} is not set, and finding PyTorch with " +
            $"python3 -c \"{PythonProbe}\" failed: {why}. Set {EnvironmentVariable}=<site-packages>/torch/lib (the folder " +
            $"holding libtorch_cpu.so), or install PyTorch for python3. Versions known to work: {KnownToWork}.");
        var psi = new ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(PythonProbe);
        Process p;
        try { p = Process.Start(psi) ?? throw new InvalidOperationException("no process"); }
        catch (Exception e) { return Fail($"python3 could not be started ({e.Message})"); }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(PythonTimeout))
            {
                try { p.Kill(true); } catch (InvalidOperationException) { }
                return Fail($"no answer within {PythonTimeout.TotalSeconds:F0} s");
            }
            string err = stderr.Result.Trim();
            string lastErr = err.Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim() ?? "";
            string dir = stdout.Result.Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim() ?? "";
            if (p.ExitCode != 0) return Fail($"exit code {p.ExitCode}{(lastErr.Length > 0 ? $", {lastErr}" : "")}");
            if (dir.Length == 0 || !Directory.Exists(dir)) return Fail($"it printed '{dir}', which is not a folder");
            return dir;
        }
    }
}

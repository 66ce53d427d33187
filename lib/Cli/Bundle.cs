using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Mora.Cli;

/// <summary>
/// <c>bundle</c>: packs the kit for a Linux x64 machine that has PyTorch (CPU or CUDA) and no .NET. The folder holds
/// the .NET runtime this process runs on (<c>dotnet-rt.tar.xz</c>), the kit published with
/// <c>-p:TorchBackend=pytorch</c> (<c>app.tar.xz</c>: no libtorch natives) and <c>run.sh</c>, which unpacks both once
/// (into <c>$MORA_KIT_CACHE</c>, default <c>/tmp/mora-kit-&lt;content hash&gt;</c>) and runs any kit command from any
/// working directory. The kit then finds PyTorch itself (<c>MORA_LIBTORCH</c>, else python3's torch).
/// Needs the .NET SDK, <c>tar</c> and <c>xz</c> here.
/// </summary>
public static class KitBundle
{
    const string Project = "Mora.Notebooks.csproj";
    /// <summary>What a build of the kit reads at the repository root besides <c>lib/</c> (which holds the library's
    /// projects and their shared props): the command line's project, the settings and the TorchBackend choice every
    /// project shares, and the package versions.</summary>
    static readonly string[] RootBuildFiles = [Project, "Directory.Build.props", "Directory.Packages.props"];

    /// <summary>Builds the bundle into <paramref name="outDir"/> (default <c>&lt;repository&gt;/.device</c>) and returns its files.</summary>
    public static IReadOnlyList<string> Create(string? outDir, TextWriter log)
    {
        string root = FindRepository() ?? throw new DirectoryNotFoundException(
            $"bundle: {Project} not found in the current folder, its parents, or above the kit's own folder; run it from the repository");
        string output = Path.GetFullPath(outDir ?? Path.Combine(root, ".device"));
        string work = Directory.CreateTempSubdirectory("mora-bundle-").FullName;
        try
        {
            // A copy of the sources, so the pytorch restore does not replace this checkout's obj/ (cpu) assets.
            string src = Path.Combine(work, "src"), app = Path.Combine(work, "app");
            Directory.CreateDirectory(src);
            foreach (string file in RootBuildFiles) File.Copy(Path.Combine(root, file), Path.Combine(src, file));
            CopyTree(Path.Combine(root, "lib"), Path.Combine(src, "lib"));
            log.WriteLine($"publishing {Project} with -p:TorchBackend=pytorch ...");
            Exec(DotnetHost(), ["publish", Path.Combine(src, Project), "-c", "Release", "-p:TorchBackend=pytorch", "-o", app, "-nologo", "-v", "quiet"], work);

            // Linux x64 only: drop the satellite resource folders and other platforms' natives.
            foreach (string d in Directory.GetDirectories(app))
                if (Path.GetFileName(d) != "runtimes") Directory.Delete(d, true);
            string runtimes = Path.Combine(app, "runtimes");
            if (Directory.Exists(runtimes))
                foreach (string d in Directory.GetDirectories(runtimes))
                    if (Path.GetFileName(d) != "linux-x64") Directory.Delete(d, true);
            var torchNatives = Directory.EnumerateFiles(app, "*", SearchOption.AllDirectories)
                .Where(f => Path.GetFileName(f) is var n && (n.StartsWith("libtorch", StringComparison.Ordinal) || n.StartsWith("libc10", StringComparison.Ordinal))).ToList();
            if (torchNatives.Count > 0)
                throw new InvalidOperationException($"bundle: the pytorch publish still holds libtorch natives: {string.Join(", ", torchNatives)}");

            // The .NET runtime this process runs on: the host, hostfxr, and this Microsoft.NETCore.App version only.
            string fx = Path.TrimEndingDirectorySeparator(RuntimeEnvironment.GetRuntimeDirectory());
            string dotnetRoot = Path.GetFullPath(Path.Combine(fx, "..", "..", ".."));
            string rt = Path.Combine(work, "rt");
            Directory.CreateDirectory(rt);
            File.Copy(Path.Combine(dotnetRoot, "dotnet"), Path.Combine(rt, "dotnet"));
            CopyTree(Path.Combine(dotnetRoot, "host", "fxr"), Path.Combine(rt, "host", "fxr"));
            CopyTree(fx, Path.Combine(rt, "shared", "Microsoft.NETCore.App", Path.GetFileName(fx)));

            Directory.CreateDirectory(output);
            string appTar = Path.Combine(output, "app.tar.xz"), rtTar = Path.Combine(output, "dotnet-rt.tar.xz");
            log.WriteLine("packing (xz) ...");
            Exec("tar", ["-C", app, "-cJf", appTar + ".tmp", "."], work);
            Exec("tar", ["-C", rt, "-cJf", rtTar + ".tmp", "."], work);
            File.Move(appTar + ".tmp", appTar, true);
            File.Move(rtTar + ".tmp", rtTar, true);
            string stamp = Stamp(appTar, rtTar);
            string runSh = Path.Combine(output, "run.sh");
            File.WriteAllText(runSh, RunScript(stamp).Replace("\r\n", "\n"));
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(runSh, File.GetUnixFileMode(runSh) | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
            return [runSh, appTar, rtTar];
        }
        finally
        {
            try { Directory.Delete(work, true); } catch (IOException) { }
        }
    }

    /// <summary>The script run on the GPU machine: <c>bash run.sh &lt;kit command&gt; [options]</c>.</summary>
    static string RunScript(string stamp) => $$"""
        #!/usr/bin/env bash
        # Mora.Notebooks for a Linux x64 machine with PyTorch (CPU or CUDA) and no .NET:  bash run.sh <kit command> [options]
        # e.g.  bash run.sh info    bash run.sh bench --device cuda --out runs/bench
        # The first run unpacks the .NET runtime and the kit into $MORA_KIT_CACHE (default /tmp/mora-kit-{{stamp}}).
        # The kit finds PyTorch's libtorch itself: MORA_LIBTORCH=<folder holding libtorch_cpu.so> when set, else
        # python3 -c 'import torch' (site-packages/torch/lib). It checks the symbols TorchSharp needs before loading it.
        set -euo pipefail
        here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
        cache=${MORA_KIT_CACHE:-${TMPDIR:-/tmp}/mora-kit-{{stamp}}}
        if [ ! -f "$cache/ready" ]; then
          tmp="$cache.tmp.$$"
          rm -rf "$tmp"; mkdir -p "$tmp/dotnet" "$tmp/app"
          tar -C "$tmp/dotnet" -xJf "$here/dotnet-rt.tar.xz"
          tar -C "$tmp/app" -xJf "$here/app.tar.xz"
          touch "$tmp/ready"
          mkdir -p "$(dirname "$cache")"
          mv -T "$tmp" "$cache" 2>/dev/null || rm -rf "$tmp"   # another run unpacked it first
        fi
        export DOTNET_ROOT="$cache/dotnet" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
        export HOME=${HOME:-/tmp}
        exec "$cache/dotnet/dotnet" "$cache/app/Mora.Notebooks.dll" "$@"

        """;

    static string Stamp(params string[] files)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (string f in files)
        {
            using var s = File.OpenRead(f);
            var buf = new byte[1 << 20];
            int n;
            while ((n = s.Read(buf)) > 0) sha.AppendData(buf, 0, n);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset())[..12];
    }

    static string? FindRepository()
    {
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, Project)) && Directory.Exists(Path.Combine(d.FullName, "lib")))
                    return d.FullName;
        return null;
    }

    /// <summary>The dotnet host running this process (so the SDK beside it publishes), else the one on PATH.</summary>
    static string DotnetHost() =>
        Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";

    static void CopyTree(string from, string to)
    {
        foreach (string dir in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(from, dir);
            if (rel.Split(Path.DirectorySeparatorChar).Any(p => p is "bin" or "obj")) continue;
            Directory.CreateDirectory(Path.Combine(to, rel));
        }
        Directory.CreateDirectory(to);
        foreach (string file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(from, file);
            if (rel.Split(Path.DirectorySeparatorChar).Any(p => p is "bin" or "obj")) continue;
            File.Copy(file, Path.Combine(to, rel));
        }
    }

    static void Exec(string exe, string[] args, string workingDir)
    {
        var psi = new ProcessStartInfo(exe) { WorkingDirectory = workingDir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment.Remove("MSBuildExtensionsPath");     // when started from `dotnet run`, let the child SDK choose
        psi.Environment.Remove("MSBuildSDKsPath");
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"bundle: could not start {exe}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"bundle: {exe} {string.Join(" ", args)} failed (exit {p.ExitCode}):\n{stdout.Result}{stderr.Result}");
    }
}

using System.Diagnostics;
using Mora.Native;

namespace Mora.Tests;

/// <summary>The TorchSharp native fix, tensors working from a clean clone, and the CPU/CUDA package switch.</summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class NativeAndBuildTests
{
    [Fact]
    public void TensorsWorkHere()
    {
        var report = TorchRuntime.Ensure();
        Assert.Contains(report.Action, new[] { "none needed", "patched", "already patched" });
        using var rng = TestSupport.TorchSeed();
        using var a = randn(64, 32, dtype: ScalarType.Float64);
        using var q = linalg.qr(a).Q;
        using var qtq = q.t().matmul(q);
        using var eye = torch.eye(32, dtype: ScalarType.Float64);
        Assert.True(TestSupport.MaxAbs(qtq, eye) < 1e-12);
        using var p = randn(8, requires_grad: true);
        using var s = (p * p).sum();
        s.backward();
        Assert.True(TestSupport.MaxAbs(p.grad!, 2 * p) < 1e-6);
    }

    [Fact]
    public void TheShippedLibraryNeedsGlibcxx3432AndThePatchTouchesOnlyItsFlag()
    {
        if (!OperatingSystem.IsLinux()) return;   // the fix is a no-op elsewhere; nothing to check
        string nuget = TorchRuntime.NuGetPackagesRoot;
        string file = Path.Combine(nuget, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(file), $"TorchSharp's native library not found at {file}");
        byte[] bytes = File.ReadAllBytes(file);
        ElfVersionNeeds.ClearWeak(bytes, TorchRuntime.SafeToWeaken);   // the file as shipped
        var shipped = ElfVersionNeeds.Read(bytes);
        var need = Assert.Single(shipped, n => n.Version == TorchRuntime.SafeToWeaken);
        Assert.Equal("libstdc++.so.6", need.File);
        Assert.False(need.Weak);
        byte[] patched = (byte[])bytes.Clone();
        Assert.Equal(1, ElfVersionNeeds.MarkWeak(patched, TorchRuntime.SafeToWeaken));
        Assert.Equal(0, ElfVersionNeeds.MarkWeak(patched, TorchRuntime.SafeToWeaken));       // idempotent
        var diff = Enumerable.Range(0, bytes.Length).Where(i => bytes[i] != patched[i]).ToList();
        Assert.Single(diff);
        Assert.Equal(need.FlagsOffset, diff[0]);
        Assert.True(ElfVersionNeeds.Read(patched).Single(n => n.Version == TorchRuntime.SafeToWeaken).Weak);
        // Every other need is untouched.
        Assert.Equal(shipped.Where(n => n.Version != TorchRuntime.SafeToWeaken), ElfVersionNeeds.Read(patched).Where(n => n.Version != TorchRuntime.SafeToWeaken));
        Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.Read(bytes.AsSpan(0, 100)));
        Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.Read(new byte[64]));
    }

    [Fact]
    public void AFreshProcessRepatchesAnUnpatchedCopyAndComputes()
    {
        if (!OperatingSystem.IsLinux()) return;
        // Restore the shipped (unpatched) flag on this output folder's copy, as a fresh build would have it. This
        // process already mapped the library, so replacing the file does not disturb it.
        string copy = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(copy), copy);
        byte[] bytes = File.ReadAllBytes(copy);
        ElfVersionNeeds.ClearWeak(bytes, TorchRuntime.SafeToWeaken);
        string tmp = copy + ".unpatch";
        File.WriteAllBytes(tmp, bytes);
        File.Move(tmp, copy, overwrite: true);
        Assert.False(ElfVersionNeeds.Read(File.ReadAllBytes(copy)).Single(n => n.Version == TorchRuntime.SafeToWeaken).Weak);

        string cli = Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.dll");
        var (code, output) = Run("dotnet", $"\"{cli}\" info");
        Assert.True(code == 0, output);
        Assert.Contains("tensor check: ok", output);
        bool systemIsNew = output.Contains("native fix: none needed");
        if (!systemIsNew) Assert.Contains($"patched: {copy}", output);
        Assert.Equal(!systemIsNew, ElfVersionNeeds.Read(File.ReadAllBytes(copy)).Single(n => n.Version == TorchRuntime.SafeToWeaken).Weak);
    }

    /// <summary>Starts a process and returns its exit code and output. <paramref name="environment"/> sets (or, with a
    /// null value, removes) variables of the child's environment.</summary>
    public static (int Code, string Output) Run(string exe, string args, string? workingDir = null, int timeoutMs = 300_000,
        IReadOnlyDictionary<string, string?>? environment = null)
    {
        var psi = new ProcessStartInfo(exe, args) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDir ?? TestSupport.RepoRoot };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
            if (value is null) psi.Environment.Remove(name); else psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs)) { p.Kill(true); return (-1, "timed out"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>A cpu build binds the package's own libtorch by full path, so a libtorch in the system's library path
    /// (Debian's python3-torch puts libtorch 1.13 in /usr/lib/x86_64-linux-gnu) is never the one TorchSharp loads; this
    /// machine had it installed when a notebook kernel failed that way.</summary>
    [Fact]
    public void TheCpuBuildPreloadsThePackagesOwnLibTorch()
    {
        if (!OperatingSystem.IsLinux() || LibTorchBinding.BuildBackend != "cpu" || Environment.GetEnvironmentVariable(LibTorchBinding.EnvironmentVariable) is not null) return;
        var report = TorchRuntime.Ensure().LibTorch;
        Assert.Equal("package natives", report.Source);
        Assert.NotNull(report.Check);
        Assert.True(report.Check!.AllResolve, report.Check.Summary);
        Assert.Contains(report.Preloaded, p => Path.GetFileName(p) == "libtorch_cpu.so");
        foreach (var lib in report.Preloaded)
            Assert.False(lib.StartsWith("/usr/", StringComparison.Ordinal) || lib.StartsWith("/lib", StringComparison.Ordinal), $"{lib} is a system library");
        var maps = File.ReadAllLines("/proc/self/maps").Where(l => l.Contains("libtorch_cpu.so", StringComparison.Ordinal)).Select(l => l[l.IndexOf('/')..]).Distinct().ToList();
        Assert.True(maps.Count == 1, $"libtorch_cpu mapped from {string.Join(", ", maps)}");
    }

    /// <summary>A first build on an empty NuGet cache says what it downloads, on the console, in a form `dotnet run` (which
    /// builds quietly) still shows; with the cache filled it says nothing.</summary>
    [Fact]
    public void AFirstBuildSaysWhatItDownloadsEvenWhenQuiet()
    {
        string empty = Directory.CreateTempSubdirectory("mora-empty-nuget-").FullName;
        try
        {
            var (code, output) = Run("dotnet", "msbuild Mora.Notebooks.csproj -nologo -v:q -t:FirstRestoreNote", environment: new Dictionary<string, string?> { ["NUGET_PACKAGES"] = empty });
            Assert.True(code == 0, output);
            Assert.Contains("first build: NuGet is downloading TorchSharp", output);
            Assert.Contains("1.1 GB", output);
            var (code2, cached) = Run("dotnet", "msbuild Mora.Notebooks.csproj -nologo -v:q -t:FirstRestoreNote");
            Assert.True(code2 == 0, cached);
            Assert.DoesNotContain("first build", cached);
        }
        finally { Directory.Delete(empty, true); }
    }

    /// <summary>The one documented setting selects the package, for the command line and for the library's core (whose
    /// assembly records the backend; every project gets the packages from Directory.Build.props); CUDA packages are not
    /// restorable here, so the test evaluates the projects' items without restoring.</summary>
    [Theory]
    [InlineData("cpu", "TorchSharp", "TorchSharp-cuda-linux")]
    [InlineData("cuda-linux", "TorchSharp-cuda-linux", "libtorch-cpu-linux-x64")]
    [InlineData("cuda-windows", "TorchSharp-cuda-windows", "libtorch-cpu-linux-x64")]
    [InlineData("pytorch", "TorchSharp", "libtorch-cpu-linux-x64")]
    public void TorchBackendPropertySelectsThePackage(string backend, string expected, string absent)
    {
        foreach (string project in new[] { "Mora.Notebooks.csproj", "lib/Mora.Core/Mora.Core.csproj" })
        {
            var (code, output) = Run("dotnet", $"msbuild {project} -nologo -getItem:PackageReference -getItem:AssemblyAttribute -p:TorchBackend={backend}");
            Assert.True(code == 0, output);
            Assert.Contains($"\"Identity\": \"{expected}\"", output);
            Assert.DoesNotContain($"\"Identity\": \"{absent}\"", output);
            if (backend == "cpu") Assert.Contains(OperatingSystem.IsLinux() ? "libtorch-cpu-linux-x64" : "libtorch-cpu-", output);
            if (project.Contains("Core")) Assert.Contains($"\"_Parameter2\": \"{backend}\"", output);
        }
        var (bad, badOut) = Run("dotnet", "msbuild Mora.Notebooks.csproj -nologo -t:CheckTorchBackend -p:TorchBackend=rocm");
        Assert.NotEqual(0, bad);
        Assert.Contains("TorchBackend='rocm' is not known", badOut);
    }
}

/// <summary>The native fix inside the real notebook kernel, where TorchSharp arrives through <c>#r "nuget: ..."</c>
/// and its native library is loaded from the NuGet cache.</summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class NotebookKernelNativeFixTests
{
    [Fact]
    public void TheKernelLoadsTorchAfterTheLibraryIsReferenced()
    {
        if (!OperatingSystem.IsLinux()) return;
        string nuget = TorchRuntime.NuGetPackagesRoot;
        string cached = Path.Combine(nuget, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(cached), cached);
        // Put the cache copy back as NuGet extracted it (unpatched), as on a fresh machine.
        byte[] bytes = File.ReadAllBytes(cached);
        if (ElfVersionNeeds.ClearWeak(bytes, TorchRuntime.SafeToWeaken) > 0)
        {
            File.WriteAllBytes(cached + ".test", bytes);
            File.Move(cached + ".test", cached, overwrite: true);
        }
        // As notebooks/setup.dib references it: the top of the library, whose dependencies the kernel finds beside it.
        string dll = Path.Combine(AppContext.BaseDirectory, "Mora.Experiments.dll").Replace("\\", "/");
        using var kernel = new Mora.Notebooks.KernelSession(TestSupport.RepoRoot);
        var restore = kernel.Submit("#r \"nuget: TorchSharp, 0.107.0\"\n#r \"nuget: libtorch-cpu-linux-x64, 2.10.0\"", TimeSpan.FromMinutes(5));
        Assert.True(restore.Ok, $"restore cell failed (is the local tool restored? run 'dotnet tool restore'): {restore.Error}");
        var reference = kernel.Submit($"#r \"{dll}\"", TimeSpan.FromMinutes(1));
        Assert.True(reference.Ok, reference.Error);
        var run = kernel.Submit(
            "var rep = Mora.Native.TorchRuntime.Ensure();\n" +
            "Console.WriteLine(\"FIX \" + rep.Action + \" | \" + string.Join(\",\", rep.Patched));\n" +
            "var op = Mora.CompressDecompress.ForLoraRank(64, 64, 8, Mora.MoraType.Rotation);\n" +
            "var M = TorchSharp.torch.randn(op.RHat, op.RHat, dtype: TorchSharp.torch.ScalarType.Float64);\n" +
            "Console.WriteLine(\"RANK \" + TorchSharp.torch.linalg.matrix_rank(op.DeltaWeight(M)).item<long>());", TimeSpan.FromMinutes(2));
        string output = string.Concat(run.Outputs.Where(o => o.Kind == "stdout").Select(o => o.Text));
        Assert.True(run.Ok, $"{run.Error}\n{output}");
        Assert.Contains("RANK 64", output);
        if (!output.Contains("FIX none needed"))
        {
            Assert.Contains(cached, output);
            Assert.True(ElfVersionNeeds.Read(File.ReadAllBytes(cached)).Single(n => n.Version == TorchRuntime.SafeToWeaken).Weak);
        }
    }
}

/// <summary>Tests that start processes which apply the native fix to shared files (the NuGet cache copy, the test
/// output's copy) run one at a time, so one test's "unpatched" state is not patched behind its back.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ExternalProcesses
{
    public const string Name = "external processes";
}

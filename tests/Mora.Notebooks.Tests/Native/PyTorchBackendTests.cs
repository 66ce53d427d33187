using Mora.Native;

namespace Mora.Tests;

/// <summary>The PyTorch backend (MORA_LIBTORCH / -p:TorchBackend=pytorch) and the GPU-server bundle, checked on CPU with
/// the NuGet libtorch folder standing in for a PyTorch install's torch/lib.</summary>
[Trait("Speed", "Slow")]
[Collection(ExternalProcesses.Name)]
public class PyTorchBackendTests
{
    static string NuGetLibTorch => Path.Combine(TorchRuntime.NuGetPackagesRoot, "libtorch-cpu-linux-x64", "2.10.0", "runtimes", "linux-x64", "native");
    static string LibTorchSharp => Path.Combine(TorchRuntime.NuGetPackagesRoot, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
    static readonly string[] KnownGood = ["libtorch 2.10.0", "PyTorch 2.11.0"];

    [Fact]
    public void TheNuGetLibTorchPassesTheSymbolCheckInDependencyOrder()
    {
        if (!OperatingSystem.IsLinux()) return;
        var check = LibTorchBinding.Check(NuGetLibTorch, LibTorchSharp);
        Assert.True(check.SymbolsChecked > 1000, $"{check.SymbolsChecked} symbols");
        Assert.True(check.AllResolve, string.Join(", ", check.Missing.Take(5)));
        Assert.Equal($"{check.SymbolsChecked:N0} libtorch symbols checked, all resolve", check.Summary);
        Assert.StartsWith("2.10.0", check.TorchVersion);
        var names = check.LoadOrder.Select(Path.GetFileName).ToList();
        // Each library after every library of the folder it needs (DT_NEEDED), whatever the folder holds.
        Assert.True(names.IndexOf("libc10.so") < names.IndexOf("libtorch_cpu.so"), string.Join(", ", names));
        Assert.True(names.IndexOf("libtorch_cpu.so") < names.IndexOf("libtorch.so"), string.Join(", ", names));
        Assert.Contains(names, n => n!.StartsWith("libgomp", StringComparison.Ordinal));
        Assert.True(names.FindIndex(n => n!.StartsWith("libgomp", StringComparison.Ordinal)) < names.IndexOf("libtorch_cpu.so"));
        Assert.DoesNotContain("libtorch_python.so", names);   // not needed by libLibTorchSharp.so
    }

    [Fact]
    public void TheVersionComesFromVersionPyBesideTheLibFolder()
    {
        string dir = Directory.CreateTempSubdirectory("mora-torchver-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "torch", "lib"));
            File.WriteAllText(Path.Combine(dir, "torch", "version.py"), "from typing import Optional\n__version__ = '2.11.0+cu130'\ngit_version = 'abc'\n");
            Assert.Equal("2.11.0+cu130", LibTorchBinding.TorchVersion(Path.Combine(dir, "torch", "lib")));
            Assert.Equal("unknown", LibTorchBinding.TorchVersion(dir));
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>The built kit with every libtorch native removed, so only MORA_LIBTORCH can supply them.</summary>
    static string AppWithoutLibTorch(string root)
    {
        string app = Path.Combine(root, "app");
        foreach (string file in Directory.EnumerateFiles(AppContext.BaseDirectory, "*", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(AppContext.BaseDirectory, file);
            string name = Path.GetFileName(file);
            if (name.StartsWith("libtorch", StringComparison.Ordinal) || name.StartsWith("libc10", StringComparison.Ordinal)
                || name.StartsWith("libgomp", StringComparison.Ordinal) || name.StartsWith("libshm", StringComparison.Ordinal)) continue;
            if (rel.StartsWith("cpu" + Path.DirectorySeparatorChar, StringComparison.Ordinal)) continue;
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(app, rel))!);
            File.Copy(file, Path.Combine(app, rel));
        }
        return Path.Combine(app, "Mora.Notebooks.dll");
    }

    static Dictionary<string, string?> Env(string? libtorch) => new() { [LibTorchBinding.EnvironmentVariable] = libtorch };

    [Fact]
    public void MoraLibTorchSuppliesLibTorchToAKitWithoutNativesAndItTrains()
    {
        if (!OperatingSystem.IsLinux()) return;
        string dir = Directory.CreateTempSubdirectory("mora-pytorch-e2e-").FullName;
        try
        {
            string dll = AppWithoutLibTorch(dir);
            var (code, output) = NativeAndBuildTests.Run("dotnet", $"\"{dll}\" info", environment: Env(NuGetLibTorch));
            Assert.True(code == 0, output);
            Assert.Contains($"libtorch: {NuGetLibTorch} (from MORA_LIBTORCH", output);
            Assert.Contains("torch 2.10.0", output);
            Assert.Matches(@"symbol check: 1,\d{3} libtorch symbols checked, all resolve", output);
            Assert.Contains("preloaded: libc10.so, libgomp-98b21ff3.so.1, libtorch_cpu.so, libtorch.so, libLibTorchSharp.so", output);
            Assert.Contains("tensor check: ok", output);

            var (trainCode, trainOut) = NativeAndBuildTests.Run("dotnet",
                $"\"{dll}\" memorization --preset smoke --steps 2 --pretrain-steps 2 --eval-points 1 --methods lora --out \"{dir}/run\"",
                environment: Env(NuGetLibTorch));
            Assert.True(trainCode == 0, trainOut);
            Assert.True(File.Exists(Path.Combine(dir, "run", "figures", "table.txt")), trainOut);
            // (Without MORA_LIBTORCH, TorchSharp's own fallback would copy the NuGet cache's natives into app/cpu/; the
            // bundle test below checks the case with no libtorch to fall back on.)

        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("no-symbols")]
    [InlineData("truncated")]
    [InlineData("missing-folder")]
    public void AnIncompatibleLibTorchGivesAClearErrorNotACrash(string kind)
    {
        if (!OperatingSystem.IsLinux()) return;
        string dir = Directory.CreateTempSubdirectory("mora-pytorch-bad-").FullName;
        try
        {
            string dll = AppWithoutLibTorch(dir);
            string lib = Path.Combine(dir, "torch", "lib");
            Directory.CreateDirectory(lib);
            foreach (string f in Directory.GetFiles(NuGetLibTorch))
                if (Path.GetFileName(f) != "libtorch_cpu.so") File.CreateSymbolicLink(Path.Combine(lib, Path.GetFileName(f)), f);
            string cpu = Path.Combine(lib, "libtorch_cpu.so");
            if (kind == "no-symbols") File.Copy("/lib/x86_64-linux-gnu/libm.so.6", cpu);   // a valid ELF library without libtorch's symbols
            else if (kind == "truncated")
            {
                using var src = File.OpenRead(Path.Combine(NuGetLibTorch, "libtorch_cpu.so"));
                var head = new byte[4096];
                src.ReadExactly(head);
                File.WriteAllBytes(cpu, head);
            }
            else lib = Path.Combine(dir, "nowhere");
            File.WriteAllText(Path.Combine(dir, "torch", "version.py"), "__version__ = '1.99.0+test'\n");

            var (code, output) = NativeAndBuildTests.Run("dotnet", $"\"{dll}\" info", environment: Env(lib));
            Assert.NotEqual(0, code);
            Assert.DoesNotContain(code, new[] { 134, 139 });
            Assert.Contains(lib, output);
            foreach (string v in KnownGood) Assert.Contains(v, output);
            Assert.DoesNotContain("Unhandled exception", output);
            if (kind == "no-symbols")
            {
                Assert.Contains("torch 1.99.0+test", output);
                Assert.Matches(@"1,\d{3} of 1,\d{3} libtorch symbols do not resolve \(e\.g\. _Z", output);
            }
            if (kind == "truncated") Assert.Contains($"{cpu}: truncated or corrupt ELF", output);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ATruncatedOrNonElfFileIsAnInvalidDataExceptionNamingIt()
    {
        string dir = Directory.CreateTempSubdirectory("mora-elf-").FullName;
        try
        {
            string text = Path.Combine(dir, "text.so");
            File.WriteAllText(text, "not an ELF file at all, but long enough to hold a header .......................");
            Assert.Contains(text, Assert.Throws<InvalidDataException>(() => ElfDynamicSymbols.Read(text)).Message);
            string empty = Path.Combine(dir, "empty.so");
            File.WriteAllBytes(empty, []);
            Assert.Contains(empty, Assert.Throws<InvalidDataException>(() => ElfDynamicSymbols.Read(empty)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void TheBundleIsSmallHoldsNoLibTorchAndRunsWithMoraLibTorch()
    {
        if (!OperatingSystem.IsLinux()) return;
        string dir = Directory.CreateTempSubdirectory("mora-bundle-test-").FullName;
        try
        {
            string cli = Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.dll");
            string bundle = Path.Combine(dir, "bundle");
            var (code, output) = NativeAndBuildTests.Run("dotnet", $"\"{cli}\" bundle --out \"{bundle}\"", timeoutMs: 900_000);
            Assert.True(code == 0, output);
            long size = Directory.EnumerateFiles(bundle, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            Assert.True(size < 64L * 1024 * 1024, $"bundle is {size / 1048576.0:F1} MiB");
            Assert.True(File.Exists(Path.Combine(bundle, "run.sh")));

            // Unpacked by run.sh into its cache; no libtorch anywhere in it.
            var env = new Dictionary<string, string?> { ["MORA_KIT_CACHE"] = Path.Combine(dir, "cache"), [LibTorchBinding.EnvironmentVariable] = NuGetLibTorch };
            string other = Directory.CreateTempSubdirectory("mora-bundle-cwd-").FullName;   // any working directory
            var (runCode, runOut) = NativeAndBuildTests.Run("bash", $"\"{Path.Combine(bundle, "run.sh")}\" info", workingDir: other, environment: env);
            Directory.Delete(other, true);
            Assert.True(runCode == 0, runOut);
            Assert.Contains("build TorchBackend=pytorch", runOut);
            Assert.Matches(@"symbol check: 1,\d{3} libtorch symbols checked, all resolve", runOut);
            Assert.Contains("tensor check: ok", runOut);
            var unpacked = Directory.EnumerateFiles(Path.Combine(dir, "cache"), "*", SearchOption.AllDirectories).Select(Path.GetFileName).ToList();
            Assert.Contains("dotnet", unpacked);
            Assert.DoesNotContain(unpacked, n => n!.StartsWith("libtorch", StringComparison.Ordinal) || n.StartsWith("libc10", StringComparison.Ordinal));

            // No MORA_LIBTORCH and no PyTorch for python3 here: the kit's auto-detection fails with the clear message.
            env[LibTorchBinding.EnvironmentVariable] = null;
            var (bare, bareOut) = NativeAndBuildTests.Run("bash", $"\"{Path.Combine(bundle, "run.sh")}\" info", environment: env);
            Assert.NotEqual(0, bare);
            Assert.DoesNotContain(bare, new[] { 134, 139 });
            Assert.Contains("TorchBackend=pytorch, MORA_LIBTORCH is not set", bareOut);
            Assert.Contains("python3", bareOut);
            foreach (string v in KnownGood) Assert.Contains(v, bareOut);
        }
        finally { Directory.Delete(dir, true); }
    }
}

using System.Runtime.CompilerServices;
using Mora.Native;

namespace Mora.Tests;

/// <summary>Paths and helpers shared by the tests.</summary>
public static class TestSupport
{
    /// <summary>Applies the TorchSharp native fix before any test touches a tensor.</summary>
    [ModuleInitializer]
    internal static void Init() => TorchRuntime.Ensure();

    /// <summary>The repository root (the folder holding Mora.Notebooks.csproj).</summary>
    public static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Mora.Notebooks.csproj"))) return dir.FullName;
            throw new InvalidOperationException($"no Mora.Notebooks.csproj above {AppContext.BaseDirectory}");
        }
    }

    /// <summary>../shared beside the checkout (CI clones with shared/ beside it); MORA_SHARED overrides.</summary>
    public static string SharedDir
    {
        get
        {
            string dir = Environment.GetEnvironmentVariable("MORA_SHARED") ?? Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));
            if (!Directory.Exists(dir))
                throw new DirectoryNotFoundException($"the shared folder with golden vectors and GSM8K is missing: {dir} (set MORA_SHARED)");
            return dir;
        }
    }

    /// <summary>A fresh seed per test run, printed on failure through the message.</summary>
    public static readonly long RunSeed = Environment.GetEnvironmentVariable("MORA_TEST_SEED") is { } s ? long.Parse(s) : DateTime.UtcNow.Ticks % 1_000_000;

    public static double MaxAbs(Tensor a, Tensor b)
    {
        using var d = (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max();
        return d.item<double>();
    }

    public static double MaxAbs(Tensor a)
    {
        using var d = a.to(ScalarType.Float64).abs().max();
        return d.item<double>();
    }

    public static string TempDir()
    {
        string d = Path.Combine(Path.GetTempPath(), "mora-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }
}

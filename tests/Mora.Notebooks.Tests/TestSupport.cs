using System.Runtime.CompilerServices;
using Mora.Native;

namespace Mora.Tests;

/// <summary>Paths and helpers shared by the tests.</summary>
public static class TestSupport
{
    /// <summary>Applies the TorchSharp native fix before any test touches a tensor.</summary>
    [ModuleInitializer]
    internal static void Init()
    {
        TorchRuntime.Ensure();
        CpuThreads.Configure();
    }

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

    /// <summary>The test data the repository carries: tests/data (golden vectors of the reference's operators).</summary>
    public static string TestData => Path.Combine(RepoRoot, "tests", "data");

    /// <summary>The real GSM8K (MIT licence) the repository carries: datasets/gsm8k.</summary>
    public static string Gsm8kDir => Path.Combine(RepoRoot, "datasets", "gsm8k");

    /// <summary>The environment variable that chooses the run's base seed: a number replays that seed, <c>explore</c>
    /// draws a fresh one (printed, so a failure can be replayed); unset, the fixed <see cref="DefaultSeed"/> is used, so
    /// the README's test command gives the same result on every run of the same commit.</summary>
    public const string SeedVariable = "MORA_TEST_SEED";

    /// <summary>The base seed of an ordinary run.</summary>
    public const long DefaultSeed = 20240520;

    /// <summary>The run's base seed (see <see cref="SeedVariable"/>); every test derives its own from it with
    /// <see cref="Seed"/>.</summary>
    public static readonly long RunSeed = ReadRunSeed();

    static long ReadRunSeed()
    {
        string? text = Environment.GetEnvironmentVariable(SeedVariable);
        if (string.IsNullOrWhiteSpace(text)) return DefaultSeed;
        if (text.Trim().Equals("explore", StringComparison.OrdinalIgnoreCase))
        {
            long seed = Random.Shared.NextInt64(1, 1_000_000_000);
            string line = $"{SeedVariable}=explore: this run's base seed is {seed} (replay it with {SeedVariable}={seed})";
            Console.Error.WriteLine(line);
            try { File.AppendAllText(Path.Combine(Path.GetTempPath(), "mora-test-seeds.txt"), $"{DateTime.UtcNow:O} {line}\n"); } catch (IOException) { }
            return seed;
        }
        return long.TryParse(text, out long s) ? s
            : throw new InvalidOperationException($"{SeedVariable}='{text}' is not a number or 'explore'");
    }


    /// <summary>The README and the documents beside what they describe (lib/, figures/, notebooks/), in that order: the
    /// tests that hold the documentation's numbers and snippets to the files read them all, so a passage may move
    /// between them and stay held.</summary>
    public static string Docs => string.Join("\n", new[] { "README.md", "lib/README.md", "figures/README.md", "notebooks/README.md" }
        .Select(f => Path.Combine(RepoRoot, f)).Where(File.Exists).Select(File.ReadAllText));
    /// <summary>This test's own seed: the run's base seed mixed with a stable hash of the calling test's name (and
    /// <paramref name="salt"/>), so tests do not share one stream and can run in parallel, and every run of a commit
    /// draws the same inputs. Failure messages should quote it.</summary>
    public static int Seed(long salt = 0, [CallerMemberName] string test = "")
    {
        ulong h = 14695981039346656037UL;                         // FNV-1a over the name: stable across processes
        foreach (char c in test) { h ^= c; h *= 1099511628211UL; }
        h ^= (ulong)RunSeed * 0x9E3779B97F4A7C15UL;
        h ^= (ulong)salt * 0xC2B2AE3D27D4EB4FUL;
        h ^= h >> 29;
        return (int)(h % int.MaxValue);
    }

    /// <summary>A torch generator of this test's own (<see cref="Seed"/>), for <c>randn(..., generator: g)</c>.</summary>
    public static torch.Generator Generator(long salt = 0, [CallerMemberName] string test = "") => new((ulong)Seed(salt, test));

    static readonly object GlobalTorchRng = new();

    /// <summary>Seeds torch's process-wide generator with this test's seed (<see cref="Seed"/>) and holds it until
    /// disposed. Module initialisation (nn.Linear, adapters) and the trainer draw from that one generator, so tests that
    /// use it take turns through this lock while every other test runs in parallel; each still gets its own seed, and
    /// the same draws on every run. Use as <c>using var rng = TestSupport.TorchSeed();</c>.</summary>
    /// <remarks>Hold it on one thread: do not <c>await</c> inside (a Monitor is released by the thread that took it). A test
    /// that waits over 10 minutes for it fails with a message instead of hanging.</remarks>
    public static IDisposable TorchSeed(long salt = 0, [CallerMemberName] string test = "")
    {
        if (!Monitor.TryEnter(GlobalTorchRng, TimeSpan.FromMinutes(10)))
            throw new TimeoutException($"{test}: waited 10 minutes for torch's global generator (a test holds TorchSeed across an await, or never disposed it)");
        try { torch.manual_seed(Seed(salt, test)); }
        catch { Monitor.Exit(GlobalTorchRng); throw; }
        return new Release();
    }

    sealed class Release : IDisposable
    {
        int _done;
        public void Dispose() { if (Interlocked.Exchange(ref _done, 1) == 0) Monitor.Exit(GlobalTorchRng); }
    }

    /// <summary>An FsCheck configuration that throws on failure and replays this test's own seed (<see cref="Seed"/>),
    /// so a property test draws the same cases on every run of a commit (explore with <see cref="SeedVariable"/>).</summary>
    public static FsCheck.Config Property(int maxTest, [CallerMemberName] string test = "") =>
        FsCheck.Config.QuickThrowOnFailure.WithMaxTest(maxTest).WithQuietOnSuccess(true)
            .WithReplay(Microsoft.FSharp.Core.FSharpOption<FsCheck.Replay>.Some(
                new FsCheck.Replay(new FsCheck.Rnd((ulong)Seed(0, test)), Microsoft.FSharp.Core.FSharpOption<int>.None)));

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

    /// <summary>Starts <c>dotnet <paramref name="arguments"/></c> and kills its whole process tree (not a polite cancel)
    /// as soon as <paramref name="file"/> exists (a checkpoint pointer, say); fails if the process ended first or the file
    /// did not appear within 3 minutes.</summary>
    public static void KillWhenExists(string arguments, string file)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet", arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine(); p.BeginErrorReadLine();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!File.Exists(file) && !p.HasExited && clock.Elapsed < TimeSpan.FromMinutes(3)) Thread.Sleep(20);
        Assert.False(p.HasExited, $"the job finished before it could be killed (waiting for {file})");
        Assert.True(File.Exists(file), $"no {file} after {clock.Elapsed}");
        p.Kill(entireProcessTree: true);
        p.WaitForExit();
    }

    /// <summary>Runs <paramref name="f"/> on a thread of its own and returns what it threw (null if nothing); fails if it
    /// has not ended after <paramref name="seconds"/>. A guard against a hang (a read that waits for a FIFO's writer, a
    /// catastrophic pattern, a huge allocation), not a measurement: the bound is far above any honest duration on a busy
    /// 2-core machine, and the thread is not the pool's, so a pool starved by parallel tests cannot delay its start.</summary>
    public static Exception? Unhung(Action f, string what, double seconds = 120)
    {
        Exception? thrown = null;
        var thread = new Thread(() => { try { f(); } catch (Exception e) { thrown = e; } }) { IsBackground = true, Name = what };
        thread.Start();
        if (!thread.Join(TimeSpan.FromSeconds(seconds)))
            throw new TimeoutException($"{what}: still running after {seconds} s (it hangs)");
        return thrown;
    }

    public static string TempDir()
    {
        string d = Path.Combine(Path.GetTempPath(), "mora-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }
}

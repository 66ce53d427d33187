using System.Globalization;
using TorchSharp;

namespace Mora.Native;

/// <summary>How many threads libtorch uses on the CPU, and why (<see cref="CpuThreads.Configure"/>).</summary>
/// <param name="Threads">libtorch's intra-op threads after the call</param>
/// <param name="Reason">where the number came from, in words</param>
public sealed record CpuThreadChoice(int Threads, string Reason)
{
    /// <summary>One line for a log: "CPU: 1 libtorch thread (…)".</summary>
    public override string ToString() => $"CPU: {Threads} libtorch thread{(Threads == 1 ? "" : "s")} ({Reason})";
}

/// <summary>
/// The kit's CPU thread rule. libtorch starts one OpenMP thread per core; the kit's models are small, so those threads
/// mostly wait on each other, and on a shared machine (two jobs, a notebook beside a test run) they fight for cores:
/// on this project's 2-core machine the main job took 6:10 with libtorch's default and 0:44 with one thread (the same
/// table). So, unless the user says otherwise:
/// <list type="bullet">
/// <item><c>MORA_THREADS=N</c> sets N threads (the kit's own variable, checked);</item>
/// <item>else <c>OMP_NUM_THREADS</c>, when set, is left to libtorch (which reads it);</item>
/// <item>else a machine of at most <see cref="SmallMachineCores"/> cores gets 1 thread (sharing is the likely case);</item>
/// <item>else half the cores, at most <see cref="MaxDefaultThreads"/> (room for a second job; more rarely helps these sizes).</item>
/// </list>
/// The command line, the notebooks' setup and the tests call it once, before the first tensor; it changes nothing on a
/// GPU, and the same thread count gives the same results.
/// </summary>
public static class CpuThreads
{
    public const string Variable = "MORA_THREADS";
    public const int SmallMachineCores = 4;
    public const int MaxDefaultThreads = 8;

    static readonly object Gate = new();
    static CpuThreadChoice? _choice;

    /// <summary>The rule's choice for this machine and environment (no native call).</summary>
    /// <exception cref="ArgumentException">MORA_THREADS is not a whole number from 1 to 1024</exception>
    public static CpuThreadChoice Choose(IReadOnlyDictionary<string, string?> environment, int cores)
    {
        if (environment.TryGetValue(Variable, out var own) && !string.IsNullOrWhiteSpace(own))
        {
            if (!int.TryParse(own.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n is < 1 or > 1024)
                throw new ArgumentException($"{Variable}='{own}' must be a whole number of threads from 1 to 1024", Variable);
            return new(n, $"{Variable}={n}");
        }
        if (environment.TryGetValue("OMP_NUM_THREADS", out var omp) && !string.IsNullOrWhiteSpace(omp))
            return new(-1, $"OMP_NUM_THREADS={omp.Trim()}, left to libtorch");
        if (cores <= SmallMachineCores)
            return new(1, $"{cores} cores: one thread per process is fastest where jobs share them; {Variable}=N for more");
        int t = Math.Min(MaxDefaultThreads, cores / 2);
        return new(t, $"half of {cores} cores; {Variable}=N to change");
    }

    /// <summary>Applies the rule once per process (later calls return the first choice), or, with
    /// <paramref name="threads"/> (a command's <c>--threads</c>), that number, which later calls keep.</summary>
    /// <exception cref="ArgumentException"><paramref name="threads"/> is not from 1 to 1024</exception>
    public static CpuThreadChoice Configure(int? threads = null)
    {
        lock (Gate)
        {
            if (threads is { } n)
            {
                if (n is < 1 or > 1024) throw new ArgumentException($"threads must be a whole number from 1 to 1024, got {n}", "threads");
                TorchRuntime.Ensure();
                torch.set_num_threads(n);
                return _choice = new(torch.get_num_threads(), $"--threads {n}");
            }
            if (_choice is not null) return _choice;
            TorchRuntime.Ensure();
            var env = new Dictionary<string, string?>
            {
                [Variable] = Environment.GetEnvironmentVariable(Variable),
                ["OMP_NUM_THREADS"] = Environment.GetEnvironmentVariable("OMP_NUM_THREADS"),
            };
            var choice = Choose(env, Environment.ProcessorCount);
            if (choice.Threads > 0) torch.set_num_threads(choice.Threads);
            return _choice = choice with { Threads = torch.get_num_threads() };
        }
    }
}

using Mora.Native;

namespace Mora.Tests;

/// <summary>The CPU thread rule: the user's MORA_THREADS first (checked), then OMP_NUM_THREADS left to libtorch, then one
/// thread on a small machine and half the cores (at most 8) on a large one; and the process applied it.</summary>
public class CpuThreadsTests
{
    static Dictionary<string, string?> Env(string? mora = null, string? omp = null) => new() { ["MORA_THREADS"] = mora, ["OMP_NUM_THREADS"] = omp };

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(4, 1)]
    [InlineData(6, 3)]
    [InlineData(16, 8)]
    [InlineData(128, 8)]
    public void DefaultDependsOnTheCores(int cores, int expected) => Assert.Equal(expected, CpuThreads.Choose(Env(), cores).Threads);

    [Fact]
    public void TheUsersChoiceWins()
    {
        Assert.Equal(3, CpuThreads.Choose(Env(mora: "3", omp: "7"), 2).Threads);
        var omp = CpuThreads.Choose(Env(omp: "7"), 2);
        Assert.Equal(-1, omp.Threads);                                   // libtorch reads OMP_NUM_THREADS itself
        Assert.Contains("OMP_NUM_THREADS=7", omp.Reason);
        Assert.Equal(1, CpuThreads.Choose(Env(mora: " "), 2).Threads);   // blank means unset
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-2")]
    [InlineData("two")]
    [InlineData("1.5")]
    [InlineData("5000")]
    public void ABadMoraThreadsIsNamed(string value)
    {
        var e = Assert.Throws<ArgumentException>(() => CpuThreads.Choose(Env(mora: value), 2));
        Assert.Contains("MORA_THREADS", e.Message);
        Assert.Contains(value, e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(2000)]
    public void ABadThreadsOptionIsNamed(int threads) =>
        Assert.Contains("threads", Assert.Throws<ArgumentException>(() => CpuThreads.Configure(threads)).Message);

    [Fact]
    public void TheTestProcessRunsTheRule()
    {
        var choice = CpuThreads.Configure();
        Assert.Equal(torch.get_num_threads(), choice.Threads);
        Assert.Contains("libtorch thread", choice.ToString());
        if (Environment.GetEnvironmentVariable("MORA_THREADS") is null && Environment.GetEnvironmentVariable("OMP_NUM_THREADS") is null
            && Environment.ProcessorCount <= CpuThreads.SmallMachineCores)
            Assert.Equal(1, torch.get_num_threads());
    }
}

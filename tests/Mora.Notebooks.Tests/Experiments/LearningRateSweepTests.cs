using Mora.Experiments;

namespace Mora.Tests;

/// <summary>The learning-rate rule on synthetic response curves (no training): the best rate is chosen, ties go to the
/// lower loss, a best rate at an end extends the grid (at most twice, then flagged), diverged runs never win, and bad
/// grids are named.</summary>
public class LearningRateSweepTests
{
    /// <summary>A unimodal score in log-rate with its peak at <paramref name="peak"/>, plus seeded noise well below the
    /// gap between grid points.</summary>
    static Func<double, (double, double)> Curve(double peak, List<double> calls, int seed)
    {
        var rng = new Random(seed);
        return lr =>
        {
            calls.Add(lr);
            double d = Math.Log10(lr / peak);
            return (0.9 - d * d * 0.2 + rng.NextDouble() * 1e-4, 1 + d * d);
        };
    }

    [Fact]
    public void ChoosesThePeakInsideTheGrid()
    {
        var calls = new List<double>();
        var grid = LearningRateSweep.LogGrid(1e-3, 4);
        Assert.Equal([1e-3, 3.16e-3, 1e-2, 3.16e-2], grid);
        var (chosen, points) = LearningRateSweep.Choose("lora", 8, grid, Curve(3e-3, calls, TestSupport.Seed()));
        Assert.Equal(3.16e-3, chosen);
        Assert.Equal(4, calls.Count);                       // no extension: the best is inside
        Assert.Single(points, p => p.Chosen);
        Assert.DoesNotContain(points, p => p.AtEdge);
    }

    [Fact]
    public void BestAtAnEndExtendsTheGridThenFlags()
    {
        var calls = new List<double>();
        var (chosen, points) = LearningRateSweep.Choose("mora-rotation", 1, [1e-3, 1e-2], Curve(1, calls, TestSupport.Seed()));
        Assert.Equal(2 + LearningRateSweep.MaxExtensions, calls.Count);
        Assert.Equal(1e-2 * Math.Pow(10, LearningRateSweep.MaxExtensions), chosen, 12);
        Assert.True(points.Single(p => p.Chosen).AtEdge);

        calls.Clear();
        (chosen, points) = LearningRateSweep.Choose("lora", 1, [1e-3, 1e-2, 1e-1], Curve(6e-4, calls, TestSupport.Seed(1)));
        Assert.Equal(4, calls.Count);                       // one step down (1e-4) scores lower, so 1e-3 is now inside
        Assert.Equal(1e-3, chosen, 12);
        Assert.False(points.Single(p => p.Chosen).AtEdge);
    }

    [Fact]
    public void TiesGoToTheLowerLossAndDivergedNeverWins()
    {
        var (chosen, _) = LearningRateSweep.Choose("full", 0, [1e-4, 1e-3, 1e-2], lr => (0.5, lr == 1e-3 ? 0.1 : 0.2));
        Assert.Equal(1e-3, chosen);
        var (c2, points) = LearningRateSweep.Choose("full", 0, [1e-4, 1e-3, 1e-2], lr => lr == 1e-2 ? LearningRateSweep.Diverged : (lr == 1e-3 ? 0.4 : 0.3, 1.0));
        Assert.Equal(1e-3, c2);
        var (c3, _) = LearningRateSweep.Choose("full", 0, [1e-4, 1e-3], lr => lr == 1e-3 ? (double.NaN, double.NaN) : (0.01, 5));
        Assert.True(c3 < 1e-3);                              // NaN scores worst, so the low end wins and extends
        string path = Path.Combine(TestSupport.TempDir(), LearningRateSweep.File);
        LearningRateSweep.Write(path, points);
        var lines = File.ReadAllLines(path);
        Assert.Equal("method,rank,learning_rate,metric,final_loss,chosen,at_edge", lines[0]);
        Assert.Contains("full,0,0.01,diverged,diverged,0,0", lines);
        Assert.Contains("full,0,0.001,0.4000,1.0000,1,0", lines);
    }

    [Fact]
    public void EveryRateDivergingIsAnErrorAfterTryingLowerOnes()
    {
        var calls = new List<double>();
        var e = Assert.Throws<ArgumentException>(() => LearningRateSweep.Choose("lora", 4, [1e-2, 1e-1], lr => { calls.Add(lr); return LearningRateSweep.Diverged; }));
        Assert.Equal("AdapterLrGrid", e.ParamName);
        Assert.Contains("every learning rate tried for lora at r = 4 diverged", e.Message);
        Assert.Equal(2 + LearningRateSweep.MaxExtensions, calls.Count);    // the two extensions went below the grid
        Assert.Equal(1e-4, calls.Min(), 12);
        Assert.Equal("FullLrGrid", Assert.Throws<ArgumentException>(() => LearningRateSweep.Choose("full", 0, [1e-3], _ => LearningRateSweep.Diverged)).ParamName);
        // One rate below the grid that trains is chosen.
        var (chosen, _) = LearningRateSweep.Choose("lora", 4, [1e-2, 1e-1], lr => lr < 5e-3 ? (lr > 5e-4 ? 0.3 : 0.2, 1.0) : LearningRateSweep.Diverged);
        Assert.Equal(1e-3, chosen, 12);
    }

    [Fact]
    public void AReusedRunAtAnotherRateIsRefused()
    {
        ExperimentFolder.CheckReusedRate("runs/x", 0, 3e-3);            // written before rates were recorded: taken
        ExperimentFolder.CheckReusedRate("runs/x", 3.16e-3, 3.16e-3);
        var e = Assert.Throws<ArgumentException>(() => ExperimentFolder.CheckReusedRate("runs/lora-r1-seed0", 1e-2, 3.16e-3));
        Assert.Contains("runs/lora-r1-seed0 finished at learning rate 0.01, but this job now trains it at 0.00316", e.Message);
    }

    [Fact]
    public void BadGridsAreNamed()
    {
        Assert.Contains("at least one", Assert.Throws<ArgumentException>(() => LearningRateSweep.CheckGrid([], "AdapterLrGrid")).Message);
        Assert.Contains("positive", Assert.Throws<ArgumentException>(() => LearningRateSweep.CheckGrid([1e-3, -1], "AdapterLrGrid")).Message);
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() => LearningRateSweep.CheckGrid([1e-3, 1e-3], "FullLrGrid")).Message);
        var e = Assert.Throws<ArgumentException>(() => (MemorizationSpec.FromPreset("smoke-tuned") with { TuneSeed = 0 }).Validate());
        Assert.Equal("TuneSeed", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => (MemorizationSpec.FromPreset("smoke-tuned") with { TuneSteps = 0 }).Validate());
        Assert.Equal("TuneSteps", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => (MemorizationSpec.FromPreset("smoke") with
        { MethodRanks = new Dictionary<string, IReadOnlyList<int>> { ["mora-rotation"] = [4] } }).Validate());
        Assert.Equal("MethodRanks", e.ParamName);
    }

    [Fact]
    public void MethodRanksFollowThePapersRule()
    {
        var spec = MemorizationSpec.FromPreset("cpu-regimes").Validate();
        Assert.Equal(["lora r1", "lora r16", "mora-sharing r16", "mora-rotation r1", "full r0"],       // full fine-tuning has no rank
            spec.Configurations().Select(c => $"{c.Method} r{c.Rank}"));
        Assert.DoesNotContain(spec.TuneSeed, spec.Seeds);
        Assert.True(spec.AdapterLrGrid.Count >= 4 && spec.FullLrGrid.Count >= 4 && spec.Seeds.Count >= 5);
    }

    /// <summary>The CPU-sized presets keep what makes a comparison carry a claim (two regimes or the low one, tuned rates on
    /// at least 4 values, 5 seeds, one base) and the base settings of the run they extend, so its pretrained base is reused.</summary>
    [Fact]
    public void CpuSizedPresetsKeepTheComparisonAndTheBase()
    {
        var math = Gsm8kSpec.FromPreset("cpu-regimes").Validate();
        var full = Gsm8kSpec.FromPreset("regimes").Validate();
        Assert.Equal(["lora r1", "lora r16", "mora-sharing r16", "mora-rotation r1"], math.Configurations().Select(c => $"{c.Method} r{c.Rank}"));
        Assert.True(math.AdapterLrGrid.Count >= 4 && math.Seeds.Count >= 5 && math.BaseSeed == 0 && math.ValidationProblems > 0);
        Assert.Equal((full.Model, full.PretrainDocuments, full.PretrainSteps, full.PretrainLr, full.TestProblems, full.ValidationProblems, full.Context, full.Style),
            (math.Model, math.PretrainDocuments, math.PretrainSteps, math.PretrainLr, math.TestProblems, math.ValidationProblems, math.Context, math.Style));
        var low = MemorizationSpec.FromPreset("cpu-low-regime").Validate();
        var both = MemorizationSpec.FromPreset("cpu-regimes");
        Assert.Equal(["lora r1", "mora-rotation r1"], low.Configurations().Select(c => $"{c.Method} r{c.Rank}"));
        Assert.True(low.Steps >= 3 * both.Steps && low.AdapterLrGrid.Count >= 4 && low.Seeds.Count >= 5);
        Assert.Equal((both.Model, both.PretrainPairs, both.PretrainSteps, both.PretrainLr, both.BaseSeed, both.Pairs, both.BatchSize),
            (low.Model, low.PretrainPairs, low.PretrainSteps, low.PretrainLr, low.BaseSeed, low.Pairs, low.BatchSize));
    }
}

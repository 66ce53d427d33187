using Mora.Experiments;

namespace Mora.Tests;

/// <summary>The over-seeds report's stopping-rule words: where a mean curve stands at its last evaluation.</summary>
public class SeedReportTests
{
    [Theory]
    [InlineData(0.90, 0.96, 40, "reached 95 %")]
    [InlineData(0.95, 0.95, 40, "reached 95 %")]                                  // at the bar counts
    [InlineData(0.500, 0.505, 100, "flat: +0.5 points over the last 100 steps")]
    [InlineData(0.505, 0.500, 100, "flat: -0.5 points over the last 100 steps")]
    [InlineData(0.60, 0.55, 50, "falling: -5.0 points over the last 50 steps")]
    [InlineData(0.475, 0.571, 40, "still rising: +9.6 points over the last 40 steps")]
    public void TrendFollowsTheStoppingRule(double before, double end, int interval, string expected) =>
        Assert.Equal(expected, SeedReport.Trend(before, end, interval));

    [Fact]
    public void TrendNeedsAnInterval()
    {
        var rng = new Random(TestSupport.Seed());
        double a = rng.NextDouble(), b = rng.NextDouble();
        Assert.Equal("interval", Assert.Throws<ArgumentOutOfRangeException>(() => SeedReport.Trend(a, b, 0)).ParamName);
        // Any pair of fractions gets exactly one of the four words, and 1-point boundaries are symmetric.
        Assert.Contains(SeedReport.Trend(a, b, 10).Split(':')[0], new[] { "reached 95 %", "flat", "falling", "still rising" });
        Assert.StartsWith("still rising", SeedReport.Trend(0.30, 0.3101, 10));
        Assert.StartsWith("falling", SeedReport.Trend(0.3101, 0.30, 10));
    }

    [Fact]
    public void MemorisationTrendsReadTheLastTwoEvaluations()
    {
        var rng = new Random(TestSupport.Seed());
        var spec = MemorizationSpec.FromPreset("smoke-tuned");   // evaluations at steps 20 and 40
        double jitter = 0.001 * rng.NextDouble();
        var runs = spec.Seeds.SelectMany(seed => new[]
        {
            new MemorizationRun("lora", 8, seed, 100, new Dictionary<int, double> { [20] = 0.30 + jitter, [40] = 0.40 + jitter }, 0, 1, 1),
            new MemorizationRun("full", 0, seed, 100, new Dictionary<int, double> { [20] = 0.90, [40] = 0.97 }, 0, 1, 1),
        }).ToList();
        Assert.Equal([$"lora r=8: {100 * (0.40 + jitter):0.0} % at step 40, still rising: +10.0 points over the last 20 steps", "full: 97.0 % at step 40, reached 95 %"],
            MemorizationExperiment.Trends(spec, runs));
        Assert.Equal("spec", Assert.Throws<ArgumentException>(() => MemorizationExperiment.Trends(spec with { EvalPoints = 1 }, runs).ToList()).ParamName);
    }
}

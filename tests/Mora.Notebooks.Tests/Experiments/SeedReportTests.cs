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
    [InlineData(0.4756, 0.5711, 40, "still rising: +9.6 points over the last 40 steps")]   // 9.55 as written (binary: 9.5499…)
    public void TrendFollowsTheStoppingRule(double before, double end, int interval, string expected) =>
        Assert.Equal(expected, SeedReport.Trend(before, end, interval));

    [Fact]
    public void TrendNeedsAnInterval()
    {
        var rng = new Random(TestSupport.Seed());
        double a = rng.NextDouble(), b = rng.NextDouble();
        Assert.Equal("interval", Assert.Throws<ArgumentOutOfRangeException>(() => SeedReport.Trend(a, b, 0)).ParamName);
        // The 1-point boundary, both ways, as printed to one decimal: 1.0 point is a change, 0.9 is flat.
        double at = 0.3 * a;
        Assert.StartsWith("still rising: +1.0", SeedReport.Trend(at, at + 0.01, 10));
        Assert.StartsWith("falling: -1.0", SeedReport.Trend(at + 0.01, at, 10));
        Assert.StartsWith("still rising: +1.0", SeedReport.Trend(at, at + 0.00996, 10));
        Assert.StartsWith("flat: +0.9", SeedReport.Trend(at, at + 0.0094, 10));
        Assert.StartsWith("flat: -0.9", SeedReport.Trend(at + 0.0094, at, 10));
    }

    [Fact]
    public void MemorisationTrendsReadTheLastTwoEvaluations()
    {
        var rng = new Random(TestSupport.Seed());
        var spec = MemorizationSpec.FromPreset("smoke-tuned");   // evaluations at steps 20 and 40
        double jitter = 0.001 * rng.NextDouble();
        static RunRecord Run(string method, int rank, int seed, double at20, double at40) =>
            new(method, rank, seed, 100, 0.01, new Dictionary<string, double> { ["char_acc_step20"] = at20, ["char_acc_step40"] = at40, ["exact_match"] = 0 }, 1, 1);
        var runs = spec.Seeds.SelectMany(seed => new[] { Run("lora", 8, seed, 0.30 + jitter, 0.40 + jitter), Run("full", 0, seed, 0.90, 0.97) }).ToList();
        Assert.Equal([$"lora r=8: {100 * (0.40 + jitter):0.0} % at step 40, still rising: +10.0 points over the last 20 steps", "full: 97.0 % at step 40, reached 95 %"],
            MemorizationExperiment.Trends(spec, runs));
        Assert.Equal("spec", Assert.Throws<ArgumentException>(() => MemorizationExperiment.Trends(spec with { EvalPoints = 1 }, runs).ToList()).ParamName);
    }
}

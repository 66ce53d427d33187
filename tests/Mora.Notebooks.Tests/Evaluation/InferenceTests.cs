using Mora.Evaluation;

namespace Mora.Tests;

/// <summary>The declared tests: t quantiles against published tables (1e-6), TOST against its interval form, superiority
/// against the t distribution, Holm against R's p.adjust, the bootstrap's calibration and determinism, censored steps.</summary>
public class InferenceTests
{
    [Theory]
    [InlineData(0.95, 4, 2.131847)]
    [InlineData(0.95, 9, 1.833113)]
    [InlineData(0.975, 4, 2.776445)]
    [InlineData(0.05, 4, -2.131847)]
    [InlineData(0.995, 30, 2.749996)]
    public void TQuantileMatchesTables(double q, int df, double expected) =>
        Assert.Equal(expected, Inference.StudentTQuantile(q, df), 1e-5);

    [Fact]
    public void TostRejectsExactlyWhenTheNinetyPercentIntervalLiesInsideTheMargin()
    {
        var rng = new Random(TestSupport.Seed());
        int agree = 0;
        for (int trial = 0; trial < 400; trial++)
        {
            int n = rng.Next(3, 12);
            double shift = rng.NextDouble() * 0.1 - 0.05, spread = 0.005 + rng.NextDouble() * 0.05, margin = 0.01 + rng.NextDouble() * 0.06;
            var d = Enumerable.Range(0, n).Select(_ => shift + spread * (rng.NextDouble() * 2 - 1)).ToList();
            var r = Inference.Equivalence(d, margin);
            double mean = d.Average(), sd = Math.Sqrt(d.Sum(x => (x - mean) * (x - mean)) / (n - 1)), half = Inference.StudentTQuantile(0.95, n - 1) * sd / Math.Sqrt(n);
            bool inside = mean - half > -margin && mean + half < margin;
            Assert.True(inside == r.P < 0.05, $"trial {trial}: mean {mean}, half {half}, margin {margin}, p {r.P} (seed {TestSupport.Seed()})");
            if (inside) agree++;
        }
        Assert.InRange(agree, 20, 380);    // both outcomes were exercised
    }

    [Fact]
    public void SuperiorityIsTheOneSidedTTest()
    {
        double[] d = [0.02, 0.05, -0.01, 0.04, 0.03];
        double mean = d.Average(), sd = Math.Sqrt(d.Sum(x => (x - mean) * (x - mean)) / 4), t = mean / (sd / Math.Sqrt(5));
        var r = Inference.Superiority(d);
        Assert.Equal(1 - SeedStatistics.StudentTCdf(t, 4), r.P, 12);
        Assert.InRange(r.P, 0.01, 0.1);
        Assert.Equal(mean, r.Difference.Mean, 12);
        Assert.True(Inference.Superiority([-0.02, -0.05, 0.01, -0.04, -0.03]).P > 0.9);
        Assert.Equal(0, Inference.Superiority([0.1, 0.1, 0.1]).P);        // no spread, all positive
        Assert.Equal(1, Inference.Superiority([0.0, 0.0, 0.0]).P);
    }

    [Fact]
    public void HolmMatchesRsPAdjust()
    {
        // R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") = 0.03 0.06 0.06 0.02
        var adjusted = Inference.Holm([0.01, 0.04, 0.03, 0.005]);
        Assert.Equal([0.03, 0.06, 0.06, 0.02], adjusted.Select(x => Math.Round(x, 12)).ToArray());
        // R: p.adjust(c(0.2, 0.5, 0.001), "holm") = 0.4 0.5 0.003
        Assert.Equal([0.4, 0.5, 0.003], Inference.Holm([0.2, 0.5, 0.001]).Select(x => Math.Round(x, 12)).ToArray());
        Assert.Equal([1.0], Inference.Holm([1.0]));
        Assert.Throws<ArgumentException>(() => Inference.Holm([0.1, double.NaN]));
    }

    [Fact]
    public void HolmIsMonotoneAndNeverBelowTheRawPValue()
    {
        var rng = new Random(TestSupport.Seed());
        for (int trial = 0; trial < 100; trial++)
        {
            var p = Enumerable.Range(0, rng.Next(1, 10)).Select(_ => rng.NextDouble() * rng.NextDouble()).ToArray();
            var adj = Inference.Holm(p);
            for (int i = 0; i < p.Length; i++)
            {
                Assert.InRange(adj[i], p[i], 1.0);
                for (int j = 0; j < p.Length; j++) if (p[i] < p[j]) Assert.True(adj[i] <= adj[j] + 1e-15);
            }
        }
    }

    static IReadOnlyList<IReadOnlyList<double>> Scores(Random rng, int seeds, int items, double rate) =>
        Enumerable.Range(0, seeds).Select(_ => (IReadOnlyList<double>)Enumerable.Range(0, items).Select(_ => rng.NextDouble() < rate ? 1.0 : 0.0).ToList()).ToList();

    [Fact]
    public void BootstrapFindsARealDifferenceAndNotAnAbsentOne()
    {
        var rng = new Random(TestSupport.Seed());
        var better = Scores(rng, 5, 400, 0.6);
        var worse = Scores(rng, 5, 400, 0.4);
        var r = Inference.PairedBootstrap(better, worse, resamples: 2000);
        Assert.True(r.P < 0.01, $"p {r.P}");
        Assert.InRange(r.Difference.Mean, 0.15, 0.25);
        Assert.True(r.Difference.Low < r.Difference.Mean && r.Difference.Mean < r.Difference.High);

        // Same distribution: calibrated, so "A beats B" is rejected at 5 % in about 5 % of experiments.
        int rejected = 0;
        for (int trial = 0; trial < 60; trial++)
        {
            var x = Scores(rng, 3, 100, 0.3); var y = Scores(rng, 3, 100, 0.3);
            if (Inference.PairedBootstrap(x, y, resamples: 400, seed: trial).P < 0.05) rejected++;
        }
        Assert.InRange(rejected, 0, 10);
    }

    /// <summary>The design is crossed: every seed scores the same items, so an item where A beats B on every seed is one
    /// piece of evidence, not one per seed. With differences that depend on the item only, the interval's half-width is
    /// the items' standard error (sd / √items) × 1.96, not that divided by √seeds (tolerance 20 %).</summary>
    [Fact]
    public void BootstrapResamplesItemsOnceForAllSeeds()
    {
        var rng = new Random(TestSupport.Seed());
        const int seeds = 5, items = 400;
        var d = Enumerable.Range(0, items).Select(_ => rng.NextDouble() < 0.5 ? 1.0 : -1.0).ToList();
        var b = Enumerable.Range(0, seeds).Select(_ => (IReadOnlyList<double>)Enumerable.Range(0, items).Select(_ => rng.NextDouble()).ToList()).ToList();
        var a = b.Select(x => (IReadOnlyList<double>)x.Select((v, i) => v + d[i]).ToList()).ToList();
        var r = Inference.PairedBootstrap(a, b, resamples: 4000);
        double mean = d.Average(), sd = Math.Sqrt(d.Sum(x => (x - mean) * (x - mean)) / (items - 1));
        Assert.InRange(r.Difference.HalfWidth, 0.8 * 1.96 * sd / Math.Sqrt(items), 1.2 * 1.96 * sd / Math.Sqrt(items));
    }

    [Fact]
    public void BootstrapIsDeterministicAndChecksItsShape()
    {
        var rng = new Random(TestSupport.Seed());
        var a = Scores(rng, 4, 50, 0.5); var b = Scores(rng, 4, 50, 0.5);
        Assert.Equal(Inference.PairedBootstrap(a, b, 0.05, 500), Inference.PairedBootstrap(a, b, 0.05, 500));
        Assert.Throws<ArgumentException>(() => Inference.PairedBootstrap(a, b.Take(3).ToList()));
        Assert.Throws<ArgumentException>(() => Inference.PairedBootstrap(a, [.. b.Take(3), b[3].Take(49).ToList()]));
    }

    [Fact]
    public void EquivalenceByBootstrapNeedsBothTailsInsideTheMargin()
    {
        var rng = new Random(TestSupport.Seed());
        var a = Scores(rng, 5, 400, 0.5); var b = Scores(rng, 5, 400, 0.5);
        Assert.True(Inference.PairedBootstrap(a, b, margin: 0.08, resamples: 2000).P < 0.05);
        var far = Scores(rng, 5, 400, 0.7);
        Assert.True(Inference.PairedBootstrap(far, b, margin: 0.08, resamples: 2000).P > 0.5);
    }

    [Fact]
    public void StepsToThresholdIsCensoredAtTheBudget()
    {
        Assert.Equal(40, Inference.StepsToThreshold([(20, 0.5), (40, 0.96), (60, 0.99)], 0.95, 60));
        Assert.Equal(60, Inference.StepsToThreshold([(20, 0.5), (40, 0.7), (60, 0.9)], 0.95, 60));
        Assert.Throws<ArgumentException>(() => Inference.StepsToThreshold([(40, 0.5), (20, 0.7)], 0.95, 60));
    }
}

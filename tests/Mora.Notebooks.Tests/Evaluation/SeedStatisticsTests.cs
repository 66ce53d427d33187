using Mora.Evaluation;

namespace Mora.Tests;

/// <summary>The interval statistics the reproductions report: t quantiles against published tables (to 1e-6), the interval
/// against a hand computation, paired differences against the differences' own interval, and the errors.</summary>
public class SeedStatisticsTests
{
    [Theory]
    [InlineData(1, 12.706205)]
    [InlineData(2, 4.302653)]
    [InlineData(4, 2.776445)]
    [InlineData(9, 2.262157)]
    [InlineData(30, 2.042272)]
    [InlineData(1000, 1.962339)]
    public void TQuantileMatchesTables(int df, double expected) =>
        Assert.Equal(expected, SeedStatistics.StudentT975(df), 6);

    [Fact]
    public void CdfIsSymmetricAndHalfAtZero()
    {
        var rng = new Random(TestSupport.Seed());
        for (int i = 0; i < 50; i++)
        {
            double t = rng.NextDouble() * 8 - 4; int df = rng.Next(1, 40);
            Assert.Equal(1, SeedStatistics.StudentTCdf(t, df) + SeedStatistics.StudentTCdf(-t, df), 12);
        }
        Assert.Equal(0.5, SeedStatistics.StudentTCdf(0, 3), 12);
    }

    [Fact]
    public void IntervalIsMeanPlusMinusTTimesStandardError()
    {
        var rng = new Random(TestSupport.Seed());
        var v = Enumerable.Range(0, 5).Select(_ => rng.NextDouble()).ToList();
        double mean = v.Average(), sd = Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / 4), half = 2.776445 * sd / Math.Sqrt(5);
        var m = SeedStatistics.Mean95(v);
        Assert.Equal(mean, m.Mean, 12);
        Assert.Equal(mean - half, m.Low, 6);
        Assert.Equal(mean + half, m.High, 6);
        Assert.Equal(sd, m.Sd, 12);
        Assert.Equal(5, m.N);
    }

    [Fact]
    public void OneValueHasNoSpreadAndNoSign()
    {
        var m = SeedStatistics.Mean95([0.25]);
        Assert.Equal((0.25, 0.25, 0.25), (m.Mean, m.Low, m.High));
        Assert.False(m.AboveZero);
        Assert.Equal("25.0", m.Format(100));
    }

    [Fact]
    public void PairedDifferenceUsesSeedsInCommon()
    {
        var rng = new Random(TestSupport.Seed());
        var a = Enumerable.Range(0, 6).ToDictionary(s => s, _ => 0.5 + rng.NextDouble());
        var b = Enumerable.Range(1, 6).ToDictionary(s => s, _ => rng.NextDouble() * 0.4);
        var d = SeedStatistics.Paired95(a, b);
        var expected = SeedStatistics.Mean95(Enumerable.Range(1, 5).Select(s => a[s] - b[s]));
        Assert.Equal(expected, d);
        Assert.True(d.AboveZero);      // a ≥ 0.5 > 0.4 ≥ b on every seed
        Assert.False(d.BelowZero);
        Assert.Equal($"{100 * d.Mean:0.0} [{100 * d.Low:0.0}, {100 * d.High:0.0}]", d.Format(100));
    }

    [Fact]
    public void BadInputIsNamed()
    {
        Assert.Contains("no values", Assert.Throws<ArgumentException>(() => SeedStatistics.Mean95([])).Message);
        Assert.Contains("not finite", Assert.Throws<ArgumentException>(() => SeedStatistics.Mean95([1, double.NaN])).Message);
        Assert.Contains("no seed in common", Assert.Throws<ArgumentException>(() =>
            SeedStatistics.Paired95(new Dictionary<int, double> { [0] = 1 }, new Dictionary<int, double> { [1] = 1 })).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => SeedStatistics.StudentT975(0));
    }
}

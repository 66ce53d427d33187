using Mora.Analysis;

namespace Mora.Tests;

/// <summary>The one spectrum analysis (<see cref="Spectrum"/>): rank at both tolerances and effective rank, on matrices whose
/// spectra are known by construction (U diag(σ) Vᵀ with seeded random orthogonal U, V; float64, tolerance 1e-10).</summary>
public class SpectrumTests
{
    static Tensor WithSpectrum(double[] sigma, int d, int k, torch.Generator g)
    {
        using var scope = NewDisposeScope();
        var u = linalg.qr(randn(d, d, dtype: ScalarType.Float64, generator: g)).Q.narrow(1, 0, sigma.Length);
        var v = linalg.qr(randn(k, k, dtype: ScalarType.Float64, generator: g)).Q.narrow(1, 0, sigma.Length);
        using var s = tensor(sigma, dtype: ScalarType.Float64);
        return u.matmul(diag(s)).matmul(v.t()).MoveToOuterDisposeScope();
    }

    [Theory]
    [InlineData(40, 30)] [InlineData(17, 64)]
    public void RankAndEffectiveRankOfAKnownSpectrum(int d, int k)
    {
        using var g = TestSupport.Generator(d * 100 + k);
        double[] sigma = [4, 2, 1, 1e-2, 1e-9];
        using var m = WithSpectrum(sigma, d, k, g);
        var numerical = Spectrum.Of(m);
        Assert.Equal(5, numerical.Rank);                               // 1e-9 is far above σ₁·max(d,k)·eps
        Assert.Equal(3, Spectrum.Of(m, relativeTolerance: 1e-1).Rank);  // 4, 2, 1 ≥ 0.4; 0.01 is not
        Assert.Equal(4, Spectrum.Of(m, relativeTolerance: 1e-3).Rank);
        double total = sigma.Sum();
        double expected = Math.Exp(-sigma.Select(x => x / total).Sum(p => p * Math.Log(p)));
        Assert.True(Math.Abs(numerical.EffectiveRank - expected) < 1e-8, $"effective rank {numerical.EffectiveRank} vs {expected}");
        for (int i = 0; i < sigma.Length; i++) Assert.True(Math.Abs(numerical.SingularValues[i] - sigma[i]) < 1e-10);
        Assert.True(Math.Abs(numerical.Normalized()[1] - 0.5) < 1e-10);
    }

    [Fact]
    public void ZeroUpdateHasRankZeroAndEqualSpectraHaveFullEffectiveRank()
    {
        using var zero = zeros(8, 6, dtype: ScalarType.Float64);
        Assert.Equal((0L, 0.0), (Spectrum.Of(zero).Rank, Spectrum.Of(zero).EffectiveRank));
        using var g = TestSupport.Generator();
        using var flat = WithSpectrum([3, 3, 3, 3], 8, 6, g);
        Assert.True(Math.Abs(Spectrum.Of(flat).EffectiveRank - 4) < 1e-8);
        Assert.Throws<ArgumentException>(() => Spectrum.Of(flat, relativeTolerance: 1.5));
        using var vec = ones(5);
        Assert.Throws<ArgumentException>(() => Spectrum.Of(vec));
    }
}

namespace Mora.Tests;

/// <summary><see cref="CompressDecompress.AddDeltaWeightTo"/> (what MoraLinear.Merge uses) equals W + ΔW for every design, on
/// shapes where its fast paths apply (r̂ divides d and k; d = k = n·r̂) and where they do not. Tolerance 1e-12 (float64).</summary>
public class InPlaceMergeTests
{
    public static TheoryData<MoraType, int, int, int> Cases()
    {
        var data = new TheoryData<MoraType, int, int, int>();
        foreach (var t in MoraTypes.All)
            foreach (var (d, k, rHat) in new[] { (64, 64, 16), (96, 48, 16), (48, 96, 8), (64, 64, 12), (40, 90, 20), (30, 70, 10) })
                data.Add(t, d, k, rHat);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EqualsAddingTheWrittenOutDeltaWeight(MoraType type, int d, int k, int rHat)
    {
        using var rng = TestSupport.TorchSeed(d * 7 + k + rHat);
        var op = new CompressDecompress(d, k, rHat, type);
        using var m = randn(rHat, rHat, dtype: ScalarType.Float64);
        using var w = randn(d, k, dtype: ScalarType.Float64);
        using var dw = op.DeltaWeight(m);
        using var expected = w - 0.5 * dw;
        using var merged = w.clone();
        op.AddDeltaWeightTo(merged, m, -0.5);
        Assert.True(TestSupport.MaxAbs(merged, expected) <= 1e-12, $"{type} {d}×{k} r̂={rHat} (seed {TestSupport.Seed(d * 7 + k + rHat)})");
        op.AddDeltaWeightTo(merged, m, 0.5);
        Assert.True(TestSupport.MaxAbs(merged, w) <= 1e-12);
        using var wrong = randn(d + 1, k, dtype: ScalarType.Float64);
        Assert.Equal("w", Assert.Throws<ArgumentException>(() => op.AddDeltaWeightTo(wrong, m)).ParamName);
    }
}

using Mora.Bench;

namespace Mora.Tests;

/// <summary>The reference's merge algorithm as the benchmark times it (<see cref="ReferenceMerge"/>, kongds/MoRA
/// <c>get_delta_weight</c>) builds the same ΔW as the kit's <see cref="CompressDecompress.DeltaWeight"/>, for every design the
/// reference has (types 1, 2, 3, 4, 6), on square, wide, tall, non-dividing and k &lt; r̂ shapes, from a seeded random M.
/// Tolerances: float64, 1e-12 absolute for types 1–4 (the same sums in another order; measured 0); 5e-7 relative to max |ΔW| for
/// type 6, because the reference computes its RoPE angles t·θ_i in float32 (and then casts) where the kit computes them
/// in float64 (measured 3–8e-8 on these shapes); float32, 1e-5 relative to max |ΔW| for every type.</summary>
public class ReferenceMergeTests
{
    static readonly (int D, int K, int RHat)[] Shapes =
        [(64, 64, 32), (160, 48, 28), (48, 160, 28), (90, 37, 20), (37, 90, 20), (32, 96, 16), (100, 100, 14), (256, 256, 64), (344, 128, 56), (20, 10, 14)];

    public static TheoryData<MoraType, int, int, int> Cases()
    {
        var data = new TheoryData<MoraType, int, int, int>();
        foreach (var t in MoraTypes.Reference)
            foreach (var (d, k, rHat) in Shapes)
                if (t != MoraType.Rotation || k > rHat)          // type 6 needs two r̂-blocks (see SingleBlockRotation…)
                    data.Add(t, d, k, rHat);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GivesTheKitsDeltaWeight(MoraType type, int d, int k, int rHat)
    {
        long salt = (int)type * 100_000 + d * 1000 + k;
        using var rng = TestSupport.TorchSeed(salt);
        var op = new CompressDecompress(d, k, rHat, type);
        using var reference = new ReferenceMerge(d, k, rHat, type);
        string name = $"{type} {d}×{k} r̂={rHat} (seed {TestSupport.Seed(salt)})";
        using var m64 = randn(rHat, rHat, dtype: ScalarType.Float64);
        using (var kit = op.DeltaWeight(m64))
        using (var refDw = reference.DeltaWeight(m64))
        {
            Assert.Equal(new long[] { d, k }, refDw.shape);
            double scale = TestSupport.MaxAbs(kit);
            Assert.True(scale > 0.1, $"{name}: ΔW is (nearly) zero");
            double err = TestSupport.MaxAbs(kit, refDw);
            if (type == MoraType.Rotation) Assert.True(err / scale <= 5e-7, $"{name}: float64 relative gap {err / scale:g3} > 5e-7");
            else Assert.True(err <= 1e-12, $"{name}: float64 gap {err:g3} > 1e-12");
        }
        using var m32 = m64.to(ScalarType.Float32);
        using var reference32 = new ReferenceMerge(d, k, rHat, type);
        using (var kit = op.DeltaWeight(m32))
        using (var refDw = reference32.DeltaWeight(m32))
        {
            Assert.Equal(ScalarType.Float32, refDw.dtype);
            double rel = TestSupport.MaxAbs(kit, refDw) / TestSupport.MaxAbs(kit);
            Assert.True(rel <= 1e-5, $"{name}: float32 relative gap {rel:g3} > 1e-5");
        }
        // The reference's merge is W += ΔW; the kit's in-place merge must land on the same W.
        using var w = randn(d, k, dtype: ScalarType.Float64);
        using var viaReference = w.clone();
        reference.Merge(viaReference, m64);
        op.AddDeltaWeightTo(w, m64);
        double tol = type == MoraType.Rotation ? 5e-7 * TestSupport.MaxAbs(w) : 1e-12;
        Assert.True(TestSupport.MaxAbs(w, viaReference) <= tol, $"{name}: merged W differs");
    }

    [Fact]
    public void SingleBlockRotationFailsAsTheReferenceDoes()
    {
        using var rng = TestSupport.TorchSeed();
        using var reference = new ReferenceMerge(16, 16, 16, MoraType.Rotation);
        using var m = randn(16, 16, dtype: ScalarType.Float64);
        var e = Assert.Throws<NotSupportedException>(() => reference.DeltaWeight(m));
        Assert.Contains("UnboundLocalError", e.Message);
        // The bench asks Runs first, so a small shape leaves the reference column empty instead of crashing.
        Assert.False(ReferenceMerge.Runs(16, 16, MoraType.Rotation));
        Assert.True(ReferenceMerge.Runs(17, 16, MoraType.Rotation));
        Assert.True(ReferenceMerge.Runs(16, 16, MoraType.Sharing));
        Assert.False(ReferenceMerge.Runs(64, 8, MoraType.Truncation));
    }

    [Fact]
    public void RefusesTheDesignsTheReferenceDoesNotHave()
    {
        foreach (var type in new[] { MoraType.Truncation, MoraType.Decouple })
        {
            Assert.False(ReferenceMerge.Has(type));
            Assert.Equal("type", Assert.Throws<ArgumentException>(() => new ReferenceMerge(64, 64, 16, type)).ParamName);
        }
        using var reference = new ReferenceMerge(64, 64, 16, MoraType.Sharing);
        using var wrong = zeros(15, 15);
        Assert.Equal("m", Assert.Throws<ArgumentException>(() => reference.DeltaWeight(wrong)).ParamName);
    }
}

using Mora.Model;

namespace Mora.Tests;

/// <summary>
/// The compression and decompression maps one at a time and composed: for every design and seeded random shapes
/// (<c>new Random(TestSupport.Seed())</c> for shapes, each test's <see cref="TestSupport.TorchSeed"/> for M and inputs),
/// float64, tolerance 1e-10:
/// T·(M S) from the maps equals the Jacobian of the forward; each map's share of ΔW equals the Jacobian of its own forward;
/// the merge takes its in-place path exactly where the structure allows, and equals W + s·ΔW. And the rotary tables and
/// R_t that MoRA's rotation uses are the model's RoPE (checked against R_t written out by hand).
/// </summary>
public class OperatorMapTests
{
    const double Tol = 1e-10;

    /// <summary>Per design: four random shapes (d, k ≤ 40, r̂ ≤ max(d, k), even for rotation) and three fixed ones where
    /// the in-place merges apply (r̂ divides d and k; d = k = n·r̂) or a wide layer builds only some row blocks.</summary>
    public static TheoryData<MoraType, int, int, int> Cases()
    {
        var data = new TheoryData<MoraType, int, int, int>();
        var random = new Random(TestSupport.Seed(0, nameof(Cases)));
        foreach (var type in MoraTypes.All)
        {
            for (int i = 0; i < 4; i++)
            {
                int d = random.Next(1, 41), k = random.Next(1, 41);
                int rHat = random.Next(1, Math.Max(d, k) + 1);
                if (type == MoraType.Rotation) rHat = Math.Max(2, rHat / 2 * 2);
                if (rHat > Math.Max(d, k)) (d, k) = (Math.Max(d, 2), Math.Max(k, 2));
                data.Add(type, d, k, rHat);
            }
            foreach (var (d, k, rHat) in new[] { (24, 24, 6), (36, 12, 6), (10, 50, 4) })
                data.Add(type, d, k, rHat);
        }
        return data;
    }

    static long Salt(MoraType type, int d, int k, int rHat) => d * 7919 + k * 104729 + rHat * 31 + (int)type;

    /// <summary>One case: the operator and a random M, drawn while the case holds torch's generator (seeded for this test
    /// and shape; the test's other draws come from it too). Disposing releases both.</summary>
    sealed record Case(CompressDecompress Op, Tensor M, IDisposable Rng) : IDisposable
    {
        public void Dispose() { M.Dispose(); Rng.Dispose(); }
    }

    static Case Make(MoraType type, int d, int k, int rHat, [System.Runtime.CompilerServices.CallerMemberName] string test = "")
    {
        var rng = TestSupport.TorchSeed(Salt(type, d, k, rHat), test);
        return new Case(new CompressDecompress(d, k, rHat, type), randn(rHat, rHat, dtype: ScalarType.Float64), rng);
    }

    [Theory, MemberData(nameof(Cases))]
    public void MapsComposeToTheForwardsJacobian(MoraType type, int d, int k, int rHat)
    {
        using var c = Make(type, d, k, rHat);
        var (op, m) = (c.Op, c.M);
        using var ms = op.Compression.MTimesS(m, op.Decompression.RowsRead);
        using var composed = op.Decompression.TimesRows(ms);
        using var jacobian = op.DeltaWeightFromForward(m);
        Assert.Equal(new long[] { d, k }, composed.shape);
        Assert.True(TestSupport.MaxAbs(jacobian) > 1e-3, $"{op}: the Jacobian is (near) zero");
        double err = TestSupport.MaxAbs(composed, jacobian);
        Assert.True(err <= Tol, $"{op}: |T·(M S) − J| = {err:g3} > {Tol}");
        using var written = op.DeltaWeight(m);
        Assert.True(TestSupport.MaxAbs(written, jacobian) <= Tol, $"{op}: DeltaWeight differs from J");
    }

    [Theory, MemberData(nameof(Cases))]
    public void EachMapsShareIsTheJacobianOfItsForward(MoraType type, int d, int k, int rHat)
    {
        using var c = Make(type, d, k, rHat);
        var (op, m) = (c.Op, c.M);
        var (comp, decomp) = (op.Compression, op.Decompression);
        int width = comp.Width;
        Assert.Equal(width, decomp.Width);

        // f_comp: x ↦ M f_comp(x) on the k unit vectors gives (M S)ᵀ, flattened over blocks.
        using var eyeK = eye(k, dtype: ScalarType.Float64);
        using var y = comp.TimesM(eyeK, m);
        using var msFromForward = y.reshape(k, width).t();
        using var ms = comp.MTimesS(m, width);
        Assert.True(TestSupport.MaxAbs(msFromForward) > 1e-3, $"{op}: M f_comp(e_j) is (near) zero");
        double ec = TestSupport.MaxAbs(ms, msFromForward);
        Assert.True(ec <= Tol, $"{op}: compression map's M S differs from its forward's Jacobian by {ec:g3}");

        // f_decomp: on the Width unit slots (shaped as f_comp's output) it gives Tᵀ; T·X on the identity gives T.
        using var compressed = comp.Apply(eyeK);
        using var eyeW = eye(width, dtype: ScalarType.Float64);
        using var slots = eyeW.reshape([width, .. compressed.shape[1..]]);
        using var decoded = decomp.Apply(slots);
        using var tFromForward = decoded.t();
        using var t = decomp.TimesRows(eyeW);
        Assert.Equal(new long[] { d, width }, t.shape);
        Assert.True(TestSupport.MaxAbs(t, tFromForward) <= Tol, $"{op}: decompression map's T·X differs from its forward");

        // …and on random rows, the first RowsRead of them being all T reads.
        using var x = randn(decomp.RowsRead, 3, dtype: ScalarType.Float64);
        using var padded = nn.functional.pad(x, [0, 0, 0, width - decomp.RowsRead]);
        using var tx = decomp.TimesRows(x);
        using var expected = t.matmul(padded);
        Assert.True(TestSupport.MaxAbs(tx, expected) <= Tol, $"{op}: T·X on the rows read differs from T X");
    }

    [Theory, MemberData(nameof(Cases))]
    public void MergeTakesItsInPlacePathWhereTheStructureAllows(MoraType type, int d, int k, int rHat)
    {
        using var c = Make(type, d, k, rHat);
        var (op, m) = (c.Op, c.M);
        bool expected = type == MoraType.Truncation
            || (type.IsBlockwise() ? d == k && k % rHat == 0 : d % rHat == 0 && k % rHat == 0);
        using var w = randn(d, k, dtype: ScalarType.Float64);
        using var merged = w.clone();
        using (no_grad())
            Assert.Equal(expected, op.Compression.TryMerge(merged, m, -0.5, op.Decompression));
        if (!expected) { Assert.True(TestSupport.MaxAbs(merged, w) == 0, $"{op}: a refused merge wrote to W"); return; }
        using var delta = op.DeltaWeightFromForward(m);
        using var want = w - 0.5 * delta;
        Assert.True(TestSupport.MaxAbs(merged, want) <= Tol, $"{op}: in-place merge differs from W − ½ΔW");
    }

    /// <summary>R_t written out by hand: (R x)_i = x_i cos − x_{i+h} sin, (R x)_{i+h} = x_{i+h} cos + x_i sin, angle
    /// t·base^(−2i/r̂), i &lt; h = r̂/2.</summary>
    static Tensor HandRotation(int rHat, int t, double theta)
    {
        int h = rHat / 2;
        var r = new double[rHat * rHat];
        for (int i = 0; i < h; i++)
        {
            double a = t * Math.Pow(theta, -2.0 * i / rHat), c = Math.Cos(a), s = Math.Sin(a);
            r[i * rHat + i] = c; r[i * rHat + i + h] = -s;
            r[(i + h) * rHat + i + h] = c; r[(i + h) * rHat + i] = s;
        }
        return tensor(r, [rHat, rHat], ScalarType.Float64);
    }

    [Theory]
    [InlineData(8, 5), InlineData(16, 3), InlineData(64, 4)]
    public void TheRotationMapUsesTheModelsRotary(int rHat, int blocks)
    {
        using var rng = TestSupport.TorchSeed(rHat);
        var rotation = new RotatedBlocks(blocks * rHat, rHat);
        Assert.Equal(blocks, rotation.Blocks);

        // The same tables: MoRA's (float64) cast to float32 are the model's, exactly.
        var (cos64, sin64) = rotation.Tables(CPU, ScalarType.Float64);
        var (cosModel, sinModel) = RotaryEmbedding.Angles(rHat, 0, blocks, RotatedBlocks.RopeBase, CPU);
        using (var c32 = cos64.to(ScalarType.Float32)) Assert.True(TestSupport.MaxAbs(c32, cosModel) == 0, "cos tables differ");
        using (var s32 = sin64.to(ScalarType.Float32)) Assert.True(TestSupport.MaxAbs(s32, sinModel) == 0, "sin tables differ");

        using var x = randn(2, blocks * rHat, dtype: ScalarType.Float64);
        using var m = randn(rHat, rHat, dtype: ScalarType.Float64);
        using var rotated = rotation.Apply(x);                                   // (2, n, r̂)
        using var xModel = x.reshape(2, 1, blocks, rHat).to(ScalarType.Float32); // [batch, heads, positions, headDim]
        using var rotatedModel = Rotary.Apply(xModel, cosModel, sinModel);
        using var cores = rotation.Cores(m);
        for (int t = 0; t < blocks; t++)
        {
            using var r = HandRotation(rHat, t, RotatedBlocks.RopeBase);
            using var block = x.reshape(2, blocks, rHat).select(1, t);
            using var want = block.matmul(r.t());                               // R_t x_t, row by row
            using var got = rotated.select(1, t);
            Assert.True(TestSupport.MaxAbs(got, want) <= Tol, $"MoRA's R_t x differs from R_t written out (t = {t})");
            using var gotModel = rotatedModel.select(2, t).squeeze(1);
            Assert.True(TestSupport.MaxAbs(gotModel, want) <= 1e-5, $"the model's R_t x differs from R_t written out (t = {t}, float32: 1e-5)");
            using var mr = m.matmul(r);
            using var core = cores.select(0, t);
            Assert.True(TestSupport.MaxAbs(core, mr) <= Tol, $"core M R_t differs from M·R_t written out (t = {t})");
        }
        cosModel.Dispose(); sinModel.Dispose();
    }
}

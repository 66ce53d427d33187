using Mora.Adapters;
using TorchSharp.Modules;

namespace Mora.Tests;

/// <summary>
/// Every design × the shapes {64×64, 48×160, 160×48, 37×90, 16×16 at r = 8, 200×10, 10×200} (d × k) × {float32, float64}.
/// Tolerances: float64 1e-10 and float32 1e-4 relative to the largest |value| (float32 sums of up to a few hundred
/// products carry ~1e-6 relative error; the margin is for the ΔW-vs-forward association order).
/// Inputs are fresh random draws each run (seed printed in every failure message).
/// </summary>
public class DesignMatrixTests
{
    // The five shapes, plus r̂ = 29 > k = 10 (and > d = 10): the cyclic fill wraps the input almost three times.
    public static readonly (int D, int K, int R)[] Shapes = [(64, 64, 8), (48, 160, 4), (160, 48, 4), (37, 90, 3), (16, 16, 8), (200, 10, 4), (10, 200, 4)];
    public static readonly ScalarType[] DTypes = [ScalarType.Float32, ScalarType.Float64];

    public static IEnumerable<object[]> Matrix() =>
        from t in MoraTypes.All from s in Shapes from dt in DTypes select new object[] { t, s.D, s.K, s.R, dt };

    static double Tol(ScalarType dt) => dt == ScalarType.Float64 ? 1e-10 : 1e-4;

    sealed record Setup(MoraLinear Layer, Linear Base, Tensor W0, Tensor X, string Name) : IDisposable
    {
        public void Dispose() { Layer.Dispose(); W0.Dispose(); X.Dispose(); }
    }

    static Setup Make(MoraType type, int d, int k, int r, ScalarType dt, bool randomM = true, [System.Runtime.CompilerServices.CallerMemberName] string test = "")
    {
        int seed = TestSupport.Seed(d * 7919 + k * 104729 + (int)type * 31 + (int)dt, test);
        using var g = new torch.Generator((ulong)seed);
        Linear lin;
        MoraLinear layer;
        Tensor w0;
        using (TestSupport.TorchSeed(seed, test))       // the inits of nn.Linear and of MoraLinear's M draw from torch's generator
        {
            lin = nn.Linear(k, d, hasBias: true, dtype: dt);
            using (no_grad())
            {
                using var w = randn(d, k, dtype: dt, generator: g) / Math.Sqrt(k); lin.weight!.copy_(w);
                using var b = randn(d, dtype: dt, generator: g) * 0.1; lin.bias!.copy_(b);
            }
            w0 = lin.weight!.detach().clone();
            layer = new MoraLinear(lin, r, type);
        }
        if (randomM) using (no_grad()) { using var m = randn(layer.RHat, layer.RHat, dtype: dt, generator: g); layer.M.copy_(m); }
        var x = randn(5, 3, k, dtype: dt, generator: g);
        return new Setup(layer, lin, w0, x, $"{type} {d}x{k} r={r} r̂={layer.RHat} {dt} seed={seed}");
    }

    [Theory, MemberData(nameof(Matrix))]
    public void ForwardEqualsTheMergedLinearMap(MoraType type, int d, int k, int r, ScalarType dt)
    {
        using var s = Make(type, d, k, r, dt);
        using var delta = s.Layer.DeltaWeight();
        using var expected = nn.functional.linear(s.X, s.W0 + delta, s.Base.bias);
        using var y = s.Layer.forward(s.X);
        double err = TestSupport.MaxAbs(y, expected) / TestSupport.MaxAbs(expected);
        Assert.True(err <= Tol(dt), $"{s.Name}: relative |layer(x) − x(W₀+ΔW)ᵀ| = {err:g3} > {Tol(dt)}");
        using var jac = s.Layer.Operators.DeltaWeightFromForward(s.Layer.M);
        double ej = TestSupport.MaxAbs(delta, jac) / TestSupport.MaxAbs(jac);
        Assert.True(ej <= Tol(dt), $"{s.Name}: written-out ΔW differs from the forward's Jacobian by {ej:g3}");
    }

    [Theory, MemberData(nameof(Matrix))]
    public void MergeThenUnmergeRestoresW0(MoraType type, int d, int k, int r, ScalarType dt)
    {
        using var s = Make(type, d, k, r, dt);
        using var before = s.Layer.forward(s.X);
        s.Layer.Merge();
        Assert.True(s.Layer.Merged);
        using var merged = s.Layer.forward(s.X);
        double ef = TestSupport.MaxAbs(merged, before) / TestSupport.MaxAbs(before);
        Assert.True(ef <= Tol(dt), $"{s.Name}: merged forward differs by {ef:g3}");
        using var moved = s.Layer.BaseWeight.detach().clone();
        Assert.True(TestSupport.MaxAbs(moved, s.W0) > 1e-3, $"{s.Name}: merge did not change W₀");
        s.Layer.Unmerge();
        double ew = TestSupport.MaxAbs(s.Layer.BaseWeight, s.W0) / TestSupport.MaxAbs(s.W0);
        Assert.True(ew <= Tol(dt), $"{s.Name}: unmerge left |W − W₀| = {ew:g3}");
    }

    [Theory, MemberData(nameof(Matrix))]
    public void IsANoOpAtInitialisation(MoraType type, int d, int k, int r, ScalarType dt)
    {
        using var s = Make(type, d, k, r, dt, randomM: false);
        Assert.Equal(0.0, TestSupport.MaxAbs(s.Layer.M));
        using var y = s.Layer.forward(s.X);
        using var y0 = s.Base.forward(s.X);
        Assert.Equal(0.0, TestSupport.MaxAbs(y, y0));   // exact: ΔW x is exactly zero
    }

    [Theory, MemberData(nameof(Matrix))]
    public void GradientsReachOnlyTheAdapter(MoraType type, int d, int k, int r, ScalarType dt)
    {
        using var s = Make(type, d, k, r, dt);
        using var y = s.Layer.forward(s.X);
        using var loss = y.pow(2).mean();
        loss.backward();
        Assert.Null(s.Base.weight!.grad);
        Assert.Null(s.Base.bias!.grad);
        Assert.False(s.Base.weight.requires_grad);
        var g = s.Layer.M.grad;
        Assert.NotNull(g);
        Assert.True(TestSupport.MaxAbs(g!) > 0, $"{s.Name}: M got a zero gradient");
        Assert.Equal(new[] { "lora_A.weight" }, s.Layer.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name));
    }

    /// <summary>rank ΔW for a random M equals <see cref="CompressDecompress.ExpectedRank"/>: min(r̂, d, k) for truncation
    /// and sharing (ΔW = T M S factors through r̂ slots), min(d, k) for decouple and rotation (block-diagonal
    /// diag(M R_t) is invertible, the cyclic fold has rank k, row tiling rank min(d, n r̂)).</summary>
    [Theory, MemberData(nameof(Matrix))]
    public void RankOfDeltaWeightIsWhatTheDesignAllows(MoraType type, int d, int k, int r, ScalarType dt)
    {
        using var s = Make(type, d, k, r, dt);
        using var delta = s.Layer.DeltaWeight().to(ScalarType.Float64);
        using var rankT = linalg.matrix_rank(delta);
        long rank = rankT.item<long>();
        int expected = s.Layer.Operators.ExpectedRank();
        Assert.True(rank == expected, $"{s.Name}: rank(ΔW) = {rank}, the design allows {expected}");
        int lora = Math.Min(r, Math.Min(d, k));
        if (type.IsBlockwise()) Assert.True(rank >= lora, $"{s.Name}: a high-rank design reached only rank {rank} < LoRA's {lora}");
    }

    /// <summary>r̂ is within 1 of √((d+k)r) (2 for rotation's even rounding), so |r̂² − (d+k)r| ≤ 2·(2r̂ + 2).</summary>
    [Theory, MemberData(nameof(Matrix))]
    public void ParameterCountMatchesLoraBudget(MoraType type, int d, int k, int r, ScalarType dt)
    {
        using var s = Make(type, d, k, r, dt);
        long mora = s.Layer.AdapterParameterCount, lora = ParameterBudget.LoraParameters(d, k, r);
        Assert.Equal(ParameterBudget.MoraParameters(s.Layer.RHat), mora);
        Assert.True(Math.Abs(mora - lora) <= 2 * (2 * s.Layer.RHat + 2), $"{s.Name}: MoRA {mora} vs LoRA {lora} parameters");
        var (trainable, total) = Peft.CountParameters(s.Layer);
        Assert.Equal(mora, trainable);
        Assert.Equal(mora + (long)d * k + d, total);
    }

    [Theory, MemberData(nameof(Matrix))]
    public void SaveLoadRoundTrip(MoraType type, int d, int k, int r, ScalarType dt)
    {
        using var rng = TestSupport.TorchSeed(d * 7919 + k * 104729 + (int)type * 31 + (int)dt);   // Inject and Load build MoraLinear layers (torch's generator)
        using var s = Make(type, d, k, r, dt);
        var holder = new Holder(s.Layer.Base);
        var config = AdapterConfig.Mora(r, type, "proj");
        Peft.Inject(holder, config);
        var layer = (MoraLinear)holder.proj;
        using var g = TestSupport.Generator(d * 7919 + k * 104729 + (int)type * 31 + (int)dt);
        using (no_grad()) { using var m = randn(layer.RHat, layer.RHat, dtype: dt, generator: g); layer.M.copy_(m); }
        string dir = TestSupport.TempDir();
        AdapterIO.Save(holder, config, dir);

        Linear lin2Made;
        using (TestSupport.TorchSeed(d * 7919 + k * 104729 + (int)type * 31 + (int)dt)) lin2Made = nn.Linear(k, d, hasBias: true, dtype: dt);
        using var lin2 = lin2Made;
        using (no_grad()) { lin2.weight!.copy_(s.Layer.BaseWeight); lin2.bias!.copy_(s.Base.bias!); }
        var holder2 = new Holder(lin2);
        var loaded = AdapterIO.Load(holder2, dir);
        Assert.Equal(config.Method, loaded.Method);
        Assert.Equal(type, loaded.MoraType);
        var layer2 = (MoraLinear)holder2.proj;
        Assert.Equal(0.0, TestSupport.MaxAbs(layer2.M, layer.M));
        using var y1 = holder.forward(s.X);
        using var y2 = holder2.forward(s.X);
        Assert.Equal(0.0, TestSupport.MaxAbs(y1, y2));
        Directory.Delete(dir, true);
    }

    /// <summary>A one-layer model whose layer field can hold an adapter.</summary>
    public sealed class Holder : nn.Module<Tensor, Tensor>
    {
        public nn.Module<Tensor, Tensor> proj;
        public Holder(Linear lin) : base("Holder") { proj = lin; RegisterComponents(); }
        public override Tensor forward(Tensor x) => proj.forward(x);
    }
}

using Mora.Adapters;
using Mora.Model;

namespace Mora.Tests;

/// <summary>
/// The rotation design's two formulations (<see cref="RotationFormulation"/>): rotating M's copies and rotating the input
/// compute the same layer — output, input gradient and M's gradient — within float32 round-off (1e-5 relative to the
/// largest value) and 1e-12 in float64, on shapes where r̂ divides k and where the input wraps; the per-device default
/// and the thread-local override; the one-roll rotation equals the model's <see cref="Rotary"/> bit for bit.
/// Inputs and M are seeded random (<see cref="TestSupport.TorchSeed"/>), never zero.
/// </summary>
public class RotationFormulationTests
{
    public static TheoryData<int, int, int, string> Cases() => new()
    {
        { 64, 64, 16, "float32" }, { 48, 80, 8, "float32" }, { 96, 40, 10, "float32" }, { 30, 70, 12, "float64" }, { 64, 64, 16, "float64" },
    };

    [Theory, MemberData(nameof(Cases))]
    public void BothFormulationsComputeTheSameLayerAndGradients(int d, int k, int rHat, string dtypeName)
    {
        var dtype = dtypeName == "float64" ? ScalarType.Float64 : ScalarType.Float32;
        double tol = dtype == ScalarType.Float64 ? 1e-12 : 1e-5;
        using var rng = TestSupport.TorchSeed(d * 131 + k * 7 + rHat);
        var op = new CompressDecompress(d, k, rHat, MoraType.Rotation);
        using var m0 = randn(rHat, rHat, dtype: dtype);
        using var x0 = randn(3, 5, k, dtype: dtype);
        using var gy = randn(3, 5, d, dtype: dtype);

        (Tensor Y, Tensor Gx, Tensor Gm) Run(RotationFormulation f)
        {
            using var use = RotationFormulations.Use(f);
            Assert.Equal(f, RotationFormulations.For(DeviceType.CPU));
            using var m = m0.detach().clone().requires_grad_(true);
            using var x = x0.detach().clone().requires_grad_(true);
            var y = op.Forward(x, m);
            var grads = torch.autograd.grad([y], [x, m], [gy]);
            return (y.detach(), grads[0], grads[1]);
        }
        var (y1, gx1, gm1) = Run(RotationFormulation.RotateM);
        var (y2, gx2, gm2) = Run(RotationFormulation.RotateInput);
        void Close(Tensor a, Tensor b, string what)
        {
            double scale = Math.Max(1e-30, TestSupport.MaxAbs(a));
            double rel = TestSupport.MaxAbs(a, b) / scale;
            Assert.True(rel <= tol, $"{what}: rotate-m and rotate-input differ by {rel:g3} (relative) > {tol:g1}, {d}×{k} r̂ = {rHat} {dtypeName} (seed {TestSupport.Seed(d * 131 + k * 7 + rHat)})");
            Assert.True(scale > 1e-3, $"{what} is (nearly) zero: the comparison would prove nothing");
        }
        Close(y1, y2, "output");
        Close(gx1, gx2, "input gradient");
        Close(gm1, gm2, "M's gradient");
        foreach (var t in new[] { y1, gx1, gm1, y2, gx2, gm2 }) t.Dispose();
    }

    [Fact]
    public void AutoRotatesMOnTheCpuAndTheInputOnCuda()
    {
        using (RotationFormulations.Use(RotationFormulation.Auto))
        {
            Assert.Equal(RotationFormulation.RotateM, RotationFormulations.For(DeviceType.CPU));
            Assert.Equal(RotationFormulation.RotateInput, RotationFormulations.For(DeviceType.CUDA));
        }
        using (RotationFormulations.Use(RotationFormulation.RotateInput))
        {
            Assert.Equal(RotationFormulation.RotateInput, RotationFormulations.For(DeviceType.CPU));
            using (RotationFormulations.Use(RotationFormulation.RotateM))
                Assert.Equal(RotationFormulation.RotateM, RotationFormulations.For(DeviceType.CUDA));
            Assert.Equal(RotationFormulation.RotateInput, RotationFormulations.For(DeviceType.CUDA));     // restored
        }
    }

    [Theory]
    [InlineData("auto", RotationFormulation.Auto), InlineData("rotate-m", RotationFormulation.RotateM), InlineData("Rotate_Input", RotationFormulation.RotateInput)]
    public void TheSwitchParsesItsNames(string text, RotationFormulation expected)
    {
        Assert.Equal(expected, RotationFormulations.Parse(text));
        Assert.Equal(expected, RotationFormulations.Parse(RotationFormulations.Name(expected)));
    }

    [Fact]
    public void AnUnknownFormulationIsRefusedNamingTheVariable()
    {
        var e = Assert.Throws<ArgumentException>(() => RotationFormulations.Parse("rotate-x", RotationFormulations.EnvironmentVariable));
        Assert.Equal("MORA_ROTATION", e.ParamName);
        Assert.Contains("rotate-m", e.Message);
    }

    [Theory]
    [InlineData(8, 5), InlineData(16, 3), InlineData(64, 2)]
    public void TheOneRollRotationIsTheModelsRotaryBitForBit(int rHat, int blocks)
    {
        using var rng = TestSupport.TorchSeed(rHat * 10 + blocks);
        var rotation = new RotatedBlocks(blocks * rHat, rHat);
        using var x = randn(4, blocks * rHat);
        using var rotated = rotation.Apply(x);                                     // (4, n, r̂)
        var (cos, sin) = rotation.Tables(CPU, ScalarType.Float32);
        using var blocksView = x.reshape(4, blocks, rHat);
        using var model = Rotary.Apply(blocksView, cos, sin);
        Assert.True(TestSupport.MaxAbs(rotated, model) == 0, "MoRA's R_t x differs from Rotary.Apply");
        Assert.True(TestSupport.MaxAbs(model) > 0.1);

        using var m = randn(rHat, rHat);
        using var cores = rotation.Cores(m);                                       // M R_t = rows of M through R_tᵀ
        using var rows = m.unsqueeze(0);
        using var c = cos.unsqueeze(1);
        using var s = sin.unsqueeze(1);
        using var modelCores = Rotary.ApplyTransposed(rows, c, s);
        Assert.True(TestSupport.MaxAbs(cores, modelCores) == 0, "MoRA's M R_t differs from Rotary.ApplyTransposed");
    }

    [Fact]
    public void AMoraLayerTrainsTheSameUnderEitherFormulation()
    {
        // The adapter path end to end (MoraLinear → CompressDecompress → RotatedBlocks) at a wrapped shape, float64.
        using var rng = TestSupport.TorchSeed();
        using var linear = nn.Linear(44, 56, hasBias: false, dtype: ScalarType.Float64);      // r̂ = 20: 3 blocks, the input wraps
        using var layer = new MoraLinear(linear, 4, MoraType.Rotation);
        using (no_grad()) layer.M.normal_(0, 0.1);
        using var x = randn(6, 44, dtype: ScalarType.Float64);
        Tensor Out(RotationFormulation f) { using var use = RotationFormulations.Use(f); return layer.forward(x); }
        using var a = Out(RotationFormulation.RotateM);
        using var b = Out(RotationFormulation.RotateInput);
        using var baseOut = linear.forward(x);
        Assert.True(TestSupport.MaxAbs(a, baseOut) > 1e-3, "the adapter contributes nothing: the comparison would prove nothing");
        Assert.True(TestSupport.MaxAbs(a, b) <= 1e-12, $"the formulations differ by {TestSupport.MaxAbs(a, b):g3}");
    }
}

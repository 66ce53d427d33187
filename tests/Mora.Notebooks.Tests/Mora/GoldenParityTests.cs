using System.Text.Json;

namespace Mora.Tests;

/// <summary>Parity with the reference code's behaviour: tests/data/golden/mora_golden.json (types 1, 2, 3, 4, 6 on eight
/// layer shapes, float64). Tolerances: float64 1e-10 absolute; float32 1e-5 relative to the largest |value|.</summary>
public class GoldenParityTests
{
    public sealed record GoldenCase(int Type, int In, int Out, int R, int RHat, double[][] M, double[][] X, double[][] Y, double[][] Delta, string ReferenceMerge)
    {
        public override string ToString() => $"type {Type} {Out}x{In} r={R}";
    }

    static readonly Lazy<List<GoldenCase>> Cases = new(() =>
    {
        string path = Path.Combine(TestSupport.TestData, "golden", "mora_golden.json");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        static double[][] Mat(JsonElement e) => e.EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray();
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new GoldenCase(
            c.GetProperty("mora_type").GetInt32(), c.GetProperty("in_features").GetInt32(), c.GetProperty("out_features").GetInt32(),
            c.GetProperty("lora_r").GetInt32(), c.GetProperty("r_hat").GetInt32(), Mat(c.GetProperty("M")), Mat(c.GetProperty("x")),
            Mat(c.GetProperty("y")), Mat(c.GetProperty("delta_w")), c.GetProperty("reference_merge").GetString()!)).ToList();
    });

    public static IEnumerable<object[]> AllCases() => Enumerable.Range(0, Cases.Value.Count).Select(i => new object[] { i, Cases.Value[i].ToString() });

    static Tensor T(double[][] rows, ScalarType dtype) =>
        tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length], dtype: ScalarType.Float64).to(dtype);

    [Fact]
    public void GoldenFileCoversEveryReferenceTypeOnEveryShape()
    {
        Assert.Equal(40, Cases.Value.Count);
        Assert.Equal(new[] { 1, 2, 3, 4, 6 }, Cases.Value.Select(c => c.Type).Distinct().Order());
    }

    [Theory]
    [MemberData(nameof(AllCases))]
    public void RHatMatchesTheReferenceRule(int index, string name)
    {
        var c = Cases.Value[index];
        Assert.True(c.RHat == ParameterBudget.RHat(c.Out, c.In, c.R, (MoraType)c.Type), name);
    }

    [Theory]
    [MemberData(nameof(AllCases))]
    public void ForwardAndDeltaWeightMatchTheReferenceInFloat64(int index, string name)
    {
        var c = Cases.Value[index];
        var op = new CompressDecompress(c.Out, c.In, c.RHat, (MoraType)c.Type);
        using var m = T(c.M, ScalarType.Float64);
        using var x = T(c.X, ScalarType.Float64);
        using var yRef = T(c.Y, ScalarType.Float64);
        using var dRef = T(c.Delta, ScalarType.Float64);
        using var y = op.Forward(x, m);
        using var delta = op.DeltaWeight(m);
        Assert.Equal(new long[] { c.Out, c.In }, delta.shape);
        double ey = TestSupport.MaxAbs(y, yRef), ed = TestSupport.MaxAbs(delta, dRef);
        Assert.True(ey <= 1e-10, $"{name}: |y - y_ref| = {ey:g3} > 1e-10");
        Assert.True(ed <= 1e-10, $"{name}: |ΔW - ΔW_ref| = {ed:g3} > 1e-10");
        // Where the reference's own merge fails (type 6 with one r̂-block), ΔW must be the Jacobian of our forward.
        using var jac = op.DeltaWeightFromForward(m);
        double ej = TestSupport.MaxAbs(delta, jac);
        Assert.True(ej <= 1e-10, $"{name} (reference merge: {c.ReferenceMerge}): |ΔW - J| = {ej:g3}");
    }

    [Theory]
    [MemberData(nameof(AllCases))]
    public void ForwardAndDeltaWeightMatchTheReferenceInFloat32(int index, string name)
    {
        var c = Cases.Value[index];
        var op = new CompressDecompress(c.Out, c.In, c.RHat, (MoraType)c.Type);
        using var m = T(c.M, ScalarType.Float32);
        using var x = T(c.X, ScalarType.Float32);
        using var yRef = T(c.Y, ScalarType.Float64);
        using var dRef = T(c.Delta, ScalarType.Float64);
        using var y = op.Forward(x, m);
        using var delta = op.DeltaWeight(m);
        Assert.Equal(ScalarType.Float32, y.dtype);
        double ry = TestSupport.MaxAbs(y, yRef) / TestSupport.MaxAbs(yRef), rd = TestSupport.MaxAbs(delta, dRef) / TestSupport.MaxAbs(dRef);
        Assert.True(ry <= 1e-5, $"{name}: relative |y - y_ref| = {ry:g3} > 1e-5");
        Assert.True(rd <= 1e-5, $"{name}: relative |ΔW - ΔW_ref| = {rd:g3} > 1e-5");
    }

    [Fact]
    public void TheReferenceMergeFailureCaseIsPresentAndOursWorks()
    {
        var c = Cases.Value.Single(g => g.Type == 6 && g.In == 16 && g.Out == 16);
        Assert.StartsWith("fails", c.ReferenceMerge);
        var op = new CompressDecompress(16, 16, c.RHat, MoraType.Rotation);
        Assert.Equal(1, op.Blocks);
        using var m = T(c.M, ScalarType.Float64);
        using var delta = op.DeltaWeight(m);
        Assert.Equal(new long[] { 16, 16 }, delta.shape);
    }
}

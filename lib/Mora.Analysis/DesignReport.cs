using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Analysis;

/// <summary>One row of the r̂ budget table.</summary>
public sealed record RHatRow(string Layer, int D, int K, int R, int RHatReference, int RHatPaper, int RHatRotation, long LoraParameters, long MoraParameters, int LoraMaxRank, int SharingMaxRank, int RotationMaxRank);

/// <summary>One row of the design comparison for a layer.</summary>
/// <remarks><c>Type</c> is the design as tables name it (the paper's by its <see cref="MoraType"/> name, "Sharing"; a
/// registered one by its name); <c>Number</c> the paper's type number (the reference's mora_type; 0 and 5 the kit's),
/// null for a design of one's own.</remarks>
public sealed record DesignRow(string Type, int D, int K, int RHat, long Parameters, long Rank, double EffectiveRank, double MergeError, double JacobianError, double ForwardMs, double DeltaWeightMs, int? Number);

/// <summary>The analyses behind the <c>rank</c> and <c>designs</c> commands (and notebooks 01 and 02).</summary>
/// <summary>Rank, effective rank and normalised singular values σ_i/σ_1 of one ΔW.</summary>
public sealed record SpectrumRow(string Method, long Parameters, long Rank, double EffectiveRank, IReadOnlyDictionary<int, double> Normalized)
{
    /// <summary>Every σ_i / σ_1, largest first (for plotting the whole spectrum).</summary>
    public double[] Spectrum { get; init; } = [];
}

public static class DesignReport
{
    /// <summary>The LLaMA-2 7B linear-layer shapes (d × k): attention projections, MLP up/gate, MLP down.</summary>
    public static readonly (string Name, int D, int K)[] Llama2Shapes =
        [("q/k/v/o_proj", 4096, 4096), ("gate/up_proj", 11008, 4096), ("down_proj", 4096, 11008)];

    /// <summary>r̂ at LoRA ranks (default 8…256) for the given layer shapes, with parameter parity and the largest rank
    /// each method's ΔW can reach.</summary>
    public static List<RHatRow> RHatTable(IEnumerable<(string Name, int D, int K)>? shapes = null, IEnumerable<int>? ranks = null)
    {
        var rows = new List<RHatRow>();
        foreach (var (name, d, k) in shapes ?? Llama2Shapes)
            foreach (int r in ranks ?? [8, 16, 32, 64, 128, 256])
            {
                int rRef = ParameterBudget.RHat(d, k, r, MoraType.Sharing);
                int rPaper = ParameterBudget.RHat(d, k, r, MoraType.Sharing, RHatRule.Floor);
                int rRot = ParameterBudget.RHat(d, k, r, MoraType.Rotation);
                rows.Add(new RHatRow(name, d, k, r, rRef, rPaper, rRot, ParameterBudget.LoraParameters(d, k, r), ParameterBudget.MoraParameters(rRef),
                    Math.Min(r, Math.Min(d, k)), new CompressDecompress(d, k, rRef, MoraType.Sharing).ExpectedRank(),
                    new CompressDecompress(d, k, rRot, MoraType.Rotation).ExpectedRank()));
            }
        return rows;
    }

    /// <summary>For each design at one layer shape and LoRA rank: r̂, parameters, rank and effective rank of ΔW for a
    /// random M (float64), the merge error max|f_decomp(M f_comp(x)) − ΔW x| and |ΔW − Jacobian of the forward|, and
    /// median times (ms) of the forward on <paramref name="tokens"/> tokens and of writing ΔW out.</summary>
    /// <remarks>The designs compared are <paramref name="designs"/>, by default the paper's seven (<see cref="MoraDesigns.Paper"/>;
    /// pass <c>[.. MoraDesigns.Paper, mine]</c> to add a registered one).</remarks>
    public static List<DesignRow> CompareDesigns(int d, int k, int r, int tokens = 256, int repeats = 5, long seed = 0,
        Device? device = null, Action<string>? progress = null, IReadOnlyList<MoraDesign>? designs = null)
    {
        designs ??= MoraDesigns.Paper;
        if (tokens <= 0) throw new ArgumentException($"tokens must be positive, got {tokens}", nameof(tokens));
        if (repeats <= 0) throw new ArgumentException($"repeats must be positive, got {repeats}", nameof(repeats));
        device ??= CPU;
        var rows = new List<DesignRow>();
        foreach (var (type, i) in designs.Select((t, i) => (t, i)))
        {
            progress?.Invoke($"[{i + 1}/{designs.Count}] {type.Name}");
            using var scope = NewDisposeScope();
            torch.manual_seed(seed);
            var op = CompressDecompress.ForLoraRank(d, k, r, type);
            var m = randn(op.RHat, op.RHat, dtype: ScalarType.Float64, device: device) / Math.Sqrt(op.RHat);
            var x = randn(tokens, k, dtype: ScalarType.Float64, device: device);
            var delta = op.DeltaWeight(m);
            var y = op.Forward(x, m);
            double mergeErr = (y - x.matmul(delta.t())).abs().max().item<double>();
            double jacErr = k <= 4096 ? (delta - op.DeltaWeightFromForward(m)).abs().max().item<double>() : double.NaN;
            var spectrum = Spectrum.Of(delta);
            var m32 = m.to(ScalarType.Float32);
            var x32 = x.to(ScalarType.Float32);
            double fwd = MedianMs(() => { using var _ = op.Forward(x32, m32); }, repeats, device);
            double dw = MedianMs(() => { using var _ = op.DeltaWeight(m32); }, repeats, device);
            rows.Add(new DesignRow(type.BuiltIn?.ToString() ?? type.Name, d, k, op.RHat, ParameterBudget.MoraParameters(op.RHat), spectrum.Rank, spectrum.EffectiveRank, mergeErr, jacErr, fwd, dw,
                type.BuiltIn is { } t ? (int)t : null));
        }
        return rows;
    }

    /// <summary>Rank and spectrum of ΔW at equal parameters with random weights (float64): LoRA with random A and B, then
    /// every MoRA design with a random M. <see cref="SpectrumRow.Normalized"/> holds σ_i / σ_1 at the given positions
    /// (1-based), so a table shows how fast each spectrum decays.</summary>
    /// <remarks>The MoRA designs are <paramref name="designs"/>, by default the paper's seven (<see cref="MoraDesigns.Paper"/>).</remarks>
    public static List<SpectrumRow> RandomSpectra(int d, int k, int r, long seed = 0, IReadOnlyList<int>? positions = null, IReadOnlyList<MoraDesign>? designs = null)
    {
        if (r <= 0 || r > Math.Min(d, k)) throw new ArgumentException($"rank r must be in 1 … min(d, k) = {Math.Min(d, k)}, got {r}", nameof(r));
        positions ??= new[] { 1, r, 2 * r, 4 * r, 16 * r }.Where(p => p <= Math.Min(d, k)).Distinct().ToList();
        var rows = new List<SpectrumRow>();
        SpectrumRow Row(string method, long parameters, Tensor delta)
        {
            var spectrum = Spectrum.Of(delta);
            var normalized = spectrum.Normalized();
            return new SpectrumRow(method, parameters, spectrum.Rank, spectrum.EffectiveRank, positions.ToDictionary(p => p, p => normalized[p - 1]))
                { Spectrum = normalized };
        }
        using (var scope = NewDisposeScope())
        {
            torch.manual_seed(seed);
            var b = randn(d, r, dtype: ScalarType.Float64);
            var a = randn(r, k, dtype: ScalarType.Float64);
            rows.Add(Row($"LoRA r={r}", ParameterBudget.LoraParameters(d, k, r), b.matmul(a)));
        }
        foreach (var design in designs ?? MoraDesigns.Paper)
        {
            using var scope = NewDisposeScope();
            torch.manual_seed(seed);
            var op = CompressDecompress.ForLoraRank(d, k, r, design);
            var m = randn(op.RHat, op.RHat, dtype: ScalarType.Float64);
            rows.Add(Row(design.BuiltIn is { } type ? $"MoRA {type} ({(int)type})" : $"MoRA {design.Name}", ParameterBudget.MoraParameters(op.RHat), op.DeltaWeight(m)));
        }
        return rows;
    }

    /// <summary>Median wall time of <paramref name="repeats"/> runs after one warm-up, synchronising CUDA.</summary>
    public static double MedianMs(Action work, int repeats, Device? device = null)
    {
        work();
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            var sw = Stopwatch.StartNew();
            work();
            if (device?.type == DeviceType.CUDA) cuda.synchronize();
            times[i] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return repeats % 2 == 1 ? times[repeats / 2] : (times[repeats / 2 - 1] + times[repeats / 2]) / 2;
    }
}

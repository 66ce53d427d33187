using System.Globalization;
using System.Text;
using Mora.Adapters;
using Mora.Bench;
using Mora.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Evidence;

/// <summary>Kernel launches of one adapted layer's forward + backward (the bench's step: the output, the input's gradient and
/// the adapter's gradients), counted from libtorch's own trace (<see cref="OpTrace"/>). <c>Formulation</c> names the
/// rotation formulation for the rotation design, empty otherwise; <c>Detail</c> lists the launching operators.</summary>
public sealed record LaunchRow(int D, int K, string Method, string Formulation, int R, int RHat, int Forward, int Backward, int Total, string Detail)
{
    /// <summary>The traced step as a tree (<see cref="OpTrace.Tree"/>); not written to the CSV.</summary>
    internal string Trace { get; init; } = "";
}

/// <summary>
/// Counts the kernel launches of one layer's forward + backward for LoRA, DoRA and every MoRA design (both rotation
/// formulations), at the bench's shapes and ranks: the number a GPU pays a launch latency for, whatever the FLOPs.
/// Counts do not depend on the number of tokens (the same operators run whatever their size), so they are measured at a
/// few tokens; they do depend on the shape's divisibility (whether r̂ divides k and d), hence the real shapes.
/// </summary>
public static class LaunchCounts
{
    public const string CsvFile = "launches.csv", ReportFile = "launches.md", BeforeFile = "launches-before.csv";

    /// <summary>The rows for every shape × rank: base, LoRA, DoRA (smallest rank), each MoRA design; rotation twice.</summary>
    public static List<LaunchRow> Measure((int D, int K)[] shapes, int[] ranks, int tokens, Device device, ScalarType dtype, TextWriter log)
    {
        var rows = new List<LaunchRow>();
        foreach (var (d, k) in shapes)
        {
            using var scope = NewDisposeScope();
            manual_seed(0);
            var baseLinear = nn.Linear(k, d, hasBias: false, device: device, dtype: dtype);
            baseLinear.weight!.requires_grad = false;
            var x = randn(tokens, k, dtype: dtype, device: device).requires_grad_(true);
            var gy = randn(tokens, d, dtype: dtype, device: device);
            rows.Add(Count(d, k, "base", "", 0, 0, baseLinear, [], x, gy));
            int smallest = ranks.Min();
            foreach (int r in ranks.Distinct())
            {
                if (r > Math.Min(d, k)) continue;
                var lora = new LoraLinear(baseLinear, r, 2 * r);
                rows.Add(Count(d, k, "lora", "", r, 0, lora, Trainable(lora), x, gy));
                if (r == smallest)
                {
                    var dora = new DoraLinear(baseLinear, r, 2 * r);
                    rows.Add(Count(d, k, "dora", "", r, 0, dora, Trainable(dora), x, gy));
                }
                foreach (var type in MoraTypes.All)
                {
                    MoraLinear mora;
                    try { mora = new MoraLinear(baseLinear, r, type); }
                    catch (ArgumentException) { continue; }            // r̂ does not fit this layer
                    using (no_grad()) mora.M.normal_(0, 0.02);
                    string method = $"mora-{MoraTypes.Name(type)}";
                    if (type == MoraType.Rotation)
                        foreach (var f in new[] { RotationFormulation.RotateM, RotationFormulation.RotateInput })
                        {
                            using var use = RotationFormulations.Use(f);
                            rows.Add(Count(d, k, method, RotationFormulations.Name(f), r, mora.RHat, mora, Trainable(mora), x, gy));
                        }
                    else rows.Add(Count(d, k, method, "", r, mora.RHat, mora, Trainable(mora), x, gy));
                }
            }
            log.WriteLine($"  launches {d}×{k}: {rows.Count(r => r.D == d && r.K == k)} rows");
        }
        return rows;
    }

    static Parameter[] Trainable(AdaptedLinear layer) => layer.AdapterParameters().Select(p => p.Parameter).ToArray();

    static LaunchRow Count(int d, int k, string method, string formulation, int r, int rHat, nn.Module<Tensor, Tensor> layer, Parameter[] trainable, Tensor x, Tensor gy)
    {
        void Forward() { using var s = NewDisposeScope(); _ = layer.forward(x); }
        void Step()
        {
            using var s = NewDisposeScope();
            var y = layer.forward(x);
            foreach (var g in torch.autograd.grad([y], [x, .. trainable], [gy])) g.Dispose();
        }
        Step();                                                        // warm-up: index and RoPE tables are built once
        var forward = OpTrace.Record(Forward);
        var step = OpTrace.Record(Step);
        int f = OpTrace.Launches(forward), total = OpTrace.Launches(step);
        string detail = string.Join(" ", OpTrace.LaunchesByName(step).Select(n => $"{n.Name.Replace("aten::", "")}×{n.Count}"));
        return new LaunchRow(d, k, method, formulation, r, rHat, f, total - f, total, detail) { Trace = OpTrace.Tree(step) };
    }

    /// <summary>Writes <c>launches.csv</c> and <c>launches.md</c>; with a <c>launches-before.csv</c> beside them (the same
    /// table measured before an optimisation), the report shows both.</summary>
    public static void Write(string dir, IReadOnlyList<LaunchRow> rows, string commandLine, string? note = null, bool traces = false)
    {
        Directory.CreateDirectory(dir);
        if (traces)
        {
            string t = Path.Combine(dir, "traces");
            Directory.CreateDirectory(t);
            foreach (var r in rows)
                AtomicFile.WriteText(Path.Combine(t, $"{r.D}x{r.K}-{r.Method}{(r.Formulation == "" ? "" : "-" + r.Formulation)}-r{r.R}.txt"), r.Trace);
        }
        Benchmarks.WriteCsv(Path.Combine(dir, CsvFile), rows);
        var before = File.Exists(Path.Combine(dir, BeforeFile)) ? ReadCsv(Path.Combine(dir, BeforeFile)) : [];
        AtomicFile.WriteText(Path.Combine(dir, ReportFile), Report(rows, before, commandLine, note));
    }

    /// <summary>Rows of a <c>launches.csv</c>.</summary>
    public static List<LaunchRow> ReadCsv(string path)
    {
        var lines = File.ReadAllLines(path);
        if (lines.Length == 0) throw new FormatException($"{path}: empty");
        var header = lines[0].Split(',');
        int Col(string name) => Array.IndexOf(header, name) is var i and >= 0 ? i : throw new FormatException($"{path}: no column '{name}'");
        int cd = Col("d"), ck = Col("k"), cm = Col("method"), cf = Col("formulation"), cr = Col("r"), ch = Col("r_hat"), cfw = Col("forward"), cb = Col("backward"), ct = Col("total"), cx = Col("detail");
        var rows = new List<LaunchRow>();
        for (int i = 1; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            var c = lines[i].Split(',');
            if (c.Length != header.Length) throw new FormatException($"{path}, line {i + 1}: {c.Length} cells, the header has {header.Length}");
            int I(int at) => int.Parse(c[at], CultureInfo.InvariantCulture);
            rows.Add(new LaunchRow(I(cd), I(ck), c[cm], c[cf], I(cr), I(ch), I(cfw), I(cb), I(ct), c[cx]));
        }
        return rows;
    }

    static string Report(IReadOnlyList<LaunchRow> rows, IReadOnlyList<LaunchRow> before, string commandLine, string? note)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Kernel launches per layer, forward + backward");
        sb.AppendLine();
        sb.AppendLine($"`{commandLine}`. Counted from libtorch's own trace of the step the bench times (`torch::autograd::profiler::RecordProfile`, " +
                      "`lib/Mora.Analysis/Evidence/OpTrace.cs`): the output, the input's gradient and the adapter's gradients. A launch is an ATen operator that computes " +
                      "(views, metadata and bare allocations excluded, `OpTrace.NoKernel`) with no computing operator inside it. Counts do not depend on the token count; " +
                      "they depend on whether r̂ divides the shape, hence the bench's shapes. The frozen base layer alone is the `base` row; every other row includes it. " +
                      "`launching operators`: the whole step's launches by operator.");
        if (note is not null) { sb.AppendLine(); sb.AppendLine(note); }
        sb.AppendLine();
        bool withBefore = before.Count > 0;
        if (withBefore)
        {
            sb.AppendLine();
            sb.AppendLine($"`total before`: {BeforeFile} beside this file, the same count measured before the operator changes it is compared with " +
                          "(for the rotation design, the formulation of that name as it was then).");
        }
        sb.AppendLine(withBefore
            ? "| shape | method | formulation | r | r̂ | forward | backward | total | total before | launching operators |"
            : "| shape | method | formulation | r | r̂ | forward | backward | total | launching operators |");
        sb.AppendLine(withBefore ? "|---|---|---|---:|---:|---:|---:|---:|---:|---|" : "|---|---|---|---:|---:|---:|---:|---:|---|");
        foreach (var r in rows)
        {
            string cells = $"| {r.D}×{r.K} | {r.Method} | {r.Formulation} | {(r.R == 0 ? "" : r.R)} | {(r.RHat == 0 ? "" : r.RHat)} | {r.Forward} | {r.Backward} | {r.Total} |";
            if (withBefore)
            {
                var b = before.FirstOrDefault(p => p.D == r.D && p.K == r.K && p.Method == r.Method && p.R == r.R && (p.Formulation == r.Formulation || p.Formulation == ""));
                cells += $" {(b is null ? "" : b.Total.ToString(CultureInfo.InvariantCulture))} |";
            }
            sb.AppendLine($"{cells} {r.Detail} |");
        }
        return sb.ToString();
    }
}

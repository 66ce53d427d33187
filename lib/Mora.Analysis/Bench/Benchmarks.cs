using System.Diagnostics;
using System.Globalization;
using System.Text;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.IO;
using Mora.Model;
using Mora.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Bench;

/// <summary>What the benchmark measures and at which sizes. Shapes are d × k as in the paper (W ∈ ℝ^{d×k}: d outputs,
/// k inputs), so 4096×11008 is LLaMA-2 7B's down_proj.</summary>
public sealed record BenchSpec
{
    public string Preset { get; init; } = "quick";
    public (int D, int K)[] Shapes { get; init; } = [(1024, 1024)];
    public int[] Tokens { get; init; } = [512, 2048];
    public int[] Ranks { get; init; } = [8, 256];
    /// <summary>Timed repetitions per configuration (after one warm-up); the methods of a shape are interleaved.</summary>
    public int Repeats { get; init; } = 5;
    /// <summary>Shapes for the ΔW materialisation and merge benchmark (at the first rank).</summary>
    public (int D, int K)[] MergeShapes { get; init; } = [(1024, 1024)];
    /// <summary>Whether to time the reference's merge algorithm (<see cref="Bench.ReferenceMerge"/>) beside the kit's.</summary>
    public bool ReferenceMerge { get; init; } = true;
    /// <summary>Training-step benchmark: the model preset, steps per method (the first 3 are not timed), batch size.</summary>
    public string TrainModel { get; init; } = "small";
    public int TrainSteps { get; init; } = 20;
    public int TrainBatch { get; init; } = 32;
    public ComputeDevice Device { get; init; }
    public string DType { get; init; } = "float32";
    public int Seed { get; init; } = 0;

    public static readonly string[] Presets = ["tiny", "quick", "full"];
    /// <summary>The dtypes the benchmark times (bfloat16 and float16 on a GPU).</summary>
    public static readonly string[] DTypes = ["float32", "bfloat16", "float16"];

    public static BenchSpec FromPreset(string preset) => preset switch
    {
        "tiny" => new BenchSpec { Preset = "tiny", Shapes = [(64, 64), (64, 96)], Tokens = [16], Ranks = [2, 8], Repeats = 2, MergeShapes = [(64, 64), (64, 96)], TrainModel = "tiny", TrainSteps = 5, TrainBatch = 4 },
        "quick" => new BenchSpec { Preset = "quick" },
        "full" => new BenchSpec
        {
            Preset = "full", Shapes = [(1024, 1024), (4096, 4096), (4096, 11008)], Tokens = [512, 2048], Ranks = [8, 256], Repeats = 5,
            MergeShapes = [(4096, 4096), (4096, 11008)], TrainSteps = 30,
        },
        _ => throw new ArgumentException($"unknown preset '{preset}' (known: {string.Join(", ", Presets)})", nameof(Preset)),
    };

    public BenchSpec Validate()
    {
        if (Shapes.Length == 0 || Shapes.Any(s => s.D <= 0 || s.K <= 0)) throw new ArgumentException($"{nameof(Shapes)}: every shape needs positive d and k", nameof(Shapes));
        if (MergeShapes.Any(s => s.D <= 0 || s.K <= 0)) throw new ArgumentException($"{nameof(MergeShapes)}: every shape needs positive d and k", nameof(MergeShapes));
        if (Tokens.Length == 0 || Tokens.Any(t => t <= 0)) throw new ArgumentException($"{nameof(Tokens)}: token counts must be positive", nameof(Tokens));
        if (Ranks.Length == 0 || Ranks.Any(r => r <= 0)) throw new ArgumentException($"{nameof(Ranks)}: ranks must be positive", nameof(Ranks));
        if (Repeats < 1) throw new ArgumentException($"{nameof(Repeats)} must be at least 1, got {Repeats}", nameof(Repeats));
        if (TrainSteps < 0) throw new ArgumentException($"{nameof(TrainSteps)} must be 0 (skip) or more, got {TrainSteps}", nameof(TrainSteps));
        if (TrainSteps is > 0 and < 4) throw new ArgumentException($"{nameof(TrainSteps)} must be at least 4 (3 warm-up steps are not timed), got {TrainSteps}", nameof(TrainSteps));
        Device.EnsureAvailable(nameof(Device));
        if (!DTypes.Contains(DType)) throw new ArgumentException($"{nameof(DType)}: unknown dtype '{DType}'; use {string.Join(", ", DTypes)}", nameof(DType));
        LlamaConfig.Preset(TrainModel, 128);
        return this;
    }
}

/// <summary>One adapted layer, forward + backward (gradients of the input and of the adapter), at one shape and token count.</summary>
public sealed record LayerRow(int D, int K, int Tokens, string Method, int R, int RHat, long Parameters, double MedianMs, double P25Ms, double P75Ms,
    double RatioToBase, double RatioToLora, double MatmulFlopsPerToken, double FloorRatioToBase, double FloorRatioToLora, double PeakExtraMiB);

/// <summary>ΔW written out and merged into W: the kit's <see cref="CompressDecompress.DeltaWeight"/> and
/// <see cref="CompressDecompress.AddDeltaWeightTo"/> against the reference's merge algorithm (<see cref="ReferenceMerge"/>:
/// kongds/MoRA <c>get_delta_weight</c>, then W += ΔW), medians of the same repetitions. The reference columns are NaN for
/// the designs the reference does not have (truncation, decoupling).</summary>
public sealed record MergeRow(int D, int K, string Method, int R, int RHat, double MaterialiseMs, double MergeMs, double ReferenceDeltaMs, double ReferenceMergeMs,
    double SpeedUp, double MaxAbsDiff, double MergeErrorVsDeltaWeight, double LayerStepMs, double PercentOfLayerStep);

/// <summary>A whole training step of the kit's small model per method.</summary>
public sealed record TrainRow(string Method, int R, long TrainableParameters, double StepMs, double TokensPerSecond, double PeakRssMiB);

public sealed record BenchResult(BenchSpec Spec, List<LayerRow> Layers, List<MergeRow> Merges, List<TrainRow> Training, Dictionary<string, double> BaseGflops, double WallSeconds = double.NaN);

/// <summary>
/// The cost benchmark of issue 6: MoRA against LoRA and against the hardware limit. Medians of interleaved repetitions
/// (the methods of one shape take turns, so a noisy neighbour slows them alike), ratios from the same run, FLOPs counted
/// per design, and the arithmetic floor each ratio is compared with.
/// <para>FLOP counts (per token, forward + backward, multiply-adds as 2): the frozen base 4·d·k (forward, and the input's
/// gradient); LoRA adds 6·(d + k)·r (forward, the input's gradient and the gradients of A and B); MoRA adds 6·r̂·c where c
/// is the width f_comp produces (r̂ for truncation and the sharing designs, ⌈k/r̂⌉·r̂ for decoupling and rotation); DoRA
/// adds LoRA's plus 2·d·k·r + 3·d·k per call for ‖W₀ + BA‖. Compress/decompress gathers, sums and the rotation's
/// element-wise products are memory-bound and not counted, so a ratio above its floor measures them.</para>
/// </summary>
public static class Benchmarks
{
    public const string LayerFile = "layer.csv", MergeFile = "merge.csv", TrainFile = "train.csv", ReportFile = "bench.md", CommandFile = "COMMAND.txt";

    /// <summary>The methods of the layer benchmark at one rank budget: LoRA, DoRA (at the smallest rank only), every MoRA design.</summary>
    static IEnumerable<(string Method, MoraType? Type, bool Dora)> Methods(bool withDora)
    {
        yield return ("lora", null, false);
        if (withDora) yield return ("dora", null, true);
        foreach (var t in Enum.GetValues<MoraType>()) yield return ($"mora-{MoraTypes.Name(t)}", t, false);
    }

    public static BenchResult Run(BenchSpec spec, string outDir, TextWriter log)
    {
        spec.Validate();
        var wall = Stopwatch.StartNew();
        var device = spec.Device.ToTorch(nameof(spec.Device));
        var dtype = TrainConfig.ParseDType(spec.DType);
        log.WriteLine($"bench ({spec.Preset}): device {device}, dtype {dtype}, {torch.get_num_threads()} threads, {spec.Repeats} interleaved repeats");
        var layers = new List<LayerRow>();
        var gflops = new Dictionary<string, double>();
        foreach (var (d, k) in spec.Shapes)
            foreach (int tokens in spec.Tokens)
            {
                var rows = LayerCase(spec, d, k, tokens, device, dtype, log);
                layers.AddRange(rows);
                var b = rows.Single(r => r.Method == "base");
                gflops[$"{d}x{k}@{tokens}"] = 4.0 * d * k * tokens / (b.MedianMs * 1e-3) / 1e9;
                WriteCsv(Path.Combine(outDir, LayerFile), layers);
            }
        var merges = new List<MergeRow>();
        foreach (var (d, k) in spec.MergeShapes)
        {
            merges.AddRange(MergeCase(spec, d, k, device, dtype, layers, log));
            WriteCsv(Path.Combine(outDir, MergeFile), merges);
        }
        var training = spec.TrainSteps > 0 ? TrainCase(spec, device, dtype, log) : [];
        if (training.Count > 0) WriteCsv(Path.Combine(outDir, TrainFile), training);
        var result = new BenchResult(spec, layers, merges, training, gflops, wall.Elapsed.TotalSeconds);
        AtomicFile.WriteText(Path.Combine(outDir, ReportFile), Report(result));
        return result;
    }

    // ---------------------------------------------------------------- one layer

    sealed class Case(string method, int r, int rHat, nn.Module<Tensor, Tensor> layer, Parameter[] trainable, double matmulFlops)
    {
        public string Method => method; public int R => r; public int RHat => rHat;
        public nn.Module<Tensor, Tensor> Layer => layer; public Parameter[] Trainable => trainable;
        public double MatmulFlopsPerToken => matmulFlops;
        public List<double> Times { get; } = [];
    }

    static List<LayerRow> LayerCase(BenchSpec spec, int d, int k, int tokens, Device device, ScalarType dtype, TextWriter log)
    {
        manual_seed(spec.Seed);
        using var baseLinear = nn.Linear(k, d, hasBias: false, device: device, dtype: dtype);
        baseLinear.weight!.requires_grad = false;
        double baseFlops = 4.0 * d * k;
        var cases = new List<Case> { new("base", 0, 0, baseLinear, [], baseFlops) };
        int smallest = spec.Ranks.Min();
        foreach (int r in spec.Ranks.Distinct())
        {
            if (r > Math.Min(d, k)) continue;
            foreach (var (method, type, dora) in Methods(r == smallest))
            {
                AdaptedLinear layer;
                double flops;
                int side = 0;
                if (type is { } t)
                {
                    MoraLinear mora;
                    try { mora = new MoraLinear(baseLinear, r, t); }
                    catch (ArgumentException) { continue; }            // r̂ does not fit this small layer
                    using (no_grad()) mora.M.normal_(0, 0.02);          // a non-zero M, as after some training
                    side = mora.RHat;
                    using var probe = zeros(1, k, dtype: dtype, device: device);
                    using var c = mora.Operators.Compress(probe);
                    flops = baseFlops + 6.0 * side * c.numel();
                    layer = mora;
                }
                else
                {
                    layer = dora ? new DoraLinear(baseLinear, r, 2 * r) : new LoraLinear(baseLinear, r, 2 * r);
                    using (no_grad()) foreach (var (_, p) in layer.AdapterParameters()) if (p.dim() == 2) p.normal_(0, 0.02);
                    flops = baseFlops + 6.0 * (d + k) * r + (dora ? (2.0 * d * k * r + 3.0 * d * k) / tokens : 0);
                }
                cases.Add(new(method, r, side, layer, layer.AdapterParameters().Select(p => p.Parameter).ToArray(), flops));
            }
        }

        using var x = randn(tokens, k, dtype: dtype, device: device).requires_grad_(true);
        using var gy = randn(tokens, d, dtype: dtype, device: device);
        void Step(Case c)
        {
            using var scope = NewDisposeScope();
            var y = c.Layer.forward(x);
            var grads = torch.autograd.grad([y], [x, .. c.Trainable], [gy]);
            foreach (var g in grads) g.Dispose();
            if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
        }
        foreach (var c in cases) Step(c);                                   // warm-up (and operator tables built)
        var order = new Random(spec.Seed);
        var clock = Stopwatch.StartNew();
        for (int rep = 0; rep < spec.Repeats; rep++)
        {
            var shuffled = cases.ToArray();
            order.Shuffle(shuffled);
            foreach (var c in shuffled)
            {
                var sw = Stopwatch.StartNew();
                Step(c);
                c.Times.Add(sw.Elapsed.TotalMilliseconds);
            }
        }
        // Peak memory of one forward + backward above the resident set before it (Linux, CPU: /proc's high-water mark).
        var peak = cases.ToDictionary(c => c, c => PeakExtraMiB(() => Step(c), device));
        log.WriteLine($"  layer {d}×{k}, {tokens} tokens: {cases.Count} methods × {spec.Repeats} in {clock.Elapsed.TotalSeconds:F1} s");

        double baseMs = Median(cases[0].Times);
        var rows = new List<LayerRow>();
        foreach (var c in cases)
        {
            double ms = Median(c.Times);
            var lora = cases.FirstOrDefault(l => l.Method == "lora" && l.R == c.R);
            double loraMs = lora is null ? double.NaN : Median(lora.Times);
            long parameters = c.Trainable.Sum(p => p.numel());
            rows.Add(new LayerRow(d, k, tokens, c.Method, c.R, c.RHat, parameters, ms, Percentile(c.Times, 0.25), Percentile(c.Times, 0.75),
                ms / baseMs, c.Method == "base" ? double.NaN : ms / loraMs, c.MatmulFlopsPerToken,
                c.MatmulFlopsPerToken / baseFlops, lora is null || c.Method == "base" ? double.NaN : c.MatmulFlopsPerToken / lora.MatmulFlopsPerToken,
                peak[c]));
        }
        foreach (var c in cases.Skip(1)) foreach (var p in c.Trainable) p.Dispose();
        return rows;
    }

    /// <summary>Resident memory above the level before <paramref name="work"/>, at its peak (VmHWM after resetting it with
    /// /proc/self/clear_refs); NaN where that is not available (not Linux, or a GPU, whose memory this does not see).</summary>
    public static double PeakExtraMiB(Action work, Device device)
    {
        if (!OperatingSystem.IsLinux() || device.type != DeviceType.CPU) { work(); return double.NaN; }
        GC.Collect(); GC.WaitForPendingFinalizers();
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { work(); return double.NaN; }
        long before = ProcStatusKiB("VmRSS");
        work();
        long peak = ProcStatusKiB("VmHWM");
        return Math.Max(0, peak - before) / 1024.0;
    }

    static long ProcStatusKiB(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        return 0;
    }

    // ---------------------------------------------------------------- ΔW and merge

    static List<MergeRow> MergeCase(BenchSpec spec, int d, int k, Device device, ScalarType dtype, List<LayerRow> layers, TextWriter log)
    {
        int r = spec.Ranks.Min();
        var rows = new List<MergeRow>();
        manual_seed(spec.Seed);
        using var w = randn(d, k, dtype: dtype, device: device);
        using var _ = no_grad();
        var clock = Stopwatch.StartNew();
        void Sync() { if (device.type == DeviceType.CUDA) torch.cuda.synchronize(); }
        foreach (var type in Enum.GetValues<MoraType>())
        {
            CompressDecompress op;
            try { op = CompressDecompress.ForLoraRank(d, k, r, type); }
            catch (ArgumentException) { continue; }
            using var m = randn(op.RHat, op.RHat, dtype: dtype, device: device) * 0.02;
            using var reference = spec.ReferenceMerge && ReferenceMerge.Runs(k, op.RHat, type) ? new ReferenceMerge(d, k, op.RHat, type) : null;
            var materialise = new List<double>();
            var merge = new List<double>();
            var refDelta = new List<double>();
            var refMerge = new List<double>();
            // The kit and the reference take turns; the first round builds index tables (kit) and RoPE tables (reference)
            // and is not timed, as both keep them afterwards.
            for (int i = 0; i <= spec.Repeats; i++)
            {
                var sw = Stopwatch.StartNew();
                using (var dw = op.DeltaWeight(m)) Sync();
                if (i > 0) materialise.Add(sw.Elapsed.TotalMilliseconds);
                sw.Restart();
                op.AddDeltaWeightTo(w, m);
                Sync();
                if (i > 0) merge.Add(sw.Elapsed.TotalMilliseconds);
                op.AddDeltaWeightTo(w, m, -1.0);
                if (reference is null) continue;
                sw.Restart();
                using (var dw = reference.DeltaWeight(m)) Sync();
                if (i > 0) refDelta.Add(sw.Elapsed.TotalMilliseconds);
                sw.Restart();
                reference.Merge(w, m);
                Sync();
                if (i > 0) refMerge.Add(sw.Elapsed.TotalMilliseconds);
                op.AddDeltaWeightTo(w, m, -1.0);
            }
            // The in-place merge must equal adding the written-out ΔW.
            double mergeError;
            using (var copy = w.clone())
            {
                op.AddDeltaWeightTo(copy, m);
                using var dw = op.DeltaWeight(m);
                using var expected = w + dw;
                using var err = (copy - expected).abs().max();
                mergeError = err.to(ScalarType.Float64).item<double>();
            }
            double diff = double.NaN;
            if (reference is not null)
            {
                using var kit = op.DeltaWeight(m);
                using var refDw = reference.DeltaWeight(m);
                using var delta = (kit - refDw).abs().max();
                diff = delta.to(ScalarType.Float64).item<double>();
            }
            double mergeMs = Median(merge), materialiseMs = Median(materialise), refDeltaMs = Median(refDelta), refMergeMs = Median(refMerge);
            string method = $"mora-{MoraTypes.Name(type)}";
            var layer = layers.Where(l => l.D == d && l.K == k && l.Method == method && l.R == r).OrderByDescending(l => l.Tokens).FirstOrDefault();
            double stepMs = layer?.MedianMs ?? double.NaN;
            rows.Add(new MergeRow(d, k, method, r, op.RHat, materialiseMs, mergeMs, refDeltaMs, refMergeMs, refMergeMs / mergeMs, diff, mergeError, stepMs, 100 * mergeMs / stepMs));
            log.WriteLine($"  merge {d}×{k} {method}: ΔW {materialiseMs:F2} ms, merge {mergeMs:F2} ms, " +
                          (reference is null ? "no reference merge" : $"reference merge {refMergeMs:F1} ms") + $" ({clock.Elapsed.TotalSeconds:F0} s so far)");
        }
        return rows;
    }

    // ---------------------------------------------------------------- training step

    static List<TrainRow> TrainCase(BenchSpec spec, Device device, ScalarType dtype, TextWriter log)
    {
        var config = LlamaConfig.Preset(spec.TrainModel, 128);
        var task = new MemorizationTask(UuidPairs.Generate(Math.Max(64, spec.TrainBatch * 2), seed: spec.Seed));
        int r = spec.Ranks.Min();
        var methods = new List<(string Name, AdapterConfig? Adapter)> { ("lora", AdapterConfig.Lora(r)), ("dora", AdapterConfig.Dora(r)) };
        foreach (var t in Enum.GetValues<MoraType>()) methods.Add(($"mora-{MoraTypes.Name(t)}", AdapterConfig.Mora(r, t)));
        methods.Add(("full", null));
        var samples = methods.ToDictionary(m => m.Name, _ => new List<(double Ms, double Tps)>());
        var peaks = methods.ToDictionary(m => m.Name, _ => new List<double>());
        var trainable = new Dictionary<string, long>();
        for (int pass = 0; pass < 2; pass++)                 // two passes in opposite orders, so drift hits every method alike
        {
            var order = pass == 0 ? methods : Enumerable.Reverse(methods).ToList();
            foreach (var (name, adapter) in order)
            {
                using var model = task.NewModel(config, seed: spec.Seed);
                if (adapter is not null) Peft.Inject(model, adapter);
                var train = new TrainConfig { Steps = spec.TrainSteps, BatchSize = spec.TrainBatch, LearningRate = 1e-3, ShowProgress = false, Device = spec.Device, DType = spec.DType, Seed = spec.Seed };
                TrainResult? result = null;
                double peak = PeakExtraMiB(() => result = new Trainer(model, train, task.Train).Run(), device);
                trainable[name] = result!.TrainableParameters;
                var rows = result.Log.Rows;
                for (int i = 3; i < rows.Count; i++)
                    samples[name].Add((1000.0 * (rows[i].Tokens - rows[i - 1].Tokens) / rows[i].TokensPerSecond, rows[i].TokensPerSecond));
                peaks[name].Add(peak);
            }
            log.WriteLine($"  training steps, pass {pass + 1} of 2 done");
        }
        // Step time and throughput from the same samples: the median step time, and the tokens of a step over it (two medians
        // taken apart, over a handful of samples, contradicted each other).
        return methods.Select(m =>
        {
            var s = samples[m.Name];
            double ms = Median(s.Select(x => x.Ms).ToList()), tokens = Median(s.Select(x => x.Ms * x.Tps / 1000).ToList());
            return new TrainRow(m.Name, m.Adapter is null ? 0 : r, trainable[m.Name], ms, 1000 * tokens / ms, peaks[m.Name].Count == 0 ? double.NaN : peaks[m.Name].Max());
        }).ToList();
    }

    // ---------------------------------------------------------------- output

    public static double Median(IReadOnlyList<double> xs) => Percentile(xs, 0.5);

    public static double Percentile(IReadOnlyList<double> xs, double q)
    {
        if (xs.Count == 0) return double.NaN;
        var s = xs.Order().ToArray();
        double pos = q * (s.Length - 1);
        int lo = (int)Math.Floor(pos), hi = (int)Math.Ceiling(pos);
        return s[lo] + (s[hi] - s[lo]) * (pos - lo);
    }

    static string Num(double v, string format = "G6") => double.IsNaN(v) ? "" : v.ToString(format, CultureInfo.InvariantCulture);

    public static void WriteCsv<T>(string path, IEnumerable<T> rows)
    {
        var props = typeof(T).GetProperties();
        var sb = new StringBuilder();
        sb.AppendLine(string.Join(",", props.Select(p => Snake(p.Name))));
        foreach (var row in rows)
            sb.AppendLine(string.Join(",", props.Select(p => p.GetValue(row) switch
            {
                double v => Num(v),
                IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
                var o => o?.ToString() ?? "",
            })));
        AtomicFile.WriteText(path, sb.ToString());
    }

    static string Snake(string name) => string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));

    /// <summary>The report: machine, achieved rate of the base matmul, the layer table with ratios and floors, the targets
    /// checked, the merge table and the training-step table.</summary>
    public static string Report(BenchResult result)
    {
        var spec = result.Spec;
        var sb = new StringBuilder();
        sb.AppendLine($"# MoRA cost benchmark ({spec.Preset} preset)");
        sb.AppendLine();
        sb.AppendLine($"Machine: {CpuName()}, {Environment.ProcessorCount} logical CPUs, torch threads {torch.get_num_threads()}; device {spec.Device}, dtype {spec.DType}; " +
                      $"TorchSharp {typeof(torch).Assembly.GetName().Version}; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC.");
        if (!double.IsNaN(result.WallSeconds)) sb.AppendLine($"Wall time of the whole benchmark: {result.WallSeconds:F0} s.");
        sb.AppendLine($"Medians of {spec.Repeats} interleaved repetitions after a warm-up; ratios come from the same run. Forward + backward = the output, the input's gradient and the adapter's gradients (`torch.autograd.grad`).");
        sb.AppendLine();
        sb.AppendLine("## Achieved rate of the frozen base layer (forward + input gradient, 4·d·k FLOPs a token)");
        sb.AppendLine();
        sb.AppendLine("| shape d×k | tokens | GFLOP/s |");
        sb.AppendLine("|---|---:|---:|");
        foreach (var (key, g) in result.BaseGflops) { var p = key.Split('@'); sb.AppendLine($"| {p[0]} | {p[1]} | {g:F1} |"); }
        sb.AppendLine();
        sb.AppendLine("## One adapted layer, forward + backward");
        sb.AppendLine();
        sb.AppendLine("`× base`, `× LoRA`: measured median ratios (to the frozen layer; to LoRA at the same r, i.e. the same parameters). `floor`: the ratio the counted FLOPs alone would give. `IQR`: the 25–75 % spread of the times, in % of the median. `peak MiB`: resident memory above the level before one forward + backward (CPU only).");
        sb.AppendLine();
        sb.AppendLine("| shape | tokens | method | r | r̂ | params | median ms | IQR % | × base | floor × base | × LoRA | floor × LoRA | peak MiB |");
        sb.AppendLine("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var l in result.Layers)
            sb.AppendLine($"| {l.D}×{l.K} | {l.Tokens} | {l.Method} | {(l.R == 0 ? "" : l.R)} | {(l.RHat == 0 ? "" : l.RHat)} | {l.Parameters:N0} | {l.MedianMs:F2} | {100 * (l.P75Ms - l.P25Ms) / l.MedianMs:F0} | " +
                          $"{l.RatioToBase:F3} | {l.FloorRatioToBase:F3} | {Num(l.RatioToLora, "F3")} | {Num(l.FloorRatioToLora, "F3")} | {Num(l.PeakExtraMiB, "F0")} |");
        sb.AppendLine();
        sb.AppendLine("## Targets");
        sb.AppendLine();
        void Target(string what, LayerRow? row, double limit)
        {
            if (row is null) { sb.AppendLine($"- {what}: not measured in this preset."); return; }
            string verdict = row.RatioToLora <= limit ? "met" : $"missed by {100 * (row.RatioToLora / limit - 1):F1} %";
            sb.AppendLine($"- {what}: measured {row.RatioToLora:F3}× LoRA (floor {row.FloorRatioToLora:F3}×), target ≤ {limit:F2}× — {verdict}.");
        }
        Target("MoRA rotation (type 6), r = 8, 4096×4096, 2048 tokens", result.Layers.FirstOrDefault(l => l is { D: 4096, K: 4096, Tokens: 2048, Method: "mora-rotation", R: 8 }), 1.10);
        Target("MoRA sharing (type 1), r = 256, 4096×4096, 2048 tokens", result.Layers.FirstOrDefault(l => l is { D: 4096, K: 4096, Tokens: 2048, Method: "mora-sharing", R: 256 }), 1.05);
        if (result.Merges.Count > 0)
        {
            var worst = result.Merges.Where(m => !double.IsNaN(m.PercentOfLayerStep)).OrderByDescending(m => m.PercentOfLayerStep).FirstOrDefault();
            if (worst is not null)
                sb.AppendLine($"- Merging ΔW into W under 1 % of a training step of the same layer: worst {worst.Method} at {worst.D}×{worst.K}, {worst.PercentOfLayerStep:F2} % — {(worst.PercentOfLayerStep < 1 ? "met" : "missed")}; " +
                              $"met for {result.Merges.Count(m => m.PercentOfLayerStep < 1)} of {result.Merges.Count(m => !double.IsNaN(m.PercentOfLayerStep))} design × shape pairs.");
        }
        sb.AppendLine();
        if (result.Merges.Count > 0)
        {
            sb.AppendLine($"## ΔW written out and merged into W (r = {result.Merges[0].R})");
            sb.AppendLine();
            sb.AppendLine("`ΔW ms`: `CompressDecompress.DeltaWeight(M)`, ΔW written out. `merge ms`: `AddDeltaWeightTo(W, M)`, W += ΔW in place (what `MoraLinear.Merge` does: diagonal blocks only for decoupling/rotation, a broadcast add for sharing, when r̂ divides the shape; otherwise ΔW written out and added). " +
                          "`reference ΔW ms`, `reference merge ms`: the reference merge algorithm (kongds/MoRA get_delta_weight, then W += ΔW; `ReferenceMerge`): a loop over the k + pad input positions for types 1 and 4, `repeat_interleave` for types 2 and 3, a loop over the r̂-blocks for type 6; the reference has no truncation or decoupling. All medians of the same interleaved repetitions after an untimed first round. " +
                          "`× kit merge`: reference merge time over the kit's. `max abs ΔW diff`: the kit's ΔW against the reference's. `merge err`: in-place merge against W + ΔW. `% of step`: the kit's merge time against the layer's forward + backward at the largest token count above.");
            sb.AppendLine();
            sb.AppendLine("| shape | method | r̂ | ΔW ms | merge ms | reference ΔW ms | reference merge ms | × kit merge | max abs ΔW diff | merge err | % of step |");
            sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var m in result.Merges)
                sb.AppendLine($"| {m.D}×{m.K} | {m.Method} | {m.RHat} | {m.MaterialiseMs:F2} | {m.MergeMs:F2} | {Num(m.ReferenceDeltaMs, "F2")} | {Num(m.ReferenceMergeMs, "F2")} | {(double.IsNaN(m.SpeedUp) ? "no reference type" : Num(m.SpeedUp, "F1") + "×")} | {Num(m.MaxAbsDiff, "E1")} | {Num(m.MergeErrorVsDeltaWeight, "E1")} | {Num(m.PercentOfLayerStep, "F2")} |");
            sb.AppendLine();
        }
        if (result.Training.Count > 0)
        {
            var lora = result.Training.First(t => t.Method == "lora");
            sb.AppendLine($"## A whole training step of the {spec.TrainModel} model (batch {spec.TrainBatch}, {spec.TrainSteps} steps a run, 3 untimed, two passes)");
            sb.AppendLine();
            sb.AppendLine("| method | r | trainable | step ms | tokens/s | × LoRA time | peak RSS above start MiB |");
            sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
            foreach (var t in result.Training)
                sb.AppendLine($"| {t.Method} | {(t.R == 0 ? "" : t.R)} | {t.TrainableParameters:N0} | {t.StepMs:F1} | {t.TokensPerSecond:F0} | {t.StepMs / lora.StepMs:F3} | {Num(t.PeakRssMiB, "F0")} |");
            sb.AppendLine();
        }
        return sb.ToString();
    }

    /// <summary>The processor's model name (/proc/cpuinfo), or the process architecture where there is none.</summary>
    public static string CpuName()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal)) return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
    }
}

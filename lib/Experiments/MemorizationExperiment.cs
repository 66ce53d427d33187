using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.Figures;
using Mora.IO;
using Mora.Model;
using Mora.Training;
using TorchSharp;

namespace Mora.Experiments;

/// <summary>Settings of the memorisation reproduction (paper §4.1, Table 2 / Figure 4): pretrain a base on other UUID pairs so it
/// knows the format, then fine-tune it with each method and rank budget on <see cref="Pairs"/> new pairs.</summary>
public sealed record MemorizationSpec : ExperimentSpec
{
    public MemorizationSpec()
    {
        PretrainSteps = 150; Steps = 200; AdapterLr = 1e-2; FullLr = 3e-3; PretrainLr = 3e-3; EvalPoints = 4;
    }

    public int Pairs { get; init; } = 32;
    public int PretrainPairs { get; init; } = 512;

    /// <summary>smoke (tests, ~15 s), smoke-tuned (the tuning path at test size), default (the main job, ~1–2 min),
    /// cpu-hour (the first committed results: one untuned rate, 2 seeds), cpu-regimes (the paper's two rank regimes on the
    /// medium model, hidden 256: r = 1 is r/d = 0.4 %, the low regime (the paper's r = 8 on a 4096-wide model is 0.2 %);
    /// r = 16 is 6 %, as its r = 256;
    /// MoRA with the paper's design for each: rotation at the low rank, sharing at the high one; each method's rate tuned;
    /// one pretrained base, 5 fine-tuning seeds; about 1.5 h on one core), cpu-low-regime (the low regime of cpu-regimes, r = 1,
    /// trained three times as long, 600 steps, to see how far LoRA and MoRA rotation go; the same base, rates re-tuned
    /// on a 150-step budget; about 1 h on one core beside other jobs).</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["smoke", "smoke-tuned", "default", "cpu-hour", "cpu-regimes", "cpu-low-regime"];

    public static MemorizationSpec FromPreset(string name) => name.ToLowerInvariant() switch
    {
        "smoke" => new() { Preset = "smoke", Pairs = 8, PretrainPairs = 256, PretrainSteps = 60, Steps = 40, Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], EvalPoints = 2 },
        "smoke-tuned" => new()
        {
            Preset = "smoke-tuned", Pairs = 8, PretrainPairs = 256, PretrainSteps = 60, Steps = 40, Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full],
            Seeds = [0, 1], EvalPoints = 2, AdapterLrGrid = [3e-3, 1e-2], FullLrGrid = [1e-3, 3e-3], TuneSteps = 20, TuneSeed = 100,
        },
        "default" => new(),
        "cpu-hour" => new()
        {
            Preset = "cpu-hour", Model = "small", Pairs = 64, PretrainPairs = 2048, PretrainSteps = 400, Steps = 400, BatchSize = 16,
            Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Sharing), MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], Ranks = [8], Seeds = [0, 1], EvalPoints = 4,
            AdapterLr = 5e-3, FullLr = 1e-3, PretrainLr = 2e-3,
        },
        "cpu-regimes" => new()
        {
            Preset = "cpu-regimes", Model = "medium", Pairs = 32, PretrainPairs = 2048, BatchSize = 16,
            Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Sharing), MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], Ranks = [1, 16],
            MethodRanks = new Dictionary<string, IReadOnlyList<int>> { ["mora-rotation"] = [1], ["mora-sharing"] = [16] },
            Seeds = [0, 1, 2, 3, 4], BaseSeed = 0, EvalPoints = 5, PretrainLr = 2e-3, Steps = 200, PretrainSteps = 250,
            AdapterLrGrid = LearningRateSweep.LogGrid(1e-3, 4), FullLrGrid = LearningRateSweep.LogGrid(1e-4, 4), TuneSteps = 60, TuneSeed = 100,
            AdapterLr = 5e-3, FullLr = 1e-3,
        },
        "cpu-low-regime" => FromPreset("cpu-regimes") with
        {
            Preset = "cpu-low-regime", Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation)], Ranks = [1], MethodRanks = new Dictionary<string, IReadOnlyList<int>>(),
            Steps = 600, EvalPoints = 6, TuneSteps = 150, FullLrGrid = [],
        },
        _ => throw new ArgumentException($"unknown preset '{name}'; use {string.Join(", ", PresetNames)}", nameof(Preset)),
    };

    /// <summary>Checks every setting; throws <see cref="ArgumentException"/> naming the property.</summary>
    public MemorizationSpec Validate()
    {
        Positive(Pairs, nameof(Pairs)); Positive(PretrainPairs, nameof(PretrainPairs));
        ValidateShared();
        return this;
    }
}

/// <summary>One fine-tuning run's result (one row of <c>memorization.csv</c>); <c>LearningRate</c> is the rate it trained at
/// (0 in results written before rates were recorded).</summary>
public sealed record MemorizationRun(string Method, int Rank, int Seed, long TrainableParameters, IReadOnlyDictionary<int, double> CharAccuracyAt,
    double ExactMatch, double FinalLoss, double WallSeconds, double LearningRate = 0);

/// <summary>The character-accuracy floor of one seed: the pretrained base's score on the new pairs before fine-tuning (it
/// knows the format, not the values), beside the chance level of a model that writes the format and guesses every hex digit.</summary>
public sealed record MemorizationFloor(int Seed, double BaseCharAccuracy)
{
    /// <summary>Chance character accuracy of a perfect-format guesser: of a UUID's 36 characters, 4 dashes and the version
    /// digit are fixed, the variant digit is one of 4, the other 30 hex digits one of 16: (5 + 1/4 + 30/16) / 36 = 19.8 %.</summary>
    public static double Chance => (5 + 0.25 + 30.0 / 16) / 36;
}

/// <summary>
/// The memorisation reproduction as one resumable job. Layout under the output folder: <c>base-seed{s}/</c> (pretraining run,
/// then <c>model/</c> with the base weights), <c>runs/{method}-r{r}-seed{s}/</c> (each fine-tuning run: log, manifest,
/// checkpoints, <c>result.json</c> when finished), and <c>memorization.csv</c> / <c>memorization-summary.csv</c> (the table).
/// Started again with the same settings it skips finished runs and resumes an interrupted one from its last checkpoint,
/// so the final table is the one an uninterrupted job gives.
/// </summary>
public static class MemorizationExperiment
{
    public const string TableFile = "memorization.csv", SummaryFile = "memorization-summary.csv", PairedFile = "memorization-paired.csv",
        FloorFile = "memorization-floor.csv", SpecFile = ExperimentFolder.SpecFile;

    /// <summary>Every file the job writes for its report (tables, the sweep when tuned, the mean-curve figure).</summary>
    public static string[] ReportFiles(MemorizationSpec spec) =>
        [SpecFile, TableFile, SummaryFile, PairedFile, FloorFile, .. spec.Tunes ? new[] { LearningRateSweep.File } : [], MeanFigure + ".html", MeanFigure + ".png"];

    /// <summary>The figure of mean character accuracy by step per method and rank, with the floor drawn.</summary>
    public const string MeanFigure = "memorization-mean-char_acc";

    public static IReadOnlyList<MemorizationRun> Run(MemorizationSpec spec, string outDir, TextWriter? output = null, CancellationToken cancel = default)
    {
        spec.Validate();
        output ??= TextWriter.Null;
        outDir = Path.GetFullPath(outDir);
        Directory.CreateDirectory(outDir);
        ExperimentFolder.Claim(outDir, spec, "memorisation");
        var rates = TuneRates(spec, outDir, output, cancel);
        var results = new List<MemorizationRun>();
        var floors = new List<MemorizationFloor>();
        foreach (int seed in spec.Seeds)
        {
            var task = new MemorizationTask(UuidPairs.Generate(spec.Pairs, seed: 1000 + seed));
            string baseDir = PretrainBase(spec, outDir, spec.BaseSeed ?? seed, output, cancel);
            floors.Add(Floor(baseDir, task, seed));
            foreach (var (method, r) in spec.Configurations())
                results.Add(FineTune(spec, Path.Combine(outDir, "runs"), method.RunName(r, seed), task, baseDir, method, r, seed, rates[(method.Name, r)],
                    spec.Steps, spec.EvalSteps, output, cancel));
        }
        WriteTables(spec, outDir, results, floors);
        output.WriteLine();
        output.WriteLine(FormatTable(spec, results, outDir));
        output.WriteLine($"table: {ExperimentFolder.Show(Path.Combine(outDir, TableFile))} (per run), {ExperimentFolder.Show(Path.Combine(outDir, SummaryFile))} (mean and 95 % interval over seeds), {ExperimentFolder.Show(Path.Combine(outDir, PairedFile))} (MoRA − LoRA per seed)");
        return results;
    }

    /// <summary>The rate of each method and rank: tuned by <see cref="LearningRateSweep"/>'s rule on the tuning seed's own
    /// base and pairs (runs under <c>sweep/</c>, table <c>lr-sweep.csv</c>), or the fixed rate when no grid is given.</summary>
    static Dictionary<(string Method, int Rank), double> TuneRates(MemorizationSpec spec, string outDir, TextWriter output, CancellationToken cancel)
    {
        MemorizationTask? task = null;   // made on the first tuning run: a job with fixed rates pretrains no tuning base
        string? baseDir = null;
        int seed = spec.TuneSeed;
        return LearningRateSweep.TuneAll(spec, outDir, "the tuning seed's pairs", output, (method, r, lr, name) =>
        {
            task ??= new MemorizationTask(UuidPairs.Generate(spec.Pairs, seed: 1000 + seed));
            baseDir ??= PretrainBase(spec, outDir, spec.BaseSeed ?? seed, output, cancel);
            var run = FineTune(spec, Path.Combine(outDir, "sweep"), name, task, baseDir, method, r, seed, lr, spec.TuneSteps, [spec.TuneSteps], output, cancel, tuning: true);
            return (run.CharAccuracyAt[spec.TuneSteps], run.FinalLoss);
        });
    }

    /// <summary>The base's character accuracy on this seed's pairs (written once in the base's folder).</summary>
    static MemorizationFloor Floor(string baseDir, MemorizationTask task, int seed)
    {
        string path = Path.Combine(Path.GetDirectoryName(baseDir)!, $"floor-seed{seed}.json");
        if (File.Exists(path)) return JsonSerializer.Deserialize<MemorizationFloor>(File.ReadAllText(path)) ?? throw new FormatException($"{path}: empty");
        using var model = ModelIO.Load(baseDir);
        var floor = new MemorizationFloor(seed, task.Evaluate(model)["char_acc"]);
        AtomicFile.WriteText(path, JsonSerializer.Serialize(floor));
        return floor;
    }

    static string PretrainBase(MemorizationSpec spec, string outDir, int seed, TextWriter output, CancellationToken cancel)
    {
        string dir = Path.Combine(outDir, $"base-seed{seed}");
        string modelDir = Path.Combine(dir, "model");
        if (File.Exists(Path.Combine(modelDir, ModelIO.WeightsFile)))
        {
            output.WriteLine($"base seed {seed}: reusing the pretrained base in {ExperimentFolder.Show(modelDir)}");
            return modelDir;
        }
        var pre = new MemorizationTask(UuidPairs.Generate(spec.PretrainPairs, seed: 2000 + seed));
        using var model = pre.NewModel(LlamaConfig.Preset(spec.Model, 128), seed);
        if (spec.PretrainSteps > 0)
        {
            output.WriteLine($"pretraining the {spec.Model} base (seed {seed}) on {spec.PretrainPairs} other pairs for {spec.PretrainSteps} steps");
            var config = new TrainConfig
            {
                Steps = spec.PretrainSteps, BatchSize = 32, LearningRate = spec.PretrainLr, WarmupSteps = Math.Min(50, spec.PretrainSteps / 10),
                Seed = seed, OutputDir = dir, CheckpointEvery = Math.Max(1, spec.PretrainSteps / 4), Device = spec.Device, LogEvery = 25,
            };
            new Trainer(model, config, pre.Train) { Progress = new ConsoleProgress($"base-seed{seed}") }.Run(cancel);
        }
        ModelIO.Save(model, modelDir);
        return modelDir;
    }

    static MemorizationRun FineTune(MemorizationSpec spec, string root, string name, MemorizationTask task, string baseDir, MethodSpec method, int r, int seed,
        double lr, int steps, IReadOnlyList<int> evalSteps, TextWriter output, CancellationToken cancel, bool tuning = false)
    {
        string dir = SafePath.Under(root, name, "run name");
        if (ExperimentFolder.ReadResult<MemorizationRun>(dir) is { } done)
        {
            ExperimentFolder.CheckReusedRate(dir, done.LearningRate, lr);
            output.WriteLine($"{name}: finished before, reusing its {ExperimentFolder.ResultFile} (delete {ExperimentFolder.Show(dir)} to run it again)");
            return done.LearningRate == 0 ? done with { LearningRate = lr } : done;   // written before rates were recorded
        }
        using var model = ModelIO.Load(baseDir);
        var adapter = method.Adapter(r);
        torch.manual_seed(seed);
        Peft.Inject(model, adapter);
        var config = new TrainConfig
        {
            Steps = steps, BatchSize = spec.BatchSize, LearningRate = lr,
            WarmupSteps = Math.Min(20, steps / 10), Seed = seed, OutputDir = dir, Device = spec.Device,
            EvalEvery = evalSteps[0], CheckpointEvery = Math.Max(1, steps / 4), LogEvery = 25,
        };
        output.WriteLine($"{name}: {Peft.CountParameters(model).Trainable:N0} trainable parameters, lr {config.LearningRate:G3}");
        var run = LearningRateSweep.TrainOrRecordDiverged(tuning, name, output, () =>
        {
            var result = new Trainer(model, config, task.Train, task.Evaluate, adapter) { Progress = new ConsoleProgress(name) }.Run(cancel);
            var at = result.Log.Rows.Where(x => x.Metrics.ContainsKey("char_acc")).ToDictionary(x => (int)x.Step, x => x.Metrics["char_acc"]);
            return new MemorizationRun(method.Name, method.Method == AdapterMethod.Full ? 0 : r, seed, result.TrainableParameters,
                evalSteps.ToDictionary(s => s, s => at.TryGetValue(s, out var v) ? v : double.NaN),
                result.FinalMetrics["exact_match"], result.Log.Rows[^1].Loss, result.WallSeconds, lr);
        }, () =>
        {
            var (metric, loss) = LearningRateSweep.Diverged;
            return new MemorizationRun(method.Name, method.Method == AdapterMethod.Full ? 0 : r, seed, Peft.CountParameters(model).Trainable,
                evalSteps.ToDictionary(s => s, _ => metric), 0, loss, 0, lr);
        });
        ExperimentFolder.WriteResult(dir, run);
        return run;
    }

    static string F(double v) => SeedReport.F(v);

    static void WriteTables(MemorizationSpec spec, string outDir, IReadOnlyList<MemorizationRun> runs, IReadOnlyList<MemorizationFloor> floors)
    {
        var steps = spec.EvalSteps;
        var sb = new StringBuilder("method,rank,seed,trainable_parameters,learning_rate," + string.Join(",", steps.Select(s => $"char_acc_step{s}")) + ",exact_match,final_loss\n");
        foreach (var r in runs)
            sb.Append($"{r.Method},{r.Rank},{r.Seed},{r.TrainableParameters},{LearningRateSweep.Lr(r.LearningRate)},{string.Join(",", steps.Select(s => F(r.CharAccuracyAt[s])))},{F(r.ExactMatch)},{F(r.FinalLoss)}\n");
        AtomicFile.WriteText(Path.Combine(outDir, TableFile), sb.ToString());

        var scores = Scores(spec, runs);
        AtomicFile.WriteText(Path.Combine(outDir, SummaryFile), SeedReport.SummaryCsv(scores));
        AtomicFile.WriteText(Path.Combine(outDir, PairedFile), SeedReport.PairedCsv(spec.Ranks, scores));

        var floor = new StringBuilder("seed,base_char_acc,chance_char_acc\n");
        foreach (var f in floors) floor.Append($"{f.Seed},{F(f.BaseCharAccuracy)},{F(MemorizationFloor.Chance)}\n");
        AtomicFile.WriteText(Path.Combine(outDir, FloorFile), floor.ToString());

        RunFigures.Save(MeanChart(spec, runs, floors), Path.Combine(outDir, MeanFigure));
    }

    /// <summary>The runs and floors of a finished job read back from its tables (<see cref="TableFile"/>, <see cref="FloorFile"/>
    /// in <paramref name="folder"/>), for example a committed result under figures/.</summary>
    public static (IReadOnlyList<MemorizationRun> Runs, IReadOnlyList<MemorizationFloor> Floors) ReadTables(string folder)
    {
        static double D(string s) => s.Length == 0 ? double.NaN : double.Parse(s, CultureInfo.InvariantCulture);
        var table = CsvTable.Read(Path.Combine(folder, TableFile));
        var steps = table.Header.Where(h => h.StartsWith("char_acc_step", StringComparison.Ordinal)).Select(h => int.Parse(h["char_acc_step".Length..], CultureInfo.InvariantCulture)).ToList();
        var runs = table.Rows.Select(r => new MemorizationRun(r["method"], int.Parse(r["rank"], CultureInfo.InvariantCulture), int.Parse(r["seed"], CultureInfo.InvariantCulture),
            long.Parse(r["trainable_parameters"], CultureInfo.InvariantCulture), steps.ToDictionary(s => s, s => D(r[$"char_acc_step{s}"])), D(r["exact_match"]), D(r["final_loss"]), 0,
            r.TryGetValue("learning_rate", out var lr) ? D(lr) : 0)).ToList();
        var floors = CsvTable.Read(Path.Combine(folder, FloorFile)).Rows
            .Select(r => new MemorizationFloor(int.Parse(r["seed"], CultureInfo.InvariantCulture), D(r["base_char_acc"]))).ToList();
        return (runs, floors);
    }

    /// <summary>The runs as <see cref="SeedReport"/> reads them: character accuracy at each step, then exact match.</summary>
    public static IReadOnlyList<RunScores> Scores(MemorizationSpec spec, IEnumerable<MemorizationRun> runs) =>
        runs.Select(r => new RunScores(r.Method, r.Rank, r.Seed, r.TrainableParameters, r.LearningRate,
            spec.EvalSteps.Select(s => ($"char_acc_step{s}", r.CharAccuracyAt[s])).Append(("exact_match", r.ExactMatch)).ToList())).ToList();

    /// <summary>Mean character accuracy by step per method and rank, starting from the base's score at step 0, with the two
    /// floors drawn flat: the base model's mean and chance with the format known.</summary>
    public static ChartFigure MeanChart(MemorizationSpec spec, IReadOnlyList<MemorizationRun> runs, IReadOnlyList<MemorizationFloor> floors)
    {
        double baseMean = floors.Average(f => f.BaseCharAccuracy);
        var x = new List<double> { 0 }.Concat(spec.EvalSteps.Select(s => (double)s)).ToList();
        var curves = Groups(runs).Select(g => new Curve(g.Key.Rank == 0 ? g.Key.Method : $"{g.Key.Method} r={g.Key.Rank}", x,
            new List<double> { baseMean }.Concat(spec.EvalSteps.Select(s => g.Average(r => r.CharAccuracyAt[s]))).ToList())).ToList();
        curves.Add(new Curve("floor: base model", [0, spec.Steps], [baseMean, baseMean]));
        curves.Add(new Curve("chance, format known", [0, spec.Steps], [MemorizationFloor.Chance, MemorizationFloor.Chance]));
        return RunFigures.LineChart(curves, $"Character accuracy on {spec.Pairs} UUID pairs, mean over {spec.Seeds.Count} seed(s) ({spec.Model} model)", "step", "char_acc");
    }

    /// <summary>Where each method's mean curve stands at the last step, one line per method and rank ("lora r=1: 46.5 % at
    /// step 200, still rising: +1.7 points over the last 40 steps"), by the stopping rule of <see cref="SeedReport.Trend"/>.</summary>
    public static IEnumerable<string> Trends(MemorizationSpec spec, IReadOnlyList<MemorizationRun> runs)
    {
        var at = spec.EvalSteps;
        if (at.Count < 2) throw new ArgumentException($"{nameof(spec.EvalPoints)}: a curve's trend needs two evaluations, the spec has {at.Count}", nameof(spec));
        foreach (var g in Groups(runs))
        {
            double end = g.Average(r => r.CharAccuracyAt[at[^1]]), before = g.Average(r => r.CharAccuracyAt[at[^2]]);
            yield return $"{g.Key.Method}{(g.Key.Rank == 0 ? "" : $" r={g.Key.Rank}")}: {100 * end:0.0} % at step {at[^1]}, {SeedReport.Trend(before, end, at[^1] - at[^2])}";
        }
    }

    static IEnumerable<IGrouping<(string Method, int Rank), MemorizationRun>> Groups(IEnumerable<MemorizationRun> runs) =>
        runs.GroupBy(r => (r.Method, r.Rank));

    /// <summary>The paper-style table: character-level accuracy (%) at fixed steps per method and rank with each method's
    /// learning rate, mean and 95 % interval over seeds; then the floor, the paired differences from LoRA at the last step,
    /// and the learning-rate rule. <paramref name="outDir"/> (the job's folder) supplies the floor and the sweep.</summary>
    public static string FormatTable(MemorizationSpec spec, IReadOnlyList<MemorizationRun> runs, string? outDir = null)
    {
        var steps = spec.EvalSteps;
        var sb = new StringBuilder();
        sb.AppendLine($"Character-level accuracy (%) on {spec.Pairs} UUID pairs by training step ({spec.Model} model, seeds {string.Join(",", spec.Seeds)}{(spec.Seeds.Count > 1 ? "; mean [95 % interval] over seeds" : "; one seed, so no interval")})");
        sb.Append($"{"method",-16} {"r",3} {"params",10} {"lr",8}");
        foreach (var s in steps) sb.Append($" {"step " + s,19}");
        sb.AppendLine($" {"exact match",19}");
        foreach (var g in Groups(runs))
        {
            var list = g.ToList();
            sb.Append($"{g.Key.Method,-16} {(g.Key.Rank == 0 ? "-" : g.Key.Rank.ToString()),3} {list[0].TrainableParameters,10:N0} {LearningRateSweep.Lr(list[0].LearningRate),8}");
            foreach (var s in steps) sb.Append($" {SeedStatistics.Mean95(list.Select(x => x.CharAccuracyAt[s])).Format(100),19}");
            sb.AppendLine($" {SeedStatistics.Mean95(list.Select(x => x.ExactMatch)).Format(100),19}");
        }
        if (outDir is not null && File.Exists(Path.Combine(outDir, FloorFile)))
        {
            var bases = File.ReadAllLines(Path.Combine(outDir, FloorFile)).Skip(1).Select(l => double.Parse(l.Split(',')[1], CultureInfo.InvariantCulture)).ToList();
            sb.AppendLine($"Floor: the pretrained base scores {SeedStatistics.Mean95(bases).Format(100)} % before fine-tuning; chance with the format known is {100 * MemorizationFloor.Chance:0.0} %.");
        }
        if (spec.Seeds.Count > 1)
            foreach (var line in SeedReport.PairedLines(spec.Ranks, Scores(spec, runs), $"char_acc_step{steps[^1]}", $"step {steps[^1]}")) sb.AppendLine(line);
        if (spec.Tunes) sb.AppendLine("Rates: " + LearningRateSweep.Rule(spec.AdapterLrGrid.Count > 0 ? spec.AdapterLrGrid : spec.FullLrGrid, spec.TuneSteps, spec.TuneSeed, "character accuracy")
            + (spec.FullLrGrid.Count > 0 && spec.AdapterLrGrid.Count > 0 ? $"; full fine-tuning over {{{string.Join(", ", spec.FullLrGrid.Select(LearningRateSweep.Lr))}}}" : "")
            + (outDir is not null && File.Exists(Path.Combine(outDir, LearningRateSweep.File)) && File.ReadAllLines(Path.Combine(outDir, LearningRateSweep.File)).Skip(1).Any(l => l.EndsWith(",1,1", StringComparison.Ordinal))
                ? ". A chosen rate is still at an end of its extended grid (lr-sweep.csv, at_edge)." : "."));
        return sb.ToString().TrimEnd();
    }
}

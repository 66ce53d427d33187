using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.Data;
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

    /// <summary>smoke (tests, ~15 s), default (the main job, ~1–2 min), cpu-hour (the committed results, under an hour a seed on 2 cores).</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["smoke", "default", "cpu-hour"];

    public static MemorizationSpec FromPreset(string name) => name.ToLowerInvariant() switch
    {
        "smoke" => new() { Preset = "smoke", Pairs = 8, PretrainPairs = 256, PretrainSteps = 60, Steps = 40, Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], EvalPoints = 2 },
        "default" => new(),
        "cpu-hour" => new()
        {
            Preset = "cpu-hour", Model = "small", Pairs = 64, PretrainPairs = 2048, PretrainSteps = 400, Steps = 400, BatchSize = 16,
            Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Sharing), MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], Ranks = [8], Seeds = [0, 1], EvalPoints = 4,
            AdapterLr = 5e-3, FullLr = 1e-3, PretrainLr = 2e-3,
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

/// <summary>One fine-tuning run's result (one row of <c>memorization.csv</c>).</summary>
public sealed record MemorizationRun(string Method, int Rank, int Seed, long TrainableParameters, IReadOnlyDictionary<int, double> CharAccuracyAt,
    double ExactMatch, double FinalLoss, double WallSeconds);

/// <summary>
/// The memorisation reproduction as one resumable job. Layout under the output folder: <c>base-seed{s}/</c> (pretraining run,
/// then <c>model/</c> with the base weights), <c>runs/{method}-r{r}-seed{s}/</c> (each fine-tuning run: log, manifest,
/// checkpoints, <c>result.json</c> when finished), and <c>memorization.csv</c> / <c>memorization-summary.csv</c> (the table).
/// Started again with the same settings it skips finished runs and resumes an interrupted one from its last checkpoint,
/// so the final table is the one an uninterrupted job gives.
/// </summary>
public static class MemorizationExperiment
{
    public const string TableFile = "memorization.csv", SummaryFile = "memorization-summary.csv", SpecFile = ExperimentFolder.SpecFile;

    public static IReadOnlyList<MemorizationRun> Run(MemorizationSpec spec, string outDir, TextWriter? output = null, CancellationToken cancel = default)
    {
        spec.Validate();
        output ??= TextWriter.Null;
        outDir = Path.GetFullPath(outDir);
        Directory.CreateDirectory(outDir);
        ExperimentFolder.Claim(outDir, spec, "memorisation");
        var results = new List<MemorizationRun>();
        foreach (int seed in spec.Seeds)
        {
            var task = new MemorizationTask(UuidPairs.Generate(spec.Pairs, seed: 1000 + seed));
            string baseDir = PretrainBase(spec, outDir, seed, output, cancel);
            foreach (var method in spec.Methods)
                foreach (int r in method.Method == AdapterMethod.Full ? [spec.Ranks[0]] : spec.Ranks)
                    results.Add(FineTune(spec, outDir, task, baseDir, method, r, seed, output, cancel));
        }
        WriteTables(spec, outDir, results);
        output.WriteLine();
        output.WriteLine(FormatTable(spec, results));
        output.WriteLine($"table: {ExperimentFolder.Show(Path.Combine(outDir, TableFile))} (per run), {ExperimentFolder.Show(Path.Combine(outDir, SummaryFile))} (mean and spread over seeds)");
        return results;
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

    static MemorizationRun FineTune(MemorizationSpec spec, string outDir, MemorizationTask task, string baseDir, MethodSpec method, int r, int seed,
        TextWriter output, CancellationToken cancel)
    {
        string name = method.RunName(r, seed);
        string dir = SafePath.Under(Path.Combine(outDir, "runs"), name, "run name");
        if (ExperimentFolder.ReadResult<MemorizationRun>(dir) is { } done)
        {
            output.WriteLine($"{name}: finished before, reusing its {ExperimentFolder.ResultFile} (delete {ExperimentFolder.Show(dir)} to run it again)");
            return done;
        }
        using var model = ModelIO.Load(baseDir);
        var adapter = method.Adapter(r);
        torch.manual_seed(seed);
        Peft.Inject(model, adapter);
        var evalSteps = spec.EvalSteps;
        var config = new TrainConfig
        {
            Steps = spec.Steps, BatchSize = spec.BatchSize, LearningRate = method.Method == AdapterMethod.Full ? spec.FullLr : spec.AdapterLr,
            WarmupSteps = Math.Min(20, spec.Steps / 10), Seed = seed, OutputDir = dir, Device = spec.Device,
            EvalEvery = evalSteps[0], CheckpointEvery = Math.Max(1, spec.Steps / 4), LogEvery = 25,
        };
        output.WriteLine($"{name}: {Peft.CountParameters(model).Trainable:N0} trainable parameters, lr {config.LearningRate:G3}");
        var result = new Trainer(model, config, task.Train, task.Evaluate, adapter) { Progress = new ConsoleProgress(name) }.Run(cancel);
        var at = result.Log.Rows.Where(x => x.Metrics.ContainsKey("char_acc")).ToDictionary(x => (int)x.Step, x => x.Metrics["char_acc"]);
        var run = new MemorizationRun(method.Name, method.Method == AdapterMethod.Full ? 0 : r, seed, result.TrainableParameters,
            evalSteps.ToDictionary(s => s, s => at.TryGetValue(s, out var v) ? v : double.NaN),
            result.FinalMetrics["exact_match"], result.Log.Rows[^1].Loss, result.WallSeconds);
        ExperimentFolder.WriteResult(dir, run);
        return run;
    }

    static string F(double v) => double.IsNaN(v) ? "" : v.ToString("0.0000", CultureInfo.InvariantCulture);

    static void WriteTables(MemorizationSpec spec, string outDir, IReadOnlyList<MemorizationRun> runs)
    {
        var steps = spec.EvalSteps;
        var sb = new StringBuilder("method,rank,seed,trainable_parameters," + string.Join(",", steps.Select(s => $"char_acc_step{s}")) + ",exact_match,final_loss\n");
        foreach (var r in runs)
            sb.Append($"{r.Method},{r.Rank},{r.Seed},{r.TrainableParameters},{string.Join(",", steps.Select(s => F(r.CharAccuracyAt[s])))},{F(r.ExactMatch)},{F(r.FinalLoss)}\n");
        AtomicFile.WriteText(Path.Combine(outDir, TableFile), sb.ToString());

        var summary = new StringBuilder("method,rank,seeds,trainable_parameters," + string.Join(",", steps.Select(s => $"char_acc_step{s}_mean,char_acc_step{s}_sd")) + ",exact_match_mean,exact_match_sd\n");
        foreach (var g in Groups(runs))
        {
            var list = g.ToList();
            summary.Append($"{g.Key.Method},{g.Key.Rank},{list.Count},{list[0].TrainableParameters}");
            foreach (var s in steps) { var (m, sd) = ExperimentFolder.MeanSd(list.Select(x => x.CharAccuracyAt[s])); summary.Append($",{F(m)},{F(sd)}"); }
            var (em, esd) = ExperimentFolder.MeanSd(list.Select(x => x.ExactMatch));
            summary.Append($",{F(em)},{F(esd)}\n");
        }
        AtomicFile.WriteText(Path.Combine(outDir, SummaryFile), summary.ToString());
    }

    static IEnumerable<IGrouping<(string Method, int Rank), MemorizationRun>> Groups(IEnumerable<MemorizationRun> runs) =>
        runs.GroupBy(r => (r.Method, r.Rank));

    /// <summary>The paper-style table: character-level accuracy (%) at fixed steps per method, mean ± sd over seeds.</summary>
    public static string FormatTable(MemorizationSpec spec, IReadOnlyList<MemorizationRun> runs)
    {
        var steps = spec.EvalSteps;
        var sb = new StringBuilder();
        sb.AppendLine($"Character-level accuracy (%) on {spec.Pairs} UUID pairs by training step ({spec.Model} model, seeds {string.Join(",", spec.Seeds)}{(spec.Seeds.Count > 1 ? "; mean ± sd over seeds" : "; one seed, so no spread")})");
        sb.Append($"{"method",-16} {"r",3} {"params",10}");
        foreach (var s in steps) sb.Append($" {"step " + s,13}");
        sb.AppendLine($" {"exact match",13}");
        foreach (var g in Groups(runs))
        {
            var list = g.ToList();
            sb.Append($"{g.Key.Method,-16} {(g.Key.Rank == 0 ? "-" : g.Key.Rank.ToString()),3} {list[0].TrainableParameters,10:N0}");
            foreach (var s in steps) sb.Append($" {ExperimentFolder.Percent(list.Select(x => x.CharAccuracyAt[s]).ToList()),13}");
            sb.AppendLine($" {ExperimentFolder.Percent(list.Select(x => x.ExactMatch).ToList()),13}");
        }
        return sb.ToString().TrimEnd();
    }

}

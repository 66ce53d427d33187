using System.Globalization;
using System.Text;
using System.Text.Json;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.IO;
using Mora.Model;
using Mora.Training;
using TorchSharp;

namespace Mora.Experiments;

/// <summary>Settings of the GSM8K-style reproduction (paper §4.3 math reasoning, at the kit's scale): pretrain a base on a
/// generated corpus (or load a local checkpoint), fine-tune it with each method on word problems, score exact match of
/// the final answer on a held-out split.</summary>
public sealed record Gsm8kSpec : ExperimentSpec
{
    public Gsm8kSpec()
    {
        PretrainSteps = 600; Steps = 300; AdapterLr = 5e-3; FullLr = 1e-3; PretrainLr = 2e-3; EvalPoints = 3;
    }

    public int Context { get; init; } = 512;
    public int TrainProblems { get; init; } = 2000;
    public int TestProblems { get; init; } = 100;
    /// <summary>Problems apart from the training and test splits that tuning runs are scored on (needed when rates are tuned:
    /// a rate picked on the test split would flatter every method).</summary>
    public int ValidationProblems { get; init; }
    public MathStyle Style { get; init; } = new() { MinSteps = 1, MaxSteps = 2, MaxStart = 20, MaxOperand = 10, MaxFactor = 3 };
    public int PretrainDocuments { get; init; } = 4000;
    public int MaxNewTokens { get; init; } = 160;
    /// <summary>GSM8K-format JSONL files used instead of generated problems (for example the real GSM8K).</summary>
    public string? TrainFile { get; init; }
    public string? TestFile { get; init; }
    /// <summary>A local model folder (config.json, model.safetensors, optional tokenizer.json) used as the base instead of pretraining.</summary>
    public string? BaseModel { get; init; }

    /// <summary>smoke (tests), smoke-tuned (the tuning path at test size), default, cpu-hour (the first committed results: tiny
    /// model, one untuned rate, 2 seeds), regimes (the paper's two rank regimes on the medium model, hidden 256: r = 1 and
    /// r = 16 with MoRA's design per regime, rates tuned, one base, 5 seeds, full fine-tuning beside them; from its first tuning
    /// runs an estimated 4.5 h on one core: meant for a GPU), cpu-regimes (the same comparison sized for 2 CPU cores, the
    /// committed run: the same base, batch 8 for 200 steps, tuning runs of 60 steps, no full fine-tuning; 95 min on one
    /// core beside other jobs, base copied).</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["smoke", "smoke-tuned", "default", "cpu-hour", "regimes", "cpu-regimes"];

    public static Gsm8kSpec FromPreset(string name) => name.ToLowerInvariant() switch
    {
        "smoke" => new() { Preset = "smoke", TrainProblems = 64, TestProblems = 8, PretrainDocuments = 200, PretrainSteps = 20, Steps = 20, EvalPoints = 1, Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], MaxNewTokens = 48 },
        "smoke-tuned" => new()
        {
            Preset = "smoke-tuned", TrainProblems = 64, TestProblems = 8, ValidationProblems = 8, PretrainDocuments = 200, PretrainSteps = 20, Steps = 20, EvalPoints = 1,
            Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], MaxNewTokens = 48, Seeds = [0, 1], BaseSeed = 0,
            AdapterLrGrid = [3e-3, 1e-2], FullLrGrid = [1e-3, 3e-3], TuneSteps = 10, TuneSeed = 100,
        },
        "default" => new(),
        "regimes" => new()
        {
            Preset = "regimes", Model = "medium", TrainProblems = 2000, TestProblems = 100, ValidationProblems = 60, PretrainDocuments = 8000, PretrainSteps = 600, Steps = 300,
            Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Sharing), MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], Ranks = [1, 16],
            MethodRanks = new Dictionary<string, IReadOnlyList<int>> { ["mora-rotation"] = [1], ["mora-sharing"] = [16] },
            Seeds = [0, 1, 2, 3, 4], BaseSeed = 0, EvalPoints = 3,
            AdapterLrGrid = LearningRateSweep.LogGrid(1e-3, 4), FullLrGrid = LearningRateSweep.LogGrid(1e-4, 4), TuneSteps = 100, TuneSeed = 100,
        },
        "cpu-regimes" => FromPreset("regimes") with
        {
            Preset = "cpu-regimes", Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Sharing), MethodSpec.Mora(MoraType.Rotation)], FullLrGrid = [],
            BatchSize = 8, Steps = 200, EvalPoints = 2, TuneSteps = 60,
        },
        "cpu-hour" => new() { Preset = "cpu-hour", TrainProblems = 2000, TestProblems = 60, PretrainDocuments = 8000, PretrainSteps = 600, Steps = 240, Seeds = [0, 1], EvalPoints = 3 },
        _ => throw new ArgumentException($"unknown preset '{name}'; use {string.Join(", ", PresetNames)}", nameof(Preset)),
    };

    /// <summary>Checks every setting; throws <see cref="ArgumentException"/> naming the property.</summary>
    public Gsm8kSpec Validate()
    {
        Positive(TrainProblems, nameof(TrainProblems)); Positive(TestProblems, nameof(TestProblems)); Positive(MaxNewTokens, nameof(MaxNewTokens));
        Positive(Context, nameof(Context)); Positive(PretrainDocuments, nameof(PretrainDocuments));
        if (ValidationProblems < 0) throw new ArgumentException($"{nameof(ValidationProblems)} must be ≥ 0, got {ValidationProblems}", nameof(ValidationProblems));
        if (Tunes && ValidationProblems == 0)
            throw new ArgumentException($"{nameof(ValidationProblems)}: tuning rates needs a validation split (tuning on the test split would flatter every method)", nameof(ValidationProblems));
        ValidateShared();
        if (TrainFile is not null && !File.Exists(TrainFile)) throw new ArgumentException($"{nameof(TrainFile)}: no file {Path.GetFullPath(TrainFile)}", nameof(TrainFile));
        if (TestFile is not null && !File.Exists(TestFile)) throw new ArgumentException($"{nameof(TestFile)}: no file {Path.GetFullPath(TestFile)}", nameof(TestFile));
        if ((TrainFile is null) != (TestFile is null))
            throw new ArgumentException($"{nameof(TrainFile)} and {nameof(TestFile)} go together", TrainFile is null ? nameof(TrainFile) : nameof(TestFile));
        if (BaseModel is not null && !File.Exists(Path.Combine(BaseModel, ModelIO.ConfigFile)))
            throw new ArgumentException($"{nameof(BaseModel)}: {Path.GetFullPath(BaseModel)} has no {ModelIO.ConfigFile}", nameof(BaseModel));
        Style.Validate();
        return this;
    }
}

/// <summary>One fine-tuning run's result (a row of <c>gsm8k.csv</c>).</summary>
public sealed record Gsm8kRun(string Method, int Rank, int Seed, long TrainableParameters, IReadOnlyDictionary<int, double> AccuracyAt, double FinalLoss, double WallSeconds,
    double LearningRate = 0);

/// <summary>
/// The GSM8K-style reproduction as one resumable job; the layout follows <see cref="MemorizationExperiment"/>: <c>base-seed{s}/</c>,
/// <c>runs/{method}-r{r}-seed{s}/</c> with <c>result.json</c>, and <c>gsm8k.csv</c> / <c>gsm8k-summary.csv</c>.
/// </summary>
public static class Gsm8kExperiment
{
    public const string TableFile = "gsm8k.csv", SummaryFile = "gsm8k-summary.csv", PairedFile = "gsm8k-paired.csv", SpecFile = ExperimentFolder.SpecFile;

    /// <summary>Every table the job writes for its report.</summary>
    public static string[] ReportFiles(Gsm8kSpec spec) => [SpecFile, TableFile, SummaryFile, PairedFile, .. spec.Tunes ? new[] { LearningRateSweep.File } : []];

    public static IReadOnlyList<Gsm8kRun> Run(Gsm8kSpec spec, string outDir, TextWriter? output = null, CancellationToken cancel = default)
    {
        spec.Validate();
        output ??= TextWriter.Null;
        outDir = Path.GetFullPath(outDir);

        ITextTokenizer tokenizer = spec.BaseModel is not null && File.Exists(Path.Combine(spec.BaseModel, ModelIO.TokenizerFile))
            ? HfTokenizer.Load(spec.BaseModel) : new CharTokenizer();
        List<MathProblem> train, test, validation;
        if (spec.TrainFile is not null)
        {
            var all = Gsm8kData.Load(spec.TrainFile);
            train = all.Take(spec.TrainProblems).ToList();
            validation = all.Skip(spec.TrainProblems).Take(spec.ValidationProblems).ToList();
            test = Gsm8kData.Load(spec.TestFile!).Take(spec.TestProblems).ToList();
            if (validation.Count < spec.ValidationProblems)
                throw new ArgumentException($"{nameof(spec.ValidationProblems)}: {spec.TrainFile} has {all.Count} problems, fewer than {spec.TrainProblems} training plus {spec.ValidationProblems} validation ones", nameof(spec.ValidationProblems));
        }
        else
        {
            (train, test) = Gsm8kStyle.Splits(spec.TrainProblems, spec.TestProblems, seed: 4242, spec.Style);
            var seen = train.Concat(test).Select(p => p.Question).ToHashSet();
            validation = spec.ValidationProblems == 0 ? [] : Gsm8kStyle.Generate(spec.TrainProblems + spec.TestProblems + 4 * spec.ValidationProblems, 4242, spec.Style)
                .Where(p => !seen.Contains(p.Question)).Take(spec.ValidationProblems).ToList();
            if (validation.Count < spec.ValidationProblems)
                throw new ArgumentException($"{nameof(spec.ValidationProblems)}: only {validation.Count} generated problems are apart from the training and test splits; ask for fewer", nameof(spec.ValidationProblems));
        }
        var examples = train.Select(p => LmData.FromPair(tokenizer, Gsm8kData.Prompt(p.Question), p.Answer)).ToList();
        int longest = examples.Max(e => e.Tokens.Length) + spec.MaxNewTokens;
        if (longest > spec.Context && spec.BaseModel is null)
            throw new ArgumentException($"{nameof(spec.Context)} {spec.Context} is too short: the longest problem with its answer budget needs {longest} tokens", nameof(spec.Context));
        // A local base is read once before anything is written: bad weights fail here, not after spec.json exists.
        if (spec.BaseModel is not null) using (ModelIO.Load(spec.BaseModel)) { }
        Directory.CreateDirectory(outDir);
        ExperimentFolder.Claim(outDir, spec, "GSM8K");
        output.WriteLine($"{train.Count} training and {test.Count} test problems ({(spec.TrainFile is null ? "generated" : spec.TrainFile)}), tokenizer {tokenizer.GetType().Name}");

        string BaseFor(int seed) => spec.BaseModel ?? PretrainBase(spec, outDir, spec.BaseSeed ?? seed, tokenizer, test.Concat(validation).ToList(), output, cancel);
        string? tuningBase = null;   // made on the first tuning run
        var rates = LearningRateSweep.TuneAll(spec, outDir, "the validation split", output, (method, r, lr, name) =>
        {
            tuningBase ??= BaseFor(spec.TuneSeed);
            var run = FineTune(spec, Path.Combine(outDir, "sweep"), name, tokenizer, examples, validation,
                tuningBase, method, r, spec.TuneSeed, lr, spec.TuneSteps, [spec.TuneSteps], output, cancel, tuning: true);
            return (run.AccuracyAt[spec.TuneSteps], run.FinalLoss);
        });

        var results = new List<Gsm8kRun>();
        foreach (int seed in spec.Seeds)
        {
            string baseDir = BaseFor(seed);
            foreach (var (method, r) in spec.Configurations())
                results.Add(FineTune(spec, Path.Combine(outDir, "runs"), method.RunName(r, seed), tokenizer, examples, test, baseDir, method, r, seed,
                    rates[(method.Name, r)], spec.Steps, spec.EvalSteps, output, cancel));
        }
        WriteTables(spec, outDir, results);
        output.WriteLine();
        output.WriteLine(FormatTable(spec, results));
        output.WriteLine($"table: {ExperimentFolder.Show(Path.Combine(outDir, TableFile))} (per run), {ExperimentFolder.Show(Path.Combine(outDir, SummaryFile))} (mean and 95 % interval over seeds), {ExperimentFolder.Show(Path.Combine(outDir, PairedFile))} (per seed minus LoRA)");
        return results;
    }

    static string PretrainBase(Gsm8kSpec spec, string outDir, int seed, ITextTokenizer tokenizer, IReadOnlyList<MathProblem> test, TextWriter output, CancellationToken cancel)
    {
        string dir = Path.Combine(outDir, $"base-seed{seed}");
        string modelDir = Path.Combine(dir, "model");
        if (File.Exists(Path.Combine(modelDir, ModelIO.WeightsFile)))
        {
            output.WriteLine($"base seed {seed}: reusing the pretrained base in {ExperimentFolder.Show(modelDir)}");
            return modelDir;
        }
        torch.manual_seed(seed);
        var config = LlamaConfig.Preset(spec.Model, tokenizer.VocabSize) with
        { MaxPositionEmbeddings = spec.Context, BosTokenId = tokenizer.BosId, EosTokenId = tokenizer.EosId };
        using var model = new LlamaForCausalLM(config);
        if (spec.PretrainSteps > 0)
        {
            var corpus = PretrainingCorpus.Generate(spec.PretrainDocuments, seed: 7000 + seed, spec.Style, test.Select(p => p.Question).ToHashSet());
            var blocks = LmData.FromCorpus(tokenizer, corpus, Math.Min(256, spec.Context));
            output.WriteLine($"pretraining the {spec.Model} base (seed {seed}) on {corpus.Count} documents ({blocks.Count} blocks) for {spec.PretrainSteps} steps");
            var train = new TrainConfig
            {
                Steps = spec.PretrainSteps, BatchSize = 16, LearningRate = spec.PretrainLr, WarmupSteps = Math.Min(100, spec.PretrainSteps / 10),
                Seed = seed, OutputDir = dir, CheckpointEvery = Math.Max(1, spec.PretrainSteps / 4), Device = spec.Device, LogEvery = 25,
            };
            new Trainer(model, train, blocks, padId: tokenizer.PadId) { Progress = new ConsoleProgress($"base-seed{seed}") }.Run(cancel);
        }
        ModelIO.Save(model, modelDir);
        return modelDir;
    }

    static Gsm8kRun FineTune(Gsm8kSpec spec, string root, string name, ITextTokenizer tokenizer, IReadOnlyList<LmExample> examples, IReadOnlyList<MathProblem> test,
        string baseDir, MethodSpec method, int r, int seed, double lr, int steps, IReadOnlyList<int> evalSteps, TextWriter output, CancellationToken cancel, bool tuning = false)
    {
        string dir = SafePath.Under(root, name, "run name");
        if (ExperimentFolder.ReadResult<Gsm8kRun>(dir) is { } done)
        {
            ExperimentFolder.CheckReusedRate(dir, done.LearningRate, lr);
            output.WriteLine($"{name}: finished before, reusing its {ExperimentFolder.ResultFile} (delete {ExperimentFolder.Show(dir)} to run it again)");
            return done.LearningRate == 0 ? done with { LearningRate = lr } : done;   // written before rates were recorded
        }
        using var model = ModelIO.Load(baseDir);
        var adapter = method.Adapter(r);
        torch.manual_seed(seed);
        Peft.Inject(model, adapter);
        var evaluate = (LlamaForCausalLM m) =>
        {
            var s = Metrics.Math(m, tokenizer, test, spec.MaxNewTokens);
            return (IReadOnlyDictionary<string, double>)new Dictionary<string, double> { ["accuracy"] = s.ExactMatch, ["no_answer"] = (double)s.NoAnswer / s.Count };
        };
        var config = new TrainConfig
        {
            Steps = steps, BatchSize = spec.BatchSize, LearningRate = lr,
            WarmupSteps = Math.Min(20, steps / 10), Seed = seed, OutputDir = dir, Device = spec.Device,
            EvalEvery = evalSteps[0], CheckpointEvery = Math.Max(1, steps / 4), LogEvery = 25,
        };
        output.WriteLine($"{name}: {Peft.CountParameters(model).Trainable:N0} trainable parameters, lr {config.LearningRate:G3}");
        var run = LearningRateSweep.TrainOrRecordDiverged(tuning, name, output, () =>
        {
            var result = new Trainer(model, config, examples, evaluate, adapter, tokenizer.PadId) { Progress = new ConsoleProgress(name) }.Run(cancel);
            var at = result.Log.Rows.Where(x => x.Metrics.ContainsKey("accuracy")).ToDictionary(x => (int)x.Step, x => x.Metrics["accuracy"]);
            return new Gsm8kRun(method.Name, method.Method == AdapterMethod.Full ? 0 : r, seed, result.TrainableParameters,
                evalSteps.ToDictionary(s => s, s => at.TryGetValue(s, out var v) ? v : double.NaN), result.Log.Rows[^1].Loss, result.WallSeconds, lr);
        }, () =>
        {
            var (metric, loss) = LearningRateSweep.Diverged;
            return new Gsm8kRun(method.Name, method.Method == AdapterMethod.Full ? 0 : r, seed, Peft.CountParameters(model).Trainable,
                evalSteps.ToDictionary(s => s, _ => metric), loss, 0, lr);
        });
        ExperimentFolder.WriteResult(dir, run);
        return run;
    }

    static string F(double v) => SeedReport.F(v);

    static void WriteTables(Gsm8kSpec spec, string outDir, IReadOnlyList<Gsm8kRun> runs)
    {
        var steps = spec.EvalSteps;
        var sb = new StringBuilder("method,rank,seed,trainable_parameters,learning_rate," + string.Join(",", steps.Select(s => $"accuracy_step{s}")) + ",final_loss\n");
        foreach (var r in runs)
            sb.Append($"{r.Method},{r.Rank},{r.Seed},{r.TrainableParameters},{LearningRateSweep.Lr(r.LearningRate)},{string.Join(",", steps.Select(s => F(r.AccuracyAt[s])))},{F(r.FinalLoss)}\n");
        AtomicFile.WriteText(Path.Combine(outDir, TableFile), sb.ToString());
        var scores = Scores(spec, runs);
        AtomicFile.WriteText(Path.Combine(outDir, SummaryFile), SeedReport.SummaryCsv(scores));
        AtomicFile.WriteText(Path.Combine(outDir, PairedFile), SeedReport.PairedCsv(spec.Ranks, scores));
    }

    /// <summary>The runs as <see cref="SeedReport"/> reads them: accuracy at each step.</summary>
    public static IReadOnlyList<RunScores> Scores(Gsm8kSpec spec, IEnumerable<Gsm8kRun> runs) =>
        runs.Select(r => new RunScores(r.Method, r.Rank, r.Seed, r.TrainableParameters, r.LearningRate,
            spec.EvalSteps.Select(s => ($"accuracy_step{s}", r.AccuracyAt[s])).ToList())).ToList();

    /// <summary>Exact-match accuracy (%) of the final answer on the test split by training step per method and rank with
    /// its learning rate, mean [95 % interval] over seeds; then each method's per-seed difference from LoRA at the last step
    /// and the learning-rate rule.</summary>
    public static string FormatTable(Gsm8kSpec spec, IReadOnlyList<Gsm8kRun> runs)
    {
        var steps = spec.EvalSteps;
        var sb = new StringBuilder();
        sb.AppendLine($"Exact-match accuracy (%) on {spec.TestProblems} held-out GSM8K-style problems by training step ({spec.Model} model, seeds {string.Join(",", spec.Seeds)}{(spec.Seeds.Count > 1 ? "; mean [95 % interval] over seeds" : "; one seed, so no interval")})");
        sb.Append($"{"method",-16} {"r",3} {"params",10} {"lr",8}");
        foreach (var s in steps) sb.Append($" {"step " + s,19}");
        sb.AppendLine();
        foreach (var g in runs.GroupBy(r => (r.Method, r.Rank)))
        {
            var list = g.ToList();
            sb.Append($"{g.Key.Method,-16} {(g.Key.Rank == 0 ? "-" : g.Key.Rank.ToString()),3} {list[0].TrainableParameters,10:N0} {LearningRateSweep.Lr(list[0].LearningRate),8}");
            foreach (var s in steps) sb.Append($" {SeedStatistics.Mean95(list.Select(x => x.AccuracyAt[s])).Format(100),19}");
            sb.AppendLine();
        }
        if (spec.Seeds.Count > 1)
            foreach (var line in SeedReport.PairedLines(spec.Ranks, Scores(spec, runs), $"accuracy_step{steps[^1]}", $"step {steps[^1]}")) sb.AppendLine(line);
        if (spec.Tunes) sb.AppendLine("Rates: " + LearningRateSweep.Rule(spec.AdapterLrGrid.Count > 0 ? spec.AdapterLrGrid : spec.FullLrGrid, spec.TuneSteps, spec.TuneSeed, $"accuracy on {spec.ValidationProblems} validation problems")
            + (spec.FullLrGrid.Count > 0 && spec.AdapterLrGrid.Count > 0 ? $"; full fine-tuning over {{{string.Join(", ", spec.FullLrGrid.Select(LearningRateSweep.Lr))}}}." : "."));
        return sb.ToString().TrimEnd();
    }
}

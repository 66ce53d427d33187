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
    public MathStyle Style { get; init; } = new() { MinSteps = 1, MaxSteps = 2, MaxStart = 20, MaxOperand = 10, MaxFactor = 3 };
    public int PretrainDocuments { get; init; } = 4000;
    public int MaxNewTokens { get; init; } = 160;
    /// <summary>GSM8K-format JSONL files used instead of generated problems (for example the real GSM8K).</summary>
    public string? TrainFile { get; init; }
    public string? TestFile { get; init; }
    /// <summary>A local model folder (config.json, model.safetensors, optional tokenizer.json) used as the base instead of pretraining.</summary>
    public string? BaseModel { get; init; }

    public static IReadOnlyList<string> PresetNames { get; } = ["smoke", "default", "cpu-hour"];

    public static Gsm8kSpec FromPreset(string name) => name.ToLowerInvariant() switch
    {
        "smoke" => new() { Preset = "smoke", TrainProblems = 64, TestProblems = 8, PretrainDocuments = 200, PretrainSteps = 20, Steps = 20, EvalPoints = 1, Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], MaxNewTokens = 48 },
        "default" => new(),
        "cpu-hour" => new() { Preset = "cpu-hour", TrainProblems = 2000, TestProblems = 60, PretrainDocuments = 8000, PretrainSteps = 600, Steps = 240, Seeds = [0, 1], EvalPoints = 3 },
        _ => throw new ArgumentException($"unknown preset '{name}'; use {string.Join(", ", PresetNames)}", nameof(Preset)),
    };

    /// <summary>Checks every setting; throws <see cref="ArgumentException"/> naming the property.</summary>
    public Gsm8kSpec Validate()
    {
        Positive(TrainProblems, nameof(TrainProblems)); Positive(TestProblems, nameof(TestProblems)); Positive(MaxNewTokens, nameof(MaxNewTokens));
        Positive(Context, nameof(Context)); Positive(PretrainDocuments, nameof(PretrainDocuments));
        if (MethodRanks.Count > 0) throw new ArgumentException($"{nameof(MethodRanks)}: the gsm8k experiment runs every method at every rank", nameof(MethodRanks));
        if (Tunes) throw new ArgumentException($"{nameof(AdapterLrGrid)}: the gsm8k experiment takes fixed rates (--lr, --full-lr); learning-rate sweeps are the memorization experiment's so far", nameof(AdapterLrGrid));
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
public sealed record Gsm8kRun(string Method, int Rank, int Seed, long TrainableParameters, IReadOnlyDictionary<int, double> AccuracyAt, double FinalLoss, double WallSeconds);

/// <summary>
/// The GSM8K-style reproduction as one resumable job; the layout follows <see cref="MemorizationExperiment"/>: <c>base-seed{s}/</c>,
/// <c>runs/{method}-r{r}-seed{s}/</c> with <c>result.json</c>, and <c>gsm8k.csv</c> / <c>gsm8k-summary.csv</c>.
/// </summary>
public static class Gsm8kExperiment
{
    public const string TableFile = "gsm8k.csv", SummaryFile = "gsm8k-summary.csv", SpecFile = ExperimentFolder.SpecFile;

    public static IReadOnlyList<Gsm8kRun> Run(Gsm8kSpec spec, string outDir, TextWriter? output = null, CancellationToken cancel = default)
    {
        spec.Validate();
        output ??= TextWriter.Null;
        outDir = Path.GetFullPath(outDir);

        ITextTokenizer tokenizer = spec.BaseModel is not null && File.Exists(Path.Combine(spec.BaseModel, ModelIO.TokenizerFile))
            ? HfTokenizer.Load(spec.BaseModel) : new CharTokenizer();
        List<MathProblem> train, test;
        if (spec.TrainFile is not null)
        {
            train = Gsm8kData.Load(spec.TrainFile).Take(spec.TrainProblems).ToList();
            test = Gsm8kData.Load(spec.TestFile!).Take(spec.TestProblems).ToList();
        }
        else (train, test) = Gsm8kStyle.Splits(spec.TrainProblems, spec.TestProblems, seed: 4242, spec.Style);
        var examples = train.Select(p => LmData.FromPair(tokenizer, Gsm8kData.Prompt(p.Question), p.Answer)).ToList();
        int longest = examples.Max(e => e.Tokens.Length) + spec.MaxNewTokens;
        if (longest > spec.Context && spec.BaseModel is null)
            throw new ArgumentException($"{nameof(spec.Context)} {spec.Context} is too short: the longest problem with its answer budget needs {longest} tokens", nameof(spec.Context));
        // A local base is read once before anything is written: bad weights fail here, not after spec.json exists.
        if (spec.BaseModel is not null) using (ModelIO.Load(spec.BaseModel)) { }
        Directory.CreateDirectory(outDir);
        ExperimentFolder.Claim(outDir, spec, "GSM8K");
        output.WriteLine($"{train.Count} training and {test.Count} test problems ({(spec.TrainFile is null ? "generated" : spec.TrainFile)}), tokenizer {tokenizer.GetType().Name}");

        var results = new List<Gsm8kRun>();
        foreach (int seed in spec.Seeds)
        {
            string baseDir = spec.BaseModel ?? PretrainBase(spec, outDir, seed, tokenizer, test, output, cancel);
            foreach (var method in spec.Methods)
                foreach (int r in method.Method == AdapterMethod.Full ? [spec.Ranks[0]] : spec.Ranks)
                    results.Add(FineTune(spec, outDir, tokenizer, examples, test, baseDir, method, r, seed, output, cancel));
        }
        WriteTables(spec, outDir, results);
        output.WriteLine();
        output.WriteLine(FormatTable(spec, results));
        output.WriteLine($"table: {ExperimentFolder.Show(Path.Combine(outDir, TableFile))} (per run), {ExperimentFolder.Show(Path.Combine(outDir, SummaryFile))} (mean and spread over seeds)");
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

    static Gsm8kRun FineTune(Gsm8kSpec spec, string outDir, ITextTokenizer tokenizer, IReadOnlyList<LmExample> examples, IReadOnlyList<MathProblem> test,
        string baseDir, MethodSpec method, int r, int seed, TextWriter output, CancellationToken cancel)
    {
        string name = method.RunName(r, seed);
        string dir = SafePath.Under(Path.Combine(outDir, "runs"), name, "run name");
        if (ExperimentFolder.ReadResult<Gsm8kRun>(dir) is { } done)
        {
            output.WriteLine($"{name}: finished before, reusing its {ExperimentFolder.ResultFile} (delete {ExperimentFolder.Show(dir)} to run it again)");
            return done;
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
            Steps = spec.Steps, BatchSize = spec.BatchSize, LearningRate = method.Method == AdapterMethod.Full ? spec.FullLr : spec.AdapterLr,
            WarmupSteps = Math.Min(20, spec.Steps / 10), Seed = seed, OutputDir = dir, Device = spec.Device,
            EvalEvery = spec.EvalSteps[0], CheckpointEvery = Math.Max(1, spec.Steps / 4), LogEvery = 25,
        };
        output.WriteLine($"{name}: {Peft.CountParameters(model).Trainable:N0} trainable parameters, lr {config.LearningRate:G3}");
        var result = new Trainer(model, config, examples, evaluate, adapter, tokenizer.PadId) { Progress = new ConsoleProgress(name) }.Run(cancel);
        var at = result.Log.Rows.Where(x => x.Metrics.ContainsKey("accuracy")).ToDictionary(x => (int)x.Step, x => x.Metrics["accuracy"]);
        var run = new Gsm8kRun(method.Name, method.Method == AdapterMethod.Full ? 0 : r, seed, result.TrainableParameters,
            spec.EvalSteps.ToDictionary(s => s, s => at.TryGetValue(s, out var v) ? v : double.NaN), result.Log.Rows[^1].Loss, result.WallSeconds);
        ExperimentFolder.WriteResult(dir, run);
        return run;
    }

    static string F(double v) => double.IsNaN(v) ? "" : v.ToString("0.0000", CultureInfo.InvariantCulture);

    static void WriteTables(Gsm8kSpec spec, string outDir, IReadOnlyList<Gsm8kRun> runs)
    {
        var steps = spec.EvalSteps;
        var sb = new StringBuilder("method,rank,seed,trainable_parameters," + string.Join(",", steps.Select(s => $"accuracy_step{s}")) + ",final_loss\n");
        foreach (var r in runs)
            sb.Append($"{r.Method},{r.Rank},{r.Seed},{r.TrainableParameters},{string.Join(",", steps.Select(s => F(r.AccuracyAt[s])))},{F(r.FinalLoss)}\n");
        AtomicFile.WriteText(Path.Combine(outDir, TableFile), sb.ToString());
        var summary = new StringBuilder("method,rank,seeds,trainable_parameters," + string.Join(",", steps.Select(s => $"accuracy_step{s}_mean,accuracy_step{s}_sd")) + "\n");
        foreach (var g in runs.GroupBy(r => (r.Method, r.Rank)))
        {
            var list = g.ToList();
            summary.Append($"{g.Key.Method},{g.Key.Rank},{list.Count},{list[0].TrainableParameters}");
            foreach (var s in steps) { var (m, sd) = ExperimentFolder.MeanSd(list.Select(x => x.AccuracyAt[s])); summary.Append($",{F(m)},{F(sd)}"); }
            summary.Append('\n');
        }
        AtomicFile.WriteText(Path.Combine(outDir, SummaryFile), summary.ToString());
    }

    /// <summary>Exact-match accuracy (%) of the final answer on the test split by training step, mean ± sd over seeds.</summary>
    public static string FormatTable(Gsm8kSpec spec, IReadOnlyList<Gsm8kRun> runs)
    {
        var steps = spec.EvalSteps;
        var sb = new StringBuilder();
        sb.AppendLine($"Exact-match accuracy (%) on {spec.TestProblems} held-out GSM8K-style problems by training step ({spec.Model} model, seeds {string.Join(",", spec.Seeds)}{(spec.Seeds.Count > 1 ? "; mean ± sd over seeds" : "; one seed, so no spread")})");
        sb.Append($"{"method",-16} {"r",3} {"params",10}");
        foreach (var s in steps) sb.Append($" {"step " + s,13}");
        sb.AppendLine();
        foreach (var g in runs.GroupBy(r => (r.Method, r.Rank)))
        {
            var list = g.ToList();
            sb.Append($"{g.Key.Method,-16} {(g.Key.Rank == 0 ? "-" : g.Key.Rank.ToString()),3} {list[0].TrainableParameters,10:N0}");
            foreach (var s in steps) sb.Append($" {ExperimentFolder.Percent(list.Select(x => x.AccuracyAt[s]).ToList()),13}");
            sb.AppendLine();
        }
        return sb.ToString().TrimEnd();
    }
}

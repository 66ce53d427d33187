using System.Globalization;
using System.Text;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.IO;
using Mora.Model;
using Mora.Training;
using TorchSharp;

namespace Mora.Experiments;

/// <summary>The base's exact match and no-answer rate on the test split, before any fine-tuning.</summary>
public sealed record MathFloor(double Accuracy, double NoAnswer);

/// <summary>Settings of the GSM8K-style reproduction (paper §4.3 math reasoning, at the kit's scale): pretrain a base on a
/// generated corpus (or load a local checkpoint), fine-tune it with each method on word problems, score exact match of
/// the final answer on a held-out split.</summary>
public sealed record Gsm8kSpec : FineTuningSpec
{
    public Gsm8kSpec()
    {
        PretrainSteps = 600; Steps = 300; AdapterLr = 5e-3; FullLr = 1e-3; PretrainLr = 2e-3; EvalPoints = 3; PretrainBatchSize = 16; PretrainMaxWarmupSteps = 100;
    }

    public int Context { get; init; } = 512;
    public int TrainProblems { get; init; } = 2000;
    public int TestProblems { get; init; } = 100;
    /// <summary>Problems apart from the training and test splits that tuning runs are scored on (needed when rates are tuned:
    /// a rate picked on the test split would flatter every method).</summary>
    public int ValidationProblems { get; init; }
    public MathStyle Style { get; init; } = new() { MinSteps = 1, MaxSteps = 2, MaxStart = 20, MaxOperand = 10, MaxFactor = 3 };
    /// <summary>Generated test and validation problems have arithmetic skeletons (<see cref="MathSkeleton"/>: start value,
    /// operations and operands) that no training problem and no worked problem of the base's pretraining corpus has, so a
    /// right answer is not recall of a seen computation under other names. Off only in the presets whose committed results
    /// were made before it (deduplicated by exact question only: by the generator's distribution most of their test
    /// problems share a skeleton with a training problem).</summary>
    public bool UnseenSkeletons { get; init; } = true;
    public int PretrainDocuments { get; init; } = 4000;
    public int MaxNewTokens { get; init; } = 160;
    /// <summary>GSM8K-format JSONL files used instead of generated problems (for example the real GSM8K).</summary>
    public string? TrainFile { get; init; }
    public string? TestFile { get; init; }
    /// <summary>A local model folder (config.json, model.safetensors, optional tokenizer.json) used as the base instead of pretraining.</summary>
    public string? BaseModel { get; init; }

    /// <summary>smoke (tests), smoke-tuned (the tuning path at test size), default, cpu-hour (the first committed results: tiny
    /// model, one untuned rate, 2 seeds), unseen (the referee's version of regimes: 400 test problems with skeletons seen
    /// nowhere in training or pretraining, the base's floor, full fine-tuning, rates tuned on the reported 300-step horizon,
    /// per-item correctness for the bootstrap over items × seeds; meant for a GPU), cpu-unseen (the same on the tiny model
    /// with one base, sized for the 2-core CPU), regimes (the paper's two rank regimes on the medium model, hidden 256: r = 1 and
    /// r = 16 with MoRA's design per regime, rates tuned, one base, 5 seeds, full fine-tuning beside them; from its first tuning
    /// runs an estimated 4.5 h on one core: meant for a GPU), cpu-regimes (the same comparison sized for 2 CPU cores, the
    /// committed run: the same base, batch 8 for 200 steps, tuning runs of 60 steps, no full fine-tuning; 95 min on one
    /// core beside other jobs, base copied).</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["smoke", "smoke-tuned", "default", "cpu-hour", "unseen", "cpu-unseen", "regimes", "cpu-regimes"];

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
        "unseen" => new()
        {
            Preset = "unseen", Model = "medium", TrainProblems = 2000, TestProblems = 400, ValidationProblems = 100, PretrainDocuments = 8000, PretrainSteps = 600, Steps = 300,
            Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Sharing), MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], Ranks = [1, 16],
            MethodRanks = new Dictionary<string, IReadOnlyList<int>> { ["mora-rotation"] = [1], ["mora-sharing"] = [16] },
            Seeds = [0, 1, 2, 3, 4], BaseSeed = 0, EvalPoints = 3,
            AdapterLrGrid = LearningRateSweep.LogGrid(1e-3, 7, perDecade: 3), FullLrGrid = LearningRateSweep.LogGrid(1e-4, 5, perDecade: 3), TuneSteps = 300, TuneSeed = 100,
        },
        "cpu-unseen" => FromPreset("unseen") with
        {
            Preset = "cpu-unseen", Model = "tiny", PretrainDocuments = 4000, Steps = 240, TuneSteps = 240, EvalPoints = 2, Seeds = [0, 1, 2, 3, 4],
            AdapterLrGrid = [2.15e-3, 4.64e-3, 1e-2, 2.15e-2], FullLrGrid = [4.64e-4, 1e-3, 2.15e-3],
        },
        "regimes" => new()
        {
            Preset = "regimes", UnseenSkeletons = false, Model = "medium", TrainProblems = 2000, TestProblems = 100, ValidationProblems = 60, PretrainDocuments = 8000, PretrainSteps = 600, Steps = 300,
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
        "cpu-hour" => new() { Preset = "cpu-hour", UnseenSkeletons = false, TrainProblems = 2000, TestProblems = 60, PretrainDocuments = 8000, PretrainSteps = 600, Steps = 240, Seeds = [0, 1], EvalPoints = 3 },
        _ => throw new ArgumentException($"unknown preset '{name}'; use {string.Join(", ", PresetNames)}", nameof(Preset)),
    };

    /// <summary>Tokens per block of the base's pretraining corpus (at most <see cref="Context"/>).</summary>
    public int PretrainBlockSize { get; init; } = 256;

    /// <summary>Checks every setting; throws <see cref="ArgumentException"/> naming the property. Files are checked
    /// to exist here, and read (with the base) before anything is written, by <see cref="Gsm8kExperiment"/>.</summary>
    public override Gsm8kSpec Validate()
    {
        Positive(TrainProblems, nameof(TrainProblems)); Positive(TestProblems, nameof(TestProblems)); Positive(MaxNewTokens, nameof(MaxNewTokens));
        Positive(Context, nameof(Context)); Positive(PretrainDocuments, nameof(PretrainDocuments)); Positive(PretrainBlockSize, nameof(PretrainBlockSize));
        NonNegative(ValidationProblems, nameof(ValidationProblems));
        ValidateFineTuning();
        if (Tunes && ValidationProblems == 0)
            throw new ArgumentException($"{nameof(ValidationProblems)}: tuning rates needs a validation split (tuning on the test split would flatter every method)", nameof(ValidationProblems));
        if (TrainFile is not null && !File.Exists(TrainFile)) throw new ArgumentException($"{nameof(TrainFile)}: no file {Path.GetFullPath(TrainFile)}", nameof(TrainFile));
        if (TestFile is not null && !File.Exists(TestFile)) throw new ArgumentException($"{nameof(TestFile)}: no file {Path.GetFullPath(TestFile)}", nameof(TestFile));
        if ((TrainFile is null) != (TestFile is null))
            throw new ArgumentException($"{nameof(TrainFile)} and {nameof(TestFile)} go together", TrainFile is null ? nameof(TrainFile) : nameof(TestFile));
        GivenBase.CheckExists(BaseModel);
        Style.Validate();
        return this;
    }
}

/// <summary>
/// The GSM8K-style reproduction (paper §4.3 math reasoning, at the kit's scale): a base pretrained on a generated corpus
/// (or a local model folder, <see cref="Gsm8kSpec.BaseModel"/>, with its tokenizer), fine-tuned with each method on word
/// problems (generated, or GSM8K-format files), scored by exact match of the final answer on held-out problems at each
/// evaluation step; tuning runs are scored on a validation split apart from both. The pipeline is
/// <see cref="Experiment{TSpec}"/>'s.
/// </summary>
public sealed class Gsm8kExperiment(Gsm8kSpec spec) : FineTuningExperiment<Gsm8kSpec>(spec)
{
    public const string Name = "gsm8k", TableFile = Name + ".csv", SummaryFile = Name + "-summary.csv", PairedFile = Name + "-paired.csv",
        ItemsFile = Name + "-items.csv", FloorFile = Name + "-floor.csv",
        SpecFile = ExperimentFolder.SpecFile, Accuracy = "accuracy", NoAnswer = "no_answer";

    /// <summary>Runs the job (see <see cref="Experiment{TSpec}.Run"/>).</summary>
    public static JobResult Run(Gsm8kSpec spec, string outDir, TextWriter? output = null, CancellationToken cancel = default, RunOptions? options = null) =>
        new Gsm8kExperiment(spec).Run(outDir, output, cancel, options);

    public override string Kind => Name;
    ITextTokenizer _tokenizer = new CharTokenizer();
    List<MathProblem> _train = [], _test = [], _validation = [];
    List<LmExample> _examples = [];
    protected override bool KeepsItems => true;
    readonly Dictionary<int, MathFloor> _floors = [];

    /// <summary>The score column of accuracy at <paramref name="step"/>.</summary>
    public static string AccuracyAt(int step) => $"{Accuracy}_step{step}";

    public override IReadOnlyList<string> Columns => [.. Spec.EvalSteps.Select(AccuracyAt)];
    public override IReadOnlyList<int> ReportRanks => Spec.Ranks;
    protected override int PadId => _tokenizer.PadId;
    protected override string TunedOn => "the validation split";
    protected override double TuningScore(RunRecord run) => run.Score(AccuracyAt(Spec.TuneSteps));

    /// <summary>Reads the tokenizer, the problems and a given base (weights against its config, its vocabulary against the
    /// tokenizer) before anything is written.</summary>
    protected override IReadOnlyList<InputFile> Prepare()
    {
        var inputs = new List<InputFile>();
        var given = Spec.BaseModel is { } b ? GivenBase.Read(b) : null;    // weights against config, tokenizer against vocab_size
        _tokenizer = given?.Tokenizer ?? new CharTokenizer();
        if (Spec.TrainFile is not null)
        {
            var all = Gsm8kData.Load(Spec.TrainFile);
            if (all.Count == 0) throw new ArgumentException($"{nameof(Spec.TrainFile)}: {Spec.TrainFile} holds no problems (an empty file, or not a regular file: a pipe or device is not read)", nameof(Spec.TrainFile));
            _train = all.Take(Spec.TrainProblems).ToList();
            _validation = all.Skip(Spec.TrainProblems).Take(Spec.ValidationProblems).ToList();
            _test = Gsm8kData.Load(Spec.TestFile!).Take(Spec.TestProblems).ToList();
            if (_test.Count == 0) throw new ArgumentException($"{nameof(Spec.TestFile)}: {Spec.TestFile} holds no problems (an empty file, or not a regular file: a pipe or device is not read)", nameof(Spec.TestFile));
            if (_validation.Count < Spec.ValidationProblems)
                throw new ArgumentException($"{nameof(Spec.ValidationProblems)}: {Spec.TrainFile} has {all.Count} problems, fewer than {Spec.TrainProblems} training plus {Spec.ValidationProblems} validation ones", nameof(Spec.ValidationProblems));
            inputs.Add(new InputFile("train file", Spec.TrainFile));
            inputs.Add(new InputFile("test file", Spec.TestFile!));
        }
        else if (Spec.UnseenSkeletons)
        {
            var splits = Gsm8kStyle.UnseenSplits(Spec.TrainProblems, [Spec.TestProblems, Spec.ValidationProblems], seed: 4242, Spec.Style);
            (_train, _test, _validation) = (splits[0], splits[1], splits[2]);
        }
        else
        {
            (_train, _test) = Gsm8kStyle.Splits(Spec.TrainProblems, Spec.TestProblems, seed: 4242, Spec.Style);
            var seen = _train.Concat(_test).Select(p => p.Question).ToHashSet();
            _validation = Spec.ValidationProblems == 0 ? [] : Gsm8kStyle.Generate(Spec.TrainProblems + Spec.TestProblems + 4 * Spec.ValidationProblems, 4242, Spec.Style)
                .Where(p => !seen.Contains(p.Question)).Take(Spec.ValidationProblems).ToList();
            if (_validation.Count < Spec.ValidationProblems)
                throw new ArgumentException($"{nameof(Spec.ValidationProblems)}: only {_validation.Count} generated problems are apart from the training and test splits; ask for fewer", nameof(Spec.ValidationProblems));
        }
        _examples = _train.Select(p => LmData.FromPair(_tokenizer, Gsm8kData.Prompt(p.Question), p.Answer)).ToList();
        int longest = _examples.Max(e => e.Tokens.Length) + Spec.MaxNewTokens;
        if (longest > Spec.Context && Spec.BaseModel is null)
            throw new ArgumentException($"{nameof(Spec.Context)} {Spec.Context} is too short: the longest problem with its answer budget needs {longest} tokens", nameof(Spec.Context));
        if (given is not null)
        {
            given.CheckLength(longest, $"the longest problem with its answer budget ({nameof(Spec.MaxNewTokens)} {Spec.MaxNewTokens})");
            inputs.AddRange(given.Inputs);
            Output.WriteLine(given.Describe());
        }
        Output.WriteLine($"{_train.Count} training and {_test.Count} test problems ({(Spec.TrainFile is null ? Spec.UnseenSkeletons ? "generated; test and validation skeletons unseen in training and pretraining" : "generated" : Spec.TrainFile)}), tokenizer {_tokenizer.GetType().Name}");
        return inputs;
    }

    protected override string? BaseFor(int seed)
    {
        if (Spec.BaseModel is not null) return Spec.BaseModel;
        int s = Spec.BaseSeed ?? seed;
        return PretrainBase($"base-seed{s}", $"base seed {s}", s, () =>
        {
            torch.manual_seed(s);
            return new LlamaForCausalLM(LlamaConfig.Preset(Spec.Model, _tokenizer.VocabSize) with
                { MaxPositionEmbeddings = Spec.Context, BosTokenId = _tokenizer.BosId, EosTokenId = _tokenizer.EosId });
        }, () =>
        {
            var heldOut = _test.Concat(_validation).ToList();
            var corpus = Gsm8kPretrainingText.Generate(Spec.PretrainDocuments, seed: 7000 + s, Spec.Style, heldOut.Select(p => p.Question).ToHashSet(),
                Spec.UnseenSkeletons ? heldOut.Select(MathSkeleton.Of).ToHashSet() : null);
            var blocks = LmData.FromCorpus(_tokenizer, corpus, Math.Min(Spec.PretrainBlockSize, Spec.Context));
            return (blocks, $"{corpus.Count} documents ({blocks.Count} blocks)");
        });
    }

    protected override IReadOnlyList<LmExample> TrainingSet(RunPlan plan) => _examples;

    protected override IReadOnlyDictionary<string, double> Evaluate(LlamaForCausalLM model, RunPlan plan)
    {
        var s = Metrics.Math(model, _tokenizer, plan.Tuning ? _validation : _test, Spec.MaxNewTokens);
        if (!plan.Tuning) RecordItems(plan, [.. _test.Select(p => p.FinalAnswer.ToString(CultureInfo.InvariantCulture))],
            [.. s.Answers.Select(a => a?.ToString(CultureInfo.InvariantCulture) ?? "")], s.Right);
        return new Dictionary<string, double> { [Accuracy] = s.ExactMatch, [NoAnswer] = (double)s.NoAnswer / s.Count };
    }

    /// <summary>The base's exact match on the test split, measured once per base and test split and cached beside the base
    /// (a given base's in <c>base/</c> of the output folder; <see cref="ItemScores.FloorCache"/>).</summary>
    protected override void BeforeSeed(int seed, string? baseDir)
    {
        string floorDir = Spec.BaseModel is not null ? Path.Combine(OutDir, "base") : Path.GetDirectoryName(baseDir)!;
        _floors[seed] = ExperimentFolder.Cached(ItemScores.FloorCache(floorDir, baseDir!, _test.Select(p => p.Question + "\u0002" + p.Answer)), () =>
        {
            using var model = ModelIO.Load(baseDir!);
            var s = Metrics.Math(model, _tokenizer, _test, Spec.MaxNewTokens);
            return new MathFloor(s.ExactMatch, (double)s.NoAnswer / s.Count);
        });
    }

    public override IReadOnlyList<string> ReportFiles => [.. base.ReportFiles, FloorFile, ItemsFile];

    /// <summary>Writes <see cref="FloorFile"/> (per seed, the base's exact match and no-answer rate on the test split) and
    /// <see cref="ItemsFile"/> (per reported run and test problem: the answer given at the last step and whether it was
    /// right; runs made before items were stored are absent).</summary>
    protected override IEnumerable<string> WriteExtras(JobResult result)
    {
        ItemScores.WriteFloor(Path.Combine(OutDir, FloorFile), Spec.Seeds, "base_accuracy,base_no_answer", s => [_floors[s].Accuracy, _floors[s].NoAnswer]);
        AtomicFile.WriteText(Path.Combine(OutDir, ItemsFile), ItemScores.Collect(result.Runs, RunDir, _test.Count));
        return [FloorFile, ItemsFile];
    }

    protected override IEnumerable<KeyValuePair<string, double>> Scores(TrainResult result, RunPlan plan) => AtSteps(result, Accuracy, StepsOf(plan));

    /// <summary>Exact-match accuracy (%) of the final answer on the test split by training step per method and rank with
    /// its learning rate, mean [95 % interval] over seeds; then each method's per-seed difference from LoRA at the last step
    /// and the learning-rate rule.</summary>
    public override string FormatTable(JobResult result)
    {
        var steps = Spec.EvalSteps;
        var sb = new StringBuilder(SeedReport.MeanTable(
            $"Exact-match accuracy (%) on {Spec.TestProblems} held-out GSM8K-style problems by training step ({Spec.Model} model, seeds {string.Join(",", Spec.Seeds)}{(Spec.Seeds.Count > 1 ? "; mean [95 % interval] over seeds" : "; one seed, so no interval")})",
            result.Groups, [.. steps.Select(s => ($"step {s}", AccuracyAt(s)))]));
        if (_floors.Count > 0)
            sb.AppendLine($"Base before fine-tuning (the floor): {100 * _floors.Values.Average(f => f.Accuracy):0.0} % exact match ({FloorFile}).");
        if (Spec.Seeds.Count > 1)
            foreach (var line in SeedReport.PairedLines(Paired(result.Runs, AccuracyAt(steps[^1])), AccuracyAt(steps[^1]), $"step {steps[^1]}")) sb.AppendLine(line);
        if (Spec.Tunes) sb.AppendLine(RatesLine(Spec, result.Sweep, $"accuracy on {Spec.ValidationProblems} validation problems"));
        return sb.ToString().TrimEnd();
    }
}

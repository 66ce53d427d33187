using System.Globalization;
using System.Text;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.Figures;
using Mora.IO;
using Mora.Model;
using Mora.Training;

namespace Mora.Experiments;

/// <summary>Settings of the memorisation reproduction (paper §4.1, Table 2 / Figure 4): pretrain a base on other UUID pairs so it
/// knows the format, then fine-tune it with each method and rank budget on <see cref="Pairs"/> new pairs.</summary>
public sealed record MemorizationSpec : FineTuningSpec
{
    public MemorizationSpec()
    {
        PretrainSteps = 150; Steps = 200; AdapterLr = 1e-2; FullLr = 3e-3; PretrainLr = 3e-3; EvalPoints = 4;
    }

    public int Pairs { get; init; } = 32;
    public int PretrainPairs { get; init; } = 512;
    /// <summary>A local Hugging Face model folder (config.json, safetensors weights, tokenizer.json) fine-tuned as it is
    /// instead of a base pretrained on other pairs (<see cref="GivenBase"/>); the pairs are tokenized with its tokenizer.</summary>
    public string? BaseModel { get; init; }

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
    public override MemorizationSpec Validate()
    {
        Positive(Pairs, nameof(Pairs)); Positive(PretrainPairs, nameof(PretrainPairs));
        GivenBase.CheckExists(BaseModel);
        ValidateFineTuning();
        return this;
    }
}

/// <summary>The character-accuracy floor of one seed: the pretrained base's score on the new pairs before fine-tuning (it
/// knows the format, not the values), beside the chance level of a model that writes the format and guesses every hex digit.</summary>
public sealed record MemorizationFloor(int Seed, double BaseCharAccuracy)
{
    /// <summary>Chance character accuracy of a perfect-format guesser: of a UUID's 36 characters, 4 dashes and the version
    /// digit are fixed, the variant digit is one of 4, the other 30 hex digits one of 16: (5 + 1/4 + 30/16) / 36 = 19.8 %.</summary>
    public static double Chance => (5 + 0.25 + 30.0 / 16) / 36;
}

/// <summary>
/// The memorisation reproduction (paper §4.1, Table 2 / Figure 4): a base pretrained on other UUID pairs (it learns the
/// format; <c>base-seed{s}/</c>), fine-tuned with each method and rank on <see cref="MemorizationSpec.Pairs"/> new pairs
/// of the seed, scored by character accuracy at each evaluation step and exact match at the end (on the training keys:
/// the task is to store them). Its report adds the floor (the base's score and chance, <c>memorization-floor.csv</c>)
/// and the mean curves with the floor drawn. The pipeline is <see cref="Experiment{TSpec}"/>'s.
/// </summary>
public sealed class MemorizationExperiment(MemorizationSpec spec) : FineTuningExperiment<MemorizationSpec>(spec)
{
    public const string Name = "memorization", TableFile = Name + ".csv", SummaryFile = Name + "-summary.csv", PairedFile = Name + "-paired.csv",
        FloorFile = Name + "-floor.csv", SpecFile = ExperimentFolder.SpecFile, MeanFigure = Name + "-mean-char_acc", ParameterFigure = Name + "-by-parameters", CharAccuracy = "char_acc", ExactMatch = "exact_match";

    /// <summary>Runs the job (see <see cref="Experiment{TSpec}.Run"/>).</summary>
    public static JobResult Run(MemorizationSpec spec, string outDir, TextWriter? output = null, CancellationToken cancel = default, RunOptions? options = null) =>
        new MemorizationExperiment(spec).Run(outDir, output, cancel, options);

    public override string Kind => Name;
    /// <summary>The floor of each seed, for a table formatted from results read back (<see cref="ReadTables"/>); a run
    /// measures its own.</summary>
    public IReadOnlyList<MemorizationFloor> Floors { get; init; } = [];
    readonly List<MemorizationFloor> _floors = [];
    readonly Dictionary<int, MemorizationTask> _tasks = [];
    GivenBase? _given;
    ITextTokenizer _tokenizer = new CharTokenizer();

    /// <summary>The score column of character accuracy at <paramref name="step"/>.</summary>
    public static string CharAccuracyAt(int step) => $"{CharAccuracy}_step{step}";

    MemorizationTask TaskOf(int seed) => _tasks.TryGetValue(seed, out var t) ? t : _tasks[seed] = new MemorizationTask(UuidPairs.Generate(Spec.Pairs, seed: 1000 + seed), _tokenizer);

    public override IReadOnlyList<string> Columns => [.. Spec.EvalSteps.Select(CharAccuracyAt), ExactMatch];
    public override IReadOnlyList<int> ReportRanks => Spec.Ranks;
    public override IReadOnlyList<string> ReportFiles => [.. base.ReportFiles, FloorFile, MeanFigure + ".html", MeanFigure + ".png", .. ParameterFiles];
    /// <summary>A rank sweep (three ranks or more, the paper's Fig. 2) adds the accuracy against trainable parameters
    /// (its numbers are the summary table's).</summary>
    IReadOnlyList<string> ParameterFiles => Spec.Ranks.Count >= 3 ? [ParameterFigure + ".html", ParameterFigure + ".png"] : [];
    protected override int PadId => _tokenizer.PadId;
    protected override string TunedOn => "the tuning seed's pairs";
    protected override double TuningScore(RunRecord run) => run.Score(CharAccuracyAt(Spec.TuneSteps));

    /// <summary>A given base (<see cref="MemorizationSpec.BaseModel"/>) is read and checked here, before anything is written:
    /// its weights, its tokenizer against its vocabulary, and the longest pair with its answer against its context.</summary>
    protected override IReadOnlyList<InputFile> Prepare()
    {
        _tasks.Clear();
        _given = Spec.BaseModel is { } dir ? GivenBase.Read(dir) : null;
        _tokenizer = _given?.Tokenizer ?? new CharTokenizer();
        if (_given is null) return [];
        // The longest sequence a run sees: a training pair, or a prompt with the values it generates (one more token, EOS).
        int longest = Spec.Seeds.Append(Spec.TuneSeed).Max(seed => TaskOf(seed).Train.Max(e => e.Tokens.Length));
        _given.CheckLength(longest, "the longest UUID pair with its value");
        Output.WriteLine(_given.Describe());
        return _given.Inputs;
    }

    protected override string? BaseFor(int seed)
    {
        if (_given is not null) return _given.Dir;
        int s = Spec.BaseSeed ?? seed;
        var pre = new MemorizationTask(UuidPairs.Generate(Spec.PretrainPairs, seed: 2000 + s));
        return PretrainBase($"base-seed{s}", $"base seed {s}", s, () => pre.NewModel(LlamaConfig.Preset(Spec.Model, 128), s),
            () => (pre.Train, $"{Spec.PretrainPairs} other pairs"));
    }

    /// <summary>The base's character accuracy on this seed's pairs (written once beside the base).</summary>
    protected override void BeforeSeed(int seed, string? baseDir)
    {
        if (seed == Spec.Seeds[0]) _floors.Clear();
        // Beside a pretrained base (base-seed{s}/), or in base/ of the output folder for a given one (never in the user's folder).
        string floorDir = _given is not null ? Path.Combine(OutDir, "base") : Path.GetDirectoryName(baseDir)!;
        _floors.Add(ExperimentFolder.Cached(Path.Combine(floorDir, $"floor-seed{seed}.json"), () =>
        {
            using var model = ModelIO.Load(baseDir!);
            return new MemorizationFloor(seed, TaskOf(seed).Evaluate(model)[CharAccuracy]);
        }));
    }

    protected override IReadOnlyList<LmExample> TrainingSet(RunPlan plan) => TaskOf(plan.Seed).Train;
    protected override IReadOnlyDictionary<string, double> Evaluate(LlamaForCausalLM model, RunPlan plan) => TaskOf(plan.Seed).Evaluate(model);

    protected override IEnumerable<KeyValuePair<string, double>> Scores(TrainResult result, RunPlan plan) =>
        AtSteps(result, CharAccuracy, StepsOf(plan)).Append(KeyValuePair.Create(ExactMatch, result.FinalMetrics[ExactMatch]));

    protected override IEnumerable<string> WriteExtras(JobResult result)
    {
        var floor = new StringBuilder("seed,base_char_acc,chance_char_acc\n");
        foreach (var f in _floors) floor.Append(CultureInfo.InvariantCulture, $"{f.Seed},{SeedReport.Cell(f.BaseCharAccuracy)},{SeedReport.Cell(MemorizationFloor.Chance)}\n");
        AtomicFile.WriteText(Path.Combine(OutDir, FloorFile), floor.ToString());
        RunFigures.Save(MeanChart(Spec, result.Runs, _floors), Path.Combine(OutDir, MeanFigure));
        if (ParameterFiles.Count > 0) RunFigures.Save(ParameterChart(Spec, result.Runs, _floors), Path.Combine(OutDir, ParameterFigure));
        return [FloorFile, MeanFigure + ".html", MeanFigure + ".png", .. ParameterFiles];
    }

    /// <summary>The runs and floors of a finished job read back from its tables (<see cref="TableFile"/>, <see cref="FloorFile"/>
    /// in <paramref name="folder"/>), for example a committed result under figures/.</summary>
    public static (IReadOnlyList<RunRecord> Runs, IReadOnlyList<MemorizationFloor> Floors) ReadTables(string folder) =>
        (SeedReport.ReadRuns(Path.Combine(folder, TableFile)), CsvTable.Read(Path.Combine(folder, FloorFile)).Rows
            .Select(r => new MemorizationFloor(int.Parse(r["seed"], CultureInfo.InvariantCulture), double.Parse(r["base_char_acc"], CultureInfo.InvariantCulture))).ToList());

    /// <summary>Mean character accuracy by step per method and rank, starting from the base's score at step 0, with the two
    /// floors drawn flat: the base model's mean and chance with the format known.</summary>
    public static ChartFigure MeanChart(MemorizationSpec spec, IReadOnlyList<RunRecord> runs, IReadOnlyList<MemorizationFloor> floors)
    {
        double baseMean = floors.Average(f => f.BaseCharAccuracy);
        var x = new List<double> { 0 }.Concat(spec.EvalSteps.Select(s => (double)s)).ToList();
        var curves = runs.GroupBy(r => (r.Method, r.Rank)).Select(g => new Curve(g.Key.Rank == 0 ? g.Key.Method : $"{g.Key.Method} r={g.Key.Rank}", x,
            new List<double> { baseMean }.Concat(spec.EvalSteps.Select(s => g.Average(r => r.Score(CharAccuracyAt(s))))).ToList())).ToList();
        curves.Add(new Curve("floor: base model", [0, spec.Steps], [baseMean, baseMean]));
        curves.Add(new Curve("chance, format known", [0, spec.Steps], [MemorizationFloor.Chance, MemorizationFloor.Chance]));
        return RunFigures.LineChart(curves, $"Character accuracy on {spec.Pairs} UUID pairs, mean over {spec.Seeds.Count} seed(s) ({spec.Model} model)", "step", "char_acc", byMethod: true);
    }

    /// <summary>The paper's Fig. 2 at kit scale: character accuracy at the last step against trainable parameters (log
    /// axis), one curve per method through its ranks (the mean over the seeds that did not diverge, as the summary table
    /// <see cref="SummaryFile"/> holds it with its intervals), full fine-tuning and the base's floor as flat reference lines
    /// across the budgets.</summary>
    public static ChartFigure ParameterChart(MemorizationSpec spec, IReadOnlyList<RunRecord> runs, IReadOnlyList<MemorizationFloor> floors)
    {
        string last = CharAccuracyAt(spec.EvalSteps[^1]);
        var done = runs.Where(r => !r.Diverged).ToList();
        var adapters = done.Where(r => r.Rank > 0).ToList();
        if (adapters.Count == 0) throw new ArgumentException("no adapter runs to draw against their parameter counts", nameof(runs));
        double lo = adapters.Min(r => r.TrainableParameters), hi = adapters.Max(r => r.TrainableParameters);
        var curves = adapters.GroupBy(r => r.Method).Select(m =>
        {
            var points = m.GroupBy(r => r.TrainableParameters).OrderBy(g => g.Key).ToList();
            return new Curve(m.Key, points.Select(g => (double)g.Key).ToList(), points.Select(g => g.Average(r => r.Score(last))).ToList());
        }).ToList();
        foreach (var full in done.Where(r => r.Rank == 0).GroupBy(r => r.Method))
        {
            double y = full.Average(r => r.Score(last));
            curves.Add(new Curve($"{full.Key} fine-tuning ({full.First().TrainableParameters:N0} parameters)", [lo, hi], [y, y]));
        }
        double baseMean = floors.Average(f => f.BaseCharAccuracy);
        curves.Add(new Curve("floor: base model", [lo, hi], [baseMean, baseMean]));
        return RunFigures.LineChart(curves, $"{spec.Pairs} UUID pairs, step {spec.EvalSteps[^1]}: accuracy by trainable parameters",
            "trainable parameters", $"char. accuracy, mean of {spec.Seeds.Count} seed(s), {spec.Model} model", byMethod: true, logX: true);
    }

    /// <summary>Where each method's mean curve stands at the last step, one line per method and rank ("lora r=1: 46.5 % at
    /// step 200, still rising: +1.7 points over the last 40 steps"), by the stopping rule of <see cref="SeedReport.Trend"/>.</summary>
    public static IEnumerable<string> Trends(MemorizationSpec spec, IReadOnlyList<RunRecord> runs)
    {
        var at = spec.EvalSteps;
        if (at.Count < 2) throw new ArgumentException($"{nameof(spec.EvalPoints)}: a curve's trend needs two evaluations, the spec has {at.Count}", nameof(spec));
        foreach (var g in runs.GroupBy(r => (r.Method, r.Rank)))
        {
            double end = g.Average(r => r.Score(CharAccuracyAt(at[^1]))), before = g.Average(r => r.Score(CharAccuracyAt(at[^2])));
            yield return $"{g.Key.Method}{(g.Key.Rank == 0 ? "" : $" r={g.Key.Rank}")}: {100 * end:0.0} % at step {at[^1]}, {SeedReport.Trend(before, end, at[^1] - at[^2])}";
        }
    }

    /// <summary>The paper-style table: character-level accuracy (%) at fixed steps per method and rank with each method's
    /// learning rate, mean and 95 % interval over seeds; then the floor (as its table holds it, four decimals), the paired
    /// differences from LoRA at the last step, and the learning-rate rule.</summary>
    public override string FormatTable(JobResult result)
    {
        var steps = Spec.EvalSteps;
        var floors = Floors.Count > 0 ? Floors : _floors;
        var sb = new StringBuilder(SeedReport.MeanTable(
            $"Character-level accuracy (%) on {Spec.Pairs} UUID pairs by training step ({(Spec.BaseModel is { } b ? $"base {b}" : $"{Spec.Model} model")}, seeds {string.Join(",", Spec.Seeds)}{(Spec.Seeds.Count > 1 ? "; mean [95 % interval] over seeds" : "; one seed, so no interval")})",
            result.Groups, [.. steps.Select(s => ($"step {s}", CharAccuracyAt(s))), ("exact match", ExactMatch)]));
        if (floors.Count > 0)
        {
            var bases = floors.Select(f => double.Parse(SeedReport.Cell(f.BaseCharAccuracy), CultureInfo.InvariantCulture));
            sb.AppendLine($"Floor: the {(Spec.BaseModel is null ? "pretrained " : "")}base scores {SeedStatistics.Mean95(bases).Format(100)} % before fine-tuning; chance with the format known is {100 * MemorizationFloor.Chance:0.0} %.");
        }
        if (Spec.Seeds.Count > 1)
            foreach (var line in SeedReport.PairedLines(Paired(result.Runs, CharAccuracyAt(steps[^1])), CharAccuracyAt(steps[^1]), $"step {steps[^1]}")) sb.AppendLine(line);
        if (Spec.Tunes) sb.AppendLine(RatesLine(Spec, result.Sweep, "character accuracy"));
        return sb.ToString().TrimEnd();
    }
}

using System.Globalization;
using System.Text;
using Mora.Adapters;
using Mora.Data;
using Mora.IO;
using Mora.Model;
using Mora.Training;
using TorchSharp;

namespace Mora.Experiments;

/// <summary>The base before fine-tuning: its exact match with the instruction prompt (the task's floor), in its own drill
/// notation (what it knows), and the share of test facts its pretraining corpus holds as drills.</summary>
public sealed record InstructionFloor(double Accuracy, double OwnFormatAccuracy, double InCorpus);

/// <summary>Settings of the instruction-tuning contrast (paper §4.2, where LoRA, MoRA and full fine-tuning come out on par):
/// the base learns arithmetic facts in pretraining, as calculator drills (<see cref="ArithmeticFact.Drill"/>, the drill
/// documents of the GSM8K base's corpus); fine-tuning teaches only a format, the same facts as <c>Instruction: Compute 12+7.</c> and answered by the
/// number after <c>Response:</c>, on <see cref="TrainFacts"/> facts; the score is strict exact match of the response on
/// other facts the base already knows.</summary>
public sealed record InstructionSpec : FineTuningSpec
{
    public InstructionSpec()
    {
        PretrainSteps = 1500; Steps = 100; AdapterLr = 1e-2; FullLr = 1e-3; PretrainLr = 2e-3; EvalPoints = 2; PretrainBatchSize = 16; PretrainMaxWarmupSteps = 100;
    }

    /// <summary>Facts fine-tuned on in the instruction format.</summary>
    public int TrainFacts { get; init; } = 200;
    /// <summary>Other facts scored (the same every seed: the bootstrap resamples them).</summary>
    public int TestFacts { get; init; } = 400;
    /// <summary>Facts apart from both that tuning runs are scored on.</summary>
    public int ValidationFacts { get; init; } = 100;
    /// <summary>Number ranges of the facts and of the base's corpus (the GSM8K experiment's).</summary>
    public MathStyle Style { get; init; } = new() { MinSteps = 1, MaxSteps = 2, MaxStart = 20, MaxOperand = 10, MaxFactor = 3 };
    public int PretrainDocuments { get; init; } = 4000;
    public int Context { get; init; } = 256;
    public int MaxNewTokens { get; init; } = 8;

    /// <summary>smoke (tests), default, cpu (the committed run: tiny model, r = 1 with rotation and r = 16 with sharing, full
    /// fine-tuning, rates tuned on the reported 100-step horizon at 3 points a decade, 5 seeds, one base), gpu (the same on
    /// the medium model).</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["smoke", "default", "cpu", "gpu"];

    public static InstructionSpec FromPreset(string name) => name.ToLowerInvariant() switch
    {
        "smoke" => new() { Preset = "smoke", TrainFacts = 32, TestFacts = 16, ValidationFacts = 0, PretrainDocuments = 200, PretrainSteps = 20, Steps = 20, EvalPoints = 1,
            Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full] },
        "default" => new(),
        "cpu" => new()
        {
            Preset = "cpu", Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Sharing), MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], Ranks = [1, 16],
            MethodRanks = new Dictionary<string, IReadOnlyList<int>> { ["mora-rotation"] = [1], ["mora-sharing"] = [16] },
            Seeds = [0, 1, 2, 3, 4], BaseSeed = 0, AdapterLrGrid = [2.15e-3, 4.64e-3, 1e-2, 2.15e-2], FullLrGrid = [4.64e-4, 1e-3, 2.15e-3], TuneSteps = 100, TuneSeed = 100,
        },
        "gpu" => FromPreset("cpu") with { Preset = "gpu", Model = "medium", PretrainDocuments = 8000 },
        _ => throw new ArgumentException($"unknown preset '{name}'; use {string.Join(", ", PresetNames)}", nameof(Preset)),
    };

    public override InstructionSpec Validate()
    {
        Positive(TrainFacts, nameof(TrainFacts)); Positive(TestFacts, nameof(TestFacts)); NonNegative(ValidationFacts, nameof(ValidationFacts));
        Positive(PretrainDocuments, nameof(PretrainDocuments)); Positive(Context, nameof(Context)); Positive(MaxNewTokens, nameof(MaxNewTokens));
        ValidateFineTuning();
        if (Tunes && ValidationFacts == 0)
            throw new ArgumentException($"{nameof(ValidationFacts)}: tuning rates needs validation facts (tuning on the test facts would flatter every method)", nameof(ValidationFacts));
        Style.Validate();
        return this;
    }
}

/// <summary>
/// The instruction-tuning contrast (paper §4.2): a base that already holds the knowledge (arithmetic facts, pretrained as
/// drills) is fine-tuned to answer them in a new format; strict exact match of the response on facts outside the
/// fine-tuning set. Rank should not matter here, which is the contrast to memorisation. Per-item correctness is stored for
/// the bootstrap over items × seeds (<see cref="ItemScores"/>); the floor holds the base's score with the instruction
/// prompt and in its own notation. The pipeline is <see cref="Experiment{TSpec}"/>'s.
/// </summary>
public sealed class InstructionExperiment(InstructionSpec spec) : FineTuningExperiment<InstructionSpec>(spec)
{
    public const string Name = "instruct", TableFile = Name + ".csv", ItemsFile = Name + "-items.csv", FloorFile = Name + "-floor.csv", Accuracy = "accuracy", NoAnswer = "no_answer";

    public override string Kind => Name;
    readonly CharTokenizer _tokenizer = new();
    List<ArithmeticFact> _train = [], _test = [], _validation = [];
    List<LmExample> _examples = [];
    protected override bool KeepsItems => true;
    readonly Dictionary<int, InstructionFloor> _floors = [];

    /// <summary>The floors of a finished job, per seed, for <see cref="FormatTable"/> outside a run (read with <see cref="ReadFloors"/>).</summary>
    public IReadOnlyDictionary<int, InstructionFloor> Floors { init { foreach (var (k, v) in value) _floors[k] = v; } }

    /// <summary>The per-seed floors of a finished job from its <see cref="FloorFile"/> in <paramref name="folder"/>.</summary>
    public static IReadOnlyDictionary<int, InstructionFloor> ReadFloors(string folder) =>
        CsvTable.Read(Path.Combine(folder, FloorFile)).Rows.ToDictionary(r => int.Parse(r["seed"], CultureInfo.InvariantCulture), r => new InstructionFloor(
            double.Parse(r["base_accuracy"], CultureInfo.InvariantCulture), double.Parse(r["base_own_format_accuracy"], CultureInfo.InvariantCulture),
            double.Parse(r["test_facts_in_corpus"], CultureInfo.InvariantCulture)));

    /// <summary>The instruction a fact is asked with, and the response it is trained to give: <c>Instruction: Compute 12+7.</c>,
    /// a line break and <c>Response: 12+7=</c>, to be completed by <c>19.</c> and nothing more. The prompt writes the
    /// expression out again, so the response needs no copying (a skill the base was never taught); what is new is the
    /// wrapper and the answer's form: the bare value and a full stop, where a drill goes on <c>19&gt;&gt;19</c>. Scored
    /// strictly: the response's first line must be exactly that.</summary>
    public static string Prompt(ArithmeticFact f) => $"Instruction: {f.Question}\nResponse: {f.A}{f.Op}{f.B}=";
    public static string Response(ArithmeticFact f) => $"{f.C}.";
    static string Value(ArithmeticFact f) => f.C.ToString(CultureInfo.InvariantCulture);

    public static string AccuracyAt(int step) => $"{Accuracy}_step{step}";
    public override IReadOnlyList<string> Columns => [.. Spec.EvalSteps.Select(AccuracyAt)];
    public override IReadOnlyList<int> ReportRanks => Spec.Ranks;
    public override IReadOnlyList<string> ReportFiles => [.. base.ReportFiles, FloorFile, ItemsFile];
    protected override int PadId => _tokenizer.PadId;
    protected override string TunedOn => "the validation facts";
    protected override double TuningScore(RunRecord run) => run.Score(AccuracyAt(Spec.TuneSteps));

    /// <summary>Distinct facts (by operands and operation) from one stream, split into training, test and validation facts.</summary>
    protected override IReadOnlyList<InputFile> Prepare()
    {
        var rng = new Random(5151);
        var seen = new HashSet<(long, char, long)>();
        var all = new List<ArithmeticFact>();
        int wanted = Spec.TrainFacts + Spec.TestFacts + Spec.ValidationFacts;
        for (int attempts = 0; all.Count < wanted; attempts++)
        {
            if (attempts > 100 * wanted) throw new ArgumentException($"only {all.Count} distinct facts within {nameof(Spec.Style)}'s ranges; ask for fewer", nameof(Spec.TestFacts));
            var f = ArithmeticFact.Next(rng, Spec.Style);
            if (seen.Add((f.A, f.Op, f.B))) all.Add(f);
        }
        _train = all.Take(Spec.TrainFacts).ToList();
        _test = all.Skip(Spec.TrainFacts).Take(Spec.TestFacts).ToList();
        _validation = all.Skip(Spec.TrainFacts + Spec.TestFacts).ToList();
        _examples = _train.Select(f => LmData.FromPair(_tokenizer, Prompt(f), Response(f))).ToList();
        Output.WriteLine($"{_train.Count} facts to fine-tune on, {_test.Count} test and {_validation.Count} validation facts, all apart; tokenizer {_tokenizer.GetType().Name}");
        return [];
    }

    protected override string? BaseFor(int seed)
    {
        int s = Spec.BaseSeed ?? seed;
        return PretrainBase($"base-seed{s}", $"base seed {s}", s, () =>
        {
            torch.manual_seed(s);
            return new LlamaForCausalLM(LlamaConfig.Preset(Spec.Model, _tokenizer.VocabSize) with
                { MaxPositionEmbeddings = Spec.Context, BosTokenId = _tokenizer.BosId, EosTokenId = _tokenizer.EosId });
        }, () =>
        {
            var corpus = Corpus(s);
            var blocks = LmData.FromCorpus(_tokenizer, corpus, Spec.Context);
            return (blocks, $"{corpus.Count} documents ({blocks.Count} blocks)");
        });
    }

    /// <summary>The base's pretraining corpus: documents of six drills each (the GSM8K base's drill documents alone), drawn
    /// from the facts' distribution, so the base can hold nearly every fact.</summary>
    List<string> Corpus(int baseSeed)
    {
        var rng = new Random(7000 + baseSeed);
        return [.. Enumerable.Range(0, Spec.PretrainDocuments).Select(_ => string.Join('\n', Enumerable.Range(0, 6).Select(_ => ArithmeticFact.Next(rng, Spec.Style).Drill)))];
    }

    protected override IReadOnlyList<LmExample> TrainingSet(RunPlan plan) => _examples;

    /// <summary>Greedy answers to <paramref name="prompts"/>, each read up to <paramref name="end"/> (a line break, or the
    /// drill's <c>&gt;&gt;</c>).</summary>
    List<string> Answers(LlamaForCausalLM model, IEnumerable<string> prompts, string end)
    {
        var outputs = TextGenerator.Generate(model, prompts.Select(p => LmData.PromptTokens(_tokenizer, p)).ToList(),
            new GenerationOptions { MaxNewTokens = Spec.MaxNewTokens, EosId = _tokenizer.EosId, BatchSize = 64 });
        return outputs.Select(o =>
        {
            string text = _tokenizer.Decode(o);
            int at = text.IndexOf(end, StringComparison.Ordinal);
            return (at >= 0 ? text[..at] : text).Trim();
        }).ToList();
    }

    static (IReadOnlyList<string> Answers, IReadOnlyList<bool> Right) Score(IReadOnlyList<ArithmeticFact> facts, IReadOnlyList<string> answers, Func<ArithmeticFact, string> expected) =>
        (answers, [.. facts.Select((f, i) => answers[i] == expected(f))]);

    protected override IReadOnlyDictionary<string, double> Evaluate(LlamaForCausalLM model, RunPlan plan)
    {
        var facts = plan.Tuning ? _validation : _test;
        var scored = Score(facts, Answers(model, facts.Select(Prompt), "\n"), Response);
        if (!plan.Tuning) RecordItems(plan, [.. _test.Select(Response)], scored.Answers, scored.Right);
        return new Dictionary<string, double> { [Accuracy] = scored.Right.Average(r => r ? 1.0 : 0.0), [NoAnswer] = scored.Answers.Average(a => a.EndsWith('.') ? 0.0 : 1.0) };
    }

    protected override IEnumerable<KeyValuePair<string, double>> Scores(TrainResult result, RunPlan plan) => AtSteps(result, Accuracy, StepsOf(plan));

    /// <summary>The base's floor on the test facts, measured once per base and cached beside it.</summary>
    protected override void BeforeSeed(int seed, string? baseDir)
    {
        _floors[seed] = ExperimentFolder.Cached(ItemScores.FloorCache(Path.GetDirectoryName(baseDir)!, baseDir!, _test.Select(f => f.Drill)), () =>
        {
            using var model = ModelIO.Load(baseDir!);
            var drills = Corpus(Spec.BaseSeed ?? seed).SelectMany(d => d.Split('\n')).ToHashSet();
            double Mean(IEnumerable<bool> xs) => xs.Average(x => x ? 1.0 : 0.0);
            return new InstructionFloor(Mean(Score(_test, Answers(model, _test.Select(Prompt), "\n"), Response).Right),
                Mean(Score(_test, Answers(model, _test.Select(f => f.DrillPrompt), ">>"), Value).Right), Mean(_test.Select(f => drills.Contains(f.Drill))));
        });
    }

    /// <summary>Writes <see cref="FloorFile"/> (per seed: the base's exact match with the instruction prompt, in its own drill
    /// notation, and the share of test facts in its corpus) and <see cref="ItemsFile"/>.</summary>
    protected override IEnumerable<string> WriteExtras(JobResult result)
    {
        ItemScores.WriteFloor(Path.Combine(OutDir, FloorFile), Spec.Seeds, "base_accuracy,base_own_format_accuracy,test_facts_in_corpus",
            s => [_floors[s].Accuracy, _floors[s].OwnFormatAccuracy, _floors[s].InCorpus]);
        AtomicFile.WriteText(Path.Combine(OutDir, ItemsFile), ItemScores.Collect(result.Runs, RunDir, _test.Count));
        return [FloorFile, ItemsFile];
    }

    /// <summary>Strict exact match (%) of the response on the test facts by step, per method and rank, mean [95 % interval]
    /// over seeds; the base's floor and knowledge; each method's paired difference from LoRA at the last step; the rates.</summary>
    public override string FormatTable(JobResult result)
    {
        var steps = Spec.EvalSteps;
        var sb = new StringBuilder(SeedReport.MeanTable(
            $"Exact match (%) of the response on {Spec.TestFacts} arithmetic facts asked as instructions, by training step ({Spec.Model} model, {Spec.TrainFacts} facts fine-tuned on, seeds {string.Join(",", Spec.Seeds)}{(Spec.Seeds.Count > 1 ? "; mean [95 % interval] over seeds" : "; one seed, so no interval")})",
            result.Groups, [.. steps.Select(s => ($"step {s}", AccuracyAt(s)))]));
        if (_floors.Count > 0)
        {
            var f = _floors.Values.First();
            sb.AppendLine($"Base before fine-tuning: {100 * f.Accuracy:0.0} % with the instruction prompt (the floor), {100 * f.OwnFormatAccuracy:0.0} % in its own drill notation " +
                          $"(what it knows); {100 * f.InCorpus:0.0} % of the test facts are drills of its corpus ({FloorFile}).");
        }
        if (Spec.Seeds.Count > 1)
            foreach (var line in SeedReport.PairedLines(Paired(result.Runs, AccuracyAt(steps[^1])), AccuracyAt(steps[^1]), $"step {steps[^1]}")) sb.AppendLine(line);
        if (Spec.Tunes) sb.AppendLine(RatesLine(Spec, result.Sweep, $"exact match on {Spec.ValidationFacts} validation facts"));
        return sb.ToString().TrimEnd();
    }
}

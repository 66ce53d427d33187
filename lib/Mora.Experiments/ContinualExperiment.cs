using System.Globalization;
using System.Text;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.Figures;
using Mora.Model;
using Mora.Training;
using TorchSharp;

namespace Mora.Experiments;


/// <summary>Settings of the continual-pretraining experiment (paper §4.3 in spirit, at the kit's scale): a base is pretrained
/// on an original domain (fictional people, in prose and as questions, plus a few companies so it knows the company
/// questions), then training continues on a new domain (prose about <see cref="NewEntities"/> new companies) with each
/// method. Acquisition: exact match and character accuracy of greedy answers to questions about the new facts, asked in a
/// phrasing no training text uses. Forgetting: the held-out loss on the original domain, before and after.
/// <para>Each method's learning rate is tuned first by the rule every reproduction uses (<see cref="LearningRateSweep"/>):
/// every value of its grid (<see cref="FineTuningSpec.AdapterLrGrid"/>, <see cref="FineTuningSpec.FullLrGrid"/>) trains for
/// <see cref="ExperimentSpec.TuneSteps"/> steps on <see cref="ExperimentSpec.TuneSeed"/> (other new companies than any
/// evaluation seed's). The score it maximises is minus the final answer loss on the new facts: the teacher-forced loss of
/// the true answers after the questions measures acquisition like the greedy answers do, but does not jump by whole
/// characters, so a short sweep on 36 questions can rank the rates.</para>
/// <para>One base (initialised and pretrained from <see cref="FineTuningSpec.BaseSeed"/>, which this experiment requires)
/// serves every run; a seed draws its new companies, their documents, the data order and the adapters' initialisation.</para></summary>
public sealed record ContinualSpec : FineTuningSpec
{
    public ContinualSpec()
    {
        PretrainSteps = 400; Steps = 150; BatchSize = 16; AdapterLr = 1e-2; FullLr = 1e-3; PretrainLr = 3e-3; EvalPoints = 3;
        Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Sharing), MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full];
        Seeds = [0, 1, 2, 3, 4]; BaseSeed = 0;
        AdapterLrGrid = LearningRateSweep.LogGrid(1e-3, 4); FullLrGrid = LearningRateSweep.LogGrid(1e-4, 4); TuneSteps = 60; TuneSeed = 100;
    }

    /// <summary>Companies of the new domain (three facts each).</summary>
    public int NewEntities { get; init; } = 12;
    /// <summary>Prose documents about each new company (each states its three facts in drawn templates and order).</summary>
    public int DocumentsPerEntity { get; init; } = 8;
    /// <summary>People of the original domain (prose and questions in pretraining).</summary>
    public int OriginalEntities { get; init; } = 40;
    /// <summary>Other companies in pretraining (prose and questions), so the base knows how company questions are answered.</summary>
    public int FormatEntities { get; init; } = 40;
    /// <summary>Questions about the format companies (the pretraining ones, never a new company) mixed into the new domain's
    /// training set, so that continued training on prose alone does not erase how questions are answered (0 = none).</summary>
    public int ReplayQuestions { get; init; } = 120;
    /// <summary>Prose documents per entity in pretraining.</summary>
    public int PretrainDocumentsPerEntity { get; init; } = 4;
    /// <summary>Original-domain questions scored for retention (the first ones; they were trained in pretraining).</summary>
    public int OriginalQuestions { get; init; } = 60;
    /// <summary>A local Hugging Face model folder (config.json, safetensors weights, tokenizer.json) continued as it is
    /// instead of a base pretrained on the original domain (<see cref="GivenBase"/>); every text is tokenized with its
    /// tokenizer. The original domain is then text the base never trained on: forgetting is the drift of its held-out
    /// loss there, and retention starts from what the base answers without having seen it.</summary>
    public string? BaseModel { get; init; }
    /// <summary>Teach the question format on the new domain itself: the questions about the first half of each seed's new
    /// companies (in the held-out phrasing, loss on the answer) join its training set, and acquisition is scored on the
    /// other half's questions only. What is measured is then the facts read from prose, not whether a model that was
    /// never asked about the new companies answers in the right form (without it, the committed run sat near the base's
    /// guessing floor).</summary>
    public bool QuestionsOnHalf { get; init; }
    /// <summary>Report the acquisition–forgetting frontier instead of one tuned point per method
    /// (<see cref="ContinualFrontier"/>): every rate of the grids trains on every seed at the full horizon, the k-th
    /// adapter rate beside the k-th full fine-tuning rate, all from one base; nothing is tuned.</summary>
    public bool Frontier { get; init; }

    /// <summary>smoke (tests and the notebook's fast preset, seconds), notebook (notebook 07's full preset: 3 seeds, minutes),
    /// default (5 seeds), cpu (the committed tuned run: 10 seeds, about 10 minutes on 2 shared cores with OMP_NUM_THREADS=1),
    /// frontier (the committed frontier: questions on half the new companies, 6 rates at 3 a decade per method, 5 seeds,
    /// about 32 minutes) and frontier-smoke (the frontier at test size).</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["smoke", "notebook", "default", "cpu", "frontier", "frontier-smoke"];

    public static ContinualSpec FromPreset(string name) => name.ToLowerInvariant() switch
    {
        "smoke" => new()
        {
            Preset = "smoke", NewEntities = 4, DocumentsPerEntity = 2, OriginalEntities = 12, FormatEntities = 4, PretrainDocumentsPerEntity = 2,
            OriginalQuestions = 6, ReplayQuestions = 6, PretrainSteps = 20, Steps = 8, TuneSteps = 4, EvalPoints = 2, Seeds = [0, 1], BatchSize = 8,
            Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full],
            AdapterLrGrid = [3e-3, 3e-2], FullLrGrid = [3e-4, 3e-3],
        },
        "notebook" => new() { Preset = "notebook", Seeds = [0, 1, 2] },     // the cpu run's settings at 3 seeds
        "default" => new(),
        "cpu" => new() { Preset = "cpu", Seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] },
        "frontier" => new()
        {
            Preset = "frontier", QuestionsOnHalf = true, Frontier = true,
            AdapterLrGrid = [1e-3, 2.15e-3, 4.64e-3, 1e-2, 2.15e-2, 4.64e-2], FullLrGrid = [1e-4, 2.15e-4, 4.64e-4, 1e-3, 2.15e-3, 4.64e-3],
        },
        "frontier-smoke" => FromPreset("smoke") with { Preset = "frontier-smoke", QuestionsOnHalf = true, Frontier = true },
        _ => throw new ArgumentException($"unknown preset '{name}'; use {string.Join(", ", PresetNames)}", nameof(Preset)),
    };

    /// <summary>Checks every setting; throws <see cref="ArgumentException"/> naming the property.</summary>
    public override ContinualSpec Validate()
    {
        Positive(NewEntities, nameof(NewEntities)); Positive(DocumentsPerEntity, nameof(DocumentsPerEntity));
        Positive(OriginalEntities, nameof(OriginalEntities)); Positive(FormatEntities, nameof(FormatEntities));
        Positive(PretrainDocumentsPerEntity, nameof(PretrainDocumentsPerEntity)); Positive(OriginalQuestions, nameof(OriginalQuestions));
        if (ReplayQuestions < 0 || ReplayQuestions > 3 * FormatEntities)
            throw new ArgumentException($"{nameof(ReplayQuestions)} must be in 0 … {3 * FormatEntities} (the questions of {FormatEntities} format companies), got {ReplayQuestions}", nameof(ReplayQuestions));
        if (OriginalQuestions > 3 * OriginalEntities)
            throw new ArgumentException($"{nameof(OriginalQuestions)} {OriginalQuestions} exceeds the {3 * OriginalEntities} questions of {OriginalEntities} people", nameof(OriginalQuestions));
        GivenBase.CheckExists(BaseModel);
        if (BaseSeed is null) throw new ArgumentException($"{nameof(BaseSeed)}: this experiment continues every run from one shared base; name its seed", nameof(BaseSeed));
        if (QuestionsOnHalf && NewEntities < 2)
            throw new ArgumentException($"{nameof(NewEntities)}: {nameof(QuestionsOnHalf)} trains the questions of half the new companies and scores the other half; it needs at least 2, got {NewEntities}", nameof(NewEntities));
        // A job that tunes (the command line's tuned presets) or a frontier names a grid for each kind of method it runs;
        // a fixed-rate job (a point of the frontier, made by ContinualFrontier) names none.
        bool fixedRates = AdapterLrGrid.Count == 0 && FullLrGrid.Count == 0 && !Frontier;
        foreach (var (grid, full, name) in new[] { (AdapterLrGrid, false, nameof(AdapterLrGrid)), (FullLrGrid, true, nameof(FullLrGrid)) })
            if (!fixedRates && grid.Count == 0 && Methods.Any(m => (m.Method == AdapterMethod.Full) == full))
                throw new ArgumentException($"{name}: this experiment {(Frontier ? "trains every rate of a grid" : "tunes every method's rate")}; name a grid", name);
        foreach (var (grid, name) in new[] { (AdapterLrGrid, nameof(AdapterLrGrid)), (FullLrGrid, nameof(FullLrGrid)) })
            if (Frontier && grid.Select(LearningRateSweep.Lr).Distinct().Count() != grid.Count)
                throw new ArgumentException($"{name}: the frontier names each rate's folder by its rate to 3 significant digits; two rates print alike ({string.Join(", ", grid.Select(LearningRateSweep.Lr))})", name);
        if (Frontier && Methods.Any(m => m.Method == AdapterMethod.Full) && Methods.Any(m => m.Method != AdapterMethod.Full) && AdapterLrGrid.Count != FullLrGrid.Count)
            throw new ArgumentException($"{nameof(FullLrGrid)}: the frontier pairs the k-th adapter rate with the k-th full fine-tuning rate; give as many ({AdapterLrGrid.Count}), got {FullLrGrid.Count}", nameof(FullLrGrid));
        ValidateFineTuning();
        return this;
    }
}

/// <summary>The data of one experiment: the original domain (pretraining set, held-out documents, retention questions),
/// and for a seed the new companies, their prose and their questions.</summary>
public sealed class ContinualData
{
    public ITextTokenizer Tokenizer { get; }
    public IReadOnlyList<FictionalEntity> People { get; }
    public IReadOnlyList<FictionalEntity> FormatCompanies { get; }
    /// <summary>The base's pretraining examples: people and format companies in prose (loss everywhere) and as questions (loss on the answer).</summary>
    public IReadOnlyList<LmExample> Pretraining { get; }
    /// <summary>One further document per person, drawn apart from the pretraining ones: the held-out split of the original data.</summary>
    public IReadOnlyList<string> HeldOutDocuments { get; }
    public IReadOnlyList<LmExample> HeldOut { get; }
    /// <summary>Original-domain questions scored for retention (trained in pretraining).</summary>
    public IReadOnlyList<FactQuestion> OriginalQuestions { get; }
    /// <summary>Format-company questions replayed during continued training (<see cref="ContinualSpec.ReplayQuestions"/>).</summary>
    public IReadOnlyList<LmExample> Replay { get; }
    readonly HashSet<string> _names;
    readonly ContinualSpec _spec;

    /// <param name="spec">the experiment's settings</param>
    /// <param name="tokenizer">the base's tokenizer (default: the kit's character tokenizer)</param>
    public ContinualData(ContinualSpec spec, ITextTokenizer? tokenizer = null)
    {
        _spec = spec;
        Tokenizer = tokenizer ?? new CharTokenizer();
        _names = [];
        People = FictionalFacts.Generate(EntityKind.Person, spec.OriginalEntities, seed: 31_000, _names);
        FormatCompanies = FictionalFacts.Generate(EntityKind.Company, spec.FormatEntities, seed: 32_000, _names);
        var docs = FictionalFacts.Documents(People, spec.PretrainDocumentsPerEntity, seed: 33_000)
            .Concat(FictionalFacts.Documents(FormatCompanies, spec.PretrainDocumentsPerEntity, seed: 34_000));
        var questions = FictionalFacts.Questions(People).Concat(FictionalFacts.Questions(FormatCompanies));
        Pretraining = docs.Select(Document).Concat(questions.Select(q => LmData.FromPair(Tokenizer, q.Question, q.Answer, maskPrompt: true))).ToList();
        HeldOutDocuments = FictionalFacts.Documents(People, 1, seed: 35_000);
        HeldOut = HeldOutDocuments.Select(Document).ToList();
        OriginalQuestions = FictionalFacts.Questions(People).Take(spec.OriginalQuestions).ToList();
        Replay = FictionalFacts.Questions(FormatCompanies).Take(spec.ReplayQuestions).Select(q => LmData.FromPair(Tokenizer, q.Question, q.Answer, maskPrompt: true)).ToList();
    }

    LmExample Document(string text) => new([Tokenizer.BosId, .. Tokenizer.Encode(text), Tokenizer.EosId], 0);

    /// <summary>The new domain of <paramref name="seed"/>: its companies (names distinct from the original domain's), their
    /// prose, the training examples (the prose, then the replayed format-company questions, then with
    /// <see cref="ContinualSpec.QuestionsOnHalf"/> the questions about the first half of the companies), and the questions
    /// acquisition is scored on (every company's, or with <see cref="ContinualSpec.QuestionsOnHalf"/> the second half's).</summary>
    public (IReadOnlyList<FictionalEntity> Companies, IReadOnlyList<string> Documents, IReadOnlyList<LmExample> Train, IReadOnlyList<FactQuestion> Questions) NewDomain(int seed)
    {
        var companies = FictionalFacts.Generate(EntityKind.Company, _spec.NewEntities, seed: 40_000 + seed, new HashSet<string>(_names));
        var documents = FictionalFacts.Documents(companies, _spec.DocumentsPerEntity, seed: 50_000 + seed);
        var train = documents.Select(Document).Concat(Replay);
        if (!_spec.QuestionsOnHalf) return (companies, documents, train.ToList(), FictionalFacts.Questions(companies));
        int taught = companies.Count / 2;
        var format = FictionalFacts.Questions(companies.Take(taught)).Select(q => LmData.FromPair(Tokenizer, q.Question, q.Answer, maskPrompt: true));
        return (companies, documents, train.Concat(format).ToList(), FictionalFacts.Questions(companies.Skip(taught)));
    }

    public static IReadOnlyList<(string Prompt, string Answer)> Prompts(IEnumerable<FactQuestion> questions) => questions.Select(q => (q.Question, q.Answer)).ToList();
}


/// <summary>
/// The continual-pretraining experiment: one base (<c>base/</c>, its held-out loss and retention in
/// <c>base/result.json</c>) continued with each method on a seed's new domain; scores of acquisition (answers on the new
/// facts, and their teacher-forced loss) and forgetting (held-out loss and retained answers of the original domain),
/// each beside the base's value before. Its figures are the method means by step (<c>continual-acquisition</c>,
/// <c>continual-forgetting</c>). The pipeline is <see cref="Experiment{TSpec}"/>'s.
/// </summary>
/// <param name="spec">the settings</param>
/// <param name="sharedBase">the folder of a base that several jobs continue (the frontier's rate points, one folder each),
/// pretrained there on first use; default <c>base/</c> in the job's own folder</param>
public sealed class ContinualExperiment(ContinualSpec spec, string? sharedBase = null) : FineTuningExperiment<ContinualSpec>(spec)
{
    public const string Name = "continual", TableFile = Name + ".csv", SummaryFile = Name + "-summary.csv", PairedFile = Name + "-paired.csv", SweepFile = LearningRateSweep.File;
    /// <summary>The metrics each evaluation logs.</summary>
    public const string NewExact = "new_exact_match", NewChar = "new_char_acc", NewAnswerLoss = "new_answer_loss", HeldOutLoss = "heldout_loss", OriginalExact = "orig_exact_match";
    /// <summary>Scores beside them: the base's before training, and forgetting (the rise of the held-out loss, nats per token).</summary>
    public const string NewCharBefore = "new_char_acc_before", NewAnswerLossBefore = "new_answer_loss_before", HeldOutLossBefore = "heldout_loss_before",
        HeldOutLossAfter = "heldout_loss_after", Forgetting = "forgetting", OriginalExactBefore = "orig_exact_match_before";

    /// <summary>Runs the job (see <see cref="Experiment{TSpec}.Run"/>).</summary>
    public static JobResult Run(ContinualSpec spec, string outDir, TextWriter? output = null, CancellationToken cancel = default, RunOptions? options = null) =>
        new ContinualExperiment(spec).Run(outDir, output, cancel, options);

    /// <summary>The base model's held-out loss and retention score (the "before" of forgetting).</summary>
    public sealed record BaseMetrics(double HeldOutLoss, double OriginalExactMatch, double OriginalCharAccuracy);

    public override string Kind => Name;
    ContinualData _data = null!;
    BaseMetrics? _base;
    GivenBase? _given;
    /// <summary>What a loss is per: a character (the kit's tokenizer) or a token (a given base's tokenizer.json).</summary>
    internal string Unit => Spec.BaseModel is { } b && File.Exists(Path.Combine(b, ModelIO.TokenizerFile)) ? "token" : "char";

    public override IReadOnlyList<string> Columns =>
        [NewExact, NewChar, NewCharBefore, NewAnswerLoss, NewAnswerLossBefore, HeldOutLossBefore, HeldOutLossAfter, Forgetting, OriginalExactBefore, OriginalExact];
    /// <summary>The measures the summary and the paired table report (acquisition, then forgetting).</summary>
    public static IReadOnlyList<string> Measures { get; } = [NewExact, NewChar, NewAnswerLoss, HeldOutLossAfter, Forgetting, OriginalExact];
    public override IReadOnlyList<string> SummaryScores => Measures;
    /// <summary>MoRA against LoRA at the same rank (full fine-tuning is reported, not compared).</summary>
    public override IReadOnlyList<(string Method, string Baseline)> Comparisons =>
        Spec.Methods.Where(m => m.Method == AdapterMethod.Mora).Select(m => (m.Name, MethodSpec.Lora.Name)).ToList();
    public override IReadOnlyList<int> ReportRanks => Spec.Ranks;
    public override IReadOnlyList<string> ReportFiles => [.. base.ReportFiles, .. FigureFiles];
    /// <summary>A fixed-rate job (a point of the frontier, where high rates are tried on purpose) records a run that
    /// diverges and leaves it out of the statistics; a tuned job stops.</summary>
    protected override bool RecordsDivergedRuns => !Spec.Tunes;
    protected override int PadId => _data.Tokenizer.PadId;
    protected override string TunedOn => "the tuning seed's new facts";
    protected override Func<double, string>? ShowTuningScore => score => $"answer loss {-score:F4}";
    /// <summary>Minus the final answer loss on the tuning seed's new facts: the teacher-forced loss of the true answers
    /// measures acquisition as the greedy answers do, but does not jump by whole characters, so a short sweep on a few
    /// dozen questions can rank the rates.</summary>
    protected override double TuningScore(RunRecord run) => -run.Score(NewAnswerLoss);

    protected override IReadOnlyList<InputFile> Prepare()
    {
        if (Spec.Frontier)
            throw new ArgumentException($"{nameof(ContinualSpec.Frontier)}: a frontier spec trains every rate of its grids; run it as a {nameof(ContinualFrontier)} (continual --preset frontier), not as one tuned job", nameof(ContinualSpec.Frontier));
        _domains.Clear();
        _base = null;
        _given = Spec.BaseModel is { } dir ? GivenBase.Read(dir) : null;     // weights against config, tokenizer against vocab_size
        _data = new ContinualData(Spec, _given?.Tokenizer);
        if (_given is not null)
        {
            // What a given base sees: the held-out documents, the new domain's prose, questions and replay (no pretraining).
            int longest = _data.HeldOut.Concat(_data.Replay).Concat(Spec.Seeds.Append(Spec.TuneSeed).SelectMany(s => Domain(s).Train.Concat(Domain(s).Answers)))
                .Max(e => e.Tokens.Length);
            _given.CheckLength(longest, "the longest document or question of the original and new domains");
            Output.WriteLine(_given.Describe());
        }
        else
        {
            int longest = _data.Pretraining.Concat(_data.HeldOut).Max(e => e.Tokens.Length);
            int context = LlamaConfig.Preset(Spec.Model, _data.Tokenizer.VocabSize).MaxPositionEmbeddings;
            if (longest > context) throw new ArgumentException($"{nameof(Spec.Model)} {Spec.Model} has a context of {context} tokens; the data needs {longest}", nameof(Spec.Model));
        }
        Output.WriteLine($"original domain: {_data.People.Count} people ({_data.Pretraining.Count} pretraining examples with {_data.FormatCompanies.Count} format companies), " +
                         $"{_data.HeldOut.Count} held-out documents; new domain: {Spec.NewEntities} companies × {Spec.DocumentsPerEntity} documents per seed, with {_data.Replay.Count} replayed format-company questions" +
                         (Spec.QuestionsOnHalf ? $"; the questions on {Spec.NewEntities / 2} of its companies trained, acquisition scored on the other {Spec.NewEntities - Spec.NewEntities / 2}'s" : ""));
        return _given?.Inputs ?? [];
    }

    /// <summary>The one base (every seed's), pretrained on the original domain; its held-out loss and retention measured once.</summary>
    protected override string? BaseFor(int seed)
    {
        var tok = _data.Tokenizer;
        // A given base is continued as it is; its scores go to base/ of the output folder (never into the user's folder).
        string modelDir = _given?.Dir ?? PretrainBase(sharedBase ?? "base", "base", Spec.BaseSeed!.Value, () =>
        {
            torch.manual_seed(Spec.BaseSeed!.Value);
            return new LlamaForCausalLM(LlamaConfig.Preset(Spec.Model, tok.VocabSize) with { BosTokenId = tok.BosId, EosTokenId = tok.EosId });
        }, () => (_data.Pretraining, "the original domain"));
        string scores = _given is not null ? Path.Combine(OutDir, "base", ExperimentFolder.ResultFile) : Path.Combine(Path.GetDirectoryName(modelDir)!, ExperimentFolder.ResultFile);
        _base ??= ExperimentFolder.Cached(scores, () =>
        {
            using var model = ModelIO.Load(modelDir);
            var orig = Metrics.Answers(model, tok, ContinualData.Prompts(_data.OriginalQuestions));
            var before = new BaseMetrics(Metrics.HeldOutLoss(model, _data.HeldOut, tok.PadId), orig.ExactMatch, orig.CharAccuracy);
            Output.WriteLine($"base: held-out loss {before.HeldOutLoss:F4} nats/{Unit}, original answers exact {100 * before.OriginalExactMatch:F1} %");
            return before;
        });
        return modelDir;
    }

    readonly Dictionary<int, (IReadOnlyList<LmExample> Train, IReadOnlyList<(string, string)> Prompts, List<LmExample> Answers)> _domains = [];

    (IReadOnlyList<LmExample> Train, IReadOnlyList<(string, string)> Prompts, List<LmExample> Answers) Domain(int seed)
    {
        if (_domains.TryGetValue(seed, out var d)) return d;
        var (_, _, train, questions) = _data.NewDomain(seed);
        return _domains[seed] = (train, ContinualData.Prompts(questions), questions.Select(q => LmData.FromPair(_data.Tokenizer, q.Question, q.Answer, maskPrompt: true)).ToList());
    }

    protected override IReadOnlyList<LmExample> TrainingSet(RunPlan plan) => Domain(plan.Seed).Train;
    protected override string Note(RunPlan plan) => $", {plan.Steps} steps on {Domain(plan.Seed).Train.Count} examples (new prose, {_data.Replay.Count} replayed questions" +
        (Spec.QuestionsOnHalf ? $" and the questions on {Spec.NewEntities / 2} of the {Spec.NewEntities} new companies)" : ")");

    protected override IEnumerable<KeyValuePair<string, double>> Before(LlamaForCausalLM baseModel, RunPlan plan)
    {
        var (_, prompts, answers) = Domain(plan.Seed);
        yield return KeyValuePair.Create(NewCharBefore, Metrics.Answers(baseModel, _data.Tokenizer, prompts).CharAccuracy);
        yield return KeyValuePair.Create(NewAnswerLossBefore, Metrics.HeldOutLoss(baseModel, answers, _data.Tokenizer.PadId));
        yield return KeyValuePair.Create(HeldOutLossBefore, _base!.HeldOutLoss);
        yield return KeyValuePair.Create(OriginalExactBefore, _base.OriginalExactMatch);
    }

    protected override IReadOnlyDictionary<string, double> Evaluate(LlamaForCausalLM m, RunPlan plan)
    {
        var (_, prompts, answers) = Domain(plan.Seed);
        var tok = _data.Tokenizer;
        var acquired = Metrics.Answers(m, tok, prompts);
        return new Dictionary<string, double>
        {
            [NewExact] = acquired.ExactMatch, [NewChar] = acquired.CharAccuracy, [NewAnswerLoss] = Metrics.HeldOutLoss(m, answers, tok.PadId),
            [HeldOutLoss] = Metrics.HeldOutLoss(m, _data.HeldOut, tok.PadId), [OriginalExact] = Metrics.Answers(m, tok, ContinualData.Prompts(_data.OriginalQuestions)).ExactMatch,
        };
    }

    protected override IEnumerable<KeyValuePair<string, double>> Scores(TrainResult result, RunPlan plan)
    {
        var m = result.FinalMetrics;
        return new Dictionary<string, double>
        {
            [NewExact] = m[NewExact], [NewChar] = m[NewChar], [NewAnswerLoss] = m[NewAnswerLoss], [HeldOutLossAfter] = m[HeldOutLoss],
            [Forgetting] = m[HeldOutLoss] - _base!.HeldOutLoss, [OriginalExact] = m[OriginalExact],
        };
    }

    /// <summary>Method means over seeds of <paramref name="metric"/> by evaluation step, one curve per method and rank (from the runs' logs).</summary>
    /// <param name="leaveOut">names of run folders left out (runs that diverged: their rows before divergence are not results)</param>
    public static List<Curve> MeanCurves(string runsRoot, string metric, IReadOnlySet<string>? leaveOut = null)
    {
        var curves = new List<Curve>();
        foreach (var g in RunFigures.FindRuns(runsRoot).Where(r => leaveOut is null || !leaveOut.Contains(r.Name)).GroupBy(r => r.Name[..r.Name.LastIndexOf("-seed", StringComparison.Ordinal)]))
        {
            var points = g.SelectMany(r => r.Log.Rows.Where(x => x.Metrics.ContainsKey(metric)).Select(x => (x.Step, Value: x.Metrics[metric])))
                .GroupBy(p => p.Step).OrderBy(p => p.Key).ToList();
            if (points.Count == 0) continue;
            curves.Add(new Curve(g.Key, points.Select(p => (double)p.Key).ToList(), points.Select(p => p.Average(x => x.Value)).ToList()));
        }
        return curves;
    }

    /// <summary>The figure files the job writes next to its tables.</summary>
    public static IReadOnlyList<string> FigureFiles { get; } =
        ["continual-acquisition.html", "continual-acquisition.png", "continual-forgetting.html", "continual-forgetting.png"];

    protected override IEnumerable<string> WriteExtras(JobResult result)
    {
        string root = Path.Combine(OutDir, "runs");
        string seeds = $"mean of {Spec.Seeds.Count} seed{(Spec.Seeds.Count > 1 ? "s" : "")}";
        var diverged = result.Runs.Where(r => r.Diverged).Select(r => Path.GetFileName(RunDir(r))).ToHashSet();
        // A job whose every run diverged before its first evaluation still writes its figures, saying so.
        static List<Curve> OrNote(List<Curve> c) => c.Count > 0 ? c : [new Curve("no run reached an evaluation (every run diverged)", [0], [0])];
        RunFigures.Write(OrNote(MeanCurves(root, NewChar, diverged)), $"acquisition: new-fact answers, char accuracy ({seeds})", "step", "character accuracy", Path.Combine(OutDir, "continual-acquisition"));
        RunFigures.Write(OrNote(MeanCurves(root, HeldOutLoss, diverged)), $"forgetting: original-domain held-out loss ({seeds})", "step", Unit == "char" ? "nats per character" : "nats per token", Path.Combine(OutDir, "continual-forgetting"));
        return FigureFiles;
    }

    /// <summary>What acquisition is scored on, as the tables say it.</summary>
    internal string Scored => Spec.QuestionsOnHalf ? $"; questions on {Spec.NewEntities / 2} of them trained, acquisition scored on the other {Spec.NewEntities - Spec.NewEntities / 2}'s" : "";

    internal static bool LossLike(string measure) => measure.Contains("loss", StringComparison.Ordinal) || measure == Forgetting;

    /// <summary>The printed table: the base's scores, per method the chosen rate, acquisition and forgetting as mean
    /// [95 % interval] over seeds, the rule, then the per-seed paired MoRA − LoRA differences.</summary>
    public override string FormatTable(JobResult result)
    {
        var runs = result.Runs.Where(r => !r.Diverged).ToList();
        if (runs.Count == 0) return $"Continual pretraining: every one of the {result.Runs.Count} runs diverged (rates adapters {LearningRateSweep.Lr(Spec.AdapterLr)}, full {LearningRateSweep.Lr(Spec.FullLr)}).";
        string M(IEnumerable<RunRecord> l, string s, int width) => (LossLike(s) ? SeedStatistics.Mean95(l.Select(x => x.Score(s))).Format(1, "0.0000") : SeedStatistics.Mean95(l.Select(x => x.Score(s))).Format(100)).PadLeft(width);
        var sb = new StringBuilder();
        sb.AppendLine($"Continual pretraining on a new domain ({Spec.NewEntities} fictional companies × 3 facts, {Spec.DocumentsPerEntity} prose documents each{Scored}; {(Spec.BaseModel is { } b ? $"base {b}" : $"{Spec.Model} model")}, {Spec.Steps} steps; " +
                      $"seeds {string.Join(",", Spec.Seeds)}; mean [95 % t interval] over seeds)");
        sb.AppendLine($"base: held-out loss on the original domain {runs[0].Score(HeldOutLossBefore):F4} nats/{Unit}, original answers exact match {100 * runs[0].Score(OriginalExactBefore):F1} %; " +
                      $"on the new facts (mean over seeds) char accuracy {100 * runs.Average(x => x.Score(NewCharBefore)):F1} %, answer loss {runs.Average(x => x.Score(NewAnswerLossBefore)):F4} nats/{Unit}");
        sb.AppendLine($"{"method",-14} {"r",3} {"params",9} {"lr",7} {"new exact %",20} {"new char acc %",20} {"new answer loss",24} {"held-out loss",24} {"forgetting (Δ loss)",24} {"orig exact %",20}");
        foreach (var g in runs.GroupBy(r => (r.Method, r.Rank)))
        {
            var l = g.ToList();
            sb.AppendLine($"{g.Key.Method,-14} {(g.Key.Rank == 0 ? "-" : g.Key.Rank.ToString(CultureInfo.InvariantCulture)),3} {l[0].TrainableParameters,9:N0} {LearningRateSweep.Lr(l[0].LearningRate),7} " +
                          $"{M(l, NewExact, 20)} {M(l, NewChar, 20)} {M(l, NewAnswerLoss, 24)} {M(l, HeldOutLossAfter, 24)} {M(l, Forgetting, 24)} {M(l, OriginalExact, 20)}");
        }
        sb.AppendLine(Spec.Tunes
            ? "Rates: " + LearningRateSweep.Rule(Spec.AdapterLrGrid, Spec.TuneSteps, Spec.TuneSeed, "score (minus the teacher-forced answer loss on the tuning seed's new facts)")
              + $"; full fine-tuning over {{{string.Join(", ", Spec.FullLrGrid.Select(LearningRateSweep.Lr))}}}."
            : $"Rates fixed, not tuned (a point of the frontier): adapters {LearningRateSweep.Lr(Spec.AdapterLr)}, full fine-tuning {LearningRateSweep.Lr(Spec.FullLr)}.");
        var paired = Paired(runs);
        if (paired.Count > 0)
        {
            sb.AppendLine("Paired per seed, MoRA − LoRA at the same rank (mean [95 % interval]; an interval that spans 0 does not resolve the difference):");
            foreach (var p in paired)
                sb.AppendLine($"  {p.Method} − {p.Baseline}, r = {p.Rank}, {p.Metric}: {(LossLike(p.Metric) ? p.Difference.Format(1, "0.0000") : p.Difference.Format(100) + " points")}");
        }
        return sb.ToString().TrimEnd();
    }

    /// <summary>The closing verdict on acquisition for one MoRA method: ✓ when the paired interval of the answer character
    /// accuracy lies above 0, ✗ when below, else "not resolved at this scale".</summary>
    public string Verdict(IReadOnlyList<RunRecord> runs, string moraMethod, int rank)
    {
        var d = Paired(runs, NewChar).FirstOrDefault(p => p.Method == moraMethod && p.Rank == rank)?.Difference;
        if (d is null) return "not measured";
        return d.AboveZero ? "✓ (MoRA absorbs more)" : d.BelowZero ? "✗ (LoRA absorbs more)" : "not resolved at this scale";
    }
}

using System.Globalization;
using System.Text;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.Figures;
using Mora.IO;
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
/// every value of its grid (<see cref="ExperimentSpec.AdapterLrGrid"/>, <see cref="ExperimentSpec.FullLrGrid"/>) trains for
/// <see cref="ExperimentSpec.TuneSteps"/> steps on <see cref="ExperimentSpec.TuneSeed"/> (other new companies than any
/// evaluation seed's). The score it maximises is minus the final answer loss on the new facts: the teacher-forced loss of
/// the true answers after the questions measures acquisition like the greedy answers do, but does not jump by whole
/// characters, so a short sweep on 36 questions can rank the rates.</para>
/// <para>One base (initialised and pretrained from <see cref="ExperimentSpec.BaseSeed"/>, which this experiment requires)
/// serves every run; a seed draws its new companies, their documents, the data order and the adapters' initialisation.</para></summary>
public sealed record ContinualSpec : ExperimentSpec
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

    /// <summary>smoke (tests and the notebook's fast preset, seconds), notebook (notebook 07's full preset: 3 seeds, minutes),
    /// default (5 seeds) and cpu (the committed run: 10 seeds, about 10 minutes on 2 shared cores with OMP_NUM_THREADS=1).</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["smoke", "notebook", "default", "cpu"];

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
        _ => throw new ArgumentException($"unknown preset '{name}'; use {string.Join(", ", PresetNames)}", nameof(Preset)),
    };

    /// <summary>Checks every setting; throws <see cref="ArgumentException"/> naming the property.</summary>
    public ContinualSpec Validate()
    {
        Positive(NewEntities, nameof(NewEntities)); Positive(DocumentsPerEntity, nameof(DocumentsPerEntity));
        Positive(OriginalEntities, nameof(OriginalEntities)); Positive(FormatEntities, nameof(FormatEntities));
        Positive(PretrainDocumentsPerEntity, nameof(PretrainDocumentsPerEntity)); Positive(OriginalQuestions, nameof(OriginalQuestions));
        if (ReplayQuestions < 0 || ReplayQuestions > 3 * FormatEntities)
            throw new ArgumentException($"{nameof(ReplayQuestions)} must be in 0 … {3 * FormatEntities} (the questions of {FormatEntities} format companies), got {ReplayQuestions}", nameof(ReplayQuestions));
        if (OriginalQuestions > 3 * OriginalEntities)
            throw new ArgumentException($"{nameof(OriginalQuestions)} {OriginalQuestions} exceeds the {3 * OriginalEntities} questions of {OriginalEntities} people", nameof(OriginalQuestions));
        if (BaseSeed is null) throw new ArgumentException($"{nameof(BaseSeed)}: this experiment continues every run from one shared base; name its seed", nameof(BaseSeed));
        foreach (var (grid, full, name) in new[] { (AdapterLrGrid, false, nameof(AdapterLrGrid)), (FullLrGrid, true, nameof(FullLrGrid)) })
            if (grid.Count == 0 && Methods.Any(m => (m.Method == AdapterMethod.Full) == full))
                throw new ArgumentException($"{name}: this experiment tunes every method's rate; name a grid", name);
        ValidateShared();
        return this;
    }
}

/// <summary>One run's result: the chosen rate, acquisition (questions on the new facts) and forgetting (held-out loss and
/// retained answers of the original domain), before (the base) and after.</summary>
public sealed record ContinualRun(string Method, int Rank, int Seed, double LearningRate, long TrainableParameters,
    double NewExactMatch, double NewCharAccuracy, double NewCharAccuracyBefore, double NewAnswerLoss, double NewAnswerLossBefore,
    double HeldOutLossBefore, double HeldOutLossAfter, double OriginalExactMatchBefore, double OriginalExactMatchAfter,
    double FinalLoss, double WallSeconds)
{
    /// <summary>Forgetting: how much the held-out loss on the original domain rose (nats per token).</summary>
    public double Forgetting => HeldOutLossAfter - HeldOutLossBefore;
}

/// <summary>The data of one experiment: the original domain (pretraining set, held-out documents, retention questions),
/// and for a seed the new companies, their prose and their questions.</summary>
public sealed class ContinualData
{
    public ITextTokenizer Tokenizer { get; } = new CharTokenizer();
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

    public ContinualData(ContinualSpec spec)
    {
        _spec = spec;
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
    /// prose, the training examples (the prose, then the replayed format-company questions), and the questions on their facts.</summary>
    public (IReadOnlyList<FictionalEntity> Companies, IReadOnlyList<string> Documents, IReadOnlyList<LmExample> Train, IReadOnlyList<FactQuestion> Questions) NewDomain(int seed)
    {
        var companies = FictionalFacts.Generate(EntityKind.Company, _spec.NewEntities, seed: 40_000 + seed, new HashSet<string>(_names));
        var documents = FictionalFacts.Documents(companies, _spec.DocumentsPerEntity, seed: 50_000 + seed);
        return (companies, documents, documents.Select(Document).Concat(Replay).ToList(), FictionalFacts.Questions(companies));
    }

    public static IReadOnlyList<(string Prompt, string Answer)> Prompts(IEnumerable<FactQuestion> questions) => questions.Select(q => (q.Question, q.Answer)).ToList();
}

/// <summary>
/// The continual-pretraining experiment as one resumable job. Layout under the output folder: <c>base/</c> (pretraining run,
/// then <c>model/</c> and <c>result.json</c> with the base's held-out loss and retention), <c>sweep/{method}-r{r}-seed{tuning}-lr{lr}/</c> (learning-rate sweep runs),
/// <c>runs/{method}-r{r}-seed{s}/</c> (evaluation runs), each with <c>result.json</c> when finished; and the tables
/// <c>lr-sweep.csv</c>, <c>continual.csv</c> (per run), <c>continual-summary.csv</c> (mean and 95 % interval over seeds),
/// <c>continual-paired.csv</c> (per-seed paired MoRA − LoRA), and the figures <c>continual-acquisition</c> and
/// <c>continual-forgetting</c> (method means by step). Started again with the same settings it reuses finished runs and
/// resumes an interrupted one from its last checkpoint.
/// </summary>
public static class ContinualExperiment
{
    public const string TableFile = "continual.csv", SummaryFile = "continual-summary.csv", PairedFile = "continual-paired.csv", SweepFile = LearningRateSweep.File;
    /// <summary>The metrics each evaluation logs.</summary>
    public const string NewExact = "new_exact_match", NewChar = "new_char_acc", NewAnswerLoss = "new_answer_loss", HeldOutLoss = "heldout_loss", OriginalExact = "orig_exact_match";

    /// <summary>Everything the job produced; the sweep is in <see cref="SweepFile"/>.</summary>
    public sealed record Result(ContinualSpec Spec, IReadOnlyList<ContinualRun> Runs, IReadOnlyDictionary<(string Method, int Rank), double> Rates,
        BaseMetrics Base, string Table);

    /// <summary>The base model's held-out loss and retention score (the "before" of forgetting).</summary>
    public sealed record BaseMetrics(double HeldOutLoss, double OriginalExactMatch, double OriginalCharAccuracy);

    public static Result Run(ContinualSpec spec, string outDir, TextWriter? output = null, CancellationToken cancel = default)
    {
        spec.Validate();
        output ??= TextWriter.Null;
        outDir = Path.GetFullPath(outDir);
        var data = new ContinualData(spec);
        int longest = data.Pretraining.Concat(data.HeldOut).Max(e => e.Tokens.Length);
        int context = LlamaConfig.Preset(spec.Model, data.Tokenizer.VocabSize).MaxPositionEmbeddings;
        if (longest > context) throw new ArgumentException($"{nameof(spec.Model)} {spec.Model} has a context of {context} tokens; the data needs {longest}", nameof(spec.Model));
        Directory.CreateDirectory(outDir);
        ExperimentFolder.Claim(outDir, spec, "continual");
        output.WriteLine($"original domain: {data.People.Count} people ({data.Pretraining.Count} pretraining examples with {data.FormatCompanies.Count} format companies), " +
                         $"{data.HeldOut.Count} held-out documents; new domain: {spec.NewEntities} companies × {spec.DocumentsPerEntity} documents per seed, with {data.Replay.Count} replayed format-company questions");

        var (baseDir, before) = PretrainBase(spec, outDir, data, output, cancel);

        // The learning-rate rule every reproduction uses; the score is minus the final answer loss on the tuning seed's new facts.
        var rates = LearningRateSweep.TuneAll(spec, outDir, "the tuning seed's new facts", output, (method, r, lr, name) =>
        {
            var run = FineTune(spec, data, outDir, "sweep", name, baseDir, before, method, r, spec.TuneSeed, lr, spec.TuneSteps, output, cancel, tuning: true);
            return (-run.NewAnswerLoss, run.FinalLoss);
        }, score => $"answer loss {-score:F4}");

        var results = new List<ContinualRun>();
        foreach (int seed in spec.Seeds)
            foreach (var (method, r) in spec.Configurations())
                results.Add(FineTune(spec, data, outDir, "runs", method.RunName(r, seed), baseDir, before, method, r, seed, rates[(method.Name, r)], spec.Steps, output, cancel));
        WriteTables(outDir, results);
        string table = FormatTable(spec, results, before);
        WriteFigures(spec, outDir, results);
        output.WriteLine();
        output.WriteLine(table);
        output.WriteLine($"tables: {ExperimentFolder.Show(Path.Combine(outDir, TableFile))} (per run), {ExperimentFolder.Show(Path.Combine(outDir, SummaryFile))}, " +
                         $"{ExperimentFolder.Show(Path.Combine(outDir, PairedFile))}, {ExperimentFolder.Show(Path.Combine(outDir, SweepFile))}");
        return new Result(spec, results, rates, before, table);
    }


    static (string ModelDir, BaseMetrics Before) PretrainBase(ContinualSpec spec, string outDir, ContinualData data, TextWriter output, CancellationToken cancel)
    {
        string dir = Path.Combine(outDir, "base");
        string modelDir = Path.Combine(dir, "model");
        if (File.Exists(Path.Combine(modelDir, ModelIO.WeightsFile)) && ExperimentFolder.ReadResult<BaseMetrics>(dir) is { } done)
        {
            output.WriteLine($"reusing the pretrained base in {ExperimentFolder.Show(modelDir)}");
            return (modelDir, done);
        }
        var tok = data.Tokenizer;
        torch.manual_seed(spec.BaseSeed!.Value);
        using var model = new LlamaForCausalLM(LlamaConfig.Preset(spec.Model, tok.VocabSize) with { BosTokenId = tok.BosId, EosTokenId = tok.EosId });
        if (spec.PretrainSteps > 0)
        {
            output.WriteLine($"pretraining the {spec.Model} base on the original domain for {spec.PretrainSteps} steps");
            var config = new TrainConfig
            {
                Steps = spec.PretrainSteps, BatchSize = 32, LearningRate = spec.PretrainLr, WarmupSteps = Math.Min(50, spec.PretrainSteps / 10),
                Seed = spec.BaseSeed.Value, OutputDir = dir, CheckpointEvery = Math.Max(1, spec.PretrainSteps / 4), Device = spec.Device, LogEvery = 25,
            };
            new Trainer(model, config, data.Pretraining, padId: tok.PadId) { Progress = new ConsoleProgress("base") }.Run(cancel);
        }
        var orig = Metrics.Answers(model, tok, ContinualData.Prompts(data.OriginalQuestions));
        var before = new BaseMetrics(Metrics.HeldOutLoss(model, data.HeldOut, tok.PadId), orig.ExactMatch, orig.CharAccuracy);
        ModelIO.Save(model, modelDir);
        ExperimentFolder.WriteResult(dir, before);
        output.WriteLine($"base: held-out loss {before.HeldOutLoss:F4} nats/char, original answers exact {100 * before.OriginalExactMatch:F1} %");
        return (modelDir, before);
    }

    static ContinualRun FineTune(ContinualSpec spec, ContinualData data, string outDir, string folder, string name, string baseDir, BaseMetrics before,
        MethodSpec method, int r, int seed, double lr, int steps, TextWriter output, CancellationToken cancel, bool tuning = false)
    {
        string dir = SafePath.Under(Path.Combine(outDir, folder), name, "run name");
        if (ExperimentFolder.ReadResult<ContinualRun>(dir) is { } done)
        {
            ExperimentFolder.CheckReusedRate(dir, done.LearningRate, lr);
            output.WriteLine($"{folder}/{name}: finished before, reusing its {ExperimentFolder.ResultFile} (delete {ExperimentFolder.Show(dir)} to run it again)");
            return done;
        }
        var tok = data.Tokenizer;
        var (_, _, train, questions) = data.NewDomain(seed);
        var newPrompts = ContinualData.Prompts(questions);
        var origPrompts = ContinualData.Prompts(data.OriginalQuestions);
        using var model = ModelIO.Load(baseDir);
        var answers = questions.Select(q => LmData.FromPair(tok, q.Question, q.Answer, maskPrompt: true)).ToList();
        double charBefore = Metrics.Answers(model, tok, newPrompts).CharAccuracy, answerLossBefore = Metrics.HeldOutLoss(model, answers, tok.PadId);
        var adapter = method.Adapter(r);
        torch.manual_seed(seed);
        Peft.Inject(model, adapter);
        IReadOnlyDictionary<string, double> Evaluate(LlamaForCausalLM m)
        {
            var acquired = Metrics.Answers(m, tok, newPrompts);
            return new Dictionary<string, double>
            {
                [NewExact] = acquired.ExactMatch, [NewChar] = acquired.CharAccuracy, [NewAnswerLoss] = Metrics.HeldOutLoss(m, answers, tok.PadId),
                [HeldOutLoss] = Metrics.HeldOutLoss(m, data.HeldOut, tok.PadId), [OriginalExact] = Metrics.Answers(m, tok, origPrompts).ExactMatch,
            };
        }
        int evalEvery = folder == "sweep" ? 0 : spec.EvalSteps[0];
        var config = new TrainConfig
        {
            Steps = steps, BatchSize = spec.BatchSize, LearningRate = lr, WarmupSteps = Math.Min(20, steps / 10), Seed = seed, OutputDir = dir,
            Device = spec.Device, EvalEvery = evalEvery, CheckpointEvery = Math.Max(1, steps / 4), LogEvery = 25,
        };
        output.WriteLine($"{folder}/{name}: {Peft.CountParameters(model).Trainable:N0} trainable parameters, lr {lr:G3}, {steps} steps on {train.Count} examples (new prose and {data.Replay.Count} replayed questions)");
        var run = LearningRateSweep.TrainOrRecordDiverged(tuning, $"{folder}/{name}", output, () =>
        {
            var result = new Trainer(model, config, train, Evaluate, adapter, tok.PadId) { Progress = new ConsoleProgress(name) }.Run(cancel);
            var m = result.FinalMetrics;
            return new ContinualRun(method.Name, method.Method == AdapterMethod.Full ? 0 : r, seed, lr, result.TrainableParameters,
                m[NewExact], m[NewChar], charBefore, m[NewAnswerLoss], answerLossBefore, before.HeldOutLoss, m[HeldOutLoss], before.OriginalExactMatch, m[OriginalExact],
                result.Log.Rows[^1].Loss, result.WallSeconds);
        }, () =>
        {
            // The worst answer loss (negated, the sweep's worst score) ranks it last.
            var (_, worst) = LearningRateSweep.Diverged;
            return new ContinualRun(method.Name, method.Method == AdapterMethod.Full ? 0 : r, seed, lr, Peft.CountParameters(model).Trainable,
                0, 0, charBefore, worst, answerLossBefore, before.HeldOutLoss, worst, before.OriginalExactMatch, 0, worst, 0);
        });
        ExperimentFolder.WriteResult(dir, run);
        return run;
    }

    static string F(double v) => SeedReport.F(v);
    static string G(double v) => v.ToString("G3", CultureInfo.InvariantCulture);

    /// <summary>The measures the tables report, with how each reads from a run.</summary>
    public static IReadOnlyList<(string Name, Func<ContinualRun, double> Of)> Measures { get; } =
    [
        (NewExact, r => r.NewExactMatch), (NewChar, r => r.NewCharAccuracy), (NewAnswerLoss, r => r.NewAnswerLoss), ("heldout_loss_after", r => r.HeldOutLossAfter),
        ("forgetting", r => r.Forgetting), (OriginalExact, r => r.OriginalExactMatchAfter),
    ];

    /// <summary>Runs grouped by method and rank, in the order they ran.</summary>
    public static IEnumerable<IGrouping<(string Method, int Rank), ContinualRun>> Groups(IEnumerable<ContinualRun> runs) => runs.GroupBy(r => (r.Method, r.Rank));

    /// <summary>Per seed paired differences MoRA − LoRA (same rank, same seeds) of every measure: (mora method, rank, measure, interval).</summary>
    public static List<(string Method, int Rank, string Measure, MeanInterval Difference)> Paired(IReadOnlyList<ContinualRun> runs)
    {
        var result = new List<(string, int, string, MeanInterval)>();
        foreach (var g in Groups(runs).Where(g => g.Key.Method.StartsWith("mora", StringComparison.Ordinal)))
        {
            var lora = runs.Where(x => x.Method == "lora" && x.Rank == g.Key.Rank).ToList();
            if (lora.Count == 0) continue;
            foreach (var (name, of) in Measures)
                result.Add((g.Key.Method, g.Key.Rank, name, SeedStatistics.Paired95(g.ToDictionary(x => x.Seed, of), lora.ToDictionary(x => x.Seed, of))));
        }
        return result;
    }

    static void WriteTables(string outDir, IReadOnlyList<ContinualRun> runs)
    {
        var sb = new StringBuilder("method,rank,seed,lr,trainable_parameters,new_exact_match,new_char_acc,new_char_acc_before,new_answer_loss,new_answer_loss_before,heldout_loss_before,heldout_loss_after,forgetting,orig_exact_match_before,orig_exact_match_after,final_loss\n");
        foreach (var r in runs)
            sb.Append($"{r.Method},{r.Rank},{r.Seed},{G(r.LearningRate)},{r.TrainableParameters},{F(r.NewExactMatch)},{F(r.NewCharAccuracy)},{F(r.NewCharAccuracyBefore)},{F(r.NewAnswerLoss)},{F(r.NewAnswerLossBefore)},{F(r.HeldOutLossBefore)},{F(r.HeldOutLossAfter)},{F(r.Forgetting)},{F(r.OriginalExactMatchBefore)},{F(r.OriginalExactMatchAfter)},{F(r.FinalLoss)}\n");
        AtomicFile.WriteText(Path.Combine(outDir, TableFile), sb.ToString());

        var summary = new StringBuilder("method,rank,seeds,lr,trainable_parameters," + string.Join(",", Measures.Select(m => $"{m.Name}_mean,{m.Name}_low,{m.Name}_high")) +
                                        ",new_char_acc_before_mean,new_answer_loss_before_mean,heldout_loss_before\n");
        foreach (var g in Groups(runs))
        {
            var list = g.ToList();
            summary.Append($"{g.Key.Method},{g.Key.Rank},{list.Count},{G(list[0].LearningRate)},{list[0].TrainableParameters}");
            foreach (var (_, of) in Measures) { var i = SeedStatistics.Mean95(list.Select(of)); summary.Append($",{F(i.Mean)},{F(i.Low)},{F(i.High)}"); }
            summary.Append($",{F(list.Average(x => x.NewCharAccuracyBefore))},{F(list.Average(x => x.NewAnswerLossBefore))},{F(list[0].HeldOutLossBefore)}\n");
        }
        AtomicFile.WriteText(Path.Combine(outDir, SummaryFile), summary.ToString());

        var paired = new StringBuilder("comparison,rank,measure,seeds,mean,low,high\n");
        foreach (var (method, rank, measure, d) in Paired(runs))
            paired.Append($"{method} - lora,{rank},{measure},{d.N},{F(d.Mean)},{F(d.Low)},{F(d.High)}\n");
        AtomicFile.WriteText(Path.Combine(outDir, PairedFile), paired.ToString());
    }

    /// <summary>Method means over seeds of <paramref name="metric"/> by evaluation step, one curve per method and rank.</summary>
    public static List<Curve> MeanCurves(string runsRoot, string metric)
    {
        var curves = new List<Curve>();
        foreach (var g in RunFigures.FindRuns(runsRoot).GroupBy(r => r.Name[..r.Name.LastIndexOf("-seed", StringComparison.Ordinal)]))
        {
            var points = g.SelectMany(r => r.Log.Rows.Where(x => x.Metrics.ContainsKey(metric)).Select(x => (x.Step, Value: x.Metrics[metric])))
                .GroupBy(p => p.Step).OrderBy(p => p.Key).ToList();
            if (points.Count == 0) continue;
            curves.Add(new Curve(g.Key, points.Select(p => (double)p.Key).ToList(), points.Select(p => p.Average(x => x.Value)).ToList()));
        }
        return curves;
    }

    static void WriteFigures(ContinualSpec spec, string outDir, IReadOnlyList<ContinualRun> runs)
    {
        string root = Path.Combine(outDir, "runs");
        string seeds = $"mean of {spec.Seeds.Count} seed{(spec.Seeds.Count > 1 ? "s" : "")}";
        RunFigures.Write(MeanCurves(root, NewChar), $"acquisition: new-fact answers, char accuracy ({seeds})", "step", "character accuracy", Path.Combine(outDir, "continual-acquisition"));
        RunFigures.Write(MeanCurves(root, HeldOutLoss), $"forgetting: original-domain held-out loss ({seeds})", "step", "nats per character", Path.Combine(outDir, "continual-forgetting"));
    }

    /// <summary>The figure files <see cref="Run"/> writes next to its tables.</summary>
    public static IReadOnlyList<string> FigureFiles { get; } =
        ["continual-acquisition.html", "continual-acquisition.png", "continual-forgetting.html", "continual-forgetting.png"];

    /// <summary>The printed table: per method the chosen rate, acquisition and forgetting as mean [95 % interval] over seeds,
    /// then the per-seed paired MoRA − LoRA differences.</summary>
    public static string FormatTable(ContinualSpec spec, IReadOnlyList<ContinualRun> runs, BaseMetrics before)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"Continual pretraining on a new domain ({spec.NewEntities} fictional companies × 3 facts, {spec.DocumentsPerEntity} prose documents each; {spec.Model} model, {spec.Steps} steps; " +
                      $"seeds {string.Join(",", spec.Seeds)}; mean [95 % t interval] over seeds)");
        sb.AppendLine($"base: held-out loss on the original domain {before.HeldOutLoss:F4} nats/char, original answers exact match {100 * before.OriginalExactMatch:F1} %; " +
                      $"on the new facts (mean over seeds) char accuracy {100 * runs.Average(x => x.NewCharAccuracyBefore):F1} %, answer loss {runs.Average(x => x.NewAnswerLossBefore):F4} nats/char");
        sb.AppendLine($"{"method",-14} {"r",3} {"params",9} {"lr",7} {"new exact %",20} {"new char acc %",20} {"new answer loss",24} {"held-out loss",24} {"forgetting (Δ loss)",24} {"orig exact %",20}");
        foreach (var g in Groups(runs))
        {
            var l = g.ToList();
            sb.AppendLine($"{g.Key.Method,-14} {(g.Key.Rank == 0 ? "-" : g.Key.Rank.ToString(CultureInfo.InvariantCulture)),3} {l[0].TrainableParameters,9:N0} {G(l[0].LearningRate),7} " +
                          $"{SeedStatistics.Mean95(l.Select(x => x.NewExactMatch)).Format(100),20} {SeedStatistics.Mean95(l.Select(x => x.NewCharAccuracy)).Format(100),20} {SeedStatistics.Mean95(l.Select(x => x.NewAnswerLoss)).Format(1, "0.0000"),24} " +
                          $"{SeedStatistics.Mean95(l.Select(x => x.HeldOutLossAfter)).Format(1, "0.0000"),24} {SeedStatistics.Mean95(l.Select(x => x.Forgetting)).Format(1, "0.0000"),24} " +
                          $"{SeedStatistics.Mean95(l.Select(x => x.OriginalExactMatchAfter)).Format(100),20}");
        }
        sb.AppendLine("Rates: " + LearningRateSweep.Rule(spec.AdapterLrGrid, spec.TuneSteps, spec.TuneSeed, "score (minus the teacher-forced answer loss on the tuning seed's new facts)")
            + $"; full fine-tuning over {{{string.Join(", ", spec.FullLrGrid.Select(LearningRateSweep.Lr))}}}.");
        var paired = Paired(runs);
        if (paired.Count > 0)
        {
            sb.AppendLine("Paired per seed, MoRA − LoRA at the same rank (mean [95 % interval]; an interval that spans 0 does not resolve the difference):");
            foreach (var (method, rank, measure, d) in paired)
                sb.AppendLine($"  {method} − lora, r = {rank}, {measure}: {(measure.Contains("loss") || measure == "forgetting" ? d.Format(1, "0.0000") : d.Format(100) + " points")}");
        }
        return sb.ToString().TrimEnd();
    }

    /// <summary>The closing verdict on acquisition for one MoRA method: ✓ when the paired interval of the answer character
    /// accuracy lies above 0, ✗ when below, else "not resolved at this scale".</summary>
    public static string Verdict(IReadOnlyList<ContinualRun> runs, string moraMethod, int rank)
    {
        var d = Paired(runs).FirstOrDefault(p => p.Method == moraMethod && p.Rank == rank && p.Measure == NewChar).Difference;
        if (d is null) return "not measured";
        return d.AboveZero ? "✓ (MoRA absorbs more)" : d.BelowZero ? "✗ (LoRA absorbs more)" : "not resolved at this scale";
    }
}

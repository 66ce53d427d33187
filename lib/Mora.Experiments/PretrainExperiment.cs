using System.Text;
using System.Text.Json.Serialization;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.Figures;
using Mora.Model;
using Mora.Training;
using static TorchSharp.torch;

namespace Mora.Experiments;


/// <summary>How a model is pretrained from scratch (paper §4.4): low-rank adapters on a frozen random base (LoRA, MoRA),
/// the same merged into the base and restarted every N steps (ReLoRA, ReMoRA), or every weight trained (full). ReMoRA
/// comes in the two schedules the reference has: <see cref="Remora"/> alternates sharing types 1 ↔ 2 (its
/// <c>remora_types = 2</c>), <see cref="Remora4"/> cycles types 1 → 2 → 3 → 4 (<c>remora_types = 4</c>, its
/// <c>train.py</c>'s default).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<PretrainMethod>))]
public enum PretrainMethod { Lora, Relora, Mora, Remora, Full, Remora4 }

public static class PretrainMethods
{
    /// <summary>The names the command line takes.</summary>
    public const string Names = "lora, relora, mora, remora (types 1 ↔ 2), remora4 (types 1 → 2 → 3 → 4), full";

    /// <summary>lora, relora, mora, remora, remora4, full.</summary>
    public static string Name(this PretrainMethod m) => m.ToString().ToLowerInvariant();

    /// <summary>Parses a name (case-insensitive); an unknown one names <paramref name="paramName"/>.</summary>
    public static PretrainMethod Parse(string text, string paramName = "text") =>
        Enum.TryParse<PretrainMethod>(text?.Trim(), ignoreCase: true, out var m) && Enum.IsDefined(m) && !int.TryParse(text, out _)
            ? m : throw new ArgumentException($"unknown pretraining method '{text}'; use {Names}", paramName);

    /// <summary>ReLoRA and ReMoRA merge and restart.</summary>
    public static bool Merges(this PretrainMethod m) => m is PretrainMethod.Relora or PretrainMethod.Remora or PretrainMethod.Remora4;

    /// <summary>The adapter recipe at LoRA rank <paramref name="r"/> (every linear layer but the head), null for full
    /// training. MoRA uses the sharing design (the reference's type 1, used at large rank); ReMoRA starts with it and
    /// moves on at each merge (<see cref="Schedule"/>). LoRA's α = 2r as elsewhere in the kit; MoRA's r̂ gives the same parameter count.</summary>
    public static AdapterConfig? Adapter(this PretrainMethod m, int r) => m switch
    {
        PretrainMethod.Lora or PretrainMethod.Relora => MethodSpec.Lora.Adapter(r),
        PretrainMethod.Mora or PretrainMethod.Remora or PretrainMethod.Remora4 => MethodSpec.Mora(MoraType.Sharing).Adapter(r),
        _ => null,
    };

    /// <summary>The merge schedule (null for the methods that never merge).</summary>
    public static ReMergeSchedule? Schedule(this PretrainMethod m, int every) => m switch
    {
        PretrainMethod.Relora => new ReMergeSchedule(every, []),
        PretrainMethod.Remora => ReMergeSchedule.Alternating(every),
        PretrainMethod.Remora4 => ReMergeSchedule.ReferenceCycle(every),
        _ => null,
    };
}


/// <summary>Settings of the pretraining experiment (paper §4.4 at kit scale): the shared settings
/// (<see cref="ExperimentSpec"/>: model, steps, batch, seeds, tuning seed and budget, evaluations, logging, checkpoints,
/// device) and what pretraining from scratch adds. Validation throws <see cref="ArgumentException"/> naming the property.</summary>
public sealed record PretrainSpec : ExperimentSpec
{
    public PretrainSpec()
    {
        Preset = "cpu"; Steps = 320; TuneSteps = 160; TuneSeed = 0; EvalPoints = 8; Seeds = [1, 2, 3];
    }

    /// <summary>LoRA rank budget; MoRA gets the same trainable parameters.</summary>
    public int Rank { get; init; } = 8;
    /// <summary>Tokens per training sequence (documents are joined and cut into blocks).</summary>
    public int BlockSize { get; init; } = 128;
    /// <summary>Learning-rate warm-up steps of a reported run (a tuning run's is scaled to its length).</summary>
    public int WarmupSteps { get; init; } = 20;
    /// <summary>The cosine schedule decays to the learning rate × this at the last step.</summary>
    public double MinLrRatio { get; init; } = 0.1;
    /// <summary>ReLoRA/ReMoRA merge every this many steps.</summary>
    public int MergeEvery { get; init; } = 80;
    /// <summary>ReLoRA/ReMoRA learning-rate warm-up after each merge.</summary>
    public int RestartWarmupSteps { get; init; } = 10;
    public IReadOnlyList<PretrainMethod> Methods { get; init; } = [PretrainMethod.Lora, PretrainMethod.Relora, PretrainMethod.Mora, PretrainMethod.Remora, PretrainMethod.Full];
    /// <summary>Learning rates tried for every method (log-spaced), by <see cref="LearningRateSweep"/>'s rule.</summary>
    public IReadOnlyList<double> LrGrid { get; init; } = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1];
    /// <summary>Seed of the generated language and its documents (the same corpus for every run).</summary>
    public int CorpusSeed { get; init; }
    public int TrainDocuments { get; init; } = 8000;
    public int HeldOutDocuments { get; init; } = 150;
    /// <summary>Documents apart from both splits that the learning-rate sweep is scored on (0: the sweep scores the
    /// held-out split, as runs before this setting did; the rate is then picked on the reported split).</summary>
    public int ValidationDocuments { get; init; } = 150;

    /// <summary>smoke (tests, seconds: every method, a 2-value grid, 2 seeds), short (notebook 06's full preset: half the
    /// cpu run's steps, a 4-value grid, 3 seeds; about 5 min) and cpu (the committed run: tiny model, 320 steps,
    /// a 5-value grid, 3 seeds; about 15–20 min on 2 shared cores with <c>--threads 1</c>).</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["smoke", "short", "cpu"];

    public static PretrainSpec FromPreset(string name) => name.ToLowerInvariant() switch
    {
        "smoke" => new()
        {
            Preset = "smoke", Steps = 8, TuneSteps = 4, BatchSize = 4, BlockSize = 32, WarmupSteps = 2, MergeEvery = 3, RestartWarmupSteps = 1,
            LrGrid = [3e-3, 3e-2], Seeds = [1, 2], TrainDocuments = 60, HeldOutDocuments = 6, ValidationDocuments = 6, EvalPoints = 2, Rank = 4,
        },
        "short" => new()
        {
            Preset = "short", Steps = 160, TuneSteps = 80, MergeEvery = 40, RestartWarmupSteps = 5, WarmupSteps = 10, LrGrid = [1e-3, 3e-3, 1e-2, 3e-2], EvalPoints = 4,
        },
        "cpu" => new(),
        _ => throw new ArgumentException($"unknown preset '{name}'; use {string.Join(", ", PresetNames)}", nameof(Preset)),
    };

    public override IEnumerable<Configuration> Configurations() =>
        Methods.Select(m => new Configuration(m.Name(), m == PretrainMethod.Full ? 0 : Rank));

    /// <summary>Every method's rate is tuned over <see cref="LrGrid"/>.</summary>
    public override IReadOnlyList<double>? GridFor(Configuration c) => LrGrid;
    public override double FixedLr(Configuration c) => throw new InvalidOperationException("every pretraining rate is tuned (LrGrid)");

    public override PretrainSpec Validate()
    {
        Positive(Rank, nameof(Rank)); Positive(BlockSize, nameof(BlockSize)); Positive(MergeEvery, nameof(MergeEvery));
        Positive(TrainDocuments, nameof(TrainDocuments)); Positive(HeldOutDocuments, nameof(HeldOutDocuments));
        NonNegative(ValidationDocuments, nameof(ValidationDocuments)); NonNegative(WarmupSteps, nameof(WarmupSteps));
        if (RestartWarmupSteps < 0 || RestartWarmupSteps >= MergeEvery)
            throw new ArgumentException($"{nameof(RestartWarmupSteps)} must be in [0, {nameof(MergeEvery)} {MergeEvery}), got {RestartWarmupSteps}", nameof(RestartWarmupSteps));
        if (BlockSize < 2) throw new ArgumentException($"{nameof(BlockSize)} must be at least 2, got {BlockSize}", nameof(BlockSize));
        if (MinLrRatio is < 0 or > 1 || double.IsNaN(MinLrRatio)) throw new ArgumentException($"{nameof(MinLrRatio)} must be in [0, 1], got {MinLrRatio}", nameof(MinLrRatio));
        if (Methods is null || Methods.Count == 0 || Methods.Any(m => !Enum.IsDefined(m))) throw new ArgumentException($"{nameof(Methods)}: name at least one of {PretrainMethods.Names}", nameof(Methods));
        if (Methods.Distinct().Count() != Methods.Count) throw new ArgumentException($"{nameof(Methods)}: a method is named twice", nameof(Methods));
        LearningRateSweep.CheckGrid(LrGrid ?? [], nameof(LrGrid));
        ValidateShared();
        int context = LlamaConfig.Preset(Model, CharTokenizer.Pad + 128).MaxPositionEmbeddings;
        if (BlockSize > context) throw new ArgumentException($"{nameof(BlockSize)} {BlockSize} exceeds the {Model} model's context of {context}", nameof(BlockSize));
        return this;
    }

    /// <summary>The trainer's settings of a run of <paramref name="steps"/> steps: the cosine schedule to
    /// <see cref="MinLrRatio"/>, the warm-up scaled to the run's length, ReLoRA's restart warm-up for the merging methods.</summary>
    public TrainConfig RunConfig(PretrainMethod method, int steps, double lr, int seed, string dir, int evalEvery) => new()
    {
        Steps = steps, BatchSize = BatchSize, LearningRate = lr, MinLrRatio = MinLrRatio,
        WarmupSteps = (int)((long)WarmupSteps * steps / Steps), RestartWarmupSteps = method.Merges() ? RestartWarmupSteps : 0,
        Seed = seed, OutputDir = dir, Device = Device, EvalEvery = evalEvery, CheckpointEvery = CheckpointEvery(steps), LogEvery = LogEvery,
    };
}

/// <summary>
/// The pretraining experiment (paper §4.4, Table 4 at kit scale): a LLaMA-style model trained from scratch on a
/// generated language (<see cref="SyntheticLanguage"/>) with LoRA, ReLoRA, MoRA, ReMoRA and full training, scored by
/// held-out perplexity. The low-rank methods put adapters on every linear layer of the attention and MLP blocks of a
/// randomly initialised model whose weights there stay frozen; the embeddings, the RMSNorms and the output head train
/// fully, as in ReLoRA and the paper ("keep modules without LoRA-like methods, including layernorm or embeddings,
/// unfrozen"). ReLoRA/ReMoRA merge the adapter into the frozen weight every <see cref="PretrainSpec.MergeEvery"/> steps,
/// re-initialise it, reset its Adam moments and warm the learning rate up again; ReMoRA also moves MoRA's compression to
/// the next sharing scheme: types 1 ↔ 2 (<c>remora</c>) or 1 → 2 → 3 → 4 (<c>remora4</c>, the reference's default).
/// <para>Learning rates: the one rule (<see cref="LearningRateSweep"/>) on minus the validation perplexity (documents
/// apart from the held-out ones that are reported) after <see cref="ExperimentSpec.TuneSteps"/> steps on
/// <see cref="ExperimentSpec.TuneSeed"/>; a diverged run is never chosen. A reported run that diverges is recorded and
/// left out of the statistics. Layout: <c>sweep/{method}-lr{lr}/</c>, <c>runs/{method}-seed{s}/</c>, the tables and
/// figures beside them. The pipeline is <see cref="Experiment{TSpec}"/>'s.</para>
/// </summary>
public sealed class PretrainExperiment(PretrainSpec spec) : Experiment<PretrainSpec>(spec)
{
    public const string Name = "pretrain", TableFile = Name + ".csv", SummaryFile = Name + "-summary.csv", PairedFile = Name + "-paired.csv", SweepFile = LearningRateSweep.File,
        HeldOutLoss = "heldout_loss", HeldOutPerplexity = "heldout_ppl";

    /// <summary>The comparisons reported per seed: (first, second), difference first − second. The paper's two (ReMoRA vs
    /// ReLoRA, MoRA vs LoRA), the reference's 4-type ReMoRA against ReLoRA and against the 2-type one, what the restarts
    /// add to each method, and ReMoRA against full training.</summary>
    public static IReadOnlyList<(PretrainMethod First, PretrainMethod Second)> MethodComparisons { get; } =
    [
        (PretrainMethod.Remora, PretrainMethod.Relora), (PretrainMethod.Mora, PretrainMethod.Lora),
        (PretrainMethod.Remora4, PretrainMethod.Relora), (PretrainMethod.Remora4, PretrainMethod.Remora),
        (PretrainMethod.Relora, PretrainMethod.Lora), (PretrainMethod.Remora, PretrainMethod.Mora), (PretrainMethod.Remora, PretrainMethod.Full),
    ];

    /// <summary>Runs the job (see <see cref="Experiment{TSpec}.Run"/>) and returns its results by method.</summary>
    public static Results Run(PretrainSpec spec, string outDir, TextWriter? output = null, CancellationToken cancel = default, RunOptions? options = null) =>
        new(spec, new PretrainExperiment(spec).Run(outDir, output, cancel, options));

    public override string Kind => Name;
    List<LmExample> _train = [], _heldOut = [], _validation = [];

    public override IReadOnlyList<string> Columns => [HeldOutLoss, HeldOutPerplexity];
    public override IReadOnlyList<string> SummaryScores => [HeldOutPerplexity, HeldOutLoss];
    public override IReadOnlyList<(string Method, string Baseline)> Comparisons =>
        MethodComparisons.Where(c => Spec.Methods.Contains(c.First) && Spec.Methods.Contains(c.Second)).Select(c => (c.First.Name(), c.Second.Name())).ToList();
    public override IReadOnlyList<int> ReportRanks => [Spec.Rank];
    public override IReadOnlyList<string> ReportFiles => [.. base.ReportFiles, .. FigureFiles];
    protected override bool RecordsDivergedRuns => true;
    protected override string TunedOn => Spec.ValidationDocuments > 0 ? "the validation split" : "the held-out split";
    protected override Func<double, string>? ShowTuningScore => score => $"perplexity {-score:0.0000}";
    protected override double TuningScore(RunRecord run) => -run.Score(HeldOutPerplexity);
    protected override string RunName(Configuration c, int seed) => $"{c.Method}-seed{seed}";
    protected override string SweepRunName(Configuration c, double lr) => $"{c.Method}-lr{LearningRateSweep.Lr(lr)}";
    protected override string? BaseFor(int seed) => null;

    /// <summary>The corpus and its training / held-out blocks, and the validation blocks the sweep is scored on (the
    /// held-out blocks when <see cref="PretrainSpec.ValidationDocuments"/> is 0).</summary>
    public static (SyntheticLanguageCorpus Corpus, List<LmExample> Train, List<LmExample> HeldOut, List<LmExample> Validation) Data(PretrainSpec spec)
    {
        var corpus = SyntheticLanguage.Generate(spec.CorpusSeed, spec.TrainDocuments, spec.HeldOutDocuments, spec.ValidationDocuments);
        var tok = new CharTokenizer(strict: true);
        var heldOut = LmData.FromCorpus(tok, corpus.HeldOut, spec.BlockSize);
        return (corpus, LmData.FromCorpus(tok, corpus.Train, spec.BlockSize), heldOut,
            corpus.Validation.Count > 0 ? LmData.FromCorpus(tok, corpus.Validation, spec.BlockSize) : heldOut);
    }

    protected override IReadOnlyList<InputFile> Prepare()
    {
        var (corpus, train, heldOut, validation) = Data(Spec);
        (_train, _heldOut, _validation) = (train, heldOut, validation);
        Output.WriteLine($"corpus: {corpus.Train.Count} training documents ({train.Count} blocks of {Spec.BlockSize} characters), " +
                         $"{corpus.HeldOut.Count} held-out documents ({heldOut.Count} blocks); e.g. \"{corpus.Train[0][..Math.Min(90, corpus.Train[0].Length)]}…\"");
        return [];
    }

    /// <summary>A new model for <paramref name="method"/>: the seed's random initialisation (the same for every method),
    /// adapters injected and the non-adapted parts (embeddings, norms, head) left trainable.</summary>
    public static LlamaForCausalLM NewModel(PretrainSpec spec, PretrainMethod method, int seed)
    {
        var tok = new CharTokenizer();
        manual_seed(seed);
        var model = new LlamaForCausalLM(LlamaConfig.Preset(spec.Model, tok.VocabSize) with { BosTokenId = tok.BosId, EosTokenId = tok.EosId });
        if (method.Adapter(spec.Rank) is { } adapter)
        {
            manual_seed(Trainer.StableSeed(seed, 0xada, 0));
            Peft.Inject(model, adapter);
            foreach (var (name, p) in model.named_parameters())
                if (!name.Contains(".base_layer.", StringComparison.Ordinal)) p.requires_grad = true;    // embeddings, norms, head, adapters
        }
        return model;
    }

    /// <summary>Mean token cross-entropy over <paramref name="blocks"/> (all of one length) and its exponential, the perplexity.</summary>
    public static IReadOnlyDictionary<string, double> HeldOut(LlamaForCausalLM model, IReadOnlyList<LmExample> blocks, int batchSize = 32)
    {
        double sum = 0; long count = 0;
        using var _ = no_grad();
        for (int at = 0; at < blocks.Count; at += batchSize)
        {
            using var scope = NewDisposeScope();
            using var batch = LmData.Collate(blocks.Skip(at).Take(batchSize).ToList(), CharTokenizer.Pad, model.Device);
            var logits = model.forward(batch.InputIds);
            var loss = nn.functional.cross_entropy(logits.to(ScalarType.Float32).flatten(0, 1), batch.Targets.flatten(),
                ignore_index: LmData.IgnoreIndex, reduction: nn.Reduction.Sum);
            sum += loss.item<float>();
            count += batch.LossTokens;
        }
        double mean = sum / Math.Max(1, count);
        return new Dictionary<string, double> { [HeldOutLoss] = mean, [HeldOutPerplexity] = Math.Exp(mean) };
    }

    protected override RunRecord Train(RunPlan plan)
    {
        var method = PretrainMethods.Parse(plan.Config.Method);
        using var model = NewModel(Spec, method, plan.Seed);
        var blocks = plan.Tuning ? _validation : _heldOut;
        var trainer = new Trainer(model, Spec.RunConfig(method, plan.Steps, plan.LearningRate, plan.Seed, plan.Dir, plan.EvalEvery), _train,
            m => HeldOut(m, blocks), method.Adapter(Spec.Rank), CharTokenizer.Pad) { ReMerge = method.Schedule(Spec.MergeEvery) };
        long total = Peft.CountParameters(model).Total;
        return Fit(plan, model, trainer, r =>
        {
            double loss = r.FinalMetrics[HeldOutLoss];
            return [KeyValuePair.Create(HeldOutLoss, loss), KeyValuePair.Create(HeldOutPerplexity, Math.Exp(loss))];
        }, $" ({total:N0} parameters in all){(method.Merges() ? $", merge every {Spec.MergeEvery} steps" : "")}");
    }

    /// <summary>The figure files beyond the per-run ones: held-out perplexity by step (mean over seeds) and the learning rate of one seed's runs.</summary>
    public static IReadOnlyList<string> FigureFiles { get; } = ["pretrain-heldout-mean.html", "pretrain-heldout-mean.png", "pretrain-lr.html", "pretrain-lr.png"];

    protected override IEnumerable<string> WriteExtras(JobResult result)
    {
        var mean = MeanCurves(new Results(Spec, result), OutDir);
        if (mean.Count > 0) RunFigures.Write(mean, "pretrain: held-out perplexity by step (mean over seeds)", "step", "held-out perplexity", Path.Combine(OutDir, "pretrain-heldout-mean"));
        int seed = Spec.Seeds[0];
        var logs = Spec.Methods.Select(m => (m.Name(), Path.Combine(OutDir, "runs", $"{m.Name()}-seed{seed}", Trainer.LogFile)))
            .Where(x => File.Exists(x.Item2)).Select(x => (x.Item1, RunLog.ReadCsv(x.Item2))).ToList();
        if (logs.Count > 0) RunFigures.Write(RunFigures.Curves(logs, "lr"), $"pretrain: learning rate by step (seed {seed})", "step", "learning rate", Path.Combine(OutDir, "pretrain-lr"));
        return FigureFiles;
    }

    /// <summary>Held-out perplexity by step per method, averaged over the seeds that did not diverge (from the runs' logs).</summary>
    public static List<Curve> MeanCurves(Results results, string outDir)
    {
        var curves = new List<Curve>();
        foreach (var m in results.Spec.Methods)
        {
            var byStep = new SortedDictionary<long, List<double>>();
            foreach (var r in results.Job.Runs.Where(r => r.Method == m.Name() && !r.Diverged))
            {
                string log = Path.Combine(outDir, "runs", $"{m.Name()}-seed{r.Seed}", Trainer.LogFile);
                if (!File.Exists(log)) continue;
                foreach (var row in RunLog.ReadCsv(log).Rows)
                    if (row.Metrics.TryGetValue(HeldOutPerplexity, out var v)) (byStep.TryGetValue(row.Step, out var l) ? l : byStep[row.Step] = []).Add(v);
            }
            if (byStep.Count > 0) curves.Add(new Curve(m.Name(), byStep.Keys.Select(s => (double)s).ToList(), byStep.Values.Select(v => v.Average()).ToList()));
        }
        return curves;
    }

    /// <summary>The table as printed and committed (table.txt): perplexity per method, then the paired differences.</summary>
    public override string FormatTable(JobResult result)
    {
        var r = new Results(Spec, result);
        var sb = new StringBuilder();
        sb.AppendLine($"Held-out perplexity after pretraining from scratch ({Spec.Model} model, {Spec.Steps} steps of {Spec.BatchSize}×{Spec.BlockSize} characters, " +
                      $"rank budget r = {Spec.Rank}, merge every {Spec.MergeEvery} steps; seeds {string.Join(",", Spec.Seeds)}; mean [95 % t interval])");
        sb.AppendLine($"{"method",-8} {"lr",7} {"trainable",10} {"held-out perplexity",26}");
        var ppl = r.Perplexity;
        foreach (var m in Spec.Methods)
        {
            var runs = result.Runs.Where(x => x.Method == m.Name()).ToList();
            string value = ppl.TryGetValue(m, out var s) ? s.Format(1, "0.000") : "diverged";
            int diverged = runs.Count(x => x.Diverged);
            sb.AppendLine($"{m.Name(),-8} {LearningRateSweep.Lr(r.ChosenLr[m]),7} {runs[0].TrainableParameters,10:N0} {value,26}{(diverged > 0 && ppl.ContainsKey(m) ? $"  ({diverged} diverged run(s) left out)" : "")}");
        }
        if (r.Paired.Count > 0)
        {
            sb.AppendLine("Paired per-seed difference of held-out perplexity (negative: the first method is better):");
            foreach (var (a, b, d) in r.Paired)
                sb.AppendLine($"  {a.Name()} − {b.Name()}: {d.Format(1, "0.000")}  → {a.Name()} {Results.Verdict(d)}");
        }
        var extended = result.Sweep.Select(p => p.LearningRate).Where(lr => !Spec.LrGrid.Contains(lr)).Distinct().Order().ToList();
        sb.Append($"Learning rate per method: lowest {(Spec.ValidationDocuments > 0 ? $"validation perplexity ({Spec.ValidationDocuments} documents apart from the held-out ones)" : "held-out perplexity")} " +
                  $"over [{string.Join(", ", Spec.LrGrid.Select(LearningRateSweep.Lr))}]{(extended.Count > 0 ? $", extended past an end where the best was there to {string.Join(", ", extended.Select(LearningRateSweep.Lr))}" : "")} " +
                  $"after {Spec.TuneSteps} steps on seed {Spec.TuneSeed} ({SweepFile}).");
        return sb.ToString();
    }

    /// <summary>A job's results by method: the chosen rates, held-out perplexity over the seeds that did not diverge, and the
    /// per-seed comparisons.</summary>
    public sealed record Results(PretrainSpec Spec, JobResult Job)
    {
        public IReadOnlyList<SweepPoint> Sweep => Job.Sweep;
        public IReadOnlyList<RunRecord> Runs => Job.Runs;
        public string Table => Job.Table;

        /// <summary>The learning rate each method trained at.</summary>
        public IReadOnlyDictionary<PretrainMethod, double> ChosenLr =>
            Spec.Methods.ToDictionary(m => m, m => Job.Rates[(m.Name(), m == PretrainMethod.Full ? 0 : Spec.Rank)]);

        /// <summary>Held-out perplexity by method: mean and 95 % interval over the seeds that did not diverge.</summary>
        public IReadOnlyDictionary<PretrainMethod, MeanInterval> Perplexity =>
            Spec.Methods.Where(m => BySeed(m).Count > 0).ToDictionary(m => m, m => SeedStatistics.Mean95(BySeed(m).Values));

        /// <summary>Per-seed paired perplexity difference first − second (negative: the first is better), for the comparisons whose methods both ran.</summary>
        public IReadOnlyList<(PretrainMethod First, PretrainMethod Second, MeanInterval Difference)> Paired =>
            MethodComparisons.Where(c => BySeed(c.First).Count > 0 && BySeed(c.Second).Count > 0)
                .Select(c => (c.First, c.Second, SeedStatistics.Paired95(BySeed(c.First), BySeed(c.Second)))).ToList();

        public IReadOnlyDictionary<int, double> BySeed(PretrainMethod m) =>
            Job.Runs.Where(r => r.Method == m.Name() && !r.Diverged).ToDictionary(r => r.Seed, r => r.Score(HeldOutPerplexity));

        /// <summary>"better", "worse" or "not resolved" for a difference of perplexities (lower is better).</summary>
        public static string Verdict(MeanInterval d) =>
            d.BelowZero ? "better (interval below 0)" : d.AboveZero ? "worse (interval above 0)" : d.N < 2 ? "not resolved (one seed)" : "not resolved (interval spans 0)";
    }
}

using System.Globalization;
using System.Text;
using System.Text.Json.Serialization;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.Figures;
using Mora.IO;
using Mora.Model;
using Mora.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Experiments;

/// <summary>How a model is pretrained from scratch (paper §4.4): low-rank adapters on a frozen random base (LoRA, MoRA),
/// the same merged into the base and restarted every N steps (ReLoRA, ReMoRA), or every weight trained (full).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<PretrainMethod>))]
public enum PretrainMethod { Lora, Relora, Mora, Remora, Full }

public static class PretrainMethods
{
    /// <summary>lora, relora, mora, remora, full.</summary>
    public static string Name(this PretrainMethod m) => m.ToString().ToLowerInvariant();

    /// <summary>Parses a name (case-insensitive); an unknown one names <paramref name="paramName"/>.</summary>
    public static PretrainMethod Parse(string text, string paramName = "text") =>
        Enum.TryParse<PretrainMethod>(text?.Trim(), ignoreCase: true, out var m) && Enum.IsDefined(m) && !int.TryParse(text, out _)
            ? m : throw new ArgumentException($"unknown pretraining method '{text}'; use lora, relora, mora, remora or full", paramName);

    /// <summary>ReLoRA and ReMoRA merge and restart.</summary>
    public static bool Merges(this PretrainMethod m) => m is PretrainMethod.Relora or PretrainMethod.Remora;

    /// <summary>The adapter recipe at LoRA rank <paramref name="r"/> (every linear layer but the head), null for full
    /// training. MoRA uses the sharing design (the reference's type 1, used at large rank); ReMoRA starts with it and
    /// alternates with type 2 at each merge. LoRA's α = 2r as elsewhere in the kit; MoRA's r̂ gives the same parameter count.</summary>
    public static AdapterConfig? Adapter(this PretrainMethod m, int r) => m switch
    {
        PretrainMethod.Lora or PretrainMethod.Relora => MethodSpec.Lora.Adapter(r),
        PretrainMethod.Mora or PretrainMethod.Remora => MethodSpec.Mora(MoraType.Sharing).Adapter(r),
        _ => null,
    };

    /// <summary>The merge schedule (null for the methods that never merge).</summary>
    public static ReMergeSchedule? Schedule(this PretrainMethod m, int every) => m switch
    {
        PretrainMethod.Relora => new ReMergeSchedule(every, []),
        PretrainMethod.Remora => ReMergeSchedule.Alternating(every),
        _ => null,
    };
}

/// <summary>Settings of the pretraining experiment (paper §4.4 at kit scale). Validation throws
/// <see cref="ArgumentException"/> naming the property.</summary>
public sealed record PretrainSpec
{
    public string Preset { get; init; } = "cpu";
    /// <summary>LLaMA preset trained from scratch (tiny, small, …), vocabulary the character tokenizer's.</summary>
    public string Model { get; init; } = "tiny";
    /// <summary>LoRA rank budget; MoRA gets the same trainable parameters.</summary>
    public int Rank { get; init; } = 8;
    public int Steps { get; init; } = 320;
    public int BatchSize { get; init; } = 16;
    /// <summary>Tokens per training sequence (documents are joined and cut into blocks).</summary>
    public int BlockSize { get; init; } = 128;
    public int WarmupSteps { get; init; } = 20;
    /// <summary>ReLoRA/ReMoRA merge every this many steps.</summary>
    public int MergeEvery { get; init; } = 80;
    /// <summary>ReLoRA/ReMoRA learning-rate warm-up after each merge.</summary>
    public int RestartWarmupSteps { get; init; } = 10;
    public IReadOnlyList<PretrainMethod> Methods { get; init; } = [PretrainMethod.Lora, PretrainMethod.Relora, PretrainMethod.Mora, PretrainMethod.Remora, PretrainMethod.Full];
    /// <summary>Evaluation seeds (model initialisation, adapter initialisation, data order).</summary>
    public IReadOnlyList<int> Seeds { get; init; } = [1, 2, 3];
    /// <summary>The seed of the learning-rate sweep; not an evaluation seed.</summary>
    public int TuneSeed { get; init; }
    /// <summary>Steps of each sweep run (the short budget).</summary>
    public int TuneSteps { get; init; } = 160;
    /// <summary>Learning rates tried for every method (log-spaced).</summary>
    public IReadOnlyList<double> LrGrid { get; init; } = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1];
    /// <summary>Seed of the generated language and its documents (the same corpus for every run).</summary>
    public int CorpusSeed { get; init; }
    public int TrainDocuments { get; init; } = 8000;
    public int HeldOutDocuments { get; init; } = 150;
    /// <summary>Documents apart from both splits that the learning-rate sweep is scored on (0: the sweep scores the
    /// held-out split, as runs before this setting did; the rate is then picked on the reported split).</summary>
    public int ValidationDocuments { get; init; } = 150;
    /// <summary>Held-out evaluations during each run (curves), evenly spaced, the last at the final step.</summary>
    public int EvalPoints { get; init; } = 8;
    /// <summary>Where every run trains; not part of the experiment's identity.</summary>
    public ComputeDevice Device { get; init; }

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

    public PretrainSpec Validate()
    {
        static void Positive(int v, string name) { if (v <= 0) throw new ArgumentException($"{name} must be positive, got {v}", name); }
        Positive(Rank, nameof(Rank)); Positive(Steps, nameof(Steps)); Positive(BatchSize, nameof(BatchSize)); Positive(BlockSize, nameof(BlockSize));
        Positive(MergeEvery, nameof(MergeEvery)); Positive(TuneSteps, nameof(TuneSteps)); Positive(EvalPoints, nameof(EvalPoints));
        Positive(TrainDocuments, nameof(TrainDocuments)); Positive(HeldOutDocuments, nameof(HeldOutDocuments));
        if (ValidationDocuments < 0) throw new ArgumentException($"{nameof(ValidationDocuments)} must be ≥ 0, got {ValidationDocuments}", nameof(ValidationDocuments));
        if (WarmupSteps < 0) throw new ArgumentException($"{nameof(WarmupSteps)} must be ≥ 0, got {WarmupSteps}", nameof(WarmupSteps));
        if (RestartWarmupSteps < 0 || RestartWarmupSteps >= MergeEvery)
            throw new ArgumentException($"{nameof(RestartWarmupSteps)} must be in [0, {nameof(MergeEvery)} {MergeEvery}), got {RestartWarmupSteps}", nameof(RestartWarmupSteps));
        if (BlockSize < 2) throw new ArgumentException($"{nameof(BlockSize)} must be at least 2, got {BlockSize}", nameof(BlockSize));
        if (Steps % EvalPoints != 0) throw new ArgumentException($"{nameof(Steps)} {Steps} must be a multiple of {nameof(EvalPoints)} {EvalPoints}", nameof(Steps));
        if (Methods is null || Methods.Count == 0 || Methods.Any(m => !Enum.IsDefined(m))) throw new ArgumentException($"{nameof(Methods)}: name at least one of lora, relora, mora, remora, full", nameof(Methods));
        if (Methods.Distinct().Count() != Methods.Count) throw new ArgumentException($"{nameof(Methods)}: a method is named twice", nameof(Methods));
        if (Seeds is null || Seeds.Count == 0) throw new ArgumentException($"{nameof(Seeds)}: name at least one seed", nameof(Seeds));
        if (Seeds.Distinct().Count() != Seeds.Count) throw new ArgumentException($"{nameof(Seeds)}: a seed is named twice", nameof(Seeds));
        if (Seeds.Contains(TuneSeed)) throw new ArgumentException($"{nameof(TuneSeed)} {TuneSeed} is an evaluation seed; tune on another seed", nameof(TuneSeed));
        if (LrGrid is null || LrGrid.Count == 0 || LrGrid.Any(v => !(v > 0) || double.IsInfinity(v)))
            throw new ArgumentException($"{nameof(LrGrid)} must hold positive learning rates, got [{string.Join(", ", LrGrid ?? [])}]", nameof(LrGrid));
        if (LrGrid.Distinct().Count() != LrGrid.Count) throw new ArgumentException($"{nameof(LrGrid)}: a learning rate is named twice", nameof(LrGrid));
        try
        {
            var config = LlamaConfig.Preset(Model, 128);
            if (BlockSize > config.MaxPositionEmbeddings)
                throw new ArgumentException($"{nameof(BlockSize)} {BlockSize} exceeds the {Model} model's context of {config.MaxPositionEmbeddings}", nameof(BlockSize));
        }
        catch (ArgumentException e) when (e.ParamName != nameof(BlockSize)) { throw new ArgumentException($"{nameof(Model)}: {e.MessageOnly()}", nameof(Model), e); }
        Device.EnsureAvailable(nameof(Device));
        return this;
    }
}

/// <summary>One run's result (a row of <c>pretrain.csv</c> or <c>lr-sweep.csv</c>); a diverged run has NaN scores (written
/// to result.json as "NaN").</summary>
[JsonNumberHandling(JsonNumberHandling.AllowNamedFloatingPointLiterals)]
public sealed record PretrainRun(PretrainMethod Method, int Seed, double LearningRate, int Steps, long TrainableParameters, long TotalParameters,
    double HeldOutLoss, double HeldOutPerplexity, double FinalTrainLoss, double WallSeconds, bool Diverged);

/// <summary>
/// The pretraining experiment (paper §4.4, Table 4 at kit scale): a LLaMA-style model trained from scratch on a
/// generated language (<see cref="SyntheticLanguage"/>) with LoRA, ReLoRA, MoRA, ReMoRA and full training, scored by
/// held-out perplexity. The low-rank methods put adapters on every linear layer of the attention and MLP blocks of a
/// randomly initialised model whose weights there stay frozen; the embeddings, the RMSNorms and the output head train
/// fully, as in ReLoRA and the paper ("keep modules without LoRA-like methods, including layernorm or embeddings,
/// unfrozen"). ReLoRA/ReMoRA merge the adapter into the frozen weight every <see cref="PretrainSpec.MergeEvery"/> steps,
/// re-initialise it, reset its Adam moments and warm the learning rate up again; ReMoRA also alternates MoRA's
/// compression between sharing (type 1) and adjacent sharing (type 2).
/// <para>Learning rates: each method's is the one of <see cref="PretrainSpec.LrGrid"/> with the lowest validation
/// perplexity (documents apart from the held-out ones that are reported) after <see cref="PretrainSpec.TuneSteps"/> steps
/// on <see cref="PretrainSpec.TuneSeed"/> (not an evaluation seed); a diverged run is never chosen. The sweep is written to <c>lr-sweep.csv</c>.</para>
/// <para>Layout: <c>sweep/{method}-lr{lr}/</c>, <c>runs/{method}-seed{s}/</c> (log, manifest, checkpoints,
/// <c>result.json</c>), <c>pretrain.csv</c>, <c>pretrain-summary.csv</c>, <c>pretrain-paired.csv</c>, <c>lr-sweep.csv</c>.
/// Run again with the same settings it reuses finished runs and resumes interrupted ones from their checkpoints.</para>
/// </summary>
public static class PretrainExperiment
{
    public const string TableFile = "pretrain.csv", SummaryFile = "pretrain-summary.csv", PairedFile = "pretrain-paired.csv", SweepFile = "lr-sweep.csv";

    /// <summary>The comparisons reported per seed: (first, second), difference first − second. The paper's two (ReMoRA vs
    /// ReLoRA, MoRA vs LoRA), what the restarts add to each method, and ReMoRA against full training.</summary>
    public static IReadOnlyList<(PretrainMethod First, PretrainMethod Second)> Comparisons { get; } =
    [
        (PretrainMethod.Remora, PretrainMethod.Relora), (PretrainMethod.Mora, PretrainMethod.Lora),
        (PretrainMethod.Relora, PretrainMethod.Lora), (PretrainMethod.Remora, PretrainMethod.Mora), (PretrainMethod.Remora, PretrainMethod.Full),
    ];

    /// <summary>Everything the experiment produced.</summary>
    public sealed record Results(PretrainSpec Spec, IReadOnlyList<PretrainRun> Sweep, IReadOnlyDictionary<PretrainMethod, double> ChosenLr,
        IReadOnlyList<PretrainRun> Runs)
    {
        /// <summary>Held-out perplexity by method: mean and 95 % interval over the seeds that did not diverge.</summary>
        public IReadOnlyDictionary<PretrainMethod, MeanInterval> Perplexity =>
            Runs.Where(r => !r.Diverged).GroupBy(r => r.Method).ToDictionary(g => g.Key, g => SeedStatistics.Mean95(g.Select(r => r.HeldOutPerplexity)));

        /// <summary>Per-seed paired perplexity difference first − second (negative: the first is better), for the comparisons whose methods both ran.</summary>
        public IReadOnlyList<(PretrainMethod First, PretrainMethod Second, MeanInterval Difference)> Paired =>
            Comparisons.Where(c => Has(c.First) && Has(c.Second))
                .Select(c => (c.First, c.Second, SeedStatistics.Paired95(BySeed(c.First), BySeed(c.Second)))).ToList();

        bool Has(PretrainMethod m) => BySeed(m).Count > 0;

        public IReadOnlyDictionary<int, double> BySeed(PretrainMethod m) =>
            Runs.Where(r => r.Method == m && !r.Diverged).ToDictionary(r => r.Seed, r => r.HeldOutPerplexity);

        /// <summary>"better", "worse" or "not resolved" for a difference of perplexities (lower is better).</summary>
        public static string Verdict(MeanInterval d) =>
            d.BelowZero ? "better (interval below 0)" : d.AboveZero ? "worse (interval above 0)" : d.N < 2 ? "not resolved (one seed)" : "not resolved (interval spans 0)";
    }

    /// <summary>The corpus and its training / held-out blocks, and the validation blocks the sweep is scored on (the
    /// held-out blocks when <see cref="PretrainSpec.ValidationDocuments"/> is 0).</summary>
    public static (PretrainCorpus Corpus, List<LmExample> Train, List<LmExample> HeldOut, List<LmExample> Validation) Data(PretrainSpec spec)
    {
        var corpus = SyntheticLanguage.Generate(spec.CorpusSeed, spec.TrainDocuments, spec.HeldOutDocuments, spec.ValidationDocuments);
        var tok = new CharTokenizer(strict: true);
        var heldOut = LmData.FromCorpus(tok, corpus.HeldOut, spec.BlockSize);
        return (corpus, LmData.FromCorpus(tok, corpus.Train, spec.BlockSize), heldOut,
            corpus.Validation.Count > 0 ? LmData.FromCorpus(tok, corpus.Validation, spec.BlockSize) : heldOut);
    }

    public static Results Run(PretrainSpec spec, string outDir, TextWriter? output = null, CancellationToken cancel = default)
    {
        spec.Validate();
        output ??= TextWriter.Null;
        outDir = Path.GetFullPath(outDir);
        Directory.CreateDirectory(outDir);
        ExperimentFolder.Claim(outDir, spec, "pretraining");
        var (corpus, train, heldOut, validation) = Data(spec);
        output.WriteLine($"corpus: {corpus.Train.Count} training documents ({train.Count} blocks of {spec.BlockSize} characters), " +
                         $"{corpus.HeldOut.Count} held-out documents ({heldOut.Count} blocks); e.g. \"{corpus.Train[0][..Math.Min(90, corpus.Train[0].Length)]}…\"");

        var sweep = new List<PretrainRun>();
        var chosen = new Dictionary<PretrainMethod, double>();
        foreach (var method in spec.Methods)
        {
            var rows = spec.LrGrid.Select(lr => Train(spec, Path.Combine(outDir, "sweep"), $"{method.Name()}-lr{Lr(lr)}", method, lr, spec.TuneSeed,
                spec.TuneSteps, 1, train, validation, output, cancel)).ToList();
            sweep.AddRange(rows);
            var ok = rows.Where(r => !r.Diverged && double.IsFinite(r.HeldOutPerplexity)).ToList();
            if (ok.Count == 0) throw new InvalidOperationException($"{method.Name()}: every learning rate of the grid diverged; try smaller ones");
            chosen[method] = ok.MinBy(r => r.HeldOutPerplexity)!.LearningRate;
            output.WriteLine($"{method.Name()}: learning rate {Lr(chosen[method])} chosen (lowest {(spec.ValidationDocuments > 0 ? "validation" : "held-out")} perplexity after {spec.TuneSteps} steps, seed {spec.TuneSeed})");
        }
        WriteSweep(outDir, spec, sweep, chosen);

        var runs = new List<PretrainRun>();
        foreach (int seed in spec.Seeds)
            foreach (var method in spec.Methods)
                runs.Add(Train(spec, Path.Combine(outDir, "runs"), $"{method.Name()}-seed{seed}", method, chosen[method], seed, spec.Steps, spec.EvalPoints,
                    train, heldOut, output, cancel));
        var results = new Results(spec, sweep, chosen, runs);
        WriteTables(outDir, results);
        output.WriteLine();
        output.WriteLine(FormatTable(results));
        output.WriteLine($"tables: {ExperimentFolder.Show(Path.Combine(outDir, TableFile))} (per run), {SummaryFile}, {PairedFile}, {SweepFile}");
        return results;
    }

    static string Lr(double lr) => lr.ToString("G3", CultureInfo.InvariantCulture);

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
        return new Dictionary<string, double> { ["heldout_loss"] = mean, ["heldout_ppl"] = Math.Exp(mean) };
    }

    static PretrainRun Train(PretrainSpec spec, string root, string name, PretrainMethod method, double lr, int seed, int steps, int evalPoints,
        IReadOnlyList<LmExample> train, IReadOnlyList<LmExample> heldOut, TextWriter output, CancellationToken cancel)
    {
        string dir = SafePath.Under(root, name, "run name");
        if (ExperimentFolder.ReadResult<PretrainRun>(dir) is { } done)
        {
            ExperimentFolder.CheckReusedRate(dir, done.LearningRate, lr);
            output.WriteLine($"{name}: finished before, reusing its {ExperimentFolder.ResultFile}");
            return done;
        }
        using var model = NewModel(spec, method, seed);
        var config = new TrainConfig
        {
            Steps = steps, BatchSize = spec.BatchSize, LearningRate = lr, MinLrRatio = 0.1,
            WarmupSteps = (int)((long)spec.WarmupSteps * steps / spec.Steps), RestartWarmupSteps = method.Merges() ? spec.RestartWarmupSteps : 0,
            Seed = seed, OutputDir = dir, Device = spec.Device, EvalEvery = steps / evalPoints, CheckpointEvery = Math.Max(1, steps / 4), LogEvery = 25,
        };
        var (trainable, total) = Peft.CountParameters(model);
        output.WriteLine($"{name}: {trainable:N0} of {total:N0} parameters trainable, lr {Lr(lr)}{(method.Merges() ? $", merge every {spec.MergeEvery} steps" : "")}");
        var trainer = new Trainer(model, config, train, m => HeldOut(m, heldOut), method.Adapter(spec.Rank), CharTokenizer.Pad)
        {
            Progress = new ConsoleProgress(name), ReMerge = method.Schedule(spec.MergeEvery),
        };
        PretrainRun run;
        try
        {
            var result = trainer.Run(cancel);
            double loss = result.FinalMetrics["heldout_loss"];
            run = new PretrainRun(method, seed, lr, steps, trainable, total, loss, Math.Exp(loss), result.Log.Rows[^1].Loss, result.WallSeconds, false);
        }
        catch (TrainingDivergedException e)
        {
            output.WriteLine($"{name}: diverged at step {e.Step} (recorded; never chosen)");
            run = new PretrainRun(method, seed, lr, steps, trainable, total, double.NaN, double.NaN, double.NaN, 0, true);
        }
        ExperimentFolder.WriteResult(dir, run);
        return run;
    }

    static string F(double v, string format = "0.0000") => double.IsFinite(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "";

    /// <summary>The sweep's table; its score column is the validation perplexity (the held-out one when the spec has no
    /// validation split), named so.</summary>
    static void WriteSweep(string outDir, PretrainSpec spec, IReadOnlyList<PretrainRun> sweep, IReadOnlyDictionary<PretrainMethod, double> chosen)
    {
        string metric = spec.ValidationDocuments > 0 ? "validation_ppl" : "heldout_ppl";
        var sb = new StringBuilder($"method,lr,metric,{metric},steps,seed,diverged,chosen\n");
        foreach (var r in sweep)
            sb.Append($"{r.Method.Name()},{Lr(r.LearningRate)},{metric},{F(r.HeldOutPerplexity)},{r.Steps},{r.Seed},{(r.Diverged ? 1 : 0)},{(chosen[r.Method] == r.LearningRate ? 1 : 0)}\n");
        AtomicFile.WriteText(Path.Combine(outDir, SweepFile), sb.ToString());
    }

    static void WriteTables(string outDir, Results results)
    {
        var sb = new StringBuilder("method,seed,lr,steps,trainable_parameters,total_parameters,heldout_loss,heldout_ppl,final_train_loss,wall_seconds,diverged\n");
        foreach (var r in results.Runs)
            sb.Append($"{r.Method.Name()},{r.Seed},{Lr(r.LearningRate)},{r.Steps},{r.TrainableParameters},{r.TotalParameters},{F(r.HeldOutLoss)},{F(r.HeldOutPerplexity)},{F(r.FinalTrainLoss)},{F(r.WallSeconds, "0.0")},{(r.Diverged ? 1 : 0)}\n");
        AtomicFile.WriteText(Path.Combine(outDir, TableFile), sb.ToString());

        var ppl = results.Perplexity;
        var summary = new StringBuilder("method,seeds,lr,trainable_parameters,heldout_ppl_mean,heldout_ppl_low95,heldout_ppl_high95,heldout_ppl_sd,heldout_loss_mean,diverged_runs\n");
        foreach (var m in results.Spec.Methods)
        {
            var runs = results.Runs.Where(r => r.Method == m).ToList();
            var loss = runs.Where(r => !r.Diverged).Select(r => r.HeldOutLoss).DefaultIfEmpty(double.NaN).Average();
            summary.Append(ppl.TryGetValue(m, out var s)
                ? $"{m.Name()},{s.N},{Lr(results.ChosenLr[m])},{runs[0].TrainableParameters},{F(s.Mean)},{F(s.Low)},{F(s.High)},{F(s.Sd)},{F(loss)},{runs.Count(r => r.Diverged)}\n"
                : $"{m.Name()},0,{Lr(results.ChosenLr[m])},{runs[0].TrainableParameters},,,,,,{runs.Count}\n");
        }
        AtomicFile.WriteText(Path.Combine(outDir, SummaryFile), summary.ToString());

        var paired = new StringBuilder("comparison,seeds,ppl_diff_mean,ppl_diff_low95,ppl_diff_high95,per_seed,verdict\n");
        foreach (var (a, b, d) in results.Paired)
        {
            var first = results.BySeed(a); var second = results.BySeed(b);
            string perSeed = string.Join(" ", first.Keys.Intersect(second.Keys).Order().Select(s => $"{s}:{F(first[s] - second[s])}"));
            paired.Append($"{a.Name()}-{b.Name()},{d.N},{F(d.Mean)},{F(d.Low)},{F(d.High)},{perSeed},{Results.Verdict(d)}\n");
        }
        AtomicFile.WriteText(Path.Combine(outDir, PairedFile), paired.ToString());
    }

    /// <summary>The table as printed and committed (table.txt): perplexity per method, then the paired differences.</summary>
    public static string FormatTable(Results results)
    {
        var spec = results.Spec;
        var sb = new StringBuilder();
        sb.AppendLine($"Held-out perplexity after pretraining from scratch ({spec.Model} model, {spec.Steps} steps of {spec.BatchSize}×{spec.BlockSize} characters, " +
                      $"rank budget r = {spec.Rank}, merge every {spec.MergeEvery} steps; seeds {string.Join(",", spec.Seeds)}; mean [95 % t interval])");
        sb.AppendLine($"{"method",-8} {"lr",7} {"trainable",10} {"held-out perplexity",26}");
        var ppl = results.Perplexity;
        foreach (var m in spec.Methods)
        {
            var runs = results.Runs.Where(r => r.Method == m).ToList();
            string value = ppl.TryGetValue(m, out var s) ? s.Format(1, "0.000") : "diverged";
            int diverged = runs.Count(r => r.Diverged);
            sb.AppendLine($"{m.Name(),-8} {Lr(results.ChosenLr[m]),7} {runs[0].TrainableParameters,10:N0} {value,26}{(diverged > 0 && ppl.ContainsKey(m) ? $"  ({diverged} diverged run(s) left out)" : "")}");
        }
        if (results.Paired.Count > 0)
        {
            sb.AppendLine("Paired per-seed difference of held-out perplexity (negative: the first method is better):");
            foreach (var (a, b, d) in results.Paired)
                sb.AppendLine($"  {a.Name()} − {b.Name()}: {d.Format(1, "0.000")}  → {a.Name()} {Results.Verdict(d)}");
        }
        sb.Append($"Learning rate per method: lowest {(spec.ValidationDocuments > 0 ? $"validation perplexity ({spec.ValidationDocuments} documents apart from the held-out ones)" : "held-out perplexity")} over [{string.Join(", ", spec.LrGrid.Select(Lr))}] after {spec.TuneSteps} steps on seed {spec.TuneSeed} ({SweepFile}).");
        return sb.ToString();
    }

    /// <summary>Figures beyond the per-run ones: held-out perplexity by step (mean over seeds, per method) and the learning
    /// rate of one seed's runs (the restart warm-ups of ReLoRA/ReMoRA). Returns the files written.</summary>
    public static List<string> WriteFigures(Results results, string outDir, string figuresDir)
    {
        var written = new List<string>();
        var mean = MeanCurves(results, outDir);
        if (mean.Count > 0)
        {
            var (h, p) = RunFigures.Write(mean, "pretrain: held-out perplexity by step (mean over seeds)", "step", "held-out perplexity", Path.Combine(figuresDir, "pretrain-heldout-mean"));
            written.Add(h); written.Add(p);
        }
        int seed = results.Spec.Seeds[0];
        var logs = results.Spec.Methods.Select(m => (m.Name(), Path.Combine(outDir, "runs", $"{m.Name()}-seed{seed}", Trainer.LogFile)))
            .Where(x => File.Exists(x.Item2)).Select(x => (x.Item1, RunLog.ReadCsv(x.Item2))).ToList();
        if (logs.Count > 0)
        {
            var (h, p) = RunFigures.Write(RunFigures.Curves(logs, "lr"), $"pretrain: learning rate by step (seed {seed})", "step", "learning rate", Path.Combine(figuresDir, "pretrain-lr"));
            written.Add(h); written.Add(p);
        }
        return written;
    }

    /// <summary>Held-out perplexity by step per method, averaged over the seeds (from the runs' logs).</summary>
    public static List<Curve> MeanCurves(Results results, string outDir)
    {
        var curves = new List<Curve>();
        foreach (var m in results.Spec.Methods)
        {
            var byStep = new SortedDictionary<long, List<double>>();
            foreach (var r in results.Runs.Where(r => r.Method == m && !r.Diverged))
            {
                string log = Path.Combine(outDir, "runs", $"{m.Name()}-seed{r.Seed}", Trainer.LogFile);
                if (!File.Exists(log)) continue;
                foreach (var row in RunLog.ReadCsv(log).Rows)
                    if (row.Metrics.TryGetValue("heldout_ppl", out var v)) (byStep.TryGetValue(row.Step, out var l) ? l : byStep[row.Step] = []).Add(v);
            }
            if (byStep.Count > 0) curves.Add(new Curve(m.Name(), byStep.Keys.Select(s => (double)s).ToList(), byStep.Values.Select(v => v.Average()).ToList()));
        }
        return curves;
    }
}

using Mora.Adapters;
using Mora.Model;
using Mora.Training;

namespace Mora.Experiments;

/// <summary>One configuration a job trains and reports as a row: a method at a rank (0 for full fine-tuning, which has none).</summary>
public sealed record Configuration(string Method, int Rank);

/// <summary>
/// The settings every experiment shares (memorisation, GSM8K, continual pretraining, pretraining from scratch): the
/// model, the run schedule, the seeds, the tuning budget of <see cref="LearningRateSweep"/>, the evaluation points, how
/// often runs log and checkpoint, and the device. Each experiment's spec derives from it (the fine-tuning ones through
/// <see cref="FineTuningSpec"/>) and adds what is its own. <see cref="Validate"/> throws <see cref="ArgumentException"/>
/// naming the property (<c>nameof(Steps)</c>, …); <see cref="Experiment{TSpec}.Run"/> calls it once.
/// </summary>
public abstract record ExperimentSpec
{
    public string Preset { get; init; } = "default";
    /// <summary>The LLaMA preset (<see cref="LlamaConfig.PresetNames"/>).</summary>
    public string Model { get; init; } = "tiny";
    /// <summary>Training steps of each reported run.</summary>
    public int Steps { get; init; }
    /// <summary>Sequences per step of each run.</summary>
    public int BatchSize { get; init; } = 16;
    /// <summary>Evaluation seeds (the data each draws, the initialisation, the order).</summary>
    public IReadOnlyList<int> Seeds { get; init; } = [0];
    /// <summary>Steps of each tuning run (a short budget).</summary>
    public int TuneSteps { get; init; }
    /// <summary>The seed tuning runs use; not one of <see cref="Seeds"/>, so rates are not picked on the reported seeds.</summary>
    public int TuneSeed { get; init; } = 100;
    /// <summary>Evaluations during each reported run (the table's columns), evenly spaced, the last at the final step.</summary>
    public int EvalPoints { get; init; }
    /// <summary>Each run writes its CSV log every this many steps (and at evaluations, checkpoints and the end).</summary>
    public int LogEvery { get; init; } = 25;
    /// <summary>Checkpoints of each run, evenly spaced (the last at the final step): a killed run resumes from the latest.</summary>
    public int CheckpointsPerRun { get; init; } = 4;
    /// <summary>Where every run trains; not part of an experiment's identity (<see cref="ExperimentFolder.Claim"/>).</summary>
    public ComputeDevice Device { get; init; }

    /// <summary>Every configuration the job reports, in table order.</summary>
    public abstract IEnumerable<Configuration> Configurations();

    /// <summary>The grid <paramref name="c"/>'s rate is tuned over, or null when its rate is fixed.</summary>
    public abstract IReadOnlyList<double>? GridFor(Configuration c);

    /// <summary>The fixed rate of <paramref name="c"/> (when it has no grid).</summary>
    public abstract double FixedLr(Configuration c);

    /// <summary>Whether any learning rate is tuned.</summary>
    public bool Tunes => Configurations().Any(c => GridFor(c) is not null);

    /// <summary>The steps at which the reported runs evaluate.</summary>
    public IReadOnlyList<int> EvalSteps => Enumerable.Range(1, EvalPoints).Select(i => Steps / EvalPoints * i).ToList();

    /// <summary>Checks every setting (this experiment's, then the shared ones) and returns the spec.</summary>
    public abstract ExperimentSpec Validate();

    /// <summary>A run's checkpoint interval: <see cref="CheckpointsPerRun"/> evenly spaced over <paramref name="steps"/>.</summary>
    public int CheckpointEvery(int steps) => Math.Max(1, steps / CheckpointsPerRun);

    /// <summary>Checks the shared settings; each spec's <see cref="Validate"/> calls it after its own checks.</summary>
    protected void ValidateShared()
    {
        Positive(Steps, nameof(Steps)); Positive(BatchSize, nameof(BatchSize)); Positive(EvalPoints, nameof(EvalPoints));
        Positive(LogEvery, nameof(LogEvery)); Positive(CheckpointsPerRun, nameof(CheckpointsPerRun));
        if (Steps % EvalPoints != 0)
            throw new ArgumentException($"{nameof(Steps)} {Steps} must be a multiple of {nameof(EvalPoints)} {EvalPoints} (the table's evenly spaced columns)", nameof(Steps));
        if (Seeds is null || Seeds.Count == 0) throw new ArgumentException($"{nameof(Seeds)}: name at least one seed", nameof(Seeds));
        if (Seeds.Distinct().Count() != Seeds.Count) throw new ArgumentException($"{nameof(Seeds)}: a seed is named twice ({string.Join(",", Seeds)})", nameof(Seeds));
        if (Tunes)
        {
            Positive(TuneSteps, nameof(TuneSteps));
            if (Seeds.Contains(TuneSeed))
                throw new ArgumentException($"{nameof(TuneSeed)} {TuneSeed} is one of the evaluation {nameof(Seeds)} ({string.Join(",", Seeds)}); tune on another seed", nameof(TuneSeed));
        }
        if (!LlamaConfig.PresetNames.Contains(Model, StringComparer.OrdinalIgnoreCase))
            throw new ArgumentException($"{nameof(Model)}: unknown model preset '{Model}'; use {string.Join(", ", LlamaConfig.PresetNames)}", nameof(Model));
        Device.EnsureAvailable(nameof(Device));
    }

    /// <summary>Throws naming <paramref name="name"/> unless <paramref name="value"/> is positive.</summary>
    protected static void Positive(int value, string name)
    {
        if (value <= 0) throw new ArgumentException($"{name} must be positive, got {value}", name);
    }

    /// <summary>Throws naming <paramref name="name"/> unless <paramref name="value"/> is 0 or more.</summary>
    protected static void NonNegative(int value, string name)
    {
        if (value < 0) throw new ArgumentException($"{name} must be ≥ 0, got {value}", name);
    }
}

/// <summary>
/// The settings of the experiments that pretrain a base and fine-tune it with each method (<see cref="MemorizationSpec"/>,
/// <see cref="Gsm8kSpec"/>, <see cref="ContinualSpec"/>): the base's pretraining, the typed methods, ranks, learning rates
/// or grids, and the warm-up of each run.
/// </summary>
public abstract record FineTuningSpec : ExperimentSpec
{
    public IReadOnlyList<MethodSpec> Methods { get; init; } = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Sharing), MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full];
    public IReadOnlyList<int> Ranks { get; init; } = [8];
    /// <summary>Methods run at only some of <see cref="Ranks"/>, by name (the paper's rule: MoRA rotation at a low rank,
    /// sharing at a high one); a method not listed runs at every rank.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<int>> MethodRanks { get; init; } = new Dictionary<string, IReadOnlyList<int>>();
    /// <summary>When set, one base pretrained from this seed serves every seed and the tuning runs (as the paper fine-tunes
    /// one LLaMA); seeds then vary the fine-tuning data, the adapter's initialisation and the order. When null, each seed
    /// pretrains its own base.</summary>
    public int? BaseSeed { get; init; }
    /// <summary>Steps of the base's pretraining (0: the base is the random initialisation).</summary>
    public int PretrainSteps { get; init; }
    public double PretrainLr { get; init; }
    /// <summary>Sequences per step of the base's pretraining.</summary>
    public int PretrainBatchSize { get; init; } = 32;
    /// <summary>Warm-up of the base's pretraining: a tenth of its steps, at most this many.</summary>
    public int PretrainMaxWarmupSteps { get; init; } = 50;
    /// <summary>Warm-up of each fine-tuning run: a tenth of its steps, at most this many.</summary>
    public int MaxWarmupSteps { get; init; } = 20;
    /// <summary>Learning rate of LoRA, DoRA and MoRA when <see cref="AdapterLrGrid"/> is empty (one rate for all of them).</summary>
    public double AdapterLr { get; init; }
    /// <summary>Learning rate of full fine-tuning when <see cref="FullLrGrid"/> is empty.</summary>
    public double FullLr { get; init; }
    /// <summary>When not empty, each adapter method and rank gets its own rate from this log-spaced grid by
    /// <see cref="LearningRateSweep"/>'s rule (tuning runs of <see cref="ExperimentSpec.TuneSteps"/> steps on
    /// <see cref="ExperimentSpec.TuneSeed"/>).</summary>
    public IReadOnlyList<double> AdapterLrGrid { get; init; } = [];
    /// <summary>The same for full fine-tuning (which needs smaller rates).</summary>
    public IReadOnlyList<double> FullLrGrid { get; init; } = [];

    /// <summary>Every method at each of its ranks; full fine-tuning once, at rank 0.</summary>
    public override IEnumerable<Configuration> Configurations() =>
        Methods.SelectMany(m => m.Method == AdapterMethod.Full ? [new Configuration(m.Name, 0)]
            : (MethodRanks.TryGetValue(m.Name, out var only) ? only : Ranks).Select(r => new Configuration(m.Name, r)));

    static bool IsFull(Configuration c) => c.Method == MethodSpec.Full.Name;

    public override IReadOnlyList<double>? GridFor(Configuration c)
    {
        var grid = IsFull(c) ? FullLrGrid : AdapterLrGrid;
        return grid.Count > 0 ? grid : null;
    }

    public override double FixedLr(Configuration c) => IsFull(c) ? FullLr : AdapterLr;

    /// <summary>The warm-up of a run of <paramref name="steps"/> steps: a tenth of them, at most <paramref name="cap"/>
    /// (the kit's rule for every fine-tuning run and base).</summary>
    public static int Warmup(int steps, int cap) => Math.Min(cap, steps / 10);

    /// <summary>The trainer's settings of one fine-tuning run (tuning or reported): this spec's batch, warm-up, logging and
    /// checkpoints; <paramref name="evalEvery"/> steps between evaluations.</summary>
    public TrainConfig RunConfig(int steps, double lr, int seed, string dir, int evalEvery) => new()
    {
        Steps = steps, BatchSize = BatchSize, LearningRate = lr, WarmupSteps = Warmup(steps, MaxWarmupSteps), Seed = seed, OutputDir = dir,
        Device = Device, EvalEvery = evalEvery, CheckpointEvery = CheckpointEvery(steps), LogEvery = LogEvery,
    };

    /// <summary>The trainer's settings of the base's pretraining from <paramref name="seed"/> in <paramref name="dir"/>.</summary>
    public TrainConfig BaseConfig(int seed, string dir) => new()
    {
        Steps = PretrainSteps, BatchSize = PretrainBatchSize, LearningRate = PretrainLr, WarmupSteps = Warmup(PretrainSteps, PretrainMaxWarmupSteps),
        Seed = seed, OutputDir = dir, CheckpointEvery = CheckpointEvery(PretrainSteps), Device = Device, LogEvery = LogEvery,
    };

    /// <summary>Checks the fine-tuning settings, then the shared ones.</summary>
    protected void ValidateFineTuning()
    {
        NonNegative(PretrainSteps, nameof(PretrainSteps)); Positive(PretrainBatchSize, nameof(PretrainBatchSize));
        NonNegative(PretrainMaxWarmupSteps, nameof(PretrainMaxWarmupSteps)); NonNegative(MaxWarmupSteps, nameof(MaxWarmupSteps));
        if (Methods is null || Methods.Count == 0 || Methods.Any(m => m is null)) throw new ArgumentException($"{nameof(Methods)}: name at least one method", nameof(Methods));
        if (Methods.Distinct().Count() != Methods.Count) throw new ArgumentException($"{nameof(Methods)}: a method is named twice ({string.Join(", ", Methods)})", nameof(Methods));
        if (Ranks is null || Ranks.Count == 0) throw new ArgumentException($"{nameof(Ranks)}: name at least one rank", nameof(Ranks));
        foreach (var r in Ranks) Positive(r, nameof(Ranks));
        foreach (var (v, name) in new[] { (AdapterLr, nameof(AdapterLr)), (FullLr, nameof(FullLr)), (PretrainLr, nameof(PretrainLr)) })
            if (!(v > 0) || double.IsInfinity(v)) throw new ArgumentException($"{name} must be positive, got {v}", name);
        foreach (var (name, ranks) in MethodRanks)
        {
            if (!Methods.Any(m => m.Name == name)) throw new ArgumentException($"{nameof(MethodRanks)}: '{name}' is not one of the methods ({string.Join(", ", Methods)})", nameof(MethodRanks));
            if (ranks.Count == 0 || ranks.Any(r => !Ranks.Contains(r)))
                throw new ArgumentException($"{nameof(MethodRanks)}: {name}'s ranks ({string.Join(",", ranks)}) must be some of the ranks ({string.Join(",", Ranks)})", nameof(MethodRanks));
        }
        if (AdapterLrGrid.Count > 0) LearningRateSweep.CheckGrid(AdapterLrGrid, nameof(AdapterLrGrid));
        if (FullLrGrid.Count > 0) LearningRateSweep.CheckGrid(FullLrGrid, nameof(FullLrGrid));
        ValidateShared();
    }
}

using Mora.Adapters;
using Mora.IO;
using Mora.Model;
using Mora.Training;

namespace Mora.Experiments;

/// <summary>One run's result, as every table reads it: its configuration and seed, size, rate, the named scores of its
/// experiment (<see cref="Experiment{TSpec}.Columns"/>), its last training loss and time. <see cref="Diverged"/> runs
/// (tuning runs, and a pretraining run whose loss blew up) have NaN scores and are left out of every statistic.
/// <see cref="Identity"/> is the job's (settings and inputs by content) it was made under.</summary>
public sealed record RunRecord(string Method, int Rank, int Seed, long TrainableParameters, double LearningRate,
    IReadOnlyDictionary<string, double> Scores, double FinalLoss, double WallSeconds, bool Diverged = false)
{
    public long TotalParameters { get; init; }
    public string? Identity { get; init; }

    /// <summary>The score <paramref name="name"/> (a column of the experiment's table).</summary>
    public double Score(string name) => Scores.TryGetValue(name, out var v) ? v
        : throw new KeyNotFoundException($"run {Method} r={Rank} seed {Seed} has no score '{name}' (it has {string.Join(", ", Scores.Keys)})");
}

/// <summary>What one run trains: its folder and name, configuration, seed, rate, length, whether it is a tuning run, and
/// the base it starts from (null: from scratch).</summary>
public sealed record RunPlan(string Name, string Label, string Dir, Configuration Config, int Seed, double LearningRate, int Steps, int EvalEvery, bool Tuning, string? BaseDir);

/// <summary>How a job treats what its output folder already holds: <see cref="Fresh"/> discards the folder's earlier job
/// (other settings or inputs) and starts again; <see cref="Overwrite"/> lets it write into a folder that holds published
/// results (a COMMAND.txt) of another command than <see cref="Command"/> (the command line that runs it, if any).</summary>
public sealed record RunOptions(bool Fresh = false, bool Overwrite = false, string? Command = null);

/// <summary>Everything a job produced: its runs (seed-major, in configuration order), the sweep's tuning runs, the rate
/// each configuration trained at, and the printed table.</summary>
public sealed record JobResult(ExperimentSpec Spec, IReadOnlyList<RunRecord> Runs, IReadOnlyList<SweepPoint> Sweep,
    IReadOnlyDictionary<(string Method, int Rank), double> Rates, string Table = "")
{
    /// <summary>Runs grouped by configuration, in the order they ran.</summary>
    public IEnumerable<IGrouping<(string Method, int Rank), RunRecord>> Groups => Runs.GroupBy(r => (r.Method, r.Rank));
}

/// <summary>What the command line runs and publishes: a job of one kind with its settings, the files of its report in its
/// output folder, and its run (an <see cref="Experiment{TSpec}"/>, or a study made of several, as <see cref="ContinualFrontier"/>).</summary>
public interface IJob
{
    /// <summary>The prefix of its files and of its default folder.</summary>
    string Kind { get; }
    ExperimentSpec Spec { get; }
    /// <summary>The files of its output folder that make its report (copied into the figures folder).</summary>
    IReadOnlyList<string> ReportFiles { get; }
    /// <summary>Whether its output folder holds <c>runs/</c> whose logs are drawn one curve per run.</summary>
    bool PlotsRuns => true;
    /// <summary>Runs the job in <paramref name="outDir"/>, reusing what it finished before; returns its runs and table.</summary>
    JobResult Run(string outDir, TextWriter? output = null, CancellationToken cancel = default, RunOptions? options = null);
}

/// <summary>
/// The pipeline every experiment runs (memorisation, GSM8K, continual pretraining, pretraining from scratch), in one
/// place: check the inputs before anything is written; claim the output folder (one writer, settings and inputs by
/// content, <see cref="ExperimentFolder"/>); tune each configuration's learning rate by the one rule
/// (<see cref="LearningRateSweep"/>); train seeds × configurations, reusing finished runs and resuming killed ones from
/// their checkpoints; write the tables in one dialect (<see cref="SeedReport"/>) and the figures; print the table.
/// An experiment derives from it and supplies only what differs: its data and checks (<see cref="Prepare"/>), its base
/// (<see cref="BaseFor"/>), one run (<see cref="Train"/>), its scores and comparisons, the metric the sweep maximises,
/// its table and figures. Layout of the output folder: <c>sweep/</c> (tuning runs), <c>runs/</c> (reported runs), each
/// run's folder with its log, manifest, checkpoints and <c>result.json</c>; bases and the tables beside them.
/// </summary>
public abstract class Experiment<TSpec> : IJob where TSpec : ExperimentSpec
{
    protected Experiment(TSpec spec) => Spec = spec ?? throw new ArgumentNullException(nameof(spec));

    public TSpec Spec { get; }
    ExperimentSpec IJob.Spec => Spec;
    /// <summary>The experiment's kind: the prefix of its files and of its default folder (memorization, gsm8k, continual, pretrain).</summary>
    public abstract string Kind { get; }
    /// <summary>The job's tables: <c>{kind}.csv</c> (per run), <c>{kind}-summary.csv</c>, <c>{kind}-paired.csv</c>.</summary>
    string Table(string suffix = "") => $"{Kind}{suffix}.csv";

    /// <summary>Where the job writes, what it prints to, and its cancellation (set by <see cref="Run"/>).</summary>
    protected string OutDir { get; private set; } = "";
    protected TextWriter Output { get; private set; } = TextWriter.Null;
    protected CancellationToken Cancel { get; private set; }
    string? _identity;

    // ------------------------------------------------------------------ what an experiment supplies

    /// <summary>Loads the data and checks every input (files, a given base, its tokenizer) before anything is written;
    /// prints what the job trains on; returns the files the job is made from, to identify it by content.</summary>
    protected virtual IReadOnlyList<InputFile> Prepare() => [];

    /// <summary>The folder of the base the runs of <paramref name="seed"/> start from (pretrained on first use, see
    /// <see cref="PretrainedBase"/>), or null: runs start from scratch.</summary>
    protected abstract string? BaseFor(int seed);

    /// <summary>Called before the reported runs of <paramref name="seed"/> (the memorisation floor is measured here).</summary>
    protected virtual void BeforeSeed(int seed, string? baseDir) { }

    /// <summary>Trains (or resumes) one run; <see cref="Fit"/> does the part every run shares.</summary>
    protected abstract RunRecord Train(RunPlan plan);

    /// <summary>The score columns of the per-run table, in order.</summary>
    public abstract IReadOnlyList<string> Columns { get; }

    /// <summary>The scores summarised over seeds (mean, 95 % interval, sd) and paired against the baseline.</summary>
    public virtual IReadOnlyList<string> SummaryScores => Columns;

    /// <summary>The per-seed comparisons reported, (method, baseline): by default every method against LoRA.</summary>
    public virtual IReadOnlyList<(string Method, string Baseline)> Comparisons =>
        Spec.Configurations().Select(c => c.Method).Distinct().Where(m => m != MethodSpec.Lora.Name).Select(m => (m, MethodSpec.Lora.Name)).ToList();

    /// <summary>The ranks the comparisons are made at, in report order.</summary>
    public virtual IReadOnlyList<int> ReportRanks => Spec.Configurations().Select(c => c.Rank).Where(r => r > 0).Distinct().ToList();

    /// <summary>What the sweep maximises for a finished tuning run (an accuracy, or minus a loss).</summary>
    protected abstract double TuningScore(RunRecord run);
    /// <summary>What the sweep's score is measured on, as printed.</summary>
    protected virtual string TunedOn => "the tuning seed's data";
    /// <summary>How a sweep score prints (null: as a percentage).</summary>
    protected virtual Func<double, string>? ShowTuningScore => null;

    /// <summary>The table printed at the end of a job (committed as table.txt).</summary>
    public abstract string FormatTable(JobResult result);

    /// <summary>Writes the report's files beyond the tables (figures, the floor) into the output folder; returns their names.</summary>
    protected virtual IEnumerable<string> WriteExtras(JobResult result) => [];

    /// <summary>Whether a reported run that diverges is recorded (and left out of the statistics) instead of stopping the job.</summary>
    protected virtual bool RecordsDivergedRuns => false;

    /// <summary>A run folder's name.</summary>
    protected virtual string RunName(Configuration c, int seed) => c.Rank == 0 ? $"{c.Method}-seed{seed}" : $"{c.Method}-r{c.Rank}-seed{seed}";

    /// <summary>The folder of a reported run of this job.</summary>
    protected string RunDir(RunRecord run) => Path.Combine(OutDir, "runs", RunName(new Configuration(run.Method, run.Rank), run.Seed));

    /// <summary>A tuning run's folder name.</summary>
    protected virtual string SweepRunName(Configuration c, double lr) => $"{RunName(c, Spec.TuneSeed)}-lr{LearningRateSweep.Lr(lr)}";

    /// <summary>The names of every file the job writes for its report (the CLI copies them into the figures folder).</summary>
    public virtual IReadOnlyList<string> ReportFiles => [ExperimentFolder.SpecFile, Table(), Table("-summary"), Table("-paired"), .. Spec.Tunes ? [LearningRateSweep.File, .. LearningRateSweep.FigureFiles] : Array.Empty<string>()];

    // ------------------------------------------------------------------ the pipeline

    /// <summary>Runs the job in <paramref name="outDir"/>: validates the spec and the inputs, claims the folder, tunes,
    /// trains, writes the tables and figures, prints the table. Run again with the same settings and inputs it reuses
    /// every finished run and resumes an interrupted one, so the tables are those of an uninterrupted job (see
    /// <see cref="RunOptions"/> for a folder that holds something else).</summary>
    public JobResult Run(string outDir, TextWriter? output = null, CancellationToken cancel = default, RunOptions? options = null)
    {
        options ??= new RunOptions();
        Spec.Validate();
        Output = output ?? TextWriter.Null;
        Cancel = cancel;
        _bases.Clear();
        OutDir = OutputFolders.Check(outDir, nameof(outDir));
        OutputFolders.CheckNotAnotherJobs(OutDir, nameof(outDir), options.Command ?? "", options.Overwrite, f => ExperimentFolder.HoldsSettingsOf(f, Spec));
        var inputs = Prepare();
        using (RunFolder.Lock(OutDir, Output))
        {
            _identity = ExperimentFolder.Claim(OutDir, Spec, Kind, inputs, options.Fresh, Output);
            var (rates, sweep) = LearningRateSweep.TuneAll(Spec, (c, lr) =>
            {
                var run = RunOnce(new RunPlan(SweepRunName(c, lr), $"sweep/{SweepRunName(c, lr)}", Path.Combine(OutDir, "sweep"), c, Spec.TuneSeed, lr, Spec.TuneSteps, Spec.TuneSteps, true,
                    BaseOf(Spec.TuneSeed)));
                return run.Diverged ? LearningRateSweep.Diverged : (TuningScore(run), run.FinalLoss);
            }, c => RunName(c, Spec.TuneSeed), TunedOn, Output, ShowTuningScore);

            var runs = new List<RunRecord>();
            foreach (int seed in Spec.Seeds)
            {
                string? baseDir = BaseOf(seed);
                BeforeSeed(seed, baseDir);
                foreach (var c in Spec.Configurations())
                    runs.Add(RunOnce(new RunPlan(RunName(c, seed), RunName(c, seed), Path.Combine(OutDir, "runs"), c, seed, rates[(c.Method, c.Rank)], Spec.Steps,
                        Spec.Steps / Spec.EvalPoints, false, baseDir)));
            }
            var result = new JobResult(Spec, runs, sweep, rates);
            WriteTables(result);
            WriteExtras(result).ToList();
            string table = FormatTable(result);
            Output.WriteLine();
            Output.WriteLine(table);
            Output.WriteLine($"tables: {ExperimentFolder.Show(Path.Combine(OutDir, Table()))} (per run), {Table("-summary")} (mean and 95 % interval over seeds), " +
                             $"{Table("-paired")} (per seed minus the baseline){(sweep.Count > 0 ? $", {LearningRateSweep.File}" : "")}");
            return result with { Table = table };
        }
    }

    /// <summary>The base of a seed, asked of the experiment once per job.</summary>
    string? BaseOf(int seed) => _bases.TryGetValue(seed, out var b) ? b : _bases[seed] = BaseFor(seed);
    readonly Dictionary<int, string?> _bases = [];

    /// <summary>One run: its finished result when there is one (made under this job's identity, at this rate), else trained
    /// (resuming its last checkpoint) and its result written.</summary>
    RunRecord RunOnce(RunPlan plan)
    {
        Cancel.ThrowIfCancellationRequested();
        string dir = SafePath.Under(plan.Dir, plan.Name, "run name");
        plan = plan with { Dir = dir };
        if (ExperimentFolder.ReadResult(dir, _identity) is { } done)
        {
            ExperimentFolder.CheckReusedRate(dir, done.LearningRate, plan.LearningRate);
            Output.WriteLine($"{plan.Label}: finished before, reusing its {ExperimentFolder.ResultFile} (delete {ExperimentFolder.Show(dir)} to run it again)");
            return done;
        }
        if (Checkpoints.LatestStep(dir) is { } step)
            Output.WriteLine($"{plan.Label}: resuming from step {step} (its last checkpoint in {ExperimentFolder.Show(Path.Combine(dir, Trainer.CheckpointDir))})");
        var run = Train(plan) with { Identity = _identity };
        ExperimentFolder.WriteResult(dir, run);
        return run;
    }

    /// <summary>The part every run shares: prints its size and rate, trains with <paramref name="trainer"/> and turns the
    /// result into a record with <paramref name="scores"/>. A tuning run that diverges (or any run, when the experiment
    /// <see cref="RecordsDivergedRuns"/>) is an outcome: printed and recorded as diverged. Otherwise divergence propagates.</summary>
    protected RunRecord Fit(RunPlan plan, LlamaForCausalLM model, Trainer trainer, Func<TrainResult, IEnumerable<KeyValuePair<string, double>>> scores, string note = "")
    {
        var (trainable, total) = Peft.CountParameters(model);
        Output.WriteLine($"{plan.Label}: {trainable:N0} trainable parameters, lr {plan.LearningRate:G3}{note}");
        trainer.Progress ??= ProgressDisplay.For(plan.Name);
        try
        {
            var r = trainer.Run(Cancel);
            return new RunRecord(plan.Config.Method, plan.Config.Rank, plan.Seed, r.TrainableParameters, plan.LearningRate,
                new Dictionary<string, double>(scores(r)), r.Log.Rows[^1].Loss, r.WallSeconds) { TotalParameters = total };
        }
        catch (TrainingDivergedException e) when (plan.Tuning || RecordsDivergedRuns)
        {
            Output.WriteLine($"{plan.Label}: diverged at step {e.Step}; recorded{(plan.Tuning ? " as the sweep's worst score" : ", and left out of the statistics")}");
            return new RunRecord(plan.Config.Method, plan.Config.Rank, plan.Seed, trainable, plan.LearningRate, Columns.ToDictionary(c => c, _ => double.NaN),
                double.NaN, 0, Diverged: true) { TotalParameters = total };
        }
    }

    /// <summary>A base pretrained once into <paramref name="folder"/> (its checkpoints there, the model in <c>model/</c>,
    /// written whole with checksums) and reused while complete; <paramref name="pretrain"/> returns the trained model
    /// given the folder for its checkpoints.</summary>
    protected string PretrainedBase(string folder, string label, Func<string, LlamaForCausalLM> pretrain)
    {
        string dir = Path.Combine(OutDir, folder), modelDir = Path.Combine(dir, "model");
        if (RunFolder.IsCompleteModel(modelDir, out string why))
        {
            Output.WriteLine($"{label}: reusing the pretrained base in {ExperimentFolder.Show(modelDir)}");
            return modelDir;
        }
        if (Directory.Exists(modelDir)) Output.WriteLine($"{label}: the base in {ExperimentFolder.Show(modelDir)} is not complete ({why}); pretraining it again");
        using var model = pretrain(dir);
        RunFolder.SaveModel(model, modelDir);
        return modelDir;
    }

    void WriteTables(JobResult result)
    {
        bool diverged = RecordsDivergedRuns;
        AtomicFile.WriteText(Path.Combine(OutDir, Table()), SeedReport.RunsCsv(result.Runs, Columns, diverged));
        AtomicFile.WriteText(Path.Combine(OutDir, Table("-summary")), SeedReport.SummaryCsv(result.Runs, SummaryScores, diverged));
        AtomicFile.WriteText(Path.Combine(OutDir, Table("-paired")), SeedReport.PairedCsv(SeedReport.Paired(ReportRanks, Comparisons, result.Runs, SummaryScores)));
        if (result.Sweep.Count > 0)
        {
            LearningRateSweep.Write(Path.Combine(OutDir, LearningRateSweep.File), result.Sweep);
            Mora.Figures.RunFigures.Save(LearningRateSweep.Figure(result.Sweep, LearningRateSweep.Horizon(Spec)), Path.Combine(OutDir, "lr-sweep"));
        }
    }

    /// <summary>Per-seed paired differences of <paramref name="metric"/> over this experiment's comparisons.</summary>
    public IReadOnlyList<PairedDifference> Paired(IReadOnlyList<RunRecord> runs, string? metric = null) =>
        SeedReport.Paired(ReportRanks, Comparisons, runs, metric is null ? SummaryScores : [metric]).ToList();
}

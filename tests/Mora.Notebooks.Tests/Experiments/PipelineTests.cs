using System.Globalization;
using Mora.Data;
using Mora.Experiments;
using Mora.Model;
using Mora.Training;

namespace Mora.Tests;

/// <summary>A fifth experiment in one short file, as a researcher would add one: it supplies its configurations, one run
/// and its table; the pipeline does the rest. Its runs score a closed-form curve of the rate (peak at
/// <see cref="Peak"/>) plus a seed's offset, so the pipeline is tested in-process without training, except a rate of
/// <see cref="Diverges"/>, whose run really trains a tiny model with NaN weights and diverges.</summary>
sealed record ToySpec : ExperimentSpec
{
    public ToySpec() { Steps = 4; EvalPoints = 2; TuneSteps = 2; Seeds = [0, 1, 2]; }
    public IReadOnlyList<double> Grid { get; init; } = [1e-3, 1e-2, 1e-1];
    public double Peak { get; init; } = 1e-2;
    public double Diverges { get; init; } = -1;
    public bool ReportedRunsDiverge { get; init; }
    public override IEnumerable<Configuration> Configurations() => [new("lora", 4), new("mora-rotation", 4)];
    public override IReadOnlyList<double>? GridFor(Configuration c) => Grid;
    public override double FixedLr(Configuration c) => throw new InvalidOperationException("tuned");
    public override ToySpec Validate() { ValidateShared(); return this; }
}

sealed class ToyExperiment(ToySpec spec, string? dataFile = null) : Experiment<ToySpec>(spec)
{
    public int Trained { get; private set; }
    public override string Kind => "toy";
    public override IReadOnlyList<string> Columns => ["score"];
    protected override IReadOnlyList<InputFile> Prepare() =>
        dataFile is null ? [] : File.Exists(dataFile) ? [new InputFile("data file", dataFile)] : throw new ArgumentException($"DataFile: no file {dataFile}", "DataFile");
    protected override string? BaseFor(int seed) => null;
    protected override double TuningScore(RunRecord run) => run.Score("score");
    public override string FormatTable(JobResult r) => SeedReport.MeanTable("toy", r.Groups, [("score", "score")]).TrimEnd();

    protected override RunRecord Train(RunPlan plan)
    {
        Trained++;
        if (plan.LearningRate == Spec.Diverges || !plan.Tuning && Spec.ReportedRunsDiverge)
        {
            using var rng = TestSupport.TorchSeed(plan.Seed);   // the model's initialisation and the trainer use torch's global generator
            var tok = new CharTokenizer();
            using var model = new LlamaForCausalLM(LlamaConfig.Tiny(tok.VocabSize));
            using (TorchSharp.torch.no_grad()) model.named_parameters().First().parameter.fill_(double.NaN);
            var data = Enumerable.Range(0, 4).Select(i => LmData.FromPair(tok, $"k{i}=", $"v{i}")).ToList();
            var trainer = new Trainer(model, new TrainConfig { Steps = plan.Steps, BatchSize = 2, LearningRate = plan.LearningRate, OutputDir = plan.Dir, ShowProgress = false }, data);
            return Fit(plan, model, trainer, _ => [KeyValuePair.Create("score", 0.0)]);
        }
        double d = Math.Log10(plan.LearningRate / Spec.Peak);
        double score = 0.5 - 0.1 * d * d + (plan.Config.Method == "mora-rotation" ? 0.05 : 0) + 0.01 * plan.Seed;
        return new RunRecord(plan.Config.Method, plan.Config.Rank, plan.Seed, 10, plan.LearningRate, new Dictionary<string, double> { ["score"] = score }, 1 + d * d, 0);
    }
}

/// <summary>The pipeline every experiment shares (<see cref="Experiment{TSpec}"/>), on the toy experiment: tables in one
/// dialect, reuse, identity by content (a changed setting or input file is refused naming it, <c>--fresh</c> starts again),
/// one writer per folder, refusals that leave nothing behind; and every committed result's table.txt reproduced from
/// its committed CSVs by today's formatting.</summary>
public class PipelineTests
{
    static string Dir() => Path.Combine(TestSupport.TempDir(), "job");

    [Fact]
    public void ItTunesTrainsWritesOneDialectAndReusesEverything()
    {
        string dir = Dir();
        var first = new ToyExperiment(new ToySpec());
        var result = first.Run(dir);
        Assert.Equal(2 * 3 + 2 * 3, first.Trained);                       // 3 grid rates for each of 2 configurations, then 2 × 3 seeds
        Assert.All(result.Rates.Values, lr => Assert.Equal(1e-2, lr));     // the peak, inside the grid
        Assert.Equal("method,rank,seed,trainable_parameters,learning_rate,score,final_loss", File.ReadLines(Path.Combine(dir, "toy.csv")).First());
        Assert.Equal("method,rank,seeds,trainable_parameters,learning_rate,score_mean,score_ci_low,score_ci_high,score_sd", File.ReadLines(Path.Combine(dir, "toy-summary.csv")).First());
        var paired = SeedReport.ReadPaired(Path.Combine(dir, "toy-paired.csv"));
        var row = Assert.Single(paired);
        Assert.Equal(("4", "mora-rotation", "lora", "score", 3, "0.0500"), (row.Rank, row.Method, row.Baseline, row.Metric, row.Seeds, row.Mean));   // tolerance: 4 decimals as written
        Assert.Equal(6, LearningRateSweep.Read(Path.Combine(dir, LearningRateSweep.File)).Count);
        var tables = Directory.GetFiles(dir, "*.csv").Order().Select(File.ReadAllText).ToList();

        var again = new ToyExperiment(new ToySpec());
        var output = new StringWriter();
        var second = again.Run(dir, output);
        Assert.Equal(0, again.Trained);
        Assert.Contains("finished before, reusing its result.json", output.ToString());
        Assert.Equal(tables, Directory.GetFiles(dir, "*.csv").Order().Select(File.ReadAllText));
        Assert.Equal(result.Table, second.Table);
    }

    [Fact]
    public void AChangedSettingIsRefusedNamingItAndFreshStartsAgain()
    {
        string dir = Dir();
        new ToyExperiment(new ToySpec()).Run(dir);
        string spec = File.ReadAllText(Path.Combine(dir, ExperimentFolder.SpecFile));
        var changed = new ToyExperiment(new ToySpec { Steps = 8 });
        var e = Assert.Throws<ArgumentException>(() => changed.Run(dir));
        Assert.Contains("Steps 4 → 8", e.Message);
        Assert.Contains("--fresh", e.Message);
        Assert.Equal(0, changed.Trained);
        Assert.Equal(spec, File.ReadAllText(Path.Combine(dir, ExperimentFolder.SpecFile)));          // nothing overwritten
        var output = new StringWriter();
        changed.Run(dir, output, options: new RunOptions(Fresh: true));
        Assert.Contains("--fresh: discarded the earlier", output.ToString());
        Assert.Equal(12, changed.Trained);
        Assert.Contains("\"Steps\": 8", File.ReadAllText(Path.Combine(dir, ExperimentFolder.SpecFile)));
    }

    [Fact]
    public void FreshDiscardsOnlyWhatTheJobWroteAndLeavesTheUsersOwnFiles()
    {
        string dir = Dir();
        new ToyExperiment(new ToySpec()).Run(dir);
        // a job's base (base-seed<n>/model), and a user's things whose names merely look like the job's
        Directory.CreateDirectory(Path.Combine(dir, "base-seed3", "model"));
        File.WriteAllText(Path.Combine(dir, "base-seed3", "model", "config.json"), "{}");
        string[] users = ["baseline/notes.md", "base-seed3-old/keep.txt", "base/readme.txt", "toy notes.txt", "toy-draft.docx", "toyish.csv", "toy-Summary.csv"];
        foreach (var u in users)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(dir, u))!);
            File.WriteAllText(Path.Combine(dir, u), u);
        }
        Assert.True(File.Exists(Path.Combine(dir, "toy.csv")) && Directory.Exists(Path.Combine(dir, "runs")));
        var output = new StringWriter();
        var changed = new ToyExperiment(new ToySpec { Steps = 8 });
        changed.Run(dir, output, options: new RunOptions(Fresh: true));
        Assert.Equal(12, changed.Trained);                                   // nothing of the old job was reused
        Assert.False(Directory.Exists(Path.Combine(dir, "base-seed3")));     // the job's base went, but is not lost:
        var bin = Assert.Single(Directory.GetDirectories(dir, ".discarded-*"));
        Assert.Equal("{}", File.ReadAllText(Path.Combine(bin, "base-seed3", "model", "config.json")));
        Assert.True(File.Exists(Path.Combine(bin, "toy.csv")) && Directory.Exists(Path.Combine(bin, "runs")));
        foreach (var u in users) Assert.Equal(u, File.ReadAllText(Path.Combine(dir, u)));
        Assert.Contains("left what the job did not write", output.ToString());
        Assert.Contains("baseline/", output.ToString());
        Assert.True(ExperimentFolder.IsJobOutput("toy-summary.csv", "toy") && ExperimentFolder.IsJobOutput("toy-mean-char_acc.png", "toy"));
        Assert.False(ExperimentFolder.IsJobOutput("toy notes.txt", "toy") || ExperimentFolder.IsJobOutput("toyish.csv", "toy"));
    }

    [Fact]
    public void AnInputFileWhoseContentChangedIsRefusedNamingIt()
    {
        string dir = Dir(), data = Path.Combine(TestSupport.TempDir(), "data.txt");
        var rng = new Random(TestSupport.Seed());
        File.WriteAllText(data, $"rows {rng.Next()}\n");
        new ToyExperiment(new ToySpec(), data).Run(dir);
        Assert.Equal(0, Reuse(dir, data));                                   // same content: every run reused
        File.WriteAllText(data, $"rows {rng.Next()} changed\n");
        var e = Assert.Throws<ArgumentException>(() => new ToyExperiment(new ToySpec(), data).Run(dir));
        Assert.Contains("the data file", e.Message);
        Assert.Contains("changed: sha256", e.Message);
        Assert.Contains("--fresh", e.Message);
        var fresh = new ToyExperiment(new ToySpec(), data);
        fresh.Run(dir, options: new RunOptions(Fresh: true));
        Assert.Equal(12, fresh.Trained);

        static int Reuse(string dir, string data) { var x = new ToyExperiment(new ToySpec(), data); x.Run(dir); return x.Trained; }
    }

    [Fact]
    public void AResultMadeUnderAnotherIdentityIsNeverReused()
    {
        string dir = Dir();
        new ToyExperiment(new ToySpec()).Run(dir);
        // Someone deletes the folder's settings by hand and reruns with other settings: the runs' results still carry theirs.
        File.Delete(Path.Combine(dir, ExperimentFolder.SpecFile));
        File.Delete(Path.Combine(dir, ExperimentFolder.InputsFile));
        var e = Assert.Throws<ArgumentException>(() => new ToyExperiment(new ToySpec { Peak = 3e-2 }).Run(dir));
        Assert.Contains("result.json was made from other settings or inputs", e.Message);
    }

    [Fact]
    public void ASecondWriterIsRefusedNamingTheHolderAndAStaleLockIsTakenOver()
    {
        string dir = Dir();
        using (RunFolder.Lock(dir))
        {
            var e = Assert.Throws<ArgumentException>(() => new ToyExperiment(new ToySpec()).Run(dir));
            Assert.Contains($"process {Environment.ProcessId} on {Environment.MachineName}", e.Message);
            Assert.False(File.Exists(Path.Combine(dir, ExperimentFolder.SpecFile)));                 // the refused run wrote nothing
        }
        // A lock left by a process that is gone (a pid far above any live one) is taken over, saying so.
        File.WriteAllText(Path.Combine(dir, RunFolder.LockFile), $"{int.MaxValue - TestSupport.Seed() % 1000} {Environment.MachineName} 2024-01-01T00:00:00Z");
        var output = new StringWriter();
        new ToyExperiment(new ToySpec()).Run(dir, output);
        Assert.Contains("removing a stale lock", output.ToString());
        Assert.False(File.Exists(Path.Combine(dir, RunFolder.WriterFile)));                   // released at the end
        using (RunFolder.Lock(dir)) { }                                                       // and free again
    }

    [Fact]
    public void TwoWritersRacingForOneFolderNeverBothHoldIt()
    {
        // the OS lock decides: of many threads taking one folder's lock at once, at most one holds it at any time
        string dir = Dir();
        int holders = 0, most = 0, won = 0, refused = 0;
        var rng = new Random(TestSupport.Seed());
        var delays = Enumerable.Range(0, 16).Select(_ => rng.Next(0, 3)).ToArray();
        Parallel.For(0, 16, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            for (int k = 0; k < 20; k++)
            {
                try
                {
                    using (RunFolder.Lock(dir))
                    {
                        int now = Interlocked.Increment(ref holders);
                        InterlockedMax(ref most, now);
                        Interlocked.Increment(ref won);
                        Thread.Sleep(delays[i]);
                        Interlocked.Decrement(ref holders);
                    }
                }
                catch (ArgumentException e) when (e.Message.Contains("is being written by another run")) { Interlocked.Increment(ref refused); }
            }
        });
        Assert.Equal(1, most);
        Assert.True(won > 0, $"won {won}, refused {refused}");
        Assert.Equal(320, won + refused);
    }

    static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
    }

    [Fact]
    public void ARefusedRunLeavesNothingBehind()
    {
        string dir = Dir();
        var e = Assert.Throws<ArgumentException>(() => new ToyExperiment(new ToySpec(), "/nonexistent/data.txt").Run(dir));
        Assert.Equal("DataFile", e.ParamName);
        Assert.False(Directory.Exists(dir));
        Assert.Throws<ArgumentException>(() => new ToyExperiment(new ToySpec { Steps = 5 }).Run(dir));   // 5 is not a multiple of 2 evaluations
        Assert.False(Directory.Exists(dir));
    }

    [Fact]
    public void ADivergedTuningRunIsRecordedAsTheWorstAndADivergedReportedRunStopsTheJob()
    {
        string dir = Dir();
        var output = new StringWriter();
        var result = new ToyExperiment(new ToySpec { Grid = [1e-3, 1e-2, 0.5], Diverges = 0.5 }).Run(dir, output);
        Assert.Contains("sweep/lora-r4-seed100-lr0.5: diverged at step 1; recorded as the sweep's worst score", output.ToString());
        Assert.Contains("lora,4,0.5,diverged,diverged,0,0", File.ReadAllLines(Path.Combine(dir, LearningRateSweep.File)));
        Assert.All(result.Rates.Values, lr => Assert.Equal(1e-2, lr));
        Assert.True(ExperimentFolder.ReadResult(Path.Combine(dir, "sweep", "lora-r4-seed100-lr0.5"), null)!.Diverged);
        // A reported run that diverges stops the job (its result is not written).
        string other = Dir();
        Assert.Throws<TrainingDivergedException>(() => new ToyExperiment(new ToySpec { ReportedRunsDiverge = true }).Run(other));
        Assert.False(File.Exists(Path.Combine(other, "runs", "lora-r4-seed0", ExperimentFolder.ResultFile)));
    }

    /// <summary>Today's formatting reproduces every committed result's table.txt from the committed CSVs: nothing the
    /// pipeline rewrote changed a printed number. The text must be the same to the letter; each number may differ by one
    /// unit of its last printed digit, since the CSVs hold four decimals and the tables were printed from the unrounded
    /// values (3 of the 6 tables differ so, at one number each). Results committed before spec.json was kept use the preset
    /// their folder names.</summary>
    [Theory]
    [InlineData("memorization-cpu-regimes")]
    [InlineData("memorization-cpu-low-regime")]
    [InlineData("memorization-r1-rotation-control")]
    [InlineData("gsm8k-cpu-regimes")]
    [InlineData("instruct-cpu")]
    [InlineData("continual-cpu")]
    [InlineData("pretrain-cpu")]
    public void EveryCommittedTableIsReproducedFromItsCsvs(string job)
    {
        string folder = Path.Combine(TestSupport.RepoRoot, "figures", job);
        string expected = File.ReadAllText(Path.Combine(folder, "table.txt")).TrimEnd('\n');
        string sweepFile = Path.Combine(folder, LearningRateSweep.File);
        var sweep = File.Exists(sweepFile) && !job.StartsWith("pretrain") ? LearningRateSweep.Read(sweepFile) : [];
        JobResult Result(ExperimentSpec spec, IReadOnlyList<RunRecord> runs) =>
            new(spec, runs, sweep, runs.GroupBy(r => (r.Method, r.Rank)).ToDictionary(g => g.Key, g => g.First().LearningRate));
        T Spec<T>(Func<string, T> preset) where T : ExperimentSpec => File.Exists(Path.Combine(folder, ExperimentFolder.SpecFile))
            ? (T)System.Text.Json.JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(folder, ExperimentFolder.SpecFile)).Replace("\"Device\": \"\"", "\"Device\": \"cpu\""), typeof(T))!
            : preset(job[(job.IndexOf('-') + 1)..]);
        string actual;
        switch (job.Split('-')[0])
        {
            case "memorization":
                var (runs, floors) = MemorizationExperiment.ReadTables(folder);
                var memo = Spec(MemorizationSpec.FromPreset);
                actual = new MemorizationExperiment(memo) { Floors = floors }.FormatTable(Result(memo, runs));
                break;
            case "gsm8k":
                var math = Spec(Gsm8kSpec.FromPreset);
                actual = new Gsm8kExperiment(math).FormatTable(Result(math, SeedReport.ReadRuns(Path.Combine(folder, Gsm8kExperiment.TableFile))));
                break;
            case "instruct":
                var ins = Spec(InstructionSpec.FromPreset);
                actual = new InstructionExperiment(ins) { Floors = InstructionExperiment.ReadFloors(folder) }
                    .FormatTable(Result(ins, SeedReport.ReadRuns(Path.Combine(folder, InstructionExperiment.TableFile))));
                break;
            case "continual":
                var cont = Spec(ContinualSpec.FromPreset);
                // The committed per-run table names the retention after training orig_exact_match_after (today: orig_exact_match).
                var cRuns = SeedReport.ReadRuns(Path.Combine(folder, ContinualExperiment.TableFile))
                    .Select(r => r with { Scores = r.Scores.ToDictionary(kv => kv.Key == "orig_exact_match_after" ? ContinualExperiment.OriginalExact : kv.Key, kv => kv.Value) }).ToList();
                actual = new ContinualExperiment(cont).FormatTable(Result(cont, cRuns));
                break;
            default:
                var pre = Spec(PretrainSpec.FromPreset);
                var pRuns = SeedReport.ReadRuns(Path.Combine(folder, PretrainExperiment.TableFile)).Select(r => r with { Rank = r.Method == "full" ? 0 : pre.Rank }).ToList();
                actual = new PretrainExperiment(pre).FormatTable(Result(pre, pRuns));
                break;
        }
        AssertSameTable(expected, actual.TrimEnd('\n'));
    }

    static readonly System.Text.RegularExpressions.Regex Numbers = new(@"-?\d+(\.\d+)?");

    static void AssertSameTable(string expected, string actual)
    {
        Assert.Equal(Numbers.Replace(expected, "#"), Numbers.Replace(actual, "#"));
        var e = Numbers.Matches(expected).Select(m => m.Value).ToList();
        var a = Numbers.Matches(actual).Select(m => m.Value).ToList();
        for (int i = 0; i < e.Count; i++)
        {
            int decimals = e[i].Contains('.') ? e[i].Length - e[i].IndexOf('.') - 1 : 0;
            Assert.True(a[i].Length == e[i].Length && Math.Abs(double.Parse(a[i], CultureInfo.InvariantCulture) - double.Parse(e[i], CultureInfo.InvariantCulture)) <= 1.000001 * Math.Pow(10, -decimals),
                $"number {i}: {e[i]} in table.txt, {a[i]} from the CSVs");
        }
    }
}

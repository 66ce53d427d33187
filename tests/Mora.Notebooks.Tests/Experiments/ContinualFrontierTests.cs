using System.Globalization;
using Mora.Data;
using Mora.Experiments;
using Mora.IO;

namespace Mora.Tests;

/// <summary>Continual pretraining with the question format taught on half the new companies, and the
/// acquisition–forgetting frontier over every rate (issue 23 item 7).</summary>
public class ContinualFrontierDataTests
{
    /// <summary>With questions on half: the first half's questions are training examples (loss on the answer only), the
    /// second half's are what acquisition is scored on and appear in no training text; the prose covers every company.</summary>
    [Fact]
    public void QuestionsOnHalfTrainOneHalfAndScoreTheOther()
    {
        var spec = ContinualSpec.FromPreset("frontier");
        Assert.True(spec.QuestionsOnHalf);
        var data = new ContinualData(spec);
        var tok = data.Tokenizer;
        int seed = TestSupport.Seed() % 1000;
        var (companies, documents, train, scored) = data.NewDomain(seed);
        Assert.Equal(12, companies.Count);
        Assert.Equal(companies.Skip(6).SelectMany(c => FictionalFacts.Attributes(c.Kind).Select(a => (c.Name, a))), scored.Select(q => (q.Entity, q.Attribute)));
        var texts = train.Select(e => tok.Decode(e.Tokens)).ToList();
        var taught = FictionalFacts.Questions(companies.Take(6)).ToList();
        Assert.Equal(18, taught.Count);
        foreach (var q in taught)
            Assert.Contains(train, e => tok.Decode(e.Tokens).Contains(q.Question) && e.PromptLength > 0 && tok.Decode(e.Tokens[e.PromptLength..]).Contains(q.Answer));
        foreach (var q in scored)
            Assert.DoesNotContain(texts, t => t.Contains(q.Question));
        Assert.All(companies, c => Assert.Contains(documents, d => d.Contains(c.Name)));
        // Without the option nothing changes: every company's questions are scored and none is trained.
        var (_, _, plainTrain, plainScored) = new ContinualData(spec with { QuestionsOnHalf = false }).NewDomain(seed);
        Assert.Equal(36, plainScored.Count);
        Assert.Equal(train.Count - 18, plainTrain.Count);
    }

    [Fact]
    public void FrontierSettingsAreCheckedNamingTheProperty()
    {
        var frontier = ContinualSpec.FromPreset("frontier");
        Assert.Equal(nameof(ContinualSpec.FullLrGrid), Assert.Throws<ArgumentException>(() => (frontier with { FullLrGrid = [1e-4] }).Validate()).ParamName);
        Assert.Equal(nameof(ContinualSpec.NewEntities), Assert.Throws<ArgumentException>(() => (frontier with { NewEntities = 1 }).Validate()).ParamName);
        Assert.Equal(nameof(ContinualSpec.AdapterLrGrid), Assert.Throws<ArgumentException>(() => (frontier with { AdapterLrGrid = [] }).Validate()).ParamName);
        // The points: one fixed-rate job per rate, the k-th adapter rate beside the k-th full rate, nothing tuned.
        var points = ContinualFrontier.Points(frontier);
        Assert.Equal(6, points.Count);
        Assert.Equal(frontier.AdapterLrGrid, points.Select(p => p.AdapterLr));
        Assert.Equal(frontier.FullLrGrid, points.Select(p => p.FullLr));
        Assert.All(points, p => { Assert.False(p.Tunes); Assert.False(p.Frontier); p.Validate(); });
    }

    /// <summary>A point is on its method's frontier unless another rate of the method absorbs more and forgets less.</summary>
    [Fact]
    public void DominanceIsByBothMeans()
    {
        static Mora.Evaluation.MeanInterval M(double v) => new(v, v, v, 3, 0);
        ContinualFrontier.Point P(double acc, double forget) => new("lora", 8, 0.01, 1, 3, M(0), M(acc), M(0), M(forget), M(0));
        Assert.True(P(0.3, 1.0).DominatedBy(P(0.4, 0.9)));
        Assert.True(P(0.3, 1.0).DominatedBy(P(0.3, 0.9)));
        Assert.False(P(0.3, 1.0).DominatedBy(P(0.3, 1.0)));      // equal: neither
        Assert.False(P(0.3, 1.0).DominatedBy(P(0.4, 1.1)));      // more acquisition for more forgetting: a trade, not dominance
    }

    /// <summary>The committed frontier's table is what its per-run CSV gives (the table is computed from the CSV as written).</summary>
    [Fact]
    public void TheCommittedFrontierIsReproducedFromItsCsv()
    {
        string folder = Path.Combine(TestSupport.RepoRoot, "figures", "continual-frontier");
        var spec = (ContinualSpec)System.Text.Json.JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(folder, ExperimentFolder.SpecFile)).Replace("\"Device\": \"\"", "\"Device\": \"cpu\""), typeof(ContinualSpec))!;
        Assert.True(spec.Frontier && spec.QuestionsOnHalf);
        var runs = SeedReport.ReadRuns(Path.Combine(folder, ContinualFrontier.RunsFile));
        Assert.Equal(spec.Seeds.Count * spec.Methods.Count * spec.AdapterLrGrid.Count, runs.Count);
        Assert.Equal(File.ReadAllText(Path.Combine(folder, "table.txt")).TrimEnd(), new ContinualFrontier(spec).FormatTable(runs));
        Assert.Equal(File.ReadAllText(Path.Combine(folder, ContinualFrontier.File)), ContinualFrontier.SummaryCsv(runs));
    }
}

/// <summary>The frontier end to end at test size, through the command line.</summary>
[Collection(ExternalProcesses.Name)]
public class ContinualFrontierCliTests
{
    static string Dll => Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.dll");
    static (int Code, string Output) Cli(string args) => NativeAndBuildTests.Run("dotnet", $"\"{Dll}\" {args}");

    [Fact]
    public void FrontierSmokeRunsEveryRateOnEverySeedFromOneBaseAndReusesIt()
    {
        string dir = TestSupport.TempDir();
        string args = $"continual --preset frontier-smoke --out \"{dir}/out\" --figures \"{dir}/fig\"";
        var (code, output) = Cli(args);
        Assert.True(code == 0, output);
        var spec = ContinualSpec.FromPreset("frontier-smoke");
        // One base for every rate point; each point a fixed-rate job in a folder named by its adapter rate.
        Assert.True(Directory.Exists(Path.Combine(dir, "out", "base", "model")));
        var folders = spec.AdapterLrGrid.Select(a => Path.Combine(dir, "out", "lr-" + LearningRateSweep.Lr(a))).ToList();
        Assert.All(folders, f => { Assert.True(Directory.Exists(Path.Combine(f, "runs")), f); Assert.False(Directory.Exists(Path.Combine(f, "base")), f); Assert.False(Directory.Exists(Path.Combine(f, "sweep")), f); });
        Assert.Contains("Rates fixed, not tuned", output);
        // Every method at every rate on every seed, at the full horizon.
        var runs = SeedReport.ReadRuns(Path.Combine(dir, "fig", ContinualFrontier.RunsFile));
        Assert.Equal(spec.Methods.Count * spec.AdapterLrGrid.Count * spec.Seeds.Count, runs.Count);
        foreach (var m in spec.Methods)
        {
            var grid = m.Method == Mora.Adapters.AdapterMethod.Full ? spec.FullLrGrid : spec.AdapterLrGrid;
            Assert.Equal(grid.Order().SelectMany(lr => spec.Seeds.Select(s => (lr, s))),
                runs.Where(r => r.Method == m.Name).OrderBy(r => r.LearningRate).ThenBy(r => r.Seed).Select(r => (r.LearningRate, r.Seed)));
        }
        var summary = CsvTable.Read(Path.Combine(dir, "fig", ContinualFrontier.File));
        Assert.Equal(spec.Methods.Count * spec.AdapterLrGrid.Count, summary.Rows.Count);
        Assert.All(summary.Rows, r => Assert.Equal(spec.Seeds.Count.ToString(CultureInfo.InvariantCulture), r["seeds"]));
        foreach (var f in ContinualFrontier.FigureFiles.Append("table.txt").Append("COMMAND.txt"))
            Assert.True(File.Exists(Path.Combine(dir, "fig", f)), f);
        string table = File.ReadAllText(Path.Combine(dir, "fig", "table.txt"));
        Assert.Contains("acquisition scored on the other 2's", table);
        Assert.Equal(table.TrimEnd(), new ContinualFrontier(spec).FormatTable(runs));
        // Run again: every run is reused, nothing trains, the same table.
        var (again, output2) = Cli(args);
        Assert.True(again == 0, output2);
        Assert.DoesNotContain("train step", output2);
        Assert.Equal(table, File.ReadAllText(Path.Combine(dir, "fig", "table.txt")));
    }
}

/// <summary>The learning-rate sweep drawn beside each committed result that tuned (issue 23 item 2).</summary>
public class SweepFigureTests
{
    /// <summary>Every committed folder with an lr-sweep.csv has its figure (PNG; interactive HTML is not committed for it),
    /// and the figure's curves are its rows: one per method and rank, the chosen rate in the legend.</summary>
    [Fact]
    public void EveryCommittedSweepIsDrawnBesideItsTable()
    {
        var folders = Directory.GetDirectories(Path.Combine(TestSupport.RepoRoot, "figures")).Where(d => File.Exists(Path.Combine(d, LearningRateSweep.File))).ToList();
        Assert.True(folders.Count >= 10, $"{folders.Count} committed sweeps");
        foreach (var folder in folders)
        {
            Assert.True(File.Exists(Path.Combine(folder, "lr-sweep.png")), $"{folder}: no lr-sweep.png (plot --sweep {Path.GetRelativePath(TestSupport.RepoRoot, folder)})");
            var points = LearningRateSweep.Read(Path.Combine(folder, LearningRateSweep.File));
            var curves = LearningRateSweep.Curves(points);
            Assert.Equal(points.Select(p => (p.Method, p.Rank)).Distinct().Count(), curves.Count);
            foreach (var chosen in points.Where(p => p.Chosen))
                Assert.Contains(curves, c => c.Name.Contains($"(chose {LearningRateSweep.Lr(chosen.LearningRate)}") && c.X.Contains(chosen.LearningRate));
            Assert.All(curves, c => Assert.NotNull(Mora.Figures.RunFigures.MethodOf(c.Name)));
            Assert.NotEmpty(LearningRateSweep.Figure(points, "h").Png);
        }
    }

    [Fact]
    public void ASweepTableWithoutItsColumnsIsRefusedNamingFileAndColumn()
    {
        string path = Path.Combine(TestSupport.TempDir(), LearningRateSweep.File);
        File.WriteAllText(path, "method,rank,learning_rate,metric\nlora,8,0.01,0.5\n");
        var e = Assert.Throws<ArgumentException>(() => LearningRateSweep.Read(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("'final_loss'", e.Message);
        // The earlier pretraining dialect reads as minus its perplexity.
        File.WriteAllText(path, "method,lr,metric,validation_ppl,steps,seed,diverged,chosen\nlora,0.01,validation_ppl,2.5,160,0,0,1\nlora,0.1,validation_ppl,9,160,0,1,0\n");
        var old = LearningRateSweep.Read(path);
        Assert.Equal(-2.5, old[0].Metric);
        Assert.True(old[0].Chosen);
        Assert.Equal(double.MinValue, old[1].Metric);
    }
}

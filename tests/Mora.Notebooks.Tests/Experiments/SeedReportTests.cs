using Mora.Experiments;

namespace Mora.Tests;

/// <summary>The over-seeds report's stopping-rule words: where a mean curve stands at its last evaluation.</summary>
public class SeedReportTests
{
    [Theory]
    [InlineData(0.90, 0.96, 40, "reached 95 %")]
    [InlineData(0.95, 0.95, 40, "reached 95 %")]                                  // at the bar counts
    [InlineData(0.500, 0.505, 100, "flat: +0.5 points over the last 100 steps")]
    [InlineData(0.505, 0.500, 100, "flat: -0.5 points over the last 100 steps")]
    [InlineData(0.60, 0.55, 50, "falling: -5.0 points over the last 50 steps")]
    [InlineData(0.475, 0.571, 40, "still rising: +9.6 points over the last 40 steps")]
    [InlineData(0.4756, 0.5711, 40, "still rising: +9.6 points over the last 40 steps")]   // 9.55 as written (binary: 9.5499…)
    public void TrendFollowsTheStoppingRule(double before, double end, int interval, string expected) =>
        Assert.Equal(expected, SeedReport.Trend(before, end, interval));

    [Fact]
    public void TrendNeedsAnInterval()
    {
        var rng = new Random(TestSupport.Seed());
        double a = rng.NextDouble(), b = rng.NextDouble();
        Assert.Equal("interval", Assert.Throws<ArgumentOutOfRangeException>(() => SeedReport.Trend(a, b, 0)).ParamName);
        // The 1-point boundary, both ways, as printed to one decimal: 1.0 point is a change, 0.9 is flat.
        double at = 0.3 * a;
        Assert.StartsWith("still rising: +1.0", SeedReport.Trend(at, at + 0.01, 10));
        Assert.StartsWith("falling: -1.0", SeedReport.Trend(at + 0.01, at, 10));
        Assert.StartsWith("still rising: +1.0", SeedReport.Trend(at, at + 0.00996, 10));
        Assert.StartsWith("flat: +0.9", SeedReport.Trend(at, at + 0.0094, 10));
        Assert.StartsWith("flat: -0.9", SeedReport.Trend(at + 0.0094, at, 10));
    }

    [Fact]
    public void MemorisationTrendsReadTheLastTwoEvaluations()
    {
        var rng = new Random(TestSupport.Seed());
        var spec = MemorizationSpec.FromPreset("smoke-tuned");   // evaluations at steps 20 and 40
        double jitter = 0.001 * rng.NextDouble();
        static RunRecord Run(string method, int rank, int seed, double at20, double at40) =>
            new(method, rank, seed, 100, 0.01, new Dictionary<string, double> { ["char_acc_step20"] = at20, ["char_acc_step40"] = at40, ["exact_match"] = 0 }, 1, 1);
        var runs = spec.Seeds.SelectMany(seed => new[] { Run("lora", 8, seed, 0.30 + jitter, 0.40 + jitter), Run("full", 0, seed, 0.90, 0.97) }).ToList();
        Assert.Equal([$"lora r=8: {100 * (0.40 + jitter):0.0} % at step 40, still rising: +10.0 points over the last 20 steps", "full: 97.0 % at step 40, reached 95 %"],
            MemorizationExperiment.Trends(spec, runs));
        Assert.Equal("spec", Assert.Throws<ArgumentException>(() => MemorizationExperiment.Trends(spec with { EvalPoints = 1 }, runs).ToList()).ParamName);
    }

    /// <summary>The rank sweep's figure and table (the paper's Fig. 2): a curve per method through its parameter counts,
    /// sorted by count, full fine-tuning and the floor flat across them, on a log x axis; a diverged run is left out of the
    /// curve as the summary table leaves it out (the table's means and intervals are the seeds', to 1e-4, as written).</summary>
    [Fact]
    public void RankSweepDrawsAccuracyAgainstTrainableParameters()
    {
        var rng = new Random(TestSupport.Seed());
        var spec = MemorizationSpec.FromPreset("smoke-tuned") with { Ranks = [1, 2, 4] };
        RunRecord Run(string method, int rank, int seed, long parameters, double acc, bool diverged = false) =>
            new(method, rank, seed, parameters, 0.01, new Dictionary<string, double> { ["char_acc_step20"] = acc / 2, ["char_acc_step40"] = acc, ["exact_match"] = acc / 3 }, 1, 1, diverged);
        var runs = new List<RunRecord>();
        var acc = new Dictionary<(string, int), List<double>>();
        foreach (int seed in spec.Seeds)
            foreach (var (method, rank, parameters) in new[] { ("lora", 4, 400L), ("lora", 1, 100L), ("lora", 2, 200L), ("mora-rotation", 1, 100L), ("mora-rotation", 4, 400L), ("full", 0, 10_000L) })
            {
                double a = 0.2 + 0.7 * rng.NextDouble();
                runs.Add(Run(method, rank, seed, parameters, a));
                (acc.TryGetValue((method, rank), out var l) ? l : acc[(method, rank)] = []).Add(a);
            }
        var floors = spec.Seeds.Select(s => new MemorizationFloor(s, 0.2)).ToList();
        var data = System.Text.Json.Nodes.JsonNode.Parse(MemorizationExperiment.ParameterChart(spec, runs, floors).PlotlyJson())!;
        var traces = data["data"]!.AsArray();
        var lora = traces.Single(t => (string)t!["name"]! == "lora")!;
        Assert.Equal([100.0, 200.0, 400.0], lora["x"]!.AsArray().Select(v => (double)v!));
        Assert.Equal([1, 2, 4], lora["y"]!.AsArray().Select(v => (double)v!).Zip(new[] { 1, 2, 4 }, (y, r) => Math.Abs(y - acc[("lora", r)].Average()) < 1e-12 ? r : -r));
        var full = traces.Single(t => ((string)t!["name"]!).StartsWith("full fine-tuning (10,000 parameters)"))!;
        Assert.Equal([100.0, 400.0], full["x"]!.AsArray().Select(v => (double)v!));
        Assert.Equal(acc[("full", 0)].Average(), (double)full["y"]![0]!, 12);
        Assert.Contains(traces, t => (string)t!["name"]! == "floor: base model");
        Assert.Equal("log", (string)data["layout"]!["xaxis"]!["type"]!);

        var diverged = runs.Append(Run("lora", 1, 9, 100, double.NaN, diverged: true)).ToList();
        var divergedLora = System.Text.Json.Nodes.JsonNode.Parse(MemorizationExperiment.ParameterChart(spec, diverged, floors).PlotlyJson())!["data"]!.AsArray()
            .Single(t => (string)t!["name"]! == "lora")!;
        Assert.Equal(acc[("lora", 1)].Average(), (double)divergedLora["y"]![0]!, 12);
        string file = Path.GetTempFileName();
        File.WriteAllText(file, SeedReport.SummaryCsv(diverged, ["char_acc_step40", "exact_match"], withDiverged: true));
        var table = CsvTable.Read(file);
        File.Delete(file);
        var row = table.Rows.Single(r => r["method"] == "lora" && r["rank"] == "1");
        var expected = Mora.Evaluation.SeedStatistics.Mean95(acc[("lora", 1)]);
        Assert.Equal(expected.Mean, double.Parse(row["char_acc_step40_mean"], System.Globalization.CultureInfo.InvariantCulture), 4);
        Assert.Equal(expected.Low, double.Parse(row["char_acc_step40_ci_low"], System.Globalization.CultureInfo.InvariantCulture), 4);
        Assert.Equal(("2", "1", "100"), (row["seeds"], row["diverged_runs"], row["trainable_parameters"]));
        Assert.Equal(6, table.Rows.Count);
    }
}

using Mora.Figures;

namespace Mora.Tests;

/// <summary>Figures are stable files: the same data gives byte-identical HTML and PNG (no random chart ids), so a rerun
/// that changed nothing changes no published file.</summary>
public class FigureTests
{
    [Fact]
    public void TheSameDataGivesByteIdenticalFiles()
    {
        var rng = new Random(TestSupport.Seed());
        var curve = new Curve("lora-r8", Enumerable.Range(1, 50).Select(s => (double)s).ToArray(),
                              Enumerable.Range(1, 50).Select(s => 4.0 / s + rng.NextDouble() * 0.1).ToArray());
        var other = curve with { Name = "mora-r8", Y = curve.Y.Select(y => y * 0.9).ToArray() };
        string a = Path.Combine(TestSupport.TempDir(), "loss"), b = Path.Combine(TestSupport.TempDir(), "loss");
        var first = RunFigures.Write([curve, other], "loss", "step", "loss", a);
        var second = RunFigures.Write([curve, other], "loss", "step", "loss", b);
        string html = File.ReadAllText(first.Html);
        Assert.Contains("Plotly.newPlot", html);
        Assert.DoesNotMatch("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|renderPlotly_[0-9a-f]{32}", html);
        Assert.Equal(File.ReadAllBytes(first.Html), File.ReadAllBytes(second.Html));
        Assert.Equal(File.ReadAllBytes(first.Png), File.ReadAllBytes(second.Png));
        // Different data, a different chart id.
        var third = RunFigures.Write([curve], "loss", "step", "loss", Path.Combine(TestSupport.TempDir(), "loss"));
        Assert.NotEqual(File.ReadAllText(third.Html), html);
    }

    [Fact]
    public void StableIdsKeepTwoChartsOnAPageApart()
    {
        string page = "<div id=\"0a1b2c3d-0000-4000-8000-000000000001\"></div><div id=\"0a1b2c3d-0000-4000-8000-000000000002\"></div>" +
                      "<script>newPlot('0a1b2c3d-0000-4000-8000-000000000001'); newPlot('0a1b2c3d-0000-4000-8000-000000000002')</script>";
        string stable = PlotlyInterop.StableIds(page);
        var ids = System.Text.RegularExpressions.Regex.Matches(stable, "chart_[0-9a-f]+_[0-9]").Select(m => m.Value).ToList();
        Assert.Equal(4, ids.Count);
        Assert.Equal(2, ids.Distinct().Count());
        Assert.Equal(stable, PlotlyInterop.StableIds(page.Replace("0000-4000", "1111-4000")));   // GUIDs differ, page the same
    }

    /// <summary>Seeded random curves of two methods at two ranks, three seeds each (values kept apart so that no test passes
    /// on zeros), and a single-seed run.</summary>
    static List<Curve> SeededRuns(int seed)
    {
        var rng = new Random(seed);
        var curves = new List<Curve>();
        foreach (var method in new[] { "lora", "mora-rotation" })
            foreach (int r in new[] { 8, 32 })
                for (int s = 0; s < 3; s++)
                {
                    double scale = 1 + rng.NextDouble();
                    curves.Add(new Curve($"{method}-r{r}-seed{s}", Enumerable.Range(1, 20).Select(i => 5.0 * i).ToArray(),
                        Enumerable.Range(1, 20).Select(i => scale * (3.0 / i + 0.5 + rng.NextDouble())).ToArray()));
                }
        curves.Add(new Curve("full-seed0", Enumerable.Range(1, 20).Select(i => 5.0 * i).ToArray(), Enumerable.Range(1, 20).Select(i => 2.0 / i + 0.1).ToArray()));
        return curves;
    }

    [Fact]
    public void SeedBandsGroupRunsThatDifferOnlyBySeedAndDrawMeanAndRange()
    {
        var curves = SeededRuns(TestSupport.Seed());
        var groups = RunFigures.BySeed(curves);
        Assert.Equal(["lora-r8", "lora-r32", "mora-rotation-r8", "mora-rotation-r32", "full"], groups.Select(g => g.Name));
        Assert.Equal(["lora", "lora", "mora-rotation", "mora-rotation", "full"], groups.Select(g => g.Method));
        Assert.Equal([8, 32, 8, 32, 0], groups.Select(g => g.Rank));
        foreach (var g in groups)
        {
            var (x, mean, low, high) = RunFigures.Band(g);
            Assert.Equal(20, x.Length);
            for (int i = 0; i < x.Length; i++)
            {
                var ys = g.Runs.Select(r => r.Y[i]).ToArray();
                Assert.Equal(ys.Average(), mean[i], 12);          // tolerance 1e-12: a mean of three doubles
                Assert.Equal(ys.Min(), low[i]);
                Assert.Equal(ys.Max(), high[i]);
                Assert.True(g.Runs.Count == 1 || high[i] > low[i]);
            }
        }
        // Only the steps every run has: a run logged at fewer steps narrows the band to those.
        var ragged = RunFigures.Band(RunFigures.BySeed([curves[0], curves[1] with { X = curves[1].X.Take(10).ToArray(), Y = curves[1].Y.Take(10).ToArray() }])[0]);
        Assert.Equal(curves[0].X.Take(10), ragged.X);
    }

    [Fact]
    public void SeedBandsGiveAColourPerMethodAndHideEachRunUntilAsked()
    {
        var curves = SeededRuns(TestSupport.Seed());
        var figure = RunFigures.SeedBands(curves, "loss", "step", "loss", logY: true, out var traces);
        var json = System.Text.Json.Nodes.JsonNode.Parse(figure.PlotlyJson())!;
        var data = json["data"]!.AsArray();
        Assert.Equal(traces.Count, data.Count);
        // 4 groups of 3 seeds: band edges, mean and 3 runs each; the single-seed run: its line only.
        Assert.Equal(4 * (2 + 1 + 3) + 1, data.Count);
        string Colour(int i) => data[i]!["line"]!["color"]!.GetValue<string>();
        var means = Enumerable.Range(0, data.Count).Where(i => data[i]!["name"]?.GetValue<string>() is { } n && (n.Contains("mean of") || n == "full-seed0")).ToList();
        Assert.Equal(5, means.Count);
        Assert.Equal(Colour(means[0]), Colour(means[1]));           // lora at r = 8 and r = 32: one colour ...
        Assert.NotEqual(data[means[0]]!["line"]!["dash"]!.GetValue<string>(), data[means[1]]!["line"]!["dash"]!.GetValue<string>());   // ... two dashes
        Assert.NotEqual(Colour(means[0]), Colour(means[2]));        // lora and rotation apart
        Assert.Equal("#1f77b4", Colour(means[0]));                  // LoRA is blue in every chart
        var onDemand = Enumerable.Range(0, data.Count).Where(i => traces[i].OnDemand).ToList();
        Assert.Equal(12, onDemand.Count);
        Assert.All(onDemand, i => Assert.Equal("legendonly", data[i]!["visible"]!.GetValue<string>()));
        Assert.Equal(4, onDemand.Count(i => data[i]!["showlegend"]!.GetValue<bool>()));   // one legend entry per group's runs
        Assert.All(Enumerable.Range(0, data.Count).Where(i => !traces[i].OnDemand), i => Assert.Null(data[i]!["visible"]));
        Assert.Equal("tonexty", data[1]!["fill"]!.GetValue<string>());
        Assert.Equal("log", json["layout"]!["yaxis"]!["type"]!.GetValue<string>());
        Assert.True(figure.Png.Length > 10_000, "the static form is drawn");
        string dir = TestSupport.TempDir();
        var first = RunFigures.Save(figure, Path.Combine(dir, "a"));
        var second = RunFigures.Save(RunFigures.SeedBands(curves, "loss", "step", "loss", logY: true), Path.Combine(dir, "b"));
        Assert.Equal(File.ReadAllBytes(first.Png), File.ReadAllBytes(second.Png));
        if (Environment.GetEnvironmentVariable("MORA_KEEP_FIGURES") is { } keep) File.Copy(first.Png, Path.Combine(keep, "seed-bands.png"), true);
    }

    [Fact]
    public void HeatmapPanelsAreNamedOnTheAxisAndRowZeroIsOnTop()
    {
        var rng = new Random(TestSupport.Seed());
        double[,] Matrix(int rows, int cols) { var m = new double[rows, cols]; for (int i = 0; i < rows; i++) for (int j = 0; j < cols; j++) m[i, j] = rng.NextDouble() + 0.5; return m; }
        var panels = new List<(string, double[,])> { ("1 Sharing", Matrix(6, 10)), ("6 Rotation", Matrix(6, 10)), ("mine", Matrix(4, 8)) };
        string dir = TestSupport.TempDir();
        var figure = Mora.Notebooks.NotebookCharts.Heatmaps(panels, "ΔW", Path.Combine(dir, "heat"));
        var layout = System.Text.Json.Nodes.JsonNode.Parse(figure.PlotlyJson())!["layout"]!;
        Assert.Equal(["1 Sharing", "6 Rotation", "mine"], layout["xaxis"]!["ticktext"]!.AsArray().Select(t => t!.GetValue<string>()));
        Assert.Equal([4.5, 16.5, 27.5], layout["xaxis"]!["tickvals"]!.AsArray().Select(t => t!.GetValue<double>()));   // panel centres: 10 wide, a gap of 2
        Assert.Equal("reversed", layout["yaxis"]!["autorange"]!.GetValue<string>());
        Assert.True(File.Exists(Path.Combine(dir, "heat.png")) && File.Exists(Path.Combine(dir, "heat.html")));
        if (Environment.GetEnvironmentVariable("MORA_KEEP_FIGURES") is { } keep) File.Copy(Path.Combine(dir, "heat.png"), Path.Combine(keep, "heatmap.png"), true);
    }

    [Fact]
    public void LineChartsByMethodUseTheMethodsColoursAndDotTheReferenceLines()
    {
        Assert.Equal("lora", RunFigures.MethodOf("lora r=8"));
        Assert.Equal("mora-rotation", RunFigures.MethodOf("03-memorization-full/mora-rotation-r8-seed2"));
        Assert.Equal("full", RunFigures.MethodOf("full-seed0"));
        Assert.Null(RunFigures.MethodOf("floor: base model"));
        var rng = new Random(TestSupport.Seed());
        double[] x = [0, 50, 100];
        Curve Of(string name) => new(name, x, x.Select(_ => 0.2 + rng.NextDouble()).ToArray());
        var figure = RunFigures.LineChart([Of("lora r=8"), Of("mora-rotation r=8"), Of("floor: base model")], "acc", "step", "acc", byMethod: true);
        var data = System.Text.Json.Nodes.JsonNode.Parse(figure.PlotlyJson())!["data"]!.AsArray();
        Assert.Equal(["rgba(31, 119, 180, 1.0)", "rgba(255, 127, 14, 1.0)", "rgba(85, 85, 85, 1.0)"], data.Select(d => d!["line"]!["color"]!.GetValue<string>()));   // LoRA blue, rotation orange, a grey reference
        Assert.Equal("dot", data[2]!["line"]!["dash"]!.GetValue<string>());
        // Without byMethod the chart keeps Plotly's own palette (no colour set).
        var plain = System.Text.Json.Nodes.JsonNode.Parse(RunFigures.LineChart([Of("lora r=8")], "acc", "step", "acc").PlotlyJson())!["data"]!.AsArray();
        Assert.Null(plain[0]!["line"]?["color"]);
    }
}

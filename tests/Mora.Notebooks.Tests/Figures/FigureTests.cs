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
}

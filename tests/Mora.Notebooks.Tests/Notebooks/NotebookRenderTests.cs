using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Mora.Figures;

namespace Mora.Tests;

/// <summary>
/// The committed notebooks as a reader sees them with no network: each is rendered to HTML by nbconvert (Debian's
/// <c>jupyter-nbconvert</c>) and opened in headless Chromium (Debian's <c>chromium</c>); every chart output must have drawn
/// (its PNG decoded, natural width &gt; 0) and the page must log no console message (no script error, no failed load).
/// <c>.ci/run</c> installs both packages when they are missing.
/// </summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class NotebookRenderTests
{
    const string Probe = """
        <script>
        window.addEventListener("load", () => {
          const png = [...document.images].filter(i => i.src.startsWith("data:image/png"));
          document.title = "IMAGES " + png.length + " DRAWN " + png.filter(i => i.complete && i.naturalWidth > 0).length;
        });
        </script>
        """;

    static string Tool(string name) =>
        new[] { "/usr/bin", "/usr/local/bin", "/bin" }.Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException($"{name} is not installed: apt-get install chromium jupyter-nbconvert (.ci/run does this)");

    [Theory]
    [MemberData(nameof(NotebookTests.All), MemberType = typeof(NotebookTests))]
    public async Task EveryChartDrawsInHeadlessChromiumWithNoNetwork(string name)
    {
        string notebook = Path.Combine(TestSupport.RepoRoot, "notebooks", name + ".ipynb");
        var doc = JsonNode.Parse(File.ReadAllText(notebook))!;
        int charts = doc["cells"]!.AsArray().SelectMany(c => c!["outputs"]?.AsArray() ?? [])
            .Count(o => o!["data"] is JsonObject d && d.ContainsKey(ChartFigure.PlotlyMimeType));
        Assert.True(charts > 0, $"{name}: no chart output to render");

        string dir = TestSupport.TempDir();
        var (code, output) = NativeAndBuildTests.Run(Tool("jupyter-nbconvert"), $"--to html \"{notebook}\" --output-dir \"{dir}\"");
        Assert.True(code == 0, $"nbconvert: {output}");
        string html = Path.Combine(dir, name + ".html"), probed = Path.Combine(dir, name + ".probe.html");
        File.WriteAllText(probed, File.ReadAllText(html).Replace("</body>", Probe + "</body>"));

        var psi = new ProcessStartInfo(Tool("chromium"))
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            ArgumentList = { "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                             "--virtual-time-budget=5000", $"--user-data-dir={Path.Combine(dir, "profile")}", "--dump-dom", new Uri(probed).AbsoluteUri },
        };
        using var chromium = Process.Start(psi)!;
        var stderrRead = chromium.StandardError.ReadToEndAsync();
        string dom = await chromium.StandardOutput.ReadToEndAsync();
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await chromium.WaitForExitAsync(limit.Token);
        string stderr = await stderrRead;
        var title = Regex.Match(dom, "<title>IMAGES (\\d+) DRAWN (\\d+)</title>");
        Assert.True(title.Success, $"{name}: the page did not finish loading (no probe title); chromium said: {stderr}");
        Assert.Equal(charts, int.Parse(title.Groups[1].Value));
        Assert.Equal(charts, int.Parse(title.Groups[2].Value));
        var console = stderr.Split('\n').Where(l => l.Contains("CONSOLE", StringComparison.Ordinal)).ToList();
        Assert.True(console.Count == 0, $"{name}: the page logged:\n{string.Join("\n", console)}");
    }
}

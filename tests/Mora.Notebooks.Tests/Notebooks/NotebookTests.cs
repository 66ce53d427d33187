using System.Text.Json.Nodes;
using Mora.Notebooks;

namespace Mora.Tests;

/// <summary>The runs and figures of the notebooks under test go to one temporary folder (so 05 finds 03's and 04's runs,
/// and the committed figures are never touched).</summary>
public sealed class NotebookOutput
{
    public string Dir { get; } = TestSupport.TempDir();
}

/// <summary>
/// Every notebook in notebooks/ executed top to bottom with the fast preset, cell by cell, in the real .NET Interactive
/// kernel (the local tool VS Code and Jupyter launch). A failing cell fails the test; so does a notebook missing from
/// this list, a code cell that was not run, a notebook without a Plotly chart or a table among its outputs, or one that
/// wrote no figure.
/// </summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class NotebookTests(NotebookOutput output) : IClassFixture<NotebookOutput>
{
    public static readonly string[] Notebooks =
        ["00-quickstart", "01-rank-analysis", "02-compress-decompress-designs", "03-memorization-uuid", "04-gsm8k-style-math", "05-loss-curves", "06-remora-pretraining", "07-continual-new-domain", "08-your-own-design"];

    static string NotebookDir => Path.Combine(TestSupport.RepoRoot, "notebooks");

    public static TheoryData<string> All => new(Notebooks);

    [Fact]
    public void EveryNotebookIsInTheSuiteAndStartsWithTheSharedSetup()
    {
        var present = Directory.GetFiles(NotebookDir, "*.ipynb").Select(Path.GetFileNameWithoutExtension).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(Notebooks, present);
        foreach (var nb in Notebooks)
        {
            var cells = NotebookRunner.CodeCells(Path.Combine(NotebookDir, nb + ".ipynb"));
            Assert.Equal("#!import setup.dib", cells[0].Trim());
            Assert.Contains("Notebook.Preset(", cells[1]);
        }
    }

    [Theory]
    [MemberData(nameof(All))]
    public void RunsTopToBottomWithTheFastPreset(string name)
    {
        string path = Path.Combine(NotebookDir, name + ".ipynb");
        string executed = Path.Combine(output.Dir, name + ".executed.ipynb");
        var env = new Dictionary<string, string> { [Notebook.PresetVariable] = "fast", [Notebook.OutVariable] = output.Dir };
        var results = NotebookRunner.Run(path, env, executed, TimeSpan.FromMinutes(8));
        var failed = results.FirstOrDefault(r => !r.Ok);
        Assert.True(failed is null, $"{name} cell {failed?.Index}: {failed?.Error}");
        Assert.Equal(NotebookRunner.CodeCells(path).Count, results.Count);          // no cell skipped

        var outputs = results.SelectMany(r => r.Outputs).ToList();
        // Charts carry the two forms every viewer can draw with no network, each once (see ChartFigure).
        var charts = outputs.Where(o => o.Data?.ContainsKey(Mora.Figures.ChartFigure.PlotlyMimeType) == true).ToList();
        Assert.NotEmpty(charts);
        Assert.All(charts, o => Assert.Equal(Mora.Figures.ChartFigure.MimeTypes.Order(), o.Data!.Keys.Order()));
        Assert.Contains(outputs, o => o.IsHtmlContaining("<table"));
        Assert.Contains(outputs, o => o.Kind == "stdout" && (o.Text ?? "").Contains("preset: fast"));

        // The executed copy carries every cell's outputs, as the committed notebooks do.
        var doc = JsonNode.Parse(File.ReadAllText(executed))!;
        var codeCells = doc["cells"]!.AsArray().Where(c => c!["cell_type"]!.GetValue<string>() == "code").ToList();
        Assert.All(codeCells, c => Assert.NotNull(c!["execution_count"]));
        Assert.DoesNotContain(codeCells.SelectMany(c => c!["outputs"]!.AsArray()), o => o!["output_type"]!.GetValue<string>() == "error");

        // Its key figures, as offline HTML and PNG.
        string figures = Path.Combine(output.Dir, "figures", "notebooks", name);
        Assert.True(Directory.Exists(figures), $"{name} wrote no figures to {figures}");
        Assert.NotEmpty(Directory.GetFiles(figures, "*.png"));
        Assert.NotEmpty(Directory.GetFiles(figures, "*.html"));
    }

    [Fact]
    public void TheCommittedNotebooksCarryFullPresetOutputs()
    {
        foreach (var nb in Notebooks)
        {
            var doc = JsonNode.Parse(File.ReadAllText(Path.Combine(NotebookDir, nb + ".ipynb")))!;
            var code = doc["cells"]!.AsArray().Where(c => c!["cell_type"]!.GetValue<string>() == "code").ToList();
            Assert.All(code, c => Assert.NotNull(c!["execution_count"]));
            string text = doc.ToJsonString();
            Assert.Contains("preset: full", text);
            // Every chart renders offline: the Plotly figure as a JSON object and a PNG, each once (no HTML copy, no
            // script that needs plotly.js from a CDN); and no output names this machine's folders.
            var data = code.SelectMany(c => c!["outputs"]!.AsArray()).Select(o => o!["data"]).OfType<JsonObject>().ToList();
            var charts = data.Where(d => d.ContainsKey(Mora.Figures.ChartFigure.PlotlyMimeType)).ToList();
            Assert.True(charts.Count > 0, $"{nb}: no chart output");
            foreach (var chart in charts)
            {
                Assert.IsType<JsonArray>(chart[Mora.Figures.ChartFigure.PlotlyMimeType]!["data"]);
                byte[] png = Convert.FromBase64String(chart[Mora.Figures.ChartFigure.PngMimeType]!.GetValue<string>());
                Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
                Assert.False(chart.ContainsKey("text/html"), $"{nb}: a chart stored a third time, as HTML");   // each form once
            }
            Assert.DoesNotContain(data, d => d["text/html"] is JsonArray html && string.Concat(html.Select(l => l!.GetValue<string>())).Contains("Plotly.newPlot"));
            Assert.DoesNotContain(TestSupport.RepoRoot, WithoutBinaryData(doc).ToJsonString());
            Assert.DoesNotContain("\"output_type\":\"error\"", text.Replace(" ", ""));
        }
    }

    /// <summary>A copy of a notebook without its base64 data (image outputs other than SVG, markdown attachments): what
    /// is left is text (sources, printed and HTML outputs, chart JSON), in which a folder's path would be a real mention;
    /// in base64 a short one such as "/src" can occur by chance.</summary>
    static JsonNode WithoutBinaryData(JsonNode notebook)
    {
        var copy = notebook.DeepClone();
        foreach (var cell in copy["cells"]!.AsArray())
        {
            cell!.AsObject().Remove("attachments");
            if (cell["outputs"] is not JsonArray outputs) continue;
            foreach (var data in outputs.Select(o => o!["data"]).OfType<JsonObject>())
                foreach (var key in data.Select(kv => kv.Key).Where(k => k.StartsWith("image/", StringComparison.Ordinal) && k != "image/svg+xml").ToList())
                    data.Remove(key);
        }
        return copy;
    }

    [Fact]
    public void EveryChartCellSaysHowToReadIt()
    {
        // the markdown cell just before or just after a cell that draws a chart says how to read that chart
        foreach (var nb in Notebooks)
        {
            var cells = JsonNode.Parse(File.ReadAllText(Path.Combine(NotebookDir, nb + ".ipynb")))!["cells"]!.AsArray().Select(c => c!).ToList();
            string Text(int i) => i >= 0 && i < cells.Count && cells[i]["cell_type"]!.GetValue<string>() == "markdown"
                ? string.Concat(cells[i]["source"]!.AsArray().Select(l => l!.GetValue<string>())) : "";
            int charts = 0;
            for (int i = 0; i < cells.Count; i++)
            {
                bool chart = cells[i]["outputs"] is JsonArray outputs && outputs.Any(o => o!["data"] is JsonObject d && d.ContainsKey(Mora.Figures.ChartFigure.PlotlyMimeType));
                if (!chart) continue;
                charts++;
                Assert.True(Text(i - 1).Contains("How to read", StringComparison.Ordinal) || Text(i + 1).Contains("How to read", StringComparison.Ordinal),
                    $"{nb}: the chart of cell {cells[i]["id"]} has no 'How to read' beside it");
            }
            Assert.True(charts > 0, $"{nb}: no chart");
        }
    }

    /// <summary>The committed outputs read as a page, not a log: no compiler warnings or other standard-error boxes, no
    /// progress lines (a notebook's progress is one live line per cell), no printed output longer than a screenful.</summary>
    [Fact]
    public void CommittedOutputsHoldNoWarningsNoProgressLinesAndNoLongLogs()
    {
        var progress = new System.Text.RegularExpressions.Regex(@"\btrain step \d+/\d+");
        foreach (var nb in Notebooks)
        {
            var cells = JsonNode.Parse(File.ReadAllText(Path.Combine(NotebookDir, nb + ".ipynb")))!["cells"]!.AsArray().Select(c => c!).ToList();
            foreach (var cell in cells.Where(c => c["outputs"] is JsonArray))
                foreach (var o in cell["outputs"]!.AsArray().Where(o => o!["output_type"]!.GetValue<string>() == "stream"))
                {
                    string text = string.Concat(o!["text"]!.AsArray().Select(l => l!.GetValue<string>()));
                    Assert.True(o["name"]!.GetValue<string>() == "stdout", $"{nb} cell {cell["id"]}: a standard-error output: {text[..Math.Min(200, text.Length)]}");
                    Assert.DoesNotContain("warning CS", text);
                    Assert.False(progress.IsMatch(text), $"{nb} cell {cell["id"]}: progress lines in the output: {progress.Match(text).Value}");
                    int lines = text.Count(ch => ch == '\n');
                    Assert.True(lines <= 70, $"{nb} cell {cell["id"]}: {lines} printed lines (at most 70)");
                }
        }
    }

    [Fact]
    public void ReExecutingATrainingCell100TimesKeepsTheKernelsMemoryFlat()
    {
        // Every execution of a cell also compiles and JIT-compiles a new C# submission, which the kernel keeps for the
        // session (measured here: 0.3–0.9 MiB an execution, growing with the cell's size). So the test runs the same code
        // twice, 100 executions each, in one kernel: as a control that compiles the training code but never runs it,
        // and as the cell that runs it (the small model, MoRA rotation, 3 training steps). Stated tolerance: over
        // executions 11–100 the running cell's resident-memory growth (the median of the last 10 samples minus the median
        // of executions 11–20, indices 10..19, so no single noisy sample decides) may exceed the control's by at most
        // 48 MiB; a model and optimizer kept alive per execution would add ~900 MiB. Every model must also be collectable.
        using var kernel = new KernelSession(NotebookDir, new Dictionary<string, string> { [Notebook.OutVariable] = output.Dir });
        var setup = kernel.Submit("#!import setup.dib", TimeSpan.FromMinutes(5));
        Assert.True(setup.Ok, setup.Error);
        Assert.True(kernel.Submit("var models = new List<WeakReference>();", TimeSpan.FromMinutes(1)).Ok);
        const string measure = """
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            Mora.Native.NativeHeap.Trim();
            Console.WriteLine($"RSS {Environment.WorkingSet}");
            """;
        const string train = """
            {
                var task = new Mora.Evaluation.MemorizationTask(Mora.Data.UuidPairs.Generate(8, seed: 1));
                using var model = task.NewModel(Mora.Model.LlamaConfig.Small(), seed: 0);
                models.Add(new WeakReference(model));
                Peft.Inject(model, AdapterConfig.Mora(8, MoraType.Rotation));
                new Trainer(model, new TrainConfig { Steps = 3, BatchSize = 8, ShowProgress = false }, task.Train).Run();
            }
            """;
        long Growth(string cell)
        {
            var rss = new List<long>();
            for (int i = 0; i < 100; i++)
            {
                var r = kernel.Submit(cell, TimeSpan.FromMinutes(2));
                Assert.True(r.Ok, $"execution {i + 1}: {r.Error}");
                string line = string.Concat(r.Outputs.Where(o => o.Kind == "stdout").Select(o => o.Text)).Trim();
                rss.Add(long.Parse(line.Split(' ')[^1]));
            }
            return Median(rss[^10..]) - Median(rss[10..20]);
        }
        static long Median(List<long> samples)
        {
            var sorted = samples.Order().ToList();
            int n = sorted.Count;
            return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
        }
        long control = Growth("if (Environment.ProcessorCount < 0)\n" + train + measure);     // compiled, never run
        long training = Growth(train + measure);
        var alive = kernel.Submit(measure + "Console.WriteLine($\"ALIVE {models.Count(w => w.IsAlive)} of {models.Count}\");", TimeSpan.FromMinutes(1));
        string report = $"growth (median of executions 91–100 minus median of 11–20): control {control >> 20} MiB, training {training >> 20} MiB; " +
                        string.Concat(alive.Outputs.Where(o => o.Kind == "stdout").Select(o => o.Text)).Trim().Replace('\n', ' ');
        Console.WriteLine(report);
        Assert.True(training - control <= 48L << 20, report);
        Assert.Contains("ALIVE 0 of 100", report);
    }
}

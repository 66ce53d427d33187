using System.Text.Json.Nodes;
using Mora.Notebooks;

namespace Mora.Tests;

/// <summary>The notebook runner (tests/Mora.Notebooks.Runner, tooling outside the library): bad arguments exit 2 before a
/// kernel starts, and a notebook run writes nothing under the published figures/ unless it publishes.</summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class NotebookRunnerTests
{
    static string Runner => Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.Runner.dll");

    [Theory]
    [InlineData("--preset medium", "--preset")]
    [InlineData("--names 99-none", "--names")]
    [InlineData("--no-such-option", "--no-such-option")]
    public void BadArgumentsExit2AndNameTheOption(string args, string named)
    {
        var (code, output) = NativeAndBuildTests.Run("dotnet", $"\"{Runner}\" {args}");
        Assert.True(code == 2, $"exit {code}: {output}");
        Assert.Contains(named, output);
    }

    /// <summary>Disposing a kernel session ends the kernel itself, not only the `dotnet` muxer that started it: an orphaned
    /// kernel spun at a fifth of a core after every notebook test and slowed every test after it.</summary>
    [Fact]
    public void DisposingASessionLeavesNoKernelRunning()
    {
        if (!OperatingSystem.IsLinux()) return;     // the process tree is read from /proc
        // As a notebook does: the setup cell (TorchSharp, libtorch and its OpenMP threads loaded), then a tensor.
        var kernel = new KernelSession(Path.Combine(TestSupport.RepoRoot, "notebooks"));
        var setup = kernel.Submit("#!import setup.dib", TimeSpan.FromMinutes(5));
        Assert.True(setup.Ok, setup.Error);
        var ok = kernel.Submit("Console.WriteLine(torch.ones(4).sum().item<float>());", TimeSpan.FromMinutes(2));
        Assert.True(ok.Ok, ok.Error);
        var tree = Descendants(kernel.ProcessId).Append(kernel.ProcessId).ToList();
        Assert.True(tree.Count >= 2, $"expected the muxer and the kernel, found {tree.Count} process(es)");
        kernel.Dispose();
        var deadline = DateTime.UtcNow.AddSeconds(60);     // a guard, not a measurement: it ends as soon as they are gone
        while (tree.Any(Alive) && DateTime.UtcNow < deadline) Thread.Sleep(100);
        Assert.True(!tree.Any(Alive), $"still running after Dispose: {string.Join(", ", tree.Where(Alive))}");
    }

    /// <summary>Training progress in a notebook is one line per cell, redrawn in place (setup.dib sets
    /// <see cref="Mora.Training.ProgressDisplay.For"/>): the stored output is the line's last state, not a line every 10 %
    /// of every run; a second cell that trains gets a line of its own; the runner keeps a value's last update even though
    /// this kernel sends updates under another id than the first display.</summary>
    [Fact]
    public void TrainingProgressInANotebookIsOneLineKeptAtItsLastState()
    {
        using var kernel = new KernelSession(Path.Combine(TestSupport.RepoRoot, "notebooks"));
        var setup = kernel.Submit("#!import setup.dib", TimeSpan.FromMinutes(5));
        Assert.True(setup.Ok, setup.Error);
        const string report = """
            Console.WriteLine("before");
            foreach (var run in new[] { "run-a", "run-b" })
            {
                var progress = Mora.Training.ProgressDisplay.For(run);
                for (int step = 1; step <= 5; step++)
                {
                    progress.Report(new TrainProgress(step, 5, 1.0 / step, 1e-3, 100, TimeSpan.FromSeconds(step), new Dictionary<string, double>()));
                    System.Threading.Thread.Sleep(step == 5 ? 0 : 550);     // past LineProgress's half-second interval
                }
                Console.WriteLine($"{run} done");
            }
            """;
        foreach (int cell in new[] { 1, 2 })
        {
            var result = kernel.Submit(report, TimeSpan.FromMinutes(2));
            Assert.True(result.Ok, result.Error);
            var lines = result.Outputs.Where(o => o.Kind == "display").ToList();
            Assert.True(lines.Count == 1, $"cell {cell}: {lines.Count} progress displays, expected one");
            Assert.Equal("run-b: train step 5/5 (100 %) loss 0.2 lr 1.0e-03 100 tok/s 0:00:05 elapsed, 0:00:00 left", lines[0].Data!["text/plain"]);
            string printed = string.Concat(result.Outputs.Where(o => o.Kind == "stdout").Select(o => o.Text));
            Assert.Equal("before\nrun-a done\nrun-b done\n", printed.Replace("\r", ""));
            Assert.DoesNotContain("train step", printed);
        }
    }

    /// <summary>A notebook kernel references the library's build output (setup.dib: bin/Release/net10.0/Mora.Experiments.dll,
    /// Mora.Core.dll, which binds libtorch, beside it) and TorchSharp from the NuGet cache; a cpu build still preloads the
    /// package's own libtorch by full path there (never a system one, such as Debian python3-torch's libtorch 1.13 in
    /// /usr/lib), and the kernel maps exactly one libtorch_cpu.so, the one preloaded.</summary>
    [Fact]
    public void AKernelPreloadsThePackagesOwnLibTorch()
    {
        if (!OperatingSystem.IsLinux() || Mora.Native.LibTorchBinding.BuildBackend != "cpu" || Environment.GetEnvironmentVariable(Mora.Native.LibTorchBinding.EnvironmentVariable) is not null) return;
        using var kernel = new KernelSession(Path.Combine(TestSupport.RepoRoot, "notebooks"));
        var setup = kernel.Submit("#!import setup.dib", TimeSpan.FromMinutes(5));
        Assert.True(setup.Ok, setup.Error);
        var probe = kernel.Submit("""
            using System.Linq;
            var report = Mora.Native.TorchRuntime.Ensure().LibTorch;
            Console.WriteLine($"core={typeof(Mora.Native.TorchRuntime).Assembly.Location}");
            Console.WriteLine($"source={report.Source}");
            Console.WriteLine($"resolve={report.Check?.AllResolve}");
            foreach (var p in report.Preloaded) Console.WriteLine($"preloaded={p}");
            foreach (var m in System.IO.File.ReadAllLines("/proc/self/maps").Where(l => l.EndsWith("libtorch_cpu.so")).Select(l => l[l.IndexOf('/')..]).Distinct()) Console.WriteLine($"mapped={m}");
            """, TimeSpan.FromMinutes(2));
        Assert.True(probe.Ok, probe.Error);
        var lines = probe.Outputs.Where(o => o.Kind == "stdout").SelectMany(o => (o.Text ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();
        string text = string.Join("\n", lines);
        string Value(string key) => lines.Single(l => l.StartsWith(key + "=", StringComparison.Ordinal))[(key.Length + 1)..];
        Assert.Equal(Path.Combine(TestSupport.RepoRoot, "bin", "Release", "net10.0", "Mora.Core.dll"), Value("core"));
        Assert.Equal("package natives", Value("source"));
        Assert.Equal("True", Value("resolve"));
        var preloaded = lines.Where(l => l.StartsWith("preloaded=", StringComparison.Ordinal)).Select(l => l["preloaded=".Length..]).ToList();
        string torch = preloaded.SingleOrDefault(p => Path.GetFileName(p) == "libtorch_cpu.so") ?? "";
        Assert.True(torch != "", $"no libtorch_cpu.so preloaded:\n{text}");
        Assert.All(preloaded, p => Assert.False(p.StartsWith("/usr/", StringComparison.Ordinal) || p.StartsWith("/lib", StringComparison.Ordinal), $"{p} is a system library"));
        var mapped = lines.Where(l => l.StartsWith("mapped=", StringComparison.Ordinal)).Select(l => l["mapped=".Length..]).ToList();
        Assert.True(mapped.Count == 1 && mapped[0] == torch, $"preloaded {torch}; the kernel maps {string.Join(", ", mapped)}");
    }

    /// <summary>Whether <paramref name="pid"/> runs (a zombie does not; a process that ends while its stat is read does not).</summary>
    static bool Alive(int pid)
    {
        try { return !File.ReadAllText($"/proc/{pid}/stat").Split(") ")[^1].StartsWith('Z'); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    static IEnumerable<int> Descendants(int pid)
    {
        foreach (string task in Directory.Exists($"/proc/{pid}/task") ? Directory.GetDirectories($"/proc/{pid}/task") : [])
        {
            string file = Path.Combine(task, "children");
            if (!File.Exists(file)) continue;
            foreach (var child in File.ReadAllText(file).Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse))
            {
                yield return child;
                foreach (var d in Descendants(child)) yield return d;
            }
        }
    }

    [Fact]
    public void TheLibraryHasNoKernelDriving()
    {
        var library = typeof(Notebook).Assembly;
        Assert.DoesNotContain(library.GetTypes(), t => t.Name is "KernelSession" or "NotebookRunner");
        Assert.Equal("Mora.Notebooks.Runner", typeof(NotebookRunner).Assembly.GetName().Name);
    }
}

/// <summary>Where notebooks write (no kernel needed: <see cref="Notebook"/> is what their cells call).</summary>
public class NotebookOutputTests
{
    [Fact]
    public void WithoutAnOutputRootFiguresGoToTheIgnoredRunsFolder()
    {
        if (Notebook.OutputRoot is not null) return;     // a caller set MORA_NOTEBOOK_OUT for this process: nothing to check
        string dir = Notebook.FiguresDir("00-quickstart");
        Assert.StartsWith(Path.Combine(Notebook.RepoRoot, "runs", "figures", "notebooks"), dir);
        Assert.StartsWith(Path.Combine(Notebook.RepoRoot, "runs", "notebooks"), Notebook.RunsDir("x"));
        Assert.Equal(Path.Combine(Notebook.RepoRoot, "runs", "notebooks"), Notebook.RunsRoot);
        Assert.Equal(Path.Combine("runs", "notebooks", "x"), Notebook.Show(Notebook.RunsDir("x")));
        Assert.Contains("/runs/", File.ReadAllText(Path.Combine(Notebook.RepoRoot, ".gitignore")));
    }

    /// <summary>The kernel tests run every notebook with MORA_NOTEBOOK_OUT set; a reader runs them without it, where
    /// <see cref="Notebook.OutputRoot"/> is null. Notebooks reach their folders through RunsRoot, RunsDir and FiguresDir,
    /// which work both ways (05 once combined OutputRoot into a path and failed for readers).</summary>
    [Fact]
    public void NotebooksReachTheirFoldersThroughPathsThatWorkWithoutAnOutputRoot()
    {
        foreach (var f in Directory.GetFiles(Path.Combine(Notebook.RepoRoot, "notebooks"), "*.ipynb"))
            Assert.DoesNotContain(NotebookRunner.CodeCells(f), c => c.Contains("Notebook.OutputRoot", StringComparison.Ordinal));
    }

    /// <summary>nbformat 4.5: every cell has a unique id; Jupyter sees C# (language_info), VS Code the Polyglot kernel
    /// (kernelspec .net-csharp).</summary>
    [Fact]
    public void NotebookFilesAreNbformat45WithCellIdsAndCSharpLanguageInfo()
    {
        var files = Directory.GetFiles(Path.Combine(Notebook.RepoRoot, "notebooks"), "*.ipynb");
        Assert.NotEmpty(files);
        foreach (var f in files)
        {
            var doc = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(f))!;
            string name = Path.GetFileName(f);
            Assert.True(doc["nbformat"]!.GetValue<int>() == 4 && doc["nbformat_minor"]!.GetValue<int>() >= 5, $"{name}: not nbformat 4.5");
            var ids = doc["cells"]!.AsArray().Select(c => c!["id"]?.GetValue<string>()).ToList();
            Assert.All(ids, id => Assert.Matches("^[A-Za-z0-9_-]{1,64}$", id ?? ""));
            Assert.Equal(ids.Count, ids.Distinct().Count());
            Assert.Equal("C#", doc["metadata"]!["language_info"]!["name"]!.GetValue<string>());
            Assert.Equal(".net-csharp", doc["metadata"]!["kernelspec"]!["name"]!.GetValue<string>());
        }
    }

    /// <summary>The notebooks' package versions come from one place: the build writes notebooks/packages.dib from the
    /// library projects' package references (for this OS and TorchBackend) at the versions of Directory.Packages.props,
    /// setup.dib imports it and names no version itself.</summary>
    [Fact]
    public void NotebookPackagesAreWrittenByTheBuildFromTheProjects()
    {
        string root = Notebook.RepoRoot;
        string setup = File.ReadAllText(Path.Combine(root, "notebooks", "setup.dib"));
        Assert.DoesNotContain("nuget:", setup);
        Assert.Contains("#!import packages.dib", setup);
        string packages = File.ReadAllText(Path.Combine(root, "notebooks", "packages.dib"));
        var versions = System.Xml.Linq.XDocument.Load(Path.Combine(root, "Directory.Packages.props"));
        string Property(string name) => versions.Descendants(name).Single().Value;
        Assert.Contains($"#r \"nuget: TorchSharp, {Property("TorchSharpVersion")}\"", packages);
        if (OperatingSystem.IsLinux()) Assert.Contains($"#r \"nuget: libtorch-cpu-linux-x64, {Property("LibTorchVersion")}\"", packages);
        Assert.DoesNotContain("libtorch-cpu-win-x64", packages);
        var version = versions.Descendants("PackageVersion").ToDictionary(v => v.Attribute("Include")!.Value, v => v.Attribute("Version")!.Value);
        var libraryPackages = Directory.GetFiles(Path.Combine(root, "lib"), "*.csproj", SearchOption.AllDirectories)
            .SelectMany(f => System.Xml.Linq.XDocument.Load(f).Descendants("PackageReference"))
            .Select(p => p.Attribute("Include")!.Value).Distinct().ToList();
        foreach (string id in libraryPackages)
            Assert.Contains($"#r \"nuget: {id}, {version[id]}\"", packages);
        Assert.DoesNotMatch("nuget: [^,]+, \"", packages);      // every package has its version
        Assert.Contains("/notebooks/packages.dib", File.ReadAllText(Path.Combine(root, ".gitignore")));
    }

    /// <summary>The README's notebook table quotes each notebook's full-preset run time from the notebook's own metadata
    /// (written by the runner when it publishes) and its fast-preset time from figures/notebooks/run-times-fast.csv (the
    /// runner's --record), so the numbers and their sources cannot drift apart.</summary>
    [Fact]
    public void TheReadmesNotebookTimesAreTheCommittedRuns()
    {
        string readme = File.ReadAllText(Path.Combine(Notebook.RepoRoot, "README.md"));
        foreach (var f in Directory.GetFiles(Path.Combine(Notebook.RepoRoot, "notebooks"), "*.ipynb"))
        {
            string name = Path.GetFileNameWithoutExtension(f);
            var run = JsonNode.Parse(File.ReadAllText(f))!["metadata"]!["mora_run"];
            Assert.True(run is not null, $"{name}: no mora_run metadata (publish with the runner's --write)");
            Assert.Equal("full", run!["preset"]!.GetValue<string>());
            var row = readme.Split('\n').SingleOrDefault(l => l.StartsWith($"| `{name}` |", StringComparison.Ordinal));
            Assert.True(row is not null, $"README has no notebook table row for {name}");
            Assert.Contains($"| {run["seconds"]!.GetValue<double>():0} s on {run["cores"]!.GetValue<int>()} cores |", row);
            var fast = File.ReadAllLines(Path.Combine(Notebook.RepoRoot, "figures", "notebooks", "run-times-fast.csv"))
                .Select(l => l.Split(',')).Single(c => c[0] == name);
            Assert.Equal("fast", fast[1]);
            Assert.EndsWith($"| {fast[3]} s on {fast[2]} cores |", row!.TrimEnd());
        }
    }
}

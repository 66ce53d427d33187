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
        Assert.Equal(Path.Combine("runs", "notebooks", "x"), Notebook.Show(Notebook.RunsDir("x")));
        Assert.Contains("/runs/", File.ReadAllText(Path.Combine(Notebook.RepoRoot, ".gitignore")));
    }
}

namespace Mora.Tests;

/// <summary>The command line: help lists the commands, the analyses print their tables, bad arguments exit 2 with a
/// message naming the option.</summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class CliTests
{
    static (int Code, string Output) Cli(string args) =>
        NativeAndBuildTests.Run("dotnet", $"\"{Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.dll")}\" {args}");

    [Fact]
    public void HelpListsTheCommands()
    {
        var (code, output) = Cli("--help");
        Assert.Equal(0, code);
        foreach (var c in new[] { "info", "rank", "designs", "memorization", "plot" }) Assert.Contains(c, output);
    }

    [Fact]
    public void RankPrintsTheLlamaTable()
    {
        var (code, output) = Cli("rank --ranks 8 256");
        Assert.True(code == 0, output);
        Assert.Contains("q/k/v/o_proj     4096   4096    8    256", output);     // r̂ = √(8192·8) = 256
        Assert.Contains("8 / 256 / 4096", output);                           // LoRA / sharing / rotation max rank
        Assert.Equal(6, output.Split('\n').Count(l => l.Contains("_proj")));
        // Random-weight spectra at 256x256, r = 8: LoRA rank 8, sharing r̂ = 64, rotation full rank 256.
        string Rank(string method) => output.Split('\n').Single(l => l.StartsWith(method)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[^7];
        Assert.Equal("8", Rank("LoRA r=8"));
        Assert.Equal("64", Rank("MoRA Sharing (1)"));
        Assert.Equal("256", Rank("MoRA Rotation (6)"));
    }

    [Fact]
    public void DesignsComparesEveryDesign()
    {
        var (code, output) = Cli("designs --shape 48x80 --rank 2 --tokens 16 --repeats 1");
        Assert.True(code == 0, output);
        foreach (var t in MoraTypes.All) Assert.Contains(t.ToString(), output);
        // rotation at 48x80, r̂ = 16 reaches rank min(d, k) = 48
        var rot = output.Split('\n').Single(l => l.StartsWith("Rotation "));
        Assert.Equal("48", rot.Split(' ', StringSplitOptions.RemoveEmptyEntries)[4]);
    }

    [Theory]
    [InlineData("designs --shape 12x", "--shape")]
    [InlineData("designs --rank 0", "--rank")]
    [InlineData("designs --tokens -1", "--tokens")]
    [InlineData("designs --device tpu", "--device")]
    [InlineData("rank --ranks 0", "--ranks")]
    [InlineData("rank --spectra-shape 8x", "--spectra-shape")]
    [InlineData("rank --runs /nonexistent", "--runs")]
    [InlineData("plot --runs /nonexistent/folder", "--runs")]
    [InlineData("plot", "--runs")]
    [InlineData("designs --device cuda:x", "--device: device 'cuda:x': the CUDA index must be a number")]
    [InlineData("memorization --preset smoke --device cuda:x", "--device: device 'cuda:x': the CUDA index must be a number")]
    [InlineData("memorization --preset smoke --methods lora mora-9", "--methods: 'mora-9': unknown MoRA design '9'")]
    [InlineData("memorization --preset smoke --steps 0", "error: --steps must be positive, got 0")]
    [InlineData("memorization --preset smoke --steps 41", "--steps 41 must be a multiple of --eval-points 2")]
    [InlineData("bench --preset tiny --repeats 0", "--repeats must be at least 1, got 0")]
    public void BadArgumentsNameTheOption(string args, string option)
    {
        var (code, output) = Cli(args);
        Assert.Equal(2, code);
        Assert.Contains(option, output);
    }

    [Fact]
    public void CudaNIsParsedAndRefusedClearlyWithoutCuda()
    {
        if (cuda.is_available()) return;     // with CUDA, cuda:1 may well exist
        foreach (var args in new[] { "designs --device cuda:1", $"memorization --preset smoke --device cuda:1 --out \"{TestSupport.TempDir()}\"" })
        {
            var (code, output) = Cli(args);
            Assert.Equal(2, code);
            Assert.Contains("--device", output);
            Assert.Contains("device cuda:1 asked for, but CUDA is not available", output);
            Assert.DoesNotContain("(Parameter", output);
        }
    }

    /// <summary>Help says what each setting is and its default-preset value, names the PyTorch backend for CUDA, and offers
    /// continual no fixed-rate option (every rate is tuned there).</summary>
    [Fact]
    public void ExperimentHelpShowsDefaultsAndOnlyTheOptionsTheCommandHas()
    {
        var (code, memo) = Cli("memorization --help");
        Assert.Equal(0, code);
        Assert.Matches(@"--pretrain-batch-size [^\n]*sequences per step of the base's pretraining \(default preset: 32\)", memo);
        Assert.Matches(@"--log-every [^\n]*\(default preset: 25\)", memo);
        Assert.Contains("TorchBackend=pytorch", memo);
        foreach (var o in new[] { "--fresh", "--overwrite", "--base-seed", "--threads", "--max-warmup" }) Assert.Contains(o, memo);
        var (code2, continual) = Cli("continual --help");
        Assert.Equal(0, code2);
        Assert.DoesNotMatch(@"--(full-)?lr(?![-\w])", continual);
        Assert.Contains("--lr-grid", continual);
        var (_, pretrain) = Cli("pretrain --help");
        Assert.Matches(@"--batch-size <batch-size> +sequences per step \(default preset: 16\)", pretrain);
    }

    [Fact]
    public void HelpShowsHowToCallIt()
    {
        var (code, output) = Cli("--help");
        Assert.Equal(0, code);
        Assert.Contains("dotnet run -c Release --", output);
    }
}

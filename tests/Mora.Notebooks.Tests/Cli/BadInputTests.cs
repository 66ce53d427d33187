using System.Text;
using Mora.Data;
using Mora.Experiments;
using Mora.Model;
using Mora.Training;

namespace Mora.Tests;

/// <summary>Bad input as an attacker or a careless user gives it, in-process where the reader is enough: JSONL that is
/// not UTF-8, holds a lone surrogate or is not JSON is named by file and line (and where in the line); output folders
/// that are the root, a system folder (a temporary folder stands in for one), a shared folder, a file, or a path whose
/// '..' leads elsewhere are refused before anything is written.</summary>
public class BadInputReaderTests
{
    static string Write(string text) => Write(Encoding.UTF8.GetBytes(text));

    static string Write(byte[] bytes)
    {
        string path = Path.Combine(TestSupport.TempDir(), "train.jsonl");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    const string Good = "{\"question\": \"q\", \"answer\": \"#### 1\"}\n";

    [Fact]
    public void InvalidUtf8IsNamedByFileLineAndByte()
    {
        int junk = 0x80 + new Random(TestSupport.Seed()).Next(0x40);          // a continuation byte with no lead byte
        string path = Write([.. Encoding.UTF8.GetBytes(Good + "{\"question\": \"q"), (byte)junk, .. Encoding.UTF8.GetBytes("\", \"answer\": \"#### 2\"}\n")]);
        var e = Assert.Throws<DatasetFormatException>(() => Gsm8kData.Load(path));
        Assert.Equal(2, e.Line);
        Assert.Contains($"{path}:2: not valid UTF-8 (byte 0x{junk:x2} at byte 16 of the line)", e.Message);
    }

    [Fact]
    public void ALoneSurrogateIsNamed()
    {
        string path = Write(Good + Good + "{\"question\": \"what is \\ud800?\", \"answer\": \"#### 3\"}\n");
        var e = Assert.Throws<DatasetFormatException>(() => Gsm8kData.Load(path));
        Assert.Equal(3, e.Line);
        Assert.Contains("\"question\"", e.Message);
    }

    [Fact]
    public void BrokenJsonNamesTheLineAndTheByteNotLineNumberZero()
    {
        string path = Write(Good + "{\"question\": \"q\" \"answer\": 1}\n");
        var e = Assert.Throws<DatasetFormatException>(() => Gsm8kData.Load(path));
        Assert.StartsWith($"{path}:2: not valid JSON at byte 18 of the line", e.Message);
        Assert.DoesNotContain("LineNumber", e.Message);
        Assert.DoesNotContain("BytePositionInLine", e.Message);
        // A byte-order mark and CR LF line ends are text, not errors.
        var ok = Gsm8kData.Load(Write([.. Encoding.UTF8.Preamble, .. Encoding.UTF8.GetBytes(Good.Replace("\n", "\r\n") + Good)]));
        Assert.Equal(2, ok.Count);
        Assert.Equal("q", ok[0].Question);
    }

    [Fact]
    public void OutputFoldersThatAreNotOursAreRefusedBeforeAnythingIsWritten()
    {
        string root = TestSupport.TempDir();
        string system = Path.Combine(root, "etc"), shared = Path.Combine(root, "home");
        Directory.CreateDirectory(system);
        Directory.CreateDirectory(shared);
        string[] systems = [system], shareds = [shared];
        string Refused(string path) => Assert.Throws<ArgumentException>(() => OutputFolders.Check(path, "--out", systems, shareds)).Message;

        Assert.Contains("the file system's root", Assert.Throws<ArgumentException>(() => OutputFolders.Check("/", "--out")).Message);
        Assert.Contains("the system folder", Refused(system));
        Assert.Contains("inside the system folder", Refused(Path.Combine(system, "x")));
        Assert.Contains("its '..' leads out of", Refused($"{root}/x/../../{Path.GetFileName(root)}/etc"));   // as /tmp/x/../../etc
        Assert.Contains("a shared folder itself", Refused(shared));
        string file = Path.Combine(root, "a-file");
        File.WriteAllText(file, "x");
        Assert.Contains("is a file", Refused(file));
        Assert.Equal(Path.Combine(shared, "me", "runs"), OutputFolders.Check(Path.Combine(shared, "me", "runs"), "--out", systems, shareds));   // inside a shared folder: fine
        Assert.Contains("a git checkout's root", Assert.Throws<ArgumentException>(() => OutputFolders.Check(TestSupport.RepoRoot, "--out")).Message);   // --out . in the repository
        Assert.Equal(["a-file", "etc", "home"], Directory.GetFileSystemEntries(root).Select(Path.GetFileName).Order());                    // nothing written
        Assert.Empty(Directory.GetFileSystemEntries(system));
        // The real lists hold the real system folders and the home folder itself.
        Assert.Contains("/etc", OutputFolders.SystemFolders);
        Assert.Contains(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), OutputFolders.SharedFolders);
    }

    [Fact]
    public void AFolderOfAnotherJobsPublishedResultsIsRefusedNamingThatJob()
    {
        string dir = TestSupport.TempDir();
        File.WriteAllText(Path.Combine(dir, "COMMAND.txt"), "dotnet run -c Release -- memorization --preset cpu-hour --out runs/memorization-cpu-hour --figures figures/memorization-cpu-hour\n(note)\n");
        var e = Assert.Throws<ArgumentException>(() => OutputFolders.CheckNotAnotherJobs(dir, "--figures", "dotnet run -c Release -- gsm8k --preset smoke", overwrite: false));
        Assert.Contains("a memorization job (preset cpu-hour)", e.Message);
        Assert.Contains("--overwrite", e.Message);
        OutputFolders.CheckNotAnotherJobs(dir, "--figures", "OMP_NUM_THREADS=1 dotnet run -c Release -- memorization --preset cpu-hour --out runs/memorization-cpu-hour --figures figures/memorization-cpu-hour", false);
        OutputFolders.CheckNotAnotherJobs(dir, "--figures", "dotnet run -c Release -- gsm8k --preset smoke", overwrite: true);
    }

    [Fact]
    public void ABaseWithoutItsConfigOrWithADamagedFileIsNeverReused()
    {
        string dir = Path.Combine(TestSupport.TempDir(), "model");
        using (var _ = TestSupport.TorchSeed())
        using (var model = new LlamaForCausalLM(LlamaConfig.Tiny()))
            RunFolder.SaveModel(model, dir);
        Assert.True(RunFolder.IsCompleteModel(dir, out _));
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(dir)!, ".*"));          // no temporary folder left
        var bytes = File.ReadAllBytes(Path.Combine(dir, ModelIO.WeightsFile));
        bytes[^1] ^= 1;
        File.WriteAllBytes(Path.Combine(dir, ModelIO.WeightsFile), bytes);
        Assert.False(RunFolder.IsCompleteModel(dir, out string why));
        Assert.Contains("model.safetensors does not match its checksum", why);
        File.Delete(Path.Combine(dir, ModelIO.ConfigFile));
        Assert.False(RunFolder.IsCompleteModel(dir, out why));
        Assert.Equal("it has no config.json", why);
    }
}

/// <summary>The same attacks on the command line, in a real process: every bad input exits 2 with a message naming the
/// option or file and field and no stack trace; a rerun whose inputs changed by content is refused naming them, and
/// --fresh starts again; a second writer is refused naming the first; the tokenizer and the model are compared before
/// anything trains.</summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class BadInputCliTests
{
    static string Dll => Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.dll");
    static (int Code, string Output) Cli(string args) => NativeAndBuildTests.Run("dotnet", $"\"{Dll}\" {args}");

    static void Refused((int Code, string Output) r, params string[] named)
    {
        Assert.True(r.Code == 2, $"exit {r.Code}: {r.Output}");
        Assert.Contains("error:", r.Output);
        foreach (var n in named) Assert.Contains(n, r.Output);
        Assert.DoesNotContain("   at ", r.Output);                  // no stack trace
    }

    const string Small = "--preset smoke --methods lora --steps 2 --eval-points 1 --train-problems 8 --test-problems 2";

    /// <summary>A base of the tiny model with <paramref name="vocab"/> ids (the character tokenizer's by default) and
    /// <paramref name="context"/> positions.</summary>
    static string Base(int vocab = -1, long seed = 0, int context = 512)
    {
        string dir = TestSupport.TempDir();
        using var _ = TestSupport.TorchSeed(seed);
        using var model = new LlamaForCausalLM(LlamaConfig.Tiny(vocab < 0 ? new CharTokenizer().VocabSize : vocab) with { MaxPositionEmbeddings = context });
        ModelIO.Save(model, dir);
        return dir;
    }

    [Theory]
    [InlineData("rank --ranks abc", "as a whole number")]
    [InlineData("memorization --stpes 3", "Did you mean --steps?")]
    [InlineData("bench --dtype float64", "--dtype")]
    [InlineData("designs --rank 300", "--rank 300")]
    public void ParseErrorsSayWhatIsExpected(string args, string expected)
    {
        var r = Cli(args);
        Refused(r, expected);
        Assert.DoesNotContain("System.Int32", r.Output);
        Assert.DoesNotContain("Layer 256x256", r.Output);          // designs: checked before its header
    }

    [Fact]
    public void AnOutputThatIsAFileOrAnotherJobsResultsIsRefusedAndNothingIsWritten()
    {
        string dir = TestSupport.TempDir(), file = Path.Combine(dir, "not-a-folder");
        File.WriteAllText(file, "x");
        Refused(Cli($"memorization --preset smoke --out \"{file}\""), "--out", "is a file");
        string figures = Path.Combine(dir, "published");
        Directory.CreateDirectory(figures);
        File.WriteAllText(Path.Combine(figures, "COMMAND.txt"), "dotnet run -c Release -- memorization --preset cpu-hour --figures figures/memorization-cpu-hour\n");
        Refused(Cli($"gsm8k --preset smoke --out \"{dir}/out\" --figures \"{figures}\""), "--figures", "a memorization job (preset cpu-hour)", "--overwrite");
        Assert.False(Directory.Exists(Path.Combine(dir, "out")));
        Assert.Equal(["COMMAND.txt"], Directory.GetFiles(figures).Select(Path.GetFileName));
    }

    [Fact]
    public void BadTrainFilesAreNamedByFileAndLine()
    {
        string dir = TestSupport.TempDir(), empty = Path.Combine(dir, "empty.jsonl"), bad = Path.Combine(dir, "bad.jsonl");
        File.WriteAllText(empty, "");
        Refused(Cli($"gsm8k {Small} --train-file \"{empty}\" --test-file \"{empty}\" --out \"{dir}/out\""), "--train-file", "holds no problems");
        File.WriteAllBytes(bad, [.. Encoding.UTF8.GetBytes("{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"question\": \""), 0xff, .. Encoding.UTF8.GetBytes("\"}\n")]);
        Refused(Cli($"gsm8k {Small} --train-file \"{bad}\" --test-file \"{bad}\" --out \"{dir}/out\""), $"{bad}:2: not valid UTF-8");
        Assert.False(File.Exists(Path.Combine(dir, "out", ExperimentFolder.SpecFile)));       // a refused run leaves nothing that blocks the corrected one
    }

    [Fact]
    public void ATokenizerTheModelCannotEmbedOrAVocabularyWithoutItsTokenizerIsRefused()
    {
        string big = Base(vocab: 32000);
        Refused(Cli($"gsm8k {Small} --base \"{big}\" --out \"{TestSupport.TempDir()}\""), "--base", Path.Combine(big, "config.json"), "vocab_size 32000", "no tokenizer.json");
        string small = Base();
        string tokenizer = Path.Combine(TestSupport.TestData, "tokenizers", "files", "mistral-v0.1", "tokenizer.json");
        File.Copy(tokenizer, Path.Combine(small, "tokenizer.json"));
        var r = Cli($"gsm8k {Small} --base \"{small}\" --out \"{TestSupport.TempDir()}\"");
        Refused(r, "--base", Path.Combine(small, "tokenizer.json"), Path.Combine(small, "config.json"), "vocab_size", "is 101", "can produce id 31999");
        // A base whose context is shorter than the problems: refused before anything is written, not in the trainer.
        string dir = TestSupport.TempDir();
        Refused(Cli($"gsm8k {Small} --base \"{Base(context: 64)}\" --out \"{dir}\""), "--base", "max_position_embeddings 64");
        Assert.False(File.Exists(Path.Combine(dir, ExperimentFolder.SpecFile)));
    }

    [Fact]
    public void ChangedBaseWeightsOrDataAreRefusedNamingThemAndFreshStartsAgain()
    {
        string baseDir = Base(), dir = TestSupport.TempDir();
        string run = $"gsm8k {Small} --base \"{baseDir}\" --out \"{dir}/out\" --figures \"{dir}/fig\"";
        var first = Cli(run);
        Assert.True(first.Code == 0, first.Output);
        using (var _ = TestSupport.TorchSeed(1))
        using (var other = new LlamaForCausalLM(LlamaConfig.Tiny(new CharTokenizer().VocabSize) with { MaxPositionEmbeddings = 512 }))
            ModelIO.Save(other, baseDir);                                         // the same folder, other weights
        Refused(Cli(run), "base weights model.safetensors", "changed: sha256", "--fresh");
        var fresh = Cli(run + " --fresh");
        Assert.True(fresh.Code == 0, fresh.Output);
        Assert.Contains("--fresh: discarded the earlier GSM8K job", fresh.Output);
        Assert.Contains("train step", fresh.Output);

        // A train file whose content changed under the same name.
        string data = Path.Combine(TestSupport.TempDir(), "train.jsonl"), out2 = Path.Combine(TestSupport.TempDir(), "out");
        File.Copy(Path.Combine(TestSupport.Gsm8kDir, "train.jsonl"), data);
        string files = $"gsm8k {Small} --train-file \"{data}\" --test-file \"{data}\" --context 2048 --pretrain-steps 0 --out \"{out2}\"";
        Assert.Equal(0, Cli(files).Code);
        File.AppendAllText(data, "{\"question\": \"one more\", \"answer\": \"#### 1\"}\n");
        Refused(Cli(files), "the train file", "changed");
    }

    [Fact]
    public void ASecondRunInTheSameFolderIsRefusedNamingTheFirst()
    {
        string dir = TestSupport.TempDir();
        using (RunFolder.Lock(dir))
            Refused(Cli($"memorization --preset smoke --out \"{dir}\""), "is being written by another run", $"process {Environment.ProcessId}");
        Assert.False(File.Exists(Path.Combine(dir, ExperimentFolder.SpecFile)));
    }
}

using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis.CSharp.Scripting;
using Microsoft.CodeAnalysis.Scripting;
using Mora.Adapters;
using Mora.Training;

namespace Mora.Tests;

/// <summary>One method's line of the README's training example table: figures/readme-example/results.csv, written by
/// <see cref="ReadmeExampleTests.MemorizationExample"/> with MORA_README_EXAMPLE_OUT set.</summary>
public sealed record ReadmeExampleResult(string Method, long TrainableParameters, double LossFirst, double LossLast, double CharAcc, double ExactMatch,
    double SnippetSeconds, int CpuThreads, string? Cpu = null)
{
    public static readonly string[] Methods = ["Lora", "Mora", "Full"];
    public static string CommittedFile => Path.Combine(TestSupport.RepoRoot, "figures", "readme-example", "results.csv");
    const string Header = "method,trainable_parameters,loss_first,loss_last,char_acc,exact_match,snippet_seconds,cpu_threads";
    /// <summary>The header with the machine's processor (model name and a digest of its instruction-set flags): libtorch
    /// sums in an order that depends on them, so the same seeds give the same rounded figures only on the same kind of CPU.</summary>
    const string HeaderWithCpu = Header + ",cpu";

    /// <summary>This machine's processor as <see cref="HeaderWithCpu"/> records it ("unknown" off Linux).</summary>
    public static string ThisCpu()
    {
        if (!File.Exists("/proc/cpuinfo")) return "unknown";
        var lines = File.ReadLines("/proc/cpuinfo").TakeWhile(l => l.Length > 0).ToList();
        string flagsLine = lines.FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "";
        string flags = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(flagsLine)))[..8];
        return $"{Mora.Bench.Benchmarks.CpuName().Replace(',', ' ')} flags {flags}";
    }

    public static List<ReadmeExampleResult> FromRuns(string runs, double seconds) => Methods.Select(method =>
    {
        var log = RunLog.ReadCsv(Path.Combine(runs, method, Trainer.LogFile));
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(runs, method, Trainer.ManifestFile)))!;
        return new ReadmeExampleResult(method, manifest["trainable_parameters"]!.GetValue<long>(), log.Rows[0].Loss, log.Rows[^1].Loss,
            log.Last("char_acc")!.Value, log.Last("exact_match")!.Value, seconds, Environment.ProcessorCount, ThisCpu());
    }).ToList();

    static string F(double v) => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
    static double P(string s) => double.Parse(s, System.Globalization.CultureInfo.InvariantCulture);

    public static void Write(string dir, IEnumerable<ReadmeExampleResult> rows)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllLines(Path.Combine(dir, "results.csv"), [HeaderWithCpu, .. rows.Select(r =>
            $"{r.Method},{r.TrainableParameters},{F(r.LossFirst)},{F(r.LossLast)},{F(r.CharAcc)},{F(r.ExactMatch)},{r.SnippetSeconds:F1},{r.CpuThreads},{r.Cpu}")]);
        File.WriteAllText(Path.Combine(dir, "COMMAND.txt"),
            "MORA_README_EXAMPLE_OUT=figures/readme-example dotnet test tests/Mora.Notebooks.Tests -c Release --filter \"FullyQualifiedName~ReadmeExampleTests.MemorizationExample\"\n" +
            "(runs README.md's \"Train LoRA, MoRA and full fine-tuning on UUID pairs\" snippet as written; snippet_seconds is its wall time, compile included)\n");
    }

    public static List<ReadmeExampleResult> Read(string path)
    {
        var lines = File.ReadAllLines(path);
        Assert.Contains(lines[0], new[] { Header, HeaderWithCpu });     // a file recorded before the processor was: its CPU unknown
        return lines.Skip(1).Where(l => l.Length > 0).Select(l => l.Split(',')).Select(c =>
            new ReadmeExampleResult(c[0], long.Parse(c[1]), P(c[2]), P(c[3]), P(c[4]), P(c[5]), P(c[6]), int.Parse(c[7]), c.Length > 8 ? c[8] : null)).ToList();
    }

    static string Percent(double v) => (100 * v).ToString("0.#", System.Globalization.CultureInfo.InvariantCulture) + " %";

    /// <summary>The numbers of the README row as printed: parameters, loss first → last, character accuracy, exact match.</summary>
    public static string TableCells(ReadmeExampleResult r) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"| {r.TrainableParameters:N0} | {r.LossFirst:F2} → {r.LossLast:F2} | {Percent(r.CharAcc)} | {Percent(r.ExactMatch)} |");
}

/// <summary>What a README snippet may use besides its own variables: the model and folder the text says it is given.</summary>
public sealed class ReadmeGlobals
{
    public nn.Module? model;
    public string dir = "";
}

/// <summary>The README's C# snippets, read from README.md at test time and run as written (Roslyn scripting, the
/// library's namespaces imported), then checked through the variables they leave behind. Editing a snippet changes
/// what runs here; a snippet that no longer compiles or runs fails its test.</summary>
[Trait("Speed", "Slow")]
public class ReadmeExampleTests
{
    /// <summary>The csharp block that follows the README paragraph starting with <paramref name="lead"/>.</summary>
    static string Snippet(string lead)
    {
        string readme = TestSupport.Docs;                  // README.md, then lib/README.md (where the library's snippets live)
        int at = readme.IndexOf("\n" + lead, StringComparison.Ordinal);
        Assert.True(at >= 0, $"README.md has no paragraph starting '{lead}'");
        var block = new Regex(@"```csharp\n(.*?)```", RegexOptions.Singleline).Match(readme, at);
        Assert.True(block.Success, $"no csharp block after '{lead}' in README.md");
        return block.Groups[1].Value;
    }

    static ScriptState<object> Run(string code, ReadmeGlobals globals)
    {
        var options = ScriptOptions.Default
            .WithReferences(typeof(CompressDecompress).Assembly, typeof(torch).Assembly, typeof(ReadmeGlobals).Assembly)
            .WithImports("System", "System.IO", "System.Linq", "System.Collections.Generic", "TorchSharp", "TorchSharp.torch",
                         "Mora", "Mora.Adapters", "Mora.Data", "Mora.Evaluation", "Mora.Experiments", "Mora.Model", "Mora.Training", "Mora.Analysis", "Mora.IO");
        // `using static` is not an import option; the snippets call randn etc. as a file with `using static TorchSharp.torch;` would.
        // A script's top-level variables are fields, which `using var` cannot declare: there it becomes `var`, and the test
        // disposes what it reads back.
        code = Regex.Replace(code, @"^using var ", "var ", RegexOptions.Multiline);
        return CSharpScript.RunAsync("using static TorchSharp.torch;\n" + code, options, globals, typeof(ReadmeGlobals)).GetAwaiter().GetResult();
    }

    static T Var<T>(ScriptState<object> state, string name) => (T)state.GetVariable(name)!.Value;

    [Fact]
    public void OperatorExample()
    {
        using var rng = TestSupport.TorchSeed();
        var state = Run(Snippet("The operators:"), new ReadmeGlobals());
        var op = Var<CompressDecompress>(state, "op");
        using Tensor x = Var<Tensor>(state, "x"), h = Var<Tensor>(state, "h"), dW = Var<Tensor>(state, "dW"), M = Var<Tensor>(state, "M");
        Assert.Equal(256, op.RHat);
        Assert.Equal(new long[] { 2, 4096 }, h.shape);
        using var viaW = x.matmul(dW.t());
        Assert.True(TestSupport.MaxAbs(viaW) > 0, "ΔW x is zero");
        Assert.True(TestSupport.MaxAbs(h, viaW) / TestSupport.MaxAbs(viaW) < 1e-4, "f_decomp(M f_comp(x)) differs from ΔW x (float32, 1e-4 relative)");
        Assert.Equal(4096, op.ExpectedRank());
    }

    [Fact]
    public void AdapterExample()
    {
        using var rng = TestSupport.TorchSeed();
        var globals = new ReadmeGlobals { model = new ToyModel(dtype: ScalarType.Float32), dir = TestSupport.TempDir() };
        var state = Run(Snippet("Adapters on a model"), globals);
        var swapped = Var<AdapterConfig>(state, "swapped");
        string described = Peft.Describe(globals.model!);
        Assert.Contains("layers.0.q_proj", described);
        Assert.Contains("trainable", described);
        Assert.True(File.Exists(Path.Combine(globals.dir, AdapterIO.WeightsFile)));
        Assert.Equal(AdapterMethod.Lora, swapped.Method);
        Assert.All(Peft.Adapters(globals.model!), a => Assert.True(a.Layer.Merged, $"{a.Name} was not merged"));
        Peft.Inject(new ToyModel(dtype: ScalarType.Float32), swapped);
    }

    [Fact]
    public void MemorizationExample()
    {
        using var rng = TestSupport.TorchSeed();
        string runs = TestSupport.TempDir();
        // The snippet writes under runs/; here under a temporary folder.
        string code = Snippet("Train LoRA, MoRA and full fine-tuning on UUID pairs").Replace("\"runs/", $"\"{runs}/");
        Assert.Contains(runs, code);
        var printed = new StringWriter();
        var before = Console.Out;
        Console.SetOut(printed);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try { Run(code, new ReadmeGlobals()); }
        finally { Console.SetOut(before); }
        double seconds = clock.Elapsed.TotalSeconds;
        string output = printed.ToString();
        Console.WriteLine(output);
        foreach (var method in ReadmeExampleResult.Methods)
        {
            Assert.Contains($"{method}: char acc ", output);
            var log = RunLog.ReadCsv(Path.Combine(runs, method, Trainer.LogFile));
            Assert.Equal(200, log.Rows.Count);
            Assert.Equal(4, log.Rows.Count(r => r.Metrics.ContainsKey("char_acc")));
            Assert.True(log.Rows.TakeLast(10).Average(r => r.Loss) < log.Rows.Take(10).Average(r => r.Loss));
        }
        // What README's table quotes: written to MORA_README_EXAMPLE_OUT when set (that is how
        // figures/readme-example/results.csv is made), and compared with the committed file otherwise.
        var fresh = ReadmeExampleResult.FromRuns(runs, seconds);
        if (Environment.GetEnvironmentVariable("MORA_README_EXAMPLE_OUT") is { Length: > 0 } outDir)
        {
            ReadmeExampleResult.Write(Path.IsPathRooted(outDir) ? outDir : Path.Combine(TestSupport.RepoRoot, outDir), fresh);
            return;
        }
        var committed = ReadmeExampleResult.Read(ReadmeExampleResult.CommittedFile);
        Assert.Equal(committed.Select(c => c.TrainableParameters), fresh.Select(f => f.TrainableParameters));
        // Same seeds, the same thread count and the same kind of processor give the same run (Trainer's determinism): the
        // rounded figures must then be the README's. Elsewhere libtorch may sum in another order and 200 steps of Adam
        // carry the difference on, so the run is held to the committed one within a stated tolerance instead: the last
        // loss within 0.15 nats, character accuracy within 8 points, exact match within 15 points.
        if (committed[0].CpuThreads == Environment.ProcessorCount && committed[0].Cpu == ReadmeExampleResult.ThisCpu())
            Assert.Equal(committed.Select(ReadmeExampleResult.TableCells), fresh.Select(ReadmeExampleResult.TableCells));
        else
            foreach (var (c, f) in committed.Zip(fresh))
            {
                string what = $"{c.Method} on {ReadmeExampleResult.ThisCpu()} with {Environment.ProcessorCount} threads against the committed run on {c.Cpu ?? "an unrecorded CPU"} with {c.CpuThreads}";
                Assert.True(Math.Abs(f.LossLast - c.LossLast) <= 0.15, $"{what}: last loss {f.LossLast:F3} against {c.LossLast:F3}");
                Assert.True(Math.Abs(f.CharAcc - c.CharAcc) <= 0.08, $"{what}: char accuracy {f.CharAcc:P1} against {c.CharAcc:P1}");
                Assert.True(Math.Abs(f.ExactMatch - c.ExactMatch) <= 0.15, $"{what}: exact match {f.ExactMatch:P1} against {c.ExactMatch:P1}");
            }
    }
}

using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis.CSharp.Scripting;
using Microsoft.CodeAnalysis.Scripting;
using Mora.Adapters;
using Mora.Training;

namespace Mora.Tests;

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
        string readme = File.ReadAllText(Path.Combine(TestSupport.RepoRoot, "README.md"));
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
                         "Mora", "Mora.Adapters", "Mora.Data", "Mora.Experiments", "Mora.Model", "Mora.Training", "Mora.Analysis", "Mora.IO");
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
        try { Run(code, new ReadmeGlobals()); }
        finally { Console.SetOut(before); }
        string output = printed.ToString();
        Console.WriteLine(output);
        foreach (var method in new[] { "Lora", "Mora", "Full" })
        {
            Assert.Contains($"{method}: char acc ", output);
            var log = RunLog.ReadCsv(Path.Combine(runs, method, Trainer.LogFile));
            Assert.Equal(200, log.Rows.Count);
            Assert.Equal(4, log.Rows.Count(r => r.Metrics.ContainsKey("char_acc")));
            Assert.True(log.Rows.TakeLast(10).Average(r => r.Loss) < log.Rows.Take(10).Average(r => r.Loss));
        }
    }
}

using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;
using Mora.Experiments;
using Mora.Figures;
using Mora.IO;
using Mora.Native;

namespace Mora.Cli;

/// <summary>A command's table from the library's parameter and property names to its options, so library errors
/// ("Steps must be positive, got 0", ParamName "Steps") are printed with the option ("--steps must be positive, got 0").</summary>
sealed class OptionNames : Dictionary<string, string>
{
    /// <summary>Adds <paramref name="option"/> under the library name <paramref name="name"/> and returns it.</summary>
    public TOption Bind<TOption>(TOption option, string name) where TOption : Option
    {
        this[name] = option.Name;
        return option;
    }

    /// <summary>The message of an error with the library's names replaced by the options: property names (capitalised
    /// words) wherever they appear, and the error's parameter as a prefix when the message does not name it.</summary>
    public string Describe(ArgumentException e)
    {
        string message = Regex.Replace(e.MessageOnly(), @"\b[A-Z][A-Za-z]*\b", m => TryGetValue(m.Value, out var o) ? o : m.Value);
        if (e.ParamName is not { } p) return message;
        string option = TryGetValue(p, out var mapped) ? mapped : p;
        if (Regex.IsMatch(message, $@"(^|\s){Regex.Escape(option)}\b")) return message;
        return mapped is not null ? $"{option}: {message}" : e.Message;
    }
}

/// <summary>What the commands share: how to call the tool, the error guard, typed options, shapes, the experiment runner.</summary>
static class CliSupport
{
    /// <summary>How the tool is called from the repository root.</summary>
    public const string Invocation = "dotnet run -c Release --";

    /// <summary>Runs a command's body: bad arguments print "error: …" naming the option and exit 2; unreadable or missing
    /// files, divergence and out-of-memory exit 1.</summary>
    public static int Guard(OptionNames names, Func<int> body)
    {
        try { return body(); }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {names.Describe(e)}");
            return 2;
        }
        catch (NotSupportedException e)   // PlatformNotSupportedException / LibTorchException: libtorch unusable here
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 3;
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException && e.ToString().Contains("TorchSharp", StringComparison.Ordinal))
        {
            Console.Error.WriteLine($"error: TorchSharp could not load libtorch: {(e.InnerException ?? e).Message.Split('\n')[0]} " +
                $"(a -p:TorchBackend=cpu build needs its libtorch natives; elsewhere set {Mora.Native.LibTorchBinding.EnvironmentVariable} to a PyTorch install's torch/lib)");
            return 3;
        }
        catch (Exception e) when (e is FormatException or FileNotFoundException or DirectoryNotFoundException or Mora.Training.TrainingDivergedException
                                   or Mora.Training.TrainingOutOfMemoryException or System.Text.Json.JsonException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    /// <summary>An option whose text is parsed once, while the command line is parsed; a bad value is a parse error naming the option.</summary>
    public static Option<T> Typed<T>(string name, Func<string, T> parse, string description, T defaultValue) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
        CustomParser = r => Parse(r, r.Tokens.Count > 0 ? r.Tokens[0].Value : "", parse),
    };

    /// <summary>A list option whose items are parsed once (empty when not given).</summary>
    public static Option<T[]> TypedList<T>(string name, Func<string, T> parse, string description) => new(name)
    {
        Description = description,
        AllowMultipleArgumentsPerToken = true,
        CustomParser = r => r.Tokens.Select(t => Parse(r, t.Value, parse)).ToArray(),
    };

    static T Parse<T>(ArgumentResult r, string text, Func<string, T> parse)
    {
        try { return parse(text); }
        catch (ArgumentException e)
        {
            r.AddError($"{((OptionResult)r.Parent!).Option.Name}: {e.MessageOnly()}");
            return default!;
        }
    }

    /// <summary>The one --device option: cpu, cuda or cuda:N, parsed into a <see cref="ComputeDevice"/>; CPU by default.</summary>
    public static Option<ComputeDevice> DeviceOption() =>
        Typed("--device", ComputeDevice.Parse, "cpu, cuda or cuda:N (CUDA needs a CUDA build: -p:TorchBackend=cuda-linux or cuda-windows)", ComputeDevice.Cpu);

    /// <summary>d x k with positive integers (4096x4096 or 4096×4096).</summary>
    public static (int D, int K) ParseShape(string text, string option)
    {
        var parts = text.ToLowerInvariant().Split('x', '×');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int d) || !int.TryParse(parts[1], out int k) || d <= 0 || k <= 0)
            throw new ArgumentException($"{option}: expected d x k with positive integers (e.g. 4096x4096), got '{text}'");
        return (d, k);
    }

    /// <summary>Writes the exact command into <paramref name="path"/> (COMMAND.txt).</summary>
    public static void WriteCommand(string path, string[] commandLine) =>
        AtomicFile.WriteText(path, $"{Invocation} " + (commandLine.Length == 0 ? "(no arguments: the default job)" : string.Join(" ", commandLine)) + "\n");

    /// <summary>Runs a resumable experiment (validated before) in <paramref name="outDir"/> (default runs/&lt;name&gt;-&lt;preset&gt;);
    /// copies its tables, the printed table and the exact command into the figures folder, then draws its runs' figures
    /// there. Ctrl+C stops it cleanly (run the same command to resume).</summary>
    public static int Experiment(string name, ExperimentSpec spec, string? outDir, string? figures, string[] commandLine, string[] tables,
        Func<string, CancellationToken, string> run) => Experiment(name, spec.Preset, outDir, figures, commandLine, tables, run);

    /// <summary>As above, for an experiment whose spec is not an <see cref="ExperimentSpec"/> (<paramref name="preset"/> names the default folder).</summary>
    public static int Experiment(string name, string preset, string? outDir, string? figures, string[] commandLine, string[] tables,
        Func<string, CancellationToken, string> run)
    {
        outDir ??= Path.Combine("runs", $"{name}-{SafePath.Name(preset, "Preset")}");
        TorchRuntime.Ensure();
        figures ??= Path.Combine(outDir, "figures");
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler stop = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += stop;
        try
        {
            string table = run(outDir, cancel.Token);
            Directory.CreateDirectory(figures);
            foreach (var file in tables)
            {
                byte[] bytes = File.ReadAllBytes(Path.Combine(outDir, file));     // tables and figures (PNG) alike
                AtomicFile.Write(Path.Combine(figures, file), s => s.Write(bytes));
            }
            AtomicFile.WriteText(Path.Combine(figures, "table.txt"), table + "\n");
            WriteCommand(Path.Combine(figures, "COMMAND.txt"), commandLine);
            var written = RunFigures.PlotRuns(Path.Combine(outDir, "runs"), figures, name);
            Console.WriteLine($"figures: {string.Join(", ", written.Select(Path.GetFileName))} in {Path.GetFullPath(figures)}");
            return 0;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine($"stopped. Run the same command again to resume from the last checkpoint in {Path.GetFullPath(outDir)}.");
            return 130;
        }
        finally { Console.CancelKeyPress -= stop; }
    }
}

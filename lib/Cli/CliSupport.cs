using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.RegularExpressions;
using Mora.Experiments;
using Mora.Figures;
using Mora.IO;
using Mora.Native;
using Mora.Training;

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

/// <summary>What the commands share: how to call the tool, the command line, the one error path, typed options, shapes,
/// and the experiment runner's edge (folders, COMMAND.txt, figures).</summary>
static class CliSupport
{
    /// <summary>How the tool is called from the repository root.</summary>
    public const string Invocation = "dotnet run -c Release --";

    /// <summary>The arguments the tool was started with (set once by Program), written to COMMAND.txt.</summary>
    public static string[] CommandLine { get; set; } = [];

    /// <summary>The command line as COMMAND.txt records it.</summary>
    public static string CommandText => $"{Invocation} " + (CommandLine.Length == 0 ? "(no arguments: the default job)" : string.Join(" ", CommandLine));

    /// <summary>Runs a command's body, the one error path of the tool. Bad input exits 2 with "error: …" naming the option,
    /// file and field, and no stack trace: argument errors (named with the option), and every documented reader
    /// exception (FormatException and its subclasses from the readers, a missing or unreadable file or folder, refused
    /// access, malformed JSON, a checkpoint that cannot resume). Divergence and out-of-memory exit 1; an unusable libtorch 3.</summary>
    public static int Guard(OptionNames names, Func<int> body)
    {
        try { return body(); }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {names.Describe(e)}");
            return 2;
        }
        catch (Exception e) when (e is FormatException or IOException or UnauthorizedAccessException or System.Text.Json.JsonException or Mora.Training.ResumeRefusedException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is Mora.Training.TrainingDivergedException or Mora.Training.TrainingOutOfMemoryException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
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

    /// <summary>A whole number as the user typed it, positive unless <paramref name="allowZero"/>; in words when it is not one.</summary>
    public static int WholeNumber(string text, bool allowZero = false) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v >= (allowZero ? 0 : 1) ? v
            : throw new ArgumentException($"'{text}' must be {(allowZero ? "0 or more" : "positive")}")
            : throw new ArgumentException($"'{text}' is not a whole number");

    /// <summary>A number (1e-3, 0.001) as the user typed it; in words when it is not one.</summary>
    public static double Number(string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v) ? v
            : throw new ArgumentException($"'{text}' is not a number (e.g. 0.001 or 1e-3)");

    /// <summary>The one --device option: cpu, cuda or cuda:N, parsed into a <see cref="ComputeDevice"/>; CPU by default.</summary>
    public static Option<ComputeDevice> DeviceOption() =>
        Typed("--device", ComputeDevice.Parse, "cpu, cuda or cuda:N (CUDA needs libtorch with CUDA: a build with -p:TorchBackend=cuda-linux or cuda-windows, " +
            $"or -p:TorchBackend=pytorch with a CUDA PyTorch installed or named by {Mora.Native.LibTorchBinding.EnvironmentVariable}; `info` shows what TorchSharp sees)", ComputeDevice.Cpu);

    /// <summary>d x k with positive integers (4096x4096 or 4096×4096).</summary>
    public static (int D, int K) ParseShape(string text, string option)
    {
        var parts = text.ToLowerInvariant().Split('x', '×');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int d) || !int.TryParse(parts[1], out int k) || d <= 0 || k <= 0)
            throw new ArgumentException($"{option}: expected d x k with positive integers (e.g. 4096x4096), got '{text}'");
        return (d, k);
    }

    /// <summary>Writes the command that made a folder's files into <paramref name="path"/> (COMMAND.txt).</summary>
    public static void WriteCommand(string path) => AtomicFile.WriteText(path, CommandText + "\n");

    /// <summary>Sets libtorch's CPU threads: <paramref name="threads"/> (--threads) when given, else the kit's rule (<see cref="Mora.Native.CpuThreads"/>); prints the choice in one line.</summary>
    public static void SetThreads(int? threads)
    {
        var choice = Mora.Native.CpuThreads.Configure(threads);     // --threads, else the kit's rule (MORA_THREADS, OMP_NUM_THREADS, cores)
        Console.WriteLine(choice);
    }

    /// <summary>Runs an experiment from the command line in <paramref name="outDir"/> (default runs/&lt;kind&gt;-&lt;preset&gt;):
    /// checks the figures folder before anything is written, runs the job, then copies its report files, the printed
    /// table and the exact command into the figures folder and, when the job has runs/ of its own (<see cref="IJob.PlotsRuns"/>),
    /// draws its runs' figures there. Ctrl+C stops it cleanly
    /// (run the same command to resume).</summary>
    public static int Experiment(IJob experiment, string? outDir, string? figures, bool fresh = false, bool overwrite = false, int? threads = null)
    {
        outDir ??= Path.Combine("runs", $"{experiment.Kind}-{SafePath.Name(experiment.Spec.Preset, "Preset")}");
        figures ??= Path.Combine(outDir, "figures");
        OutputFolders.Check(figures, "--figures");
        OutputFolders.CheckNotAnotherJobs(figures, "--figures", CommandText, overwrite, f => ExperimentFolder.HoldsSettingsOf(f, experiment.Spec));
        SetThreads(threads);
        TorchRuntime.Ensure();
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler stop = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += stop;
        try
        {
            var result = experiment.Run(outDir, Console.Out, cancel.Token, new RunOptions(fresh, overwrite, CommandText));
            Directory.CreateDirectory(figures);
            foreach (var file in experiment.ReportFiles)
            {
                byte[] bytes = File.ReadAllBytes(Path.Combine(outDir, file));     // tables and figures (PNG) alike
                AtomicFile.Write(Path.Combine(figures, file), s => s.Write(bytes));
            }
            AtomicFile.WriteText(Path.Combine(figures, "table.txt"), result.Table.TrimEnd('\n') + "\n");
            WriteCommand(Path.Combine(figures, "COMMAND.txt"));
            var written = experiment.PlotsRuns ? RunFigures.PlotRuns(Path.Combine(outDir, "runs"), figures, experiment.Kind) : [];
            Console.WriteLine($"figures: {string.Join(", ", experiment.ReportFiles.Concat(written.Select(Path.GetFileName)).Where(f => f.EndsWith(".png") || f.EndsWith(".html")))} in {Path.GetRelativePath(Environment.CurrentDirectory, Path.GetFullPath(figures))}");
            return 0;
        }
        catch (OperationCanceledException)
        {
            Console.WriteLine();     // the progress line ends first
            Console.Error.WriteLine($"stopped. Run the same command again to resume from the last checkpoint in {Path.GetFullPath(outDir)}.");
            return 130;
        }
        finally { Console.CancelKeyPress -= stop; }
    }

    /// <summary>Runs an experiment command: the spec from the preset and the options, then the experiment as above.</summary>
    public static int Experiment<TSpec>(ExperimentOptions<TSpec> o, ParseResult pr, Func<TSpec, IJob> make) where TSpec : ExperimentSpec =>
        Experiment(make(o.Apply(pr)), pr.GetValue(o.Out), pr.GetValue(o.Figures), pr.GetValue(o.Fresh), pr.GetValue(o.Overwrite), pr.GetValue(o.Threads));
}

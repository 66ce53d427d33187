using System.CommandLine;
using System.Text;
using Mora.Analysis;
using Mora.Bench;
using Mora.Experiments;
using Mora.IO;

namespace Mora.Cli;

/// <summary><c>designs</c>: every compress/decompress design side by side at one layer shape.</summary>
static class DesignsCommand
{
    /// <summary>Files written by <c>--out</c>: the printed table, its rows as CSV, and the command.</summary>
    public const string TableFile = "designs.txt", CsvFile = "designs.csv", CommandFile = "COMMAND.txt";

    public static Command Create()
    {
        var names = new OptionNames();
        var shape = new Option<string>("--shape") { Description = "layer shape d x k", DefaultValueFactory = _ => "256x256" };
        var rank = new Option<int>("--rank", "-r") { Description = "LoRA rank whose budget r̂ matches", DefaultValueFactory = _ => 8 };
        var tokens = new Option<int>("--tokens") { Description = "tokens in the timed forward", DefaultValueFactory = _ => 512 };
        var repeats = new Option<int>("--repeats") { Description = "timed repeats (median reported)", DefaultValueFactory = _ => 7 };
        var seed = new Option<long>("--seed") { Description = "random seed", DefaultValueFactory = _ => 0 };
        var device = names.Bind(CliSupport.DeviceOption(), "device");
        var outDir = new Option<string?>("--out") { Description = $"also write the table ({TableFile}), its rows ({CsvFile}) and the command ({CommandFile}) to this folder (publish with --out figures/designs/<name>)" };
        var command = new Command("designs", "Compare every compress/decompress design: r̂, parameters, rank and effective rank of ΔW, merge error, speed.")
            { shape, rank, tokens, repeats, seed, device, outDir };
        command.SetAction(pr => CliSupport.Guard(names, () =>
            Run(pr.GetValue(shape)!, pr.GetValue(rank), pr.GetValue(tokens), pr.GetValue(repeats), pr.GetValue(seed), pr.GetValue(device), pr.GetValue(outDir))));
        return command;
    }

    static int Run(string shape, int r, int tokens, int repeats, long seed, ComputeDevice device, string? outDir)
    {
        var (d, k) = CliSupport.ParseShape(shape, "--shape");
        if (r <= 0) throw new ArgumentException($"--rank must be positive, got {r}");
        if (tokens <= 0) throw new ArgumentException($"--tokens must be positive, got {tokens}");
        if (repeats <= 0) throw new ArgumentException($"--repeats must be positive, got {repeats}");
        // Every design must fit the layer at this rank's budget before anything is printed: r̂ too large is a --rank error.
        foreach (var type in MoraTypes.All)
        {
            try { CompressDecompress.ForLoraRank(d, k, r, type); }
            catch (ArgumentException e) { throw new ArgumentException($"--rank {r}: {e.MessageOnly()} for {type} at {d}x{k}", "rank", e); }
        }
        if (outDir is not null) outDir = Mora.Training.OutputFolders.Check(outDir, "--out");
        var torchDevice = device.ToTorch();
        Console.WriteLine($"Layer {d}x{k}, LoRA r = {r} ({ParameterBudget.LoraParameters(d, k, r):N0} parameters), {tokens} tokens, device {device}");
        Action<string> progress = Console.IsErrorRedirected ? msg => Console.Error.WriteLine(msg) : msg => Console.Error.Write($"\r{msg,-40}");
        var rows = DesignReport.CompareDesigns(d, k, r, tokens, repeats, seed, torchDevice, progress);
        if (!Console.IsErrorRedirected) Console.Error.Write("\r" + new string(' ', 42) + "\r");
        var table = new StringBuilder();
        table.AppendLine($"{"design",-22} {"type",4} {"r̂",5} {"params",9} {"rank ΔW",8} {"eff. rank",9} {"merge err",10} {"|ΔW−J|",9} {"fwd ms",8} {"ΔW ms",8}");
        foreach (var x in rows)
            table.AppendLine($"{x.Type,-22} {(x.Number is { } t ? t.ToString() : "-"),4} {x.RHat,5} {x.Parameters,9:N0} {x.Rank,8} {x.EffectiveRank,9:F1} {x.MergeError,10:E1} {x.JacobianError,9:E1} {x.ForwardMs,8:F3} {x.DeltaWeightMs,8:F3}");
        table.AppendLine($"(LoRA at r = {r} reaches rank ≤ {Math.Min(r, Math.Min(d, k))}; times are medians of {repeats}, float32.)");
        Console.Write(table.ToString());
        if (outDir is not null)
        {
            Directory.CreateDirectory(outDir);
            AtomicFile.WriteText(Path.Combine(outDir, TableFile), table.ToString());
            Benchmarks.WriteCsv(Path.Combine(outDir, CsvFile), rows);
            CliSupport.WriteCommand(Path.Combine(outDir, CommandFile));
            Console.WriteLine($"written: {Path.GetFullPath(outDir)}");
        }
        return 0;
    }
}

using System.CommandLine;
using Mora.Analysis;

namespace Mora.Cli;

/// <summary><c>designs</c>: every compress/decompress design side by side at one layer shape.</summary>
static class DesignsCommand
{
    public static Command Create()
    {
        var names = new OptionNames();
        var shape = new Option<string>("--shape") { Description = "layer shape d x k", DefaultValueFactory = _ => "256x256" };
        var rank = new Option<int>("--rank", "-r") { Description = "LoRA rank whose budget r̂ matches", DefaultValueFactory = _ => 8 };
        var tokens = new Option<int>("--tokens") { Description = "tokens in the timed forward", DefaultValueFactory = _ => 512 };
        var repeats = new Option<int>("--repeats") { Description = "timed repeats (median reported)", DefaultValueFactory = _ => 7 };
        var seed = new Option<long>("--seed") { Description = "random seed", DefaultValueFactory = _ => 0 };
        var device = names.Bind(CliSupport.DeviceOption(), "device");
        var command = new Command("designs", "Compare every compress/decompress design: r̂, parameters, rank and effective rank of ΔW, merge error, speed.")
            { shape, rank, tokens, repeats, seed, device };
        command.SetAction(pr => CliSupport.Guard(names, () =>
            Run(pr.GetValue(shape)!, pr.GetValue(rank), pr.GetValue(tokens), pr.GetValue(repeats), pr.GetValue(seed), pr.GetValue(device))));
        return command;
    }

    static int Run(string shape, int r, int tokens, int repeats, long seed, ComputeDevice device)
    {
        var (d, k) = CliSupport.ParseShape(shape, "--shape");
        if (r <= 0) throw new ArgumentException($"--rank must be positive, got {r}");
        if (tokens <= 0) throw new ArgumentException($"--tokens must be positive, got {tokens}");
        if (repeats <= 0) throw new ArgumentException($"--repeats must be positive, got {repeats}");
        var torchDevice = device.ToTorch();
        Console.WriteLine($"Layer {d}x{k}, LoRA r = {r} ({RHat.LoraParameters(d, k, r):N0} parameters), {tokens} tokens, device {device}");
        Action<string> progress = Console.IsErrorRedirected ? msg => Console.Error.WriteLine(msg) : msg => Console.Error.Write($"\r{msg,-40}");
        var rows = DesignReport.CompareDesigns(d, k, r, tokens, repeats, seed, torchDevice, progress);
        if (!Console.IsErrorRedirected) Console.Error.Write("\r" + new string(' ', 42) + "\r");
        Console.WriteLine($"{"design",-22} {"type",4} {"r̂",5} {"params",9} {"rank ΔW",8} {"eff. rank",9} {"merge err",10} {"|ΔW−J|",9} {"fwd ms",8} {"ΔW ms",8}");
        foreach (var x in rows)
            Console.WriteLine($"{x.Type,-22} {(int)x.Type,4} {x.RHat,5} {x.Parameters,9:N0} {x.Rank,8} {x.EffectiveRank,9:F1} {x.MergeError,10:E1} {x.JacobianError,9:E1} {x.ForwardMs,8:F3} {x.DeltaWeightMs,8:F3}");
        Console.WriteLine($"(LoRA at r = {r} reaches rank ≤ {Math.Min(r, Math.Min(d, k))}; times are medians of {repeats}, float32.)");
        return 0;
    }
}

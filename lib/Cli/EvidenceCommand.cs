using System.CommandLine;
using Mora.Evidence;
using Mora.IO;
using Mora.Native;
using Mora.Training;

namespace Mora.Cli;

/// <summary><c>evidence</c>: the parts of the GPU evidence run (bench/gpu/evidence.sh) that the kit computes itself —
/// kernel launch counts, the layer dump the PyTorch-eager peer checks, the training presets the HF + PEFT peer reads, a
/// training step at any preset, a real out-of-memory, a checkpointed run to kill and resume, and the interop files.</summary>
static class EvidenceCommand
{
    public static Command Create(string[] args)
    {
        var command = new Command("evidence", "The kit's parts of the GPU evidence run (bench/gpu/evidence.sh; see bench/gpu/README.md): launch counts, the layer dump for the PyTorch-eager check, training presets, a training step at a preset, out-of-memory, kill-and-resume, interop files.")
        {
            Launches(args),
        };
        return command;
    }

    static Command Launches(string[] args)
    {
        var names = new OptionNames();
        var shapes = names.Bind(new Option<string[]>("--shapes") { Description = "layer shapes d x k (default: the bench's full preset, 1024x1024 4096x4096 4096x11008)", AllowMultipleArgumentsPerToken = true }, "shapes");
        var ranks = names.Bind(new Option<int[]>("--ranks") { Description = "LoRA ranks; MoRA at the same budget (default 8 256)", AllowMultipleArgumentsPerToken = true }, "ranks");
        var tokens = names.Bind(new Option<int>("--tokens") { Description = "tokens of the traced step (counts do not depend on it)", DefaultValueFactory = _ => 16 }, "tokens");
        var device = names.Bind(CliSupport.DeviceOption(), "device");
        var dtype = names.Bind(new Option<string>("--dtype") { Description = "float32, bfloat16 or float16", DefaultValueFactory = _ => "float32" }, "DType");
        var outDir = new Option<string>("--out") { Description = "folder for launches.csv and launches.md (a launches-before.csv there is shown beside)", DefaultValueFactory = _ => Path.Combine("runs", "launches") };
        var traces = new Option<bool>("--traces") { Description = "also write each traced step as an indented operator tree (traces/), launches marked *" };
        var command = new Command("launches", "Count kernel launches of one layer's forward + backward for LoRA, DoRA and every MoRA design (both rotation formulations), from libtorch's own trace.")
            { shapes, ranks, tokens, device, dtype, outDir, traces };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            var sh = pr.GetValue(shapes) is { Length: > 0 } s ? s.Select(x => CliSupport.ParseShape(x, "--shapes")).ToArray() : [(1024, 1024), (4096, 4096), (4096, 11008)];
            var rk = pr.GetValue(ranks) is { Length: > 0 } r ? r : [8, 256];
            if (rk.Any(x => x <= 0)) throw new ArgumentException($"--ranks must be positive, got {string.Join(" ", rk)}", "ranks");
            int t = pr.GetValue(tokens);
            if (t <= 0) throw new ArgumentException($"--tokens must be positive, got {t}", "tokens");
            var dev = pr.GetValue(device).EnsureAvailable("device");
            var dt = TrainConfig.ParseDType(pr.GetValue(dtype)!);
            TorchRuntime.Ensure();
            CpuThreads.Configure();
            string dir = pr.GetValue(outDir)!;
            var rows = LaunchCounts.Measure(sh, rk, t, dev.ToTorch("device"), dt, Console.Out);
            LaunchCounts.Write(dir, rows, $"{CliSupport.Invocation} {string.Join(" ", args)}", traces: pr.GetValue(traces));
            CliSupport.WriteCommand(Path.Combine(dir, "COMMAND.txt"), args);
            Console.WriteLine(File.ReadAllText(Path.Combine(dir, LaunchCounts.ReportFile)));
            Console.WriteLine($"written: {Path.GetFullPath(dir)}");
            return 0;
        }));
        return command;
    }
}

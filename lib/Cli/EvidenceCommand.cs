using System.CommandLine;
using Mora.Adapters;
using Mora.Evidence;
using Mora.IO;
using Mora.Native;
using Mora.Training;
using static TorchSharp.torch;

namespace Mora.Cli;

/// <summary><c>evidence</c>: the parts of the GPU evidence run (bench/gpu/evidence.sh) that the kit computes itself —
/// kernel launch counts, the layer dump the PyTorch-eager peer checks, the training presets the HF + PEFT peer reads, a
/// training step at any preset, a real out-of-memory, a checkpointed run to kill and resume, and the interop files.</summary>
static class EvidenceCommand
{
    public static Command Create()
    {
        var command = new Command("evidence", "The kit's parts of the GPU evidence run (bench/gpu/evidence.sh; see bench/gpu/README.md): launch counts, the layer dump for the PyTorch-eager check, training presets, a training step at a preset, out-of-memory, kill-and-resume, interop files.")
        {
            Launches(), LayerDumpCommand(), Presets(), TrainStep(), TrainRun(), CompareRuns(), OutOfMemory(),
            InteropCommand.Export(), InteropCommand.Check(),
        };
        return command;
    }

    static Command LayerDumpCommand()
    {
        var names = new OptionNames();
        var shapes = names.Bind(new Option<string[]>("--shapes") { Description = "layer shapes d x k", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => ["48x80", "64x64", "96x40"] }, "shapes");
        var rank = names.Bind(new Option<int>("--rank") { Description = "LoRA rank whose budget r̂ matches", DefaultValueFactory = _ => 4 }, "r");
        var tokens = names.Bind(new Option<int>("--tokens") { Description = "rows of x", DefaultValueFactory = _ => 6 }, "tokens");
        var seed = names.Bind(new Option<int>("--seed") { DefaultValueFactory = _ => 0, Description = "seed of x, the output gradient and the weights" }, "seed");
        var dtype = names.Bind(new Option<string>("--dtype") { Description = "float32 or float64", DefaultValueFactory = _ => "float32" }, "DType");
        var outDir = new Option<string>("--out") { Description = "folder (one subfolder per shape and method)", Required = true };
        var command = new Command("layer-dump", "Write each design's (and LoRA's) inputs, output, ΔW and gradients as .npy for bench/gpu/mora_eager.py --check (CPU).")
            { shapes, rank, tokens, seed, dtype, outDir };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            var dt = TrainConfig.ParseDType(pr.GetValue(dtype)!);
            if (dt is not (ScalarType.Float32 or ScalarType.Float64)) throw new ArgumentException($"--dtype: the dump is float32 or float64, got {pr.GetValue(dtype)}", "DType");
            int r = pr.GetValue(rank), t = pr.GetValue(tokens);
            if (r <= 0) throw new ArgumentException($"--rank must be positive, got {r}", "r");
            if (t <= 0) throw new ArgumentException($"--tokens must be positive, got {t}", "tokens");
            TorchRuntime.Ensure();
            CpuThreads.Configure();
            int n = 0;
            foreach (var (d, k) in pr.GetValue(shapes)!.Select(x => CliSupport.ParseShape(x, "--shapes")))
                n += LayerDump.Write(pr.GetValue(outDir)!, d, k, r, t, pr.GetValue(seed), dt).Count;
            Console.WriteLine($"written: {n} layer dumps in {Path.GetFullPath(pr.GetValue(outDir)!)}");
            return 0;
        }));
        return command;
    }

    static Command Presets()
    {
        var outFile = new Option<string>("--out") { Description = "the JSON file (printed when not given)" };
        var command = new Command("presets", "Write the training setup and model presets the HF + PEFT peer (bench/gpu/hf_peft_step.py) builds its models and steps from.") { outFile };
        command.SetAction(pr => CliSupport.Guard(new OptionNames(), () =>
        {
            string json = TrainPresets.PresetsJson();
            if (pr.GetValue(outFile) is { } f) { AtomicFile.WriteText(f, json + "\n"); Console.WriteLine($"written: {Path.GetFullPath(f)}"); }
            else Console.WriteLine(json);
            return 0;
        }));
        return command;
    }

    /// <summary>--model, --methods, --batch, --steps, --device, --dtype, --seed: what train-step and train-run share.</summary>
    sealed class StepOptions
    {
        public OptionNames Names { get; } = new();
        public Option<string> Model { get; }
        public Option<int> Batch { get; }
        public Option<int> Steps { get; }
        public Option<ComputeDevice> Device { get; }
        public Option<string> DType { get; }
        public Option<int> Seed { get; }

        public StepOptions(int steps)
        {
            Model = Names.Bind(new Option<string>("--model") { Description = $"model preset: {string.Join(", ", TrainPresets.Names)}", DefaultValueFactory = _ => "small" }, "model");
            Batch = Names.Bind(new Option<int>("--batch") { Description = "sequences per step", DefaultValueFactory = _ => 32 }, "batch");
            Steps = Names.Bind(new Option<int>("--steps") { Description = "optimizer steps", DefaultValueFactory = _ => steps }, "steps");
            Device = Names.Bind(CliSupport.DeviceOption(), "device");
            DType = Names.Bind(new Option<string>("--dtype") { Description = "float32, bfloat16 or float16 (the last two on a GPU)", DefaultValueFactory = _ => "float32" }, "DType");
            Seed = Names.Bind(new Option<int>("--seed") { Description = "seed of the model, data and order", DefaultValueFactory = _ => 0 }, "seed");
        }

        public IEnumerable<Option> All => [Model, Batch, Steps, Device, DType, Seed];

        /// <summary>The values, checked (the model preset known, the dtype parsed, the device present).</summary>
        public (string Model, int Batch, int Steps, ComputeDevice Device, string DType, int Seed) Values(ParseResult pr)
        {
            string model = pr.GetValue(Model)!;
            _ = TrainPresets.Config(model, 128);
            int batch = pr.GetValue(Batch), steps = pr.GetValue(Steps);
            if (batch <= 0) throw new ArgumentException($"--batch must be positive, got {batch}", "batch");
            if (steps <= 0) throw new ArgumentException($"--steps must be positive, got {steps}", "steps");
            string dtype = pr.GetValue(DType)!;
            TrainConfig.ParseDType(dtype);
            var device = pr.GetValue(Device).EnsureAvailable("device");
            return (model, batch, steps, device, dtype, pr.GetValue(Seed));
        }
    }

    static Command TrainStep()
    {
        var o = new StepOptions(20);
        var methods = o.Names.Bind(CliSupport.TypedList("--methods", t => MethodSpec.Parse(t), "lora, dora, full, mora-<design> (default: lora mora-rotation mora-sharing full)"), "methods");
        var outDir = new Option<string>("--out") { Description = "folder of train-step.csv (rows are added or replaced)", Required = true };
        var command = new Command("train-step", "Time the kit's whole training step (the bench's: memorisation task, AdamW, 3 untimed steps) at any model preset, for the ratios against HF + PEFT.");
        foreach (var option in o.All.Append(methods).Append(outDir)) command.Options.Add(option);
        command.SetAction(pr => CliSupport.Guard(o.Names, () =>
        {
            var (model, batch, steps, device, dtype, seed) = o.Values(pr);
            var ms = pr.GetValue(methods) is { Length: > 0 } m ? m
                : [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation), MethodSpec.Mora(MoraType.Sharing), MethodSpec.Full];
            TorchRuntime.Ensure();
            CpuThreads.Configure();
            string dir = pr.GetValue(outDir)!;
            Directory.CreateDirectory(dir);
            TrainingEvidence.TimeSteps(model, ms, batch, steps, device, dtype, seed, dir, Console.Out);
            Console.WriteLine($"written: {Path.GetFullPath(Path.Combine(dir, TrainingEvidence.StepFile))}");
            return 0;
        }));
        return command;
    }

    static Command TrainRun()
    {
        var o = new StepOptions(60);
        var method = o.Names.Bind(CliSupport.Typed("--method", t => MethodSpec.Parse(t), "lora, dora, full, mora-<design>", MethodSpec.Mora(MoraType.Rotation)), "method");
        var every = o.Names.Bind(new Option<int>("--checkpoint-every") { Description = "steps between checkpoints", DefaultValueFactory = _ => 20 }, "checkpointEvery");
        var outDir = new Option<string>("--out") { Description = "the run's folder (log.csv, run.json, checkpoints/); run again to resume", Required = true };
        var command = new Command("train-run", "One checkpointed memorisation run at a preset and dtype, resumed from its last checkpoint when started again (the run evidence.sh kills and resumes).");
        foreach (var option in o.All.Append(method).Append(every).Append(outDir)) command.Options.Add(option);
        command.SetAction(pr => CliSupport.Guard(o.Names, () =>
        {
            var (model, batch, steps, device, dtype, seed) = o.Values(pr);
            int n = pr.GetValue(every);
            if (n <= 0) throw new ArgumentException($"--checkpoint-every must be positive, got {n}", "checkpointEvery");
            TorchRuntime.Ensure();
            CpuThreads.Configure();
            var result = TrainingEvidence.Run(model, pr.GetValue(method)!, batch, steps, n, device, dtype, seed, pr.GetValue(outDir)!);
            Console.WriteLine($"finished {result.Steps} steps{(result.ResumedFromStep is { } r ? $" (resumed from step {r})" : "")}; final loss {result.Log.Rows[^1].Loss:G6}; {Path.GetFullPath(pr.GetValue(outDir)!)}");
            return 0;
        }));
        return command;
    }

    static Command CompareRuns()
    {
        var names = new OptionNames();
        var reference = names.Bind(new Option<string>("--reference") { Description = "the run compared with", Required = true }, "reference");
        var runs = names.Bind(new Option<string[]>("--runs") { Description = "label=folder of each run compared with the reference", AllowMultipleArgumentsPerToken = true, Required = true }, "runs");
        var outFile = new Option<string?>("--out") { Description = "markdown file for the table" };
        var command = new Command("compare-runs", "Compare finished runs' final trainable weights and logged losses with a reference run, bit for bit.") { reference, runs, outFile };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            var others = pr.GetValue(runs)!.Select(r => r.IndexOf('=') is var at and > 0 ? (r[..at], r[(at + 1)..]) : throw new ArgumentException($"--runs: expected label=folder, got '{r}'", "runs")).ToList();
            TorchRuntime.Ensure();
            var (report, identical) = TrainingEvidence.Compare(pr.GetValue(reference)!, others);
            if (pr.GetValue(outFile) is { } f) AtomicFile.WriteText(f, report);
            Console.WriteLine(report);
            Console.WriteLine(identical ? "all bit-identical" : "not all bit-identical (see the table)");
            return 0;
        }));
        return command;
    }

    static Command OutOfMemory()
    {
        var names = new OptionNames();
        var model = names.Bind(new Option<string>("--model") { Description = $"model preset: {string.Join(", ", TrainPresets.Names)}", DefaultValueFactory = _ => "laptop" }, "model");
        var batch = names.Bind(new Option<int>("--batch") { Description = "sequences in the step that must not fit", DefaultValueFactory = _ => 65536 }, "batch");
        var device = names.Bind(CliSupport.DeviceOption(), "device");
        var dtype = names.Bind(new Option<string>("--dtype") { Description = "float32 or bfloat16", DefaultValueFactory = _ => "bfloat16" }, "DType");
        var outFile = new Option<string?>("--out") { Description = "JSON file for the result" };
        var command = new Command("oom", "Provoke a real out-of-memory in a training step (a batch far too large) and report the kit's message; then check that a small step still trains. On a GPU only: a CPU run would take the machine's memory.")
            { model, batch, device, dtype, outFile };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            var dev = pr.GetValue(device);
            if (!dev.IsCuda) throw new ArgumentException("--device: the out-of-memory check runs on a GPU only (on a CPU it would exhaust the machine's memory, not a device's)", "device");
            dev.EnsureAvailable("device");
            string m = pr.GetValue(model)!; _ = TrainPresets.Config(m, 128);
            string dt = pr.GetValue(dtype)!; TrainConfig.ParseDType(dt);
            TorchRuntime.Ensure();
            var (message, native, recovered) = TrainingEvidence.OutOfMemory(m, pr.GetValue(batch), dev, dt, 0);
            var result = new System.Text.Json.Nodes.JsonObject
            {
                ["caught_kit_exception"] = message is not null, ["message"] = message, ["native_first_line"] = native, ["small_step_after"] = recovered,
                ["model"] = m, ["batch"] = pr.GetValue(batch), ["dtype"] = dt, ["device"] = dev.ToString(),
            };
            string json = result.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
            if (pr.GetValue(outFile) is { } f) AtomicFile.WriteText(f, json + "\n");
            Console.WriteLine(json);
            return message is not null && recovered ? 0 : 1;
        }));
        return command;
    }

    static Command Launches()
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
            LaunchCounts.Write(dir, rows, CliSupport.CommandText, traces: pr.GetValue(traces));
            CliSupport.WriteCommand(Path.Combine(dir, "COMMAND.txt"));
            Console.WriteLine(File.ReadAllText(Path.Combine(dir, LaunchCounts.ReportFile)));
            Console.WriteLine($"written: {Path.GetFullPath(dir)}");
            return 0;
        }));
        return command;
    }
}

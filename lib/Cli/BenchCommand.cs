using System.CommandLine;
using Mora.Bench;
using Mora.IO;
using Mora.Native;

namespace Mora.Cli;

/// <summary><c>bench</c>: MoRA's cost against LoRA and the hardware.</summary>
static class BenchCommand
{
    public static Command Create()
    {
        var names = new OptionNames();
        var preset = names.Bind(new Option<string>("--preset") { Description = "tiny (seconds, what the tests run), quick (1024×1024), full (1024², 4096², 4096×11008: the issue's sizes)", DefaultValueFactory = _ => "quick" }, nameof(BenchSpec.Preset));
        var shapes = names.Bind(new Option<string[]>("--shapes") { Description = "layer shapes d x k (override the preset)", AllowMultipleArgumentsPerToken = true }, nameof(BenchSpec.Shapes));
        var tokens = names.Bind(new Option<int[]>("--tokens") { Description = "tokens per forward (override the preset)", AllowMultipleArgumentsPerToken = true }, nameof(BenchSpec.Tokens));
        var ranks = names.Bind(new Option<int[]>("--ranks") { Description = "LoRA ranks; MoRA at the same parameter budget (override the preset)", AllowMultipleArgumentsPerToken = true }, nameof(BenchSpec.Ranks));
        var mergeShapes = names.Bind(new Option<string[]>("--merge-shapes") { Description = "shapes of the ΔW/merge benchmark (override the preset)", AllowMultipleArgumentsPerToken = true }, nameof(BenchSpec.MergeShapes));
        var repeats = names.Bind(new Option<int?>("--repeats") { Description = "interleaved timed repetitions (median reported)" }, nameof(BenchSpec.Repeats));
        var trainSteps = names.Bind(new Option<int?>("--train-steps") { Description = "steps of the training-step benchmark per method (0 skips it)" }, nameof(BenchSpec.TrainSteps));
        var noReference = new Option<bool>("--no-reference-merge") { Description = "skip timing the reference's merge algorithm (kongds/MoRA get_delta_weight)" };
        var device = names.Bind(CliSupport.DeviceOption(), nameof(BenchSpec.Device));
        var dtype = names.Bind(CliSupport.Typed("--dtype", t => BenchSpec.DTypes.Contains(t.ToLowerInvariant()) ? t.ToLowerInvariant()
            : throw new ArgumentException($"unknown dtype '{t}'; use {string.Join(", ", BenchSpec.DTypes)} (the last two on a GPU)"), $"{string.Join(", ", BenchSpec.DTypes)} (the last two on a GPU)", "float32"), nameof(BenchSpec.DType));
        var outDir = new Option<string?>("--out") { Description = "folder for layer.csv, merge.csv, train.csv, bench.md, COMMAND.txt (default runs/bench/<preset>, ignored by git; publish with --out figures/bench/<name>)" };
        var command = new Command("bench", "Benchmark MoRA's cost against LoRA and the hardware: one layer forward + backward (ratios to the base and to LoRA, FLOP floors, peak memory), ΔW and merge against the reference merge algorithm (kongds/MoRA get_delta_weight), a whole training step per method.")
            { preset, shapes, tokens, ranks, mergeShapes, repeats, trainSteps, noReference, device, dtype, outDir };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            var spec = BenchSpec.FromPreset(pr.GetValue(preset)!);
            if (pr.GetValue(shapes) is { Length: > 0 } sh) spec = spec with { Shapes = sh.Select(x => CliSupport.ParseShape(x, "--shapes")).ToArray() };
            if (pr.GetValue(mergeShapes) is { Length: > 0 } ms) spec = spec with { MergeShapes = ms.Select(x => CliSupport.ParseShape(x, "--merge-shapes")).ToArray() };
            if (pr.GetValue(tokens) is { Length: > 0 } tk) spec = spec with { Tokens = tk };
            if (pr.GetValue(ranks) is { Length: > 0 } rk) spec = spec with { Ranks = rk };
            if (pr.GetValue(repeats) is { } rp) spec = spec with { Repeats = rp };
            if (pr.GetValue(trainSteps) is { } ts) spec = spec with { TrainSteps = ts };
            spec = spec with { ReferenceMerge = !pr.GetValue(noReference), Device = pr.GetValue(device), DType = pr.GetValue(dtype)! };
            spec.Validate();
            TorchRuntime.Ensure();
            string dir = Mora.Training.OutputFolders.Check(pr.GetValue(outDir) ?? Path.Combine("runs", "bench", SafePath.Name(spec.Preset, "--preset")), "--out");
            Directory.CreateDirectory(dir);
            Benchmarks.Run(spec, dir, Console.Out);
            CliSupport.WriteCommand(Path.Combine(dir, Benchmarks.CommandFile));
            Console.WriteLine();
            Console.WriteLine(File.ReadAllText(Path.Combine(dir, Benchmarks.ReportFile)));
            Console.WriteLine($"written: {Path.GetFullPath(dir)}");
            return 0;
        }));
        return command;
    }
}

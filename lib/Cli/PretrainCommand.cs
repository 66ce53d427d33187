using System.CommandLine;
using Mora.Experiments;
using Mora.Model;

namespace Mora.Cli;

/// <summary><c>pretrain</c>: the paper's pretraining comparison (§4.4) at kit scale: LoRA, ReLoRA, MoRA, ReMoRA and full
/// training of a model from scratch on a generated language, held-out perplexity over seeds.</summary>
static class PretrainCommand
{
    public static Command Create(string[] args)
    {
        var names = new OptionNames();
        var preset = names.Bind(new Option<string>("--preset") { Description = $"settings to start from: {string.Join(", ", PretrainSpec.PresetNames)}", DefaultValueFactory = _ => "cpu" }, nameof(PretrainSpec.Preset));
        var model = names.Bind(new Option<string?>("--model") { Description = $"model trained from scratch: {string.Join(", ", LlamaConfig.PresetNames)}" }, nameof(PretrainSpec.Model));
        var rank = names.Bind(new Option<int?>("--rank") { Description = "LoRA rank budget (MoRA gets the same trainable parameters)" }, nameof(PretrainSpec.Rank));
        var steps = names.Bind(new Option<int?>("--steps") { Description = "training steps of each evaluation run" }, nameof(PretrainSpec.Steps));
        var batch = names.Bind(new Option<int?>("--batch-size") { Description = "sequences per step" }, nameof(PretrainSpec.BatchSize));
        var block = names.Bind(new Option<int?>("--block-size") { Description = "characters per training sequence" }, nameof(PretrainSpec.BlockSize));
        var warmup = names.Bind(new Option<int?>("--warmup") { Description = "learning-rate warm-up steps at the start" }, nameof(PretrainSpec.WarmupSteps));
        var mergeEvery = names.Bind(new Option<int?>("--merge-every") { Description = "ReLoRA/ReMoRA: merge the adapter and restart it every N steps" }, nameof(PretrainSpec.MergeEvery));
        var restart = names.Bind(new Option<int?>("--restart-warmup") { Description = "ReLoRA/ReMoRA: learning-rate warm-up steps after each merge" }, nameof(PretrainSpec.RestartWarmupSteps));
        var methods = names.Bind(CliSupport.TypedList("--methods", t => PretrainMethods.Parse(t, "--methods"), "lora, relora, mora, remora, full (default: all five)"), nameof(PretrainSpec.Methods));
        var seeds = names.Bind(new Option<int[]>("--seeds") { Description = "evaluation seeds", AllowMultipleArgumentsPerToken = true }, nameof(PretrainSpec.Seeds));
        var tuneSeed = names.Bind(new Option<int?>("--tune-seed") { Description = "seed of the learning-rate sweep (not an evaluation seed)" }, nameof(PretrainSpec.TuneSeed));
        var tuneSteps = names.Bind(new Option<int?>("--tune-steps") { Description = "steps of each sweep run" }, nameof(PretrainSpec.TuneSteps));
        var grid = names.Bind(new Option<double[]>("--lr-grid") { Description = "learning rates tried for each method (log-spaced)", AllowMultipleArgumentsPerToken = true }, nameof(PretrainSpec.LrGrid));
        var trainDocs = names.Bind(new Option<int?>("--train-documents") { Description = "generated training documents" }, nameof(PretrainSpec.TrainDocuments));
        var heldOutDocs = names.Bind(new Option<int?>("--heldout-documents") { Description = "generated held-out documents" }, nameof(PretrainSpec.HeldOutDocuments));
        var evalPoints = names.Bind(new Option<int?>("--eval-points") { Description = "held-out evaluations during each run" }, nameof(PretrainSpec.EvalPoints));
        var device = names.Bind(CliSupport.DeviceOption(), nameof(PretrainSpec.Device));
        var threads = names.Bind(new Option<int?>("--threads") { Description = "CPU threads for libtorch (1 is much faster on a machine whose cores other jobs share; default: libtorch's choice)" }, "threads");
        var outDir = names.Bind(new Option<string?>("--out") { Description = "output folder (default runs/pretrain-<preset>); run again to resume" }, "outDir");
        var figures = new Option<string?>("--figures") { Description = "folder for the tables and figures (default <out>/figures)" };
        var command = new Command("pretrain", "Pretrain a model from scratch on a generated language with LoRA, ReLoRA, MoRA, ReMoRA and full training " +
            "(paper §4.4): tune each method's learning rate on a grid, then report held-out perplexity over seeds with 95 % intervals and paired differences.");
        foreach (var o in new Option[] { preset, model, rank, steps, batch, block, warmup, mergeEvery, restart, methods, seeds, tuneSeed, tuneSteps, grid, trainDocs, heldOutDocs, evalPoints, device, threads, outDir, figures })
            command.Options.Add(o);
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            var spec = PretrainSpec.FromPreset(pr.GetValue(preset)!);
            spec = spec with
            {
                Model = pr.GetValue(model) ?? spec.Model, Rank = pr.GetValue(rank) ?? spec.Rank, Steps = pr.GetValue(steps) ?? spec.Steps,
                BatchSize = pr.GetValue(batch) ?? spec.BatchSize, BlockSize = pr.GetValue(block) ?? spec.BlockSize, WarmupSteps = pr.GetValue(warmup) ?? spec.WarmupSteps,
                MergeEvery = pr.GetValue(mergeEvery) ?? spec.MergeEvery, RestartWarmupSteps = pr.GetValue(restart) ?? spec.RestartWarmupSteps,
                Methods = pr.GetValue(methods) is { Length: > 0 } ms ? ms : spec.Methods, Seeds = pr.GetValue(seeds) is { Length: > 0 } ss ? ss : spec.Seeds,
                TuneSeed = pr.GetValue(tuneSeed) ?? spec.TuneSeed, TuneSteps = pr.GetValue(tuneSteps) ?? spec.TuneSteps,
                LrGrid = pr.GetValue(grid) is { Length: > 0 } g ? g : spec.LrGrid, TrainDocuments = pr.GetValue(trainDocs) ?? spec.TrainDocuments,
                HeldOutDocuments = pr.GetValue(heldOutDocs) ?? spec.HeldOutDocuments, EvalPoints = pr.GetValue(evalPoints) ?? spec.EvalPoints,
                Device = pr.GetValue(device),
            };
            spec.Validate();
            if (pr.GetValue(threads) is { } n)
            {
                if (n <= 0) throw new ArgumentException($"threads must be positive, got {n}", "threads");
                Mora.Native.TorchRuntime.Ensure();
                TorchSharp.torch.set_num_threads(n);
            }
            string? dir = pr.GetValue(outDir);
            string? figs = pr.GetValue(figures);
            return CliSupport.Experiment("pretrain", spec.Preset, dir, figs, args,
                [PretrainExperiment.TableFile, PretrainExperiment.SummaryFile, PretrainExperiment.PairedFile, PretrainExperiment.SweepFile],
                (d, cancel) =>
                {
                    var results = PretrainExperiment.Run(spec, d, Console.Out, cancel);
                    PretrainExperiment.WriteFigures(results, d, figs ?? Path.Combine(d, "figures"));
                    return PretrainExperiment.FormatTable(results);
                });
        }));
        return command;
    }
}

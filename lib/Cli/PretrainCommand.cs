using System.CommandLine;
using Mora.Experiments;

namespace Mora.Cli;

/// <summary><c>pretrain</c>: the paper's pretraining comparison (§4.4) at kit scale: LoRA, ReLoRA, MoRA, ReMoRA and full
/// training of a model from scratch on a generated language, held-out perplexity over seeds.</summary>
static class PretrainCommand
{
    public static Command Create()
    {
        var o = new ExperimentOptions<PretrainSpec>(PretrainExperiment.Name, PretrainSpec.PresetNames, "cpu", PretrainSpec.FromPreset);
        static PretrainSpec P(ExperimentSpec s) => (PretrainSpec)s;
        o.Value<int>("--rank", nameof(PretrainSpec.Rank), "LoRA rank budget (MoRA gets the same trainable parameters)", s => s.Rank, (s, v) => P(s) with { Rank = v });
        o.Value<int>("--block-size", nameof(PretrainSpec.BlockSize), "characters per training sequence", s => s.BlockSize, (s, v) => P(s) with { BlockSize = v });
        o.Value<int>("--warmup", nameof(PretrainSpec.WarmupSteps), "learning-rate warm-up steps at the start (a tuning run's scaled to its length)", s => s.WarmupSteps, (s, v) => P(s) with { WarmupSteps = v });
        o.Value<double>("--min-lr-ratio", nameof(PretrainSpec.MinLrRatio), "the cosine schedule decays to the rate × this", s => s.MinLrRatio, (s, v) => P(s) with { MinLrRatio = v });
        o.Value<int>("--merge-every", nameof(PretrainSpec.MergeEvery), "ReLoRA/ReMoRA: merge the adapter and restart it every N steps", s => s.MergeEvery, (s, v) => P(s) with { MergeEvery = v });
        o.Value<int>("--restart-warmup", nameof(PretrainSpec.RestartWarmupSteps), "ReLoRA/ReMoRA: learning-rate warm-up steps after each merge", s => s.RestartWarmupSteps,
            (s, v) => P(s) with { RestartWarmupSteps = v });
        o.List("--methods", nameof(PretrainSpec.Methods), CliSupport.TypedList("--methods", t => PretrainMethods.Parse(t, "--methods"), PretrainMethods.Names),
            s => s.Methods.Select(m => m.Name()), (s, v) => P(s) with { Methods = v });
        o.List("--lr-grid", nameof(PretrainSpec.LrGrid), CliSupport.TypedList("--lr-grid", CliSupport.Number, "learning rates tried for each method (log-spaced; the rule extends past an end)"),
            s => s.LrGrid, (s, v) => P(s) with { LrGrid = v });
        o.Value<int>("--train-documents", nameof(PretrainSpec.TrainDocuments), "generated training documents", s => s.TrainDocuments, (s, v) => P(s) with { TrainDocuments = v });
        o.Value<int>("--heldout-documents", nameof(PretrainSpec.HeldOutDocuments), "generated held-out documents", s => s.HeldOutDocuments, (s, v) => P(s) with { HeldOutDocuments = v });
        o.Value<int>("--validation-documents", nameof(PretrainSpec.ValidationDocuments), "generated documents the sweep is scored on (0: the held-out ones)", s => s.ValidationDocuments,
            (s, v) => P(s) with { ValidationDocuments = v });
        var command = o.AddTo(new Command("pretrain", "Pretrain a model from scratch on a generated language with LoRA, ReLoRA, MoRA, ReMoRA and full training " +
            "(paper §4.4): tune each method's learning rate on a grid, then report held-out perplexity over seeds with 95 % intervals and paired differences."));
        command.SetAction(pr => CliSupport.Guard(o.Names, () => CliSupport.Experiment(o, pr, spec => new PretrainExperiment(spec))));
        return command;
    }
}

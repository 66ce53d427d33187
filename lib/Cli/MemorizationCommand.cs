using System.CommandLine;
using Mora.Experiments;

namespace Mora.Cli;

/// <summary><c>memorization</c>: the paper's UUID memorisation experiment; also the default job.</summary>
static class MemorizationCommand
{
    public static Command Create()
    {
        var o = new ExperimentOptions<MemorizationSpec>(MemorizationExperiment.Name, MemorizationSpec.PresetNames, "default", MemorizationSpec.FromPreset);
        o.Value<int>("--pairs", nameof(MemorizationSpec.Pairs), "UUID pairs to memorise (the paper: 10,000)", s => s.Pairs, (s, v) => (MemorizationSpec)s with { Pairs = v });
        o.Value<int>("--pretrain-pairs", nameof(MemorizationSpec.PretrainPairs), "other pairs the base model is pretrained on (it learns the format)", s => s.PretrainPairs,
            (s, v) => (MemorizationSpec)s with { PretrainPairs = v });
        o.Text("--base", nameof(MemorizationSpec.BaseModel), "a local Hugging Face model folder (config.json, safetensors weights, tokenizer.json) fine-tuned instead of a pretrained base; " +
            "each adapter run saves runs/<run>/adapter/ for PEFT (LoRA, DoRA) or the MoRA fork", _ => null, (s, v) => (MemorizationSpec)s with { BaseModel = v });
        var command = o.AddTo(new Command("memorization", "Reproduce the paper's UUID memorisation experiment: pretrain a base, fine-tune it with each method, report character-level accuracy by step."));
        command.SetAction(pr => CliSupport.Guard(o.Names, () => CliSupport.Experiment(o, pr, spec => new MemorizationExperiment(spec))));
        return command;
    }

    /// <summary>The default job: the default preset, on the CPU, in runs/memorization-default.</summary>
    public static int DefaultJob()
    {
        Console.WriteLine($"Default job: the memorisation reproduction at its default preset (see `{CliSupport.Invocation} --help` for every command; `memorization --help` for its settings).");
        var o = new ExperimentOptions<MemorizationSpec>(MemorizationExperiment.Name, MemorizationSpec.PresetNames, "default", MemorizationSpec.FromPreset);
        return CliSupport.Guard(o.Names, () => CliSupport.Experiment(new MemorizationExperiment(MemorizationSpec.FromPreset("default")), null, null));
    }
}

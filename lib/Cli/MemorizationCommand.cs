using System.CommandLine;
using Mora.Experiments;

namespace Mora.Cli;

/// <summary><c>memorization</c>: the paper's UUID memorisation experiment; also the default job.</summary>
static class MemorizationCommand
{
    public static Command Create(string[] args)
    {
        var o = new ExperimentOptions("memorization", MemorizationSpec.PresetNames);
        var pairs = o.Names.Bind(new Option<int?>("--pairs") { Description = "UUID pairs to memorise (the paper: 10,000)" }, nameof(MemorizationSpec.Pairs));
        var pretrainPairs = o.Names.Bind(new Option<int?>("--pretrain-pairs") { Description = "other pairs the base model is pretrained on (it learns the format)" }, nameof(MemorizationSpec.PretrainPairs));
        var command = new Command("memorization", "Reproduce the paper's UUID memorisation experiment: pretrain a base, fine-tune it with each method, report character-level accuracy by step.");
        foreach (var option in o.All.Append(pairs).Append(pretrainPairs)) command.Options.Add(option);
        command.SetAction(pr => CliSupport.Guard(o.Names, () =>
        {
            var spec = o.Apply(pr, MemorizationSpec.FromPreset(pr.GetValue(o.Preset)!));
            spec = spec with { Pairs = pr.GetValue(pairs) ?? spec.Pairs, PretrainPairs = pr.GetValue(pretrainPairs) ?? spec.PretrainPairs };
            return Run(spec, pr.GetValue(o.Out), pr.GetValue(o.Figures), args);
        }));
        return command;
    }

    /// <summary>The default job: the default preset, on the CPU, in runs/memorization-default.</summary>
    public static int DefaultJob()
    {
        Console.WriteLine($"Default job: the memorisation reproduction at its default preset (see `{CliSupport.Invocation} --help` for every command; `memorization --help` for its settings).");
        return CliSupport.Guard(new ExperimentOptions("memorization", MemorizationSpec.PresetNames).Names, () => Run(MemorizationSpec.FromPreset("default"), null, null, []));
    }

    static int Run(MemorizationSpec spec, string? outDir, string? figures, string[] commandLine)
    {
        spec.Validate();
        return CliSupport.Experiment("memorization", spec, outDir, figures, commandLine, MemorizationExperiment.ReportFiles(spec),
            (dir, cancel) => MemorizationExperiment.FormatTable(spec, MemorizationExperiment.Run(spec, dir, Console.Out, cancel), dir));
    }
}

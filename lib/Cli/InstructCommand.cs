using System.CommandLine;
using Mora.Experiments;

namespace Mora.Cli;

/// <summary><c>instruct</c>: the instruction-tuning contrast (paper §4.2): a base that knows arithmetic facts learns to answer
/// them in a new format; strict exact match on facts outside the fine-tuning set.</summary>
static class InstructCommand
{
    public static Command Create()
    {
        var o = new ExperimentOptions<InstructionSpec>(InstructionExperiment.Name, InstructionSpec.PresetNames, "default", InstructionSpec.FromPreset);
        static InstructionSpec I(ExperimentSpec s) => (InstructionSpec)s;
        o.Value<int>("--train-facts", nameof(InstructionSpec.TrainFacts), "facts fine-tuned on in the instruction format", s => s.TrainFacts, (s, v) => I(s) with { TrainFacts = v });
        o.Value<int>("--test-facts", nameof(InstructionSpec.TestFacts), "other facts scored (the same every seed)", s => s.TestFacts, (s, v) => I(s) with { TestFacts = v });
        o.Value<int>("--validation-facts", nameof(InstructionSpec.ValidationFacts), "facts apart from both that tuning runs are scored on", s => s.ValidationFacts,
            (s, v) => I(s) with { ValidationFacts = v });
        var command = o.AddTo(new Command("instruct",
            "Instruction tuning (paper §4.2): pretrain a base on arithmetic drills, fine-tune each method to answer the same facts asked as instructions, " +
            "report strict exact match on facts outside the fine-tuning set, with the base's floor and what it knows in its own notation."));
        command.SetAction(pr => CliSupport.Guard(o.Names, () => CliSupport.Experiment(o, pr, spec => new InstructionExperiment(spec))));
        return command;
    }
}

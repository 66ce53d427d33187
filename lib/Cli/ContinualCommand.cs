using System.CommandLine;
using Mora.Experiments;

namespace Mora.Cli;

/// <summary><c>continual</c>: continual pretraining on a new domain of fictional facts; acquisition and forgetting per method,
/// each method's learning rate tuned first.</summary>
static class ContinualCommand
{
    public static Command Create()
    {
        // Every rate is tuned (--lr-grid, --full-lr-grid, --tune-steps, --tune-seed): no fixed-rate options.
        var o = new ExperimentOptions<ContinualSpec>(ContinualExperiment.Name, ContinualSpec.PresetNames, "default", ContinualSpec.FromPreset, fixedRates: false);
        static ContinualSpec C(ExperimentSpec s) => (ContinualSpec)s;
        o.Value<int>("--new-entities", nameof(ContinualSpec.NewEntities), "companies of the new domain (three facts each)", s => s.NewEntities, (s, v) => C(s) with { NewEntities = v });
        o.Value<int>("--documents", nameof(ContinualSpec.DocumentsPerEntity), "prose documents per new company", s => s.DocumentsPerEntity, (s, v) => C(s) with { DocumentsPerEntity = v });
        o.Value<int>("--original-entities", nameof(ContinualSpec.OriginalEntities), "people of the original domain (pretraining)", s => s.OriginalEntities, (s, v) => C(s) with { OriginalEntities = v });
        o.Value<int>("--replay-questions", nameof(ContinualSpec.ReplayQuestions), "questions about the pretraining's format companies mixed into the new domain's training set (0 = prose alone)",
            s => s.ReplayQuestions, (s, v) => C(s) with { ReplayQuestions = v });
        o.Text("--base", nameof(ContinualSpec.BaseModel), "a local Hugging Face model folder (config.json, safetensors weights, tokenizer.json) continued instead of a base pretrained on the original domain; " +
            "each adapter run saves runs/<run>/adapter/ for PEFT (LoRA, DoRA) or the MoRA fork", _ => null, (s, v) => C(s) with { BaseModel = v });
        var command = o.AddTo(new Command("continual",
            "Continual pretraining on a new domain (paper §4.3 in spirit): pretrain a base on fictional people, continue on prose about new fictional companies with each method " +
            "(learning rate tuned per method on a separate seed), report acquisition (answers to questions in an unseen phrasing) and forgetting (held-out loss on the original domain). " +
            "--preset frontier instead trains every rate of the grids on every seed and reports the acquisition–forgetting frontier, with the questions on half the new companies trained and the other half scored."));
        // A frontier preset (frontier, frontier-smoke) trains every rate of the grids instead of tuning one.
        command.SetAction(pr => CliSupport.Guard(o.Names, () => CliSupport.Experiment(o, pr, spec => spec.Frontier ? new ContinualFrontier(spec) : new ContinualExperiment(spec))));
        return command;
    }
}

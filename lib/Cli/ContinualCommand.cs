using System.CommandLine;
using Mora.Experiments;

namespace Mora.Cli;

/// <summary><c>continual</c>: continual pretraining on a new domain of fictional facts; acquisition and forgetting per method,
/// each method's learning rate tuned first.</summary>
static class ContinualCommand
{
    public static Command Create(string[] args)
    {
        var o = new ExperimentOptions("continual", ContinualSpec.PresetNames);
        var n = o.Names;
        var newEntities = n.Bind(new Option<int?>("--new-entities") { Description = "companies of the new domain (three facts each)" }, nameof(ContinualSpec.NewEntities));
        var docs = n.Bind(new Option<int?>("--documents") { Description = "prose documents per new company" }, nameof(ContinualSpec.DocumentsPerEntity));
        var original = n.Bind(new Option<int?>("--original-entities") { Description = "people of the original domain (pretraining)" }, nameof(ContinualSpec.OriginalEntities));
        var replay = n.Bind(new Option<int?>("--replay-questions") { Description = "questions about the pretraining's format companies mixed into the new domain's training set (0 = prose alone)" }, nameof(ContinualSpec.ReplayQuestions));
        var command = new Command("continual",
            "Continual pretraining on a new domain (paper §4.3 in spirit): pretrain a base on fictional people, continue on prose about new fictional companies with each method " +
            "(learning rate tuned per method on a separate seed), report acquisition (answers to questions in an unseen phrasing) and forgetting (held-out loss on the original domain).");
        // Every rate is tuned (--lr-grid, --full-lr-grid, --tune-steps, --tune-seed): the fixed-rate options do not apply.
        foreach (var option in o.All.Where(x => x != o.Lr && x != o.FullLr).Concat([newEntities, docs, original, replay])) command.Options.Add(option);
        command.SetAction(pr => CliSupport.Guard(o.Names, () =>
        {
            var spec = o.Apply(pr, ContinualSpec.FromPreset(pr.GetValue(o.Preset)!));
            spec = spec with
            {
                NewEntities = pr.GetValue(newEntities) ?? spec.NewEntities, DocumentsPerEntity = pr.GetValue(docs) ?? spec.DocumentsPerEntity,
                OriginalEntities = pr.GetValue(original) ?? spec.OriginalEntities, ReplayQuestions = pr.GetValue(replay) ?? spec.ReplayQuestions,
            };
            spec.Validate();
            string[] tables = [ContinualExperiment.TableFile, ContinualExperiment.SummaryFile, ContinualExperiment.PairedFile, ContinualExperiment.SweepFile, .. ContinualExperiment.FigureFiles];
            return CliSupport.Experiment("continual", spec, pr.GetValue(o.Out), pr.GetValue(o.Figures), args, tables,
                (dir, cancel) => ContinualExperiment.Run(spec, dir, Console.Out, cancel).Table);
        }));
        return command;
    }
}

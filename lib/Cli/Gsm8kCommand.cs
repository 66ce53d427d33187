using System.CommandLine;
using Mora.Experiments;

namespace Mora.Cli;

/// <summary><c>gsm8k</c>: fine-tune on GSM8K-style problems (generated, or GSM8K-format files), exact match on held-out ones.</summary>
static class Gsm8kCommand
{
    public static Command Create(string[] args)
    {
        var o = new ExperimentOptions("gsm8k", Gsm8kSpec.PresetNames);
        var train = o.Names.Bind(new Option<int?>("--train-problems") { Description = "training problems (generated, or the first N of --train-file)" }, nameof(Gsm8kSpec.TrainProblems));
        var test = o.Names.Bind(new Option<int?>("--test-problems") { Description = "held-out problems scored" }, nameof(Gsm8kSpec.TestProblems));
        var trainFile = o.Names.Bind(new Option<string?>("--train-file") { Description = "GSM8K-format JSONL to train on (e.g. the real GSM8K train.jsonl)" }, nameof(Gsm8kSpec.TrainFile));
        var validation = o.Names.Bind(new Option<int?>("--validation-problems") { Description = "problems apart from both splits that tuning runs are scored on" }, nameof(Gsm8kSpec.ValidationProblems));
        var testFile = o.Names.Bind(new Option<string?>("--test-file") { Description = "GSM8K-format JSONL to score on" }, nameof(Gsm8kSpec.TestFile));
        var context = o.Names.Bind(new Option<int?>("--context") { Description = "context length of a pretrained base (tokens; the real GSM8K needs up to ~2048 with the character tokenizer)" }, nameof(Gsm8kSpec.Context));
        var baseModel = o.Names.Bind(new Option<string?>("--base") { Description = "a local model folder (config.json, model.safetensors, tokenizer.json) instead of pretraining" }, nameof(Gsm8kSpec.BaseModel));
        var command = new Command("gsm8k", "Pretrain (or load) a base model, fine-tune it with each method on GSM8K-style problems, report exact-match accuracy on held-out problems.");
        foreach (var option in o.All.Concat([train, test, validation, trainFile, testFile, context, baseModel])) command.Options.Add(option);
        command.SetAction(pr => CliSupport.Guard(o.Names, () =>
        {
            var spec = o.Apply(pr, Gsm8kSpec.FromPreset(pr.GetValue(o.Preset)!));
            spec = spec with
            {
                TrainProblems = pr.GetValue(train) ?? spec.TrainProblems, TestProblems = pr.GetValue(test) ?? spec.TestProblems, ValidationProblems = pr.GetValue(validation) ?? spec.ValidationProblems,
                TrainFile = pr.GetValue(trainFile), TestFile = pr.GetValue(testFile), BaseModel = pr.GetValue(baseModel), Context = pr.GetValue(context) ?? spec.Context,
            };
            spec.Validate();
            return CliSupport.Experiment("gsm8k", spec, pr.GetValue(o.Out), pr.GetValue(o.Figures), args, Gsm8kExperiment.ReportFiles(spec),
                (dir, cancel) => Gsm8kExperiment.FormatTable(spec, Gsm8kExperiment.Run(spec, dir, Console.Out, cancel)));
        }));
        return command;
    }
}

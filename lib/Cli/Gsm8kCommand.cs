using System.CommandLine;
using Mora.Experiments;

namespace Mora.Cli;

/// <summary><c>gsm8k</c>: fine-tune on GSM8K-style problems (generated, or GSM8K-format files), exact match on held-out ones.</summary>
static class Gsm8kCommand
{
    public static Command Create()
    {
        var o = new ExperimentOptions<Gsm8kSpec>(Gsm8kExperiment.Name, Gsm8kSpec.PresetNames, "default", Gsm8kSpec.FromPreset);
        static Gsm8kSpec G(ExperimentSpec s) => (Gsm8kSpec)s;
        o.Value<int>("--train-problems", nameof(Gsm8kSpec.TrainProblems), "training problems (generated, or the first N of --train-file)", s => s.TrainProblems, (s, v) => G(s) with { TrainProblems = v });
        o.Value<int>("--test-problems", nameof(Gsm8kSpec.TestProblems), "held-out problems scored", s => s.TestProblems, (s, v) => G(s) with { TestProblems = v });
        o.Value<int>("--validation-problems", nameof(Gsm8kSpec.ValidationProblems), "problems apart from both splits that tuning runs are scored on", s => s.ValidationProblems,
            (s, v) => G(s) with { ValidationProblems = v });
        o.Text("--train-file", nameof(Gsm8kSpec.TrainFile), "GSM8K-format JSONL to train on (e.g. the real GSM8K train.jsonl)", _ => null, (s, v) => G(s) with { TrainFile = v });
        o.Text("--test-file", nameof(Gsm8kSpec.TestFile), "GSM8K-format JSONL to score on", _ => null, (s, v) => G(s) with { TestFile = v });
        o.Value<int>("--context", nameof(Gsm8kSpec.Context), "context length of a pretrained base (tokens; the real GSM8K needs up to ~2048 with the character tokenizer)", s => s.Context,
            (s, v) => G(s) with { Context = v });
        o.Value<int>("--pretrain-block-size", nameof(Gsm8kSpec.PretrainBlockSize), "tokens per block of the base's pretraining corpus (at most --context)", s => s.PretrainBlockSize,
            (s, v) => G(s) with { PretrainBlockSize = v });
        o.Text("--base", nameof(Gsm8kSpec.BaseModel), "a local Hugging Face model folder (config.json, safetensors weights, tokenizer.json) instead of pretraining; " +
            "each adapter run saves runs/<run>/adapter/ for PEFT (LoRA, DoRA) or the MoRA fork", _ => null, (s, v) => G(s) with { BaseModel = v });
        var command = o.AddTo(new Command("gsm8k", "Pretrain (or load) a base model, fine-tune it with each method on GSM8K-style problems, report exact-match accuracy on held-out problems."));
        command.SetAction(pr => CliSupport.Guard(o.Names, () => CliSupport.Experiment(o, pr, spec => new Gsm8kExperiment(spec))));
        return command;
    }
}

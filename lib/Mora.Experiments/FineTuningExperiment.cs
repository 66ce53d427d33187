using Mora.Adapters;
using Mora.Data;
using Mora.Model;
using Mora.Training;
using TorchSharp;

namespace Mora.Experiments;

/// <summary>
/// What the experiments that fine-tune a base share (memorisation, GSM8K, continual pretraining): a fine-tuning run
/// loads the base, injects the method's adapter (seeded), and trains with the spec's schedule
/// (<see cref="FineTuningSpec.RunConfig"/>) on the experiment's data for that seed, evaluating with its metric. The
/// experiment supplies the data (<see cref="TrainingSet"/>), the evaluation (<see cref="Evaluate"/>), the scores it keeps
/// (<see cref="Scores"/>) and, where it has them, the base's own scores before training (<see cref="Before"/>).
/// </summary>
public abstract class FineTuningExperiment<TSpec>(TSpec spec) : Experiment<TSpec>(spec) where TSpec : FineTuningSpec
{
    /// <summary>The examples a run of <paramref name="plan"/> trains on.</summary>
    protected abstract IReadOnlyList<LmExample> TrainingSet(RunPlan plan);

    /// <summary>The metrics a run logs at each evaluation (tuning runs: on what the sweep scores).</summary>
    protected abstract IReadOnlyDictionary<string, double> Evaluate(LlamaForCausalLM model, RunPlan plan);

    /// <summary>The scores a finished run keeps (the table's columns but those of <see cref="Before"/>).</summary>
    protected abstract IEnumerable<KeyValuePair<string, double>> Scores(TrainResult result, RunPlan plan);

    /// <summary>Scores of the base on this run's data, measured before its adapter is injected (none by default).</summary>
    protected virtual IEnumerable<KeyValuePair<string, double>> Before(LlamaForCausalLM baseModel, RunPlan plan) => [];

    /// <summary>The padding id of the experiment's tokenizer.</summary>
    protected abstract int PadId { get; }

    /// <summary>What the line announcing a run adds after its rate.</summary>
    protected virtual string Note(RunPlan plan) => "";

    /// <summary>Whether each reported run stores its per-item answers at its last evaluation (<see cref="ItemScores.RunFile"/>,
    /// before its result.json), for the bootstrap over items × seeds: <see cref="Evaluate"/> hands them to
    /// <see cref="RecordItems"/> on every evaluation of the test items.</summary>
    protected virtual bool KeepsItems => false;
    (IReadOnlyList<string> Expected, IReadOnlyList<string> Answers, IReadOnlyList<bool> Right)? _items;

    /// <summary>The per-item answers of this evaluation of <paramref name="plan"/> (kept for a reported run; the last one is
    /// written when it ends, see <see cref="KeepsItems"/>).</summary>
    protected void RecordItems(RunPlan plan, IReadOnlyList<string> expected, IReadOnlyList<string> answers, IReadOnlyList<bool> right)
    {
        if (!plan.Tuning) _items = (expected, answers, right);
    }

    protected override RunRecord Train(RunPlan plan)
    {
        _items = null;
        var run = TrainOne(plan);
        if (KeepsItems && !plan.Tuning && !run.Diverged)
        {
            var (expected, answers, right) = _items ?? throw new InvalidOperationException($"{plan.Label}: the run ended without an evaluation of its test items");
            ItemScores.WriteRun(plan.Dir, expected, answers, right);
        }
        return run;
    }

    RunRecord TrainOne(RunPlan plan)
    {
        using var model = ModelIO.Load(plan.BaseDir ?? throw new InvalidOperationException($"{plan.Name}: a fine-tuning run needs a base"));
        var before = Before(model, plan).ToList();
        var adapter = MethodSpec.Parse(plan.Config.Method).Adapter(plan.Config.Rank);
        torch.manual_seed(plan.Seed);
        Peft.Inject(model, adapter);
        var config = Spec.RunConfig(plan.Steps, plan.LearningRate, plan.Seed, plan.Dir, plan.EvalEvery);
        var trainer = new Trainer(model, config, TrainingSet(plan), m => Evaluate(m, plan), adapter, PadId) { BaseModel = plan.BaseDir };
        var run = Fit(plan, model, trainer, r => Scores(r, plan).Concat(before), Note(plan));
        if (!plan.Tuning && !run.Diverged && adapter.Method != AdapterMethod.Full) SaveAdapter(model, adapter, plan);
        return run;
    }

    /// <summary>The folder in each reported adapter run's folder that holds its trained adapter, as PEFT and the MoRA fork
    /// read it (<see cref="AdapterIO.Save"/>).</summary>
    public const string AdapterDir = "adapter";

    /// <summary>Writes a reported run's trained adapter into <see cref="AdapterDir"/> of its folder, before its result.json
    /// (a run with a result has its adapter): LoRA and DoRA as official PEFT's <c>adapter_config.json</c> +
    /// <c>adapter_model.safetensors</c>, MoRA as the reference fork (kongds/MoRA peft-mora) writes it, the kit's own settings
    /// in <c>mora_notebooks.json</c>; <c>base_model_name_or_path</c> is the base's folder. Written into a temporary folder and
    /// renamed, so the folder is whole or absent.</summary>
    void SaveAdapter(LlamaForCausalLM model, AdapterConfig adapter, RunPlan plan)
    {
        string dir = Path.Combine(plan.Dir, AdapterDir), tmp = Path.Combine(plan.Dir, $".{AdapterDir}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            AdapterIO.Save(model, adapter, tmp, Path.GetFullPath(plan.BaseDir!));
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            Directory.Move(tmp, dir);
        }
        finally { if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true); }
        string reader = adapter.Method == AdapterMethod.Mora
            ? adapter.MoraType is MoraType.Truncation or MoraType.Decouple ? $"the kit (the MoRA fork has no design {(int)adapter.MoraType})" : "the MoRA fork, kongds/MoRA peft-mora"
            : "PEFT";
        Output.WriteLine($"{plan.Label}: adapter saved in {ExperimentFolder.Show(dir)} (for {reader})");
    }

    /// <summary>The value of <paramref name="metric"/> logged at each of <paramref name="steps"/> (NaN where not evaluated),
    /// as scores named <c>{metric}_step{s}</c>.</summary>
    protected static IEnumerable<KeyValuePair<string, double>> AtSteps(TrainResult result, string metric, IReadOnlyList<int> steps)
    {
        var at = result.Log.Rows.Where(x => x.Metrics.ContainsKey(metric)).ToDictionary(x => (int)x.Step, x => x.Metrics[metric]);
        return steps.Select(s => KeyValuePair.Create($"{metric}_step{s}", at.TryGetValue(s, out var v) ? v : double.NaN));
    }

    /// <summary>The steps a run of <paramref name="plan"/> is scored at: the tuning budget's end, or the spec's evaluation steps.</summary>
    protected IReadOnlyList<int> StepsOf(RunPlan plan) => plan.Tuning ? [plan.Steps] : Spec.EvalSteps;

    /// <summary>The rule's line under a fine-tuning table: the rule over the adapter grid (or the full one), the full grid
    /// beside it, and a note when a chosen rate is still at an end of its extended grid.</summary>
    protected static string RatesLine(FineTuningSpec spec, IReadOnlyList<SweepPoint> sweep, string metric) =>
        "Rates: " + LearningRateSweep.Rule(spec.AdapterLrGrid.Count > 0 ? spec.AdapterLrGrid : spec.FullLrGrid, spec.TuneSteps, spec.TuneSeed, metric)
        + (spec.FullLrGrid.Count > 0 && spec.AdapterLrGrid.Count > 0 ? $"; full fine-tuning over {{{string.Join(", ", spec.FullLrGrid.Select(LearningRateSweep.Lr))}}}" : "")
        + (sweep.Any(p => p.Chosen && p.AtEdge) ? ". A chosen rate is still at an end of its extended grid (lr-sweep.csv, at_edge)." : ".");

    /// <summary>The base of <paramref name="seed"/>, pretrained from a model <paramref name="init"/> makes on
    /// <paramref name="data"/> (the experiment's pretraining examples, and how to name them) with the spec's base schedule;
    /// reused once complete.</summary>
    protected string PretrainBase(string folder, string label, int seed, Func<LlamaForCausalLM> init, Func<(IReadOnlyList<LmExample> Examples, string What)> data) =>
        PretrainedBase(folder, label, dir =>
        {
            var model = init();
            if (Spec.PretrainSteps > 0)
            {
                var (examples, what) = data();
                Output.WriteLine($"pretraining the {Spec.Model} base (seed {seed}) on {what} for {Spec.PretrainSteps} steps");
                new Trainer(model, Spec.BaseConfig(seed, dir), examples, padId: PadId) { Progress = ProgressDisplay.For(folder) }.Run(Cancel);
            }
            return model;
        });
}

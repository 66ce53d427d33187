using System.CommandLine;
using Mora.Experiments;
using Mora.Model;

namespace Mora.Cli;

/// <summary>The options the experiment commands (memorization, gsm8k) share, declared once, with the table from spec
/// properties to options, applied to a spec once.</summary>
sealed class ExperimentOptions
{
    public OptionNames Names { get; } = new();
    public Option<string> Preset { get; }
    public Option<string?> Model { get; }
    public Option<int?> PretrainSteps { get; }
    public Option<int?> Steps { get; }
    public Option<int?> BatchSize { get; }
    public Option<MethodSpec[]> Methods { get; }
    public Option<int[]> Ranks { get; }
    public Option<int[]> Seeds { get; }
    public Option<double?> Lr { get; }
    public Option<double?> FullLr { get; }
    public Option<double[]> LrGrid { get; }
    public Option<double[]> FullLrGrid { get; }
    public Option<int?> TuneSteps { get; }
    public Option<int?> TuneSeed { get; }
    public Option<int?> EvalPoints { get; }
    public Option<ComputeDevice> Device { get; }
    public Option<string?> Out { get; }
    public Option<string?> Figures { get; }

    /// <param name="name">the command, which names the default output folder runs/&lt;name&gt;-&lt;preset&gt;</param>
    /// <param name="presets">the spec's preset names</param>
    public ExperimentOptions(string name, IEnumerable<string> presets)
    {
        Preset = Names.Bind(new Option<string>("--preset") { Description = $"settings to start from: {string.Join(", ", presets)}", DefaultValueFactory = _ => "default" }, nameof(ExperimentSpec.Preset));
        Model = Names.Bind(new Option<string?>("--model") { Description = $"model size: {string.Join(", ", LlamaConfig.PresetNames)}" }, nameof(ExperimentSpec.Model));
        PretrainSteps = Names.Bind(new Option<int?>("--pretrain-steps") { Description = "pretraining steps of the base model" }, nameof(ExperimentSpec.PretrainSteps));
        Steps = Names.Bind(new Option<int?>("--steps") { Description = "fine-tuning steps per method" }, nameof(ExperimentSpec.Steps));
        BatchSize = Names.Bind(new Option<int?>("--batch-size") { Description = "sequences per step" }, nameof(ExperimentSpec.BatchSize));
        Methods = Names.Bind(CliSupport.TypedList("--methods", t => MethodSpec.Parse(t),
            "lora, dora, full, mora, mora-<design> (mora-sharing, mora-rotation, mora-0 … mora-6)"), nameof(ExperimentSpec.Methods));
        Ranks = Names.Bind(new Option<int[]>("--ranks") { Description = "LoRA rank budgets (MoRA gets the same parameter count)", AllowMultipleArgumentsPerToken = true }, nameof(ExperimentSpec.Ranks));
        Seeds = Names.Bind(new Option<int[]>("--seeds") { Description = "seeds (data, initialisation, order)", AllowMultipleArgumentsPerToken = true }, nameof(ExperimentSpec.Seeds));
        Lr = Names.Bind(new Option<double?>("--lr") { Description = "learning rate of LoRA, DoRA and MoRA" }, nameof(ExperimentSpec.AdapterLr));
        FullLr = Names.Bind(new Option<double?>("--full-lr") { Description = "learning rate of full fine-tuning" }, nameof(ExperimentSpec.FullLr));
        LrGrid = Names.Bind(new Option<double[]>("--lr-grid") { Description = "tune each adapter method's rate over these (log-spaced) values instead of --lr", AllowMultipleArgumentsPerToken = true }, nameof(ExperimentSpec.AdapterLrGrid));
        FullLrGrid = Names.Bind(new Option<double[]>("--full-lr-grid") { Description = "tune full fine-tuning's rate over these values instead of --full-lr", AllowMultipleArgumentsPerToken = true }, nameof(ExperimentSpec.FullLrGrid));
        TuneSteps = Names.Bind(new Option<int?>("--tune-steps") { Description = "steps of each tuning run (a short budget)" }, nameof(ExperimentSpec.TuneSteps));
        TuneSeed = Names.Bind(new Option<int?>("--tune-seed") { Description = "the seed tuning runs use (not one of --seeds)" }, nameof(ExperimentSpec.TuneSeed));
        EvalPoints = Names.Bind(new Option<int?>("--eval-points") { Description = "evaluations during fine-tuning (the table's columns)" }, nameof(ExperimentSpec.EvalPoints));
        Device = Names.Bind(CliSupport.DeviceOption(), nameof(ExperimentSpec.Device));
        Out = Names.Bind(new Option<string?>("--out") { Description = $"output folder (default runs/{name}-<preset>); run again to resume" }, "outDir");
        Figures = new Option<string?>("--figures") { Description = "folder for the table and figures (default <out>/figures)" };
    }

    /// <summary>The shared options, in the order help lists them.</summary>
    public IEnumerable<Option> All => [Preset, Model, PretrainSteps, Steps, BatchSize, Methods, Ranks, Seeds, Lr, FullLr, LrGrid, FullLrGrid, TuneSteps, TuneSeed, EvalPoints, Device, Out, Figures];

    /// <summary><paramref name="spec"/> with every shared option the command line gives.</summary>
    public TSpec Apply<TSpec>(ParseResult pr, TSpec spec) where TSpec : ExperimentSpec
    {
        ExperimentSpec s = spec;
        return (TSpec)(s with
        {
            Model = pr.GetValue(Model) ?? s.Model, PretrainSteps = pr.GetValue(PretrainSteps) ?? s.PretrainSteps, Steps = pr.GetValue(Steps) ?? s.Steps,
            BatchSize = pr.GetValue(BatchSize) ?? s.BatchSize, Methods = pr.GetValue(Methods) is { Length: > 0 } ms ? ms : s.Methods,
            Ranks = pr.GetValue(Ranks) is { Length: > 0 } rs ? rs : s.Ranks, Seeds = pr.GetValue(Seeds) is { Length: > 0 } ss ? ss : s.Seeds,
            AdapterLr = pr.GetValue(Lr) ?? s.AdapterLr, FullLr = pr.GetValue(FullLr) ?? s.FullLr, EvalPoints = pr.GetValue(EvalPoints) ?? s.EvalPoints,
            // A fixed rate given on the command line replaces the preset's grid; a grid given replaces the fixed rate.
            AdapterLrGrid = pr.GetValue(LrGrid) is { Length: > 0 } g ? g : pr.GetValue(Lr) is not null ? [] : s.AdapterLrGrid,
            FullLrGrid = pr.GetValue(FullLrGrid) is { Length: > 0 } fg ? fg : pr.GetValue(FullLr) is not null ? [] : s.FullLrGrid,
            TuneSteps = pr.GetValue(TuneSteps) ?? s.TuneSteps, TuneSeed = pr.GetValue(TuneSeed) ?? s.TuneSeed,
            Device = pr.GetValue(Device),
        });
    }
}

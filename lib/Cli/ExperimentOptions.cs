using System.CommandLine;
using System.Globalization;
using Mora.Adapters;
using Mora.Experiments;
using Mora.Model;

namespace Mora.Cli;

/// <summary>
/// The options of an experiment command, each declared once beside the spec property it sets (typed, parsed while the
/// command line is parsed) and applied to the preset's spec once, at the edge: nothing downstream parses text again.
/// The shared ones (<see cref="ExperimentSpec"/>, and <see cref="FineTuningSpec"/> for the fine-tuning experiments) are
/// declared here; a command adds its own with <see cref="Value{T}"/>, <see cref="Text"/> and <see cref="List{T}"/>.
/// Help shows each setting's value in the default preset.
/// </summary>
sealed class ExperimentOptions<TSpec> where TSpec : ExperimentSpec
{
    readonly List<Option> _options = [];
    readonly List<Func<ParseResult, ExperimentSpec, ExperimentSpec>> _setters = [];
    readonly TSpec _defaults;
    readonly Func<string, TSpec> _fromPreset;

    public OptionNames Names { get; } = new();
    public Option<string> Preset { get; }
    public Option<int?> Threads { get; }
    public Option<string?> Out { get; }
    public Option<string?> Figures { get; }
    public Option<bool> Fresh { get; }
    public Option<bool> Overwrite { get; }

    /// <param name="kind">the experiment's kind, which names the default output folder runs/&lt;kind&gt;-&lt;preset&gt;</param>
    /// <param name="presets">the spec's preset names</param>
    /// <param name="defaultPreset">the preset used when none is given</param>
    /// <param name="fromPreset">the spec's presets</param>
    /// <param name="fixedRates">whether the experiment has fixed rates (--lr, --full-lr) beside the grids</param>
    public ExperimentOptions(string kind, IReadOnlyList<string> presets, string defaultPreset, Func<string, TSpec> fromPreset, bool fixedRates = true)
    {
        _fromPreset = fromPreset;
        _defaults = fromPreset(defaultPreset);
        Preset = CliSupport.Typed("--preset", t => presets.Contains(t.ToLowerInvariant()) ? t.ToLowerInvariant() : throw new ArgumentException($"unknown preset '{t}'; use {string.Join(", ", presets)}"),
            $"settings to start from: {string.Join(", ", presets)}", defaultPreset);
        Names[nameof(ExperimentSpec.Preset)] = Preset.Name;
        _options.Add(Preset);
        Text("--model", nameof(ExperimentSpec.Model), $"model size: {string.Join(", ", LlamaConfig.PresetNames)}", s => s.Model, (s, v) => s with { Model = v },
            t => LlamaConfig.PresetNames.Contains(t, StringComparer.OrdinalIgnoreCase) ? t : throw new ArgumentException($"unknown model preset '{t}'; use {string.Join(", ", LlamaConfig.PresetNames)}"));
        if (_defaults is FineTuningSpec)
            Value<int>("--pretrain-steps", nameof(FineTuningSpec.PretrainSteps), "pretraining steps of the base model", s => F(s).PretrainSteps, (s, v) => F(s) with { PretrainSteps = v });
        Value<int>("--steps", nameof(ExperimentSpec.Steps), kind == "pretrain" ? "training steps of each evaluation run" : "fine-tuning steps per method", s => s.Steps, (s, v) => s with { Steps = v });
        Value<int>("--batch-size", nameof(ExperimentSpec.BatchSize), "sequences per step", s => s.BatchSize, (s, v) => s with { BatchSize = v });
        if (_defaults is FineTuningSpec)
        {
            List("--methods", nameof(FineTuningSpec.Methods), CliSupport.TypedList("--methods", t => MethodSpec.Parse(t), "lora, dora, full, mora, mora-<design> (mora-sharing, mora-rotation, mora-0 … mora-6)"),
                s => F(s).Methods, (s, v) => F(s) with { Methods = v });
            List("--ranks", nameof(FineTuningSpec.Ranks), CliSupport.TypedList("--ranks", t => CliSupport.WholeNumber(t), "LoRA rank budgets (MoRA gets the same parameter count)"),
                s => F(s).Ranks, (s, v) => F(s) with { Ranks = v });
        }
        List("--seeds", nameof(ExperimentSpec.Seeds), CliSupport.TypedList("--seeds", t => CliSupport.WholeNumber(t, allowZero: true), "seeds (data, initialisation, order)"), s => s.Seeds, (s, v) => s with { Seeds = v });
        if (_defaults is FineTuningSpec)
        {
            if (fixedRates)
            {
                // A fixed rate given on the command line replaces the preset's grid; a grid given replaces the fixed rate.
                Value<double>("--lr", nameof(FineTuningSpec.AdapterLr), "learning rate of LoRA, DoRA and MoRA (instead of tuning it over --lr-grid)", s => F(s).AdapterLr,
                    (s, v) => F(s) with { AdapterLr = v, AdapterLrGrid = [] });
                Value<double>("--full-lr", nameof(FineTuningSpec.FullLr), "learning rate of full fine-tuning (instead of tuning it over --full-lr-grid)", s => F(s).FullLr,
                    (s, v) => F(s) with { FullLr = v, FullLrGrid = [] });
            }
            List("--lr-grid", nameof(FineTuningSpec.AdapterLrGrid), CliSupport.TypedList("--lr-grid", CliSupport.Number,
                    $"tune each adapter method's rate over these (log-spaced) values{(fixedRates ? " instead of using --lr" : "")}"), s => F(s).AdapterLrGrid, (s, v) => F(s) with { AdapterLrGrid = v });
            List("--full-lr-grid", nameof(FineTuningSpec.FullLrGrid), CliSupport.TypedList("--full-lr-grid", CliSupport.Number,
                    $"tune full fine-tuning's rate over these values{(fixedRates ? " instead of using --full-lr" : "")}"), s => F(s).FullLrGrid, (s, v) => F(s) with { FullLrGrid = v });
        }
        Value<int>("--tune-steps", nameof(ExperimentSpec.TuneSteps), "steps of each tuning run (a short budget)", s => s.TuneSteps, (s, v) => s with { TuneSteps = v });
        Value<int>("--tune-seed", nameof(ExperimentSpec.TuneSeed), "the seed tuning runs use (not one of --seeds)", s => s.TuneSeed, (s, v) => s with { TuneSeed = v });
        Value<int>("--eval-points", nameof(ExperimentSpec.EvalPoints), "evaluations during each reported run (the table's columns)", s => s.EvalPoints, (s, v) => s with { EvalPoints = v });
        if (_defaults is FineTuningSpec)
        {
            Value<int>("--base-seed", nameof(FineTuningSpec.BaseSeed), "one base pretrained from this seed serves every seed and the tuning runs (default: each seed its own)",
                s => F(s).BaseSeed, (s, v) => F(s) with { BaseSeed = v });
            Value<double>("--pretrain-lr", nameof(FineTuningSpec.PretrainLr), "learning rate of the base's pretraining", s => F(s).PretrainLr, (s, v) => F(s) with { PretrainLr = v });
            Value<int>("--pretrain-batch-size", nameof(FineTuningSpec.PretrainBatchSize), "sequences per step of the base's pretraining", s => F(s).PretrainBatchSize, (s, v) => F(s) with { PretrainBatchSize = v });
            Value<int>("--pretrain-max-warmup", nameof(FineTuningSpec.PretrainMaxWarmupSteps), "warm-up of the base's pretraining: a tenth of its steps, at most this many",
                s => F(s).PretrainMaxWarmupSteps, (s, v) => F(s) with { PretrainMaxWarmupSteps = v });
            Value<int>("--max-warmup", nameof(FineTuningSpec.MaxWarmupSteps), "warm-up of each fine-tuning run: a tenth of its steps, at most this many",
                s => F(s).MaxWarmupSteps, (s, v) => F(s) with { MaxWarmupSteps = v });
        }
        Value<int>("--log-every", nameof(ExperimentSpec.LogEvery), "each run writes its log.csv every this many steps", s => s.LogEvery, (s, v) => s with { LogEvery = v });
        Value<int>("--checkpoints", nameof(ExperimentSpec.CheckpointsPerRun), "checkpoints of each run, evenly spaced (a killed run resumes from the last)",
            s => s.CheckpointsPerRun, (s, v) => s with { CheckpointsPerRun = v });
        var device = CliSupport.DeviceOption();
        Names[nameof(ExperimentSpec.Device)] = device.Name;
        _options.Add(device);
        _setters.Add((pr, s) => s with { Device = pr.GetValue(device) });
        Threads = Names.Bind(new Option<int?>("--threads") { Description = "CPU threads for libtorch (1 is much faster on a machine whose cores other jobs share; default: libtorch's choice)" }, "threads");
        Out = Names.Bind(new Option<string?>("--out") { Description = $"output folder (default runs/{kind}-<preset>); run again to resume" }, "outDir");
        Figures = new Option<string?>("--figures") { Description = "folder for the tables, table.txt, COMMAND.txt and figures (default <out>/figures)" };
        Fresh = new Option<bool>("--fresh") { Description = "discard the runs an earlier job with other settings or inputs left in --out, and start again there" };
        Overwrite = new Option<bool>("--overwrite") { Description = "write into --out or --figures even when they hold another job's published results (a COMMAND.txt of another command)" };
    }

    static FineTuningSpec F(ExperimentSpec s) => (FineTuningSpec)s;

    string Shown(Func<TSpec, object?> of) => of(_defaults) switch
    {
        null => "",
        string text => $" (default preset: {text})",
        System.Collections.IEnumerable list => $" (default preset: {string.Join(" ", list.Cast<object>().Select(Format))})",
        var v => $" (default preset: {Format(v)})",
    };

    static string Format(object v) => v is IFormattable f ? f.ToString(null, CultureInfo.InvariantCulture) : v.ToString() ?? "";

    /// <summary>Declares a typed option for <paramref name="property"/>: when given, <paramref name="set"/> applies it.</summary>
    public Option<T?> Value<T>(string name, string property, string description, Func<TSpec, object?> current, Func<ExperimentSpec, T, ExperimentSpec> set) where T : struct
    {
        var option = new Option<T?>(name) { Description = description + Shown(current) };
        Names[property] = name;
        _options.Add(option);
        _setters.Add((pr, s) => pr.GetValue(option) is { } v ? set(s, v) : s);
        return option;
    }

    /// <summary>Declares a text option for <paramref name="property"/>, checked by <paramref name="parse"/> while the command line is parsed.</summary>
    public Option<string?> Text(string name, string property, string description, Func<TSpec, object?> current, Func<ExperimentSpec, string, ExperimentSpec> set, Func<string, string>? parse = null)
    {
        var option = parse is null ? new Option<string?>(name) : CliSupport.Typed<string?>(name, parse, description, null);
        option.Description = description + Shown(current);
        Names[property] = name;
        _options.Add(option);
        _setters.Add((pr, s) => pr.GetValue(option) is { } v ? set(s, v) : s);
        return option;
    }

    /// <summary>Declares a list option (made with <see cref="CliSupport.TypedList"/>) for <paramref name="property"/>.</summary>
    public Option<T[]> List<T>(string name, string property, Option<T[]> option, Func<TSpec, object?> current, Func<ExperimentSpec, IReadOnlyList<T>, ExperimentSpec> set)
    {
        option.Description += Shown(current);
        Names[property] = name;
        _options.Add(option);
        _setters.Add((pr, s) => pr.GetValue(option) is { Length: > 0 } v ? set(s, v) : s);
        return option;
    }

    /// <summary>Every option in the order help lists them: the settings, then where the job writes.</summary>
    public IEnumerable<Option> All => [.. _options, Threads, Out, Figures, Fresh, Overwrite];

    /// <summary>The preset's spec with every option the command line gives.</summary>
    public TSpec Apply(ParseResult pr) => (TSpec)_setters.Aggregate((ExperimentSpec)FromPreset(pr), (s, set) => set(pr, s));

    TSpec FromPreset(ParseResult pr) => _fromPreset(pr.GetValue(Preset)!);

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public Command AddTo(Command command)
    {
        foreach (var o in All) command.Options.Add(o);
        return command;
    }
}

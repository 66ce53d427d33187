using Mora.Model;

namespace Mora.Experiments;

/// <summary>
/// The settings the resumable experiments share (<see cref="MemorizationSpec"/>, <see cref="Gsm8kSpec"/>): the model,
/// the fine-tuning schedule, the typed methods, ranks, seeds, learning rates, evaluation points and the device.
/// Validation throws <see cref="ArgumentException"/> naming the property (<c>nameof(Steps)</c>, …).
/// </summary>
public abstract record ExperimentSpec
{
    public string Preset { get; init; } = "default";
    public string Model { get; init; } = "tiny";
    public int PretrainSteps { get; init; }
    public int Steps { get; init; }
    public int BatchSize { get; init; } = 16;
    public IReadOnlyList<MethodSpec> Methods { get; init; } = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Sharing), MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full];
    public IReadOnlyList<int> Ranks { get; init; } = [8];
    /// <summary>Methods run at only some of <see cref="Ranks"/>, by name (the paper's rule: MoRA rotation at a low rank,
    /// sharing at a high one); a method not listed runs at every rank.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<int>> MethodRanks { get; init; } = new Dictionary<string, IReadOnlyList<int>>();
    public IReadOnlyList<int> Seeds { get; init; } = [0];
    /// <summary>When set, one base pretrained from this seed serves every seed and the tuning runs (as the paper fine-tunes
    /// one LLaMA); seeds then vary the fine-tuning data, the adapter's initialisation and the order. When null, each seed
    /// pretrains its own base.</summary>
    public int? BaseSeed { get; init; }
    /// <summary>Learning rate of LoRA, DoRA and MoRA when <see cref="AdapterLrGrid"/> is empty (one rate for all of them).</summary>
    public double AdapterLr { get; init; }
    /// <summary>Learning rate of full fine-tuning when <see cref="FullLrGrid"/> is empty.</summary>
    public double FullLr { get; init; }
    /// <summary>When not empty, each adapter method and rank gets its own rate from this log-spaced grid by
    /// <see cref="LearningRateSweep"/>'s rule (tuning runs of <see cref="TuneSteps"/> steps on <see cref="TuneSeed"/>).</summary>
    public IReadOnlyList<double> AdapterLrGrid { get; init; } = [];
    /// <summary>The same for full fine-tuning (which needs smaller rates).</summary>
    public IReadOnlyList<double> FullLrGrid { get; init; } = [];
    /// <summary>Steps of each tuning run (a short budget).</summary>
    public int TuneSteps { get; init; }
    /// <summary>The seed tuning runs use; not one of <see cref="Seeds"/>, so rates are not picked on the reported seeds.</summary>
    public int TuneSeed { get; init; } = 100;
    public double PretrainLr { get; init; }
    /// <summary>Evaluations during fine-tuning (the table's columns), evenly spaced, the last at the final step.</summary>
    public int EvalPoints { get; init; }
    /// <summary>Where every run trains; not part of an experiment's identity (<see cref="ExperimentFolder.Claim"/>).</summary>
    public ComputeDevice Device { get; init; }

    /// <summary>Every method at each of its ranks; full fine-tuning once (its rank is the first rank's, which it ignores).</summary>
    public IEnumerable<(MethodSpec Method, int Rank)> Configurations() =>
        Methods.SelectMany(m => (m.Method == Mora.Adapters.AdapterMethod.Full ? [Ranks[0]] : MethodRanks.TryGetValue(m.Name, out var only) ? only : Ranks).Select(r => (m, r)));

    /// <summary>Whether any learning rate is tuned (a grid is given).</summary>
    public bool Tunes => AdapterLrGrid.Count > 0 || FullLrGrid.Count > 0;

    /// <summary>The grid <paramref name="method"/> is tuned over, or null when its rate is fixed.</summary>
    public IReadOnlyList<double>? GridFor(MethodSpec method)
    {
        var grid = method.Method == Mora.Adapters.AdapterMethod.Full ? FullLrGrid : AdapterLrGrid;
        return grid.Count > 0 ? grid : null;
    }

    /// <summary>The fixed rate of <paramref name="method"/> (when it has no grid).</summary>
    public double FixedLr(MethodSpec method) => method.Method == Mora.Adapters.AdapterMethod.Full ? FullLr : AdapterLr;

    /// <summary>The steps at which the table reports.</summary>
    public IReadOnlyList<int> EvalSteps => Enumerable.Range(1, EvalPoints).Select(i => Steps / EvalPoints * i).ToList();

    /// <summary>Checks the shared settings; the experiments' Validate call it after their own.</summary>
    protected void ValidateShared()
    {
        Positive(Steps, nameof(Steps)); Positive(BatchSize, nameof(BatchSize)); Positive(EvalPoints, nameof(EvalPoints));
        if (PretrainSteps < 0) throw new ArgumentException($"{nameof(PretrainSteps)} must be ≥ 0, got {PretrainSteps}", nameof(PretrainSteps));
        if (Steps % EvalPoints != 0)
            throw new ArgumentException($"{nameof(Steps)} {Steps} must be a multiple of {nameof(EvalPoints)} {EvalPoints} (the table's evenly spaced columns)", nameof(Steps));
        if (Methods.Count == 0 || Methods.Any(m => m is null)) throw new ArgumentException($"{nameof(Methods)}: name at least one method", nameof(Methods));
        if (Ranks.Count == 0) throw new ArgumentException($"{nameof(Ranks)}: name at least one rank", nameof(Ranks));
        foreach (var r in Ranks) Positive(r, nameof(Ranks));
        if (Seeds.Count == 0) throw new ArgumentException($"{nameof(Seeds)}: name at least one seed", nameof(Seeds));
        foreach (var (v, name) in new[] { (AdapterLr, nameof(AdapterLr)), (FullLr, nameof(FullLr)), (PretrainLr, nameof(PretrainLr)) })
            if (!(v > 0) || double.IsInfinity(v)) throw new ArgumentException($"{name} must be positive, got {v}", name);
        foreach (var (name, ranks) in MethodRanks)
        {
            if (!Methods.Any(m => m.Name == name)) throw new ArgumentException($"{nameof(MethodRanks)}: '{name}' is not one of the methods ({string.Join(", ", Methods)})", nameof(MethodRanks));
            if (ranks.Count == 0 || ranks.Any(r => !Ranks.Contains(r)))
                throw new ArgumentException($"{nameof(MethodRanks)}: {name}'s ranks ({string.Join(",", ranks)}) must be some of the ranks ({string.Join(",", Ranks)})", nameof(MethodRanks));
        }
        if (AdapterLrGrid.Count > 0) LearningRateSweep.CheckGrid(AdapterLrGrid, nameof(AdapterLrGrid));
        if (FullLrGrid.Count > 0) LearningRateSweep.CheckGrid(FullLrGrid, nameof(FullLrGrid));
        if (Tunes)
        {
            Positive(TuneSteps, nameof(TuneSteps));
            if (Seeds.Contains(TuneSeed))
                throw new ArgumentException($"{nameof(TuneSeed)} {TuneSeed} is one of the evaluation {nameof(Seeds)} ({string.Join(",", Seeds)}); tune on another seed", nameof(TuneSeed));
        }
        try { LlamaConfig.Preset(Model, 128); }
        catch (ArgumentException e) { throw new ArgumentException($"{nameof(Model)}: {e.MessageOnly()}", nameof(Model), e); }
        Device.EnsureAvailable(nameof(Device));
    }

    /// <summary>Throws naming <paramref name="name"/> unless <paramref name="value"/> is positive.</summary>
    protected static void Positive(int value, string name)
    {
        if (value <= 0) throw new ArgumentException($"{name} must be positive, got {value}", name);
    }
}

public static class ArgumentExceptionExtensions
{
    /// <summary>The message without the " (Parameter 'x')" that <see cref="ArgumentException.Message"/> appends.</summary>
    public static string MessageOnly(this ArgumentException e) =>
        e.ParamName is { } p ? e.Message.Replace($" (Parameter '{p}')", "", StringComparison.Ordinal) : e.Message;
}

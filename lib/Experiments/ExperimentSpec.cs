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
    public IReadOnlyList<int> Seeds { get; init; } = [0];
    /// <summary>Learning rate of LoRA, DoRA and MoRA (picked once for the kit's scale, not tuned per method).</summary>
    public double AdapterLr { get; init; }
    public double FullLr { get; init; }
    public double PretrainLr { get; init; }
    /// <summary>Evaluations during fine-tuning (the table's columns), evenly spaced, the last at the final step.</summary>
    public int EvalPoints { get; init; }
    /// <summary>Where every run trains; not part of an experiment's identity (<see cref="ExperimentFolder.Claim"/>).</summary>
    public ComputeDevice Device { get; init; }

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

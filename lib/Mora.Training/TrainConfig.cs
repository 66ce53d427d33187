using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Training;

/// <summary>Learning-rate shape after warm-up.</summary>
public enum LrSchedule { Cosine, Linear, Constant }

/// <summary>
/// Everything a training run needs besides the model and the data. Validated before the first step; every field named
/// in errors. With <see cref="OutputDir"/> set, the run writes <c>log.csv</c>, <c>run.json</c> and checkpoints there and
/// resumes from the last checkpoint when started again.
/// </summary>
public sealed record TrainConfig
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 100;
    /// <summary>Sequences per micro-batch.</summary>
    public int BatchSize { get; init; } = 16;
    /// <summary>Micro-batches whose gradients are summed before each optimizer step (effective batch = BatchSize × this).</summary>
    public int GradAccumulation { get; init; } = 1;
    public double LearningRate { get; init; } = 1e-3;
    public double WeightDecay { get; init; }
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Eps { get; init; } = 1e-8;
    /// <summary>Steps of linear warm-up from 0 to the learning rate.</summary>
    public int WarmupSteps { get; init; }
    public LrSchedule Schedule { get; init; } = LrSchedule.Cosine;
    /// <summary>ReLoRA/ReMoRA: steps of linear warm-up again after each merge (ReLoRA's "jagged" schedule; 0 = none).
    /// Used by <see cref="LearningRateAt(long, int)"/> with the merge interval; a plain run ignores it.</summary>
    public int RestartWarmupSteps { get; init; }
    /// <summary>The schedule decays to LearningRate × this at the last step.</summary>
    public double MinLrRatio { get; init; }
    /// <summary>Clip the global gradient norm to this (0 = no clipping).</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Seeds data order and dropout; a CPU run with the same seed repeats exactly.</summary>
    public int Seed { get; init; }
    /// <summary>Evaluate every this many steps (0 = only at the end).</summary>
    public int EvalEvery { get; init; }
    /// <summary>Write the CSV log every this many steps (it is also written at evaluations, checkpoints and the end).</summary>
    public int LogEvery { get; init; } = 10;
    /// <summary>Checkpoint every this many steps (0 = only at the end).</summary>
    public int CheckpointEvery { get; init; }
    /// <summary>Checkpoints kept (the newest).</summary>
    public int KeepCheckpoints { get; init; } = 1;
    /// <summary>Folder of this run's files (null: nothing is written, no resume).</summary>
    public string? OutputDir { get; init; }
    /// <summary>Continue from the last checkpoint in <see cref="OutputDir"/> when there is one.</summary>
    public bool Resume { get; init; } = true;
    /// <summary>Where the model is moved and trained (JSON: "cpu", "cuda" or "cuda:N").</summary>
    public ComputeDevice Device { get; init; }
    /// <summary>"float32", or "bfloat16" (GPU) / "float64".</summary>
    public string DType { get; init; } = "float32";
    /// <summary>Progress display: a bar in a terminal, a line every 10 % when output is redirected.</summary>
    public bool ShowProgress { get; init; } = true;

    public TrainConfig Validate()
    {
        void Positive(double v, string name) { if (!(v > 0)) throw new ArgumentException($"{name} must be positive, got {v}", name); }
        void NonNegative(double v, string name) { if (!(v >= 0)) throw new ArgumentException($"{name} must be ≥ 0, got {v}", name); }
        Positive(Steps, nameof(Steps)); Positive(BatchSize, nameof(BatchSize)); Positive(GradAccumulation, nameof(GradAccumulation));
        Positive(LearningRate, nameof(LearningRate)); if (double.IsInfinity(LearningRate)) throw new ArgumentException("LearningRate must be finite", nameof(LearningRate));
        NonNegative(WeightDecay, nameof(WeightDecay)); NonNegative(WarmupSteps, nameof(WarmupSteps)); NonNegative(RestartWarmupSteps, nameof(RestartWarmupSteps)); NonNegative(MaxGradNorm, nameof(MaxGradNorm));
        NonNegative(EvalEvery, nameof(EvalEvery)); NonNegative(CheckpointEvery, nameof(CheckpointEvery)); Positive(LogEvery, nameof(LogEvery));
        Positive(KeepCheckpoints, nameof(KeepCheckpoints)); Positive(Eps, nameof(Eps));
        if (Beta1 is < 0 or >= 1) throw new ArgumentException($"Beta1 must be in [0, 1), got {Beta1}", nameof(Beta1));
        if (Beta2 is < 0 or >= 1) throw new ArgumentException($"Beta2 must be in [0, 1), got {Beta2}", nameof(Beta2));
        if (MinLrRatio is < 0 or > 1 || double.IsNaN(MinLrRatio)) throw new ArgumentException($"MinLrRatio must be in [0, 1], got {MinLrRatio}", nameof(MinLrRatio));
        if (!Enum.IsDefined(Schedule)) throw new ArgumentException($"unknown schedule {(int)Schedule}", nameof(Schedule));
        ParseDType(DType);
        Device.EnsureAvailable(nameof(Device));
        return this;
    }

    /// <summary>The learning rate at optimizer step <paramref name="step"/> (1-based).</summary>
    public double LearningRateAt(long step)
    {
        if (WarmupSteps > 0 && step <= WarmupSteps) return LearningRate * step / WarmupSteps;
        double span = Math.Max(1, Steps - WarmupSteps);
        double progress = Math.Clamp((step - WarmupSteps) / span, 0, 1);
        double factor = Schedule switch
        {
            LrSchedule.Cosine => MinLrRatio + (1 - MinLrRatio) * 0.5 * (1 + Math.Cos(Math.PI * progress)),
            LrSchedule.Linear => 1 - (1 - MinLrRatio) * progress,
            _ => 1,
        };
        return LearningRate * factor;
    }

    /// <summary>
    /// The learning rate at step <paramref name="step"/> when the adapters are merged and re-initialised every
    /// <paramref name="mergeEvery"/> steps (after steps N, 2N, …): as <see cref="LearningRateAt(long)"/>, except that for
    /// the first <see cref="RestartWarmupSteps"/> steps after each merge the rate ramps linearly from near 0 up to the
    /// schedule's value at the end of that ramp, as ReLoRA's cosine-with-restarts schedule (used by kongds/MoRA) does.
    /// <paramref name="mergeEvery"/> ≤ 0 or no restart warm-up: the plain schedule.
    /// </summary>
    public double LearningRateAt(long step, int mergeEvery)
    {
        if (mergeEvery <= 0 || RestartWarmupSteps <= 0 || step <= mergeEvery) return LearningRateAt(step);
        long lastMerge = (step - 1) / mergeEvery * mergeEvery;
        long since = step - lastMerge;                     // 1 at the first step after a merge
        if (since > RestartWarmupSteps) return LearningRateAt(step);
        return LearningRateAt(Math.Min(Steps, lastMerge + RestartWarmupSteps)) * since / RestartWarmupSteps;
    }

    public static ScalarType ParseDType(string name) => name.ToLowerInvariant() switch
    {
        "float32" or "fp32" or "f32" => ScalarType.Float32,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        "float16" or "fp16" or "f16" => ScalarType.Float16,
        "float64" or "fp64" or "f64" => ScalarType.Float64,
        _ => throw new ArgumentException($"unknown dtype '{name}'; use float32, bfloat16, float16 or float64", nameof(DType)),
    };

    /// <summary>The JSON options of the run files (<c>run.json</c>'s config and adapter, enums as names): what
    /// <see cref="Trainer"/> writes them with and a reader of a finished run reads them with.</summary>
    public static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Converters = { new JsonStringEnumConverter() } };

    public string ToJson() => JsonSerializer.Serialize(this, Json);
}

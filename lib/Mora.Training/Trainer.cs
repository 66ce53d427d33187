using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.Data;
using Mora.IO;
using Mora.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Training;

/// <summary>The loss became NaN or infinite: the run stopped before the optimizer step, so the parameters were not
/// updated from it; the last checkpoint (if any) is intact.</summary>
public sealed class TrainingDivergedException(string message, long step, long? lastCheckpointStep) : Exception(message)
{
    public long Step { get; } = step;
    public long? LastCheckpointStep { get; } = lastCheckpointStep;
}

/// <summary>The device ran out of memory during a training step (libtorch's "CUDA out of memory" or the CPU allocator's
/// "can't allocate memory", or .NET's own <see cref="OutOfMemoryException"/>). The message names the step, the batch size
/// and what to try; the last checkpoint and the log up to the previous step are intact. The native error is
/// <see cref="Exception.InnerException"/>.</summary>
public sealed class TrainingOutOfMemoryException(string message, long step, int batchSize, Exception inner) : Exception(message, inner)
{
    public long Step { get; } = step;
    public int BatchSize { get; } = batchSize;

    /// <summary>Whether <paramref name="e"/> (or an exception inside it) is an allocation failure of libtorch or .NET.</summary>
    public static bool IsOutOfMemory(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is OutOfMemoryException) return true;
            string m = e.Message;
            if (m.Contains("out of memory", StringComparison.OrdinalIgnoreCase) || m.Contains("can't allocate memory", StringComparison.OrdinalIgnoreCase)
                || m.Contains("CUBLAS_STATUS_ALLOC_FAILED", StringComparison.Ordinal) || m.Contains("Cannot allocate memory", StringComparison.Ordinal))
                return true;
        }
        return false;
    }
}

/// <summary>What a finished run reports.</summary>
public sealed record TrainResult(RunLog Log, IReadOnlyDictionary<string, double> FinalMetrics, long Steps, long Tokens, double WallSeconds,
    long TrainableParameters, long TotalParameters, long? ResumedFromStep, string? OutputDir);

/// <summary>
/// Trains a <see cref="LlamaForCausalLM"/> (with adapters injected, or fully) on <see cref="LmExample"/>s: AdamW,
/// warm-up then cosine/linear decay, gradient clipping and accumulation, loss masked to answer tokens, periodic
/// evaluation, atomic checkpoints with exact resume, and a stop with a clear message when the loss turns NaN/Inf.
/// <para>Determinism: the batch of step s and its dropout masks are functions of (seed, s) alone, so a resumed run
/// continues exactly as one that never stopped, and two CPU runs with one seed give the same log.</para>
/// <para>Files in <see cref="TrainConfig.OutputDir"/>: <c>log.csv</c>, <c>run.json</c> (manifest),
/// <c>checkpoints/latest.json</c> → <c>checkpoints/step-N/</c> (<c>trainable.safetensors</c>, <c>optimizer.safetensors</c>,
/// <c>state.json</c>, <c>log.csv</c>). Every file is written under a temporary name and renamed.</para>
/// </summary>
public sealed class Trainer
{
    public const string LogFile = "log.csv", ManifestFile = "run.json", CheckpointDir = "checkpoints", LatestFile = "latest.json";

    readonly LlamaForCausalLM _model;
    readonly TrainConfig _config;
    readonly IReadOnlyList<LmExample> _train;
    readonly Func<LlamaForCausalLM, IReadOnlyDictionary<string, double>>? _evaluate;
    readonly AdapterConfig? _adapter;
    readonly int _padId;
    readonly Dictionary<int, int[]> _orders = [];

    /// <summary>Progress reports (defaults to <see cref="ProgressDisplay.For"/> when <see cref="TrainConfig.ShowProgress"/>).</summary>
    public IProgress<TrainProgress>? Progress { get; set; }
    /// <summary>Called after each optimizer step with the step number (for custom logging or schedules such as ReMoRA).</summary>
    public event Action<long>? StepCompleted;
    /// <summary>ReLoRA/ReMoRA merge schedule, applied after optimizer steps (the optimizer state of the adapters is reset on a merge).</summary>
    public ReMergeSchedule? ReMerge { get; init; }
    /// <summary>The folder of the base model the run started from, recorded in the manifest (<c>base_model</c>) so the run
    /// can be rebuilt (its ΔW is the trained weights minus this base); null when it started from scratch.</summary>
    public string? BaseModel { get; init; }

    /// <param name="model">the model, adapters already injected (or none, for full training of every parameter)</param>
    /// <param name="config">the run's settings</param>
    /// <param name="train">training sequences</param>
    /// <param name="evaluate">metrics of the model (called in eval mode, no grad) every <see cref="TrainConfig.EvalEvery"/> steps and at the end</param>
    /// <param name="adapter">the adapter recipe, recorded in the manifest</param>
    /// <param name="padId">padding token id</param>
    public Trainer(LlamaForCausalLM model, TrainConfig config, IReadOnlyList<LmExample> train,
        Func<LlamaForCausalLM, IReadOnlyDictionary<string, double>>? evaluate = null, AdapterConfig? adapter = null, int padId = 0)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _config = (config ?? throw new ArgumentNullException(nameof(config))).Validate();
        if (train is null || train.Count == 0) throw new ArgumentException("the training set is empty", nameof(train));
        int ctx = model.Config.MaxPositionEmbeddings;
        for (int i = 0; i < train.Count; i++)
            if (train[i].Tokens.Length > ctx || train[i].Tokens.Length < 2)
                throw new ArgumentException($"training example {i} has {train[i].Tokens.Length} tokens; it needs 2 to {ctx} (the model's context)", nameof(train));
        _train = train;
        _evaluate = evaluate;
        _adapter = adapter;
        _padId = padId;
        if (_config.ShowProgress) Progress = ProgressDisplay.For(Path.GetFileName(_config.OutputDir ?? ""));
    }

    /// <summary>The examples of micro-batch <paramref name="micro"/> of optimizer step <paramref name="step"/> (1-based):
    /// an epoch-wise shuffle seeded by (seed, epoch), so any step's batch is known without replaying earlier ones.</summary>
    public IReadOnlyList<LmExample> BatchAt(long step, int micro)
    {
        var batch = new List<LmExample>(_config.BatchSize);
        long first = ((step - 1) * _config.GradAccumulation + micro) * (long)_config.BatchSize;
        for (long g = first; g < first + _config.BatchSize; g++)
        {
            int epoch = (int)(g / _train.Count);
            if (!_orders.TryGetValue(epoch, out var order))
            {
                if (_orders.Count > 4) _orders.Clear();
                order = Enumerable.Range(0, _train.Count).ToArray();
                new Random(StableSeed(_config.Seed, epoch, 0x5eed)).Shuffle(order);
                _orders[epoch] = order;
            }
            batch.Add(_train[order[g % _train.Count]]);
        }
        return batch;
    }

    /// <summary>Runs (or resumes) the training and returns the log and final metrics.</summary>
    public TrainResult Run(CancellationToken cancel = default)
    {
        var device = _config.Device.ToTorch(nameof(TrainConfig.Device));
        var dtype = TrainConfig.ParseDType(_config.DType);
        if (dtype is ScalarType.BFloat16 or ScalarType.Float16 && device.type == DeviceType.CPU)
            throw new ArgumentException($"dtype {_config.DType} is meant for a GPU; use float32 on the CPU", nameof(TrainConfig.DType));
        if (_model.Device.type != device.type || _model.Device.index != device.index || _model.DType != dtype) _model.to(device).to(dtype);

        var trainable = _model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        if (trainable.Count == 0) throw new InvalidOperationException("the model has no trainable parameters (inject adapters, or leave requires_grad on for full training)");
        var (trainableCount, totalCount) = Peft.CountParameters(_model);
        using var optimizer = new AdamW(trainable.Select(p => p.parameter), _config.LearningRate, _config.Beta1, _config.Beta2, _config.Eps, _config.WeightDecay);

        var log = new RunLog();
        long startStep = 0, tokens = 0;
        double wallBefore = 0;
        long? resumedFrom = null, lastCheckpoint = null;
        string? outDir = _config.OutputDir is null ? null : Path.GetFullPath(_config.OutputDir);
        if (outDir is not null)
        {
            Directory.CreateDirectory(outDir);
            if (_config.Resume && Checkpoints.Latest(outDir) is { } latest)
            {
                var state = Checkpoints.Load(latest, _model, trainable, optimizer, _config, MergedWeights(), ReMerge?.Every);
                ReMerge?.Restore(_model, state.Step);
                (startStep, tokens, wallBefore) = (state.Step, state.Tokens, state.WallSeconds);
                log = state.Log;
                resumedFrom = lastCheckpoint = startStep;
            }
            WriteManifest(outDir, "running", trainableCount, totalCount, device, dtype, resumedFrom, null, null);
        }

        var clock = Stopwatch.StartNew();
        var lastLogWrite = startStep;
        IReadOnlyDictionary<string, double> lastMetrics = new Dictionary<string, double>();
        _model.train();
        long step = startStep;
        try
        {
            while (step < _config.Steps)
            {
                cancel.ThrowIfCancellationRequested();
                step++;
                manual_seed(StableSeed(_config.Seed, step, 0xd20));           // dropout masks depend on (seed, step) only
                double lr = _config.LearningRateAt(step, ReMerge?.Every ?? 0);
                foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
                using (NewDisposeScope()) optimizer.zero_grad();     // TorchSharp's zero_grad leaves one tensor handle per parameter undisposed
                double lossSum = 0; long stepTokens = 0;
                var stepClock = Stopwatch.StartNew();
                for (int micro = 0; micro < _config.GradAccumulation; micro++)
                {
                    using var scope = NewDisposeScope();
                    using var batch = LmData.Collate(BatchAt(step, micro), _padId, device);
                    var logits = _model.forward(batch.InputIds);
                    var loss = nn.functional.cross_entropy(logits.to(ScalarType.Float32).flatten(0, 1), batch.Targets.flatten(), ignore_index: LmData.IgnoreIndex);
                    double value = loss.item<float>();
                    if (!double.IsFinite(value)) throw Diverged(step, value, "loss", lastCheckpoint, outDir, log);
                    lossSum += value;
                    stepTokens += batch.InputIds.numel();
                    (loss / _config.GradAccumulation).backward();
                }
                double gradNorm = _config.MaxGradNorm > 0
                    ? nn.utils.clip_grad_norm_(trainable.Select(p => p.parameter), _config.MaxGradNorm)
                    : GradNorm(trainable.Select(p => p.parameter));
                if (!double.IsFinite(gradNorm)) throw Diverged(step, gradNorm, "gradient norm", lastCheckpoint, outDir, log);
                optimizer.step();
                if (ReMerge?.AfterStep(_model, step) == true) ResetAdapterState(optimizer, trainable);
                tokens += stepTokens;
                double wall = wallBefore + clock.Elapsed.TotalSeconds;
                double meanLoss = lossSum / _config.GradAccumulation;
                double tps = stepTokens / Math.Max(1e-9, stepClock.Elapsed.TotalSeconds);
                log.Add(new LogRow(step, tokens, meanLoss, lr, gradNorm, tps, wall, new Dictionary<string, double>()));
                StepCompleted?.Invoke(step);

                bool last = step == _config.Steps;
                if ((_config.EvalEvery > 0 && step % _config.EvalEvery == 0) || last)
                {
                    lastMetrics = Evaluate();
                    log.AddMetrics(step, lastMetrics);
                }
                Progress?.Report(new TrainProgress(step, _config.Steps, meanLoss, lr, tps, TimeSpan.FromSeconds(wall), lastMetrics));
                if (outDir is not null)
                {
                    bool checkpoint = last || (_config.CheckpointEvery > 0 && step % _config.CheckpointEvery == 0);
                    if (checkpoint || step - lastLogWrite >= _config.LogEvery || log.Rows[^1].Metrics.Count > 0)   // this step evaluated
                    {
                        log.WriteCsv(Path.Combine(outDir, LogFile));
                        lastLogWrite = step;
                    }
                    if (checkpoint)
                    {
                        Checkpoints.Save(outDir, step, tokens, wallBefore + clock.Elapsed.TotalSeconds, trainable, optimizer, log, _config, MergedWeights());
                        lastCheckpoint = step;
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            if (outDir is not null) log.WriteCsv(Path.Combine(outDir, LogFile));
            throw;
        }
        catch (Exception e) when (e is not TrainingDivergedException && TrainingOutOfMemoryException.IsOutOfMemory(e))
        {
            throw OutOfMemory(step, e, lastCheckpoint, outDir, log);
        }
        finally { _model.eval(); }

        double totalWall = wallBefore + clock.Elapsed.TotalSeconds;
        if (lastMetrics.Count == 0 && _evaluate is not null) lastMetrics = Evaluate();     // resumed at the end: evaluate again
        if (outDir is not null)
            WriteManifest(outDir, "completed", trainableCount, totalCount, device, dtype, resumedFrom, lastMetrics, totalWall);
        return new TrainResult(log, lastMetrics, step, tokens, totalWall, trainableCount, totalCount, resumedFrom, outDir);
    }

    /// <summary>A seed mixed from integers with SplitMix64, the same in every process (unlike <see cref="HashCode"/>, which
    /// .NET randomises per process and so would change the data order after a restart).</summary>
    public static int StableSeed(long a, long b, long c)
    {
        ulong x = (ulong)a * 0x9E3779B97F4A7C15UL ^ (ulong)b * 0xC2B2AE3D27D4EB4FUL ^ (ulong)c * 0x165667B19E3779F9UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        x ^= x >> 31;
        return (int)(x & 0x7FFFFFFF);
    }

    IReadOnlyDictionary<string, double> Evaluate()
    {
        if (_evaluate is null) return new Dictionary<string, double>();
        bool wasTraining = _model.training;
        _model.eval();
        try
        {
            using var _ = no_grad();
            return _evaluate(_model);
        }
        finally { _model.train(wasTraining); }
    }

    static double GradNorm(IEnumerable<Parameter> parameters)
    {
        using var scope = NewDisposeScope();
        var norms = parameters.Where(p => p.grad is not null).Select(p => p.grad!.to(ScalarType.Float32).norm()).ToList();
        return norms.Count == 0 ? 0 : stack(norms).norm().item<float>();
    }

    /// <summary>After a ReLoRA/ReMoRA merge the adapter starts again; its Adam moments no longer mean anything (ReLoRA
    /// resets them). Other trainable parameters (embeddings, norms, head when they train too) keep theirs.</summary>
    void ResetAdapterState(AdamW optimizer, IReadOnlyList<(string Name, Parameter Parameter)> trainable)
    {
        var adapterParams = Peft.Adapters(_model).SelectMany(a => a.Layer.AdapterParameters()).Select(p => p.Parameter.Handle).ToHashSet();
        var states = optimizer.state_dict().State.OfType<AdamW.State>().ToList();
        using var _ = no_grad();
        for (int i = 0; i < states.Count && i < trainable.Count; i++)
        {
            if (!adapterParams.Contains(trainable[i].Parameter.Handle)) continue;
            states[i].exp_avg.zero_();
            states[i].exp_avg_sq.zero_();
            states[i].step = 0;
        }
    }

    /// <summary>With a merge schedule, the frozen base weights of the adapted layers change at each merge, so checkpoints
    /// carry them too (null without one: nothing frozen changes).</summary>
    List<(string Name, Tensor Weight)>? MergedWeights() =>
        ReMerge is null ? null : Peft.Adapters(_model).Select(a => (a.Name + ".base_layer.weight", (Tensor)a.Layer.BaseWeight)).ToList();

    TrainingDivergedException Diverged(long step, double value, string what, long? lastCheckpoint, string? outDir, RunLog log)
    {
        string where = lastCheckpoint is { } c
            ? $"the last good checkpoint (step {c}) is kept in {Path.Combine(outDir!, CheckpointDir)}"
            : outDir is null ? "no checkpoint was written (no output folder)" : "no checkpoint had been written yet";
        var message = $"training stopped at step {step}: the {what} became {value}. {where}. " +
                      $"Try a lower learning rate (now {_config.LearningRate:G3}), more warm-up steps (now {_config.WarmupSteps}), " +
                      $"gradient clipping (MaxGradNorm, now {_config.MaxGradNorm}), or float32 instead of {_config.DType}.";
        if (outDir is not null)
        {
            log.WriteCsv(Path.Combine(outDir, LogFile));
            var (t, n) = Peft.CountParameters(_model);
            WriteManifest(outDir, "diverged", t, n, _model.Device, _model.DType, null, null, null, message);
        }
        return new TrainingDivergedException(message, step, lastCheckpoint);
    }

    TrainingOutOfMemoryException OutOfMemory(long step, Exception e, long? lastCheckpoint, string? outDir, RunLog log)
    {
        GC.Collect();          // release the step's tensors the exception left for the finalizer
        string native = e.Message.Split('\n', 2)[0].Trim();
        string where = lastCheckpoint is { } c
            ? $"The last good checkpoint (step {c}) is kept in {Path.Combine(outDir!, CheckpointDir)}; rerunning resumes from it."
            : outDir is null ? "No checkpoint was written (no output folder)." : "No checkpoint had been written yet.";
        int half = Math.Max(1, _config.BatchSize / 2);
        var message = $"training ran out of {_config.Device} memory at step {step} with batch size {_config.BatchSize} " +
                      $"(gradient accumulation {_config.GradAccumulation}, dtype {_config.DType}): {native}. {where} " +
                      (_config.BatchSize > 1
                          ? $"Try batch size {half} with gradient accumulation {_config.GradAccumulation * _config.BatchSize / half} (the same effective batch), "
                          : "Try ") +
                      "shorter sequences, a smaller model, or bfloat16 on a GPU.";
        if (outDir is not null)
        {
            log.WriteCsv(Path.Combine(outDir, LogFile));
            var (t, n) = Peft.CountParameters(_model);
            WriteManifest(outDir, "out-of-memory", t, n, _model.Device, _model.DType, null, null, null, message);
        }
        return new TrainingOutOfMemoryException(message, step, _config.BatchSize, e);
    }

    void WriteManifest(string outDir, string status, long trainable, long total, Device device, ScalarType dtype, long? resumedFrom,
        IReadOnlyDictionary<string, double>? metrics, double? wall, string? error = null)
    {
        var adapters = Peft.Adapters(_model);
        var manifest = new JsonObject
        {
            ["status"] = status,
            ["written_utc"] = DateTime.UtcNow.ToString("O"),
            ["method"] = _adapter?.Method.ToString() ?? (adapters.Count > 0 ? adapters[0].Layer.Method.ToString() : "Full (all parameters)"),
            ["adapter"] = _adapter is null ? null : JsonNode.Parse(JsonSerializer.Serialize(_adapter, TrainConfig.Json)),
            ["adapted_layers"] = adapters.Count,
            ["trainable_parameters"] = trainable,
            ["total_parameters"] = total,
            ["seed"] = _config.Seed,
            ["train"] = JsonNode.Parse(_config.ToJson()),
            ["model"] = JsonNode.Parse(_model.Config.ToJson()),
            ["base_model"] = BaseModel is null ? null : Path.GetFullPath(BaseModel),
            ["train_examples"] = _train.Count,
            ["device"] = device.ToString(),
            ["dtype"] = dtype.ToString(),
            ["git_commit"] = RunInfo.GitCommit(),
            ["torchsharp"] = typeof(torch).Assembly.GetName().Version?.ToString(),
            ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
            ["cpu_threads"] = Environment.ProcessorCount,
            ["resumed_from_step"] = resumedFrom,
            ["wall_seconds"] = wall,
            ["final_metrics"] = metrics is null ? null : new JsonObject(metrics.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value)))),
            ["error"] = error,
        };
        AtomicFile.WriteText(Path.Combine(outDir, ManifestFile), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}

/// <summary>Facts about the code and machine for run manifests.</summary>
public static class RunInfo
{
    /// <summary>The commit of the checkout above the working directory or the app (read from .git, no git process; a
    /// worktree's .git file and its common folder are followed); null if none.</summary>
    public static string? GitCommit()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string git = Path.Combine(dir.FullName, ".git");
                if (!Directory.Exists(git) && !File.Exists(git)) continue;
                try
                {
                    if (File.Exists(git))      // a worktree: "gitdir: <folder>"
                    {
                        string link = File.ReadAllText(git).Trim();
                        if (!link.StartsWith("gitdir: ", StringComparison.Ordinal)) return null;
                        git = Path.GetFullPath(Path.Combine(dir.FullName, link["gitdir: ".Length..].Trim()));
                    }
                    string common = File.Exists(Path.Combine(git, "commondir")) ? Path.GetFullPath(Path.Combine(git, File.ReadAllText(Path.Combine(git, "commondir")).Trim())) : git;
                    string head = File.ReadAllText(Path.Combine(git, "HEAD")).Trim();
                    if (!head.StartsWith("ref: ", StringComparison.Ordinal)) return head;
                    string reference = head[5..];
                    foreach (var root in new[] { git, common })
                        if (File.Exists(Path.Combine(root, reference))) return File.ReadAllText(Path.Combine(root, reference)).Trim();
                    string packed = Path.Combine(common, "packed-refs");
                    if (File.Exists(packed))
                        foreach (var line in File.ReadLines(packed))
                            if (line.EndsWith(" " + reference, StringComparison.Ordinal)) return line[..line.IndexOf(' ')];
                }
                catch (IOException) { }
                return null;
            }
        return null;
    }
}

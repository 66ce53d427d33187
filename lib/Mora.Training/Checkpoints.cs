using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.IO;
using Mora.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Training;

/// <summary>A checkpoint that cannot continue this run: its settings differ from the run's, or it lacks what the run
/// needs. The message names the checkpoint and what to do.</summary>
public sealed class ResumeRefusedException(string message) : InvalidOperationException(message);

/// <summary>A checkpoint that cannot be read: garbled, truncated, or a file that no longer matches the checksum written
/// with it (overwritten moments, a damaged tensor file). The message names the file and the remedy: delete the run's
/// checkpoints to train it again from the start.</summary>
public sealed class CheckpointDamagedException(string message, Exception? inner = null) : FormatException(message, inner);

/// <summary>What a checkpoint restores besides tensors.</summary>
public sealed record CheckpointState(long Step, long Tokens, double WallSeconds, RunLog Log);

/// <summary>
/// Checkpoints of a run: <c>checkpoints/step-N/</c> holds the trainable parameters and the AdamW moments (safetensors),
/// the counters and the log so far; <c>checkpoints/latest.json</c> names the newest. A checkpoint folder is written under a
/// temporary name and renamed, then <c>latest.json</c> is replaced atomically, so a process killed at any moment leaves
/// the previous checkpoint usable. Each checkpoint carries <c>checksums.json</c> (<see cref="RunFolder"/>), checked before
/// it is read: a damaged or overwritten file is a <see cref="CheckpointDamagedException"/> naming it, never a resume from it.
/// </summary>
public static class Checkpoints
{
    const string Params = "trainable.safetensors", Optim = "optimizer.safetensors", State = "state.json", Merged = "merged.safetensors";

    /// <summary>The newest complete checkpoint folder of a run, or null.</summary>
    public static string? Latest(string outDir)
    {
        string pointer = Path.Combine(outDir, Trainer.CheckpointDir, Trainer.LatestFile);
        if (!File.Exists(pointer)) return null;
        string name;
        try { name = JsonNode.Parse(File.ReadAllText(pointer))?["checkpoint"]?.GetValue<string>() ?? throw new FormatException("no 'checkpoint' field"); }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
        { throw Damaged(outDir, $"{pointer}: unreadable ({e.Message})", e); }
        if (Path.GetFileName(name) != name || !name.StartsWith("step-", StringComparison.Ordinal))
            throw Damaged(outDir, $"{pointer}: checkpoint name '{name}' must be a folder name step-N beside it");
        string dir = Path.Combine(outDir, Trainer.CheckpointDir, name);
        if (!Directory.Exists(dir)) throw Damaged(outDir, $"{pointer} names {name}, which does not exist");
        return dir;
    }

    /// <summary>The error for a damaged checkpoint of the run in <paramref name="outDir"/>, with the remedy.</summary>
    static CheckpointDamagedException Damaged(string outDir, string problem, Exception? inner = null) =>
        new($"{problem}: the run's checkpoint is damaged and cannot be resumed from. Delete {Path.Combine(outDir, Trainer.CheckpointDir)} to train this run again from its start", inner);

    /// <summary>The step of a run's newest checkpoint (from <c>latest.json</c>), or null when it has none.</summary>
    public static long? LatestStep(string outDir) =>
        Latest(outDir) is { } dir && long.TryParse(Path.GetFileName(dir)["step-".Length..], System.Globalization.NumberStyles.None, CultureInfo.InvariantCulture, out long step) ? step : null;

    internal static void Save(string outDir, long step, long tokens, double wall, IReadOnlyList<(string Name, Parameter Parameter)> trainable,
        AdamW optimizer, RunLog log, TrainConfig config, IReadOnlyList<(string Name, Tensor Weight)>? merged = null)
    {
        string root = Path.Combine(outDir, Trainer.CheckpointDir);
        Directory.CreateDirectory(root);
        string name = $"step-{step}";
        string final = Path.Combine(root, name);
        string tmp = Path.Combine(root, $".{name}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(tmp);
        try
        {
            SafeTensors.Save(Path.Combine(tmp, Params), trainable.Select(p => (p.Name, (Tensor)p.Parameter)));
            if (merged is { Count: > 0 }) SafeTensors.Save(Path.Combine(tmp, Merged), merged);     // ReLoRA/ReMoRA: frozen weights that merges changed
            var states = optimizer.state_dict().State.Cast<AdamW.State>().ToList();
            var moments = new List<(string, Tensor)>();
            var meta = new Dictionary<string, string>();
            for (int i = 0; i < states.Count; i++)
            {
                moments.Add(($"{i}.exp_avg", states[i].exp_avg));
                moments.Add(($"{i}.exp_avg_sq", states[i].exp_avg_sq));
                meta[$"{i}.step"] = states[i].step.ToString(CultureInfo.InvariantCulture);
                meta[$"{i}.name"] = trainable[i].Name;
            }
            SafeTensors.Save(Path.Combine(tmp, Optim), moments, meta);
            log.WriteCsv(Path.Combine(tmp, Trainer.LogFile));
            var state = new JsonObject
            {
                ["step"] = step, ["tokens"] = tokens, ["wall_seconds"] = wall,
                ["train"] = JsonNode.Parse(config.ToJson()),
            };
            AtomicFile.WriteText(Path.Combine(tmp, State), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            RunFolder.WriteChecksums(tmp);                 // written with the checkpoint, renamed with it: one step
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            Directory.Move(tmp, final);
        }
        finally { if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true); }
        AtomicFile.WriteText(Path.Combine(root, Trainer.LatestFile), new JsonObject { ["checkpoint"] = name, ["step"] = step }.ToJsonString());
        // Keep the newest KeepCheckpoints; remove stale temporaries of killed writers.
        var old = Directory.GetDirectories(root, "step-*")
            .Select(d => (Dir: d, Step: long.TryParse(Path.GetFileName(d)[5..], out var s) ? s : -1))
            .Where(d => d.Step >= 0).OrderByDescending(d => d.Step).Skip(config.KeepCheckpoints);
        foreach (var (dir, _) in old) Directory.Delete(dir, recursive: true);
        foreach (var stale in Directory.GetDirectories(root, ".step-*.tmp"))
            if (!stale.Contains($".{Environment.ProcessId}.", StringComparison.Ordinal)) Directory.Delete(stale, recursive: true);
    }

    /// <summary>Fields that must match for a resume to continue the same run.</summary>
    static readonly string[] MustMatch = ["Steps", "BatchSize", "GradAccumulation", "LearningRate", "WeightDecay", "Beta1", "Beta2", "Eps",
        "WarmupSteps", "Schedule", "MinLrRatio", "MaxGradNorm", "Seed", "DType", "RestartWarmupSteps"];

    /// <summary>Fields added after checkpoints were first written, with their default: a checkpoint without the field
    /// was written with the default, so it still resumes a run that keeps the default.</summary>
    static readonly Dictionary<string, string> AddedLater = new() { ["RestartWarmupSteps"] = "0" };

    internal static CheckpointState Load(string dir, LlamaForCausalLM model, IReadOnlyList<(string Name, Parameter Parameter)> trainable,
        AdamW optimizer, TrainConfig config, IReadOnlyList<(string Name, Tensor Weight)>? merged = null, long? firstMergeStep = null)
    {
        string runDir = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetFullPath(dir)))!;
        // A checkpoint written before checksums were recorded has none to check.
        if (File.Exists(Path.Combine(dir, RunFolder.ChecksumsFile)) && RunFolder.ChecksumProblems(dir) is { } problem)
            throw Damaged(runDir, $"{dir}: {problem}");
        try { return Read(dir, model, trainable, optimizer, config, merged, firstMergeStep); }
        catch (Exception e) when (e is FormatException and not CheckpointDamagedException || e is JsonException or IOException or KeyNotFoundException or InvalidOperationException and not ResumeRefusedException)
        { throw Damaged(runDir, $"{dir}: {e.Message}", e); }
    }

    static CheckpointState Read(string dir, LlamaForCausalLM model, IReadOnlyList<(string Name, Parameter Parameter)> trainable,
        AdamW optimizer, TrainConfig config, IReadOnlyList<(string Name, Tensor Weight)>? merged, long? firstMergeStep)
    {
        string statePath = Path.Combine(dir, State);
        JsonObject state;
        try { state = JsonNode.Parse(File.ReadAllText(statePath)) as JsonObject ?? throw new FormatException("not an object"); }
        catch (Exception e) when (e is JsonException or FormatException or IOException)
        { throw new FormatException($"{statePath}: unreadable checkpoint state ({e.Message})", e); }
        var saved = state["train"] as JsonObject;
        var now = JsonNode.Parse(config.ToJson()) as JsonObject;
        string? Saved(string k) => saved?[k]?.ToJsonString() ?? (AddedLater.TryGetValue(k, out var d) ? d : null);
        var differ = MustMatch.Where(k => Saved(k) != now?[k]?.ToJsonString())
            .Select(k => $"{k}: checkpoint {saved?[k]?.ToJsonString() ?? "(none)"}, now {now?[k]?.ToJsonString()}").ToList();
        if (differ.Count > 0)
            throw new ResumeRefusedException(
                $"cannot resume from {dir}: the run's settings changed ({string.Join("; ", differ)}). " +
                "Use a new output folder, or set Resume = false to start over.");

        var (tensors, _) = SafeTensors.Load(Path.Combine(dir, Params));
        var (moments, meta) = SafeTensors.Load(Path.Combine(dir, Optim));
        try
        {
            var problems = TensorMatch.Problems(trainable.Select(t => (t.Name, (Tensor)t.Parameter)), tensors, "checkpoint", "not a trainable parameter of the model");
            if (problems.Count > 0) throw new CheckpointMismatchException(TensorMatch.Describe(Path.Combine(dir, Params), problems), problems);

            var states = optimizer.state_dict().State.Cast<AdamW.State>().ToList();
            if (states.Count != trainable.Count)
                throw new InvalidOperationException($"optimizer has {states.Count} parameter states, model {trainable.Count} trainable tensors");
            using var _ = no_grad();
            for (int i = 0; i < trainable.Count; i++)
            {
                var p = trainable[i].Parameter;
                using (var v = tensors[trainable[i].Name].to(p.dtype, p.device)) p.copy_(v);
                if (!meta.TryGetValue($"{i}.name", out var n) || n != trainable[i].Name || !moments.ContainsKey($"{i}.exp_avg"))
                    throw new CheckpointMismatchException($"{Path.Combine(dir, Optim)}: optimizer state {i} is not for {trainable[i].Name}", [$"optimizer state {i}"]);
                using (var m = moments[$"{i}.exp_avg"].to(states[i].exp_avg.dtype, p.device)) states[i].exp_avg.copy_(m);
                using (var v = moments[$"{i}.exp_avg_sq"].to(states[i].exp_avg_sq.dtype, p.device)) states[i].exp_avg_sq.copy_(v);
                states[i].step = long.Parse(meta[$"{i}.step"], CultureInfo.InvariantCulture);
            }
            string mergedPath = Path.Combine(dir, Merged);
            // A checkpoint past a merge that holds no merged weights (written before they were saved) would resume on the
            // unmerged base and silently lose every update merged so far.
            if (merged is { Count: > 0 } && !File.Exists(mergedPath) && firstMergeStep is { } first && state["step"]?.GetValue<long>() >= first)
                throw new ResumeRefusedException($"cannot resume from {dir}: it is past the merge at step {first} but holds no {Merged} " +
                    "(written before merged weights were checkpointed), so the merged updates would be lost. Use a new output folder, or set Resume = false to start over.");
            if (merged is { Count: > 0 } && File.Exists(mergedPath))
            {
                var (weights, _) = SafeTensors.Load(mergedPath);
                try
                {
                    var wrong = TensorMatch.Problems(merged, weights, "checkpoint", "not a merged weight of the model");
                    if (wrong.Count > 0) throw new CheckpointMismatchException(TensorMatch.Describe(mergedPath, wrong), wrong);
                    foreach (var (name, w) in merged) using (var v = weights[name].to(w.dtype, w.device)) w.copy_(v);
                }
                finally { foreach (var t in weights.Values) t.Dispose(); }
            }
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
            foreach (var t in moments.Values) t.Dispose();
        }
        var log = RunLog.ReadCsv(Path.Combine(dir, Trainer.LogFile));
        long step = state["step"]!.GetValue<long>();
        log.TruncateAfter(step);
        return new CheckpointState(step, state["tokens"]!.GetValue<long>(), state["wall_seconds"]!.GetValue<double>(), log);
    }
}

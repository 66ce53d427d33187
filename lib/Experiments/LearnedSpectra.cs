using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.Evaluation;
using Mora.IO;
using Mora.Model;
using Mora.Training;
using static TorchSharp.torch;

namespace Mora.Experiments;

/// <summary>The ΔW each finished run of an experiment folder learned: rank at a tolerance and effective rank, per layer.</summary>
public sealed record RunSpectrum(string Run, string Method, int Rank, long Step, IReadOnlyList<DeltaWeightStats> Layers)
{
    public double MeanRank => Layers.Average(l => (double)l.Rank);
    public double MeanEffectiveRank => Layers.Average(l => l.EffectiveRank);
}

/// <summary>
/// Rebuilds each run of an experiment folder (<c>base-seed{s}/model</c> + the run's adapter from <c>run.json</c> + its last
/// checkpoint) and analyses the learned ΔW of every adapted layer (merged-minus-base for full fine-tuning).
/// </summary>
public static class LearnedSpectra
{
    public static List<RunSpectrum> Analyze(string experimentDir, double relativeTolerance = 1e-3)
    {
        string runs = Path.Combine(experimentDir, "runs");
        if (!Directory.Exists(runs)) throw new ArgumentException($"--runs: {Path.GetFullPath(experimentDir)} has no runs/ folder (an experiment's --out folder is expected)", "--runs");
        var result = new List<RunSpectrum>();
        foreach (var dir in Directory.GetDirectories(runs).Order(StringComparer.Ordinal))
        {
            string manifestPath = Path.Combine(dir, Trainer.ManifestFile);
            if (!File.Exists(manifestPath) || Checkpoints.Latest(dir) is not { } checkpoint) continue;
            var manifest = JsonNode.Parse(File.ReadAllText(manifestPath))!;
            var adapter = manifest["adapter"]?.Deserialize<AdapterConfig>(TrainConfig.Json)
                ?? throw new FormatException($"{manifestPath}: no 'adapter' recorded");
            int seed = manifest["seed"]!.GetValue<int>();
            string baseDir = Path.Combine(experimentDir, $"base-seed{seed}", "model");
            using var model = ModelIO.Load(baseDir);
            Peft.Inject(model, adapter);
            var (tensors, _) = SafeTensors.Load(Path.Combine(checkpoint, "trainable.safetensors"));
            try
            {
                var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
                using (no_grad())
                    foreach (var (name, t) in tensors)
                    {
                        if (!parameters.TryGetValue(name, out var p) || !p.shape.SequenceEqual(t.shape))
                            throw new CheckpointMismatchException($"{checkpoint}: tensor {name} does not fit the rebuilt model", [name]);
                        p.copy_(t);
                    }
            }
            finally { foreach (var t in tensors.Values) t.Dispose(); }
            long step = long.Parse(Path.GetFileName(checkpoint)["step-".Length..]);
            result.Add(new RunSpectrum(Path.GetFileName(dir), adapter.Method == AdapterMethod.Mora ? $"mora-{adapter.MoraType.ToString().ToLowerInvariant()}" : adapter.Method.ToString().ToLowerInvariant(),
                adapter.Method == AdapterMethod.Full ? 0 : adapter.R, step, DeltaWeightAnalysis.Analyze(model, relativeTolerance)));
        }
        if (result.Count == 0) throw new ArgumentException($"--runs: no finished run with a checkpoint under {Path.GetFullPath(runs)}", "--runs");
        return result;
    }

    /// <summary>One line per run: layers, mean rank and effective rank of ΔW, and per layer type (q, k, v, o, gate, up, down).</summary>
    public static string Format(IReadOnlyList<RunSpectrum> spectra)
    {
        var sb = new StringBuilder();
        var kinds = new[] { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" };
        sb.AppendLine($"{"run",-28} {"step",5} {"layers",6} {"mean rank",9} {"mean eff.",9}  effective rank by layer type ({string.Join(" ", kinds.Select(k => k.Replace("_proj", "")))})");
        foreach (var s in spectra)
        {
            var byKind = kinds.Select(k => s.Layers.Where(l => l.Layer.EndsWith(k, StringComparison.Ordinal)).ToList())
                .Select(l => l.Count == 0 ? "-" : l.Average(x => x.EffectiveRank).ToString("0.0"));
            sb.AppendLine($"{s.Run,-28} {s.Step,5} {s.Layers.Count,6} {s.MeanRank,9:0.0} {s.MeanEffectiveRank,9:0.0}  {string.Join(" ", byKind)}");
        }
        return sb.ToString().TrimEnd();
    }

    /// <summary>Per-layer CSV: run, layer, d, k, rank, effective rank, ‖ΔW‖_F, the tolerance.</summary>
    public static void WriteCsv(string path, IReadOnlyList<RunSpectrum> spectra)
    {
        var sb = new StringBuilder("run,method,r,step,layer,d,k,rank,effective_rank,frobenius_norm,relative_tolerance\n");
        foreach (var s in spectra)
            foreach (var l in s.Layers)
                sb.Append(FormattableString.Invariant($"{s.Run},{s.Method},{s.Rank},{s.Step},{l.Layer},{l.D},{l.K},{l.Rank},{l.EffectiveRank:0.####},{l.FrobeniusNorm:0.######},{l.RelativeTolerance}\n"));
        AtomicFile.WriteText(path, sb.ToString());
    }
}

using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.IO;
using Mora.Model;
using Mora.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Analysis;

/// <summary>
/// The one home of spectrum analysis (notebooks 01 and 02; the <c>rank</c> and <c>designs</c> commands): the singular
/// values of an update ΔW, its rank at a tolerance and its effective rank. <see cref="DesignReport"/> applies it to ΔW built
/// from random weights, <see cref="DeltaWeightAnalysis"/> to each adapted layer of a model, <see cref="LearnedSpectra"/> to
/// every finished run of an experiment folder.
/// </summary>
/// <param name="SingularValues">σ₁ ≥ σ₂ ≥ … (float64)</param>
/// <param name="Rank">singular values above the tolerance (see <see cref="Of"/>)</param>
/// <param name="EffectiveRank">exp of the entropy of σ / Σσ (Roy &amp; Vetterli 2007); 0 for ΔW = 0</param>
public sealed record Spectrum(double[] SingularValues, long Rank, double EffectiveRank)
{
    /// <summary>The spectrum of <paramref name="delta"/> (any dtype or device; computed in float64 on its device).</summary>
    /// <param name="delta">a d × k matrix</param>
    /// <param name="relativeTolerance">σ_i counts toward the rank when σ_i ≥ this × σ₁; null: the numerical rank,
    /// σ_i &gt; σ₁ · max(d, k) · 2.2e-16 (float64 machine epsilon), as numpy's matrix_rank</param>
    public static Spectrum Of(Tensor delta, double? relativeTolerance = null)
    {
        if (delta.dim() != 2) throw new ArgumentException($"ΔW must be a matrix, got shape [{string.Join(", ", delta.shape)}]", nameof(delta));
        if (relativeTolerance is { } t && !(t > 0 && t < 1)) throw new ArgumentException($"relative tolerance must be in (0, 1), got {t}", nameof(relativeTolerance));
        using var scope = NewDisposeScope();
        var sv = linalg.svdvals(delta.to(ScalarType.Float64));
        var values = sv.cpu().data<double>().ToArray();
        double max = values.Length == 0 ? 0 : values[0];
        if (max == 0) return new Spectrum(values, 0, 0);
        long rank = relativeTolerance is { } rel
            ? values.LongCount(v => v >= rel * max)
            : values.LongCount(v => v > max * Math.Max(delta.shape[0], delta.shape[1]) * 2.2e-16);
        return new Spectrum(values, rank, EffectiveRankOf(sv));
    }

    /// <summary>Effective rank (Roy &amp; Vetterli 2007): exp of the entropy of the normalised singular values.</summary>
    public static double EffectiveRankOf(Tensor singularValues)
    {
        using var scope = NewDisposeScope();
        var s = singularValues.to(ScalarType.Float64);
        var total = s.sum();
        if (total.item<double>() <= 0) return 0;
        var p = s / total;
        var nz = p.masked_select(p > 0);
        return Math.Exp(-(nz * nz.log()).sum().item<double>());
    }

    /// <summary>σ_i / σ₁ for every i (the decay a chart shows).</summary>
    public double[] Normalized() => SingularValues.Length == 0 || SingularValues[0] == 0
        ? new double[SingularValues.Length] : SingularValues.Select(v => v / SingularValues[0]).ToArray();
}

/// <summary>The spectrum of one learned update.</summary>
/// <param name="Layer">module path</param>
/// <param name="Method">the adapter's method</param>
/// <param name="D">output features</param>
/// <param name="K">input features</param>
/// <param name="Rank">singular values above <c>tolerance × σ_max</c></param>
/// <param name="EffectiveRank">exp of the entropy of σ / Σσ (Roy &amp; Vetterli 2007)</param>
/// <param name="FrobeniusNorm">‖ΔW‖_F</param>
/// <param name="RelativeTolerance">the tolerance of <paramref name="Rank"/></param>
/// <param name="SingularValues">all singular values, largest first</param>
public sealed record DeltaWeightStats(string Layer, AdapterMethod Method, int D, int K, long Rank, double EffectiveRank, double FrobeniusNorm,
    double RelativeTolerance, double[] SingularValues);

/// <summary>What each adapted layer actually learned: ΔW (merged-minus-base for full fine-tuning), its singular values,
/// its rank at a tolerance and its effective rank.</summary>
public static class DeltaWeightAnalysis
{
    /// <param name="model">a model with adapters (or FullLinear wrappers)</param>
    /// <param name="relativeTolerance">a singular value counts toward the rank when ≥ this × the largest</param>
    public static List<DeltaWeightStats> Analyze(nn.Module model, double relativeTolerance = 1e-3)
    {
        if (!(relativeTolerance > 0 && relativeTolerance < 1)) throw new ArgumentException($"relative tolerance must be in (0, 1), got {relativeTolerance}", nameof(relativeTolerance));
        var result = new List<DeltaWeightStats>();
        using var _ = no_grad();
        foreach (var (name, layer) in Peft.Adapters(model))
        {
            using var scope = NewDisposeScope();
            var delta = layer.DeltaWeight();
            var spectrum = Spectrum.Of(delta, relativeTolerance);
            double fro = delta.to(ScalarType.Float64).norm().item<double>();
            result.Add(new DeltaWeightStats(name, layer.Method, layer.OutFeatures, layer.InFeatures, spectrum.Rank, spectrum.EffectiveRank, fro, relativeTolerance, spectrum.SingularValues));
        }
        return result;
    }
}

/// <summary>The ΔW each finished run of an experiment folder learned: rank at a tolerance and effective rank, per layer.</summary>
public sealed record RunSpectrum(string Run, string Method, int Rank, long Step, IReadOnlyList<DeltaWeightStats> Layers)
{
    public double MeanRank => Layers.Average(l => (double)l.Rank);
    public double MeanEffectiveRank => Layers.Average(l => l.EffectiveRank);
}

/// <summary>
/// Rebuilds each finished run of an experiment folder (its base + the run's adapter from <c>run.json</c> + its last
/// checkpoint) and analyses the learned ΔW of every adapted layer (merged-minus-base for full fine-tuning). The base is
/// the one the run's manifest names (<c>base_model</c>); for runs written before it was recorded, the experiment's
/// <c>spec.json</c> says which: a given base folder (<c>BaseModel</c>), the shared base (<c>BaseSeed</c>), or the seed's
/// own (<c>base-seed{s}</c>, <c>base/</c>). A run that has not finished (its manifest does not say completed: killed,
/// diverged, still running) or that has no base (trained from scratch) is skipped, and the callback <c>skipped</c> says why.
/// </summary>
public static class LearnedSpectra
{
    /// <summary>The fields of a run's manifest the analysis needs; a manifest that does not read as one (not JSON, a
    /// field of another type) is a <see cref="FormatException"/> naming the file and the field.</summary>
    static (string Status, AdapterConfig? Adapter, int Seed, string? BaseModel) ReadManifest(string path)
    {
        string field = "(the file)";
        try
        {
            var manifest = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new FormatException("not a JSON object");
            field = "status"; string status = manifest["status"]?.GetValue<string>() ?? "(none)";
            if (status != "completed") return (status, null, 0, null);
            field = "adapter"; var adapter = manifest["adapter"]?.Deserialize<AdapterConfig>(TrainConfig.Json);
            field = "seed"; int seed = manifest["seed"]?.GetValue<int>() ?? throw new FormatException("missing");
            field = "base_model"; string? baseModel = manifest["base_model"]?.GetValue<string>();
            return (status, adapter, seed, baseModel);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or NotSupportedException)
        { throw new FormatException($"{path}: {field}: unreadable ({e.Message})", e); }
    }

    public static List<RunSpectrum> Analyze(string experimentDir, double relativeTolerance = 1e-3, Action<string>? skipped = null)
    {
        string runs = Path.Combine(experimentDir, "runs");
        if (!Directory.Exists(runs)) throw new ArgumentException($"{Path.GetFullPath(experimentDir)} has no runs/ folder (an experiment's output folder is expected)", nameof(experimentDir));
        string specPath = Path.Combine(experimentDir, "spec.json");
        JsonObject? spec;
        try { spec = File.Exists(specPath) ? JsonNode.Parse(File.ReadAllText(specPath)) as JsonObject : null; }
        catch (JsonException e) { throw new FormatException($"{specPath}: not valid JSON ({e.Message})", e); }
        var result = new List<RunSpectrum>();
        foreach (var dir in Directory.GetDirectories(runs).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(dir), manifestPath = Path.Combine(dir, Trainer.ManifestFile);
            if (!File.Exists(manifestPath)) { skipped?.Invoke($"{name}: skipped, no {Trainer.ManifestFile} (never started)"); continue; }
            var (status, adapter, seed, baseModel) = ReadManifest(manifestPath);
            if (status != "completed" || Checkpoints.Latest(dir) is not { } checkpoint)
            { skipped?.Invoke($"{name}: skipped, not finished ({Trainer.ManifestFile} says {status}{(status == "completed" ? ", but it has no checkpoint" : "")})"); continue; }
            if (adapter is null) throw new FormatException($"{manifestPath}: no 'adapter' recorded");
            if (BaseOf(experimentDir, baseModel, spec, seed) is not { } baseDir)
            { skipped?.Invoke($"{name}: skipped, no base to subtract (trained from scratch, or its base folder is gone)"); continue; }
            using var model = ModelIO.Load(baseDir);
            Peft.Inject(model, adapter);
            var (tensors, _) = SafeTensors.Load(Path.Combine(checkpoint, "trainable.safetensors"));
            try
            {
                var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
                using (no_grad())
                    foreach (var (tensor, t) in tensors)
                    {
                        if (!parameters.TryGetValue(tensor, out var p) || !p.shape.SequenceEqual(t.shape))
                            throw new CheckpointMismatchException($"{checkpoint}: tensor {tensor} does not fit the rebuilt model (base {baseDir})", [tensor]);
                        p.copy_(t);
                    }
            }
            finally { foreach (var t in tensors.Values) t.Dispose(); }
            long step = long.Parse(Path.GetFileName(checkpoint)["step-".Length..]);
            result.Add(new RunSpectrum(name, adapter.Method == AdapterMethod.Mora ? $"mora-{adapter.Design ?? adapter.MoraType.ToString().ToLowerInvariant()}" : adapter.Method.ToString().ToLowerInvariant(),
                adapter.Method == AdapterMethod.Full ? 0 : adapter.R, step, DeltaWeightAnalysis.Analyze(model, relativeTolerance)));
        }
        if (result.Count == 0) throw new ArgumentException($"no finished run with a base under {Path.GetFullPath(runs)}", nameof(experimentDir));
        return result;
    }

    /// <summary>The base a run started from: the one its manifest names, else where the experiment's settings put it; null when none exists.</summary>
    static string? BaseOf(string experimentDir, string? recorded, JsonObject? spec, int seed)
    {
        var candidates = new List<string?> { recorded };
        if (spec?["BaseModel"]?.GetValueKind() == JsonValueKind.String) candidates.Add(spec["BaseModel"]!.GetValue<string>());
        if (spec?["BaseSeed"]?.GetValueKind() == JsonValueKind.Number) candidates.Add(Path.Combine(experimentDir, $"base-seed{spec["BaseSeed"]!.GetValue<int>()}", "model"));
        candidates.Add(Path.Combine(experimentDir, $"base-seed{seed}", "model"));
        candidates.Add(Path.Combine(experimentDir, "base", "model"));
        return candidates.FirstOrDefault(c => c is not null && File.Exists(Path.Combine(c, ModelIO.ConfigFile)));
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

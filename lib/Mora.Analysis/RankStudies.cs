using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.Model;
using Mora.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mora.Analysis;

/// <summary>One fit of the expressiveness experiment: how close a method's ΔW gets to a fixed full-rank target.</summary>
/// <param name="Method">the method's name (lora, mora-&lt;design&gt;)</param>
/// <param name="R">the LoRA rank whose parameter budget the fit has</param>
/// <param name="RHat">MoRA's r̂ at that budget (0 for LoRA)</param>
/// <param name="Parameters">trainable parameters</param>
/// <param name="Seconds">wall time of the fit</param>
/// <param name="RelativeError">‖ΔW − T‖_F / ‖T‖_F after the fit</param>
/// <param name="SvdOptimum">for LoRA, the best any rank-r matrix can do (Eckart–Young: √(Σ_{i&gt;r} σ_i²) / ‖T‖_F); NaN otherwise</param>
public sealed record FitRow(string Method, int R, int RHat, long Parameters, double RelativeError, double SvdOptimum, double Seconds);

/// <summary>Effective rank of the ΔW a method has learned, averaged over its adapted layers, at one step of training.</summary>
public sealed record RankPoint(string Method, long Step, double MeanEffectiveRank, double MeanRank, double Loss);

/// <summary>
/// Small, self-contained experiments the notebooks teach with.
/// <list type="bullet">
/// <item><see cref="Expressiveness"/>: fit a fixed full-rank d×k target T with LoRA and each MoRA design at the same
/// parameter budgets (Adam on ‖ΔW − T‖²_F / ‖T‖²_F): which ΔW structures can reach a high-rank map.</item>
/// <item><see cref="RankDynamics"/>: fine-tune a tiny model on UUID pairs and track the effective rank of ΔW as it learns.</item>
/// </list>
/// </summary>
public static class RankStudies
{
    /// <summary>Fits the target with each method at each rank budget (see the class remarks).</summary>
    /// <param name="d">rows of the target (out_features)</param>
    /// <param name="k">columns of the target (in_features)</param>
    /// <param name="ranks">LoRA rank budgets, each in 1 … min(d, k)</param>
    /// <param name="methods">lora and/or mora-&lt;design&gt;</param>
    /// <param name="steps">Adam steps per fit</param>
    /// <param name="lr">Adam's learning rate</param>
    /// <param name="seed">seeds the target and each fit's initialisation</param>
    /// <param name="progress">called with a line per finished fit</param>
    /// <param name="target">"gaussian": a random d×k matrix (full rank, flat spectrum, no structure); "identity": the
    /// d×k identity (full rank, and the structure of a lookup that maps each input to itself)</param>
    public static List<FitRow> Expressiveness(int d, int k, IReadOnlyList<int> ranks, IReadOnlyList<string> methods, int steps = 400, double lr = 2e-2,
        long seed = 0, Action<string>? progress = null, string target = "gaussian")
    {
        if (target is not ("gaussian" or "identity")) throw new ArgumentException($"target must be gaussian or identity, got '{target}'", nameof(target));
        if (steps <= 0) throw new ArgumentException($"steps must be positive, got {steps}", nameof(steps));
        if (ranks.Count == 0 || ranks.Any(r => r <= 0 || r > Math.Min(d, k))) throw new ArgumentException($"ranks must be in 1 … min(d, k) = {Math.Min(d, k)}", nameof(ranks));
        var specs = methods.Select(m => MethodSpec.Parse(m, nameof(methods))).ToList();
        if (specs.Any(s => s.Method is not (AdapterMethod.Lora or AdapterMethod.Mora))) throw new ArgumentException("methods must be lora or mora-<design>", nameof(methods));
        manual_seed(seed);
        using var goal = target == "gaussian" ? randn(d, k) / Math.Sqrt(k) : eye(d, k);
        double norm2 = goal.square().sum().item<float>();
        using var sv = linalg.svdvals(goal.to(ScalarType.Float64));
        var sigma = sv.data<double>().ToArray();
        double total = sigma.Sum(s => s * s);
        var rows = new List<FitRow>();
        foreach (int r in ranks)
            foreach (var m in specs)
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                manual_seed(seed + r);
                var parameters = new List<Parameter>();
                Func<Tensor> delta;
                CompressDecompress? op = null;
                if (m.Method == AdapterMethod.Lora)
                {
                    var a = new Parameter(randn(r, k) / Math.Sqrt(k));
                    var b = new Parameter(zeros(d, r));
                    parameters.AddRange([a, b]);
                    delta = () => b.matmul(a);
                }
                else
                {
                    try { op = CompressDecompress.ForLoraRank(d, k, r, m.Design!); }
                    catch (ArgumentException) { continue; }
                    var mm = new Parameter(zeros(op.RHat, op.RHat));
                    parameters.Add(mm);
                    delta = () => op.DeltaWeight(mm);
                }
                double loss = double.NaN;
                using (var opt = optim.Adam(parameters, lr))
                    for (int step = 0; step < steps; step++)
                    {
                        using var scope = NewDisposeScope();
                        opt.zero_grad();
                        var l = (delta() - goal).square().sum() / norm2;
                        l.backward();
                        opt.step();
                        loss = l.item<float>();
                    }
                double optimum = m.Method == AdapterMethod.Lora ? Math.Sqrt(sigma.Skip(r).Sum(s => s * s) / total) : double.NaN;
                long count = parameters.Sum(p => p.numel());
                rows.Add(new FitRow(m.Name, r, op?.RHat ?? 0, count, Math.Sqrt(Math.Max(0, loss)), optimum, clock.Elapsed.TotalSeconds));
                progress?.Invoke($"{m.Name} r={r}: relative error {Math.Sqrt(Math.Max(0, loss)):F4}");
                foreach (var p in parameters) p.Dispose();
            }
        return rows;
    }

    /// <summary>Fine-tunes a freshly initialised model (<paramref name="model"/> preset) on <paramref name="pairs"/> UUID pairs
    /// with each method at LoRA rank <paramref name="r"/> and records the effective rank of ΔW every <paramref name="every"/>
    /// steps; returns those points and, per method, the final spectra (σ_i/σ_1 of every layer's ΔW, averaged position-wise).</summary>
    public static (List<RankPoint> Points, Dictionary<string, double[]> FinalSpectra) RankDynamics(IReadOnlyList<string> methods, int r = 8, int steps = 200,
        int every = 20, int pairs = 32, string model = "tiny", double adapterLr = 1e-2, double fullLr = 3e-3, int seed = 0, Action<string>? progress = null)
    {
        if (every <= 0 || steps <= 0) throw new ArgumentException("steps and every must be positive", nameof(every));
        var task = new MemorizationTask(UuidPairs.Generate(pairs, seed));
        var points = new List<RankPoint>();
        var spectra = new Dictionary<string, double[]>();
        foreach (var name in methods)
        {
            var spec = MethodSpec.Parse(name, nameof(methods));
            using var net = task.NewModel(LlamaConfig.Preset(model, 128), seed);
            Peft.Inject(net, spec.Adapter(r));
            var config = new TrainConfig { Steps = steps, BatchSize = 16, LearningRate = spec.Method == AdapterMethod.Full ? fullLr : adapterLr, WarmupSteps = 10, ShowProgress = false, Seed = seed };
            var trainer = new Trainer(net, config, task.Train);
            List<DeltaWeightStats>? last = null;
            trainer.StepCompleted += s =>
            {
                if (s % every != 0 && s != steps) return;
                last = DeltaWeightAnalysis.Analyze(net);
                points.Add(new RankPoint(spec.Name, s, last.Average(x => x.EffectiveRank), last.Average(x => (double)x.Rank), double.NaN));
            };
            var result = trainer.Run();
            // the loss of a point is the loss logged at that step (row s − 1 of this run's log)
            for (int i = 0; i < points.Count; i++)
                if (points[i].Method == spec.Name)
                    points[i] = points[i] with { Loss = result.Log.Rows[(int)points[i].Step - 1].Loss };
            int width = last!.Min(x => x.SingularValues.Length);
            spectra[spec.Name] = Enumerable.Range(0, width).Select(i => last!.Average(x => x.SingularValues[i] / Math.Max(x.SingularValues[0], 1e-30))).ToArray();
            progress?.Invoke($"{spec.Name}: final loss {result.Log.Rows[^1].Loss:F3}, mean effective rank of ΔW {points[^1].MeanEffectiveRank:F1}");
        }
        return (points, spectra);
    }
}

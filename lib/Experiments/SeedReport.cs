using System.Globalization;
using System.Text;
using Mora.Evaluation;

namespace Mora.Experiments;

/// <summary>One reported run's scores, as <see cref="SeedReport"/> summarises them: its method, rank (0 for full
/// fine-tuning), seed, size, learning rate and named metrics in report order.</summary>
public sealed record RunScores(string Method, int Rank, int Seed, long TrainableParameters, double LearningRate, IReadOnlyList<(string Metric, double Value)> Scores);

/// <summary>
/// The over-seeds report both fine-tuning reproductions write: per method and rank the mean of each metric with its 95 %
/// interval (<c>*-summary.csv</c>), and each method's per-seed difference from LoRA at the same rank with its interval
/// (<c>*-paired.csv</c>; full fine-tuning is compared with LoRA at every rank). Differences are paired by seed, so what a
/// seed shares (its pairs or problems, its order) cancels.
/// </summary>
public static class SeedReport
{
    /// <summary>A table cell as every experiment's CSV writes a value: four decimals, blank for NaN (a step not evaluated).</summary>
    public static string F(double v) => double.IsNaN(v) ? "" : v.ToString("0.0000", CultureInfo.InvariantCulture);

    /// <summary>Where a mean learning curve stands at its last evaluation, by the stopping rule the memorisation runs are held
    /// to (train until the best method reaches 95 % or the curves are flat): "reached 95 %", "flat" (under 1 point, to one
    /// decimal, over the last interval), "falling: −x points …" or "still rising: +x points over the last n steps". Scores are fractions.</summary>
    public static string Trend(double before, double end, int interval)
    {
        if (interval <= 0) throw new ArgumentOutOfRangeException(nameof(interval), interval, "the last interval must be at least one step");
        // Classified as printed (one decimal), so "+1.0 points" is never called flat; through decimal, so a difference of
        // four-decimal means such as 9.55 points rounds as written, not as its binary neighbour 9.5499….
        decimal change = Math.Round((decimal)(100 * (end - before)), 1, MidpointRounding.AwayFromZero);
        return end >= 0.95 ? "reached 95 %"
            : Math.Abs(change) < 1m ? $"flat: {change:+0.0;-0.0} points over the last {interval} steps"
            : change < 0 ? $"falling: {change:0.0} points over the last {interval} steps"
            : $"still rising: {change:+0.0} points over the last {interval} steps";
    }

    /// <summary>The summary CSV: method, rank, seeds, trainable_parameters, learning_rate, then for each metric its mean,
    /// ci_low, ci_high and sd.</summary>
    public static string SummaryCsv(IReadOnlyList<RunScores> runs)
    {
        var metrics = runs[0].Scores.Select(s => s.Metric).ToList();
        var sb = new StringBuilder("method,rank,seeds,trainable_parameters,learning_rate,"
            + string.Join(",", metrics.Select(m => $"{m}_mean,{m}_ci_low,{m}_ci_high,{m}_sd")) + "\n");
        foreach (var g in runs.GroupBy(r => (r.Method, r.Rank)))
        {
            var list = g.ToList();
            sb.Append($"{g.Key.Method},{g.Key.Rank},{list.Count},{list[0].TrainableParameters},{LearningRateSweep.Lr(list[0].LearningRate)}");
            for (int i = 0; i < metrics.Count; i++)
            {
                var m = SeedStatistics.Mean95(list.Select(x => x.Scores[i].Value));
                sb.Append($",{F(m.Mean)},{F(m.Low)},{F(m.High)},{F(m.Sd)}");
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>Every method's per-seed difference from LoRA at each of <paramref name="ranks"/>, per metric.</summary>
    public static IEnumerable<(int Rank, string Method, string Metric, MeanInterval Difference)> Paired(IReadOnlyList<int> ranks, IReadOnlyList<RunScores> runs)
    {
        string lora = MethodSpec.Lora.Name;
        foreach (int rank in ranks)
        {
            var baseline = runs.Where(x => x.Method == lora && x.Rank == rank).ToList();
            if (baseline.Count == 0) continue;
            foreach (var g in runs.Where(x => x.Method != lora && (x.Rank == rank || x.Rank == 0)).GroupBy(x => x.Method))
                for (int i = 0; i < baseline[0].Scores.Count; i++)
                    yield return (rank, g.Key, baseline[0].Scores[i].Metric,
                        SeedStatistics.Paired95(g.ToDictionary(x => x.Seed, x => x.Scores[i].Value), baseline.ToDictionary(x => x.Seed, x => x.Scores[i].Value)));
        }
    }

    /// <summary>The paired CSV: rank, method, baseline (lora), metric, seeds, mean_difference, ci_low, ci_high.</summary>
    public static string PairedCsv(IReadOnlyList<int> ranks, IReadOnlyList<RunScores> runs)
    {
        var sb = new StringBuilder("rank,method,baseline,metric,seeds,mean_difference,ci_low,ci_high\n");
        foreach (var (rank, method, metric, d) in Paired(ranks, runs))
            sb.Append($"{rank},{method},lora,{metric},{d.N},{F(d.Mean)},{F(d.Low)},{F(d.High)}\n");
        return sb.ToString();
    }

    /// <summary>"above LoRA", "below LoRA" or "interval spans 0": what a paired difference says at 95 %.</summary>
    public static string Verdict(MeanInterval d) => d.AboveZero ? "above LoRA" : d.BelowZero ? "below LoRA" : "interval spans 0";

    /// <summary>The lines under a table: each method's paired difference from LoRA on <paramref name="metric"/>, in points.</summary>
    public static IEnumerable<string> PairedLines(IReadOnlyList<int> ranks, IReadOnlyList<RunScores> runs, string metric, string where) =>
        Paired(ranks, runs).Where(p => p.Metric == metric)
            .Select(p => $"{p.Method} − lora at r={p.Rank}, {where}, per seed: {p.Difference.Format(100)} points ({Verdict(p.Difference)})");
}

using System.Globalization;
using System.Text;
using Mora.Evaluation;

namespace Mora.Experiments;

/// <summary>A per-seed paired difference <c>Method − Baseline</c> of one metric at one rank, over the seeds both have.</summary>
public sealed record PairedDifference(int Rank, string Method, string Baseline, string Metric, MeanInterval Difference);

/// <summary>
/// The report every experiment writes, in one dialect (read back by <see cref="ReadRuns"/>, <see cref="ReadPaired"/> and
/// <see cref="ReadSummary"/>, which also accept the spellings of results committed before it):
/// <list type="bullet">
/// <item><c>{kind}.csv</c>: one row a run: <c>method,rank,seed,trainable_parameters,learning_rate,</c> the experiment's
/// score columns, <c>final_loss</c> (and <c>diverged</c> where runs may diverge);</item>
/// <item><c>{kind}-summary.csv</c>: per method and rank <c>seeds,trainable_parameters,learning_rate</c>, then per score
/// <c>_mean,_ci_low,_ci_high,_sd</c> (95 % t interval over the seeds that did not diverge);</item>
/// <item><c>{kind}-paired.csv</c>: <c>rank,method,baseline,metric,seeds,mean_difference,ci_low,ci_high</c>: each method's
/// per-seed difference from its baseline at the same rank (full fine-tuning, rank 0, is compared at every rank).
/// Differences are paired by seed, so what a seed shares (its data, its order) cancels.</item>
/// </list>
/// Numbers have four decimals; a blank cell is a value not measured (NaN). Rates print with three significant digits.
/// </summary>
public static class SeedReport
{
    /// <summary>A table cell as every experiment's CSV writes a value: four decimals, blank for NaN (not measured).</summary>
    public static string Cell(double v) => double.IsNaN(v) ? "" : v.ToString("0.0000", CultureInfo.InvariantCulture);

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

    static string Lr(double lr) => LearningRateSweep.Lr(lr);

    /// <summary>The per-run table.</summary>
    public static string RunsCsv(IReadOnlyList<RunRecord> runs, IReadOnlyList<string> columns, bool withDiverged = false)
    {
        var sb = new StringBuilder("method,rank,seed,trainable_parameters,learning_rate," + string.Concat(columns.Select(c => c + ",")) + "final_loss" + (withDiverged ? ",diverged" : "") + "\n");
        foreach (var r in runs)
            sb.Append($"{r.Method},{r.Rank},{r.Seed},{r.TrainableParameters},{Lr(r.LearningRate)},{string.Concat(columns.Select(c => Cell(r.Score(c)) + ","))}{Cell(r.FinalLoss)}" +
                      (withDiverged ? $",{(r.Diverged ? 1 : 0)}" : "") + "\n");
        return sb.ToString();
    }

    /// <summary>The summary table; <paramref name="withDiverged"/> adds the count of diverged runs left out.</summary>
    public static string SummaryCsv(IReadOnlyList<RunRecord> runs, IReadOnlyList<string> scores, bool withDiverged = false)
    {
        var sb = new StringBuilder("method,rank,seeds,trainable_parameters,learning_rate," + string.Join(",", scores.Select(m => $"{m}_mean,{m}_ci_low,{m}_ci_high,{m}_sd"))
                                   + (withDiverged ? ",diverged_runs" : "") + "\n");
        foreach (var g in runs.GroupBy(r => (r.Method, r.Rank)))
        {
            var ok = g.Where(r => !r.Diverged).ToList();
            var first = g.First();
            sb.Append($"{g.Key.Method},{g.Key.Rank},{ok.Count},{first.TrainableParameters},{Lr(first.LearningRate)}");
            foreach (var m in scores)
            {
                if (ok.Count == 0) { sb.Append(",,,,"); continue; }
                var s = SeedStatistics.Mean95(ok.Select(x => x.Score(m)));
                sb.Append($",{Cell(s.Mean)},{Cell(s.Low)},{Cell(s.High)},{Cell(s.Sd)}");
            }
            sb.Append(withDiverged ? $",{g.Count(r => r.Diverged)}\n" : "\n");
        }
        return sb.ToString();
    }

    /// <summary>Every comparison's per-seed difference at each of <paramref name="ranks"/>, for each of <paramref name="metrics"/>
    /// (runs that diverged left out). A method at rank 0 (full fine-tuning) meets its baseline at every rank; a comparison
    /// without runs of both sides at a rank is skipped.</summary>
    public static IEnumerable<PairedDifference> Paired(IReadOnlyList<int> ranks, IReadOnlyList<(string Method, string Baseline)> comparisons,
        IReadOnlyList<RunRecord> runs, IReadOnlyList<string> metrics)
    {
        List<RunRecord> At(string method, int rank) => runs.Where(r => r.Method == method && !r.Diverged && (r.Rank == rank || r.Rank == 0)).ToList();
        foreach (int rank in ranks.Count > 0 ? ranks : [0])
            foreach (var (method, baseline) in comparisons)
            {
                var a = At(method, rank);
                var b = At(baseline, rank);
                if (a.Count == 0 || b.Count == 0 || a.Concat(b).All(r => r.Rank == 0) && rank != 0) continue;
                foreach (var m in metrics)
                    yield return new PairedDifference(rank, method, baseline, m, SeedStatistics.Paired95(a.ToDictionary(x => x.Seed, x => x.Score(m)), b.ToDictionary(x => x.Seed, x => x.Score(m))));
            }
    }

    /// <summary>The paired table.</summary>
    public static string PairedCsv(IEnumerable<PairedDifference> paired)
    {
        var sb = new StringBuilder("rank,method,baseline,metric,seeds,mean_difference,ci_low,ci_high\n");
        foreach (var p in paired)
            sb.Append($"{p.Rank},{p.Method},{p.Baseline},{p.Metric},{p.Difference.N},{Cell(p.Difference.Mean)},{Cell(p.Difference.Low)},{Cell(p.Difference.High)}\n");
        return sb.ToString();
    }

    /// <summary>"above LoRA", "below LoRA" or "interval spans 0": what a paired difference says at 95 %.</summary>
    public static string Verdict(MeanInterval d) => d.AboveZero ? "above LoRA" : d.BelowZero ? "below LoRA" : "interval spans 0";

    /// <summary>The lines under a table: each method's paired difference from LoRA on <paramref name="metric"/>, in points.</summary>
    public static IEnumerable<string> PairedLines(IEnumerable<PairedDifference> paired, string metric, string where) =>
        paired.Where(p => p.Metric == metric)
            .Select(p => $"{p.Method} − {p.Baseline} at r={p.Rank}, {where}, per seed: {p.Difference.Format(100)} points ({Verdict(p.Difference)})");

    /// <summary>The rows of a table of means and intervals: "method r params lr" then one column per entry of
    /// <paramref name="columns"/> (its header and the value of a run, scaled by 100 and printed as mean [95 % interval]).</summary>
    public static string MeanTable(string title, IEnumerable<IGrouping<(string Method, int Rank), RunRecord>> groups, IReadOnlyList<(string Header, string Score)> columns)
    {
        var sb = new StringBuilder();
        sb.AppendLine(title);
        sb.Append($"{"method",-16} {"r",3} {"params",10} {"lr",8}");
        foreach (var (header, _) in columns) sb.Append($" {header,19}");
        sb.AppendLine();
        foreach (var g in groups)
        {
            var list = g.ToList();
            sb.Append($"{g.Key.Method,-16} {(g.Key.Rank == 0 ? "-" : g.Key.Rank.ToString(CultureInfo.InvariantCulture)),3} {list[0].TrainableParameters,10:N0} {Lr(list[0].LearningRate),8}");
            foreach (var (_, score) in columns) sb.Append($" {SeedStatistics.Mean95(list.Select(x => x.Score(score))).Format(100),19}");
            sb.AppendLine();
        }
        return sb.ToString();
    }

    // ------------------------------------------------------------------ reading back (today's dialect and the earlier ones)

    static readonly string[] RunFields = ["method", "rank", "seed", "trainable_parameters", "learning_rate", "lr", "final_loss", "final_train_loss", "diverged", "wall_seconds", "steps", "total_parameters"];

    static double Number(string s) => s.Length == 0 ? double.NaN : double.Parse(s, CultureInfo.InvariantCulture);

    /// <summary>The runs of a per-run table: every column other than the run's fields is a score. Reads the earlier
    /// spellings too (<c>lr</c>, <c>final_train_loss</c>, no <c>rank</c> or <c>learning_rate</c>: 0).</summary>
    public static IReadOnlyList<RunRecord> ReadRuns(string path)
    {
        var table = CsvTable.Read(path);
        var scores = table.Header.Where(h => !RunFields.Contains(h)).ToList();
        string? Cell(IReadOnlyDictionary<string, string> r, params string[] names) => names.Select(n => r.TryGetValue(n, out var v) ? v : null).FirstOrDefault(v => v is not null);
        return table.Rows.Select(r => new RunRecord(r["method"], int.Parse(Cell(r, "rank") ?? "0", CultureInfo.InvariantCulture), int.Parse(r["seed"], CultureInfo.InvariantCulture),
            long.Parse(r["trainable_parameters"], CultureInfo.InvariantCulture), Number(Cell(r, "learning_rate", "lr") ?? ""),
            scores.ToDictionary(s => s, s => Number(r[s])), Number(Cell(r, "final_loss", "final_train_loss") ?? ""), Number(Cell(r, "wall_seconds") ?? ""),
            Cell(r, "diverged") == "1") { TotalParameters = long.TryParse(Cell(r, "total_parameters"), out var t) ? t : 0 }).ToList();
    }

    /// <summary>One row of a paired table, its numbers as the file writes them.</summary>
    public sealed record PairedRow(string Rank, string Method, string Baseline, string Metric, int Seeds, string Mean, string Low, string High);

    /// <summary>The rows of a paired table: today's <c>rank,method,baseline,metric,seeds,mean_difference,ci_low,ci_high</c>, or
    /// the earlier continual (<c>comparison,rank,measure,seeds,mean,low,high</c>, comparison "a - b") and pretraining
    /// (<c>comparison,seeds,ppl_diff_mean,ppl_diff_low95,ppl_diff_high95,…</c>, comparison "a-b", metric heldout_ppl) ones.</summary>
    public static IReadOnlyList<PairedRow> ReadPaired(string path)
    {
        var table = CsvTable.Read(path);
        bool Has(string c) => table.Header.Contains(c);
        return table.Rows.Select(r =>
        {
            int seeds = int.Parse(r["seeds"], CultureInfo.InvariantCulture);
            if (Has("mean_difference")) return new PairedRow(r["rank"], r["method"], r["baseline"], r["metric"], seeds, r["mean_difference"], r["ci_low"], r["ci_high"]);
            if (Has("measure"))
            {
                var parts = r["comparison"].Split(" - ");
                if (parts.Length != 2) throw new FormatException($"{path}: comparison '{r["comparison"]}' is not 'method - baseline'");
                return new PairedRow(r["rank"], parts[0], parts[1], r["measure"], seeds, r["mean"], r["low"], r["high"]);
            }
            if (Has("ppl_diff_mean"))
            {
                int dash = r["comparison"].IndexOf('-');
                if (dash <= 0) throw new FormatException($"{path}: comparison '{r["comparison"]}' is not 'method-baseline'");
                return new PairedRow("", r["comparison"][..dash], r["comparison"][(dash + 1)..], "heldout_ppl", seeds, r["ppl_diff_mean"], r["ppl_diff_low95"], r["ppl_diff_high95"]);
            }
            throw new FormatException($"{path}: not a paired table (no mean_difference, measure or ppl_diff_mean column)");
        }).ToList();
    }

    /// <summary>A summary table with its columns in today's spellings (<c>learning_rate</c>, <c>_ci_low</c>, <c>_ci_high</c>),
    /// whichever dialect wrote it (earlier: <c>lr</c>, <c>_low</c>/<c>_high</c>, <c>_low95</c>/<c>_high95</c>).</summary>
    public static CsvTable ReadSummary(string path) => CsvTable.Read(path).Renamed(h =>
        h == "lr" ? "learning_rate"
        : h.EndsWith("_low95", StringComparison.Ordinal) ? h[..^"_low95".Length] + "_ci_low"
        : h.EndsWith("_high95", StringComparison.Ordinal) ? h[..^"_high95".Length] + "_ci_high"
        : h.EndsWith("_low", StringComparison.Ordinal) && !h.EndsWith("_ci_low", StringComparison.Ordinal) ? h[..^"_low".Length] + "_ci_low"
        : h.EndsWith("_high", StringComparison.Ordinal) && !h.EndsWith("_ci_high", StringComparison.Ordinal) ? h[..^"_high".Length] + "_ci_high"
        : h);
}

/// <summary>A committed CSV read by column name (plain comma-separated, header first, no quoting: the kit's own tables).</summary>
public sealed class CsvTable
{
    public IReadOnlyList<string> Header { get; }
    public IReadOnlyList<IReadOnlyDictionary<string, string>> Rows { get; }

    CsvTable(IReadOnlyList<string> header, IReadOnlyList<IReadOnlyDictionary<string, string>> rows) { Header = header; Rows = rows; }

    /// <summary>Reads <paramref name="path"/>; a row with the wrong number of cells is an error naming the file and line.</summary>
    public static CsvTable Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no file {Path.GetFullPath(path)}", path);
        var lines = File.ReadAllLines(path);
        if (lines.Length == 0) throw new FormatException($"{path}: empty (no header)");
        var header = lines[0].Split(',');
        var rows = new List<IReadOnlyDictionary<string, string>>();
        for (int i = 1; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            var cells = lines[i].Split(',');
            if (cells.Length != header.Length) throw new FormatException($"{path}:{i + 1}: {cells.Length} cells, the header has {header.Length}");
            rows.Add(header.Zip(cells).ToDictionary(p => p.First, p => p.Second));
        }
        return new CsvTable(header, rows);
    }

    /// <summary>The same table with each column renamed by <paramref name="rename"/>.</summary>
    public CsvTable Renamed(Func<string, string> rename) =>
        new(Header.Select(rename).ToList(), Rows.Select(r => (IReadOnlyDictionary<string, string>)r.ToDictionary(kv => rename(kv.Key), kv => kv.Value)).ToList());
}

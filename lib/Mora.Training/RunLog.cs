using System.Globalization;
using System.Text;
using Microsoft.Data.Analysis;
using Mora.IO;

namespace Mora.Training;

/// <summary>One logged optimizer step; <see cref="Metrics"/> holds evaluation results on the steps that evaluated.</summary>
public sealed record LogRow(long Step, long Tokens, double Loss, double LearningRate, double GradNorm, double TokensPerSecond, double WallSeconds,
    IReadOnlyDictionary<string, double> Metrics);

/// <summary>
/// The per-step log of a run: <c>step, tokens, loss, lr, grad_norm, tokens_per_s, wall_s</c> and one column per
/// evaluation metric (empty where the step did not evaluate). Written as CSV (atomically, whole) and available as a
/// Microsoft.Data.Analysis <see cref="DataFrame"/>.
/// </summary>
public sealed class RunLog
{
    public static readonly string[] FixedColumns = ["step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "wall_s"];
    readonly List<LogRow> _rows = [];

    public IReadOnlyList<LogRow> Rows => _rows;

    public void Add(LogRow row)
    {
        if (_rows.Count > 0 && row.Step <= _rows[^1].Step)
            throw new InvalidOperationException($"log rows must have increasing steps: step {row.Step} after {_rows[^1].Step}");
        _rows.Add(row);
    }

    /// <summary>Adds metrics to the row of <paramref name="step"/> (the last row).</summary>
    public void AddMetrics(long step, IReadOnlyDictionary<string, double> metrics)
    {
        if (_rows.Count == 0 || _rows[^1].Step != step) throw new InvalidOperationException($"no log row for step {step} to attach metrics to");
        var merged = new Dictionary<string, double>(_rows[^1].Metrics);
        foreach (var (k, v) in metrics) merged[k] = v;
        _rows[^1] = _rows[^1] with { Metrics = merged };
    }

    /// <summary>Drops rows after <paramref name="step"/> (used on resume, so no step appears twice).</summary>
    public void TruncateAfter(long step) => _rows.RemoveAll(r => r.Step > step);

    public IReadOnlyList<string> MetricNames => _rows.SelectMany(r => r.Metrics.Keys).Distinct().Order(StringComparer.Ordinal).ToList();

    /// <summary>The last value of a metric, or null.</summary>
    public double? Last(string metric) => _rows.LastOrDefault(r => r.Metrics.ContainsKey(metric))?.Metrics[metric];

    static string RoundTrip(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    public string ToCsv()
    {
        var metrics = MetricNames;
        var sb = new StringBuilder();
        sb.Append(string.Join(",", FixedColumns.Concat(metrics))).Append('\n');
        foreach (var r in _rows)
        {
            sb.Append(r.Step).Append(',').Append(r.Tokens).Append(',').Append(RoundTrip(r.Loss)).Append(',').Append(RoundTrip(r.LearningRate)).Append(',')
              .Append(RoundTrip(r.GradNorm)).Append(',').Append(RoundTrip(r.TokensPerSecond)).Append(',').Append(RoundTrip(r.WallSeconds));
            foreach (var m in metrics) sb.Append(',').Append(r.Metrics.TryGetValue(m, out var v) ? RoundTrip(v) : "");
            sb.Append('\n');
        }
        return sb.ToString();
    }

    public void WriteCsv(string path) => AtomicFile.WriteText(path, ToCsv());

    /// <summary>Reads a log written by <see cref="WriteCsv"/>; a bad line names the file and line.</summary>
    public static RunLog ReadCsv(string path)
    {
        var lines = File.ReadAllLines(path);
        if (lines.Length == 0) throw new FormatException($"{path}: empty log (no header)");
        var header = lines[0].Split(',');
        if (!header.Take(FixedColumns.Length).SequenceEqual(FixedColumns))
            throw new FormatException($"{path}:1: header must start with {string.Join(",", FixedColumns)}");
        var log = new RunLog();
        for (int i = 1; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            var cells = lines[i].Split(',');
            if (cells.Length != header.Length) throw new FormatException($"{path}:{i + 1}: {cells.Length} cells, header has {header.Length}");
            double Cell(int c) => double.TryParse(cells[c], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v
                : throw new FormatException($"{path}:{i + 1}: column {header[c]} is not a number: '{cells[c]}'");
            long L(int c) => long.TryParse(cells[c], CultureInfo.InvariantCulture, out var v) ? v
                : throw new FormatException($"{path}:{i + 1}: column {header[c]} is not an integer: '{cells[c]}'");
            var metrics = new Dictionary<string, double>();
            for (int c = FixedColumns.Length; c < header.Length; c++) if (cells[c].Length > 0) metrics[header[c]] = Cell(c);
            try { log.Add(new LogRow(L(0), L(1), Cell(2), Cell(3), Cell(4), Cell(5), Cell(6), metrics)); }
            catch (InvalidOperationException e) { throw new FormatException($"{path}:{i + 1}: {e.Message}", e); }
        }
        return log;
    }

    /// <summary>The log as a DataFrame: step and tokens as long, the rest double (null where a metric was not measured).</summary>
    public DataFrame ToDataFrame()
    {
        var columns = new List<DataFrameColumn>
        {
            new Int64DataFrameColumn("step", _rows.Select(r => r.Step)),
            new Int64DataFrameColumn("tokens", _rows.Select(r => r.Tokens)),
            new DoubleDataFrameColumn("loss", _rows.Select(r => r.Loss)),
            new DoubleDataFrameColumn("lr", _rows.Select(r => r.LearningRate)),
            new DoubleDataFrameColumn("grad_norm", _rows.Select(r => r.GradNorm)),
            new DoubleDataFrameColumn("tokens_per_s", _rows.Select(r => r.TokensPerSecond)),
            new DoubleDataFrameColumn("wall_s", _rows.Select(r => r.WallSeconds)),
        };
        foreach (var m in MetricNames)
            columns.Add(new DoubleDataFrameColumn(m, _rows.Select(r => r.Metrics.TryGetValue(m, out var v) ? v : (double?)null)));
        return new DataFrame(columns);
    }
}

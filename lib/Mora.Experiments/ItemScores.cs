using System.Globalization;
using System.Text;
using Mora.IO;

namespace Mora.Experiments;

/// <summary>
/// Per-item correctness of reported runs on a fixed test set, for the paired bootstrap over items × seeds
/// (<see cref="Mora.Evaluation.Inference.PairedBootstrap"/>, read by <see cref="Claims"/>): each run writes
/// <see cref="RunFile"/> in its folder (item, expected, the answer it gave at its last step, correct 0/1) before its
/// result.json, and the job collects them into <c>{kind}-items.csv</c> (method, rank, seed, item, answer, correct).
/// Used by the experiments whose test items are fixed (GSM8K-style, instruction tuning).
/// </summary>
public static class ItemScores
{
    public const string RunFile = "items.csv";

    /// <summary>Writes a run's items (atomically).</summary>
    public static void WriteRun(string runDir, IReadOnlyList<string> expected, IReadOnlyList<string> answers, IReadOnlyList<bool> right)
    {
        if (answers.Count != expected.Count || right.Count != expected.Count)
            throw new ArgumentException($"{expected.Count} items, {answers.Count} answers, {right.Count} scores", nameof(answers));
        var csv = new StringBuilder("item,expected,answer,correct\n");
        for (int i = 0; i < expected.Count; i++) csv.Append(CultureInfo.InvariantCulture, $"{i},{Cell(expected[i])},{Cell(answers[i])},{(right[i] ? 1 : 0)}\n");
        AtomicFile.WriteText(Path.Combine(runDir, RunFile), csv.ToString());
    }

    /// <summary>The job's table of every reported run's items (runs made before items were stored are absent); throws when
    /// a run's file does not hold <paramref name="items"/> items.</summary>
    public static string Collect(IEnumerable<RunRecord> runs, Func<RunRecord, string> runDir, int items)
    {
        var csv = new StringBuilder("method,rank,seed,item,answer,correct\n");
        foreach (var run in runs.Where(r => !r.Diverged))
        {
            string file = Path.Combine(runDir(run), RunFile);
            if (!File.Exists(file)) continue;
            var table = CsvTable.Read(file);
            if (table.Rows.Count != items) throw new FormatException($"{file}: {table.Rows.Count} items for {items} test items");
            foreach (var row in table.Rows) csv.Append(CultureInfo.InvariantCulture, $"{run.Method},{run.Rank},{run.Seed},{row["item"]},{row["answer"]},{row["correct"]}\n");
        }
        return csv.ToString();
    }

    /// <summary>The job's floor table: per seed, the base's scores before fine-tuning (<paramref name="columns"/>, each a
    /// fraction), written atomically to <paramref name="path"/>.</summary>
    public static void WriteFloor(string path, IEnumerable<int> seeds, string columns, Func<int, IEnumerable<double>> scores)
    {
        var csv = new StringBuilder($"seed,{columns}\n");
        foreach (int seed in seeds) csv.Append(CultureInfo.InvariantCulture, $"{seed},{string.Join(',', scores(seed).Select(SeedReport.Cell))}\n");
        AtomicFile.WriteText(path, csv.ToString());
    }

    /// <summary>Where a base's floor on a test set is cached in <paramref name="dir"/>: the file name holds a digest of the
    /// base's folder and of the test items, so a cache can never be read for another base or another test set (a copied
    /// or kept base folder, a rerun with other items).</summary>
    public static string FloorCache(string dir, string baseDir, IEnumerable<string> items)
    {
        var text = string.Join("\u0001", items.Prepend(Path.GetFullPath(baseDir)));
        string digest = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..12].ToLowerInvariant();
        return Path.Combine(dir, $"floor-test-{digest}.json");
    }

    /// <summary>An answer as a CSV cell: generated text can hold anything, so commas, quotes and line breaks become spaces.</summary>
    static string Cell(string s) => s.Replace(',', ' ').Replace('"', ' ').Replace('\n', ' ').Replace('\r', ' ');
}

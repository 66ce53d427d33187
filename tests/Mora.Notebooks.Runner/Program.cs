using System.CommandLine;
using Mora.Notebooks;

// Runs the notebooks headless, cell by cell, in the real .NET Interactive kernel; exit 1 if a cell fails, 2 on a bad argument.
// A run writes its runs and figures under runs/ (ignored by git); --write publishes: the executed outputs go into the
// notebooks and their figures into figures/notebooks/ (what the repository commits).
var names = new Option<string[]>("--names") { Description = "notebooks to run (prefixes such as 00 03; default: all in notebooks/)", AllowMultipleArgumentsPerToken = true };
var preset = new Option<string>("--preset") { Description = "fast or full (sets MORA_NOTEBOOK_PRESET for the kernel)", DefaultValueFactory = _ => "fast" };
var write = new Option<bool>("--write") { Description = "publish: write the outputs into the notebooks and their figures into figures/notebooks/" };
var record = new Option<string?>("--record") { Description = "also write each notebook's run time to this CSV (notebook, preset, cores, seconds)" };
var outDir = new Option<string?>("--out") { Description = "folder for runs/ and figures/ (MORA_NOTEBOOK_OUT; default: runs/ in the repository, or the repository itself with --write)" };
var root = new RootCommand("Run the notebooks headless in the real .NET Interactive kernel (the local tool).\n" +
                           "Usage: dotnet run -c Release --project tests/Mora.Notebooks.Runner -- [options]") { names, preset, write, outDir, record };
root.SetAction(pr =>
{
    string p = pr.GetValue(preset)!;
    if (!Notebook.Presets.Contains(p)) return Fail($"--preset: use {string.Join(" or ", Notebook.Presets)}, got '{p}'");
    string folder = Path.Combine(Notebook.RepoRoot, "notebooks");
    var all = Directory.GetFiles(folder, "*.ipynb").Order(StringComparer.Ordinal).ToList();
    var prefixes = pr.GetValue(names) is { Length: > 0 } n ? n : [];
    var chosen = prefixes.Length == 0 ? all : all.Where(f => prefixes.Any(x => Path.GetFileName(f).StartsWith(x, StringComparison.Ordinal))).ToList();
    if (chosen.Count == 0) return Fail($"--names: no notebook in {folder} starts with {string.Join(" or ", prefixes)}");
    bool publish = pr.GetValue(write);
    var env = new Dictionary<string, string> { [Notebook.PresetVariable] = p };
    if (pr.GetValue(outDir) is { } o) env[Notebook.OutVariable] = Path.GetFullPath(o);
    else if (publish) env[Notebook.OutVariable] = Notebook.RepoRoot;
    Console.WriteLine(env.TryGetValue(Notebook.OutVariable, out var root)
        ? $"runs and figures under {Notebook.Show(root)}{(publish ? "; outputs written into the notebooks" : "")}"
        : "runs under runs/notebooks, figures under runs/figures/notebooks (publish with --write)");
    int failed = 0;
    var times = new System.Text.StringBuilder("notebook,preset,cores,seconds\n");
    foreach (var nb in chosen)
    {
        Console.WriteLine($"{Path.GetFileName(nb)} ({p})");
        var results = NotebookRunner.Run(nb, env, publish ? nb : null, log: Console.Out);
        var bad = results.FirstOrDefault(r => !r.Ok);
        if (bad is not null) { failed++; Console.Error.WriteLine($"error: {Path.GetFileName(nb)} cell {bad.Index}: {bad.Error}"); }
        else Console.WriteLine($"  {results.Count} cells ok in {results.Sum(r => r.Seconds):F0} s");
        times.Append(FormattableString.Invariant($"{Path.GetFileNameWithoutExtension(nb)},{p},{Environment.ProcessorCount},{Math.Round(results.Sum(r => r.Seconds))}\n"));
    }
    if (pr.GetValue(record) is { } csv) Mora.IO.AtomicFile.WriteText(csv, times.ToString());
    return failed == 0 ? 0 : 1;
});
var parsed = root.Parse(args);
if (parsed.Errors.Count == 0) return parsed.Invoke();
foreach (var error in parsed.Errors) Console.Error.WriteLine($"error: {error.Message}");
return 2;

static int Fail(string message)
{
    Console.Error.WriteLine($"error: {message}");
    return 2;
}

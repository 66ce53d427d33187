using System.CommandLine;
using Mora.Notebooks;

namespace Mora.Cli;

/// <summary><c>notebooks</c>: run the notebooks headless in the real .NET Interactive kernel.</summary>
static class NotebooksCommand
{
    public static Command Create()
    {
        var names = new OptionNames();
        var notebookNames = new Option<string[]>("--names") { Description = "notebooks to run (prefixes such as 00 03; default: all in notebooks/)", AllowMultipleArgumentsPerToken = true };
        var preset = new Option<string>("--preset") { Description = "fast or full (sets MORA_NOTEBOOK_PRESET for the kernel)", DefaultValueFactory = _ => "fast" };
        var write = new Option<bool>("--write") { Description = "write the outputs into the notebooks (what the committed notebooks carry)" };
        var outDir = new Option<string?>("--out") { Description = "folder for runs/ and figures/ (MORA_NOTEBOOK_OUT; default: the repository)" };
        var command = new Command("notebooks", "Run the notebooks headless, cell by cell, in the real .NET Interactive kernel (the local tool); exit 1 if a cell fails.")
            { notebookNames, preset, write, outDir };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            string p = pr.GetValue(preset)!;
            if (!Notebook.Presets.Contains(p)) throw new ArgumentException($"--preset: use fast or full, got '{p}'");
            string folder = Path.Combine(Notebook.RepoRoot, "notebooks");
            var all = Directory.GetFiles(folder, "*.ipynb").Order(StringComparer.Ordinal).ToList();
            var prefixes = pr.GetValue(notebookNames) is { Length: > 0 } n ? n : [];
            var chosen = prefixes.Length == 0 ? all : all.Where(f => prefixes.Any(x => Path.GetFileName(f).StartsWith(x, StringComparison.Ordinal))).ToList();
            if (chosen.Count == 0) throw new ArgumentException($"--names: no notebook in {folder} starts with {string.Join(" or ", prefixes)}");
            var env = new Dictionary<string, string> { [Notebook.PresetVariable] = p };
            if (pr.GetValue(outDir) is { } o) env[Notebook.OutVariable] = Path.GetFullPath(o);
            int failed = 0;
            foreach (var nb in chosen)
            {
                Console.WriteLine($"{Path.GetFileName(nb)} ({p})");
                var results = NotebookRunner.Run(nb, env, pr.GetValue(write) ? nb : null, log: Console.Out);
                var bad = results.FirstOrDefault(r => !r.Ok);
                if (bad is not null) { failed++; Console.Error.WriteLine($"error: {Path.GetFileName(nb)} cell {bad.Index}: {bad.Error}"); }
                else Console.WriteLine($"  {results.Count} cells ok in {results.Sum(r => r.Seconds):F0} s");
            }
            return failed == 0 ? 0 : 1;
        }));
        return command;
    }
}

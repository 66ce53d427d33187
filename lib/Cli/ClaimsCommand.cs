using System.CommandLine;
using Mora.Experiments;
using Mora.IO;

namespace Mora.Cli;

/// <summary><c>claims</c>: the paper's claims checked against the committed results; <c>--write-readme</c> regenerates the
/// README's results section from them.</summary>
static class ClaimsCommand
{
    public static Command Create()
    {
        var names = new OptionNames();
        var root = names.Bind(new Option<string>("--root") { Description = "the repository (its figures/ holds the committed results)", DefaultValueFactory = _ => "." }, "repoRoot");
        var write = new Option<bool>("--write-readme") { Description = "replace README.md's results section (between its markers) with the table" };
        var command = new Command("claims", "Check each of the paper's claims against the committed results (mean, 95 % interval, ✓ / ✗ / not resolved) and print the README's results table.")
            { root, write };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            string repo = pr.GetValue(root)!;
            string table = Claims.Markdown(Claims.Evaluate(repo));
            Console.WriteLine(table);
            if (pr.GetValue(write))
            {
                string readme = Path.Combine(repo, "README.md");
                AtomicFile.WriteText(readme, Claims.Splice(File.ReadAllText(readme), table));
                Console.WriteLine($"wrote the results section of {readme}");
            }
            return 0;
        }));
        return command;
    }
}

using System.CommandLine;
using Mora.Figures;
using Mora.IO;

namespace Mora.Cli;

/// <summary><c>plot</c>: figures from run logs.</summary>
static class PlotCommand
{
    public static Command Create()
    {
        var names = new OptionNames();
        var runs = names.Bind(new Option<string>("--runs") { Description = "folder searched for run logs (log.csv)" }, "runsRoot");
        names["root"] = runs.Name;
        var sweep = names.Bind(new Option<string>("--sweep") { Description = "a job's folder (its lr-sweep.csv, and spec.json for the horizons): draws the learning-rate sweep into that folder as lr-sweep.html and lr-sweep.png (--out, --name and --smooth are for --runs)" }, "folder");
        var outDir = new Option<string>("--out") { Description = "folder for the figures (default runs/figures, ignored by git)", DefaultValueFactory = _ => Path.Combine("runs", "figures") };
        var name = names.Bind(new Option<string>("--name") { Description = "file name prefix of the figures", DefaultValueFactory = _ => "runs" }, "prefix");
        var smooth = new Option<double>("--smooth") { Description = "EMA smoothing of the loss curves, in [0, 1)", DefaultValueFactory = _ => 0.6 };
        var command = new Command("plot", "Turn run logs into figures: interactive offline HTML (plotly.js inlined) and PNG, loss and every evaluation metric by step; " +
            "or, with --sweep, a job's learning-rate sweep (the score against the rate, per method and rank).")
            { runs, sweep, outDir, name, smooth };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            if (pr.GetValue(sweep) is { } folder)
            {
                var (html, png) = Mora.Experiments.SweepFigure.Draw(folder);
                Console.WriteLine(html);
                Console.WriteLine(png);
                return 0;
            }
            if (pr.GetValue(runs) is not { } root) throw new ArgumentException("--runs: name a folder of run logs (or --sweep a job's folder)", "runsRoot");
            foreach (var f in RunFigures.PlotRuns(root, pr.GetValue(outDir)!, SafePath.Name(pr.GetValue(name)!, "--name"), pr.GetValue(smooth)))
                Console.WriteLine(f);
            return 0;
        }));
        return command;
    }
}

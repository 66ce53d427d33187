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
        var runs = names.Bind(new Option<string>("--runs") { Description = "folder searched for run logs (log.csv)", Required = true }, "runsRoot");
        names["root"] = runs.Name;
        var outDir = new Option<string>("--out") { Description = "folder for the figures (default runs/figures, ignored by git)", DefaultValueFactory = _ => Path.Combine("runs", "figures") };
        var name = names.Bind(new Option<string>("--name") { Description = "file name prefix of the figures", DefaultValueFactory = _ => "runs" }, "prefix");
        var smooth = new Option<double>("--smooth") { Description = "EMA smoothing of the loss curves, in [0, 1)", DefaultValueFactory = _ => 0.6 };
        var command = new Command("plot", "Turn run logs into figures: interactive offline HTML (plotly.js inlined) and PNG, loss and every evaluation metric by step.")
            { runs, outDir, name, smooth };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            foreach (var f in RunFigures.PlotRuns(pr.GetValue(runs)!, pr.GetValue(outDir)!, SafePath.Name(pr.GetValue(name)!, "--name"), pr.GetValue(smooth)))
                Console.WriteLine(f);
            return 0;
        }));
        return command;
    }
}

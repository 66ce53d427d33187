using System.CommandLine;
using System.Globalization;
using Mora.Cli;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

var root = new RootCommand(
    "Mora.Notebooks: MoRA (Jiang et al. 2024, arXiv 2405.12130) operators, adapters and analyses on TorchSharp.\n" +
    $"Call it from the repository root as `{CliSupport.Invocation} <command> [options]`.\n" +
    "With no command it runs the default job: a small memorisation reproduction (LoRA vs MoRA vs full fine-tuning on UUID pairs, CPU, under a minute on 2 idle cores).")
{
    InfoCommand.Create(), RankCommand.Create(), DesignsCommand.Create(args), MemorizationCommand.Create(args), Gsm8kCommand.Create(args),
    PretrainCommand.Create(args), ContinualCommand.Create(args),
    BenchCommand.Create(args), PlotCommand.Create(), ClaimsCommand.Create(), BundleCommand.Create(),
    EvidenceCommand.Create(args),
};
root.SetAction(_ => MemorizationCommand.DefaultJob());

var parsed = root.Parse(args);
if (parsed.Errors.Count == 0) return parsed.Invoke();
// A bad argument exits 2 like every other bad argument (System.CommandLine alone would exit 1).
foreach (var error in parsed.Errors) Console.Error.WriteLine($"error: {error.Message}");
string command = args.FirstOrDefault(a => !a.StartsWith('-')) is { } c && root.Subcommands.Any(s => s.Name == c) ? $"{c} " : "";
Console.Error.WriteLine($"(`{CliSupport.Invocation} {command}--help` lists the options)");
return 2;

using System.CommandLine;
using System.Globalization;
using Mora.Cli;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
CliSupport.CommandLine = args;

var root = new RootCommand(
    "Mora.Notebooks: MoRA (Jiang et al. 2024, arXiv 2405.12130) operators, adapters and analyses on TorchSharp.\n" +
    $"Call it from the repository root as `{CliSupport.Invocation} <command> [options]`.\n" +
    "With no command it runs the default job: a small memorisation reproduction (LoRA vs MoRA vs full fine-tuning on UUID pairs, CPU, under a minute on 2 idle cores).")
{
    InfoCommand.Create(), RankCommand.Create(), DesignsCommand.Create(), MemorizationCommand.Create(), Gsm8kCommand.Create(),
    PretrainCommand.Create(), ContinualCommand.Create(), InstructCommand.Create(),
    BenchCommand.Create(), PlotCommand.Create(), ClaimsCommand.Create(), BundleCommand.Create(),
    EvidenceCommand.Create(),
};
root.SetAction(_ => MemorizationCommand.DefaultJob());

var parsed = root.Parse(args);
if (parsed.Errors.Count == 0) return parsed.Invoke();
// A bad argument exits 2 like every other bad argument (System.CommandLine alone would exit 1), said in words.
var command = parsed.CommandResult.Command;
foreach (var error in parsed.Errors) Console.Error.WriteLine($"error: {ParseErrors.Describe(error.Message, command)}");
string name = command == root ? "" : $"{command.Name} ";
Console.Error.WriteLine($"(`{CliSupport.Invocation} {name}--help` lists the options)");
return 2;

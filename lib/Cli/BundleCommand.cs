using System.CommandLine;

namespace Mora.Cli;

/// <summary><c>bundle</c>: the kit packed for a Linux GPU server that has PyTorch and no .NET (see <see cref="KitBundle"/>).</summary>
static class BundleCommand
{
    public static Command Create()
    {
        var outDir = new Option<string?>("--out") { Description = "output folder (default: .device/ in the repository)" };
        var command = new Command("bundle", "Pack the kit for a Linux GPU server with PyTorch and no .NET: the .NET runtime, the kit built with -p:TorchBackend=pytorch (no libtorch), and run.sh.") { outDir };
        command.SetAction(pr => CliSupport.Guard(new OptionNames(), () =>
        {
            try
            {
                var files = KitBundle.Create(pr.GetValue(outDir), Console.Out);
                foreach (var f in files) Console.WriteLine($"{new FileInfo(f).Length / 1048576.0,7:F1} MiB  {f}");
                Console.WriteLine($"total {files.Sum(f => new FileInfo(f).Length) / 1048576.0:F1} MiB. Copy the folder to the server, then: bash <folder>/run.sh info");
                return 0;
            }
            catch (InvalidOperationException e) { Console.Error.WriteLine($"error: {e.Message}"); return 1; }
        }));
        return command;
    }
}

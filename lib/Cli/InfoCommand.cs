using System.CommandLine;
using Mora.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Cli;

/// <summary><c>info</c>: the TorchSharp runtime and a tensor check.</summary>
static class InfoCommand
{
    public static Command Create()
    {
        var command = new Command("info", "Show the TorchSharp runtime (native fix, which libtorch and its symbol check, device, threads) and run a tensor check.");
        command.SetAction(_ => CliSupport.Guard(new OptionNames(), Run));
        return command;
    }

    static int Run()
    {
        var report = TorchRuntime.Ensure();
        Console.WriteLine($"TorchSharp native fix: {report.Action}");
        if (report.SystemLibStdCxx is not null) Console.WriteLine($"  system libstdc++: {report.SystemLibStdCxx}");
        foreach (var f in report.Patched) Console.WriteLine($"  patched: {f}");
        var lt = report.LibTorch;
        if (lt.Check is { } check)
        {
            Console.WriteLine($"libtorch: {check.Folder} (from {lt.Source}; build TorchBackend={lt.Backend}), torch {check.TorchVersion}");
            Console.WriteLine($"  symbol check: {check.Summary}");
            Console.WriteLine($"  preloaded: {string.Join(", ", lt.Preloaded.Select(Path.GetFileName))}");
        }
        else Console.WriteLine($"libtorch: the package natives (build TorchBackend={lt.Backend}; set {LibTorchBinding.EnvironmentVariable} to use an installed PyTorch's)");
        Console.WriteLine($"CUDA available: {cuda.is_available()}  default device: {ComputeDevice.Default()}");
        Console.WriteLine(CpuThreads.Configure());
        using var a = randn(128, 64, dtype: ScalarType.Float64);
        using var q = linalg.qr(a).Q;
        using var err = (q.t().matmul(q) - eye(64, dtype: ScalarType.Float64)).abs().max();
        bool ok = err.item<double>() < 1e-10;
        Console.WriteLine($"tensor check: {(ok ? "ok" : "FAILED")} (|QᵀQ − I| = {err.item<double>():g3})");
        return ok ? 0 : 1;
    }
}

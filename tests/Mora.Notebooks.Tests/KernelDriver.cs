using System.Diagnostics;
using System.Text.Json;

namespace Mora.Tests;

/// <summary>Drives the real .NET Interactive kernel (the <c>Microsoft.dotnet-interactive</c> local tool, the one VS Code
/// launches) over its stdio JSON protocol, one cell at a time as a notebook does.</summary>
public sealed class KernelDriver : IDisposable
{
    readonly Process _process;
    int _next;

    public KernelDriver(string workingDirectory, IDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo("dotnet", "dotnet-interactive stdio")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            WorkingDirectory = workingDirectory, UseShellExecute = false,
        };
        psi.Environment["DOTNET_INTERACTIVE_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        _process = Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet-interactive");
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginErrorReadLine();
    }

    /// <summary>Runs one C# cell; returns whether it succeeded, its standard output, and the failure message.</summary>
    public (bool Ok, string Output, string Error) Submit(string code, TimeSpan timeout)
    {
        string token = $"cell{_next++}";
        var command = new { token, commandType = "SubmitCode", command = new { code, targetKernelName = "csharp" } };
        _process.StandardInput.WriteLine(JsonSerializer.Serialize(command));
        _process.StandardInput.Flush();
        var output = new System.Text.StringBuilder();
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var read = _process.StandardOutput.ReadLineAsync();
            if (!read.Wait(deadline - DateTime.UtcNow)) break;
            string? line = read.Result;
            if (line is null) return (false, output.ToString(), "the kernel exited");
            if (!line.StartsWith('{')) continue;
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            if (!root.TryGetProperty("command", out var cmd) || cmd.ValueKind != JsonValueKind.Object
                || !cmd.TryGetProperty("token", out var tok) || tok.GetString() != token) continue;
            string type = root.GetProperty("eventType").GetString()!;
            var ev = root.GetProperty("event");
            switch (type)
            {
                case "StandardOutputValueProduced":
                    output.Append(ev.GetProperty("formattedValues")[0].GetProperty("value").GetString());
                    break;
                case "CommandFailed":
                    return (false, output.ToString(), ev.GetProperty("message").GetString() ?? "");
                case "CommandSucceeded":
                    return (true, output.ToString(), "");
            }
        }
        return (false, output.ToString(), $"timed out after {timeout}");
    }

    public void Dispose()
    {
        try { _process.StandardInput.Close(); if (!_process.WaitForExit(3000)) _process.Kill(true); } catch (InvalidOperationException) { }
        _process.Dispose();
    }
}

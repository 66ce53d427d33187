using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Mora.Notebooks;

/// <summary>One output of a cell, as a Jupyter notebook stores it; <see cref="ValueId"/> names a displayed value the cell
/// may update in place (a live progress line), so the stored output is its last state.</summary>
public sealed record CellOutput(string Kind, string? Text, IReadOnlyDictionary<string, string>? Data, string? ValueId = null)
{
    /// <summary>The id the kernel's updates of this value came under (see <see cref="KernelSession.Submit"/>).</summary>
    public string? UpdateId { get; init; }

    public bool IsHtmlContaining(string s) => Data is not null && Data.TryGetValue("text/html", out var h) && h.Contains(s, StringComparison.Ordinal);
}

/// <summary>What running one code cell gave.</summary>
public sealed record CellResult(int Index, bool Ok, string Error, IReadOnlyList<CellOutput> Outputs, double Seconds);

/// <summary>
/// The real .NET Interactive kernel (the <c>Microsoft.dotnet-interactive</c> local tool, the one VS Code and Jupyter
/// launch) driven over its stdio JSON protocol, one cell at a time as a notebook front end does.
/// </summary>
public sealed class KernelSession : IDisposable
{
    readonly Process _process;
    int _next;

    public KernelSession(string workingDirectory, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo("dotnet", "dotnet-interactive stdio")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            WorkingDirectory = workingDirectory, UseShellExecute = false,
        };
        psi.Environment["DOTNET_INTERACTIVE_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        _process = Process.Start(psi) ?? throw new InvalidOperationException("could not start 'dotnet dotnet-interactive stdio' (run 'dotnet tool restore' in the repository)");
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginErrorReadLine();
    }

    /// <summary>The kernel's process id (for measuring its memory).</summary>
    public int ProcessId => _process.Id;

    /// <summary>Runs one C# cell and collects its outputs (standard output, displayed and returned values, the error).</summary>
    public CellResult Submit(string code, TimeSpan timeout, int index = 0)
    {
        string token = $"cell{_next++}";
        var command = new { token, commandType = "SubmitCode", command = new { code, targetKernelName = "csharp" } };
        _process.StandardInput.WriteLine(JsonSerializer.Serialize(command));
        _process.StandardInput.Flush();
        var outputs = new List<CellOutput>();
        var clock = Stopwatch.StartNew();
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var read = _process.StandardOutput.ReadLineAsync();
            if (!read.Wait(deadline - DateTime.UtcNow)) break;
            string? line = read.Result;
            if (line is null) return new(index, false, "the kernel exited", outputs, clock.Elapsed.TotalSeconds);
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
                case "StandardErrorValueProduced":
                    string text = ev.GetProperty("formattedValues")[0].GetProperty("value").GetString() ?? "";
                    if (outputs.Count > 0 && outputs[^1].Kind == (type[8] == 'O' ? "stdout" : "stderr")) outputs[^1] = outputs[^1] with { Text = outputs[^1].Text + text };
                    else outputs.Add(new CellOutput(type[8] == 'O' ? "stdout" : "stderr", text, null));
                    break;
                case "DisplayedValueProduced":
                case "ReturnValueProduced":
                    outputs.Add(new CellOutput(type == "ReturnValueProduced" ? "result" : "display", null, FormattedValues(ev), ValueId(ev)));
                    break;
                case "DisplayedValueUpdated":
                    // An update replaces the displayed value it names, as Jupyter's update_display_data does. This kernel
                    // (1.0.712001) sends a DisplayedValue's updates under another id than the one its first display carried,
                    // so an update whose id names no output binds, once, to the latest display of the cell that no update
                    // has bound yet and that is plain text (a live progress line; never a chart or a table shown since). Later
                    // updates with that id follow it.
                    string? id = ValueId(ev);
                    int at = id is null ? -1 : outputs.FindLastIndex(o => o.ValueId == id || o.UpdateId == id);
                    if (at < 0 && id is not null)
                    {
                        at = outputs.FindLastIndex(o => o.Kind == "display" && o.UpdateId is null && o.Data is { Count: 1 } d && d.ContainsKey("text/plain"));
                        if (at >= 0) outputs[at] = outputs[at] with { UpdateId = id };
                    }
                    if (at >= 0) outputs[at] = outputs[at] with { Data = FormattedValues(ev) };
                    break;
                case "CommandFailed":
                    return new(index, false, ev.GetProperty("message").GetString() ?? "", outputs, clock.Elapsed.TotalSeconds);
                case "CommandSucceeded":
                    return new(index, true, "", outputs, clock.Elapsed.TotalSeconds);
            }
        }
        return new(index, false, $"timed out after {timeout}", outputs, clock.Elapsed.TotalSeconds);
    }

    static Dictionary<string, string> FormattedValues(JsonElement ev)
    {
        var data = new Dictionary<string, string>();
        foreach (var f in ev.GetProperty("formattedValues").EnumerateArray())
            data[f.GetProperty("mimeType").GetString()!] = f.GetProperty("value").GetString() ?? "";
        return data;
    }

    static string? ValueId(JsonElement ev) => ev.TryGetProperty("valueId", out var id) && id.ValueKind == JsonValueKind.String ? id.GetString() : null;

    public void Dispose()
    {
        // Kill the whole tree while `dotnet` (the muxer) still runs: closing stdin first let the muxer exit and left the
        // kernel itself (Microsoft.DotNet.Interactive.App) orphaned, spinning at a fifth of a core after every test.
        try { if (!_process.HasExited) _process.Kill(entireProcessTree: true); _process.WaitForExit(5000); } catch (InvalidOperationException) { }
        _process.Dispose();
    }
}

/// <summary>
/// Runs a .ipynb top to bottom in a fresh real kernel (started in the notebook's folder, as VS Code starts it), every code
/// cell in order, none skipped, and writes the notebook back with the outputs (atomically) when asked. Stops at the
/// first failing cell, as "Run All" does.
/// </summary>
public static class NotebookRunner
{
    public static IReadOnlyList<string> CodeCells(string notebookPath) =>
        Cells(JsonNode.Parse(File.ReadAllText(notebookPath))!).Where(c => c["cell_type"]!.GetValue<string>() == "code").Select(Source).ToList();

    static IEnumerable<JsonObject> Cells(JsonNode doc) => doc["cells"]!.AsArray().Select(c => c!.AsObject());

    static string Source(JsonObject cell) => cell["source"] switch
    {
        JsonArray a => string.Concat(a.Select(x => x!.GetValue<string>())),
        JsonValue v => v.GetValue<string>(),
        _ => "",
    };

    /// <param name="notebookPath">the .ipynb</param>
    /// <param name="environment">variables for the kernel (MORA_NOTEBOOK_PRESET, MORA_NOTEBOOK_OUT)</param>
    /// <param name="writeTo">where to write the executed notebook (null: do not write)</param>
    /// <param name="cellTimeout">the longest one cell may take</param>
    /// <param name="log">progress, a line a cell</param>
    public static List<CellResult> Run(string notebookPath, IReadOnlyDictionary<string, string>? environment = null, string? writeTo = null,
        TimeSpan? cellTimeout = null, TextWriter? log = null)
    {
        if (!File.Exists(notebookPath)) throw new FileNotFoundException($"notebook not found: {notebookPath}", notebookPath);
        var doc = JsonNode.Parse(File.ReadAllText(notebookPath)) ?? throw new FormatException($"{notebookPath}: not JSON");
        var results = new List<CellResult>();
        using var kernel = new KernelSession(Path.GetDirectoryName(Path.GetFullPath(notebookPath))!, environment);
        int count = 0, index = 0;
        foreach (var cell in Cells(doc))
        {
            if (cell["cell_type"]!.GetValue<string>() != "code") continue;
            index++;
            var result = kernel.Submit(Source(cell), cellTimeout ?? TimeSpan.FromMinutes(10), index);
            results.Add(result);
            log?.WriteLine($"  {Path.GetFileName(notebookPath)} cell {index}: {(result.Ok ? "ok" : "FAILED")} in {result.Seconds:F1} s");
            cell["execution_count"] = ++count;
            cell["outputs"] = Outputs(result, count);
            if (!result.Ok) break;
        }
        // The run itself, for readers and the README: preset, cores and seconds (the full-preset times the README quotes).
        doc["metadata"]!["mora_run"] = new JsonObject
        {
            ["preset"] = environment?.GetValueOrDefault("MORA_NOTEBOOK_PRESET"),
            ["cores"] = Environment.ProcessorCount,
            ["seconds"] = Math.Round(results.Sum(r => r.Seconds)),
        };
        if (writeTo is not null) Mora.IO.AtomicFile.WriteText(writeTo, doc.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n");
        return results;
    }

    /// <summary>A JSON output as an object, or null (kept as text) when the kernel sent something that is not JSON.</summary>
    static JsonNode? ParseJson(string value)
    {
        try { return JsonNode.Parse(value); }
        catch (JsonException) { return null; }
    }

    static JsonArray Outputs(CellResult result, int count)
    {
        static JsonArray Lines(string s)
        {
            var parts = s.Split('\n');
            var lines = new JsonArray();
            for (int i = 0; i < parts.Length; i++)
            {
                string line = i < parts.Length - 1 ? parts[i] + "\n" : parts[i];
                if (line.Length > 0) lines.Add(line);
            }
            return lines;
        }
        var outputs = new JsonArray();
        foreach (var o in result.Outputs)
        {
            if (o.Kind is "stdout" or "stderr")
                outputs.Add(new JsonObject { ["output_type"] = "stream", ["name"] = o.Kind, ["text"] = Lines(o.Text ?? "") });
            else
            {
                var data = new JsonObject();
                // JSON forms (application/json, application/vnd.plotly.v1+json, …) are objects in the file, as nbformat has them;
                // a PNG is one base64 string; text is split into lines.
                foreach (var (mime, value) in o.Data!)
                    data[mime] = mime.EndsWith("json", StringComparison.Ordinal) && ParseJson(value) is { } json ? json
                        : mime.StartsWith("image/", StringComparison.Ordinal) && mime != "image/svg+xml" ? JsonValue.Create(value) : Lines(value);
                var output = new JsonObject { ["output_type"] = o.Kind == "result" ? "execute_result" : "display_data", ["data"] = data, ["metadata"] = new JsonObject() };
                if (o.Kind == "result") output["execution_count"] = count;
                outputs.Add(output);
            }
        }
        if (!result.Ok)
            outputs.Add(new JsonObject { ["output_type"] = "error", ["ename"] = "Error", ["evalue"] = result.Error, ["traceback"] = new JsonArray() });
        return outputs;
    }
}

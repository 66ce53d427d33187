using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Text.RegularExpressions;

namespace Mora.Tests;

/// <summary>
/// bench/gpu/evidence.sh, the prepared GPU evidence command, run here as its CPU smoke (tiny settings, this build's kit):
/// the folder layout, SUMMARY.md's line for every step with ok / skipped-and-why, the kit's parts all ok, the PyTorch-eager
/// layer check when torch is importable (and its skip reason when it is not), the kill-and-resume run bit-identical on the
/// CPU, the budget respected, and the packing into at most 8 files of at most 16 MiB. A second run with a kit that never
/// finishes (a stand-in script that sleeps) and a small budget checks that a step is stopped at its share, that the parts
/// after it are still recorded, and that the whole run ends within its budget.
/// </summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class GpuEvidenceTests
{
    static string Script => Path.Combine(TestSupport.RepoRoot, "bench", "gpu", "evidence.sh");
    static string Dll => Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.dll");

    sealed record Run(int Code, string Output, string Dir, string Pack, double Seconds, string Summary, List<(string Part, string Step, string Status, string Detail)> Rows);

    static Run Evidence(int budget, string kit, string extra)
    {
        string dir = Path.Combine(TestSupport.TempDir(), "evidence");
        var clock = Stopwatch.StartNew();
        var (code, output) = NativeAndBuildTests.Run("bash", $"\"{Script}\" {budget} \"{dir}\" --cpu-smoke --kit \"{kit}\" {extra}", timeoutMs: (budget + 120) * 1000,
            environment: new Dictionary<string, string?> { ["OUT"] = null, ["MORA_PYTHON"] = null, ["MORA_KIT"] = null, ["MORA_ROTATION"] = null });
        double seconds = clock.Elapsed.TotalSeconds;
        string pack = dir + ".pack";
        string summaryPath = Path.Combine(dir, "SUMMARY.md");
        Assert.True(File.Exists(summaryPath), $"no SUMMARY.md (exit {code}):\n{output}");
        string summary = File.ReadAllText(summaryPath);
        var rows = new List<(string, string, string, string)>();
        foreach (var line in summary.Split('\n'))
        {
            var m = Regex.Match(line, @"^\| (\w+) \| ([\w-]+) \| ([^|]+) \| (\d+) \| ([^|]*) \|");
            if (m.Success) rows.Add((m.Groups[1].Value, m.Groups[2].Value, m.Groups[3].Value.Trim(), m.Groups[5].Value.Trim()));
        }
        return new Run(code, output, dir, pack, seconds, summary, rows);
    }

    static readonly Lazy<Run> Smoke = new(() => Evidence(240, Dll, ""));

    static string StatusOf(Run run, string part, string step)
    {
        var row = run.Rows.Where(r => r.Part == part && r.Step == step).ToList();
        Assert.True(row.Count == 1, $"SUMMARY.md has {row.Count} lines for {part} / {step}:\n{run.Summary}");
        return row[0].Status;
    }

    /// <summary>Whether a Python the script would pick (python3, /usr/bin/python3) imports torch here.</summary>
    static bool TorchImportable() =>
        new[] { "python3", "/usr/bin/python3" }.Any(py =>
        {
            try { return NativeAndBuildTests.Run(py, "-c \"import torch\"", timeoutMs: 120_000).Code == 0; }
            catch (System.ComponentModel.Win32Exception) { return false; }       // no such interpreter
        });

    [Fact]
    public void TheCpuSmokeRunsEveryPartAndSaysWhatItSkipped()
    {
        var run = Smoke.Value;
        Assert.True(run.Code == 0, run.Output);
        foreach (var part in new[] { "info", "bench", "peers", "interop", "cuda", "memorization", "ratios" })
            Assert.True(run.Rows.Any(r => r.Part == part), $"SUMMARY.md has no line for part {part}:\n{run.Summary}");
        // The kit's own steps all ran and finished.
        foreach (var (part, step) in new[] { ("info", "info"), ("bench", "bench-float32"), ("bench", "layer-rotate-m"), ("bench", "layer-rotate-input"),
                     ("bench", "launches"), ("peers", "presets"), ("peers", "layer-dump"), ("peers", "kit-step"), ("interop", "export"),
                     ("cuda", "uninterrupted"), ("cuda", "killed-resumed"), ("cuda", "uninterrupted-again"), ("cuda", "compare"), ("memorization", "memorization") })
            Assert.True(StatusOf(run, part, step) == "ok", $"{part} / {step}: {StatusOf(run, part, step)}\n{run.Summary}");
        // Every skip gives its reason; the GPU-only steps say so.
        foreach (var r in run.Rows.Where(r => r.Status.StartsWith("skipped", StringComparison.Ordinal)))
            Assert.Matches(@"^skipped: \S.{8,}", r.Status);
        Assert.Contains("GPU dtype", StatusOf(run, "bench", "bench-bfloat16"));
        Assert.Contains("no CUDA", StatusOf(run, "cuda", "oom"));
        Assert.Contains("## Skipped, and why", run.Summary);
        // The Python peers: run where torch imports, skipped naming what is missing where it does not (CI).
        string eager = StatusOf(run, "peers", "eager-check");
        string hf = StatusOf(run, "peers", "hf-step");
        if (TorchImportable())
        {
            Assert.True(eager == "ok", $"eager-check: {eager}\n{run.Summary}");
            var check = File.ReadAllLines(Path.Combine(run.Dir, "peers", "eager-check.csv"));
            Assert.True(check.Length >= 1 + 3 * 9, $"eager-check.csv has {check.Length - 1} rows");    // 3 shapes × (7 designs, rotation twice, LoRA)
            Assert.All(check.Skip(1), l => Assert.EndsWith(",match", l));
            Assert.True(StatusOf(run, "peers", "eager-bench") == "ok", run.Summary);
            Assert.Matches("^skipped: (transformers|peft) not installed", hf);
        }
        else
        {
            Assert.Matches("^skipped: (torch not installed|no python3)", eager);
            Assert.Matches("^skipped: (torch not installed|no python3)", hf);
        }
        Assert.Matches("^(ok|skipped: .*(torch|transformers|peft|numpy|python3).*)$", StatusOf(run, "interop", "python-check"));
        if (StatusOf(run, "interop", "python-check") != "ok")
        {
            Assert.StartsWith("skipped: no PEFT adapters to read", StatusOf(run, "interop", "kit-reads-peft"));
            Assert.True(StatusOf(run, "interop", "kit-round-trip") == "ok", run.Summary);
        }
        // The kit killed with SIGKILL after its first checkpoint resumes bit for bit on the CPU.
        string resume = File.ReadAllText(Path.Combine(run.Dir, "cuda", "resume.md"));
        Assert.Contains("| killed-resumed | yes | 0 | yes | 0 |", resume);
        Assert.Contains("killed with SIGKILL", File.ReadAllText(Path.Combine(run.Dir, "logs", "cuda-killed-resumed.log")));
        // Within its budget (240 s, plus the few seconds a stopped step gets to exit).
        Assert.True(run.Seconds <= 240 + 15, $"the smoke run took {run.Seconds:F0} s for a 240 s budget");
    }

    [Fact]
    public void TheCpuSmokeWritesTheFolderLayoutTheReadmeDescribes()
    {
        var run = Smoke.Value;
        Assert.True(run.Code == 0, run.Output);
        foreach (var file in new[]
                 {
                     "SUMMARY.md", "status.tsv", "info.txt", "logs/progress.log", "bench-cpu-float32/layer.csv", "bench-cpu-float32/merge.csv", "bench-cpu-float32/train.csv",
                     "bench-cpu-float32/bench.md", "bench-cpu-float32-rotate-m/layer.csv", "bench-cpu-float32-rotate-input/layer.csv", "launches-cpu/launches.csv",
                     "launches-cpu/launches.md", "peers/presets.json", "peers/layer-dump/64x64-mora-rotation-rotate-input/meta.json", "peers/layer-dump/48x80-lora/delta_w.npy",
                     "peers/train-step.csv", "interop/manifest.json", "interop/base/config.json", "interop/base/model.safetensors", "interop/kit_lora/adapter_config.json",
                     "interop/kit_mora_rotation/adapter_model.safetensors", "interop/kit-check.md", "cuda/resume.md", "cuda/resume/killed-resumed/log.csv",
                     "memorization-cpu/table.txt", "memorization-cpu/COMMAND.txt", "ratios/ratios.csv", "ratios/ratios.md",
                 })
            Assert.True(File.Exists(Path.Combine(run.Dir, file)), $"no {file} in the results folder");
        // Every step that ran has its log.
        foreach (var r in run.Rows.Where(r => r.Status is "ok" || r.Status.StartsWith("failed", StringComparison.Ordinal)))
            Assert.True(File.Exists(Path.Combine(run.Dir, "logs", $"{r.Part}-{r.Step}.log")), $"no log for {r.Part} / {r.Step}");
        // The ratios join the kit's layer rows with the eager peer's where it ran.
        var ratios = File.ReadAllLines(Path.Combine(run.Dir, "ratios", "ratios.csv"));
        Assert.StartsWith("kind,shape,tokens,dtype,method", ratios[0]);
        Assert.Contains(ratios, l => l.StartsWith("layer,64x64,16,float32,mora-rotation,8", StringComparison.Ordinal));
        Assert.Contains(ratios, l => l.StartsWith("train,,", StringComparison.Ordinal));
    }

    [Fact]
    public void TheResultsArePackedIntoAtMostEightFiles()
    {
        var run = Smoke.Value;
        Assert.True(run.Code == 0, run.Output);
        var files = Directory.GetFiles(run.Pack);
        Assert.InRange(files.Length, 2, 8);
        Assert.Contains(files, f => Path.GetFileName(f) == "SUMMARY.md");
        Assert.All(files, f => Assert.True(new FileInfo(f).Length <= 16L << 20, $"{f} is over 16 MiB"));
        Assert.Equal(Directory.GetFileSystemEntries(run.Pack).Length, files.Length);              // no folders
        // The parts concatenated are one gzip'd tar holding the results, without checkpoints or weights.
        using var joined = new MemoryStream();
        foreach (var part in files.Where(f => Path.GetFileName(f).StartsWith("evidence-cpu.tar.gz", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
            using (var s = File.OpenRead(part)) s.CopyTo(joined);
        joined.Position = 0;
        using var gz = new GZipStream(joined, CompressionMode.Decompress);
        using var tar = new TarReader(gz);
        var names = new List<string>();
        for (var entry = tar.GetNextEntry(); entry is not null; entry = tar.GetNextEntry()) names.Add(entry.Name.TrimStart('.', '/'));
        Assert.Contains("evidence/SUMMARY.md", names);
        Assert.Contains("evidence/ratios/ratios.csv", names);
        Assert.Contains(names, n => n.StartsWith("evidence/logs/", StringComparison.Ordinal));
        Assert.DoesNotContain(names, n => n.Contains("/checkpoints/", StringComparison.Ordinal) || n.EndsWith(".safetensors", StringComparison.Ordinal));
        Assert.Equal(File.ReadAllText(Path.Combine(run.Dir, "SUMMARY.md")), File.ReadAllText(Path.Combine(run.Pack, "SUMMARY.md")));
    }

    [Fact]
    public void AStepThatOverrunsItsShareIsStoppedAndTheRunKeepsItsBudget()
    {
        // A stand-in kit that never finishes: every kit step overruns whatever share it gets.
        string kit = Path.Combine(TestSupport.TempDir(), "slow-kit.sh");
        File.WriteAllText(kit, "#!/usr/bin/env bash\necho \"stand-in kit: $*\"\nexec sleep 600\n");
        const int budget = 60;
        var run = Evidence(budget, kit, "--only info,bench");
        Assert.True(run.Code == 0, run.Output);
        Assert.Equal("timed out", StatusOf(run, "info", "info"));
        Assert.Equal("timed out", StatusOf(run, "bench", "bench-float32"));
        Assert.Contains("stopped at its share", run.Rows.Single(r => r.Part == "info" && r.Step == "info").Detail);
        // The parts after the stopped ones are still there, each saying why it did not run.
        foreach (var step in new[] { "launches" })
            Assert.Matches("^(timed out|skipped: time share exhausted)$", StatusOf(run, "bench", step));
        foreach (var (part, step) in new[] { ("peers", "presets"), ("interop", "export"), ("cuda", "uninterrupted"), ("memorization", "memorization") })
            Assert.StartsWith("skipped: not selected", StatusOf(run, part, step));
        Assert.Contains("## Not finished", run.Summary);
        // Shares add up to the budget: the whole run, packing included, ends within it (plus a stopped step's exit).
        Assert.True(run.Seconds <= budget + 10, $"a {budget} s budget took {run.Seconds:F0} s:\n{run.Summary}");
        Assert.InRange(Directory.GetFiles(run.Pack).Length, 2, 8);
    }
}

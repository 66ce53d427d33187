using System.Diagnostics;
using System.Reflection;
using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.Experiments;
using Mora.Figures;
using Mora.IO;
using Mora.Model;
using Mora.Training;

namespace Mora.Tests;

/// <summary>The promises of README "What the kit promises" that are not proven elsewhere: names cannot escape the output
/// folder, pickles are never read, missing files are named, atomic writes are never seen half-done.</summary>
public class ReliabilityTests
{
    [Fact]
    public void RunNamesAndOutputPathsCannotEscapeTheOutputFolder()
    {
        string root = TestSupport.TempDir();
        string outDir = Path.Combine(root, "out");
        foreach (var bad in new[] { "", ".", "..", "../x", "a/b", "a\\b", "/etc", "C:x", "x\0", "run name", new string('a', 201) })
        {
            var e = Assert.Throws<ArgumentException>(() => SafePath.Under(outDir, bad, "--name"));
            Assert.Equal("--name", e.ParamName);
        }
        Assert.Equal(Path.Combine(outDir, "lora-r8-seed0"), SafePath.Under(outDir, "lora-r8-seed0", "run name"));

        // A metric column of a user's log.csv becomes a figure file name: "../../evil" must not leave the figures folder.
        string runs = Path.Combine(root, "runs", "a");
        var log = new RunLog();
        log.Add(new LogRow(1, 10, 2.0, 1e-3, 1, 100, 0.1, new Dictionary<string, double>()));
        log.AddMetrics(1, new Dictionary<string, double> { ["../../evil"] = 0.5 });
        log.WriteCsv(Path.Combine(runs, Trainer.LogFile));
        var error = Assert.Throws<ArgumentException>(() => RunFigures.PlotRuns(Path.Combine(root, "runs"), outDir, "fig"));
        Assert.Contains("../../evil", error.Message);
        Assert.Empty(Directory.GetFiles(root, "*evil*", SearchOption.AllDirectories));
        Assert.Throws<ArgumentException>(() => RunFigures.PlotRuns(Path.Combine(root, "runs"), outDir, "../fig"));
        Assert.DoesNotContain(Directory.GetFiles(root, "*.png", SearchOption.AllDirectories), f => !f.StartsWith(outDir, StringComparison.Ordinal));
    }

    [Fact]
    public void PickledWeightsAreNeverReadAndTheLibraryHasNoCodeThatCould()
    {
        using var rng = TestSupport.TorchSeed();
        string dir = TestSupport.TempDir();
        using (var model = new LlamaForCausalLM(LlamaConfig.Tiny())) ModelIO.Save(model, dir);
        File.Delete(Path.Combine(dir, ModelIO.WeightsFile));
        File.WriteAllBytes(Path.Combine(dir, "pytorch_model.bin"), [0x80, 0x02, (byte)'c', (byte)'o', (byte)'s', 0x0a]);   // a pickle opcode stream
        var e = Assert.Throws<FileNotFoundException>(() => ModelIO.Load(dir));
        Assert.Contains("pytorch_model.bin", e.Message);
        Assert.Contains("never reads", e.Message);
        // No deserializer that can run code anywhere in lib/: weights come only through SafeTensors.Load.
        string[] forbidden = ["BinaryFormatter", "torch.load(", ".load(", "Assembly.Load", "NetDataContractSerializer", "SoapFormatter", "TypeNameHandling"];
        foreach (var file in Directory.GetFiles(Path.Combine(TestSupport.RepoRoot, "lib"), "*.cs", SearchOption.AllDirectories))
        {
            string text = File.ReadAllText(file);
            foreach (var f in forbidden) Assert.False(text.Contains(f, StringComparison.Ordinal), $"{file} uses {f}");
        }
    }

    [Fact]
    public void MissingFilesAreNamed()
    {
        using var rng = TestSupport.TorchSeed();
        string dir = TestSupport.TempDir();
        string missing = Path.Combine(dir, "nope");
        Assert.Contains("tokenizer.json", Assert.Throws<FileNotFoundException>(() => HfTokenizer.Load(Path.Combine(missing, "tokenizer.json"))).Message);
        Assert.Contains("config.json", Assert.Throws<FileNotFoundException>(() => ModelIO.ReadConfig(dir)).Message);
        Assert.Contains("train.jsonl", Assert.Throws<FileNotFoundException>(() => Gsm8kData.Load(Path.Combine(dir, "train.jsonl"))).Message);
        Assert.Contains("a.safetensors", Assert.Throws<FileNotFoundException>(() => SafeTensors.Load(Path.Combine(dir, "a.safetensors"))).Message);
        Assert.Contains("adapter", Assert.ThrowsAny<IOException>(() => AdapterIO.Load(new LlamaForCausalLM(LlamaConfig.Tiny()), missing)).Message);
    }

    [Fact]
    public async Task AReaderNeverSeesAHalfWrittenFile()
    {
        // One thread rewrites a 2 MB file through AtomicFile, at least 200 times and until the reader has read it 20 times
        // (on a loaded machine the reader may start late: the writer waits for it, up to 2 minutes); another reads it as
        // fast as it can. Every read must be one whole version (its header line says how long it is), and no temporary
        // file may be left behind.
        string dir = TestSupport.TempDir(), path = Path.Combine(dir, "log.csv");
        string Version(int v) { string body = new string((char)('a' + v % 26), 2_000_000 + v); return $"{body.Length}\n{body}"; }
        AtomicFile.WriteText(path, Version(0));
        using var done = new CancellationTokenSource();
        int reads = 0;                                   // read with Volatile: the writer's loop waits on it
        var reader = Task.Run(() =>
        {
            while (!done.IsCancellationRequested)
            {
                string text = File.ReadAllText(path);
                int nl = text.IndexOf('\n');
                Assert.True(nl > 0 && int.Parse(text[..nl]) == text.Length - nl - 1, $"read a partial file of {text.Length} characters");
                Interlocked.Increment(ref reads);
            }
        });
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int v = 1; v <= 200 || (Volatile.Read(ref reads) < 20 && clock.Elapsed < TimeSpan.FromMinutes(2)); v++)
            AtomicFile.WriteText(path, Version(v));
        done.Cancel();
        await reader;
        Assert.True(reads > 10, $"only {reads} reads overlapped the writes");
        Assert.Equal(["log.csv"], Directory.GetFiles(dir).Select(Path.GetFileName));
    }
}

/// <summary>Faults and resources during training (alone in the Engine collection: they seed torch and measure the process).</summary>
[Collection("Engine")]
[Trait("Speed", "Slow")]
public class TrainingFaultTests(Xunit.Abstractions.ITestOutputHelper output)
{
    static MemorizationTask Task8 => new(UuidPairs.Generate(8, seed: 1));

    /// <summary>Stands in for a projection; once armed, its forward asks libtorch for 4 PiB (2^50 float32), which the
    /// allocator refuses with its real out-of-memory error, in the middle of a training step.</summary>
    sealed class AllocationFault(nn.Module<Tensor, Tensor> inner) : nn.Module<Tensor, Tensor>("fault")
    {
        public bool Armed;
        public override Tensor forward(Tensor x)
        {
            if (Armed) { using var huge = empty(1L << 50); }
            return inner.forward(x);
        }
    }

    static AllocationFault InstallFault(LlamaForCausalLM model)
    {
        var mlp = model.named_modules().Single(m => m.name.EndsWith("layers.0.mlp", StringComparison.Ordinal)).module;
        var field = mlp.GetType().GetField("down_proj", BindingFlags.Instance | BindingFlags.NonPublic)!;
        var fault = new AllocationFault((nn.Module<Tensor, Tensor>)field.GetValue(mlp)!);
        field.SetValue(mlp, fault);
        return fault;
    }

    [Fact]
    public void OutOfMemoryNamesTheBatchSizeSuggestsAFixAndKeepsTheCheckpoint()
    {
        using var rng = TestSupport.TorchSeed();
        string dir = TestSupport.TempDir();
        var task = Task8;
        var config = new TrainConfig { Steps = 20, BatchSize = 16, GradAccumulation = 2, LearningRate = 1e-2, CheckpointEvery = 5, LogEvery = 1, ShowProgress = false, OutputDir = dir };
        using (var model = task.NewModel(LlamaConfig.Tiny(), seed: 0))
        {
            Peft.Inject(model, AdapterConfig.Mora(8, MoraType.Rotation, "q_proj", "v_proj"));
            var fault = InstallFault(model);
            var trainer = new Trainer(model, config, task.Train);
            trainer.StepCompleted += s => fault.Armed = s == 6;
            var e = Assert.Throws<TrainingOutOfMemoryException>(() => trainer.Run());
            Assert.Equal(7, e.Step);
            Assert.Equal(16, e.BatchSize);
            Assert.Contains("step 7 with batch size 16", e.Message);
            Assert.Contains("batch size 8 with gradient accumulation 4", e.Message);
            Assert.Contains("step 5", e.Message);
            Assert.True(TrainingOutOfMemoryException.IsOutOfMemory(e.InnerException), e.InnerException?.Message);
            var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, Trainer.ManifestFile)))!;
            Assert.Equal("out-of-memory", manifest["status"]!.GetValue<string>());
            Assert.Equal(Enumerable.Range(1, 6).Select(i => (long)i), RunLog.ReadCsv(Path.Combine(dir, Trainer.LogFile)).Rows.Select(r => r.Step));
            Assert.Contains("step-5", Checkpoints.Latest(dir));
        }
        // Rerunning (the fault gone) resumes from the kept checkpoint and completes.
        using var again = task.NewModel(LlamaConfig.Tiny(), seed: 0);
        Peft.Inject(again, AdapterConfig.Mora(8, MoraType.Rotation, "q_proj", "v_proj"));
        var resumed = new Trainer(again, config, task.Train).Run();
        Assert.Equal(5, resumed.ResumedFromStep);
        Assert.Equal(Enumerable.Range(1, 20).Select(i => (long)i), resumed.Log.Rows.Select(r => r.Step));
    }

    [Fact]
    public void MemoryStaysFlatOver1000TrainingSteps()
    {
        using var rng = TestSupport.TorchSeed();
        // Stated tolerance, after 250 warm-up steps (libtorch's thread pools and caches): libtorch's count of live tensors
        // made on this thread must not grow at all; the managed heap may grow by 4 MiB (the log's rows take ~0.2 MiB);
        // resident memory may differ by 64 MiB between the first two samples (250, 500) and the last two (750, 1000),
        // since glibc's allocator swings by ±25 MiB from step to step here. A leak of one activation a step
        // (8×40×64 float32 = 80 KiB) would add 60 MiB, and one tensor handle a parameter a step fails the count at once.
        var task = Task8;
        using var model = task.NewModel(LlamaConfig.Tiny(), seed: 0);
        Peft.Inject(model, AdapterConfig.Mora(8, MoraType.Rotation));
        var trainer = new Trainer(model, new TrainConfig { Steps = 1000, BatchSize = 8, LearningRate = 1e-3, ShowProgress = false }, task.Train);
        var samples = new SortedDictionary<long, (long Rss, long Managed, long Live)>();
        trainer.StepCompleted += s =>
        {
            if (s % 250 != 0) return;
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            Mora.Native.NativeHeap.Trim();                 // free pages back to the system: what remains is in use
            using var p = Process.GetCurrentProcess();
            samples[s] = (p.WorkingSet64, GC.GetTotalMemory(true), DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        };
        trainer.Run();
        string report = string.Join("; ", samples.Select(kv => $"step {kv.Key}: RSS {kv.Value.Rss >> 20} MiB, managed {kv.Value.Managed >> 10} KiB, live tensors {kv.Value.Live}"));
        output.WriteLine(report);
        long early = Math.Min(samples[250].Rss, samples[500].Rss), late = Math.Max(samples[750].Rss, samples[1000].Rss);
        Assert.True(late - early <= 64L << 20, report);
        Assert.True(samples[1000].Managed - samples[250].Managed <= 4L << 20, report);
        Assert.Equal(samples[250].Live, samples[1000].Live);
    }
}

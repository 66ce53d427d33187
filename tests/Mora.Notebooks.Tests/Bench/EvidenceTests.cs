using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Mora.Evidence;
using Mora.Model;

namespace Mora.Tests;

/// <summary>
/// The kit's parts of the GPU evidence: the operator trace counts what libtorch dispatches (known operator sequences,
/// seeded random inputs); its no-kernel list is the one the PyTorch-eager peer uses; the committed launch table is what
/// the code measures now; the presets the HF + PEFT peer reads are the kit's LlamaConfig presets; .npy files round-trip
/// and have NumPy's header layout.
/// </summary>
public class EvidenceTests
{
    [Fact]
    public void TheTraceCountsWhatLibtorchDispatches()
    {
        Assert.True(OpTrace.IsAvailable || !OperatingSystem.IsLinux(), "libtorch's RecordProfile should be found in the loaded libtorch_cpu.so");
        if (!OperatingSystem.IsLinux()) return;
        using var g = TestSupport.Generator();
        using var a = randn(8, 6, generator: g);
        using var b = randn(6, 5, generator: g);
        int Launches(Action work) => OpTrace.Launches(OpTrace.Record(work));
        Assert.Equal(1, Launches(() => { using var c = a.matmul(b); }));                          // mm (its resolve_conj checks do not count)
        Assert.Equal(1, Launches(() => { using var c = a * a; }));
        Assert.Equal(0, Launches(() => { using var v = a.view(6, 8); using var t = a.t(); using var n = a.narrow(1, 0, 3); }));
        Assert.Equal(1, Launches(() => { using var t = a.t(); using var c = t.contiguous(); }));  // one copy
        Assert.Equal(3, Launches(() => { using var c = a.matmul(b); using var d = c * 2; using var e = d.sum(); }));
        var trace = OpTrace.Record(() => { using var c = a.matmul(b); });
        Assert.Contains(trace, e => e.Name == "aten::mm" && e.Launch);
        Assert.DoesNotContain(trace, e => e.Name == "aten::matmul" && e.Launch);
    }

    [Fact]
    public void TheNoKernelListIsThePythonPeersList()
    {
        string py = File.ReadAllText(Path.Combine(TestSupport.RepoRoot, "bench", "gpu", "mora_eager.py"));
        var block = Regex.Match(py, @"NO_KERNEL = \{(.*?)\n\}", RegexOptions.Singleline);
        Assert.True(block.Success, "mora_eager.py has no NO_KERNEL = { ... } block");
        var names = Regex.Matches(block.Groups[1].Value, "\"([^\"]+)\"").Select(m => m.Groups[1].Value).ToHashSet();
        Assert.True(names.SetEquals(OpTrace.NoKernel),
            $"only in Python: {string.Join(", ", names.Except(OpTrace.NoKernel))}; only in C#: {string.Join(", ", OpTrace.NoKernel.Except(names))}");
    }

    [Fact]
    public void TheCommittedLaunchTableIsWhatTheCodeCountsNow()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var rng = TestSupport.TorchSeed();           // LaunchCounts.Measure reseeds torch's global generator and draws from it
        string dir = Path.Combine(TestSupport.RepoRoot, "figures", "bench", "launches");
        var committed = LaunchCounts.ReadCsv(Path.Combine(dir, LaunchCounts.CsvFile));
        var fresh = LaunchCounts.Measure([(1024, 1024)], [8, 256], 16, CPU, ScalarType.Float32, TextWriter.Null);
        Assert.NotEmpty(fresh);
        foreach (var f in fresh)
        {
            var c = committed.SingleOrDefault(r => r.D == f.D && r.K == f.K && r.Method == f.Method && r.R == f.R && r.Formulation == f.Formulation);
            Assert.True(c is not null, $"figures/bench/launches/launches.csv has no row for {f.D}×{f.K} {f.Method} {f.Formulation} r = {f.R}: regenerate it (README, Cost)");
            Assert.True((c!.Forward, c.Backward, c.RHat) == (f.Forward, f.Backward, f.RHat),
                $"{f.D}×{f.K} {f.Method} {f.Formulation} r = {f.R}: committed {c.Forward} + {c.Backward}, measured now {f.Forward} + {f.Backward} ({f.Detail}): regenerate the table");
        }
        // What the per-device default rests on: rotating the input launches fewer kernels than rotating M, at every shape and rank.
        foreach (var g in committed.Where(r => r.Method == "mora-rotation").GroupBy(r => (r.D, r.K, r.R)))
            Assert.True(g.Single(r => r.Formulation == "rotate-input").Total < g.Single(r => r.Formulation == "rotate-m").Total, $"{g.Key}");
    }

    [Fact]
    public void ThePresetsThePeerReadsAreTheKitsModelPresets()
    {
        var root = JsonNode.Parse(TrainPresets.PresetsJson())!;
        int vocab = root["train"]!["vocab_size"]!.GetValue<int>();
        foreach (var name in LlamaConfig.PresetNames)
        {
            var fromJson = LlamaConfig.FromJson(root["models"]![name]!.ToJsonString(), name);
            var preset = LlamaConfig.Preset(name, vocab);
            Assert.Equal(preset with { BosTokenId = fromJson.BosTokenId, EosTokenId = fromJson.EosTokenId }, fromJson);
        }
        var big = LlamaConfig.FromJson(root["models"]!["gpu-350m"]!.ToJsonString(), "gpu-350m");
        long layer = 4L * big.HiddenSize * big.HiddenSize + 3L * big.HiddenSize * big.IntermediateSize;
        Assert.InRange(big.NumHiddenLayers * layer + 2L * big.HiddenSize * vocab, 340_000_000, 370_000_000);
        var task = TrainPresets.Task(32, 0);
        Assert.Equal(task.Train[0].Tokens.Length, root["train"]!["sequence_length"]!.GetValue<int>());
        Assert.All(task.Train, e => Assert.Equal(task.Train[0].Tokens.Length, e.Tokens.Length));   // every sequence alike: no padding in a batch
        Assert.Equal(new Mora.Training.TrainConfig().MaxGradNorm, root["train"]!["max_grad_norm"]!.GetValue<double>());
        foreach (var preset in Mora.Bench.BenchSpec.Presets)
            Assert.Equal(Mora.Bench.BenchSpec.FromPreset(preset).TrainBatch, root["bench"]![preset]!["train_batch"]!.GetValue<int>());
    }

    [Fact]
    public void NpyFilesRoundTripWithNumpysHeader()
    {
        string dir = TestSupport.TempDir();
        using var g = TestSupport.Generator();
        using var f = randn(3, 5, 2, generator: g);
        using var d = randn(7, dtype: ScalarType.Float64, generator: g);
        using var l = randint(-1000, 1000, [4, 3], dtype: ScalarType.Int64, generator: g);
        foreach (var (name, t) in new[] { ("f", f), ("d", d), ("l", l) })
        {
            string path = Path.Combine(dir, name + ".npy");
            Npy.Save(path, t);
            byte[] bytes = File.ReadAllBytes(path);
            Assert.Equal(0x93, bytes[0]);
            Assert.Equal("NUMPY", System.Text.Encoding.ASCII.GetString(bytes, 1, 5));
            int headerLength = bytes[8] | bytes[9] << 8;
            Assert.Equal(0, (10 + headerLength) % 64);                                            // NumPy aligns the data to 64 bytes
            Assert.Equal((byte)'\n', bytes[10 + headerLength - 1]);
            using var back = Npy.Load(path);
            Assert.Equal(t.shape, back.shape);
            Assert.Equal(t.dtype, back.dtype);
            Assert.True(TestSupport.MaxAbs(t, back) == 0, $"{name}: values changed");
            Assert.True(TestSupport.MaxAbs(t) > 0);
        }
        string header = System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(Path.Combine(dir, "d.npy")), 10, 64);
        Assert.StartsWith("{'descr': '<f8', 'fortran_order': False, 'shape': (7,), }", header);
        File.WriteAllText(Path.Combine(dir, "bad.npy"), "not numpy");
        Assert.Contains("bad.npy: not a .npy file", Assert.Throws<FormatException>(() => Npy.Load(Path.Combine(dir, "bad.npy"))).Message);
    }
}

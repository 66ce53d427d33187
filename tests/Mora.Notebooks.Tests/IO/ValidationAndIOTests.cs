using System.Buffers.Binary;
using System.Text;
using Mora.Adapters;
using Mora.IO;

namespace Mora.Tests;

/// <summary>Invalid arguments throw ArgumentException naming the argument; safetensors files that are truncated,
/// absurd or inconsistent throw SafeTensorsFormatException naming the file and the problem.</summary>
public class ValidationAndIOTests
{
    [Fact]
    public void InvalidOperatorArgumentsNameTheArgument()
    {
        using var rng = TestSupport.TorchSeed();
        Assert.Equal("r", Assert.Throws<ArgumentException>(() => ParameterBudget.RHat(64, 64, 0, MoraType.Sharing)).ParamName);
        Assert.Equal("r", Assert.Throws<ArgumentException>(() => ParameterBudget.RHat(64, 64, -3, MoraType.Sharing)).ParamName);
        Assert.Equal("d", Assert.Throws<ArgumentException>(() => ParameterBudget.RHat(0, 64, 8, MoraType.Sharing)).ParamName);
        Assert.Equal("rHat", Assert.Throws<ArgumentException>(() => new CompressDecompress(64, 64, 31, MoraType.Rotation)).ParamName);
        Assert.Equal("rHat", Assert.Throws<ArgumentException>(() => new CompressDecompress(64, 64, 0, MoraType.Sharing)).ParamName);
        Assert.Equal("rHat", Assert.Throws<ArgumentException>(() => new CompressDecompress(16, 16, 17, MoraType.Sharing)).ParamName);
        Assert.Equal("type", Assert.Throws<ArgumentException>(() => new CompressDecompress(64, 64, 32, (MoraType)9)).ParamName);
        Assert.Equal("type", Assert.Throws<ArgumentException>(() => MoraTypes.Parse("spiral")).ParamName);
        Assert.Equal("mora_type", Assert.Throws<ArgumentException>(() => MoraTypes.Parse("7", "mora_type")).ParamName);
        Assert.Equal(MoraType.Rotation, MoraTypes.Parse("6"));
        Assert.Equal(MoraType.Rotation, MoraTypes.Parse("rotation"));
        var op = new CompressDecompress(64, 48, 30, MoraType.Sharing);
        using var wrongX = randn(2, 47);
        using var m = randn(30, 30);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => op.Forward(wrongX, m)).ParamName);
        using var wrongM = randn(30, 29);
        using var x = randn(2, 48);
        Assert.Equal("m", Assert.Throws<ArgumentException>(() => op.Forward(x, wrongM)).ParamName);
        Assert.Equal("m", Assert.Throws<ArgumentException>(() => op.DeltaWeight(wrongM)).ParamName);
    }

    [Fact]
    public void InvalidAdapterArgumentsNameTheArgument()
    {
        using var rng = TestSupport.TorchSeed();
        using var lin = nn.Linear(16, 16);
        Assert.Equal("r", Assert.Throws<ArgumentException>(() => new MoraLinear(lin, 0)).ParamName);
        Assert.Equal("r", Assert.Throws<ArgumentException>(() => new LoraLinear(lin, -1, 8)).ParamName);
        Assert.Equal("r", Assert.Throws<ArgumentException>(() => new LoraLinear(lin, 17, 8)).ParamName);    // larger than the layer
        Assert.Equal("alpha", Assert.Throws<ArgumentException>(() => new LoraLinear(lin, 4, 0)).ParamName);
        Assert.Equal("rHat", Assert.Throws<ArgumentException>(() => new MoraLinear(lin, 4, MoraType.Rotation, rHat: 15)).ParamName);
        Assert.Equal("R", Assert.Throws<ArgumentException>(() => AdapterConfig.Mora(0).Validate()).ParamName);
        Assert.Equal("Alpha", Assert.Throws<ArgumentException>(() => (AdapterConfig.Lora() with { Alpha = -1 }).Validate()).ParamName);
        Assert.Equal("Dropout", Assert.Throws<ArgumentException>(() => (AdapterConfig.Lora() with { Dropout = 1.5 }).Validate()).ParamName);
        Assert.Equal("MoraType", Assert.Throws<ArgumentException>(() => (AdapterConfig.Mora() with { MoraType = (MoraType)42 }).Validate()).ParamName);
        Assert.Equal("TargetModules", Assert.Throws<ArgumentException>(() => (AdapterConfig.Mora() with { TargetModules = [] }).Validate()).ParamName);
        Assert.Equal("method", Assert.Throws<ArgumentException>(() => Mora.Adapters.MethodSpec.Parse("qlora", "method")).ParamName);
        var layer = new MoraLinear(nn.Linear(16, 24), 4, MoraType.Sharing);
        using var wrong = randn(3, 15);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => layer.forward(wrong)).ParamName);
    }

    [Theory]
    [InlineData(ScalarType.Float32)] [InlineData(ScalarType.Float64)] [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)] [InlineData(ScalarType.Int64)] [InlineData(ScalarType.Bool)]
    public void SafeTensorsRoundTripsEveryDType(ScalarType dt)
    {
        using var rng = TestSupport.TorchSeed();
        using var a = (randn(3, 5) * 10).to(dt);
        using var b = (randn(7) * 10).to(dt);
        using var empty = zeros(new long[] { 0, 4 }, dt);
        string path = Path.Combine(TestSupport.TempDir(), "t.safetensors");
        SafeTensors.Save(path, [("a", a), ("b.weight", b), ("empty", empty)], new Dictionary<string, string> { ["k"] = "v" });
        var (loaded, meta) = SafeTensors.Load(path);
        Assert.Equal("v", meta["k"]);
        Assert.Equal(dt, loaded["a"].dtype);
        Assert.True(torch.equal(loaded["a"], a).all().item<bool>());
        Assert.True(torch.equal(loaded["b.weight"], b).all().item<bool>());
        Assert.Equal(new long[] { 0, 4 }, loaded["empty"].shape);
        foreach (var t in loaded.Values) t.Dispose();
    }

    /// <summary>A tensor larger than the reader's 64 MiB piece is read in pieces (the path that lets a tensor over a .NET
    /// array's 2 GiB load): every element lands in place, the last piece partial.</summary>
    [Fact]
    public void ATensorLargerThanOneReadPieceLoadsWhole()
    {
        long n = (64L << 20) / 4 * 2 + 12345;          // two full pieces of float32 and a partial one
        using var big = arange(n, dtype: ScalarType.Int32).to(ScalarType.Float32);
        using var small = arange(5, dtype: ScalarType.Float64);
        string path = Path.Combine(TestSupport.TempDir(), "big.safetensors");
        SafeTensors.Save(path, [("big", big), ("small", small)]);
        try
        {
            var (loaded, _) = SafeTensors.Load(path);
            Assert.True(torch.equal(loaded["big"], big).all().item<bool>());
            Assert.True(torch.equal(loaded["small"], small).all().item<bool>());
            foreach (var t in loaded.Values) t.Dispose();
        }
        finally { File.Delete(path); }
    }

    static string Write(byte[] bytes)
    {
        string path = Path.Combine(TestSupport.TempDir(), "bad.safetensors");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static byte[] Build(string header, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var b = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)h.Length);
        h.CopyTo(b, 8);
        new Random(1).NextBytes(b.AsSpan(8 + h.Length));
        return b;
    }

    public static IEnumerable<object[]> BadFiles() => new[]
    {
        new object[] { "shorter than the 8 bytes", new byte[] { 1, 2, 3 } },
        new object[] { "is empty", Array.Empty<byte>() },
        new object[] { "bad data_offsets [\"0\", \"16\"]", Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [\"0\", \"16\"]}}", 16) },
        new object[] { "bad data_offsets [0, 16.0]", Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16.0]}}", 16) },
        // As the reference reader: the tensors tile the data, no hole between them and nothing after the last one.
        new object[] { "a hole in data_offsets", Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [12, 20]}}", 20) },
        new object[] { "4 bytes belong to no tensor", Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 12) },
        new object[] { "truncated, or not a safetensors file", BitConverter.GetBytes(ulong.MaxValue).Concat(new byte[16]).ToArray() },
        new object[] { "truncated, or not a safetensors file", BitConverter.GetBytes(1_000_000UL).Concat(new byte[64]).ToArray() },
        new object[] { "not valid JSON", Build("{\"a\": {\"dtype\": \"F32\",", 16) },
        new object[] { "unknown dtype 'F8'", Build("{\"a\": {\"dtype\": \"F8\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 4) },
        new object[] { "run past the end", Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 8) },
        new object[] { "overlap", Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12) },
        new object[] { "needs 16 bytes", Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 12]}}", 16) },
        new object[] { "bad dimension", Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [-4], \"data_offsets\": [0, 16]}}", 16) },
        new object[] { "overflows", Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 16]}}", 16) },
        new object[] { "must be a JSON object", Build("[1, 2]", 0) },
        // Regressions: a zero-sized tensor (0 bytes of data, so the byte count checks pass) whose other dimensions overflow
        // libtorch's strides. Found by the property test (mutation (3, 3, 388473708, 557537871, 2048182058)); it reached
        // libtorch and threw "Stride calculation overflowed" from empty_tensor_restride.
        new object[] { "overflows a 64-bit size or stride", Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [0, 4294967296, 4294967296], \"data_offsets\": [0, 0]}}", 0) },
        new object[] { "overflows a 64-bit size or stride", Build("{\"a\": {\"dtype\": \"F64\", \"shape\": [3037000500, 3037000500, 0], \"data_offsets\": [0, 0]}}", 0) },
        new object[] { "overflows a 64-bit size or stride", Build("{\"a\": {\"dtype\": \"BF16\", \"shape\": [0, 4611686018427387904], \"data_offsets\": [0, 0]}}", 0) },
        new object[] { "more than 16 dimensions", Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], \"data_offsets\": [0, 4]}}", 4) },
    };

    /// <summary>A zero-sized tensor whose strides still fit loads as an empty tensor of its shape (the stride check must not
    /// refuse legitimate empty tensors).</summary>
    /// <summary>Many small dimensions in a wide dtype are legitimate: the stride check multiplies the element size in once
    /// (an F64 [2]×16 tensor is 512 KiB), not once per dimension.</summary>
    [Fact]
    public void ManyDimensionsOfAWideDTypeLoad()
    {
        int bytes = 8 << 16;
        string shape = string.Join(", ", Enumerable.Repeat(2, 16));
        string path = Write(Build($"{{\"a\": {{\"dtype\": \"F64\", \"shape\": [{shape}], \"data_offsets\": [0, {bytes}]}}}}", bytes));
        var (tensors, _) = SafeTensors.Load(path);
        Assert.Equal(Enumerable.Repeat(2L, 16), tensors["a"].shape);
        foreach (var t in tensors.Values) t.Dispose();
    }

    [Fact]
    public void ZeroSizedTensorsWithSaneStridesLoad()
    {
        string path = Write(Build("{\"a\": {\"dtype\": \"F32\", \"shape\": [0, 1000000, 7], \"data_offsets\": [0, 0]}}", 0));
        var (tensors, _) = SafeTensors.Load(path);
        Assert.Equal(new long[] { 0, 1000000, 7 }, tensors["a"].shape);
        foreach (var t in tensors.Values) t.Dispose();
    }

    [Theory, MemberData(nameof(BadFiles))]
    public void CorruptSafeTensorsGiveAClearError(string expected, byte[] bytes)
    {
        string path = Write(bytes);
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void ATruncatedAdapterFileGivesAClearErrorAndWritingIsAtomic()
    {
        using var rng = TestSupport.TorchSeed();
        var model = new ToyModel();
        var config = AdapterConfig.Mora(4, MoraType.Sharing, "q_proj");
        Peft.Inject(model, config);
        string dir = TestSupport.TempDir();
        AdapterIO.Save(model, config, dir);
        string file = Path.Combine(dir, AdapterIO.WeightsFile);
        byte[] good = File.ReadAllBytes(file);
        File.WriteAllBytes(file, good[..(good.Length - 10)]);
        var e = Assert.Throws<SafeTensorsFormatException>(() => AdapterIO.LoadWeights(model, dir));
        Assert.Contains("truncated", e.Message);
        // A save that fails half-way leaves the earlier file intact and no temporary files behind.
        File.WriteAllBytes(file, good);
        Assert.Throws<ArgumentException>(() => SafeTensors.Save(file, [("x", randn(2)), ("x", randn(2))]));
        Assert.Equal(good, File.ReadAllBytes(file));
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(file, s => { s.WriteByte(1); throw new InvalidOperationException("boom"); }));
        Assert.Equal(good, File.ReadAllBytes(file));
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
        // A bad config names the file and line.
        File.WriteAllText(Path.Combine(dir, AdapterIO.ConfigFile), "{\n \"r\": 8,\n \"use_mora\": tru\n}");
        var ce = Assert.ThrowsAny<FormatException>(() => AdapterIO.ReadConfig(dir));
        Assert.Contains(AdapterIO.ConfigFile, ce.Message);
        Assert.Contains("line 3", ce.Message);
        Assert.Throws<FileNotFoundException>(() => AdapterIO.ReadConfig(Path.Combine(dir, "nowhere")));
    }

    [Theory]
    [InlineData(AdapterMethod.Lora)] [InlineData(AdapterMethod.Dora)] [InlineData(AdapterMethod.Mora)] [InlineData(AdapterMethod.Full)]
    public void GradientsReachOnlyTrainableParameters(AdapterMethod method)
    {
        using var rng = TestSupport.TorchSeed((int)method);
        var model = new ToyModel();
        Peft.Inject(model, new AdapterConfig { Method = method, R = 4, TargetModules = ["q_proj", "v_proj"] });
        foreach (var (_, a) in Peft.Adapters(model))
            using (no_grad()) foreach (var (_, p) in a.AdapterParameters()) { using var n = randn_like(p) * 0.1; p.add_(n); }
        using var tokens = randint(0, 11, [2, 5], dtype: ScalarType.Int64);
        using var y = model.forward(tokens);
        using var loss = y.pow(2).mean();
        loss.backward();
        foreach (var (name, p) in model.named_parameters())
        {
            if (p.requires_grad) Assert.True(p.grad is not null && TestSupport.MaxAbs(p.grad) > 0, $"{method}: trainable {name} got no gradient");
            else Assert.True(p.grad is null, $"{method}: frozen {name} got a gradient");
        }
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        if (method == AdapterMethod.Full) Assert.Equal(model.named_parameters().Count(), trainable.Count);
        else Assert.All(trainable, n => Assert.Contains("lora_", n));
    }
}

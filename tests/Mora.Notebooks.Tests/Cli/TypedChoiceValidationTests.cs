using System.Text.Json;
using Mora.Adapters;
using Mora.Experiments;

namespace Mora.Tests;

/// <summary>Typed choices parsed once: the device and the method each have one parser with clear errors, travel typed,
/// and are written to JSON as their text; library validation names the library's properties.</summary>
public class TypedChoiceValidationTests
{
    [Fact]
    public void TheDeviceParserAcceptsCpuCudaAndCudaN()
    {
        Assert.Equal(ComputeDevice.Cpu, ComputeDevice.Parse("cpu"));
        Assert.Equal(ComputeDevice.Cpu, ComputeDevice.Parse(" CPU "));
        Assert.Equal(ComputeDevice.Cuda(), ComputeDevice.Parse("cuda"));
        Assert.Equal(ComputeDevice.Cuda(1), ComputeDevice.Parse("cuda:1"));
        Assert.Equal(1, ComputeDevice.Parse("cuda:1").CudaIndex);
        Assert.Equal("cuda:1", ComputeDevice.Parse("CUDA:1").ToString());
        Assert.Equal("cpu", default(ComputeDevice).ToString());
        Assert.Contains("must be a number", Assert.Throws<ArgumentException>(() => ComputeDevice.Parse("cuda:x")).Message);
        Assert.Contains("must be a number", Assert.Throws<ArgumentException>(() => ComputeDevice.Parse("cuda:-1")).Message);
        Assert.Contains("unknown device 'tpu'", Assert.Throws<ArgumentException>(() => ComputeDevice.Parse("tpu")).Message);
        Assert.Equal(ComputeDevice.Cpu, ComputeDevice.Cpu.EnsureAvailable());
        if (!cuda.is_available())
        {
            var e = Assert.Throws<ArgumentException>(() => ComputeDevice.Cuda(1).EnsureAvailable("Device"));
            Assert.Equal("Device", e.ParamName);
            Assert.Contains("CUDA is not available", e.Message);
            Assert.Contains("TorchBackend=cuda-linux", e.Message);
            Assert.Equal(ComputeDevice.Cpu, ComputeDevice.Default());
        }
    }

    [Fact]
    public void TheMethodParserGivesTypedMethods()
    {
        Assert.Equal(MethodSpec.Lora, MethodSpec.Parse("lora"));
        Assert.Null(MethodSpec.Lora.Design);
        Assert.Equal(MethodSpec.Full, MethodSpec.Parse("FFT"));
        Assert.Equal(MethodSpec.Mora(MoraType.Rotation), MethodSpec.Parse("mora"));
        Assert.Equal(MethodSpec.Mora(MoraType.Rotation), MethodSpec.Parse("mora-6"));
        Assert.Equal(MethodSpec.Mora(MoraType.SharingAdjacent), MethodSpec.Parse("mora-sharing-adjacent"));
        Assert.Equal("mora-sharing", MethodSpec.Parse("mora-1").Name);
        Assert.Equal(AdapterMethod.Mora, MethodSpec.Parse("mora-2").Adapter(8).Method);
        Assert.Equal(MoraType.SharingAdjacent, MethodSpec.Parse("mora-2").Adapter(8).MoraType);
        var e = Assert.Throws<ArgumentException>(() => MethodSpec.Parse("mora-9", "methods"));
        Assert.Equal("methods", e.ParamName);
        Assert.Contains("unknown MoRA design '9'", e.Message);
        Assert.Contains("unknown method 'bora'", Assert.Throws<ArgumentException>(() => MethodSpec.Parse("bora")).Message);
    }

    [Fact]
    public void SpecValidationNamesTheProperty()
    {
        var e = Assert.Throws<ArgumentException>(() => (MemorizationSpec.FromPreset("smoke") with { Steps = 0 }).Validate());
        Assert.Equal(nameof(MemorizationSpec.Steps), e.ParamName);
        Assert.StartsWith("Steps must be positive, got 0", e.Message);
        Assert.Equal(nameof(Gsm8kSpec.EvalPoints), Assert.Throws<ArgumentException>(() => (Gsm8kSpec.FromPreset("smoke") with { EvalPoints = 0 }).Validate()).ParamName);
        Assert.Equal(nameof(Gsm8kSpec.BaseModel), Assert.Throws<ArgumentException>(() => (Gsm8kSpec.FromPreset("smoke") with { BaseModel = "/nonexistent" }).Validate()).ParamName);
        Assert.Equal(nameof(MemorizationSpec.Methods), Assert.Throws<ArgumentException>(() => (MemorizationSpec.FromPreset("smoke") with { Methods = [] }).Validate()).ParamName);
        Assert.Equal(nameof(MemorizationSpec.Model), Assert.Throws<ArgumentException>(() => (MemorizationSpec.FromPreset("smoke") with { Model = "giant" }).Validate()).ParamName);
        Assert.Equal(nameof(MemorizationSpec.Preset), Assert.Throws<ArgumentException>(() => MemorizationSpec.FromPreset("huge")).ParamName);
        Assert.Equal(nameof(Mora.Bench.BenchSpec.Repeats), Assert.Throws<ArgumentException>(() => (Mora.Bench.BenchSpec.FromPreset("tiny") with { Repeats = 0 }).Validate()).ParamName);
        Assert.All(MethodsOfTheExperiments(), m => Assert.Equal(m.Method == AdapterMethod.Mora, m.Design is not null));
    }

    static IEnumerable<MethodSpec> MethodsOfTheExperiments() =>
        new[] { "smoke", "default", "cpu-hour" }.SelectMany(p => MemorizationSpec.FromPreset(p).Methods.Concat(Gsm8kSpec.FromPreset(p).Methods));

    [Fact]
    public void SpecJsonRoundTripsTypedMethodsAndDevice()
    {
        var spec = MemorizationSpec.FromPreset("smoke") with
        {
            Methods = [MethodSpec.Lora, MethodSpec.Dora, MethodSpec.Mora(MoraType.Sharing), MethodSpec.Mora(MoraType.Truncation), MethodSpec.Full],
            Device = ComputeDevice.Cuda(1),
        };
        string json = JsonSerializer.Serialize(spec);
        Assert.Contains("\"Methods\":[\"lora\",\"dora\",\"mora-sharing\",\"mora-truncation\",\"full\"]", json);
        Assert.Contains("\"Device\":\"cuda:1\"", json);
        var back = JsonSerializer.Deserialize<MemorizationSpec>(json)!;
        Assert.Equal(spec.Methods, back.Methods);
        Assert.Equal(ComputeDevice.Cuda(1), back.Device);
        Assert.Equal(json, JsonSerializer.Serialize(back));

        // The experiment folder's spec.json: methods by name, the device blank (not part of the experiment's identity).
        string dir = TestSupport.TempDir();
        Directory.CreateDirectory(dir);
        ExperimentFolder.Claim(dir, spec, "memorisation");
        string file = File.ReadAllText(Path.Combine(dir, ExperimentFolder.SpecFile));
        Assert.Contains("\"Device\": \"\"", file);
        Assert.Contains("\"mora-truncation\"", file);
        ExperimentFolder.Claim(dir, spec with { Device = ComputeDevice.Cpu }, "memorisation");     // another device: the same experiment
        var other = Assert.Throws<ArgumentException>(() => ExperimentFolder.Claim(dir, spec with { Methods = [MethodSpec.Lora] }, "memorisation"));
        Assert.Equal("outDir", other.ParamName);
        Assert.Contains("other settings", other.Message);

        // A spec.json written before the methods were typed (other spellings, the device as "") still claims its folder.
        string old = file.Replace("\"mora-sharing\"", "\"MORA-1\"").Replace("\"full\"", "\"fft\"");
        File.WriteAllText(Path.Combine(dir, ExperimentFolder.SpecFile), old);
        ExperimentFolder.Claim(dir, spec, "memorisation");
        Assert.Equal(file, File.ReadAllText(Path.Combine(dir, ExperimentFolder.SpecFile)));
    }

    [Fact]
    public void TrainConfigJsonWritesTheDeviceAsText()
    {
        var config = new Mora.Training.TrainConfig { Device = ComputeDevice.Cuda(0) };
        Assert.Contains("\"Device\": \"cuda:0\"", config.ToJson());
        Assert.Contains("\"Device\": \"cpu\"", new Mora.Training.TrainConfig().ToJson());
    }
}

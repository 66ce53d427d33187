using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Mora.Native;
using TorchSharp;

namespace Mora;

/// <summary>
/// Where tensors live: the CPU, or a CUDA device (<c>cuda</c>: the current one; <c>cuda:N</c>: device N). Text becomes a
/// device in one place, <see cref="Parse"/>; specs and configs carry the typed value, and JSON writes it back as that
/// text ("cpu", "cuda", "cuda:1"). Parsing needs no native library: whether the device exists is checked by
/// <see cref="EnsureAvailable"/> (and <see cref="ToTorch"/>), so a GPU run's files still load on a CPU-only machine.
/// </summary>
[JsonConverter(typeof(ComputeDeviceJsonConverter))]
public readonly record struct ComputeDevice
{
    ComputeDevice(bool isCuda, int? cudaIndex) { IsCuda = isCuda; CudaIndex = cudaIndex; }

    /// <summary>True for a CUDA device, false for the CPU.</summary>
    public bool IsCuda { get; }
    /// <summary>The CUDA device number; null for the CPU and for plain "cuda" (the current CUDA device).</summary>
    public int? CudaIndex { get; }

    /// <summary>The CPU (also the <c>default</c> value).</summary>
    public static ComputeDevice Cpu => default;

    /// <summary>A CUDA device: <paramref name="index"/> null for the current one.</summary>
    public static ComputeDevice Cuda(int? index = null) =>
        index is < 0 ? throw new ArgumentOutOfRangeException(nameof(index), index, "a CUDA index is 0 or more") : new(true, index);

    /// <summary>Parses "cpu", "cuda" or "cuda:N" (case-insensitive).</summary>
    /// <exception cref="ArgumentException">unknown text, or a CUDA index that is not a number</exception>
    public static ComputeDevice Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim().ToLowerInvariant();
        if (t == "cpu") return Cpu;
        if (t == "cuda") return Cuda();
        if (t.StartsWith("cuda:", StringComparison.Ordinal))
            return int.TryParse(t.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out int index)
                ? Cuda(index)
                : throw new ArgumentException($"device '{text}': the CUDA index must be a number (cuda:0, cuda:1, …)", nameof(text));
        throw new ArgumentException($"unknown device '{text}'; use cpu, cuda or cuda:N", nameof(text));
    }

    /// <summary>The default device: CUDA when TorchSharp sees one, else the CPU (loads the native runtime).</summary>
    public static ComputeDevice Default() => CudaDevices > 0 ? Cuda() : Cpu;

    /// <summary>CUDA devices TorchSharp sees (0 without CUDA), probed once per process: what is installed does not change
    /// while a process runs, and every spec, trainer and benchmark asks.</summary>
    static int CudaDevices => _cudaDevices ??= Probe();
    static int? _cudaDevices;

    static int Probe()
    {
        TorchRuntime.Ensure();
        CpuThreads.Configure();     // the kit's CPU thread rule, once per process (setup.dib and the CLI reach it here)
        return torch.cuda.is_available() ? torch.cuda.device_count() : 0;
    }

    /// <summary>Checks that the device exists here (the CPU always does); returns it.</summary>
    /// <exception cref="ArgumentException">CUDA asked for but not available, or its index past the last device; names <paramref name="paramName"/></exception>
    public ComputeDevice EnsureAvailable(string paramName = "device")
    {
        if (!IsCuda) return this;
        int count = CudaDevices;
        if (count == 0)
            throw new ArgumentException($"device {this} asked for, but CUDA is not available (on a machine with an NVIDIA GPU: use a CUDA PyTorch's libtorch with -p:TorchBackend=pytorch or MORA_LIBTORCH, or build with -p:TorchBackend=cuda-linux or cuda-windows; `info` shows what TorchSharp sees)", paramName);
        if (CudaIndex >= count)
            throw new ArgumentException($"device {this} asked for, but only {count} CUDA device{(count == 1 ? "" : "s")} visible (cuda:0 … cuda:{count - 1})", paramName);
        return this;
    }

    /// <summary>The TorchSharp device, after <see cref="EnsureAvailable"/>.</summary>
    public torch.Device ToTorch(string paramName = "device")
    {
        EnsureAvailable(paramName);
        CpuThreads.Configure();     // the kit's CPU thread rule, once per process, before the first tensor on this device
        return IsCuda ? new torch.Device(DeviceType.CUDA, CudaIndex ?? -1) : torch.CPU;
    }

    /// <summary>"cpu", "cuda" or "cuda:N": the text <see cref="Parse"/> reads.</summary>
    public override string ToString() => !IsCuda ? "cpu" : CudaIndex is { } i ? $"cuda:{i}" : "cuda";
}

/// <summary>Writes a <see cref="ComputeDevice"/> as its text and reads it with <see cref="ComputeDevice.Parse"/>.</summary>
public sealed class ComputeDeviceJsonConverter : JsonConverter<ComputeDevice>
{
    public override ComputeDevice Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String) throw new JsonException($"a device is a string (cpu, cuda or cuda:N), got {reader.TokenType}");
        try { return ComputeDevice.Parse(reader.GetString()!); }
        catch (ArgumentException e) { throw new JsonException(e.Message, e); }
    }

    public override void Write(Utf8JsonWriter writer, ComputeDevice value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
}

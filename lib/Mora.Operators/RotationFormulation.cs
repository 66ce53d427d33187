using TorchSharp;

namespace Mora;

/// <summary>
/// How the rotation design (type 6, paper Eq. 9) computes M R_t x_t for the n blocks x_t of the filled input. Both are the
/// same linear map, M (R_t x_t) = (M R_t) x_t, and agree to float32 round-off (tests hold them within 1e-5 relative in
/// float32 and 1e-12 in float64); they differ in what they compute and how many kernels they launch:
/// <list type="bullet">
/// <item><see cref="RotateM"/>: rotate M's n copies (n·r̂² values: C_t = M R_t) and make one batched product over the
/// blocks, einsum("…nr,nsr→…ns"). No rotated copy of the input is kept for the backward, but the batched product over
/// the block axis makes libtorch transpose the input (tokens × k) into block-major order and back, forward and backward.</item>
/// <item><see cref="RotateInput"/>: rotate the input blocks (what the reference's <c>_apply_mora</c> does) and multiply
/// by Mᵀ as one plain matrix product over tokens·n rows: no transposing copies, one rotated copy of the input kept.</item>
/// </list>
/// <see cref="Auto"/> chooses by device (<see cref="RotationFormulations.For"/>): on the CPU rotating M, measured faster there
/// (figures/bench/rotation-formulation-cpu: 1.04–1.08× LoRA against 1.28–1.31× for rotating the input, 4096², 2048 tokens,
/// r = 8, float32; figures/bench/full: 1.405× → 1.145× when the kit first switched to it); on CUDA rotating the input,
/// the formulation with fewer kernel launches (15 against 20 a layer step there) and no transposing copies
/// (figures/bench/launches) — a hypothesis until a GPU run measures it (bench/gpu/evidence.sh times the bfloat16 layer
/// with each). The environment variable
/// <c>MORA_ROTATION</c> (<c>auto</c>, <c>rotate-m</c>, <c>rotate-input</c>), read once, or <see cref="RotationFormulations.Choice"/> overrides it.
/// </summary>
public enum RotationFormulation
{
    /// <summary>Rotating M on the CPU, rotating the input on CUDA (<see cref="RotationFormulations.For"/>).</summary>
    Auto,
    /// <summary>(M R_t) x_t: M's n copies rotated, one batched product over the blocks.</summary>
    RotateM,
    /// <summary>M (R_t x_t): the input blocks rotated, one matrix product with Mᵀ.</summary>
    RotateInput,
}

/// <summary>The process-wide choice of <see cref="RotationFormulation"/> and its per-device default.</summary>
public static class RotationFormulations
{
    /// <summary>The environment variable that sets <see cref="Choice"/> at start-up.</summary>
    public const string EnvironmentVariable = "MORA_ROTATION";

    static RotationFormulation _choice = FromEnvironment();

    /// <summary>The formulation in force (<see cref="RotationFormulation.Auto"/> unless <c>MORA_ROTATION</c> or a caller
    /// set another). Setting it affects every rotation layer from its next forward.</summary>
    public static RotationFormulation Choice
    {
        get => _choice;
        set => _choice = Enum.IsDefined(value) ? value : throw new ArgumentException($"unknown rotation formulation {(int)value}", nameof(Choice));
    }

    [ThreadStatic] static RotationFormulation? _onThisThread;

    /// <summary>Makes this thread's forwards use <paramref name="formulation"/> until the result is disposed, whatever
    /// <see cref="Choice"/> says (benchmarks and tests compare the two this way without touching other threads).</summary>
    public static IDisposable Use(RotationFormulation formulation)
    {
        if (!Enum.IsDefined(formulation)) throw new ArgumentException($"unknown rotation formulation {(int)formulation}", nameof(formulation));
        var previous = _onThisThread;
        _onThisThread = formulation;
        return new Restore(previous);
    }

    sealed class Restore(RotationFormulation? previous) : IDisposable
    {
        bool _done;
        public void Dispose() { if (!_done) { _onThisThread = previous; _done = true; } }
    }

    /// <summary>The formulation a forward on <paramref name="device"/> uses: this thread's <see cref="Use"/>, else
    /// <see cref="Choice"/>, with <see cref="RotationFormulation.Auto"/> resolved by device.</summary>
    public static RotationFormulation For(DeviceType device) => (_onThisThread ?? _choice) switch
    {
        RotationFormulation.Auto => device == DeviceType.CPU ? RotationFormulation.RotateM : RotationFormulation.RotateInput,
        var fixedChoice => fixedChoice,
    };

    /// <summary>Parses "auto", "rotate-m" or "rotate-input" (case-insensitive; '_' for '-').</summary>
    /// <exception cref="ArgumentException">any other text, naming <paramref name="paramName"/></exception>
    public static RotationFormulation Parse(string text, string paramName = "formulation") =>
        text.Trim().ToLowerInvariant().Replace('_', '-') switch
        {
            "auto" => RotationFormulation.Auto,
            "rotate-m" => RotationFormulation.RotateM,
            "rotate-input" => RotationFormulation.RotateInput,
            _ => throw new ArgumentException($"unknown rotation formulation '{text}'; use auto, rotate-m or rotate-input", paramName),
        };

    /// <summary>The name <see cref="Parse"/> reads.</summary>
    public static string Name(RotationFormulation f) => f switch
    {
        RotationFormulation.RotateM => "rotate-m",
        RotationFormulation.RotateInput => "rotate-input",
        _ => "auto",
    };

    static RotationFormulation FromEnvironment()
    {
        string? text = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(text)) return RotationFormulation.Auto;
        try { return Parse(text, EnvironmentVariable); }
        catch (ArgumentException e)
        {
            // A type initializer cannot report a bad value usefully later; say it now and keep the default.
            Console.Error.WriteLine($"warning: {EnvironmentVariable}: {e.Message.Split(" (Parameter")[0]}; using auto");
            return RotationFormulation.Auto;
        }
    }
}

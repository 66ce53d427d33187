using Mora.Adapters;

namespace Mora.Experiments;

/// <summary>A method as the command line names it: lora, dora, full, or mora-&lt;design&gt; (mora-rotation, mora-sharing,
/// mora-2, …; plain "mora" is rotation, the paper's main design).</summary>
public sealed record MethodSpec(string Name, AdapterMethod Method, MoraType MoraType)
{
    public static MethodSpec Parse(string text, string option = "--methods")
    {
        string t = text.Trim().ToLowerInvariant();
        if (t == "lora") return new("lora", AdapterMethod.Lora, MoraType.Rotation);
        if (t == "dora") return new("dora", AdapterMethod.Dora, MoraType.Rotation);
        if (t is "full" or "fft") return new("full", AdapterMethod.Full, MoraType.Rotation);
        if (t == "mora") return new("mora-rotation", AdapterMethod.Mora, MoraType.Rotation);
        if (t.StartsWith("mora-", StringComparison.Ordinal))
        {
            MoraType type;
            try { type = MoraTypes.Parse(t[5..], option); }
            catch (ArgumentException e) { throw new ArgumentException($"{option}: '{text}': {e.Message}", option, e); }
            return new($"mora-{MoraTypes.Name(type)}", AdapterMethod.Mora, type);
        }
        throw new ArgumentException($"{option}: unknown method '{text}'; use lora, dora, full, mora or mora-<design> (mora-rotation, mora-sharing, mora-1 … mora-6)", option);
    }

    /// <summary>The adapter recipe at LoRA rank <paramref name="r"/> (ignored for full fine-tuning), every linear layer targeted.</summary>
    public AdapterConfig Adapter(int r) => Method switch
    {
        AdapterMethod.Lora => AdapterConfig.Lora(r, alpha: 2 * r),
        AdapterMethod.Dora => AdapterConfig.Dora(r, alpha: 2 * r),
        AdapterMethod.Mora => AdapterConfig.Mora(r, MoraType),
        _ => AdapterConfig.Full(),
    };

    /// <summary>Name of a run folder: method, rank (not for full), seed.</summary>
    public string RunName(int r, int seed) => Method == AdapterMethod.Full ? $"{Name}-seed{seed}" : $"{Name}-r{r}-seed{seed}";
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace Mora.Adapters;

/// <summary>
/// A fine-tuning method as the experiments name it: LoRA, DoRA, full fine-tuning, or MoRA with one compress/decompress
/// <see cref="Design"/> (null for the others). Text ("lora", "mora-rotation", …) becomes a method in one place,
/// <see cref="Parse"/>; JSON writes <see cref="Name"/> and reads it back with <see cref="Parse"/>.
/// </summary>
[JsonConverter(typeof(MethodSpecJsonConverter))]
public sealed record MethodSpec
{
    MethodSpec(AdapterMethod method, MoraDesign? design) { Method = method; Design = design; }

    public AdapterMethod Method { get; }
    /// <summary>MoRA's compress/decompress design (a paper design or a registered one); null unless <see cref="Method"/> is MoRA.</summary>
    public MoraDesign? Design { get; }

    public static MethodSpec Lora { get; } = new(AdapterMethod.Lora, null);
    public static MethodSpec Dora { get; } = new(AdapterMethod.Dora, null);
    public static MethodSpec Full { get; } = new(AdapterMethod.Full, null);
    /// <summary>MoRA with <paramref name="design"/> (rotation by default, the paper's main design).</summary>
    public static MethodSpec Mora(MoraType design = MoraType.Rotation) =>
        Enum.IsDefined(design) ? new(AdapterMethod.Mora, MoraDesign.Of(design)) : throw new ArgumentException($"unknown MoRA design {(int)design}", nameof(design));

    /// <summary>MoRA with any design, a registered one of one's own included (<see cref="MoraDesigns.Register"/>).</summary>
    /// <exception cref="ArgumentException">the design is not the one registered under its name (never registered, refused,
    /// or replaced since): runs would train the registered one while recording this one</exception>
    public static MethodSpec Mora(MoraDesign design)
    {
        ArgumentNullException.ThrowIfNull(design);
        if (design.BuiltIn is null && !ReferenceEquals(MoraDesigns.Parse(design.Name, nameof(design)), design))
            throw new ArgumentException($"design '{design.Name}' is not the one registered under that name (was it refused, or registered again since?): register it with MoraDesigns.Register first", nameof(design));
        return new(AdapterMethod.Mora, design);
    }

    /// <summary>The name runs, tables and JSON use: lora, dora, full, mora-&lt;design&gt; (mora-rotation, mora-sharing, …).</summary>
    public string Name => Design is { } d ? $"mora-{d.Name}" : Method.ToString().ToLowerInvariant();

    public override string ToString() => Name;

    /// <summary>Parses lora, dora, full (or fft), mora (rotation) or mora-&lt;design&gt; with the design's name or number
    /// (mora-sharing, mora-6), case-insensitive.</summary>
    /// <exception cref="ArgumentException">unknown method or design, naming <paramref name="paramName"/></exception>
    public static MethodSpec Parse(string text, string paramName = "text")
    {
        ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim().ToLowerInvariant();
        switch (t)
        {
            case "lora": return Lora;
            case "dora": return Dora;
            case "full" or "fft": return Full;
            case "mora": return Mora();
        }
        if (t.StartsWith("mora-", StringComparison.Ordinal))
        {
            try { return Mora(MoraDesigns.Parse(t[5..], paramName)); }
            catch (ArgumentException e) { throw new ArgumentException($"'{text}': {e.MessageOnly()}", paramName, e); }
        }
        throw new ArgumentException($"unknown method '{text}'; use lora, dora, full, mora or mora-<design> (mora-rotation, mora-sharing, mora-0 … mora-6, or mora-<name> of a registered design)", paramName);
    }

    /// <summary>The adapter recipe at LoRA rank <paramref name="r"/> (ignored for full fine-tuning), every linear layer targeted.</summary>
    public AdapterConfig Adapter(int r) => Method switch
    {
        AdapterMethod.Lora => AdapterConfig.Lora(r, alpha: 2 * r),
        AdapterMethod.Dora => AdapterConfig.Dora(r, alpha: 2 * r),
        AdapterMethod.Mora => Design!.BuiltIn is { } t ? AdapterConfig.Mora(r, t) : AdapterConfig.Mora(r) with { Design = Design.Name },
        _ => AdapterConfig.Full(),
    };

    /// <summary>Name of a run folder: method, rank (not for full), seed.</summary>
    public string RunName(int r, int seed) => Method == AdapterMethod.Full ? $"{Name}-seed{seed}" : $"{Name}-r{r}-seed{seed}";
}

/// <summary>Writes a <see cref="MethodSpec"/> as its <see cref="MethodSpec.Name"/> and reads it with <see cref="MethodSpec.Parse"/>.</summary>
public sealed class MethodSpecJsonConverter : JsonConverter<MethodSpec>
{
    public override MethodSpec Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String) throw new JsonException($"a method is a string (lora, mora-rotation, …), got {reader.TokenType}");
        string text = reader.GetString()!;
        int at = text.IndexOf('@');
        try
        {
            var method = MethodSpec.Parse(at < 0 ? text : text[..at]);
            if (at >= 0 && method.Design is { BuiltIn: null } own && own.Fingerprint != text[(at + 1)..])
                throw new ArgumentException($"'{text}': design '{own.Name}' computes something else now (fingerprint {own.Fingerprint}, recorded {text[(at + 1)..]}): it was redefined");
            return method;
        }
        catch (ArgumentException e) { throw new JsonException(e.Message, e); }
    }

    /// <summary>The name; for a design of one's own, the name and "@" its <see cref="MoraDesign.Fingerprint"/>, so that
    /// a job's spec.json names what the design computed and a redefined design of the same name is another job.</summary>
    public override void Write(Utf8JsonWriter writer, MethodSpec value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.Design is { BuiltIn: null } own ? $"{value.Name}@{own.Fingerprint}" : value.Name);
}

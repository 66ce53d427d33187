namespace Mora.Model;

/// <summary>
/// A Hugging Face model folder that the kit cannot load as it is written: a config.json, generation_config.json or
/// model.safetensors.index.json that is malformed, mistyped, out of range or uses a field the kit does not model, a weight
/// file the folder lacks or that lies outside it, non-finite weights. The message starts with the file and names the
/// field; <see cref="File"/> and <see cref="Field"/> hold them. (A safetensors file that is itself malformed throws
/// <see cref="Mora.IO.SafeTensorsFormatException"/>; tensors that do not fit the config throw
/// <see cref="CheckpointMismatchException"/>.)
/// </summary>
public sealed class ModelFormatException : FormatException
{
    public ModelFormatException(string file, string? field, string problem, Exception? inner = null)
        : base(field is null ? $"{file}: {problem}" : $"{file}: '{field}' {problem}", inner)
    {
        File = file;
        Field = field;
    }

    /// <summary>The file at fault (full path).</summary>
    public string File { get; }
    /// <summary>The JSON field at fault (<c>rope_scaling.type</c>, <c>weight_map['model.norm.weight']</c>), or null.</summary>
    public string? Field { get; }
}

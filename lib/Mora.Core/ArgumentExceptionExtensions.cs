namespace Mora;

public static class ArgumentExceptionExtensions
{
    /// <summary>The message without the " (Parameter 'x')" that <see cref="ArgumentException.Message"/> appends.</summary>
    public static string MessageOnly(this ArgumentException e) =>
        e.ParamName is { } p ? e.Message.Replace($" (Parameter '{p}')", "", StringComparison.Ordinal) : e.Message;
}

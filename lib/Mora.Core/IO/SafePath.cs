namespace Mora.IO;

/// <summary>
/// Run names, figure names and metric names become file and folder names; these checks keep every one of them inside
/// the output folder the user chose. A name is one path segment of letters, digits, '-', '_' and '.', not "." or "..";
/// anything else (a separator, "..", a drive, a control character) is refused with an <see cref="ArgumentException"/>
/// naming the argument, before anything is written.
/// </summary>
public static class SafePath
{
    /// <summary>Returns <paramref name="name"/> when it is a plain name, or throws naming <paramref name="argument"/>.</summary>
    public static string Name(string? name, string argument)
    {
        if (string.IsNullOrEmpty(name) || name is "." or ".." || name.Length > 200
            || name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
            throw new ArgumentException($"{argument}: '{name}' must be a plain name of at most 200 letters, digits, '-', '_' or '.' (no folders, no '..')", argument);
        return name;
    }

    /// <summary><paramref name="root"/>/<paramref name="name"/> (as a full path) for a plain <paramref name="name"/>; the
    /// result is checked to lie strictly inside the root.</summary>
    public static string Under(string root, string name, string argument)
    {
        string full = Path.GetFullPath(root);
        string child = Path.GetFullPath(Path.Combine(full, Name(name, argument)));
        string prefix = Path.EndsInDirectorySeparator(full) ? full : full + Path.DirectorySeparatorChar;
        if (!child.StartsWith(prefix, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal))
            throw new ArgumentException($"{argument}: '{name}' leads outside {full}", argument);
        return child;
    }
}

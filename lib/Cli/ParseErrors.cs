using System.CommandLine;
using System.Text.RegularExpressions;

namespace Mora.Cli;

/// <summary>The command-line parser's messages in the words of the kit: what a value must be instead of a .NET type
/// name, and the option meant when one is mistyped.</summary>
static partial class ParseErrors
{
    [GeneratedRegex(@"as expected type '(?<type>[\w.`\[\]]+)'")]
    private static partial Regex ExpectedType();

    [GeneratedRegex(@"^Unrecognized command or argument '(?<token>--?[^']+)'\.$")]
    private static partial Regex Unrecognized();

    public static string Describe(string message, Command command)
    {
        message = ExpectedType().Replace(message, m => m.Groups["type"].Value switch
        {
            "System.Int32" or "System.Int64" or "System.Nullable`1[System.Int32]" => "as a whole number",
            "System.Double" or "System.Single" or "System.Nullable`1[System.Double]" => "as a number (e.g. 0.001 or 1e-3)",
            "System.Boolean" => "as true or false",
            var t => $"as a value of type {t}",
        });
        if (Unrecognized().Match(message) is { Success: true } u && Closest(u.Groups["token"].Value, command) is { } meant)
            message += $" Did you mean {meant}?";
        return message;
    }

    /// <summary>The option of <paramref name="command"/> nearest to <paramref name="token"/> (at most a third of its letters apart), or null.</summary>
    static string? Closest(string token, Command command)
    {
        var names = command.Options.SelectMany(o => o.Aliases.Prepend(o.Name)).Distinct().ToList();
        var best = names.Select(n => (Name: n, Distance: Distance(token, n))).OrderBy(x => x.Distance).FirstOrDefault();
        return best.Name is not null && best.Distance <= Math.Max(1, best.Name.Length / 3) ? best.Name : null;
    }

    /// <summary>Levenshtein distance (insertions, deletions, substitutions; a swap of neighbours counts one).</summary>
    static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
            {
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        return d[a.Length, b.Length];
    }
}

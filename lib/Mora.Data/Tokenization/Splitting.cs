namespace Mora.Data.Tokenization;

/// <summary>A token: id and string (the library's <c>Token</c> without offsets).</summary>
readonly record struct Tok(int Id, string Value);

/// <summary>A piece of the input on its way through the pipeline (the library's <c>Split</c>): normalized text, and its
/// tokens once an added token or the model has produced them.</summary>
sealed class Piece
{
    public NText Text;
    public List<Tok>? Tokens;
    public Piece(NText text, List<Tok>? tokens = null) { Text = text; Tokens = tokens; }
}

/// <summary>How a split keeps its delimiters (the library's <c>SplitDelimiterBehavior</c>).</summary>
enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>The library's <c>Pattern::find_matches</c> and <c>NormalizedString::split</c>, on UTF-16 offsets.</summary>
static class Splitting
{
    public static SplitBehavior ParseBehavior(JNode n) => n.AsString() switch
    {
        "Removed" => SplitBehavior.Removed,
        "Isolated" => SplitBehavior.Isolated,
        "MergedWithPrevious" => SplitBehavior.MergedWithPrevious,
        "MergedWithNext" => SplitBehavior.MergedWithNext,
        "Contiguous" => SplitBehavior.Contiguous,
        var other => throw n.Error($"is '{other}', not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous"),
    };

    /// <summary><c>find_matches</c> of a regex: the text cut into (start, end, is_match) covering it, gaps included.</summary>
    public static List<(int Start, int End, bool Match)> Find(OnigRegex regex, string text)
    {
        if (text.Length == 0) return [(0, 0, false)];
        var result = new List<(int, int, bool)>();
        int prev = 0;
        foreach (var (s, e) in regex.Matches(text))
        {
            if (prev != s) result.Add((prev, s, false));
            result.Add((s, e, true));
            prev = e;
        }
        if (prev != text.Length) result.Add((prev, text.Length, false));
        return result;
    }

    /// <summary><c>find_matches</c> of a character predicate: every matching code point is a match of its own.</summary>
    public static List<(int Start, int End, bool Match)> Find(Func<int, bool> predicate, string text)
    {
        if (text.Length == 0) return [(0, 0, false)];
        var result = new List<(int, int, bool)>();
        int last = 0;
        for (int i = 0; i < text.Length;)
        {
            int cp = UnicodeProps.CodePointAt(text, i);
            int w = UnicodeProps.Width(cp);
            if (predicate(cp))
            {
                if (last < i) result.Add((last, i, false));
                result.Add((i, i + w, true));
                last = i + w;
            }
            i += w;
        }
        if (text.Length > last) result.Add((last, text.Length, false));
        return result;
    }

    public static List<(int Start, int End, bool Match)> Invert(List<(int Start, int End, bool Match)> matches) =>
        matches.Select(m => (m.Start, m.End, !m.Match)).ToList();

    /// <summary><c>NormalizedString::split</c>: applies the behavior to the matches and slices the text (empty pieces
    /// are dropped by the caller, as <c>PreTokenizedString::split</c> does).</summary>
    public static List<NText> Split(NText text, List<(int Start, int End, bool Match)> matches, SplitBehavior behavior)
    {
        var splits = new List<(int Start, int End, bool Remove)>(matches.Count);
        switch (behavior)
        {
            case SplitBehavior.Isolated:
                foreach (var m in matches) splits.Add((m.Start, m.End, false));
                break;
            case SplitBehavior.Removed:
                foreach (var m in matches) splits.Add((m.Start, m.End, m.Match));
                break;
            case SplitBehavior.Contiguous:
            {
                bool previous = false;
                foreach (var m in matches)
                {
                    if (m.Match == previous && splits.Count > 0) splits[^1] = (splits[^1].Start, m.End, false);
                    else splits.Add((m.Start, m.End, false));
                    previous = m.Match;
                }
                break;
            }
            case SplitBehavior.MergedWithPrevious:
            {
                bool previous = false;
                foreach (var m in matches)
                {
                    if (m.Match && !previous && splits.Count > 0) splits[^1] = (splits[^1].Start, m.End, false);
                    else splits.Add((m.Start, m.End, false));
                    previous = m.Match;
                }
                break;
            }
            case SplitBehavior.MergedWithNext:
            {
                bool previous = false;
                for (int k = matches.Count - 1; k >= 0; k--)
                {
                    var m = matches[k];
                    if (m.Match && !previous && splits.Count > 0) splits[^1] = (m.Start, splits[^1].End, false);
                    else splits.Add((m.Start, m.End, false));
                    previous = m.Match;
                }
                splits.Reverse();
                break;
            }
        }
        var result = new List<NText>(splits.Count);
        foreach (var (s, e, remove) in splits)
            if (!remove) result.Add(text.Slice(s, e));
        return result;
    }

    /// <summary><c>PreTokenizedString::split</c>: replaces every piece without tokens by the pieces <paramref name="split"/>
    /// makes of it, dropping empty ones.</summary>
    public static void SplitEach(List<Piece> pieces, Func<NText, IEnumerable<NText>> split)
    {
        var result = new List<Piece>(pieces.Count);
        foreach (var p in pieces)
        {
            if (p.Tokens is not null) { result.Add(p); continue; }
            foreach (var n in split(p.Text))
                if (!n.IsEmpty) result.Add(new Piece(n));
        }
        pieces.Clear();
        pieces.AddRange(result);
    }

    /// <summary><c>NormalizedString::replace</c> of the matches by <paramref name="content"/>.</summary>
    public static NText Replace(NText t, List<(int Start, int End, bool Match)> matches, string content)
    {
        var b = new NTextBuilder(t.Length);
        foreach (var (s, e, match) in matches)
        {
            if (!match) { b.Append(t, s, e); continue; }
            int origin = s < t.Length ? t.Origin(s) : t.Length > 0 ? t.Origin(t.Length - 1) : 0;
            b.Append(content, origin);
        }
        return b.Build();
    }
}

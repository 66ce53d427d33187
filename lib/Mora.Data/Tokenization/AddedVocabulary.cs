namespace Mora.Data.Tokenization;

/// <summary>One entry of tokenizer.json's <c>added_tokens</c>.</summary>
sealed record AddedToken(int Id, string Content, bool SingleWord, bool LStrip, bool RStrip, bool Normalized, bool Special);

/// <summary>
/// The library's <c>AddedVocabulary</c> (tokenizer/added_vocabulary.rs): the added tokens' ids, assigned as the library
/// assigns them when it reads a file, and their extraction from the input before the model sees it: tokens with
/// <c>normalized: false</c> are found in the raw text, the others in each piece after normalization; leftmost match
/// first, the longest at a position; <c>single_word</c>, <c>lstrip</c>, <c>rstrip</c> as the library applies them.
/// </summary>
sealed class AddedVocabulary
{
    readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
    readonly Dictionary<int, AddedToken> _byId = new();
    readonly HashSet<string> _special = new(StringComparer.Ordinal);
    readonly Dictionary<int, string> _normalizedContent = new();
    readonly Trie _raw = new(), _normalized = new();

    public IReadOnlyDictionary<int, AddedToken> ById => _byId;
    public bool IsSpecial(string token) => _special.Contains(token);
    public int? TokenToId(string token) => _ids.TryGetValue(token, out int id) ? id : null;

    /// <summary>The token string decoding uses: the normalized content for a normalized token the normalizer changes.</summary>
    public string? IdToToken(int id) =>
        _byId.TryGetValue(id, out var t) ? _normalizedContent.GetValueOrDefault(id, t.Content) : null;

    public static AddedVocabulary Read(JNode list, TokenizerModel model, Normalizer? normalizer)
    {
        var v = new AddedVocabulary();
        if (list.IsNull) return v;
        int nextId = model.VocabCount;   // the library: ids after the model's vocabulary size for contents it lacks
        foreach (var n in list.Items())
        {
            int fileId = n.Index("id");
            string content = n.Str("content");
            // Every field is required, as in the library.
            var token = new AddedToken(fileId, content, n.Bool("single_word"), n.Bool("lstrip"), n.Bool("rstrip"), n.Bool("normalized"), n.Bool("special"));
            if (content.Length == 0) throw n.Error("content", "is empty (the library ignores such a token, so its id would mean nothing): refused");
            if (v._ids.TryGetValue(content, out int known) && v._byId[known] == token with { Id = known }) continue;
            int id = v._ids.TryGetValue(content, out known) ? known : model.TokenToId(content) ?? nextId++;
            if (id != fileId)
                throw n.Error("id", $"is {fileId}, but the tokenizers library gives '{content}' the id {id} (the model's id for that content, or the next id after the vocabulary of {model.VocabCount}): the file is inconsistent; refused");
            if (token.Normalized && normalizer is not null)
            {
                string normed = normalizer.Normalize(NText.FromInput(content)).Text;
                if (normed != content) v._normalizedContent[id] = normed;
            }
            v._ids[content] = id;
            if (token.Special) v._special.Add(content);
            v._byId[id] = token;
        }
        foreach (var (id, t) in v._byId)
        {
            if (t.Normalized) v._normalized.Add(v._normalizedContent.GetValueOrDefault(id, t.Content), id);
            else v._raw.Add(t.Content, id);
        }
        return v;
    }

    /// <summary><c>extract_and_normalize</c>: the input cut into added tokens and normalized pieces.</summary>
    public List<Piece> ExtractAndNormalize(Normalizer? normalizer, string input)
    {
        var pieces = new List<Piece>();
        foreach (var p in SplitWithIndices(NText.FromInput(input), _raw))
        {
            if (p.Tokens is not null) { pieces.Add(p); continue; }
            var normalized = normalizer is null ? p.Text : normalizer.Normalize(p.Text);
            pieces.AddRange(SplitWithIndices(normalized, _normalized));
        }
        return pieces;
    }

    IEnumerable<Piece> SplitWithIndices(NText t, Trie trie)
    {
        foreach (var (id, start, end) in FindMatches(t.Text, trie))
        {
            if (start == end) continue;
            var slice = t.Slice(start, end);
            yield return id is int i ? new Piece(slice, [new Tok(i, slice.Text)]) : new Piece(slice);
        }
    }

    List<(int? Id, int Start, int End)> FindMatches(string s, Trie trie)
    {
        if (s.Length == 0 || trie.IsEmpty) return [(null, 0, s.Length)];
        var splits = new List<(int?, int, int)>();
        int startOffset = 0;
        for (int pos = 0; pos < s.Length;)
        {
            if (trie.LeftmostLongest(s, pos) is not var (mStart, mEnd, id)) break;
            pos = mEnd;
            int start = mStart, stop = mEnd;
            var token = _byId[id];
            if (token.SingleWord)
            {
                bool startSpace = start == 0 || !EndsWithWord(s, start);
                bool stopSpace = stop == s.Length || !StartsWithWord(s, stop);
                if (!startSpace || !stopSpace) continue;
            }
            if (token.LStrip)
            {
                int newStart = start;
                while (newStart > 0 && UnicodeProps.IsWhiteSpace(s[newStart - 1])) newStart--;
                start = Math.Max(newStart, startOffset);
            }
            if (token.RStrip)
                while (stop < s.Length && UnicodeProps.IsWhiteSpace(s[stop])) stop++;
            if (startOffset < start) splits.Add((null, startOffset, start));
            splits.Add((id, start, stop));
            startOffset = stop;
        }
        if (startOffset != s.Length) splits.Add((null, startOffset, s.Length));
        return splits;
    }

    static bool EndsWithWord(string s, int end)
    {
        int i = end - 1;
        if (char.IsLowSurrogate(s[i]) && i > 0) i--;
        return UnicodeProps.IsWordChar(UnicodeProps.CodePointAt(s, i));
    }

    static bool StartsWithWord(string s, int start) => UnicodeProps.IsWordChar(UnicodeProps.CodePointAt(s, start));

    /// <summary>A character trie for leftmost-longest matching (the library uses an Aho-Corasick automaton with
    /// MatchKind::LeftmostLongest: the same matches).</summary>
    sealed class Trie
    {
        sealed class Node { public Dictionary<char, Node>? Next; public int Id = -1; }
        readonly Node _root = new();
        public bool IsEmpty => _root.Next is null;

        public void Add(string s, int id)
        {
            var n = _root;
            foreach (char c in s)
            {
                n.Next ??= new Dictionary<char, Node>();
                if (!n.Next.TryGetValue(c, out var child)) n.Next[c] = child = new Node();
                n = child;
            }
            n.Id = id;
        }

        public (int Start, int End, int Id)? LeftmostLongest(string s, int from)
        {
            var first = _root.Next!;
            for (int start = from; start < s.Length; start++)
            {
                if (!first.ContainsKey(s[start])) continue;
                var n = _root;
                int bestEnd = -1, bestId = -1;
                for (int i = start; i < s.Length && n.Next is not null && n.Next.TryGetValue(s[i], out var child); i++)
                {
                    n = child;
                    if (n.Id >= 0) { bestEnd = i + 1; bestId = n.Id; }
                }
                if (bestEnd >= 0) return (start, bestEnd, bestId);
            }
            return null;
        }
    }
}

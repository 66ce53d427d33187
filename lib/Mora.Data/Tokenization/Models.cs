namespace Mora.Data.Tokenization;

/// <summary>A tokenizer.json <c>model</c> (tokenizers/src/models): text of one piece to tokens, and the vocabulary.</summary>
abstract class TokenizerModel
{
    public abstract List<Tok> Tokenize(string piece);
    public abstract string? IdToToken(int id);
    public abstract int? TokenToId(string token);
    /// <summary>The library's <c>get_vocab_size</c> (the number of entries, not the largest id + 1).</summary>
    public abstract int VocabCount { get; }
    public abstract int MaxId { get; }
    public abstract string Kind { get; }

    public static TokenizerModel Read(JNode n)
    {
        if (n.IsNull) throw n.Error("is missing");
        // Old files may omit the type: the library then tries each model in turn; the kit decides by the fields.
        string type = n.Has("type") ? n.Type
            : n.Has("merges") ? "BPE" : n["vocab"].Kind == System.Text.Json.JsonValueKind.Array ? "Unigram"
            : n.Has("max_input_chars_per_word") ? "WordPiece" : throw n.Error("type", "is missing");
        return type switch
        {
            "BPE" => new Bpe(n),
            "Unigram" => new Unigram(n),
            "WordPiece" => new WordPiece(n),
            "WordLevel" => new WordLevel(n),
            _ => throw n.Error("type", $"'{type}' is not supported (BPE, Unigram, WordPiece, WordLevel): refused"),
        };
    }

    /// <summary>A <c>vocab</c> object {token: id}: every id a non-negative integer, no id twice.</summary>
    protected static Dictionary<string, int> ReadVocabObject(JNode v, out string[] byId, out int maxId)
    {
        if (v.IsNull) throw v.Error("is missing");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var reverse = new Dictionary<int, string>();
        maxId = -1;
        foreach (var (token, idNode) in v.Members())
        {
            int id = idNode.AsIndex();
            if (JNode.HasLoneSurrogate(token)) throw idNode.Error("is a token with a lone surrogate (not valid Unicode)");
            if (!vocab.TryAdd(token, id)) throw idNode.Error($"appears twice in {v.Path}");
            if (!reverse.TryAdd(id, token)) throw idNode.Error($"is id {id}, which '{reverse[id]}' has too: duplicate id");
            maxId = Math.Max(maxId, id);
        }
        byId = new string[maxId + 1];
        foreach (var (id, token) in reverse) byId[id] = token;
        return vocab;
    }
}

/// <summary>Byte-pair encoding (models/bpe): merges applied by rank, with byte fallback, unknown-token fusing,
/// continuing_subword_prefix, end_of_word_suffix and ignore_merges.</summary>
sealed class Bpe : TokenizerModel
{
    readonly Dictionary<string, int> _vocab;
    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    readonly string[] _byId;
    readonly Dictionary<long, (int Rank, int Id)> _merges;
    readonly string? _unk, _prefix, _suffix;
    readonly bool _fuseUnk, _byteFallback, _ignoreMerges;
    readonly int[] _byteIds = new int[256];   // −1 where <0xXX> is not in the vocabulary
    readonly int _maxId;
    readonly Dictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    readonly object _cacheLock = new();
    const int CacheCapacity = 10_000, CacheMaxLength = 256;

    public Bpe(JNode n)
    {
        _vocab = ReadVocabObject(n["vocab"], out _byId, out _maxId);
        _lookup = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _unk = n.OptStr("unk_token");
        _prefix = n.OptStr("continuing_subword_prefix");
        _suffix = n.OptStr("end_of_word_suffix");
        _fuseUnk = n.Bool("fuse_unk", false);
        _byteFallback = n.Bool("byte_fallback", false);
        _ignoreMerges = n.Bool("ignore_merges", false);
        var dropout = n["dropout"];
        if (!dropout.IsNull)
        {
            double p = dropout.AsDouble();
            if (p < 0 || p > 1) throw dropout.Error($"is {p}, not a probability");
            if (p > 0) throw dropout.Error($"is {p}: BPE dropout makes encoding random; refused (set it to null for inference)");
        }
        for (int b = 0; b < 256; b++) _byteIds[b] = _vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;

        var mergesNode = n["merges"];
        if (mergesNode.IsNull) throw n.Error("merges", "is missing");
        _merges = new Dictionary<long, (int, int)>(mergesNode.Count);
        int rank = 0, prefixLength = _prefix?.Length ?? 0;
        foreach (var m in mergesNode.Items())
        {
            string a, b;
            if (m.Kind == System.Text.Json.JsonValueKind.String)
            {
                string line = m.AsString();
                if (line.StartsWith("#version", StringComparison.Ordinal)) continue;
                var parts = line.Split(' ');
                if (parts.Length != 2) throw m.Error($"is \"{line}\", not two tokens separated by one space");
                (a, b) = (parts[0], parts[1]);
            }
            else if (m.Kind == System.Text.Json.JsonValueKind.Array && m.Count == 2)
                (a, b) = (m.At(0).AsString(), m.At(1).AsString());
            else throw m.Error($"is {JNode.Show(m.E)}, neither \"a b\" nor [\"a\", \"b\"]");
            if (!_vocab.TryGetValue(a, out int ia)) throw m.Error($"names '{a}', which is not in model.vocab");
            if (!_vocab.TryGetValue(b, out int ib)) throw m.Error($"names '{b}', which is not in model.vocab");
            if (b.Length < prefixLength) throw m.Error($"names '{b}', shorter than continuing_subword_prefix");
            string merged = a + b[prefixLength..];
            if (!_vocab.TryGetValue(merged, out int id)) throw m.Error($"makes '{merged}', which is not in model.vocab");
            _merges[Key(ia, ib)] = (rank, id);   // a repeated pair: the later rank wins, as in the library's map
            rank++;
        }
    }

    static long Key(int a, int b) => ((long)a << 32) | (uint)b;

    public override string Kind => "BPE";
    public override int VocabCount => _vocab.Count;
    public override int MaxId => _maxId;
    public override string? IdToToken(int id) => id >= 0 && id < _byId.Length ? _byId[id] : null;
    public override int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    public override List<Tok> Tokenize(string piece)
    {
        if (piece.Length == 0) return [];
        if (_ignoreMerges && _vocab.TryGetValue(piece, out int whole)) return [new Tok(whole, piece)];
        int[]? ids;
        lock (_cacheLock) _cache.TryGetValue(piece, out ids);
        if (ids is null)
        {
            ids = MergeWord(piece);
            if (piece.Length < CacheMaxLength)
                lock (_cacheLock) if (_cache.Count < CacheCapacity) _cache.TryAdd(piece, ids);
        }
        var result = new List<Tok>(ids.Length);
        foreach (int id in ids) result.Add(new Tok(id, _byId[id]));
        return result;
    }

    int[] MergeWord(string w)
    {
        var symbols = new List<int>(w.Length);
        int unkId = -1, unkPending = -1;   // the library's pending unknown (fused when fuse_unk)
        for (int i = 0; i < w.Length;)
        {
            int cp = UnicodeProps.CodePointAt(w, i);
            int width = UnicodeProps.Width(cp);
            bool first = i == 0, last = i + width >= w.Length;
            ReadOnlySpan<char> ch = w.AsSpan(i, width);
            string? s = null;
            if (!first && _prefix is not null) s = _prefix + ch.ToString();
            if (last && _suffix is not null) s = (s ?? ch.ToString()) + _suffix;
            bool found = s is null ? _lookup.TryGetValue(ch, out int id) : _vocab.TryGetValue(s, out id);
            i += width;
            if (found)
            {
                if (unkPending >= 0) { symbols.Add(unkPending); unkPending = -1; }
                symbols.Add(id);
                continue;
            }
            if (_byteFallback)
            {
                // Every UTF-8 byte of the symbol (prefix/suffix included) must have its <0xXX> token.
                byte[] bytes = s is null ? System.Text.Encoding.UTF8.GetBytes(ch.ToArray()) : System.Text.Encoding.UTF8.GetBytes(s);
                bool all = true;
                foreach (byte b in bytes) if (_byteIds[b] < 0) { all = false; break; }
                if (all)
                {
                    foreach (byte b in bytes) symbols.Add(_byteIds[b]);
                    continue;
                }
            }
            if (_unk is not null)
            {
                if (unkId < 0)
                {
                    if (!_vocab.TryGetValue(_unk, out unkId))
                        throw new InvalidOperationException($"BPE unk_token '{_unk}' is not in the vocabulary (the library fails here too)");
                }
                if (unkPending >= 0 && !_fuseUnk) symbols.Add(unkPending);
                unkPending = unkId;
            }
            // Without unk_token the character is dropped, as the library does.
        }
        if (unkPending >= 0) symbols.Add(unkPending);
        return Merge(symbols);
    }

    /// <summary>Word::merge_all: repeatedly merges the pair of lowest rank (leftmost on ties).</summary>
    int[] Merge(List<int> symbols)
    {
        int n = symbols.Count;
        if (n < 2) return symbols.ToArray();
        var c = symbols.ToArray();
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; alive[i] = true; }
        var queue = new PriorityQueue<(int Pos, int NewId), (int Rank, int Pos)>();
        for (int i = 0; i + 1 < n; i++)
            if (_merges.TryGetValue(Key(c[i], c[i + 1]), out var m)) queue.Enqueue((i, m.Id), (m.Rank, i));
        while (queue.TryDequeue(out var top, out _))
        {
            int pos = top.Pos;
            if (!alive[pos] || next[pos] < 0) continue;
            int right = next[pos];
            if (!_merges.TryGetValue(Key(c[pos], c[right]), out var cur) || cur.Id != top.NewId) continue;
            c[pos] = top.NewId;
            alive[right] = false;
            next[pos] = next[right];
            if (next[right] >= 0) prev[next[right]] = pos;
            if (prev[pos] >= 0 && _merges.TryGetValue(Key(c[prev[pos]], c[pos]), out var left))
                queue.Enqueue((prev[pos], left.Id), (left.Rank, prev[pos]));
            if (next[pos] >= 0 && _merges.TryGetValue(Key(c[pos], c[next[pos]]), out var after))
                queue.Enqueue((pos, after.Id), (after.Rank, pos));
        }
        var result = new List<int>(n);
        for (int i = 0; i < n; i++) if (alive[i]) result.Add(c[i]);
        return result.ToArray();
    }
}

/// <summary>Unigram (models/unigram): the Viterbi path over piece scores, unknown characters at min score − 10 and
/// fused, byte fallback for unknown pieces.</summary>
sealed class Unigram : TokenizerModel
{
    readonly string[] _pieces;
    readonly double[] _scores;
    readonly Dictionary<string, int> _ids;
    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    readonly int? _unkId;
    readonly bool _byteFallback;
    readonly double _minScore;
    readonly int _maxPieceLength;
    const double UnkPenalty = 10.0;

    public Unigram(JNode n)
    {
        var vocab = n["vocab"];
        if (vocab.IsNull) throw n.Error("vocab", "is missing");
        int count = vocab.Count;
        _pieces = new string[count];
        _scores = new double[count];
        _ids = new Dictionary<string, int>(count, StringComparer.Ordinal);
        _minScore = double.PositiveInfinity;
        int i = 0;
        foreach (var entry in vocab.Items())
        {
            if (entry.Kind != System.Text.Json.JsonValueKind.Array || entry.Count != 2)
                throw entry.Error($"is {JNode.Show(entry.E)}, not [piece, score]");
            string piece = entry.At(0).AsString();
            double score = entry.At(1).AsDouble();
            if (!_ids.TryAdd(piece, i)) throw entry.Error($"repeats the piece '{piece}' (already id {_ids[piece]})");
            _pieces[i] = piece;
            _scores[i] = score;
            _minScore = Math.Min(_minScore, score);
            _maxPieceLength = Math.Max(_maxPieceLength, piece.Length);
            i++;
        }
        _lookup = _ids.GetAlternateLookup<ReadOnlySpan<char>>();
        var unk = n["unk_id"];
        if (!unk.IsNull)
        {
            int u = unk.AsIndex();
            if (count == 0) throw vocab.Error("is empty but unk_id needs a piece");
            if (u >= count) throw unk.Error($"is {u}, beyond the {count} pieces of model.vocab");
            _unkId = u;
        }
        _byteFallback = n.Bool("byte_fallback", false);
    }

    public override string Kind => "Unigram";
    public override int VocabCount => _pieces.Length;
    public override int MaxId => _pieces.Length - 1;
    public override string? IdToToken(int id) => id >= 0 && id < _pieces.Length ? _pieces[id] : null;
    public override int? TokenToId(string token) => _ids.TryGetValue(token, out int id) ? id : null;

    public override List<Tok> Tokenize(string sentence)
    {
        var result = new List<Tok>();
        if (sentence.Length == 0) return result;
        foreach (string piece in Encode(sentence))
        {
            if (_ids.TryGetValue(piece, out int id)) { result.Add(new Tok(id, piece)); continue; }
            if (_byteFallback)
            {
                var bytes = System.Text.Encoding.UTF8.GetBytes(piece);
                var byteToks = new List<Tok>(bytes.Length);
                foreach (byte b in bytes)
                {
                    string name = $"<0x{b:X2}>";
                    if (!_ids.TryGetValue(name, out int bid)) { byteToks = null; break; }
                    byteToks.Add(new Tok(bid, name));
                }
                if (byteToks is not null) { result.AddRange(byteToks); continue; }
            }
            result.Add(new Tok(_unkId ?? throw new InvalidOperationException("Unigram: an unknown piece but model.unk_id is missing (the library fails here too)"), piece));
        }
        return result;
    }

    /// <summary>encode_optimized: best path by dynamic programming over code point positions.</summary>
    List<string> Encode(string s)
    {
        int size = s.Length;
        double unkScore = _minScore - UnkPenalty;
        var best = new double[size + 1];
        var startsAt = new int[size + 1];
        var bestId = new int[size + 1];
        Array.Fill(startsAt, -1);
        for (int start = 0; start < size;)
        {
            int cpWidth = UnicodeProps.Width(UnicodeProps.CodePointAt(s, start));
            double here = best[start];
            bool single = false;
            int maxLen = Math.Min(_maxPieceLength, size - start);
            for (int len = 1; len <= maxLen; len++)
            {
                if (!_lookup.TryGetValue(s.AsSpan(start, len), out int id)) continue;
                int end = start + len;
                double candidate = _scores[id] + here;
                if (startsAt[end] < 0 || candidate > best[end]) { best[end] = candidate; startsAt[end] = start; bestId[end] = id; }
                if (len == cpWidth) single = true;
            }
            if (!single)
            {
                int end = start + cpWidth;
                double candidate = unkScore + here;
                if (startsAt[end] < 0 || candidate > best[end])
                {
                    best[end] = candidate; startsAt[end] = start;
                    bestId[end] = _unkId ?? throw new InvalidOperationException("Unigram: an unknown character but model.unk_id is missing (the library fails here too)");
                }
            }
            start += cpWidth;
        }
        var results = new List<string>();
        var unkRun = new List<string>();
        for (int end = size; end > 0;)
        {
            int start = startsAt[end];
            string piece = s[start..end];
            if (_unkId is int u && bestId[end] == u) unkRun.Add(piece);
            else
            {
                if (unkRun.Count > 0) { unkRun.Reverse(); results.Add(string.Concat(unkRun)); unkRun.Clear(); }
                results.Add(piece);
            }
            end = start;
        }
        if (unkRun.Count > 0) { unkRun.Reverse(); results.Add(string.Concat(unkRun)); }
        results.Reverse();
        return results;
    }
}

/// <summary>WordPiece (models/wordpiece): greedy longest match with the continuing-subword prefix.</summary>
sealed class WordPiece : TokenizerModel
{
    readonly Dictionary<string, int> _vocab;
    readonly string[] _byId;
    readonly string _unk, _prefix;
    readonly int _maxChars, _maxId;

    public WordPiece(JNode n)
    {
        _vocab = ReadVocabObject(n["vocab"], out _byId, out _maxId);
        _unk = n.Str("unk_token");
        _prefix = n.OptStr("continuing_subword_prefix") ?? "##";
        _maxChars = n["max_input_chars_per_word"].IsNull ? 100 : n.Index("max_input_chars_per_word");
    }

    public override string Kind => "WordPiece";
    public override int VocabCount => _vocab.Count;
    public override int MaxId => _maxId;
    public override string? IdToToken(int id) => id >= 0 && id < _byId.Length ? _byId[id] : null;
    public override int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    List<Tok> Unknown() => [new Tok(_vocab.TryGetValue(_unk, out int id) ? id : throw new InvalidOperationException($"WordPiece unk_token '{_unk}' is not in the vocabulary (the library fails here too)"), _unk)];

    public override List<Tok> Tokenize(string s)
    {
        if (s.EnumerateRunes().Count() > _maxChars) return Unknown();
        var result = new List<Tok>();
        for (int start = 0; start < s.Length;)
        {
            int end = s.Length;
            Tok? found = null;
            while (start < end)
            {
                string sub = s[start..end];
                if (start > 0) sub = _prefix + sub;
                if (_vocab.TryGetValue(sub, out int id)) { found = new Tok(id, sub); break; }
                end -= char.IsLowSurrogate(s[end - 1]) && end - 2 >= start ? 2 : 1;
            }
            if (found is null) return Unknown();
            result.Add(found.Value);
            start = end;
        }
        return result;
    }
}

/// <summary>WordLevel (models/wordlevel): the whole piece is a token, else unk_token.</summary>
sealed class WordLevel : TokenizerModel
{
    readonly Dictionary<string, int> _vocab;
    readonly string[] _byId;
    readonly string _unk;
    readonly int _maxId;

    public WordLevel(JNode n)
    {
        _vocab = ReadVocabObject(n["vocab"], out _byId, out _maxId);
        _unk = n.OptStr("unk_token") ?? "<unk>";
    }

    public override string Kind => "WordLevel";
    public override int VocabCount => _vocab.Count;
    public override int MaxId => _maxId;
    public override string? IdToToken(int id) => id >= 0 && id < _byId.Length ? _byId[id] : null;
    public override int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    public override List<Tok> Tokenize(string s) =>
        _vocab.TryGetValue(s, out int id) ? [new Tok(id, s)]
        : _vocab.TryGetValue(_unk, out int unk) ? [new Tok(unk, _unk)]
        : throw new InvalidOperationException($"WordLevel unk_token '{_unk}' is not in the vocabulary (the library fails here too)");
}

using System.Text;

namespace Mora.Data.Tokenization;

/// <summary>A tokenizer.json <c>pre_tokenizer</c> (tokenizers/src/pre_tokenizers).</summary>
abstract class PreTokenizer
{
    public abstract void PreTokenize(List<Piece> pieces);

    public static PreTokenizer? Read(JNode n)
    {
        if (n.IsNull) return null;
        string type = n.Type;
        switch (type)
        {
            case "ByteLevel":
                return new ByteLevel(n.Bool("add_prefix_space"), n.Bool("use_regex", true), n.File, n.Path);
            case "Metaspace":
            {
                string replacement = n.Str("replacement");
                if (replacement.EnumerateRunes().Count() != 1) throw n.Error("replacement", $"is '{replacement}', not one character");
                var scheme = Metaspace.ReadScheme(n);
                return new Metaspace(replacement, scheme, n.Bool("split", true));
            }
            case "Split":
            {
                var pattern = Pattern.Read(n["pattern"]);
                var behavior = n["behavior"];
                if (behavior.IsNull) throw n.Error("behavior", "is missing");
                return new SplitPre(pattern, Splitting.ParseBehavior(behavior), n.Bool("invert"));
            }
            case "Whitespace": return new Whitespace();
            case "WhitespaceSplit": return new CharSplit(UnicodeProps.IsWhiteSpace, SplitBehavior.Removed);
            case "BertPreTokenizer": return new BertPre();
            case "Punctuation":
            {
                var behavior = n["behavior"];
                return new CharSplit(UnicodeProps.IsPunc, behavior.IsNull ? SplitBehavior.Isolated : Splitting.ParseBehavior(behavior));
            }
            case "Digits":
                return new CharSplit(UnicodeProps.IsNumeric, n.Bool("individual_digits", false) ? SplitBehavior.Isolated : SplitBehavior.Contiguous);
            case "CharDelimiterSplit":
            {
                string d = n.Str("delimiter");
                if (d.EnumerateRunes().Count() != 1) throw n.Error("delimiter", $"is '{d}', not one character");
                int cp = char.ConvertToUtf32(d, 0);
                return new CharSplit(c => c == cp, SplitBehavior.Removed);
            }
            case "FixedLength":
            {
                int length = n["length"].IsNull ? 5 : n.Index("length");
                return new FixedLength(length);
            }
            case "Sequence":
            {
                var list = n["pretokenizers"];
                if (list.IsNull) throw n.Error("pretokenizers", "is missing");
                var items = new List<PreTokenizer>();
                foreach (var item in list.Items()) items.Add(Read(item) ?? throw item.Error("is null, not a pre-tokenizer"));
                return new Sequence(items);
            }
            default:
                throw n.Error("type", $"'{type}' is not supported: refused");
        }
    }

    sealed class SplitPre(Pattern pattern, SplitBehavior behavior, bool invert) : PreTokenizer
    {
        public override void PreTokenize(List<Piece> pieces) => Splitting.SplitEach(pieces, t =>
        {
            var m = pattern.Find(t.Text);
            return Splitting.Split(t, invert ? Splitting.Invert(m) : m, behavior);
        });
    }

    sealed class CharSplit(Func<int, bool> predicate, SplitBehavior behavior) : PreTokenizer
    {
        public override void PreTokenize(List<Piece> pieces) =>
            Splitting.SplitEach(pieces, t => Splitting.Split(t, Splitting.Find(predicate, t.Text), behavior));
    }

    sealed class BertPre : PreTokenizer
    {
        public override void PreTokenize(List<Piece> pieces)
        {
            Splitting.SplitEach(pieces, t => Splitting.Split(t, Splitting.Find(UnicodeProps.IsWhiteSpace, t.Text), SplitBehavior.Removed));
            Splitting.SplitEach(pieces, t => Splitting.Split(t, Splitting.Find(UnicodeProps.IsPunc, t.Text), SplitBehavior.Isolated));
        }
    }

    /// <summary>Rust regex <c>\w+|[^\w\s]+</c>, inverted and removed: runs of word characters and runs of other
    /// non-space characters are the pieces.</summary>
    sealed class Whitespace : PreTokenizer
    {
        public override void PreTokenize(List<Piece> pieces) => Splitting.SplitEach(pieces, t =>
        {
            var result = new List<NText>();
            string s = t.Text;
            for (int i = 0; i < s.Length;)
            {
                int cp = UnicodeProps.CodePointAt(s, i);
                if (UnicodeProps.IsWhiteSpace(cp)) { i += UnicodeProps.Width(cp); continue; }
                bool word = UnicodeProps.IsWordChar(cp);
                int j = i;
                while (j < s.Length)
                {
                    int c = UnicodeProps.CodePointAt(s, j);
                    bool ok = word ? UnicodeProps.IsWordChar(c) : !UnicodeProps.IsWordChar(c) && !UnicodeProps.IsWhiteSpace(c);
                    if (!ok) break;
                    j += UnicodeProps.Width(c);
                }
                result.Add(t.Slice(i, j));
                i = j;
            }
            return result;
        });
    }

    sealed class FixedLength(int length) : PreTokenizer
    {
        public override void PreTokenize(List<Piece> pieces) => Splitting.SplitEach(pieces, t =>
        {
            var result = new List<NText>();
            if (length == 0) return result;
            for (int i = 0; i < t.Length;)
            {
                int j = i;
                for (int k = 0; k < length && j < t.Length; k++) j += UnicodeProps.Width(UnicodeProps.CodePointAt(t.Text, j));
                result.Add(t.Slice(i, j));
                i = j;
            }
            return result;
        });
    }

    sealed class Sequence(List<PreTokenizer> items) : PreTokenizer
    {
        public override void PreTokenize(List<Piece> pieces) { foreach (var p in items) p.PreTokenize(pieces); }
    }
}

/// <summary>The Metaspace pre-tokenizer (and decoder): spaces become <c>▁</c>, one is prepended by the scheme, and the
/// text is split before each <c>▁</c>.</summary>
sealed class Metaspace : PreTokenizer
{
    public enum Scheme { First, Never, Always }

    readonly string _replacement;
    readonly int _cp;
    public readonly Scheme PrependScheme;
    readonly bool _split;

    public Metaspace(string replacement, Scheme scheme, bool split)
    { _replacement = replacement; _cp = char.ConvertToUtf32(replacement, 0); PrependScheme = scheme; _split = split; }

    public static Scheme ReadScheme(JNode n)
    {
        var s = n["prepend_scheme"];
        var scheme = s.IsNull ? Scheme.Always : s.AsString() switch
        {
            "first" => Scheme.First,
            "never" => Scheme.Never,
            "always" => Scheme.Always,
            var other => throw s.Error($"is '{other}', not first, never or always"),
        };
        var legacy = n["add_prefix_space"];
        if (!legacy.IsNull && !legacy.AsBool())
        {
            if (scheme != Scheme.Never && !s.IsNull) throw legacy.Error("is false but prepend_scheme is not 'never' (the library refuses this too)");
            if (scheme != Scheme.Never && s.IsNull) throw legacy.Error("is false but prepend_scheme defaults to 'always' (the library refuses this too)");
            scheme = Scheme.Never;
        }
        return scheme;
    }

    public string ReplacementText => _replacement;
    public int Replacement => _cp;

    public override void PreTokenize(List<Piece> pieces) => Splitting.SplitEach(pieces, t =>
    {
        // Replace ' ' by the replacement (same origin), then prepend by the scheme.
        var b = new NTextBuilder(t.Length + 1);
        bool startsWith = t.Length > 0 && (t.Text[0] == ' ' || UnicodeProps.CodePointAt(t.Text, 0) == _cp);
        bool prepend = PrependScheme switch
        {
            Scheme.Always => !startsWith,
            Scheme.First => !startsWith && t.OriginStart == 0,
            _ => false,
        };
        if (prepend && t.Length > 0) b.Append(_replacement, t.Origin(0));
        for (int i = 0; i < t.Length; i++)
        {
            if (t.Text[i] == ' ') b.Append(_replacement, t.Origin(i));
            else b.Append(t, i, i + 1);
        }
        var r = b.Build();
        if (!_split) return [r];
        return Splitting.Split(r, Splitting.Find(c => c == _cp, r.Text), SplitBehavior.MergedWithNext);
    });
}

/// <summary>The ByteLevel pre-tokenizer (GPT-2): optional prefix space, the GPT-2 split regex, then every UTF-8 byte
/// shown as one printable character (<see cref="ByteChar"/>).</summary>
sealed class ByteLevel : PreTokenizer
{
    /// <summary>GPT-2's split, the library's built-in ByteLevel regex.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    static readonly Lazy<OnigRegex> Gpt2 = new(() => OnigRegex.Compile(Gpt2Pattern, "(built in)", "ByteLevel regex"));

    /// <summary>bytes_to_unicode: printable bytes map to themselves, the others to U+0100 onwards, in byte order.</summary>
    public static readonly char[] ByteChar = BuildByteChars();
    static readonly Dictionary<char, byte> CharByte = ByteChar.Select((c, b) => (c, (byte)b)).ToDictionary(p => p.c, p => p.Item2);

    static char[] BuildByteChars()
    {
        var map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)(256 + n++);
        }
        return map;
    }

    readonly bool _addPrefixSpace, _useRegex;

    public ByteLevel(bool addPrefixSpace, bool useRegex, string file, string path)
    { _addPrefixSpace = addPrefixSpace; _useRegex = useRegex; _ = file; _ = path; }

    public override void PreTokenize(List<Piece> pieces)
    {
        Splitting.SplitEach(pieces, t =>
        {
            if (_addPrefixSpace && !t.Text.StartsWith(' '))
            {
                var b = new NTextBuilder(t.Length + 1);
                b.Append(' ', t.Length > 0 ? t.Origin(0) : 0);
                b.Append(t, 0, t.Length);
                t = b.Build();
            }
            return _useRegex ? Splitting.Split(t, Splitting.Find(Gpt2.Value, t.Text), SplitBehavior.Isolated) : [t];
        });
        foreach (var p in pieces) if (p.Tokens is null) p.Text = ToByteChars(p.Text);
    }

    /// <summary>Each UTF-8 byte of the text as its byte character.</summary>
    public static NText ToByteChars(NText t)
    {
        if (!t.Text.AsSpan().ContainsAnyExceptInRange('\0', '\u007F'))
        {
            // ASCII: one byte per character, so the origins stay as they are.
            string mapped = string.Create(t.Length, t.Text, static (span, src) => { for (int i = 0; i < span.Length; i++) span[i] = ByteChar[src[i]]; });
            return t.WithText(mapped);
        }
        var b = new NTextBuilder(t.Length * 2);
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < t.Length;)
        {
            int cp = UnicodeProps.CodePointAt(t.Text, i);
            int n = new Rune(cp).EncodeToUtf8(utf8);
            for (int k = 0; k < n; k++) b.Append(ByteChar[utf8[k]], t.Origin(i));
            i += UnicodeProps.Width(cp);
        }
        return b.Build();
    }

    /// <summary>The ByteLevel decoder: every token's characters back to bytes (a token with a character outside the
    /// byte alphabet is taken as its own UTF-8), all tokens' bytes decoded as UTF-8, invalid sequences as U+FFFD.</summary>
    public static string DecodeBytes(IEnumerable<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var t in tokens)
        {
            bool all = true;
            foreach (char c in t) if (!CharByte.ContainsKey(c)) { all = false; break; }
            if (all) foreach (char c in t) bytes.Add(CharByte[c]);
            else bytes.AddRange(Encoding.UTF8.GetBytes(t));
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}

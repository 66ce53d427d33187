namespace Mora.Data.Tokenization;

/// <summary>A tokenizer.json <c>normalizer</c> (tokenizers/src/normalizers).</summary>
abstract class Normalizer
{
    public abstract NText Normalize(NText t);

    public static Normalizer? Read(JNode n)
    {
        if (n.IsNull) return null;
        string type = n.Type;
        switch (type)
        {
            case "NFC": return new UnicodeForm(UnicodeNormalization.Form.C);
            case "NFD": return new UnicodeForm(UnicodeNormalization.Form.D);
            case "NFKC": return new UnicodeForm(UnicodeNormalization.Form.KC);
            case "NFKD": return new UnicodeForm(UnicodeNormalization.Form.KD);
            case "Lowercase": return new Lowercase();
            case "StripAccents": return new StripAccents();
            case "Nmt": return new Nmt();
            case "ByteLevel": return new ByteLevelNormalizer();
            case "Strip": return new Strip(n.Bool("strip_left"), n.Bool("strip_right"));
            case "Prepend": return new Prepend(n.Str("prepend"));
            case "Replace": return new Replace(Pattern.Read(n["pattern"]), n.Str("content"));
            case "Sequence":
            {
                var list = n["normalizers"];
                if (list.IsNull) throw n.Error("normalizers", "is missing");
                var items = new List<Normalizer>();
                foreach (var item in list.Items())
                    items.Add(Read(item) ?? throw item.Error("is null, not a normalizer"));
                return new Sequence(items);
            }
            case "BertNormalizer":
            {
                bool lowercase = n.Bool("lowercase");
                var strip = n["strip_accents"];
                return new Bert(n.Bool("clean_text"), n.Bool("handle_chinese_chars"), strip.IsNull ? lowercase : strip.AsBool(), lowercase);
            }
            case "Precompiled":
                throw n.Error("type", "'Precompiled' (a SentencePiece character map) is not supported: refused");
            default:
                throw n.Error("type", $"'{type}' is not supported: refused");
        }
    }

    sealed class UnicodeForm(UnicodeNormalization.Form form) : Normalizer
    {
        public override NText Normalize(NText t) => UnicodeNormalization.Normalize(t, form);
    }

    sealed class Lowercase : Normalizer
    {
        public override NText Normalize(NText t)
        {
            var b = new NTextBuilder(t.Length);
            for (int i = 0; i < t.Length;)
            {
                int cp = UnicodeProps.CodePointAt(t.Text, i);
                UnicodeProps.AppendLower(b, cp, t.Origin(i));
                i += UnicodeProps.Width(cp);
            }
            return b.Build();
        }
    }

    /// <summary>Keeps the code points <paramref name="keep"/> accepts, mapped by <paramref name="map"/>.</summary>
    protected static NText FilterMap(NText t, Func<int, bool> keep, Func<int, int>? map = null)
    {
        var b = new NTextBuilder(t.Length);
        for (int i = 0; i < t.Length;)
        {
            int cp = UnicodeProps.CodePointAt(t.Text, i);
            if (keep(cp)) b.Append(map is null ? cp : map(cp), t.Origin(i));
            i += UnicodeProps.Width(cp);
        }
        return b.Build();
    }

    sealed class StripAccents : Normalizer
    {
        public override NText Normalize(NText t) => FilterMap(t, cp => !UnicodeProps.IsMark(cp));
    }

    sealed class Nmt : Normalizer
    {
        public override NText Normalize(NText t) => FilterMap(t,
            cp => cp is not ((>= 0x1 and <= 0x8) or 0xB or (>= 0xE and <= 0x1F) or 0x7F or 0x8F or 0x9F),
            cp => cp is 0x9 or 0xA or 0xC or 0xD or 0x1680 or (>= 0x200B and <= 0x200F) or 0x2028 or 0x2029 or 0x2581 or 0xFEFF or 0xFFFD ? ' ' : cp);
    }

    sealed class ByteLevelNormalizer : Normalizer
    {
        public override NText Normalize(NText t) => t.IsEmpty ? t : ByteLevel.ToByteChars(t);
    }

    sealed class Strip(bool left, bool right) : Normalizer
    {
        public override NText Normalize(NText t)
        {
            int start = 0, end = t.Length;
            if (left) while (start < end && UnicodeProps.IsWhiteSpace(t.Text[start])) start++;
            if (right) while (end > start && UnicodeProps.IsWhiteSpace(t.Text[end - 1])) end--;
            return t.Slice(start, end);
        }
    }

    sealed class Prepend(string prepend) : Normalizer
    {
        public override NText Normalize(NText t)
        {
            if (t.IsEmpty) return t;
            var b = new NTextBuilder(t.Length + prepend.Length);
            b.Append(prepend, t.Origin(0));
            b.Append(t, 0, t.Length);
            return b.Build();
        }
    }

    sealed class Replace(Pattern pattern, string content) : Normalizer
    {
        public override NText Normalize(NText t) => Splitting.Replace(t, pattern.Find(t.Text), content);
    }

    sealed class Sequence(List<Normalizer> items) : Normalizer
    {
        public override NText Normalize(NText t)
        {
            foreach (var n in items) t = n.Normalize(t);
            return t;
        }
    }

    /// <summary>BertNormalizer (normalizers/bert.rs): the character classes are unicode_categories' (Unicode 8.0).</summary>
    sealed class Bert(bool cleanText, bool chinese, bool stripAccents, bool lowercase) : Normalizer
    {
        static bool IsChinese(int cp) => cp is (>= 0x4E00 and <= 0x9FFF) or (>= 0x3400 and <= 0x4DBF) or (>= 0x20000 and <= 0x2A6DF)
            or (>= 0x2A700 and <= 0x2B73F) or (>= 0x2B740 and <= 0x2B81F) or (>= 0x2B920 and <= 0x2CEAF) or (>= 0xF900 and <= 0xFAFF)
            or (>= 0x2F800 and <= 0x2FA1F);

        public override NText Normalize(NText t)
        {
            if (cleanText)
                t = FilterMap(t, cp => !(cp == 0 || cp == 0xFFFD || cp is not (0x9 or 0xA or 0xD) && UnicodeProps.IsOtherUnicode8(cp)),
                    cp => cp is 0x9 or 0xA or 0xD || UnicodeProps.IsWhiteSpace(cp) ? ' ' : cp);
            if (chinese)
            {
                var b = new NTextBuilder(t.Length);
                for (int i = 0; i < t.Length;)
                {
                    int cp = UnicodeProps.CodePointAt(t.Text, i);
                    if (IsChinese(cp)) { b.Append(' ', t.Origin(i)); b.Append(cp, t.Origin(i)); b.Append(' ', t.Origin(i)); }
                    else b.Append(cp, t.Origin(i));
                    i += UnicodeProps.Width(cp);
                }
                t = b.Build();
            }
            if (stripAccents)
                t = FilterMap(UnicodeNormalization.Normalize(t, UnicodeNormalization.Form.D), cp => !UnicodeProps.IsNonSpacingMarkUnicode8(cp));
            if (lowercase) t = new Lowercase().Normalize(t);
            return t;
        }
    }
}

/// <summary>A <c>pattern</c> of Split, Replace: <c>{"String": s}</c> (matched literally: the library escapes it into a
/// regex) or <c>{"Regex": r}</c> (Oniguruma, see <see cref="OnigRegex"/>).</summary>
sealed class Pattern
{
    readonly OnigRegex? _regex;
    readonly string? _literal;
    Pattern(OnigRegex? regex, string? literal) { _regex = regex; _literal = literal; }

    public static Pattern Read(JNode n)
    {
        if (n.IsNull) throw n.Error("is missing");
        bool hasString = n.Has("String"), hasRegex = n.Has("Regex");
        if (hasString == hasRegex) throw n.Error($"is {JNode.Show(n.E)}, not {{\"String\": ...}} or {{\"Regex\": ...}}");
        return hasString ? new Pattern(null, n.Str("String")) : new Pattern(OnigRegex.Compile(n.Str("Regex"), n.File, n.Path + ".Regex"), null);
    }

    public static Pattern OfRegex(OnigRegex regex) => new(regex, null);

    public List<(int Start, int End, bool Match)> Find(string text)
    {
        if (_regex is not null) return Splitting.Find(_regex, text);
        if (text.Length == 0) return [(0, 0, false)];
        var result = new List<(int, int, bool)>();
        int prev = 0;
        if (_literal!.Length == 0)
        {
            // The empty regex matches at every character boundary (onig's find_iter accepts each: none follows a non-empty match).
            for (int i = 0; i <= text.Length;)
            {
                if (prev != i) result.Add((prev, i, false));
                result.Add((i, i, true));
                prev = i;
                if (i == text.Length) break;
                i += UnicodeProps.Width(UnicodeProps.CodePointAt(text, i));
            }
            return result;
        }
        for (int at = text.IndexOf(_literal, StringComparison.Ordinal); at >= 0; at = text.IndexOf(_literal, prev, StringComparison.Ordinal))
        {
            if (prev != at) result.Add((prev, at, false));
            result.Add((at, at + _literal.Length, true));
            prev = at + _literal.Length;
        }
        if (prev != text.Length) result.Add((prev, text.Length, false));
        return result;
    }
}

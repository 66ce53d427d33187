using System.Globalization;
using System.Text;

namespace Mora.Data.Tokenization;

/// <summary>
/// A piece of text as the tokenizers library's <c>NormalizedString</c> sees it, reduced to what changes ids: the
/// normalized text and, per UTF-16 unit, the offset in the caller's text of the character it came from
/// (<see cref="Origin"/>). The library needs only the first of these to decide Metaspace's <c>prepend_scheme: first</c>
/// ("does this piece start at the beginning of the input?"), so nothing finer is kept.
/// </summary>
sealed class NText
{
    public readonly string Text;
    readonly int[]? _origin;   // null: the identity (text straight from the input)
    readonly int _offset;

    public NText(string text, int[] origin) : this(text, origin, 0) { }
    NText(string text, int[]? origin, int offset) { Text = text; _origin = origin; _offset = offset; }

    public static NText FromInput(string text) => new(text, null, 0);

    public int Length => Text.Length;
    public bool IsEmpty => Text.Length == 0;
    /// <summary>Offset in the input of the character that UTF-16 unit <paramref name="i"/> came from.</summary>
    public int Origin(int i) => _origin is null ? _offset + i : _origin[_offset + i];
    /// <summary>Offset in the input of the first character (the library's <c>offsets_original().0</c>), −1 when empty.</summary>
    public int OriginStart => Text.Length == 0 ? -1 : Origin(0);

    /// <summary>A slice; it shares the origins (no copy).</summary>
    public NText Slice(int start, int end) =>
        start == 0 && end == Text.Length ? this : new NText(Text[start..end], _origin, _offset + start);

    /// <summary>The same origins under another text of the same length (a one-to-one character mapping).</summary>
    public NText WithText(string text) => text.Length == Text.Length ? new NText(text, _origin, _offset) : throw new ArgumentException("length differs", nameof(text));

    public void CopyOrigins(int start, int[] destination, int at, int count)
    {
        if (_origin is null) for (int k = 0; k < count; k++) destination[at + k] = _offset + start + k;
        else Array.Copy(_origin, _offset + start, destination, at, count);
    }

    public override string ToString() => Text;
}

/// <summary>Builds an <see cref="NText"/> one code point at a time, each with the origin of the character it came from.</summary>
sealed class NTextBuilder
{
    char[] _chars;
    int[] _origin;
    int _n;

    public NTextBuilder(int capacity = 16) { capacity = Math.Max(capacity, 4); _chars = new char[capacity]; _origin = new int[capacity]; }

    public int Length => _n;

    void Grow(int extra)
    {
        if (_n + extra <= _chars.Length) return;
        int size = Math.Max(_chars.Length * 2, _n + extra);
        Array.Resize(ref _chars, size);
        Array.Resize(ref _origin, size);
    }

    public void Append(int codePoint, int origin)
    {
        Grow(2);
        if (codePoint < 0x10000) { _chars[_n] = (char)codePoint; _origin[_n++] = origin; }
        else
        {
            int v = codePoint - 0x10000;
            _chars[_n] = (char)(0xD800 + (v >> 10)); _origin[_n++] = origin;
            _chars[_n] = (char)(0xDC00 + (v & 0x3FF)); _origin[_n++] = origin;
        }
    }

    public void Append(char c, int origin) { Grow(1); _chars[_n] = c; _origin[_n++] = origin; }

    public void Append(string s, int origin) { Grow(s.Length); foreach (char c in s) { _chars[_n] = c; _origin[_n++] = origin; } }

    public void Append(NText t, int start, int end)
    {
        Grow(end - start);
        t.Text.CopyTo(start, _chars, _n, end - start);
        t.CopyOrigins(start, _origin, _n, end - start);
        _n += end - start;
    }

    public NText Build() => new(new string(_chars, 0, _n), _origin[.._n]);
}

/// <summary>Unicode character properties with the definitions the tokenizers library (Rust) uses.</summary>
static class UnicodeProps
{
    /// <summary>The code point at <paramref name="i"/> (a valid string: lone surrogates were replaced on input).</summary>
    public static int CodePointAt(string s, int i) =>
        char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? char.ConvertToUtf32(s[i], s[i + 1]) : s[i];

    public static int Width(int cp) => cp >= 0x10000 ? 2 : 1;

    public static UnicodeCategory Category(int cp) => CharUnicodeInfo.GetUnicodeCategory(cp);

    /// <summary>Rust's <c>char::is_whitespace</c> and regex <c>\s</c>: the White_Space property (no supplementary
    /// character has it).</summary>
    public static bool IsWhiteSpace(int cp) => cp < 0x10000 && char.IsWhiteSpace((char)cp);

    /// <summary>Rust's <c>char::is_numeric</c>: general category Nd, Nl or No.</summary>
    public static bool IsNumeric(int cp) => Category(cp) is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;

    /// <summary>unicode_categories' <c>is_punctuation</c>: Pc, Pd, Ps, Pe, Pi, Pf, Po.</summary>
    public static bool IsPunctuation(int cp) => Category(cp) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
        or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
        or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;

    /// <summary>Rust's <c>char::is_ascii_punctuation</c>: printable ASCII that is neither a letter, a digit nor a space.</summary>
    public static bool IsAsciiPunctuation(int cp) => cp is > 0x20 and < 0x7F && !char.IsAsciiLetterOrDigit((char)cp);

    /// <summary>The Punctuation and Bert pre-tokenizers' test: ASCII punctuation or P* in unicode_categories' Unicode 8.0.</summary>
    public static bool IsPunc(int cp) => IsAsciiPunctuation(cp) || AssignedByUnicode8(cp) && IsPunctuation(cp);

    static readonly (int Lo, int Hi)[] Unicode8 = ParseRanges(UnicodeTables.AssignedByUnicode8);

    static (int, int)[] ParseRanges(string s) => s.Split(';', StringSplitOptions.RemoveEmptyEntries)
        .Select(r => r.Split('-')).Select(p => (int.Parse(p[0], NumberStyles.HexNumber), int.Parse(p[1], NumberStyles.HexNumber))).ToArray();

    /// <summary>Whether <paramref name="cp"/> was assigned by Unicode 8.0 (else crate unicode_categories calls it Cn).</summary>
    public static bool AssignedByUnicode8(int cp)
    {
        int lo = 0, hi = Unicode8.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (cp < Unicode8[mid].Lo) hi = mid - 1;
            else if (cp > Unicode8[mid].Hi) lo = mid + 1;
            else return true;
        }
        return false;
    }

    /// <summary>unicode_categories' <c>is_other</c> (Cc, Cf, Cn, Co, Cs, in Unicode 8.0).</summary>
    public static bool IsOtherUnicode8(int cp) => !AssignedByUnicode8(cp) || Category(cp) is UnicodeCategory.Control or UnicodeCategory.Format
        or UnicodeCategory.OtherNotAssigned or UnicodeCategory.PrivateUse or UnicodeCategory.Surrogate;

    /// <summary>unicode_categories' <c>is_mark_nonspacing</c> (Mn, in Unicode 8.0).</summary>
    public static bool IsNonSpacingMarkUnicode8(int cp) => AssignedByUnicode8(cp) && Category(cp) == UnicodeCategory.NonSpacingMark;

    public static bool IsMark(int cp) => Category(cp) is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark;

    static readonly (int Lo, int Hi)[] OtherAlphabetic = ParseRanges(UnicodeTables.OtherAlphabeticNonMark);

    /// <summary>Rust regex's <c>\w</c> (UTS #18 word): Alphabetic, M*, Nd, Pc, Join_Control.</summary>
    public static bool IsWordChar(int cp)
    {
        switch (Category(cp))
        {
            case UnicodeCategory.UppercaseLetter: case UnicodeCategory.LowercaseLetter: case UnicodeCategory.TitlecaseLetter:
            case UnicodeCategory.ModifierLetter: case UnicodeCategory.OtherLetter: case UnicodeCategory.LetterNumber:
            case UnicodeCategory.NonSpacingMark: case UnicodeCategory.SpacingCombiningMark: case UnicodeCategory.EnclosingMark:
            case UnicodeCategory.DecimalDigitNumber: case UnicodeCategory.ConnectorPunctuation:
                return true;
        }
        if (cp is 0x200C or 0x200D) return true;
        foreach (var (lo, hi) in OtherAlphabetic) if (cp >= lo && cp <= hi) return true;
        return false;
    }

    /// <summary>Rust's <c>char::to_lowercase</c> (the full mapping, per character, without context: İ becomes i̇).</summary>
    public static void AppendLower(NTextBuilder b, int cp, int origin)
    {
        if (cp == 0x0130) { b.Append('i', origin); b.Append(0x0307, origin); return; }
        b.Append(cp < 0x10000 ? char.ToLowerInvariant((char)cp) : System.Text.Rune.ToLowerInvariant(new System.Text.Rune(cp)).Value, origin);
    }

    /// <summary>Replaces lone surrogates by U+FFFD, as converting the text to UTF-8 (what the library receives) does.</summary>
    public static string Sanitize(string s)
    {
        if (!JNode.HasLoneSurrogate(s)) return s;
        var chars = s.ToCharArray();
        for (int i = 0; i < chars.Length; i++)
        {
            if (char.IsHighSurrogate(chars[i]) && i + 1 < chars.Length && char.IsLowSurrogate(chars[i + 1])) { i++; continue; }
            if (char.IsSurrogate(chars[i])) chars[i] = '\uFFFD';
        }
        return new string(chars);
    }
}

using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Mora.Data.Tokenization;

/// <summary>
/// A regex of a tokenizer.json (Split pre-tokenizer, Replace normalizer/decoder) run with the semantics of the
/// Oniguruma engine the tokenizers library uses (crate onig 6.5, default Oniguruma syntax), on .NET's backtracking
/// Regex:
/// <list type="bullet">
/// <item>the pattern is translated: possessive <c>?+ *+ ++</c> become atomic groups, <c>{,n}</c> becomes <c>{0,n}</c>,
/// <c>\h</c> a hex-digit class, <c>\x{HHHH}</c> <c>\uHHHH</c>, <c>(?m)</c> (Oniguruma: dot matches newline) <c>(?s)</c>, and
/// long category names (<c>\p{Letter}</c>) short ones; every construct whose meaning differs or that .NET lacks
/// (<c>^ $ \w \b \G \K</c>, backreferences, scripts and POSIX classes, <c>(?x)</c>, nested classes, a literal outside the
/// BMP, …) is refused by name;</item>
/// <item>matching runs over code points, not UTF-16 units: each character outside the BMP is shown to .NET as one BMP
/// stand-in of the same general category that no literal or range of the pattern mentions, so <c>\p{L}</c>,
/// <c>[^\s\p{L}\p{N}]?</c> and <c>.</c> see one character, as Oniguruma does on UTF-8;</item>
/// <item>successive matches follow onig's <c>find_iter</c> (an empty match right after a match is skipped);</item>
/// <item>every match has a time limit (<see cref="MatchTimeout"/>): a catastrophic-backtracking pattern ends in a
/// <see cref="TokenizerFormatException"/> naming the file and field instead of hanging.</item>
/// </list>
/// </summary>
sealed class OnigRegex
{
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(2);

    readonly Regex _regex;
    readonly char[] _standIn = new char[32];   // by UnicodeCategory; '\0' where none was found
    public readonly string Pattern, File, Field;

    OnigRegex(Regex regex, string pattern, string file, string field, List<(int Lo, int Hi)> literals, bool ignoreCase)
    {
        _regex = regex; Pattern = pattern; File = file; Field = field;
        // Stand-ins: BMP characters, scanned from the top (rare ones first), not white space, in no literal or range.
        for (int cp = 0xFFFD; cp >= 0x80; cp--)
        {
            if (cp is >= 0xD800 and <= 0xDFFF) continue;
            int cat = (int)CharUnicodeInfo.GetUnicodeCategory(cp);
            if (_standIn[cat] != '\0' || char.IsWhiteSpace((char)cp)) continue;
            if (Mentioned(cp, literals) || ignoreCase && (Mentioned(char.ToUpperInvariant((char)cp), literals) || Mentioned(char.ToLowerInvariant((char)cp), literals)))
                continue;
            _standIn[cat] = (char)cp;
        }
    }

    static bool Mentioned(int cp, List<(int Lo, int Hi)> literals)
    {
        foreach (var (lo, hi) in literals) if (cp >= lo && cp <= hi) return true;
        return false;
    }

    /// <summary>Translates and compiles <paramref name="pattern"/>; refuses what it cannot translate exactly.</summary>
    public static OnigRegex Compile(string pattern, string file, string field, bool compiled = true)
    {
        string translated;
        List<(int, int)> literals;
        bool ignoreCase;
        try { (translated, literals, ignoreCase) = new Translator(pattern).Run(); }
        catch (NotSupportedException e) { throw new TokenizerFormatException(file, field, $"'{pattern}' uses {e.Message}, which the kit's regex translation (Oniguruma to .NET) does not support: refused"); }
        try
        {
            var options = RegexOptions.CultureInvariant | (compiled ? RegexOptions.Compiled : RegexOptions.None);
            return new OnigRegex(new Regex(translated, options, MatchTimeout), pattern, file, field, literals, ignoreCase);
        }
        catch (ArgumentException e) { throw new TokenizerFormatException(file, field, $"'{pattern}' is not a valid regex ({e.Message})", e); }
    }

    /// <summary>
    /// The matches in <paramref name="text"/> as UTF-16 (start, end), in order, as onig's <c>find_iter</c> yields them:
    /// after a non-empty match, the next empty match is skipped; after an empty match the search moves one character on.
    /// </summary>
    public List<(int Start, int End)> Matches(string text)
    {
        var result = new List<(int, int)>();
        // The view: one char per code point (identity when the text has no surrogate pair).
        string view = text;
        int[]? starts = null;
        if (text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') >= 0)
        {
            var sb = new StringBuilder(text.Length);
            var st = new List<int>(text.Length + 1);
            for (int i = 0; i < text.Length;)
            {
                int cp = UnicodeProps.CodePointAt(text, i);
                st.Add(i);
                if (cp < 0x10000) sb.Append((char)cp);
                else
                {
                    var cat = CharUnicodeInfo.GetUnicodeCategory(cp);
                    char rep = _standIn[(int)cat];
                    if (rep == '\0') throw new TokenizerFormatException(File, Field, $"'{Pattern}': no stand-in character of category {cat} for U+{cp:X} (every one is mentioned by the pattern): refused");
                    sb.Append(rep);
                }
                i += UnicodeProps.Width(cp);
            }
            st.Add(text.Length);
            view = sb.ToString();
            starts = st.ToArray();
        }
        int n = view.Length, lastEnd = 0;
        bool skipNextEmpty = false;
        try
        {
            // Fast path: while matches are non-empty, .NET's own enumeration visits exactly onig's matches (each search
            // starts where the last match ended). At the first empty match, fall back to onig's rule step by step.
            bool empty = false;
            foreach (var vm in _regex.EnumerateMatches(view))
            {
                if (vm.Length == 0) { empty = true; break; }
                result.Add(starts is null ? (vm.Index, vm.Index + vm.Length) : (starts[vm.Index], starts[vm.Index + vm.Length]));
                lastEnd = vm.Index + vm.Length;
                skipNextEmpty = true;
            }
            if (!empty) return result;
            while (lastEnd <= n)
            {
                var m = _regex.Match(view, lastEnd);
                if (!m.Success) break;
                int s = m.Index, e = m.Index + m.Length;
                lastEnd = e;
                if (e == s)
                {
                    lastEnd += 1;
                    if (skipNextEmpty) { skipNextEmpty = false; continue; }
                }
                else skipNextEmpty = true;
                result.Add(starts is null ? (s, e) : (starts[s], starts[e]));
            }
        }
        catch (RegexMatchTimeoutException e)
        {
            throw new TokenizerFormatException(File, Field, $"'{Pattern}' ran past its time limit of {MatchTimeout.TotalSeconds:0} s on a text of {text.Length} characters (catastrophic backtracking?): refused", e);
        }
        return result;
    }

    /// <summary>Oniguruma pattern to .NET pattern, with the literal characters and ranges the pattern mentions.</summary>
    sealed class Translator
    {
        readonly string _p;
        readonly StringBuilder _o = new();
        readonly List<(int, int)> _literals = [];
        bool _ignoreCase;
        int _i;

        public Translator(string pattern) => _p = pattern;

        static NotSupportedException No(string what) => new(what);

        public (string, List<(int, int)>, bool) Run()
        {
            var groups = new Stack<int>();
            int atom = -1;          // start in _o of the last quantifiable item; −1 none; −2 just quantified
            while (_i < _p.Length)
            {
                char c = _p[_i];
                switch (c)
                {
                    case '\\':
                    {
                        int start = _o.Length;
                        bool quantifiable = Escape(inClass: false, out _);
                        atom = quantifiable ? start : -1;
                        break;
                    }
                    case '[':
                        atom = _o.Length;
                        Class();
                        break;
                    case '(':
                        groups.Push(_o.Length);
                        Group(groups);
                        atom = -1;
                        break;
                    case ')':
                        if (groups.Count == 0) throw No("an unbalanced ')'");
                        _o.Append(')');
                        _i++;
                        atom = groups.Pop();
                        break;
                    case '|':
                        _o.Append('|'); _i++; atom = -1;
                        break;
                    case '*': case '+': case '?':
                        Quantifier(c.ToString(), ref atom);
                        break;
                    case '{':
                        if (Interval() is { } q) Quantifier(q, ref atom);
                        else { atom = _o.Length; Literal('{'); }
                        break;
                    case '^': throw No("'^' (in Oniguruma a line anchor)");
                    case '$': throw No("'$' (in Oniguruma a line anchor)");
                    case '.':
                        atom = _o.Length; _o.Append('.'); _i++;
                        break;
                    default:
                        if (char.IsSurrogate(c)) throw No("a literal character outside the Basic Multilingual Plane");
                        atom = _o.Length;
                        Literal(c);
                        break;
                }
            }
            if (groups.Count > 0) throw No("an unclosed '('");
            return (_o.ToString(), _literals, _ignoreCase);
        }

        void Literal(char c)
        {
            _literals.Add((c, c));
            if (c != ' ' && (char.IsWhiteSpace(c) || char.IsControl(c))) _o.Append($"\\u{(int)c:X4}");
            else if ("\\*+?|{}[]()^$.#".Contains(c)) _o.Append('\\').Append(c);
            else _o.Append(c);
            _i++;
        }

        void Quantifier(string q, ref int atom)
        {
            if (atom == -2) throw No("a quantifier on a quantifier (nested repetition)");
            if (atom < 0) throw No($"the quantifier '{q}' with nothing to repeat");
            if (!q.StartsWith('{')) _i++;
            bool interval = q.StartsWith('{');
            if (_i < _p.Length && _p[_i] == '?') { q += "?"; _i++; _o.Append(q); }
            else if (_i < _p.Length && _p[_i] == '+')
            {
                if (interval) throw No("'{n,m}+' (in Oniguruma syntax not possessive but a repeated interval)");
                _i++;
                _o.Insert(atom, "(?>").Append(q).Append(')');
            }
            else _o.Append(q);
            atom = -2;
        }

        /// <summary>An interval quantifier at <c>_i</c> (<c>{n}</c>, <c>{n,}</c>, <c>{n,m}</c>, <c>{,m}</c>), translated; null when the
        /// brace is a literal (as in Oniguruma).</summary>
        string? Interval()
        {
            int j = _i + 1;
            int a = j;
            while (j < _p.Length && char.IsAsciiDigit(_p[j])) j++;
            string lo = _p[a..j];
            string? hi = null;
            bool comma = false;
            if (j < _p.Length && _p[j] == ',')
            {
                comma = true; j++;
                int b = j;
                while (j < _p.Length && char.IsAsciiDigit(_p[j])) j++;
                hi = _p[b..j];
            }
            if (j >= _p.Length || _p[j] != '}' || lo.Length == 0 && (hi is null || hi.Length == 0)) return null;
            _i = j + 1;
            if (!comma) return $"{{{lo}}}";
            return $"{{{(lo.Length == 0 ? "0" : lo)},{hi}}}";
        }

        void Group(Stack<int> groups)
        {
            _i++;   // '('
            if (_i >= _p.Length || _p[_i] != '?') { _o.Append('('); return; }
            string rest = _p[_i..];
            foreach (var opener in new[] { "?:", "?=", "?!", "?<=", "?<!", "?>" })
                if (rest.StartsWith(opener, StringComparison.Ordinal)) { _o.Append('(').Append(opener); _i += opener.Length; return; }
            if (rest.StartsWith("?#", StringComparison.Ordinal))
            {
                int end = _p.IndexOf(')', _i);
                if (end < 0) throw No("an unclosed comment group");
                _i = end + 1;
                groups.Pop();
                return;
            }
            if (rest.StartsWith("?<", StringComparison.Ordinal) || rest.StartsWith("?'", StringComparison.Ordinal))
            {
                char close = rest[1] == '<' ? '>' : '\'';
                int end = _p.IndexOf(close, _i + 2);
                if (end < 0) throw No("an unclosed group name");
                string name = _p[(_i + 2)..end];
                if (name.Length == 0 || !name.All(ch => char.IsAsciiLetterOrDigit(ch) || ch == '_') || char.IsAsciiDigit(name[0])) throw No($"the group name '{name}'");
                _o.Append("(?<").Append(name).Append('>');
                _i = end + 1;
                return;
            }
            // Options: (?imx-imx) or (?imx-imx:...)
            int j = _i + 1;
            var options = new StringBuilder();
            while (j < _p.Length && _p[j] is not (':' or ')'))
            {
                char opt = _p[j];
                if (opt == 'i') { options.Append('i'); _ignoreCase = true; }
                else if (opt == 'm') options.Append('s');          // Oniguruma's (?m): dot matches newline
                else if (opt == '-') options.Append('-');
                else if (opt == 'x') throw No("the option (?x) (extended syntax)");
                else throw No($"the group '(?{opt}' (an option or construct .NET lacks or means otherwise)");
                j++;
            }
            if (j >= _p.Length || options.Length == 0) throw No("an incomplete group '(?'");
            _o.Append("(?").Append(options).Append(_p[j]);
            _i = j + 1;
            if (_p[j] == ')') groups.Pop();   // (?i) applies to the rest of the enclosing group, as in .NET
        }

        void Class()
        {
            _o.Append('[');
            _i++;
            if (_i < _p.Length && _p[_i] == '^') { _o.Append('^'); _i++; }
            bool first = true;
            while (true)
            {
                if (_i >= _p.Length) throw No("an unclosed '['");
                char c = _p[_i];
                if (c == ']' && !first) { _o.Append(']'); _i++; return; }
                first = false;
                if (c == '[') throw No(_i + 1 < _p.Length && _p[_i + 1] == ':' ? "a POSIX bracket class ([:name:])" : "a nested character class");
                if (c == '&' && _i + 1 < _p.Length && _p[_i + 1] == '&') throw No("class intersection (&&)");
                int? lo = ClassAtom();
                if (lo is null) continue;
                // A range lo-hi?
                if (_i + 1 < _p.Length && _p[_i] == '-' && _p[_i + 1] != ']')
                {
                    _i++;
                    _o.Append('-');
                    int? hi = ClassAtom();
                    if (hi is null) throw No("a range whose end is a class (such as a-\\d)");
                    if (hi < lo) throw No("a reversed range in a class");
                    _literals.RemoveAt(_literals.Count - 1);
                    _literals.RemoveAt(_literals.Count - 1);
                    _literals.Add((lo.Value, hi.Value));
                }
            }
        }

        /// <summary>One class item at <c>_i</c>: returns its code point when it is a single character (so it can start or
        /// end a range), null for a class escape such as <c>\p{L}</c>.</summary>
        int? ClassAtom()
        {
            char c = _p[_i];
            if (c == '\\')
            {
                Escape(inClass: true, out int? single);
                return single;
            }
            if (char.IsSurrogate(c)) throw No("a literal character outside the Basic Multilingual Plane");
            _literals.Add((c, c));
            if (c is '\\' or ']' or '[' or '^' or '-') _o.Append('\\');
            _o.Append(c);
            _i++;
            return c;
        }

        /// <summary>An escape at <c>_i</c>; returns whether it can take a quantifier (anchors cannot).</summary>
        bool Escape(bool inClass, out int? single)
        {
            single = null;
            if (_i + 1 >= _p.Length) throw No("a trailing backslash");
            char e = _p[_i + 1];
            _i += 2;
            switch (e)
            {
                case 'p': case 'P':
                {
                    if (_i >= _p.Length || _p[_i] != '{') throw No($"'\\{e}' without braces");
                    int end = _p.IndexOf('}', _i);
                    if (end < 0) throw No($"an unclosed '\\{e}{{'");
                    string name = _p[(_i + 1)..end];
                    _i = end + 1;
                    bool negate = e == 'P';
                    if (name.StartsWith('^')) { negate = !negate; name = name[1..]; }
                    _o.Append(negate ? "\\P{" : "\\p{").Append(Category(name)).Append('}');
                    return true;
                }
                case 'd': case 'D': case 's': case 'S':
                    _o.Append('\\').Append(e);
                    return true;
                case 'h':
                    _literals.Add(('0', '9')); _literals.Add(('a', 'f')); _literals.Add(('A', 'F'));
                    _o.Append(inClass ? "0-9a-fA-F" : "[0-9a-fA-F]");
                    return true;
                case 'H':
                    if (inClass) throw No("'\\H' inside a class");
                    _literals.Add(('0', '9')); _literals.Add(('a', 'f')); _literals.Add(('A', 'F'));
                    _o.Append("[^0-9a-fA-F]");
                    return true;
                case 'w': case 'W': throw No($"'\\{e}' (Oniguruma's word class differs from .NET's)");
                case 'b' when !inClass: case 'B' when !inClass: throw No($"'\\{e}' (word boundary: Oniguruma's word class differs from .NET's)");
                case 'b': AddLiteral(8, "\\b"); single = 8; return true;   // backspace inside a class
                case 'A': case 'z': case 'Z':
                    if (inClass) throw No($"'\\{e}' inside a class");
                    _o.Append('\\').Append(e);
                    return false;
                case 'n': AddLiteral('\n', "\\n"); single = '\n'; return true;
                case 't': AddLiteral('\t', "\\t"); single = '\t'; return true;
                case 'r': AddLiteral('\r', "\\r"); single = '\r'; return true;
                case 'f': AddLiteral('\f', "\\f"); single = '\f'; return true;
                case 'v': AddLiteral('\v', "\\v"); single = '\v'; return true;
                case 'a': AddLiteral('\a', "\\a"); single = '\a'; return true;
                case 'e': AddLiteral('\u001B', "\\e"); single = '\u001B'; return true;
                case 'x':
                {
                    int cp;
                    if (_i < _p.Length && _p[_i] == '{')
                    {
                        int end = _p.IndexOf('}', _i);
                        if (end < 0 || !int.TryParse(_p.AsSpan(_i + 1, end - _i - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out cp)) throw No("a malformed '\\x{...}'");
                        _i = end + 1;
                    }
                    else
                    {
                        int j = _i;
                        while (j < _p.Length && j < _i + 2 && char.IsAsciiHexDigit(_p[j])) j++;
                        if (j == _i) throw No("'\\x' without hex digits");
                        cp = int.Parse(_p.AsSpan(_i, j - _i), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                        _i = j;
                    }
                    if (cp > 0xFFFF || cp is >= 0xD800 and <= 0xDFFF) throw No("a character outside the Basic Multilingual Plane (or a surrogate)");
                    AddLiteral(cp, $"\\u{cp:X4}");
                    single = cp;
                    return true;
                }
                case 'u':
                {
                    if (_i + 4 > _p.Length || !int.TryParse(_p.AsSpan(_i, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int cp)) throw No("a malformed '\\u'");
                    if (cp is >= 0xD800 and <= 0xDFFF) throw No("a surrogate code point");
                    _i += 4;
                    AddLiteral(cp, $"\\u{cp:X4}");
                    single = cp;
                    return true;
                }
                default:
                    if (char.IsAsciiLetterOrDigit(e)) throw No($"'\\{e}' (backreference, octal or an escape .NET lacks or means otherwise)");
                    if (char.IsSurrogate(e)) throw No("a literal character outside the Basic Multilingual Plane");
                    AddLiteral(e, e is ' ' ? "\\u0020" : char.IsWhiteSpace(e) ? $"\\u{(int)e:X4}" : "\\" + e);
                    single = e;
                    return true;
            }
        }

        void AddLiteral(int cp, string translated) { _literals.Add((cp, cp)); _o.Append(translated); }

        static string Category(string name)
        {
            string key = new string(name.Where(ch => ch is not (' ' or '_' or '-')).ToArray()).ToLowerInvariant();
            string? cat = key switch
            {
                "l" or "letter" => "L", "lu" or "uppercaseletter" => "Lu", "ll" or "lowercaseletter" => "Ll",
                "lt" or "titlecaseletter" => "Lt", "lm" or "modifierletter" => "Lm", "lo" or "otherletter" => "Lo",
                "m" or "mark" or "combiningmark" => "M", "mn" or "nonspacingmark" => "Mn", "mc" or "spacingmark" => "Mc",
                "me" or "enclosingmark" => "Me", "n" or "number" => "N", "nd" or "decimalnumber" => "Nd",
                "nl" or "letternumber" => "Nl", "no" or "othernumber" => "No", "p" or "punctuation" => "P",
                "pc" or "connectorpunctuation" => "Pc", "pd" or "dashpunctuation" => "Pd", "ps" or "openpunctuation" => "Ps",
                "pe" or "closepunctuation" => "Pe", "pi" or "initialpunctuation" => "Pi", "pf" or "finalpunctuation" => "Pf",
                "po" or "otherpunctuation" => "Po", "s" or "symbol" => "S", "sm" or "mathsymbol" => "Sm",
                "sc" or "currencysymbol" => "Sc", "sk" or "modifiersymbol" => "Sk", "so" or "othersymbol" => "So",
                "z" or "separator" => "Z", "zs" or "spaceseparator" => "Zs", "zl" or "lineseparator" => "Zl",
                "zp" or "paragraphseparator" => "Zp", "c" or "other" => "C", "cc" or "control" => "Cc", "cf" or "format" => "Cf",
                "cs" or "surrogate" => "Cs", "co" or "privateuse" => "Co", "cn" or "unassigned" => "Cn",
                _ => null,
            };
            return cat ?? throw No($"the property \\p{{{name}}} (only general categories are translated; scripts, blocks and binary properties are not)");
        }
    }
}

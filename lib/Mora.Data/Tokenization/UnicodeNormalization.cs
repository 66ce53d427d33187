using System.Globalization;

namespace Mora.Data.Tokenization;

/// <summary>
/// Unicode normalization forms NFC, NFD, NFKC, NFKD (UAX #15), implemented here because .NET's
/// <c>string.Normalize</c> returns its input unchanged under <c>InvariantGlobalization=true</c> (checked on .NET 10:
/// no exception, no change), and turning invariant mode off would make the kit need ICU on Linux. The tables
/// (<see cref="UnicodeTables"/>) are Unicode 9.0's, the version of the crate unicode-normalization-alignments 0.1.12
/// that the tokenizers library normalizes with, so a character assigned later is left as it is, as the library does.
/// Each output character keeps the origin of the input character it came from.
/// </summary>
static class UnicodeNormalization
{
    public enum Form { C, D, KC, KD }

    const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7, LCount = 19, VCount = 21, TCount = 28,
        NCount = VCount * TCount, SCount = LCount * NCount;

    sealed class Tables
    {
        public readonly Dictionary<int, int[]> Canonical = new(), Compatibility = new();
        public readonly Dictionary<int, byte> Ccc = new();
        public readonly Dictionary<long, int> Compose = new();
        public readonly Dictionary<int, int[]> FullCanonical = new(), FullCompatibility = new();

        public Tables()
        {
            foreach (var entry in UnicodeTables.Decompositions.Split(';', StringSplitOptions.RemoveEmptyEntries))
            {
                int sep = entry.IndexOfAny(['=', '~']);
                int cp = Hex(entry[..sep]);
                int[] map = entry[(sep + 1)..].Split(',').Select(Hex).ToArray();
                (entry[sep] == '=' ? Canonical : Compatibility)[cp] = map;
            }
            foreach (var entry in UnicodeTables.CombiningClasses.Split(';', StringSplitOptions.RemoveEmptyEntries))
            {
                var (lo, hi, v) = Range(entry);
                for (int c = lo; c <= hi; c++) Ccc[c] = (byte)v;
            }
            var excluded = new HashSet<int>();
            foreach (var entry in UnicodeTables.CompositionExclusions.Split(';', StringSplitOptions.RemoveEmptyEntries))
            {
                var (lo, hi, _) = Range(entry);
                for (int c = lo; c <= hi; c++) excluded.Add(c);
            }
            foreach (var (cp, map) in Canonical)
                if (map.Length == 2 && !excluded.Contains(cp)) Compose[Key(map[0], map[1])] = cp;
            foreach (var cp in Canonical.Keys) FullCanonical[cp] = Expand(cp, compat: false);
            foreach (var cp in Canonical.Keys.Concat(Compatibility.Keys)) FullCompatibility[cp] = Expand(cp, compat: true);
            // Quick check: BMP characters a form may change (decomposable, non-starter, second of a composition, Hangul);
            // a text with none of them is its own normal form. Surrogates (characters beyond the BMP) always take the full path.
            var second = new HashSet<int>(Canonical.Where(kv => kv.Value.Length == 2 && Compose.ContainsKey(Key(kv.Value[0], kv.Value[1]))).Select(kv => kv.Value[1]));
            foreach (var form in new[] { Form.C, Form.D, Form.KC, Form.KD })
            {
                var maybe = new bool[0x10000];
                bool compose = form is Form.C or Form.KC, compat = form is Form.KC or Form.KD;
                for (int c = 0; c < 0x10000; c++)
                    maybe[c] = c is >= 0xD800 and <= 0xDFFF || Ccc.ContainsKey(c) || Canonical.ContainsKey(c) || compat && Compatibility.ContainsKey(c)
                        || (c is >= SBase and < SBase + SCount) && !compose || compose && (second.Contains(c) || c is >= VBase and < VBase + VCount || c is > TBase and < TBase + TCount);
                MaybeChanges[(int)form] = maybe;
            }
        }

        public readonly bool[][] MaybeChanges = new bool[4][];

        int[] Expand(int cp, bool compat)
        {
            int[]? map = compat && Compatibility.TryGetValue(cp, out var m) ? m : Canonical.GetValueOrDefault(cp);
            if (map is null) return [cp];
            return map.SelectMany(c => Expand(c, compat)).ToArray();
        }

        static int Hex(string s) => int.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

        static (int, int, int) Range(string entry)
        {
            var parts = entry.Split(':');
            var bounds = parts[0].Split('-');
            return (Hex(bounds[0]), Hex(bounds[1]), parts.Length > 1 ? Hex(parts[1]) : 0);
        }
    }

    static readonly Lazy<Tables> Data = new(() => new Tables());

    static long Key(int a, int b) => ((long)a << 21) | (uint)b;

    public static int CombiningClass(int cp) => Data.Value.Ccc.TryGetValue(cp, out byte c) ? c : 0;

    /// <summary>True when no character of <paramref name="s"/> can change under <paramref name="form"/> (quick check).</summary>
    static bool Unchanged(string s, Form form)
    {
        char limit = form is Form.KC or Form.KD ? '\u00A0' : '\u00C0';
        int i = 0;
        while (i < s.Length && s[i] < limit) i++;
        if (i == s.Length) return true;
        var maybe = Data.Value.MaybeChanges[(int)form];
        for (; i < s.Length; i++) if (maybe[s[i]]) return false;
        return true;
    }

    public static string Normalize(string s, Form form) => Normalize(NText.FromInput(s), form).Text;

    public static NText Normalize(NText t, Form form)
    {
        if (Unchanged(t.Text, form)) return t;
        var tables = Data.Value;
        bool compat = form is Form.KC or Form.KD;
        var full = compat ? tables.FullCompatibility : tables.FullCanonical;
        // 1. Full decomposition, each code point with its origin.
        var cps = new List<(int Cp, int Origin)>(t.Length + 8);
        string s = t.Text;
        for (int i = 0; i < s.Length;)
        {
            int cp = UnicodeProps.CodePointAt(s, i);
            int origin = t.Origin(i);
            if (cp >= SBase && cp < SBase + SCount)
            {
                int si = cp - SBase;
                cps.Add((LBase + si / NCount, origin));
                cps.Add((VBase + si % NCount / TCount, origin));
                if (si % TCount != 0) cps.Add((TBase + si % TCount, origin));
            }
            else if (full.TryGetValue(cp, out var map)) foreach (int c in map) cps.Add((c, origin));
            else cps.Add((cp, origin));
            i += UnicodeProps.Width(cp);
        }
        // 2. Canonical ordering: a stable sort of each run of non-starters by combining class. Origins stay where they
        // were (positional), as in the library, whose alignments follow output positions, not where a mark came from.
        var positional = cps.Select(c => c.Origin).ToArray();
        for (int i = 0; i < cps.Count;)
        {
            if (CombiningClass(cps[i].Cp) == 0) { i++; continue; }
            int j = i;
            while (j < cps.Count && CombiningClass(cps[j].Cp) != 0) j++;
            if (j - i > 1)
            {
                var run = cps.GetRange(i, j - i).Select((x, k) => (x, k)).OrderBy(p => CombiningClass(p.x.Cp)).ThenBy(p => p.k).Select(p => p.x).ToList();
                for (int k = 0; k < run.Count; k++) cps[i + k] = run[k];
            }
            i = j;
        }
        for (int k = 0; k < cps.Count; k++) cps[k] = (cps[k].Cp, positional[k]);
        // 3. Canonical composition (NFC, NFKC).
        if (form is Form.C or Form.KC) cps = Compose(cps, tables);
        var b = new NTextBuilder(s.Length + 4);
        foreach (var (cp, origin) in cps) b.Append(cp, origin);
        return b.Build();
    }

    static List<(int Cp, int Origin)> Compose(List<(int Cp, int Origin)> cps, Tables tables)
    {
        var result = new List<(int Cp, int Origin)>(cps.Count);
        int starter = -1, lastClass = -1;   // lastClass −1: nothing between the starter and the current character
        foreach (var (cp, origin) in cps)
        {
            int cc = CombiningClass(cp);
            if (starter >= 0 && (lastClass == -1 || (lastClass != 0 && lastClass < cc)) && TryCompose(result[starter].Cp, cp, tables) is int composed)
            {
                result[starter] = (composed, result[starter].Origin);
                continue;
            }
            if (cc == 0) { starter = result.Count; lastClass = -1; }
            else lastClass = cc;
            result.Add((cp, origin));
        }
        return result;
    }

    static int? TryCompose(int a, int b, Tables tables)
    {
        if (a >= LBase && a < LBase + LCount && b >= VBase && b < VBase + VCount)
            return SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
        if (a >= SBase && a < SBase + SCount && (a - SBase) % TCount == 0 && b > TBase && b < TBase + TCount)
            return a + (b - TBase);
        return tables.Compose.TryGetValue(Key(a, b), out int c) ? c : null;
    }
}

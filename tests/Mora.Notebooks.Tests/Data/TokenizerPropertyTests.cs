using System.Text;
using Mora.Data;
using Mora.Data.Tokenization;

namespace Mora.Tests.Data;

/// <summary>Seeded random texts through the reader: round trips where the library's decode gives the text back, and
/// Unicode normalization's defining properties. Tolerance: exact.</summary>
public class TokenizerPropertyTests
{
    /// <summary>Random text built from pools that stress tokenizers: ASCII words and digits, runs of spaces, tabs and
    /// newlines, controls, NBSP and other Unicode spaces, accented letters precomposed and decomposed, combining marks,
    /// CJK (BMP and Extension B), emoji with ZWJ and skin tones, math-bold letters (surrogate pairs), RTL scripts.</summary>
    public static string RandomText(Random rng, int maxPieces = 12, bool allowSpecialLooking = true)
    {
        string[] pools =
        [
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", "     ", "\t\n\r", "\u0000\u0001\u001F\u007F\u0085",
            "\u00A0\u2009\u3000\u200B\uFEFF", "éèêëàâäôöùûüçñÅØæœß", "\u0301\u0300\u0308\u0327\u0323\u0302", "'’\".,;:!?-()[]{}<>/\\@#$%^&*_+=|~`",
            "中文字符测试日本語한국어", "𠀀𠀁𠮷𩸽", "😀👍🏽👨‍👩‍👧🇫🇷❤️", "𝐀𝐁𝐂𝐚𝐛𝐜𝔊𝔬𝔱", "العربيةעבריתРусскийहिन्दीไทย",
        ];
        var sb = new StringBuilder();
        int pieces = rng.Next(0, maxPieces + 1);
        for (int p = 0; p < pieces; p++)
        {
            string pool = pools[rng.Next(pools.Length)];
            var runes = pool.EnumerateRunes().ToArray();
            int len = rng.Next(1, 6);
            for (int k = 0; k < len; k++) sb.Append(runes[rng.Next(runes.Length)].ToString());
            if (allowSpecialLooking && rng.Next(20) == 0) sb.Append(rng.Next(3) switch { 0 => "<s>", 1 => "<|im_end|>", _ => "</s>" });
        }
        return sb.ToString();
    }

    [Fact]
    public void ByteLevelBpeRoundTripsEveryText()
    {
        // Byte-level BPE without a normalizer covers every byte: decode(encode(s)) == s, as in the library.
        var tok = HfTokenizer.Load(Path.Combine(TestSupport.TestData, "interop", "tokenizers", "bytelevel_bpe"));
        var rng = new Random(TestSupport.Seed());
        for (int i = 0; i < 400; i++)
        {
            string s = RandomText(rng, allowSpecialLooking: false);
            var ids = tok.Encode(s);
            Assert.True(s.Length == 0 || ids.Length > 0);
            Assert.Equal(s, tok.Decode(ids));
        }
    }

    [Fact]
    public void Qwen3RoundTripsToTheNfcText()
    {
        // Qwen3 normalizes with NFC, then byte-level BPE: decode(encode(s)) == NFC(s), special tokens kept with skip=false.
        var tok = TokenizerParityTests.Load("qwen3");
        var rng = new Random(TestSupport.Seed());
        for (int i = 0; i < 300; i++)
        {
            string s = RandomText(rng);
            var ids = tok.Encode(s);
            Assert.Equal(UnicodeNormalization.Normalize(s, UnicodeNormalization.Form.C), tok.Decode(ids, skipSpecialTokens: false));
        }
    }

    [Fact]
    public void MistralByteFallbackRoundTripsTextWithoutMetaspaceOrSpecials()
    {
        // Prepend ▁, spaces → ▁, byte fallback for what the vocabulary lacks; the decoder undoes all of it. Texts with a
        // literal ▁ (decoded as a space) or with '<' (which could form <s>) are left out: there the library loses them too.
        var tok = TokenizerParityTests.Load("mistral-v0.1");
        var rng = new Random(TestSupport.Seed());
        int unk = 0;
        for (int i = 0; i < 300; i++)
        {
            string s = RandomText(rng, allowSpecialLooking: false).Replace("▁", "").Replace("<", "").Replace("\u0000", "");
            var ids = tok.Encode(s);
            unk += ids.Count(id => id == 0);
            Assert.Equal(s, tok.Decode(ids));
        }
        Assert.Equal(0, unk);   // byte fallback: nothing becomes <unk>
    }

    [Fact]
    public void LoneSurrogatesAreEncodedAsReplacementCharacters()
    {
        // The library receives UTF-8, where a lone surrogate cannot exist: it is U+FFFD by then.
        var tok = TokenizerParityTests.Load("qwen3");
        Assert.Equal(tok.Encode("a\uFFFDb"), tok.Encode("a\uD800b"));
        Assert.Equal(tok.Encode("\uFFFD"), tok.Encode("\uDC00"));
    }

    [Fact]
    public void NormalizationFormsHaveTheirDefiningProperties()
    {
        // Known values (UAX #15 examples): é, Å (Angstrom sign), ẛ̣ in all four forms, Hangul syllables, ﬁ.
        Assert.Equal("\u00E9", Nfc("e\u0301"));
        Assert.Equal("e\u0301", Nfd("\u00E9"));
        Assert.Equal("\u00C5", Nfc("\u212B"));
        Assert.Equal("\u1E9B\u0323", Nfc("\u1E9B\u0323"));
        Assert.Equal("\u017F\u0323\u0307", Nfd("\u1E9B\u0323"));
        Assert.Equal("\u1E69", UnicodeNormalization.Normalize("\u1E9B\u0323", UnicodeNormalization.Form.KC));
        Assert.Equal("s\u0323\u0307", UnicodeNormalization.Normalize("\u1E9B\u0323", UnicodeNormalization.Form.KD));
        Assert.Equal("\uD55C", Nfc("\u1112\u1161\u11AB"));
        Assert.Equal("\u1112\u1161\u11AB", Nfd("\uD55C"));
        Assert.Equal("fi", UnicodeNormalization.Normalize("\uFB01", UnicodeNormalization.Form.KC));
        Assert.Equal("\uFB01", Nfc("\uFB01"));
        // Canonical reordering: marks sorted by combining class (dot below 220 before acute 230).
        Assert.Equal("a\u0323\u0301", Nfd("a\u0301\u0323"));
        // Properties on random text: NFC(NFD(s)) = NFC(s), NFD(NFC(s)) = NFD(s), each form idempotent.
        var rng = new Random(TestSupport.Seed());
        for (int i = 0; i < 500; i++)
        {
            string s = RandomText(rng);
            string c = Nfc(s), d = Nfd(s);
            Assert.Equal(c, Nfc(d));
            Assert.Equal(d, Nfd(c));
            Assert.Equal(c, Nfc(c));
            Assert.Equal(d, Nfd(d));
            string kc = UnicodeNormalization.Normalize(s, UnicodeNormalization.Form.KC);
            Assert.Equal(kc, UnicodeNormalization.Normalize(kc, UnicodeNormalization.Form.KC));
        }
    }

    [Fact]
    public void NormalizationPassesTheUnicodeConformanceTest()
    {
        // UAX #15's NormalizationTest.txt (a subset beside this file, characters of Unicode 9.0): for each line c1;c2;c3;c4;c5,
        // NFC: c2 = NFC(c1) = NFC(c2) = NFC(c3), c4 = NFC(c4) = NFC(c5); NFD: c3 = NFD(c1..c3), c5 = NFD(c4, c5);
        // NFKC: c4 = NFKC(c1..c5); NFKD: c5 = NFKD(c1..c5).
        string path = Path.Combine(TestSupport.RepoRoot, "tests", "Mora.Notebooks.Tests", "Data", "NormalizationTest-subset.txt.gz");
        using var reader = new StreamReader(new System.IO.Compression.GZipStream(File.OpenRead(path), System.IO.Compression.CompressionMode.Decompress));
        int lines = 0;
        var failures = new List<string>();
        for (string? line; (line = reader.ReadLine()) is not null;)
        {
            if (line.StartsWith('#') || line.StartsWith('@') || line.Trim().Length == 0) continue;
            var c = line.Split(';').Take(5).Select(col => string.Concat(col.Trim().Split(' ').Select(h => char.ConvertFromUtf32(Convert.ToInt32(h, 16))))).ToArray();
            lines++;
            bool ok = true;
            for (int k = 0; k < 5; k++)
            {
                ok &= Nfc(c[k]) == (k < 3 ? c[1] : c[3]) && Nfd(c[k]) == (k < 3 ? c[2] : c[4]);
                ok &= UnicodeNormalization.Normalize(c[k], UnicodeNormalization.Form.KC) == c[3] && UnicodeNormalization.Normalize(c[k], UnicodeNormalization.Form.KD) == c[4];
            }
            if (!ok && failures.Count < 5) failures.Add(line);
        }
        Assert.True(lines > 4000, $"only {lines} test lines");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    static string Nfc(string s) => UnicodeNormalization.Normalize(s, UnicodeNormalization.Form.C);
    static string Nfd(string s) => UnicodeNormalization.Normalize(s, UnicodeNormalization.Form.D);

    [Fact]
    public void OnigurumaRegexesAreTranslatedOrRefusedByName()
    {
        const string f = "tokenizer.json", field = "pre_tokenizer.pattern.Regex";
        // Possessive quantifiers become atomic groups; {,n} is {0,n}; \p{Letter} is \p{L}; code points, not UTF-16 units.
        var r = OnigRegex.Compile(@"[^\r\n\p{L}\p{N}]?+\p{Letter}+|\p{N}{,3}| ?[^\s\p{L}\p{N}]++", f, field);
        Assert.Equal(new (int, int)[] { (0, 3), (3, 6), (6, 9) }, r.Matches("abc123456"));
        // 😀 is one character: the optional non-letter takes it and the math-bold letters (surrogate pairs) are letters.
        Assert.Equal(new (int, int)[] { (0, 6) }, r.Matches("😀𝐀𝐁"));
        foreach (var (pattern, construct) in new[] { (@"^a", "'^'"), (@"a$", "'$'"), (@"\w+", "\\w"), (@"\bx", "\\b"), (@"(a)\1", "\\1"),
                     (@"\p{Han}", "\\p{Han}"), (@"[[:alpha:]]", "POSIX"), (@"(?x) a", "(?x)"), (@"a{2}+", "{n,m}+"), ("😀", "outside the Basic") })
        {
            var e = Assert.Throws<TokenizerFormatException>(() => OnigRegex.Compile(pattern, f, field));
            Assert.Contains(field, e.Message);
            Assert.Contains(construct, e.Message);
        }
        // onig's find_iter: the empty match right after a match is skipped.
        Assert.Equal(new (int, int)[] { (0, 0), (1, 2), (3, 4) }, OnigRegex.Compile(@"\d*", f, field).Matches("a1b2"));
    }
}

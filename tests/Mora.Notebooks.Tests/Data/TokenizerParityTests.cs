using System.Text.Json;
using Mora.Data;
using Mora.Data.Tokenization;

namespace Mora.Tests.Data;

/// <summary>
/// The kit's tokenizer.json reader against the official Hugging Face tokenizers library (npm tokenizers 0.23.2, Rust
/// core): tests/data/tokenizers (4 real files, 328 probe texts; README there) and tests/data/interop/tokenizers.
/// Tolerance: none, every id, token string and decoded text must be identical.
/// </summary>
public class TokenizerParityTests
{
    static string Root => Path.Combine(TestSupport.TestData, "tokenizers");

    public static readonly string[] Files = ["mistral-v0.1", "qwen3", "unigram-bytefallback", "unigram-unk"];
    public static TheoryData<string> FileNames => new(Files);

    static readonly Lazy<List<string>> Texts = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "texts.json"))).RootElement.GetProperty("texts")
            .EnumerateArray().Select(t => t.GetProperty("text").GetString()!).ToList());

    static readonly Dictionary<string, HfTokenizer> Cache = new();
    internal static HfTokenizer Load(string name)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(name, out var t)) Cache[name] = t = HfTokenizer.Load(Path.Combine(Root, "files", name, "tokenizer.json"));
            return t;
        }
    }

    static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
    static string[] Strings(JsonElement e) => e.EnumerateArray().Select(x => x.GetString()!).ToArray();

    [Theory]
    [MemberData(nameof(FileNames))]
    public void EveryProbeTextMatchesTheOfficialLibrary(string name)
    {
        var tok = Load(name);
        var rows = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "reference", name + ".json"))).RootElement.GetProperty("rows").EnumerateArray().ToList();
        var texts = Texts.Value;
        Assert.Equal(texts.Count, rows.Count);
        int ids = 0, tokens = 0, idsSpecial = 0, decode = 0, decodeSpecial = 0;
        var firstBad = new List<string>();
        for (int i = 0; i < texts.Count; i++)
        {
            var r = rows[i];
            var mine = tok.Tokenize(texts[i]);
            int[] refIds = Ints(r.GetProperty("ids")), refSpecial = Ints(r.GetProperty("ids_special"));
            bool a = mine.Ids.SequenceEqual(refIds), b = mine.Tokens.SequenceEqual(Strings(r.GetProperty("tokens"))),
                c = tok.Encode(texts[i], addSpecialTokens: true).SequenceEqual(refSpecial),
                d = tok.Decode(refIds) == r.GetProperty("decode").GetString(),
                e = tok.Decode(refSpecial) == r.GetProperty("decode_special").GetString();
            ids += a ? 1 : 0; tokens += b ? 1 : 0; idsSpecial += c ? 1 : 0; decode += d ? 1 : 0; decodeSpecial += e ? 1 : 0;
            if (!(a && b && c && d && e) && firstBad.Count < 3) firstBad.Add($"text {i} {JsonSerializer.Serialize(texts[i])}: ids {a} tokens {b} ids_special {c} decode {d} decode_special {e}");
        }
        int n = texts.Count;
        Assert.True(ids == n && tokens == n && idsSpecial == n && decode == n && decodeSpecial == n,
            $"{name}: of {n} texts identical: ids {ids}, tokens {tokens}, ids_special {idsSpecial}, decode {decode}, decode_special {decodeSpecial}; first differences: {string.Join("; ", firstBad)}");
    }

    [Theory]
    [InlineData("bytelevel_bpe")]
    [InlineData("metaspace_bpe")]
    public void InteropTokenizersMatchTheOfficialLibrary(string name)
    {
        string dir = Path.Combine(TestSupport.TestData, "interop", "tokenizers", name);
        var tok = HfTokenizer.Load(dir);
        var r = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference.json"))).RootElement;
        var texts = Strings(r.GetProperty("texts"));
        Assert.True(texts.Length >= 10);
        Assert.Equal(r.GetProperty("vocab_size").GetInt32(), tok.VocabSize);
        for (int i = 0; i < texts.Length; i++)
        {
            var mine = tok.Tokenize(texts[i]);
            int[] refIds = Ints(r.GetProperty("ids")[i]);
            Assert.Equal(refIds, mine.Ids);
            Assert.Equal(Strings(r.GetProperty("tokens")[i]), mine.Tokens);
            Assert.Equal(r.GetProperty("decoded")[i].GetString(), tok.Decode(refIds));
        }
    }

    [Fact]
    public void SpecialIdsComeFromTheTemplateAndTokenizerConfig()
    {
        // Mistral: the template adds <s> (1); tokenizer_config.json: eos </s> (2), pad null (so PadId falls back to EOS).
        var m = Load("mistral-v0.1");
        Assert.Equal((1, 2, (int?)null), (m.BosTokenId!.Value, m.EosTokenId, m.PadTokenId));
        Assert.Equal((1, 2, 2, 32000), (m.BosId, m.EosId, m.PadId, m.VocabSize));
        Assert.Equal("BPE (metaspace)", m.Kind);
        Assert.NotNull(m.ConfigPath);
        // Qwen3: no BOS (bos_token null, nothing added), eos <|im_end|>, pad <|endoftext|>; 151,643 pieces + 26 added tokens.
        var q = Load("qwen3");
        Assert.Null(q.BosTokenId);
        Assert.Equal((151645, 151643, 151669), (q.EosTokenId, q.PadTokenId!.Value, q.VocabSize));
        Assert.Equal(q.EosId, q.BosId);
        // The Unigram files have no tokenizer_config.json: <s> from the template, </s> by its name.
        var u = Load("unigram-unk");
        Assert.Null(u.ConfigPath);
        Assert.Equal((1, 2, 4003), (u.BosTokenId!.Value, u.EosTokenId, u.VocabSize));
    }

    [Fact]
    public void DecodingKeepsSpecialTokensOnlyWhenAskedAndSkipsOnlySpecialOnes()
    {
        var q = Load("qwen3");
        string text = "Question: 7 * 6?<|im_end|>";
        var ids = q.Encode(text);
        Assert.Contains(151645, ids);
        Assert.Equal("Question: 7 * 6?", q.Decode(ids));
        Assert.Equal(text, q.Decode(ids, skipSpecialTokens: false));
        // <think> is an added token of Qwen3 with special: false: skipping special tokens keeps it.
        int think = q.TokenToId("<think>")!.Value;
        Assert.False(q.IsSpecial(think));
        Assert.Equal("<think>x", q.Decode([think, .. q.Encode("x")]));
        var m = Load("mistral-v0.1");
        var withBos = m.Encode("Hello", addSpecialTokens: true);
        Assert.Equal(1, withBos[0]);
        Assert.Equal(m.Encode("Hello"), withBos[1..]);
        Assert.Equal("<s> Hello", m.Decode(withBos, skipSpecialTokens: false));
        Assert.Equal("Hello", m.Decode(withBos));
    }

    [Fact]
    public void TokenizerAgainstModelVocabulary()
    {
        var m = Load("mistral-v0.1");
        TokenizerVocabularyCheck.AgainstModel(m, 32000, "config.json");
        TokenizerVocabularyCheck.AgainstModel(m, 32768, "config.json");   // a larger embedding is fine
        var e = Assert.Throws<TokenizerFormatException>(() => TokenizerVocabularyCheck.AgainstModel(m, 31999, "/models/x/config.json"));
        Assert.Contains(m.SourcePath, e.Message);
        Assert.Contains("/models/x/config.json", e.Message);
        Assert.Contains("31999", e.Message);
        // Qwen3's added tokens go beyond its 151,643 pieces: a model of that size is refused.
        var q = Load("qwen3");
        Assert.Equal(151668, q.MaxTokenId);
        Assert.Throws<TokenizerFormatException>(() => TokenizerVocabularyCheck.AgainstModel(q, 151643, "config.json"));
        TokenizerVocabularyCheck.AgainstModel(q, 151936, "config.json");
    }
}

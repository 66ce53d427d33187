using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Mora.Data;
using Mora.Training;

namespace Mora.Tests;

/// <summary>Generators, the GSM8K loader and answer extraction, tokenisers.</summary>
public partial class DataTests
{
    [GeneratedRegex("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")]
    private static partial Regex Uuid4();

    [Fact]
    public void UuidPairsAreDeterministicDistinctAndWellFormed()
    {
        int seed = TestSupport.Seed();
        var a = UuidPairs.Generate(500, seed);
        var b = UuidPairs.Generate(500, seed);
        var c = UuidPairs.Generate(500, seed + 1);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.Equal(500, a.Select(p => p.Key).Distinct().Count());
        Assert.All(a, p => { Assert.Matches(Uuid4(), p.Key); Assert.Matches(Uuid4(), p.Value); });
        string path = Path.Combine(TestSupport.TempDir(), "uuid.jsonl");
        UuidPairs.Write(path, a);
        Assert.Equal(a, UuidPairs.Read(path));
        Assert.Equal(10_000, UuidPairs.Presets["paper"]);
        Assert.Throws<ArgumentException>(() => UuidPairs.Generate(0, 1));
    }

    [Fact]
    public void UuidFileWithABadLineNamesFileAndLine()
    {
        string path = Path.Combine(TestSupport.TempDir(), "bad.jsonl");
        File.WriteAllText(path, "{\"key\":\"a\",\"value\":\"b\"}\n\n{\"key\":\"c\"}\n");
        var e = Assert.Throws<DatasetFormatException>(() => UuidPairs.Read(path));
        Assert.Equal(3, e.Line);
        Assert.Contains($"{path}:3", e.Message);
        Assert.Contains("\"value\"", e.Message);
    }

    [GeneratedRegex(@"<<(-?\d+)([+\-*/])(\d+)=(-?\d+)>>(-?\d+)")]
    private static partial Regex Annotation();

    [Fact]
    public void Gsm8kStyleProblemsHaveGsm8kFormatAndCorrectArithmetic()
    {
        int seed = TestSupport.Seed();
        var style = new MathStyle { MinSteps = 2, MaxSteps = 5, MaxStart = 80, MaxOperand = 40, MaxFactor = 5 };
        var problems = Gsm8kStyle.Generate(400, seed, style);
        Assert.Equal(problems, Gsm8kStyle.Generate(400, seed, style));
        Assert.NotEqual(problems.Select(p => p.Question), Gsm8kStyle.Generate(400, seed + 1, style).Select(p => p.Question));
        foreach (var p in problems)
        {
            var lines = p.Answer.Split('\n');
            Assert.InRange(lines.Length - 1, style.MinSteps, style.MaxSteps);
            Assert.Matches(@"^#### \d+$", lines[^1]);
            Assert.EndsWith("?", p.Question);
            decimal last = 0;
            foreach (var line in lines[..^1])
            {
                var m = Annotation().Match(line);
                Assert.True(m.Success, $"no calculator annotation in '{line}'");
                long x = long.Parse(m.Groups[1].Value), y = long.Parse(m.Groups[3].Value), z = long.Parse(m.Groups[4].Value);
                long expected = m.Groups[2].Value switch { "+" => x + y, "-" => x - y, "*" => x * y, _ => x / y };
                if (m.Groups[2].Value == "/") Assert.Equal(0, x % y);
                Assert.Equal(expected, z);
                Assert.Equal(z.ToString(), m.Groups[5].Value);
                last = z;
            }
            Assert.Equal(last, p.FinalAnswer);
            Assert.Equal(p.FinalAnswer, AnswerExtraction.FromReference(p.Answer));
        }
    }

    [Fact]
    public void SplitsAreDisjointAndTheCorpusExcludesTestQuestions()
    {
        var (train, test) = Gsm8kStyle.Splits(300, 100, TestSupport.Seed());
        Assert.Equal(300, train.Count);
        Assert.Equal(100, test.Count);
        Assert.Empty(train.Select(p => p.Question).Intersect(test.Select(p => p.Question)));
        var exclude = test.Select(p => p.Question).ToHashSet();
        var corpus = Gsm8kPretrainingText.Generate(300, 5, excludeQuestions: exclude);
        Assert.Equal(300, corpus.Count);
        Assert.DoesNotContain(corpus, d => exclude.Any(q => d.Contains(q)));
        Assert.Contains(corpus, d => d.Contains("<<") && d.Contains("####"));
        Assert.Equal(corpus, Gsm8kPretrainingText.Generate(300, 5, excludeQuestions: exclude));
        Assert.Throws<ArgumentException>(() => Gsm8kStyle.Generate(10, 1, new MathStyle { MinSteps = 3, MaxSteps = 2 }));
    }

    /// <summary>The base's pretraining corpus is the one the committed GSM8K results were pretrained on: its text from a fixed
    /// seed is pinned by digest (a change to the generator would silently change every base).</summary>
    [Fact]
    public void PretrainingCorpusIsPinned()
    {
        var style = new MathStyle { MinSteps = 1, MaxSteps = 2, MaxStart = 20, MaxOperand = 10, MaxFactor = 3 };
        var text = string.Join("\u0001", Gsm8kPretrainingText.Generate(500, 7000, style));
        string digest = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)));
        Assert.Equal("A216D1E05BD58CB81641B6915E6CF55515A61733A186E452CFF670AB7DC8A129", digest);
    }

    [Fact]
    public void SkeletonIsTheChainOfCalculatorAnnotations()
    {
        var p = new MathProblem("Mei has 12 cookies. Ravi gives Mei 3 more cookies. Mei then gets 2 times as many cookies as before in total. How many cookies does Mei have now?",
            "Mei has 12+3 = <<12+3=15>>15 cookies.\nMei now has 15*2 = <<15*2=30>>30 cookies.\n#### 30", 30);
        Assert.Equal("12+3=15;15*2=30", MathSkeleton.Of(p));
        // The same computation under other names and items has the same skeleton; another operand does not.
        var renamed = p with { Answer = p.Answer.Replace("Mei", "Sam").Replace("cookies", "marbles") };
        Assert.Equal(MathSkeleton.Of(p), MathSkeleton.Of(renamed));
        Assert.NotEqual(MathSkeleton.Of(p), MathSkeleton.Of(p with { Answer = "Mei has 12+4 = <<12+4=16>>16 cookies.\nMei now has 16*2 = <<16*2=32>>32 cookies.\n#### 32" }));
        Assert.Equal("", MathSkeleton.Of("no annotation\n#### 3"));
    }

    [Fact]
    public void UnseenSplitsHoldOutSkeletonsThatPlainSplitsLeak()
    {
        int seed = TestSupport.Seed();
        // The GSM8K experiment's style: one or two steps over small numbers, where skeletons repeat often.
        var style = new MathStyle { MinSteps = 1, MaxSteps = 2, MaxStart = 20, MaxOperand = 10, MaxFactor = 3 };
        var (plainTrain, plainTest) = Gsm8kStyle.Splits(2000, 400, seed, style);
        var seen = plainTrain.Select(MathSkeleton.Of).ToHashSet();
        double leaked = plainTest.Count(p => seen.Contains(MathSkeleton.Of(p))) / 400.0;
        Assert.True(leaked > 0.3, $"expected the exact-question split to leak skeletons, {leaked:P0} of its test problems did");

        var splits = Gsm8kStyle.UnseenSplits(2000, [400, 100], seed, style);
        Assert.Equal([2000, 400, 100], splits.Select(s => s.Count));
        var train = splits[0].Select(MathSkeleton.Of).ToHashSet();
        var test = splits[1].Select(MathSkeleton.Of).ToHashSet();
        Assert.DoesNotContain(splits[1], p => train.Contains(MathSkeleton.Of(p)));
        Assert.DoesNotContain(splits[2], p => train.Contains(MathSkeleton.Of(p)) || test.Contains(MathSkeleton.Of(p)));
        Assert.Equal(2500, splits.SelectMany(s => s).Select(p => p.Question).Distinct().Count());
        Assert.Equal(splits.SelectMany(s => s), Gsm8kStyle.UnseenSplits(2000, [400, 100], seed, style).SelectMany(s => s));

        // The base's corpus leaves out every worked problem with a held-out skeleton (it keeps its arithmetic drills).
        var heldOut = test.Concat(splits[2].Select(MathSkeleton.Of)).ToHashSet();
        var corpus = Gsm8kPretrainingText.Generate(3000, seed, style, excludeSkeletons: heldOut);
        Assert.Equal(3000, corpus.Count);
        Assert.DoesNotContain(corpus, d => heldOut.Contains(MathSkeleton.Of(d)));
        var leaky = Gsm8kPretrainingText.Generate(3000, seed, style);
        Assert.Contains(leaky, d => heldOut.Contains(MathSkeleton.Of(d)));     // without the exclusion they are there

        var ex = Assert.Throws<ArgumentException>(() => Gsm8kStyle.UnseenSplits(50, [400], seed, new MathStyle { MinSteps = 1, MaxSteps = 1, MaxStart = 3, MaxOperand = 1, MaxFactor = 2 }));
        Assert.Contains("unseen", ex.Message);
    }

    [Fact]
    public void LoaderReadsAllOfTheRealGsm8kAndExtractsEveryAnswer()
    {
        string dir = TestSupport.Gsm8kDir;
        var train = Gsm8kData.Load(Path.Combine(dir, "train.jsonl"));
        var test = Gsm8kData.Load(Path.Combine(dir, "test.jsonl"));
        Assert.Equal(7473, train.Count);
        Assert.Equal(1319, test.Count);
        Assert.Equal(8792, train.Count + test.Count);
        Assert.Equal(72m, train[0].FinalAnswer);      // Natalia's clips
        Assert.Equal(1, train[0].Line);
        // Every final answer matches the text after "####" with commas removed.
        foreach (var p in train.Concat(test))
        {
            string raw = p.Answer[(p.Answer.LastIndexOf("####", StringComparison.Ordinal) + 4)..].Trim().Replace(",", "");
            Assert.Equal(decimal.Parse(raw, System.Globalization.CultureInfo.InvariantCulture), p.FinalAnswer);
        }
        Assert.Contains(train.Concat(test), p => p.Answer.Contains("#### ") && p.Answer[(p.Answer.LastIndexOf("####") + 4)..].Contains(','));
    }

    [Theory]
    [InlineData("x\n{\"question\": \"q\"}", 2, "missing field \"answer\"")]
    [InlineData("{\"question\": \"q\", \"answer\": \"a\\n#### 1\"}\n{\"question\": \"q\", \"answer\": \"no final line\"}", 2, "####")]
    [InlineData("{\"question\": \"q\", \"answer\": \"#### 2\"}\n{oops", 2, "not valid JSON")]
    [InlineData("[1, 2]", 1, "JSON object")]
    [InlineData("{\"question\": 5, \"answer\": \"#### 2\"}", 1, "must be a string")]
    public void MalformedGsm8kLineNamesFileAndLine(string content, int line, string problem)
    {
        string path = Path.Combine(TestSupport.TempDir(), "gsm.jsonl");
        File.WriteAllText(path, content.StartsWith("x\n") ? "{\"question\": \"q\", \"answer\": \"#### 1\"}\n" + content[2..] : content);
        var e = Assert.Throws<DatasetFormatException>(() => Gsm8kData.Load(path));
        Assert.Equal(line, e.Line);
        Assert.StartsWith($"{path}:{line}:", e.Message);
        Assert.Contains(problem, e.Message);
        Assert.Throws<FileNotFoundException>(() => Gsm8kData.Load(path + ".missing"));
    }

    [Theory]
    [InlineData("so 3 + 4 = 7\n#### 7", "7")]
    [InlineData("#### 1,234", "1234")]
    [InlineData("#### -5", "-5")]
    [InlineData("#### 3.50", "3.5")]
    [InlineData("#### $1,000", "1000")]
    [InlineData("#### -0.25", "-0.25")]
    [InlineData("#### 12.", "12")]
    [InlineData("no final line 12", null)]
    [InlineData("#### twelve", null)]
    public void ReferenceAnswers(string answer, string? expected) =>
        Assert.Equal(expected is null ? null : decimal.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), AnswerExtraction.FromReference(answer));

    [Theory]
    [InlineData("She has 5+3 = <<5+3=8>>8.\n#### 8\nmore text 99", "8")]
    [InlineData("the answer is 1,250 apples", "1250")]
    [InlineData("first 3 then -7", "-7")]
    [InlineData("nothing here", null)]
    public void GeneratedAnswers(string text, string? expected) =>
        Assert.Equal(expected is null ? null : decimal.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), AnswerExtraction.FromGeneration(text));

    [Fact]
    public void CharTokenizerRoundTrips()
    {
        var tok = new CharTokenizer();
        var pair = UuidPairs.Generate(1, TestSupport.Seed())[0];
        string text = UuidPairs.Prompt(pair.Key) + pair.Value + "\nQ: 12*3 = <<12*3=36>>36\t#### 36";
        var ids = tok.Encode(text);
        Assert.Equal(text.Length, ids.Length);
        Assert.All(ids, i => Assert.InRange(i, 4, tok.VocabSize - 1));
        Assert.Equal(text, tok.Decode(ids));
        Assert.Equal("ab", tok.Decode([tok.BosId, .. tok.Encode("ab"), tok.EosId, tok.PadId]));
        Assert.Equal(CharTokenizer.Unk, tok.Encode("é")[0]);
        Assert.Throws<ArgumentException>(() => new CharTokenizer(strict: true).Encode("é"));
        Assert.Equal(101, tok.VocabSize);   // 4 special + newline, tab + 95 printable
    }

    // Every field of an added token is required, as the tokenizers library requires it.
    static JsonObject Added(int id, string content) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
    };

    static string WriteTokenizerJson(JsonObject model, JsonNode? preTokenizer, JsonNode? decoder)
    {
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(
                Added(0, "<unk>"), Added(1, "<s>"), Added(2, "</s>")),
            ["pre_tokenizer"] = preTokenizer,
            ["decoder"] = decoder,
            ["model"] = model,
        };
        string path = Path.Combine(TestSupport.TempDir(), "tokenizer.json");
        File.WriteAllText(path, root.ToJsonString());
        return path;
    }

    [Fact]
    public void ByteLevelBpeTokenizerJsonRoundTrips()
    {
        // A tiny GPT-2-style vocabulary: single byte-level characters, then merges building "hello" and "Ġworld".
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        int next = 3;
        foreach (var ch in "helowrdĠ") vocab[ch.ToString()] = next++;
        string[] merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"];
        foreach (var m in merges) vocab[m.Replace(" ", "")] = next++;
        var model = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray(merges.Select(m => (JsonNode)m).ToArray()) };
        string path = WriteTokenizerJson(model, new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true }, new JsonObject { ["type"] = "ByteLevel" });
        var tok = HfTokenizer.Load(path);
        Assert.Equal("BPE (byte-level)", tok.Kind);
        var ids = tok.Encode("hello world");
        Assert.Equal(new[] { vocab["hello"]!.GetValue<int>(), vocab["Ġworld"]!.GetValue<int>() }, ids);
        Assert.Equal("hello world", tok.Decode([tok.BosId, .. ids, tok.EosId]));
        Assert.Equal((1, 2), (tok.BosId, tok.EosId));
        Assert.Equal(next, tok.VocabSize);
        // A model folder works too, and a missing file is named.
        Assert.Equal(ids, HfTokenizer.Load(Path.GetDirectoryName(path)!).Encode("hello world"));
        Assert.Contains("tokenizer file not found", Assert.Throws<FileNotFoundException>(() => HfTokenizer.Load(path + ".nope")).Message);
    }

    [Fact]
    public void MetaspaceBpeTokenizerJsonRoundTrips()
    {
        // LLaMA-2-style: words start with ▁, merges in the newer [a, b] pair form.
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        int next = 3;
        foreach (var ch in "▁abc") vocab[ch.ToString()] = next++;
        (string, string)[] merges = [("▁", "a"), ("b", "c"), ("▁a", "bc")];
        foreach (var (x, y) in merges) vocab[x + y] = next++;
        var model = new JsonObject
        {
            ["type"] = "BPE", ["vocab"] = vocab, ["unk_token"] = "<unk>",
            ["merges"] = new JsonArray(merges.Select(m => (JsonNode)new JsonArray(m.Item1, m.Item2)).ToArray()),
        };
        string path = WriteTokenizerJson(model, new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁" }, new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁" });
        var tok = HfTokenizer.Load(path);
        Assert.Equal("BPE (metaspace)", tok.Kind);
        var ids = tok.Encode("abc abc");
        Assert.Equal(new[] { vocab["▁abc"]!.GetValue<int>(), vocab["▁abc"]!.GetValue<int>() }, ids);
        Assert.Equal("abc abc", tok.Decode(ids));
    }

    [Theory]
    [InlineData("{", "invalid JSON")]
    [InlineData("{\"model\": {\"type\": \"Foo\"}}", "model.type 'Foo' is not supported")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"merges\": []}}", "model.vocab is missing")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", "end-of-sequence")]
    public void BadTokenizerJsonNamesFileAndProblem(string json, string problem)
    {
        string path = Path.Combine(TestSupport.TempDir(), "tokenizer.json");
        File.WriteAllText(path, json);
        var e = Assert.ThrowsAny<FormatException>(() => HfTokenizer.Load(path));   // TokenizerFormatException is one
        Assert.Contains(path, e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void PairsAndCorpusBecomeMaskedExamplesAndBatches()
    {
        var tok = new CharTokenizer();
        var ex = LmData.FromPair(tok, "ab=", "xyz");
        Assert.Equal(1 + 3 + 3 + 1, ex.Tokens.Length);
        Assert.Equal(4, ex.PromptLength);
        var unmasked = LmData.FromPair(tok, "ab=", "xyz", maskPrompt: false);
        using var batch = LmData.Collate([ex, LmData.FromPair(tok, "a=", "x")], tok.PadId, CPU);
        Assert.Equal(new long[] { 2, 8 }, batch.InputIds.shape);
        var targets = batch.Targets[0].data<long>().ToArray();
        // Loss only where the next token is the answer or EOS: positions 3..6 predict x, y, z, EOS.
        Assert.Equal(new long[] { -100, -100, -100, tok.Encode("x")[0], tok.Encode("y")[0], tok.Encode("z")[0], tok.EosId, -100 }, targets);
        Assert.Equal(4 + 2, batch.LossTokens);
        Assert.Equal(tok.PadId, batch.InputIds[1, 7].item<long>());
        Assert.Equal(0, unmasked.PromptLength);
        var blocks = LmData.FromCorpus(tok, ["hello world", "second document"], 8);
        Assert.All(blocks, b => Assert.Equal(8, b.Tokens.Length));
        Assert.Equal((1 + 11 + 1 + 1 + 15 + 1) / 8, blocks.Count);
    }
}

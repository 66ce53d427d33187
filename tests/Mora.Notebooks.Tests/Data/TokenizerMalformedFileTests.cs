using System.Diagnostics;
using System.Text.Json.Nodes;
using Mora.Data;
using Mora.Data.Tokenization;

namespace Mora.Tests.Data;

/// <summary>Issue 25: bad tokenizer files end in one documented exception (<see cref="TokenizerFormatException"/>, a
/// <see cref="FormatException"/>) that names the file, the field and the value, quickly; nothing is read from a FIFO,
/// device or oversized file.</summary>
public class TokenizerMalformedFileTests
{
    static string Interop(string name) => Path.Combine(TestSupport.TestData, "interop", "tokenizers", name, "tokenizer.json");
    static string Unigram => Path.Combine(TestSupport.TestData, "tokenizers", "files", "unigram-unk", "tokenizer.json");

    static string Write(JsonNode root)
    {
        string path = Path.Combine(TestSupport.TempDir(), "tokenizer.json");
        File.WriteAllText(path, root.ToJsonString());
        return path;
    }

    static TokenizerFormatException Refused(JsonNode root, string field, string? value = null)
    {
        string path = Write(root);
        var e = Assert.IsType<TokenizerFormatException>(TestSupport.Unhung(() => HfTokenizer.Load(path), $"loading {path}"));
        Assert.Equal(path, e.File);
        Assert.Contains(path, e.Message);
        Assert.StartsWith(field, e.Field);
        Assert.Contains(field, e.Message);
        if (value is not null) Assert.Contains(value, e.Message);
        return e;
    }

    static JsonNode Metaspace() => JsonNode.Parse(File.ReadAllText(Interop("metaspace_bpe")))!;

    [Fact]
    public void MalformedFieldsAreNamedWithTheirValue()
    {
        var j = Metaspace(); j["model"]!["vocab"]!["▁The"] = "x";
        Refused(j, "model.vocab.▁The", "\"x\"");
        j = Metaspace(); j["model"]!["vocab"]!["▁The"] = -4;
        Refused(j, "model.vocab.▁The", "-4");
        j = Metaspace(); j["model"]!["vocab"]!["▁The"] = 3.5;
        Refused(j, "model.vocab.▁The", "3.5");
        j = Metaspace(); j["model"]!["vocab"]!["▁The"] = j["model"]!["vocab"]!["▁quick"]!.GetValue<int>();
        Refused(j, "model.vocab.", "duplicate id");
        j = Metaspace(); j["model"]!["merges"]![3] = "a b c";
        Refused(j, "model.merges[3]", "a b c");
        j = Metaspace(); j["model"]!["merges"]![4] = 17;
        Refused(j, "model.merges[4]", "17");
        j = Metaspace(); j["model"]!["merges"]![5] = new JsonArray("▁", "notatoken");
        Refused(j, "model.merges[5]", "notatoken");
        j = Metaspace(); j["added_tokens"]![1]!["id"] = 999_999;
        Refused(j, "added_tokens[1].id", "999999");
        j = Metaspace(); j["added_tokens"]![1]!["special"] = "yes";
        Refused(j, "added_tokens[1].special", "\"yes\"");
        j = Metaspace(); j["added_tokens"]![0]!.AsObject().Remove("normalized");
        Refused(j, "added_tokens[0].normalized", "missing");
        j = Metaspace(); j["pre_tokenizer"]!["prepend_scheme"] = "sometimes";
        Refused(j, "pre_tokenizer.prepend_scheme", "sometimes");
        j = Metaspace(); j["post_processor"]!["single"]![0]!["SpecialToken"]!["id"] = "<bos>";
        Refused(j, "post_processor.single[0].SpecialToken.id", "<bos>");
        j = Metaspace(); j["version"] = "2.0";
        Refused(j, "version", "2.0");
        j = Metaspace(); j["model"]!["dropout"] = 0.1;
        Refused(j, "model.dropout", "0.1");
        j = Metaspace(); j["truncation"] = new JsonObject { ["max_length"] = 8 };
        Refused(j, "truncation", "max_length");
    }

    [Fact]
    public void TokenizerConfigDecidesSpecialIdsAndMustAgreeWithThePostProcessor()
    {
        string Folder(string config)
        {
            string dir = TestSupport.TempDir();
            File.Copy(Interop("metaspace_bpe"), Path.Combine(dir, "tokenizer.json"));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config);
            return dir;
        }
        // The template's <s> (1) is the BOS whatever the config says; EOS and PAD are the config's, also as {"content": ...}.
        var tok = HfTokenizer.Load(Folder("""{"bos_token": "</s>", "eos_token": {"content": "<s>", "lstrip": false}, "pad_token": "<unk>"}"""));
        Assert.Equal((1, 1, 0), (tok.BosTokenId!.Value, tok.EosTokenId, tok.PadTokenId!.Value));
        Assert.EndsWith("tokenizer_config.json", tok.ConfigPath);
        // Without a config: EOS </s> by its name (2), no PAD (PadId falls back to EOS).
        var plain = HfTokenizer.Load(Interop("metaspace_bpe"));
        Assert.Equal((1, 2, (int?)null, 2), (plain.BosTokenId!.Value, plain.EosTokenId, plain.PadTokenId, plain.PadId));
        // A flag that contradicts the post-processor, and a token the tokenizer lacks, are refused naming the config file.
        foreach (var (config, field) in new[] { ("""{"add_bos_token": false}""", "add_bos_token"), ("""{"add_eos_token": true}""", "add_eos_token"),
                     ("""{"eos_token": "<nope>"}""", "eos_token"), ("""{"pad_token": 7}""", "pad_token") })
        {
            string dir = Folder(config);
            var e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(dir));
            Assert.Equal(Path.Combine(dir, "tokenizer_config.json"), e.File);
            Assert.Equal(field, e.Field);
        }
    }

    [Fact]
    public void MalformedUnigramVocabulariesAreNamed()
    {
        JsonNode U() => JsonNode.Parse(File.ReadAllText(Unigram))!;
        var j = U(); j["model"]!["vocab"]![5] = new JsonArray("▁a");
        Refused(j, "model.vocab[5]", "▁a");
        j = U(); j["model"]!["vocab"]![6] = new JsonArray("▁b", "high");
        Refused(j, "model.vocab[6][1]", "high");
        j = U(); j["model"]!["vocab"]![7] = new JsonArray(j["model"]!["vocab"]![8]![0]!.GetValue<string>(), -1.0);
        Refused(j, "model.vocab[", "repeats the piece");
        j = U(); j["model"]!["unk_id"] = 100_000;
        Refused(j, "model.unk_id", "100000");
    }

    [Theory]
    [InlineData("pre_tokenizer", "Foo")]
    [InlineData("normalizer", "Precompiled")]
    [InlineData("normalizer", "Bar")]
    [InlineData("decoder", "Baz")]
    [InlineData("post_processor", "Qux")]
    [InlineData("model", "Quux")]
    [InlineData("pre_tokenizer", "UnicodeScripts")]
    public void UnknownTypesAreRefusedByName(string component, string type)
    {
        var j = Metaspace();
        j[component] = component == "model" ? new JsonObject { ["type"] = type, ["vocab"] = new JsonObject() } : new JsonObject { ["type"] = type };
        var e = Refused(j, component + ".type", $"'{type}'");
        Assert.Contains("not supported", e.Message);
    }

    [Fact]
    public void RegexConstructsWithoutAnExactTranslationAreRefused()
    {
        var j = Metaspace();
        j["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = @"\w+|\s+" }, ["behavior"] = "Isolated", ["invert"] = false,
        };
        Refused(j, "pre_tokenizer.pattern.Regex", @"\w");
    }

    [Fact]
    public void CatastrophicBacktrackingTimesOutWithTheFieldNamed()
    {
        var j = Metaspace();
        j["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(new JsonObject
            {
                ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = "(a+)+b" }, ["behavior"] = "Isolated", ["invert"] = false,
            }),
        };
        var tok = HfTokenizer.Load(Write(j));
        Assert.NotEmpty(tok.Encode("aab"));   // an ordinary text is fine
        var e = Assert.IsType<TokenizerFormatException>(TestSupport.Unhung(() => tok.Encode(new string('a', 40) + "c"), "encoding with a catastrophic pattern"));
        Assert.Equal("pre_tokenizer.pretokenizers[0].pattern.Regex", e.Field);
        Assert.Contains("time limit", e.Message);
        Assert.Contains(tok.SourcePath, e.Message);
    }

    [Fact]
    public void OnlyRegularFilesOfAtMost64MiBAreRead()
    {
        string dir = TestSupport.TempDir();
        // A file over the limit: sparse, so it costs no disk; refused from its size without reading it.
        string huge = Path.Combine(dir, "tokenizer.json");
        using (var f = new FileStream(huge, FileMode.Create)) f.SetLength(TokenizerFile.MaxBytes + 1);
        var e = Assert.IsType<TokenizerFormatException>(TestSupport.Unhung(() => HfTokenizer.Load(huge), "loading a file over the limit"));
        Assert.Contains("64 MiB", e.Message);
        // An empty file, and a device or FIFO (a symbolic link to /dev/zero; a FIFO with no writer, where opening would block).
        string empty = Path.Combine(TestSupport.TempDir(), "tokenizer.json");
        File.WriteAllText(empty, "");
        Assert.Contains("not a regular file", Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(empty)).Message);
        if (OperatingSystem.IsWindows())
        {
            var device = Assert.ThrowsAny<Exception>(() => HfTokenizer.Load(@"\\.\NUL"));
            Assert.True(device is TokenizerFormatException or FileNotFoundException, device.ToString());
            return;
        }
        string link = Path.Combine(TestSupport.TempDir(), "tokenizer.json");
        File.CreateSymbolicLink(link, "/dev/zero");
        Assert.Contains("not a regular file", Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(link)).Message);
        string fifo = Path.Combine(TestSupport.TempDir(), "tokenizer.json");
        using (var p = Process.Start(new ProcessStartInfo("mkfifo", fifo) { UseShellExecute = false })!) p.WaitForExit();
        Assert.True(File.Exists(fifo), "mkfifo made no FIFO");
        Assert.Contains("not a regular file", Assert.IsType<TokenizerFormatException>(TestSupport.Unhung(() => HfTokenizer.Load(fifo), "reading a FIFO")).Message);
        // A JSONL dataset behind a FIFO or a link to /dev/zero is never opened: it reads as empty (the experiments then
        // refuse it as holding no problems), without blocking or growing.
        string fifoData = Path.Combine(TestSupport.TempDir(), "train.jsonl");
        using (var p = Process.Start(new ProcessStartInfo("mkfifo", fifoData) { UseShellExecute = false })!) p.WaitForExit();
        IReadOnlyList<MathProblem>? fromFifo = null;
        Assert.Null(TestSupport.Unhung(() => fromFifo = Gsm8kData.Load(fifoData), "reading a FIFO dataset"));
        Assert.Empty(fromFifo!);
        string zeroData = Path.Combine(TestSupport.TempDir(), "train.jsonl");
        File.CreateSymbolicLink(zeroData, "/dev/zero");
        IReadOnlyList<MathProblem>? fromZero = null;
        Assert.Null(TestSupport.Unhung(() => fromZero = Gsm8kData.Load(zeroData), "reading /dev/zero as a dataset"));
        Assert.Empty(fromZero!);
    }

    [Fact]
    public void ATokenizerLinkedFromOutsideItsFolderIsRefusedUnreadAndOneInsideIsRead()
    {
        // a model folder whose tokenizer.json (or tokenizer_config.json) is a link to a file elsewhere: refused naming
        // the file, before it is read; a link to a file inside the folder reads as the file itself
        string elsewhere = TestSupport.TempDir(), model = TestSupport.TempDir();
        string real = Path.Combine(elsewhere, "real.json");
        File.Copy(Interop("bytelevel_bpe"), real);
        File.CreateSymbolicLink(Path.Combine(model, "tokenizer.json"), real);
        var e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(model));
        Assert.Contains("outside its folder", e.Message);
        Assert.Contains(Path.Combine(model, "tokenizer.json"), e.Message);
        File.Delete(Path.Combine(model, "tokenizer.json"));
        File.Copy(real, Path.Combine(model, "inside.json"));
        File.CreateSymbolicLink(Path.Combine(model, "tokenizer.json"), "inside.json");
        var text = "Hello, MoRA! " + TestSupport.Seed();
        Assert.Equal(HfTokenizer.Load(real).Encode(text), HfTokenizer.Load(model).Encode(text));
        File.WriteAllText(Path.Combine(elsewhere, "cfg.json"), "{\"eos_token\": \"x\"}");
        File.CreateSymbolicLink(Path.Combine(model, "tokenizer_config.json"), Path.Combine(elsewhere, "cfg.json"));
        Assert.Contains("tokenizer_config.json", Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(model)).Message);
    }

    [Fact]
    public void RandomMutationsLoadOrFailWithTheDocumentedException()
    {
        // Delete a member or replace a value by one of another type, anywhere in two real files: the reader either reads
        // the file (the field was optional, or a compatible value) or throws TokenizerFormatException; nothing else.
        var rng = new Random(TestSupport.Seed());
        var originals = new[] { File.ReadAllText(Interop("metaspace_bpe")), File.ReadAllText(Interop("bytelevel_bpe")), File.ReadAllText(Unigram) };
        int refused = 0, loaded = 0;
        for (int i = 0; i < 120; i++)
        {
            var root = JsonNode.Parse(originals[i % originals.Length])!;
            var nodes = new List<JsonNode>();
            void Walk(JsonNode? n, int depth)
            {
                if (n is null || depth > 4) return;
                nodes.Add(n);
                if (n is JsonObject o) foreach (var (_, v) in o) Walk(v, depth + 1);
                else if (n is JsonArray a) foreach (var v in a.Take(6)) Walk(v, depth + 1);
            }
            Walk(root, 0);
            var target = nodes[rng.Next(1, nodes.Count)];
            var parent = target.Parent!;
            JsonNode? replacement = rng.Next(5) switch { 0 => null, 1 => "text", 2 => -7, 3 => new JsonArray(), _ => new JsonObject { ["type"] = "Nope" } };
            bool delete = rng.Next(3) == 0;
            if (parent is JsonObject po)
            {
                string key = po.First(kv => ReferenceEquals(kv.Value, target)).Key;
                if (delete) po.Remove(key); else po[key] = replacement;
            }
            else if (parent is JsonArray pa)
            {
                int index = pa.IndexOf(target);
                if (delete) pa.RemoveAt(index); else pa[index] = replacement;
            }
            string path = Write(root);
            try
            {
                var tok = HfTokenizer.Load(path);
                tok.Decode(tok.Encode("Janet’s ducks lay 16 eggs."));
                loaded++;
            }
            catch (TokenizerFormatException e) { Assert.Contains(path, e.Message); refused++; }
        }
        Assert.True(refused > 20 && loaded > 0, $"refused {refused}, loaded {loaded}");
    }
}

using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace Mora.Data;

/// <summary>Text to token ids and back, with the special ids the trainer and generator need.</summary>
public interface ITextTokenizer
{
    int VocabSize { get; }
    int PadId { get; }
    int BosId { get; }
    int EosId { get; }
    /// <summary>Ids of <paramref name="text"/> without BOS/EOS.</summary>
    int[] Encode(string text);
    /// <summary>Text of <paramref name="ids"/>, special tokens left out.</summary>
    string Decode(IEnumerable<int> ids);
}

/// <summary>
/// One token per character: <c>&lt;pad&gt; &lt;bos&gt; &lt;eos&gt; &lt;unk&gt;</c>, then newline, tab and printable ASCII
/// (space … ~): 101 ids, fixed, so every model and dataset built with it agrees without a vocabulary file. Suits UUIDs,
/// arithmetic and GSM8K-style text; any other character maps to &lt;unk&gt; (or throws with <c>strict: true</c>).
/// </summary>
public sealed class CharTokenizer : ITextTokenizer
{
    public const int Pad = 0, Bos = 1, Eos = 2, Unk = 3;
    const int First = 4;
    static readonly char[] Alphabet = ['\n', '\t', .. Enumerable.Range(32, 95).Select(i => (char)i)];
    static readonly Dictionary<char, int> Ids = Alphabet.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => p.i + First);
    readonly bool _strict;

    public CharTokenizer(bool strict = false) => _strict = strict;

    public int VocabSize => First + Alphabet.Length;
    public int PadId => Pad;
    public int BosId => Bos;
    public int EosId => Eos;

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new int[text.Length];
        for (int i = 0; i < text.Length; i++)
        {
            if (Ids.TryGetValue(text[i], out int id)) ids[i] = id;
            else if (_strict) throw new ArgumentException($"character U+{(int)text[i]:X4} at index {i} is not in the character vocabulary (newline, tab, printable ASCII)", nameof(text));
            else ids[i] = Unk;
        }
        return ids;
    }

    public string Decode(IEnumerable<int> ids)
    {
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            if (id == Unk) sb.Append('\uFFFD');
            else if (id >= First && id < VocabSize) sb.Append(Alphabet[id - First]);
        }
        return sb.ToString();
    }
}

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> read through Microsoft.ML.Tokenizers: Unigram models (SentencePiece) via
/// <see cref="SentencePieceTokenizer.CreateFromTokenizerJson"/>, byte-level BPE (GPT-2, LLaMA 3, Qwen) and
/// Metaspace BPE (LLaMA 2, TinyLlama) via <see cref="BpeTokenizer"/>. Byte-fallback tokens (<c>&lt;0x0A&gt;</c>) of
/// Metaspace BPE are not produced: characters outside the vocabulary become the unknown token.
/// </summary>
public sealed class HfTokenizer : ITextTokenizer
{
    readonly Tokenizer _inner;
    readonly bool _metaspace;
    readonly HashSet<int> _special;

    public Tokenizer Inner => _inner;
    public int VocabSize { get; }
    public int PadId { get; }
    public int BosId { get; }
    public int EosId { get; }
    /// <summary>"Unigram", "BPE (byte-level)" or "BPE (metaspace)".</summary>
    public string Kind { get; }

    HfTokenizer(Tokenizer inner, string kind, bool metaspace, int vocab, int pad, int bos, int eos, HashSet<int> special)
    { _inner = inner; Kind = kind; _metaspace = metaspace; VocabSize = vocab; PadId = pad; BosId = bos; EosId = eos; _special = special; }

    /// <summary>Loads a <c>tokenizer.json</c> file (or the one in a model folder); errors name the file and the field.</summary>
    public static HfTokenizer Load(string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "tokenizer.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"tokenizer file not found: {Path.GetFullPath(path)}", path);
        string text = File.ReadAllText(path);
        JsonObject root;
        try { root = JsonNode.Parse(text) as JsonObject ?? throw new FormatException($"{path}: not a JSON object"); }
        catch (JsonException e) { throw new FormatException($"{path}: invalid JSON ({e.Message})", e); }
        var model = root["model"] as JsonObject ?? throw new FormatException($"{path}: no 'model' object");
        string type = model["type"]?.GetValue<string>() ?? (model["merges"] is not null ? "BPE" : throw new FormatException($"{path}: model has no 'type'"));

        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root["added_tokens"] is JsonArray addedTokens)
            foreach (var t in addedTokens.OfType<JsonObject>())
                if (t["content"]?.GetValue<string>() is { } content && t["id"] is { } id) added[content] = id.GetValue<int>();

        Tokenizer inner; string kind; bool metaspace = false; int vocabSize;
        if (type == "Unigram")
        {
            using var stream = new MemoryStream(Encoding.UTF8.GetBytes(text));
            inner = SentencePieceTokenizer.CreateFromTokenizerJson(stream, false, false, added.Count > 0 ? added : null);
            kind = "Unigram";
            vocabSize = (model["vocab"] as JsonArray)?.Count ?? 0;
        }
        else if (type == "BPE")
        {
            var vocabObj = model["vocab"] as JsonObject ?? throw new FormatException($"{path}: BPE model has no 'vocab' object");
            var vocab = vocabObj.Select(kv => new KeyValuePair<string, int>(kv.Key, kv.Value!.GetValue<int>())).ToList();
            var merges = (model["merges"] as JsonArray ?? throw new FormatException($"{path}: BPE model has no 'merges' array"))
                .Select((m, i) => m switch
                {
                    JsonArray pair when pair.Count == 2 => $"{pair[0]!.GetValue<string>()} {pair[1]!.GetValue<string>()}",
                    JsonValue v when v.TryGetValue(out string? s) => s,
                    _ => throw new FormatException($"{path}: merges[{i}] is neither \"a b\" nor [\"a\", \"b\"]"),
                }).ToList();
            string Describe(JsonNode? n) => n?.ToJsonString() ?? "";
            bool byteLevel = Describe(root["pre_tokenizer"]).Contains("ByteLevel") || Describe(root["decoder"]).Contains("ByteLevel");
            metaspace = !byteLevel && (Describe(root["pre_tokenizer"]).Contains("Metaspace") || Describe(root["decoder"]).Contains("Replace")
                                       || Describe(root["normalizer"]).Contains("\u2581"));
            var options = new BpeOptions(vocab)
            {
                Merges = merges,
                ByteLevel = byteLevel,
                UnknownToken = model["unk_token"]?.GetValue<string>(),
                SpecialTokens = added.Count > 0 ? added : null,
                // Byte-level: GPT-2's word split. Otherwise each piece starts at a ▁ (SentencePiece's word boundary); without an
                // explicit pre-tokenizer the library would split ▁ off the word it belongs to.
                PreTokenizer = byteLevel ? ByteLevelSplitter(root["pre_tokenizer"], added.Count > 0 ? added : null)
                    : new RegexPreTokenizer(new System.Text.RegularExpressions.Regex("\u2581[^\u2581]*|[^\u2581]+"), added.Count > 0 ? added : null),
            };
            inner = BpeTokenizer.Create(options);
            kind = byteLevel ? "BPE (byte-level)" : metaspace ? "BPE (metaspace)" : "BPE";
            vocabSize = vocab.Count == 0 ? 0 : vocab.Max(v => v.Value) + 1;
        }
        else throw new FormatException($"{path}: tokenizer model type '{type}' is not supported (Unigram or BPE)");

        foreach (var id in added.Values) vocabSize = Math.Max(vocabSize, id + 1);
        int Find(params string[] names) { foreach (var n in names) if (added.TryGetValue(n, out int id)) return id; return -1; }
        int bos = Find("<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>");
        int eos = Find("</s>", "<|end_of_text|>", "<|eot_id|>", "<eos>", "<|endoftext|>", "<|im_end|>");
        int pad = Find("<pad>", "<|pad|>", "<unk>");
        if (eos < 0) throw new FormatException($"{path}: no end-of-sequence token among added_tokens (looked for </s>, <|end_of_text|>, <|eot_id|>, <eos>, <|endoftext|>)");
        return new HfTokenizer(inner, kind, metaspace, vocabSize, pad < 0 ? eos : pad, bos < 0 ? eos : bos, eos, added.Values.ToHashSet());
    }

    /// <summary>GPT-2's split of text into words before byte-level BPE (each word keeps its leading space), or the
    /// tokenizer's own Split regex when it has one .NET can compile.</summary>
    const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    static PreTokenizer ByteLevelSplitter(JsonNode? preTokenizer, IReadOnlyDictionary<string, int>? special)
    {
        string? own = preTokenizer?.ToJsonString() is { } json && json.Contains("\"Split\"")
            ? FindRegex(preTokenizer) : null;
        if (own is not null)
        {
            try { return new RegexPreTokenizer(new System.Text.RegularExpressions.Regex(own, System.Text.RegularExpressions.RegexOptions.Compiled), special); }
            catch (ArgumentException) { /* e.g. possessive quantifiers: fall back to GPT-2's pattern */ }
        }
        return new RegexPreTokenizer(new System.Text.RegularExpressions.Regex(Gpt2Pattern, System.Text.RegularExpressions.RegexOptions.Compiled), special);
    }

    static string? FindRegex(JsonNode? node) => node switch
    {
        JsonObject o when o["pattern"]?["Regex"] is JsonValue v => v.GetValue<string>(),
        JsonObject o => o.Select(kv => FindRegex(kv.Value)).FirstOrDefault(r => r is not null),
        JsonArray a => a.Select(FindRegex).FirstOrDefault(r => r is not null),
        _ => null,
    };

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string input = _metaspace ? "\u2581" + text.Replace(' ', '\u2581') : text;
        return _inner.EncodeToIds(input).ToArray();
    }

    public string Decode(IEnumerable<int> ids)
    {
        string text = _inner.Decode(ids.Where(i => !_special.Contains(i))) ?? "";
        if (!_metaspace) return text;
        text = text.Replace('\u2581', ' ');
        return text.StartsWith(' ') ? text[1..] : text;
    }
}

using System.Text;
using System.Text.Json;
using Mora.Data.Tokenization;

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

/// <summary>Ids and token strings of one encoding.</summary>
public sealed record TokenizedText(int[] Ids, string[] Tokens);

/// <summary>
/// A Hugging Face <c>tokenizer.json</c>, read and run by the kit itself (lib/Mora.Data/Tokenization, pure C#) with the
/// semantics of the official tokenizers library 0.23.2: added tokens (longest match first, <c>special</c>,
/// <c>normalized</c>, <c>lstrip</c>, <c>rstrip</c>, <c>single_word</c>), normalizers, pre-tokenizers, BPE / Unigram /
/// WordPiece / WordLevel models, post-processors and decoders. Whatever in a file would change the ids and is not
/// implemented is refused with a <see cref="TokenizerFormatException"/> naming the file and the field, as is every
/// malformed field. BOS/EOS/PAD come from the post-processor's template and from <c>tokenizer_config.json</c> beside the
/// file (guessed from token names only when neither says).
/// </summary>
public sealed class HfTokenizer : ITextTokenizer
{
    readonly TokenizerModel _model;
    readonly Normalizer? _normalizer;
    readonly PreTokenizer? _preTokenizer;
    readonly PostProcessor? _postProcessor;
    readonly TokenDecoder? _decoder;
    readonly AddedVocabulary _added;

    /// <summary>The tokenizer.json read.</summary>
    public string SourcePath { get; }
    /// <summary>The tokenizer_config.json read beside it, or null.</summary>
    public string? ConfigPath { get; }
    /// <summary>Model type and layout, e.g. "BPE (byte-level)", "BPE (metaspace)", "Unigram".</summary>
    public string Kind { get; }
    /// <summary>Largest id the tokenizer can produce or name, plus one (model vocabulary and added tokens).</summary>
    public int VocabSize { get; }
    /// <summary>Beginning-of-sequence token: the post-processor's leading special token, else tokenizer_config.json's
    /// <c>bos_token</c>; null when the files say there is none (Qwen).</summary>
    public int? BosTokenId { get; }
    /// <summary>End-of-sequence token: tokenizer_config.json's <c>eos_token</c>, else the post-processor's trailing special
    /// token, else an added token with a usual name.</summary>
    public int EosTokenId { get; }
    /// <summary>Padding token: tokenizer_config.json's <c>pad_token</c>; null when it says none or is absent and no added token
    /// is named like one.</summary>
    public int? PadTokenId { get; }
    /// <summary><see cref="BosTokenId"/>, or <see cref="EosId"/> when there is none (a stand-in the trainer can prepend).</summary>
    public int BosId => BosTokenId ?? EosTokenId;
    public int EosId => EosTokenId;
    /// <summary><see cref="PadTokenId"/>, or <see cref="EosId"/> when there is none (padding is masked out).</summary>
    public int PadId => PadTokenId ?? EosTokenId;

    HfTokenizer(string path, string? configPath, string kind, TokenizerModel model, Normalizer? normalizer, PreTokenizer? pre, PostProcessor? post,
        TokenDecoder? decoder, AddedVocabulary added, int vocabSize, int? bos, int eos, int? pad)
    {
        SourcePath = path; ConfigPath = configPath; Kind = kind; _model = model; _normalizer = normalizer; _preTokenizer = pre;
        _postProcessor = post; _decoder = decoder; _added = added; VocabSize = vocabSize; BosTokenId = bos; EosTokenId = eos; PadTokenId = pad;
    }

    /// <summary>Every id the tokenizer can produce: the model's vocabulary, added tokens, the post-processor's special
    /// tokens, BOS/EOS/PAD.</summary>
    public int MaxTokenId
    {
        get
        {
            int max = _model.MaxId;
            foreach (var id in _added.ById.Keys) max = Math.Max(max, id);
            if (_postProcessor is not null)
            {
                var (before, after) = _postProcessor.SingleSpecials();
                foreach (var t in before.Concat(after)) max = Math.Max(max, t.Id);
            }
            return Math.Max(max, Math.Max(BosId, Math.Max(EosId, PadId)));
        }
    }

    /// <summary>Loads a <c>tokenizer.json</c> file (or the one in a model folder) and the <c>tokenizer_config.json</c>
    /// beside it when there is one. Errors: <see cref="FileNotFoundException"/> when missing, else
    /// <see cref="TokenizerFormatException"/> naming the file and the field.</summary>
    public static HfTokenizer Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) path = Path.Combine(path, "tokenizer.json");
        if (!File.Exists(path) && !Directory.Exists(path)) throw new FileNotFoundException($"tokenizer file not found: {Path.GetFullPath(path)}", path);
        using var doc = TokenizerFile.Read(path);
        var root = new JNode(doc.RootElement, "", path);
        if (root.Kind != System.Text.Json.JsonValueKind.Object) throw root.Error($"is {JNode.Show(root.E)}, not a JSON object");
        if (root.Has("version") && root.Str("version") != "1.0") throw root.Error("version", $"is '{root.Str("version")}', not 1.0 (the library refuses other versions too)");
        foreach (var field in new[] { "truncation", "padding" })
            if (!root[field].IsNull) throw root.Error(field, $"is {JNode.Show(root[field].E)}: encoding with {field} is not supported (set it to null): refused");
        if (!root.Has("model")) throw root.Error("model", "is missing (no 'model' object)");
        var model = TokenizerModel.Read(root["model"]);
        var normalizer = Normalizer.Read(root["normalizer"]);
        var pre = PreTokenizer.Read(root["pre_tokenizer"]);
        var post = PostProcessor.Read(root["post_processor"]);
        var decoder = TokenDecoder.Read(root["decoder"]);
        var added = AddedVocabulary.Read(root["added_tokens"], model, normalizer);

        string Describe(string field) => root[field].IsNull ? "" : root[field].E.GetRawText();
        string kind = model.Kind;
        if (model is Bpe)
        {
            if (Describe("pre_tokenizer").Contains("\"ByteLevel\"") || Describe("decoder").Contains("\"ByteLevel\"")) kind = "BPE (byte-level)";
            else if (Describe("pre_tokenizer").Contains("\"Metaspace\"") || Describe("decoder").Contains("\"Metaspace\"") || Describe("normalizer").Contains("\u2581"))
                kind = "BPE (metaspace)";
        }

        int vocabSize = model.MaxId + 1;
        foreach (var id in added.ById.Keys) vocabSize = Math.Max(vocabSize, id + 1);
        int? Id(string token) => added.TokenToId(token) ?? model.TokenToId(token);

        // Special ids: the post-processor, then tokenizer_config.json, then (only where neither says) the usual names.
        var (before, after) = post?.SingleSpecials() ?? ([], []);
        string? configPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "tokenizer_config.json");
        JNode? config = null;
        System.Text.Json.JsonDocument? configDoc = null;
        try
        {
            if (File.Exists(configPath))
            {
                configDoc = TokenizerFile.Read(configPath);
                config = new JNode(configDoc.RootElement, "", configPath);
                if (config.Value.Kind != System.Text.Json.JsonValueKind.Object) throw config.Value.Error("is not a JSON object");
            }
            else configPath = null;

            (bool Says, int? Id) FromConfig(string field)
            {
                if (config is not { } c || !c.Has(field)) return (false, null);
                var n = c[field];
                if (n.IsNull) return (true, null);
                string content = n.Kind == System.Text.Json.JsonValueKind.Object ? n.Str("content") : n.AsString();
                return (true, Id(content) ?? throw n.Error($"is '{content}', which is not a token of {path}"));
            }
            void CheckFlag(string field, bool adds)
            {
                if (config is not { } c || !c.Has(field) || c[field].IsNull) return;
                bool flag = c[field].AsBool();
                if (flag != adds)
                    throw c[field].Error($"is {(flag ? "true" : "false")}, but the post_processor of {path} {(adds ? "adds" : "does not add")} that token: transformers would encode otherwise than the tokenizers library; refused");
            }
            CheckFlag("add_bos_token", before.Count > 0);
            CheckFlag("add_eos_token", after.Count > 0);

            int? Named(params string[] names)
            {
                foreach (var name in names) if (added.TokenToId(name) is int id) return id;
                return null;
            }
            var cb = FromConfig("bos_token");
            int? bos = before.Count > 0 ? before[0].Id : cb.Says ? cb.Id : Named("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>");
            var ce = FromConfig("eos_token");
            int? eos = ce.Says && ce.Id is not null ? ce.Id : after.Count > 0 ? after[^1].Id
                : Named("</s>", "<|end_of_text|>", "<|eot_id|>", "<eos>", "<|endoftext|>", "<|im_end|>");
            if (eos is null)
                throw new TokenizerFormatException(path, "", "has no end-of-sequence token: tokenizer_config.json has no eos_token, the post_processor adds none, and no added token is named </s>, <|end_of_text|>, <|eot_id|>, <eos>, <|endoftext|> or <|im_end|>");
            var cp = FromConfig("pad_token");
            int? pad = cp.Says ? cp.Id : Named("<pad>", "<|pad|>", "[PAD]");
            return new HfTokenizer(path, configPath, kind, model, normalizer, pre, post, decoder, added, vocabSize, bos, eos.Value, pad);
        }
        finally { configDoc?.Dispose(); }
    }

    /// <summary>Ids of <paramref name="text"/> without special tokens (add_special_tokens = false).</summary>
    public int[] Encode(string text) => Encode(text, addSpecialTokens: false);

    /// <summary>Ids of <paramref name="text"/>; with <paramref name="addSpecialTokens"/> the post-processor adds its special
    /// tokens (BOS for LLaMA/Mistral, nothing for Qwen), as <c>encode(text, add_special_tokens=True)</c> does.</summary>
    public int[] Encode(string text, bool addSpecialTokens) => Run(text, addSpecialTokens).Select(t => t.Id).ToArray();

    /// <summary>Ids and token strings of <paramref name="text"/> (the library's <c>Encoding.ids</c> and <c>.tokens</c>).</summary>
    public TokenizedText Tokenize(string text, bool addSpecialTokens = false)
    {
        var tokens = Run(text, addSpecialTokens);
        return new TokenizedText(tokens.Select(t => t.Id).ToArray(), tokens.Select(t => t.Value).ToArray());
    }

    List<Tok> Run(string text, bool addSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = UnicodeProps.Sanitize(text);
        try
        {
            var pieces = _added.ExtractAndNormalize(_normalizer, text);
            _preTokenizer?.PreTokenize(pieces);
            var tokens = new List<Tok>();
            foreach (var p in pieces) tokens.AddRange(p.Tokens ?? _model.Tokenize(p.Text.Text));
            return _postProcessor?.Process(tokens, addSpecialTokens) ?? tokens;
        }
        catch (InvalidOperationException e) { throw new TokenizerFormatException(SourcePath, "model", e.Message, e); }
    }

    /// <summary>Text of <paramref name="ids"/>, special tokens left out (skip_special_tokens = true).</summary>
    public string Decode(IEnumerable<int> ids) => Decode(ids, skipSpecialTokens: true);

    /// <summary>Text of <paramref name="ids"/> through the file's decoder. With <paramref name="skipSpecialTokens"/> the
    /// tokens that are added tokens with <c>special: true</c> are left out; ids the tokenizer does not know are left out
    /// too, as the library does.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = new List<string>();
        foreach (int id in ids)
        {
            string? token = _added.IdToToken(id) ?? _model.IdToToken(id);
            if (token is null || skipSpecialTokens && _added.IsSpecial(token)) continue;
            tokens.Add(token);
        }
        return _decoder is null ? string.Join(" ", tokens) : _decoder.Decode(tokens);
    }

    /// <summary>The id of a token string (added tokens first, then the model's vocabulary), or null.</summary>
    public int? TokenToId(string token) => _added.TokenToId(token) ?? _model.TokenToId(token);

    /// <summary>The token string of an id, or null.</summary>
    public string? IdToToken(int id) => _added.IdToToken(id) ?? _model.IdToToken(id);

    /// <summary>Whether <paramref name="id"/> is an added token marked <c>special</c>.</summary>
    public bool IsSpecial(int id) => _added.ById.TryGetValue(id, out var t) && t.Special;
}

using System.Text;

namespace Mora.Data.Tokenization;

/// <summary>A tokenizer.json <c>post_processor</c> (tokenizers/src/processors), for a single sequence: the special tokens
/// it adds when encoding with <c>add_special_tokens</c>.</summary>
abstract class PostProcessor
{
    public abstract List<Tok> Process(List<Tok> tokens, bool addSpecialTokens);
    /// <summary>The special tokens put before and after a single sequence (for BOS/EOS).</summary>
    public abstract (List<Tok> Before, List<Tok> After) SingleSpecials();

    public static PostProcessor? Read(JNode n)
    {
        if (n.IsNull) return null;
        string type = n.Type;
        switch (type)
        {
            case "ByteLevel": return new Identity();
            case "TemplateProcessing": return Template.Parse(n);
            case "BertProcessing": return new Wrap(Pair(n["cls"]), Pair(n["sep"]));
            case "RobertaProcessing": return new Wrap(Pair(n["cls"]), Pair(n["sep"]));
            case "Sequence":
            {
                var list = n["processors"];
                if (list.IsNull) throw n.Error("processors", "is missing");
                var items = new List<PostProcessor>();
                foreach (var item in list.Items()) items.Add(Read(item) ?? throw item.Error("is null, not a post-processor"));
                return new Sequence(items);
            }
            default:
                throw n.Error("type", $"'{type}' is not supported: refused");
        }
    }

    /// <summary>A <c>[token, id]</c> pair of Bert/Roberta processing.</summary>
    static Tok Pair(JNode n)
    {
        if (n.IsNull) throw n.Error("is missing");
        if (n.Kind != System.Text.Json.JsonValueKind.Array || n.Count != 2) throw n.Error($"is {JNode.Show(n.E)}, not [token, id]");
        return new Tok(n.At(1).AsIndex(), n.At(0).AsString());
    }

    sealed class Identity : PostProcessor
    {
        public override List<Tok> Process(List<Tok> tokens, bool add) => tokens;
        public override (List<Tok>, List<Tok>) SingleSpecials() => ([], []);
    }

    sealed class Wrap(Tok cls, Tok sep) : PostProcessor
    {
        public override List<Tok> Process(List<Tok> tokens, bool add) => add ? [cls, .. tokens, sep] : tokens;
        public override (List<Tok>, List<Tok>) SingleSpecials() => ([cls], [sep]);
    }

    sealed class Sequence(List<PostProcessor> items) : PostProcessor
    {
        public override List<Tok> Process(List<Tok> tokens, bool add)
        {
            foreach (var p in items) tokens = p.Process(tokens, add);
            return tokens;
        }

        public override (List<Tok>, List<Tok>) SingleSpecials()
        {
            var before = new List<Tok>();
            var after = new List<Tok>();
            foreach (var p in items)
            {
                var (b, a) = p.SingleSpecials();
                before.InsertRange(0, b);
                after.AddRange(a);
            }
            return (before, after);
        }
    }

    /// <summary>TemplateProcessing: the <c>single</c> template's special tokens around the sequence.</summary>
    sealed class Template : PostProcessor
    {
        readonly List<(bool IsSequence, List<Tok> Special)> _single = [];

        public static Template Parse(JNode n)
        {
            var specials = new Dictionary<string, List<Tok>>(StringComparer.Ordinal);
            var st = n["special_tokens"];
            if (st.IsNull) throw n.Error("special_tokens", "is missing");
            foreach (var (name, tok) in st.Members())
            {
                var ids = tok["ids"];
                var tokens = tok["tokens"];
                if (ids.IsNull) throw tok.Error("ids", "is missing");
                if (tokens.IsNull) throw tok.Error("tokens", "is missing");
                if (ids.Count != tokens.Count) throw tok.Error($"has {ids.Count} ids but {tokens.Count} tokens");
                var list = new List<Tok>();
                for (int i = 0; i < ids.Count; i++) list.Add(new Tok(ids.At(i).AsIndex(), tokens.At(i).AsString()));
                specials[name] = list;
            }
            var t = new Template();
            var single = n["single"];
            if (single.IsNull) throw n.Error("single", "is missing");
            if (n["pair"].IsNull) throw n.Error("pair", "is missing");
            int sequences = 0;
            foreach (var piece in single.Items())
            {
                if (piece.Has("Sequence"))
                {
                    var id = piece["Sequence"]["id"];
                    if (id.AsString() != "A") throw id.Error($"is '{id.AsString()}': the single template may use only sequence A");
                    t._single.Add((true, []));
                    sequences++;
                }
                else if (piece.Has("SpecialToken"))
                {
                    var id = piece["SpecialToken"]["id"];
                    string name = id.AsString();
                    if (!specials.TryGetValue(name, out var toks)) throw id.Error($"is '{name}', which special_tokens does not define (the library refuses this too)");
                    t._single.Add((false, toks));
                }
                else throw piece.Error($"is {JNode.Show(piece.E)}, neither {{\"Sequence\": ...}} nor {{\"SpecialToken\": ...}}");
            }
            if (sequences != 1) throw single.Error($"uses sequence A {sequences} times, not once");
            // The pair template is checked for its special tokens but not used (the kit encodes single sequences).
            foreach (var piece in n["pair"].Items())
                if (piece.Has("SpecialToken") && !specials.ContainsKey(piece["SpecialToken"]["id"].AsString()))
                    throw piece["SpecialToken"]["id"].Error("names a token that special_tokens does not define (the library refuses this too)");
            return t;
        }

        public override List<Tok> Process(List<Tok> tokens, bool add)
        {
            var result = new List<Tok>(tokens.Count + 4);
            foreach (var (isSequence, special) in _single)
            {
                if (isSequence) result.AddRange(tokens);
                else if (add) result.AddRange(special);
            }
            return result;
        }

        public override (List<Tok>, List<Tok>) SingleSpecials()
        {
            var before = new List<Tok>();
            var after = new List<Tok>();
            bool seen = false;
            foreach (var (isSequence, special) in _single)
            {
                if (isSequence) seen = true;
                else (seen ? after : before).AddRange(special);
            }
            return (before, after);
        }
    }
}

/// <summary>A tokenizer.json <c>decoder</c> (tokenizers/src/decoders): <c>decode_chain</c> over the token strings.</summary>
abstract class TokenDecoder
{
    public abstract List<string> DecodeChain(List<string> tokens);

    public string Decode(List<string> tokens) => string.Concat(DecodeChain(tokens));

    public static TokenDecoder? Read(JNode n)
    {
        if (n.IsNull) return null;
        string type = n.Type;
        switch (type)
        {
            case "ByteLevel": return new ByteLevelDecoder();
            case "Metaspace":
            {
                string replacement = n.Str("replacement");
                if (replacement.EnumerateRunes().Count() != 1) throw n.Error("replacement", $"is '{replacement}', not one character");
                return new MetaspaceDecoder(char.ConvertToUtf32(replacement, 0), Metaspace.ReadScheme(n));
            }
            case "Replace": return new ReplaceDecoder(Pattern.Read(n["pattern"]), n.Str("content"));
            case "ByteFallback": return new ByteFallback();
            case "Fuse": return new Fuse();
            case "Strip":
            {
                string content = n.Str("content");
                if (content.EnumerateRunes().Count() != 1) throw n.Error("content", $"is '{content}', not one character");
                return new Strip(char.ConvertToUtf32(content, 0), n.Index("start"), n.Index("stop"));
            }
            case "WordPiece": return new WordPieceDecoder(n.OptStr("prefix") ?? "##", n.Bool("cleanup", true));
            case "BPEDecoder": return new BpeDecoder(n.OptStr("suffix") ?? "</w>");
            case "CTC": return new Ctc(n.OptStr("pad_token") ?? "<pad>", n.OptStr("word_delimiter_token") ?? "|", n.Bool("cleanup", true));
            case "Sequence":
            {
                var list = n["decoders"];
                if (list.IsNull) throw n.Error("decoders", "is missing");
                var items = new List<TokenDecoder>();
                foreach (var item in list.Items()) items.Add(Read(item) ?? throw item.Error("is null, not a decoder"));
                return new Sequence(items);
            }
            default:
                throw n.Error("type", $"'{type}' is not supported: refused");
        }
    }

    sealed class ByteLevelDecoder : TokenDecoder
    {
        public override List<string> DecodeChain(List<string> tokens) => [ByteLevel.DecodeBytes(tokens)];
    }

    /// <summary>Metaspace decoding: the replacement becomes a space, except in the first token (all of its replacement
    /// characters are dropped there) when the scheme prepends one.</summary>
    sealed class MetaspaceDecoder(int replacement, Metaspace.Scheme scheme) : TokenDecoder
    {
        public override List<string> DecodeChain(List<string> tokens)
        {
            var result = new List<string>(tokens.Count);
            for (int i = 0; i < tokens.Count; i++)
            {
                var sb = new StringBuilder(tokens[i].Length);
                foreach (var rune in tokens[i].EnumerateRunes())
                {
                    if (rune.Value == replacement)
                    {
                        if (i == 0 && scheme != Metaspace.Scheme.Never) continue;
                        sb.Append(' ');
                    }
                    else sb.Append(rune.ToString());
                }
                result.Add(sb.ToString());
            }
            return result;
        }
    }

    sealed class ReplaceDecoder(Pattern pattern, string content) : TokenDecoder
    {
        public override List<string> DecodeChain(List<string> tokens) =>
            tokens.Select(t =>
            {
                var sb = new StringBuilder(t.Length);
                foreach (var (s, e, match) in pattern.Find(t)) sb.Append(match ? content : t[s..e]);
                return sb.ToString();
            }).ToList();
    }

    /// <summary>Runs of <c>&lt;0xXX&gt;</c> tokens become their UTF-8 text, or one U+FFFD per byte when invalid.</summary>
    sealed class ByteFallback : TokenDecoder
    {
        static byte? ByteOf(string token)
        {
            // The library: 6 bytes, "<0x" … ">", and u8::from_str_radix of the two characters between (a leading '+' is accepted).
            if (System.Text.Encoding.UTF8.GetByteCount(token) != 6 || !token.StartsWith("<0x", StringComparison.Ordinal) || !token.EndsWith('>')) return null;
            string hex = token[3..5];
            if (hex[0] == '+') hex = hex[1..];
            if (hex.Length == 0 || !hex.All(char.IsAsciiHexDigit)) return null;
            return Convert.ToByte(hex, 16);
        }

        public override List<string> DecodeChain(List<string> tokens)
        {
            var result = new List<string>(tokens.Count);
            var bytes = new List<byte>();
            void Flush()
            {
                if (bytes.Count == 0) return;
                try { result.Add(new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes.ToArray())); }
                catch (DecoderFallbackException) { for (int k = 0; k < bytes.Count; k++) result.Add("\uFFFD"); }
                bytes.Clear();
            }
            foreach (var t in tokens)
            {
                if (ByteOf(t) is byte b) { bytes.Add(b); continue; }
                Flush();
                result.Add(t);
            }
            Flush();
            return result;
        }
    }

    sealed class Fuse : TokenDecoder
    {
        public override List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
    }

    /// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing <c>content</c> characters of each token.</summary>
    sealed class Strip(int content, int start, int stop) : TokenDecoder
    {
        public override List<string> DecodeChain(List<string> tokens) => tokens.Select(t =>
        {
            var runes = t.EnumerateRunes().ToList();
            int startCut = 0;
            for (int i = 0; i < Math.Min(start, runes.Count); i++)
            {
                if (runes[i].Value == content) startCut = i + 1;
                else break;
            }
            int stopCut = runes.Count;
            for (int i = 0; i < Math.Min(stop, runes.Count); i++)
            {
                int index = runes.Count - i - 1;
                if (runes[index].Value == content) stopCut = index;
                else break;
            }
            stopCut = Math.Max(stopCut, startCut);
            return string.Concat(runes.Skip(startCut).Take(stopCut - startCut).Select(r => r.ToString()));
        }).ToList();
    }

    static string Cleanup(string s) => s.Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",")
        .Replace(" ' ", "'").Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" do not", " don't").Replace(" 's", "'s")
        .Replace(" 've", "'ve").Replace(" 're", "'re");

    sealed class WordPieceDecoder(string prefix, bool cleanup) : TokenDecoder
    {
        public override List<string> DecodeChain(List<string> tokens)
        {
            var result = new List<string>(tokens.Count);
            for (int i = 0; i < tokens.Count; i++)
            {
                string t = tokens[i];
                if (i != 0) t = t.StartsWith(prefix, StringComparison.Ordinal) ? t[prefix.Length..] : " " + t;
                result.Add(cleanup ? Cleanup(t) : t);
            }
            return result;
        }
    }

    sealed class BpeDecoder(string suffix) : TokenDecoder
    {
        public override List<string> DecodeChain(List<string> tokens) =>
            tokens.Select((t, i) => suffix.Length == 0 ? t : t.Replace(suffix, i == tokens.Count - 1 ? "" : " ")).ToList();
    }

    sealed class Ctc(string pad, string delimiter, bool cleanup) : TokenDecoder
    {
        public override List<string> DecodeChain(List<string> tokens)
        {
            var result = new List<string>();
            string? last = null;
            foreach (var t in tokens)
            {
                if (t == last) continue;
                last = t;
                string r = pad.Length == 0 ? t : t.Replace(pad, "");
                if (cleanup) r = delimiter.Length == 0 ? Cleanup(r) : Cleanup(r).Replace(delimiter, " ");
                if (r.Length > 0) result.Add(r);
            }
            return result;
        }
    }

    sealed class Sequence(List<TokenDecoder> items) : TokenDecoder
    {
        public override List<string> DecodeChain(List<string> tokens)
        {
            foreach (var d in items) tokens = d.DecodeChain(tokens);
            return tokens;
        }
    }
}

using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Model;

/// <summary>How to decode: greedy when <see cref="Temperature"/> is 0, else sampling with optional top-k / top-p.</summary>
public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 64;
    /// <summary>0 = greedy (argmax); &gt; 0 = sample from softmax(logits / T).</summary>
    public double Temperature { get; init; }
    /// <summary>Sample only among the k most likely tokens (0 = all).</summary>
    public int TopK { get; init; }
    /// <summary>Sample only among the smallest set of tokens whose probability reaches p (1 = all).</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>Generation stops for a sequence at this token (it is not returned); null = the model's EOS ids
    /// (config.json's <c>eos_token_id</c>, one or several; none: generation runs to <see cref="MaxNewTokens"/>).</summary>
    public int? EosId { get; init; }
    /// <summary>Seed of the sampler (sampling only), so a sampled generation repeats.</summary>
    public long Seed { get; init; }
    /// <summary>Sequences decoded together (prompts of equal length are batched).</summary>
    public int BatchSize { get; init; } = 64;

    public GenerationOptions Validate()
    {
        if (MaxNewTokens <= 0) throw new ArgumentException($"max new tokens must be positive, got {MaxNewTokens}", nameof(MaxNewTokens));
        if (Temperature < 0 || double.IsNaN(Temperature)) throw new ArgumentException($"temperature must be ≥ 0, got {Temperature}", nameof(Temperature));
        if (TopK < 0) throw new ArgumentException($"top-k must be ≥ 0, got {TopK}", nameof(TopK));
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p must be in (0, 1], got {TopP}", nameof(TopP));
        if (BatchSize <= 0) throw new ArgumentException($"batch size must be positive, got {BatchSize}", nameof(BatchSize));
        return this;
    }
}

/// <summary>Autoregressive decoding with a KV cache: the prompt is run once, then one token per step.</summary>
public static class TextGenerator
{
    /// <summary>The new tokens for each prompt (EOS and what follows it are cut). Prompts of equal length are decoded in
    /// batches; the model is put in eval mode for the call and restored after.</summary>
    public static List<int[]> Generate(LlamaForCausalLM model, IReadOnlyList<int[]> prompts, GenerationOptions? options = null)
    {
        options = (options ?? new GenerationOptions()).Validate();
        var eos = options.EosId is { } id ? new HashSet<int> { id } : model.Config.EosTokenIds.ToHashSet();
        var results = new int[prompts.Count][];
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            using var gen = options.Temperature > 0 ? new torch.Generator((ulong)options.Seed, model.Device) : null;
            foreach (var group in Enumerable.Range(0, prompts.Count).GroupBy(i => prompts[i].Length))
            {
                if (group.Key == 0) throw new ArgumentException("a prompt is empty; start it with at least one token (BOS)", nameof(prompts));
                foreach (var chunk in group.Chunk(options.BatchSize))
                {
                    var outputs = DecodeBatch(model, chunk.Select(i => prompts[i]).ToArray(), options, eos, gen);
                    for (int j = 0; j < chunk.Length; j++) results[chunk[j]] = outputs[j];
                }
            }
        }
        finally { model.train(wasTraining); }
        return results.ToList();
    }

    static int[][] DecodeBatch(LlamaForCausalLM model, int[][] prompts, GenerationOptions o, HashSet<int> eos, torch.Generator? gen)
    {
        int b = prompts.Length, len = prompts[0].Length;
        int maxNew = (int)Math.Min(o.MaxNewTokens, model.Config.ContextLength - len);
        if (maxNew <= 0)
            throw new ArgumentException($"a prompt of {len} tokens leaves no room in the model's context of {model.Config.ContextLength}", nameof(prompts));
        using var cache = model.NewCache(b, len + maxNew);
        var produced = new List<long[]>();
        var done = new bool[b];
        using (var scope = NewDisposeScope())
        {
            var ids = tensor(prompts.SelectMany(p => p.Select(x => (long)x)).ToArray(), [b, len], device: model.Device);
            var logits = model.Forward(ids, cache);
            var next = Pick(logits.select(1, len - 1), o, gen);
            for (int step = 0; ; step++)
            {
                var tokens = next.cpu().data<long>().ToArray();
                produced.Add(tokens);
                for (int i = 0; i < b; i++) done[i] |= eos.Contains((int)tokens[i]);
                if (step + 1 >= maxNew || done.All(d => d)) break;
                using var inner = NewDisposeScope();
                var stepLogits = model.Forward(next.unsqueeze(1), cache);
                var picked = Pick(stepLogits.select(1, 0), o, gen);
                next.Dispose();
                next = picked.MoveToOuterDisposeScope();
            }
        }
        var result = new int[b][];
        for (int i = 0; i < b; i++)
        {
            var seq = new List<int>();
            foreach (var row in produced) { if (eos.Contains((int)row[i])) break; seq.Add((int)row[i]); }
            result[i] = seq.ToArray();
        }
        return result;
    }

    /// <summary>The next token of each row of logits [batch, vocab].</summary>
    static Tensor Pick(Tensor logits, GenerationOptions o, torch.Generator? gen)
    {
        if (o.Temperature == 0) return logits.argmax(-1);
        using var scope = NewDisposeScope();
        var scaled = logits.to(ScalarType.Float32) / o.Temperature;
        if (o.TopK > 0 && o.TopK < scaled.shape[^1])
        {
            var kth = scaled.topk(o.TopK, -1).values.narrow(-1, o.TopK - 1, 1);
            scaled = scaled.masked_fill(scaled < kth, double.NegativeInfinity);
        }
        if (o.TopP < 1)
        {
            var (sorted, order) = scaled.sort(-1, descending: true);
            var cumulative = sorted.softmax(-1).cumsum(-1);
            var drop = (cumulative - sorted.softmax(-1)) >= o.TopP;      // keep the first token that crosses p
            var dropInOrder = zeros_like(drop).scatter(-1, order, drop);
            scaled = scaled.masked_fill(dropInOrder, double.NegativeInfinity);
        }
        var probs = scaled.softmax(-1);
        return multinomial(probs, 1, false, gen).squeeze(-1).MoveToOuterDisposeScope();
    }
}

using Mora.Data;
using Mora.Model;

namespace Mora.Evaluation;

/// <summary>
/// The UUID memorisation task ready to train: each pair becomes <c>[BOS] key= value [EOS]</c> with loss on the value,
/// and <see cref="Evaluate"/> greedy-decodes every key's value and reports <c>char_acc</c> and <c>exact_match</c>
/// (the paper evaluates on the training keys: the task is to store them).
/// </summary>
public sealed class MemorizationTask
{
    public ITextTokenizer Tokenizer { get; }
    public IReadOnlyList<UuidPair> Pairs { get; }
    public IReadOnlyList<LmExample> Train { get; }

    public MemorizationTask(IReadOnlyList<UuidPair> pairs, ITextTokenizer? tokenizer = null)
    {
        if (pairs is null || pairs.Count == 0) throw new ArgumentException("no UUID pairs", nameof(pairs));
        Pairs = pairs;
        Tokenizer = tokenizer ?? new CharTokenizer();
        Train = pairs.Select(p => LmData.FromPair(Tokenizer, UuidPairs.Prompt(p.Key), p.Value, maskPrompt: true)).ToList();
    }

    /// <summary>A fresh model for this task (its vocabulary and special ids set from the tokenizer), initialised from
    /// <paramref name="seed"/> (the same seed gives the same base model).</summary>
    public LlamaForCausalLM NewModel(LlamaConfig config, int seed)
    {
        TorchSharp.torch.manual_seed(seed);
        return new LlamaForCausalLM(config with { VocabSize = Tokenizer.VocabSize, BosTokenId = Tokenizer.BosId, EosTokenId = Tokenizer.EosId });
    }

    /// <summary>char_acc and exact_match over every pair.</summary>
    public IReadOnlyDictionary<string, double> Evaluate(LlamaForCausalLM model)
    {
        var s = Metrics.Memorization(model, Tokenizer, Pairs);
        return new Dictionary<string, double> { ["char_acc"] = s.CharAccuracy, ["exact_match"] = s.ExactMatch };
    }
}

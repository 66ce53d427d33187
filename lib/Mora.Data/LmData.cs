using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Data;

/// <summary>One training sequence: token ids, and how many leading tokens are prompt (no loss on them when the task
/// masks the prompt; 0 = loss on every token, as in pretraining).</summary>
public sealed record LmExample(int[] Tokens, int PromptLength);

/// <summary>A batch as tensors: ids [B, T], targets [B, T] (−100 where no loss: prompt, padding, the last position).</summary>
public sealed class LmBatch(Tensor inputIds, Tensor targets, long lossTokens) : IDisposable
{
    public Tensor InputIds { get; } = inputIds;
    public Tensor Targets { get; } = targets;
    /// <summary>Positions that carry loss.</summary>
    public long LossTokens { get; } = lossTokens;
    public void Dispose() { InputIds.Dispose(); Targets.Dispose(); }
}

/// <summary>Turning text into <see cref="LmExample"/>s and examples into padded batches.</summary>
public static class LmData
{
    public const long IgnoreIndex = -100;

    /// <summary>[BOS] prompt answer [EOS]; with <paramref name="maskPrompt"/> only the answer and EOS carry loss.</summary>
    public static LmExample FromPair(ITextTokenizer tokenizer, string prompt, string answer, bool maskPrompt = true)
    {
        var p = tokenizer.Encode(prompt);
        var a = tokenizer.Encode(answer);
        var tokens = new int[1 + p.Length + a.Length + 1];
        tokens[0] = tokenizer.BosId;
        p.CopyTo(tokens, 1);
        a.CopyTo(tokens, 1 + p.Length);
        tokens[^1] = tokenizer.EosId;
        return new LmExample(tokens, maskPrompt ? 1 + p.Length : 0);
    }

    /// <summary>The prompt alone ([BOS] prompt), as generation starts from it.</summary>
    public static int[] PromptTokens(ITextTokenizer tokenizer, string prompt) => [tokenizer.BosId, .. tokenizer.Encode(prompt)];

    /// <summary>Documents joined by EOS and cut into blocks of <paramref name="blockSize"/> tokens (loss everywhere).</summary>
    public static List<LmExample> FromCorpus(ITextTokenizer tokenizer, IEnumerable<string> documents, int blockSize)
    {
        if (blockSize < 2) throw new ArgumentException($"block size must be at least 2, got {blockSize}", nameof(blockSize));
        var stream = new List<int>();
        foreach (var d in documents) { stream.Add(tokenizer.BosId); stream.AddRange(tokenizer.Encode(d)); stream.Add(tokenizer.EosId); }
        var result = new List<LmExample>();
        for (int at = 0; at + blockSize <= stream.Count; at += blockSize)
            result.Add(new LmExample(stream.GetRange(at, blockSize).ToArray(), 0));
        if (result.Count == 0)
            throw new ArgumentException($"the corpus has {stream.Count} tokens, fewer than one block of {blockSize}", nameof(documents));
        return result;
    }

    /// <summary>Pads to the longest example; target t at position i is token i + 1 (next-token prediction).</summary>
    public static LmBatch Collate(IReadOnlyList<LmExample> examples, int padId, Device device)
    {
        int b = examples.Count, t = examples.Max(e => e.Tokens.Length);
        var ids = new long[b * t];
        var targets = new long[b * t];
        Array.Fill(ids, padId);
        Array.Fill(targets, IgnoreIndex);
        long lossTokens = 0;
        for (int i = 0; i < b; i++)
        {
            var e = examples[i];
            for (int j = 0; j < e.Tokens.Length; j++) ids[i * t + j] = e.Tokens[j];
            for (int j = Math.Max(0, e.PromptLength - 1); j < e.Tokens.Length - 1; j++)
            {
                targets[i * t + j] = e.Tokens[j + 1];
                lossTokens++;
            }
        }
        return new LmBatch(tensor(ids, [b, t], device: device), tensor(targets, [b, t], device: device), lossTokens);
    }
}

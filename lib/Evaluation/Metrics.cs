using Mora.Adapters;
using Mora.Data;
using Mora.Model;
using Mora.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Evaluation;

/// <summary>The paper's memorisation metrics over a set of keys.</summary>
/// <param name="ExactMatch">fraction of keys whose generated value equals the true value</param>
/// <param name="CharAccuracy">fraction of value characters right, position by position (a short or missing answer
/// counts its missing characters wrong; the paper's character-level accuracy)</param>
/// <param name="Count">keys scored</param>
public sealed record MemorizationScore(double ExactMatch, double CharAccuracy, int Count);

/// <summary>Exact-match accuracy of extracted final answers.</summary>
public sealed record MathScore(double ExactMatch, int Correct, int Count, int NoAnswer);

public static class Metrics
{
    /// <summary>Position-by-position agreement of <paramref name="generated"/> with <paramref name="expected"/>, over the
    /// expected length (extra generated characters are ignored; missing ones count wrong).</summary>
    public static double CharAccuracy(string generated, string expected)
    {
        if (expected.Length == 0) return generated.Length == 0 ? 1 : 0;
        int right = 0;
        for (int i = 0; i < expected.Length; i++) if (i < generated.Length && generated[i] == expected[i]) right++;
        return (double)right / expected.Length;
    }

    /// <summary>Scores predicted values against expected ones.</summary>
    public static MemorizationScore Memorization(IReadOnlyList<string> generated, IReadOnlyList<string> expected)
    {
        if (generated.Count != expected.Count) throw new ArgumentException($"{generated.Count} generations for {expected.Count} expected values", nameof(generated));
        if (expected.Count == 0) throw new ArgumentException("nothing to score", nameof(expected));
        int exact = 0; double chars = 0;
        for (int i = 0; i < expected.Count; i++)
        {
            if (generated[i] == expected[i]) exact++;
            chars += CharAccuracy(generated[i], expected[i]);
        }
        return new MemorizationScore((double)exact / expected.Count, chars / expected.Count, expected.Count);
    }

    /// <summary>Greedy-decodes the value of each key and scores it.</summary>
    public static MemorizationScore Memorization(LlamaForCausalLM model, ITextTokenizer tokenizer, IReadOnlyList<UuidPair> pairs, int batchSize = 64)
    {
        var prompts = pairs.Select(p => LmData.PromptTokens(tokenizer, UuidPairs.Prompt(p.Key))).ToList();
        int maxNew = pairs.Max(p => tokenizer.Encode(p.Value).Length) + 1;
        var outputs = TextGenerator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = maxNew, EosId = tokenizer.EosId, BatchSize = batchSize });
        return Memorization(outputs.Select(tokenizer.Decode).ToList(), pairs.Select(p => p.Value).ToList());
    }

    /// <summary>Scores generated solutions: the number each gives (<see cref="AnswerExtraction.FromGeneration"/>) against the reference.</summary>
    public static MathScore Math(IReadOnlyList<string> generated, IReadOnlyList<decimal> expected)
    {
        if (generated.Count != expected.Count) throw new ArgumentException($"{generated.Count} generations for {expected.Count} problems", nameof(generated));
        if (expected.Count == 0) throw new ArgumentException("nothing to score", nameof(expected));
        int correct = 0, none = 0;
        for (int i = 0; i < expected.Count; i++)
        {
            var got = AnswerExtraction.FromGeneration(generated[i]);
            if (got is null) none++;
            else if (got.Value == expected[i]) correct++;
        }
        return new MathScore((double)correct / expected.Count, correct, expected.Count, none);
    }

    /// <summary>Greedy-decodes a worked solution for each problem and scores its final answer.</summary>
    public static MathScore Math(LlamaForCausalLM model, ITextTokenizer tokenizer, IReadOnlyList<MathProblem> problems, int maxNewTokens = 160, int batchSize = 32)
    {
        var prompts = problems.Select(p => LmData.PromptTokens(tokenizer, Gsm8kData.Prompt(p.Question))).ToList();
        var outputs = TextGenerator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = maxNewTokens, EosId = tokenizer.EosId, BatchSize = batchSize });
        return Math(outputs.Select(tokenizer.Decode).ToList(), problems.Select(p => p.FinalAnswer).ToList());
    }
}

using Mora.Data;
using Mora.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Evaluation;

/// <summary>The paper's memorisation metrics over a set of keys.</summary>
/// <param name="ExactMatch">fraction of keys whose generated value equals the true value</param>
/// <param name="CharAccuracy">fraction of value characters right, position by position (a short or missing answer
/// counts its missing characters wrong; the paper's character-level accuracy)</param>
/// <param name="Count">keys scored</param>
public sealed record MemorizationScore(double ExactMatch, double CharAccuracy, int Count);

/// <summary>Exact-match accuracy of extracted final answers, with each problem's answer (null: the generation held no
/// number) and whether it was right, in the problems' order.</summary>
public sealed record MathScore(double ExactMatch, int Correct, int Count, int NoAnswer)
{
    public IReadOnlyList<decimal?> Answers { get; init; } = [];
    public IReadOnlyList<bool> Right { get; init; } = [];
}

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

    /// <summary>Greedy-decodes the answer to each question prompt (<c>[BOS] prompt</c>, as <see cref="LmData.FromPair"/> trains it)
    /// and scores it against the expected answer: exact match and character accuracy (<see cref="CharAccuracy"/>).</summary>
    public static MemorizationScore Answers(LlamaForCausalLM model, ITextTokenizer tokenizer, IReadOnlyList<(string Prompt, string Answer)> questions, int batchSize = 64)
    {
        if (questions.Count == 0) throw new ArgumentException("nothing to score", nameof(questions));
        var prompts = questions.Select(q => LmData.PromptTokens(tokenizer, q.Prompt)).ToList();
        int maxNew = questions.Max(q => tokenizer.Encode(q.Answer).Length) + 1;
        var outputs = TextGenerator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = maxNew, EosId = tokenizer.EosId, BatchSize = batchSize });
        return Memorization(outputs.Select(tokenizer.Decode).ToList(), questions.Select(q => q.Answer).ToList());
    }

    /// <summary>Mean next-token cross-entropy (nats per predicted token) of <paramref name="examples"/> under the model, every
    /// position that <see cref="LmData.Collate"/> gives a target counted once (the held-out loss; perplexity is its exp).
    /// Eval mode, no gradients; the model's mode is restored.</summary>
    public static double HeldOutLoss(LlamaForCausalLM model, IReadOnlyList<LmExample> examples, int padId, int batchSize = 32)
    {
        if (examples.Count == 0) throw new ArgumentException("no held-out examples", nameof(examples));
        if (batchSize <= 0) throw new ArgumentException($"batch size must be positive, got {batchSize}", nameof(batchSize));
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            double sum = 0; long count = 0;
            foreach (var chunk in examples.Chunk(batchSize))
            {
                using var scope = NewDisposeScope();
                using var batch = LmData.Collate(chunk, padId, model.Device);
                var logits = model.forward(batch.InputIds);
                var loss = nn.functional.cross_entropy(logits.to(ScalarType.Float32).flatten(0, 1), batch.Targets.flatten(),
                    ignore_index: LmData.IgnoreIndex, reduction: nn.Reduction.Sum);
                sum += loss.item<float>();
                count += batch.LossTokens;
            }
            return sum / count;
        }
        finally { model.train(wasTraining); }
    }

    /// <summary>Scores generated solutions: the number each gives (<see cref="AnswerExtraction.FromGeneration"/>) against the reference.</summary>
    public static MathScore Math(IReadOnlyList<string> generated, IReadOnlyList<decimal> expected)
    {
        if (generated.Count != expected.Count) throw new ArgumentException($"{generated.Count} generations for {expected.Count} problems", nameof(generated));
        if (expected.Count == 0) throw new ArgumentException("nothing to score", nameof(expected));
        var answers = generated.Select(AnswerExtraction.FromGeneration).ToList();
        var right = answers.Select((got, i) => got == expected[i]).ToList();
        int correct = right.Count(r => r), none = answers.Count(a => a is null);
        return new MathScore((double)correct / expected.Count, correct, expected.Count, none) { Answers = answers, Right = right };
    }

    /// <summary>Greedy-decodes a worked solution for each problem and scores its final answer.</summary>
    public static MathScore Math(LlamaForCausalLM model, ITextTokenizer tokenizer, IReadOnlyList<MathProblem> problems, int maxNewTokens = 160, int batchSize = 32)
    {
        var prompts = problems.Select(p => LmData.PromptTokens(tokenizer, Gsm8kData.Prompt(p.Question))).ToList();
        var outputs = TextGenerator.Generate(model, prompts, new GenerationOptions { MaxNewTokens = maxNewTokens, EosId = tokenizer.EosId, BatchSize = batchSize });
        return Math(outputs.Select(tokenizer.Decode).ToList(), problems.Select(p => p.FinalAnswer).ToList());
    }
}

namespace Mora.Data.Tokenization;

/// <summary>
/// Tokenizer against model: every id the tokenizer can produce (its vocabulary, added tokens, the post-processor's special
/// tokens, BOS/EOS/PAD) must be a row of the model's embedding, i.e. below the model's <c>vocab_size</c>. A model may
/// have more rows than the tokenizer has ids (Qwen pads its embedding), never fewer.
/// </summary>
public static class TokenizerVocabularyCheck
{
    /// <summary>Throws a <see cref="TokenizerFormatException"/> naming both files when an id of
    /// <paramref name="tokenizer"/> is not below <paramref name="modelVocabSize"/> (the <c>vocab_size</c> of
    /// <paramref name="modelConfigPath"/>).</summary>
    public static void AgainstModel(HfTokenizer tokenizer, int modelVocabSize, string modelConfigPath)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(modelVocabSize);
        int max = tokenizer.MaxTokenId;
        if (max >= modelVocabSize)
            throw new TokenizerFormatException(tokenizer.SourcePath, "",
                $"can produce id {max} ('{tokenizer.IdToToken(max) ?? "?"}'), but the model's vocab_size in {modelConfigPath} is {modelVocabSize}: the tokenizer does not belong to this model");
    }
}

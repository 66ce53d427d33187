using Mora.Data;
using Mora.Data.Tokenization;
using Mora.Model;

namespace Mora.Experiments;

/// <summary>
/// A local Hugging Face model folder given as the base of a fine-tuning experiment (<c>--base DIR</c> of
/// <c>memorization</c>, <c>gsm8k</c>, <c>continual</c>): <c>config.json</c>, <c>model.safetensors</c> (or shards with
/// <c>model.safetensors.index.json</c>) and, for a model with a vocabulary of its own, <c>tokenizer.json</c> (with
/// <c>tokenizer_config.json</c> when there is one). <see cref="Read"/> checks it before anything is written: the weights
/// against the config (<see cref="ModelIO.Load"/>, which refuses every config field it does not model), the tokenizer
/// against the model's <c>vocab_size</c> (<see cref="TokenizerVocabularyCheck"/>); <see cref="Inputs"/> are the files that
/// identify the job by content (<see cref="ExperimentFolder"/>).
/// </summary>
public sealed class GivenBase
{
    /// <summary>The property every spec names its given base with (errors name it, the CLI maps it to <c>--base</c>).</summary>
    public const string Property = "BaseModel";

    public string Dir { get; }
    public LlamaConfig Config { get; }
    /// <summary>The folder's <c>tokenizer.json</c> (an <see cref="HfTokenizer"/>), or the kit's character tokenizer when the
    /// folder has none (accepted only for a model whose vocabulary is the character tokenizer's).</summary>
    public ITextTokenizer Tokenizer { get; }
    /// <summary>The tokenizer file read, or null (the character tokenizer).</summary>
    public string? TokenizerFile { get; }
    /// <summary>What the job is made from: config, weights (and index), tokenizer.json and tokenizer_config.json when present.</summary>
    public IReadOnlyList<InputFile> Inputs { get; }

    GivenBase(string dir, LlamaConfig config, ITextTokenizer tokenizer, string? tokenizerFile, IReadOnlyList<InputFile> inputs)
    {
        Dir = dir; Config = config; Tokenizer = tokenizer; TokenizerFile = tokenizerFile; Inputs = inputs;
    }

    string ConfigPath => Path.Combine(Dir, ModelIO.ConfigFile);

    /// <summary>Reads and checks the folder (see the class); throws <see cref="ArgumentException"/> (parameter
    /// <see cref="Property"/>) for a tokenizer that does not fit the model, and the readers' own errors (naming file and
    /// field) for a bad config, weights or tokenizer file.</summary>
    public static GivenBase Read(string dir)
    {
        string tokenizerFile = Path.Combine(dir, ModelIO.TokenizerFile);
        bool hasTokenizer = File.Exists(tokenizerFile);
        ITextTokenizer tokenizer = hasTokenizer ? HfTokenizer.Load(tokenizerFile) : new CharTokenizer();
        using (ModelIO.Load(dir)) { }      // bad weights or a config field the kit does not model fail here, before anything is written
        var config = ModelIO.ReadConfig(dir);
        CheckVocabulary(tokenizer, hasTokenizer ? tokenizerFile : null, config.VocabSize, Path.Combine(dir, ModelIO.ConfigFile));
        var inputs = new List<InputFile> { new("base config", Path.Combine(dir, ModelIO.ConfigFile)) };
        string index = Path.Combine(dir, ModelIO.IndexFile);
        if (!File.Exists(Path.Combine(dir, ModelIO.WeightsFile)) && File.Exists(index)) inputs.Add(new InputFile("base weights index", index));   // sharded
        inputs.AddRange(ModelIO.WeightFiles(dir).Select(f => new InputFile($"base weights {Path.GetFileName(f)}", f)));
        if (hasTokenizer)
        {
            inputs.Add(new InputFile("base tokenizer", tokenizerFile));
            if (((HfTokenizer)tokenizer).ConfigPath is { } tc) inputs.Add(new InputFile("base tokenizer config", tc));
        }
        return new GivenBase(dir, config, tokenizer, hasTokenizer ? tokenizerFile : null, inputs);
    }

    /// <summary>Refuses a job whose longest sequence (<paramref name="longest"/> tokens, <paramref name="what"/>) does not
    /// fit the model's <c>max_position_embeddings</c> (the trainer's limit on a training example).</summary>
    public void CheckLength(int longest, string what)
    {
        if (longest > Config.MaxPositionEmbeddings)
            throw new ArgumentException($"{Property}: {ConfigPath} has max_position_embeddings {Config.MaxPositionEmbeddings}, but {what} needs {longest} tokens", Property);
    }

    /// <summary>One line saying what the job fine-tunes.</summary>
    public string Describe() =>
        $"base: {Dir} ({Config.ModelType.ToString().ToLowerInvariant()}, {Config.NumHiddenLayers} layers, hidden {Config.HiddenSize}, vocab {Config.VocabSize}), " +
        $"tokenizer {(TokenizerFile is null ? "the kit's character tokenizer" : $"{TokenizerFile} ({((HfTokenizer)Tokenizer).Kind})")}; not pretrained by the job";

    /// <summary>Refuses a tokenizer whose ids the model cannot embed (ids at or past its <c>vocab_size</c>), and a base
    /// with a vocabulary of its own but no tokenizer.json (the character tokenizer's ids would mean nothing to it); both
    /// files are named.</summary>
    public static void CheckVocabulary(ITextTokenizer tokenizer, string? tokenizerFile, int vocabSize, string configFile)
    {
        if (tokenizer is HfTokenizer hf)
        {
            // Every id the file can produce (added and template tokens too), named with both files.
            try { TokenizerVocabularyCheck.AgainstModel(hf, vocabSize, configFile); }
            catch (TokenizerFormatException e) { throw new ArgumentException($"{Property}: {e.Message}; use the tokenizer the model was trained with", Property, e); }
            return;
        }
        int highest = new[] { tokenizer.VocabSize - 1, tokenizer.BosId, tokenizer.EosId, tokenizer.PadId }.Max();
        if (tokenizerFile is null && vocabSize != tokenizer.VocabSize)
            throw new ArgumentException($"{Property}: {configFile} has vocab_size {vocabSize} but there is no {ModelIO.TokenizerFile} beside it: " +
                $"the character tokenizer's {tokenizer.VocabSize} ids would mean nothing to this model; put the model's {ModelIO.TokenizerFile} in the folder", Property);
        if (highest >= vocabSize)
            throw new ArgumentException($"{Property}: {tokenizerFile ?? "the character tokenizer"} has ids up to {highest} ({tokenizer.VocabSize} tokens), " +
                $"but {configFile} has vocab_size {vocabSize}: the model cannot embed them; use the tokenizer the model was trained with", Property);
    }

    /// <summary>Checks, in a spec's <c>Validate</c>, that <paramref name="dir"/> (when given) is a folder with a config.json.</summary>
    public static void CheckExists(string? dir)
    {
        if (dir is not null && !File.Exists(Path.Combine(dir, ModelIO.ConfigFile)))
            throw new ArgumentException($"{Property}: {Path.GetFullPath(dir)} has no {ModelIO.ConfigFile}", Property);
    }
}

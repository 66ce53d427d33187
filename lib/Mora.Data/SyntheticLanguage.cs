using System.Text;

namespace Mora.Data;

/// <summary>A pretraining corpus: training, held-out and validation documents (no document text in two of them).</summary>
/// <param name="Train">documents to train on</param>
/// <param name="HeldOut">documents only scored (the reported held-out perplexity)</param>
/// <param name="Language">the language that generated them</param>
/// <param name="Validation">documents the learning-rate sweep is scored on (so the rate is not picked on the reported split)</param>
public sealed record SyntheticLanguageCorpus(IReadOnlyList<string> Train, IReadOnlyList<string> HeldOut, SyntheticLanguage Language, IReadOnlyList<string> Validation);

/// <summary>
/// A small generated language to pretrain on (the kit's stand-in for C4 in the paper's §4.4): a lexicon of made-up words
/// built from syllables, and a probabilistic grammar over it with structure a model can learn at several ranges —
/// spelling (syllables), morphology (plural -s on nouns, agreement -s on verbs with a singular subject), word order
/// (determiner, size adjective before colour adjective, noun, verb, object, optional relative clause), selection (each
/// verb takes subjects and objects of given noun classes), and a document topic (each document favours two noun
/// classes and repeats its own cast of nouns). Everything is a function of the seed.
/// </summary>
public sealed class SyntheticLanguage
{
    static readonly string[] Onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "tr", "kl"];
    static readonly string[] Vowels = ["a", "e", "i", "o", "u"];

    /// <summary>Noun classes (semantic kinds); every noun belongs to one.</summary>
    public int Classes { get; }
    /// <summary>Nouns by class.</summary>
    public IReadOnlyList<IReadOnlyList<string>> Nouns { get; }
    /// <summary>Transitive verbs with the noun class of their subject and of their object.</summary>
    public IReadOnlyList<(string Stem, int Subject, int Object)> Verbs { get; }
    /// <summary>Intransitive verbs with the noun class of their subject.</summary>
    public IReadOnlyList<(string Stem, int Subject)> Intransitives { get; }
    public IReadOnlyList<string> SizeAdjectives { get; }
    public IReadOnlyList<string> ColourAdjectives { get; }
    public int Seed { get; }

    SyntheticLanguage(int seed, int classes, int nounsPerClass, int verbs, int intransitives, int adjectives)
    {
        Seed = seed;
        Classes = classes;
        var rng = new Random(seed);
        var used = new HashSet<string> { "the", "a", "every", "some", "that", "and", "it", "they" };
        string Word(int minSyl, int maxSyl)
        {
            while (true)
            {
                var sb = new StringBuilder();
                int n = rng.Next(minSyl, maxSyl + 1);
                for (int i = 0; i < n; i++) sb.Append(Onsets[rng.Next(Onsets.Length)]).Append(Vowels[rng.Next(Vowels.Length)]);
                if (rng.Next(3) == 0) sb.Append("n");
                string w = sb.ToString();
                if (!w.EndsWith('s') && used.Add(w) && used.Add(w + "s")) return w;
            }
        }
        Nouns = Enumerable.Range(0, classes).Select(_ => (IReadOnlyList<string>)Enumerable.Range(0, nounsPerClass).Select(_ => Word(2, 3)).ToList()).ToList();
        Verbs = Enumerable.Range(0, verbs).Select(_ => (Word(1, 2), rng.Next(classes), rng.Next(classes))).ToList();
        Intransitives = Enumerable.Range(0, intransitives).Select(_ => (Word(2, 2), rng.Next(classes))).ToList();
        SizeAdjectives = Enumerable.Range(0, adjectives).Select(_ => Word(1, 2)).ToList();
        ColourAdjectives = Enumerable.Range(0, adjectives).Select(_ => Word(2, 2)).ToList();
    }

    /// <summary>The language of <paramref name="seed"/> (the same seed, the same lexicon and grammar).</summary>
    public static SyntheticLanguage Create(int seed, int classes = 4, int nounsPerClass = 10, int verbs = 16, int intransitives = 6, int adjectives = 6)
    {
        if (classes < 2) throw new ArgumentException($"a language needs at least 2 noun classes, got {classes}", nameof(classes));
        foreach (var (v, name) in new[] { (nounsPerClass, nameof(nounsPerClass)), (verbs, nameof(verbs)), (intransitives, nameof(intransitives)), (adjectives, nameof(adjectives)) })
            if (v <= 0) throw new ArgumentException($"{name} must be positive, got {v}", name);
        return new SyntheticLanguage(seed, classes, nounsPerClass, verbs, intransitives, adjectives);
    }

    /// <summary>A noun phrase over one class's cast: determiner, optional size and colour adjectives (in that order), noun, plural -s.</summary>
    string NounPhrase(Random rng, IReadOnlyList<string> cast, out bool plural)
    {
        plural = rng.Next(3) == 0;
        var sb = new StringBuilder();
        sb.Append(plural ? (rng.Next(2) == 0 ? "the" : "some") : rng.Next(4) switch { 0 => "a", 1 => "every", _ => "the" });
        if (rng.Next(3) == 0) sb.Append(' ').Append(SizeAdjectives[rng.Next(SizeAdjectives.Count)]);
        if (rng.Next(3) == 0) sb.Append(' ').Append(ColourAdjectives[rng.Next(ColourAdjectives.Count)]);
        sb.Append(' ').Append(cast[rng.Next(cast.Count)]);
        if (plural) sb.Append('s');
        return sb.ToString();
    }

    /// <summary>One sentence (with its final period) about the document's casts (nouns by class).</summary>
    string Sentence(Random rng, IReadOnlyList<string>[] cast, int[] topic)
    {
        int subjectClass = topic[rng.Next(topic.Length)];
        var sb = new StringBuilder();
        sb.Append(NounPhrase(rng, cast[subjectClass], out bool plural));
        var transitive = Verbs.Where(v => v.Subject == subjectClass).ToList();
        var intransitive = Intransitives.Where(v => v.Subject == subjectClass).ToList();
        if (transitive.Count > 0 && (intransitive.Count == 0 || rng.Next(4) != 0))
        {
            var v = transitive[rng.Next(transitive.Count)];
            sb.Append(' ').Append(v.Stem).Append(plural ? "" : "s").Append(' ').Append(NounPhrase(rng, cast[v.Object], out bool objectPlural));
            if (rng.Next(4) == 0)
            {
                var rel = Verbs.Where(r => r.Subject == v.Object).ToList();
                if (rel.Count > 0)
                {
                    var r = rel[rng.Next(rel.Count)];
                    sb.Append(" that ").Append(r.Stem).Append(objectPlural ? "" : "s").Append(' ').Append(NounPhrase(rng, cast[r.Object], out _));
                }
            }
        }
        else if (intransitive.Count > 0)
        {
            var v = intransitive[rng.Next(intransitive.Count)];
            sb.Append(' ').Append(v.Stem).Append(plural ? "" : "s");
        }
        else sb.Append(plural ? " are" : " is");
        sb.Append(" .");
        return sb.ToString();
    }

    /// <summary>A document: a topic (two favoured noun classes), a cast of three nouns per class, 3–6 sentences.</summary>
    public string Document(Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        int first = rng.Next(Classes), second = (first + 1 + rng.Next(Classes - 1)) % Classes;
        int[] topic = [first, first, second, rng.Next(Classes)];
        var cast = Nouns.Select(ns => (IReadOnlyList<string>)ns.OrderBy(_ => rng.Next()).Take(3).ToList()).ToArray();
        int sentences = rng.Next(3, 7);
        return string.Join(" ", Enumerable.Range(0, sentences).Select(_ => Sentence(rng, cast, topic)));
    }

    /// <summary>
    /// A corpus of <paramref name="trainDocuments"/> training, <paramref name="heldOutDocuments"/> held-out and
    /// <paramref name="validationDocuments"/> validation documents of the language of <paramref name="seed"/>, drawn from one
    /// stream seeded by it in that order; a held-out or validation candidate whose text is already in a split is skipped,
    /// so the splits share no document (and the first two do not depend on the third).
    /// </summary>
    public static SyntheticLanguageCorpus Generate(int seed, int trainDocuments, int heldOutDocuments, int validationDocuments = 0)
    {
        if (validationDocuments < 0) throw new ArgumentException($"validationDocuments must be ≥ 0, got {validationDocuments}", nameof(validationDocuments));
        if (trainDocuments <= 0) throw new ArgumentException($"trainDocuments must be positive, got {trainDocuments}", nameof(trainDocuments));
        if (heldOutDocuments <= 0) throw new ArgumentException($"heldOutDocuments must be positive, got {heldOutDocuments}", nameof(heldOutDocuments));
        var language = Create(seed);
        var rng = new Random(unchecked(seed * 7919 + 17));
        var train = new List<string>(trainDocuments);
        for (int i = 0; i < trainDocuments; i++) train.Add(language.Document(rng));
        var seen = new HashSet<string>(train, StringComparer.Ordinal);
        var heldOut = new List<string>(heldOutDocuments);
        for (int tries = 0; heldOut.Count < heldOutDocuments; tries++)
        {
            if (tries > 100 * heldOutDocuments) throw new InvalidOperationException("the language repeats its training documents; it cannot give a disjoint held-out split");
            string d = language.Document(rng);
            if (seen.Add(d)) heldOut.Add(d);
        }
        var validation = new List<string>(validationDocuments);
        for (int tries = 0; validation.Count < validationDocuments; tries++)
        {
            if (tries > 100 * validationDocuments) throw new InvalidOperationException("the language repeats its documents; it cannot give a disjoint validation split");
            string d = language.Document(rng);
            if (seen.Add(d)) validation.Add(d);
        }
        return new SyntheticLanguageCorpus(train, heldOut, language, validation);
    }
}

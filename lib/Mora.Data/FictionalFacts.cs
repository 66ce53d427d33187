namespace Mora.Data;

/// <summary>The two kinds of fictional entity: people (the base model's original domain) and companies (the new domain
/// of the continual-pretraining experiment).</summary>
public enum EntityKind { Person, Company }

/// <summary>A fictional entity and its facts: attribute name → value (the value is what a question's answer must be).</summary>
public sealed record FictionalEntity(string Name, EntityKind Kind, IReadOnlyDictionary<string, string> Facts);

/// <summary>A question about one fact and its answer (the fact's value).</summary>
public sealed record FactQuestion(string Entity, string Attribute, string Question, string Answer);

/// <summary>
/// A generated world of fictional people and companies for the continual-pretraining experiment (paper §4.3 in spirit:
/// continue training on a new domain, then measure what was absorbed and what was forgotten). Every fact is stated in
/// <b>varied prose</b> (several sentence templates per attribute, in a random order per document), so a model must learn
/// the fact rather than one string; <see cref="Questions"/> ask about the same facts in a phrasing that no document uses.
/// Everything is deterministic from a seed.
/// <para>People: birthplace (a town), birth year, occupation. Companies: headquarters (a town), founding year, product.</para>
/// </summary>
public static class FictionalFacts
{
    /// <summary>The attributes of each kind, in a fixed order.</summary>
    public static IReadOnlyList<string> Attributes(EntityKind kind) => kind == EntityKind.Person
        ? ["birthplace", "birth_year", "occupation"]
        : ["headquarters", "founding_year", "product"];

    /// <summary>The towns both kinds refer to (generated names, fixed).</summary>
    public static IReadOnlyList<string> Towns { get; } =
        ["Varnholt", "Quenmoor", "Ostrelle", "Dabrinth", "Kelvaro", "Sunmere", "Trevask", "Lomidar", "Pellurin", "Havosk", "Miradune", "Corvetha"];

    public static IReadOnlyList<string> Occupations { get; } =
        ["baker", "sailor", "painter", "surgeon", "carpenter", "astronomer", "weaver", "librarian", "blacksmith", "chemist"];

    public static IReadOnlyList<string> Products { get; } =
        ["lanterns", "bicycles", "clocks", "glassware", "rope", "telescopes", "pianos", "soap", "maps", "kettles"];

    /// <summary>Sentence templates of the training prose: {0} is the entity's name, {1} the value. At least four per attribute.</summary>
    public static IReadOnlyDictionary<string, string[]> ProseTemplates { get; } = new Dictionary<string, string[]>
    {
        ["birthplace"] = ["{0} was born in {1}.", "{0} grew up in the town of {1}.", "The hometown of {0} is {1}.", "{1} is where {0} spent a childhood."],
        ["birth_year"] = ["{0} was born in the year {1}.", "{0} came into the world in {1}.", "In {1}, {0} was born.", "The birth of {0} took place in {1}."],
        ["occupation"] = ["{0} worked as a {1}.", "By trade, {0} was a {1}.", "{0} earned a living as a {1}.", "Everyone knew {0} as a skilled {1}."],
        ["headquarters"] = ["{0} is based in {1}.", "The head office of {0} stands in {1}.", "{0} runs its business from {1}.", "{1} is home to the offices of {0}."],
        ["founding_year"] = ["{0} was founded in {1}.", "{0} opened its doors in {1}.", "In {1}, the firm {0} began trading.", "The story of {0} starts in {1}."],
        ["product"] = ["{0} makes {1}.", "{0} is known for its {1}.", "The workshops of {0} turn out {1}.", "Customers buy {1} from {0}."],
    };

    /// <summary>The question of each attribute, in a phrasing that no training sentence uses ({0}: the name).</summary>
    public static IReadOnlyDictionary<string, string> QuestionTemplates { get; } = new Dictionary<string, string>
    {
        ["birthplace"] = "Q: Which town is {0} from?\nA: ",
        ["birth_year"] = "Q: What is the birth year of {0}?\nA: ",
        ["occupation"] = "Q: What job did {0} have?\nA: ",
        ["headquarters"] = "Q: Where is {0} headquartered?\nA: ",
        ["founding_year"] = "Q: When was {0} established?\nA: ",
        ["product"] = "Q: What does {0} produce?\nA: ",
    };

    static readonly string[] Onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "th", "gl"];
    static readonly string[] Vowels = ["a", "e", "i", "o", "u", "ai", "ei", "ou"];
    static readonly string[] Codas = ["", "", "n", "r", "l", "s", "th", "x"];
    static readonly string[] CompanySuffixes = ["Works", "and Sons", "Company", "Guild", "Brothers", "Trading"];

    static string Syllables(Random rng, int count)
    {
        var s = string.Concat(Enumerable.Range(0, count).Select(_ => Onsets[rng.Next(Onsets.Length)] + Vowels[rng.Next(Vowels.Length)] + Codas[rng.Next(Codas.Length)]));
        return char.ToUpperInvariant(s[0]) + s[1..];
    }

    /// <summary><paramref name="count"/> entities of <paramref name="kind"/> with distinct names (none in <paramref name="taken"/>,
    /// which is extended), their facts drawn uniformly, from <paramref name="seed"/>.</summary>
    public static List<FictionalEntity> Generate(EntityKind kind, int count, int seed, ISet<string>? taken = null)
    {
        if (count <= 0) throw new ArgumentException($"the number of entities must be positive, got {count}", nameof(count));
        if (!Enum.IsDefined(kind)) throw new ArgumentException($"unknown entity kind {(int)kind}", nameof(kind));
        taken ??= new HashSet<string>();
        var rng = new Random(seed);
        var result = new List<FictionalEntity>(count);
        while (result.Count < count)
        {
            string name = kind == EntityKind.Person
                ? $"{Syllables(rng, 1 + rng.Next(2))} {Syllables(rng, 2)}"
                : $"{Syllables(rng, 2)} {CompanySuffixes[rng.Next(CompanySuffixes.Length)]}";
            if (!taken.Add(name)) continue;
            var facts = kind == EntityKind.Person
                ? new Dictionary<string, string>
                {
                    ["birthplace"] = Towns[rng.Next(Towns.Count)],
                    ["birth_year"] = (1800 + rng.Next(200)).ToString(System.Globalization.CultureInfo.InvariantCulture),
                    ["occupation"] = Occupations[rng.Next(Occupations.Count)],
                }
                : new Dictionary<string, string>
                {
                    ["headquarters"] = Towns[rng.Next(Towns.Count)],
                    ["founding_year"] = (1820 + rng.Next(200)).ToString(System.Globalization.CultureInfo.InvariantCulture),
                    ["product"] = Products[rng.Next(Products.Count)],
                };
            result.Add(new FictionalEntity(name, kind, facts));
        }
        return result;
    }

    /// <summary>One document about <paramref name="entity"/>: every fact once, each in a template drawn from
    /// <paramref name="rng"/>, in a shuffled order.</summary>
    public static string Document(FictionalEntity entity, Random rng)
    {
        var attributes = Attributes(entity.Kind).ToArray();
        rng.Shuffle(attributes);
        return string.Join(" ", attributes.Select(a =>
        {
            var templates = ProseTemplates[a];
            return string.Format(System.Globalization.CultureInfo.InvariantCulture, templates[rng.Next(templates.Length)], entity.Name, entity.Facts[a]);
        }));
    }

    /// <summary><paramref name="perEntity"/> documents about each entity (varied prose), in entity order, from <paramref name="seed"/>.</summary>
    public static List<string> Documents(IReadOnlyList<FictionalEntity> entities, int perEntity, int seed)
    {
        if (perEntity <= 0) throw new ArgumentException($"documents per entity must be positive, got {perEntity}", nameof(perEntity));
        var rng = new Random(seed);
        return entities.SelectMany(e => Enumerable.Range(0, perEntity).Select(_ => Document(e, rng))).ToList();
    }

    /// <summary>Every fact of every entity as a question in the held-out phrasing, with its answer.</summary>
    public static List<FactQuestion> Questions(IEnumerable<FictionalEntity> entities) =>
        entities.SelectMany(e => Attributes(e.Kind).Select(a => new FactQuestion(e.Name, a,
            string.Format(System.Globalization.CultureInfo.InvariantCulture, QuestionTemplates[a], e.Name), e.Facts[a]))).ToList();
}

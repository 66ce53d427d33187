using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Mora.Data;

/// <summary>One GSM8K-format problem: the question, the worked answer (reasoning lines with <c>&lt;&lt;a*b=c&gt;&gt;</c>
/// calculator annotations, then <c>#### n</c>), the extracted final number, and where it came from.</summary>
public sealed record MathProblem(string Question, string Answer, decimal FinalAnswer, string Source = "", int Line = 0);

/// <summary>Final answers out of GSM8K answers and model generations. Never throws on any text and runs in linear time
/// (the patterns use the non-backtracking engine, so no input makes them hang).</summary>
public static partial class AnswerExtraction
{
    [GeneratedRegex(@"####\s*\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?|-?\.[0-9]+)\s*\.?\s*$", RegexOptions.NonBacktracking)]
    private static partial Regex FinalLine();

    [GeneratedRegex(@"-?\$?[0-9][0-9,]*(?:\.[0-9]+)?", RegexOptions.NonBacktracking)]
    private static partial Regex AnyNumber();

    /// <summary>The number after the last <c>####</c> of a reference answer: handles <c>#### 1,234</c>, negatives and
    /// decimals. Null when there is no well-formed final line.</summary>
    public static decimal? FromReference(string answer)
    {
        ArgumentNullException.ThrowIfNull(answer);
        int at = answer.LastIndexOf("####", StringComparison.Ordinal);
        if (at < 0) return null;
        var m = FinalLine().Match(answer[at..].TrimEnd());
        return m.Success ? Parse(m.Groups[1].Value) : null;
    }

    /// <summary>The answer a model gave: the number after its first <c>####</c> when it wrote one, else the last number
    /// in the text (the usual GSM8K fallback). Null when the text has no number.</summary>
    public static decimal? FromGeneration(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int at = text.IndexOf("####", StringComparison.Ordinal);
        if (at >= 0)
        {
            var after = AnyNumber().Match(text, at + 4);
            if (after.Success) return Parse(after.Value);
        }
        var all = AnyNumber().Matches(text);
        return all.Count == 0 ? null : Parse(all[^1].Value);
    }

    static decimal? Parse(string s)
    {
        s = s.Replace(",", "").Replace("$", "");
        if (s.StartsWith('-') && s.Length > 1 && s[1] == '.') s = "-0" + s[1..];
        else if (s.StartsWith('.')) s = "0" + s;
        return decimal.TryParse(s, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var d) ? d : null;
    }
}

/// <summary>GSM8K-format JSONL: one <c>{"question": …, "answer": …}</c> a line (the real GSM8K, or the generator's files).</summary>
public static class Gsm8kData
{
    /// <summary>Reads every problem; a malformed line (bad JSON, a missing field, no <c>#### n</c>) throws
    /// <see cref="DatasetFormatException"/> naming the file and line.</summary>
    public static List<MathProblem> Load(string path)
    {
        var result = new List<MathProblem>();
        foreach (var (line, o) in Jsonl.Read(path))
        {
            string q = Jsonl.String(o, "question", path, line);
            string a = Jsonl.String(o, "answer", path, line);
            var final = AnswerExtraction.FromReference(a)
                ?? throw new DatasetFormatException(path, line, "the answer has no final line '#### <number>'");
            result.Add(new MathProblem(q, a, final, path, line));
        }
        return result;
    }

    public static void Write(string path, IEnumerable<MathProblem> problems) =>
        Jsonl.Write(path, problems, p => new JsonObject { ["question"] = p.Question, ["answer"] = p.Answer });

    /// <summary>The prompt a model sees for a question, and the text it is trained to produce.</summary>
    public static string Prompt(string question) => "Q: " + question + "\nA: ";
}

/// <summary>Options of the GSM8K-style generator.</summary>
public sealed record MathStyle
{
    public int MinSteps { get; init; } = 2;
    public int MaxSteps { get; init; } = 4;
    /// <summary>Starting quantities are drawn from [2, MaxStart].</summary>
    public int MaxStart { get; init; } = 50;
    /// <summary>Added / removed amounts from [1, MaxOperand]; multipliers and divisors from [2, MaxFactor].</summary>
    public int MaxOperand { get; init; } = 30;
    public int MaxFactor { get; init; } = 4;

    public MathStyle Validate()
    {
        if (MinSteps < 1) throw new ArgumentException($"min steps must be at least 1, got {MinSteps}", nameof(MinSteps));
        if (MaxSteps < MinSteps) throw new ArgumentException($"max steps {MaxSteps} is below min steps {MinSteps}", nameof(MaxSteps));
        if (MaxStart < 2) throw new ArgumentException($"max start must be at least 2, got {MaxStart}", nameof(MaxStart));
        if (MaxOperand < 1) throw new ArgumentException($"max operand must be at least 1, got {MaxOperand}", nameof(MaxOperand));
        if (MaxFactor < 2) throw new ArgumentException($"max factor must be at least 2, got {MaxFactor}", nameof(MaxFactor));
        return this;
    }
}

/// <summary>
/// Multi-step arithmetic word problems in GSM8K's exact format: a question; an answer of reasoning lines, each with a
/// <c>&lt;&lt;a+b=c&gt;&gt;c</c> calculator annotation, and a final <c>#### n</c>. Deterministic from a seed.
/// </summary>
public static class Gsm8kStyle
{
    static readonly string[] Names = ["Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Ken", "Alexis", "Tina", "Mark", "Ravi", "Mei", "Sam", "Olga", "Diego", "Amara"];
    static readonly (string Item, string Container)[] Items =
        [("apples", "baskets"), ("marbles", "bags"), ("stickers", "albums"), ("cookies", "boxes"), ("pencils", "cases"), ("coins", "jars"),
         ("books", "shelves"), ("shells", "buckets"), ("cards", "decks"), ("eggs", "cartons"), ("flowers", "vases"), ("toy cars", "bins")];

    /// <summary>One problem from <paramref name="rng"/>.</summary>
    public static MathProblem Next(Random rng, MathStyle style)
    {
        string name = Names[rng.Next(Names.Length)];
        string friend; do friend = Names[rng.Next(Names.Length)]; while (friend == name);
        var (item, container) = Items[rng.Next(Items.Length)];
        int steps = rng.Next(style.MinSteps, style.MaxSteps + 1);
        long have = rng.Next(2, style.MaxStart + 1);
        var q = new StringBuilder($"{name} has {have} {item}.");
        var a = new StringBuilder();
        for (int s = 0; s < steps; s++)
        {
            int op = rng.Next(4);
            if (op == 3 && (have < 2 || !Enumerable.Range(2, style.MaxFactor - 1).Any(k => have % k == 0))) op = 0;
            if (op == 1 && have < 2) op = 0;
            long before = have;
            switch (op)
            {
                case 0:
                {
                    int n = rng.Next(1, style.MaxOperand + 1);
                    have = before + n;
                    q.Append(rng.Next(2) == 0 ? $" {friend} gives {name} {n} more {item}." : $" Then {name} buys {n} more {item}.");
                    a.Append($"{name} has {before}+{n} = <<{before}+{n}={have}>>{have} {item}.\n");
                    break;
                }
                case 1:
                {
                    int n = rng.Next(1, (int)Math.Min(before - 1, style.MaxOperand) + 1);
                    have = before - n;
                    q.Append(rng.Next(2) == 0 ? $" {name} gives {n} {item} to {friend}." : $" {name} loses {n} of the {item}.");
                    a.Append($"{name} has {before}-{n} = <<{before}-{n}={have}>>{have} {item} left.\n");
                    break;
                }
                case 2:
                {
                    int k = rng.Next(2, style.MaxFactor + 1);
                    have = before * k;
                    q.Append($" {name} then gets {k} times as many {item} as {(rng.Next(2) == 0 ? "before" : "there were")} in total.");
                    a.Append($"{name} now has {before}*{k} = <<{before}*{k}={have}>>{have} {item}.\n");
                    break;
                }
                default:
                {
                    var divisors = Enumerable.Range(2, style.MaxFactor - 1).Where(k => before % k == 0).ToList();
                    int k = divisors[rng.Next(divisors.Count)];
                    have = before / k;
                    q.Append($" {name} puts the {item} equally into {k} {container} and keeps one of the {container}.");
                    a.Append($"One of the {container} holds {before}/{k} = <<{before}/{k}={have}>>{have} {item}.\n");
                    break;
                }
            }
        }
        q.Append($" How many {item} does {name} have now?");
        a.Append($"#### {have}");
        return new MathProblem(q.ToString(), a.ToString(), have);
    }

    /// <summary><paramref name="count"/> distinct problems from <paramref name="seed"/>.</summary>
    public static List<MathProblem> Generate(int count, int seed, MathStyle? style = null, IReadOnlySet<string>? exclude = null)
    {
        if (count <= 0) throw new ArgumentException($"the number of problems must be positive, got {count}", nameof(count));
        style = (style ?? new MathStyle()).Validate();
        var rng = new Random(seed);
        var seen = new HashSet<string>();
        var result = new List<MathProblem>(count);
        int attempts = 0;
        while (result.Count < count)
        {
            if (++attempts > 50 * count + 1000)
                throw new ArgumentException($"could not find {count} distinct problems with these options (got {result.Count}); widen the number ranges or steps", nameof(style));
            var p = Next(rng, style);
            if (exclude?.Contains(p.Question) == true || !seen.Add(p.Question)) continue;
            result.Add(p);
        }
        return result;
    }

    /// <summary>A train and a test split with no question in both.</summary>
    public static (List<MathProblem> Train, List<MathProblem> Test) Splits(int train, int test, int seed, MathStyle? style = null)
    {
        if (test <= 0) throw new ArgumentException($"the test split must have at least one problem, got {test}", nameof(test));
        var all = Generate(train + test, seed, style);
        return (all.Take(train).ToList(), all.Skip(train).ToList());
    }

    /// <summary>
    /// A train split, then <paramref name="heldOut"/> further splits (test, validation, …) of problems whose arithmetic
    /// skeleton (<see cref="MathSkeleton"/>) is in no earlier split: a held-out problem is not one the training split (or
    /// another held-out split) solves with the same numbers under other names and items. Problems are drawn from one
    /// stream seeded by <paramref name="seed"/>; throws when the options leave too few unseen skeletons.
    /// </summary>
    public static List<List<MathProblem>> UnseenSplits(int train, IReadOnlyList<int> heldOut, int seed, MathStyle? style = null)
    {
        if (train <= 0) throw new ArgumentException($"the training split must have at least one problem, got {train}", nameof(train));
        if (heldOut.Any(n => n < 0)) throw new ArgumentException("a held-out split cannot have a negative size", nameof(heldOut));
        style = (style ?? new MathStyle()).Validate();
        var rng = new Random(seed);
        var questions = new HashSet<string>();
        var skeletons = new HashSet<string>();
        var splits = new List<List<MathProblem>>();
        int wanted = train + heldOut.Sum(), attempts = 0;
        foreach (int size in heldOut.Prepend(train))
        {
            var split = new List<MathProblem>(size);
            var mine = new HashSet<string>();   // skeletons may repeat inside a split, not across splits
            while (split.Count < size)
            {
                if (++attempts > 200 * wanted + 1000)
                    throw new ArgumentException($"could not find {size} problems with skeletons unseen in the earlier splits (got {split.Count} for split {splits.Count}); " +
                                                "widen the number ranges or steps, or ask for fewer", nameof(heldOut));
                var p = Next(rng, style);
                string k = MathSkeleton.Of(p);
                if (questions.Contains(p.Question) || skeletons.Contains(k)) continue;
                questions.Add(p.Question);
                mine.Add(k);
                split.Add(p);
            }
            skeletons.UnionWith(mine);
            splits.Add(split);
        }
        return splits;
    }
}

/// <summary>
/// The arithmetic skeleton of a worked problem: its chain of calculator annotations, <c>&lt;&lt;12+3=15&gt;&gt;</c> then
/// <c>&lt;&lt;15*2=30&gt;&gt;</c> giving <c>12+3=15;15*2=30</c>. Two problems with one skeleton start from the same
/// quantity and apply the same operations with the same operands: they differ only in names, items and phrasing, so a
/// model that saw one can answer the other by recall. Arithmetic drills of the pretraining corpus (single facts such as
/// <c>12+3 = &lt;&lt;12+3=15&gt;&gt;15</c>) are not worked problems and have no skeleton here: they are the skill a base
/// is meant to hold.
/// </summary>
public static partial class MathSkeleton
{
    [GeneratedRegex(@"<<([^<>]*)>>", RegexOptions.NonBacktracking)]
    private static partial Regex Annotation();

    /// <summary>The skeleton of a worked answer (empty when it has no annotation).</summary>
    public static string Of(string answer) => string.Join(';', Annotation().Matches(answer).Select(m => m.Groups[1].Value.Replace(" ", "")));

    public static string Of(MathProblem problem) => Of(problem.Answer);
}

/// <summary>
/// A generic pretraining corpus, so a base model can be pretrained from scratch before fine-tuning (the kit cannot
/// download LLaMA): arithmetic facts, counting sentences, and GSM8K-style worked problems (excluding any question
/// given), mixed and deterministic from a seed.
/// </summary>
public static class Gsm8kPretrainingText
{
    /// <param name="documents">how many documents</param>
    /// <param name="seed">the generator's seed</param>
    /// <param name="style">the problems' number ranges and steps</param>
    /// <param name="excludeQuestions">questions no worked problem of the corpus may have</param>
    /// <param name="excludeSkeletons">arithmetic skeletons (<see cref="MathSkeleton"/>) no worked problem of the corpus may
    /// have: held-out problems then cannot be recalled from pretraining either</param>
    public static List<string> Generate(int documents, int seed, MathStyle? style = null, IReadOnlySet<string>? excludeQuestions = null, IReadOnlySet<string>? excludeSkeletons = null)
    {
        if (documents <= 0) throw new ArgumentException($"the number of documents must be positive, got {documents}", nameof(documents));
        style = (style ?? new MathStyle()).Validate();
        var rng = new Random(seed);
        var docs = new List<string>(documents);
        while (docs.Count < documents)
        {
            switch (rng.Next(3))
            {
                case 0:
                {
                    var sb = new StringBuilder();
                    for (int i = 0; i < 6; i++) sb.Append(ArithmeticFact.Next(rng, style).Drill).Append('\n');
                    docs.Add(sb.ToString().TrimEnd());
                    break;
                }
                case 1:
                {
                    var p = Gsm8kStyle.Next(rng, style with { MinSteps = 1, MaxSteps = 1 });
                    if (excludeQuestions?.Contains(p.Question) == true || excludeSkeletons?.Contains(MathSkeleton.Of(p)) == true) continue;
                    docs.Add(p.Question.Replace(" How many", "\nHow many") + "\n" + p.Answer);
                    break;
                }
                default:
                {
                    var p = Gsm8kStyle.Next(rng, style);
                    if (excludeQuestions?.Contains(p.Question) == true || excludeSkeletons?.Contains(MathSkeleton.Of(p)) == true) continue;
                    docs.Add(Gsm8kData.Prompt(p.Question) + p.Answer);
                    break;
                }
            }
        }
        return docs;
    }
}

/// <summary>
/// One arithmetic fact of the base's pretraining drills, <c>a op b = c</c>: from x in [0, 2·MaxStart) and y in
/// [1, MaxOperand], one of x+y, (x+y)−y, x·k and (x·k)/k with k = y mod MaxFactor + 2. The drills of
/// <see cref="Gsm8kPretrainingText"/> are these facts in calculator notation (<see cref="Drill"/>); the instruction-tuning
/// contrast asks the same facts in words (<see cref="Question"/>), so the base holds the knowledge and fine-tuning has only
/// the format to teach.
/// </summary>
public sealed record ArithmeticFact(long A, char Op, long B, long C)
{
    /// <summary>The next fact from <paramref name="rng"/> (three draws: x, y, the operation).</summary>
    public static ArithmeticFact Next(Random rng, MathStyle style)
    {
        int x = rng.Next(0, style.MaxStart * 2), y = rng.Next(1, style.MaxOperand + 1), k = y % style.MaxFactor + 2;
        return rng.Next(4) switch
        {
            0 => new(x, '+', y, x + y),
            1 => new(x + y, '-', y, x),
            2 => new(x, '*', k, (long)x * k),
            _ => new((long)x * k, '/', k, x),
        };
    }

    /// <summary>The fact as a pretraining drill: <c>12+7 = &lt;&lt;12+7=19&gt;&gt;19</c>.</summary>
    public string Drill => $"{A}{Op}{B} = <<{A}{Op}{B}={C}>>{C}";

    /// <summary>The drill up to its result, as the base completes it: <c>12+7 = &lt;&lt;12+7=</c>.</summary>
    public string DrillPrompt => $"{A}{Op}{B} = <<{A}{Op}{B}=";

    /// <summary>The fact as an instruction: <c>Compute 12+7.</c> (the drill's own expression, so the knowledge is keyed by
    /// the same characters and only the wrapper and the bare answer are new).</summary>
    public string Question => $"Compute {A}{Op}{B}.";
}

using Mora.Adapters;
using Mora.Data;
using Mora.Experiments;

namespace Mora.Tests;

/// <summary>The continual experiment's generated domain: deterministic, facts in varied prose, questions in a phrasing no
/// training text uses, and every answer stated in the text the model trains on.</summary>
public class FictionalFactsTests
{
    [Fact]
    public void TheSameSeedGivesTheSameWorldAndAnotherSeedAnother()
    {
        int seed = TestSupport.Seed();
        foreach (var kind in new[] { EntityKind.Person, EntityKind.Company })
        {
            var a = FictionalFacts.Generate(kind, 30, seed);
            var b = FictionalFacts.Generate(kind, 30, seed);
            Assert.Equal(a.Select(e => e.Name), b.Select(e => e.Name));
            Assert.Equal(a.Select(e => string.Join("|", e.Facts.Values)), b.Select(e => string.Join("|", e.Facts.Values)));
            Assert.Equal(FictionalFacts.Documents(a, 3, seed), FictionalFacts.Documents(b, 3, seed));
            Assert.NotEqual(a.Select(e => e.Name), FictionalFacts.Generate(kind, 30, seed + 1).Select(e => e.Name));
            Assert.Equal(30, a.Select(e => e.Name).Distinct().Count());
            Assert.All(a, e => Assert.Equal(FictionalFacts.Attributes(kind), e.Facts.Keys));
        }
        // The experiment's data too: two builds from one spec agree, document for document.
        var spec = ContinualSpec.FromPreset("smoke");
        var (c1, d1, _, q1) = new ContinualData(spec).NewDomain(3);
        var (c2, d2, _, q2) = new ContinualData(spec).NewDomain(3);
        Assert.Equal(d1, d2);
        Assert.Equal(q1, q2);
        Assert.Equal(c1.Select(c => c.Name), c2.Select(c => c.Name));
    }

    [Fact]
    public void FactsAreStatedInVariedProse()
    {
        var companies = FictionalFacts.Generate(EntityKind.Company, 10, TestSupport.Seed());
        var docs = FictionalFacts.Documents(companies, 8, TestSupport.Seed(1));
        // Each company's 8 documents are not one string repeated: at least 3 distinct ones (8 draws of 4×4×4 templates × 6 orders).
        for (int i = 0; i < companies.Count; i++) Assert.True(docs.Skip(8 * i).Take(8).Distinct().Count() >= 3, string.Join("\n", docs.Skip(8 * i).Take(8)));
        foreach (var templates in FictionalFacts.ProseTemplates.Values) Assert.True(templates.Length >= 4);
    }

    [Fact]
    public void QuestionsUseAPhrasingNoTrainingTextUses()
    {
        var spec = ContinualSpec.FromPreset("smoke") with { NewEntities = 20, DocumentsPerEntity = 6 };
        var data = new ContinualData(spec);
        var (_, documents, _, questions) = data.NewDomain(TestSupport.Seed() % 1000);
        // The question templates' words (the text around the name) appear in no prose template and in no document.
        foreach (var template in FictionalFacts.QuestionTemplates.Values)
            foreach (var part in template.Split("{0}").Select(p => p.Trim()).Where(p => p.Length > 3))
            {
                Assert.DoesNotContain(FictionalFacts.ProseTemplates.Values.SelectMany(t => t), t => t.Contains(part, StringComparison.Ordinal));
                Assert.DoesNotContain(documents, d => d.Contains(part, StringComparison.Ordinal));
            }
        // No question (nor its text without the Q:/A: frame) occurs in the new domain's training text.
        foreach (var q in questions)
        {
            string body = q.Question.Replace("Q: ", "").Replace("\nA: ", "");
            Assert.DoesNotContain(documents, d => d.Contains(body, StringComparison.Ordinal));
        }
        Assert.DoesNotContain(documents, d => d.Contains("Q:", StringComparison.Ordinal) || d.Contains('?'));
    }

    [Fact]
    public void EveryAnswerIsStatedInTheTrainingTextAboutItsEntity()
    {
        var spec = ContinualSpec.FromPreset("smoke") with { NewEntities = 20, DocumentsPerEntity = 5 };
        var (companies, documents, train, questions) = new ContinualData(spec).NewDomain(TestSupport.Seed() % 1000);
        Assert.Equal(3 * companies.Count, questions.Count);
        var replay = new ContinualData(spec).Replay;
        Assert.Equal(documents.Count + replay.Count, train.Count);        // the new prose, then the replayed questions about other companies
        Assert.Equal(spec.ReplayQuestions, replay.Count);
        for (int i = 0; i < companies.Count; i++)
        {
            var own = documents.Skip(spec.DocumentsPerEntity * i).Take(spec.DocumentsPerEntity).ToList();
            foreach (var q in questions.Where(q => q.Entity == companies[i].Name))
                Assert.All(own, d =>
                {
                    Assert.Contains(q.Entity, d);
                    Assert.Contains(q.Answer, d);
                    // The sentence that names the entity and states this fact is one of the attribute's templates.
                    Assert.Contains(FictionalFacts.ProseTemplates[q.Attribute], t => d.Contains(string.Format(t, q.Entity, q.Answer), StringComparison.Ordinal));
                });
        }
        // The new companies are not the original domain's, and each seed draws its own.
        var data = new ContinualData(spec);
        var original = data.People.Concat(data.FormatCompanies).Select(e => e.Name).ToHashSet();
        Assert.DoesNotContain(companies, c => original.Contains(c.Name));
        Assert.NotEqual(companies.Select(c => c.Name), data.NewDomain(spec.TuneSeed).Companies.Select(c => c.Name));
    }

    [Fact]
    public void TheHeldOutSplitIsNotInThePretrainingSet()
    {
        var data = new ContinualData(ContinualSpec.FromPreset("smoke"));
        var pretraining = data.Pretraining.Select(e => string.Join(",", e.Tokens)).ToHashSet();
        Assert.Equal(data.People.Count, data.HeldOut.Count);
        Assert.DoesNotContain(data.HeldOut, e => pretraining.Contains(string.Join(",", e.Tokens)));
    }

    [Theory]
    [InlineData(nameof(ContinualSpec.TuneSeed))]
    [InlineData(nameof(ContinualSpec.AdapterLrGrid))]
    [InlineData(nameof(ContinualSpec.FullLrGrid))]
    [InlineData(nameof(ContinualSpec.BaseSeed))]
    [InlineData(nameof(ContinualSpec.NewEntities))]
    [InlineData(nameof(ContinualSpec.OriginalQuestions))]
    public void BadSettingsNameTheProperty(string property)
    {
        var spec = ContinualSpec.FromPreset("smoke");
        spec = property switch
        {
            nameof(ContinualSpec.TuneSeed) => spec with { TuneSeed = spec.Seeds[0] },
            nameof(ContinualSpec.AdapterLrGrid) => spec with { AdapterLrGrid = [1e-3, -1] },
            nameof(ContinualSpec.FullLrGrid) => spec with { FullLrGrid = [] },          // every rate is tuned here
            nameof(ContinualSpec.BaseSeed) => spec with { BaseSeed = null },             // one shared base is the design
            nameof(ContinualSpec.NewEntities) => spec with { NewEntities = 0 },
            _ => spec with { OriginalQuestions = 1000 },
        };
        var e = Assert.Throws<ArgumentException>(() => spec.Validate());
        Assert.Equal(property, e.ParamName);
    }

    [Fact]
    public void AGridIsNeededOnlyForTheMethodsRun()
    {
        var spec = ContinualSpec.FromPreset("smoke");
        (spec with { Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation)], FullLrGrid = [] }).Validate();   // no full fine-tuning: no full grid
        (spec with { Methods = [MethodSpec.Full], AdapterLrGrid = [] }).Validate();                                    // no adapter: no adapter grid
        var e = Assert.Throws<ArgumentException>(() => (spec with { Methods = [MethodSpec.Lora], AdapterLrGrid = [] }).Validate());
        Assert.Equal(nameof(ContinualSpec.AdapterLrGrid), e.ParamName);
    }
}

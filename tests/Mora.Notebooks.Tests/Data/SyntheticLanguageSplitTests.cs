using Mora.Data;
using Mora.Experiments;

namespace Mora.Tests;

/// <summary>The pretraining corpus's three splits: the validation split (what the learning-rate sweep is scored on) shares
/// no document with the training or the reported held-out split, and adding it changes neither of them.</summary>
public class SyntheticLanguageSplitTests
{
    [Fact]
    public void ValidationIsApartAndLeavesTheOtherSplitsAsTheyWere()
    {
        int seed = TestSupport.Seed() % 1000;
        var without = SyntheticLanguage.Generate(seed, 300, 20);
        var with = SyntheticLanguage.Generate(seed, 300, 20, 25);
        Assert.Equal(without.Train, with.Train);
        Assert.Equal(without.HeldOut, with.HeldOut);
        Assert.Empty(without.Validation);
        Assert.Equal(25, with.Validation.Count);
        Assert.Empty(with.Validation.Intersect(with.Train));
        Assert.Empty(with.Validation.Intersect(with.HeldOut));
        Assert.Equal(25, with.Validation.Distinct().Count());
        Assert.Throws<ArgumentException>(() => SyntheticLanguage.Generate(seed, 10, 2, -1));
    }

    [Fact]
    public void TheSweepIsScoredOnValidationBlocksUnlessNoneAreAsked()
    {
        var spec = PretrainSpec.FromPreset("smoke");
        var (_, _, heldOut, validation) = PretrainExperiment.Data(spec);
        Assert.NotEmpty(validation);
        Assert.NotSame(heldOut, validation);
        Assert.Empty(validation.Select(b => string.Join(",", b.Tokens)).Intersect(heldOut.Select(b => string.Join(",", b.Tokens))));
        var (_, _, heldOut0, validation0) = PretrainExperiment.Data(spec with { ValidationDocuments = 0 });
        Assert.Same(heldOut0, validation0);
        Assert.Equal("ValidationDocuments", Assert.Throws<ArgumentException>(() => (spec with { ValidationDocuments = -1 }).Validate()).ParamName);
    }
}

using System.Text.RegularExpressions;
using Mora.Experiments;

namespace Mora.Tests;

/// <summary>The README's results are the committed files: the claims table is what <c>claims</c> generates from them, and
/// every code block introduced by "… wrote `figures/….txt`" is that file, byte for byte. A failure prints what the files
/// say (regenerate with <c>dotnet run -c Release -- claims --write-readme</c>, or paste the file).</summary>
public class ReadmeResultsTests
{
    static string Readme => TestSupport.Docs;      // README.md and the documents beside lib/, figures/, notebooks/

    [Fact]
    public void ClaimsTableIsGeneratedFromTheCommittedResults()
    {
        string readme = Readme;
        int a = readme.IndexOf(Claims.Begin, StringComparison.Ordinal), b = readme.IndexOf(Claims.End, StringComparison.Ordinal);
        Assert.True(a >= 0 && b > a, "README.md has no results section between the claims markers");
        string expected = Claims.Markdown(Claims.Evaluate(TestSupport.RepoRoot));
        Assert.True(readme[a..(b + Claims.End.Length)] == expected, $"README.md's results table differs from the committed files; they give:\n{expected}");
    }

    [Fact]
    public void EveryQuotedTableIsItsFile()
    {
        string readme = Readme;
        var quotes = Regex.Matches(readme, @"wrote `(figures/[^`]+\.txt)`[^\n]*\n+```\n(.*?)```", RegexOptions.Singleline);
        Assert.True(quotes.Count >= 3, $"expected the results' tables quoted from their files, found {quotes.Count}");
        foreach (Match q in quotes)
        {
            string path = Path.Combine(TestSupport.RepoRoot, q.Groups[1].Value);
            Assert.True(File.Exists(path), $"README quotes {q.Groups[1].Value}, which is not committed");
            Assert.True(File.ReadAllText(path) == q.Groups[2].Value, $"README's quote of {q.Groups[1].Value} differs from the file:\n{File.ReadAllText(path)}");
        }
    }
}

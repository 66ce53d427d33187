using Mora.Notebooks;

namespace Mora.Tests;

/// <summary>Notebook tables fit their cell: numbers to four significant digits, whole numbers from 1,000 up as they are,
/// a wide table scrolling inside the cell, text escaped.</summary>
public class NotebookTableTests
{
    sealed record Row(string Method, long Parameters, double Error, double Rate, double Tiny, double Big);

    [Fact]
    public void NumbersAreShortAndAWideTableScrollsInItsCell()
    {
        var rng = new Random(TestSupport.Seed());
        double error = 0.9 + 0.09 * rng.NextDouble();                  // a relative error with six or more digits
        var rows = new[] { new Row("lora <r8>", 19_520, error, 0.00316, 3.1e-7, 4_798_208.4) };
        string html = Notebook.TableHtml(Notebook.Table(rows));
        Assert.StartsWith("<div style=\"overflow-x:auto\"><table>", html);
        Assert.EndsWith("</table></div>", html);
        Assert.Contains("<td>lora &lt;r8&gt;</td>", html);
        Assert.Contains("<td>19520</td>", html);
        Assert.Contains($"<td>{error.ToString("G4", System.Globalization.CultureInfo.InvariantCulture)}</td>", html);
        Assert.Matches(@"<td>0\.9\d{1,3}</td>", html);                // four significant digits at most
        Assert.Contains("<td>0.00316</td>", html);                     // a learning rate keeps its three digits
        Assert.Contains("<td>3.1E-07</td>", html);
        Assert.Contains("<td>4798208</td>", html);
        Assert.Equal("-1234", Notebook.Cell(-1234.4));
        Assert.Equal("NaN", Notebook.Cell(double.NaN));
        // More rows than shown: the rest counted.
        var many = Enumerable.Range(0, 70).Select(i => rows[0] with { Parameters = i }).ToList();
        Assert.Contains("(10 more rows)", Notebook.TableHtml(Notebook.Table(many)));
    }
}

using System.Globalization;
using Mora.Bench;

namespace Mora.Tests;

/// <summary>The benchmark at its tiny preset, in a real process: every table has every row and every number is a number.
/// No timing is asserted (the machines are shared); the reference merge algorithm's ΔW must equal the kit's.</summary>
[Collection(ExternalProcesses.Name)]
[Trait("Speed", "Slow")]
public class BenchTests
{
    static string Dll => Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.dll");

    static List<Dictionary<string, string>> Csv(string path)
    {
        var lines = File.ReadAllLines(path);
        var header = lines[0].Split(',');
        return lines.Skip(1).Select(l => header.Zip(l.Split(',')).ToDictionary(p => p.First, p => p.Second)).ToList();
    }

    static double D(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    [Fact]
    public void TinyBenchWritesEveryRow()
    {
        string dir = TestSupport.TempDir();
        var (code, output) = NativeAndBuildTests.Run("dotnet", $"\"{Dll}\" bench --preset tiny --out \"{dir}\"");
        Assert.True(code == 0, output);
        var spec = BenchSpec.FromPreset("tiny");
        var designs = Enum.GetValues<MoraType>().Select(t => $"mora-{MoraTypes.Name(t)}").ToList();

        var layer = Csv(Path.Combine(dir, Benchmarks.LayerFile));
        foreach (var (d, k) in spec.Shapes)
            foreach (int tokens in spec.Tokens)
            {
                var rows = layer.Where(r => r["d"] == $"{d}" && r["k"] == $"{k}" && r["tokens"] == $"{tokens}").ToList();
                var expected = new List<string> { "base" };
                foreach (int r in spec.Ranks)
                    expected.AddRange(r == spec.Ranks.Min() ? ["lora", "dora", .. designs] : ["lora", .. designs]);
                Assert.Equal(expected, rows.Select(r => r["method"]));
                foreach (var row in rows)
                {
                    Assert.True(D(row["median_ms"]) > 0 && D(row["ratio_to_base"]) > 0, string.Join(",", row.Values));
                    Assert.True(D(row["matmul_flops_per_token"]) >= 4.0 * d * k);
                    if (row["method"] != "base") Assert.True(D(row["ratio_to_lora"]) > 0 && D(row["floor_ratio_to_lora"]) >= 0.99);
                    // MoRA at LoRA's budget: r̂² ≈ (d + k)·r.
                    if (row["method"].StartsWith("mora-")) Assert.InRange(D(row["parameters"]) / ((d + k) * D(row["r"])), 0.9, 1.1);
                }
            }

        var merge = Csv(Path.Combine(dir, Benchmarks.MergeFile));
        Assert.Equal(spec.MergeShapes.SelectMany(_ => designs), merge.Select(r => r["method"]));
        foreach (var row in merge)
        {
            Assert.True(D(row["materialise_ms"]) > 0 && D(row["merge_ms"]) > 0);
            Assert.True(D(row["merge_error_vs_delta_weight"]) <= 1e-6, $"{row["method"]}: in-place merge differs from W + ΔW by {row["merge_error_vs_delta_weight"]}");
            // The reference has types 1, 2, 3, 4, 6 only; the tiny shapes (64×64, 64×96 at r = 2) have more than one r̂-block.
            bool hasReference = MoraTypes.Reference.Any(t => $"mora-{MoraTypes.Name(t)}" == row["method"]);
            foreach (var column in new[] { "reference_delta_ms", "reference_merge_ms", "speed_up", "max_abs_diff" })
                Assert.True(hasReference ? D(row[column]) > 0 || column == "max_abs_diff" : row[column] == "", $"{row["method"]}: {column} = '{row[column]}'");
            if (hasReference)
                Assert.True(D(row["max_abs_diff"]) <= 1e-5, $"{row["method"]}: the reference merge algorithm's ΔW and the kit's differ by {row["max_abs_diff"]}");
            Assert.True(D(row["percent_of_layer_step"]) > 0);
        }

        var train = Csv(Path.Combine(dir, Benchmarks.TrainFile));
        Assert.Equal(["lora", "dora", .. designs, "full"], train.Select(r => r["method"]));
        Assert.All(train, r => Assert.True(D(r["tokens_per_second"]) > 0 && D(r["step_ms"]) > 0 && long.Parse(r["trainable_parameters"]) > 0));

        string report = File.ReadAllText(Path.Combine(dir, Benchmarks.ReportFile));
        foreach (var section in new[] { "Achieved rate", "One adapted layer", "Targets", "ΔW written out", "A whole training step" })
            Assert.Contains(section, report);
        Assert.Contains("bench --preset tiny", File.ReadAllText(Path.Combine(dir, Benchmarks.CommandFile)));
    }

    [Fact]
    public void BadBenchArgumentsNameTheOption()
    {
        foreach (var (args, option) in new[] { ("--preset huge", "--preset"), ("--shapes 0x64", "--shapes"), ("--repeats 0", "--repeats"), ("--tokens -1", "--tokens"), ("--device tpu", "tpu"), ("--train-steps 2", "--train-steps") })
        {
            var (code, output) = NativeAndBuildTests.Run("dotnet", $"\"{Dll}\" bench {args} --out \"{TestSupport.TempDir()}\"");
            Assert.True(code == 2, $"{args}: exit {code}\n{output}");
            Assert.Contains(option, output);
        }
    }
}

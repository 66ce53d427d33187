using System.CommandLine;
using Mora.Analysis;
using Mora.Experiments;
using Mora.Native;

namespace Mora.Cli;

/// <summary><c>rank</c>: r̂ at equal parameters, the reachable rank of ΔW per method, and (--runs) the spectra of learned ΔW.</summary>
static class RankCommand
{
    public static Command Create()
    {
        var names = new OptionNames();
        var shapes = new Option<string[]>("--shape") { Description = "layer shapes d x k, e.g. 4096x4096 (default: the LLaMA-2 7B shapes)", AllowMultipleArgumentsPerToken = true };
        var ranks = new Option<int[]>("--ranks") { Description = "LoRA ranks (default 8 16 32 64 128 256)", AllowMultipleArgumentsPerToken = true };
        var spectraShape = new Option<string>("--spectra-shape") { Description = "layer shape of the random-weight spectra table", DefaultValueFactory = _ => "256x256" };
        var spectraRank = new Option<int>("--spectra-rank") { Description = "LoRA rank of the random-weight spectra table", DefaultValueFactory = _ => 8 };
        var runs = names.Bind(new Option<string?>("--runs") { Description = "an experiment's --out folder: analyse the ΔW every finished run learned (rank, effective rank per layer)" }, "experimentDir");
        var tolerance = new Option<double>("--tolerance") { Description = "relative tolerance of the rank (σ ≥ tol · σ_max)", DefaultValueFactory = _ => 1e-3 };
        var command = new Command("rank", "r̂ for LoRA ranks at equal parameters, the largest rank of ΔW each method can reach, and (--runs) the spectra of learned ΔW.")
            { shapes, ranks, spectraShape, spectraRank, runs, tolerance };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            if (pr.GetValue(runs) is { } runsDir) return Learned(runsDir, pr.GetValue(tolerance));
            var layers = (pr.GetValue(shapes) ?? []).Select(s => { var (d, k) = CliSupport.ParseShape(s, "--shape"); return ($"{d}x{k}", d, k); }).ToList();
            var rs = pr.GetValue(ranks) ?? [];
            foreach (int r in rs) if (r <= 0) throw new ArgumentException($"--ranks: every rank must be positive, got {r}");
            var (sd, sk) = CliSupport.ParseShape(pr.GetValue(spectraShape)!, "--spectra-shape");
            RHatTable(layers, rs);
            Spectra(sd, sk, pr.GetValue(spectraRank));
            return 0;
        }));
        return command;
    }

    static int Learned(string runsDir, double tol)
    {
        if (!(tol > 0 && tol < 1)) throw new ArgumentException($"--tolerance must be in (0, 1), got {tol}");
        TorchRuntime.Ensure();
        var learned = LearnedSpectra.Analyze(runsDir, tol, Console.WriteLine);
        Console.WriteLine($"Learned ΔW (rank at σ ≥ {tol:G3}·σ_max, effective rank = exp of the spectral entropy), last checkpoint of each run in {Path.GetFullPath(runsDir)}:");
        Console.WriteLine(LearnedSpectra.Format(learned));
        string csv = Path.Combine(runsDir, "learned-spectra.csv");
        LearnedSpectra.WriteCsv(csv, learned);
        Console.WriteLine($"per layer: {Path.GetFullPath(csv)}");
        return 0;
    }

    static void RHatTable(List<(string, int, int)> layers, int[] ranks)
    {
        var rows = DesignReport.RHatTable(layers.Count > 0 ? layers : null, ranks.Length > 0 ? ranks : null);
        Console.WriteLine($"{"layer",-14} {"d",6} {"k",6} {"r",4} {"r̂ ref",6} {"r̂ floor",8} {"r̂ rot",6} {"LoRA params",12} {"MoRA params",12} {"ratio",6} {"max rank LoRA / sharing / rotation",36}");
        foreach (var x in rows)
            Console.WriteLine($"{x.Layer,-14} {x.D,6} {x.K,6} {x.R,4} {x.RHatReference,6} {x.RHatPaper,8} {x.RHatRotation,6} {x.LoraParameters,12:N0} {x.MoraParameters,12:N0} {(double)x.MoraParameters / x.LoraParameters,6:F4} {$"{x.LoraMaxRank} / {x.SharingMaxRank} / {x.RotationMaxRank}",36}");
    }

    static void Spectra(int sd, int sk, int sr)
    {
        var spectra = DesignReport.RandomSpectra(sd, sk, sr);
        Console.WriteLine();
        Console.WriteLine($"ΔW with random weights at equal parameters, {sd}x{sk}, r = {sr} (float64; σ_i/σ_1 shows how fast the spectrum decays):");
        var cols = spectra[0].Normalized.Keys.ToList();
        Console.WriteLine($"{"method",-32} {"params",8} {"rank",6} {"eff. rank",9} " + string.Join(" ", cols.Select(c => $"{"σ" + c + "/σ1",9}")));
        foreach (var x in spectra)
            Console.WriteLine($"{x.Method,-32} {x.Parameters,8:N0} {x.Rank,6} {x.EffectiveRank,9:F1} " + string.Join(" ", cols.Select(c => $"{x.Normalized[c],9:0.000}")));
    }
}

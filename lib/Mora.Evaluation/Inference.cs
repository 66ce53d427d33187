namespace Mora.Evaluation;

/// <summary>A paired comparison of two methods tested as declared in advance: the per-seed (or per-item) mean difference
/// A − B, its two-sided 95 % interval, and the p-value of the declared test (before any correction).</summary>
/// <param name="Difference">mean of A − B with its 95 % interval</param>
/// <param name="P">the test's p-value (one-sided for "beats", the larger of the two one-sided ones for TOST)</param>
/// <param name="Test">which test gave <paramref name="P"/>, in words ("paired t, one-sided", "TOST ±0.05", "paired bootstrap")</param>
public sealed record TestResult(MeanInterval Difference, double P, string Test);

/// <summary>
/// The hypothesis tests the claims use, each chosen before any run (a referee's rules, not the data's):
/// <list type="bullet">
/// <item>"A beats B": the one-sided paired t-test of H₀: mean(A − B) ≤ 0 (<see cref="Superiority"/>).</item>
/// <item>"A is on par with B": equivalence by two one-sided tests (TOST, Schuirmann 1987) against a margin δ fixed in
/// advance: H₀: |mean(A − B)| ≥ δ is rejected at level α when both one-sided tests reject, which is the same as the
/// (1 − 2α) interval lying inside (−δ, δ) (<see cref="Equivalence"/>).</item>
/// <item>Across a table of claims, Holm's step-down correction (Holm 1979) keeps the chance of any false claim ≤ α
/// (<see cref="Holm"/>).</item>
/// <item>Where test items are fixed (GSM8K's problems), seeds alone understate the error: the paired bootstrap resamples
/// items and seeds together (<see cref="PairedBootstrap"/>).</item>
/// </list>
/// </summary>
public static class Inference
{
    /// <summary>The q quantile of Student's t with <paramref name="df"/> degrees of freedom (bisection on the distribution
    /// function, to about 1e-10).</summary>
    public static double StudentTQuantile(double q, int df)
    {
        if (df < 1) throw new ArgumentOutOfRangeException(nameof(df), df, "degrees of freedom must be ≥ 1");
        if (!(q > 0 && q < 1)) throw new ArgumentOutOfRangeException(nameof(q), q, "a quantile's level lies strictly between 0 and 1");
        double lo = -1e3, hi = 1e3;
        for (int i = 0; i < 300 && hi - lo > 1e-12; i++)
        {
            double mid = (lo + hi) / 2;
            if (SeedStatistics.StudentTCdf(mid, df) < q) lo = mid; else hi = mid;
        }
        return (lo + hi) / 2;
    }

    static (double Mean, double Se, int Df, MeanInterval Interval) Moments(IReadOnlyList<double> d, string name)
    {
        if (d.Count < 2) throw new ArgumentException($"{name}: a test needs at least 2 paired values, got {d.Count}", name);
        var interval = SeedStatistics.Mean95(d);
        return (interval.Mean, interval.Sd / Math.Sqrt(d.Count), d.Count - 1, interval);
    }

    /// <summary>One-sided paired t-test that A beats B (H₀: mean(A − B) ≤ 0) on per-seed differences
    /// <paramref name="differences"/>. With no spread the p-value is 0 when every difference is positive, else 1.</summary>
    public static TestResult Superiority(IReadOnlyList<double> differences)
    {
        var (mean, se, df, interval) = Moments(differences, nameof(differences));
        double p = se == 0 ? (mean > 0 ? 0 : 1) : 1 - SeedStatistics.StudentTCdf(mean / se, df);
        return new(interval, p, "paired t, one-sided");
    }

    /// <summary>TOST: the larger of the two one-sided p-values for H₀: mean(A − B) ≤ −<paramref name="margin"/> and
    /// H₀: mean(A − B) ≥ +<paramref name="margin"/>. p &lt; α ⇔ the (1 − 2α) t interval lies inside (−δ, δ).</summary>
    public static TestResult Equivalence(IReadOnlyList<double> differences, double margin)
    {
        if (!(margin > 0) || !double.IsFinite(margin)) throw new ArgumentOutOfRangeException(nameof(margin), margin, "the equivalence margin must be positive");
        var (mean, se, df, interval) = Moments(differences, nameof(differences));
        double p;
        if (se == 0) p = Math.Abs(mean) < margin ? 0 : 1;
        else
        {
            double pLower = 1 - SeedStatistics.StudentTCdf((mean + margin) / se, df);   // H₀: mean ≤ −δ
            double pUpper = SeedStatistics.StudentTCdf((mean - margin) / se, df);       // H₀: mean ≥ +δ
            p = Math.Max(pLower, pUpper);
        }
        return new(interval, p, $"TOST ±{margin.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)}");
    }

    /// <summary>Holm's step-down adjusted p-values, in the order given: sort ascending, p̃₍ᵢ₎ = max_{j≤i} min(1, (m − j + 1)·p₍ⱼ₎).
    /// A claim holds at family-wise level α when its adjusted p-value is below α.</summary>
    public static double[] Holm(IReadOnlyList<double> p)
    {
        if (p.Any(x => double.IsNaN(x) || x < 0 || x > 1)) throw new ArgumentException($"p-values lie in [0, 1], got {string.Join(", ", p)}", nameof(p));
        int m = p.Count;
        var order = Enumerable.Range(0, m).OrderBy(i => p[i]).ThenBy(i => i).ToArray();
        var adjusted = new double[m];
        double running = 0;
        for (int rank = 0; rank < m; rank++)
        {
            running = Math.Max(running, Math.Min(1, (m - rank) * p[order[rank]]));
            adjusted[order[rank]] = running;
        }
        return adjusted;
    }

    /// <summary>
    /// The paired bootstrap over items × seeds for a fixed test set: <paramref name="a"/>[s][i] and <paramref name="b"/>[s][i]
    /// are method A's and B's scores (1 correct, 0 wrong, or any score) on item i with seed s (the same items, the same
    /// seeds). The design is crossed (every seed scores the same items), so each of <paramref name="resamples"/> draws one
    /// resample of the items and one of the seeds, both with replacement, and takes the mean of A − B over the drawn seeds
    /// on the drawn items (the same items for every drawn seed: drawing items afresh per seed would divide the items'
    /// sampling error by the number of seeds); the interval is the 2.5 and 97.5 percentiles. With few seeds the seed part is
    /// a plain bootstrap, without a small-sample correction, so it is not wider than a t interval over seeds would be. The p-value is for the declared test: with
    /// <paramref name="margin"/> null, one-sided superiority (the share of draws ≤ 0); with a margin, equivalence (the larger
    /// of the shares of draws ≤ −δ and ≥ +δ). Seeded, so the same inputs give the same result.
    /// </summary>
    public static TestResult PairedBootstrap(IReadOnlyList<IReadOnlyList<double>> a, IReadOnlyList<IReadOnlyList<double>> b,
        double? margin = null, int resamples = 10_000, int seed = 20240520)
    {
        int seeds = a.Count;
        if (seeds == 0 || b.Count != seeds) throw new ArgumentException($"both methods need the same seeds, got {a.Count} and {b.Count}", nameof(b));
        int items = a[0].Count;
        if (items == 0) throw new ArgumentException("no items", nameof(a));
        for (int s = 0; s < seeds; s++)
            if (a[s].Count != items || b[s].Count != items)
                throw new ArgumentException($"seed {s}: every seed scores the same {items} items, got {a[s].Count} and {b[s].Count}", nameof(a));
        if (resamples < 100) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "at least 100 resamples");
        var diff = new double[seeds, items];
        double observed = 0;
        for (int s = 0; s < seeds; s++)
            for (int i = 0; i < items; i++) { diff[s, i] = a[s][i] - b[s][i]; observed += diff[s, i]; }
        observed /= seeds * items;

        var rng = new Random(seed);
        var draws = new double[resamples];
        var drawn = new int[items];
        for (int r = 0; r < resamples; r++)
        {
            for (int i = 0; i < items; i++) drawn[i] = rng.Next(items);
            double sum = 0;
            for (int s = 0; s < seeds; s++)
            {
                int ss = rng.Next(seeds);
                foreach (int i in drawn) sum += diff[ss, i];
            }
            draws[r] = sum / (seeds * items);
        }
        Array.Sort(draws);
        double Percentile(double q) { double pos = q * (resamples - 1); int lo = (int)Math.Floor(pos); int hi = Math.Min(lo + 1, resamples - 1); return draws[lo] + (pos - lo) * (draws[hi] - draws[lo]); }
        double sd = Math.Sqrt(draws.Sum(x => (x - observed) * (x - observed)) / (resamples - 1));
        var interval = new MeanInterval(observed, Percentile(0.025), Percentile(0.975), seeds * items, sd);
        double Share(Func<double, bool> f) => (draws.Count(f) + 1.0) / (resamples + 1.0);    // add-one: never exactly 0
        double p = margin is { } m ? Math.Max(Share(x => x <= -m), Share(x => x >= m)) : Share(x => x <= 0);
        return new(interval, Math.Min(1, p), margin is { } mm ? $"paired bootstrap (items × seeds), TOST ±{mm.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)}" : "paired bootstrap (items × seeds), one-sided");
    }

    /// <summary>The first evaluated step at which a curve reaches <paramref name="threshold"/>, or <paramref name="budget"/>
    /// when it never does (censored at the budget: a run that did not get there counts as needing the whole budget, which
    /// is kind to it). <paramref name="curve"/> is (step, value) in step order.</summary>
    public static double StepsToThreshold(IReadOnlyList<(int Step, double Value)> curve, double threshold, int budget)
    {
        if (budget <= 0) throw new ArgumentOutOfRangeException(nameof(budget), budget, "the step budget must be positive");
        for (int i = 1; i < curve.Count; i++)
            if (curve[i].Step <= curve[i - 1].Step) throw new ArgumentException($"curve steps must increase ({curve[i - 1].Step} then {curve[i].Step})", nameof(curve));
        foreach (var (step, value) in curve)
            if (value >= threshold) return Math.Min(step, budget);
        return budget;
    }
}

namespace Mora.Evaluation;

/// <summary>A mean over seeds with its two-sided 95 % confidence interval (Student's t with n − 1 degrees of freedom);
/// for one value the interval is that value (no spread is known).</summary>
/// <param name="Mean">the mean</param>
/// <param name="Low">the interval's lower end</param>
/// <param name="High">the interval's upper end</param>
/// <param name="N">values (seeds)</param>
/// <param name="Sd">sample standard deviation (0 for one value)</param>
public sealed record MeanInterval(double Mean, double Low, double High, int N, double Sd)
{
    /// <summary>Half the interval's width (0 for one value).</summary>
    public double HalfWidth => (High - Low) / 2;

    /// <summary>Whether the whole interval lies above zero (used for paired differences).</summary>
    public bool AboveZero => N > 1 && Low > 0;
    public bool BelowZero => N > 1 && High < 0;

    /// <summary>"12.3 [10.1, 14.5]" with <paramref name="scale"/> applied (100 for percent) and
    /// <paramref name="format"/>; one value prints alone.</summary>
    public string Format(double scale = 1, string format = "0.0") =>
        N > 1 ? $"{(scale * Mean).ToString(format, System.Globalization.CultureInfo.InvariantCulture)} [{(scale * Low).ToString(format, System.Globalization.CultureInfo.InvariantCulture)}, {(scale * High).ToString(format, System.Globalization.CultureInfo.InvariantCulture)}]"
              : (scale * Mean).ToString(format, System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>
/// The statistics the reproductions report over seeds: <see cref="Mean95"/> (mean with a 95 % t interval) and
/// <see cref="Paired95"/> (the per-seed difference of two methods, which removes what a seed shares: its base model,
/// its data). Seeds are independent draws, so the t interval is the textbook one; with 5 seeds t(0.975, 4) = 2.776.
/// </summary>
public static class SeedStatistics
{
    /// <summary>Mean and 95 % interval of <paramref name="values"/> (NaN values are an error: a run that did not report).</summary>
    public static MeanInterval Mean95(IEnumerable<double> values)
    {
        var v = values.ToList();
        if (v.Count == 0) throw new ArgumentException("no values", nameof(values));
        if (v.Any(x => !double.IsFinite(x))) throw new ArgumentException($"a value is not finite ({string.Join(", ", v)})", nameof(values));
        double mean = v.Average();
        if (v.Count == 1) return new(mean, mean, mean, 1, 0);
        double sd = Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Count - 1));
        double half = StudentT975(v.Count - 1) * sd / Math.Sqrt(v.Count);
        return new(mean, mean - half, mean + half, v.Count, sd);
    }

    /// <summary>The mean per-seed difference <paramref name="a"/> − <paramref name="b"/> over the seeds both have, with its
    /// 95 % interval. Seeds present in only one are left out; none in common is an error.</summary>
    public static MeanInterval Paired95(IReadOnlyDictionary<int, double> a, IReadOnlyDictionary<int, double> b)
    {
        var seeds = a.Keys.Intersect(b.Keys).OrderBy(s => s).ToList();
        if (seeds.Count == 0) throw new ArgumentException($"no seed in common (first: {string.Join(",", a.Keys)}; second: {string.Join(",", b.Keys)})", nameof(b));
        return Mean95(seeds.Select(s => a[s] - b[s]));
    }

    /// <summary>The 0.975 quantile of Student's t with <paramref name="df"/> degrees of freedom (to about 1e-10), found by
    /// bisection on the distribution function.</summary>
    public static double StudentT975(int df)
    {
        if (df < 1) throw new ArgumentOutOfRangeException(nameof(df), df, "degrees of freedom must be ≥ 1");
        double lo = 0, hi = 100;
        for (int i = 0; i < 200 && hi - lo > 1e-12; i++)
        {
            double mid = (lo + hi) / 2;
            if (StudentTCdf(mid, df) < 0.975) lo = mid; else hi = mid;
        }
        return (lo + hi) / 2;
    }

    /// <summary>P(T ≤ t) for Student's t with <paramref name="df"/> degrees of freedom, through the regularised incomplete beta
    /// function: P(|T| &gt; t) = I_{df/(df+t²)}(df/2, 1/2).</summary>
    public static double StudentTCdf(double t, int df)
    {
        double x = df / (df + t * t);
        double tail = 0.5 * RegularizedBeta(x, df / 2.0, 0.5);
        return t >= 0 ? 1 - tail : tail;
    }

    /// <summary>I_x(a, b) by Lentz's continued fraction (Numerical Recipes §6.4).</summary>
    static double RegularizedBeta(double x, double a, double b)
    {
        if (x <= 0) return 0;
        if (x >= 1) return 1;
        double lnFront = LogGamma(a + b) - LogGamma(a) - LogGamma(b) + a * Math.Log(x) + b * Math.Log(1 - x);
        if (x > (a + 1) / (a + b + 2)) return 1 - RegularizedBeta(1 - x, b, a);
        const double tiny = 1e-300;
        double f = 1, c = 1, d = 1 - (a + b) * x / (a + 1);
        if (Math.Abs(d) < tiny) d = tiny;
        d = 1 / d; f = d;
        for (int m = 1; m <= 300; m++)
        {
            double num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
            d = 1 + num * d; if (Math.Abs(d) < tiny) d = tiny; c = 1 + num / c; if (Math.Abs(c) < tiny) c = tiny; d = 1 / d; f *= d * c;
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
            d = 1 + num * d; if (Math.Abs(d) < tiny) d = tiny; c = 1 + num / c; if (Math.Abs(c) < tiny) c = tiny; d = 1 / d;
            double delta = d * c; f *= delta;
            if (Math.Abs(delta - 1) < 1e-15) break;
        }
        return Math.Exp(lnFront) * f / a;
    }

    /// <summary>ln Γ(x) for x &gt; 0 (Lanczos, g = 7, 9 terms; relative error about 1e-15).</summary>
    static double LogGamma(double x)
    {
        double[] g = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
            12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
        if (x < 0.5) return Math.Log(Math.PI / Math.Abs(Math.Sin(Math.PI * x))) - LogGamma(1 - x);
        x -= 1;
        double s = g[0];
        for (int i = 1; i < 9; i++) s += g[i] / (x + i);
        double t = x + 7.5;
        return 0.5 * Math.Log(2 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(s);
    }
}

namespace Mora.Training;

/// <summary>Where a run is, for a progress display.</summary>
public sealed record TrainProgress(long Step, long TotalSteps, double Loss, double LearningRate, double TokensPerSecond, TimeSpan Elapsed,
    IReadOnlyDictionary<string, double> Metrics, string Phase = "train")
{
    public double Fraction => TotalSteps == 0 ? 1 : (double)Step / TotalSteps;
    public TimeSpan? Remaining => Step == 0 ? null : TimeSpan.FromSeconds(Elapsed.TotalSeconds / Step * (TotalSteps - Step));

    /// <summary>"step 40/100 (40 %) loss 1.234 lr 1.0e-03 5,120 tok/s 0:12 elapsed, 0:18 left char_acc 0.75".</summary>
    public override string ToString()
    {
        string metrics = string.Concat(Metrics.Select(kv => $" {kv.Key} {kv.Value:0.####}"));
        string left = Remaining is { } r ? $", {r:h\\:mm\\:ss} left" : "";
        return $"{Phase} step {Step}/{TotalSteps} ({Fraction:P0}) loss {Loss:0.####} lr {LearningRate:0.0e+00} {TokensPerSecond:N0} tok/s {Elapsed:h\\:mm\\:ss} elapsed{left}{metrics}";
    }
}

/// <summary>How a run's training progress is shown when no one passes a <see cref="IProgress{T}"/> of their own (the
/// experiments and a <see cref="Trainer"/> with <see cref="TrainConfig.ShowProgress"/>): chosen once per process, at the
/// edge, as the thread count is. The default is <see cref="ConsoleProgress"/>; <c>notebooks/setup.dib</c> sets one live
/// line per cell (a <see cref="LineProgress"/> on a displayed value), so a saved notebook keeps each cell's last state
/// instead of a line every 10 % of every run.</summary>
public static class ProgressDisplay
{
    static Func<string, IProgress<TrainProgress>> _for = label => new ConsoleProgress(label);

    /// <summary>The progress of the run labelled with its name (a run folder's name, or "" when it has none).</summary>
    public static Func<string, IProgress<TrainProgress>> For
    {
        get => _for;
        set => _for = value ?? throw new ArgumentNullException(nameof(value), "ProgressDisplay.For: give a factory (label => new ConsoleProgress(label) is the default)");
    }
}

/// <summary>Progress on a console: a redrawn bar on a terminal; a plain line every 10 % when output is redirected (logs, CI).
/// A notebook sets <see cref="ProgressDisplay.For"/> to update a displayed value instead.</summary>
public sealed class ConsoleProgress(string label = "") : IProgress<TrainProgress>
{
    int _lastDecile = -1;
    readonly bool _terminal = !Console.IsOutputRedirected;

    public void Report(TrainProgress p)
    {
        string prefix = label.Length > 0 ? label + " " : "";
        if (_terminal)
        {
            const int width = 24;
            int filled = (int)Math.Round(p.Fraction * width);
            string line = $"\r{prefix}[{new string('#', filled)}{new string('.', width - filled)}] {p}";
            int pad = Math.Max(0, Math.Min(WindowWidth() - 1, 200) - line.Length);
            Console.Write(line + new string(' ', pad));
            if (p.Step >= p.TotalSteps) Console.WriteLine();
            return;
        }
        int decile = (int)(p.Fraction * 10);
        if (decile == _lastDecile && p.Step < p.TotalSteps) return;
        _lastDecile = decile;
        Console.WriteLine(prefix + p);
    }

    static int WindowWidth()
    {
        try { return Console.WindowWidth; } catch (IOException) { return 0; }
    }
}

/// <summary>Progress as one line of text handed to <paramref name="update"/> at most every <paramref name="interval"/> (and always
/// at the last step): in a notebook, <c>var d = "".Display(); trainer.Progress = new LineProgress(s =&gt; d.Update(s));</c>
/// gives a live-updating line.</summary>
public sealed class LineProgress(Action<string> update, TimeSpan? interval = null) : IProgress<TrainProgress>
{
    readonly TimeSpan _interval = interval ?? TimeSpan.FromSeconds(0.5);
    DateTime _last = DateTime.MinValue;

    public void Report(TrainProgress p)
    {
        var now = DateTime.UtcNow;
        if (p.Step < p.TotalSteps && now - _last < _interval) return;
        _last = now;
        update(p.ToString());
    }
}

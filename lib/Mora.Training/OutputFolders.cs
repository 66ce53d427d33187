namespace Mora.Training;

/// <summary>
/// Where a job may write (its output folder, its figures folder): never the file system's root, a system folder or
/// anything below one, the home folder itself, a git checkout's root, an existing file, a path whose <c>..</c> leads away from the folder it
/// names, or a folder that holds another job's published results (a <c>COMMAND.txt</c> of another command) unless the
/// caller says to overwrite. Each check throws <see cref="ArgumentException"/> naming the option, before anything is written.
/// </summary>
public static class OutputFolders
{
    /// <summary>Folders no output goes into, nor below (Linux, macOS and Windows system trees).</summary>
    public static IReadOnlyList<string> SystemFolders { get; } =
    [
        "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev", "/proc", "/sys", "/run",
        "/System", "/Library", "/Applications", @"C:\Windows", @"C:\Program Files", @"C:\Program Files (x86)",
    ];

    /// <summary>Folders an output may go below but not be itself: a job would scatter its files among everyone's.</summary>
    public static IReadOnlyList<string> SharedFolders { get; } =
    [
        "/home", "/Users", "/root", "/tmp", "/var", "/var/tmp", "/opt", "/srv", "/mnt", "/media",
        Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), Path.GetTempPath(),
    ];

    /// <summary>The full path of <paramref name="path"/> once it passes every check (<paramref name="option"/> names it in
    /// errors). <paramref name="systemFolders"/> and <paramref name="sharedFolders"/> replace the lists (tests use a
    /// temporary folder as the "system").</summary>
    public static string Check(string path, string option, IReadOnlyList<string>? systemFolders = null, IReadOnlyList<string>? sharedFolders = null)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new ArgumentException($"{option}: give a folder", option);
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        if (Path.GetPathRoot(full) is { } root && Path.TrimEndingDirectorySeparator(root) == full || full.Length == 0)
            throw new ArgumentException($"{option} {path}: the file system's root ({full}) is not an output folder; name a folder of its own", option);
        var parts = path.Replace('\\', '/').Split('/', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 1; i < parts.Length; i++)
            if (parts[i] == ".." && parts[..i].Any(p => p is not ".." and not "."))
                throw new ArgumentException($"{option} {path}: its '..' leads out of {string.Join('/', parts[..i])} to {full}; write the folder you mean", option);
        // the folder as named and where its symbolic links really lead (a link in runs/ to /etc is /etc)
        string real;
        try { real = Path.TrimEndingDirectorySeparator(Mora.IO.SafeFile.RealPath(full)); }
        catch (IOException e) { throw new ArgumentException($"{option} {path}: its symbolic links cannot be followed ({e.Message})", option); }
        foreach (var system in systemFolders ?? SystemFolders)
        {
            string named = Path.TrimEndingDirectorySeparator(Path.GetFullPath(system)), resolved = Path.TrimEndingDirectorySeparator(Mora.IO.SafeFile.RealPath(named));
            foreach (var p in (real == full ? [full] : new[] { full, real }).Where(p => !IsRemovableMedia(p)))
                foreach (var s in resolved == named ? [named] : new[] { named, resolved })
                    if (p == s || p.StartsWith(s + Path.DirectorySeparatorChar, PathComparison))
                    throw new ArgumentException($"{option} {path}: {(p == full ? full : $"{full} is a symbolic link to {real}, which")} is {(p == s ? "" : "inside ")}the system folder {s}; name a folder of your own", option);
        }
        if (real != full && Path.GetPathRoot(real) is { } realRoot && Path.TrimEndingDirectorySeparator(realRoot) == real)
            throw new ArgumentException($"{option} {path}: {full} is a symbolic link to the file system's root; name a folder of its own", option);
        foreach (var shared in sharedFolders ?? SharedFolders)
            if (shared.Length > 0 && (full.Equals(Path.TrimEndingDirectorySeparator(Path.GetFullPath(shared)), PathComparison) ||
                                      real.Equals(Path.TrimEndingDirectorySeparator(Mora.IO.SafeFile.RealPath(Path.GetFullPath(shared))), PathComparison)))
                throw new ArgumentException($"{option} {path}: {(real == full ? full : $"{full} (a link to {real})")} is a shared folder itself; name a folder inside it", option);
        if (File.Exists(full)) throw new ArgumentException($"{option} {path}: {full} is a file, not a folder", option);
        if (Directory.Exists(Path.Combine(full, ".git")) || File.Exists(Path.Combine(full, ".git")))
            throw new ArgumentException($"{option} {path}: {full} is a git checkout's root (its runs/ and figures/ hold every job's); name a folder inside it, e.g. runs/<name>", option);
        return full;
    }

    /// <summary>/run/media/&lt;user&gt;/… and /media/…: where Linux desktops mount removable drives (under /run, a system folder).</summary>
    static bool IsRemovableMedia(string path) => !OperatingSystem.IsWindows() && path.StartsWith("/run/media/", StringComparison.Ordinal);

    static StringComparison PathComparison => OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;

    /// <summary>Refuses <paramref name="folder"/> when it holds another job's published results: a <c>COMMAND.txt</c> of
    /// another command than <paramref name="command"/> (options that do not change the results aside: where it writes,
    /// threads, device, --fresh, --overwrite), unless <paramref name="sameJob"/> says the folder's settings are this job's
    /// or <paramref name="overwrite"/>. The refusal names the job the folder holds (its command), not this one.</summary>
    public static void CheckNotAnotherJobs(string folder, string option, string command, bool overwrite, Func<string, bool>? sameJob = null)
    {
        string path = Path.Combine(folder, "COMMAND.txt");
        if (overwrite || !File.Exists(path) || sameJob?.Invoke(folder) == true) return;
        string theirs = File.ReadLines(path).FirstOrDefault(l => l.Trim().Length > 0)?.Trim() ?? "";
        if (Normalise(theirs) == Normalise(command)) return;
        throw new ArgumentException($"{option} {folder} holds the published results of another job: {JobOf(theirs)} ({Path.GetRelativePath(Environment.CurrentDirectory, Path.GetFullPath(path))}: {theirs}); " +
            $"choose another folder, or pass --overwrite to replace them", option);
    }

    /// <summary>The command without the environment, the invocation, quotes and the options that do not change results:
    /// what two runs of one job share.</summary>
    static string Normalise(string command)
    {
        var words = command.Replace("\"", "").Replace("'", "").Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
        int at = words.IndexOf("--");
        var kept = new List<string>();
        var rest = (at >= 0 ? words.Skip(at + 1) : words.SkipWhile(w => w.Contains('=') || w is "dotnet" or "run" or "-c" or "Release")).ToList();
        for (int i = 0; i < rest.Count; i++)
        {
            if (rest[i] is "--fresh" or "--overwrite") continue;
            if (rest[i] is "--out" or "--figures" or "--threads" or "--device") { i++; continue; }
            kept.Add(rest[i]);
        }
        return string.Join(' ', kept);
    }

    /// <summary>"a memorization job (preset cpu-hour)": the job a published command ran, by its command.</summary>
    static string JobOf(string command)
    {
        var words = Normalise(command).Split(' ');
        string kind = words.FirstOrDefault(w => !w.StartsWith('-')) ?? "?";
        int preset = Array.IndexOf(words, "--preset");
        return $"a {kind} job{(preset >= 0 && preset + 1 < words.Length ? $" (preset {words[preset + 1]})" : "")}";
    }
}

namespace Mora.IO;

/// <summary>
/// Checks a file before anything opens it, for the readers of user files (safetensors, config.json, index files):
/// it exists, is not a folder, is not empty and not larger than the caller's limit, and — when a folder is given — its
/// real location (every symbolic link on the way resolved) lies inside that folder. On Linux a pipe (FIFO), a socket
/// and a device (<c>/dev/zero</c>, <c>/dev/urandom</c>) all report size 0, so the size check refuses them without
/// opening them (opening a FIFO would wait for a writer; a device would stream forever); the containment check refuses
/// a link to <c>/dev/zero</c> or to a file outside the folder before its bytes are read, so no error can show them.
/// One exception to containment: the Hugging Face hub cache stores a checkpoint as <c>…/models--org--name/snapshots/&lt;rev&gt;/file</c>
/// linked to <c>…/models--org--name/blobs/&lt;hash&gt;</c>, and that <c>blobs</c> folder counts as inside.
/// </summary>
public static class SafeFile
{
    /// <summary>The largest JSON file (config.json, generation_config.json, an index) read: 16 MiB.</summary>
    public const long MaxJsonBytes = 16L << 20;

    /// <summary>Returns the file's length after the checks above; <paramref name="refuse"/> makes the exception for a
    /// refused file (so each format throws its own documented type). A missing file is a <see cref="FileNotFoundException"/>.</summary>
    /// <param name="path">the file</param>
    /// <param name="folder">the folder it must lie in (null: anywhere)</param>
    /// <param name="minBytes">the smallest acceptable length (at least 1)</param>
    /// <param name="maxBytes">the largest acceptable length</param>
    /// <param name="refuse">builds the exception from the full path and the problem</param>
    public static long Check(string path, string? folder, long minBytes, long maxBytes, Func<string, string, Exception> refuse)
    {
        string full = Path.GetFullPath(path);
        var info = new FileInfo(full);
        if (!info.Exists && info.LinkTarget is null)
        {
            if (Directory.Exists(full)) throw refuse(full, $"is a folder, not a file");
            throw new FileNotFoundException($"file not found: {full}", full);
        }
        string real;
        try { real = RealPath(full); }
        catch (IOException e) { throw refuse(full, $"its symbolic links cannot be followed ({e.Message})"); }
        if (folder is not null && !Inside(real, folder))
            throw refuse(full, $"is a link to a file outside the folder {Path.GetFullPath(folder)}; the kit reads only files inside the model folder (copy the file in instead)");
        var target = new FileInfo(real);
        if (!target.Exists)
        {
            if (Directory.Exists(real)) throw refuse(full, $"is a folder, not a file");
            throw new FileNotFoundException($"file not found: {full}{(real != full ? $" (a link to {real}, which does not exist)" : "")}", full);
        }
        long length = target.Length;
        if (length == 0)
            throw refuse(full, $"is empty, or not a regular file (a pipe, socket or device reports no size), so it is not read");
        if (length < minBytes) throw refuse(full, $"is {length} bytes, shorter than the {minBytes} bytes the format needs (truncated?)");
        if (length > maxBytes) throw refuse(full, $"is {length:N0} bytes, more than the {maxBytes:N0} this reader accepts");
        return length;
    }

    /// <summary>Reads a checked text file (UTF-8) of at most <paramref name="maxBytes"/>.</summary>
    public static string ReadText(string path, string? folder, long maxBytes, Func<string, string, Exception> refuse)
    {
        long length = Check(path, folder, 1, maxBytes, refuse);
        using var stream = new FileStream(Path.GetFullPath(path), FileMode.Open, FileAccess.Read, FileShare.Read);
        if (!stream.CanSeek || stream.Length != length) throw refuse(Path.GetFullPath(path), $"changed while it was read, or is not a regular file");
        using var reader = new StreamReader(stream, System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        return reader.ReadToEnd();
    }

    /// <summary>True when <paramref name="realPath"/> (already resolved) lies strictly inside <paramref name="folder"/>'s real
    /// location, or in the hub cache's <c>blobs</c> folder of the snapshot <paramref name="folder"/> is.</summary>
    public static bool Inside(string realPath, string folder)
    {
        string root = RealPath(Path.GetFullPath(folder));
        if (Under(realPath, root)) return true;
        // Hugging Face hub cache: <repo>/snapshots/<revision>/<file> → <repo>/blobs/<hash>
        var revision = new DirectoryInfo(Path.GetFullPath(folder));
        if (revision.Parent is { Name: "snapshots", Parent: { } repo })
            return Under(realPath, Path.Combine(RealPath(repo.FullName), "blobs"));
        return false;
    }

    static bool Under(string path, string root)
    {
        string prefix = Path.EndsInDirectorySeparator(root) ? root : root + Path.DirectorySeparatorChar;
        return path.StartsWith(prefix, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);
    }

    /// <summary>The path with every symbolic link in it resolved (like POSIX realpath), at most 40 links deep.</summary>
    public static string RealPath(string path)
    {
        int hops = 0;
        string current = Path.GetFullPath(path);
        while (true)
        {
            string root = Path.GetPathRoot(current)!;
            var parts = current[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
            string resolved = root;
            bool restarted = false;
            for (int i = 0; i < parts.Length; i++)
            {
                string next = Path.Combine(resolved, parts[i]);
                string? link = new FileInfo(next).LinkTarget;
                if (link is null) { resolved = next; continue; }
                if (++hops > 40) throw new IOException($"more than 40 symbolic links in {path} (a loop?)");
                string target = Path.IsPathRooted(link) ? link : Path.Combine(resolved, link);
                current = Path.GetFullPath(Path.Combine([target, .. parts[(i + 1)..]]));
                restarted = true;
                break;
            }
            if (!restarted) return resolved;
        }
    }
}

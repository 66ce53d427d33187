using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.IO;
using Mora.Model;

namespace Mora.Training;

/// <summary>
/// What keeps a folder of runs sound, for the trainer's checkpoints and the experiments' folders alike: files identified
/// by content (SHA-256, and a folder's <c>checksums.json</c> that says when one was damaged or overwritten), and one
/// writer a folder (an OS lock on <c>.lock</c>, released when its process ends; the holder named in <c>.writer</c>), and model
/// folders written whole with their checksums, reused only while complete.
/// </summary>
public static class RunFolder
{
    public const string LockFile = ".lock", WriterFile = ".writer", ChecksumsFile = "checksums.json";
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>SHA-256 of a file's content, lower-case hex.</summary>
    public static string Sha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Takes <paramref name="outDir"/>'s lock for one writer, or refuses naming the process that holds it.
    /// The lock is the operating system's: <c>.lock</c> held open exclusively (an advisory <c>flock</c> on Linux and
    /// macOS) for as long as the run lasts, so two runs racing for a folder cannot both win and a run that dies, even
    /// by SIGKILL, releases it with its process. The holder (pid, host, start time) is written to <c>.writer</c> for
    /// the refusal's message; a <c>.writer</c> found when the lock is free was left by a run that is gone, and is taken
    /// over, saying so. A <c>.lock</c> written by an earlier version (pid, host and time inside it, no OS lock) that
    /// names a live process of this host is still honoured. <c>.lock</c> stays in the folder (empty) after release:
    /// deleting it would let a run that opened it just before lock a file no later run sees. Dispose to release.</summary>
    public static IDisposable Lock(string outDir, TextWriter? output = null)
    {
        Directory.CreateDirectory(outDir);
        string path = Path.Combine(outDir, LockFile), writer = Path.Combine(outDir, WriterFile);
        string host = Environment.MachineName;
        var info = new FileInfo(path);
        if (info.LinkTarget is not null || Directory.Exists(path))
            throw new ArgumentException($"{Show(path)} is {(Directory.Exists(path) ? "a folder" : "a symbolic link")}, not the kit's lock file; remove it", nameof(outDir));
        FileStream held;
        try { held = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
        catch (UnauthorizedAccessException e) { throw new ArgumentException($"{Show(outDir)}: cannot write its lock file {Show(path)} ({e.Message})", nameof(outDir), e); }
        catch (IOException e) when (!File.Exists(path))      // no lock file to be held: a read-only or full disk
        { throw new ArgumentException($"{Show(outDir)}: cannot take its lock file {Show(path)} ({e.Message})", nameof(outDir), e); }
        catch (IOException)
        {
            string[] holder = (TryRead(writer) ?? "").Split(' ', 3);
            bool parsed = holder.Length >= 2 && int.TryParse(holder[0], out _);
            string who = parsed ? $"process {holder[0]} on {holder[1]}{(holder.Length > 2 ? $", since {holder[2]}" : "")}" : "another process";
            throw new ArgumentException($"{Show(outDir)} is being written by another run ({who}; {Show(path)}); wait for it to finish", nameof(outDir));
        }
        try
        {
            // an earlier version's lock: its holder inside the file, honoured while that process lives
            var head = new char[256];
            int n = new StreamReader(held, leaveOpen: true).ReadBlock(head, 0, head.Length);
            string old = new string(head, 0, n).Trim();
            string[] stale = (old.Length > 0 ? old : TryRead(writer) ?? "").Split(' ', 3);
            if (stale.Length >= 2 && int.TryParse(stale[0], out int pid))
            {
                if (old.Length > 0 && stale[1] == host && pid != Environment.ProcessId && Alive(pid))
                    throw new ArgumentException($"{Show(outDir)} is being written by another run (process {pid} on {host}, an earlier version's lock; {Show(path)}); " +
                        "wait for it to finish", nameof(outDir));
                if (old.Length > 0 && stale[1] != host)
                    throw new ArgumentException($"{Show(outDir)} holds an earlier version's lock of process {pid} on another host, {stale[1]} ({Show(path)}): " +
                        "this host cannot tell whether that run is over; delete the lock file when it is", nameof(outDir));
                output?.WriteLine($"{Show(outDir)}: removing a stale lock left by process {pid}, which is gone");
            }
            held.SetLength(0);
            AtomicFile.WriteText(writer, $"{Environment.ProcessId} {host} {DateTime.UtcNow:O}");
            return new FolderLock(held, writer);
        }
        catch { held.Dispose(); throw; }
    }

    static string? TryRead(string path)
    {
        try { return File.ReadAllText(path); } catch (IOException) { return null; }
    }

    static bool Alive(int pid)
    {
        try { using var p = Process.GetProcessById(pid); return !p.HasExited; }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException) { return false; }
    }

    sealed class FolderLock(FileStream held, string writer) : IDisposable
    {
        public void Dispose()
        {
            try { File.Delete(writer); } catch (IOException) { }
            held.Dispose();
        }
    }

    /// <summary>Writes <c>checksums.json</c> in <paramref name="dir"/>: the SHA-256 of every other file there.</summary>
    public static void WriteChecksums(string dir)
    {
        var files = new JsonObject();
        foreach (var f in Directory.GetFiles(dir).Select(Path.GetFileName).Where(f => f != ChecksumsFile).Order(StringComparer.Ordinal))
            files[f!] = Sha256(Path.Combine(dir, f!));
        AtomicFile.WriteText(Path.Combine(dir, ChecksumsFile), new JsonObject { ["sha256"] = files }.ToJsonString(Indented));
    }

    /// <summary>What no longer matches a folder's checksums.json, or null when every file does.</summary>
    public static string? ChecksumProblems(string dir)
    {
        string sums = Path.Combine(dir, ChecksumsFile);
        JsonObject? files;
        try { files = JsonNode.Parse(File.ReadAllText(sums))?["sha256"] as JsonObject; }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException) { return $"{ChecksumsFile} is unreadable ({e.Message})"; }
        if (files is null) return $"{ChecksumsFile} has no 'sha256' object";
        foreach (var (name, sha) in files)
        {
            if (name.Length == 0 || name is "." or ".." || name.IndexOfAny(['/', '\\']) >= 0)
                return $"{ChecksumsFile} names '{name}', which is not a file of this folder";
            string path = Path.Combine(dir, name);
            try { SafeFile.Check(path, dir, 1, long.MaxValue, (f, problem) => new FormatException($"{f}: {problem}")); }
            catch (Exception e) when (e is FormatException or FileNotFoundException) { return e is FileNotFoundException ? $"{name} is missing" : e.Message; }
            if (!File.Exists(path)) return $"{name} is missing";
            if (sha is not JsonValue v || !v.TryGetValue(out string? expected)) return $"{ChecksumsFile}: the checksum of {name} is not a string";
            if (Sha256(path) != expected) return $"{name} does not match its checksum (damaged or overwritten)";
        }
        return null;
    }

    /// <summary>Whether <paramref name="modelDir"/> holds a complete model (a pretrained base) to reuse: config.json and the weights, matching
    /// their checksums. A base written by an earlier version (no checksums.json) with both files is reused, and its
    /// checksums recorded. Else <paramref name="why"/> says what is missing or changed.</summary>
    public static bool IsCompleteModel(string modelDir, out string why)
    {
        why = "";
        if (!Directory.Exists(modelDir)) { why = "not written yet"; return false; }
        foreach (var f in new[] { ModelIO.ConfigFile, ModelIO.WeightsFile })
            if (!File.Exists(Path.Combine(modelDir, f))) { why = $"it has no {f}"; return false; }
        string sums = Path.Combine(modelDir, ChecksumsFile);
        if (!File.Exists(sums)) { WriteChecksums(modelDir); return true; }
        if (ChecksumProblems(modelDir) is { } problem) { why = problem; return false; }
        return true;
    }

    /// <summary>Saves a model (a pretrained base) as one step: written into a temporary folder beside <paramref name="modelDir"/> with its
    /// checksums, then renamed into place (an incomplete earlier folder is replaced).</summary>
    public static void SaveModel(LlamaForCausalLM model, string modelDir)
    {
        string parent = Path.GetDirectoryName(Path.GetFullPath(modelDir))!;
        string tmp = Path.Combine(parent, $".{Path.GetFileName(modelDir)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            AdaptedModelIO.Save(model, tmp);       // its base weights, whether or not adapters were injected (as before the split)
            WriteChecksums(tmp);
            if (Directory.Exists(modelDir)) Directory.Delete(modelDir, recursive: true);
            Directory.Move(tmp, modelDir);
        }
        finally { if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true); }
    }

    static string Show(string path) => Path.GetRelativePath(Environment.CurrentDirectory, Path.GetFullPath(path));
}

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
/// writer a folder (<c>.lock</c> with the holder's pid and host; a lock whose process is gone is taken over), and model
/// folders written whole with their checksums, reused only while complete.
/// </summary>
public static class RunFolder
{
    public const string LockFile = ".lock", ChecksumsFile = "checksums.json";
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>SHA-256 of a file's content, lower-case hex.</summary>
    public static string Sha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Takes <paramref name="outDir"/>'s lock (<c>.lock</c>: pid, host, start time) for one writer, or refuses
    /// naming the process that holds it. A lock left by a process of this host that is gone is taken over, saying so.
    /// Dispose to release.</summary>
    public static IDisposable Lock(string outDir, TextWriter? output = null)
    {
        Directory.CreateDirectory(outDir);
        string path = Path.Combine(outDir, LockFile);
        string host = Environment.MachineName;
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                using (var s = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
                using (var w = new StreamWriter(s))
                    w.Write($"{Environment.ProcessId} {host} {DateTime.UtcNow:O}");
                return new FolderLock(path);
            }
            catch (IOException) when (File.Exists(path) && attempt == 0)
            {
                string[] holder = (TryRead(path) ?? "").Split(' ', 3);
                bool parsed = holder.Length >= 2 && int.TryParse(holder[0], out _);
                int pid = parsed ? int.Parse(holder[0]) : -1;
                if (parsed && holder[1] == host && !Alive(pid))
                {
                    output?.WriteLine($"{Show(outDir)}: removing a stale lock left by process {pid}, which is gone");
                    File.Delete(path);
                    continue;
                }
                string who = parsed ? $"process {pid} on {holder[1]}{(holder.Length > 2 ? $", since {holder[2]}" : "")}" : "an unknown process (unreadable lock)";
                throw new ArgumentException($"{Show(outDir)} is being written by another run ({who}; {Show(path)}); wait for it to finish, " +
                    $"or delete {Show(path)} if that process is gone", nameof(outDir));
            }
        }
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

    sealed class FolderLock(string path) : IDisposable
    {
        public void Dispose() { try { File.Delete(path); } catch (IOException) { } }
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
        catch (JsonException e) { return $"{ChecksumsFile} is unreadable ({e.Message})"; }
        if (files is null) return $"{ChecksumsFile} has no 'sha256' object";
        foreach (var (name, sha) in files)
        {
            string path = Path.Combine(dir, name);
            if (!File.Exists(path)) return $"{name} is missing";
            if (Sha256(path) != sha?.GetValue<string>()) return $"{name} does not match its checksum (damaged or overwritten)";
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

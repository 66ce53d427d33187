using System.Globalization;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Mora.Data;
using Mora.IO;

namespace Mora.Tests;

/// <summary>
/// Property tests (FsCheck 3): thousands of random and mutated inputs against the three readers of user files. Each
/// reader must either succeed or throw its documented exception (<see cref="SafeTensorsFormatException"/>,
/// <see cref="DatasetFormatException"/>; the answer extractor never throws), within a time bound (no hang), and
/// without allocating memory out of proportion to the file (no allocation sized by a header field).
/// FsCheck prints the seed of a failing case (rerun it with <c>Config.Replay</c>).
/// </summary>
public class PropertyTests
{
    /// <summary>Per case: the managed allocation bound relative to the file.</summary>
    const long AllocationSlack = 4 << 20;     // bytes allowed beyond 32× the file length

    /// <summary>Runs <paramref name="f"/> under <see cref="TestSupport.Unhung"/> (a thread of its own, a hang guard, not a
    /// measurement) and returns its result; what it threw is rethrown as thrown (the reader's own exception).</summary>
    static T Bounded<T>(Func<T> f, string what)
    {
        T result = default!;
        var thrown = TestSupport.Unhung(() => result = f(), what);
        if (thrown is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(thrown).Throw();
        return result;
    }

    // ---- safetensors

    /// <summary>Valid files of random dtypes and shapes, the seeds of the mutations.</summary>
    static readonly Lazy<byte[][]> SafeTensorsSeeds = new(() =>
    {
        var rng = new Random(TestSupport.Seed(0, "SafeTensorsSeeds"));
        using var g = TestSupport.Generator(0, "SafeTensorsSeeds");
        var dtypes = new[] { ScalarType.Float32, ScalarType.Float64, ScalarType.BFloat16, ScalarType.Float16, ScalarType.Int64, ScalarType.Int32, ScalarType.Bool, ScalarType.Byte };
        var seeds = new List<byte[]>();
        for (int f = 0; f < 12; f++)
        {
            var tensors = new List<(string, Tensor)>();
            int n = rng.Next(1, 5);
            for (int i = 0; i < n; i++)
            {
                var shape = Enumerable.Range(0, rng.Next(0, 4)).Select(_ => (long)rng.Next(0, 6)).ToArray();
                tensors.Add(($"layer.{i}.weight", (randn(shape, generator: g) * 5).to(dtypes[rng.Next(dtypes.Length)])));
            }
            string path = Path.Combine(TestSupport.TempDir(), "seed.safetensors");
            SafeTensors.Save(path, tensors, f % 2 == 0 ? new Dictionary<string, string> { ["format"] = "pt" } : null);
            seeds.Add(File.ReadAllBytes(path));
            foreach (var (_, t) in tensors) t.Dispose();
        }
        return seeds.ToArray();
    });

    static readonly string[] HugeNumbers = ["0", "-1", "18446744073709551615", "9223372036854775807", "4294967296", "1e30", "2.5", "-9223372036854775808", "99999999999999999999999"];
    static readonly char[] JsonChars = "{}[]\",:0123456789-ea \\u\0\u00ff".ToCharArray();

    /// <summary>A mutation of a valid file: byte flips, truncation, an absurd header length, a header number swapped for a
    /// huge or negative one, a JSON character swapped, garbage appended or inserted.</summary>
    internal static byte[] Mutate(byte[] original, int kind, int a, int b, int c)
    {
        var bytes = (byte[])original.Clone();
        int headerLength = (int)BitConverter.ToUInt64(original, 0);
        int Pos(int x, int length) => length == 0 ? 0 : (int)((uint)x % (uint)length);
        switch (kind)
        {
            case 0:     // flip 1–8 bytes anywhere
                var r = new Random(a);
                for (int i = 0, k = 1 + Pos(b, 8); i < k; i++) bytes[r.Next(bytes.Length)] ^= (byte)(1 + r.Next(255));
                return bytes;
            case 1:     // truncate
                return bytes[..Pos(a, bytes.Length)];
            case 2:     // the 8-byte header length
                ulong[] lengths = [0, 1, 7, (ulong)headerLength - 1, (ulong)headerLength + 1, (ulong)bytes.Length, 1UL << 31, 1UL << 40, ulong.MaxValue, (ulong)(uint)a];
                BitConverter.GetBytes(lengths[Pos(b, lengths.Length)]).CopyTo(bytes, 0);
                return bytes;
            case 3:     // a number of the header replaced
            {
                string header = Encoding.UTF8.GetString(original, 8, headerLength);
                var numbers = System.Text.RegularExpressions.Regex.Matches(header, "[0-9]+");
                if (numbers.Count == 0) return bytes;
                var m = numbers[Pos(a, numbers.Count)];
                string mutated = header[..m.Index] + HugeNumbers[Pos(b, HugeNumbers.Length)] + header[(m.Index + m.Length)..];
                return Rebuild(mutated, original, headerLength, fixLength: c % 2 == 0);
            }
            case 4:     // a character of the header replaced by a JSON-significant one
            {
                string header = Encoding.UTF8.GetString(original, 8, headerLength);
                int at = Pos(a, header.Length);
                string mutated = header[..at] + JsonChars[Pos(b, JsonChars.Length)] + header[(at + 1)..];
                return Rebuild(mutated, original, headerLength, fixLength: c % 2 == 0);
            }
            case 5:     // garbage appended
                return [.. bytes, .. Enumerable.Range(0, 1 + Pos(a, 64)).Select(i => (byte)(b * 31 + i))];
            default:    // garbage inserted inside the header or data
            {
                int at = Pos(a, bytes.Length);
                return [.. bytes[..at], .. Enumerable.Range(0, 1 + Pos(b, 16)).Select(i => (byte)(c + i * 7)), .. bytes[at..]];
            }
        }
    }

    static byte[] Rebuild(string header, byte[] original, int oldHeaderLength, bool fixLength)
    {
        byte[] h = Encoding.UTF8.GetBytes(header);
        ulong length = fixLength ? (ulong)h.Length : (ulong)oldHeaderLength;
        return [.. BitConverter.GetBytes(length), .. h, .. original[(8 + oldHeaderLength)..]];
    }

    [Fact]
    public void SafeTensorsReaderOnlyThrowsItsFormatExceptionOnMutatedFiles()
    {
        var seeds = SafeTensorsSeeds.Value;
        string dir = TestSupport.TempDir();
        int loaded = 0, refused = 0;
        var gen =
            from s in Gen.Choose(0, seeds.Length - 1)
            from kind in Gen.Choose(0, 6)
            from a in Gen.Choose(0, int.MaxValue)
            from b in Gen.Choose(0, int.MaxValue)
            from c in Gen.Choose(0, int.MaxValue)
            select (s, kind, a, b, c);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            byte[] bytes = Mutate(seeds[t.s], t.kind, t.a, t.b, t.c);
            string path = Path.Combine(dir, "case.safetensors");
            File.WriteAllBytes(path, bytes);
            long before = GC.GetAllocatedBytesForCurrentThread();
            var outcome = Bounded(() =>
            {
                long start = GC.GetAllocatedBytesForCurrentThread();
                try
                {
                    var (tensors, _) = SafeTensors.Load(path);
                    long sizes = tensors.Values.Sum(x => x.numel() * x.ElementSize);
                    foreach (var x in tensors.Values) x.Dispose();
                    if (sizes > bytes.Length) return $"loaded {sizes} bytes of tensors from a {bytes.Length}-byte file";
                    Interlocked.Increment(ref loaded);
                }
                catch (SafeTensorsFormatException) { Interlocked.Increment(ref refused); }
                catch (Exception e) { return $"undocumented {e.GetType().Name}: {e.Message}"; }
                long allocated = GC.GetAllocatedBytesForCurrentThread() - start;
                return allocated > 32L * bytes.Length + AllocationSlack ? $"allocated {allocated} bytes for a {bytes.Length}-byte file" : null;
            }, "SafeTensors.Load");
            return outcome is null ? true : throw new Xunit.Sdk.XunitException($"mutation {t}: {outcome}");
        }).Check(TestSupport.Property(3000));
        // The generator must exercise both outcomes, or the property says little.
        Assert.True(loaded > 50 && refused > 1000, $"loaded {loaded}, refused {refused}");
    }

    [Fact]
    public void SafeTensorsReaderRefusesRandomBytes()
    {
        string dir = TestSupport.TempDir();
        Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), bytes =>
        {
            string path = Path.Combine(dir, "random.safetensors");
            File.WriteAllBytes(path, bytes);
            var e = Record.Exception(() => Bounded(() => SafeTensors.Load(path), "SafeTensors.Load"));
            return e is SafeTensorsFormatException;     // random bytes are never a valid file with a tensor
        }).Check(TestSupport.Property(1000));
    }

    // ---- JSONL

    static readonly string[] LineKinds = ["gsm8k", "uuid", "garbage", "mutated", "blank", "array", "missing", "number-field", "duplicate", "deep", "no-final"];

    static Gen<string> LineGen =>
        from kind in Gen.Elements(LineKinds)
        from n in Gen.Choose(-1_000_000, 1_000_000)
        from text in ArbMap.Default.ArbFor<string>().Generator
        from at in Gen.Choose(0, 1000)
        select MakeLine(kind, n, (text ?? "").Replace('\n', ' ').Replace('\r', ' ').Replace('\u2028', ' ').Replace('\u2029', ' ').Replace('\u0085', ' '), at);

    static string MakeLine(string kind, int n, string text, int at)
    {
        string Json(string s) => System.Text.Json.JsonSerializer.Serialize(s);
        string valid = $"{{\"question\": {Json("How many? " + text)}, \"answer\": {Json($"{text}\n#### {n:N0}")}}}";
        return kind switch
        {
            "gsm8k" => valid,
            "uuid" => $"{{\"key\": {Json(Guid.NewGuid().ToString())}, \"value\": {Json(text)}, \"question\": \"q\", \"answer\": \"#### {n}\"}}",
            "garbage" => text,
            "mutated" => valid.Length == 0 ? valid : valid.Remove(at % valid.Length, 1),
            "blank" => "   ",
            "array" => "[1, 2, 3]",
            "missing" => $"{{\"question\": {Json(text)}}}",
            "number-field" => $"{{\"question\": {n}, \"answer\": \"#### 1\", \"key\": 1, \"value\": 2}}",
            "duplicate" => $"{{\"question\": \"a\", \"question\": \"b\", \"answer\": \"#### 1\", \"key\": \"k\", \"key\": \"k\", \"value\": \"v\"}}",
            "deep" => new string('[', 200) + new string(']', 200),
            _ => $"{{\"question\": \"q\", \"answer\": {Json(text + " no final line")}, \"key\": \"k\", \"value\": \"v\"}}",
        };
    }

    /// <summary>Both JSONL loaders on one file: success, or a DatasetFormatException naming this file and a line in range
    /// such that every earlier line loads (the error is reported at the first bad line).</summary>
    static string? CheckLoader<T>(Func<string, List<T>> load, string path, string[] lines)
    {
        try
        {
            var items = Bounded(() => load(path), "loader");
            int nonBlank = lines.Count(l => !string.IsNullOrWhiteSpace(l));
            return items.Count == nonBlank ? null : $"loaded {items.Count} records from {nonBlank} non-blank lines";
        }
        catch (DatasetFormatException e) when (e.Line == 0)
        {
            // the file as a whole: only an empty file is refused so (a FIFO or device reports size 0 too)
            if (new FileInfo(path).Length != 0) return $"a {new FileInfo(path).Length}-byte file refused as a whole: {e.Message}";
            return e.Message.StartsWith(Path.GetFullPath(path) + ": is empty", StringComparison.Ordinal) ? null : $"an empty file's message does not name it: {e.Message}";
        }
        catch (DatasetFormatException e)
        {
            if (e.File != path) return $"the error names {e.File}, not {path}";
            if (e.Line < 1 || e.Line > lines.Length) return $"line {e.Line} is outside 1..{lines.Length}";
            if (!e.Message.StartsWith($"{path}:{e.Line}: ", StringComparison.Ordinal)) return $"message does not start with file:line: {e.Message}";
            string prefix = Path.Combine(Path.GetDirectoryName(path)!, "prefix.jsonl");
            File.WriteAllText(prefix, string.Join("\n", lines[..(e.Line - 1)]), new UTF8Encoding(false));
            try { load(prefix); }
            catch (DatasetFormatException earlier) when (earlier.Line == 0 && new FileInfo(prefix).Length == 0) { }   // no earlier line at all
            catch (DatasetFormatException earlier) { return $"reported line {e.Line}, but line {earlier.Line} is already bad"; }
            return null;
        }
        catch (Exception e) { return $"undocumented {e.GetType().Name}: {e.Message}"; }
    }

    [Fact]
    public void JsonlLoadersNameTheFirstBadLineAndNothingElse()
    {
        string dir = TestSupport.TempDir();
        int ok = 0, bad = 0;
        Prop.ForAll(Gen.ListOf(LineGen).Select(l => l.ToArray()).ToArbitrary(), lines =>
        {
            string path = Path.Combine(dir, "data.jsonl");
            File.WriteAllText(path, string.Join("\n", lines), new UTF8Encoding(false));
            string? problem = CheckLoader(Gsm8kData.Load, path, lines) ?? CheckLoader(UuidPairs.Read, path, lines);
            if (problem is not null) throw new Xunit.Sdk.XunitException($"{problem}\nlines:\n{string.Join("\n", lines)}");
            try { Gsm8kData.Load(path); ok++; } catch (DatasetFormatException) { bad++; }
            return true;
        }).Check(TestSupport.Property(1500));
        Assert.True(ok > 20 && bad > 500, $"files loaded {ok}, refused {bad}");
    }

    [Fact]
    public void JsonlLoadersRefuseInvalidUtf8AndHugeLinesWithFileAndLine()
    {
        string path = Path.Combine(TestSupport.TempDir(), "bytes.jsonl");
        byte[] good = Encoding.UTF8.GetBytes("{\"question\": \"q\", \"answer\": \"#### 4\"}\n");
        File.WriteAllBytes(path, [.. good, 0xff, 0xfe, (byte)'{', 0xc3, (byte)'\n']);
        Assert.Equal(2, Assert.Throws<DatasetFormatException>(() => Gsm8kData.Load(path)).Line);
        File.WriteAllText(path, "{\"question\": \"q\", \"answer\": \"#### 4\"}\n" + new string('[', 100_000));
        Assert.Equal(2, Assert.Throws<DatasetFormatException>(() => Gsm8kData.Load(path)).Line);
    }

    // ---- answer extraction

    static Gen<string> NumberText(decimal n) =>
        from commas in Gen.Elements(true, false)
        from dollar in Gen.Elements(true, false)
        select (n < 0 ? "-" : dollar ? "$" : "") + Math.Abs(n).ToString(commas ? "#,0.##" : "0.##", CultureInfo.InvariantCulture);

    static Gen<decimal> Numbers =>
        from whole in Gen.Choose(-2_000_000_000, 2_000_000_000)
        from cents in Gen.Choose(0, 99)
        from withCents in Gen.Elements(false, false, true)
        select withCents ? whole + (whole < 0 ? -cents : cents) / 100m : whole;

    /// <summary>Text with no "####" (it may hold other numbers).</summary>
    static Gen<string> Prose =>
        ArbMap.Default.ArbFor<string>().Generator.Select(s => (s ?? "").Replace("#", ""));

    [Fact]
    public void AnswerExtractorReadsBackEveryWrittenAnswer()
    {
        var gen = from n in Numbers from text in NumberText(n) from prose in Prose from tail in Gen.Elements("", " ", ".", "\n", " \n") select (n, text, prose, tail);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var reference = AnswerExtraction.FromReference($"{t.prose}\n#### {t.text}{t.tail}");
            var generated = AnswerExtraction.FromGeneration($"{t.prose} #### {t.text} because {t.prose.Where(c => !char.IsAsciiDigit(c)).Take(20).Aggregate("", (s, c) => s + c)}");
            var lastNumber = AnswerExtraction.FromGeneration($"{t.prose} so the answer is {t.text}");
            return reference == t.n && generated == t.n && lastNumber == t.n
                ? true
                : throw new Xunit.Sdk.XunitException($"{t}: reference {reference}, generated {generated}, last number {lastNumber}");
        }).Check(TestSupport.Property(3000));
    }

    [Fact]
    public void AnswerExtractorNeverThrowsOrHangs()
    {
        var pieces = new[] { "####", " ", "\t", "\n", "1", "9", ",", ".", "$", "-", "x", "٣", "1e5", "Infinity", "NaN" };
        var gen = Gen.OneOf(
            ArbMap.Default.ArbFor<string>().Generator.Select(s => s ?? ""),
            Gen.ListOf(Gen.Elements(pieces)).Select(p => string.Concat(p)),
            // adversarial shapes for backtracking engines: long runs of digits, commas and spaces that do not end well
            from n in Gen.Choose(1, 20_000) from piece in Gen.Elements("1", ",", " ", "1,", "1 ") select "#### " + string.Concat(Enumerable.Repeat(piece, n)) + " x.");
        Prop.ForAll(gen.ToArbitrary(), s =>
        {
            Bounded(() => (AnswerExtraction.FromReference(s), AnswerExtraction.FromGeneration(s)), "answer extraction");
            return true;
        }).Check(TestSupport.Property(2000));
    }
}

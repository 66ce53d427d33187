using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Mora.IO;

namespace Mora.Tests;

/// <summary>JSON as Python's json.dumps(indent=2, sort_keys=True) writes it (what transformers' save_pretrained writes),
/// and the regular-file checks of <see cref="SafeFile"/> used by every reader of user files.</summary>
public class PythonJsonTests
{
    /// <summary>Expected strings are Python 3's repr(float) of the same values.</summary>
    [Theory]
    [InlineData(1e-6, "1e-06")]
    [InlineData(1e-5, "1e-05")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(10000.0, "10000.0")]
    [InlineData(1000000.0, "1000000.0")]
    [InlineData(0.02, "0.02")]
    [InlineData(0.0, "0.0")]
    [InlineData(-2.5, "-2.5")]
    [InlineData(4.0, "4.0")]
    [InlineData(3.14159, "3.14159")]
    [InlineData(1.5e-7, "1.5e-07")]
    [InlineData(123456789.123, "123456789.123")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1234567890123456.0, "1234567890123456.0")]
    [InlineData(1e22, "1e+22")]
    [InlineData(0.1 + 0.2, "0.30000000000000004")]
    [InlineData(5e-324, "5e-324")]
    [InlineData(1.7976931348623157e308, "1.7976931348623157e+308")]
    [InlineData(500000.0, "500000.0")]
    public void FloatsAsPythonReprWritesThem(double x, string expected) => Assert.Equal(expected, PythonJson.Float(x));

    [Fact]
    public void ObjectsAreSortedIndentedAndNewlineTerminated()
    {
        var o = new JsonObject { ["b"] = 1, ["a"] = new JsonArray("x", 2.0), ["c"] = null, ["d"] = new JsonObject(), ["é"] = "ü\"", ["e"] = true };
        Assert.Equal("{\n  \"a\": [\n    \"x\",\n    2.0\n  ],\n  \"b\": 1,\n  \"c\": null,\n  \"d\": {},\n  \"e\": true,\n  \"\\u00e9\": \"\\u00fc\\\"\"\n}\n", PythonJson.Serialize(o));
        Assert.Throws<ArgumentException>(() => PythonJson.Float(double.NaN));
    }

    /// <summary>The exception <paramref name="f"/> throws; fails if it hangs (a read that waits for a FIFO's writer).</summary>
    static Exception? Unblocked(Action f) => TestSupport.Unhung(f, "reading a FIFO must not wait for a writer");

    [DllImport("libc", SetLastError = true)]
    static extern int mkfifo(string path, uint mode);

    [Fact]
    public void SafeTensorsReadsOnlyRegularFiles()
    {
        Assert.True(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "needs a Unix file system");
        string dir = TestSupport.TempDir();
        string fifo = Path.Combine(dir, "pipe.safetensors");
        Assert.Equal(0, mkfifo(fifo, 0x1b6));
        Assert.Contains("not a regular file", Assert.IsType<SafeTensorsFormatException>(Unblocked(() => SafeTensors.Load(fifo))).Message);
        string zero = Path.Combine(dir, "zero.safetensors");
        File.CreateSymbolicLink(zero, "/dev/zero");
        Assert.IsType<SafeTensorsFormatException>(Record.Exception(() => SafeTensors.Load(zero)));
        Assert.IsType<SafeTensorsFormatException>(Record.Exception(() => SafeTensors.Load(dir)));
        // Inside a folder: a link out of it is refused, a link within it is followed.
        string real = Path.Combine(dir, "real.safetensors");
        using (var t = ones(3)) SafeTensors.Save(real, [("a", t)]);
        string sub = Path.Combine(dir, "sub");
        Directory.CreateDirectory(sub);
        File.CreateSymbolicLink(Path.Combine(sub, "out.safetensors"), real);
        Assert.Contains("outside the folder", Assert.IsType<SafeTensorsFormatException>(Record.Exception(() => SafeTensors.Open(Path.Combine(sub, "out.safetensors"), sub).Dispose())).Message);
        File.CreateSymbolicLink(Path.Combine(dir, "in.safetensors"), "real.safetensors");
        using var reader = SafeTensors.Open(Path.Combine(dir, "in.safetensors"), dir);
        Assert.Equal("a", reader.Entries.Single().Name);
        // A link through a linked folder is resolved all the way (the folder prefix alone would pass).
        Directory.CreateSymbolicLink(Path.Combine(sub, "up"), dir);
        Assert.False(SafeFile.Inside(SafeFile.RealPath(Path.Combine(sub, "up", "real.safetensors")), sub));
    }
}

using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Mora.Native;

namespace Mora.Evidence;

/// <summary>One operator libtorch dispatched while <see cref="OpTrace.Record"/> watched: its name (<c>aten::mm</c>,
/// <c>MmBackward0</c>, …), start and duration in µs from the trace's start, the profiler's thread id, and whether it
/// counts as a kernel launch (<see cref="Launch"/>).</summary>
public sealed record TraceEvent(string Name, double StartUs, double DurationUs, int Thread)
{
    /// <summary>How many recorded operators it ran inside (0: called from the kit itself).</summary>
    public int Depth { get; init; }
    /// <summary>True for an ATen operator that computes and has no computing ATen operator inside it (filled in by
    /// <see cref="OpTrace.Parse"/>).</summary>
    public bool Launch { get; init; }
}

/// <summary>
/// The operators libtorch itself dispatched during a piece of work, recorded by libtorch's own profiler in this process:
/// <c>torch::autograd::profiler::RecordProfile</c> (torch/csrc/autograd/profiler_legacy.h, the C++ counterpart of
/// <c>torch.autograd.profiler.profile</c>: the constructor starts the CPU profiler, the destructor stops it and writes
/// a Chrome trace of every <c>RecordFunction</c> scope — every ATen operator, forward and backward — to a file).
/// TorchSharp has no binding for it, so it is called through its exported C++ symbols (Itanium ABI, libstdc++'s
/// <c>std::string</c>), found in the libtorch_cpu.so this process has loaded (the NuGet natives or an installed
/// PyTorch's). That makes the count a measurement of what the kit dispatches, not a model of it.
/// <para>Kernel launches are counted from the trace by <see cref="Launches"/>: an ATen operator that computes (not a view
/// or metadata operator, <see cref="NoKernel"/>) with no other computing operator inside it. On a GPU each such operator launches
/// one kernel in most cases (some launch two, a few none); on the CPU it is one pass of a CPU kernel. Python's side
/// (bench/gpu/mora_eager.py) counts the eager reference with the same rule, and a test holds the two lists equal.</para>
/// </summary>
public static unsafe class OpTrace
{
    const string Constructor = "_ZN5torch8autograd8profiler13RecordProfileC1ERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE";
    const string Destructor = "_ZN5torch8autograd8profiler13RecordProfileD1Ev";

    /// <summary>ATen operators that launch no kernel themselves: views, shape and stride metadata, allocation without
    /// filling, conjugation checks, and <c>to</c> / <c>contiguous</c> (when they copy, the copy inside them counts). The same list is in bench/gpu/mora_eager.py (NO_KERNEL); a test compares them.</summary>
    public static readonly IReadOnlySet<string> NoKernel = new HashSet<string>(StringComparer.Ordinal)
    {
        "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::view", "aten::_unsafe_view", "aten::reshape",
        "aten::_reshape_alias", "aten::as_strided", "aten::t", "aten::transpose", "aten::permute", "aten::expand",
        "aten::expand_as", "aten::narrow", "aten::slice", "aten::select", "aten::unsqueeze", "aten::squeeze",
        "aten::alias", "aten::detach", "aten::detach_", "aten::lift_fresh", "aten::resize_", "aten::flatten",
        "aten::unflatten", "aten::diagonal", "aten::split", "aten::split_with_sizes", "aten::chunk", "aten::unbind",
        "aten::view_as", "aten::movedim", "aten::result_type", "aten::contiguous", "aten::set_", "aten::numpy_T",
        "aten::_has_compatible_shallow_copy_type", "aten::is_nonzero", "aten::size", "aten::stride", "aten::dim",
        "aten::_local_scalar_dense", "aten::item", "aten::resolve_conj", "aten::resolve_neg", "aten::conj", "aten::_conj",
        "aten::to", "aten::type_as", "aten::unfold", "aten::new_empty", "aten::new_empty_strided", "aten::broadcast_tensors", "aten::_shape_as_tensor", "aten::requires_grad_",
    };

    /// <summary>Whether the loaded libtorch exports the profiler entry points (false before TorchSharp has loaded it,
    /// or for a libtorch without them).</summary>
    public static bool IsAvailable => TryFind(out _, out _);

    /// <summary>Runs <paramref name="work"/> under libtorch's profiler and returns every operator it dispatched, with
    /// <see cref="TraceEvent.Launch"/> set. Not re-entrant; one thread.</summary>
    /// <exception cref="NotSupportedException">the loaded libtorch has no RecordProfile</exception>
    public static IReadOnlyList<TraceEvent> Record(Action work)
    {
        TorchRuntime.Ensure();
        _ = TorchSharp.torch.get_num_threads();      // TorchSharp's natives are loaded from here on
        if (!TryFind(out var ctor, out var dtor))
            throw new NotSupportedException("the loaded libtorch_cpu.so exports no torch::autograd::profiler::RecordProfile (needed to count operators)");
        string file = Path.Combine(Path.GetTempPath(), $"mora-optrace-{Environment.ProcessId}-{Guid.NewGuid():N}.json");
        byte[] path = Encoding.UTF8.GetBytes(file);
        // std::string (libstdc++, C++11 ABI): { char* data; size_t length; union { size_t capacity; char local[16]; } }.
        // Passed by const reference, so a heap layout pointing at our own buffer is read and never freed by libtorch.
        IntPtr chars = Marshal.AllocHGlobal(path.Length + 1);
        IntPtr str = Marshal.AllocHGlobal(32);
        IntPtr self = Marshal.AllocHGlobal(256);     // RecordProfile holds a unique_ptr<ofstream> and an ostream&: 16 bytes
        try
        {
            Marshal.Copy(path, 0, chars, path.Length);
            Marshal.WriteByte(chars, path.Length, 0);
            Marshal.WriteIntPtr(str, 0, chars);
            Marshal.WriteInt64(str, 8, path.Length);
            Marshal.WriteInt64(str, 16, path.Length);
            new Span<byte>((void*)self, 256).Clear();
            ((delegate* unmanaged<IntPtr, IntPtr, void>)ctor)(self, str);
            try { work(); }
            finally { ((delegate* unmanaged<IntPtr, void>)dtor)(self); }      // stops the profiler, writes the file
            return Parse(File.ReadAllText(file));
        }
        finally
        {
            Marshal.FreeHGlobal(self); Marshal.FreeHGlobal(str); Marshal.FreeHGlobal(chars);
            try { File.Delete(file); } catch (IOException) { }
        }
    }

    /// <summary>Kernel launches in a trace (<see cref="TraceEvent.Launch"/>).</summary>
    public static int Launches(IEnumerable<TraceEvent> events) => events.Count(e => e.Launch);

    /// <summary>An ATen operator that may launch a kernel: not a scope (autograd nodes, the engine's wrappers) and not in
    /// <see cref="NoKernel"/>. It launches one when no other such operator runs inside it (mm's resolve_conj checks do
    /// not count; linear's mm does, so linear is not a launch itself).</summary>
    public static bool IsCandidate(string name) => name.StartsWith("aten::", StringComparison.Ordinal) && !NoKernel.Contains(name);

    /// <summary>The launching operators by name, most frequent first (for the table's detail column).</summary>
    public static IReadOnlyList<(string Name, int Count)> LaunchesByName(IEnumerable<TraceEvent> events) =>
        events.Where(e => e.Launch)
              .GroupBy(e => e.Name).Select(g => (g.Key, g.Count())).OrderByDescending(g => g.Item2).ThenBy(g => g.Key, StringComparer.Ordinal).ToList();

    /// <summary>The Chrome trace RecordProfile writes (<c>[{"name":…,"ph":"X","ts":…,"dur":…,"tid":…}, …]</c>, one event
    /// per operator, in the order they ended), with nesting recovered from the intervals of each thread and
    /// <see cref="TraceEvent.Launch"/> set.</summary>
    public static IReadOnlyList<TraceEvent> Parse(string chromeTrace)
    {
        using var doc = JsonDocument.Parse(chromeTrace);
        var raw = doc.RootElement.EnumerateArray()
            .Select(e => new TraceEvent(e.GetProperty("name").GetString() ?? "", e.GetProperty("ts").GetDouble(), e.GetProperty("dur").GetDouble(),
                e.TryGetProperty("tid", out var t) && t.ValueKind == JsonValueKind.Number ? (int)t.GetDouble() : 0))
            .ToList();
        var result = new List<TraceEvent>(raw.Count);
        foreach (var thread in raw.GroupBy(e => e.Thread))
        {
            // Outer scopes first: earlier start, then the longer one. A stack of open scopes gives each event its parent.
            var ordered = thread.OrderBy(e => e.StartUs).ThenByDescending(e => e.DurationUs).ToList();
            var parent = new int[ordered.Count];
            var open = new Stack<int>();
            for (int i = 0; i < ordered.Count; i++)
            {
                var e = ordered[i];
                while (open.Count > 0 && End(ordered[open.Peek()]) <= e.StartUs) open.Pop();     // ended before e began
                parent[i] = open.Count > 0 ? open.Peek() : -1;
                open.Push(i);
            }
            // A candidate with a candidate anywhere below it is not the kernel itself.
            var covered = new bool[ordered.Count];
            for (int i = 0; i < ordered.Count; i++)
                if (IsCandidate(ordered[i].Name))
                    for (int p = parent[i]; p >= 0 && !covered[p]; p = parent[p]) covered[p] = true;
            var depth = new int[ordered.Count];
            for (int i = 0; i < ordered.Count; i++) depth[i] = parent[i] < 0 ? 0 : depth[parent[i]] + 1;
            for (int i = 0; i < ordered.Count; i++) result.Add(ordered[i] with { Launch = IsCandidate(ordered[i].Name) && !covered[i], Depth = depth[i] });
        }
        return result;

        static double End(TraceEvent e) => e.StartUs + e.DurationUs;
    }

    /// <summary>The trace as an indented tree, launches marked with <c>*</c> (what a count is made of).</summary>
    public static string Tree(IEnumerable<TraceEvent> events) =>
        string.Concat(events.Select(e => $"{new string(' ', 2 * e.Depth)}{(e.Launch ? "* " : "  ")}{e.Name}\n"));

    static bool TryFind(out IntPtr ctor, out IntPtr dtor)
    {
        ctor = dtor = IntPtr.Zero;
        if (!OperatingSystem.IsLinux()) return false;
        string? lib = null;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                int at = line.IndexOf('/');
                if (at >= 0 && line.EndsWith("/libtorch_cpu.so", StringComparison.Ordinal)) { lib = line[at..]; break; }
            }
        }
        catch (IOException) { return false; }
        if (lib is null || !NativeLibrary.TryLoad(lib, out var handle)) return false;
        return NativeLibrary.TryGetExport(handle, Constructor, out ctor) && NativeLibrary.TryGetExport(handle, Destructor, out dtor);
    }
}

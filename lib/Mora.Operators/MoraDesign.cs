using TorchSharp;
using static TorchSharp.torch;

namespace Mora;

/// <summary>
/// A compress/decompress design (paper §3.1): a compression map f_comp : ℝᵏ → ℝ^r̂ and a decompression map
/// f_decomp : ℝ^r̂ → ℝᵈ around the square matrix M. The paper's designs are the <see cref="MoraType"/> values
/// (<see cref="Of"/>); a researcher's own pair is made by <see cref="FromForward"/> from the two maps' forwards and, once
/// <see cref="MoraDesigns.Register"/> has checked it, is accepted wherever a design is: <see cref="CompressDecompress"/>,
/// the rank analysis, <c>AdapterConfig.Design</c> / <c>Peft.Inject</c>, the merge, adapter save and load (its name in the
/// kit's side file) and the experiments' methods (<c>mora-&lt;name&gt;</c>). Taught in notebook 08.
/// </summary>
public sealed class MoraDesign
{
    readonly Func<int, int, int, (CompressionMap, DecompressionMap)> _maps;

    /// <summary>The design's name: the paper's design in lower case ("rotation"), or the name it was registered under.</summary>
    public string Name { get; }
    /// <summary>The paper's design this is, or null for a researcher's own.</summary>
    public MoraType? BuiltIn { get; }
    /// <summary>Whether r̂ must be even (RoPE-style rotations pair coordinates): r̂ from the LoRA rank is rounded down to even.</summary>
    public bool EvenRHat { get; }
    /// <summary>One line on what the design does (the <c>designs</c> command prints it).</summary>
    public string Description { get; }

    MoraDesign(string name, MoraType? builtIn, bool evenRHat, string description, Func<int, int, int, (CompressionMap, DecompressionMap)> maps) =>
        (Name, BuiltIn, EvenRHat, Description, _maps) = (name, builtIn, evenRHat, description, maps);

    /// <summary>The paper's design <paramref name="type"/>.</summary>
    /// <exception cref="ArgumentException">not one of the paper's designs</exception>
    public static MoraDesign Of(MoraType type) =>
        Enum.IsDefined(type) ? BuiltIns[(int)type] : throw new ArgumentException($"unknown MoRA type {(int)type}", nameof(type));

    static readonly MoraDesign[] BuiltIns = Enumerable.Range(0, 7).Select(i => (MoraType)i)
        .Select(t => new MoraDesign(MoraTypes.Name(t), t, t == MoraType.Rotation, $"the paper's {t} (type {(int)t})",
            (d, k, rHat) => CompressDecompress.Maps(d, k, rHat, t))).ToArray();

    /// <summary>
    /// A design from the forwards of its two maps, both linear: <paramref name="compress"/>(k, r̂) gives f_comp, mapping
    /// (…, k) to (…, r̂); <paramref name="decompress"/>(d, r̂) gives f_decomp, mapping (…, r̂) to (…, d). They are called
    /// whenever a layer's operators are built (each layer, each load, each check), so they must be deterministic in the
    /// shape: precompute a permutation or signs from a generator seeded by the shape, never from the global one
    /// (registration checks this). Tensors they precompute are kept alive whatever DisposeScope is active. The maps
    /// give r̂ outputs, so a design of one's own has rank ≤ r̂ (the blockwise (…, n, r̂) form of decoupling and rotation
    /// is the paper designs' only).
    /// ΔW comes from the Jacobian: S = f_comp applied to the k unit vectors, T = f_decomp applied to the r̂ unit vectors,
    /// ΔW = T M S (paper Eq. 3 written out), unless <paramref name="deltaWeight"/> gives it directly (checked against the
    /// Jacobian on registration). Register it with <see cref="MoraDesigns.Register"/> before use.
    /// </summary>
    /// <param name="name">lower-case letters, digits and '-', not a paper design's name</param>
    /// <param name="compress">(k, r̂) ↦ f_comp</param>
    /// <param name="decompress">(d, r̂) ↦ f_decomp</param>
    /// <param name="deltaWeight">optional (d, k, M) ↦ ΔW (d × k), M's dtype and device</param>
    /// <param name="evenRHat">round r̂ from the LoRA rank down to even</param>
    /// <param name="description">one line for the designs table</param>
    public static MoraDesign FromForward(string name, Func<int, int, Func<Tensor, Tensor>> compress, Func<int, int, Func<Tensor, Tensor>> decompress,
        Func<int, int, Tensor, Tensor>? deltaWeight = null, bool evenRHat = false, string description = "")
    {
        ArgumentNullException.ThrowIfNull(compress);
        ArgumentNullException.ThrowIfNull(decompress);
        MoraDesigns.CheckName(name, nameof(name));
        return new MoraDesign(name, null, evenRHat, string.IsNullOrEmpty(description) ? $"{name} (defined by its forward)" : description,
            (d, k, rHat) => (new ForwardCompression(k, rHat, Kept(() => compress(k, rHat)), deltaWeight is null ? null : m => deltaWeight(d, k, m)),
                             new ForwardDecompression(d, rHat, Kept(() => decompress(d, rHat)))));
    }

    /// <summary>Builds a map in a scope of its own and keeps what it allocated (a permutation, signs), so that a
    /// DisposeScope around the caller (a user's <c>using (NewDisposeScope())</c> around Peft.Inject) cannot dispose it.</summary>
    static Func<Tensor, Tensor> Kept(Func<Func<Tensor, Tensor>> build)
    {
        using var scope = NewDisposeScope();
        var map = build();
        scope.Detach(scope.DisposablesView.ToArray());
        return map;
    }

    /// <summary>What the design computes, as 16 hex digits: a SHA-256 of whether r̂ is made even and of its ΔW for a
    /// fixed M (float64) on every registration shape and an odd-r̂ one. Two designs with one name but other maps differ
    /// here, so a result or adapter made with an earlier definition of a design of one's own is never taken for this
    /// one's (experiments record it in spec.json, adapters in the kit's side file).</summary>
    public string Fingerprint => _fingerprint ??= ComputeFingerprint();
    string? _fingerprint;

    string ComputeFingerprint()
    {
        using var scope = NewDisposeScope();
        var bytes = new List<byte> { (byte)(EvenRHat ? 1 : 0) };
        foreach (var (d, k, rHat) in MoraDesigns.CheckShapes.Append((20, 36, 7)))
        {
            if (EvenRHat && rHat % 2 != 0) continue;
            var op = new CompressDecompress(d, k, rHat, this);
            var m = (arange(rHat * rHat, dtype: ScalarType.Float64).reshape(rHat, rHat) + 1) / (rHat * rHat);
            bytes.AddRange(op.DeltaWeight(m).contiguous().data<double>().ToArray().SelectMany(v => BitConverter.GetBytes(Math.Round(v, 9))));
        }
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes.ToArray()))[..16];
    }

    /// <summary>The design's two maps for a d × k layer with side r̂.</summary>
    public (CompressionMap Compression, DecompressionMap Decompression) Maps(int d, int k, int rHat) => _maps(d, k, rHat);

    public override string ToString() => Name;
}

/// <summary>
/// The registry of designs: the paper's seven and every design a researcher registered in this process, by name.
/// Registration checks what makes a design a MoRA design (paper Eq. 3): on seeded random layers of several shapes the
/// maps have the right shapes, are linear and act on each row of a batch alone (else no ΔW exists and nothing can be
/// merged), and ΔW written out (T M S, or the design's own) equals the Jacobian of x ↦ f_decomp(M f_comp(x)) and the
/// merged layer's output, each within <see cref="Tolerance"/> (relative, float64). A design that fails is refused, saying which
/// property failed, on which shape and by how much.
/// </summary>
public static class MoraDesigns
{
    /// <summary>Relative tolerance of the registration checks, in float64.</summary>
    public const double Tolerance = 1e-9;

    static readonly Dictionary<string, MoraDesign> Registered = new(StringComparer.Ordinal);

    /// <summary>The paper's seven designs, in its order.</summary>
    public static IReadOnlyList<MoraDesign> Paper { get; } = [.. MoraTypes.All.Select(MoraDesign.Of)];

    /// <summary>Every design: the paper's, in its order, then the registered ones by name.</summary>
    public static IReadOnlyList<MoraDesign> All
    {
        get { lock (Registered) return [.. Paper, .. Registered.Values.OrderBy(d => d.Name, StringComparer.Ordinal)]; }
    }

    /// <summary>The layer shapes (d, k, r̂) a design is checked on: square, wide, tall, r̂ not dividing d or k.</summary>
    public static readonly IReadOnlyList<(int D, int K, int RHat)> CheckShapes = [(24, 24, 8), (24, 40, 8), (40, 24, 8), (30, 50, 6)];

    /// <summary>Checks <paramref name="design"/> (see the class summary) and registers it under its name, replacing an
    /// earlier registration of that name (re-running a notebook cell). Returns the worst relative error seen.</summary>
    /// <exception cref="ArgumentException">a property fails, naming it</exception>
    public static double Register(MoraDesign design)
    {
        ArgumentNullException.ThrowIfNull(design);
        if (design.BuiltIn is not null) throw new ArgumentException($"{design.Name} is one of the paper's designs, registered already", nameof(design));
        double worst = Check(design);
        lock (Registered) Registered[design.Name] = design;
        return worst;
    }

    /// <summary>Removes a registered design (tests, notebooks that clean up).</summary>
    public static bool Unregister(string name) { lock (Registered) return Registered.Remove(name); }

    /// <summary>The design named <paramref name="text"/>: a paper design by number or name (<see cref="MoraTypes.Parse"/>)
    /// or a registered one by name.</summary>
    /// <exception cref="ArgumentException">unknown, naming <paramref name="paramName"/> and every known design</exception>
    public static MoraDesign Parse(string text, string paramName = "design")
    {
        lock (Registered)
            if (Registered.TryGetValue(text, out var own)) return own;
        try { return MoraDesign.Of(MoraTypes.Parse(text, paramName)); }
        catch (ArgumentException)
        {
            throw new ArgumentException($"unknown MoRA design '{text}'; the known designs are {string.Join(", ", All.Select(d => d.BuiltIn is { } t ? $"{(int)t} ({d.Name})" : d.Name))}" +
                " (a design of your own is known once MoraDesigns.Register has accepted it in this process)", paramName);
        }
    }

    internal static void CheckName(string name, string paramName)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 40 || !name.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-') || !char.IsAsciiLetterLower(name[0]))
            throw new ArgumentException($"a design's name is 1 to 40 lower-case letters, digits and '-', starting with a letter (it becomes mora-<name> on the command line); got '{name}'", paramName);
        bool paper;
        try { MoraTypes.Parse(name); paper = true; } catch (ArgumentException) { paper = false; }
        if (paper) throw new ArgumentException($"'{name}' names one of the paper's designs; choose another name", paramName);
    }

    static double Check(MoraDesign design)
    {
        double worst = 0;
        var g = new torch.Generator(20240520);
        foreach (var (d, k, rHat) in CheckShapes)
        {
            using var scope = NewDisposeScope();
            string at = $"design '{design.Name}' on a {d}×{k} layer with r̂ = {rHat}";
            CompressDecompress op;
            try { op = new CompressDecompress(d, k, rHat, design); }
            catch (Exception e) when (e is not OutOfMemoryException) { throw new ArgumentException($"{at}: its maps could not be built ({e.Message})", nameof(design), e); }
            var m = randn(rHat, rHat, dtype: ScalarType.Float64, generator: g);
            var x = randn(5, k, dtype: ScalarType.Float64, generator: g);
            var y = randn(5, k, dtype: ScalarType.Float64, generator: g);
            Tensor Run(Func<Tensor> f, string what)
            {
                try { return f(); }
                catch (Exception e) when (e is not OutOfMemoryException) { throw new ArgumentException($"{at}: {what} failed ({e.Message})", nameof(design), e); }
            }
            var c = Run(() => op.Compress(x), "f_comp");
            if (!c.shape.SequenceEqual(new long[] { 5, rHat }))
                throw new ArgumentException($"{at}: f_comp maps (5, {k}) to ({string.Join(", ", c.shape)}), not (5, {rHat})", nameof(design));
            var h = Run(() => op.Decompress(randn(5, rHat, dtype: ScalarType.Float64, generator: g)), "f_decomp");
            if (!h.shape.SequenceEqual(new long[] { 5, d }))
                throw new ArgumentException($"{at}: f_decomp maps (5, {rHat}) to ({string.Join(", ", h.shape)}), not (5, {d})", nameof(design));
            void Near(Tensor got, Tensor want, string property)
            {
                double scale = Math.Max(want.abs().max().ToDouble(), 1e-300);
                double err = (got - want).abs().max().ToDouble() / scale;
                if (!(err <= Tolerance))
                    throw new ArgumentException($"{at}: {property} fails (relative error {err:G3} > {Tolerance:G1}); " +
                        "a design must be a fixed linear map around M to have a ΔW that can be written out and merged", nameof(design));
                worst = Math.Max(worst, err);
            }
            // linear (so a ΔW exists), each row alone (no mixing across the batch or the sequence)
            var fx = Run(() => op.Forward(x, m), "the forward");
            Near(Run(() => op.Forward(x * 2.5 - y, m), "the forward"), fx * 2.5 - op.Forward(y, m), "linearity, f(2.5x − y) = 2.5 f(x) − f(y),");
            Near(Run(() => op.Forward(x.narrow(0, 2, 1), m), "the forward"), fx.narrow(0, 2, 1), "row independence (a row's output depends on that row only)");
            var written = Run(() => op.DeltaWeight(m), "ΔW written out");
            if (!written.shape.SequenceEqual(new long[] { d, k }))
                throw new ArgumentException($"{at}: ΔW written out has shape ({string.Join(", ", written.shape)}), not ({d}, {k})", nameof(design));
            // deterministic: the operators built again, after the global generator moved, compute the same ΔW
            _ = rand(7);                                  // advances the global generator
            CompressDecompress again;
            try { again = new CompressDecompress(d, k, rHat, design); }
            catch (Exception e) when (e is not OutOfMemoryException) { throw new ArgumentException($"{at}: its maps could not be built a second time ({e.Message})", nameof(design), e); }
            Near(Run(() => again.DeltaWeight(m), "ΔW written out"), written, "determinism (the maps built again give the same ΔW: seed any randomness from the shape, not the global generator),");
            // batches of sequences (…, T, k) and float32, as the model feeds them
            var seq = randn(2, 3, k, dtype: ScalarType.Float64, generator: g);
            var bySeq = Run(() => op.Forward(seq, m), "the forward of a (2, 3, k) input");
            if (!bySeq.shape.SequenceEqual(new long[] { 2, 3, d }))
                throw new ArgumentException($"{at}: the forward maps (2, 3, {k}) to ({string.Join(", ", bySeq.shape)}), not (2, 3, {d})", nameof(design));
            Near(bySeq.reshape(6, d), op.Forward(seq.reshape(6, k), m), "batches of sequences (a (2, 3, k) input gives what its six rows give),");
            var y32 = Run(() => op.Forward(x.to(ScalarType.Float32), m.to(ScalarType.Float32)), "the forward in float32");
            if (y32.dtype != ScalarType.Float32)
                throw new ArgumentException($"{at}: the forward of a float32 input is {y32.dtype}, not Float32 (a map keeps float64 constants: convert them to the input's dtype)", nameof(design));
            // Eq. 3: ΔW written out equals the Jacobian of the forward; the merge adds exactly that
            var jacobian = op.DeltaWeightFromForward(m);
            Near(written, jacobian, "Eq. 3, ΔW written out = the Jacobian of f_decomp(M f_comp(x)),");
            var w = randn(d, k, dtype: ScalarType.Float64, generator: g);
            var merged = w.clone();
            Run(() => { op.AddDeltaWeightTo(merged, m); return merged; }, "the merge");
            Near(x.matmul(merged.t()), x.matmul(w.t()) + fx, "the merge, (W + ΔW) x = W x + f_decomp(M f_comp(x)),");
        }
        return worst;
    }
}

/// <summary>f_comp given by its forward (a registered design): S, the Jacobian, is the forward of the k unit vectors.</summary>
sealed class ForwardCompression(int k, int rHat, Func<Tensor, Tensor> forward, Func<Tensor, Tensor>? deltaWeight) : CompressionMap(k, rHat)
{
    /// <summary>The design's own ΔW (d × k from M), when it gave one.</summary>
    public Func<Tensor, Tensor>? DeltaWeight { get; } = deltaWeight;

    public override Tensor Apply(Tensor x) => forward(x);

    /// <summary>M S with S (r̂ × k) = f_comp of the unit vectors, transposed.</summary>
    public override Tensor MTimesS(Tensor m, long rows)
    {
        using var eye = torch.eye(K, dtype: m.dtype, device: m.device);
        using var columns = forward(eye);                   // row j = f_comp(e_j) = column j of S
        return m.matmul(columns.t());
    }
}

/// <summary>f_decomp given by its forward (a registered design): T, the Jacobian, is the forward of the r̂ unit vectors.</summary>
sealed class ForwardDecompression(int d, int rHat, Func<Tensor, Tensor> forward) : DecompressionMap(d, rHat)
{
    protected override Tensor ApplyAlong(Tensor x, int dim)
    {
        if (dim == -1 || dim == x.dim() - 1) return forward(x);
        // T·X for X (r̂ × k): T (d × r̂) = f_decomp of the unit vectors, transposed
        using var eye = torch.eye(Width, dtype: x.dtype, device: x.device);
        using var rows = forward(eye);                      // row i = f_decomp(e_i) = column i of T
        using var first = x.narrow(0, 0, Width);
        return rows.t().matmul(first);
    }
}

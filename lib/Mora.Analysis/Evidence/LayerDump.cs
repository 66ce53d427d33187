using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Evidence;

/// <summary>
/// What the PyTorch-eager peer (bench/gpu/mora_eager.py <c>--check</c>) compares itself with: for one layer shape, each
/// MoRA design (the rotation design under both formulations) and LoRA, the adapter's inputs (x, the output gradient, M or
/// A and B) and the kit's results — the adapter output ΔW x, ΔW written out, and the gradients of x and of the adapter
/// weights — as <c>.npy</c> files in one folder per method, with <c>meta.json</c> (design number as the reference's
/// <c>mora_type</c>, d, k, r, r̂, scaling). Seeded: the same seed writes the same files.
/// </summary>
public static class LayerDump
{
    public const string MetaFile = "meta.json";

    /// <summary>Writes <paramref name="dir"/>/&lt;d&gt;x&lt;k&gt;-&lt;method&gt;/ for every design and LoRA; returns the folders.</summary>
    public static IReadOnlyList<string> Write(string dir, int d, int k, int r, int tokens, int seed, ScalarType dtype)
    {
        var written = new List<string>();
        foreach (var type in MoraTypes.All)
        {
            CompressDecompress op;
            try { op = CompressDecompress.ForLoraRank(d, k, r, type); }
            catch (ArgumentException) { continue; }                      // r̂ does not fit this layer
            var formulations = type == MoraType.Rotation ? new[] { RotationFormulation.RotateM, RotationFormulation.RotateInput } : [RotationFormulation.Auto];
            foreach (var f in formulations)
            {
                string name = $"{d}x{k}-mora-{MoraTypes.Name(type)}" + (type == MoraType.Rotation ? "-" + RotationFormulations.Name(f) : "");
                using var use = RotationFormulations.Use(f);
                using var scope = NewDisposeScope();
                manual_seed(seed);
                var x = randn(tokens, k, dtype: dtype).requires_grad_(true);
                var gy = randn(tokens, d, dtype: dtype);
                var m = (randn(op.RHat, op.RHat, dtype: dtype) * 0.1).requires_grad_(true);
                var y = op.Forward(x, m);
                var grads = torch.autograd.grad([y], [x, m], [gy]);
                Tensor deltaW;
                using (no_grad()) deltaW = op.DeltaWeight(m);
                string folder = Path.Combine(dir, name);
                Save(folder, ("x", x), ("grad_y", gy), ("m", m), ("y", y), ("delta_w", deltaW), ("grad_x", grads[0]), ("grad_m", grads[1]));
                Meta(folder, new JsonObject
                {
                    ["method"] = "mora", ["design"] = MoraTypes.Name(type), ["mora_type"] = (int)type, ["formulation"] = type == MoraType.Rotation ? RotationFormulations.Name(f) : null,
                    ["d"] = d, ["k"] = k, ["r"] = r, ["r_hat"] = op.RHat, ["tokens"] = tokens, ["seed"] = seed, ["dtype"] = dtype.ToString().ToLowerInvariant(),
                });
                written.Add(folder);
            }
        }
        {
            string folder = Path.Combine(dir, $"{d}x{k}-lora");
            using var scope = NewDisposeScope();
            manual_seed(seed);
            double alpha = 2 * r;
            var x = randn(tokens, k, dtype: dtype).requires_grad_(true);
            var gy = randn(tokens, d, dtype: dtype);
            using var linear = nn.Linear(k, d, hasBias: false, dtype: dtype);
            using var lora = new LoraLinear(linear, r, alpha);
            using (no_grad()) { lora.A.normal_(0, 0.1); lora.B.normal_(0, 0.1); }
            using var baseOut = linear.forward(x);
            var y = lora.forward(x) - baseOut;                               // the adapter's share, s·B A x
            var grads = torch.autograd.grad([y], [x, lora.A, lora.B], [gy]);
            Tensor deltaW;
            using (no_grad()) deltaW = lora.DeltaWeight();
            Save(folder, ("x", x), ("grad_y", gy), ("lora_a", lora.A), ("lora_b", lora.B), ("y", y), ("delta_w", deltaW), ("grad_x", grads[0]), ("grad_lora_a", grads[1]), ("grad_lora_b", grads[2]));
            Meta(folder, new JsonObject
            {
                ["method"] = "lora", ["d"] = d, ["k"] = k, ["r"] = r, ["lora_alpha"] = alpha, ["scaling"] = lora.Scaling, ["tokens"] = tokens, ["seed"] = seed,
                ["dtype"] = dtype.ToString().ToLowerInvariant(),
            });
            written.Add(folder);
        }
        return written;
    }

    static void Save(string folder, params (string Name, Tensor Tensor)[] tensors)
    {
        Directory.CreateDirectory(folder);
        foreach (var (name, t) in tensors) Npy.Save(Path.Combine(folder, name + ".npy"), t);
    }

    static void Meta(string folder, JsonObject meta) =>
        AtomicFile.WriteText(Path.Combine(folder, MetaFile), meta.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
}

using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.Evidence;
using Mora.IO;
using Mora.Model;
using Mora.Native;
using Mora.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Cli;

/// <summary>
/// <c>evidence interop-export</c> and <c>evidence interop-check</c>: the kit's side of the interop check with the newest
/// transformers and PEFT (bench/gpu/interop_check.py). Export writes a base checkpoint (<see cref="ModelIO.Save(LlamaForCausalLM, string, long)"/>),
/// LoRA, DoRA and MoRA adapters (<see cref="AdapterIO.Save"/>) and the kit's logits on fixed ids; the Python side loads
/// them with <c>from_pretrained</c> / <c>PeftModel.from_pretrained</c>, compares, and writes PEFT adapters of its own with
/// their logits, which check reads back with <see cref="AdapterIO.Load"/> and compares. Tolerances: float32, max absolute
/// logit difference ≤ <see cref="Float32Tolerance"/> (the interop fixtures' rule, tests/data/interop/README.md);
/// bfloat16, ≤ <see cref="BFloat16Relative"/> × the largest |logit|.
/// </summary>
static class InteropCommand
{
    public const double Float32Tolerance = 1e-4, BFloat16Relative = 3e-2;
    public const string IdsFile = "input_ids.npy", LogitsFile = "logits.npy", ManifestFile = "manifest.json", CheckFile = "kit-check.md";

    /// <summary>The adapters exported: folder name and recipe (r = 4, the attention projections), M and B non-zero.</summary>
    static readonly (string Name, AdapterConfig Config)[] Adapters =
    [
        ("kit_lora", AdapterConfig.Lora(4, 8, "q_proj", "k_proj", "v_proj", "o_proj")),
        ("kit_dora", AdapterConfig.Dora(4, 8, "q_proj", "k_proj", "v_proj", "o_proj")),
        ("kit_mora_sharing", AdapterConfig.Mora(4, MoraType.Sharing, "q_proj", "k_proj", "v_proj", "o_proj")),
        ("kit_mora_rotation", AdapterConfig.Mora(4, MoraType.Rotation, "q_proj", "k_proj", "v_proj", "o_proj")),
    ];

    public static Command Export()
    {
        var names = new OptionNames();
        var outDir = names.Bind(new Option<string>("--out") { Description = "folder for base/, the adapters, input_ids.npy and the logits", Required = true }, "out");
        var seed = names.Bind(new Option<int>("--seed") { Description = "seed of the weights and ids", DefaultValueFactory = _ => 0 }, "seed");
        var command = new Command("interop-export", "Write a base checkpoint, LoRA/DoRA/MoRA adapters and the kit's logits on fixed ids, for bench/gpu/interop_check.py (transformers from_pretrained, PEFT PeftModel.from_pretrained).")
            { outDir, seed };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            TorchRuntime.Ensure();
            CpuThreads.Configure();
            string dir = pr.GetValue(outDir)!;
            Directory.CreateDirectory(dir);
            int s = pr.GetValue(seed);
            // A small LLaMA with grouped-query attention and a separate head; weights ~ N(0, 0.1²) so logits are not near zero.
            var config = LlamaConfig.Tiny(96) with { NumKeyValueHeads = 2, HiddenSize = 64, IntermediateSize = 160 };
            manual_seed(s);
            string baseDir = Path.Combine(dir, "base");
            using (var model = new LlamaForCausalLM(config))
            {
                model.InitWeights(0.1);
                ModelIO.Save(model, baseDir);
            }
            manual_seed(s + 1);
            using var ids = randint(0, config.VocabSize, [2, 24], dtype: ScalarType.Int64);
            Npy.Save(Path.Combine(dir, IdsFile), ids);
            var items = new JsonArray();
            using (var model = ModelIO.Load(baseDir))
            {
                Logits(model, ids, Path.Combine(baseDir, LogitsFile));
                items.Add(new JsonObject { ["name"] = "base", ["kind"] = "checkpoint" });
            }
            foreach (var (name, adapter) in Adapters)
            {
                using var model = ModelIO.Load(baseDir);
                Peft.Inject(model, adapter);
                manual_seed(s + 2);
                using (no_grad())
                    foreach (var (_, layer) in Peft.Adapters(model))
                        foreach (var (pname, p) in layer.AdapterParameters())
                            if (pname.StartsWith("lora_magnitude", StringComparison.Ordinal)) p.mul_(1 + 0.1 * randn_like(p));
                            else p.normal_(0, 0.05);
                string folder = Path.Combine(dir, name);
                AdapterIO.Save(model, adapter, folder);
                Logits(model, ids, Path.Combine(folder, LogitsFile));
                items.Add(new JsonObject { ["name"] = name, ["kind"] = "adapter", ["method"] = adapter.Method.ToString().ToLowerInvariant(), ["mora_type"] = adapter.Method == AdapterMethod.Mora ? (int)adapter.MoraType : null });
            }
            var manifest = new JsonObject
            {
                ["written_by"] = CliSupport.CommandText,
                ["base"] = "base", ["input_ids"] = IdsFile, ["logits"] = LogitsFile, ["dtype"] = "float32", ["device"] = "cpu",
                ["float32_tolerance"] = Float32Tolerance, ["bfloat16_relative_tolerance"] = BFloat16Relative,
                ["items"] = items,
            };
            AtomicFile.WriteText(Path.Combine(dir, ManifestFile), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            Console.WriteLine($"written: {Path.GetFullPath(dir)} (base, {string.Join(", ", Adapters.Select(a => a.Name))}, {IdsFile})");
            return 0;
        }));
        return command;
    }

    public static Command Check()
    {
        var names = new OptionNames();
        var dirOption = names.Bind(new Option<string>("--dir") { Description = "the folder interop-export wrote and interop_check.py added its PEFT adapters to (peft_*/ with logits.npy)", Required = true }, "dir");
        var device = names.Bind(CliSupport.DeviceOption(), "device");
        var prefix = names.Bind(new Option<string>("--prefix") { Description = "adapter folders to check: peft_ (PEFT's, the default) or kit_ (the kit's own exports: a round trip, where PEFT is not installed)", DefaultValueFactory = _ => "peft_" }, "prefix");
        var command = new Command("interop-check", "Read back the PEFT adapters bench/gpu/interop_check.py wrote (AdapterIO.Load on the exported base) and compare the kit's logits with PEFT's (float32 on the CPU; on CUDA also float32 and bfloat16).")
            { dirOption, device, prefix };
        command.SetAction(pr => CliSupport.Guard(names, () =>
        {
            string dir = pr.GetValue(dirOption)!;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"--dir {dir}: no such folder (run evidence interop-export, then bench/gpu/interop_check.py)");
            var dev = pr.GetValue(device).EnsureAvailable("device");
            TorchRuntime.Ensure();
            CpuThreads.Configure();
            string baseDir = Path.Combine(dir, "base");
            using var ids = Npy.Load(Path.Combine(dir, IdsFile));
            string pre = pr.GetValue(prefix)!;
            if (pre is not ("peft_" or "kit_")) throw new ArgumentException($"--prefix must be peft_ or kit_, got '{pre}'", "prefix");
            var folders = Directory.GetDirectories(dir, pre + "*").Order(StringComparer.Ordinal).ToList();
            if (folders.Count == 0) throw new FileNotFoundException($"--dir {dir}: no {pre}*/ adapter folders ({(pre == "peft_" ? "bench/gpu/interop_check.py writes them" : "evidence interop-export writes them")})");
            var sb = new StringBuilder();
            sb.AppendLine(pre == "peft_" ? "# The kit reads PEFT's adapters back" : "# The kit reads its own exported adapters back (a round trip; PEFT's adapters were not available)");
            sb.AppendLine();
            sb.AppendLine($"`{CliSupport.CommandText}`: each adapter ({(pre == "peft_" ? "written by PEFT's `save_pretrained`" : "written by `evidence interop-export`")}) loaded with `AdapterIO.Load` into the exported base, logits on `{IdsFile}` against the writer's own (`logits.npy`, float32 on the CPU). " +
                          $"Tolerance: float32 max |Δ| ≤ {Float32Tolerance:G2}; bfloat16 max |Δ| ≤ {BFloat16Relative:G2} × max |logit|.");
            sb.AppendLine();
            sb.AppendLine("| adapter | device | dtype | max abs diff | tolerance | verdict |");
            sb.AppendLine("|---|---|---|---:|---:|---|");
            bool ok = true;
            var runs = new List<(Device Device, ScalarType DType)> { (CPU, ScalarType.Float32) };
            if (dev.IsCuda) { runs.Add((dev.ToTorch("device"), ScalarType.Float32)); runs.Add((dev.ToTorch("device"), ScalarType.BFloat16)); }
            foreach (var folder in folders)
            {
                string name = Path.GetFileName(folder);
                using var want = Npy.Load(Path.Combine(folder, LogitsFile));
                foreach (var (d, dt) in runs)
                {
                    string verdict; double diff = double.NaN, tol = dt == ScalarType.Float32 ? Float32Tolerance : BFloat16Relative * TestMax(want);
                    try
                    {
                        using var model = ModelIO.Load(baseDir, d, dt);
                        AdapterIO.Load(model, folder);
                        using var idsOn = ids.to(d);
                        using var got = LogitsOf(model, idsOn);
                        using var delta = (got - want).abs().max().to(ScalarType.Float64);
                        diff = delta.item<double>();
                        verdict = diff <= tol ? "match" : "MISMATCH";
                    }
                    catch (Exception e) when (e is ArgumentException or FormatException or NotSupportedException or InvalidOperationException or FileNotFoundException)
                    {
                        verdict = $"refused: {e.Message.Split('\n')[0].Replace("|", "/")}";
                    }
                    ok &= verdict == "match";
                    sb.AppendLine($"| {name} | {d.type.ToString().ToLowerInvariant()} | {dt.ToString().ToLowerInvariant()} | {(double.IsNaN(diff) ? "" : diff.ToString("G3", CultureInfo.InvariantCulture))} | {tol:G3} | {verdict} |");
                }
            }
            AtomicFile.WriteText(Path.Combine(dir, CheckFile), sb.ToString());
            Console.WriteLine(sb.ToString());
            Console.WriteLine($"written: {Path.GetFullPath(Path.Combine(dir, CheckFile))}");
            return ok ? 0 : 1;
        }));
        return command;
    }

    static double TestMax(Tensor t) { using var m = t.abs().max(); return m.item<float>(); }

    static Tensor LogitsOf(LlamaForCausalLM model, Tensor ids)
    {
        using var _ = no_grad();
        model.eval();
        using var logits = model.forward(ids);
        return logits.to(ScalarType.Float32).cpu();
    }

    static void Logits(LlamaForCausalLM model, Tensor ids, string path)
    {
        using var logits = LogitsOf(model, ids);
        Npy.Save(path, logits);
    }
}

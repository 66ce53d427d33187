using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Mora.Adapters;
using Mora.IO;
using Mora.Model;
using Xunit.Abstractions;

namespace Mora.Tests;

/// <summary>
/// Adapters written by official PEFT 0.10 and by the MoRA reference fork (tests/data/interop, README there) load into
/// their bases and reproduce the libraries' logits (tolerance 1e-4, max abs, fp32) and merged weights (1e-5); the
/// kit's own files carry exactly the keys those libraries' configs know, with their meaning. Fixtures with
/// rank_pattern, alpha_pattern, layers_to_transform, exclude_modules, a regex target_modules and DoRA are derived in
/// the tests by editing the PEFT fixture, and compared with W + (α/r)·B A (or DoRA's m ∘ V/‖V‖) computed here,
/// independently of the kit's adapter code, in float64.
/// </summary>
public class InteropAdapterTests(ITestOutputHelper output)
{
    const double LogitsTolerance = 1e-4, WeightsTolerance = 1e-5;

    static string Interop => Path.Combine(TestSupport.TestData, "interop");
    static string PeftDir(string id) => Path.Combine(Interop, "adapters", "peft", id);
    static string ForkDir(string id) => Path.Combine(Interop, "adapters", "peft-mora", id);
    static string BaseDir(string name) => Path.Combine(Interop, "models", name);
    static JsonObject ReadJson(string file) => JsonNode.Parse(File.ReadAllText(file))!.AsObject();

    /// <summary>A nested JSON array of numbers as a tensor of that shape.</summary>
    static Tensor Nested(JsonNode node, ScalarType type)
    {
        var shape = new List<long>();
        for (var n = node; n is JsonArray a; n = a[0]) shape.Add(a.Count);
        var flat = new List<double>();
        void Walk(JsonNode x) { if (x is JsonArray a) foreach (var e in a) Walk(e!); else flat.Add(x.GetValue<double>()); }
        Walk(node);
        using var t = tensor(flat.ToArray(), dtype: ScalarType.Float64);
        return t.reshape(shape.ToArray()).to(type);
    }

    sealed class Reference : IDisposable
    {
        public required string Base { get; init; }
        public required Tensor InputIds { get; init; }
        public required Tensor Logits { get; init; }
        public required Tensor LogitsMerged { get; init; }
        public required JsonObject Json { get; init; }
        public void Dispose() { InputIds.Dispose(); Logits.Dispose(); LogitsMerged.Dispose(); }
    }

    static Reference ReadReference(string adapterDir)
    {
        var json = ReadJson(Path.Combine(adapterDir, "reference.json"));
        Assert.Equal("match", json["expect"]!.GetValue<string>());
        return new Reference
        {
            Base = json["base"]!.GetValue<string>(),
            InputIds = Nested(json["input_ids"]!, ScalarType.Int64),
            Logits = Nested(json["logits"]!, ScalarType.Float32),
            LogitsMerged = Nested(json["logits_merged"]!, ScalarType.Float32),
            Json = json,
        };
    }

    /// <summary>A scratch copy of an adapter folder (config and tensors only).</summary>
    static string CopyAdapter(string from)
    {
        string dir = TestSupport.TempDir();
        foreach (var f in new[] { AdapterIO.ConfigFile, AdapterIO.WeightsFile })
            File.Copy(Path.Combine(from, f), Path.Combine(dir, f));
        return dir;
    }

    static void EditConfig(string dir, Action<JsonObject> edit)
    {
        string file = Path.Combine(dir, AdapterIO.ConfigFile);
        var json = ReadJson(file);
        edit(json);
        File.WriteAllText(file, json.ToJsonString());
    }

    /// <summary>Rewrites the adapter's tensors (the callback may replace, add or remove entries; it owns what it removes).</summary>
    static void EditTensors(string dir, Action<Dictionary<string, Tensor>> edit)
    {
        string file = Path.Combine(dir, AdapterIO.WeightsFile);
        var (tensors, meta) = SafeTensors.Load(file);
        try
        {
            edit(tensors);
            SafeTensors.Save(file, tensors.Select(kv => (kv.Key, kv.Value)).ToList(), meta);
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    static Dictionary<string, Tensor> ReadTensors(string file) => SafeTensors.Load(file).Tensors;

    static double Logits(nn.Module model, Tensor ids, Tensor expected)
    {
        using var _ = no_grad();
        using var y = ((LlamaForCausalLM)model).forward(ids);
        Assert.Equal(expected.shape, y.shape);
        return TestSupport.MaxAbs(y, expected);
    }

    /// <summary>The base with some of its linear weights replaced (by module path), run as a plain model: the
    /// reference the adapter's output is compared with.</summary>
    static Tensor LogitsWithWeights(string baseName, Tensor ids, IReadOnlyDictionary<string, Tensor> weights)
    {
        using var model = ModelIO.Load(BaseDir(baseName));
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
            foreach (var (path, w) in weights) parameters[path + ".weight"].copy_(w);
        using (no_grad()) return model.forward(ids);
    }

    /// <summary>W + s·B A in float64 for every module of a PEFT LoRA file, s = α/r (α/√r with rsLoRA) per module.</summary>
    static Dictionary<string, Tensor> LoraMerged(string baseName, Dictionary<string, Tensor> file, Func<string, (int R, double Alpha)> rankAlpha, bool rsLora)
    {
        using var model = ModelIO.Load(BaseDir(baseName));
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var merged = new Dictionary<string, Tensor>();
        foreach (var key in file.Keys.Where(k => k.EndsWith(".lora_A.weight")))
        {
            string path = key["base_model.model.".Length..^".lora_A.weight".Length];
            var (r, alpha) = rankAlpha(path);
            using var a = file[key].to(ScalarType.Float64);
            using var b = file[key.Replace("lora_A", "lora_B")].to(ScalarType.Float64);
            Assert.Equal(r, a.shape[0]);
            double s = rsLora ? alpha / Math.Sqrt(r) : alpha / r;
            using var w = parameters[path + ".weight"].to(ScalarType.Float64);
            using var ba = b.matmul(a);
            merged[path] = w + ba * s;
        }
        return merged;
    }

    static void DisposeAll(IEnumerable<Tensor> ts) { foreach (var t in ts) t.Dispose(); }

    public static TheoryData<string> PeftFixtures => new() { "h_mha_untied.lora_all", "h_gqa_tied.lora_attn" };
    public static TheoryData<string> ForkFixtures => new() { "h_mha_untied.mora1", "h_mha_untied.mora6" };

    [Theory, MemberData(nameof(PeftFixtures))]
    public void PeftLoraLoadsAndMatchesPeftsLogitsAndMerge(string id)
    {
        using var rng = TestSupport.TorchSeed();
        using var reference = ReadReference(PeftDir(id));
        using var model = ModelIO.Load(BaseDir(reference.Base));
        var config = AdapterIO.Load(model, PeftDir(id));
        var peft = ReadJson(Path.Combine(PeftDir(id), AdapterIO.ConfigFile));
        Assert.Equal(AdapterMethod.Lora, config.Method);
        Assert.Equal(peft["r"]!.GetValue<int>(), config.R);
        Assert.Equal(peft["lora_alpha"]!.GetValue<double>(), config.Alpha);
        Assert.Equal(peft["target_modules"]!.AsArray().Count * model.Config.NumHiddenLayers, Peft.Adapters(model).Count);

        double logits = Logits(model, reference.InputIds, reference.Logits);
        // Merged weights against W + (α/r)·B A from the file, computed here.
        var file = ReadTensors(Path.Combine(PeftDir(id), AdapterIO.WeightsFile));
        var expected = LoraMerged(reference.Base, file, _ => (config.R, config.Alpha), rsLora: false);
        Peft.MergeAll(model);
        var mergedState = AdaptedModelIO.BaseStateDict(model, mergeAdapters: true).ToDictionary(t => t.Name, t => t.Tensor);
        double weights = expected.Max(kv => TestSupport.MaxAbs(mergedState[kv.Key + ".weight"], kv.Value));
        double merged = Logits(model, reference.InputIds, reference.LogitsMerged);
        output.WriteLine($"{id}: logits max |Δ| {logits:E2}, merged logits {merged:E2}, merged weights vs W + (α/r)BA {weights:E2}");
        Assert.True(logits <= LogitsTolerance, $"{id}: logits differ from PEFT's by {logits}");
        Assert.True(merged <= LogitsTolerance, $"{id}: merged logits differ from PEFT's merge_and_unload() by {merged}");
        Assert.True(weights <= WeightsTolerance, $"{id}: merged weights differ from W + (α/r)BA by {weights}");
        DisposeAll(file.Values); DisposeAll(expected.Values); DisposeAll(mergedState.Values);
    }

    [Theory, MemberData(nameof(ForkFixtures))]
    public void ForkMoraLoadsWithItsSecondCopyOfMAndMatchesTheForksLogitsAndMergedModel(string id)
    {
        using var rng = TestSupport.TorchSeed();
        using var reference = ReadReference(ForkDir(id));
        var file = ReadTensors(Path.Combine(ForkDir(id), AdapterIO.WeightsFile));
        // The fixture really holds the fork's duplicate (lora_B = lora_A), which the kit used to refuse.
        Assert.Contains(file.Keys, k => k.EndsWith(".lora_B.weight"));
        foreach (var k in file.Keys.Where(k => k.EndsWith(".lora_B.weight")))
            Assert.Equal(0.0, TestSupport.MaxAbs(file[k], file[k.Replace("lora_B", "lora_A")]));

        using var model = ModelIO.Load(BaseDir(reference.Base));
        var config = AdapterIO.Load(model, ForkDir(id));
        int moraType = reference.Json["mora_type"]!.GetValue<int>(), r = reference.Json["r"]!.GetValue<int>();
        Assert.Equal(AdapterMethod.Mora, config.Method);
        Assert.Equal((MoraType)moraType, config.MoraType);
        Assert.Equal(r, config.R);

        // r̂: the fork's (the side of the M it saved; reference.json's r_hat list, where given) against the kit's rule.
        var forkRHat = reference.Json["r_hat"] is JsonArray listed && listed.Count > 0 ? listed.Select(n => n!.GetValue<int>()).ToList() : null;
        var layers = Peft.Adapters(model).Select(a => (a.Name, Layer: (MoraLinear)a.Layer)).ToList();
        Assert.Equal(14, layers.Count);
        foreach (var (name, layer) in layers)
        {
            long side = file[AdapterIO.Prefix + name + ".lora_A.weight"].shape[0];
            Assert.Equal(side, layer.RHat);
            Assert.Equal(ParameterBudget.RHat(layer.OutFeatures, layer.InFeatures, r, (MoraType)moraType), layer.RHat);
        }
        if (forkRHat is not null) Assert.Equal(forkRHat.Distinct().Order(), layers.Select(l => l.Layer.RHat).Distinct().Order());
        output.WriteLine($"{id}: r̂ per module {string.Join(", ", layers.Select(l => $"{l.Name[(l.Name.IndexOf("layers.") + 7)..]}={l.Layer.RHat}"))}" +
                         $" (reference.json r_hat: {(forkRHat is null ? "empty" : string.Join(", ", forkRHat))})");

        double logits = Logits(model, reference.InputIds, reference.Logits);
        Peft.MergeAll(model);
        var forkMerged = ReadTensors(Path.Combine(ForkDir(id), "merged", "model.safetensors"));
        var ours = AdaptedModelIO.BaseStateDict(model, mergeAdapters: true).ToDictionary(t => t.Name, t => t.Tensor);
        Assert.Equal(forkMerged.Keys.Order(), ours.Keys.Order());
        double weights = forkMerged.Max(kv => TestSupport.MaxAbs(ours[kv.Key], kv.Value));
        double merged = Logits(model, reference.InputIds, reference.LogitsMerged);
        output.WriteLine($"{id}: logits max |Δ| {logits:E2}, merged logits {merged:E2}, merged weights vs the fork's merged/ {weights:E2}");
        Assert.True(logits <= LogitsTolerance, $"{id}: logits differ from the fork's by {logits}");
        Assert.True(merged <= LogitsTolerance, $"{id}: merged logits differ from the fork's by {merged}");
        Assert.True(weights <= WeightsTolerance, $"{id}: merged weights differ from the fork's merged/ by {weights}");
        // The adapter changed something: the merged model is not the base.
        using var baseModel = ModelIO.Load(BaseDir(reference.Base));
        var baseState = AdaptedModelIO.BaseStateDict(baseModel).ToDictionary(t => t.Name, t => t.Tensor);
        Assert.True(forkMerged.Max(kv => TestSupport.MaxAbs(baseState[kv.Key], kv.Value)) > 1e-3);
        DisposeAll(file.Values); DisposeAll(forkMerged.Values); DisposeAll(ours.Values); DisposeAll(baseState.Values);
    }

    [Fact]
    public void AForkCopyOfMThatDiffersIsRefusedByName()
    {
        using var rng = TestSupport.TorchSeed();
        var random = new Random(TestSupport.Seed());
        string dir = CopyAdapter(ForkDir("h_mha_untied.mora6"));
        string victim = "";
        EditTensors(dir, t =>
        {
            var copies = t.Keys.Where(k => k.EndsWith(".lora_B.weight")).Order().ToList();
            victim = copies[random.Next(copies.Count)];
            var changed = t[victim].clone();
            long i = random.Next((int)changed.shape[0]), j = random.Next((int)changed.shape[1]);
            using (no_grad()) changed[i, j] = changed[i, j] + 1e-3f;
            t[victim].Dispose();
            t[victim] = changed;
        });
        using var model = ModelIO.Load(BaseDir("h_mha_untied"));
        var e = Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(model, dir));
        Assert.Equal(victim, e.Field);
        Assert.Contains(AdapterIO.WeightsFile, e.Message);
        Assert.Empty(Peft.Adapters(model));       // nothing was injected
        Directory.Delete(dir, true);
    }

    /// <summary>Loading a PEFT file and saving it again gives PEFT's own config (every key, every value) and tensors.</summary>
    [Theory]
    [InlineData("peft", "h_mha_untied.lora_all")] [InlineData("peft", "h_gqa_tied.lora_attn")]
    [InlineData("peft-mora", "h_mha_untied.mora1")] [InlineData("peft-mora", "h_mha_untied.mora6")]
    public void SavingALoadedFixtureWritesTheLibrarysOwnConfigAndTensors(string kind, string id)
    {
        using var rng = TestSupport.TorchSeed();
        string from = Path.Combine(Interop, "adapters", kind, id);
        using var reference = ReadReference(from);
        var original = ReadJson(Path.Combine(from, AdapterIO.ConfigFile));
        using var model = ModelIO.Load(BaseDir(reference.Base));
        var config = AdapterIO.Load(model, from);
        string dir = TestSupport.TempDir();
        AdapterIO.Save(model, config, dir, original["base_model_name_or_path"]!.GetValue<string>());
        var written = ReadJson(Path.Combine(dir, AdapterIO.ConfigFile));
        Assert.Equal(original.Select(kv => kv.Key).Order(), written.Select(kv => kv.Key).Order());
        Assert.Equal(kind == "peft" ? AdapterIO.PeftLoraKeys.Order() : AdapterIO.ForkMoraKeys.Order(), written.Select(kv => kv.Key).Order());
        foreach (var (key, value) in original)
        {
            var mine = written[key];
            if (key == "target_modules")
                Assert.Equal(value!.AsArray().Select(n => n!.GetValue<string>()).Order(), mine!.AsArray().Select(n => n!.GetValue<string>()).Order());
            else if (value is JsonValue v && v.TryGetValue<double>(out double x))
                Assert.Equal(x, mine!.GetValue<double>());
            else Assert.True(JsonNode.DeepEquals(value, mine), $"{key}: PEFT wrote {value?.ToJsonString() ?? "null"}, the kit {mine?.ToJsonString() ?? "null"}");
        }
        var theirs = ReadTensors(Path.Combine(from, AdapterIO.WeightsFile));
        var ours = ReadTensors(Path.Combine(dir, AdapterIO.WeightsFile));
        // The kit writes M once; the fork's lora_B is the same tensor (the fork reads a file without it: lora_A loads both).
        var expectedKeys = theirs.Keys.Where(k => kind == "peft" || !k.EndsWith(".lora_B.weight")).Order().ToList();
        Assert.Equal(expectedKeys, ours.Keys.Order());
        foreach (var k in expectedKeys) Assert.Equal(theirs[k].bytes.ToArray(), ours[k].bytes.ToArray());
        // And the kit reads its file back to the same logits.
        using var again = ModelIO.Load(BaseDir(reference.Base));
        AdapterIO.Load(again, dir);
        using (no_grad())
        {
            using var y1 = model.forward(reference.InputIds);
            using var y2 = again.forward(reference.InputIds);
            Assert.Equal(0.0, TestSupport.MaxAbs(y1, y2));
        }
        DisposeAll(theirs.Values); DisposeAll(ours.Values);
        Directory.Delete(dir, true);
    }

    /// <summary>DoRA from a PEFT LoRA file plus a magnitude under PEFT's name (and the kit's old name), against
    /// W' = m ∘ V / ‖V‖, V = W + (α/r)·B A, computed here.</summary>
    [Theory]
    [InlineData(".lora_magnitude_vector")] [InlineData(".lora_magnitude_vector.weight")]
    public void DoraWithPeftsMagnitudeNameMatchesTheFormula(string suffix)
    {
        using var rng = TestSupport.TorchSeed();
        const string id = "h_gqa_tied.lora_attn";
        using var reference = ReadReference(PeftDir(id));
        string dir = CopyAdapter(PeftDir(id));
        EditConfig(dir, c => c["use_dora"] = true);
        var file = ReadTensors(Path.Combine(PeftDir(id), AdapterIO.WeightsFile));
        var lora = LoraMerged(reference.Base, file, _ => (2, 6), rsLora: false);      // V per module
        using var g = TestSupport.Generator();
        var magnitudes = new Dictionary<string, Tensor>();
        var expected = new Dictionary<string, Tensor>();
        foreach (var (path, v) in lora)
        {
            using var norm = linalg.vector_norm(v, 2, [1L], keepdim: false);
            using var noise = randn(norm.shape, dtype: ScalarType.Float64, generator: g);
            var m = norm * (1 + 0.2 * noise);
            magnitudes[path] = m;
            expected[path] = (m / norm).unsqueeze(1) * v;
        }
        EditTensors(dir, t => { foreach (var (path, m) in magnitudes) t[AdapterIO.Prefix + path + suffix] = m.to(ScalarType.Float32); });
        using var model = ModelIO.Load(BaseDir(reference.Base));
        var config = AdapterIO.Load(model, dir);
        Assert.Equal(AdapterMethod.Dora, config.Method);
        using var want = LogitsWithWeights(reference.Base, reference.InputIds, expected.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float32)));
        double logits = Logits(model, reference.InputIds, want);
        using var plain = LogitsWithWeights(reference.Base, reference.InputIds, lora.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float32)));
        Assert.True(TestSupport.MaxAbs(want, plain) > 1e-2, "the magnitudes should change the output");
        Peft.MergeAll(model);
        var merged = AdaptedModelIO.BaseStateDict(model, mergeAdapters: true).ToDictionary(t => t.Name, t => t.Tensor);
        double weights = expected.Max(kv => TestSupport.MaxAbs(merged[kv.Key + ".weight"], kv.Value));
        output.WriteLine($"DoRA ({suffix}): logits vs m∘V/‖V‖ {logits:E2}, merged weights {weights:E2}");
        Assert.True(logits <= LogitsTolerance, $"DoRA logits differ by {logits}");
        Assert.True(weights <= WeightsTolerance, $"DoRA merged weights differ by {weights}");

        // The kit writes the magnitude under PEFT's name, in a config with PEFT's keys.
        Peft.UnmergeAll(model);
        string saved = TestSupport.TempDir();
        AdapterIO.Save(model, config, saved);
        var (entries, _, _) = SafeTensors.ReadHeader(Path.Combine(saved, AdapterIO.WeightsFile));
        Assert.Equal(8, entries.Count(e => e.Name.EndsWith(".lora_magnitude_vector")));
        Assert.DoesNotContain(entries, e => e.Name.EndsWith(".weight") && e.Name.Contains("magnitude"));
        Assert.Equal(AdapterIO.PeftLoraKeys.Order(), ReadJson(Path.Combine(saved, AdapterIO.ConfigFile)).Select(kv => kv.Key).Order());
        Assert.True(ReadJson(Path.Combine(saved, AdapterIO.ConfigFile))["use_dora"]!.GetValue<bool>());

        // Both spellings at once are ambiguous.
        EditTensors(dir, t => { foreach (var (path, m) in magnitudes) t[AdapterIO.Prefix + path + (suffix.EndsWith(".weight") ? ".lora_magnitude_vector" : ".lora_magnitude_vector.weight")] = m.to(ScalarType.Float32); });
        using var fresh = ModelIO.Load(BaseDir(reference.Base));
        var e = Assert.Throws<AdapterMismatchException>(() => AdapterIO.Load(fresh, dir));
        Assert.Contains(e.Problems, p => p.Contains("both present"));
        DisposeAll(file.Values); DisposeAll(lora.Values); DisposeAll(magnitudes.Values); DisposeAll(expected.Values); DisposeAll(merged.Values);
        Directory.Delete(dir, true); Directory.Delete(saved, true);
    }

    /// <summary>rank_pattern and alpha_pattern, as PEFT matches their keys (<c>.*\.{key}$</c>, then the key as the whole
    /// path), with tensors cut to the pattern's rank, against W + (α/r)·B A per module.</summary>
    [Theory]
    [InlineData(false)] [InlineData(true)]
    public void RankAndAlphaPatternsGivePerModuleRankAndAlpha(bool rsLora)
    {
        using var rng = TestSupport.TorchSeed(rsLora ? 1 : 0);
        const string id = "h_mha_untied.lora_all";
        using var reference = ReadReference(PeftDir(id));
        string dir = CopyAdapter(PeftDir(id));
        var ranks = new Dictionary<string, int> { ["q_proj"] = 2, ["layers.1.mlp.down_proj"] = 3, ["model.layers.0.self_attn.k_proj"] = 1 };
        var alphas = new Dictionary<string, double> { ["v_proj"] = 3, ["gate_proj"] = 5.5 };
        EditConfig(dir, c =>
        {
            c["rank_pattern"] = new JsonObject(ranks.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
            c["alpha_pattern"] = new JsonObject(alphas.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
            c["use_rslora"] = rsLora;
        });
        // Written out here, not with the kit's matcher: which module gets which rank and alpha.
        (int R, double Alpha) Expected(string path) => (
            path.EndsWith(".q_proj") ? 2 : path == "model.layers.1.mlp.down_proj" ? 3 : path == "model.layers.0.self_attn.k_proj" ? 1 : 4,
            path.EndsWith(".v_proj") ? 3 : path.EndsWith(".gate_proj") ? 5.5 : 8);
        EditTensors(dir, t =>
        {
            foreach (var key in t.Keys.Where(k => k.EndsWith(".lora_A.weight")).ToList())
            {
                string path = key[AdapterIO.Prefix.Length..^".lora_A.weight".Length];
                int r = Expected(path).R;
                if (r == 4) continue;
                string b = key.Replace("lora_A", "lora_B");
                var (a2, b2) = (t[key].narrow(0, 0, r).clone(), t[b].narrow(1, 0, r).clone());
                t[key].Dispose(); t[b].Dispose();
                (t[key], t[b]) = (a2, b2);
            }
        });
        var file = ReadTensors(Path.Combine(dir, AdapterIO.WeightsFile));
        var merged = LoraMerged(reference.Base, file, Expected, rsLora);
        using var want = LogitsWithWeights(reference.Base, reference.InputIds, merged.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float32)));
        using var model = ModelIO.Load(BaseDir(reference.Base));
        var config = AdapterIO.Load(model, dir);
        foreach (var (name, layer) in Peft.Adapters(model))
        {
            var l = (LoraLinear)layer;
            Assert.Equal(Expected(name), (l.R, l.Alpha));
            Assert.Equal(rsLora, l.UseRsLora);
        }
        double logits = Logits(model, reference.InputIds, want);
        output.WriteLine($"rank/alpha pattern (rsLoRA {rsLora}): logits vs W + s·BA per module {logits:E2}");
        Assert.True(logits <= LogitsTolerance, $"logits differ by {logits}");
        // PEFT's own logits for the unedited file are far from these (the patterns changed something).
        Assert.True(TestSupport.MaxAbs(want, reference.Logits) > 1e-3);

        // Saved again, the patterns are written as they were read, and read back to the same adapters.
        string saved = TestSupport.TempDir();
        AdapterIO.Save(model, config, saved);
        var json = ReadJson(Path.Combine(saved, AdapterIO.ConfigFile));
        Assert.Equal(ranks.Keys, json["rank_pattern"]!.AsObject().Select(kv => kv.Key));
        Assert.Equal(alphas.Values, json["alpha_pattern"]!.AsObject().Select(kv => kv.Value!.GetValue<double>()));
        using var again = ModelIO.Load(BaseDir(reference.Base));
        AdapterIO.Load(again, saved);
        Assert.True(Logits(again, reference.InputIds, want) <= LogitsTolerance);
        DisposeAll(file.Values); DisposeAll(merged.Values);
        Directory.Delete(dir, true); Directory.Delete(saved, true);
    }

    /// <summary>Where PEFT versions give a module different (r, α), the kit refuses rather than choosing one.</summary>
    [Theory]
    [InlineData("{\"q_proj\": 2}", "{\"layers.0.self_attn.q_proj\": 3}", "alpha_pattern")]     // ≤ 0.13 uses the rank key for α too
    [InlineData("{\"model\\\\.layers\\\\.0\\\\.self_attn\\\\.q_proj\": 2}", "{}", "rank_pattern")]   // a regex of the whole path: ≥ 0.15 only
    public void PatternsPeftVersionsReadDifferentlyAreRefused(string rankPattern, string alphaPattern, string field)
    {
        using var rng = TestSupport.TorchSeed();
        string dir = CopyAdapter(PeftDir("h_mha_untied.lora_all"));
        EditConfig(dir, c => { c["rank_pattern"] = JsonNode.Parse(rankPattern); c["alpha_pattern"] = JsonNode.Parse(alphaPattern); });
        using var model = ModelIO.Load(BaseDir("h_mha_untied"));
        var e = Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(model, dir));
        Assert.Equal(field, e.Field);
        Assert.Contains("model.layers.0.self_attn.q_proj", e.Message);
        Assert.Empty(Peft.Adapters(model));
        Directory.Delete(dir, true);
    }

    /// <summary>layers_to_transform (with and without layers_pattern), exclude_modules (list and regex) and a regex
    /// target_modules select the modules PEFT selects; the file holds exactly their tensors, compared with W + (α/r)BA.</summary>
    [Theory]
    [InlineData("layers", "[1]", null, null)]
    [InlineData("layers_default_pattern", "1", null, null)]
    [InlineData("exclude_list", null, "[\"layers.0.mlp.up_proj\", \"o_proj\"]", null)]
    [InlineData("exclude_regex", null, "\"model\\\\.layers\\\\.1\\\\..*\"", null)]
    [InlineData("target_regex", null, null, "\"model\\\\.layers\\\\.[01]\\\\.self_attn\\\\.(q|v)_proj\"")]
    public void LayerAndModuleSelectionMatchesPeft(string name, string? layers, string? exclude, string? regex)
    {
        using var rng = TestSupport.TorchSeed(name.GetHashCode(StringComparison.Ordinal) & 0xffff);
        const string id = "h_mha_untied.lora_all";
        using var reference = ReadReference(PeftDir(id));
        string dir = CopyAdapter(PeftDir(id));
        EditConfig(dir, c =>
        {
            if (layers is not null) { c["layers_to_transform"] = JsonNode.Parse(layers); if (name == "layers") c["layers_pattern"] = "layers"; }
            if (exclude is not null) c["exclude_modules"] = JsonNode.Parse(exclude);
            if (regex is not null) c["target_modules"] = JsonNode.Parse(regex);
        });
        // The selection, written out here.
        bool Selected(string path) => name switch
        {
            "layers" or "layers_default_pattern" => path.StartsWith("model.layers.1."),
            "exclude_list" => path != "model.layers.0.mlp.up_proj" && !path.EndsWith(".o_proj"),
            "exclude_regex" => path.StartsWith("model.layers.0."),
            _ => path.EndsWith(".q_proj") || path.EndsWith(".v_proj"),
        };
        EditTensors(dir, t =>
        {
            foreach (var key in t.Keys.ToList())
                if (!Selected(key[AdapterIO.Prefix.Length..key.IndexOf(".lora_")])) { t[key].Dispose(); t.Remove(key); }
        });
        var file = ReadTensors(Path.Combine(dir, AdapterIO.WeightsFile));
        var merged = LoraMerged(reference.Base, file, _ => (4, 8), rsLora: false);
        Assert.InRange(merged.Count, 4, 13);      // some of the 14, not all
        using var want = LogitsWithWeights(reference.Base, reference.InputIds, merged.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float32)));
        using var model = ModelIO.Load(BaseDir(reference.Base));
        var config = AdapterIO.Load(model, dir);
        Assert.Equal(merged.Keys.Order(), Peft.Adapters(model).Select(a => a.Name).Order());
        double logits = Logits(model, reference.InputIds, want);
        output.WriteLine($"{name}: {merged.Count} modules, logits vs W + s·BA {logits:E2}");
        Assert.True(logits <= LogitsTolerance, $"{name}: logits differ by {logits}");

        // Saved by the kit, the same selection is written in the terms PEFT 0.10 knows (no exclude_modules) and reads back.
        string saved = TestSupport.TempDir();
        AdapterIO.Save(model, config, saved);
        var json = ReadJson(Path.Combine(saved, AdapterIO.ConfigFile));
        Assert.Equal(AdapterIO.PeftLoraKeys.Order(), json.Select(kv => kv.Key).Order());
        var linears = model.named_modules().Where(m => m.module is AdaptedLinear || m.module is TorchSharp.Modules.Linear && !m.name.Contains(".base_layer") && !m.name.Contains(".lora_")).Select(m => m.name).ToList();
        Assert.Equal(merged.Keys.Order(), linears.Where(p => PeftSelects(json, p)).Order());
        using var again = ModelIO.Load(BaseDir(reference.Base));
        AdapterIO.Load(again, saved);
        Assert.True(Logits(again, reference.InputIds, want) <= LogitsTolerance);
        DisposeAll(file.Values); DisposeAll(merged.Values);
        Directory.Delete(dir, true); Directory.Delete(saved, true);
    }

    /// <summary>PEFT 0.10's <c>check_target_module_exists</c> for a list target_modules with layers_to_transform,
    /// written out independently of the kit's matcher.</summary>
    static bool PeftSelects(JsonObject config, string path)
    {
        var names = config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).ToList();
        if (names.Contains(path)) return true;
        if (!names.Any(n => path.EndsWith("." + n))) return false;
        if (config["layers_to_transform"] is not JsonArray layers || layers.Count == 0) return true;
        var pattern = config["layers_pattern"] is JsonArray p && p.Count > 0 ? p[0]!.GetValue<string>() : "[^.]*";
        var m = Regex.Match(path, $@"^.*\.{pattern}\.(\d+)\.");
        return m.Success && layers.Any(l => l!.GetValue<int>() == int.Parse(m.Groups[1].Value));
    }

    [Fact]
    public void AStringTargetModulesIsARegexOverTheWholePath()
    {
        using var rng = TestSupport.TorchSeed();
        // "q_proj" as a string is, for PEFT, re.fullmatch("q_proj", path): no module's whole path is "q_proj".
        string dir = CopyAdapter(PeftDir("h_gqa_tied.lora_attn"));
        EditConfig(dir, c => c["target_modules"] = "q_proj");
        using var model = ModelIO.Load(BaseDir("h_gqa_tied"));
        var e = Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(model, dir));
        Assert.Equal("target_modules", e.Field);
        Assert.Contains("match no linear layer", e.Message);
        // A regex reaching a non-linear module is refused by name (PEFT would adapt an embedding with another layer type).
        EditConfig(dir, c => c["target_modules"] = @"model\.embed_tokens|.*q_proj");
        e = Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(model, dir));
        Assert.Equal("target_modules", e.Field);
        Assert.Contains("model.embed_tokens", e.Message);
        Assert.Empty(Peft.Adapters(model));
        Directory.Delete(dir, true);
    }

    /// <summary>Metadata keys of newer PEFT versions, and the off values of refused features, load as PEFT would.</summary>
    [Fact]
    public void NewerPeftKeysThatAreOffOrMetadataLoad()
    {
        using var rng = TestSupport.TorchSeed();
        using var reference = ReadReference(PeftDir("h_gqa_tied.lora_attn"));
        string dir = CopyAdapter(PeftDir("h_gqa_tied.lora_attn"));
        EditConfig(dir, c =>
        {
            c["peft_version"] = "0.13.2"; c["runtime_config"] = new JsonObject { ["ephemeral_gpu_offload"] = false };
            c["revision"] = "main"; c["exclude_modules"] = null; c["lora_bias"] = false; c["eva_config"] = null;
            c["corda_config"] = null; c["trainable_token_indices"] = null; c["target_parameters"] = null; c["use_qalora"] = false;
            c["qalora_group_size"] = 16; c["ensure_weight_tying"] = false; c["layer_replication"] = new JsonArray();
            c["modules_to_save"] = new JsonArray(); c["init_lora_weights"] = "gaussian"; c["lora_dropout"] = 0.05;
        });
        using var model = ModelIO.Load(BaseDir(reference.Base));
        var config = AdapterIO.Load(model, dir);
        Assert.Equal(LoraInit.Gaussian, config.Init);
        model.eval();
        double logits = Logits(model, reference.InputIds, reference.Logits);
        Assert.True(logits <= LogitsTolerance, $"logits differ by {logits}");
        Directory.Delete(dir, true);
    }

    /// <summary>One mutation of a fixture's adapter_config.json and the field the refusal must name.</summary>
    sealed record Mutation(string Field, Action<JsonObject, Random> Apply, bool LoraOnly = false);

    static readonly Mutation[] Mutations =
    [
        new("r", (c, _) => c.Remove("r")),
        new("r", (c, g) => c["r"] = -g.Next(1, 100)),
        new("r", (c, _) => c["r"] = 0),
        new("r", (c, g) => c["r"] = g.Next(1, 8) + 0.5),
        new("r", (c, g) => c["r"] = g.Next(1, 8).ToString()),
        new("r", (c, _) => c["r"] = true),
        new("r", (c, g) => c["r"] = g.Next(100, 1000)),                          // larger than the layers allow
        new("lora_alpha", (c, _) => c.Remove("lora_alpha")),
        new("lora_alpha", (c, _) => c["lora_alpha"] = "8"),
        new("lora_alpha", (c, g) => c["lora_alpha"] = -g.Next(1, 50), LoraOnly: true),      // MoRA ignores α (scaling 1), as the fork does
        new("lora_alpha", (c, _) => c["lora_alpha"] = null),
        new("lora_dropout", (c, g) => c["lora_dropout"] = 1 + g.NextDouble()),
        new("lora_dropout", (c, g) => c["lora_dropout"] = -g.NextDouble() - 0.01),
        new("peft_type", (c, _) => c.Remove("peft_type")),
        new("peft_type", (c, g) => c["peft_type"] = new[] { "IA3", "ADALORA", "LOHA", "lora", "PREFIX_TUNING", "VERA" }[g.Next(6)]),
        new("peft_type", (c, g) => c["peft_type"] = g.Next(10)),
        new("task_type", (c, g) => c["task_type"] = new[] { "SEQ_CLS", "TOKEN_CLS", "SEQ_2_SEQ_LM", "FEATURE_EXTRACTION" }[g.Next(4)]),
        new("target_modules", (c, _) => c.Remove("target_modules")),
        new("target_modules", (c, _) => c["target_modules"] = null),
        new("target_modules", (c, g) => c["target_modules"] = g.Next(10)),
        new("target_modules", (c, _) => c["target_modules"] = new JsonArray()),
        new("target_modules", (c, g) => c["target_modules"] = new JsonArray(g.Next(5))),
        new("target_modules", (c, _) => c["target_modules"] = new JsonArray("all-linear")),
        new("target_modules", (c, _) => c["target_modules"] = "q_proj("),
        new("target_modules", (c, _) => c["target_modules"] = "(?P<x>q)_proj"),      // Python-only syntax
        // .NET-only syntax (Python reads it otherwise or refuses it): refused, never matched with .NET's meaning
        new("target_modules", (c, g) => c["target_modules"] = new[] { @".*(?<x>q)_proj", @".*[a-z-[x]]_proj", @".*\p{L}_proj", @".*q_pro{,1}j", @"(?n).*(q)_proj", @".*(?'x'q)_proj" }[g.Next(6)]),
        new("rank_pattern", (c, g) => c["rank_pattern"] = new JsonObject { [new[] { @"(?<x>q)_proj", @"\p{Ll}_proj" }[g.Next(2)]] = g.Next(1, 4) }),
        new("target_modules", (c, g) => c["target_modules"] = new JsonArray($"nothing_{g.Next(1000)}")),
        new("bias", (c, g) => c["bias"] = new[] { "all", "lora_only", "some" }[g.Next(3)]),
        new("fan_in_fan_out", (c, _) => c["fan_in_fan_out"] = true),
        new("fan_in_fan_out", (c, _) => c["fan_in_fan_out"] = "no"),
        new("use_rslora", (c, g) => c["use_rslora"] = g.Next(2)),
        new("use_dora", (c, _) => c["use_dora"] = "yes"),
        new("init_lora_weights", (c, g) => c["init_lora_weights"] = new[] { "pissa", $"pissa_niter_{g.Next(1, 30)}", "olora", "loftq", "corda", "eva", "orthogonal", "kaiming" }[g.Next(8)]),
        new("init_lora_weights", (c, g) => c["init_lora_weights"] = g.Next(5)),
        new("modules_to_save", (c, g) => c["modules_to_save"] = new JsonArray(new[] { "lm_head", "embed_tokens", "score" }[g.Next(3)])),
        new("layer_replication", (c, _) => c["layer_replication"] = new JsonArray(new JsonArray(0, 1), new JsonArray(0, 2))),
        new("megatron_config", (c, _) => c["megatron_config"] = new JsonObject { ["tensor_model_parallel_size"] = 2 }),
        new("loftq_config", (c, g) => c["loftq_config"] = new JsonObject { ["loftq_bits"] = g.Next(2, 9) }),
        new("lora_bias", (c, _) => c["lora_bias"] = true),
        new("use_qalora", (c, _) => c["use_qalora"] = true),
        new("eva_config", (c, _) => c["eva_config"] = new JsonObject { ["rho"] = 2.0 }),
        new("target_parameters", (c, _) => c["target_parameters"] = new JsonArray("experts.gate_up_proj")),
        new("trainable_token_indices", (c, g) => c["trainable_token_indices"] = new JsonArray(g.Next(50))),
        new("layers_to_transform", (c, _) => c["layers_to_transform"] = "0"),
        new("layers_to_transform", (c, g) => c["layers_to_transform"] = new JsonArray(-g.Next(1, 5))),
        new("layers_to_transform", (c, _) => c["layers_to_transform"] = new JsonArray(true)),
        new("layers_to_transform", (c, _) => c["layers_to_transform"] = 1.5),
        new("layers_to_transform", (c, g) => { c["target_modules"] = ".*_proj"; c["layers_to_transform"] = new JsonArray(g.Next(2)); }),
        new("layers_pattern", (c, _) => { c["target_modules"] = "all-linear"; c["layers_pattern"] = "layers"; }),
        new("layers_pattern", (c, _) => c["layers_pattern"] = 3),
        new("rank_pattern", (c, _) => c["rank_pattern"] = new JsonObject { ["q_proj"] = 0 }),
        new("rank_pattern", (c, _) => c["rank_pattern"] = new JsonObject { ["q_proj"] = "x" }),
        new("rank_pattern", (c, _) => c["rank_pattern"] = new JsonArray(1)),
        new("rank_pattern", (c, g) => c["rank_pattern"] = new JsonObject { ["q_proj("] = g.Next(1, 4) }),
        new("alpha_pattern", (c, _) => c["alpha_pattern"] = new JsonObject { ["v_proj"] = "x" }),
        new("alpha_pattern", (c, g) => c["alpha_pattern"] = new JsonObject { ["v_proj"] = -g.Next(1, 9) }),
        new("use_dora", (c, _) => { c["use_mora"] = true; c["mora_type"] = 6; c["use_dora"] = true; }),
        new("mora_type", (c, g) => { c["use_mora"] = true; c["mora_type"] = g.Next(7, 100); }),
        new("mora_type", (c, g) => { c["use_mora"] = true; c["mora_type"] = g.Next(2) == 0 ? 0 : 5; }),     // kit-only designs, no sidecar
        new("mora_type", (c, _) => { c["use_mora"] = true; c["mora_type"] = "6"; }),
        new("use_mora", (c, _) => c["use_mora"] = 1),
    ];

    /// <summary>Seeded mutations of the fixtures' configs (and unknown keys): each load fails with
    /// <see cref="AdapterFormatException"/> naming adapter_config.json and the field, and leaves the model untouched.</summary>
    [Fact]
    public void MutatedConfigsAreRefusedNamingTheField()
    {
        using var rng = TestSupport.TorchSeed();
        var random = new Random(TestSupport.Seed());
        var sources = new[] { PeftDir("h_mha_untied.lora_all"), PeftDir("h_gqa_tied.lora_attn"), ForkDir("h_mha_untied.mora6") };
        var bases = sources.Select(s => ModelIO.Load(BaseDir(ReadJson(Path.Combine(s, "reference.json"))["base"]!.GetValue<string>()))).ToArray();
        string dir = TestSupport.TempDir();
        var cases = Mutations.Select(m => (m, Unknown: false)).Concat(Enumerable.Range(0, 8).Select(_ => (m: (Mutation)null!, Unknown: true))).ToList();
        // Every mutation once, in a seeded order and on a seeded fixture, then seeded draws.
        var order = cases.OrderBy(_ => random.Next()).Concat(Enumerable.Range(0, 40).Select(_ => cases[random.Next(cases.Count)])).ToList();
        foreach (var (mutation, unknown) in order)
        {
            int which = random.Next(unknown || !mutation.LoraOnly ? sources.Length : 2);
            foreach (var f in new[] { AdapterIO.ConfigFile, AdapterIO.WeightsFile }) File.Copy(Path.Combine(sources[which], f), Path.Combine(dir, f), overwrite: true);
            string field;
            if (unknown)
            {
                field = "x_" + random.Next(1_000_000);
                string f2 = field;
                object value = random.Next(3) switch { 0 => random.Next(), 1 => "on", _ => true };
                EditConfig(dir, c => c[f2] = JsonValue.Create(value));
            }
            else { field = mutation.Field; EditConfig(dir, c => mutation.Apply(c, random)); }
            string text = File.ReadAllText(Path.Combine(dir, AdapterIO.ConfigFile));
            AdapterFormatException? caught = null;
            try { AdapterIO.Load(bases[which], dir); }
            catch (AdapterFormatException x) { caught = x; }
            var e = caught ?? throw new Xunit.Sdk.XunitException($"{text}\n→ loaded; expected a refusal naming '{field}'");
            Assert.IsType<AdapterFormatException>(e);
            Assert.True(field == e.Field, $"{text}\n→ expected a refusal naming '{field}', got '{e.Field}': {e.Message}");
            Assert.Contains(AdapterIO.ConfigFile, e.Message);
            Assert.Contains(field, e.Message);
            Assert.Empty(Peft.Adapters(bases[which]));
        }
        // The unmutated fixtures load (the refusals above are the mutations').
        for (int i = 0; i < sources.Length; i++) Assert.NotEmpty(Peft.Inject(bases[i], AdapterIO.ReadConfig(sources[i])));
        foreach (var b in bases) b.Dispose();
        Directory.Delete(dir, true);
    }

    [Fact]
    public void AdapterFilesAreReadOnlyAsBoundedRegularFilesAndTensorsMustBeFinite()
    {
        using var rng = TestSupport.TorchSeed();
        var random = new Random(TestSupport.Seed());
        using var model = ModelIO.Load(BaseDir("h_gqa_tied"));
        string dir = CopyAdapter(PeftDir("h_gqa_tied.lora_attn"));
        string config = Path.Combine(dir, AdapterIO.ConfigFile), weights = Path.Combine(dir, AdapterIO.WeightsFile);

        // A symbolic link, even to the right file, is refused.
        string elsewhere = Path.Combine(TestSupport.TempDir(), "real.json");
        File.Move(config, elsewhere);
        File.CreateSymbolicLink(config, elsewhere);
        var e = Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(model, dir));
        Assert.Contains("symbolic link", e.Message);
        File.Delete(config);
        File.Copy(elsewhere, config);

        // Oversized and empty files, and a folder in a file's place.
        string good = File.ReadAllText(config);
        File.WriteAllText(config, good.TrimEnd('}') + new string(' ', (int)AdapterIO.MaxConfigBytes) + "}");
        Assert.Contains("more than", Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(model, dir)).Message);
        File.WriteAllText(config, good);
        byte[] tensors = File.ReadAllBytes(weights);
        File.WriteAllBytes(weights, []);
        Assert.Contains("empty", Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(model, dir)).Message);
        File.Delete(weights);
        Directory.CreateDirectory(weights);
        Assert.Contains("folder", Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(model, dir)).Message);
        Directory.Delete(weights);
        File.WriteAllBytes(weights, tensors);

        // A non-finite value in a tensor: refused naming the tensor.
        string victim = "";
        EditTensors(dir, t =>
        {
            var keys = t.Keys.Order().ToList();
            victim = keys[random.Next(keys.Count)];
            var changed = t[victim].clone();
            using (no_grad()) changed[random.Next((int)changed.shape[0]), random.Next((int)changed.shape[1])] = random.Next(2) == 0 ? float.NaN : float.PositiveInfinity;
            t[victim].Dispose();
            t[victim] = changed;
        });
        e = Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(model, dir));
        Assert.Equal(victim, e.Field);
        Assert.Contains("not finite", e.Message);
        Assert.Empty(Peft.Adapters(model));

        // An unexpected tensor and a mis-shaped one are listed by name, before anything is read.
        File.WriteAllBytes(weights, tensors);
        EditTensors(dir, t =>
        {
            t["base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"] = randn(2, 48);
            var a = t["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"];
            t["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"] = randn(3, 48);
            a.Dispose();
        });
        var mismatch = Assert.Throws<AdapterMismatchException>(() => AdapterIO.Load(model, dir));
        Assert.Contains("unexpected tensor base_model.model.model.layers.0.mlp.up_proj.lora_A.weight (no adapted module has it)", mismatch.Problems);
        Assert.Contains(mismatch.Problems, p => p.StartsWith("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight: file has shape [3, 48]"));
        Assert.Equal(2, mismatch.Problems.Count);
        Assert.Empty(Peft.Adapters(model));
        Directory.Delete(dir, true);
    }

    /// <summary>The kit's own LoRA, DoRA and MoRA files: PEFT's (or the fork's) key set, and the adapted set written so
    /// that PEFT's matching (written out here) selects exactly the adapted modules; the kit reads them back exactly.</summary>
    [Theory]
    [InlineData(AdapterMethod.Lora, "all_layer1")] [InlineData(AdapterMethod.Dora, "exclude_one")] [InlineData(AdapterMethod.Mora, "exclude_one")]
    [InlineData(AdapterMethod.Lora, "exclude_one")] [InlineData(AdapterMethod.Mora, "all_layer1")]
    public void KitFilesCarryOnlyTheLibrarysKeysAndItsMeaning(AdapterMethod method, string selection)
    {
        using var rng = TestSupport.TorchSeed((int)method * 10 + selection.Length);
        using var model = ModelIO.Load(BaseDir("h_mha_untied"));
        var config = new AdapterConfig
        {
            Method = method, R = 2, Alpha = 5, MoraType = MoraType.Sharing, TargetModules = [AdapterConfig.AllLinear],
            LayersToTransform = selection == "all_layer1" ? [1] : null,
            ExcludeModules = selection == "exclude_one" ? ["layers.0.self_attn.q_proj"] : ["layers.1.mlp.up_proj"],
            RHatRule = RHatRule.RoundHalfUp,
        };
        var injected = Peft.Inject(model, config);
        using (no_grad()) foreach (var (_, a) in injected) foreach (var (_, p) in a.AdapterParameters()) { using var n = randn_like(p) * 0.05; p.add_(n); }
        string dir = TestSupport.TempDir();
        AdapterIO.Save(model, config, dir, "models/h_mha_untied");
        var json = ReadJson(Path.Combine(dir, AdapterIO.ConfigFile));
        Assert.Equal(method == AdapterMethod.Mora ? AdapterIO.ForkMoraKeys.Order() : AdapterIO.PeftLoraKeys.Order(), json.Select(kv => kv.Key).Order());
        Assert.Equal("models/h_mha_untied", json["base_model_name_or_path"]!.GetValue<string>());
        var paths = model.named_modules().Where(m => m.module is AdaptedLinear || m.module is TorchSharp.Modules.Linear && !m.name.Contains(".base_layer") && !m.name.Contains(".lora_")).Select(m => m.name).ToList();
        Assert.Equal(injected.Select(i => i.Name).Order(), paths.Where(p => PeftSelects(json, p)).Order());
        if (selection == "exclude_one")     // q_proj of layer 1 only: the short name would select layer 0's too, so full paths
            Assert.Contains("model.layers.1.self_attn.q_proj", json["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()));
        else
            Assert.Equal(new[] { 1 }, json["layers_to_transform"]!.AsArray().Select(n => n!.GetValue<int>()));
        var kit = ReadJson(Path.Combine(dir, AdapterIO.KitFile));
        Assert.Equal(config.ExcludeModules, kit["exclude_modules"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal("RoundHalfUp", kit["rhat_rule"]!.GetValue<string>());

        using var ids = randint(0, 100, [2, 9], dtype: ScalarType.Int64, generator: TestSupport.Generator());
        using var again = ModelIO.Load(BaseDir("h_mha_untied"));
        AdapterIO.Load(again, dir);
        using (no_grad())
        {
            using var y1 = model.forward(ids);
            using var y2 = again.forward(ids);
            using var y0 = ModelIO.Load(BaseDir("h_mha_untied")).forward(ids);
            Assert.Equal(0.0, TestSupport.MaxAbs(y1, y2));
            Assert.True(TestSupport.MaxAbs(y1, y0) > 1e-4, "the adapters should change the output");
        }
        Directory.Delete(dir, true);
    }

    /// <summary>init_lora_weights for a fresh adapter, as PEFT's update_layer / reset_lora_parameters / dora_init: true
    /// (A Kaiming-uniform, bound 1/√k; B = 0), "gaussian" (A ~ N(0, (1/r)²); B = 0), false (both nn.Linear's
    /// Kaiming-uniform, so ΔW ≠ 0), DoRA's m = ‖W₀ + s·B A‖ per row. Sample std checked within 15 % (2048 draws).</summary>
    [Theory]
    [InlineData(LoraInit.Default)] [InlineData(LoraInit.Gaussian)] [InlineData(LoraInit.None)]
    public void FreshAdaptersStartAsInitLoraWeightsSays(LoraInit init)
    {
        using var rng = TestSupport.TorchSeed((int)init);
        const int k = 256, d = 128, r = 8;
        using var baseLayer = nn.Linear(k, d, hasBias: false, dtype: ScalarType.Float64);
        var lora = new LoraLinear(baseLayer, r, 16, init: init);
        double bound = 1 / Math.Sqrt(k);
        using var absA = lora.A.abs();
        using var stdA = lora.A.std();
        switch (init)
        {
            case LoraInit.Gaussian:
                Assert.InRange(stdA.item<double>(), 0.85 / r, 1.15 / r);
                Assert.Equal(0.0, TestSupport.MaxAbs(lora.B));
                break;
            case LoraInit.Default:
                Assert.True(absA.max().item<double>() <= bound);
                Assert.InRange(stdA.item<double>(), 0.85 * bound / Math.Sqrt(3), 1.15 * bound / Math.Sqrt(3));
                Assert.Equal(0.0, TestSupport.MaxAbs(lora.B));
                break;
            default:
                Assert.True(absA.max().item<double>() <= bound);
                Assert.True(TestSupport.MaxAbs(lora.B) > 0.1, "init_lora_weights=false leaves B at nn.Linear's initialisation");
                break;
        }
        using var baseLayer2 = nn.Linear(k, d, hasBias: false, dtype: ScalarType.Float64);
        var dora = new DoraLinear(baseLayer2, r, 16, init: init);
        using var v = dora.BaseWeight + dora.B.matmul(dora.A) * dora.Scaling;
        using var norm = linalg.vector_norm(v, 2, [1L], keepdim: false);
        Assert.True(TestSupport.MaxAbs(dora.Magnitude, norm) <= 1e-12);
        // ReLoRA's restart is always ΔW = 0.
        lora.ResetAdapter();
        Assert.Equal(0.0, TestSupport.MaxAbs(lora.B));
    }

    [Fact]
    public void SavingWithAConfigThatDescribesOtherAdaptersIsRefused()
    {
        using var rng = TestSupport.TorchSeed();
        using var model = ModelIO.Load(BaseDir("h_mha_untied"));
        var config = AdapterConfig.Lora(4, 8, "q_proj", "v_proj");
        Peft.Inject(model, config);
        string dir = TestSupport.TempDir();
        var e = Assert.Throws<ArgumentException>(() => AdapterIO.Save(model, config with { R = 2 }, dir));
        Assert.Contains("r = 4, config gives 2", e.Message);
        e = Assert.Throws<ArgumentException>(() => AdapterIO.Save(model, config with { TargetModules = ["q_proj"] }, dir));
        Assert.Contains("v_proj has an adapter the config does not target", e.Message);
        Assert.Empty(Directory.GetFiles(dir));
        // Loading a folder into a model whose adapters differ from its config is refused too.
        AdapterIO.Save(model, config, dir);
        using var other = ModelIO.Load(BaseDir("h_mha_untied"));
        Peft.Inject(other, config with { Alpha = 3 });
        var m = Assert.Throws<AdapterMismatchException>(() => AdapterIO.Load(other, dir));
        Assert.Contains(m.Problems, p => p.Contains("lora_alpha = 3, config gives 8"));
        Directory.Delete(dir, true);
    }
}

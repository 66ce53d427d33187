using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.Experiments;
using Mora.IO;
using Mora.Model;

namespace Mora.Tests;

/// <summary>
/// A researcher's own Hugging Face model as the base (<c>--base DIR</c>), end to end: a checkpoint written by
/// transformers 4.40 (tests/data/interop/models, README there) with a tokenizer.json is fine-tuned by the memorisation,
/// continual and GSM8K experiments for a few steps; each adapter run leaves <c>runs/&lt;run&gt;/adapter/</c> whose
/// adapter_config.json is the one official PEFT 0.10 (LoRA, DoRA) or the MoRA fork (MoRA) wrote for the same base
/// (tests/data/interop/adapters) but for the base's path, with the same tensor names and shapes; read back by
/// <see cref="AdapterIO.Load"/> it gives the logits of the run's final checkpoint (max abs ≤ 1e-6, float32: the same
/// tensors, so in practice 0) and the run's recorded scores exactly. The job's identity holds the base's files by
/// content, the user's folder is never written, and a tokenizer that does not fit the model is refused before anything
/// is written. The README's "Use your own model" command runs as written.
/// </summary>
[Collection(ExternalProcesses.Name)]
public class GivenBaseTests
{
    const double LogitsTolerance = 1e-6;

    static string Interop => Path.Combine(TestSupport.TestData, "interop");
    static JsonObject ReadJson(string file) => JsonNode.Parse(File.ReadAllText(file))!.AsObject();

    /// <summary>A model folder as a researcher has it: transformers' <c>config.json</c>, <c>generation_config.json</c> and
    /// <c>model.safetensors</c> of the interop fixture <paramref name="model"/>, with a character-level tokenizer.json in
    /// the tokenizers library's format written here (the fixtures' tokenizers have more ids than the fixture models embed):
    /// <c>&lt;unk&gt;</c>, <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>, then printable ASCII from space to 'z' (94 ids: the fixture models embed 96 or 100), no merges, the Fuse decoder; and a
    /// tokenizer_config.json naming BOS and EOS. <paramref name="maxPositions"/> raises config.json's
    /// <c>max_position_embeddings</c> (for LLaMA without <c>rope_scaling</c> it sets no weight and no rotary frequency;
    /// the fixtures' 128 is shorter than the continual experiment's documents).</summary>
    internal static string ModelFolder(string model = "h_mha_untied", string? tokenizerJson = null, int? maxPositions = null)
    {
        string dir = Path.Combine(TestSupport.TempDir(), "my-model");
        Directory.CreateDirectory(dir);
        foreach (var f in new[] { ModelIO.ConfigFile, ModelIO.GenerationConfigFile, ModelIO.WeightsFile })
            File.Copy(Path.Combine(Interop, "models", model, f), Path.Combine(dir, f));
        if (maxPositions is { } n)
        {
            var config = ReadJson(Path.Combine(dir, ModelIO.ConfigFile));
            Assert.Null(config["rope_scaling"]);
            config["max_position_embeddings"] = n;
            File.WriteAllText(Path.Combine(dir, ModelIO.ConfigFile), config.ToJsonString());
        }
        if (tokenizerJson is not null) { File.Copy(tokenizerJson, Path.Combine(dir, ModelIO.TokenizerFile)); return dir; }
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (char c = ' '; c <= 'z'; c++) vocab[c.ToString()] = vocab.Count;
        JsonNode Added(int id, string content) => new JsonObject
        {
            ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
        };
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null,
            ["added_tokens"] = new JsonArray(Added(0, "<unk>"), Added(1, "<s>"), Added(2, "</s>")),
            ["normalizer"] = null, ["pre_tokenizer"] = null, ["post_processor"] = null, ["decoder"] = new JsonObject { ["type"] = "Fuse" },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = "<unk>", ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false, ["vocab"] = vocab, ["merges"] = new JsonArray(),
            },
        };
        File.WriteAllText(Path.Combine(dir, ModelIO.TokenizerFile), tokenizer.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), new JsonObject { ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["pad_token"] = null }.ToJsonString());
        return dir;
    }

    /// <summary>Every file of a folder with its bytes' hash, to show nothing in it was written.</summary>
    static Dictionary<string, string> Snapshot(string dir) =>
        Directory.GetFiles(dir, "*", SearchOption.AllDirectories).ToDictionary(f => Path.GetRelativePath(dir, f), Mora.Training.RunFolder.Sha256);

    /// <summary>The adapter's config has exactly the library's keys and values (the fixture written by that library for
    /// the same base, rank and targets), but for base_model_name_or_path (the path it was given) and target_modules' order.</summary>
    static void SameConfigAsTheLibrarys(string adapterDir, string fixtureDir, string baseDir, Func<JsonObject, JsonObject>? adjust = null)
    {
        var ours = ReadJson(Path.Combine(adapterDir, AdapterIO.ConfigFile));
        var theirs = ReadJson(Path.Combine(fixtureDir, AdapterIO.ConfigFile));
        if (adjust is not null) theirs = adjust(theirs);
        Assert.Equal(Path.GetFullPath(baseDir), ours["base_model_name_or_path"]!.GetValue<string>());
        Assert.Equal(theirs.Select(p => p.Key).Order(), ours.Select(p => p.Key).Order());
        foreach (var (key, value) in theirs)
        {
            if (key is "base_model_name_or_path") continue;
            if (key is "target_modules")
                Assert.Equal(value!.AsArray().Select(t => t!.GetValue<string>()).Order(), ours[key]!.AsArray().Select(t => t!.GetValue<string>()).Order());
            else Assert.True(JsonNode.DeepEquals(value, ours[key]), $"{adapterDir}: {key} is {ours[key]?.ToJsonString()}, the library wrote {value?.ToJsonString()}");
        }
    }

    static Dictionary<string, long[]> Shapes(string safetensors)
    {
        var (tensors, _) = SafeTensors.Load(safetensors);
        try { return tensors.ToDictionary(t => t.Key, t => t.Value.shape); }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    /// <summary>The run's model as its final checkpoint holds it: the base, the run's adapter injected, its trainable
    /// parameters from <c>checkpoints/step-N/trainable.safetensors</c>.</summary>
    static LlamaForCausalLM FromCheckpoint(string baseDir, string runDir, AdapterConfig adapter)
    {
        var model = ModelIO.Load(baseDir);
        Peft.Inject(model, adapter);
        string checkpoint = Mora.Training.Checkpoints.Latest(runDir) ?? throw new InvalidOperationException($"{runDir} has no checkpoint");
        var (tensors, _) = SafeTensors.Load(Path.Combine(checkpoint, "trainable.safetensors"));
        try
        {
            using var _ = no_grad();
            var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
            Assert.Equal(tensors.Keys.Order(), trainable.Select(p => p.name).Order());
            foreach (var (name, p) in trainable) p.copy_(tensors[name]);
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
        return model;
    }

    static Tensor Logits(LlamaForCausalLM model, Tensor ids)
    {
        model.eval();
        using var _ = no_grad();
        return model.forward(ids).detach().clone();
    }

    [Fact]
    public void MemorizationOnAGivenBaseSavesAdaptersThatPeftAndTheForkReadAndThatGiveTheRunsOutputs()
    {
        using var torchRng = TestSupport.TorchSeed();      // it trains and loads models in this process: torch's global generator
        string baseDir = ModelFolder(), outDir = Path.Combine(TestSupport.TempDir(), "out");
        var before = Snapshot(baseDir);
        // LoRA at r = 4 on every linear layer and MoRA rotation at r = 2: the settings of the PEFT and fork fixtures on this base.
        var spec = MemorizationSpec.FromPreset("smoke") with
        {
            BaseModel = baseDir, Pairs = 4, Steps = 4, EvalPoints = 1, Seeds = [0], BatchSize = 4, CheckpointsPerRun = 1,
            Methods = [MethodSpec.Lora, MethodSpec.Dora, MethodSpec.Mora(MoraType.Rotation), MethodSpec.Full], Ranks = [2, 4],
            MethodRanks = new Dictionary<string, IReadOnlyList<int>> { ["lora"] = [4], ["dora"] = [4], ["mora-rotation"] = [2] },
            AdapterLr = 2e-2,
        };
        var log = new StringWriter();
        var result = MemorizationExperiment.Run(spec, outDir, log);
        Assert.Equal(4, result.Runs.Count);
        Assert.Contains("base: " + baseDir, log.ToString());
        Assert.Equal(before, Snapshot(baseDir));                     // nothing written into the user's folder
        Assert.True(File.Exists(Path.Combine(outDir, "base", "floor-seed0.json")));

        // The job's identity holds every file of the base by content.
        var inputs = ReadJson(Path.Combine(outDir, ExperimentFolder.InputsFile))["files"]!.AsArray().Select(f => f!["path"]!.GetValue<string>()).ToList();
        Assert.Equal(new[] { ModelIO.ConfigFile, ModelIO.WeightsFile, ModelIO.TokenizerFile, "tokenizer_config.json" }.Select(f => Path.GetFullPath(Path.Combine(baseDir, f))).Order(), inputs.Order());

        string Run(string name) => Path.Combine(outDir, "runs", name);
        string Adapter(string name) => Path.Combine(Run(name), FineTuningExperiment<MemorizationSpec>.AdapterDir);
        Assert.False(Directory.Exists(Adapter("full-seed0")));           // full fine-tuning has no adapter

        // The files are the libraries' own: configs key for key, tensor names and shapes.
        string lora = Path.Combine(Interop, "adapters", "peft", "h_mha_untied.lora_all"), mora = Path.Combine(Interop, "adapters", "peft-mora", "h_mha_untied.mora6");
        SameConfigAsTheLibrarys(Adapter("lora-r4-seed0"), lora, baseDir);
        SameConfigAsTheLibrarys(Adapter("dora-r4-seed0"), lora, baseDir, c => { c["use_dora"] = true; return c; });
        // MoRA's output is not scaled by lora_alpha / r (the fork's LoraLayer.update_layer sets scaling 1.0 with use_mora;
        // the kit's MoraLinear has scaling 1): the fixture's α (PEFT's default 8) and the kit's (16) mean the same.
        SameConfigAsTheLibrarys(Adapter("mora-rotation-r2-seed0"), mora, baseDir, c => { c["lora_alpha"] = 16; return c; });
        var loraShapes = Shapes(Path.Combine(lora, AdapterIO.WeightsFile));
        Assert.Equal(loraShapes.Keys.Order(), Shapes(Path.Combine(Adapter("lora-r4-seed0"), AdapterIO.WeightsFile)).Keys.Order());
        foreach (var (name, shape) in Shapes(Path.Combine(Adapter("lora-r4-seed0"), AdapterIO.WeightsFile))) Assert.Equal(loraShapes[name], shape);
        var doraShapes = Shapes(Path.Combine(Adapter("dora-r4-seed0"), AdapterIO.WeightsFile));
        Assert.Equal(loraShapes.Count * 3 / 2, doraShapes.Count);        // A, B and PEFT's lora_magnitude_vector per layer
        Assert.All(doraShapes.Keys.Where(k => !loraShapes.ContainsKey(k)), k => Assert.EndsWith(".lora_magnitude_vector", k));
        // The fork stores M twice (lora_A and an identical lora_B); the kit writes it once, as lora_A, which the fork loads into both.
        var forkShapes = Shapes(Path.Combine(mora, AdapterIO.WeightsFile)).Where(t => t.Key.EndsWith(".lora_A.weight", StringComparison.Ordinal)).ToDictionary();
        var moraShapes = Shapes(Path.Combine(Adapter("mora-rotation-r2-seed0"), AdapterIO.WeightsFile));
        Assert.Equal(forkShapes.Keys.Order(), moraShapes.Keys.Order());
        foreach (var (name, shape) in moraShapes) Assert.Equal(forkShapes[name], shape);

        // Read back, each adapter gives the run's model: its final checkpoint's logits, and the scores the run recorded.
        var pairs = UuidPairs.Generate(spec.Pairs, seed: 1000 + 0);
        var tokenizer = HfTokenizer.Load(baseDir);
        using var rng = TestSupport.Generator();
        using var ids = randint(0, 100, [2, 24], dtype: ScalarType.Int64, generator: rng);
        using var baseModel = ModelIO.Load(baseDir);
        using var baseLogits = Logits(baseModel, ids);
        foreach (var (name, method, rank) in new[] { ("lora-r4-seed0", MethodSpec.Lora, 4), ("dora-r4-seed0", MethodSpec.Dora, 4), ("mora-rotation-r2-seed0", MethodSpec.Mora(MoraType.Rotation), 2) })
        {
            using var loaded = ModelIO.Load(baseDir);
            var config = AdapterIO.Load(loaded, Adapter(name));
            Assert.Equal(method.Method, config.Method);
            using var trained = FromCheckpoint(baseDir, Run(name), method.Adapter(rank));
            using var expected = Logits(trained, ids);
            using var got = Logits(loaded, ids);
            Assert.True(TestSupport.MaxAbs(expected, got) <= LogitsTolerance, $"{name}: read-back adapter's logits differ from the run's by {TestSupport.MaxAbs(expected, got)}");
            Assert.True(TestSupport.MaxAbs(expected, baseLogits) > 1e-4, $"{name}: the trained adapter does not change the base's logits");
            var run = result.Runs.Single(r => MethodSpec.Parse(r.Method).Method == method.Method);
            var scores = new MemorizationTask(pairs, tokenizer).Evaluate(loaded);
            Assert.Equal(run.Score(MemorizationExperiment.ExactMatch), scores[MemorizationExperiment.ExactMatch]);
            Assert.Equal(run.Score(MemorizationExperiment.CharAccuracyAt(spec.Steps)), scores[MemorizationExperiment.CharAccuracy]);
        }

        // A changed tokenizer_config.json (it decides BOS, EOS and padding) is another job: refused naming it, nothing rewritten.
        string spec0 = File.ReadAllText(Path.Combine(outDir, ExperimentFolder.SpecFile));
        File.WriteAllText(Path.Combine(baseDir, "tokenizer_config.json"), new JsonObject { ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["pad_token"] = "<unk>" }.ToJsonString());
        var e = Assert.Throws<ArgumentException>(() => MemorizationExperiment.Run(spec, outDir));
        Assert.Contains("base tokenizer config", e.Message);
        Assert.Equal(spec0, File.ReadAllText(Path.Combine(outDir, ExperimentFolder.SpecFile)));
    }

    [Fact]
    public void ContinualOnAGivenBaseTokenizesWithItsTokenizerAndSavesTheAdapter()
    {
        using var torchRng = TestSupport.TorchSeed();      // it trains and loads models in this process: torch's global generator
        string baseDir = ModelFolder(maxPositions: 512), outDir = Path.Combine(TestSupport.TempDir(), "out");
        var before = Snapshot(baseDir);
        var spec = ContinualSpec.FromPreset("smoke") with
        {
            BaseModel = baseDir, Seeds = [0], Steps = 2, TuneSteps = 2, EvalPoints = 1, Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Sharing)], Ranks = [2],
            AdapterLrGrid = [1e-2, 3e-2], CheckpointsPerRun = 1,
        };
        var log = new StringWriter();
        var result = ContinualExperiment.Run(spec, outDir, log);
        Assert.Equal(2, result.Runs.Count);
        Assert.Equal(before, Snapshot(baseDir));
        Assert.True(File.Exists(Path.Combine(outDir, "base", ExperimentFolder.ResultFile)));
        Assert.Contains("nats/token", result.Table);
        string adapter = Path.Combine(outDir, "runs", "mora-sharing-r2-seed0", FineTuningExperiment<ContinualSpec>.AdapterDir);
        var config = ReadJson(Path.Combine(adapter, AdapterIO.ConfigFile));
        Assert.Equal(1, config["mora_type"]!.GetValue<int>());
        Assert.Equal(AdapterIO.ForkMoraKeys.Order(), config.Select(p => p.Key).Order());
        Assert.DoesNotContain(Directory.GetDirectories(Path.Combine(outDir, "sweep")), d => Directory.Exists(Path.Combine(d, "adapter")));   // tuning runs keep none
        // The run trained on the base's tokenizer: its held-out loss before training is the base's own on those ids.
        var tokenizer = HfTokenizer.Load(baseDir);
        var data = new ContinualData(spec, tokenizer);
        using var model = ModelIO.Load(baseDir);
        double heldOut = Mora.Evaluation.Metrics.HeldOutLoss(model, data.HeldOut, tokenizer.PadId);
        Assert.Equal(heldOut, result.Runs[1].Score(ContinualExperiment.HeldOutLossBefore), 9);
        using var loaded = ModelIO.Load(baseDir);
        AdapterIO.Load(loaded, adapter);
        Assert.NotEqual(heldOut, Mora.Evaluation.Metrics.HeldOutLoss(loaded, data.HeldOut, tokenizer.PadId));
        Assert.Equal(result.Runs[1].Score(ContinualExperiment.HeldOutLossAfter), Mora.Evaluation.Metrics.HeldOutLoss(loaded, data.HeldOut, tokenizer.PadId), 6);   // 6 decimals
    }

    [Fact]
    public void Gsm8kOnAGivenBaseSavesTheAdapterAndHoldsTheTokenizerConfigInItsIdentity()
    {
        using var torchRng = TestSupport.TorchSeed();      // it trains and loads models in this process: torch's global generator
        string baseDir = ModelFolder(maxPositions: 1024), outDir = Path.Combine(TestSupport.TempDir(), "out");
        var spec = Gsm8kSpec.FromPreset("smoke") with
        {
            BaseModel = baseDir, TrainProblems = 8, TestProblems = 2, MaxNewTokens = 8, Steps = 2, EvalPoints = 1, BatchSize = 4, Seeds = [0],
            Methods = [MethodSpec.Dora], Ranks = [2], CheckpointsPerRun = 1,
        };
        var result = Gsm8kExperiment.Run(spec, outDir);
        var roles = ReadJson(Path.Combine(outDir, ExperimentFolder.InputsFile))["files"]!.AsArray().Select(f => f!["role"]!.GetValue<string>()).ToList();
        Assert.Contains("base tokenizer config", roles);
        string adapter = Path.Combine(outDir, "runs", "dora-r2-seed0", FineTuningExperiment<Gsm8kSpec>.AdapterDir);
        var config = ReadJson(Path.Combine(adapter, AdapterIO.ConfigFile));
        Assert.Equal(AdapterIO.PeftLoraKeys.Order(), config.Select(p => p.Key).Order());
        Assert.True(config["use_dora"]!.GetValue<bool>());
        // Read back, it is the trained adapter (a DoRA adapter at its initialisation computes the base), and the run's.
        using var loaded = ModelIO.Load(baseDir);
        AdapterIO.Load(loaded, adapter);
        using var trained = FromCheckpoint(baseDir, Path.Combine(outDir, "runs", "dora-r2-seed0"), MethodSpec.Dora.Adapter(2));
        using var baseModel = ModelIO.Load(baseDir);
        using var rng = TestSupport.Generator();
        using var ids = randint(0, 100, [2, 16], dtype: ScalarType.Int64, generator: rng);
        using var got = Logits(loaded, ids);
        using var expected = Logits(trained, ids);
        using var untrained = Logits(baseModel, ids);
        Assert.True(TestSupport.MaxAbs(expected, got) <= LogitsTolerance, $"read-back DoRA adapter's logits differ from the run's by {TestSupport.MaxAbs(expected, got)}");
        Assert.True(TestSupport.MaxAbs(got, untrained) > 1e-4, "the saved DoRA adapter computes the base: it is not the trained one");
        Assert.Single(result.Runs);
    }

    [Fact]
    public void ATokenizerTheModelCannotEmbedIsRefusedBeforeAnythingIsWritten()
    {
        using var torchRng = TestSupport.TorchSeed();      // GivenBase.Read builds the model (ModelIO.Load) before refusing: torch's global generator
        // The interop metaspace tokenizer (written by the tokenizers library) has 377 ids; the model embeds 100.
        string baseDir = ModelFolder(tokenizerJson: Path.Combine(Interop, "tokenizers", "metaspace_bpe", "tokenizer.json"));
        string outDir = Path.Combine(TestSupport.TempDir(), "out");
        foreach (var run in new Action[]
        {
            () => MemorizationExperiment.Run(MemorizationSpec.FromPreset("smoke") with { BaseModel = baseDir }, outDir),
            () => ContinualExperiment.Run(ContinualSpec.FromPreset("smoke") with { BaseModel = baseDir }, outDir),
            () => Gsm8kExperiment.Run(Gsm8kSpec.FromPreset("smoke") with { BaseModel = baseDir }, outDir),
        })
        {
            var e = Assert.Throws<ArgumentException>(run);
            Assert.Equal(GivenBase.Property, e.ParamName);
            Assert.Contains(Path.Combine(baseDir, ModelIO.TokenizerFile), e.Message);
            Assert.Contains(Path.Combine(baseDir, ModelIO.ConfigFile), e.Message);
            Assert.Contains("376", e.Message);
            Assert.False(Directory.Exists(outDir), "the output folder was written before the base was checked");
        }
        // A model whose context is shorter than the experiment's longest sequence is refused naming its config and both lengths.
        string shortBase = ModelFolder();
        var tooLong = Assert.Throws<ArgumentException>(() => ContinualExperiment.Run(ContinualSpec.FromPreset("smoke") with { BaseModel = shortBase }, outDir));
        Assert.Contains($"{Path.Combine(shortBase, ModelIO.ConfigFile)} has max_position_embeddings 128", tooLong.Message);
        Assert.False(Directory.Exists(outDir));
        // Without tokenizer.json a model with a vocabulary of its own is refused too (the character tokenizer's ids mean nothing to it).
        File.Delete(Path.Combine(baseDir, ModelIO.TokenizerFile));
        var none = Assert.Throws<ArgumentException>(() => MemorizationExperiment.Run(MemorizationSpec.FromPreset("smoke") with { BaseModel = baseDir }, outDir));
        Assert.Contains("no tokenizer.json", none.Message);
        Assert.False(Directory.Exists(outDir));
    }

    static string Dll => Path.Combine(AppContext.BaseDirectory, "Mora.Notebooks.dll");

    /// <summary>The commands of the README's "Use your own model" section: its bash line and the adapter folder its Python
    /// line loads.</summary>
    static (string Command, string PythonAdapter) ReadmeSection()
    {
        string readme = File.ReadAllText(Path.Combine(TestSupport.RepoRoot, "README.md"));
        int at = readme.IndexOf("\n## Use your own model\n", StringComparison.Ordinal);
        Assert.True(at >= 0, "README.md has no section 'Use your own model'");
        string section = readme[(at + 1)..];
        section = section[..(section.IndexOf("\n## ", StringComparison.Ordinal) is var end and > 0 ? end : section.Length)];
        string command = section.Split('\n').Single(l => l.StartsWith("dotnet run -c Release -- ", StringComparison.Ordinal));
        var python = System.Text.RegularExpressions.Regex.Match(section, @"PeftModel\.from_pretrained\(AutoModelForCausalLM\.from_pretrained\(""path/to/model""\), ""([^""]+)""\)");
        Assert.True(python.Success, "the section's Python line does not load path/to/model and an adapter folder");
        return (command["dotnet run -c Release -- ".Length..], python.Groups[1].Value);
    }

    [Fact]
    [Trait("Speed", "Slow")]
    public void TheReadmeCommandRunsAsWrittenAndLeavesTheAdaptersItsPythonLineLoads()
    {
        var (command, pythonAdapter) = ReadmeSection();
        string baseDir = ModelFolder(), work = TestSupport.TempDir();
        Assert.Contains("--base path/to/model", command);
        Assert.Contains("--out runs/my-model", command);
        // Run as written, from a folder of its own (runs/my-model is relative, as the README's paths are), the model at path/to/model.
        Directory.CreateDirectory(Path.Combine(work, "path", "to"));
        Directory.Move(baseDir, Path.Combine(work, "path", "to", "model"));
        var (code, output) = NativeAndBuildTests.Run("dotnet", $"\"{Dll}\" {command}", workingDir: work);
        Assert.True(code == 0, output);
        Assert.Contains("base: path/to/model", output);
        string adapter = Path.Combine(work, pythonAdapter);
        Assert.True(File.Exists(Path.Combine(adapter, AdapterIO.ConfigFile)), $"no {adapter}/{AdapterIO.ConfigFile}:\n{output}");
        Assert.True(File.Exists(Path.Combine(adapter, AdapterIO.WeightsFile)));
        Assert.Equal(AdapterIO.PeftLoraKeys.Order(), ReadJson(Path.Combine(adapter, AdapterIO.ConfigFile)).Select(p => p.Key).Order());
        foreach (var method in command.Split("--methods ")[1].Split(" --")[0].Split(' '))
        {
            Assert.True(Directory.Exists(Path.Combine(work, "runs", "my-model", "runs", $"{method}-r8-seed0", FineTuningExperiment<MemorizationSpec>.AdapterDir)), $"{method}: no adapter\n{output}");
            Assert.Contains($"{method}-r8-seed0: adapter saved in", output);
        }
        // The same command with a tokenizer the model cannot embed: exit 2 naming --base and both files, nothing written.
        File.Copy(Path.Combine(Interop, "tokenizers", "metaspace_bpe", "tokenizer.json"), Path.Combine(work, "path", "to", "model", ModelIO.TokenizerFile), overwrite: true);
        var (refused, message) = NativeAndBuildTests.Run("dotnet", $"\"{Dll}\" {command.Replace("runs/my-model", "runs/other")}", workingDir: work);
        Assert.True(refused == 2, message);
        Assert.Contains("--base", message);
        Assert.Contains("tokenizer.json", message);
        Assert.Contains("config.json", message);
        Assert.False(Directory.Exists(Path.Combine(work, "runs", "other")));
    }
}

using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.Bench;
using Mora.Data;
using Mora.Evaluation;
using Mora.IO;
using Mora.Model;
using Mora.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Mora.Evidence;

/// <summary>
/// The training step the GPU evidence compares with Hugging Face transformers + PEFT, written once so that both sides read
/// the same numbers: the bench's training-step setup (<see cref="Benchmarks"/>: the UUID memorisation task, AdamW at rate
/// 1e-3 with <see cref="TrainConfig"/>'s betas, eps, weight decay and gradient clipping, LoRA r = 8 with α = 16 on every
/// linear layer but the head, 3 untimed steps) at every model preset, plus <see cref="Gpu350M"/>. <see cref="PresetsJson"/>
/// writes them for bench/gpu/hf_peft_step.py, which builds its <c>LlamaConfig</c> from the same config.json fields.
/// </summary>
public static class TrainPresets
{
    /// <summary>The bench's training-step rate (Benchmarks' training case trains at 1e-3; the rate does not change a step's time).</summary>
    public const double LearningRate = 1e-3;
    /// <summary>Steps at the start of each timed run that are not timed (the bench's 3).</summary>
    public const int UntimedSteps = 3;
    /// <summary>The bench's LoRA rank of the training step (its smallest rank) and α (<see cref="AdapterConfig.Lora"/>'s default).</summary>
    public const int Rank = 8;

    /// <summary>A ~354 M-parameter LLaMA shape for a GPU that the laptop preset (85 M) leaves idle: hidden 1024, 28 layers,
    /// 16 heads, SwiGLU 2752 (≈ 8/3 · 1024, a multiple of 64). Defined here, beside the evidence run that needs it; the
    /// kit's model presets are <see cref="LlamaConfig.PresetNames"/>.</summary>
    public static LlamaConfig Gpu350M(int vocabSize) => LlamaConfig.Laptop(vocabSize) with
    { HiddenSize = 1024, IntermediateSize = 2752, NumHiddenLayers = 28, NumAttentionHeads = 16, NumKeyValueHeads = 16 };

    /// <summary>The model presets a training step can run at: the kit's four and gpu-350m.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. LlamaConfig.PresetNames, "gpu-350m"];

    /// <summary>A preset by name (<see cref="Names"/>).</summary>
    public static LlamaConfig Config(string name, int vocabSize) => name.ToLowerInvariant() == "gpu-350m"
        ? Gpu350M(vocabSize)
        : LlamaConfig.PresetNames.Contains(name.ToLowerInvariant()) ? LlamaConfig.Preset(name, vocabSize)
        : throw new ArgumentException($"unknown model preset '{name}'; use one of {string.Join(", ", Names)}", "model");

    /// <summary>The memorisation task a step trains on (as the bench's: pairs enough for two batches, at least 64).</summary>
    public static MemorizationTask Task(int batch, int seed) => new(UuidPairs.Generate(Math.Max(64, batch * 2), seed: seed));

    /// <summary>Everything the HF + PEFT peer needs, as JSON: the bench presets' layer sizes, the training setup, and each
    /// model preset as the Hugging Face config.json the kit writes for it (<see cref="LlamaConfig.ToJson"/>).</summary>
    public static string PresetsJson()
    {
        var task = Task(32, 0);
        var example = task.Train[0];
        var defaults = new TrainConfig();
        var lora = AdapterConfig.Lora(Rank);
        var bench = new JsonObject();
        foreach (var name in BenchSpec.Presets)
        {
            var b = BenchSpec.FromPreset(name);
            bench[name] = new JsonObject
            {
                ["shapes"] = new JsonArray(b.Shapes.Select(s => (JsonNode)new JsonArray(s.D, s.K)).ToArray()),
                ["tokens"] = new JsonArray(b.Tokens.Select(t => (JsonNode)t).ToArray()),
                ["ranks"] = new JsonArray(b.Ranks.Select(r => (JsonNode)r).ToArray()),
                ["repeats"] = b.Repeats,
                ["train_model"] = b.TrainModel,
                ["train_batch"] = b.TrainBatch,
                ["train_steps"] = b.TrainSteps,
            };
        }
        var models = new JsonObject();
        foreach (var name in Names)
            models[name] = JsonNode.Parse(Config(name, task.Tokenizer.VocabSize).ToJson());
        var root = new JsonObject
        {
            ["written_by"] = "dotnet run -c Release -- evidence presets (lib/Mora.Analysis/Evidence/TrainingEvidence.cs)",
            ["bench"] = bench,
            ["train"] = new JsonObject
            {
                ["task"] = "UUID memorisation: [BOS] key= value [EOS], loss on the value and EOS (the bench's training step)",
                ["sequence_length"] = example.Tokens.Length,
                ["prompt_length"] = example.PromptLength,
                ["vocab_size"] = task.Tokenizer.VocabSize,
                ["pad_id"] = task.Tokenizer.PadId,
                ["optimizer"] = "AdamW",
                ["learning_rate"] = LearningRate,
                ["betas"] = new JsonArray(defaults.Beta1, defaults.Beta2),
                ["eps"] = defaults.Eps,
                ["weight_decay"] = defaults.WeightDecay,
                ["max_grad_norm"] = defaults.MaxGradNorm,
                ["untimed_steps"] = UntimedSteps,
                ["lora"] = new JsonObject
                {
                    ["r"] = lora.R, ["lora_alpha"] = lora.Alpha, ["target_modules"] = AdapterConfig.AllLinear, ["lora_dropout"] = lora.Dropout,
                    ["exclude_modules"] = new JsonArray(lora.ExcludeModules.Select(e => (JsonNode)e).ToArray()),
                },
            },
            ["models"] = models,
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Parameters of the model's linear layers (the matmul weights: attention, MLP, head), trainable or not; the
    /// embedding lookup and the norms are not matmuls.</summary>
    public static long MatmulParameters(nn.Module model) =>
        model.named_modules().Where(m => m.module is TorchSharp.Modules.Linear).Sum(m => ((TorchSharp.Modules.Linear)m.module).weight!.numel());
}

/// <summary>One timed training step of the kit at a preset (the CSV the ratios join with HF + PEFT's).</summary>
public sealed record TrainStepRow(string Model, string Method, int R, string DType, string Device, int Batch, int SequenceLength, int Steps, double StepMs,
    double P25Ms, double P75Ms, double TokensPerSecond, long TrainableParameters, long TotalParameters, long MatmulParameters, int Layers, int Hidden);

/// <summary>The kit's training step at any preset, timed as the bench times it; and the runs the GPU evidence kills and
/// resumes, and compares bit for bit.</summary>
public static class TrainingEvidence
{
    public const string StepFile = "train-step.csv";

    /// <summary>Times <paramref name="steps"/> steps (the first <see cref="TrainPresets.UntimedSteps"/> untimed) per
    /// method at one preset: the Trainer the experiments use, on the bench's task. Rows are appended to
    /// <paramref name="outDir"/>/train-step.csv as each method finishes.</summary>
    public static List<TrainStepRow> TimeSteps(string model, IReadOnlyList<MethodSpec> methods, int batch, int steps, ComputeDevice device, string dtype, int seed,
        string outDir, TextWriter log)
    {
        if (steps <= TrainPresets.UntimedSteps) throw new ArgumentException($"steps must be more than the {TrainPresets.UntimedSteps} untimed ones, got {steps}", "steps");
        if (batch <= 0) throw new ArgumentException($"batch must be positive, got {batch}", "batch");
        TrainConfig.ParseDType(dtype);
        var task = TrainPresets.Task(batch, seed);
        var config = TrainPresets.Config(model, task.Tokenizer.VocabSize);
        string csv = Path.Combine(outDir, StepFile);
        var rows = File.Exists(csv) ? ReadSteps(csv) : [];
        foreach (var method in methods)
        {
            using var scope = NewDisposeScope();
            using var net = task.NewModel(config, seed);
            if (method.Method != AdapterMethod.Full) Peft.Inject(net, method.Adapter(TrainPresets.Rank));
            long matmul = TrainPresets.MatmulParameters(net);
            var train = new TrainConfig { Steps = steps, BatchSize = batch, LearningRate = TrainPresets.LearningRate, ShowProgress = false, Device = device, DType = dtype, Seed = seed };
            var result = new Trainer(net, train, task.Train).Run();
            var ms = new List<double>();
            var logRows = result.Log.Rows;
            for (int i = TrainPresets.UntimedSteps; i < logRows.Count; i++)
                ms.Add(1000.0 * (logRows[i].Tokens - logRows[i - 1].Tokens) / logRows[i].TokensPerSecond);
            double median = Benchmarks.Median(ms);
            int length = task.Train[0].Tokens.Length;
            var row = new TrainStepRow(model, method.Name, method.Method == AdapterMethod.Full ? 0 : TrainPresets.Rank, dtype, device.ToString(), batch, length, steps, median,
                Benchmarks.Percentile(ms, 0.25), Benchmarks.Percentile(ms, 0.75), batch * length / (median / 1000), result.TrainableParameters, result.TotalParameters,
                matmul, config.NumHiddenLayers, config.HiddenSize);
            rows.RemoveAll(r => r.Model == row.Model && r.Method == row.Method && r.DType == row.DType && r.Batch == row.Batch);
            rows.Add(row);
            Benchmarks.WriteCsv(csv, rows);
            log.WriteLine($"  train step {model} {method.Name} {dtype} batch {batch}: {median:F2} ms ({row.TokensPerSecond:F0} tokens/s)");
        }
        return rows;
    }

    /// <summary>Rows of a <c>train-step.csv</c>.</summary>
    public static List<TrainStepRow> ReadSteps(string path)
    {
        var lines = File.ReadAllLines(path).Where(l => l.Length > 0).ToArray();
        if (lines.Length == 0) return [];
        var header = lines[0].Split(',');
        int Col(string n) => Array.IndexOf(header, n) is var i and >= 0 ? i : throw new FormatException($"{path}: no column '{n}'");
        var rows = new List<TrainStepRow>();
        foreach (var (line, at) in lines.Skip(1).Select((l, i) => (l, i + 2)))
        {
            var c = line.Split(',');
            if (c.Length != header.Length) throw new FormatException($"{path}, line {at}: {c.Length} cells, the header has {header.Length}");
            double Column(string n) => c[Col(n)] == "" ? double.NaN : double.Parse(c[Col(n)], CultureInfo.InvariantCulture);
            int I(string n) => int.Parse(c[Col(n)], CultureInfo.InvariantCulture);
            long L(string n) => long.Parse(c[Col(n)], CultureInfo.InvariantCulture);
            rows.Add(new TrainStepRow(c[Col("model")], c[Col("method")], I("r"), c[Col("d_type")], c[Col("device")], I("batch"), I("sequence_length"), I("steps"),
                Column("step_ms"), Column("p25_ms"), Column("p75_ms"), Column("tokens_per_second"), L("trainable_parameters"), L("total_parameters"), L("matmul_parameters"), I("layers"), I("hidden")));
        }
        return rows;
    }

    /// <summary>One checkpointed memorisation run (resumed from its last checkpoint when its folder has one): the run the
    /// evidence script kills with SIGKILL after its first checkpoint and starts again.</summary>
    public static TrainResult Run(string model, MethodSpec method, int batch, int steps, int checkpointEvery, ComputeDevice device, string dtype, int seed, string outDir)
    {
        var task = TrainPresets.Task(batch, seed);
        var config = TrainPresets.Config(model, task.Tokenizer.VocabSize);
        using var net = task.NewModel(config, seed);
        AdapterConfig? adapter = method.Method == AdapterMethod.Full ? null : method.Adapter(TrainPresets.Rank);
        if (adapter is not null) Peft.Inject(net, adapter);
        var train = new TrainConfig
        {
            Steps = steps, BatchSize = batch, LearningRate = TrainPresets.LearningRate, ShowProgress = false, Device = device, DType = dtype, Seed = seed,
            CheckpointEvery = checkpointEvery, OutputDir = outDir, LogEvery = 1,
        };
        return new Trainer(net, train, task.Train, adapter: adapter).Run();
    }

    /// <summary>Compares the final checkpoints and logs of runs: <paramref name="reference"/> against each other run (bit
    /// for bit, else the largest difference), as markdown.</summary>
    public static (string Report, bool AllIdentical) Compare(string reference, IReadOnlyList<(string Label, string Dir)> others)
    {
        var sb = new StringBuilder();
        bool all = true;
        var (refTensors, refLoss) = Final(reference);
        try
        {
            sb.AppendLine($"Reference: `{Path.GetFileName(Path.TrimEndingDirectorySeparator(reference))}` (final checkpoint: {refTensors.Count} trainable tensors, {refLoss.Count} logged losses).");
            sb.AppendLine();
            sb.AppendLine("| run | trainable tensors bit-identical | largest abs difference | losses bit-identical | largest loss difference |");
            sb.AppendLine("|---|---|---:|---|---:|");
            foreach (var (label, dir) in others)
            {
                var (tensors, loss) = Final(dir);
                try
                {
                    bool same = tensors.Count == refTensors.Count;
                    double worst = 0;
                    foreach (var (name, t) in refTensors)
                    {
                        if (!tensors.TryGetValue(name, out var u) || !u.shape.SequenceEqual(t.shape)) { same = false; worst = double.PositiveInfinity; continue; }
                        using var a = t.to(ScalarType.Float64);
                        using var b = u.to(ScalarType.Float64);
                        using var diff = (a - b).abs().max();
                        double dv = diff.item<double>();
                        worst = Math.Max(worst, dv);
                        using var tc = t.cpu().contiguous();
                        using var uc = u.cpu().contiguous();
                        if (tc.dtype != uc.dtype || !tc.bytes.SequenceEqual(uc.bytes)) same = false;      // the bits, not the values
                    }
                    bool lossSame = loss.Count == refLoss.Count && loss.Zip(refLoss).All(p => p.First.Equals(p.Second));
                    double lossWorst = loss.Count == refLoss.Count ? loss.Zip(refLoss).Select(p => Math.Abs(p.First - p.Second)).DefaultIfEmpty(0).Max() : double.PositiveInfinity;
                    all &= same && lossSame;
                    sb.AppendLine($"| {label} | {(same ? "yes" : "no")} | {worst:G3} | {(lossSame ? "yes" : "no")} | {lossWorst:G3} |");
                }
                finally { foreach (var t in tensors.Values) t.Dispose(); }
            }
        }
        finally { foreach (var t in refTensors.Values) t.Dispose(); }
        return (sb.ToString(), all);
    }

    static (Dictionary<string, Tensor> Tensors, List<double> Loss) Final(string dir)
    {
        string latest = Checkpoints.Latest(dir) ?? throw new FileNotFoundException($"{dir}: no checkpoint (checkpoints/latest.json): did the run finish?");
        var (tensors, _) = SafeTensors.Load(Path.Combine(latest, "trainable.safetensors"));
        string logPath = Path.Combine(dir, Trainer.LogFile);
        var loss = new List<double>();
        var lines = File.Exists(logPath) ? File.ReadAllLines(logPath) : [];
        if (lines.Length > 0)
        {
            int col = Array.IndexOf(lines[0].Split(','), "loss");
            if (col >= 0)
                foreach (var l in lines.Skip(1).Where(l => l.Length > 0))
                    loss.Add(double.Parse(l.Split(',')[col], CultureInfo.InvariantCulture));
        }
        return (tensors, loss);
    }

    /// <summary>Provokes an out-of-memory in a training step (a batch far too large for the device) and returns the kit's
    /// message, or null when the step somehow fitted; then checks that a small step still trains afterwards.</summary>
    public static (string? Message, string NativeFirstLine, bool RecoveredAfter) OutOfMemory(string model, int batch, ComputeDevice device, string dtype, int seed)
    {
        var task = TrainPresets.Task(64, seed);
        var config = TrainPresets.Config(model, task.Tokenizer.VocabSize);
        string? message = null, native = "";
        using (var net = task.NewModel(config, seed))
        {
            var train = new TrainConfig { Steps = 1, BatchSize = batch, LearningRate = TrainPresets.LearningRate, ShowProgress = false, Device = device, DType = dtype, Seed = seed };
            try { new Trainer(net, train, task.Train).Run(); }
            catch (TrainingOutOfMemoryException e) { message = e.Message; native = e.InnerException?.Message.Split('\n')[0] ?? ""; }
        }
        GC.Collect(); GC.WaitForPendingFinalizers();
        bool recovered;
        using (var net = task.NewModel(config, seed))
        {
            var small = new TrainConfig { Steps = 2, BatchSize = 4, LearningRate = TrainPresets.LearningRate, ShowProgress = false, Device = device, DType = dtype, Seed = seed };
            try { recovered = double.IsFinite(new Trainer(net, small, task.Train).Run().Log.Rows[^1].Loss); }
            catch (Exception e) when (TrainingOutOfMemoryException.IsOutOfMemory(e) || e is TrainingOutOfMemoryException) { recovered = false; }
        }
        return (message, native, recovered);
    }
}

using System.CommandLine;
using System.Globalization;
using Mora;
using Mora.Analysis;
using Mora.IO;
using Mora.Experiments;
using Mora.Figures;
using Mora.Native;
using TorchSharp;
using static TorchSharp.torch;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

var root = new RootCommand(
    "Mora.Notebooks: MoRA (Jiang et al. 2024, arXiv 2405.12130) operators, adapters and analyses on TorchSharp.\n" +
    "With no command it runs the default job: a small memorisation reproduction (LoRA vs MoRA vs full fine-tuning on UUID pairs, CPU, a few minutes).");

// ---- info
var info = new Command("info", "Show the TorchSharp runtime (native fix, device, threads) and run a tensor check.");
info.SetAction(_ => Guard(Info));
root.Subcommands.Add(info);

// ---- rank
var rankShapes = new Option<string[]>("--shape") { Description = "layer shapes d x k, e.g. 4096x4096 (default: the LLaMA-2 7B shapes)", AllowMultipleArgumentsPerToken = true };
var rankRanks = new Option<int[]>("--ranks") { Description = "LoRA ranks (default 8 16 32 64 128 256)", AllowMultipleArgumentsPerToken = true };
var rankSpectraShape = new Option<string>("--spectra-shape") { Description = "layer shape of the random-weight spectra table", DefaultValueFactory = _ => "256x256" };
var rankSpectraRank = new Option<int>("--spectra-rank") { Description = "LoRA rank of the random-weight spectra table", DefaultValueFactory = _ => 8 };
var rankRuns = new Option<string?>("--runs") { Description = "an experiment's --out folder: analyse the ΔW every finished run learned (rank, effective rank per layer)" };
var rankTol = new Option<double>("--tolerance") { Description = "relative tolerance of the rank (σ ≥ tol · σ_max)", DefaultValueFactory = _ => 1e-3 };
var rank = new Command("rank", "r̂ for LoRA ranks at equal parameters, the largest rank of ΔW each method can reach, and (--runs) the spectra of learned ΔW.") { rankShapes, rankRanks, rankSpectraShape, rankSpectraRank, rankRuns, rankTol };
rank.SetAction(pr => Guard(() =>
{
    if (pr.GetValue(rankRuns) is { } runsDir)
    {
        double tol = pr.GetValue(rankTol);
        if (!(tol > 0 && tol < 1)) throw new ArgumentException($"--tolerance must be in (0, 1), got {tol}");
        TorchRuntime.Ensure();
        var learned = LearnedSpectra.Analyze(runsDir, tol);
        Console.WriteLine($"Learned ΔW (rank at σ ≥ {tol:G3}·σ_max, effective rank = exp of the spectral entropy), last checkpoint of each run in {Path.GetFullPath(runsDir)}:");
        Console.WriteLine(LearnedSpectra.Format(learned));
        string csv = Path.Combine(runsDir, "learned-spectra.csv");
        LearnedSpectra.WriteCsv(csv, learned);
        Console.WriteLine($"per layer: {Path.GetFullPath(csv)}");
        return 0;
    }
    var shapes = (pr.GetValue(rankShapes) ?? []).Select(s => { var (d, k) = ParseShape(s, "--shape"); return ($"{d}x{k}", d, k); }).ToList();
    var ranks = pr.GetValue(rankRanks) ?? [];
    foreach (int r in ranks) if (r <= 0) throw new ArgumentException($"--ranks: every rank must be positive, got {r}");
    var rows = DesignReport.RHatTable(shapes.Count > 0 ? shapes : null, ranks.Length > 0 ? ranks : null);
    Console.WriteLine($"{"layer",-14} {"d",6} {"k",6} {"r",4} {"r̂ ref",6} {"r̂ floor",8} {"r̂ rot",6} {"LoRA params",12} {"MoRA params",12} {"ratio",6} {"max rank LoRA / sharing / rotation",36}");
    foreach (var x in rows)
        Console.WriteLine($"{x.Layer,-14} {x.D,6} {x.K,6} {x.R,4} {x.RHatReference,6} {x.RHatPaper,8} {x.RHatRotation,6} {x.LoraParameters,12:N0} {x.MoraParameters,12:N0} {(double)x.MoraParameters / x.LoraParameters,6:F4} {$"{x.LoraMaxRank} / {x.SharingMaxRank} / {x.RotationMaxRank}",36}");
    var (sd, sk) = ParseShape(pr.GetValue(rankSpectraShape)!, "--spectra-shape");
    int sr = pr.GetValue(rankSpectraRank);
    var spectra = DesignReport.RandomSpectra(sd, sk, sr);
    Console.WriteLine();
    Console.WriteLine($"ΔW with random weights at equal parameters, {sd}x{sk}, r = {sr} (float64; σ_i/σ_1 shows how fast the spectrum decays):");
    var cols = spectra[0].Normalized.Keys.ToList();
    Console.WriteLine($"{"method",-32} {"params",8} {"rank",6} {"eff. rank",9} " + string.Join(" ", cols.Select(c => $"{"σ" + c + "/σ1",9}")));
    foreach (var x in spectra)
        Console.WriteLine($"{x.Method,-32} {x.Parameters,8:N0} {x.Rank,6} {x.EffectiveRank,9:F1} " + string.Join(" ", cols.Select(c => $"{x.Normalized[c],9:0.000}")));
    return 0;
}));
root.Subcommands.Add(rank);

// ---- designs
var dShape = new Option<string>("--shape") { Description = "layer shape d x k", DefaultValueFactory = _ => "256x256" };
var dRank = new Option<int>("--rank", "-r") { Description = "LoRA rank whose budget r̂ matches", DefaultValueFactory = _ => 8 };
var dTokens = new Option<int>("--tokens") { Description = "tokens in the timed forward", DefaultValueFactory = _ => 512 };
var dRepeats = new Option<int>("--repeats") { Description = "timed repeats (median reported)", DefaultValueFactory = _ => 7 };
var dSeed = new Option<long>("--seed") { Description = "random seed", DefaultValueFactory = _ => 0 };
var dDevice = new Option<string>("--device") { Description = "cpu or cuda", DefaultValueFactory = _ => "cpu" };
var designs = new Command("designs", "Compare every compress/decompress design: r̂, parameters, rank and effective rank of ΔW, merge error, speed.")
    { dShape, dRank, dTokens, dRepeats, dSeed, dDevice };
designs.SetAction(pr => Guard(() => Designs(pr.GetValue(dShape)!, pr.GetValue(dRank), pr.GetValue(dTokens), pr.GetValue(dRepeats), pr.GetValue(dSeed), pr.GetValue(dDevice)!)));
root.Subcommands.Add(designs);

// ---- memorization
var mPreset = new Option<string>("--preset") { Description = $"settings to start from: {string.Join(", ", MemorizationSpec.PresetNames)}", DefaultValueFactory = _ => "default" };
var mModel = new Option<string?>("--model") { Description = $"model size: {string.Join(", ", Mora.Model.LlamaConfig.PresetNames)}" };
var mPairs = new Option<int?>("--pairs") { Description = "UUID pairs to memorise (the paper: 10,000)" };
var mPretrainPairs = new Option<int?>("--pretrain-pairs") { Description = "other pairs the base model is pretrained on (it learns the format)" };
var mPretrainSteps = new Option<int?>("--pretrain-steps") { Description = "pretraining steps of the base model" };
var mSteps = new Option<int?>("--steps") { Description = "fine-tuning steps per method" };
var mBatch = new Option<int?>("--batch-size") { Description = "sequences per step" };
var mMethods = new Option<string[]>("--methods") { Description = "lora, dora, full, mora, mora-<design> (mora-sharing, mora-rotation, mora-1 … mora-6)", AllowMultipleArgumentsPerToken = true };
var mRanks = new Option<int[]>("--ranks") { Description = "LoRA rank budgets (MoRA gets the same parameter count)", AllowMultipleArgumentsPerToken = true };
var mSeeds = new Option<int[]>("--seeds") { Description = "seeds (data, initialisation, order)", AllowMultipleArgumentsPerToken = true };
var mLr = new Option<double?>("--lr") { Description = "learning rate of LoRA, DoRA and MoRA" };
var mFullLr = new Option<double?>("--full-lr") { Description = "learning rate of full fine-tuning" };
var mEvalPoints = new Option<int?>("--eval-points") { Description = "evaluations during fine-tuning (the table's columns)" };
var mDevice = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
var mOut = new Option<string?>("--out") { Description = "output folder (default runs/memorization-<preset>); run again to resume" };
var mFigures = new Option<string?>("--figures") { Description = "folder for the table and figures (default <out>/figures)" };
var memorization = new Command("memorization", "Reproduce the paper's UUID memorisation experiment: pretrain a base, fine-tune it with each method, report character-level accuracy by step.")
    { mPreset, mModel, mPairs, mPretrainPairs, mPretrainSteps, mSteps, mBatch, mMethods, mRanks, mSeeds, mLr, mFullLr, mEvalPoints, mDevice, mOut, mFigures };
memorization.SetAction(pr => Guard(() =>
{
    var spec = MemorizationSpec.FromPreset(pr.GetValue(mPreset)!);
    spec = spec with
    {
        Model = pr.GetValue(mModel) ?? spec.Model, Pairs = pr.GetValue(mPairs) ?? spec.Pairs, PretrainPairs = pr.GetValue(mPretrainPairs) ?? spec.PretrainPairs,
        PretrainSteps = pr.GetValue(mPretrainSteps) ?? spec.PretrainSteps, Steps = pr.GetValue(mSteps) ?? spec.Steps, BatchSize = pr.GetValue(mBatch) ?? spec.BatchSize,
        Methods = pr.GetValue(mMethods) is { Length: > 0 } ms ? ms : spec.Methods, Ranks = pr.GetValue(mRanks) is { Length: > 0 } rs ? rs : spec.Ranks,
        Seeds = pr.GetValue(mSeeds) is { Length: > 0 } ss ? ss : spec.Seeds, AdapterLr = pr.GetValue(mLr) ?? spec.AdapterLr, FullLr = pr.GetValue(mFullLr) ?? spec.FullLr,
        EvalPoints = pr.GetValue(mEvalPoints) ?? spec.EvalPoints, Device = pr.GetValue(mDevice)!,
    };
    return Memorization(spec, pr.GetValue(mOut), pr.GetValue(mFigures), args);
}));
root.Subcommands.Add(memorization);

// ---- gsm8k
var gPreset = new Option<string>("--preset") { Description = $"settings to start from: {string.Join(", ", Gsm8kSpec.PresetNames)}", DefaultValueFactory = _ => "default" };
var gModel = new Option<string?>("--model") { Description = $"model size: {string.Join(", ", Mora.Model.LlamaConfig.PresetNames)}" };
var gTrain = new Option<int?>("--train-problems") { Description = "training problems (generated, or the first N of --train-file)" };
var gTest = new Option<int?>("--test-problems") { Description = "held-out problems scored" };
var gPretrainSteps = new Option<int?>("--pretrain-steps") { Description = "pretraining steps of the base on the generated corpus" };
var gSteps = new Option<int?>("--steps") { Description = "fine-tuning steps per method" };
var gBatch = new Option<int?>("--batch-size") { Description = "sequences per step" };
var gMethods = new Option<string[]>("--methods") { Description = "lora, dora, full, mora, mora-<design>", AllowMultipleArgumentsPerToken = true };
var gRanks = new Option<int[]>("--ranks") { Description = "LoRA rank budgets", AllowMultipleArgumentsPerToken = true };
var gSeeds = new Option<int[]>("--seeds") { Description = "seeds", AllowMultipleArgumentsPerToken = true };
var gLr = new Option<double?>("--lr") { Description = "learning rate of LoRA, DoRA and MoRA" };
var gFullLr = new Option<double?>("--full-lr") { Description = "learning rate of full fine-tuning" };
var gEvalPoints = new Option<int?>("--eval-points") { Description = "evaluations during fine-tuning" };
var gTrainFile = new Option<string?>("--train-file") { Description = "GSM8K-format JSONL to train on (e.g. the real GSM8K train.jsonl)" };
var gTestFile = new Option<string?>("--test-file") { Description = "GSM8K-format JSONL to score on" };
var gContext = new Option<int?>("--context") { Description = "context length of a pretrained base (tokens; the real GSM8K needs up to ~2048 with the character tokenizer)" };
var gBase = new Option<string?>("--base") { Description = "a local model folder (config.json, model.safetensors, tokenizer.json) instead of pretraining" };
var gDevice = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
var gOut = new Option<string?>("--out") { Description = "output folder (default runs/gsm8k-<preset>); run again to resume" };
var gFigures = new Option<string?>("--figures") { Description = "folder for the table and figures (default <out>/figures)" };
var gsm8k = new Command("gsm8k", "Pretrain (or load) a base model, fine-tune it with each method on GSM8K-style problems, report exact-match accuracy on held-out problems.")
    { gPreset, gModel, gTrain, gTest, gPretrainSteps, gSteps, gBatch, gMethods, gRanks, gSeeds, gLr, gFullLr, gEvalPoints, gTrainFile, gTestFile, gContext, gBase, gDevice, gOut, gFigures };
gsm8k.SetAction(pr => Guard(() =>
{
    var spec = Gsm8kSpec.FromPreset(pr.GetValue(gPreset)!);
    spec = spec with
    {
        Model = pr.GetValue(gModel) ?? spec.Model, TrainProblems = pr.GetValue(gTrain) ?? spec.TrainProblems, TestProblems = pr.GetValue(gTest) ?? spec.TestProblems,
        PretrainSteps = pr.GetValue(gPretrainSteps) ?? spec.PretrainSteps, Steps = pr.GetValue(gSteps) ?? spec.Steps, BatchSize = pr.GetValue(gBatch) ?? spec.BatchSize,
        Methods = pr.GetValue(gMethods) is { Length: > 0 } ms ? ms : spec.Methods, Ranks = pr.GetValue(gRanks) is { Length: > 0 } rs ? rs : spec.Ranks,
        Seeds = pr.GetValue(gSeeds) is { Length: > 0 } ss ? ss : spec.Seeds, AdapterLr = pr.GetValue(gLr) ?? spec.AdapterLr, FullLr = pr.GetValue(gFullLr) ?? spec.FullLr,
        EvalPoints = pr.GetValue(gEvalPoints) ?? spec.EvalPoints, TrainFile = pr.GetValue(gTrainFile), TestFile = pr.GetValue(gTestFile), BaseModel = pr.GetValue(gBase), Context = pr.GetValue(gContext) ?? spec.Context,
        Device = pr.GetValue(gDevice)!,
    };
    spec.Validate();
    string outDir = pr.GetValue(gOut) ?? Path.Combine("runs", $"gsm8k-{SafePath.Name(spec.Preset, "--preset")}");
    return Experiment("gsm8k", outDir, pr.GetValue(gFigures), args, [Gsm8kExperiment.TableFile, Gsm8kExperiment.SummaryFile],
        cancel => Gsm8kExperiment.FormatTable(spec, Gsm8kExperiment.Run(spec, outDir, Console.Out, cancel)));
}));
root.Subcommands.Add(gsm8k);

// ---- bench
var bPreset = new Option<string>("--preset") { Description = "tiny (seconds, what the tests run), quick (1024×1024), full (1024², 4096², 4096×11008: the issue's sizes)", DefaultValueFactory = _ => "quick" };
var bShapes = new Option<string[]>("--shapes") { Description = "layer shapes d x k (override the preset)", AllowMultipleArgumentsPerToken = true };
var bTokens = new Option<int[]>("--tokens") { Description = "tokens per forward (override the preset)", AllowMultipleArgumentsPerToken = true };
var bRanks = new Option<int[]>("--ranks") { Description = "LoRA ranks; MoRA at the same parameter budget (override the preset)", AllowMultipleArgumentsPerToken = true };
var bMergeShapes = new Option<string[]>("--merge-shapes") { Description = "shapes of the ΔW/merge benchmark (override the preset)", AllowMultipleArgumentsPerToken = true };
var bRepeats = new Option<int?>("--repeats") { Description = "interleaved timed repetitions (median reported)" };
var bTrainSteps = new Option<int?>("--train-steps") { Description = "steps of the training-step benchmark per method (0 skips it)" };
var bNoLoop = new Option<bool>("--no-column-loop") { Description = "skip timing the reference's loop over columns" };
var bDevice = new Option<string>("--device") { Description = "cpu or cuda[:i]", DefaultValueFactory = _ => "cpu" };
var bDType = new Option<string>("--dtype") { Description = "float32, bfloat16 or float16 (the last two on a GPU)", DefaultValueFactory = _ => "float32" };
var bOut = new Option<string?>("--out") { Description = "folder for layer.csv, merge.csv, train.csv, bench.md, COMMAND.txt (default figures/bench/<preset>)" };
var bench = new Command("bench", "Benchmark MoRA's cost against LoRA and the hardware: one layer forward + backward (ratios to the base and to LoRA, FLOP floors, peak memory), ΔW materialisation against the reference's column loop, a whole training step per method.")
    { bPreset, bShapes, bTokens, bRanks, bMergeShapes, bRepeats, bTrainSteps, bNoLoop, bDevice, bDType, bOut };
bench.SetAction(pr => Guard(() =>
{
    var spec = Mora.Bench.BenchSpec.FromPreset(pr.GetValue(bPreset)!);
    if (pr.GetValue(bShapes) is { Length: > 0 } sh) spec = spec with { Shapes = sh.Select(x => ParseShape(x, "--shapes")).ToArray() };
    if (pr.GetValue(bMergeShapes) is { Length: > 0 } ms) spec = spec with { MergeShapes = ms.Select(x => ParseShape(x, "--merge-shapes")).ToArray() };
    if (pr.GetValue(bTokens) is { Length: > 0 } tk) spec = spec with { Tokens = tk };
    if (pr.GetValue(bRanks) is { Length: > 0 } rk) spec = spec with { Ranks = rk };
    if (pr.GetValue(bRepeats) is { } rp) spec = spec with { Repeats = rp };
    if (pr.GetValue(bTrainSteps) is { } ts) spec = spec with { TrainSteps = ts };
    spec = spec with { ColumnLoop = !pr.GetValue(bNoLoop), Device = pr.GetValue(bDevice)!, DType = pr.GetValue(bDType)! };
    spec.Validate();
    TorchRuntime.Ensure();
    string outDir = pr.GetValue(bOut) ?? Path.Combine("figures", "bench", SafePath.Name(spec.Preset, "--preset"));
    Directory.CreateDirectory(outDir);
    var result = Mora.Bench.Benchmarks.Run(spec, outDir, Console.Out);
    AtomicFile.WriteText(Path.Combine(outDir, Mora.Bench.Benchmarks.CommandFile), "dotnet run -c Release -- " + string.Join(" ", args) + "\n");
    Console.WriteLine();
    Console.WriteLine(File.ReadAllText(Path.Combine(outDir, Mora.Bench.Benchmarks.ReportFile)));
    Console.WriteLine($"written: {Path.GetFullPath(outDir)}");
    return 0;
}));
root.Subcommands.Add(bench);

// ---- notebooks
var nNames = new Option<string[]>("--names") { Description = "notebooks to run (prefixes such as 00 03; default: all in notebooks/)", AllowMultipleArgumentsPerToken = true };
var nPreset = new Option<string>("--preset") { Description = "fast or full (sets MORA_NOTEBOOK_PRESET for the kernel)", DefaultValueFactory = _ => "fast" };
var nWrite = new Option<bool>("--write") { Description = "write the outputs into the notebooks (what the committed notebooks carry)" };
var nOut = new Option<string?>("--out") { Description = "folder for runs/ and figures/ (MORA_NOTEBOOK_OUT; default: the repository)" };
var notebooks = new Command("notebooks", "Run the notebooks headless, cell by cell, in the real .NET Interactive kernel (the local tool); exit 1 if a cell fails.")
    { nNames, nPreset, nWrite, nOut };
notebooks.SetAction(pr => Guard(() =>
{
    string preset = pr.GetValue(nPreset)!;
    if (!Mora.Notebooks.Notebook.Presets.Contains(preset)) throw new ArgumentException($"--preset: use fast or full, got '{preset}'", "--preset");
    string folder = Path.Combine(Mora.Notebooks.Notebook.RepoRoot, "notebooks");
    var all = Directory.GetFiles(folder, "*.ipynb").Order(StringComparer.Ordinal).ToList();
    var names = pr.GetValue(nNames) is { Length: > 0 } n ? n : [];
    var chosen = names.Length == 0 ? all : all.Where(f => names.Any(x => Path.GetFileName(f).StartsWith(x, StringComparison.Ordinal))).ToList();
    if (chosen.Count == 0) throw new ArgumentException($"--names: no notebook in {folder} starts with {string.Join(" or ", names)}", "--names");
    var env = new Dictionary<string, string> { [Mora.Notebooks.Notebook.PresetVariable] = preset };
    if (pr.GetValue(nOut) is { } o) env[Mora.Notebooks.Notebook.OutVariable] = Path.GetFullPath(o);
    int failed = 0;
    foreach (var nb in chosen)
    {
        Console.WriteLine($"{Path.GetFileName(nb)} ({preset})");
        var results = Mora.Notebooks.NotebookRunner.Run(nb, env, pr.GetValue(nWrite) ? nb : null, log: Console.Out);
        var bad = results.FirstOrDefault(r => !r.Ok);
        if (bad is not null) { failed++; Console.Error.WriteLine($"error: {Path.GetFileName(nb)} cell {bad.Index}: {bad.Error}"); }
        else Console.WriteLine($"  {results.Count} cells ok in {results.Sum(r => r.Seconds):F0} s");
    }
    return failed == 0 ? 0 : 1;
}));
root.Subcommands.Add(notebooks);

// ---- plot
var pRuns = new Option<string>("--runs") { Description = "folder searched for run logs (log.csv)", Required = true };
var pOut = new Option<string>("--out") { Description = "folder for the figures", DefaultValueFactory = _ => "figures" };
var pName = new Option<string>("--name") { Description = "file name prefix of the figures", DefaultValueFactory = _ => "runs" };
var pSmooth = new Option<double>("--smooth") { Description = "EMA smoothing of the loss curves, in [0, 1)", DefaultValueFactory = _ => 0.6 };
var plot = new Command("plot", "Turn run logs into figures: interactive offline HTML (plotly.js inlined) and PNG, loss and every evaluation metric by step.")
    { pRuns, pOut, pName, pSmooth };
plot.SetAction(pr => Guard(() =>
{
    foreach (var f in RunFigures.PlotRuns(pr.GetValue(pRuns)!, pr.GetValue(pOut)!, SafePath.Name(pr.GetValue(pName)!, "--name"), pr.GetValue(pSmooth)))
        Console.WriteLine(f);
    return 0;
}));
root.Subcommands.Add(plot);

// ---- bundle
var packOut = new Option<string?>("--out") { Description = "output folder (default: .device/ in the repository)" };
var bundle = new Command("bundle", "Pack the kit for a Linux GPU server with PyTorch and no .NET: the .NET runtime, the kit built with -p:TorchBackend=pytorch (no libtorch), and run.sh.") { packOut };
bundle.SetAction(pr => Guard(() =>
{
    try
    {
        var files = Mora.Cli.KitBundle.Create(pr.GetValue(packOut), Console.Out);
        foreach (var f in files) Console.WriteLine($"{new FileInfo(f).Length / 1048576.0,7:F1} MiB  {f}");
        Console.WriteLine($"total {files.Sum(f => new FileInfo(f).Length) / 1048576.0:F1} MiB. Copy the folder to the server, then: bash <folder>/run.sh info");
        return 0;
    }
    catch (InvalidOperationException e) { Console.Error.WriteLine($"error: {e.Message}"); return 1; }
}));
root.Subcommands.Add(bundle);

root.SetAction(_ => Guard(() =>
{
    Console.WriteLine("Default job: the memorisation reproduction at its default preset (see --help for every command; `memorization --help` for its settings).");
    return Memorization(MemorizationSpec.FromPreset("default"), null, null, []);
}));

return root.Parse(args).Invoke();

static int Info()
{
    var report = TorchRuntime.Ensure();
    Console.WriteLine($"TorchSharp native fix: {report.Action}");
    if (report.SystemLibStdCxx is not null) Console.WriteLine($"  system libstdc++: {report.SystemLibStdCxx}");
    foreach (var f in report.Patched) Console.WriteLine($"  patched: {f}");
    var lt = report.LibTorch;
    if (lt.Check is { } check)
    {
        Console.WriteLine($"libtorch: {check.Folder} (from {lt.Source}; build TorchBackend={lt.Backend}), torch {check.TorchVersion}");
        Console.WriteLine($"  symbol check: {check.Summary}");
        Console.WriteLine($"  preloaded: {string.Join(", ", lt.Preloaded.Select(Path.GetFileName))}");
    }
    else Console.WriteLine($"libtorch: the package natives (build TorchBackend={lt.Backend}; set {LibTorchBinding.EnvironmentVariable} to use an installed PyTorch's)");
    Console.WriteLine($"CUDA available: {cuda.is_available()}  threads: {get_num_threads()}");
    using var a = randn(128, 64, dtype: ScalarType.Float64);
    using var q = linalg.qr(a).Q;
    using var err = (q.t().matmul(q) - eye(64, dtype: ScalarType.Float64)).abs().max();
    bool ok = err.item<double>() < 1e-10;
    Console.WriteLine($"tensor check: {(ok ? "ok" : "FAILED")} (|QᵀQ − I| = {err.item<double>():g3})");
    return ok ? 0 : 1;
}

static int Designs(string shape, int r, int tokens, int repeats, long seed, string deviceName)
{
    var (d, k) = ParseShape(shape, "--shape");
    if (r <= 0) throw new ArgumentException($"--rank must be positive, got {r}");
    if (tokens <= 0) throw new ArgumentException($"--tokens must be positive, got {tokens}");
    if (repeats <= 0) throw new ArgumentException($"--repeats must be positive, got {repeats}");
    var device = ParseDevice(deviceName);
    Console.WriteLine($"Layer {d}x{k}, LoRA r = {r} ({RHat.LoraParameters(d, k, r):N0} parameters), {tokens} tokens, device {device.type}");
    Action<string> progress = Console.IsErrorRedirected ? msg => Console.Error.WriteLine(msg) : msg => Console.Error.Write($"\r{msg,-40}");
    var rows = DesignReport.CompareDesigns(d, k, r, tokens, repeats, seed, device, progress);
    if (!Console.IsErrorRedirected) Console.Error.Write("\r" + new string(' ', 42) + "\r");
    Console.WriteLine($"{"design",-22} {"type",4} {"r̂",5} {"params",9} {"rank ΔW",8} {"eff. rank",9} {"merge err",10} {"|ΔW−J|",9} {"fwd ms",8} {"ΔW ms",8}");
    foreach (var x in rows)
        Console.WriteLine($"{x.Type,-22} {(int)x.Type,4} {x.RHat,5} {x.Parameters,9:N0} {x.Rank,8} {x.EffectiveRank,9:F1} {x.MergeError,10:E1} {x.JacobianError,9:E1} {x.ForwardMs,8:F3} {x.DeltaWeightMs,8:F3}");
    Console.WriteLine($"(LoRA at r = {r} reaches rank ≤ {Math.Min(r, Math.Min(d, k))}; times are medians of {repeats}, float32.)");
    return 0;
}

static (int D, int K) ParseShape(string text, string option)
{
    var parts = text.ToLowerInvariant().Split('x', '×');
    if (parts.Length != 2 || !int.TryParse(parts[0], out int d) || !int.TryParse(parts[1], out int k) || d <= 0 || k <= 0)
        throw new ArgumentException($"{option}: expected d x k with positive integers (e.g. 4096x4096), got '{text}'");
    return (d, k);
}

static Device ParseDevice(string name)
{
    TorchRuntime.Ensure();
    return name.ToLowerInvariant() switch
    {
        "cpu" => CPU,
        "cuda" when cuda.is_available() => CUDA,
        "cuda" => throw new ArgumentException("--device cuda: no CUDA device is visible (build with -p:TorchBackend=cuda-linux or cuda-windows, or use a CUDA PyTorch: -p:TorchBackend=pytorch or MORA_LIBTORCH)"),
        _ => throw new ArgumentException($"--device: expected cpu or cuda, got '{name}'"),
    };
}

static int Memorization(MemorizationSpec spec, string? outDir, string? figures, string[] commandLine)
{
    spec.Validate();
    outDir ??= Path.Combine("runs", $"memorization-{SafePath.Name(spec.Preset, "--preset")}");
    return Experiment("memorization", outDir, figures, commandLine, [MemorizationExperiment.TableFile, MemorizationExperiment.SummaryFile],
        cancel => MemorizationExperiment.FormatTable(spec, MemorizationExperiment.Run(spec, outDir, Console.Out, cancel)));
}

// Runs a resumable experiment; copies its tables, the printed table and the exact command into the figures
// folder, then draws its runs' figures there. Ctrl+C stops it cleanly (run the same command to resume).
static int Experiment(string name, string outDir, string? figures, string[] commandLine, string[] tables, Func<CancellationToken, string> run)
{
    TorchRuntime.Ensure();
    figures ??= Path.Combine(outDir, "figures");
    using var cancel = new CancellationTokenSource();
    ConsoleCancelEventHandler stop = (_, e) => { e.Cancel = true; cancel.Cancel(); };
    Console.CancelKeyPress += stop;
    try
    {
        string table = run(cancel.Token);
        Directory.CreateDirectory(figures);
        foreach (var file in tables)
            Mora.IO.AtomicFile.WriteText(Path.Combine(figures, file), File.ReadAllText(Path.Combine(outDir, file)));
        Mora.IO.AtomicFile.WriteText(Path.Combine(figures, "table.txt"), table + "\n");
        Mora.IO.AtomicFile.WriteText(Path.Combine(figures, "COMMAND.txt"),
            "dotnet run -c Release -- " + (commandLine.Length == 0 ? "(no arguments: the default job)" : string.Join(" ", commandLine)) + "\n");
        var written = RunFigures.PlotRuns(Path.Combine(outDir, "runs"), figures, name);
        Console.WriteLine($"figures: {string.Join(", ", written.Select(Path.GetFileName))} in {Path.GetFullPath(figures)}");
        return 0;
    }
    catch (OperationCanceledException)
    {
        Console.Error.WriteLine($"stopped. Run the same command again to resume from the last checkpoint in {Path.GetFullPath(outDir)}.");
        return 130;
    }
    finally { Console.CancelKeyPress -= stop; }
}

static int Guard(Func<int> body)
{
    try { return body(); }
    catch (ArgumentException e)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 2;
    }
    catch (NotSupportedException e)   // PlatformNotSupportedException / LibTorchException: libtorch unusable here
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 3;
    }
    catch (Exception e) when (e is TypeInitializationException or DllNotFoundException && e.ToString().Contains("TorchSharp", StringComparison.Ordinal))
    {
        Console.Error.WriteLine($"error: TorchSharp could not load libtorch: {(e.InnerException ?? e).Message.Split('\n')[0]} " +
            $"(a -p:TorchBackend=cpu build needs its libtorch natives; elsewhere set {LibTorchBinding.EnvironmentVariable} to a PyTorch install's torch/lib)");
        return 3;
    }
    catch (Exception e) when (e is FormatException or FileNotFoundException or DirectoryNotFoundException or Mora.Training.TrainingDivergedException
                               or Mora.Training.TrainingOutOfMemoryException or System.Text.Json.JsonException)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 1;
    }
}

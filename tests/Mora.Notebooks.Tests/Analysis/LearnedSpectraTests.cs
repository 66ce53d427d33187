using System.Text.Json.Nodes;
using Mora.Adapters;
using Mora.Analysis;
using Mora.Experiments;
using Mora.Training;

namespace Mora.Tests;

/// <summary><c>rank --runs</c> (<see cref="LearnedSpectra.Analyze"/>) on the layouts the experiments write: one base for
/// every seed (BaseSeed), a base given from outside (gsm8k --base: the folder spec.json names, or the one each run's
/// manifest records), and a killed run, which is skipped and said so, never read as finished.</summary>
public class LearnedSpectraTests
{
    /// <summary>A tiny memorisation job on one shared base (seed 0) for seeds 0 and 1: seconds.</summary>
    static string SharedBaseJob()
    {
        string dir = Path.Combine(TestSupport.TempDir(), "job");
        var spec = MemorizationSpec.FromPreset("smoke") with
        {
            Methods = [MethodSpec.Lora, MethodSpec.Mora(MoraType.Rotation)], Ranks = [4], Seeds = [0, 1], BaseSeed = 0, PretrainSteps = 4, Steps = 4, EvalPoints = 2, Pairs = 4,
        };
        MemorizationExperiment.Run(spec, dir);
        return dir;
    }

    static void Rewrite(string manifest, Action<JsonObject> edit)
    {
        var node = JsonNode.Parse(File.ReadAllText(manifest))!.AsObject();
        edit(node);
        File.WriteAllText(manifest, node.ToJsonString());
    }

    [Fact]
    public void SharedBaseAndGivenBaseJobsAreAnalysedAndAKilledRunIsSkipped()
    {
        using var rng = TestSupport.TorchSeed();           // the job trains in process and Analyze builds models: torch's global generator
        string job = SharedBaseJob();
        Assert.False(Directory.Exists(Path.Combine(job, "base-seed1")));                // one base serves both seeds
        var skipped = new List<string>();
        var spectra = LearnedSpectra.Analyze(job, skipped: skipped.Add);
        Assert.Equal(["lora-r4-seed0", "lora-r4-seed1", "mora-rotation-r4-seed0", "mora-rotation-r4-seed1"], spectra.Select(s => s.Run));
        Assert.Empty(skipped);
        Assert.All(spectra.Where(s => s.Method == "lora"), s => Assert.InRange(s.MeanRank, 1, 4));   // LoRA's ΔW has rank ≤ r

        // Runs written before manifests named their base: the shared base from spec.json's BaseSeed.
        foreach (var m in Directory.GetFiles(Path.Combine(job, "runs"), Trainer.ManifestFile, SearchOption.AllDirectories)) Rewrite(m, o => o.Remove("base_model"));
        Assert.Equal(spectra.Select(s => s.MeanEffectiveRank), LearnedSpectra.Analyze(job).Select(s => s.MeanEffectiveRank));

        // A gsm8k --base layout: no base folder in the job, spec.json names the given one.
        string given = Path.Combine(TestSupport.TempDir(), "given-base");
        Directory.Move(Path.Combine(job, "base-seed0", "model"), given);
        File.WriteAllText(Path.Combine(job, ExperimentFolder.SpecFile), new JsonObject { ["BaseModel"] = given, ["BaseSeed"] = null }.ToJsonString());
        Assert.Equal(spectra.Select(s => s.MeanEffectiveRank), LearnedSpectra.Analyze(job).Select(s => s.MeanEffectiveRank));

        // A run killed after a checkpoint: its manifest says running; it is skipped, and said so.
        string killed = Path.Combine(job, "runs", "lora-r4-seed1");
        Rewrite(Path.Combine(killed, Trainer.ManifestFile), o => o["status"] = "running");
        File.Delete(Path.Combine(killed, ExperimentFolder.ResultFile));
        skipped.Clear();
        Assert.Equal(3, LearnedSpectra.Analyze(job, skipped: skipped.Add).Count);
        Assert.Equal("lora-r4-seed1: skipped, not finished (run.json says running)", Assert.Single(skipped));
    }
}

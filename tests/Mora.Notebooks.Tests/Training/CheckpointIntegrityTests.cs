using Mora.Adapters;
using Mora.Data;
using Mora.Evaluation;
using Mora.Experiments;
using Mora.Model;
using Mora.Training;

namespace Mora.Tests;

/// <summary>A checkpoint is written as one step with its checksums and checked before it is read: an overwritten or
/// damaged file, a garbled pointer or state is named with the remedy (delete the run's checkpoints), never resumed from;
/// after the remedy the run trains again from its start.</summary>
public class CheckpointIntegrityTests
{
    static readonly MemorizationTask Task = new(UuidPairs.Generate(8, seed: 3));

    /// <summary>Trains (or resumes) a 4-step LoRA run of a tiny model in <paramref name="dir"/>, checkpointing every 2 steps,
    /// holding torch's global generator (the model's and adapter's initialisation and the trainer draw from and reseed it).</summary>
    static TrainResult Train(string dir, int steps = 4)
    {
        using var rng = TestSupport.TorchSeed();
        using var model = Task.NewModel(LlamaConfig.Tiny(), seed: 0);
        Peft.Inject(model, AdapterConfig.Lora(2));
        return new Trainer(model, new TrainConfig { Steps = steps, BatchSize = 4, CheckpointEvery = 2, KeepCheckpoints = 2, ShowProgress = false, OutputDir = dir }, Task.Train).Run();
    }

    static string Checkpoint(string dir) => Checkpoints.Latest(dir)!;

    [Fact]
    public void ACheckpointCarriesChecksumsOfEveryFile()
    {
        string dir = TestSupport.TempDir();
        Train(dir, steps: 2);
        string cp = Checkpoint(dir);
        Assert.Null(RunFolder.ChecksumProblems(cp));
        var listed = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(cp, RunFolder.ChecksumsFile)))!["sha256"]!.AsObject().Select(kv => kv.Key).Order();
        Assert.Equal(Directory.GetFiles(cp).Select(Path.GetFileName).Where(f => f != RunFolder.ChecksumsFile).Order(), listed);
    }

    [Theory]
    [InlineData("optimizer.safetensors")]      // overwritten optimiser moments
    [InlineData("trainable.safetensors")]
    [InlineData("state.json")]
    public void AnOverwrittenFileIsNamedWithTheRemedyAndTheRemedyWorks(string file)
    {
        string dir = TestSupport.TempDir();
        Train(dir, steps: 2);
        string path = Path.Combine(Checkpoint(dir), file);
        var bytes = File.ReadAllBytes(path);
        int at = bytes.Length - 1 - new Random(TestSupport.Seed()).Next(Math.Min(16, bytes.Length));   // in the data, not the header
        bytes[at] ^= 0x5a;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<CheckpointDamagedException>(() => Train(dir));
        Assert.Contains($"{file} does not match its checksum", e.Message);
        Assert.Contains($"Delete {Path.Combine(dir, Trainer.CheckpointDir)} to train this run again from its start", e.Message);
        Directory.Delete(Path.Combine(dir, Trainer.CheckpointDir), recursive: true);
        var result = Train(dir);
        Assert.Null(result.ResumedFromStep);
        Assert.Equal(4, result.Steps);
    }

    [Fact]
    public void AGarbledPointerOrStateIsNamedWithTheRemedy()
    {
        string dir = TestSupport.TempDir();
        Train(dir, steps: 2);
        string pointer = Path.Combine(dir, Trainer.CheckpointDir, Trainer.LatestFile);
        string good = File.ReadAllText(pointer);
        File.WriteAllText(pointer, "{\"checkpoint\": ");
        var e = Assert.Throws<CheckpointDamagedException>(() => Train(dir));
        Assert.Contains(pointer, e.Message);
        Assert.Contains("Delete", e.Message);
        // A checkpoint written before checksums (none to check) whose state is garbled: named, with the remedy, not a crash.
        File.WriteAllText(pointer, good);
        File.Delete(Path.Combine(Checkpoint(dir), RunFolder.ChecksumsFile));
        File.WriteAllText(Path.Combine(Checkpoint(dir), "state.json"), "[1, 2");
        e = Assert.Throws<CheckpointDamagedException>(() => Train(dir));
        Assert.Contains("state.json", e.Message);
        Assert.Contains("to train this run again from its start", e.Message);
    }
}

using Mora.Adapters;
using Mora.Analysis;
using Mora.Experiments;
using Mora.IO;

namespace Mora.Tests;

/// <summary>
/// A design of one's own (issue: bring your own design): defined by the forwards of its two maps, checked on
/// registration (paper Eq. 3: ΔW written out equals the Jacobian of the forward; linearity; each row alone; the merge),
/// refused saying why when it is no MoRA design, and then accepted by CompressDecompress, the rank analysis,
/// AdapterConfig/Peft.Inject, the merge, adapter save and load, and the experiments' method names. Every test uses its
/// own design name (the registry is process-wide) and removes it at the end. Tolerances: registration 1e-9 relative
/// (MoraDesigns.Tolerance), layer checks 1e-10 absolute in float64.
/// </summary>
public class OwnDesignTests
{
    /// <summary>f_comp: a fixed permutation of the inputs (seeded by k), then the paper's sharing by stride; f_decomp:
    /// tiling. A "what if the inputs were shuffled before sharing" design in a few lines.</summary>
    static MoraDesign PermutedSharing(string name, Func<int, int, Tensor, Tensor>? deltaWeight = null) => MoraDesign.FromForward(name,
        compress: (k, rHat) =>
        {
            var perm = randperm(k, generator: new torch.Generator((ulong)(1000 + k)));
            var share = new CompressDecompress(1, k, rHat, MoraType.Sharing);
            return x => { using var shuffled = x.index_select(-1, perm.to(x.device)); return share.Compress(shuffled); };
        },
        decompress: (d, rHat) => h => h.tile([.. Enumerable.Repeat(1L, (int)h.dim() - 1), (d + rHat - 1) / rHat]).narrow(-1, 0, d),
        deltaWeight: deltaWeight,
        description: "inputs permuted, then shared by stride; outputs tiled");

    [Fact]
    public void APermutedSharingDesignRegistersAndItsDeltaWeightIsTheJacobian()
    {
        using var rng = TestSupport.TorchSeed();           // registration advances torch's global generator (its determinism check)
        string name = "perm-sharing-a";
        try
        {
            double worst = MoraDesigns.Register(PermutedSharing(name));
            Assert.InRange(worst, 0, MoraDesigns.Tolerance);
            var design = MoraDesigns.Parse(name);
            Assert.Null(design.BuiltIn);
            // on a shape the registration did not use: ΔW = T M S equals the Jacobian, and is the permuted sharing ΔW
            using var g = TestSupport.Generator();
            var op = new CompressDecompress(48, 56, 12, design);
            using var m = randn(12, 12, dtype: ScalarType.Float64, generator: g);
            using var dw = op.DeltaWeight(m);
            using var jac = op.DeltaWeightFromForward(m);
            Assert.True(TestSupport.MaxAbs(dw, jac) <= 1e-10, $"|ΔW − J| = {TestSupport.MaxAbs(dw, jac)}");
            using var perm = randperm(56, generator: new torch.Generator(1056));
            using var sharing = new CompressDecompress(48, 56, 12, MoraType.Sharing).DeltaWeight(m);
            using var permuted = zeros_like(sharing);
            permuted.index_copy_(1, perm, sharing);                          // column perm[j] of ours = column j of sharing
            Assert.True(TestSupport.MaxAbs(dw, permuted) <= 1e-10, "the permuted design is sharing with its columns permuted");
            Assert.Equal(12, op.ExpectedRank());                              // like sharing: min(r̂, d, k)
            Assert.Equal($"mora-{name}", MethodSpec.Parse($"mora-{name}").Name);
            Assert.Same(design, MethodSpec.Parse($"mora-{name}").Design);
        }
        finally { MoraDesigns.Unregister(name); }
    }

    [Fact]
    public void WhatIsNoMoraDesignIsRefusedSayingWhy()
    {
        using var rng = TestSupport.TorchSeed();           // registration (and the randperm design) draw from torch's global generator
        MoraDesign Own(Func<int, int, Func<Tensor, Tensor>> compress, Func<int, int, Func<Tensor, Tensor>>? decompress = null, Func<int, int, Tensor, Tensor>? dw = null) =>
            MoraDesign.FromForward("refused-one", compress, decompress ?? ((d, rHat) => h => h.tile([.. Enumerable.Repeat(1L, (int)h.dim() - 1), (d + rHat - 1) / rHat]).narrow(-1, 0, d)), dw);
        Func<int, int, Func<Tensor, Tensor>> keepFirst = (k, rHat) => x => x.narrow(-1, 0, Math.Min(k, rHat));
        string Refused(MoraDesign d) => Assert.Throws<ArgumentException>(() => MoraDesigns.Register(d)).Message;

        Assert.Contains("linearity", Refused(Own((k, rHat) => x => x.narrow(-1, 0, rHat).tanh())));
        Assert.Contains("row independence", Refused(Own((k, rHat) => x => x.narrow(-1, 0, rHat) - x.narrow(-1, 0, rHat).mean([0], keepdim: true))));
        Assert.Contains("f_comp maps", Refused(Own((k, rHat) => x => x.narrow(-1, 0, rHat - 1))));
        Assert.Contains("f_decomp maps", Refused(Own(keepFirst, (d, rHat) => h => h)));
        // randomness from the global generator: another ΔW each time the operators are built
        Assert.Contains("determinism", Refused(Own((k, rHat) => { var perm = randperm(k); return x => x.index_select(-1, perm).narrow(-1, 0, rHat); })));
        // a map that only works on 2-D input (the model feeds (batch, sequence, k))
        Assert.Contains("(2, 3, k)", Refused(Own((k, rHat) => x => x.index_select(1, arange(rHat)))));
        // a ΔW written out that is not the forward's Jacobian (transposed S): Eq. 3 fails, with the error
        var wrong = Refused(Own((k, rHat) => x => x.narrow(-1, 0, rHat), dw: (d, k, m) => zeros(d, k, dtype: m.dtype)));
        Assert.Contains("Eq. 3", wrong);
        Assert.Contains("relative error", wrong);
        Assert.Throws<ArgumentException>(() => MoraDesigns.Parse("refused-one"));           // nothing was registered
        // names: a paper design's, or not a command-line name
        Assert.Contains("paper's designs", Assert.Throws<ArgumentException>(() => MoraDesign.FromForward("rotation", keepFirst, (d, r) => h => h)).Message);
        Assert.Throws<ArgumentException>(() => MoraDesign.FromForward("My Design", keepFirst, (d, r) => h => h));
        Assert.Contains("MoraDesigns.Register", Assert.Throws<ArgumentException>(() => MethodSpec.Parse("mora-never-registered")).Message);
    }

    [Fact]
    public void ARegisteredDesignAdaptsAModelMergesSavesAndLoadsAndIsRefusedUnregistered()
    {
        using var rng = TestSupport.TorchSeed();           // registration, the model, Inject and Load use torch's global generator
        string name = "perm-sharing-b";
        try
        {
            MoraDesigns.Register(PermutedSharing(name));
            var config = AdapterConfig.Mora(4) with { Design = name };
            Assert.Equal(name, config.Validate().ResolvedDesign().Name);
            var model = new ToyModel();
            Peft.Inject(model, config);
            var layers = model.modules().OfType<MoraLinear>().ToList();
            Assert.NotEmpty(layers);
            Assert.All(layers, l => Assert.Equal(name, l.Design.Name));
            using (no_grad()) foreach (var l in layers) l.M.copy_(randn_like(l.M) * 0.1);
            using var tokens = randint(0, 11, [3, 5]);
            using var adapted = model.forward(tokens);

            // save: the fork's config marks a design of one's own (its forward would fail rather than compute another), the side file names it
            string dir = TestSupport.TempDir();
            AdapterIO.Save(model, config, dir);
            var peft = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterIO.ConfigFile)))!;
            Assert.Equal(AdapterIO.OwnDesignMoraType, peft["mora_type"]!.GetValue<int>());
            Assert.Equal(name, peft[AdapterIO.OwnDesignKey]!.GetValue<string>());      // the fork's LoraConfig rejects this key: it refuses the adapter
            var kit = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterIO.KitFile)))!;
            Assert.Equal(name, kit["mora_design"]!.GetValue<string>());

            // load into a fresh copy of the base: the same outputs
            var fresh = new ToyModel();
            using (no_grad())
                foreach (var ((_, p1), (_, p2)) in fresh.named_parameters().Zip(model.named_parameters().Where(p => !p.name.Contains("lora_"))))
                    p1.copy_(p2);
            Assert.Equal(name, AdapterIO.Load(fresh, dir).Design);
            using var loaded = fresh.forward(tokens);
            Assert.True(TestSupport.MaxAbs(adapted, loaded) <= 1e-12);

            // merge: the merged model computes what the adapted one did
            foreach (var l in layers) l.Merge();
            using var merged = model.forward(tokens);
            Assert.True(TestSupport.MaxAbs(adapted, merged) <= 1e-10, $"merged differs by {TestSupport.MaxAbs(adapted, merged)}");

            // the rank analysis takes it beside the paper's designs
            var spectra = DesignReport.RandomSpectra(24, 40, 4, designs: [.. MoraDesigns.Paper, MoraDesigns.Parse(name)]);
            Assert.Contains(spectra, s => s.Method == $"MoRA {name}");
            var rows = DesignReport.CompareDesigns(24, 40, 4, tokens: 8, repeats: 1, designs: [MoraDesigns.Parse(name)]);
            Assert.True(rows.Single().JacobianError <= 1e-10 && rows.Single().MergeError <= 1e-10 && rows.Single().Number is null && rows.Single().Type == name);

            // redefined under the same name (other maps): the adapter is refused, naming the fingerprint, and a method
            // made from the old object is refused too (it would record one design and train another)
            var old = MoraDesigns.Parse(name);
            MoraDesigns.Register(MoraDesign.FromForward(name, (k, rHat) => x => x.narrow(-1, 0, rHat),
                (d, rHat) => h => h.tile([.. Enumerable.Repeat(1L, (int)h.dim() - 1), (d + rHat - 1) / rHat]).narrow(-1, 0, d)));
            Assert.NotEqual(old.Fingerprint, MoraDesigns.Parse(name).Fingerprint);
            Assert.Contains("mora_design_fingerprint", Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(new ToyModel(), dir)).Message);
            Assert.Throws<ArgumentException>(() => MethodSpec.Mora(old));
            MoraDesigns.Register(old);

            // unregistered (a fresh process that has not run the cell): refused naming the side file's field
            MoraDesigns.Unregister(name);
            var other = new ToyModel();
            var e = Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(other, dir));
            Assert.Contains("mora_design", e.Message);
            Assert.Contains("MoraDesigns.Register", e.Message);
            // and a fork config that marks a design of one's own without the side file is refused too
            File.Delete(Path.Combine(dir, AdapterIO.KitFile));
            Assert.Contains("mora_type", Assert.Throws<AdapterFormatException>(() => AdapterIO.Load(other, dir)).Message);
        }
        finally { MoraDesigns.Unregister(name); }
    }
}

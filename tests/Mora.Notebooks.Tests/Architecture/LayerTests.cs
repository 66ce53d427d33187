using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Mora.Tests;

/// <summary>
/// The library's layers, as the README's library map draws them: one project each under <c>lib/</c>, the experiments on
/// top, the command line (<c>Mora.Notebooks.csproj</c>, <c>lib/Cli</c>) on top of that. MSBuild refuses a cycle of
/// project references; <see cref="Graph"/> says which references are allowed at all, and <see cref="LayerTests"/> holds
/// every project file and every source file to it, naming the offending edge.
/// </summary>
public static class Layers
{
    /// <summary>The command line's project, at the repository root; its sources are <c>lib/Cli</c>.</summary>
    public const string CommandLine = "Mora.Notebooks";

    /// <summary>
    /// The layer graph: each project and the layers directly below it that it stands on. A project may reference any
    /// project reachable from it here (a redundant reference to a lower layer is allowed), and nothing else.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string[]> Graph = new Dictionary<string, string[]>
    {
        ["Mora.Core"] = [],                                                  // IO, Native, the rotation R_t
        ["Mora.Operators"] = ["Mora.Core"],                                  // the paper's f_comp / f_decomp
        ["Mora.Model"] = ["Mora.Core"],                                      // LLaMA, its checkpoints
        ["Mora.Adapters"] = ["Mora.Operators", "Mora.Model"],                // LoRA, DoRA, MoRA; adapter-aware saving
        ["Mora.Data"] = ["Mora.Core"],                                       // tokenizers, data sets, LmData
        ["Mora.Evaluation"] = ["Mora.Model", "Mora.Data"],                   // metrics, statistics; not training
        ["Mora.Training"] = ["Mora.Model", "Mora.Adapters", "Mora.Data"],    // the trainer and run files
        ["Mora.Analysis"] = ["Mora.Training", "Mora.Evaluation"],            // spectra, Bench/, Figures/, Evidence/
        ["Mora.Experiments"] = ["Mora.Analysis", "Mora.Training", "Mora.Evaluation"],   // the pipeline, its tasks, Notebooks/
        [CommandLine] = ["Mora.Experiments", "Mora.Analysis"],               // lib/Cli
    };

    /// <summary>The root namespace <c>Mora</c> is declared by these projects only (ComputeDevice and Rotary in the core,
    /// the operators). It is in scope in every <c>Mora.*</c> file without a using, so no grep can see who uses it: the
    /// compiler does (a type of a project that is not referenced does not resolve).</summary>
    public static readonly string[] RootNamespaceOwners = ["Mora.Core", "Mora.Operators"];

    /// <summary>Every project reachable from <paramref name="project"/> in <paramref name="graph"/> (itself excluded).</summary>
    public static HashSet<string> Below(string project, IReadOnlyDictionary<string, string[]> graph)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>(graph.TryGetValue(project, out var direct) ? direct : []);
        while (stack.Count > 0)
        {
            string p = stack.Pop();
            if (seen.Add(p) && graph.TryGetValue(p, out var next)) foreach (var n in next) stack.Push(n);
        }
        return seen;
    }

    /// <summary>The references of each project that the graph does not allow, each in words naming the edge.</summary>
    public static List<string> ForbiddenReferences(IReadOnlyDictionary<string, IReadOnlyList<string>> references, IReadOnlyDictionary<string, string[]> graph)
    {
        var problems = new List<string>();
        foreach (var (project, refs) in references.OrderBy(r => r.Key, StringComparer.Ordinal))
        {
            if (!graph.ContainsKey(project)) { problems.Add($"{project} is not in the layer graph (add it to Layers.Graph and the README's library map)"); continue; }
            var allowed = Below(project, graph);
            foreach (var r in refs.Where(r => !allowed.Contains(r)))
                problems.Add($"{project} → {r} is not an edge of the layer graph: {project} may reference only " +
                             (allowed.Count == 0 ? "nothing" : string.Join(", ", allowed.Order(StringComparer.Ordinal))));
        }
        return problems;
    }

    /// <summary>The namespaces a source file of <paramref name="project"/> uses that belong to a project not below it
    /// (<paramref name="namespaceOwner"/>: namespace → the project declaring it), each in words naming the edge.</summary>
    public static List<string> ForbiddenNamespaceUses(string project, string file, string source,
        IReadOnlyDictionary<string, string> namespaceOwner, IReadOnlyDictionary<string, string[]> graph)
    {
        var visible = Below(project, graph);
        visible.Add(project);
        var problems = new List<string>();
        foreach (string used in NamespacesUsed(source).Distinct())
        {
            // The longest declared namespace the reference starts with (Mora.Data.Tokenization before Mora.Data).
            string? ns = namespaceOwner.Keys.Where(n => used == n || used.StartsWith(n + ".", StringComparison.Ordinal)).MaxBy(n => n.Length);
            if (ns is null || ns == "Mora") continue;                  // the root namespace: the compiler holds it (see RootNamespaceOwners)
            string owner = namespaceOwner[ns];
            if (!visible.Contains(owner))
                problems.Add($"{file} ({project}) uses {ns}, which is {owner}'s: {project} → {owner} is not an edge of the layer graph");
        }
        return problems;
    }

    /// <summary><c>Mora.X</c> namespaces a C# source names in code (using directives and qualified names), comments
    /// and string and character literals left out.</summary>
    public static IEnumerable<string> NamespacesUsed(string source) =>
        Regex.Matches(Code(source), @"(?<![\w.])Mora(\.[A-Z]\w*)+").Select(m => m.Value);

    /// <summary>The namespaces a source declares (<c>namespace X;</c> or <c>namespace X {</c>), in code only.</summary>
    public static IEnumerable<string> NamespacesDeclared(string source) =>
        Regex.Matches(Code(source), @"(?m)^\s*namespace\s+([\w.]+)").Select(m => m.Groups[1].Value);

    /// <summary>The source with comments and string/character literals blanked (a small lexer: //, /* */, "…", @"…",
    /// $"…", """…""", '…').</summary>
    public static string Code(string s)
    {
        var sb = new StringBuilder(s.Length);
        int i = 0;
        while (i < s.Length)
        {
            char c = s[i];
            if (c == '/' && i + 1 < s.Length && s[i + 1] == '/') { while (i < s.Length && s[i] != '\n') i++; continue; }
            if (c == '/' && i + 1 < s.Length && s[i + 1] == '*') { int end = s.IndexOf("*/", i + 2, StringComparison.Ordinal); i = end < 0 ? s.Length : end + 2; continue; }
            if (c == '\'') { int j = i + 1; if (j < s.Length && s[j] == '\\') j++; int end = s.IndexOf('\'', j + 1); i = end < 0 ? s.Length : end + 1; sb.Append("' '"); continue; }
            if (c == '"' || ((c == '@' || c == '$') && Next(s, i) is '"' or '@' or '$'))
            {
                int j = i; bool verbatim = false;
                while (j < s.Length && s[j] is '@' or '$') { verbatim |= s[j] == '@'; j++; }
                if (s.AsSpan(j).StartsWith("\"\"\""))
                {
                    int quotes = 0; while (j + quotes < s.Length && s[j + quotes] == '"') quotes++;
                    int end = s.IndexOf(new string('"', quotes), j + quotes, StringComparison.Ordinal);
                    i = end < 0 ? s.Length : end + quotes;
                }
                else
                {
                    j++;   // the opening quote
                    while (j < s.Length)
                    {
                        if (!verbatim && s[j] == '\\') { j += 2; continue; }
                        if (s[j] == '"') { if (verbatim && j + 1 < s.Length && s[j + 1] == '"') { j += 2; continue; } break; }
                        j++;
                    }
                    i = j + 1;
                }
                sb.Append("\"\"");
                continue;
            }
            sb.Append(c);
            i++;
        }
        return sb.ToString();
    }

    static char Next(string s, int i) => i + 1 < s.Length ? s[i + 1] : '\0';
}

/// <summary>The layers hold: every project file's references and every source file's namespaces are edges of
/// <see cref="Layers.Graph"/>; a forbidden edge fails here with a message naming it.</summary>
public class LayerTests
{
    static string Root => TestSupport.RepoRoot;

    static string Rel(string path) => Path.GetRelativePath(Root, path).Replace('\\', '/');

    /// <summary>The library's project files (lib/*/*.csproj) and the command line's at the root.</summary>
    static List<string> ProjectFiles() =>
        [.. Directory.GetFiles(Path.Combine(Root, "lib"), "*.csproj", SearchOption.AllDirectories).Where(f => !IsBuildOutput(f)).Order(StringComparer.Ordinal),
         Path.Combine(Root, Layers.CommandLine + ".csproj")];

    static bool IsBuildOutput(string path) => Rel(path).Split('/').Any(p => p is "bin" or "obj");

    static string Name(string csproj) => Path.GetFileNameWithoutExtension(csproj);

    static IReadOnlyDictionary<string, IReadOnlyList<string>> References() => ProjectFiles().ToDictionary(Name,
        f => (IReadOnlyList<string>)XDocument.Load(f).Descendants("ProjectReference")
            .Select(r => Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value.Replace('\\', '/'))).ToList());

    /// <summary>Each source file of lib/ and the project that compiles it: a library project compiles its own folder,
    /// the command line lib/Cli, and lib/TorchRuntimeFirst.cs is linked into the library's projects (lib/Directory.Build.props).</summary>
    static List<(string Project, string File)> Sources()
    {
        var projects = ProjectFiles().Where(f => Name(f) != Layers.CommandLine).ToDictionary(f => Rel(Path.GetDirectoryName(f)!) + "/", Name);
        var result = new List<(string, string)>();
        foreach (string file in Directory.GetFiles(Path.Combine(Root, "lib"), "*.cs", SearchOption.AllDirectories).Where(f => !IsBuildOutput(f)).Order(StringComparer.Ordinal))
        {
            string rel = Rel(file);
            if (rel == "lib/TorchRuntimeFirst.cs") continue;
            string? project = rel.StartsWith("lib/Cli/", StringComparison.Ordinal) ? Layers.CommandLine
                : projects.Where(p => rel.StartsWith(p.Key, StringComparison.Ordinal)).Select(p => p.Value).SingleOrDefault();
            Assert.True(project is not null, $"{rel} is in no project's folder: put it in one of {string.Join(", ", projects.Keys)} or lib/Cli/");
            result.Add((project!, rel));
        }
        return result;
    }

    [Fact]
    public void EveryProjectReferenceIsAnEdgeOfTheLayerGraph()
    {
        var references = References();
        var problems = Layers.ForbiddenReferences(references, Layers.Graph);
        Assert.True(problems.Count == 0, string.Join("\n", problems));
        // The graph names only projects that exist, and every one of them is held here.
        Assert.Empty(Layers.Graph.Keys.Except(references.Keys));
        // The library knows nothing of the experiments or the command line.
        foreach (var (project, _) in Layers.Graph.Where(p => p.Key is not "Mora.Experiments" and not Layers.CommandLine))
        {
            Assert.DoesNotContain("Mora.Experiments", Layers.Below(project, Layers.Graph));
            Assert.DoesNotContain(Layers.CommandLine, Layers.Below(project, Layers.Graph));
        }
    }

    [Fact]
    public void TheLayerGraphHasNoCycle()
    {
        foreach (var project in Layers.Graph.Keys)
            Assert.False(Layers.Below(project, Layers.Graph).Contains(project), $"{project} reaches itself through the layer graph");
    }

    [Fact]
    public void EachNamespaceBelongsToOneProjectAndEachFileUsesOnlyTheLayersBelowIt()
    {
        var sources = Sources();
        var declared = sources.SelectMany(s => Layers.NamespacesDeclared(File.ReadAllText(Path.Combine(Root, s.File))).Select(ns => (Ns: ns, s.Project, s.File))).ToList();
        var owners = declared.GroupBy(d => d.Ns).ToDictionary(g => g.Key, g => g.Select(d => d.Project).Distinct().Order(StringComparer.Ordinal).ToList());
        foreach (var (ns, projects) in owners)
            if (ns == "Mora") Assert.True(projects.All(Layers.RootNamespaceOwners.Contains), $"namespace Mora is declared by {string.Join(", ", projects)}; only {string.Join(", ", Layers.RootNamespaceOwners)} may");
            else Assert.True(projects.Count == 1, $"namespace {ns} is declared by {string.Join(" and ", projects)}: a namespace belongs to one project ({string.Join(", ", declared.Where(d => d.Ns == ns).Select(d => d.File))})");
        var owner = owners.Where(o => o.Key != "Mora").ToDictionary(o => o.Key, o => o.Value[0]);
        owner["Mora"] = "Mora.Core";
        var problems = sources.SelectMany(s => Layers.ForbiddenNamespaceUses(s.Project, s.File, File.ReadAllText(Path.Combine(Root, s.File)), owner, Layers.Graph)).ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
        // What the check looks at: each layer's namespaces, and uses across layers.
        Assert.Equal("Mora.Model", owner["Mora.Model"]);
        Assert.Equal("Mora.Experiments", owner["Mora.Notebooks"]);
        Assert.Equal("Mora.Analysis", owner["Mora.Figures"]);
        Assert.Equal("Mora.Analysis", owner["Mora.Evidence"]);           // the GPU evidence run's parts: analysis, not experiments
        Assert.Contains(sources, s => s.Project == "Mora.Adapters" && Layers.NamespacesUsed(File.ReadAllText(Path.Combine(Root, s.File))).Contains("Mora.Model"));
    }

    /// <summary>Every assembly of the library but the core, and the command line, runs the core's module initializer
    /// (the TorchSharp native fix) before its own code: <c>TorchRuntimeFirst</c>, linked by lib/Directory.Build.props.</summary>
    [Fact]
    public void EveryOtherAssemblyRunsTheCoresNativeFixFirst()
    {
        foreach (string project in Layers.Graph.Keys.Where(p => p != "Mora.Core"))
        {
            var assembly = System.Reflection.Assembly.Load(project);
            var first = assembly.GetType("TorchRuntimeFirst");
            Assert.True(first is not null, $"{project} does not compile lib/TorchRuntimeFirst.cs");
            var init = first!.GetMethod("Initialize", System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic);
            Assert.True(init?.GetCustomAttributes(typeof(System.Runtime.CompilerServices.ModuleInitializerAttribute), false).Length == 1, $"{project}: TorchRuntimeFirst.Initialize is not its module initializer");
        }
        Assert.Null(typeof(Mora.Native.TorchRuntime).Assembly.GetType("TorchRuntimeFirst"));
    }

    /// <summary>The checks fail, naming the edge, on the cycles this layering removed (the operators using the model's
    /// rotary code, the model saving through the adapters, evaluation using training's data, analysis and the benchmark
    /// reaching into the experiments); comments and strings that name a namespace do not count.</summary>
    [Fact]
    public void AForbiddenEdgeFailsNamingIt()
    {
        var references = new Dictionary<string, IReadOnlyList<string>>
        {
            ["Mora.Operators"] = ["Mora.Core", "Mora.Model"],
            ["Mora.Model"] = ["Mora.Adapters"],
            ["Mora.Evaluation"] = ["Mora.Core", "Mora.Training"],
            ["Mora.Analysis"] = ["Mora.Experiments"],
            ["Mora.Adapters"] = ["Mora.Core"],          // a lower layer, allowed though redundant
            ["Mora.Plugins"] = [],
        };
        var problems = Layers.ForbiddenReferences(references, Layers.Graph);
        Assert.Equal(5, problems.Count);
        Assert.Contains(problems, p => p.StartsWith("Mora.Operators → Mora.Model is not an edge of the layer graph: Mora.Operators may reference only Mora.Core", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Mora.Model → Mora.Adapters", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Mora.Evaluation → Mora.Training", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Mora.Analysis → Mora.Experiments", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Mora.Plugins is not in the layer graph", StringComparison.Ordinal));
        Assert.Contains("Mora.Core", Layers.Below("Mora.Training", Layers.Graph));

        var owner = new Dictionary<string, string>
        {
            ["Mora"] = "Mora.Core", ["Mora.Model"] = "Mora.Model", ["Mora.Experiments"] = "Mora.Experiments",
            ["Mora.Data"] = "Mora.Data", ["Mora.Data.Tokenization"] = "Mora.Data", ["Mora.IO"] = "Mora.Core",
        };
        const string source = """
            using Mora.IO;
            using Mora.Experiments;
            // using Mora.Model; in a comment
            /* Mora.Model.ModelIO in a block comment */
            namespace Mora.Bench;
            /// <see cref="Mora.Model.LlamaConfig"/> in a doc comment
            class C
            {
                string s = "Mora.Model.ModelIO in a string", v = @"a ""Mora.Model"" verbatim", r = $"{1} Mora.Model";
                char q = '"';
                int n = Mora.Data.Tokenization.Splitting.Count + Mora.MoraTypes.Count;
            }
            """;
        var uses = Layers.ForbiddenNamespaceUses("Mora.Analysis", "lib/Mora.Analysis/Bench/C.cs", source, owner, Layers.Graph);
        Assert.Equal(["lib/Mora.Analysis/Bench/C.cs (Mora.Analysis) uses Mora.Experiments, which is Mora.Experiments's: Mora.Analysis → Mora.Experiments is not an edge of the layer graph"], uses);
        var fromOperators = Layers.ForbiddenNamespaceUses("Mora.Operators", "lib/Mora.Operators/X.cs", "namespace Mora;\nclass X { object m = Mora.Model.ModelIO.ConfigFile; }", owner, Layers.Graph);
        Assert.Equal(["lib/Mora.Operators/X.cs (Mora.Operators) uses Mora.Model, which is Mora.Model's: Mora.Operators → Mora.Model is not an edge of the layer graph"], fromOperators);
        Assert.Equal(["Mora.Bench"], Layers.NamespacesDeclared(source));
    }
}

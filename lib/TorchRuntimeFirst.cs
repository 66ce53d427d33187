using System.Runtime.CompilerServices;

/// <summary>
/// Compiled into every project of the library except Mora.Core (lib/Directory.Build.props links it) and into the command
/// line (Mora.Notebooks.csproj): before this
/// assembly's first code runs, Mora.Core's module initializer runs (<c>Mora.Native.TorchRuntime</c>: the Debian 12 native
/// fix, an installed PyTorch's libtorch). This assembly may call TorchSharp before anything of Mora.Core is touched (an
/// operator's forward, say), and TorchSharp's native library must not load before the fix: so merely using any part of
/// the library applies it, as it did when the library was one assembly.
/// </summary>
static class TorchRuntimeFirst
{
#pragma warning disable CA2255 // a library's module initializer on purpose: it must run before TorchSharp loads its native library
    [ModuleInitializer]
    internal static void Initialize() => RuntimeHelpers.RunModuleConstructor(typeof(Mora.Native.TorchRuntime).Module.ModuleHandle);
#pragma warning restore CA2255
}

using System.Collections.Concurrent;
using TorchSharp;

namespace Mora;

/// <summary>
/// Scalars that live as long as the process, for the hot paths of a forward pass. TorchSharp turns a number into a
/// temporary <see cref="Scalar"/> for <c>a + b</c> (its alpha of 1) or <c>t * 0.5</c> and hands only its native handle to
/// libtorch; nothing keeps the temporary alive during the native call, so the garbage collector may finalise it (and
/// free the native scalar) while libtorch still reads it. That showed once, in a long notebook run full of garbage, as
/// "Expected false to be true … toFloat at c10/core/Scalar.h" inside an adapted layer's add. A scalar held here is
/// rooted, so it is never finalised early. Only for constants (the cache is never emptied), and never dispose one: every
/// later use shares it.
/// </summary>
public static class KeptScalars
{
    static readonly ConcurrentDictionary<double, Scalar> Cache = new();

    /// <summary>1, the alpha of an addition.</summary>
    public static Scalar One { get; } = Of(1.0);

    /// <summary>The scalar of <paramref name="value"/>, made once and kept.</summary>
    public static Scalar Of(double value) => Cache.GetOrAdd(value, v => v.ToScalar());
}

using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Mora.IO;

/// <summary>
/// JSON text as Python's <c>json.dumps(obj, indent=2, sort_keys=True) + "\n"</c> writes it, which is how transformers'
/// <c>save_pretrained</c> writes config.json, generation_config.json and model.safetensors.index.json: keys sorted,
/// two-space indent, floats in Python's repr (<c>1e-06</c>, <c>10000.0</c>: a float stays a float, which transformers
/// 4.40 checks for <c>rope_scaling.factor</c>), non-ASCII escaped. A <see cref="JsonValue"/> made from a double is
/// written as a float, one made from an integer as an integer.
/// </summary>
public static class PythonJson
{
    public static string Serialize(JsonNode? node)
    {
        var sb = new StringBuilder();
        Write(sb, node, 0);
        return sb.Append('\n').ToString();
    }

    static void Write(StringBuilder sb, JsonNode? node, int depth)
    {
        switch (node)
        {
            case null: sb.Append("null"); break;
            case JsonObject o:
                if (o.Count == 0) { sb.Append("{}"); break; }
                sb.Append('{');
                bool first = true;
                foreach (var (key, value) in o.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    sb.Append(first ? "\n" : ",\n").Append(' ', 2 * (depth + 1));
                    first = false;
                    String(sb, key);
                    sb.Append(": ");
                    Write(sb, value, depth + 1);
                }
                sb.Append('\n').Append(' ', 2 * depth).Append('}');
                break;
            case JsonArray a:
                if (a.Count == 0) { sb.Append("[]"); break; }
                sb.Append('[');
                for (int i = 0; i < a.Count; i++)
                {
                    sb.Append(i == 0 ? "\n" : ",\n").Append(' ', 2 * (depth + 1));
                    Write(sb, a[i], depth + 1);
                }
                sb.Append('\n').Append(' ', 2 * depth).Append(']');
                break;
            case JsonValue v:
                if (v.TryGetValue<JsonElement>(out var element)) sb.Append(element.GetRawText());
                else if (v.TryGetValue<bool>(out bool b)) sb.Append(b ? "true" : "false");
                else if (v.TryGetValue<string>(out var s)) String(sb, s);
                else if (v.TryGetValue<double>(out double d)) sb.Append(Float(d));
                else if (v.TryGetValue<float>(out float f)) sb.Append(Float(f));
                else if (v.TryGetValue<long>(out long l)) sb.Append(l.ToString(CultureInfo.InvariantCulture));
                else if (v.TryGetValue<int>(out int n)) sb.Append(n.ToString(CultureInfo.InvariantCulture));
                else sb.Append(v.ToJsonString());
                break;
        }
    }

    /// <summary>Python's <c>repr(float)</c>: the shortest round-trip digits, positional for decimal exponents −4 … 15,
    /// else <c>d.ddde±XX</c>; integral values keep <c>.0</c>. Non-finite values have no JSON form and are refused.</summary>
    public static string Float(double x)
    {
        if (!double.IsFinite(x)) throw new ArgumentException($"{x} has no JSON representation", nameof(x));
        if (x == 0) return double.IsNegative(x) ? "-0.0" : "0.0";
        // Shortest round-trip digits: .NET's "R" gives them; split into sign, digits and decimal exponent.
        string shortest = x.ToString("R", CultureInfo.InvariantCulture);
        bool negative = shortest.StartsWith('-');
        if (negative) shortest = shortest[1..];
        int exp10;
        string mantissa;
        int e = shortest.IndexOfAny(['E', 'e']);
        if (e >= 0) { mantissa = shortest[..e]; exp10 = int.Parse(shortest[(e + 1)..], CultureInfo.InvariantCulture); }
        else { mantissa = shortest; exp10 = 0; }
        int dot = mantissa.IndexOf('.');
        string intPart = dot >= 0 ? mantissa[..dot] : mantissa, fracPart = dot >= 0 ? mantissa[(dot + 1)..] : "";
        string all = intPart + fracPart, digits = all.TrimStart('0');
        int leadingZeros = all.Length - digits.Length;
        // value = 0.digits × 10^point
        int point = intPart.Length + exp10 - leadingZeros;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        int sciExp = point - 1;
        string body;
        if (sciExp < -4 || sciExp >= 16)
        {
            string m = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            body = $"{m}e{(sciExp < 0 ? '-' : '+')}{Math.Abs(sciExp):00}";
        }
        else if (point <= 0) body = "0." + new string('0', -point) + digits;
        else if (point >= digits.Length) body = digits + new string('0', point - digits.Length) + ".0";
        else body = digits[..point] + "." + digits[point..];
        return negative ? "-" + body : body;
    }

    static void String(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || c > 0x7e) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}

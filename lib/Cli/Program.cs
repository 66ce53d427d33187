using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;
Mora.Native.TorchRuntime.Ensure();
Console.WriteLine(string.Join("\n", typeof(TorchSharp.Utils.TensorAccessor<float>).Assembly.GetType("TorchSharp.torch+Storage`1")!.GetMembers().Select(m=>m.ToString()).Distinct()));
var e = nn.Embedding(11, 4); var l = nn.Linear(4, 11, hasBias:false); l.weight = e.weight;
using (no_grad()) e.weight!.add_(1.0);
Console.WriteLine($"shared={TorchSharp.torch.equal(e.weight!, l.weight!)}");
Console.WriteLine($"{e.weight!.storage<float>().data_ptr()} {l.weight!.storage<float>().data_ptr()}");

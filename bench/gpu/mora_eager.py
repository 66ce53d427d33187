#!/usr/bin/env python3
"""MoRA's adapted layer in PyTorch eager: the peer the kit's layer benchmark is measured against.

Written from the paper (Jiang et al. 2024, "MoRA: High-Rank Updating for Parameter-Efficient Fine-Tuning",
arXiv 2405.12130, §3.1, Eq. 3-10) and from the algorithm of the reference implementation's forward (kongds/MoRA, folder
peft-mora, LoraLayer._apply_mora), not from the kit: the input is padded cyclically to a multiple of r̂ (x followed by
its first entries), folded into r̂-blocks, summed (sharing by stride, types 1 and 4) or summed in adjacent groups
(types 2 and 3), or kept as blocks and, for type 6, each block t rotated by RoPE angles t·10000^(-2i/r̂) in the
"rotate half" layout; the square matrix M (nn.Linear layout, out = M·in) is applied to the compressed vector or to
every block; the result is decompressed by tiling (types 1, 3), by contiguous runs (types 2, 4, repeat_interleave), or
for the blockwise types by concatenating the blocks and tiling to d. Truncation (Eq. 4-5, "type 0") and decoupling
without rotation (Eq. 8, "type 5") have no reference number; they are written from the paper's equations.
The rotation tables are computed in float64 and cast (the reference computes its angles in float32, a difference of
about 1e-7 relative).

LoRA in eager beside it: y = x Wᵀ + s·(x Aᵀ) Bᵀ.

  python3 mora_eager.py --check DUMP_DIR [--out FILE]      compare with `evidence layer-dump`: the adapter output, ΔW
                                                           (the Jacobian of the forward) and the gradients of x and of
                                                           the adapter's weights; float32 tolerance 1e-5 relative to the
                                                           largest value (float64: 1e-10)
  python3 mora_eager.py --bench --presets FILE --preset full --dtypes float32 bfloat16 --device cuda --out FILE
                                                           time forward + backward (the kit's bench step) at the kit's
                                                           bench shapes, tokens and ranks; CUDA events; kernel counts
Exit code 77 (and a last line "skipped: ...") when torch cannot be imported.
"""
import argparse
import csv
import json
import math
import os
import random
import statistics
import sys
import time

SKIP = 77

# ATen operators that launch no kernel themselves (views, metadata, bare allocation, conjugation checks, and to /
# contiguous, whose copies are counted inside them). The same list as the kit's OpTrace.NoKernel (lib/Mora.Analysis/Evidence/OpTrace.cs);
# a test holds the two equal.
NO_KERNEL = {
    "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::view", "aten::_unsafe_view", "aten::reshape",
    "aten::_reshape_alias", "aten::as_strided", "aten::t", "aten::transpose", "aten::permute", "aten::expand",
    "aten::expand_as", "aten::narrow", "aten::slice", "aten::select", "aten::unsqueeze", "aten::squeeze",
    "aten::alias", "aten::detach", "aten::detach_", "aten::lift_fresh", "aten::resize_", "aten::flatten",
    "aten::unflatten", "aten::diagonal", "aten::split", "aten::split_with_sizes", "aten::chunk", "aten::unbind",
    "aten::view_as", "aten::movedim", "aten::result_type", "aten::contiguous", "aten::set_", "aten::numpy_T",
    "aten::_has_compatible_shallow_copy_type", "aten::is_nonzero", "aten::size", "aten::stride", "aten::dim",
    "aten::_local_scalar_dense", "aten::item", "aten::resolve_conj", "aten::resolve_neg", "aten::conj", "aten::_conj",
    "aten::to", "aten::type_as", "aten::unfold", "aten::new_empty", "aten::new_empty_strided",
    "aten::broadcast_tensors", "aten::_shape_as_tensor", "aten::requires_grad_",
}

DESIGNS = {0: "truncation", 1: "sharing", 2: "sharingadjacent", 3: "sharingadjacenttiled", 4: "sharingstriderepeated",
           5: "decouple", 6: "rotation"}


def import_torch():
    try:
        import torch  # noqa: F401
        return torch
    except Exception as e:  # ImportError, or a broken install
        print(f"skipped: torch not installed ({sys.executable}: {e})")
        sys.exit(SKIP)


def r_hat_of(d, k, r, mora_type):
    """The reference's rule: r̂ = ⌊√((d + k)·r) + 0.5⌋, even for the rotation."""
    rh = int(math.sqrt((d + k) * r) + 0.5)
    if mora_type == 6:
        rh = rh // 2 * 2
    return rh


class Mora:
    """f_decomp(M f_comp(x)) for one d × k layer and one design, as the reference's _apply_mora computes it."""

    def __init__(self, torch, d, k, r_hat, mora_type, device, dtype):
        self.torch, self.d, self.k, self.r, self.t = torch, d, k, r_hat, mora_type
        self.pad = (r_hat - k % r_hat) % r_hat
        self.blocks = (k + self.pad) // r_hat
        if mora_type in (1, 4, 5, 6) and self.pad > k:
            raise ValueError(f"the reference pads with x[..., :pad]: pad {self.pad} > k = {k}")
        if mora_type in (2, 3) and k < r_hat:
            raise ValueError(f"adjacent groups need k >= r̂ (k = {k}, r̂ = {r_hat})")
        if mora_type == 6:
            inv_freq = 1.0 / (10000 ** (torch.arange(0, r_hat, 2, dtype=torch.float64) / r_hat))
            t = torch.arange(self.blocks, dtype=torch.float64)
            freqs = torch.outer(t, inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            self.cos = emb.cos().to(device=device, dtype=dtype)
            self.sin = emb.sin().to(device=device, dtype=dtype)

    def compress(self, x):
        torch, r = self.torch, self.r
        if self.t == 0:                                            # Eq. 4: keep the first r̂ inputs
            if self.k >= r:
                return x[..., :r]
            return torch.nn.functional.pad(x, (0, r - self.k))
        if self.t in (1, 4, 5, 6):                                 # Eq. 6 by stride / Eq. 8-9: pad cyclically, fold
            if self.pad > 0:
                x = torch.cat([x, x[..., :self.pad]], dim=-1)
            blocks = x.view(*x.shape[:-1], self.blocks, r)
            if self.t in (1, 4):
                return blocks.sum(dim=-2)
            if self.t == 5:
                return blocks
            rotated_half = torch.cat((-blocks[..., r // 2:], blocks[..., :r // 2]), dim=-1)
            return blocks * self.cos + rotated_half * self.sin     # Eq. 9: block t rotated by R_t
        # Eq. 6 by adjacent groups (types 2, 3): the first k mod r̂ groups one longer
        long_len, short_len = self.k // r + 1, self.k // r
        n_long = self.k - r * short_len
        if n_long > 0:
            head = x[..., :n_long * long_len].reshape(*x.shape[:-1], n_long, long_len).sum(dim=-1)
            tail = x[..., n_long * long_len:].reshape(*x.shape[:-1], r - n_long, short_len).sum(dim=-1)
            return torch.cat([head, tail], dim=-1)
        return x.reshape(*x.shape[:-1], r, short_len).sum(dim=-1)

    def decompress(self, h):
        torch, r, d = self.torch, self.r, self.d
        if self.t == 0:                                            # Eq. 5: pad the r̂ outputs with zeros (or cut)
            if d <= r:
                return h[..., :d]
            return torch.nn.functional.pad(h, (0, d - r))
        if self.t in (1, 3):                                       # Eq. 7 by tiling
            times = -(-d // r)
            return torch.cat([h] * times, dim=-1)[..., :d]
        if self.t in (2, 4):                                       # Eq. 7 by contiguous runs
            long_len, short_len = d // r + 1, d // r
            n_long = d - r * short_len
            if n_long > 0:
                return torch.cat([torch.repeat_interleave(h[..., :n_long], long_len, dim=-1),
                                  torch.repeat_interleave(h[..., n_long:], short_len, dim=-1)], dim=-1)
            return torch.repeat_interleave(h, short_len, dim=-1)
        flat = h.reshape(*h.shape[:-2], self.blocks * r)            # Eq. 8-10: the blocks concatenated, tiled to d
        if flat.shape[-1] >= d:
            return flat[..., :d]
        times = -(-d // flat.shape[-1])
        return torch.cat([flat] * times, dim=-1)[..., :d]

    def forward(self, x, m):
        return self.decompress(torch_linear(self.torch, self.compress(x), m))


def torch_linear(torch, x, w):
    return torch.nn.functional.linear(x, w)


def rel(torch, a, b):
    a64, b64 = a.detach().double(), b.detach().double()
    scale = a64.abs().max().item()
    return (a64 - b64).abs().max().item() / max(scale, 1e-30), scale


def load_npy(torch, path):
    import numpy as np
    return torch.from_numpy(np.ascontiguousarray(np.load(path)))


def check(args):
    torch = import_torch()
    try:
        import numpy  # noqa: F401
    except Exception as e:
        print(f"skipped: numpy not installed ({sys.executable}: {e})")
        sys.exit(SKIP)
    rows, worst = [], 0.0
    folders = sorted(f for f in os.listdir(args.check) if os.path.isfile(os.path.join(args.check, f, "meta.json")))
    if not folders:
        print(f"error: {args.check}: no layer dumps (folders with meta.json); run `evidence layer-dump --out {args.check}`")
        return 2
    ok = True
    for name in folders:
        folder = os.path.join(args.check, name)
        meta = json.load(open(os.path.join(folder, "meta.json")))
        d, k = meta["d"], meta["k"]
        tol = 1e-10 if meta["dtype"] == "float64" else 1e-5
        load = lambda n: load_npy(torch, os.path.join(folder, n + ".npy"))
        x = load("x").requires_grad_(True)
        gy = load("grad_y")
        if meta["method"] == "lora":
            a = load("lora_a").requires_grad_(True)
            b = load("lora_b").requires_grad_(True)
            s = meta["scaling"]
            fwd = lambda inp: torch.nn.functional.linear(torch.nn.functional.linear(inp, a), b) * s
            weights = [("lora_a", a), ("lora_b", b)]
        else:
            m = load("m").requires_grad_(True)
            op = Mora(torch, d, k, meta["r_hat"], meta["mora_type"], "cpu", x.dtype)
            fwd = lambda inp: op.forward(inp, m)
            weights = [("m", m)]
        y = fwd(x)
        grads = torch.autograd.grad([y], [x] + [w for _, w in weights], [gy])
        eye = torch.eye(k, dtype=x.dtype)
        delta_w = fwd(eye).detach().t()                              # ΔW as the Jacobian of the forward
        results = {"y": rel(torch, load("y"), y), "delta_w": rel(torch, load("delta_w"), delta_w), "grad_x": rel(torch, load("grad_x"), grads[0])}
        for (wname, _), g in zip(weights, grads[1:]):
            results["grad_" + wname] = rel(torch, load("grad_" + wname), g)
        passed = all(r <= tol and scale > 0 for r, scale in results.values())
        ok &= passed
        worst = max([worst] + [r for r, _ in results.values()])
        rows.append({"dump": name, "method": meta["method"], "design": meta.get("design", ""), "formulation": meta.get("formulation") or "",
                     "d": d, "k": k, "r_hat": meta.get("r_hat", ""), "dtype": meta["dtype"], "tolerance": tol,
                     **{f"rel_{key}": f"{r:.3g}" for key, (r, _) in results.items()}, "verdict": "match" if passed else "MISMATCH"})
    fields = ["dump", "method", "design", "formulation", "d", "k", "r_hat", "dtype", "tolerance", "rel_y", "rel_delta_w", "rel_grad_x",
              "rel_grad_m", "rel_grad_lora_a", "rel_grad_lora_b", "verdict"]
    out = args.out or os.path.join(args.check, "check.csv")
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(f"{r['dump']:42s} y {r['rel_y']:>9s}  ΔW {r['rel_delta_w']:>9s}  grad x {r['rel_grad_x']:>9s}  {r['verdict']}")
    print(f"{len(rows)} dumps, worst relative difference {worst:.3g} (tolerance 1e-5 float32): {'all match' if ok else 'MISMATCH'}; written {out}")
    return 0 if ok else 1


def launches_of(events):
    """Kernel launches by the kit's rule: ATen operators outside NO_KERNEL with no such operator inside them."""
    def candidate(e):
        return e.name.startswith("aten::") and e.name not in NO_KERNEL

    def covered(e):
        return any(candidate(c) or covered(c) for c in e.cpu_children)

    return sum(1 for e in events if candidate(e) and not covered(e))


def bench(args):
    torch = import_torch()
    presets = json.load(open(args.presets))["bench"][args.preset]
    shapes = [tuple(s) for s in (args.shapes or presets["shapes"])]
    tokens_list = args.tokens or presets["tokens"]
    ranks = args.ranks or presets["ranks"]
    repeats = args.repeats or presets["repeats"]
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        print("skipped: no CUDA device visible to torch")
        sys.exit(SKIP)
    card = torch.cuda.get_device_name(device) if cuda else "cpu"
    rows = []
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        for d, k in shapes:
            for tokens in tokens_list:
                rows += bench_case(torch, d, k, tokens, ranks, repeats, device, dtype, dtype_name, card, args.seed)
                write_rows(args.out, rows)
    print(f"written {args.out} ({len(rows)} rows)")
    return 0


def bench_case(torch, d, k, tokens, ranks, repeats, device, dtype, dtype_name, card, seed):
    torch.manual_seed(seed)
    w = torch.randn(d, k, device=device, dtype=dtype) / math.sqrt(k)
    x = torch.randn(tokens, k, device=device, dtype=dtype, requires_grad=True)
    gy = torch.randn(tokens, d, device=device, dtype=dtype)
    cases = [("base", 0, 0, [], lambda inp: torch.nn.functional.linear(inp, w))]
    for r in sorted(set(ranks)):
        if r > min(d, k):
            continue
        a = (torch.randn(r, k, device=device, dtype=dtype) * 0.02).requires_grad_(True)
        b = (torch.randn(d, r, device=device, dtype=dtype) * 0.02).requires_grad_(True)
        s = 2.0                                                       # α = 2r, as the kit's bench
        cases.append(("lora", r, 0, [a, b], lambda inp, a=a, b=b, s=s: torch.nn.functional.linear(inp, w)
                      + torch.nn.functional.linear(torch.nn.functional.linear(inp, a), b) * s))
        for t, name in DESIGNS.items():
            rh = r_hat_of(d, k, r, t)
            if rh <= 0 or rh > max(d, k):
                continue
            try:
                op = Mora(torch, d, k, rh, t, device, dtype)
            except ValueError:
                continue
            m = (torch.randn(rh, rh, device=device, dtype=dtype) * 0.02).requires_grad_(True)
            cases.append((f"mora-{name}", r, rh, [m], lambda inp, op=op, m=m: torch.nn.functional.linear(inp, w) + op.forward(inp, m)))

    def step(fwd, params):
        y = fwd(x)
        torch.autograd.grad([y], [x] + params, [gy])

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _, _, _, params, fwd in cases:                                # warm-up
        step(fwd, params)
    sync()
    times = {i: [] for i in range(len(cases))}
    order = list(range(len(cases)))
    rng = random.Random(seed)
    for _ in range(repeats):
        rng.shuffle(order)
        for i in order:
            _, _, _, params, fwd = cases[i]
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                step(fwd, params)
                end.record()
                end.synchronize()
                times[i].append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                step(fwd, params)
                times[i].append(1000 * (time.perf_counter() - t0))
    rows = []
    for i, (method, r, rh, params, fwd) in enumerate(cases):
        launches, kernels = count_kernels(torch, device, lambda: step(fwd, params))
        ts = sorted(times[i])
        rows.append({"device": device.type, "card": card, "dtype": dtype_name, "d": d, "k": k, "tokens": tokens, "method": method,
                     "r": r or "", "r_hat": rh or "", "median_ms": f"{statistics.median(ts):.5g}", "p25_ms": f"{quantile(ts, 0.25):.5g}",
                     "p75_ms": f"{quantile(ts, 0.75):.5g}", "repeats": len(ts), "launches": launches, "cuda_kernels": kernels})
    print(f"  eager {dtype_name} {d}x{k}, {tokens} tokens: {len(cases)} methods x {repeats}")
    return rows


def count_kernels(torch, device, work):
    """(launches by the kit's rule, CUDA kernels seen by the profiler or '' on the CPU) of one call of work."""
    try:
        if device.type == "cuda":
            from torch.profiler import profile, ProfilerActivity
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                work()
                torch.cuda.synchronize()
            events = prof.events()
            kernels = sum(1 for e in events if str(getattr(e, "device_type", "")).endswith("CUDA"))
            return launches_of([e for e in events if not str(getattr(e, "device_type", "")).endswith("CUDA")]), kernels
        with torch.autograd.profiler.profile() as prof:
            work()
        return launches_of(prof.function_events), ""
    except Exception as e:                                            # a profiler that does not work here: no counts
        print(f"  (kernel count unavailable: {e})")
        return "", ""


def quantile(sorted_values, q):
    pos = q * (len(sorted_values) - 1)
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def write_rows(path, rows):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", metavar="DUMP_DIR", help="compare with the kit's layer dumps (evidence layer-dump)")
    p.add_argument("--bench", action="store_true", help="time forward + backward at the kit's bench sizes")
    p.add_argument("--presets", help="the kit's presets JSON (evidence presets)")
    p.add_argument("--preset", default="full", help="bench preset whose shapes, tokens, ranks and repeats to use")
    p.add_argument("--shapes", type=lambda s: tuple(int(v) for v in s.lower().split("x")), nargs="*", help="override: d x k")
    p.add_argument("--tokens", type=int, nargs="*", help="override: tokens")
    p.add_argument("--ranks", type=int, nargs="*", help="override: LoRA ranks")
    p.add_argument("--repeats", type=int, help="override: timed repetitions")
    p.add_argument("--dtypes", nargs="*", default=["float32"], help="float32, bfloat16, float16")
    p.add_argument("--device", default="cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output CSV")
    args = p.parse_args()
    if args.check:
        return check(args)
    if args.bench:
        if not args.presets or not args.out:
            p.error("--bench needs --presets and --out")
        return bench(args)
    p.error("give --check DUMP_DIR or --bench")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Joins the kit's and the peers' CSVs into one table of kit/peer ratios per shape, dtype and preset, with the issue's
performance targets checked: ratios.csv (one row per comparison) and ratios.md. Standard library only.

  python3 ratios.py --kit-layer bfloat16=DIR/layer.csv --kit-layer float32=DIR/layer.csv --eager eager.csv \
      --kit-launches launches.csv --formulation rotate-input --kit-train train-step.csv --hf-train hf-train.csv \
      --card "NVIDIA H200" --out DIR

Layer rows: the kit's bench (`bench`, layer.csv: forward + backward of one adapted layer) against PyTorch eager
(mora_eager.py --bench) at the same d, k, tokens, method, r and dtype; kernel launches beside (the kit's from
`evidence launches`, the rotation design's under --formulation; eager's by the same rule, and the CUDA kernels its
profiler saw). Training rows: `evidence train-step` against hf_peft_step.py at the same model preset, method, dtype and
batch, with each side's model FLOP utilisation (flops.py). Targets (issue 24): every MoRA design at or below the eager
time; bfloat16 4096x4096 at 2048 tokens, rotation r = 8 <= 1.10x LoRA and sharing r = 256 <= 1.05x LoRA; the training
step <= 1.0x HF + PEFT at every preset in bfloat16.
"""
import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flops  # noqa: E402


def read(path):
    if not path or not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt(v, digits=3):
    return "" if v is None else f"{v:.{digits}f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kit-layer", action="append", default=[], metavar="DTYPE=layer.csv")
    p.add_argument("--eager", default=None)
    p.add_argument("--kit-launches", default=None)
    p.add_argument("--formulation", default="rotate-input", help="the rotation formulation whose launches the layer rows show")
    p.add_argument("--kit-train", default=None)
    p.add_argument("--hf-train", default=None)
    p.add_argument("--card", default="")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    eager = read(args.eager)
    launches = read(args.kit_launches)
    rows = []

    def kit_launch(d, k, method, r):
        for l in launches:
            if (l["d"], l["k"], l["method"], l["r"]) == (d, k, method, r or "0") and (l["formulation"] in ("", args.formulation)):
                return l["total"]
        return ""

    for spec in args.kit_layer:
        if "=" not in spec:
            p.error(f"--kit-layer: expected DTYPE=layer.csv, got '{spec}'")
        dtype, path = spec.split("=", 1)
        kit = read(path)
        lora = {(r["d"], r["k"], r["tokens"], r["r"]): num(r["median_ms"]) for r in kit if r["method"] == "lora"}
        for r in kit:
            if r["method"] == "dora":
                continue
            rr = "" if r["r"] in ("", "0") else r["r"]
            peer = next((e for e in eager if e["dtype"] == dtype and (e["d"], e["k"], e["tokens"], e["method"], e["r"]) == (r["d"], r["k"], r["tokens"], r["method"], rr)), None)
            kit_ms, peer_ms = num(r["median_ms"]), num(peer["median_ms"]) if peer else None
            ratio = kit_ms / peer_ms if kit_ms and peer_ms else None
            x_lora = kit_ms / lora[(r["d"], r["k"], r["tokens"], r["r"])] if r["method"].startswith("mora") and lora.get((r["d"], r["k"], r["tokens"], r["r"])) else None
            target, verdict = "", ""
            if r["method"].startswith("mora") and ratio is not None:
                target, verdict = "<= 1.00x eager", "met" if ratio <= 1.0 else "missed"
            if dtype == "bfloat16" and (r["d"], r["k"], r["tokens"]) == ("4096", "4096", "2048") and x_lora is not None:
                limit = {("mora-rotation", "8"): 1.10, ("mora-sharing", "256"): 1.05}.get((r["method"], r["r"]))
                if limit:
                    target += f"; <= {limit:.2f}x LoRA"
                    verdict += f"; {'met' if x_lora <= limit else 'missed'} ({x_lora:.3f}x LoRA)"
            rows.append({"kind": "layer", "shape": f"{r['d']}x{r['k']}", "tokens": r["tokens"], "dtype": dtype, "method": r["method"], "r": rr,
                         "r_hat": "" if r.get("r_hat") in (None, "0") else r["r_hat"], "preset": "", "kit_ms": fmt(kit_ms, 4), "peer": "pytorch eager" if peer else "",
                         "peer_ms": fmt(peer_ms, 4), "kit_over_peer": fmt(ratio), "kit_x_lora": fmt(x_lora),
                         "kit_launches": kit_launch(r["d"], r["k"], r["method"], rr) if r["method"] != "base" else kit_launch(r["d"], r["k"], "base", ""),
                         "peer_launches": peer["launches"] if peer else "", "peer_cuda_kernels": peer.get("cuda_kernels", "") if peer else "",
                         "kit_mfu": "", "peer_mfu": "", "target": target, "verdict": verdict})

    hf = read(args.hf_train)
    for r in read(args.kit_train):
        peer = next((h for h in hf if (h["model"], h["method"], h["d_type"], h["batch"]) == (r["model"], r["method"], r["d_type"], r["batch"])), None)
        lora_peer = peer or next((h for h in hf if (h["model"], h["method"], h["d_type"], h["batch"]) == (r["model"], "lora", r["d_type"], r["batch"])), None)
        kit_ms = num(r["step_ms"])
        full = r["method"] == "full"
        kit_fpt = None
        if r["method"] in ("lora", "full"):
            trainable_matmul = 0 if full else int(r["trainable_parameters"])
            kit_fpt = flops.train_flops_per_token(int(r["matmul_parameters"]), trainable_matmul, int(r["layers"]), int(r["hidden"]), int(r["sequence_length"]), full)
        kit_mfu = flops.mfu(num(r["tokens_per_second"]), kit_fpt, args.card) if kit_fpt else None
        peer_ms = num(lora_peer["step_ms"]) if lora_peer else None
        ratio = kit_ms / peer_ms if kit_ms and peer_ms else None
        target, verdict = "", ""
        if r["d_type"] == "bfloat16" and peer is not None and ratio is not None:
            target, verdict = "<= 1.00x HF + PEFT", "met" if ratio <= 1.0 else "missed"
        rows.append({"kind": "train", "shape": "", "tokens": int(r["batch"]) * int(r["sequence_length"]), "dtype": r["d_type"], "method": r["method"],
                     "r": r["r"] if r["r"] != "0" else "", "r_hat": "", "preset": r["model"], "kit_ms": fmt(kit_ms, 3),
                     "peer": (lora_peer["library"] + ("" if peer else " (LoRA: no MoRA in PEFT)")) if lora_peer else "", "peer_ms": fmt(peer_ms, 3),
                     "kit_over_peer": fmt(ratio), "kit_x_lora": "", "kit_launches": "", "peer_launches": "", "peer_cuda_kernels": "",
                     "kit_mfu": fmt(kit_mfu, 4), "peer_mfu": lora_peer.get("mfu_bf16_peak", "") if peer else "", "target": target, "verdict": verdict})

    os.makedirs(args.out, exist_ok=True)
    fields = ["kind", "shape", "tokens", "dtype", "method", "r", "r_hat", "preset", "kit_ms", "peer", "peer_ms", "kit_over_peer", "kit_x_lora",
              "kit_launches", "peer_launches", "peer_cuda_kernels", "kit_mfu", "peer_mfu", "target", "verdict"]
    with open(os.path.join(args.out, "ratios.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(args.out, "ratios.md"), "w") as f:
        f.write("# The kit against its peers\n\n")
        f.write(f"Card: {args.card or 'unknown'} (bfloat16 peak {flops.peak_bf16_tflops(args.card) or 'unknown'} TFLOP/s). "
                f"Kit launches: `evidence launches`, the rotation design as {args.formulation}. `× peer` = kit time / peer time (below 1: the kit is faster).\n\n")
        layer = [r for r in rows if r["kind"] == "layer"]
        if layer:
            f.write("## One adapted layer, forward + backward: kit vs PyTorch eager (reference algorithm)\n\n")
            f.write("| shape | tokens | dtype | method | r | r̂ | kit ms | eager ms | × eager | kit × LoRA | kit launches | eager launches | eager CUDA kernels | target | verdict |\n")
            f.write("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
            for r in layer:
                f.write(f"| {r['shape']} | {r['tokens']} | {r['dtype']} | {r['method']} | {r['r']} | {r['r_hat']} | {r['kit_ms']} | {r['peer_ms']} | {r['kit_over_peer']} | "
                        f"{r['kit_x_lora']} | {r['kit_launches']} | {r['peer_launches']} | {r['peer_cuda_kernels']} | {r['target']} | {r['verdict']} |\n")
            f.write("\n")
        train = [r for r in rows if r["kind"] == "train"]
        if train:
            f.write("## A whole training step: kit vs HF transformers + PEFT\n\n")
            f.write("| preset | dtype | method | tokens a step | kit ms | peer | peer ms | × peer | kit MFU | peer MFU | target | verdict |\n")
            f.write("|---|---|---|---:|---:|---|---:|---:|---:|---:|---|---|\n")
            for r in train:
                f.write(f"| {r['preset']} | {r['dtype']} | {r['method']} | {r['tokens']} | {r['kit_ms']} | {r['peer']} | {r['peer_ms']} | {r['kit_over_peer']} | "
                        f"{r['kit_mfu']} | {r['peer_mfu']} | {r['target']} | {r['verdict']} |\n")
            f.write("\n")
        met = sum(1 for r in rows if "met" in r["verdict"].split(";")[0])
        missed = sum(1 for r in rows if "missed" in r["verdict"])
        f.write(f"Targets: {met} comparisons met their first target, {missed} rows missed one (see `verdict`). Rows without a peer had no peer measurement in this run.\n")
    print(f"written {os.path.join(args.out, 'ratios.csv')} and ratios.md ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

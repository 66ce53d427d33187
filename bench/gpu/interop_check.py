#!/usr/bin/env python3
"""The newest transformers and PEFT read the kit's files, and write files the kit reads back.

  python3 interop_check.py --dir DIR [--device cuda] [--fixtures tests/data/interop] [--out DIR/interop.md]

DIR is what `evidence interop-export --out DIR` wrote: base/ (config.json, model.safetensors), kit_lora/, kit_dora/,
kit_mora_sharing/, kit_mora_rotation/ (adapter_config.json, adapter_model.safetensors), input_ids.npy and each one's
logits.npy (the kit's, float32, CPU). This script
  1. loads base/ with LlamaForCausalLM.from_pretrained and each LoRA/DoRA adapter with PeftModel.from_pretrained, and
     compares the logits with the kit's: float32 on the CPU, and on CUDA float32 and bfloat16;
  2. for the MoRA adapters, which mainline PEFT does not implement, records what PEFT does with the file (refuses, or
     loads something else: the logits then differ), and computes the reference's MoRA forward itself (mora_eager.Mora,
     the algorithm of peft-mora's _apply_mora, M read from lora_A.weight, mora_type from adapter_config.json) on the
     from_pretrained base, against the kit's logits;
  3. writes PEFT adapters of its own (get_peft_model, random non-zero A and B: init_lora_weights=False; a DoRA one too)
     into DIR/peft_lora/ and DIR/peft_dora/ with their float32 CPU logits, for `evidence interop-check --dir DIR`;
  4. runs the interop fixtures the test suite reads (tests/data/interop, written by transformers 4.40 and PEFT 0.10)
     through the installed versions: their logits against the fixtures' reference.json.
Tolerances: float32, max |Δlogit| <= 1e-4 (the fixtures' rule); bfloat16, <= 3e-2 x max |logit|.
Writes interop.md and interop.json; exit 0 when every comparison that should match matches, 1 otherwise; 77 (last line
"skipped: ...") when torch, transformers, peft or numpy cannot be imported.
"""
import argparse
import copy
import json
import os
import sys
import traceback

SKIP = 77
FLOAT32_TOL, BF16_REL = 1e-4, 3e-2
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def imports():
    mods = {}
    for name in ("torch", "numpy", "transformers", "peft"):
        try:
            mods[name] = __import__(name)
        except Exception as e:
            print(f"skipped: {name} not installed ({sys.executable}: {e})")
            sys.exit(SKIP)
    return mods["torch"], mods["numpy"], mods["transformers"], mods["peft"]


def load_base(transformers, torch, path, dtype, device):
    try:
        m = transformers.LlamaForCausalLM.from_pretrained(path, dtype=dtype)            # transformers 5: dtype=
    except TypeError:
        m = transformers.LlamaForCausalLM.from_pretrained(path, torch_dtype=dtype)      # 4.x: torch_dtype=
    return m.to(device).eval()


def logits_of(torch, model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float().cpu()


def compare(torch, got, want, dtype):
    diff = (got - want).abs().max().item()
    tol = FLOAT32_TOL if dtype == torch.float32 else BF16_REL * want.abs().max().item()
    return diff, tol, diff <= tol


class MoraWrapped:
    """Replaces a Linear's forward with W x + f_decomp(M f_comp(x)) (the reference's MoRA, scaling 1)."""

    def __init__(self, torch, linear, m, mora_type):
        import mora_eager
        d, k = linear.weight.shape
        self.op = mora_eager.Mora(torch, d, k, m.shape[0], mora_type, linear.weight.device, linear.weight.dtype)
        self.linear, self.m = linear, m.to(linear.weight.device, linear.weight.dtype)
        self.original = linear.forward
        linear.forward = self.forward

    def forward(self, x):
        return self.original(x) + self.op.forward(x, self.m)


def mora_model(torch, transformers, safetensors_load, base_path, adapter_path, dtype, device):
    model = load_base(transformers, torch, base_path, dtype, device)
    config = json.load(open(os.path.join(adapter_path, "adapter_config.json")))
    if not config.get("use_mora"):
        raise ValueError(f"{adapter_path}: use_mora is not true")
    tensors = safetensors_load(os.path.join(adapter_path, "adapter_model.safetensors"))
    modules = dict(model.named_modules())
    n = 0
    for key, m in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        path = key[len("base_model.model."):-len(".lora_A.weight")]
        if path not in modules:
            raise ValueError(f"{adapter_path}: {key} names no module of the base ({path})")
        MoraWrapped(torch, modules[path], m, int(config["mora_type"]))
        n += 1
    if n == 0:
        raise ValueError(f"{adapter_path}: no lora_A.weight tensors")
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--fixtures", default=None, help="tests/data/interop of the repository (the suite's fixtures)")
    p.add_argument("--out", default=None, help="markdown report (default DIR/interop.md; interop.json beside it)")
    args = p.parse_args()
    if not os.path.isfile(os.path.join(args.dir, "manifest.json")):
        print(f"error: --dir {args.dir}: no manifest.json (run `evidence interop-export --out {args.dir}` first)")
        return 2
    torch, np, transformers, peft = imports()
    from safetensors.torch import load_file as safetensors_load
    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    runs = [("cpu", torch.float32)] + ([(args.device, torch.float32), (args.device, torch.bfloat16)] if cuda else [])
    ids_cpu = torch.from_numpy(np.load(os.path.join(args.dir, "input_ids.npy"))).long()
    base_path = os.path.join(args.dir, "base")
    rows = []

    def record(item, direction, device, dtype, diff=None, tol=None, verdict="", expect="match", note=""):
        rows.append({"item": item, "direction": direction, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
                     "max_abs_diff": diff, "tolerance": tol, "verdict": verdict, "expect": expect, "note": note})

    def attempt(item, direction, device, dtype, build, want, expect="match"):
        try:
            model = build()
            got = logits_of(torch, model, ids_cpu.to(device))
            diff, tol, ok = compare(torch, got, want, dtype)
            record(item, direction, device, dtype, diff, tol, "match" if ok else "MISMATCH", expect)
        except Exception as e:
            record(item, direction, device, dtype, verdict="refused", expect=expect, note=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")

    kit_logits = lambda name: torch.from_numpy(np.load(os.path.join(args.dir, name, "logits.npy")))
    # 1. the kit's base and LoRA / DoRA adapters through from_pretrained / PeftModel.from_pretrained
    for device, dtype in runs:
        attempt("kit base", "kit → transformers", device, dtype, lambda: load_base(transformers, torch, base_path, dtype, device), kit_logits("base"))
        for name in ("kit_lora", "kit_dora"):
            attempt(name, "kit → PEFT", device, dtype,
                    lambda name=name: peft.PeftModel.from_pretrained(load_base(transformers, torch, base_path, dtype, device), os.path.join(args.dir, name)).eval(),
                    kit_logits(name))
        # 2. MoRA: the reference algorithm on the from_pretrained base; and what mainline PEFT makes of the file
        for name in ("kit_mora_sharing", "kit_mora_rotation"):
            attempt(name, "kit → reference MoRA forward", device, dtype,
                    lambda name=name: mora_model(torch, transformers, safetensors_load, base_path, os.path.join(args.dir, name), dtype, device), kit_logits(name))
            if dtype == torch.float32 and device == "cpu":
                attempt(name, "kit → mainline PEFT (no MoRA)", device, dtype,
                        lambda name=name: peft.PeftModel.from_pretrained(load_base(transformers, torch, base_path, dtype, device), os.path.join(args.dir, name)).eval(),
                        kit_logits(name), expect="refuse or differ")

    # 3. PEFT's own adapters for the kit to read back
    for name, use_dora in (("peft_lora", False), ("peft_dora", True)):
        try:
            base = load_base(transformers, torch, base_path, torch.float32, "cpu")
            torch.manual_seed(3 if use_dora else 2)
            cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0,
                                  init_lora_weights=False, use_dora=use_dora, task_type="CAUSAL_LM")
            model = peft.get_peft_model(base, cfg).eval()
            out = os.path.join(args.dir, name)
            model.save_pretrained(out)
            np.save(os.path.join(out, "logits.npy"), logits_of(torch, model, ids_cpu).numpy().astype(np.float32))
            record(name, "PEFT wrote (the kit reads it: kit-check.md)", "cpu", torch.float32, verdict="written")
        except Exception as e:
            record(name, "PEFT wrote", "cpu", torch.float32, verdict="failed", note=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")

    # 4. the suite's fixtures (transformers 4.40 / PEFT 0.10) through the installed versions
    if args.fixtures and os.path.isdir(args.fixtures):
        for device, dtype in runs:
            for sub in ("h_mha_untied", "h_gqa_tied"):
                ref_path = os.path.join(args.fixtures, "models", sub, "reference.json")
                if not os.path.isfile(ref_path):
                    continue
                ref = json.load(open(ref_path))
                ids = torch.tensor(ref["input_ids"]).long()
                want = torch.tensor(ref["logits"]).float()
                try:
                    model = load_base(transformers, torch, os.path.join(args.fixtures, "models", sub), dtype, device)
                    got = logits_of(torch, model, ids.to(device))
                    diff, tol, ok = compare(torch, got, want, dtype)
                    record(f"fixture models/{sub}", "transformers 4.40 file → installed transformers", device, dtype, diff, tol, "match" if ok else "MISMATCH")
                except Exception as e:
                    record(f"fixture models/{sub}", "transformers 4.40 file → installed transformers", device, dtype, verdict="refused", note=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
            peft_root = os.path.join(args.fixtures, "adapters", "peft")
            for sub in sorted(os.listdir(peft_root)) if os.path.isdir(peft_root) else []:
                ref = json.load(open(os.path.join(peft_root, sub, "reference.json")))
                ids = torch.tensor(ref["input_ids"]).long()
                want = torch.tensor(ref["logits"]).float()
                try:
                    base = load_base(transformers, torch, os.path.join(args.fixtures, "models", ref["base"].split("/")[-1]), dtype, device)
                    model = peft.PeftModel.from_pretrained(base, os.path.join(peft_root, sub)).eval()
                    got = logits_of(torch, model, ids.to(device))
                    diff, tol, ok = compare(torch, got, want, dtype)
                    record(f"fixture adapters/peft/{sub}", "PEFT 0.10 file → installed PEFT", device, dtype, diff, tol, "match" if ok else "MISMATCH")
                except Exception as e:
                    record(f"fixture adapters/peft/{sub}", "PEFT 0.10 file → installed PEFT", device, dtype, verdict="refused", note=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")

    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "numpy": np.__version__,
                "cuda": torch.version.cuda, "card": torch.cuda.get_device_name(0) if cuda else None}
    failed = [r for r in rows if r["expect"] == "match" and r["verdict"] not in ("match",) and r["direction"] != "PEFT wrote (the kit reads it: kit-check.md)"]
    failed += [r for r in rows if r["verdict"] == "failed"]
    out = args.out or os.path.join(args.dir, "interop.md")
    with open(out, "w") as f:
        f.write("# Interop with the installed transformers and PEFT\n\n")
        f.write(f"Versions: {json.dumps(versions)}. Tolerances: float32 max |Δlogit| ≤ {FLOAT32_TOL:g}; bfloat16 ≤ {BF16_REL:g} × max |logit|.\n\n")
        f.write("| item | direction | device | dtype | max abs diff | tolerance | verdict | expected | note |\n|---|---|---|---|---:|---:|---|---|---|\n")
        for r in rows:
            fmt = lambda v: "" if v is None else f"{v:.3g}"
            f.write(f"| {r['item']} | {r['direction']} | {r['device']} | {r['dtype']} | {fmt(r['max_abs_diff'])} | {fmt(r['tolerance'])} | {r['verdict']} | {r['expect']} | {r['note'].replace('|', '/')} |\n")
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump({"versions": versions, "rows": rows}, f, indent=1)
    print(open(out).read())
    print(f"written {out}; {len(failed)} comparison(s) that should match did not")
    return 0 if not failed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        sys.exit(1)

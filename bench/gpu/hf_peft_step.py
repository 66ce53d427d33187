#!/usr/bin/env python3
"""A whole training step of Hugging Face transformers' LlamaForCausalLM with PEFT LoRA (or full fine-tuning): the peer of
the kit's training step (`evidence train-step`, the bench's step) at the kit's model presets.

Everything that sets the work of a step comes from the kit's presets JSON (`evidence presets --out FILE`): the model's
config.json fields (LlamaConfig from them as from_pretrained would read them), the batch's sequence length and prompt
length (loss on the answer only, labels -100 on the prompt), AdamW's rate, betas, eps and weight decay, gradient
clipping, LoRA's r, alpha and targets (all linear layers but the head), and the untimed steps. Per step: zero_grad, the
forward with labels (transformers' loss, logits upcast to float32), backward, clip_grad_norm_, AdamW step, loss.item()
(the kit's step reads its loss too). PEFT creates LoRA's weights in the base's dtype (autocast_adapter_dtype=False), as
the kit does.

  python3 hf_peft_step.py --presets FILE --models tiny small --methods lora full --dtype bfloat16 --batch 32 --steps 20 \
      --device cuda --out hf-train.csv
Writes one CSV row per (model, method): median ms per step, tokens/s, parameters, and the model FLOP utilisation
against the card's bfloat16 peak (flops.py). Exit code 77 (last line "skipped: ...") when torch, transformers or peft
cannot be imported.
"""
import argparse
import csv
import os
import statistics
import sys
import time

SKIP = 77
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flops  # noqa: E402


def imports():
    try:
        import torch
    except Exception as e:
        print(f"skipped: torch not installed ({sys.executable}: {e})")
        sys.exit(SKIP)
    try:
        import transformers
    except Exception as e:
        print(f"skipped: transformers not installed ({sys.executable}: {e})")
        sys.exit(SKIP)
    try:
        import peft
    except Exception as e:
        print(f"skipped: peft not installed ({sys.executable}: {e})")
        sys.exit(SKIP)
    return torch, transformers, peft


def build(torch, transformers, peft, model_json, train, method, device, dtype):
    fields = {k: v for k, v in model_json.items() if k not in ("architectures", "torch_dtype", "model_type")}
    config = transformers.LlamaConfig(**fields)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(device=device, dtype=dtype)
    if method == "lora":
        lora = train["lora"]
        cfg = peft.LoraConfig(r=lora["r"], lora_alpha=lora["lora_alpha"], lora_dropout=lora["lora_dropout"],
                              target_modules=lora["target_modules"], bias="none", task_type="CAUSAL_LM")
        try:
            model = peft.get_peft_model(model, cfg, autocast_adapter_dtype=False)
        except TypeError:                                          # PEFT before 0.12 has no autocast_adapter_dtype
            model = peft.get_peft_model(model, cfg)
    elif method != "full":
        raise SystemExit(f"error: --methods: unknown method '{method}' (lora or full)")
    return model


def matmul_params(torch, model):
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def run(torch, transformers, peft, presets, name, method, args, card):
    train = presets["train"]
    model_json = presets["models"][name]
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    model = build(torch, transformers, peft, model_json, train, method, device, dtype)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=train["learning_rate"], betas=tuple(train["betas"]), eps=train["eps"], weight_decay=train["weight_decay"])
    seq, prompt = train["sequence_length"], train["prompt_length"]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, train["vocab_size"], (args.batch, seq), generator=g).to(device)
    labels = ids.clone()
    labels[:, :prompt] = -100                                      # the kit's mask: loss on the value and EOS only
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for step in range(args.steps):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        if train["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, train["max_grad_norm"])
        opt.step()
        loss = out.loss.item()
        sync()
        if step >= train["untimed_steps"]:
            times.append(1000 * (time.perf_counter() - t0))
        if loss != loss:
            raise SystemExit(f"error: {name} {method}: the loss became NaN at step {step + 1}")
    median = statistics.median(times)
    tps = args.batch * seq / (median / 1000)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in params)
    n_matmul = matmul_params(torch, model)
    trainable_matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m.weight.requires_grad)
    fpt = flops.train_flops_per_token(n_matmul, trainable_matmul, model_json["num_hidden_layers"], model_json["hidden_size"], seq, method == "full")
    u = flops.mfu(tps, fpt, card)
    row = {"library": f"transformers {transformers.__version__} + peft {peft.__version__}" if method == "lora" else f"transformers {transformers.__version__}",
           "model": name, "method": method, "r": train["lora"]["r"] if method == "lora" else 0, "d_type": args.dtype, "device": device.type, "card": card,
           "batch": args.batch, "sequence_length": seq, "steps": args.steps, "step_ms": f"{median:.5g}",
           "p25_ms": f"{statistics.quantiles(times, n=4)[0]:.5g}" if len(times) > 1 else f"{median:.5g}",
           "p75_ms": f"{statistics.quantiles(times, n=4)[2]:.5g}" if len(times) > 1 else f"{median:.5g}",
           "tokens_per_second": f"{tps:.6g}", "trainable_parameters": trainable, "total_parameters": total, "matmul_parameters": n_matmul,
           "flops_per_token": f"{fpt:.6g}", "mfu_bf16_peak": "" if u is None else f"{u:.4f}", "torch": torch.__version__}
    del model, opt
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", required=True, help="the kit's presets JSON (evidence presets --out FILE)")
    p.add_argument("--models", nargs="+", default=["small"])
    p.add_argument("--methods", nargs="+", default=["lora", "full"])
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    import json
    presets = json.load(open(args.presets))
    for name in args.models:
        if name not in presets["models"]:
            p.error(f"--models: '{name}' is not a preset in {args.presets} ({', '.join(presets['models'])})")
    if args.steps <= presets["train"]["untimed_steps"]:
        p.error(f"--steps must be more than the {presets['train']['untimed_steps']} untimed steps")
    torch, transformers, peft = imports()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: no CUDA device visible to torch")
        return SKIP
    card = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "cpu"
    rows = []
    for name in args.models:
        for method in args.methods:
            rows.append(run(torch, transformers, peft, presets, name, method, args, card))
            r = rows[-1]
            print(f"  hf {name} {method} {args.dtype} batch {args.batch}: {r['step_ms']} ms/step, {r['tokens_per_second']} tokens/s, MFU {r['mfu_bf16_peak'] or 'n/a'}")
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out + ".tmp", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
                w.writeheader()
                w.writerows(rows)
            os.replace(args.out + ".tmp", args.out)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

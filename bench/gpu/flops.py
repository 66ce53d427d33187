"""Model FLOPs of a training step and the cards' bfloat16 peaks: the one place bench/gpu's scripts take them from.

FLOPs per token of one training step (multiply-adds counted as 2; Kaplan et al. 2020, PaLM appendix B, Chowdhery et al.
2022):
  full fine-tuning   6·N + 12·L·h·T       N = parameters of the matmul weights (attention, MLP, head), L layers,
                                          h hidden size, T sequence length (attention's QKᵀ and AV, forward + backward)
  adapters (LoRA)    4·N_frozen + 6·N_adapter + 12·L·h·T
                                          the frozen weights need the forward and the input gradient only (2 + 2), the
                                          adapter's weights their weight gradient too (2 + 2 + 2)
MoRA's f_comp / f_decomp are not matmuls, and its M acts on r̂ or n·r̂ slots a token, so its FLOPs are not a
parameter count: MFU is reported for LoRA and full fine-tuning only.
"""

# Dense (no sparsity) bfloat16 tensor-core peaks in TFLOP/s, from the vendors' data sheets. Matched by substring of the
# name torch.cuda.get_device_name() / nvidia-smi gives, first match wins (so "H100 PCIe" comes before "H100").
PEAK_BF16_TFLOPS = [
    ("H200", 989.0),            # NVIDIA H200 SXM (H100 SXM's tensor cores)
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),            # H100 SXM
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),        # with FP32 accumulation: 82.6
    ("RTX 6000 Ada", 364.0),
    ("A6000", 155.0),
]


def peak_bf16_tflops(card_name):
    """The card's dense bfloat16 peak, or None when the card is not in the table."""
    for key, peak in PEAK_BF16_TFLOPS:
        if key.lower() in (card_name or "").lower():
            return peak
    return None


def train_flops_per_token(matmul_params, trainable_matmul_params, layers, hidden, seq_len, full):
    """FLOPs of one training step per token (see the module docstring)."""
    attention = 12.0 * layers * hidden * seq_len
    if full:
        return 6.0 * matmul_params + attention
    frozen = matmul_params - trainable_matmul_params
    return 4.0 * frozen + 6.0 * trainable_matmul_params + attention


def mfu(tokens_per_second, flops_per_token, card_name):
    """Model FLOP utilisation against the card's bfloat16 peak (None when the peak is unknown)."""
    peak = peak_bf16_tflops(card_name)
    if peak is None or not tokens_per_second:
        return None
    return tokens_per_second * flops_per_token / (peak * 1e12)

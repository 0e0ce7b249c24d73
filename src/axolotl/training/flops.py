"""Training FLOPs per token and accelerator peaks: the arithmetic behind MFU.

MFU (model FLOPs utilisation) = model FLOPs per second achieved / the device's dense bf16 peak.
Model FLOPs of training on a batch of documents:

* matrix products, `6 x N` per token (forward 2N, backward 4N), N = the parameters a token
  multiplies with: every projection of every layer and the output head; the input-embedding
  lookup is no product. Counted from the config (`ModelShape`), so frozen and quantized weights
  count the same and a mixture of experts counts its active experts only;
* attention scores and their weighted sum (QK^T and AV), `2 x 2 x heads x head_dim` per query
  and attended key in the forward, x3 with the backward. A causal document of L tokens has
  L(L+1)/2 (query, key) pairs, so the count uses the real document lengths of packed rows, not
  the padded row width.

Adapter runs are counted like full fine-tuning (as the benchmark tables in `benchmarks/` do, so
figures compare across methods); they skip the weight gradients of the frozen base, about 2N
of the 6N per token. Sliding windows are not modelled (every earlier key of the document counts).
Only tokens that are not padding count: padding costs time but is no useful work.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    # Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s. The first
    # pattern that matches `torch.cuda.get_device_name()` wins, so variants come before the family.
    (r"\bGH200\b", 989.0),
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH100\b.*\bNVL\b", 835.0),
    (r"\bH100\b", 989.0),  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    (r"\bH800\b", 989.0),
    (r"\bH200\b.*\bNVL\b", 835.0),
    (r"\bH200\b", 989.0),
    (r"\bB200\b", 2250.0),
    (r"\bA100\b", 312.0),
    (r"\bA800\b", 312.0),
    (r"\bL40S\b", 362.0),
    (r"\bL40\b", 181.0),
    (r"\bL4\b", 121.0),
    (r"\bA10\b", 125.0),
    (r"\bRTX 4090\b", 165.2),  # GeForce cards: the rate with fp32 accumulation, which torch uses
    (r"\bRTX 3090\b", 71.0),
)
"""Device-name pattern -> dense bf16 peak (TFLOP/s). Unknown devices get no MFU rather than a guess."""


def peak_bf16_flops(device_name: str | None = None) -> float | None:
    """Dense bf16 peak in FLOP/s of `device_name`, or of the current CUDA device when not given.

    None on CPU, on other accelerators and on devices missing from `PEAK_BF16_TFLOPS`."""
    if device_name is None:
        import torch

        if not torch.cuda.is_available():
            return None
        device_name = torch.cuda.get_device_name(torch.cuda.current_device())
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return tflops * 1e12
    return None


@dataclass(frozen=True)
class ModelShape:
    """What the FLOPs count needs of a decoder-only transformer."""

    hidden_size: int
    intermediate_size: int
    """Per token, over the experts it is routed to (and any shared expert) in a mixture of experts."""
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int

    @classmethod
    def from_config(cls, config: Any) -> ModelShape | None:
        """The shape of a transformers config (its text part for multimodal models), or None when
        the config lacks a field the count needs."""
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        try:
            hidden, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
            vocab, intermediate = config.vocab_size, config.intermediate_size
        except AttributeError:
            return None
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        experts = getattr(config, "num_experts_per_tok", None)
        if experts:
            expert_size = getattr(config, "moe_intermediate_size", None) or intermediate
            intermediate = experts * expert_size + (getattr(config, "shared_expert_intermediate_size", None) or 0)
        return cls(hidden_size=hidden, intermediate_size=intermediate, num_layers=layers, num_heads=heads,
                   num_kv_heads=kv_heads, head_dim=head_dim, vocab_size=vocab)

    @property
    def matmul_params(self) -> int:
        """N: weights one token multiplies with (q, k, v, o, a gated MLP per layer, and the head)."""
        h, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        per_layer = 2 * h * q + 2 * h * kv + 3 * h * self.intermediate_size
        return per_layer * self.num_layers + h * self.vocab_size

    @property
    def attention_flops_per_pair(self) -> int:
        """Forward + backward FLOPs of one (query, key) pair over all layers: 3 x (2 + 2) x heads x head_dim."""
        return 12 * self.num_layers * self.num_heads * self.head_dim


def causal_pairs(lengths: Iterable[int]) -> int:
    """(query, key) pairs causal attention scores over documents of these lengths: sum L(L+1)/2."""
    return sum(length * (length + 1) // 2 for length in lengths)


def training_flops(shape: ModelShape, tokens: float, pairs: float) -> float:
    """Model FLOPs of training on `tokens` tokens whose documents hold `pairs` attention pairs."""
    return 6 * shape.matmul_params * tokens + shape.attention_flops_per_pair * pairs


def training_flops_per_token(shape: ModelShape, lengths: Iterable[int]) -> float:
    """Mean model FLOPs per trained token for documents of these lengths."""
    lengths = list(lengths)
    return training_flops(shape, sum(lengths), causal_pairs(lengths)) / sum(lengths)

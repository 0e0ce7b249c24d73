"""The causal-LM loss from hidden states: the chunked cross-entropy (`chunked_cross_entropy:
true`) or a plugin's (Cut Cross Entropy).

Same arithmetic as transformers' causal-LM loss (labels shifted left by one, -100 ignored, fp32
logits, summed and divided by `num_items_in_batch` when the Trainer counts the supervised tokens
of the whole accumulation window), but the decoder's hidden states go straight into the loss
(`chunked_linear_cross_entropy`, or a plugin's) with the output projection's weight, so the
full-vocabulary logits of a row never exist. Models whose logits are not a plain projection of
the hidden states (soft-capped or scaled logits, an adapted or biased head) are refused up front.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import torch

from axolotl.integrations.base import LinearCrossEntropy
from axolotl.kernels.chunked_ce import DEFAULT_NUM_CHUNKS, IGNORE_INDEX, chunked_linear_cross_entropy

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig

LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")
"""Model-config attributes that change logits after the projection; a loss from hidden states would drop them."""


def _inner_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (its decoder and head are what we call)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def fused_loss(cfg: AxolotlConfig) -> tuple[str, LinearCrossEntropy] | None:
    """(what to name in errors, the loss) when the loss comes from hidden states: our chunked
    cross-entropy or a plugin's (Cut Cross Entropy); None keeps the model's own loss. Config
    validation already refuses two of them together."""
    if cfg.chunked_cross_entropy:
        num_chunks = cfg.chunked_cross_entropy_num_chunks or DEFAULT_NUM_CHUNKS
        compiled = bool(cfg.torch_compile)

        def chunked(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return chunked_linear_cross_entropy(hidden, weight, labels, num_chunks=num_chunks,
                                                compiled=compiled and hidden.is_cuda)

        return "`chunked_cross_entropy: true`", chunked
    from axolotl.integrations.loading import plugin_loss

    found = plugin_loss(cfg)
    return (f"the plugin `{found[0]}`", found[1]) if found is not None else None


def check_fused_loss_support(what: str, model: Any, world_size: int) -> None:
    """Refuse, naming the key or plugin, where a loss from hidden states would compute something else."""
    inner = _inner_model(model)
    head = inner.get_output_embeddings()
    problems = []
    if world_size > 1:
        problems.append("it runs on one process only so far (the decoder is called outside the DDP/FSDP wrapper)")
    if type(head) is not torch.nn.Linear or head.bias is not None:
        problems.append(f"the output head is a {type(head).__name__} (adapted, wrapped or biased); it must be a plain "
                        "bias-free Linear: leave lm_head out of lora_target_modules / lora_modules_to_save")
    for name in LOGIT_TRANSFORMS:
        value = getattr(inner.config, name, None) or getattr(inner.config.get_text_config(), name, None)
        if value not in (None, 1, 1.0):
            problems.append(f"the model config sets {name}={value}, which a loss from hidden states does not apply")
    if problems:
        raise ValueError(f"{what} cannot be used here: " + "; ".join(problems) + ".")


def causal_lm_loss_from_hidden(model: Any, inputs: dict[str, Any], num_items_in_batch: Any,
                               linear_ce: LinearCrossEntropy,
                               decoder_context: AbstractContextManager[Any] | None = None) -> torch.Tensor:
    """Mean loss per supervised token of the optimizer step, as the model's own loss would give.

    `decoder_context` is the trainer's mixed-precision autocast: calling the decoder directly
    skips the autocast wrapper accelerate puts on the top-level `forward`, and without it fp32
    parameters (LoRA adapters, fp16 runs' master weights) would compute in fp32. The loss itself
    stays outside it: it chooses its own dtypes (fp32 log-softmax).
    """
    inner = _inner_model(model)
    labels = inputs["labels"]
    model_inputs = {key: value for key, value in inputs.items() if key != "labels"}
    with decoder_context if decoder_context is not None else nullcontext():
        hidden = inner.get_decoder()(**model_inputs, use_cache=False).last_hidden_state
    shifted = torch.full_like(labels, IGNORE_INDEX)
    shifted[:, :-1] = labels[:, 1:]
    weight = inner.get_output_embeddings().weight
    total = linear_ce(hidden.reshape(-1, hidden.shape[-1]), weight, shifted.reshape(-1))
    if num_items_in_batch is None:
        return total / (shifted != IGNORE_INDEX).sum().clamp(min=1)
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch

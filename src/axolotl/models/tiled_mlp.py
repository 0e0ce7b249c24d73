"""`tiled_mlp: true`: each decoder layer's MLP runs over slices of the sequence
(`axolotl.kernels.tiled_mlp`), bounding its activation memory for long rows.

`tiled_mlp_num_shards` fixes the number of slices; unset, it is ceil(sequence / hidden_size) per
call. Applied after the adapter (and the LoRA kernels), so it wraps the MLP's final forward, and
before compiling. Only architectures whose MLP is a dense, position-wise `layer.mlp` returning a
tensor are listed (`TILED_MLP_ARCHITECTURES`): mixture-of-experts blocks route tokens and return
router logits, which slicing would change.
"""

from __future__ import annotations

import logging
from types import MethodType
from typing import TYPE_CHECKING, Any, Final

from axolotl.kernels.tiled_mlp import default_num_shards, tiled_forward
from axolotl.models.compile import repeated_blocks

if TYPE_CHECKING:
    import torch
    from torch import nn

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)
TILED_MLP_ARCHITECTURES: Final = frozenset({
    "llama", "mistral", "ministral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2",
    "granite", "smollm3",
})
"""Model types whose decoder layers hold a dense position-wise MLP at `.mlp`."""


def _tiled_mlp_forward(self: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Bound to the MLP (bound, so a deep copy of the model calls its own copy)."""
    inner = self._axolotl_untiled_forward
    if args or kwargs:
        return inner(x, *args, **kwargs)
    shards = self._axolotl_tiled_shards or default_num_shards(x.shape[-2], x.shape[-1])
    return tiled_forward(inner, x, shards)


def apply_tiled_mlp(model: nn.Module, cfg: AxolotlConfig) -> int:
    """Tile the MLP of every decoder layer; returns how many."""
    if not cfg.tiled_mlp:
        return 0
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    model_type = base.config.model_type
    if model_type not in TILED_MLP_ARCHITECTURES:
        raise ValueError(f"`tiled_mlp: true` supports the architectures {', '.join(sorted(TILED_MLP_ARCHITECTURES))}, "
                         f"not `{model_type}`; set tiled_mlp: false")
    layers = repeated_blocks(base)
    for layer in layers:
        mlp = layer.mlp
        if getattr(mlp, "_axolotl_untiled_forward", None) is not None:
            continue
        mlp._axolotl_untiled_forward = mlp.forward  # the class's forward, or the LoRA kernel's
        mlp._axolotl_tiled_shards = cfg.tiled_mlp_num_shards
        mlp.forward = MethodType(_tiled_mlp_forward, mlp)
    LOG.info("tiled MLP in %d layers (%s shards)", len(layers), cfg.tiled_mlp_num_shards or "ceil(seq/hidden)")
    return len(layers)

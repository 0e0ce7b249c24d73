"""`torch_compile: true`: compile each decoder layer (regional compilation).

Why per layer rather than the whole model: the layers are identical, so one compiled graph is
reused by all of them (compile time does not grow with depth); the mask building and the loss,
which change with every packed batch (document boundaries), stay outside the graph, so packing
does not cause recompiles; and the compiled module keeps its parameter names, so checkpoints and
saved models are unchanged. The layers are the modules of the classes the model declares in
`_no_split_modules` (transformers' "do not split this block" list, i.e. its repeated block).
`torch_compile_regional` is therefore always in effect.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)


def repeated_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder layers: modules whose class the (inner) model lists in `_no_split_modules`."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return [module for module in model.modules() if type(module).__name__ in names]


def compile_kwargs(cfg: AxolotlConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if cfg.torch_compile_backend:
        kwargs["backend"] = cfg.torch_compile_backend
    if cfg.torch_compile_mode:
        kwargs["mode"] = cfg.torch_compile_mode
    if cfg.torch_compile_options:
        if cfg.torch_compile_mode:
            raise ValueError("torch.compile takes either `torch_compile_mode` or `torch_compile_options`, not both; "
                             "remove one of them")
        kwargs["options"] = dict(cfg.torch_compile_options)
    return kwargs


def compile_layers(model: torch.nn.Module, cfg: AxolotlConfig) -> int:
    """Compile the decoder layers in place; returns how many. Call after adapters are applied, so
    the adapter layers are inside the compiled graphs."""
    if not cfg.torch_compile:
        return 0
    blocks = repeated_blocks(model)
    if not blocks:
        raise ValueError(f"`torch_compile: true`: {type(model).__name__} declares no repeated decoder block "
                         "(`_no_split_modules`), so there is nothing to compile per layer; set torch_compile: false")
    kwargs = compile_kwargs(cfg)
    for block in blocks:
        block.compile(**kwargs)
    LOG.info("compiled %d %s layers (%s)", len(blocks), type(blocks[0]).__name__, kwargs or "default options")
    return len(blocks)

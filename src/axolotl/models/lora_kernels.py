"""`lora_mlp_kernel`, `lora_qkv_kernel`, `lora_o_kernel`: run a PEFT LoRA model's MLP and
attention projections through the fused autograd functions of `axolotl.kernels.lora`.

Applied by `apply_adapter` right after the adapter is built, to the decoder layers of the
architectures in `LORA_KERNEL_ARCHITECTURES` (where each module lives and which activation the
MLP uses). The MLP's forward is replaced as a whole (one fused node); q, k, v and o are replaced
one projection at a time, because transformers' attention code calls them separately and
rewriting each architecture's attention is what we do not do.

Config validation (`axolotl.config.rules`) already refuses what the kernels cannot compute:
LoRA dropout, DoRA, quantised bases, QAT and the RL methods. What only the built model shows
(an adapter loaded from `lora_model_dir` with dropout or a bias, a base layer that is not a
plain Linear) is refused here. A replaced forward falls back to PEFT's own whenever the adapter
is disabled (`with model.disable_adapter()`), merged, or more than one adapter is active, so
those states keep PEFT's behaviour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import MethodType
from typing import TYPE_CHECKING, Any, Final

from torch import nn

from axolotl.kernels.lora import LoraProjection, lora_linear, lora_mlp
from axolotl.models.compile import repeated_blocks

if TYPE_CHECKING:
    import torch

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)
KERNEL_KEYS: Final = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel")


@dataclass(frozen=True)
class LoraKernelLayout:
    """Where the fused modules are inside one decoder layer."""

    mlp: str = "mlp"
    gate: str = "gate_proj"
    up: str = "up_proj"
    down: str = "down_proj"
    attention: str = "self_attn"
    qkv: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")
    o: str = "o_proj"
    activations: frozenset[str] = frozenset({"silu", "swish"})
    """`hidden_act` values the fused MLP computes (SiLU-gated)."""


LLAMA_LIKE: Final = LoraKernelLayout()
LORA_KERNEL_ARCHITECTURES: Final[dict[str, LoraKernelLayout]] = {
    "llama": LLAMA_LIKE, "mistral": LLAMA_LIKE, "qwen2": LLAMA_LIKE, "qwen3": LLAMA_LIKE,
}
"""Model type -> layout. Qwen2's biased q/k/v and Qwen3's q/k norms (applied after the
projections) need nothing special: biases are part of the fused projection."""


class LoraKernelError(ValueError):
    """The model cannot run through the LoRA kernels (named key, and why)."""


def _single_adapter(module: nn.Module) -> str | None:
    """The one active adapter if the module is in the plain state the kernels compute, else None."""
    if module.disable_adapters or module.merged:
        return None
    active = [name for name in module.active_adapters if name in module.lora_A]
    return active[0] if len(active) == 1 else None


def _check_layer(module: nn.Module, key: str, name: str) -> None:
    """What only the built adapter shows: refused once, at apply time."""
    from peft.tuners.lora import LoraLayer

    if not isinstance(module, LoraLayer):
        if type(module) is nn.Linear and not module.weight.requires_grad:
            return
        raise LoraKernelError(f"`{key}`: {name} is a {type(module).__name__}, not a LoRA-adapted or frozen plain "
                              "Linear; set the key to false")
    base = module.get_base_layer()
    if type(base) is not nn.Linear:
        raise LoraKernelError(f"`{key}`: the base layer of {name} is a {type(base).__name__} (quantised or replaced); "
                              "the kernels need plain Linear weights: set the key to false")
    if base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad):
        raise LoraKernelError(f"`{key}`: the base weights of {name} are trainable; the kernels only train the "
                              "adapter: set the key to false or freeze the layer")
    for adapter in module.lora_A:
        if not isinstance(module.lora_dropout[adapter], nn.Identity):
            raise LoraKernelError(f"`{key}`: adapter `{adapter}` of {name} uses dropout; the kernels have none "
                                  "(train it with `lora_dropout: 0`) or set the key to false")
        if adapter in getattr(module, "lora_variant", {}) or module.use_dora.get(adapter, False):
            raise LoraKernelError(f"`{key}`: adapter `{adapter}` of {name} is a DoRA/variant adapter; set the key "
                                  "to false")
        if getattr(module, "lora_bias", {}).get(adapter, False):
            raise LoraKernelError(f"`{key}`: adapter `{adapter}` of {name} has a bias; set the key to false")
        if getattr(module, "fan_in_fan_out", False):
            raise LoraKernelError(f"`{key}`: {name} stores its weight transposed (fan_in_fan_out); set the key "
                                  "to false")


def _projection(module: nn.Module) -> LoraProjection | None:
    """The module's weights for the kernels, or None when PEFT's own forward must run."""
    if type(module) is nn.Linear:
        return LoraProjection(module.weight, module.bias, None, None, 0.0)
    adapter = _single_adapter(module)
    if adapter is None:
        return None
    base = module.get_base_layer()
    return LoraProjection(base.weight, base.bias, module.lora_A[adapter].weight, module.lora_B[adapter].weight,
                          float(module.scaling[adapter]))


def _fused_projection_forward(self: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Bound to a LoRA layer as its forward (bound, so a deep copy of the model calls its own copy)."""
    projection = None if args or kwargs else _projection(self)
    if projection is None:
        return type(self).forward(self, x, *args, **kwargs)
    return lora_linear(x, projection)


def _fused_mlp_forward(self: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    layout: LoraKernelLayout = self._axolotl_lora_layout
    projections = [_projection(getattr(self, name)) for name in (layout.gate, layout.up, layout.down)]
    if args or kwargs or any(p is None for p in projections):
        return type(self).forward(self, x, *args, **kwargs)
    return lora_mlp(x, *projections)  # type: ignore[arg-type]


def requested(cfg: AxolotlConfig) -> list[str]:
    return [key for key in KERNEL_KEYS if getattr(cfg, key, None)]


def apply_lora_kernels(cfg: AxolotlConfig, model: nn.Module) -> int:
    """Fuse the projections the config asks for in every decoder layer; returns how many modules
    now run fused. `model` is the PEFT model (its LoRA layers already built)."""
    keys = requested(cfg)
    if not keys:
        return 0
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config()
    model_type = base.config.model_type
    layout = LORA_KERNEL_ARCHITECTURES.get(model_type)
    if layout is None:
        raise LoraKernelError(f"`{keys[0]}`: the LoRA kernels support the architectures "
                              f"{', '.join(sorted(LORA_KERNEL_ARCHITECTURES))}, not `{model_type}`; set "
                              f"{', '.join(f'`{k}`' for k in keys)} to false")
    if "lora_mlp_kernel" in keys and getattr(config, "hidden_act", None) not in layout.activations:
        raise LoraKernelError(f"`lora_mlp_kernel`: the fused MLP computes a SiLU-gated MLP, but this model's "
                              f"hidden_act is {getattr(config, 'hidden_act', None)!r}; set the key to false")
    layers = repeated_blocks(base)
    targets: list[tuple[str, nn.Module, str]] = []  # (key, module, kind)
    for layer in layers:
        attention, mlp = getattr(layer, layout.attention), getattr(layer, layout.mlp)
        if "lora_mlp_kernel" in keys:
            targets.append(("lora_mlp_kernel", mlp, "mlp"))
        if "lora_qkv_kernel" in keys:
            targets += [("lora_qkv_kernel", getattr(attention, name), "proj") for name in layout.qkv]
        if "lora_o_kernel" in keys:
            targets.append(("lora_o_kernel", getattr(attention, layout.o), "proj"))
    names = {id(module): name for name, module in base.named_modules()}
    for key, module, kind in targets:
        parts = [getattr(module, n) for n in (layout.gate, layout.up, layout.down)] if kind == "mlp" else [module]
        for part in parts:
            _check_layer(part, key, names.get(id(part), type(part).__name__))
    fused = 0
    for key, module, kind in targets:
        if kind == "mlp":
            module._axolotl_lora_layout = layout
            module.forward = MethodType(_fused_mlp_forward, module)
        elif type(module) is not nn.Linear:  # a projection without an adapter keeps its plain forward
            module.forward = MethodType(_fused_projection_forward, module)
        else:
            continue
        fused += 1
    LOG.info("LoRA kernels (%s) on %d modules of %d layers", ", ".join(keys), fused, len(layers))
    return fused

"""`plugins: [axolotl.integrations.liger.LigerPlugin]`: LinkedIn's Liger Triton kernels.

Through liger-kernel's public per-architecture functions (`apply_liger_kernel_to_llama(rope=...,
rms_norm=..., swiglu=..., model=...)`, found by model type in its `MODEL_TYPE_TO_APPLY_LIGER_FN`),
applied to the loaded model before the adapter. Every kernel switch of the function is passed
explicitly, false unless its key is true: liger's own defaults turn most kernels on, and a kernel
must never be switched on by a key the user did not write.

Keys -> liger switches (`LIGER_SWITCHES`); which architecture offers which (`LIGER_ARCHITECTURES`,
taken from liger-kernel 0.8.5 and checked against the installed version when the model is
patched). The kernels are Triton GPU kernels: without a CUDA device the run is refused rather
than trained without them. Liger's fused linear cross-entropy computes the loss inside the
patched forward (no logits in training) and reads `num_items_in_batch`, so the loss is the same
mean over the accumulation window as without it.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Final

from axolotl.config.errors import ConfigIssue
from axolotl.config.schema.integrations import LigerArgs
from axolotl.integrations.base import Plugin, PluginError
from axolotl.integrations.requirements import require_cuda, require_packages

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)
NAME: Final = "axolotl.integrations.liger.LigerPlugin"

LIGER_SWITCHES: Final[dict[str, str]] = {
    "liger_rope": "rope",
    "liger_rms_norm": "rms_norm",
    "liger_glu_activation": "glu",
    "liger_swiglu": "glu",
    "liger_layer_norm": "layer_norm",
    "liger_cross_entropy": "cross_entropy",
    "liger_fused_linear_cross_entropy": "fused_linear_cross_entropy",
}
"""Config key -> kernel. `glu` is liger's `swiglu` or `geglu` switch, whichever the architecture
has (`liger_swiglu` is the reference's older name of `liger_glu_activation`)."""

NOT_SUPPORTED_YET: Final[dict[str, str]] = {
    "liger_rms_norm_gated": "the gated RMSNorm kernel",
    "liger_use_token_scaling": "token-scaled fused cross-entropy",
    "liger_kernel_impl": "the cuTile / CuTe DSL kernel implementations (they need liger-kernel's extra packages)",
}

_TEXT: Final = frozenset({"rope", "rms_norm", "glu", "cross_entropy", "fused_linear_cross_entropy"})
_TEXT_LN: Final = _TEXT | {"layer_norm"}
LIGER_ARCHITECTURES: Final[dict[str, frozenset[str]]] = {
    **dict.fromkeys(("llama", "mistral", "ministral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "qwen3_next",
                     "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text", "qwen2_5_vl",
                     "qwen2_5_vl_text", "qwen3_vl", "qwen3_vl_text", "qwen3_vl_moe", "qwen3_vl_moe_text",
                     "gemma", "gemma2", "gemma3_text", "gemma4_text", "granite", "olmo2", "olmo3", "phi3",
                     "smollm3", "glm4", "glm4v", "glm4v_moe", "gpt_oss", "deepseek_v2", "deepseek_v3",
                     "deepseek_v4", "falcon_h1", "hunyuan_v1_dense", "hunyuan_v1_moe", "exaone4"), _TEXT),
    **dict.fromkeys(("gemma3", "gemma4", "paligemma", "llama4", "llama4_text", "mllama", "mllama_text_model",
                     "muse_glimmer", "qwen2_vl", "qwen2_vl_text"), _TEXT_LN),
    **dict.fromkeys(("internvl", "smolvlm"),
                    frozenset({"rms_norm", "layer_norm", "cross_entropy", "fused_linear_cross_entropy"})),
    **dict.fromkeys(("llava", "nemotron"), frozenset({"cross_entropy", "fused_linear_cross_entropy"})),
    "pixtral": frozenset({"rope", "rms_norm", "glu"}),
}
"""Model type -> the kernels liger-kernel 0.8.5 offers for it (from its apply functions' switches)."""


def requested_kernels(cfg: AxolotlConfig) -> dict[str, str]:
    """Kernel -> the config key that asked for it, for every liger key set to true."""
    wanted: dict[str, str] = {}
    for key, kernel in LIGER_SWITCHES.items():
        if getattr(cfg, key, None):
            wanted.setdefault(kernel, key)
    return wanted


def _issue(key: str, message: str, hint: str, related: tuple[str, ...] = (), severity: str = "error") -> ConfigIssue:
    return ConfigIssue((key,), message, hint=hint, related=tuple((r,) for r in related), severity=severity)


class LigerPlugin(Plugin):
    """Liger kernels for RoPE, RMSNorm, LayerNorm, SwiGLU/GeGLU and the (fused linear) cross-entropy."""

    args = LigerArgs

    def check_config(self, cfg: AxolotlConfig) -> list[ConfigIssue]:
        issues = [_issue(key, f"`{key}` is not supported yet ({what})", "remove the key or set it to false/null")
                  for key, what in NOT_SUPPORTED_YET.items() if getattr(cfg, key, None)]
        wanted = requested_kernels(cfg)
        if not wanted:
            issues.append(_issue("plugins", f"`{NAME}` is listed but no Liger kernel is switched on, so it changes "
                                 "nothing", "set e.g. `liger_rms_norm: true`, or remove the plugin",
                                 severity="warning"))
        flce = wanted.get("fused_linear_cross_entropy")
        loss_key = flce or wanted.get("cross_entropy")
        if loss_key and cfg.chunked_cross_entropy:
            issues.append(_issue(loss_key, "cannot be combined with `chunked_cross_entropy`: both replace the loss",
                                 "keep one of them", ("chunked_cross_entropy",)))
        if flce and wanted.get("cross_entropy"):
            issues.append(_issue(flce, "cannot be combined with `liger_cross_entropy`: the fused loss already "
                                 "computes the cross-entropy", "keep one of them", ("liger_cross_entropy",)))
        if flce and _targets_head(cfg):
            issues.append(_issue(flce, "cannot train a LoRA adapter on the output head: liger's fused loss reads "
                                 "the head's base weight and would skip the adapter", "remove lm_head from "
                                 "`lora_target_modules` or turn the fused loss off", ("lora_target_modules",)))
        glu = wanted.get("glu")
        if glu and cfg.lora_mlp_kernel:
            issues.append(_issue(glu, "cannot be combined with `lora_mlp_kernel`: both replace the MLP's forward",
                                 "keep one of them", ("lora_mlp_kernel",)))
        return issues

    def preflight(self, cfg: AxolotlConfig) -> None:
        if not requested_kernels(cfg):
            return
        require_packages(NAME, {"liger_kernel": "liger", "triton": "liger"})
        require_cuda(NAME, "Liger's kernels are Triton GPU kernels")

    def post_model_load(self, cfg: AxolotlConfig, model: PreTrainedModel) -> None:
        wanted = requested_kernels(cfg)
        if not wanted:
            return
        model_type = model.config.model_type
        offered = LIGER_ARCHITECTURES.get(model_type)
        if offered is None:
            raise PluginError(f"`{NAME}`: Liger has no kernels for the architecture `{model_type}`; supported: "
                              f"{', '.join(sorted(LIGER_ARCHITECTURES))}. Remove the plugin for this model")
        kwargs = self._switches(model, model_type, wanted)
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

        apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model_type)
        if apply is None:
            raise PluginError(f"`{NAME}`: the installed liger-kernel has no kernels for `{model_type}`; install "
                              "liger-kernel 0.8.5 or newer")
        parameters = inspect.signature(apply).parameters
        kwargs = {_liger_name(kernel, parameters): on for kernel, on in kwargs.items()}
        missing = [name for name, on in kwargs.items() if on and name not in parameters]
        if missing:
            raise PluginError(f"`{NAME}`: the installed liger-kernel's `{apply.__name__}` has no switch "
                              f"{', '.join(missing)}; install liger-kernel 0.8.5 or newer")
        # every switch explicit: liger's defaults are mostly true
        kwargs = {name: kwargs.get(name, False) for name, param in parameters.items()
                  if name != "model" and isinstance(param.default, bool)}
        LOG.info("Liger kernels for %s: %s", model_type, ", ".join(k for k, on in kwargs.items() if on))
        apply(model=model, **kwargs)

    @staticmethod
    def _switches(model: PreTrainedModel, model_type: str, wanted: dict[str, str]) -> dict[str, bool]:
        """Kernel -> on/off for this architecture; a kernel it lacks is an error, except a LayerNorm
        kernel on a model without LayerNorm layers (the reference's Liger block sets
        `liger_layer_norm: true` for Llama too): that is a no-op and only logged."""
        offered = LIGER_ARCHITECTURES[model_type]
        switches = dict.fromkeys(offered, False)
        for kernel, key in wanted.items():
            if kernel in offered:
                switches[kernel] = True
            elif kernel == "layer_norm" and not _has_layer_norm(model):
                LOG.warning("`%s: true` does nothing for %s: the model has no LayerNorm layers", key, model_type)
            else:
                raise PluginError(f"`{key}`: Liger has no {kernel} kernel for `{model_type}` (it offers "
                                  f"{', '.join(sorted(offered))}); set `{key}: false`")
        return switches


def _liger_name(kernel: str, parameters: Any) -> str:
    if kernel != "glu":
        return kernel
    return "geglu" if "geglu" in parameters else "swiglu"


def _has_layer_norm(model: PreTrainedModel) -> bool:
    import torch

    return any(isinstance(module, torch.nn.LayerNorm) for module in model.modules())


def _targets_head(cfg: AxolotlConfig) -> bool:
    targets = cfg.lora_target_modules
    names = [targets] if isinstance(targets, str) else list(targets or [])
    return bool(cfg.adapter) and any("lm_head" in name for name in names)

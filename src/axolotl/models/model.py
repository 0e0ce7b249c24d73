"""The model a run trains: `load_model(cfg, tokenizer)`.

Order matters and is fixed here: refuse what is not implemented (before spending minutes
loading weights), resolve dtypes, build and override the model config, load (or randomly
initialise) the weights, make the embeddings agree with the tokenizer, then set up gradient
checkpointing and freezing. Adapters (LoRA) are applied later, on the returned model.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any

import torch

from axolotl.models.precision import Precision, bnb_config, package_available, resolve_precision
from axolotl.models.tokens import fix_untrained_tokens

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)
DEFAULT_AUTO_CLASS = "AutoModelForCausalLM"
METHOD_HEADS: dict[str, tuple[str, int]] = {
    "reward_model": ("AutoModelForSequenceClassification", 1),
    "process_reward_model": ("AutoModelForTokenClassification", 2),
}
"""Method switch -> (auto class, num_labels) used where `model_type` / `num_labels` are unset."""


def _unsupported(cfg: AxolotlConfig) -> list[str]:
    """Loader-related keys the config turns on that this loader does not implement."""
    checks: dict[str, tuple[bool, str]] = {
        "gradient_checkpointing": (cfg.gradient_checkpointing == "offload_disk",
                                   "offloading activations to disk; `gradient_checkpointing: offload` keeps them "
                                   "in CPU RAM"),
        "activation_offloading": (cfg.activation_offloading in ("disk", "hidden_states"),
                                  f"`{cfg.activation_offloading}` offloading; `activation_offloading: true` (or "
                                  f"`legacy`) keeps activations in CPU RAM"),
        "gptq": (bool(cfg.gptq), "training on GPTQ checkpoints"),
        "nf4_backend": (cfg.nf4_backend != "bitsandbytes", "the torchao NF4 backend; use bitsandbytes"),
        "model_quantization_config": (cfg.model_quantization_config is not None, "MXFP4/FP8 checkpoint loading"),
        "cls_model_config": (cfg.cls_model_config is not None, "custom model config classes"),
        "fp32_norm_classes": (bool(cfg.fp32_norm_classes), "fp32 norm layers"),
        "device": (cfg.device is not None, "the trainer places the model on its own device; use `device_map` "
                                            "(e.g. `{'': 'cpu'}`) or CUDA_VISIBLE_DEVICES"),
        "use_kernels": (bool(cfg.use_kernels), "hub kernels"),
        "experts_implementation": (cfg.experts_implementation is not None, "custom MoE kernels"),
    }
    return [f"`{key}` is not supported yet ({what})" for key, (on, what) in checks.items() if on]


def load_model(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """Load `cfg.base_model` as the config describes, ready for adapters and the trainer.

    Dtypes follow `axolotl.models.precision.resolve_precision` (bf16 weights under `bf16` as in the
    reference, fp32 master weights under `fp16`, half precision without autocast under
    `bfloat16`/`float16`; `float32` forces fp32).
    """
    refused = _unsupported(cfg)
    if refused:
        raise NotImplementedError("; ".join(refused) + ". Remove these keys or set them to false/null.")
    precision = resolve_precision(cfg)
    _check_attention(cfg.attn_implementation)
    auto_class = _auto_class(cfg.type_of_model or method_head(cfg)[0])
    config = _model_config(cfg)
    common: dict[str, Any] = {"dtype": precision.weights, "attn_implementation": cfg.attn_implementation,
                              "trust_remote_code": bool(cfg.trust_remote_code)}
    if cfg.reinit_weights:
        model = _random_model(auto_class, config, common, cfg.seed)
    else:
        model = auto_class.from_pretrained(cfg.base_model, config=config,
                                           **_from_pretrained_kwargs(cfg, precision, common))
    fit_embeddings(model, tokenizer, cfg)
    if cfg.fix_untrained_tokens is not None:
        fix_untrained_tokens(model, cfg.fix_untrained_tokens)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model, {"use_reentrant": False, **(cfg.gradient_checkpointing_kwargs or {})})
    if _needs_no_cache(cfg):
        model.config.use_cache = False
    if cfg.unfrozen_parameters:
        freeze_except(model, cfg.unfrozen_parameters)
    return model


def enable_checkpointing(model: PreTrainedModel, kwargs: dict[str, Any]) -> None:
    """Checkpoint every decoder layer. transformers 5.23 renamed `gradient_checkpointing_enable`
    to `activation_checkpointing_enable` (the old name warns); use the new one when present.
    Non-reentrant is the default because the reentrant variant needs an input that requires grad
    (it breaks with frozen embeddings under LoRA) and cannot handle unused parameters."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _check_attention(implementation: str | None) -> None:
    """Fail before loading: transformers' own error for a missing flash_attn comes after the
    weights are read and names neither the config key nor the alternatives."""
    if implementation == "flash_attention_2" and not package_available("flash_attn"):
        raise ImportError("`flash_attention: true` (attn_implementation flash_attention_2) needs the flash_attn "
                          "package, which is not installed; install it on a CUDA machine, or use "
                          "`sdp_attention: true` or `flex_attention: true` instead")


def _auto_class(name: str | None) -> Any:
    """The transformers auto class named by `model_type` (default AutoModelForCausalLM)."""
    import transformers

    name = name or DEFAULT_AUTO_CLASS
    cls = getattr(transformers, name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ValueError(f"`model_type: {name}` is not a transformers model class; use e.g. {DEFAULT_AUTO_CLASS}")
    return cls


def method_head(cfg: AxolotlConfig) -> tuple[str | None, int | None]:
    """The head a reward method trains by default: (auto class, num_labels), or (None, None)."""
    for switch, head in METHOD_HEADS.items():
        if getattr(cfg, switch, None):
            return head
    return None, None


def _needs_no_cache(cfg: AxolotlConfig) -> bool:
    """Checkpointing recomputes the forward (a KV cache there is wasted memory and transformers
    warns), and packed batches need cache-less forwards: with a cache, sdpa/eager/flex build one
    causal mask over the whole packed row and documents attend to each other (see collate.py)."""
    return bool(cfg.gradient_checkpointing) or bool(cfg.sample_packing)


def _model_config(cfg: AxolotlConfig) -> PretrainedConfig:
    """The model config with `model_config` overrides, `rope_scaling` and `num_labels` applied
    before the weights load, so the modules are built with the final shapes."""
    from transformers import AutoConfig

    kwargs: dict[str, Any] = {"trust_remote_code": bool(cfg.trust_remote_code)}
    if cfg.revision_of_model:
        kwargs["revision"] = cfg.revision_of_model
    config = AutoConfig.from_pretrained(cfg.base_model_config or cfg.base_model, **kwargs)
    for key, value in (cfg.overrides_of_model_config or {}).items():
        setattr(config, key, value)
    if cfg.rope_scaling:
        _set_rope_scaling(config, dict(cfg.rope_scaling))
    num_labels = cfg.num_labels if cfg.num_labels is not None else method_head(cfg)[1]
    if num_labels is not None:
        config.num_labels = num_labels
    if _needs_no_cache(cfg):
        config.use_cache = False
    return config


def _set_rope_scaling(config: PretrainedConfig, scaling: dict[str, Any]) -> None:
    """Merge `rope_scaling` into the rope parameters. In transformers 5 assigning
    `config.rope_scaling` replaces `rope_parameters` wholesale and drops `rope_theta`, which
    silently changes every position's frequencies; merging keeps the checkpoint's theta."""
    if "type" in scaling and "rope_type" not in scaling:
        scaling["rope_type"] = scaling.pop("type")
    current = getattr(config, "rope_parameters", None)
    if isinstance(current, dict):
        config.rope_parameters = {**current, **scaling}
    else:
        config.rope_scaling = scaling


def _from_pretrained_kwargs(cfg: AxolotlConfig, precision: Precision, common: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `from_pretrained`; `model_kwargs` entries win over derived ones."""
    kwargs = dict(common)
    device_map, max_memory = memory_placement(cfg)
    optional = {"revision": cfg.revision_of_model, "device_map": device_map, "max_memory": max_memory,
                "low_cpu_mem_usage": cfg.low_cpu_mem_usage, "quantization_config": bnb_config(cfg, precision),
                "token": True if cfg.hf_use_auth_token else None}
    kwargs.update({key: value for key, value in optional.items() if value is not None})
    kwargs.update(cfg.overrides_of_model_kwargs or {})
    return kwargs


def memory_placement(cfg: AxolotlConfig) -> tuple[Any, dict[int | str, int | str] | None]:
    """`device_map` and `max_memory` for `from_pretrained`. `gpu_memory_limit` caps every visible GPU
    (an integer means GiB; text such as "20GiB" or "12000MiB" is passed as is), takes CPU and disk
    entries from `max_memory` where set, else what is available (so what does not fit on the GPUs
    stays in CPU RAM), and, since transformers only honours `max_memory` when it places the model,
    implies `device_map: auto` unless a device map is set. The same rule as `axolotl merge-lora`
    (`merge.memory_limits`). Without a GPU there is nothing to cap."""
    if cfg.gpu_memory_limit is None:
        return cfg.device_map, cfg.max_memory
    if not torch.cuda.is_available():
        LOG.warning("`gpu_memory_limit: %s` is ignored: no GPU is visible", cfg.gpu_memory_limit)
        return cfg.device_map, cfg.max_memory
    from accelerate.utils import get_max_memory

    limit = f"{cfg.gpu_memory_limit}GiB" if isinstance(cfg.gpu_memory_limit, int) else cfg.gpu_memory_limit
    merged: dict[int | str, int | str] = {**get_max_memory(), **(cfg.max_memory or {})}
    return cfg.device_map or "auto", {key: limit if isinstance(key, int) else value for key, value in merged.items()}


def _random_model(auto_class: Any, config: PretrainedConfig, common: dict[str, Any],
                  seed: int | None) -> PreTrainedModel:
    """`reinit_weights`: the architecture of the checkpoint with fresh weights, seeded by `seed`
    (42 when unset) under a forked RNG so the same config always gives the same model. On a CUDA
    machine the weights are initialised on the GPU (where training puts them anyway): an 8B model
    takes minutes to initialise on the CPU and seconds on the GPU."""
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
    with torch.random.fork_rng(devices=[device.index] if device is not None else []):
        torch.manual_seed(42 if seed is None else seed)
        if device is None:
            return auto_class.from_config(config, **common)
        with device:
            return auto_class.from_config(config, **common)


def fit_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cfg: AxolotlConfig) -> None:
    """Grow the embeddings when the tokenizer has more tokens than the model (added tokens would
    otherwise index out of range); shrink them only with `shrink_embeddings`, because many
    checkpoints pad the vocabulary on purpose (to a multiple of 64/128 for faster matmuls)."""
    wanted = len(tokenizer)
    if cfg.resize_token_embeddings_to_32x:
        wanted = math.ceil(wanted / 32) * 32
    current = model.get_input_embeddings().num_embeddings
    if wanted > current or (wanted < current and cfg.shrink_embeddings):
        model.resize_token_embeddings(wanted, mean_resizing=bool(cfg.mean_resizing_embeddings))


def freeze_except(model: PreTrainedModel, patterns: list[str]) -> None:
    """Train only parameters whose name matches one of `patterns` (regexes, `re.match` from the
    start of the name, as the reference does). A pattern matching nothing is almost always a
    typo that would silently train less than intended, so it is an error."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"`unfrozen_parameters`: `{pattern}` is not a valid regex ({exc})") from None
    names = [name for name, _ in model.named_parameters()]
    unused = [p.pattern for p in compiled if not any(p.match(name) for name in names)]
    if unused:
        raise ValueError(f"`unfrozen_parameters`: {unused} match no parameter of the model; "
                         f"parameter names look like {names[:3]}")
    for name, param in model.named_parameters():
        param.requires_grad_(any(p.match(name) for p in compiled))

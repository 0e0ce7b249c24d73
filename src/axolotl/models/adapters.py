"""Wrap a loaded base model in a LoRA / QLoRA adapter, as the config describes.

Flow: `apply_adapter(cfg, model)` is called by the model loader after the base model (quantised
or not) is loaded and before the trainer sees it. It either returns the model unchanged (full
fine-tune), loads an existing adapter to keep training (`lora_model_dir`), or builds a fresh
`peft.LoraConfig` with `lora_config(cfg, model)` and wraps the model.

Every config key that would change the adapter is either mapped onto PEFT here or refused with
`NotImplementedError`, so a setting is never accepted and silently ignored.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import torch
from torch import nn

from axolotl.models.lora_kernels import apply_lora_kernels

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedModel

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)

ADAPTERS: Final = frozenset({"lora", "qlora"})

REFUSED_KEYS: Final[dict[str, str]] = {
    "lora_embedding_kernel": "the fused LoRA embedding kernel",
    "lora_fp32_gradients": "fp32 LoRA gradients",
    "lora_on_cpu": "loading the adapter on CPU",
    "qlora_sharded_model_loading": "sharded QLoRA loading for FSDP",
}
"""Keys that change how the adapter is built but have no implementation in this module yet."""

PLAIN_INIT_METHODS: Final = frozenset({"gaussian", "olora", "pissa", "orthogonal", "loftq"})
"""String values of `peft_init_lora_weights` that PEFT can apply from the weights alone; the
others (eva, corda, mica, ...) need calibration data or extra configs that we do not collect."""


def _refuse(key: str, why: str) -> NotImplementedError:
    """One wording for every unimplemented request, so users can grep the message."""
    return NotImplementedError(f"`{key}` is not supported yet ({why}); remove the key or set it to false/null")


def _check_supported(cfg: AxolotlConfig) -> None:
    """Fail before touching the model if the config asks for something this module cannot do."""
    for key, feature in REFUSED_KEYS.items():
        if getattr(cfg, key, None):
            raise _refuse(key, feature)
    init = cfg.peft_init_lora_weights
    if isinstance(init, str) and init not in PLAIN_INIT_METHODS and not re.fullmatch(r"pissa_niter_\d+", init):
        raise _refuse("peft_init_lora_weights", f"initialisation {init!r} needs calibration data; "
                      f"use true, false or one of {sorted(PLAIN_INIT_METHODS)}")


CLASSIFIER_HEADS = ("score", "classifier")
"""Attribute names of transformers' sequence/token-classification heads (PEFT's own list)."""


def _output_head_ids(model: nn.Module) -> set[int]:
    """Identity of the output projection (also when tied to the input embedding), because its
    name differs between architectures (`lm_head`, `embed_out`, `output`, ...), and of the
    classification head of a reward model (`score` / `classifier`, trained in full instead)."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    heads = [head, *(getattr(model, name, None) for name in CLASSIFIER_HEADS)]
    return {id(module) for module in heads if isinstance(module, nn.Module)}


def _linear_types() -> tuple[type[nn.Module], ...]:
    """nn.Linear covers bitsandbytes' 4/8-bit layers (they subclass it); Conv1D is GPT-2's linear."""
    from transformers.pytorch_utils import Conv1D

    return (nn.Linear, Conv1D)


def linear_module_names(model: nn.Module) -> list[str]:
    """Full names of every linear layer except the output head, in model order."""
    head_ids = _output_head_ids(model)
    linear = _linear_types()
    names = [name for name, module in model.named_modules()
             if isinstance(module, linear) and id(module) not in head_ids]
    return names


def _linear_targets(model: nn.Module) -> list[str]:
    """Short suffixes (`q_proj`, ...) when they single out exactly the non-head linears, else the
    full names: PEFT matches a list entry as a name suffix, so a suffix shared with the head
    would silently adapt the head too."""
    full = linear_module_names(model)
    suffixes = sorted({name.rsplit(".", 1)[-1] for name in full})
    head_ids = _output_head_ids(model)
    head_names = [name for name, module in model.named_modules() if id(module) in head_ids]
    clashes = any(head == s or head.endswith("." + s) for head in head_names for s in suffixes)
    return sorted(full) if clashes else suffixes


def _target_modules(cfg: AxolotlConfig, model: nn.Module) -> list[str] | str | None:
    """Union of `lora_target_modules` and (with `lora_target_linear`) every non-head linear."""
    explicit = cfg.lora_target_modules
    if not cfg.lora_target_linear:
        return list(explicit) if isinstance(explicit, list) else explicit
    linear = _linear_targets(model)
    if not linear:
        raise ValueError("`lora_target_linear`: the model has no linear layers besides its output head")
    if isinstance(explicit, str):
        # A regex is matched by PEFT with re.fullmatch on the full module name.
        names = "|".join(re.escape(name) for name in linear)
        return rf"(?:{explicit})|(?:.*\.)?(?:{names})"
    return sorted(set(explicit or []) | set(linear))


def _loftq(cfg: AxolotlConfig) -> Any:
    """The `peft.LoftQConfig` to use, or None; LoftQ is on when `peft.loftq_config` is set or
    `peft_init_lora_weights: loftq` is (then with the schema's default bits)."""
    from peft import LoftQConfig

    block = cfg.peft.loftq_config if cfg.peft is not None else None
    wanted = cfg.peft_init_lora_weights == "loftq"
    if block is None and not wanted:
        return None
    if block is not None and cfg.peft_init_lora_weights not in (None, True, "loftq"):
        raise ValueError(f"`peft.loftq_config` sets LoftQ initialisation but `peft_init_lora_weights` is "
                         f"{cfg.peft_init_lora_weights!r}; remove one of them")
    if cfg.adapter == "qlora":
        raise ValueError("LoftQ quantises the full-precision weights itself: use `adapter: lora` without "
                         "`load_in_4bit` together with `peft.loftq_config`")
    missing = [name for name in ("scipy", "bitsandbytes") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"LoftQ initialisation (`peft.loftq_config` / `peft_init_lora_weights: loftq`) needs "
                          f"{' and '.join(missing)} installed, and a CUDA GPU; install them or remove the key")
    bits = block.loftq_bits if block is not None else 4
    return LoftQConfig(loftq_bits=bits)


def lora_config(cfg: AxolotlConfig, model: nn.Module) -> LoraConfig:
    """Translate the config's LoRA/PEFT keys into a `peft.LoraConfig` for `model`.

    The model is needed because `lora_target_linear` is resolved by inspecting it.
    """
    from peft import LoraConfig

    _check_supported(cfg)
    targets = _target_modules(cfg, model)
    parameters = cfg.lora_target_parameters
    if isinstance(parameters, str):
        parameters = [parameters]  # PEFT 0.21 raises TypeError on a bare string
    if not targets and not parameters:
        names = sorted({name.rsplit(".", 1)[-1] for name in linear_module_names(model)})
        raise ValueError("LoRA needs something to adapt: set `lora_target_linear: true` or "
                         f"`lora_target_modules` (this model's linear layers: {', '.join(names)})")
    loftq = _loftq(cfg)
    init: bool | str = True if cfg.peft_init_lora_weights is None else cfg.peft_init_lora_weights
    kwargs: dict[str, Any] = {}
    if cfg.peft_ensure_weight_tying is not None:
        kwargs["ensure_weight_tying"] = cfg.peft_ensure_weight_tying
    return LoraConfig(
        task_type=_task_type(cfg),
        # Unset rank/alpha fall back to PEFT's r=8 and to alpha=r (scaling 1), not PEFT's fixed alpha=8.
        r=cfg.lora_r or 8,
        lora_alpha=cfg.lora_alpha or cfg.lora_r or 8,
        lora_dropout=cfg.lora_dropout or 0.0,
        target_modules=targets or None,
        target_parameters=parameters or None,
        modules_to_save=cfg.lora_modules_to_save,
        fan_in_fan_out=bool(cfg.lora_fan_in_fan_out),
        use_dora=bool(cfg.peft_use_dora),
        use_rslora=bool(cfg.peft_use_rslora),
        layers_to_transform=cfg.peft_layers_to_transform,
        layers_pattern=cfg.peft_layers_pattern,
        init_lora_weights="loftq" if loftq is not None else init,
        loftq_config=loftq or {},
        rank_pattern=dict(cfg.lora_rank_pattern or {}),
        alpha_pattern=dict(cfg.lora_alpha_pattern or {}),
        trainable_token_indices=cfg.peft_trainable_token_indices,
        layer_replication=[tuple(pair) for pair in cfg.peft_layer_replication] if cfg.peft_layer_replication
        else None,
        **kwargs,
    )


def _task_type(cfg: AxolotlConfig) -> str:
    """PEFT's task for the model's head. For the classification heads of reward models PEFT also
    trains (and saves) the new head (`score`/`classifier`) in full, which LoRA alone would leave random."""
    from axolotl.models.model import method_head

    name = cfg.type_of_model or method_head(cfg)[0] or ""
    if name.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    if name.endswith("ForTokenClassification"):
        return "TOKEN_CLS"
    return "CAUSAL_LM"


def _respect_gradient_checkpointing(cfg: AxolotlConfig, model: PreTrainedModel) -> None:
    """Turn checkpointing on (idempotent) so that the adapter and the config agree even where
    PEFT would not (it only does so for quantised bases). transformers 5 also makes the input
    embeddings' output require grad here; without that, reentrant checkpointing over a frozen
    embedding would drop every LoRA gradient."""
    if not cfg.gradient_checkpointing:
        return
    # transformers 5.23 renamed gradient_checkpointing_* to activation_checkpointing_* (the old names
    # warn); 5.17 has only the old ones. Offloading variants are the trainer's to set up.
    enabled = getattr(model, "is_activation_checkpointing", None)
    if enabled is None:
        enabled = model.is_gradient_checkpointing
    if not enabled:
        from axolotl.models.model import enable_checkpointing

        enable_checkpointing(model, {"use_reentrant": False, **(cfg.gradient_checkpointing_kwargs or {})})


def _prepare_kbit(cfg: AxolotlConfig, model: PreTrainedModel) -> PreTrainedModel:
    """PEFT's k-bit preparation: freeze, upcast every non-quantised fp16/bf16 tensor to fp32 for
    stable training, and checkpoint as configured. `embeddings_skip_upcast` keeps the (large)
    input embedding and output head in their loaded dtype to save memory."""
    from peft import prepare_model_for_kbit_training

    if not (getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)):
        LOG.warning("adapter: qlora but the base model is not quantised; preparing it as a k-bit model anyway")
    kept: dict[int, torch.dtype] = {}
    if cfg.embeddings_skip_upcast:
        for module in (model.get_input_embeddings(), model.get_output_embeddings()):
            if module is not None:
                kept[id(module)] = module.weight.dtype
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=bool(cfg.gradient_checkpointing),
        gradient_checkpointing_kwargs=cfg.gradient_checkpointing_kwargs,
    )
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None and id(module) in kept:
            module.weight.data = module.weight.data.to(kept[id(module)])
    return model


def read_adapter_config(directory: Path) -> dict[str, Any]:
    """Read adapter_config.json ourselves so a wrong directory fails with the path in the message."""
    path = directory / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"`lora_model_dir`: {directory} has no adapter_config.json; point it at a "
                                "directory written by a LoRA training run (its output_dir)")
    return json.loads(path.read_text())


def _check_saved_matches_cfg(cfg: AxolotlConfig, saved: dict[str, Any], directory: Path) -> None:
    """A config that states a rank/alpha different from the saved adapter is a mistake that
    would otherwise pass unnoticed: the saved values win when loading."""
    if saved.get("peft_type") != "LORA":
        raise ValueError(f"`lora_model_dir`: {directory} holds a {saved.get('peft_type')} adapter, not LoRA")
    for key, saved_key in (("lora_r", "r"), ("lora_alpha", "lora_alpha")):
        mine = getattr(cfg, key)
        if mine is not None and saved.get(saved_key) is not None and mine != saved[saved_key]:
            raise ValueError(f"`{key}` is {mine} but the adapter in {directory} was trained with "
                             f"{saved_key}={saved[saved_key]}; remove `{key}` or make them equal")


def _load_existing(cfg: AxolotlConfig, model: PreTrainedModel) -> PeftModel:
    """Continue training an adapter: load it trainable."""
    return load_saved_adapter(cfg, model, Path(cfg.lora_model_dir), trainable=True)


def load_saved_adapter(cfg: AxolotlConfig, model: PreTrainedModel, directory: Path, *,
                       trainable: bool) -> PeftModel:
    """Wrap `model` in the adapter saved in `directory` (training continues from it, `merge-lora`
    merges it) and verify every saved tensor landed on a module of the same shape in this base."""
    from peft import PeftModel

    saved = read_adapter_config(directory)
    _check_saved_matches_cfg(cfg, saved, directory)
    hint = f"the adapter in {directory} was not trained on this base model ({type(model).__name__})"
    try:
        peft_model = PeftModel.from_pretrained(
            model, str(directory), is_trainable=trainable,
            autocast_adapter_dtype=cfg.peft_autocast_adapter_dtype is not False,
        )
    except (ValueError, RuntimeError, KeyError) as error:
        raise ValueError(f"`lora_model_dir`: {hint}: {error}") from error
    loaded = {_saved_name(name) for name, _ in peft_model.named_parameters()}
    stray = sorted(name for name in _saved_tensor_names(directory) if _saved_name(name) not in loaded)
    if stray:
        # PEFT only warns about these (e.g. an adapter from a deeper model) and drops them.
        raise ValueError(f"`lora_model_dir`: {hint}: {len(stray)} saved tensors have no place in it, "
                         f"e.g. {', '.join(stray[:3])}")
    return peft_model


def _saved_name(name: str) -> str:
    """The name PEFT writes a parameter under: without the adapter name (`default`) and the
    `modules_to_save` wrapper, and a DoRA magnitude without its `.weight`."""
    parts = [part for part in name.split(".") if part not in ("default", "modules_to_save")]
    if parts[-2:] == ["lora_magnitude_vector", "weight"]:
        parts.pop()
    return ".".join(parts)


def _saved_tensor_names(directory: Path) -> list[str]:
    """Tensor names in the adapter file, read without materialising the weights where possible."""
    safetensors_file = directory / "adapter_model.safetensors"
    if safetensors_file.is_file():
        from safetensors import safe_open

        with safe_open(str(safetensors_file), framework="pt") as handle:
            return list(handle.keys())
    bin_file = directory / "adapter_model.bin"
    if bin_file.is_file():
        return list(torch.load(bin_file, map_location="cpu", weights_only=True))
    raise FileNotFoundError(f"`lora_model_dir`: {directory} has no adapter_model.safetensors or .bin")


def _check_adapter_name(cfg: AxolotlConfig) -> None:
    """Guard for callers that bypass config validation."""
    if cfg.adapter not in ADAPTERS:
        raise ValueError(f"`adapter`: unknown adapter {cfg.adapter!r}; use one of {sorted(ADAPTERS)}")


def apply_adapter(cfg: AxolotlConfig, model: PreTrainedModel) -> PreTrainedModel | PeftModel:
    """Return `model` wrapped in the configured adapter, or unchanged for a full fine-tune.

    Only the adapter's parameters (plus `lora_modules_to_save` copies and trainable tokens)
    require grad afterwards; PEFT freezes the base.
    """
    if not cfg.adapter:
        return model
    from peft import get_peft_model

    _check_adapter_name(cfg)
    _check_supported(cfg)
    if cfg.adapter == "qlora":
        model = _prepare_kbit(cfg, model)
    if cfg.lora_model_dir:
        peft_model = _load_existing(cfg, model)
    else:
        config = lora_config(cfg, model)
        peft_model = get_peft_model(model, config,
                                    autocast_adapter_dtype=cfg.peft_autocast_adapter_dtype is not False)
    _respect_gradient_checkpointing(cfg, peft_model.get_base_model())
    apply_lora_kernels(cfg, peft_model)  # lora_mlp_kernel / lora_qkv_kernel / lora_o_kernel
    return peft_model

"""Config -> the Trainer's distributed engine: DDP, FSDP2 or DeepSpeed ZeRO.

Several processes without `fsdp_config`/`deepspeed` train with DDP (the Trainer's default under
a launcher; the `ddp_*` keys are mapped in `axolotl.training.args`). FSDP and DeepSpeed are
switched on through TrainingArguments, which hands them to accelerate:

| config key                                   | TrainingArguments                                     |
|----------------------------------------------|-------------------------------------------------------|
| fsdp_config (or legacy `fsdp: [...]`)         | fsdp=True, fsdp_config={"version": 2, ...}            |
| fsdp_config.auto_wrap_policy                  | auto_wrap_policy (default TRANSFORMER_BASED_WRAP)     |
| fsdp_config.transformer_layer_cls_to_wrap     | same; unset: the model's `_no_split_modules` (accelerate's default) |
| fsdp_config.min_num_params                    | same (SIZE_BASED_WRAP only)                           |
| fsdp_config.reshard_after_forward / sharding_strategy FULL_SHARD, SHARD_GRAD_OP | reshard_after_forward |
| fsdp_config.offload_params                    | cpu_offload                                           |
| fsdp_config.cpu_offload_pin_memory: false     | the plugin's CPUOffloadPolicy(pin_memory=False), set after the Trainer builds it |
| fsdp_config.state_dict_type                   | state_dict_type (checkpoints; default FULL_STATE_DICT) |
| fsdp_final_state_dict_type / fsdp_config.final_state_dict_type | the final save (`save_final_model`; default FULL_STATE_DICT) |
| fsdp_config.activation_checkpointing          | activation_checkpointing                              |
| fsdp_config.mixed_precision_policy            | the plugin's MixedPrecisionPolicy, set after the Trainer builds it (see `fsdp_mixed_precision`) |
| fsdp_config.cpu_ram_efficient_loading         | same, plus ACCELERATE_USE_FSDP=true so transformers loads real weights on rank 0 only |
| dp_shard_size / dp_replicate_size             | parallelism_config=ParallelismConfig(...) (FSDP2 only; HSDP) |
| deepspeed (JSON path or dict)                 | deepspeed (transformers fills the "auto" values)      |
| accelerator_config                            | accelerator_config                                    |

Combinations that cannot work are refused before anything loads (`distributed_problems`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axolotl.process_group import launched_world_size
from axolotl.training.args import TrainingConfigError
from axolotl.training.support import NotSupportedYet

if TYPE_CHECKING:
    from transformers import Trainer

    from axolotl.config.schema import AxolotlConfig

FULL = "FULL_STATE_DICT"
SHARDED = "SHARDED_STATE_DICT"
FSDP1_ONLY_KEYS = ("sync_module_states", "use_orig_params", "backward_prefetch", "backward_prefetch_policy",
                   "forward_prefetch")
"""FSDP1 options FSDP2 has no equivalent of (the spec's migration table marks them REMOVED)."""
LEGACY_FSDP_OPTIONS: dict[str, tuple[str, bool] | None] = {
    "full_shard": ("reshard_after_forward", True), "shard_grad_op": ("reshard_after_forward", False),
    "offload": ("offload_params", True), "auto_wrap": None,
}
"""`fsdp: [...]` words -> the fsdp_config key they set (auto_wrap: the default policy)."""
SHARDING_STRATEGIES = {"FULL_SHARD": True, "SHARD_GRAD_OP": False}
"""FSDP1 `sharding_strategy` -> FSDP2 `reshard_after_forward`."""
MIXED_PRECISION_DTYPES = ("bf16", "fp16", "fp32")
"""Values of `fsdp_config.mixed_precision_policy` (accelerate's names)."""
PACKED_LOADER_ACCELERATOR_KEYS = ("split_batches", "dispatch_batches", "even_batches")
"""accelerator_config keys about the dataloader accelerate prepares; the packed loader is not one."""


@dataclass(frozen=True)
class FSDPPlan:
    """The resolved FSDP2 settings of a run."""

    reshard_after_forward: bool = True
    offload_params: bool = False
    pin_memory: bool = True
    state_dict_type: str = FULL
    final_state_dict_type: str = FULL
    auto_wrap_policy: str = "TRANSFORMER_BASED_WRAP"
    layer_classes: tuple[str, ...] = ()
    min_num_params: int | None = None
    activation_checkpointing: bool = False
    cpu_ram_efficient_loading: bool = False
    mixed_precision: str | None = None


def fsdp_requested(cfg: AxolotlConfig) -> bool:
    return bool(cfg.fsdp) or cfg.fsdp_config is not None


def _legacy_options(cfg: AxolotlConfig) -> dict[str, bool]:
    """What a legacy `fsdp: [full_shard, auto_wrap, offload]` list asks for."""
    chosen: dict[str, bool] = {}
    for word in cfg.fsdp or []:
        if word not in LEGACY_FSDP_OPTIONS:
            raise TrainingConfigError(f"`fsdp: [{word}]`: FSDP2 understands {', '.join(LEGACY_FSDP_OPTIONS)} in the "
                                      "legacy list (hybrid sharding: `dp_shard_size` + `dp_replicate_size`; no "
                                      "sharding: leave FSDP off, several processes train with DDP)")
        setting = LEGACY_FSDP_OPTIONS[word]
        if setting is not None:
            key, value = setting
            if chosen.get(key, value) != value:
                raise TrainingConfigError("`fsdp:` lists both full_shard and shard_grad_op; keep one")
            chosen[key] = value
    return chosen


def _agree(name: str, values: dict[str, Any]) -> Any:
    """The one value several spellings give, None when none is set; an error names them when they differ."""
    given = {key: value for key, value in values.items() if value is not None}
    if len(set(map(str, given.values()))) > 1:
        raise TrainingConfigError(f"{name} is set differently by " + ", ".join(f"`{k}: {v}`" for k, v in given.items())
                                  + "; keep one of them")
    return next(iter(given.values()), None)


def fsdp_plan(cfg: AxolotlConfig) -> FSDPPlan | None:
    """The FSDP2 settings `cfg` asks for (None without FSDP); refuses what FSDP2 cannot do."""
    if not fsdp_requested(cfg):
        return None
    if cfg.fsdp_version == 1:
        raise NotSupportedYet("`fsdp_version: 1` is not supported yet (transformers deprecates FSDP1); set "
                              "`fsdp_version: 2` and rename the keys as docs/multi_gpu.md shows")
    block = cfg.fsdp_config
    legacy = _legacy_options(cfg)
    if block is None:
        return FSDPPlan(reshard_after_forward=legacy.get("reshard_after_forward", True),
                        offload_params=legacy.get("offload_params", False))
    stale = [key for key in FSDP1_ONLY_KEYS if getattr(block, key) is not None]
    if stale:
        raise TrainingConfigError(f"`fsdp_config` {', '.join(f'`{k}`' for k in stale)}: FSDP1 options with no "
                                  "effect in FSDP2; remove them")
    if block.mixed_precision_policy is not None and block.mixed_precision_policy not in MIXED_PRECISION_DTYPES:
        raise TrainingConfigError(f"`fsdp_config.mixed_precision_policy: {block.mixed_precision_policy}`: use one of "
                                  f"{', '.join(MIXED_PRECISION_DTYPES)}, or leave it unset (compute in the `bf16`/"
                                  "`fp16` dtype, reduce gradients in fp32)")
    if block.sharding_strategy in ("NO_SHARD", "HYBRID_SHARD"):
        raise TrainingConfigError(f"`fsdp_config.sharding_strategy: {block.sharding_strategy}` has no FSDP2 form: "
                                  "for hybrid sharding set `dp_shard_size` and `dp_replicate_size`; for no "
                                  "sharding leave FSDP off (several processes train with DDP)")
    reshard = _agree("reshard_after_forward", {
        "fsdp_config.reshard_after_forward": block.reshard_after_forward,
        "fsdp_config.sharding_strategy": SHARDING_STRATEGIES.get(block.sharding_strategy or ""),
        "fsdp": legacy.get("reshard_after_forward")})
    offload = _agree("offloading", {"fsdp_config.offload_params": block.offload_params,
                                    "fsdp": legacy.get("offload_params")})
    final = _agree("the final state dict type", {"fsdp_final_state_dict_type": cfg.fsdp_final_state_dict_type,
                                                 "fsdp_config.final_state_dict_type": block.final_state_dict_type})
    for key, value in (("state_dict_type", block.state_dict_type), ("final_state_dict_type", final)):
        if value == "LOCAL_STATE_DICT":
            raise TrainingConfigError(f"`{key}: LOCAL_STATE_DICT` does not exist in FSDP2; use "
                                      f"{FULL} or {SHARDED}")
    if block.cpu_offload_pin_memory is False and not offload:
        raise TrainingConfigError("`fsdp_config.cpu_offload_pin_memory: false` only applies with "
                                  "`offload_params: true`")
    policy = block.auto_wrap_policy or "TRANSFORMER_BASED_WRAP"
    if block.min_num_params is not None and policy != "SIZE_BASED_WRAP":
        raise TrainingConfigError("`fsdp_config.min_num_params` only applies with `auto_wrap_policy: SIZE_BASED_WRAP`")
    if block.transformer_layer_cls_to_wrap and policy != "TRANSFORMER_BASED_WRAP":
        raise TrainingConfigError("`fsdp_config.transformer_layer_cls_to_wrap` only applies with "
                                  "`auto_wrap_policy: TRANSFORMER_BASED_WRAP`")
    classes = tuple(name.strip() for name in (block.transformer_layer_cls_to_wrap or "").split(",") if name.strip())
    return FSDPPlan(reshard_after_forward=True if reshard is None else bool(reshard), offload_params=bool(offload),
                    pin_memory=block.cpu_offload_pin_memory is not False,
                    state_dict_type=block.state_dict_type or FULL, final_state_dict_type=final or FULL,
                    auto_wrap_policy=policy, layer_classes=classes, min_num_params=block.min_num_params,
                    activation_checkpointing=bool(block.activation_checkpointing),
                    cpu_ram_efficient_loading=bool(block.cpu_ram_efficient_loading),
                    mixed_precision=block.mixed_precision_policy)


def fsdp_config_dict(plan: FSDPPlan) -> dict[str, Any]:
    """TrainingArguments' `fsdp_config` (the spelling transformers 5.x reads)."""
    config: dict[str, Any] = {
        "version": 2, "auto_wrap_policy": plan.auto_wrap_policy, "reshard_after_forward": plan.reshard_after_forward,
        "state_dict_type": plan.state_dict_type, "activation_checkpointing": plan.activation_checkpointing,
        "cpu_ram_efficient_loading": plan.cpu_ram_efficient_loading,
    }
    if plan.offload_params:
        config["cpu_offload"] = True
    if plan.layer_classes:
        config["transformer_layer_cls_to_wrap"] = list(plan.layer_classes)
    if plan.min_num_params is not None:
        config["min_num_params"] = plan.min_num_params
    return config


def _parallelism_config(cfg: AxolotlConfig, plan: FSDPPlan | None) -> Any:
    if not (cfg.dp_shard_size or cfg.dp_replicate_size):
        return None
    if plan is None:
        raise TrainingConfigError("`dp_shard_size`/`dp_replicate_size` shape FSDP2's device mesh; set `fsdp_config` "
                                  "(plain data parallelism needs neither: every process is one replica)")
    shard, replicate = cfg.dp_shard_size or 1, cfg.dp_replicate_size or 1
    if replicate > 1 and shard == 1:
        raise TrainingConfigError("`dp_replicate_size` > 1 needs `dp_shard_size` > 1 (hybrid sharding); for "
                                  "replicas alone leave FSDP off")
    world = launched_world_size()
    if world > 1 and shard * replicate != world:
        raise TrainingConfigError(f"`dp_shard_size` {shard} x `dp_replicate_size` {replicate} = {shard * replicate}, "
                                  f"but the run has {world} processes; make the product the process count")
    from accelerate import ParallelismConfig

    return ParallelismConfig(dp_shard_size=shard, dp_replicate_size=replicate)


def distributed_kwargs(cfg: AxolotlConfig) -> dict[str, Any]:
    """The TrainingArguments entries of the engine `cfg` asks for (empty for DDP/one process)."""
    kwargs: dict[str, Any] = {}
    plan = fsdp_plan(cfg)
    if plan is not None:
        kwargs.update(fsdp=True, fsdp_config=fsdp_config_dict(plan))
    parallelism = _parallelism_config(cfg, plan)
    if parallelism is not None:
        kwargs["parallelism_config"] = parallelism
    if cfg.deepspeed:
        kwargs["deepspeed"] = str(Path(cfg.deepspeed).expanduser()) if isinstance(cfg.deepspeed, str) \
            else dict(cfg.deepspeed)
    if cfg.accelerator_config:
        kwargs["accelerator_config"] = dict(cfg.accelerator_config)
    return kwargs


def distributed_environment(cfg: AxolotlConfig) -> dict[str, str]:
    """Variables the loaders read: with `cpu_ram_efficient_loading`, transformers loads real weights
    on each node's first rank only when accelerate's FSDP switch is in the environment (accelerate
    launch sets it from its config; torchrun does not)."""
    plan = fsdp_plan(cfg)
    return {"ACCELERATE_USE_FSDP": "true"} if plan is not None and plan.cpu_ram_efficient_loading else {}


def _quant_storage(cfg: AxolotlConfig) -> Any:
    import torch

    value = (cfg.bnb_config_kwargs or {}).get("bnb_4bit_quant_storage", torch.bfloat16)
    return getattr(torch, value.removeprefix("torch.")) if isinstance(value, str) else value


def distributed_problems(cfg: AxolotlConfig) -> list[str]:
    """Why the engine `cfg` asks for cannot run as configured (checked before anything loads)."""
    fsdp, deepspeed = fsdp_requested(cfg), bool(cfg.deepspeed)
    problems: list[str] = []
    if cfg.ddp is False and launched_world_size() > 1 and not (fsdp or deepspeed):
        problems.append("`ddp: false` but the run has several processes (which train with DDP); remove the key")
    if cfg.accelerator_config:
        problems += _accelerator_config_problems(cfg)
    if not (fsdp or deepspeed):
        return problems
    engine = "FSDP" if fsdp else "DeepSpeed"
    if deepspeed and importlib.util.find_spec("deepspeed") is None:
        problems.append("`deepspeed` needs the deepspeed package, which is not installed; "
                        "`pip install 'axolotl[deepspeed]'`")
    if not _cuda():
        problems.append(f"{engine} needs CUDA GPUs (on CPU, accelerate runs the processes as plain DDP and would "
                        "silently drop it); remove the key to train with DDP")
    if cfg.rl or cfg.reward_model or cfg.process_reward_model:
        problems.append(f"{engine} is not supported yet for preference, RL and reward training (SFT only; "
                        "those methods train with DDP across processes)")
    head_note = "the chunked cross-entropy (it reads the output head's weight outside the sharded forward)"
    for key, feature in (("activation_offloading", "activation offloading"), ("chunked_cross_entropy", head_note)):
        if getattr(cfg, key):
            problems.append(f"`{key}` is not supported yet with {engine} ({feature}); remove it")
    if cfg.torch_compile is True:
        problems.append(f"`torch_compile: true` is not supported yet with {engine} (per-layer compilation is not "
                        "tested under sharding); set `torch_compile: false`")
    if fsdp:
        problems += _fsdp_problems(cfg)
    elif cfg.load_in_4bit or cfg.load_in_8bit:
        problems.append("quantised loading (`load_in_4bit`/`load_in_8bit`) is not supported yet with DeepSpeed; "
                        "for QLoRA across GPUs use FSDP (`fsdp_config`)")
    return problems


def _fsdp_problems(cfg: AxolotlConfig) -> list[str]:
    problems: list[str] = []
    try:
        plan = fsdp_plan(cfg)
        _parallelism_config(cfg, plan)
    except TrainingConfigError as error:
        return [str(error)]
    assert plan is not None
    if plan.activation_checkpointing and cfg.gradient_checkpointing:
        problems.append("`gradient_checkpointing` and `fsdp_config.activation_checkpointing` both checkpoint the "
                        "layers; keep `fsdp_config.activation_checkpointing` (FSDP's own) and remove the other")
    if cfg.load_in_8bit:
        problems.append("`load_in_8bit` is not supported with FSDP; use `load_in_4bit` (QLoRA)")
    if cfg.load_in_4bit:
        from axolotl.models.precision import resolve_precision

        weights, storage = resolve_precision(cfg).weights, _quant_storage(cfg)
        if storage != weights:
            problems.append(f"FSDP + QLoRA shards the 4-bit weights as `bnb_4bit_quant_storage` ({storage}) together "
                            f"with the unquantised ones ({weights}), so the two must match: set `bf16: true` (both "
                            "bfloat16) or `bnb_config_kwargs: {bnb_4bit_quant_storage: <the weight dtype>}`")
    return problems


def _accelerator_config_problems(cfg: AxolotlConfig) -> list[str]:
    import dataclasses

    from transformers.trainer_pt_utils import AcceleratorConfig

    known = {field.name for field in dataclasses.fields(AcceleratorConfig)}
    unknown = sorted(set(cfg.accelerator_config) - known)
    problems = []
    if unknown:
        problems.append(f"`accelerator_config` {unknown}: not options of accelerate's Trainer settings; it accepts "
                        f"{', '.join(sorted(known))}")
    ignored = [key for key in PACKED_LOADER_ACCELERATOR_KEYS if key in cfg.accelerator_config]
    if ignored and cfg.sample_packing:
        problems.append(f"`accelerator_config` {ignored} shape the batches accelerate deals to ranks, but packed "
                        "batches are dealt by the packing sampler (every rank the same number of bins); remove them "
                        "or turn `sample_packing` off")
    return problems


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def check_engine(trainer: Trainer, cfg: AxolotlConfig) -> None:
    """After the Trainer is built: the engine the config asked for is the one accelerate set up (it
    drops FSDP silently in some setups), plus the FSDP settings TrainingArguments cannot carry."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if fsdp_requested(cfg) and plugin is None:
        raise TrainingConfigError("`fsdp_config` is set but accelerate did not enable FSDP (it needs a multi-process "
                                  "launch on CUDA GPUs); launch with `--launcher torchrun` on GPUs, or remove it")
    if cfg.deepspeed and not getattr(trainer, "is_deepspeed_enabled", False):
        raise TrainingConfigError("`deepspeed` is set but accelerate did not enable DeepSpeed (it needs a "
                                  "multi-process launch on CUDA GPUs); launch with `--launcher torchrun` on GPUs")
    plan = fsdp_plan(cfg)
    if plugin is None or plan is None:
        return
    if plan.offload_params and not plan.pin_memory:
        from torch.distributed.fsdp import CPUOffloadPolicy

        plugin.cpu_offload = CPUOffloadPolicy(pin_memory=False)
    policy = fsdp_mixed_precision(plan, trainer.accelerator.mixed_precision)
    if policy is not None:
        plugin.mixed_precision_policy = policy


def fsdp_mixed_precision(plan: FSDPPlan, mixed_precision: str) -> Any:
    """FSDP2's MixedPrecisionPolicy for the run (None: leave accelerate's, i.e. none without mixed precision).

    `mixed_precision_policy: bf16|fp16|fp32` means what it means to accelerate (and the reference):
    parameters, gradient reduction and module outputs all in that dtype. Unset, with `bf16`/`fp16`
    training, we keep accelerate's compute dtype but reduce gradients in fp32 and leave outputs
    uncast, where accelerate would reduce in the low-precision dtype (rank sums lose precision) and
    cast the loss the model returns to it (logged losses rounded to 3 significant digits)."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if plan.mixed_precision is not None:
        dtype = dtypes[plan.mixed_precision]
        return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=dtype, output_dtype=dtype)
    if mixed_precision not in ("bf16", "fp16"):
        return None
    return MixedPrecisionPolicy(param_dtype=dtypes[mixed_precision], reduce_dtype=torch.float32)


def save_final_model(trainer: Trainer, cfg: AxolotlConfig, directory: Path) -> None:
    """Save the trained model (or adapter) to `directory`. Every rank must call this: FSDP and ZeRO-3
    gather the weights collectively; only the main process writes files (the Trainer's rule).

    FSDP saves in `fsdp_final_state_dict_type` (default one full safetensors model); SHARDED writes
    the distributed checkpoint (`pytorch_model_fsdp_0/`) with config and tokenizer, which
    `axolotl merge-sharded-fsdp-weights` turns into one model."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    plan = fsdp_plan(cfg)
    if plugin is None or plan is None:
        trainer.save_model(str(directory))
        return
    plugin.set_state_dict_type(plan.final_state_dict_type)
    if plan.final_state_dict_type == FULL:
        trainer.save_model(str(directory))
        return
    from accelerate.utils import save_fsdp_model

    save_fsdp_model(plugin, trainer.accelerator, trainer.model, str(directory))
    if trainer.is_world_process_zero():
        trainer.accelerator.unwrap_model(trainer.model).config.save_pretrained(directory)
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(directory)


"""Config -> `transformers.TrainingArguments`: the one place that maps axolotl keys to Trainer knobs.

| config key                                   | TrainingArguments                                   |
|----------------------------------------------|-----------------------------------------------------|
| output_dir                                   | output_dir                                          |
| micro_batch_size / eval_batch_size           | per_device_train_batch_size / per_device_eval_batch_size |
| gradient_accumulation_steps                  | gradient_accumulation_steps                         |
| num_epochs / max_steps                       | num_train_epochs / max_steps                        |
| learning_rate, weight_decay, max_grad_norm   | same names (max_grad_norm unset keeps 1.0)          |
| lr_scheduler (+ cosine_min_lr_ratio)         | lr_scheduler_type (+ lr_scheduler_kwargs.min_lr_rate) |
| lr_scheduler_kwargs                          | lr_scheduler_kwargs                                 |
| rex, one_cycle, cosine_constant_lr_ratio, lr_quadratic_warmup, lr_div_factor | our schedules (`Schedule.hf_type` None): `AxolotlTrainer.create_scheduler` builds them (`training/schedulers.py`) |
| warmup_steps / warmup_ratio                  | warmup_steps (an int, or a ratio < 1)               |
| optimizer, optim_args, optim_target_modules  | optim, optim_args, optim_target_modules             |
| lr_groups, embedding_lr(_scale), loraplus_*  | parameter groups: `AxolotlTrainer.create_optimizer` (`training/optimizer.py`) |
| gc_steps / gc_collect_steps                  | a callback (`axolotl.training.callbacks.GarbageCollect`) |
| adam_beta1, adam_beta2, adam_epsilon         | same names                                          |
| seed, full_determinism, auto_find_batch_size | same names (seed defaults to 42)                    |
| logging_steps (default 1), logging_nan_inf_filter | same names                                     |
| eval_strategy / eval_steps / evals_per_epoch | eval_strategy, eval_steps                           |
| save_strategy / save_steps / saves_per_epoch | save_strategy, save_steps                           |
| save_total_limit, save_only_model            | same names                                          |
| load_best_model_at_end, metric_for_best_model, greater_is_better, eval_on_start | same names   |
| bf16 / fp16 (via `resolve_precision`), bf16: full | bf16 / fp16, bf16_full_eval                    |
| tf32                                         | tf32                                                |
| dataloader_num_workers/pin_memory/prefetch_factor/drop_last | same names                           |
| use_tensorboard / use_wandb / use_mlflow     | report_to (else "none")                             |
| wandb_name / mlflow_run_name                 | run_name                                            |
| include_tokens_per_second / include_tkps     | include_num_input_tokens_seen="non_padding" (always on: metrics.json reports tokens/s); the keys add throughput to the logs (`axolotl.training.progress`) |
| neftune_noise_alpha                          | neftune_noise_alpha                                 |
| group_by_length                              | train_sampling_strategy="group_by_length"           |
| torch_empty_cache_steps                      | torch_empty_cache_steps                             |
| ddp_timeout, ddp_bucket_cap_mb, ddp_broadcast_buffers, ddp_find_unused_parameters | same names   |
| early_stopping_patience, loss_watchdog_*, save_first_step | callbacks (`axolotl.training.callbacks`) |
| fsdp / fsdp_config, deepspeed, dp_shard_size, dp_replicate_size, accelerator_config | fsdp, fsdp_config, deepspeed, parallelism_config, accelerator_config (`axolotl.training.parallel`) |

Everything else of the training settings is refused in `axolotl.training.support`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from axolotl.models.precision import resolve_precision

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from axolotl.config.schema import AxolotlConfig

TRANSFORMERS_SCHEDULERS = frozenset({
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
})
"""`lr_scheduler` names transformers builds (its `SchedulerType`); ours are in `schedulers.SCHEDULES`."""

MIN_LR_KEY = {"cosine_with_min_lr": "min_lr_rate", "cosine_warmup_with_min_lr": "min_lr_rate",
              "warmup_stable_decay": "min_lr_ratio"}
"""transformers schedules with a floor -> the `lr_scheduler_kwargs` key `cosine_min_lr_ratio` sets."""

PLAIN_OPTIMIZERS = frozenset({"adamw_torch", "adamw_torch_fused", "sgd", "adafactor", "adagrad", "rmsprop"})
"""Optimizers that need nothing beyond torch/transformers."""

BNB_OPTIMIZERS = frozenset({
    "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "lion_8bit", "lion_32bit",
    "paged_lion_8bit", "paged_lion_32bit", "ademamix", "ademamix_8bit", "paged_ademamix_8bit",
    "paged_ademamix_32bit", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit",
})
"""Optimizers implemented by bitsandbytes (checked before the model is loaded)."""

SCHEDULE_FREE_OPTIMIZERS = frozenset({"schedule_free_adamw", "schedule_free_sgd", "schedule_free_radam"})
LOW_RANK_OPTIMIZERS = frozenset({
    "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "apollo_adamw", "apollo_adamw_layerwise",
})
"""GaLore/APOLLO: they project the gradients of the `optim_target_modules` linear layers."""

SELF_GROUPING_OPTIMIZERS = LOW_RANK_OPTIMIZERS | {"lomo", "adalomo"}
"""Optimizers that build their own parameter groups (so `lr_groups`, `embedding_lr`, LoRA+ cannot apply)."""

OPTIMIZER_PACKAGES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(BNB_OPTIMIZERS, ("bitsandbytes", "the `qlora` extra")),
    **dict.fromkeys(("adamw_torch_4bit", "adamw_torch_8bit"), ("torchao", "the `torchao` extra")),
    **dict.fromkeys(SCHEDULE_FREE_OPTIMIZERS, ("schedulefree", "the `schedulefree` extra")),
    **{name: ("galore_torch", "the `galore` extra") for name in LOW_RANK_OPTIMIZERS if name.startswith("galore")},
    **{name: ("apollo_torch", "the `apollo` extra") for name in LOW_RANK_OPTIMIZERS if name.startswith("apollo")},
    **dict.fromkeys(("lomo", "adalomo"), ("lomo_optim", "the `lomo` extra")),
    "grokadamw": ("grokadamw", "the `grokadamw` extra"),
    "stable_adamw": ("optimi", "the `optimi` extra (torch-optimi)"),
    "adamw_anyprecision": ("torchdistx", "torchdistx (not on PyPI; build it from the pytorch/torchdistx repository)"),
    "adamw_torch_xla": ("torch_xla", "torch_xla (TPU machines)"),
    "adamw_torch_npu_fused": ("torch_npu", "torch_npu (Ascend NPU machines)"),
}
"""Optimizer -> (module it imports, what to install), checked before the model is loaded."""

TRACKERS: dict[str, tuple[str, str]] = {
    "use_tensorboard": ("tensorboard", "tensorboard"),
    "use_wandb": ("wandb", "wandb"),
    "use_mlflow": ("mlflow", "mlflow"),
}
"""Config flag -> (transformers `report_to` name, package that must be importable)."""

DEFAULT_SEED = 42


class TrainingConfigError(ValueError):
    """A config value the trainer cannot turn into TrainingArguments."""


def _available(package: str) -> bool:
    """Import check without importing (bitsandbytes initialises CUDA on import)."""
    return importlib.util.find_spec(package) is not None


def param_group_keys(cfg: AxolotlConfig) -> list[str]:
    """The keys set in `cfg` that make `axolotl.training.optimizer` build the parameter groups."""
    keys = ("lr_groups", "embedding_lr", "embedding_lr_scale", "loraplus_lr_ratio")
    return [key for key in keys if getattr(cfg, key) not in (None, [])]


def optimizer_name(cfg: AxolotlConfig) -> str:
    """The transformers `optim` for `cfg.optimizer`, refusing what this trainer cannot run."""
    from transformers.training_args import OptimizerNames

    from axolotl.config.enums import CUSTOM_OPTIMIZERS

    name = cfg.optimizer or "adamw_torch_fused"
    known = {member.value for member in OptimizerNames}
    if name not in known:
        if name in CUSTOM_OPTIMIZERS:
            raise TrainingConfigError(f"`optimizer: {name}` (one of the reference's own optimizers) is not "
                                      "supported yet by `axolotl train`; use one of transformers' optimizers: "
                                      f"{', '.join(sorted(known))}")
        raise TrainingConfigError(f"`optimizer: {name}` is not an optimizer transformers {_transformers_version()} "
                                  f"knows; use one of {', '.join(sorted(known))}")
    if name in OPTIMIZER_PACKAGES:
        package, install = OPTIMIZER_PACKAGES[name]
        if not _available(package):
            raise TrainingConfigError(f"`optimizer: {name}` needs the `{package}` package, which is not installed; "
                                      f"install {install}, or use `optimizer: adamw_torch_fused`")
    grouped = param_group_keys(cfg)
    if grouped and name in SELF_GROUPING_OPTIMIZERS:
        raise TrainingConfigError(f"`optimizer: {name}` builds its own parameter groups, so "
                                  f"{', '.join(f'`{k}`' for k in grouped)} cannot apply; remove them or choose "
                                  "another optimizer")
    if name in LOW_RANK_OPTIMIZERS:
        if not cfg.optim_target_modules:
            raise TrainingConfigError(f"`optimizer: {name}` needs `optim_target_modules` (a list of module names "
                                      "or `all_linear`)")
        if name.endswith("layerwise") and (cfg.gradient_accumulation_steps or 1) > 1:
            raise TrainingConfigError(f"`optimizer: {name}` steps each layer during the backward pass, so it "
                                      "cannot accumulate gradients; set `gradient_accumulation_steps: 1`")
    elif cfg.optim_target_modules:
        raise TrainingConfigError(f"`optim_target_modules` is only used by the GaLore/APOLLO optimizers "
                                  f"(`optimizer: {name}` ignores it); remove it")
    if name in SCHEDULE_FREE_OPTIMIZERS:
        if cfg.explicitly_set("lr_scheduler") and cfg.lr_scheduler != "constant":
            raise TrainingConfigError(f"`optimizer: {name}` replaces the schedule (it warms up itself over "
                                      f"`warmup_steps`); use `lr_scheduler: constant` (got `{cfg.lr_scheduler}`)")
        if cfg.warmup_ratio is not None:
            raise TrainingConfigError(f"`optimizer: {name}` takes its warmup as a number of steps; use "
                                      "`warmup_steps` instead of `warmup_ratio`")
    return name


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


@dataclass(frozen=True)
class Schedule:
    """The learning-rate schedule a config asks for.

    `hf_type` is transformers' `lr_scheduler_type` with `kwargs` as its `lr_scheduler_kwargs`, or
    None for our own schedules (`schedulers.SCHEDULES[name]`, called with `kwargs`), which
    `AxolotlTrainer.create_scheduler` builds."""

    name: str
    hf_type: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)


def _only_for(cfg: AxolotlConfig, key: str, allowed: tuple[str, ...], name: str) -> None:
    if getattr(cfg, key) not in (None, False) and name not in allowed:
        raise TrainingConfigError(f"`{key}` only applies to `lr_scheduler: {' | '.join(allowed)}` (got `{name}`)")


def scheduler(cfg: AxolotlConfig) -> Schedule:
    """The schedule for `cfg.lr_scheduler` and the keys that shape it (`cosine_min_lr_ratio`,
    `cosine_constant_lr_ratio`, `lr_quadratic_warmup`, `lr_div_factor`)."""
    from axolotl.training.schedulers import SCHEDULES, options

    name = cfg.lr_scheduler or "cosine"
    if optimizer_is_schedule_free(cfg) and not cfg.explicitly_set("lr_scheduler"):
        name = "constant"
    if name not in TRANSFORMERS_SCHEDULERS and name not in SCHEDULES:
        raise TrainingConfigError(f"`lr_scheduler: {name}` is not a schedule `axolotl train` knows; use one of "
                                  f"{', '.join(sorted(TRANSFORMERS_SCHEDULERS | set(SCHEDULES)))}")
    cosines = ("cosine", "cosine_with_min_lr")
    _only_for(cfg, "cosine_min_lr_ratio", (*cosines, "cosine_warmup_with_min_lr", "warmup_stable_decay", "rex"), name)
    _only_for(cfg, "cosine_constant_lr_ratio", cosines, name)
    _only_for(cfg, "lr_quadratic_warmup", cosines, name)
    _only_for(cfg, "lr_div_factor", ("one_cycle",), name)
    kwargs = dict(cfg.lr_scheduler_kwargs or {})
    min_ratio = cfg.cosine_min_lr_ratio
    if name in cosines and (cfg.cosine_constant_lr_ratio is not None or cfg.lr_quadratic_warmup):
        if cfg.cosine_constant_lr_ratio is not None and min_ratio is None:
            raise TrainingConfigError("`cosine_constant_lr_ratio` holds the lr at `cosine_min_lr_ratio` from that "
                                      "point of training on; set `cosine_min_lr_ratio` too")
        floor = kwargs.pop("min_lr_rate", 0.0) if min_ratio is None else min_ratio  # transformers' spelling
        return _custom("cosine", {"min_ratio": floor, "constant_ratio": cfg.cosine_constant_lr_ratio,
                                  "quadratic_warmup": bool(cfg.lr_quadratic_warmup)}, kwargs, options)
    if name == "rex":
        return _custom("rex", {"min_ratio": min_ratio or 0.0}, kwargs, options)
    if name == "one_cycle":
        return _custom("one_cycle", {"div_factor": cfg.lr_div_factor or 25.0}, kwargs, options)
    if name == "cosine" and min_ratio is not None:
        name = "cosine_with_min_lr"
    if min_ratio is not None and name in MIN_LR_KEY:
        kwargs.setdefault(MIN_LR_KEY[name], min_ratio)
    if name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr") and not {"min_lr", "min_lr_rate"} & kwargs.keys():
        raise TrainingConfigError(f"`lr_scheduler: {name}` needs `cosine_min_lr_ratio` (or "
                                  "`lr_scheduler_kwargs.min_lr_rate`)")
    if name == "warmup_stable_decay" and "num_decay_steps" not in kwargs:
        raise TrainingConfigError("`lr_scheduler: warmup_stable_decay` needs `lr_scheduler_kwargs.num_decay_steps` "
                                  "(steps of the final decay)")
    return Schedule(name, name, kwargs)


def _custom(name: str, from_keys: dict[str, Any], extra: dict[str, Any], options: Any) -> Schedule:
    """One of our schedules: options set by config keys, plus the rest from `lr_scheduler_kwargs`."""
    accepted = [option for option in options(name) if option not in from_keys]
    unknown = sorted(set(extra) - set(accepted))
    if unknown:
        raise TrainingConfigError(f"`lr_scheduler_kwargs` {unknown} are not options of `lr_scheduler: {name}`; it "
                                  f"accepts {accepted or 'none'} there (the others come from `cosine_min_lr_ratio`, "
                                  "`cosine_constant_lr_ratio`, `lr_quadratic_warmup`, `lr_div_factor`)")
    return Schedule(name, None, {**extra, **from_keys})


def optimizer_is_schedule_free(cfg: AxolotlConfig) -> bool:
    return cfg.optimizer in SCHEDULE_FREE_OPTIMIZERS


def gc_interval(cfg: AxolotlConfig) -> int:
    """`gc_steps` (or its other spelling `gc_collect_steps`): N > 0 every N steps, -1 at epoch ends and
    before evaluations, 0 (default) never."""
    steps, other = cfg.gc_steps, cfg.gc_collect_steps
    if steps is not None and other is not None and steps != other:
        raise TrainingConfigError(f"`gc_steps: {steps}` and `gc_collect_steps: {other}` disagree; set only one")
    return steps if steps is not None else (other or 0)


def report_to(cfg: AxolotlConfig) -> list[str]:
    """Trackers to log to; a tracker whose package is missing is an error, not a silent no-op."""
    chosen = []
    for flag, (name, package) in TRACKERS.items():
        if getattr(cfg, flag):
            if not _available(package):
                raise TrainingConfigError(f"`{flag}: true` needs the `{package}` package; install the "
                                          f"`{package}` extra or set `{flag}: false`")
            chosen.append(name)
    return chosen or ["none"]


def _per_epoch(count: int | None, cfg: AxolotlConfig) -> tuple[str, float] | None:
    """`N per epoch` as transformers' fractional steps (a ratio of all training steps)."""
    if count is None:
        return None
    epochs = 1.0 if cfg.max_steps else cfg.num_epochs
    ratio = 1.0 / (count * epochs)
    return ("epoch", 0.0) if ratio >= 1.0 else ("steps", ratio)


def _interval(strategy: str | None, steps: float | None, per_epoch: int | None, cfg: AxolotlConfig,
              default: str) -> tuple[str, float | None]:
    """Resolve a (strategy, steps) pair from the explicit strategy, fixed steps or a per-epoch count."""
    if strategy is not None:
        return strategy, steps
    if steps is not None:
        return "steps", steps
    resolved = _per_epoch(per_epoch, cfg)
    if resolved is not None:
        return resolved[0], resolved[1] or None
    return default, None


def _has_accelerator() -> bool:
    """transformers refuses bf16 autocast unless told explicitly that the run is on CPU."""
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


def _optim_args(value: str | dict[str, Any] | None) -> str | None:
    """transformers takes `optim_args` as `k=v,k=v`; a dict in YAML is the friendlier spelling."""
    if isinstance(value, dict):
        bad = [k for k, v in value.items() if any(c in f"{k}{v}" for c in ",= ")]
        if bad:
            raise TrainingConfigError(f"`optim_args` {bad}: keys and values cannot contain `,`, `=` or spaces "
                                      "(transformers reads them as `key=value,key=value`)")
        return ",".join(f"{k}={v}" for k, v in value.items())
    return value


def build_training_args(cfg: AxolotlConfig, has_eval: bool) -> TrainingArguments:
    """TrainingArguments for `cfg`; `has_eval` says whether prepared data has an eval split."""
    from transformers import TrainingArguments

    kwargs = training_args_kwargs(cfg, has_eval)
    if cfg.reward_model:  # TRL's RewardTrainer reads its settings from a TrainingArguments subclass
        from axolotl.training.reward import reward_config

        return reward_config(cfg, kwargs)
    return TrainingArguments(**kwargs)


def training_args_kwargs(cfg: AxolotlConfig, has_eval: bool) -> dict[str, Any]:
    """The keyword arguments of `build_training_args`; the preference trainers' TRL configs (subclasses
    of TrainingArguments) are built from the same mapping (`axolotl.training.preference_args`)."""
    precision = resolve_precision(cfg)
    schedule = scheduler(cfg)
    eval_strategy, eval_steps = _interval(cfg.eval_strategy, cfg.eval_steps, cfg.evals_per_epoch, cfg, "epoch")
    if not has_eval:
        if cfg.eval_strategy not in (None, "no") or cfg.load_best_model_at_end or cfg.early_stopping_patience:
            raise TrainingConfigError("evaluation is configured (eval_strategy / load_best_model_at_end / "
                                      "early_stopping_patience) but there is no eval data; set `val_set_size` "
                                      "or `test_datasets`")
        eval_strategy, eval_steps = "no", None
    if schedule.name == "reduce_lr_on_plateau" and eval_strategy == "no":
        raise TrainingConfigError("`lr_scheduler: reduce_lr_on_plateau` lowers the lr when the eval loss stops "
                                  "improving, so it needs evaluation (`val_set_size`, `eval_steps` or "
                                  "`evals_per_epoch`)")
    save_strategy, save_steps = _interval(cfg.save_strategy, cfg.save_steps, cfg.saves_per_epoch, cfg, "epoch")
    kwargs: dict[str, Any] = {
        "output_dir": cfg.output_dir,
        "per_device_train_batch_size": cfg.micro_batch_size or 1,
        "per_device_eval_batch_size": cfg.eval_batch_size or cfg.micro_batch_size or 1,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps or 1,
        "num_train_epochs": cfg.num_epochs,
        "max_steps": cfg.max_steps or -1,
        "learning_rate": float(cfg.learning_rate),
        # our own schedules are built by AxolotlTrainer.create_scheduler; "constant" is a placeholder
        "lr_scheduler_type": schedule.hf_type or "constant",
        "lr_scheduler_kwargs": schedule.kwargs if schedule.hf_type else {},
        "warmup_steps": cfg.warmup_steps if cfg.warmup_steps is not None else (cfg.warmup_ratio or 0),
        "weight_decay": cfg.weight_decay or 0.0,
        "optim": optimizer_name(cfg),
        "optim_args": _optim_args(cfg.optim_args),
        "optim_target_modules": cfg.optim_target_modules,
        "seed": DEFAULT_SEED if cfg.seed is None else cfg.seed,
        "logging_steps": cfg.logging_steps or 1,
        "eval_strategy": eval_strategy,
        "save_strategy": save_strategy,
        "save_only_model": bool(cfg.save_only_model),
        "load_best_model_at_end": bool(cfg.load_best_model_at_end),
        "bf16": precision.mixed and str(precision.compute) == "torch.bfloat16",
        "fp16": precision.mixed and str(precision.compute) == "torch.float16",
        "bf16_full_eval": cfg.bf16 == "full",
        "report_to": report_to(cfg),
        "include_num_input_tokens_seen": "non_padding",
        "average_tokens_across_devices": True,
        "label_names": ["labels"],
        "train_sampling_strategy": "group_by_length" if cfg.group_by_length else "random",
        "length_column_name": "length",
        "use_cpu": not _has_accelerator(),
    }
    optional = {
        "max_grad_norm": cfg.max_grad_norm, "adam_beta1": cfg.adam_beta1, "adam_beta2": cfg.adam_beta2,
        "adam_epsilon": cfg.adam_epsilon, "eval_steps": eval_steps, "save_steps": save_steps,
        "save_total_limit": cfg.save_total_limit, "metric_for_best_model": cfg.metric_for_best_model,
        "greater_is_better": cfg.greater_is_better, "eval_on_start": cfg.eval_on_start,
        "full_determinism": cfg.full_determinism, "auto_find_batch_size": cfg.auto_find_batch_size,
        "logging_nan_inf_filter": cfg.logging_nan_inf_filter, "neftune_noise_alpha": cfg.neftune_noise_alpha,
        "dataloader_num_workers": cfg.dataloader_num_workers, "dataloader_pin_memory": cfg.dataloader_pin_memory,
        "dataloader_prefetch_factor": cfg.dataloader_prefetch_factor,
        "dataloader_drop_last": cfg.dataloader_drop_last, "torch_empty_cache_steps": cfg.torch_empty_cache_steps,
        "ddp_timeout": cfg.ddp_timeout, "ddp_bucket_cap_mb": cfg.ddp_bucket_cap_mb,
        "ddp_broadcast_buffers": cfg.ddp_broadcast_buffers,
        "ddp_find_unused_parameters": cfg.ddp_find_unused_parameters,
        "run_name": cfg.wandb_name or cfg.mlflow_run_name,
        "tf32": True if cfg.tf32 is True else None,
    }
    kwargs.update({key: value for key, value in optional.items() if value is not None})
    from axolotl.training.parallel import distributed_kwargs  # imports this module

    kwargs.update(distributed_kwargs(cfg))
    if cfg.early_stopping_patience and "metric_for_best_model" not in kwargs:
        kwargs["metric_for_best_model"] = "eval_loss"
    return kwargs


def _local_mlflow_store(uri: str | None) -> bool:
    """A `file:` URI or a filesystem path: MLflow's file store."""
    return uri is not None and uri.startswith(("file:", "/", "./", "../", "~"))


def tracker_environment(cfg: AxolotlConfig) -> dict[str, str]:
    """Environment variables transformers' W&B / MLflow integrations read their settings from.

    A `file:` `mlflow_tracking_uri` also sets `MLFLOW_ALLOW_FILE_STORE=true` (unless the environment
    already says otherwise): recent MLflow 3 releases refuse their file store without it, and the config
    asked for one."""
    pairs = {
        "WANDB_PROJECT": cfg.wandb_project, "WANDB_ENTITY": cfg.wandb_entity, "WANDB_MODE": cfg.wandb_mode,
        "WANDB_RUN_ID": cfg.wandb_run_id, "WANDB_LOG_MODEL": cfg.wandb_log_model,
        "MLFLOW_TRACKING_URI": cfg.mlflow_tracking_uri, "MLFLOW_EXPERIMENT_NAME": cfg.mlflow_experiment_name,
        "HF_MLFLOW_LOG_ARTIFACTS": None if cfg.hf_mlflow_log_artifacts is None
        else str(bool(cfg.hf_mlflow_log_artifacts)).lower(),
        "MLFLOW_ALLOW_FILE_STORE": os.environ.get("MLFLOW_ALLOW_FILE_STORE", "true")
        if cfg.use_mlflow and _local_mlflow_store(cfg.mlflow_tracking_uri) else None,
    }
    return {key: str(value) for key, value in pairs.items() if value is not None}

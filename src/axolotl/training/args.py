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
| warmup_steps / warmup_ratio                  | warmup_steps (an int, or a ratio < 1)               |
| optimizer, optim_args                        | optim, optim_args                                   |
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

Everything else of the training settings is refused in `axolotl.training.support`.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Any

from axolotl.models.precision import resolve_precision

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from axolotl.config.schema import AxolotlConfig

SCHEDULERS: dict[str, str] = {
    "cosine": "cosine", "linear": "linear", "constant": "constant",
    "constant_with_warmup": "constant_with_warmup", "cosine_with_min_lr": "cosine_with_min_lr",
}
"""Our scheduler names -> transformers' `lr_scheduler_type`."""

PLAIN_OPTIMIZERS = frozenset({"adamw_torch", "adamw_torch_fused", "sgd", "adafactor", "adagrad", "rmsprop"})
"""Optimizers that need nothing beyond torch/transformers."""

BNB_OPTIMIZERS = frozenset({
    "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "lion_8bit", "lion_32bit",
    "paged_lion_8bit", "paged_lion_32bit", "ademamix", "ademamix_8bit", "paged_ademamix_8bit",
    "paged_ademamix_32bit", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit",
})
"""Optimizers implemented by bitsandbytes (checked before the model is loaded)."""

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


def optimizer_name(cfg: AxolotlConfig) -> str:
    """The transformers `optim` for `cfg.optimizer`, refusing what this trainer cannot run."""
    from transformers.training_args import OptimizerNames

    name = cfg.optimizer or "adamw_torch_fused"
    known = {member.value for member in OptimizerNames}
    if name in PLAIN_OPTIMIZERS:
        return name
    if name in BNB_OPTIMIZERS:
        if not _available("bitsandbytes"):
            raise TrainingConfigError(f"`optimizer: {name}` needs bitsandbytes, which is not installed; install "
                                      "the `qlora` extra or use `optimizer: adamw_torch_fused`")
        return name
    where = "transformers optimizer" if name in known else "optimizer in transformers' OptimizerNames"
    raise TrainingConfigError(f"`optimizer: {name}` is not supported yet by `axolotl train` (a {where} this "
                              f"trainer does not run); use one of {sorted(PLAIN_OPTIMIZERS | BNB_OPTIMIZERS)}")


def scheduler(cfg: AxolotlConfig) -> tuple[str, dict[str, Any]]:
    """`(lr_scheduler_type, lr_scheduler_kwargs)`; `cosine_min_lr_ratio` turns cosine into cosine-with-floor."""
    name = cfg.lr_scheduler or "cosine"
    if name not in SCHEDULERS:
        raise TrainingConfigError(f"`lr_scheduler: {name}` is not supported yet by `axolotl train`; "
                                  f"use one of {sorted(SCHEDULERS)}")
    kwargs = dict(cfg.lr_scheduler_kwargs or {})
    if cfg.cosine_min_lr_ratio is not None:
        if name not in ("cosine", "cosine_with_min_lr"):
            raise TrainingConfigError(f"`cosine_min_lr_ratio` needs `lr_scheduler: cosine` (got `{name}`)")
        name = "cosine_with_min_lr"
        kwargs.setdefault("min_lr_rate", cfg.cosine_min_lr_ratio)
    elif name == "cosine_with_min_lr" and not {"min_lr", "min_lr_rate"} & kwargs.keys():
        raise TrainingConfigError("`lr_scheduler: cosine_with_min_lr` needs `cosine_min_lr_ratio` (or "
                                  "`lr_scheduler_kwargs.min_lr_rate`)")
    return SCHEDULERS[name], kwargs


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
        return ",".join(f"{k}={v}" for k, v in value.items())
    return value


def build_training_args(cfg: AxolotlConfig, has_eval: bool) -> TrainingArguments:
    """TrainingArguments for `cfg`; `has_eval` says whether prepared data has an eval split."""
    from transformers import TrainingArguments

    precision = resolve_precision(cfg)
    sched, sched_kwargs = scheduler(cfg)
    eval_strategy, eval_steps = _interval(cfg.eval_strategy, cfg.eval_steps, cfg.evals_per_epoch, cfg, "epoch")
    if not has_eval:
        if cfg.eval_strategy not in (None, "no") or cfg.load_best_model_at_end or cfg.early_stopping_patience:
            raise TrainingConfigError("evaluation is configured (eval_strategy / load_best_model_at_end / "
                                      "early_stopping_patience) but there is no eval data; set `val_set_size` "
                                      "or `test_datasets`")
        eval_strategy, eval_steps = "no", None
    save_strategy, save_steps = _interval(cfg.save_strategy, cfg.save_steps, cfg.saves_per_epoch, cfg, "epoch")
    kwargs: dict[str, Any] = {
        "output_dir": cfg.output_dir,
        "per_device_train_batch_size": cfg.micro_batch_size or 1,
        "per_device_eval_batch_size": cfg.eval_batch_size or cfg.micro_batch_size or 1,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps or 1,
        "num_train_epochs": cfg.num_epochs,
        "max_steps": cfg.max_steps or -1,
        "learning_rate": float(cfg.learning_rate),
        "lr_scheduler_type": sched,
        "lr_scheduler_kwargs": sched_kwargs,
        "warmup_steps": cfg.warmup_steps if cfg.warmup_steps is not None else (cfg.warmup_ratio or 0),
        "weight_decay": cfg.weight_decay or 0.0,
        "optim": optimizer_name(cfg),
        "optim_args": _optim_args(cfg.optim_args),
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
    if cfg.early_stopping_patience and "metric_for_best_model" not in kwargs:
        kwargs["metric_for_best_model"] = "eval_loss"
    return TrainingArguments(**kwargs)


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

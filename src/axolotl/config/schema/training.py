"""Optimisation, schedule, batching, evaluation, checkpointing and outputs of a run."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema, field_validator

from axolotl.config.schema.base import ConfigModel

NUMBER_PATTERN = r"^\s*[+]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
"""A non-negative number written as text (YAML 1.1 reads `2e-4` as a string)."""


class LrGroup(ConfigModel):
    """A learning rate for the parameters whose names match `modules`."""

    name: str
    modules: list[str] = Field(min_length=1)
    lr: float = Field(ge=0)


class OptimizerSettings(ConfigModel):
    learning_rate: Annotated[float | str, WithJsonSchema({"anyOf": [
        {"type": "number", "minimum": 0}, {"type": "string", "pattern": NUMBER_PATTERN}]})]
    """Peak learning rate. YAML reads `2e-4` as a string; it is converted to a number."""
    optimizer: str | None = "adamw_torch_fused"
    optim_args: str | dict[str, Any] | None = None
    optim_target_modules: list[str] | Literal["all_linear"] | None = None
    weight_decay: float | None = Field(default=0.0, ge=0)
    max_grad_norm: float | None = Field(default=None, ge=0)
    adam_beta1: float | None = Field(default=None, ge=0, lt=1)
    adam_beta2: float | None = Field(default=None, ge=0, lt=1)
    adam_beta3: float | None = Field(default=None, ge=0, lt=1)
    adam_epsilon: float | None = Field(default=None, ge=0)
    adam_epsilon2: float | None = Field(default=None, ge=0)
    embedding_lr: float | None = Field(default=None, ge=0)
    embedding_lr_scale: float | None = Field(default=None, ge=0)
    lr_groups: list[LrGroup] | None = None
    lr_scheduler: str | None = "cosine"
    lr_scheduler_kwargs: dict[str, Any] | None = None
    lr_quadratic_warmup: bool | None = None
    cosine_min_lr_ratio: float | None = Field(default=None, ge=0, le=1)
    cosine_constant_lr_ratio: float | None = Field(default=None, ge=0, le=1)
    lr_div_factor: float | None = Field(default=None, gt=0)
    warmup_steps: int | None = Field(default=None, ge=0)
    warmup_ratio: float | None = Field(default=None, ge=0, lt=1)
    torchdistx_path: str | None = None

    @field_validator("learning_rate")
    @classmethod
    def _number_from_yaml_string(cls, value: float | str) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError("must be a number such as 2e-4 or 0.0002") from None
        if value < 0:
            raise ValueError("must be >= 0")
        return float(value)


class BatchSettings(ConfigModel):
    micro_batch_size: int | None = Field(default=1, gt=0)
    """Rows (or packed rows) per device per forward pass."""
    gradient_accumulation_steps: int | None = Field(default=1, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    """Derived: micro_batch_size * gradient_accumulation_steps * world_size."""
    eval_batch_size: int | None = Field(default=None, gt=0)
    auto_find_batch_size: bool | None = None
    num_epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    seed: int | None = None
    full_determinism: bool | None = None
    dataloader_pin_memory: bool | None = None
    dataloader_num_workers: int | None = Field(default=None, ge=0)
    dataloader_prefetch_factor: int | None = Field(default=None, gt=0)
    dataloader_drop_last: bool | None = None
    neftune_noise_alpha: float | None = Field(default=None, ge=0)
    noisy_embedding_alpha: float | None = None


class EvalSettings(ConfigModel):
    eval_steps: int | float | None = Field(default=None, gt=0)
    evals_per_epoch: int | None = Field(default=None, gt=0)
    eval_strategy: Literal["no", "steps", "epoch"] | None = None
    evaluation_strategy: str | None = None
    eval_on_start: bool | None = None
    eval_table_size: int | None = None
    eval_max_new_tokens: int | None = None
    do_causal_lm_eval: bool | None = None
    eval_causal_lm_metrics: list[str] | None = None
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None
    load_best_model_at_end: bool | None = False
    early_stopping_patience: int | None = Field(default=None, gt=0)
    loss_watchdog_threshold: float | None = Field(default=None, gt=0)
    loss_watchdog_patience: int | None = Field(default=None, gt=0)


class CheckpointSettings(ConfigModel):
    output_dir: str = "./model-out"
    save_steps: int | float | None = Field(default=None, gt=0)
    saves_per_epoch: int | None = Field(default=None, gt=0)
    save_strategy: Literal["no", "steps", "epoch", "best"] | None = None
    save_total_limit: int | None = Field(default=None, gt=0)
    save_first_step: bool | None = None
    save_only_model: bool | None = False
    save_safetensors: bool | None = True
    resume_from_checkpoint: str | None = None
    auto_resume_from_checkpoints: bool | None = None
    hub_model_id: str | None = None
    hub_revision: str | None = None
    hub_strategy: str | None = None
    gc_steps: int | None = Field(default=None, ge=-1)
    """Garbage-collect every N steps; -1: at epoch ends and before evaluations; 0: never."""
    gc_collect_steps: int | None = Field(default=None, ge=-1)
    """Another spelling of `gc_steps`."""
    torch_empty_cache_steps: int | None = Field(default=None, gt=0)


class RunSettings(ConfigModel):
    """Keys about the config itself and how the run is assembled."""

    strict: bool | None = False
    """When true, command-line overrides may only change keys the config file sets."""
    plugins: list[str] | None = None
    axolotl_config_path: str | None = None

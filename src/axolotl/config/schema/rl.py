"""Preference, reward and online-RL methods: `rl:`, their coefficients, `trl:` and `vllm:`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from axolotl.config.enums import RLType
from axolotl.config.schema.base import ConfigModel
from axolotl.config.schema.ebft import EBFTConfig


class TRLConfig(ConfigModel):
    """Options of the online-RL trainers (GRPO, structured EBFT)."""

    beta: float | None = Field(default=None, ge=0)
    """KL coefficient; same meaning as top-level `rl_beta`."""
    max_completion_length: int | None = Field(default=None, gt=0)

    # generation backend
    use_vllm: bool = False
    vllm_mode: Literal["server", "colocate"] | None = None
    vllm_server_host: str | None = "0.0.0.0"
    vllm_server_port: int | None = Field(default=8000, gt=0, lt=65536)
    vllm_server_timeout: int | None = Field(default=None, gt=0)
    vllm_guided_decoding_regex: str | None = None
    vllm_enable_sleep_mode: bool | None = None
    vllm_sync_interval: int | None = Field(default=None, gt=0)
    vllm_lora_sync: bool = False

    # rewards
    reward_funcs: list[str] | None = None
    """Dotted paths to reward functions importable from the working directory, or reward-model ids."""
    reward_weights: list[float] | None = None
    multi_objective_aggregation: Literal["sum_then_normalize", "normalize_then_sum"] | None = None
    reward_num_workers: int = Field(default=1, gt=0)
    rollout_func: str | None = None

    # sampling
    num_generations: int | None = Field(default=None, gt=0)
    generation_batch_size: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0)
    generation_kwargs: dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    # loss
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo"] | None = None
    num_iterations: int | None = Field(default=None, gt=0)
    epsilon: float | None = Field(default=None, ge=0)
    epsilon_high: float | None = Field(default=None, ge=0)
    scale_rewards: bool | Literal["group", "batch", "none"] = True
    mask_truncated_completions: bool = False
    importance_sampling_level: Literal["sequence", "token"] | None = None
    use_liger_loss: bool | None = None

    # reference model
    sync_ref_model: bool | None = False
    ref_model_mixup_alpha: float | None = Field(default=0.9, ge=0, le=1)
    ref_model_sync_steps: int | None = Field(default=64, gt=0)

    # asynchronous pipeline
    use_data_producer: bool = False
    async_prefetch: bool = False
    prefetch_depth: int | None = Field(default=None, ge=0)
    """Generation batches generated ahead by `async_prefetch` (1 when unset; 0: none, for checking)."""
    streaming_partial_batch: bool | None = None
    streaming_min_groups: int | None = Field(default=None, gt=0)
    skip_zero_advantage_batches: bool = True
    replay_buffer_size: int = Field(default=0, ge=0)
    replay_recompute_logps: bool = True
    reroll_start_fraction: float = Field(default=1.0, ge=0, le=1)
    reroll_max_groups: int = Field(default=1, gt=0)

    # off-policy correction
    vllm_importance_sampling_correction: bool | None = None
    vllm_importance_sampling_mode: Literal[
        "token_mask", "token_truncate", "sequence_mask", "sequence_truncate"] | None = None
    vllm_importance_sampling_cap: float | None = Field(default=None, gt=0)
    off_policy_mask_threshold: float | None = Field(default=None, gt=0)
    use_bias_correction_kl: bool | None = None

    # logging
    log_completions: bool | None = False
    num_completions_to_print: int | None = Field(default=None, gt=0)


class VllmConfig(ConfigModel):
    """The vLLM server started by `axolotl vllm-serve`."""

    device: str | None = "auto"
    tensor_parallel_size: int | None = Field(default=None, gt=0)
    data_parallel_size: int | None = Field(default=None, gt=0)
    gpu_memory_utilization: float | None = Field(default=0.9, gt=0, le=1)
    dtype: str | None = "auto"
    max_model_len: int | None = Field(default=None, gt=0)
    enable_prefix_caching: bool | None = None
    host: str | None = "127.0.0.1"
    """Address `axolotl vllm-serve` binds to: this machine only unless set (0.0.0.0 accepts remote trainers)."""
    port: int | None = Field(default=8000, gt=0, lt=65536)
    enable_reasoning: bool | None = None
    reasoning_parser: str | None = None
    enforce_eager: bool | None = None
    serve_module: str | None = None
    worker_extension_cls: str | None = None


class RLSettings(ConfigModel):
    rl: RLType | None = None
    """Preference or RL method; unset means supervised fine-tuning."""
    rl_beta: float | None = Field(default=None, ge=0)
    dpo_beta: float | None = Field(default=None, ge=0, deprecated="use `rl_beta`")
    dpo_loss_type: list[str] | None = Field(default=None, min_length=1)
    """DPO loss(es), e.g. [sigmoid] or [ipo]; several are combined with `dpo_loss_weights`."""
    dpo_loss_weights: list[float] | None = Field(default=None, min_length=1)
    dpo_label_smoothing: float | None = Field(default=None, ge=0, le=0.5)
    dpo_use_weighting: bool | None = None
    dpo_use_logits_to_keep: bool | None = None
    dpo_norm_loss: bool | None = None
    dpo_padding_free: bool | None = None
    dpo_generate_during_eval: bool | None = None
    dpo_use_liger_kernel: bool | None = None
    dpo_ld_alpha: float | None = None
    precompute_ref_log_probs: bool | None = None
    rpo_alpha: float | None = Field(default=None, ge=0)
    orpo_alpha: float | None = Field(default=None, ge=0)
    simpo_gamma: float | None = None
    cpo_alpha: float | None = Field(default=None, ge=0)
    kto_desirable_weight: float | None = Field(default=None, gt=0)
    kto_undesirable_weight: float | None = Field(default=None, gt=0)
    reward_model: bool | None = None
    process_reward_model: bool | None = None
    center_rewards_coefficient: float | None = Field(default=None, ge=0)
    trl: TRLConfig = Field(default_factory=TRLConfig)
    vllm: VllmConfig = Field(default_factory=VllmConfig)
    ebft: EBFTConfig | None = None

"""Config -> TRL's `GRPOConfig`, and what GRPO training refuses or rejects.

`GRPOConfig` subclasses `TrainingArguments`, so it starts from `training_args_kwargs` (the SFT
mapping) and adds the `trl:` keys. Unset keys keep TRL 1.16's defaults (noted in brackets).

| config key (`trl.` unless noted)                      | GRPOConfig field                                   |
|-------------------------------------------------------|----------------------------------------------------|
| beta (= top-level rl_beta)                            | beta [0.0: no reference model]                     |
| num_generations, generation_batch_size                | same [8; micro_batch_size x GPUs x grad. accum.]   |
| max_completion_length                                 | same [512]                                         |
| temperature, top_p, top_k, min_p, repetition_penalty  | same [1.0, 1.0, 0, None, 1.0]                      |
| generation_kwargs, chat_template_kwargs               | same                                               |
| epsilon, epsilon_high, num_iterations                 | same [0.2, = epsilon, 1]                           |
| loss_type                                             | same [dapo]                                        |
| scale_rewards: true / false / group / batch / none    | "group" / "none" / same                            |
| mask_truncated_completions, importance_sampling_level | same [false, token]                                |
| reward_weights, multi_objective_aggregation           | same [equal, sum_then_normalize]                   |
| sync_ref_model, ref_model_mixup_alpha, ref_model_sync_steps | same (ours default to 0.9 and 64)            |
| log_completions, num_completions_to_print             | same                                               |
| off_policy_mask_threshold                             | same                                               |
| use_vllm, vllm_mode                                   | same; vllm_mode defaults to `server`               |
| vllm_server_host, vllm_server_port, vllm_server_timeout | same                                             |
| vllm_guided_decoding_regex                            | vllm_structured_outputs_regex                      |
| vllm_enable_sleep_mode                                | same (colocate mode)                               |
| vllm_importance_sampling_correction, _mode            | same [true, sequence_mask]                         |
| vllm_importance_sampling_cap                          | vllm_importance_sampling_clip_max [3.0]            |
| use_bias_correction_kl                                | same [true]                                        |
| vllm.gpu_memory_utilization, .max_model_len, .tensor_parallel_size | colocate: vllm_gpu_memory_utilization, vllm_max_model_length, vllm_tensor_parallel_size (utilization only when written: TRL's colocate default 0.3 leaves room for training) |
| remove_unused_columns, pad_to_multiple_of (top level) | same                                               |

Done by our trainer (`axolotl.training.grpo`), not TRL: `reward_funcs` (loaded by
`axolotl.training.rewards`), `reward_num_workers`, `rollout_func`, `skip_zero_advantage_batches`,
`vllm_sync_interval`, streaming scoring, re-rolling and the replay buffer (`streaming_partial_batch`,
`streaming_min_groups`, `reroll_start_fraction`, `reroll_max_groups`, `replay_buffer_size`,
`replay_recompute_logps`, `axolotl.training.grpo_mixing`), and the data producer (`use_data_producer`,
`async_prefetch`, `prefetch_depth`, `axolotl.training.grpo_pipeline`), which also passes the importance-sampling mode and cap without
`use_vllm`. Used by data preparation: `max_prompt_len` / `sequence_len` (prompt length rule),
`skip_prepare_dataset`. Fixed: `gradient_checkpointing=False` (the model loader sets it up;
its kwargs are passed so TRL can pause and resume it), `include_num_input_tokens_seen="no"` (TRL
counts prompt + completion tokens itself). `vllm:` configures `axolotl vllm-serve`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from axolotl.process_group import launched_world_size
from axolotl.training.args import TrainingConfigError, training_args_kwargs

if TYPE_CHECKING:
    from trl import GRPOConfig

    from axolotl.config.schema import AxolotlConfig

SAME_NAME = (
    "num_generations", "generation_batch_size", "max_completion_length", "temperature", "top_p", "top_k", "min_p",
    "repetition_penalty", "generation_kwargs", "chat_template_kwargs", "epsilon", "epsilon_high", "num_iterations",
    "loss_type", "mask_truncated_completions", "importance_sampling_level", "reward_weights",
    "multi_objective_aggregation", "log_completions", "num_completions_to_print", "off_policy_mask_threshold",
)
"""`trl:` keys passed to GRPOConfig under the same name when set."""

VLLM_KEYS = {
    "vllm_server_host": "vllm_server_host", "vllm_server_port": "vllm_server_port",
    "vllm_server_timeout": "vllm_server_timeout", "vllm_guided_decoding_regex": "vllm_structured_outputs_regex",
    "vllm_enable_sleep_mode": "vllm_enable_sleep_mode",
    "vllm_importance_sampling_correction": "vllm_importance_sampling_correction",
    "vllm_importance_sampling_mode": "vllm_importance_sampling_mode",
    "vllm_importance_sampling_cap": "vllm_importance_sampling_clip_max", "use_bias_correction_kl": "use_bias_correction_kl",
}
"""`trl:` key -> GRPOConfig field, for the vLLM generation backend."""

PRODUCER_IS_KEYS = ("vllm_importance_sampling_mode", "vllm_importance_sampling_cap", "use_bias_correction_kl")
"""`trl:` keys of TRL's vLLM importance-sampling correction that the data producer's correction reads."""

TRL_DEFAULT_NUM_GENERATIONS = 8
COLOCATE_VLLM_KEYS = frozenset({"gpu_memory_utilization", "max_model_len", "tensor_parallel_size"})
"""`vllm:` keys that reach the engine TRL starts inside the trainer in colocate mode."""


def _on(value: Any) -> bool:
    return value not in (None, False, "", [], {}, 0)


PRODUCER_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "use_data_producer": (_on, "the data-producer protocol"),
    "async_prefetch": (_on, "generating the next batch in a background thread"),
    "prefetch_depth": (lambda v: v is not None, "generating batches ahead"),
}
"""`trl:` keys of the data producer (`axolotl.training.grpo_pipeline`): built for `rl: grpo` with the
transformers backend; refused elsewhere (structured EBFT runs its own trainer)."""

ASYNC_REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "vllm_lora_sync": (_on, ("LoRA adapter sync through the filesystem (TRL 1.16 pushes the adapter merged into "
                             "the weights over NCCL: remove the key to use that)")),
    "use_liger_loss": (_on, "the Liger fused GRPO loss (TRL 1.16 computes log-probs in chunks already)"),
}
"""`trl:` key -> (is it turned on?, the feature it asks for): not in TRL 1.16 and not built here yet."""

TOP_LEVEL_REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "sample_packing": (_on, "packing (GRPO batches are generated completions)"),
    "eval_sample_packing": (_on, "packing (GRPO batches are generated completions)"),
    "pad_to_sequence_len": (_on, "padding GRPO batches to sequence_len"),
    "group_by_length": (_on, "length-grouped sampling of prompts"),
    "chunked_cross_entropy": (_on, "the chunked SFT loss (TRL computes the GRPO loss)"),
    "neftune_noise_alpha": (_on, "NEFTune noise (it would also reach generation)"),
    "activation_offloading": (_on, "activation offloading in GRPO training"),
    "gradient_checkpointing": (lambda v: v in ("offload", "offload_disk"), ("offloading checkpointed activations "
                               "in GRPO training; use `gradient_checkpointing: true`")),
    "qat": (lambda v: v is not None, "quantisation-aware GRPO training"),
    "train_on_inputs": (lambda v: v is True, "training on prompt tokens (GRPO scores generated completions)"),
    "auto_find_batch_size": (_on, "auto_find_batch_size (a smaller batch would split prompt groups)"),
    "chat_template_kwargs": (_on, "the top-level `chat_template_kwargs` with GRPO; set `trl.chat_template_kwargs`"),
}
"""Top-level key -> (is it turned on?, the feature it asks for), refused with `rl: grpo`."""


def producer_refusals(cfg: AxolotlConfig) -> list[str]:
    """What the data producer (`trl.use_data_producer`) cannot be combined with yet."""
    trl = cfg.trl
    if str(cfg.rl) != "grpo":
        return [f"`trl.{key}` is not supported yet with `rl: grpo` ({feature})"
                for key, (is_on, feature) in PRODUCER_KEYS.items() if is_on(getattr(trl, key))]
    if not trl.use_data_producer:
        return []
    clash = {
        "trl.use_vllm": (trl.use_vllm, ("generation through vLLM (the producer generates with a copy of the "
                                        "policy on the transformers backend)")),
        "trl.rollout_func": (trl.rollout_func, "a custom rollout function"),
        "deepspeed / fsdp": (cfg.deepspeed or cfg.fsdp or cfg.fsdp_config is not None,
                             "sharded models (the producer's copy of the policy is unsharded)"),
    }
    return [f"`trl.use_data_producer` is not supported yet with `{key}` ({feature})"
            for key, (value, feature) in clash.items() if value]


MIXING_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "streaming_partial_batch": (_on, "scoring prompt groups incrementally"),
    "replay_buffer_size": (_on, "the replay buffer"),
    "reroll_start_fraction": (lambda v: v < 1.0, "re-rolling failed prompts"),
}
"""`trl:` keys of `axolotl.training.grpo_mixing`: built for `rl: grpo` only (structured EBFT runs its
own trainer); their companion keys are checked by the config rules."""


def mixing_refusals(cfg: AxolotlConfig) -> list[str]:
    """Outside `rl: grpo` the mixing keys are refused. Streaming scoring and re-rolling score parts of
    a batch on their own (`grpo_mixing`), so batch-wide reward statistics would change meaning."""
    trl = cfg.trl
    if str(cfg.rl) != "grpo":
        return [f"`trl.{key}` is not supported yet with `rl: grpo` ({feature})"
                for key, (is_on, feature) in MIXING_KEYS.items() if is_on(getattr(trl, key))]
    features = [key for key, on in (("streaming_partial_batch", trl.streaming_partial_batch),
                                    ("reroll_start_fraction", trl.reroll_start_fraction < 1.0)) if on]
    batch_wide = [setting for setting, on in (("scale_rewards: batch", trl.scale_rewards == "batch"),
                                              ("multi_objective_aggregation: normalize_then_sum",
                                               trl.multi_objective_aggregation == "normalize_then_sum")) if on]
    return [f"`trl.{key}` is not supported yet with `trl.{setting}` (it scores part of a batch on its own, and "
            "this setting normalises rewards over the whole batch)" for key in features for setting in batch_wide]


def grpo_refusals(cfg: AxolotlConfig) -> list[str]:
    """One message per key of `cfg` that GRPO training cannot honour yet."""
    messages = producer_refusals(cfg)
    messages += [f"`trl.{key}` is not supported yet with `rl: grpo` ({feature})"
                 for key, (is_on, feature) in ASYNC_REFUSED.items()
                 if is_on(getattr(cfg.trl, key))]
    messages += mixing_refusals(cfg)
    messages += [f"`{key}` is not supported yet with `rl: grpo` ({feature})"
                 for key, (is_on, feature) in TOP_LEVEL_REFUSED.items()
                 if key in type(cfg).model_fields and is_on(getattr(cfg, key))]
    if cfg.eval_sequence_len not in (None, cfg.sequence_len):
        messages.append("`eval_sequence_len` is not supported yet with `rl: grpo` (eval prompts are prepared with "
                        "the training limit)")
    if cfg.trl.sync_ref_model and cfg.adapter:
        messages.append(f"`trl.sync_ref_model` is not supported yet with `adapter: {cfg.adapter}` (the reference is "
                        "the base model with the adapter switched off; there is no copy to sync)")
    if cfg.trl.use_vllm and cfg.trl.vllm_mode == "colocate":
        unused = sorted(key for key in cfg.vllm.model_fields_set if key not in COLOCATE_VLLM_KEYS)
        if unused:
            messages.append(f"`vllm.{', vllm.'.join(unused)}` not supported yet with `trl.vllm_mode: colocate` (the "
                            "engine inside the trainer takes only gpu_memory_utilization, max_model_len and "
                            "tensor_parallel_size)")
    return messages


def generation_batch(cfg: AxolotlConfig, world_size: int = 1) -> int:
    """Completions generated per generation step, as TRL derives it."""
    return cfg.trl.generation_batch_size or (cfg.micro_batch_size or 1) * world_size * (cfg.gradient_accumulation_steps or 1)


def check_grpo_config(cfg: AxolotlConfig, world_size: int | None = None) -> None:
    """Combinations TRL would reject after the model has loaded, and a missing vLLM, raised up front.
    `world_size` defaults to the launcher's WORLD_SIZE (1 for a single process)."""
    world_size = world_size or launched_world_size()
    trl = cfg.trl
    groups = trl.num_generations or TRL_DEFAULT_NUM_GENERATIONS
    problems = []
    batch = generation_batch(cfg, world_size)
    if batch % groups:
        source = "trl.generation_batch_size" if trl.generation_batch_size else \
            "micro_batch_size x gradient_accumulation_steps"
        problems.append(f"{source} gives {batch} completions per generation step, not a multiple of "
                        f"trl.num_generations ({groups}{', TRL default' if not trl.num_generations else ''}); each "
                        "prompt needs its whole group of completions")
    if trl.generation_batch_size and trl.generation_batch_size % ((cfg.micro_batch_size or 1) * world_size):
        problems.append(f"trl.generation_batch_size ({trl.generation_batch_size}) must be a multiple of "
                        f"micro_batch_size x GPUs ({(cfg.micro_batch_size or 1) * world_size})")
    has_eval = bool(cfg.val_set_size or cfg.test_datasets)
    eval_batch = (cfg.eval_batch_size or cfg.micro_batch_size or 1) * world_size
    if has_eval and eval_batch % groups:
        problems.append(f"the eval batch (eval_batch_size x GPUs = {eval_batch}) must be a multiple of "
                        f"trl.num_generations ({groups}): evaluation generates whole groups too")
    if trl.sync_ref_model and not cfg.rl_beta:
        problems.append("`trl.sync_ref_model` needs a KL term (`trl.beta` > 0): with beta 0 there is no reference")
    if problems:
        raise TrainingConfigError("; ".join(problems))
    if trl.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ImportError("`trl.use_vllm: true` needs vLLM in the training environment too (TRL's client and weight "
                          "sync use it): `pip install axolotl[vllm]` on a CUDA machine, or remove `use_vllm` to "
                          "generate with transformers")


def _vllm_kwargs(cfg: AxolotlConfig) -> dict[str, Any]:
    trl = cfg.trl
    if not trl.use_vllm:
        return {}
    kwargs: dict[str, Any] = {"use_vllm": True, "vllm_mode": trl.vllm_mode or "server"}
    kwargs.update({field: getattr(trl, key) for key, field in VLLM_KEYS.items() if getattr(trl, key) is not None})
    if kwargs["vllm_mode"] == "colocate":
        vllm = cfg.vllm
        if vllm.explicitly_set("gpu_memory_utilization"):
            kwargs["vllm_gpu_memory_utilization"] = vllm.gpu_memory_utilization
        if vllm.max_model_len:
            kwargs["vllm_max_model_length"] = vllm.max_model_len
        if vllm.tensor_parallel_size:
            kwargs["vllm_tensor_parallel_size"] = vllm.tensor_parallel_size
    return kwargs


def grpo_kwargs(cfg: AxolotlConfig) -> dict[str, Any]:
    """The GRPO-specific GRPOConfig keyword arguments of `cfg` (see the table above)."""
    trl = cfg.trl
    kwargs: dict[str, Any] = {key: getattr(trl, key) for key in SAME_NAME if getattr(trl, key) is not None}
    if cfg.rl_beta is not None:
        kwargs["beta"] = float(cfg.rl_beta)
    scale = trl.scale_rewards
    kwargs["scale_rewards"] = {True: "group", False: "none"}.get(scale, scale) if isinstance(scale, bool) else scale
    if trl.sync_ref_model:
        kwargs.update(sync_ref_model=True, ref_model_mixup_alpha=trl.ref_model_mixup_alpha,
                      ref_model_sync_steps=trl.ref_model_sync_steps)
    if cfg.remove_unused_columns is not None:
        kwargs["remove_unused_columns"] = cfg.remove_unused_columns
    if cfg.pad_to_multiple_of:
        kwargs["pad_to_multiple_of"] = cfg.pad_to_multiple_of
    kwargs.update(_vllm_kwargs(cfg))
    if trl.use_data_producer and not trl.use_vllm:  # the producer's off-policy correction reads TRL's fields
        kwargs.update({VLLM_KEYS[key]: getattr(trl, key) for key in PRODUCER_IS_KEYS if getattr(trl, key) is not None})
    return kwargs


def build_grpo_args(cfg: AxolotlConfig, has_eval: bool) -> GRPOConfig:
    """TRL's GRPOConfig for `cfg`; `has_eval` as in `build_training_args`."""
    from trl import GRPOConfig

    kwargs = training_args_kwargs(cfg, has_eval)
    kwargs.update(gradient_checkpointing=False, include_num_input_tokens_seen="no")
    if cfg.gradient_checkpointing:
        kwargs["gradient_checkpointing_kwargs"] = {"use_reentrant": False, **(cfg.gradient_checkpointing_kwargs or {})}
    kwargs.update(grpo_kwargs(cfg))
    try:
        return GRPOConfig(**kwargs)
    except ValueError as error:  # TRL's own consistency checks
        raise TrainingConfigError(f"GRPO settings: {error}") from None

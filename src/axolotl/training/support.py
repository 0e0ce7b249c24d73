"""What the SFT trainer does not implement yet, refused in one message before anything loads.

The config layer (`axolotl.config.support`) already refuses features no part of this build
implements. This module adds the keys that belong to the trainer's scope but that this first
trainer leaves out (optimizer tricks, in-training generation,
...). They are checked before the tokenizer, the data or the model are touched, so a refused
run costs no time and never silently ignores a key.

Every key of the training, precision, memory and checkpoint settings is either mapped in
`axolotl.training.args` (the distributed engines in `axolotl.training.parallel`; others by the
model/adapter/data layers) or listed here; see the table in
`MAPPED_ELSEWHERE` and `REFUSED`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from axolotl.training.preference_args import PREFERENCE_METHODS, preference_refusals

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig

Check = Callable[[Any], bool]


def _on(value: Any) -> bool:
    """A key is "on" when it holds anything but null/false/an empty container."""
    return value not in (None, False, "", [], {})


REFUSED: dict[str, tuple[Check, str]] = {
    # optimizer and schedule extras
    "adam_beta3": (_on, "three-beta optimizers (CAME, AdEMAMix)"),
    "adam_epsilon2": (_on, "two-epsilon optimizers (CAME)"),
    # evaluation during training beyond the loss
    "do_causal_lm_eval": (_on, "causal-LM metrics during evaluation"),
    "eval_causal_lm_metrics": (_on, "causal-LM metrics during evaluation"),
    "eval_table_size": (_on, "prediction tables during evaluation"),
    "eval_max_new_tokens": (_on, "generation during evaluation"),
    "lm_eval_post_train": (_on, "lm-eval after training; run `axolotl lm-eval CONFIG` once it is saved"),
    # checkpoints and outputs
    "save_safetensors": (lambda v: v is False, "saving in the pickle format (outputs are always safetensors)"),
    "hub_model_id": (_on, "pushing to the Hugging Face hub"),
    "hub_revision": (_on, "pushing to the Hugging Face hub"),
    "hub_strategy": (_on, "pushing to the Hugging Face hub"),
    # precision and memory extras
    "fp8_enable_fsdp_float8_all_gather": (_on, "FP8 all-gather"),
    "flex_attn_compile_kwargs": (_on, "compiling flex attention with custom options"),
    # data feeding the trainer cannot do yet
    "streaming": (_on, "streamed datasets in training"),
    "pretraining_dataset": (_on, "streamed pretraining datasets"),
    "batch_flattening": (lambda v: v is True, "batch flattening without packing"),
    "curriculum_sampling": (_on, "curriculum sampling"),
    "multipack_real_batches": (lambda v: v is False, "one long packed row per step"),
    "sample_packing_eff_est": (_on, "packing-efficiency estimates (steps are counted exactly)"),
    # tracking
    "wandb_watch": (_on, "watching gradients in W&B"),
    # extension points
    "trainer_cls": (_on, "custom trainer classes"),
}
"""Key -> (is it turned on?, the feature it asks for)."""

MAPPED_ELSEWHERE: dict[str, str] = {
    "gradient_checkpointing": "models.model", "gradient_checkpointing_kwargs": "models.model",
    "activation_offloading": "models.offload (run by the trainer)", "torch_compile": "models.compile",
    "tiled_mlp": "models.tiled_mlp", "tiled_mlp_num_shards": "models.tiled_mlp",
    "fp32_norm_classes": "models.model (refused there)",
    "bfloat16": "models.precision", "float16": "models.precision", "float32": "models.precision",
    "attn_implementation": "models.model", "lora_mlp_kernel": "models.lora_kernels",
    "lora_qkv_kernel": "models.lora_kernels", "lora_o_kernel": "models.lora_kernels",
    "lora_embedding_kernel": "models.adapters (refused there)",
    "use_ray": "cli.ray_launch (the command starts Ray Train workers; `train` itself runs in each)",
}
"""Keys of the audited modules that another layer maps (or refuses); documentation only."""


class NotSupportedYet(NotImplementedError):
    """Raised for a config that turns on a feature this trainer does not implement."""


def trainer_refusals(cfg: AxolotlConfig) -> list[str]:
    """One message per refused key that `cfg` turns on, in registry order."""
    messages = []
    for key, (is_on, feature) in REFUSED.items():
        if key in type(cfg).model_fields and is_on(getattr(cfg, key)):
            messages.append(f"`{key}` is not supported yet by `axolotl train` ({feature})")
    if cfg.reward_model or cfg.process_reward_model:
        from axolotl.training.reward import reward_refusals

        messages.extend(reward_refusals(cfg))
    if cfg.rl and str(cfg.rl) in PREFERENCE_METHODS:
        messages.extend(preference_refusals(cfg))
    if cfg.rl and str(cfg.rl) == "grpo":
        from axolotl.training.grpo_args import grpo_refusals

        messages.extend(grpo_refusals(cfg))
    if cfg.rl and str(cfg.rl) == "ebft":
        from axolotl.training.ebft_args import ebft_refusals

        messages.extend(ebft_refusals(cfg))
    return messages


def check_trainer_support(cfg: AxolotlConfig) -> None:
    """Raise `NotSupportedYet` listing every refused key, so one run reports them all."""
    messages = trainer_refusals(cfg)
    if messages:
        raise NotSupportedYet("; ".join(messages) + ". Remove these keys or set them to false/null.")

"""Reward models: what `train(cfg)` does differently for `reward_model` and `process_reward_model`.

Both run the SFT flow of `axolotl.training.sft.train` (refusals, tokenizer, prepared data,
arguments, model, trainer, outputs); this module supplies the pieces that differ.

Outcome reward model (`reward_model: true`): a sequence-classification head with one output
(`AutoModelForSequenceClassification`, `num_labels: 1`) scores a whole sequence, read at its last
non-padding token. The data are (chosen, rejected) pairs (`axolotl.data.reward.pairs`); training
is TRL's `RewardTrainer`, whose loss per pair is the Bradley-Terry loss

    -log sigmoid(r_chosen - r_rejected)  [+ center_rewards_coefficient * (r_chosen + r_rejected)^2]

averaged over the micro-batch's pairs. It logs `accuracy` (share of pairs with r_chosen >
r_rejected), `margin` and min/mean/max reward, for training and (as `eval_accuracy`, ...) for
evaluation. TRL's default of switching dropout off is kept.

Process reward model (`process_reward_model: true`): a token-classification head with two classes
(`AutoModelForTokenClassification`, `num_labels: 2`) labels each reasoning step correct (1) or
not (0) at the step's separator token (`axolotl.data.reward.stepwise`). Training is our Trainer
with a cross-entropy over the labelled tokens, summed and divided by their number over the whole
gradient-accumulation window (as the SFT loss is); evaluation adds `eval_accuracy` over steps.
Dropout is switched off, as TRL does for its reward trainers.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from axolotl.data.strategies.base import IGNORE_INDEX
from axolotl.models.model import METHOD_HEADS
from axolotl.training.progress import use_progress

if TYPE_CHECKING:
    import torch
    from transformers import EvalPrediction, PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
    from trl import RewardConfig

    from axolotl.config.schema import AxolotlConfig
    from axolotl.data.pipeline import PreparedData

REWARD_LOG_KEYS = ("accuracy", "margin", "min_reward", "mean_reward", "max_reward")
"""What the reward trainer adds to each training log (kept in metrics.json's loss history)."""


def reward_method(cfg: AxolotlConfig) -> str | None:
    return next((switch for switch in METHOD_HEADS if getattr(cfg, switch, None)), None)


def reward_refusals(cfg: AxolotlConfig) -> list[str]:
    """Settings of the SFT trainer that a reward method cannot use (messages for `NotSupportedYet`)."""
    method = reward_method(cfg)
    if method is None:
        return []
    messages = []
    if cfg.chunked_cross_entropy:
        messages.append(f"`chunked_cross_entropy` is not supported yet with `{method}` (it computes a language-model "
                        "loss)")
    if method == "reward_model":
        if cfg.sample_packing:
            messages.append("`sample_packing` is not supported yet with `reward_model` (pairs are padded)")
        if cfg.group_by_length:
            messages.append("`group_by_length` is not supported yet with `reward_model`")
        if cfg.activation_offloading:
            messages.append("`activation_offloading` is not supported yet with `reward_model`")
    return messages


def head_problems(cfg: AxolotlConfig) -> list[str]:
    """A `model_type` / `num_labels` that contradicts the method (unset ones take its defaults,
    `axolotl.models.model.METHOD_HEADS`); a concrete class such as `LlamaForSequenceClassification` is fine."""
    method = reward_method(cfg)
    if method is None:
        return []
    auto_class, labels = METHOD_HEADS[method]
    suffix = auto_class.removeprefix("AutoModel")
    problems = []
    if cfg.type_of_model and not cfg.type_of_model.endswith(suffix):
        problems.append(f"`{method}: true` trains a classification head: set `model_type: AutoModel{suffix}` "
                        f"(or leave it unset), not `{cfg.type_of_model}`")
    if cfg.num_labels is not None and cfg.num_labels != labels:
        what = "one score per sequence" if labels == 1 else "two classes per step (incorrect / correct)"
        problems.append(f"`{method}: true` needs `num_labels: {labels}` ({what}), not {cfg.num_labels}")
    return problems


# ---- outcome reward model: TRL's RewardTrainer -------------------------------------------------


def reward_config(cfg: AxolotlConfig, kwargs: dict[str, Any]) -> RewardConfig:
    """`RewardConfig` from the TrainingArguments keywords `build_training_args` derived for `cfg`.

    TRL's own defaults that would change the run are pinned: the data is already tokenized and
    length-filtered (`max_length=None`), and the model loader has already set up gradient
    checkpointing as the config asks (TRL would turn it on by default)."""
    from trl import RewardConfig

    return RewardConfig(**kwargs, max_length=None, activation_checkpointing=False,
                        center_rewards_coefficient=cfg.center_rewards_coefficient or None,
                        pad_to_multiple_of=cfg.pad_to_multiple_of)


@functools.cache
def reward_trainer_class() -> type:
    """`AxolotlRewardTrainer`, defined on first use so that importing this module stays free of TRL."""
    from trl import RewardTrainer

    from axolotl.training.optimizer import OptimizationMixin

    class AxolotlRewardTrainer(OptimizationMixin, RewardTrainer):
        """TRL's `RewardTrainer` with our parameter groups and schedules (as `AxolotlTrainer`), and
        our console progress line and throughput keys."""

        def __init__(self, *args: Any, axolotl_cfg: AxolotlConfig, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.axolotl_cfg = axolotl_cfg
            self.progress = use_progress(self)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if self.progress is not None:
                self.progress.annotate(logs, self.state, self.args.world_size)
            super().log(logs, start_time)

    return AxolotlRewardTrainer


def build_reward_trainer(cfg: AxolotlConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                         prepared: PreparedData, args: RewardConfig, callbacks: Sequence[TrainerCallback] = ()) -> Any:
    """The trainer of an outcome reward model; pairs are padded by TRL's preference collator."""
    return reward_trainer_class()(
        model=model, args=args, train_dataset=prepared.train,
        eval_dataset=prepared.eval if args.eval_strategy != "no" else None,
        processing_class=tokenizer, callbacks=list(callbacks), axolotl_cfg=cfg,
    )


def bradley_terry_loss(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor,
                       center_rewards_coefficient: float | None = None) -> torch.Tensor:
    """The pairwise loss the reward trainer minimises, written out (tests compare the two)."""
    import torch.nn.functional as F

    loss = -F.logsigmoid(rewards_chosen - rewards_rejected).mean()
    if center_rewards_coefficient:
        loss = loss + center_rewards_coefficient * ((rewards_chosen + rewards_rejected) ** 2).mean()
    return loss


# ---- process reward model: our Trainer, token classification -----------------------------------


def token_classification_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """Cross-entropy over labelled tokens: summed and divided by `num_items_in_batch` (the labelled
    tokens of the whole accumulation window, all ranks) when the Trainer counts them, else the mean.
    transformers' token-classification models ignore `num_items_in_batch`, which would make the
    loss a per-micro-batch mean that the Trainer then does not divide by the accumulation steps."""
    import torch.nn.functional as F

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    flat = logits.float().reshape(-1, logits.size(-1))
    target = labels.reshape(-1).to(flat.device)
    if num_items_in_batch is None:
        return F.cross_entropy(flat, target, ignore_index=IGNORE_INDEX)
    total = F.cross_entropy(flat, target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / num_items_in_batch


def predicted_classes(logits: Any, labels: Any) -> Any:
    """Keep only the argmax per token during evaluation (the Trainer would otherwise gather logits)."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def step_accuracy(prediction: EvalPrediction) -> dict[str, float]:
    """Share of labelled steps whose predicted class is the label."""
    predicted = np.asarray(prediction.predictions)
    labels = np.asarray(prediction.label_ids)
    scored = labels != IGNORE_INDEX
    total = int(scored.sum())
    return {"accuracy": float((predicted[scored] == labels[scored]).sum() / total) if total else float("nan")}


def disable_dropout(model: Any) -> None:
    """Dropout off everywhere (TRL's reward trainers' default): the token-classification head of
    transformers applies dropout 0.1 unless the model config says otherwise."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def process_reward_trainer_kwargs(model: Any) -> dict[str, Any]:
    """Prepare `model` (dropout off) and return what `build_trainer` adds to our Trainer for a
    process reward model."""
    disable_dropout(model)
    return {"compute_loss_func": token_classification_loss, "compute_metrics": step_accuracy,
            "preprocess_logits_for_metrics": predicted_classes}

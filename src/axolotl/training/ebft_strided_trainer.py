"""Strided EBFT (`rl: ebft`, `ebft.mode: strided`): one device, no vLLM, read top to bottom.

config -> refusals (`preflight`) -> tokenizer -> documents (`axolotl.data.ebft`: input_ids,
labels, prompt_length) -> TrainingArguments (the SFT mapping) -> model (+ adapter) ->
`AxolotlEBFTStridedTrainer` -> train -> the usual outputs (model or adapter, metrics.json, ...).

Each micro-batch is a few documents; each document is handled on its own (`ebft_strided
.strided_document`: anchors, block-parallel rollouts, feature rewards, loss terms), and the
micro-batch loss is

    rl_coef x (sum of -advantage x log-prob over sampled tokens) / (sampled tokens)
  + ce_coef x (sum of -log-prob over supervised document tokens) / (supervised tokens)

divided by the gradient-accumulation steps as for any Trainer loss. The feature network is the
frozen starting model: the policy with its adapter switched off, or (full fine-tune) a frozen
copy taken before the first step. With `n_samples_per_prompt: 1` the advantage is the reward
itself (REINFORCE) and the diversity term is off, whatever the config says.

Logged with every training log: `ebft/alignment`, `ebft/diversity`, `ebft/cfm_loss`,
`ebft/reward` (averaged over the interval's documents),
`ebft/rl_loss`, `ebft/ce_loss` (when `ce_coef` > 0) and `ebft/blocks` (rollout blocks per
document); throughput counts document tokens.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from axolotl.data.ebft import prepare_ebft_datasets
from axolotl.models.adapters import apply_adapter
from axolotl.models.compile import compile_layers
from axolotl.models.model import load_model
from axolotl.models.tokenizer import load_tokenizer
from axolotl.training.args import tracker_environment, training_args_kwargs
from axolotl.training.ebft_metrics import MetricBuffer, breakdown_metrics, print_ebft_line
from axolotl.training.ebft_reward import effective_estimator, layer_indices
from axolotl.training.ebft_strided import StridedSettings, decoder_and_head, strided_document
from axolotl.training.ebft_structured import is_adapter_model
from axolotl.training.optimizer import OptimizationMixin
from axolotl.training.progress import use_progress
from axolotl.training.sft import TrainResult, _callbacks, run_and_publish

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig

IGNORE_INDEX = -100
EXTRA_KEYS = ("ebft/alignment", "ebft/diversity", "ebft/cfm_loss", "ebft/reward", "ebft/rl_loss", "ebft/ce_loss",
              "ebft/blocks")
"""Training-log keys kept in metrics.json's `train_loss_history`."""


def strided_settings(cfg: AxolotlConfig, num_layers: int) -> StridedSettings:
    """The `ebft:` block as strided mode reads it, for a feature network of `num_layers` layers."""
    from axolotl.config.schema.ebft import EBFTConfig

    ebft = cfg.ebft or EBFTConfig()
    return StridedSettings(
        stride=ebft.stride, context_length=ebft.context_length, generate_max_len=ebft.generate_max_len,
        samples=ebft.n_samples_per_prompt, temperature=ebft.temperature, top_p=ebft.top_p,
        estimator=effective_estimator(ebft.advantage_estimator, ebft.n_samples_per_prompt),
        alignment_coef=ebft.alignment_coef, diversity_coef=ebft.diversity_coef, use_whitening=ebft.use_whitening,
        embed_method=ebft.embed_method, layers=tuple(layer_indices(list(ebft.feature_layers), num_layers)),
        rl_coef=ebft.rl_coef, ce_coef=ebft.ce_coef, min_completion_prefix=ebft.min_completion_prefix)


class DocumentCollator:
    """Pads a micro-batch of documents; `attention_mask` marks real tokens (and feeds the token count)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)

        def padded(key: str, value: int) -> torch.Tensor:
            return torch.tensor([list(row[key]) + [value] * (width - len(row[key])) for row in rows])

        return {"input_ids": padded("input_ids", self.pad), "labels": padded("labels", IGNORE_INDEX),
                "attention_mask": torch.tensor([[1] * len(row["input_ids"]) + [0] * (width - len(row["input_ids"]))
                                                for row in rows]),
                "prompt_length": torch.tensor([int(row["prompt_length"]) for row in rows])}


class AxolotlEBFTStridedTrainer(OptimizationMixin, Trainer):
    """A Trainer whose loss is strided EBFT's (see the module docstring)."""

    def __init__(self, *args: Any, axolotl_cfg: AxolotlConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.axolotl_cfg = axolotl_cfg
        self.progress = use_progress(self)
        self.loss_is_scaled_for_ga = False  # our loss is a per-micro-batch mean: divide by the accumulation steps
        body, _ = decoder_and_head(self.model)
        self.settings = strided_settings(axolotl_cfg, body.config.num_hidden_layers)
        self.disable_adapter = is_adapter_model(self.model)
        self.feature_model = self.model if self.disable_adapter else \
            copy.deepcopy(self.model).requires_grad_(False).eval()
        self.buffer = MetricBuffer()

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if return_outputs:
            raise NotImplementedError("strided EBFT has no model outputs to return (evaluation is not supported yet)")
        policy = self.accelerator.unwrap_model(model)
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        rl_sum = ce_sum = None
        rl_tokens = ce_tokens = blocks = 0
        for row, length in enumerate(lengths):
            outcome = strided_document(policy, self.feature_model, self.disable_adapter,
                                       inputs["input_ids"][row, :length], inputs["labels"][row, :length],
                                       int(inputs["prompt_length"][row]), self.settings)
            if outcome.breakdown is not None:
                rl_sum = outcome.rl_sum if rl_sum is None else rl_sum + outcome.rl_sum
                rl_tokens += outcome.rl_tokens
                blocks += outcome.breakdown.rewards.shape[0]
                self.buffer.add(breakdown_metrics(outcome.breakdown))
            if outcome.ce_sum is not None:
                ce_sum = outcome.ce_sum if ce_sum is None else ce_sum + outcome.ce_sum
                ce_tokens += outcome.ce_tokens
        loss = torch.zeros((), device=inputs["input_ids"].device)
        logged: dict[str, float] = {"ebft/blocks": blocks / max(len(lengths), 1)}
        if rl_sum is not None and rl_tokens:
            rl = rl_sum / rl_tokens
            loss = loss + self.settings.rl_coef * rl
            logged["ebft/rl_loss"] = rl.item()
        if ce_sum is not None and ce_tokens:
            ce = ce_sum / ce_tokens
            loss = loss + self.settings.ce_coef * ce
            logged["ebft/ce_loss"] = ce.item()
        self.buffer.add(logged)
        if not loss.requires_grad:  # no anchor and no CE target in this micro-batch: a zero step
            loss = loss + sum(p.sum() * 0.0 for p in policy.parameters() if p.requires_grad)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        training = "loss" in logs and "train_loss" not in logs
        if training:
            self.buffer.flush_into(logs)
        if self.progress is not None:
            self.progress.annotate(logs, self.state, self.args.world_size)
        super().log(logs, start_time)
        if training:
            print_ebft_line(logs, self.is_world_process_zero())



def build_strided_args(cfg: AxolotlConfig) -> TrainingArguments:
    """The SFT TrainingArguments with the columns our collator needs kept."""
    kwargs = training_args_kwargs(cfg, has_eval=False)
    kwargs["remove_unused_columns"] = False
    return TrainingArguments(**kwargs)


def train_ebft_strided(cfg: AxolotlConfig, extra_callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """`axolotl.training.sft.train` for strided `rl: ebft` configs (after `preflight`)."""
    os.environ.update(tracker_environment(cfg))
    tokenizer = load_tokenizer(cfg)
    prepared = prepare_ebft_datasets(cfg, tokenizer)
    args = build_strided_args(cfg)
    set_seed(args.seed)
    model = apply_adapter(cfg, load_model(cfg, tokenizer))
    callbacks, stopper, watchdog = _callbacks(cfg)
    callbacks.extend(extra_callbacks)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = AxolotlEBFTStridedTrainer(model=model, args=args, train_dataset=prepared.train,
                                        data_collator=DocumentCollator(pad), processing_class=tokenizer,
                                        callbacks=list(callbacks), axolotl_cfg=cfg)
    compile_layers(model, cfg)
    return run_and_publish(trainer, cfg, stopper, watchdog, extra_keys=EXTRA_KEYS)

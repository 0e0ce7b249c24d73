"""GRPO training (`rl: grpo`) on TRL's GRPOTrainer, read top to bottom.

config -> refusals and checks (`preflight`, run by `sft.train` before it dispatches here) ->
reward functions (imported first: a typo costs no model load) -> tokenizer -> prompts
(`axolotl.data.grpo`) -> GRPOConfig (`axolotl.training.grpo_args`) -> model (+ adapter) ->
trainer -> train -> the outputs of an SFT run: model or adapter, tokenizer, resolved config,
metrics.json, loss plot.

Each step TRL generates `num_generations` completions per prompt (transformers' `generate` on
the policy, or vLLM with `trl.use_vllm`), scores them with every reward function, turns the
weighted rewards into group-relative advantages and takes a clipped policy-gradient step.

What this trainer adds to TRL's:
* the console line, throughput and our optimizer/scheduler options, as for every method;
* reference model (`trl.beta` > 0): with an adapter, the base model with the adapter switched off
  (TRL's frozen copy of the adapter is removed, so only the trained adapter is saved); a full
  fine-tune scores against a frozen copy of the loaded model (TRL 1.16 would reload the checkpoint
  from its hub id, losing resized embeddings and config overrides);
* `trl.skip_zero_advantage_batches` (default on): a micro-batch whose advantages are all zero has
  a zero loss and a zero gradient when `beta` is 0, so its forward and backward passes are
  skipped; counted per logging interval as `skipped_zero_adv_batches`. With beta > 0 the KL term
  still has a gradient and nothing is skipped. Under several processes a micro-batch is skipped
  only when it is zero on every rank (they must run the same collectives);
* `trl.vllm_sync_interval: N`: weights are pushed to vLLM only when N optimizer steps have
  passed since the last push (TRL pushes before every generation after a step);
* `trl.rollout_func`: a dotted path to TRL's experimental rollout function.

Logged metrics are TRL's, unchanged (averaged over each logging interval): `reward`,
`reward_std`, `rewards/<function>/mean` and `/std`, `frac_reward_zero_std`, `kl` (beta > 0),
`entropy`, `completions/{mean,min,max}_length`, `completions/clipped_ratio`, the terminated
lengths, `clip_ratio/*`, the `sampling/*` importance-sampling figures with vLLM, plus
`skipped_zero_adv_batches`. They reach the console line, every tracker, log_history and
metrics.json's `train_loss_history`.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback, set_seed
from trl import GRPOTrainer

from axolotl.data.grpo import prepare_grpo_datasets
from axolotl.data.user_code import import_dotted
from axolotl.models.adapters import apply_adapter
from axolotl.models.compile import compile_layers
from axolotl.models.model import load_model
from axolotl.models.tokenizer import load_tokenizer
from axolotl.training.args import tracker_environment
from axolotl.training.grpo_args import build_grpo_args
from axolotl.training.optimizer import OptimizationMixin
from axolotl.training.preference import use_base_as_reference
from axolotl.training.progress import use_progress
from axolotl.training.rewards import close_reward_funcs, load_reward_funcs
from axolotl.training.sft import TrainResult, _callbacks, run_and_publish

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase
    from trl import GRPOConfig

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)
SKIPPED_KEY = "skipped_zero_adv_batches"


@contextmanager
def frozen_reference_copy(model: Any, enabled: bool) -> Iterator[None]:
    """While GRPOTrainer is built, make its reference-model loader return a frozen copy of `model`
    (the loaded policy before its first step) instead of reloading the checkpoint."""
    if not enabled:
        yield
        return
    import trl.trainer.grpo_trainer as grpo_module

    original = grpo_module.create_model_from_path
    grpo_module.create_model_from_path = lambda *args, **kwargs: copy.deepcopy(model).requires_grad_(False).eval()
    try:
        yield
    finally:
        grpo_module.create_model_from_path = original


class AxolotlGRPOTrainer(OptimizationMixin, GRPOTrainer):
    """TRL's GRPO trainer with what our runs add (see the module docstring)."""

    def __init__(self, *args: Any, axolotl_cfg: AxolotlConfig, **kwargs: Any) -> None:
        self.axolotl_cfg = axolotl_cfg
        grpo_args = kwargs.get("args")
        full_reference = bool(grpo_args is not None and grpo_args.beta and not axolotl_cfg.adapter)
        with frozen_reference_copy(kwargs.get("model"), full_reference):
            super().__init__(*args, **kwargs)
        self.progress = use_progress(self)
        use_base_as_reference(self.model)
        self.skip_zero_advantage = bool(axolotl_cfg.trl.skip_zero_advantage_batches)
        self.sync_interval = axolotl_cfg.trl.vllm_sync_interval or 1
        self.skipped_zero_adv_batches = 0
        self.synced_at: int | None = None
        """Optimizer step at which the weights were last pushed to vLLM."""

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and "train_loss" not in logs:
            if self.skip_zero_advantage:
                logs[SKIPPED_KEY] = self.skipped_zero_adv_batches
                self.skipped_zero_adv_batches = 0
            if self.progress is not None:  # before TRL adds its metrics and the Trainer dispatches the log
                self.progress.annotate(logs, self.state, self.args.world_size)
        elif self.progress is not None:
            self.progress.annotate(logs, self.state, self.args.world_size)
        super().log(logs, start_time)

    def can_skip(self, inputs: dict[str, Any]) -> bool:
        """Whether this micro-batch's loss and gradient are exactly zero on every rank."""
        if not (self.skip_zero_advantage and self.model.training and self.beta == 0.0) or self.aux_loss_enabled \
                or self._entropy_bonus_enabled:
            return False
        zero = torch.tensor(float(bool((inputs["advantages"] == 0).all())), device=self.accelerator.device)
        return bool(self.accelerator.gather(zero).min() > 0)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if not return_outputs and self.can_skip(inputs):
            self.skipped_zero_adv_batches += 1
            return torch.zeros((), device=self.accelerator.device, requires_grad=True)
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def _generate(self, prompts: list[Any]) -> Any:
        """`vllm_sync_interval`: mark the weights as already loaded (TRL then skips its push) until
        the interval has passed since the last push."""
        step = self.state.global_step
        if self.use_vllm and step != self._last_loaded_step:
            if self.synced_at is not None and step - self.synced_at < self.sync_interval:
                self._last_loaded_step = step
            else:
                self.synced_at = step
        return super()._generate(prompts)


class LoggedKeys:
    """Every key of the trainer's training logs, read when metrics.json is written (reward names and
    user metrics from `log_metric` are known only then)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for entry in self.trainer.state.log_history:
            if "loss" in entry:
                seen.update(dict.fromkeys(entry))
        return iter(seen)


def load_rollout_func(cfg: AxolotlConfig) -> Any:
    """`trl.rollout_func` imported from its dotted path (None when unset)."""
    if not cfg.trl.rollout_func:
        return None
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # we document it as experimental ourselves
    return import_dotted(cfg.trl.rollout_func, "trl.rollout_func", cfg)


def build_grpo_trainer(cfg: AxolotlConfig, model: Any, tokenizer: PreTrainedTokenizerBase,
                       train_rows: datasets.Dataset, eval_rows: datasets.Dataset | None, args: GRPOConfig,
                       reward_funcs: list[Any], callbacks: Sequence[TrainerCallback] = ()) -> AxolotlGRPOTrainer:
    """The trainer of an `rl: grpo` config (tests build it directly to drive single steps)."""
    return AxolotlGRPOTrainer(
        model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_rows,
        eval_dataset=eval_rows if args.eval_strategy != "no" else None, processing_class=tokenizer,
        callbacks=list(callbacks), rollout_func=load_rollout_func(cfg), axolotl_cfg=cfg,
    )


def train_grpo(cfg: AxolotlConfig, extra_callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """`axolotl.training.sft.train` for `rl: grpo` configs (it runs `preflight` and dispatches here)."""
    os.environ.update(tracker_environment(cfg))
    reward_funcs = load_reward_funcs(cfg)
    try:
        tokenizer = load_tokenizer(cfg)
        prepared = prepare_grpo_datasets(cfg, tokenizer)
        args = build_grpo_args(cfg, has_eval=prepared.eval is not None and len(prepared.eval) > 0)
        set_seed(args.seed)
        model = apply_adapter(cfg, load_model(cfg, tokenizer))
        callbacks, stopper, watchdog = _callbacks(cfg)
        callbacks.extend(extra_callbacks)
        trainer = build_grpo_trainer(cfg, model, tokenizer, prepared.train, prepared.eval, args, reward_funcs,
                                     callbacks)
        compile_layers(model, cfg)  # after the reference copy was taken, which stays eager
        return run_and_publish(trainer, cfg, stopper, watchdog, extra_keys=LoggedKeys(trainer))  # type: ignore[arg-type]
    finally:
        close_reward_funcs(reward_funcs)

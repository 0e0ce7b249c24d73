"""Structured EBFT (`rl: ebft`, `ebft.mode: structured`) on the GRPO machinery, read top to bottom.

config -> refusals (`preflight`) -> tokenizer -> prompts + references (`axolotl.data.ebft`) ->
GRPOConfig (`axolotl.training.grpo_args`, the `trl:` keys as for GRPO) -> model (+ adapter) ->
`AxolotlEBFTTrainer` with one reward function, `FeatureReward` -> train -> the usual outputs.

Each step TRL samples `trl.num_generations` completions per prompt (transformers' `generate`, or
vLLM with `trl.use_vllm`) and calls `FeatureReward` on the whole generation batch, whose groups of
completions of one prompt are contiguous. It builds, per group, the sequences prompt + completion
(a trailing end-of-text token removed, since references carry none) and prompt + `ground_truth`,
runs them through the feature network and returns `ebft_reward.feature_rewards` per completion.
TRL then makes group-relative advantages (`trl.scale_rewards`) and takes its clipped
policy-gradient step, exactly as for GRPO.

The feature network is the frozen starting model: with an adapter, the policy itself under
`disable_adapter()` (no second copy; the adapter is never merged into the base weights); a full
fine-tune keeps a frozen copy made before the first step (2x the weights' memory).

`ebft.adaptive_max_tokens` (default on): each generation batch may write at most
`gt_length_multiplier` x the longest reference of the batch in tokens (never more than
`trl.max_completion_length`), so short references do not pay for long rollouts.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback, set_seed

from axolotl.data.ebft import prepare_ebft_datasets
from axolotl.models.adapters import apply_adapter
from axolotl.models.compile import compile_layers
from axolotl.models.model import load_model
from axolotl.models.tokenizer import load_tokenizer
from axolotl.training.args import tracker_environment
from axolotl.training.ebft_metrics import breakdown_metrics, print_ebft_line
from axolotl.training.ebft_reward import feature_rewards, layer_indices, pool
from axolotl.training.ebft_strided import decoder_and_head
from axolotl.training.grpo import AxolotlGRPOTrainer, LoggedKeys, load_rollout_func
from axolotl.training.grpo_args import build_grpo_args
from axolotl.training.sft import TrainResult, _callbacks, run_and_publish

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig
    from axolotl.config.schema.ebft import EBFTConfig

FEATURE_BATCH = 16
"""Sequences per feature-network forward: bounds the memory of the hidden states kept."""


def is_adapter_model(model: Any) -> bool:
    return callable(getattr(model, "disable_adapter", None)) and hasattr(model, "peft_config")


class FeatureReward:
    """The EBFT reward as a TRL reward function (logged by TRL as `rewards/ebft/*`)."""

    __name__ = "ebft"

    def __init__(self, settings: EBFTConfig) -> None:
        self.settings = settings
        self.trainer: Any = None
        """Set by `AxolotlEBFTTrainer` (the reward needs its tokenizer, prompts and feature network)."""
        self.feature_model: Any = None
        self.disable_adapter = False

    def __call__(self, prompts: list[Any], completions: list[Any], completion_ids: list[list[int]],
                 ground_truth: list[str], log_metric: Any = None, **kwargs: Any) -> list[float]:
        trainer, n = self.trainer, self.trainer.num_generations
        if len(prompts) % n:
            raise ValueError(f"the reward got {len(prompts)} completions, not whole groups of {n}")
        groups = len(prompts) // n
        prompt_ids = trainer._tokenize_prompts([prompts[g * n] for g in range(groups)])[0]
        tokenizer = trainer.processing_class
        references = [list(tokenizer(ground_truth[g * n], add_special_tokens=False)["input_ids"])
                      for g in range(groups)]
        stop = set(getattr(trainer, "eos_token_ids", None) or [tokenizer.eos_token_id])
        sequences, starts = [], []
        for index, completion in enumerate(completion_ids):
            ids = list(completion)
            while ids and ids[-1] in stop:
                ids.pop()
            sequences.append(list(prompt_ids[index // n]) + ids)
            starts.append(len(prompt_ids[index // n]))
        for g in range(groups):
            sequences.append(list(prompt_ids[g]) + references[g])
            starts.append(len(prompt_ids[g]))
        features = self.features(sequences, starts)
        breakdown = feature_rewards(features[:groups * n].reshape(groups, n, -1), features[groups * n:],
                                    self.settings.alignment_coef, self.settings.diversity_coef if n > 1 else 0.0,
                                    self.settings.use_whitening)
        if log_metric is not None:
            for key, value in breakdown_metrics(breakdown).items():
                log_metric(key, value)
        return breakdown.rewards.reshape(-1).tolist()

    @torch.no_grad()
    def features(self, sequences: list[list[int]], starts: list[int]) -> torch.Tensor:
        """(len(sequences), D) pooled features; `starts[i]` is where sequence i's completion begins."""
        model = self.feature_model
        body, _ = decoder_and_head(model)
        layers = layer_indices(list(self.settings.feature_layers), body.config.num_hidden_layers)
        device = next(model.parameters()).device
        pad = self.trainer.processing_class.pad_token_id or 0
        out = []
        was_training = model.training
        model.eval()
        try:
            with model.disable_adapter() if self.disable_adapter else nullcontext():
                for begin in range(0, len(sequences), FEATURE_BATCH):
                    chunk = sequences[begin:begin + FEATURE_BATCH]
                    width = max(len(ids) for ids in chunk)
                    ids = torch.tensor([s + [pad] * (width - len(s)) for s in chunk], device=device)
                    valid = torch.tensor([[i < len(s) for i in range(width)] for s in chunk], device=device)
                    completion = torch.arange(width, device=device)[None, :] >= torch.tensor(
                        starts[begin:begin + FEATURE_BATCH], device=device)[:, None]
                    states = body(input_ids=ids, attention_mask=valid.long(), use_cache=False,
                                  output_hidden_states=True).hidden_states
                    out.append(pool([states[index] for index in layers], valid, self.settings.embed_method,
                                    completion))
        finally:
            model.train(was_training)
        return torch.cat(out)


class AxolotlEBFTTrainer(AxolotlGRPOTrainer):
    """The GRPO trainer with the feature reward, the adaptive completion budget and the EBFT line."""

    def __init__(self, *args: Any, ebft_reward: FeatureReward, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ebft_reward = ebft_reward
        ebft_reward.trainer = self
        ebft_reward.disable_adapter = is_adapter_model(self.model)
        ebft_reward.feature_model = self.model if ebft_reward.disable_adapter else \
            copy.deepcopy(self.model).requires_grad_(False).eval()
        self.ebft_settings = ebft_reward.settings

    def completion_budget(self, inputs: list[dict[str, Any]]) -> int:
        """Tokens this batch may generate (`adaptive_max_tokens`, see the module docstring)."""
        longest = max(len(self.processing_class(row["ground_truth"], add_special_tokens=False)["input_ids"])
                      for row in inputs)
        return max(1, min(self.max_completion_length, math.ceil(self.ebft_settings.gt_length_multiplier * longest)))

    @contextmanager
    def generation_budget(self, tokens: int) -> Iterator[None]:
        config = getattr(self, "generation_config", None)
        vllm = getattr(self, "vllm_generation", None) if self.use_vllm else None
        saved = (getattr(config, "max_new_tokens", None), getattr(vllm, "max_completion_length", None))
        if config is not None:
            config.max_new_tokens = tokens
        if vllm is not None:
            vllm.max_completion_length = tokens
        try:
            yield
        finally:
            if config is not None:
                config.max_new_tokens = saved[0]
            if vllm is not None:
                vllm.max_completion_length = saved[1]

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.ebft_settings.adaptive_max_tokens:
            return super()._generate_and_score_completions(inputs)
        with self.generation_budget(self.completion_budget(inputs)):
            return super()._generate_and_score_completions(inputs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(logs, start_time)
        if "loss" in logs and "train_loss" not in logs:
            print_ebft_line(logs, self.is_world_process_zero())


def build_ebft_trainer(cfg: AxolotlConfig, model: Any, tokenizer: Any, train_rows: Any, eval_rows: Any, args: Any,
                       callbacks: Sequence[TrainerCallback] = ()) -> AxolotlEBFTTrainer:
    """The trainer of a structured `rl: ebft` config (tests build it directly to drive single steps)."""
    from axolotl.config.schema.ebft import EBFTConfig

    reward = FeatureReward(cfg.ebft or EBFTConfig())
    return AxolotlEBFTTrainer(
        model=model, reward_funcs=[reward], args=args, train_dataset=train_rows,
        eval_dataset=eval_rows if args.eval_strategy != "no" else None, processing_class=tokenizer,
        callbacks=list(callbacks), rollout_func=load_rollout_func(cfg), axolotl_cfg=cfg, ebft_reward=reward,
    )


def train_ebft_structured(cfg: AxolotlConfig, extra_callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """`axolotl.training.sft.train` for structured `rl: ebft` configs (after `preflight`)."""
    os.environ.update(tracker_environment(cfg))
    tokenizer = load_tokenizer(cfg)
    prepared = prepare_ebft_datasets(cfg, tokenizer)
    args = build_grpo_args(cfg, has_eval=prepared.eval is not None and len(prepared.eval) > 0)
    set_seed(args.seed)
    model = apply_adapter(cfg, load_model(cfg, tokenizer))
    callbacks, stopper, watchdog = _callbacks(cfg)
    callbacks.extend(extra_callbacks)
    trainer = build_ebft_trainer(cfg, model, tokenizer, prepared.train, prepared.eval, args, callbacks)
    compile_layers(model, cfg)  # after the feature network's copy was taken, which stays eager
    return run_and_publish(trainer, cfg, stopper, watchdog, extra_keys=LoggedKeys(trainer))  # type: ignore[arg-type]

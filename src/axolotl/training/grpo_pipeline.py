"""The GRPO trainer's side of the data producer (`trl.use_data_producer`, `async_prefetch`,
`prefetch_depth`, the off-policy correction of its rollouts); `grpo_producer` explains the design.

Four hooks into TRL 1.16's trainer, each small:
* `get_batch_samples` wraps the Trainer's epoch iterator in a `Lookahead`, so upcoming generation
  batches can be queued before the Trainer hands them out;
* `_prepare_inputs`, at each point where TRL generates, queues this batch and the next
  `prefetch_depth` ones;
* `_generate_single_turn` returns the producer's completions (and the sampler's log-probs) instead
  of generating with the policy, the whole batch at once or, with streaming scoring
  (`grpo_mixing`), one chunk per call; everything after it (decoding, rewards, advantages, metrics) is
  TRL's, on the main thread;
* `_generate_and_score_completions` weights the advantages by the importance ratio policy/sampler
  (`grpo_offpolicy`) when the correction is on.
Evaluation generates as TRL does, with the current policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from trl.models.utils import disable_gradient_checkpointing

from axolotl.training.grpo_offpolicy import importance_weights, weighted_advantages
from axolotl.training.grpo_producer import Lookahead, Rollout, RolloutProducer

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig

LAG_KEY = "producer/weights_lag_steps"


def producer_settings(cfg: AxolotlConfig) -> tuple[int | None, int, bool]:
    """(prefetch depth or None for inline generation, weight refresh interval, importance-sampling
    correction on?) of a config with `trl.use_data_producer`. The correction defaults to on exactly
    when rollouts can be stale (prefetching, or an interval above 1); an explicit value wins."""
    trl = cfg.trl
    depth = (1 if trl.prefetch_depth is None else trl.prefetch_depth) if trl.async_prefetch else None
    interval = trl.vllm_sync_interval or 1
    stale = bool(depth) or interval > 1
    correction = stale if trl.vllm_importance_sampling_correction is None else trl.vllm_importance_sampling_correction
    return depth, interval, correction


class ProducerMixin:
    """Mixed into the GRPO trainer before TRL's GRPOTrainer (see the module docstring)."""

    producer: RolloutProducer | None = None
    correct_off_policy: bool = False
    _producer_serial: int | None = None
    _rollout_left: Rollout | None = None
    """What is left of the batch's rollout while streaming scoring takes it a chunk at a time."""

    def start_producer(self, cfg: AxolotlConfig) -> None:
        """Build the producer when the config asks for it (after TRL's __init__: it needs the model)."""
        if not cfg.trl.use_data_producer:
            return
        depth, interval, correction = producer_settings(cfg)
        self.correct_off_policy = correction
        needs_logps = correction or self.off_policy_mask_threshold is not None  # type: ignore[attr-defined]
        self.producer = RolloutProducer(self, depth, interval, sampling_logps=needs_logps)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)  # type: ignore[misc]
        finally:
            if self.producer is not None:
                self.producer.close()

    def get_batch_samples(self, epoch_iterator: Iterator[Any], num_batches: int, device: Any) -> Any:
        producer = self.producer
        if producer is not None:
            lookahead = producer.lookahead
            if lookahead is None or (lookahead is not epoch_iterator and lookahead.source is not epoch_iterator):
                window = self.args.steps_per_generation * self.num_iterations * ((producer.depth or 0) + 2) \
                    + self.args.gradient_accumulation_steps  # type: ignore[attr-defined]
                lookahead = Lookahead(epoch_iterator, window, served=lookahead.served if lookahead else 0)
                producer.lookahead = lookahead
            epoch_iterator = lookahead
        return super().get_batch_samples(epoch_iterator, num_batches, device)  # type: ignore[misc]

    def _prepare_inputs(self, generation_batch: Any) -> Any:
        producer = self.producer
        if producer is not None and self.model.training:  # type: ignore[attr-defined]
            generate_every = self.args.steps_per_generation * self.num_iterations  # type: ignore[attr-defined]
            if self._step % generate_every == 0 or self._buffered_inputs is None:  # type: ignore[attr-defined]
                serial = producer.lookahead.serial_of(generation_batch) if producer.lookahead else None
                if serial is None:
                    raise RuntimeError("GRPO data producer: the batch being trained did not come through the "
                                       "trainer's epoch iterator, so the producer cannot tell which prompts follow")
                producer.prepare(serial, generate_every, self.state.global_step)  # type: ignore[attr-defined]
                self._producer_serial = serial
        return super()._prepare_inputs(generation_batch)  # type: ignore[misc]

    def _generate_single_turn(self, prompt_ids: list[list[int]], images: Any, multimodal_fields: Any,
                              num_generations: int, has_tool_images: bool = False) -> Any:
        serial, self._producer_serial = self._producer_serial, None
        if self.producer is not None and serial is not None and self.model.training:  # type: ignore[attr-defined]
            self._rollout_left = self.producer.take(serial)
            lag = self.state.global_step - self._rollout_left.weights_step  # type: ignore[attr-defined]
            self._metrics["train"][LAG_KEY].append(float(lag))  # type: ignore[attr-defined]
        if self._rollout_left is None or not self.model.training:  # type: ignore[attr-defined]
            # no producer, evaluation, or a re-roll (`grpo_mixing`): TRL generates with the current policy
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields,  # type: ignore[misc]
                                                 num_generations, has_tool_images)
        rollout, self._rollout_left = self._rollout_left.split(len(prompt_ids))
        if rollout.prompt_ids != prompt_ids:
            raise RuntimeError("GRPO data producer out of step: the rollout prepared for this generation batch was "
                               "generated from other prompts than the trainer is consuming")
        return rollout.completion_ids, rollout.sampling_logps

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)  # type: ignore[misc]
        sampling = output.get("sampling_per_token_logps")
        if self.producer is None or not self.correct_off_policy or sampling is None or not self.model.training:  # type: ignore[attr-defined]
            return output
        mask = output["completion_mask"] * output.get("tool_mask", 1)
        policy = output.get("old_per_token_logps")
        if policy is None:  # TRL computes it only when generation and optimizer steps are misaligned
            ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
            attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
            with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):  # type: ignore[attr-defined]
                policy, _, _ = self._get_per_token_logps_and_entropies(  # type: ignore[attr-defined]
                    self.model, ids, attention, output["completion_ids"].size(1),  # type: ignore[attr-defined]
                    batch_size=self.args.per_device_train_batch_size)  # type: ignore[attr-defined]
        weights = importance_weights(policy, sampling, mask, self.vllm_importance_sampling_mode,  # type: ignore[attr-defined]
                                     self.vllm_importance_sampling_clip_min,  # type: ignore[attr-defined]
                                     self.vllm_importance_sampling_clip_max)  # type: ignore[attr-defined]
        output["advantages"] = weighted_advantages(output["advantages"], weights)
        kept = weights.flatten() if weights.size(1) == 1 else weights[mask.bool()]
        if kept.numel():
            metrics = self._metrics["train"]  # type: ignore[attr-defined]
            metrics["sampling/importance_sampling_ratio/min"].append(kept.min().item())
            metrics["sampling/importance_sampling_ratio/mean"].append(kept.mean().item())
            metrics["sampling/importance_sampling_ratio/max"].append(kept.max().item())
        return output

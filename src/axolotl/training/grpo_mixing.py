"""Streaming scoring, re-rolling failed prompts and the replay buffer (`trl.streaming_partial_batch`
/ `streaming_min_groups`, `reroll_start_fraction` / `reroll_max_groups`, `replay_buffer_size` /
`replay_recompute_logps`), around TRL 1.16's `_generate_and_score_completions`.

One generation batch, in order:
1. Scoring. Without streaming TRL scores the batch in one call. With streaming the batch is cut into
   chunks of `streaming_min_groups` prompt groups (1 by default) and each chunk goes through TRL's
   scoring on its own (decoding, reward functions, advantages, reference and old log-probs), its
   completions served from the data producer's rollout for the batch. On the transformers backend
   the producer hands over a batch's completions together, so "as groups finish" means: scoring
   and the log-prob passes run one chunk at a time, which bounds their peak memory to a chunk;
   generation itself is not split. Group-relative advantages do not depend on the chunking, which
   is why `scale_rewards: batch` and `normalize_then_sum` (batch-wide statistics) are refused with it.
2. Re-rolling. Groups whose completions all got zero reward are remembered (`RerollQueue`). From
   `reroll_start_fraction` of the run on, up to `reroll_max_groups` remembered prompts are generated
   again with the current policy (TRL's own generation) and scored as a small batch of their own;
   their groups take the places of this batch's groups without learning signal (all advantages
   zero), which lose nothing by it. A prompt re-rolled in a batch was queued by an earlier one.
3. Replay. The places still without signal are filled from the `ReplayBuffer`, newest cached group
   first; then this batch's own groups with signal (re-rolls included, replays not) are cached.
   With `replay_recompute_logps` (default) a replayed group's `old_per_token_logps` and sampling
   log-probs are recomputed with the current policy, so it is trained as on-policy data (importance
   weight 1); with `false` it keeps the log-probs of the policy that generated it, and the
   off-policy correction (when on) weighs it by the ratio to the current policy. Reference
   log-probs are kept: the reference does not move (except under `sync_ref_model`).
Then the data producer's importance-sampling correction (`grpo_pipeline`) applies to the result.

Logged each generation batch: `streaming/chunks`, `reroll/groups` and `reroll/queued`,
`replay/used_groups` and `replay/buffered_groups`. These features regroup rows on one process;
several processes are refused (groups would straddle ranks).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from trl.models.utils import disable_gradient_checkpointing

from axolotl.training.grpo_groups import Group, all_zero_reward, has_signal, merge_groups, split_groups
from axolotl.training.grpo_replay import ReplayBuffer, RerollQueue

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig

RECOMPUTED = ("old_per_token_logps", "sampling_per_token_logps")
"""Log-prob fields a replayed (with `replay_recompute_logps`) or re-rolled group takes from the current policy."""


class Scored:
    """The groups of one scoring pass, with what the features need to know about each."""

    def __init__(self, groups: list[Group], rows: list[dict[str, Any]], signal: list[bool], failed: list[bool]):
        self.groups, self.rows, self.signal, self.failed = groups, rows, signal, failed


class MixingMixin:
    """Mixed into the GRPO trainer after `ProducerMixin`, before TRL's GRPOTrainer (see the module docstring)."""

    replay: ReplayBuffer | None = None
    reroll: RerollQueue | None = None
    streaming_groups: int | None = None
    recompute_replay_logps: bool = True
    _last_rewards: torch.Tensor | None = None

    def start_mixing(self, cfg: AxolotlConfig) -> None:
        """Build the stores the config asks for (after TRL's __init__)."""
        trl = cfg.trl
        if trl.streaming_partial_batch:
            self.streaming_groups = trl.streaming_min_groups or 1
        if trl.reroll_start_fraction < 1.0:
            self.reroll = RerollQueue(trl.reroll_start_fraction, trl.reroll_max_groups)
        if trl.replay_buffer_size:
            self.replay = ReplayBuffer(trl.replay_buffer_size)
            self.recompute_replay_logps = trl.replay_recompute_logps
        if self.mixing and self.accelerator.num_processes > 1:  # type: ignore[attr-defined]
            from axolotl.training.support import NotSupportedYet

            raise NotSupportedYet("`trl.streaming_partial_batch`, `trl.reroll_start_fraction` and "
                                  "`trl.replay_buffer_size` are not supported yet with several processes (prompt "
                                  "groups would straddle ranks); train on one GPU or remove them")

    @property
    def mixing(self) -> bool:
        return bool(self.streaming_groups) or self.reroll is not None or self.replay is not None

    def _calculate_rewards(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        rewards = super()._calculate_rewards(*args, **kwargs)  # type: ignore[misc]
        self._last_rewards = rewards
        return rewards

    def _score(self, inputs: list[dict[str, Any]]) -> Scored:
        """TRL's scoring of `inputs`, in streaming chunks when on, cut into groups."""
        size = self.num_generations  # type: ignore[attr-defined]
        chunk = (self.streaming_groups or len(inputs)) * size
        scored = Scored([], [], [], [])
        for start in range(0, len(inputs), chunk):
            part = inputs[start:start + chunk]
            output = super()._generate_and_score_completions(part)  # type: ignore[misc]
            assert self._last_rewards is not None
            scored.groups += split_groups(output, size)
            scored.rows += part[::size]
            scored.signal += has_signal(output["advantages"], size)
            scored.failed += all_zero_reward(self._last_rewards, size)
        if self.streaming_groups:
            self._metrics["train"]["streaming/chunks"].append(float(-(-len(inputs) // chunk)))  # type: ignore[attr-defined]
        return scored

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.mixing or not self.model.training:  # type: ignore[attr-defined]
            return super()._generate_and_score_completions(inputs)  # type: ignore[misc]
        metrics = self._metrics["train"]  # type: ignore[attr-defined]
        batch = self._score(inputs)
        groups = list(batch.groups)
        fresh_logps: dict[int, tuple[str, ...]] = {}
        """Group slot -> log-prob fields to take from the current policy."""
        empty = [slot for slot, signal in enumerate(batch.signal) if not signal]
        cache = [groups[slot] for slot, signal in enumerate(batch.signal) if signal]
        failed_rows = [row for row, failed in zip(batch.rows, batch.failed) if failed]
        if self.reroll is not None:
            again = self.reroll.take(self.state.global_step, self.state.max_steps, len(empty))  # type: ignore[attr-defined]
            if again:
                size = self.num_generations  # type: ignore[attr-defined]
                rerolled = self._score([copy.deepcopy(row) for row in again for _ in range(size)])
                for slot, group, signal in zip(empty, rerolled.groups, rerolled.signal):
                    groups[slot] = group
                    fresh_logps[slot] = ("sampling_per_token_logps",)
                    if signal:
                        cache.append(group)
                empty = [slot for slot, signal in zip(empty, rerolled.signal) if not signal] + empty[len(again):]
                failed_rows += [row for row, failed in zip(rerolled.rows, rerolled.failed) if failed]
            metrics["reroll/groups"].append(float(len(again)))
            for row in failed_rows:
                self.reroll.add(row)
            metrics["reroll/queued"].append(float(len(self.reroll)))
        if self.replay is not None:
            replayed = self.replay.take(len(empty))
            for slot, group in zip(empty, replayed):
                groups[slot] = group
                fresh_logps.pop(slot, None)
                if self.recompute_replay_logps:
                    fresh_logps[slot] = RECOMPUTED
            self.replay.add(cache)
            metrics["replay/used_groups"].append(float(len(replayed)))
            metrics["replay/buffered_groups"].append(float(len(self.replay)))
        return self._with_current_logps(groups, fresh_logps)

    def _with_current_logps(self, groups: list[Group], fresh: dict[int, tuple[str, ...]]) -> dict[str, Any]:
        """Join the groups; give the rows of the slots in `fresh` the current policy's log-probs in
        those fields that the batch carries (a re-rolled group lacks the producer's sampling ones)."""
        wanted = {key for key in RECOMPUTED if any(key in group for group in groups)}
        for slot, group in enumerate(groups):
            for key in wanted - set(group):
                if key not in fresh.get(slot, ()):
                    raise RuntimeError(f"GRPO group {slot} has no {key} and nothing to recompute it from")
                groups[slot] = group = {**group, key: torch.zeros_like(group["completion_mask"], dtype=torch.float32)}
        merged = merge_groups(groups, self._tokenizer.pad_token_id)  # type: ignore[attr-defined]
        size = self.num_generations  # type: ignore[attr-defined]
        rows = [slot * size + i for slot in sorted(fresh) for i in range(size)]
        keys = wanted & {key for slot in fresh for key in fresh[slot]}
        if not rows or not keys:
            return merged
        index = torch.tensor(rows, device=merged["prompt_ids"].device)
        current = self._current_logps(merged, index)
        for key in keys:
            for position, row in enumerate(rows):
                if key in fresh[row // size]:
                    merged[key][row] = current[position].to(merged[key].dtype)
        return merged

    def _current_logps(self, merged: dict[str, Any], index: torch.Tensor) -> torch.Tensor:
        """The current policy's per-token log-probs of the completions in rows `index`."""
        ids = torch.cat([merged["prompt_ids"][index], merged["completion_ids"][index]], dim=1)
        attention = torch.cat([merged["prompt_mask"][index], merged["completion_mask"][index]], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):  # type: ignore[attr-defined]
            logps, _, _ = self._get_per_token_logps_and_entropies(  # type: ignore[attr-defined]
                self.model, ids, attention, merged["completion_ids"].size(1),  # type: ignore[attr-defined]
                batch_size=self.args.per_device_train_batch_size)  # type: ignore[attr-defined]
        return logps

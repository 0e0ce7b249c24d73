"""Group bookkeeping of streaming, re-rolling and replay (`grpo_groups`, `grpo_replay`,
`grpo_mixing`) on hand-built batches: re-padding, which groups are kept, which replace which."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from axolotl.training.grpo_groups import all_zero_reward, has_signal, merge_groups, split_groups
from axolotl.training.grpo_mixing import MixingMixin
from axolotl.training.grpo_replay import ReplayBuffer, RerollQueue

PAD = 9


def test_merge_repads_prompts_left_and_completions_right_and_recounts_tokens() -> None:
    a = {"prompt_ids": torch.tensor([[1, 2]]), "prompt_mask": torch.tensor([[1, 1]]),
         "completion_ids": torch.tensor([[5]]), "completion_mask": torch.tensor([[1]]),
         "advantages": torch.tensor([0.5]), "old_per_token_logps": torch.tensor([[-1.0]])}
    b = {"prompt_ids": torch.tensor([[3, 4, 4]]), "prompt_mask": torch.tensor([[1, 1, 1]]),
         "completion_ids": torch.tensor([[6, 7]]), "completion_mask": torch.tensor([[1, 1]]),
         "advantages": torch.tensor([-0.5]), "old_per_token_logps": torch.tensor([[-2.0, -3.0]])}
    merged = merge_groups([a, b], PAD)
    assert merged["prompt_ids"].tolist() == [[PAD, 1, 2], [3, 4, 4]]
    assert merged["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert merged["completion_ids"].tolist() == [[5, PAD], [6, 7]]
    assert merged["completion_mask"].tolist() == [[1, 0], [1, 1]]
    assert merged["old_per_token_logps"].tolist() == [[-1.0, 0.0], [-2.0, -3.0]]
    assert merged["advantages"].tolist() == [0.5, -0.5]
    assert merged["num_items_in_batch"].item() == 3


def test_split_cuts_whole_groups_and_refuses_what_it_cannot_move() -> None:
    output = {"prompt_ids": torch.arange(8).view(4, 2), "completion_ids": torch.arange(4).view(4, 1),
              "advantages": torch.tensor([1.0, -1.0, 0.0, 0.0]), "num_items_in_batch": torch.tensor(4)}
    groups = split_groups(output, 2)
    assert [group["prompt_ids"].tolist() for group in groups] == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    assert "num_items_in_batch" not in groups[0]
    with pytest.raises(ValueError, match="not whole groups of 3"):
        split_groups(output, 3)
    with pytest.raises(NotImplementedError, match="num_images"):
        split_groups({**output, "num_images": [1, 1, 1, 1]}, 2)


def test_signal_and_failure_per_group() -> None:
    assert has_signal(torch.tensor([0.0, 0.0, 0.3, -0.3, 0.0, 0.0]), 2) == [False, True, False]
    assert has_signal(torch.tensor([[0.0, 0.0], [0.0, 2.0]]), 1) == [False, True]  # (B, T) advantages
    rewards = torch.tensor([[0.0, 0.0], [0.0, float("nan")], [0.0, 1.0], [0.0, 0.0]])
    assert all_zero_reward(rewards, 2) == [True, False]  # one completion scored 1 in the second group


def test_replay_buffer_keeps_the_newest_and_hands_them_out_once_newest_first() -> None:
    buffer = ReplayBuffer(2)
    groups = [{"advantages": torch.tensor([float(i)])} for i in range(3)]
    buffer.add(groups)
    assert [g["advantages"].item() for g in buffer.groups] == [1.0, 2.0]  # group 0 fell out
    assert [g["advantages"].item() for g in buffer.take(5)] == [2.0, 1.0]
    assert len(buffer) == 0 and buffer.take(1) == []
    with pytest.raises(ValueError, match="positive size"):
        ReplayBuffer(0)


def test_reroll_waits_for_the_start_fraction_and_takes_at_most_max_groups() -> None:
    queue = RerollQueue(start_fraction=0.5, max_groups=2)
    for prompt in ("a", "b", "a", "c"):
        queue.add({"prompt": prompt})
    assert [row["prompt"] for row in queue.rows] == ["a", "b", "c"]  # "a" waits once
    assert queue.take(step=4, max_steps=10, room=3) == []  # 4 < 0.5 x 10
    assert [row["prompt"] for row in queue.take(step=5, max_steps=10, room=3)] == ["a", "b"]  # max_groups
    assert [row["prompt"] for row in queue.take(step=6, max_steps=10, room=0)] == []  # no group to replace
    assert [row["prompt"] for row in queue.take(step=6, max_steps=10, room=1)] == ["c"]
    assert not RerollQueue(1.0, 1).started(10, 10)


def scored(prompts: list[int], rewards: list[float], width: int = 1) -> dict[str, torch.Tensor]:
    """A TRL-like output for groups of 2 completions: advantages = reward - group mean."""
    r = torch.tensor(rewards)
    advantages = r - r.view(-1, 2).mean(dim=1).repeat_interleave(2)
    return {"prompt_ids": torch.tensor([[p] for p in prompts]), "prompt_mask": torch.ones(len(prompts), 1, dtype=torch.long),
            "completion_ids": torch.full((len(prompts), width), 7), "completion_mask": torch.ones(len(prompts), width,
                                                                                             dtype=torch.long),
            "advantages": advantages, "num_items_in_batch": torch.tensor(len(prompts) * width), "rewards": r}


class FakeTRL:
    """Stands in for GRPOTrainer: each scoring call returns the next prepared output."""

    def __init__(self, outputs: list[dict[str, torch.Tensor]]) -> None:
        self.outputs = outputs
        self.calls: list[list[Any]] = []
        self.model = type("M", (), {"training": True})()
        self.state = type("S", (), {"global_step": 0, "max_steps": 4})()
        self._metrics = {"train": __import__("collections").defaultdict(list)}
        self._tokenizer = type("T", (), {"pad_token_id": PAD})()
        self.num_generations = 2

    def _calculate_rewards(self, rewards: torch.Tensor) -> torch.Tensor:
        return rewards

    def _generate_and_score_completions(self, inputs: list[Any]) -> dict[str, torch.Tensor]:
        self.calls.append([row["prompt"] for row in inputs])
        output = dict(self.outputs.pop(0))
        self._calculate_rewards(output.pop("rewards"))
        return output


class Mixed(MixingMixin, FakeTRL):
    pass


def rows(*prompts: int) -> list[dict[str, int]]:
    return [{"prompt": p} for p in prompts for _ in range(2)]


def test_reroll_then_replay_fill_the_groups_without_signal_in_order() -> None:
    trainer = Mixed([
        scored([1, 1, 2, 2], [0.0, 0.0, 1.0, 0.0]),  # batch 1: prompt 1 failed, prompt 2 has signal
        scored([3, 3, 4, 4, 5, 5], [0.0, 0.0, 0.5, 0.5, 0.0, 0.0]),  # batch 2: no signal anywhere
        scored([1, 1], [1.0, 0.0]),  # batch 2's re-roll of prompt 1: signal now
    ])
    trainer.reroll = RerollQueue(start_fraction=0.25, max_groups=1)
    trainer.replay = ReplayBuffer(4)
    trainer.recompute_replay_logps = False
    first = trainer._generate_and_score_completions(rows(1, 2))
    assert first["prompt_ids"].flatten().tolist() == [1, 1, 2, 2]  # step 0 < 0.25 x 4: nothing re-rolled
    assert [row["prompt"] for row in trainer.reroll.rows] == [1]
    assert [g["prompt_ids"].flatten().tolist() for g in trainer.replay.groups] == [[2, 2]]
    trainer.state.global_step = 1
    second = trainer._generate_and_score_completions(rows(3, 4, 5))
    assert trainer.calls[-1] == [1, 1]  # the queued prompt was generated again
    # slot 0 (prompt 3) <- re-roll of prompt 1, slot 1 (prompt 4) <- replayed prompt 2, slot 2 left as is
    assert second["prompt_ids"].flatten().tolist() == [1, 1, 2, 2, 5, 5]
    assert second["advantages"].tolist() == [0.5, -0.5, 0.5, -0.5, 0.0, 0.0]
    assert second["num_items_in_batch"].item() == 6
    metrics = trainer._metrics["train"]
    assert metrics["reroll/groups"] == [0.0, 1.0] and metrics["replay/used_groups"] == [0.0, 1.0]
    assert [row["prompt"] for row in trainer.reroll.rows] == [3, 5]  # this batch's failures (4 scored 0.5)
    assert [g["prompt_ids"].flatten().tolist() for g in trainer.replay.groups] == [[1, 1]]  # the re-roll, cached


def test_streaming_scores_chunks_of_min_groups_and_joins_them() -> None:
    trainer = Mixed([scored([1, 1, 2, 2], [0.0, 1.0, 0.0, 0.0], width=2), scored([3, 3], [1.0, 1.0], width=1)])
    trainer.streaming_groups = 2
    output = trainer._generate_and_score_completions(rows(1, 2, 3))
    assert trainer.calls == [[1, 1, 2, 2], [3, 3]]
    assert output["completion_ids"].tolist() == [[7, 7]] * 4 + [[7, PAD]] * 2
    assert output["num_items_in_batch"].item() == 10
    assert trainer._metrics["train"]["streaming/chunks"] == [2.0]

"""Streaming scoring, re-rolling and replay through the trainer on the tiny CPU model.

The task has prompts that can never be rewarded ("never" in the prompt scores 0), so every
generation batch is likely to hold failed, zero-signal groups for re-rolling and replay to act on.
Pinned: streaming with one group per chunk trains exactly like scoring the whole batch at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from .grpo_harness import grpo_cfg, grpo_trainer


def e_unless_never(completions: list[Any], prompts: list[Any], **kwargs: Any) -> list[float]:
    return [0.0 if "never" in p else c.count("e") / max(len(c), 1) for c, p in zip(completions, prompts)]


def run(model_dir: Path, tmp: Path, trl: dict[str, Any]) -> Any:
    keys = {"max_steps": 4, "logging_steps": 1, "gradient_accumulation_steps": 2, "seed": 3, "learning_rate": 0.05}
    cfg = grpo_cfg(model_dir, tmp, keys, {"max_completion_length": 6, "temperature": 1.0, **trl})
    rows = [{"prompt": f"Question {i}: {'never' if i % 2 else 'say'}"} for i in range(16)]
    trainer = grpo_trainer(cfg, [e_unless_never], rows=rows)
    trainer.train()
    return trainer


def steps(trainer: Any) -> list[dict[str, float]]:
    return [entry for entry in trainer.state.log_history if "loss" in entry and "train_loss" not in entry]


@pytest.mark.parametrize("extra", [{}, {"async_prefetch": True, "replay_recompute_logps": True}],
                         ids=["inline", "prefetch-recomputed-logps"])
def test_replay_fills_zero_signal_groups_from_earlier_batches(extra: dict[str, Any], tiny_llama_dir: Path,
                                                              tmp_path: Path) -> None:
    """With prefetching the batch carries sampling log-probs (the off-policy correction is on), which
    replayed groups get from the current policy."""
    trainer = run(tiny_llama_dir, tmp_path, {"use_data_producer": True, "replay_buffer_size": 4, **extra})
    logged = steps(trainer)
    assert logged[0]["replay/used_groups"] == 0  # nothing cached before the first batch
    assert sum(entry["replay/used_groups"] for entry in logged) > 0
    assert all(entry["replay/buffered_groups"] <= 4 for entry in logged)
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logged)


def test_reroll_starts_at_the_fraction_and_regenerates_at_most_max_groups(tiny_llama_dir: Path,
                                                                          tmp_path: Path) -> None:
    trainer = run(tiny_llama_dir, tmp_path, {"reroll_start_fraction": 0.5, "reroll_max_groups": 1})
    rerolled = [entry["reroll/groups"] for entry in steps(trainer)]
    assert rerolled[:2] == [0, 0]  # steps 0 and 1 are before 0.5 x 4 steps
    assert rerolled[2:] == [1, 1]  # failed prompts are queued from the first batch on; one per batch
    assert all(entry["reroll/queued"] >= 1 for entry in steps(trainer))


@pytest.mark.parametrize("groups", [1, 2])
def test_streaming_trains_exactly_like_scoring_the_whole_batch(groups: int, tiny_llama_dir: Path,
                                                               tmp_path: Path) -> None:
    whole = run(tiny_llama_dir, tmp_path / "whole", {"use_data_producer": True})
    streamed = run(tiny_llama_dir, tmp_path / "streamed", {"use_data_producer": True, "streaming_partial_batch": True,
                                                           "streaming_min_groups": groups})
    assert [entry["streaming/chunks"] for entry in steps(streamed)] == [2 / groups] * 4  # 2 groups a batch
    for a, b in zip(steps(whole), steps(streamed), strict=True):
        for key in ("loss", "reward", "grad_norm", "completions/mean_length"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["step"], key)
    for (name, p), (_, q) in zip(whole.model.named_parameters(), streamed.model.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)

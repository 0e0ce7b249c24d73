"""The producer's pieces without a trainer: importance weights against hand-computed values, and
the look-ahead over the Trainer's epoch iterator."""

from __future__ import annotations

import math

import pytest
import torch

from axolotl.training.grpo_offpolicy import importance_weights, weighted_advantages
from axolotl.training.grpo_producer import Lookahead, completion_ids_after_prompt

POLICY = torch.tensor([[-1.0, -2.0, -0.5], [-0.2, -0.3, 0.0]])
SAMPLER = torch.tensor([[-1.5, -1.0, -0.5], [-0.2, -0.1, -9.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def test_token_modes() -> None:
    ratios = [[math.exp(0.5), math.exp(-1.0), 1.0], [1.0, math.exp(-0.2), 1.0]]  # masked token: diff 0
    truncated = importance_weights(POLICY, SAMPLER, MASK, "token_truncate", None, 1.5)
    torch.testing.assert_close(truncated, torch.tensor(ratios).clamp(max=1.5))
    masked = importance_weights(POLICY, SAMPLER, MASK, "token_mask", 0.5, 1.5)
    expected = [[0.0, 0.0, 1.0], [1.0, math.exp(-0.2), 1.0]]  # e^0.5 > 1.5, e^-1 < 0.5
    torch.testing.assert_close(masked, torch.tensor(expected))


def test_sequence_modes_and_nan() -> None:
    sampler = SAMPLER.clone()
    sampler[1, 0] = float("nan")  # an unscored token weighs 1
    truncated = importance_weights(POLICY, sampler, MASK, "sequence_truncate", None, 3.0)
    torch.testing.assert_close(truncated, torch.tensor([[math.exp(-0.5)], [math.exp(-0.2)]]))
    masked = importance_weights(POLICY, sampler, MASK, "sequence_mask", 0.7, 3.0)
    torch.testing.assert_close(masked, torch.tensor([[0.0], [math.exp(-0.2)]]))
    with pytest.raises(ValueError, match="unknown importance-sampling mode"):
        importance_weights(POLICY, SAMPLER, MASK, "tokens", None, None)


def test_weights_fold_into_advantages() -> None:
    folded = weighted_advantages(torch.tensor([2.0, -1.0]), torch.tensor([[0.5, 1.0], [0.0, 2.0]]))
    torch.testing.assert_close(folded, torch.tensor([[1.0, 2.0], [-0.0, -2.0]]))


def test_lookahead_serves_in_order_and_shows_what_comes() -> None:
    items = [[i] for i in range(5)]
    ahead = Lookahead(iter(items), window=2, served=10)
    first = next(ahead)
    assert ahead.item(12) is items[2] and ahead.item(11) is items[1] and ahead.item(20) is None
    assert ahead.serial_of(first) == 10 and ahead.item(10) is first
    assert [next(ahead) for _ in range(4)] == items[1:]  # looked-ahead items are served once, in order
    assert ahead.serial_of(first) is None  # left the window
    with pytest.raises(StopIteration):
        next(ahead)


def test_completions_end_at_the_first_eos() -> None:
    generated = torch.tensor([[9, 9, 4, 2, 5, 2], [9, 9, 4, 5, 6, 7]])
    assert completion_ids_after_prompt(generated, 2, [2]) == [[4, 2], [4, 5, 6, 7]]

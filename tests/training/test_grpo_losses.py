"""GRPO advantages and losses against formulas written out here, on fixed tiny tensors.

The trainer is the one our config builds (`build_grpo_args` + `build_grpo_trainer`, so the
`trl:` keys go through our mapping). TRL computes advantages inside
`_generate_and_score_completions` and the loss inside `_compute_loss`; the harness feeds both
fixed numbers: generation is replaced by fixed completions and the rewards come from a dataset
column, and the per-token log-probs of the policy are replaced by fixed tensors. The expected
values use only the standard library (`statistics.stdev` is the unbiased std TRL uses).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from .grpo_harness import grpo_cfg, grpo_trainer

EPS = 1e-4  # TRL's std guard in the advantage denominator


def column_reward(completions: list[Any], score: list[float], **kwargs: Any) -> list[float]:
    return list(score)


def second_reward(completions: list[Any], bonus: list[float], **kwargs: Any) -> list[float]:
    return list(bonus)


def advantages_of(trainer: Any, scores: list[float], bonus: list[float] | None = None) -> list[float]:
    """Run TRL's scoring on one generation batch of len(scores) completions (groups of 4)."""
    size = len(scores)

    def fixed_generation(prompts: list[Any]) -> tuple[Any, ...]:
        ids = [[5, 6, 7]] * size
        return [[1, 4]] * size, ids, None, ["abc"] * size, None, {}, None, []

    trainer._generate = fixed_generation
    inputs = [{"prompt": f"p{i // 4}", "score": score, **({"bonus": bonus[i]} if bonus else {})}
              for i, score in enumerate(scores)]
    trainer.model.train()
    return trainer._generate_and_score_completions(inputs)["advantages"].tolist()


def group_normalised(values: list[float], scale: bool = True) -> list[float]:
    mean, std = statistics.fmean(values), statistics.stdev(values)
    return [(v - mean) / (std + EPS) if scale else v - mean for v in values]


TWO = ["rewards.score", "rewards.bonus"]
SCORES = [1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 4.0, 4.0]


@pytest.mark.parametrize("scale", [True, "group", False, "none", "batch"])
def test_advantages_per_scale_rewards(scale: Any, tiny_llama_dir: Path, tmp_path: Path) -> None:
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, {"micro_batch_size": 8},
                                    trl={"scale_rewards": scale}), [column_reward])
    got = advantages_of(trainer, SCORES)
    groups = [SCORES[:4], SCORES[4:]]
    if scale in (True, "group"):
        # group 1: mean 3, deviations -2 -1 0 3, std sqrt(14/3); group 2: mean 2, std sqrt(16/3)
        want = group_normalised(groups[0]) + group_normalised(groups[1])
        assert want[3] == pytest.approx(3 / (math.sqrt(14 / 3) + EPS))
    elif scale in (False, "none"):
        want = group_normalised(groups[0], scale=False) + group_normalised(groups[1], scale=False)
        assert want == [-2, -1, 0, 3, -2, -2, 2, 2]
    else:  # batch: centred per group, scaled by the std of all 8 rewards
        std = statistics.stdev(SCORES)
        want = [d / (std + EPS) for d in group_normalised(groups[0], False) + group_normalised(groups[1], False)]
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_identical_rewards_give_zero_advantages(tiny_llama_dir: Path, tmp_path: Path) -> None:
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path), [column_reward])
    assert advantages_of(trainer, [0.5] * 4) == [0.0] * 4


def test_weighted_sum_then_normalise(tiny_llama_dir: Path, tmp_path: Path) -> None:
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, trl={"reward_weights": [1.0, 0.5], "reward_funcs": TWO}),
                           [column_reward, second_reward])
    bonus = [4.0, 0.0, 2.0, 2.0]
    got = advantages_of(trainer, SCORES[:4], bonus)
    combined = [s + 0.5 * b for s, b in zip(SCORES[:4], bonus)]  # 3, 2, 4, 7
    assert got == pytest.approx(group_normalised(combined), rel=1e-5)


def test_normalise_then_sum(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """GDPO: each reward normalised within its group, weighted sum, then normalised over the batch."""
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, trl={
        "reward_weights": [1.0, 0.5], "multi_objective_aggregation": "normalize_then_sum", "reward_funcs": TWO}),
        [column_reward, second_reward])
    bonus = [4.0, 0.0, 2.0, 2.0]
    got = advantages_of(trainer, SCORES[:4], bonus)
    summed = [a + 0.5 * b for a, b in zip(group_normalised(SCORES[:4]), group_normalised(bonus))]
    want = [(s - statistics.fmean(summed)) / (statistics.stdev(summed) + EPS) for s in summed]
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


# ---- losses ------------------------------------------------------------------------------

MASK = [[1, 1, 1], [1, 1, 0]]
LOGPS = [[-1.0, -0.5, -2.0], [-0.3, -1.2, -0.7]]
OLD = [[-1.1, -0.4, -2.22], [-0.3, -1.0, -0.9]]
"""Token (0, 2) has ratio e^0.22 = 1.246: clipped by epsilon_high 0.2, not by 0.28."""
REF = [[-0.9, -0.6, -2.2], [-0.5, -1.1, -0.8]]
ADV = [1.0, -0.5]
E_LOW, E_HIGH = 0.2, 0.28


def loss_of(trainer: Any, with_ref: bool = False) -> tuple[float, list[list[float]]]:
    """(loss, d loss / d logp) of TRL's `_compute_loss` on the fixed tensors above."""
    logps = torch.tensor(LOGPS, requires_grad=True)
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (logps, torch.ones(2, 3), None)
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    inputs = {"prompt_ids": torch.tensor([[1, 4]] * 2), "prompt_mask": torch.ones(2, 2, dtype=torch.long),
              "completion_ids": torch.tensor([[5, 6, 7]] * 2), "completion_mask": torch.tensor(MASK),
              "advantages": torch.tensor(ADV), "old_per_token_logps": torch.tensor(OLD),
              "num_items_in_batch": torch.tensor(5.0)}
    if with_ref:
        inputs["ref_per_token_logps"] = torch.tensor(REF)
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    return loss.item(), logps.grad.tolist()


def tokens() -> list[tuple[int, int, float, float]]:
    """(row, column, ratio, advantage) of every unmasked token."""
    return [(b, t, math.exp(LOGPS[b][t] - OLD[b][t]), ADV[b]) for b in range(2) for t in range(3) if MASK[b][t]]


def clipped(ratio: float, adv: float, low: float = E_LOW, high: float = E_HIGH) -> float:
    return -min(ratio * adv, min(max(ratio, 1 - low), 1 + high) * adv)


def per_sequence_mean(values: dict[tuple[int, int], float]) -> float:
    rows = [[v for (b, _), v in values.items() if b == row] for row in range(2)]
    return statistics.fmean(sum(r) / len(r) for r in rows)


def hand_loss(loss_type: str) -> float:
    per_token = {(b, t): clipped(r, a) for b, t, r, a in tokens()}
    if loss_type == "grpo":
        return per_sequence_mean(per_token)  # mean over each completion, then over completions
    if loss_type == "bnpo":
        return sum(per_token.values()) / 5  # over the micro-batch's 5 completion tokens
    if loss_type == "dr_grpo":
        return sum(per_token.values()) / (2 * 3)  # rows x max_completion_length
    if loss_type == "dapo":
        return sum(per_token.values()) / 5  # over the generation batch's tokens (num_items_in_batch)
    if loss_type == "cispo":
        return sum(-min(r, E_HIGH) * a * LOGPS[b][t] for b, t, r, a in tokens()) / 5
    if loss_type == "sapo":
        soft = {(b, t): -(1 / (1 + math.exp(-tau * (r - 1)))) * 4 / tau * a
                for b, t, r, a in tokens() for tau in [1.0 if a > 0 else 1.05]}
        return per_sequence_mean(soft)
    raise AssertionError(loss_type)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo"])
def test_each_loss_type(loss_type: str, tiny_llama_dir: Path, tmp_path: Path) -> None:
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, trl={
        "loss_type": loss_type, "epsilon": E_LOW, "epsilon_high": E_HIGH}), [column_reward])
    loss, grad = loss_of(trainer)
    assert loss == pytest.approx(hand_loss(loss_type), rel=1e-5)
    if loss_type == "cispo":  # the clipped weight is a constant: d/dlogp = -min(r, eps_high) * A / tokens
        assert grad[0][0] == pytest.approx(-min(math.exp(0.1), E_HIGH) * 1.0 / 5, rel=1e-5)
    assert grad[1][2] == 0.0  # the padded token gets no gradient


def test_clipping_bounds_the_ratio(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """With epsilon 0.1 (epsilon_high unset = epsilon): tokens (0, 0) and (0, 2) (ratios 1.105 and 1.246,
    positive advantage) and (1, 1) (ratio 0.819, negative advantage) take the clipped constant and get
    no gradient; tokens (0, 1) (ratio 0.905) and (1, 0) (ratio 1) stay unclipped."""
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, trl={"loss_type": "bnpo", "epsilon": 0.1}),
                           [column_reward])
    loss, grad = loss_of(trainer)
    assert grad[0][0] == grad[0][2] == grad[1][1] == 0.0
    assert grad[0][1] == pytest.approx(-math.exp(-0.1) / 5) and grad[1][0] == pytest.approx(0.5 / 5)
    assert loss == pytest.approx(sum(clipped(r, a, 0.1, 0.1) for _, _, r, a in tokens()) / 5, rel=1e-5)


def test_epsilon_high_widens_the_upper_bound(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """Token (0, 2) (ratio 1.246, positive advantage) is clipped at 1.2 without epsilon_high and keeps its
    gradient with epsilon_high 0.28 (DAPO's clip-higher)."""
    grads = []
    for trl in ({"loss_type": "bnpo"}, {"loss_type": "bnpo", "epsilon_high": 0.28}):
        grads.append(loss_of(grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, trl=trl), [column_reward]))[1][0][2])
    assert grads[0] == 0.0 and grads[1] == pytest.approx(-math.exp(0.22) / 5, rel=1e-5)


def test_kl_term_with_bias_correction(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """beta x (e^(ref - logp) - (ref - logp) - 1), multiplied by the ratio (use_bias_correction_kl)."""
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, {"rl_beta": 0.1}, trl={
        "loss_type": "grpo", "epsilon": E_LOW, "epsilon_high": E_HIGH}), [column_reward])
    loss, _ = loss_of(trainer, with_ref=True)
    per_token = {}
    for b, t, r, a in tokens():
        delta = REF[b][t] - LOGPS[b][t]
        per_token[(b, t)] = clipped(r, a) + 0.1 * (math.exp(delta) - delta - 1) * r
    assert loss == pytest.approx(per_sequence_mean(per_token), rel=1e-5)


def test_sequence_level_importance_sampling(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """GSPO: one ratio per completion, exp(mean log-ratio over its tokens)."""
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, trl={
        "loss_type": "grpo", "epsilon": E_LOW, "epsilon_high": E_HIGH, "importance_sampling_level": "sequence"}),
        [column_reward])
    loss, _ = loss_of(trainer)
    seq = []
    for b in range(2):
        idx = [t for t in range(3) if MASK[b][t]]
        ratio = math.exp(statistics.fmean(LOGPS[b][t] - OLD[b][t] for t in idx))
        seq.append(clipped(ratio, ADV[b]))
    assert loss == pytest.approx(statistics.fmean(seq), rel=1e-5)

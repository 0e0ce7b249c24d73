"""The EBFT reward arithmetic (`axolotl.training.ebft_reward`) against values worked out by hand
on tensors of two or three dimensions (the working is in each test's comments)."""

from __future__ import annotations

import math

import pytest
import torch

from axolotl.training.ebft_reward import (
    GROUP_NORM_EPS,
    advantages,
    effective_estimator,
    feature_rewards,
    layer_indices,
    pool,
    whiten,
)

# one layer, one sequence of 4 tokens, the last one padding
STATES = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [3.0, 4.0], [9.0, 9.0]]])
VALID = torch.tensor([[True, True, True, False]])


def test_layer_indices_round_fractions_of_depth() -> None:
    assert layer_indices([0.25, 0.5, 0.75], 32) == [8, 16, 24]
    assert layer_indices([0.25, 0.5, 0.75], 2) == [1, 1, 2]  # 0.5 and 1.0 round half up
    assert layer_indices([0.0, 1.0], 4) == [0, 4]  # embeddings, last layer


def test_last_token_is_the_last_valid_token_scaled_to_unit_length() -> None:
    # [3, 4] / 5
    assert torch.allclose(pool([STATES], VALID, "last_token"), torch.tensor([[0.6, 0.8]]))


def test_mean_pooling_averages_the_valid_tokens() -> None:
    # mean of [1,0], [0,1], [3,4] = [4/3, 5/3] -> direction [4, 5] / sqrt(41)
    expected = torch.tensor([[4.0, 5.0]]) / math.sqrt(41)
    assert torch.allclose(pool([STATES], VALID, "mean_pooling"), expected)


def test_completion_mean_averages_only_completion_tokens() -> None:
    # completion = tokens 1.. : mean of [0,1], [3,4] = [1.5, 2.5] -> [3, 5] / sqrt(34)
    completion = torch.tensor([[False, True, True, True]])
    expected = torch.tensor([[3.0, 5.0]]) / math.sqrt(34)
    assert torch.allclose(pool([STATES], VALID, "completion_mean", completion), expected)
    with pytest.raises(ValueError, match="completion_mean"):
        pool([STATES], VALID, "completion_mean")


def test_concat_reads_the_quarter_points_of_the_valid_tokens() -> None:
    # token t has state [t, 1]; 8 tokens, the first two left padding: 6 valid tokens at 2..7, the
    # quarter points are valid tokens 6//4 = 1, 6//2 = 3, 18//4 = 4, i.e. positions 3, 5, 6
    states = torch.stack([torch.arange(8.0), torch.ones(8)], dim=-1)[None]
    valid = torch.tensor([[False, False, True, True, True, True, True, True]])
    blocks = [torch.tensor([p, 1.0]) / math.hypot(p, 1.0) for p in (3.0, 5.0, 6.0)]
    assert torch.allclose(pool([states], valid, "concat"), torch.cat(blocks)[None])


def test_each_layer_block_is_unit_length_and_layers_are_concatenated_in_order() -> None:
    second = STATES * torch.tensor([10.0, -1.0])  # last valid token [30, -4]
    features = pool([STATES, second], VALID, "last_token")
    expected = torch.cat([torch.tensor([0.6, 0.8]), torch.tensor([30.0, -4.0]) / math.hypot(30, 4)])
    assert torch.allclose(features, expected[None])


def test_reward_is_twice_alignment_minus_twice_the_mean_dot_product_with_the_other_samples() -> None:
    # g1 = [1,0], g2 = [0.6,0.8], g3 = [0,1]; t = [1,0]; alignment_coef 1, diversity_coef 0.5
    # cos with t: 1, 0.6, 0.  dots: g1.g2 = 0.6, g1.g3 = 0, g2.g3 = 0.8
    # diversity: (0.6+0)/2 = 0.3, (0.6+0.8)/2 = 0.7, (0+0.8)/2 = 0.4
    # reward: 2*1 - 2*0.5*0.3 = 1.7, 1.2 - 0.7 = 0.5, 0 - 0.4 = -0.4
    # cfm: mean g = [1.6/3, 0.6], minus t = [-7/15, 0.6] -> 49/225 + 81/225 = 26/45
    gen = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]])
    out = feature_rewards(gen, torch.tensor([[1.0, 0.0]]), alignment_coef=1.0, diversity_coef=0.5)
    assert torch.allclose(out.alignment, torch.tensor([[1.0, 0.6, 0.0]]))
    assert torch.allclose(out.diversity, torch.tensor([[0.3, 0.7, 0.4]]))
    assert torch.allclose(out.rewards, torch.tensor([[1.7, 0.5, -0.4]]))
    assert torch.allclose(out.cfm_loss, torch.tensor([26 / 45]))


def test_alignment_is_a_cosine_so_the_reference_length_does_not_matter() -> None:
    # g1 = [1,0], g2 = [0,1], t = [2,2]: cos 1/sqrt2 each, no diversity (orthogonal) -> reward sqrt2
    out = feature_rewards(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), torch.tensor([[2.0, 2.0]]), 1.0, 1.0)
    assert torch.allclose(out.rewards, torch.full((1, 2), math.sqrt(2)))
    assert torch.allclose(out.cfm_loss, torch.tensor([4.5]))  # [0.5,0.5] - [2,2] -> 2 * 1.5^2


def test_groups_are_scored_separately() -> None:
    gen = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    out = feature_rewards(gen, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 1.0, 1.0)
    # group 2: both samples [1,0], orthogonal to t: alignment 0, diversity 1 -> reward -2
    assert torch.allclose(out.rewards, torch.tensor([[2.0, 0.0], [-2.0, -2.0]]))


def test_one_sample_has_no_diversity_term() -> None:
    out = feature_rewards(torch.tensor([[[3.0, 4.0]]]), torch.tensor([[3.0, 4.0]]), 1.0, 1.0)
    assert torch.allclose(out.rewards, torch.tensor([[2.0]])) and out.diversity.item() == 0.0


def test_whitening_rescales_the_directions_the_samples_span() -> None:
    # samples as columns: [[2,0],[0,1],[0,0]]: singular values 2, 1 along e1, e2;
    # W = e1 e1^T / 2 + e2 e2^T: g1 -> [1,0,0], g2 -> [0,1,0], t = [4,3,5] -> [2,3,0]
    gen = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    ref = torch.tensor([[4.0, 3.0, 5.0]])
    gen_w, ref_w = whiten(gen, ref)
    assert torch.allclose(gen_w, torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]), atol=1e-6)
    assert torch.allclose(ref_w, torch.tensor([[2.0, 3.0, 0.0]]), atol=1e-6)
    out = feature_rewards(gen, ref, 1.0, 1.0, use_whitening=True)
    assert torch.allclose(out.alignment, torch.tensor([[2.0, 3.0]]) / math.sqrt(13), atol=1e-6)
    assert torch.allclose(out.diversity, torch.zeros(1, 2), atol=1e-6)
    assert torch.allclose(out.cfm_loss, torch.tensor([8.5]), atol=1e-5)  # [0.5,0.5,0] - [2,3,0]


def test_whitening_collapsed_samples_leaves_a_diversity_of_one_over_n() -> None:
    # two copies of [3,4]: one singular value 5*sqrt2 along u = [0.6,0.8] (the other is dropped);
    # g W = (g.u) u / s = u / sqrt2, so each dot product is 1/2
    gen = torch.tensor([[[3.0, 4.0], [3.0, 4.0]]])
    out = feature_rewards(gen, torch.tensor([[1.0, 0.0]]), 1.0, 1.0, use_whitening=True)
    assert torch.allclose(out.diversity, torch.full((1, 2), 0.5), atol=1e-6)
    # t W = (t.u) u / s = 0.6 u / s: the part of t outside the samples' span is dropped, cos = 1
    assert torch.allclose(out.alignment, torch.ones(1, 2), atol=1e-6)


def test_rloo_subtracts_the_mean_of_the_other_samples() -> None:
    # rewards 1, 2, 6: 1 - (2+6)/2 = -3, 2 - (1+6)/2 = -1.5, 6 - (1+2)/2 = 4.5
    rewards = torch.tensor([[1.0, 2.0, 6.0]])
    assert torch.allclose(advantages(rewards, "rloo"), torch.tensor([[-3.0, -1.5, 4.5]]))


def test_group_norm_divides_by_the_unbiased_standard_deviation() -> None:
    # mean 3, deviations -2, -1, 3, unbiased variance (4+1+9)/2 = 7
    expected = torch.tensor([[-2.0, -1.0, 3.0]]) / (math.sqrt(7) + GROUP_NORM_EPS)
    assert torch.allclose(advantages(torch.tensor([[1.0, 2.0, 6.0]]), "group_norm"), expected)
    assert torch.equal(advantages(torch.tensor([[0.5, 0.5]]), "group_norm"), torch.zeros(1, 2))


def test_reinforce_uses_the_reward_itself() -> None:
    assert torch.equal(advantages(torch.tensor([[1.0, 2.0, 6.0]]), "reinforce"), torch.tensor([[1.0, 2.0, 6.0]]))


@pytest.mark.parametrize("estimator", ["rloo", "group_norm", "reinforce"])
def test_one_sample_falls_back_to_reinforce(estimator: str) -> None:
    assert effective_estimator(estimator, 1) == "reinforce"  # type: ignore[arg-type]
    assert torch.equal(advantages(torch.tensor([[0.7], [-0.2]]), estimator), torch.tensor([[0.7], [-0.2]]))  # type: ignore[arg-type]
    assert effective_estimator(estimator, 2) == estimator  # type: ignore[arg-type]


def test_whitened_alignments_have_unit_square_sum_so_their_mean_is_capped() -> None:
    # whitened samples are an orthonormal basis of their span and t W lies in that span, so
    # sum_j cos(g_j, t W)^2 = 1 and mean_j cos <= 1/sqrt(n), whatever the features
    generator = torch.Generator().manual_seed(0)
    groups, samples, dim = 5, 4, 48
    gen = torch.randn(groups, samples, dim, generator=generator) + 3.0  # a shared offset, as in real features
    ref = torch.randn(groups, dim, generator=generator) + 3.0
    out = feature_rewards(gen, ref, 1.0, 1.0, use_whitening=True)
    assert torch.allclose(out.alignment.pow(2).sum(dim=1), torch.ones(groups), atol=1e-4)
    assert (out.alignment.mean(dim=1) <= 1 / math.sqrt(samples) + 1e-5).all()
    raw = feature_rewards(gen, ref, 1.0, 1.0, use_whitening=False)
    assert (raw.alignment.mean(dim=1) > 0.8).all()  # without whitening the shared offset dominates

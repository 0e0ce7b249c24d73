"""The EBFT feature-matching reward, in plain torch (no model, no trainer).

EBFT scores a sampled completion by how much the frozen feature network "thinks about it" the
way it thinks about the reference completion. Both modes (structured and strided) reduce to the
same arithmetic, kept here so it can be tested against hand-computed values:

1. `layer_indices`: `feature_layers` are fractions of depth; 0.0 is the embedding output and 1.0
   the last decoder layer (index `round(fraction x num_layers)` into `hidden_states`).
2. `pool`: per-token states -> one vector per sequence (`embed_method`). Each (layer, position)
   block of the feature is then scaled to unit length: deeper layers have much larger activations,
   and without this the deepest layer would decide the reward alone.
3. `whiten` (`use_whitening`): per prompt group, W = U diag(1/S) U^T from the SVD of the group's
   generated features (columns = samples), applied to the samples and the reference alike. It
   rescales the directions in which the samples vary to unit size. With full-rank samples the
   whitened samples are orthonormal, so the diversity term is ~0 unless samples collapse (n
   identical samples give 1/n); singular values below `WHITEN_TOLERANCE` x the largest are dropped
   (pseudo-inverse). The group's whitened alignments then have squares summing to 1, so their
   mean is at most 1/sqrt(n): near that cap the alignment metric cannot show progress.
4. `feature_rewards`: reward_j = 2 a cos(g_j, t) - 2 d mean_{k != j} (g_j . g_k), the factor 2 of
   the paper's eq. 7; `alignment` is the cosine, `diversity` the mean dot product, `cfm_loss` the
   squared distance between the group's mean feature and the reference feature.
5. `advantages`: per group, RLOO (leave-one-out baseline), group normalisation or plain REINFORCE.
   One sample per group has no baseline: `effective_estimator` falls back to REINFORCE (and the
   trainers switch the diversity term off, which needs two samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

EmbedMethod = Literal["last_token", "mean_pooling", "completion_mean", "concat"]
Estimator = Literal["rloo", "group_norm", "reinforce"]

WHITEN_TOLERANCE = 1e-5
"""Singular values below this fraction of the largest are treated as zero when whitening."""
GROUP_NORM_EPS = 1e-4
"""Added to the group's standard deviation (as TRL's GRPO does), so equal rewards give 0, not NaN."""
CONCAT_QUANTILES = (1, 2, 3)
"""`concat` reads the valid token at q/4 of the sequence for each q."""


def layer_indices(fractions: list[float], num_layers: int) -> list[int]:
    """Indices into a transformers `hidden_states` tuple (length num_layers + 1) for each fraction.

    Rounded half up, so a 32-layer model gives 8, 16, 24 for [0.25, 0.5, 0.75] and a 2-layer model
    1, 1, 2 (a repeated layer simply counts twice)."""
    if num_layers < 1:
        raise ValueError(f"the feature network has {num_layers} layers; EBFT needs at least one")
    return [min(num_layers, max(0, math.floor(fraction * num_layers + 0.5))) for fraction in fractions]


def _pool_one(states: torch.Tensor, valid: torch.Tensor, completion: torch.Tensor | None,
              method: EmbedMethod) -> torch.Tensor:
    """(N, T, H) states of one layer -> (N, P, H): P = 3 for `concat`, else 1."""
    weights = valid.to(states.dtype)
    if method == "last_token":
        last = (torch.arange(valid.shape[1], device=valid.device) * valid).argmax(dim=1)
        return states[torch.arange(states.shape[0], device=states.device), last][:, None]
    if method in ("mean_pooling", "completion_mean"):
        if method == "completion_mean":
            if completion is None:
                raise ValueError("`embed_method: completion_mean` needs to know where the completion starts")
            weights = (valid & completion).to(states.dtype)
        total = (states * weights[..., None]).sum(dim=1)
        return (total / weights.sum(dim=1).clamp(min=1)[:, None])[:, None]
    if method == "concat":
        counts = valid.sum(dim=1)
        # position of the k-th valid token: valid tokens sorted first, keeping their order
        order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices
        picks = [torch.div(counts * q, len(CONCAT_QUANTILES) + 1, rounding_mode="floor") for q in CONCAT_QUANTILES]
        rows = torch.arange(states.shape[0], device=states.device)
        return torch.stack([states[rows, order[rows, pick]] for pick in picks], dim=1)
    raise ValueError(f"unknown embed_method {method!r}; use last_token, mean_pooling, completion_mean or concat")


def pool(layers: list[torch.Tensor], valid: torch.Tensor, method: EmbedMethod,
         completion: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sequence features from the per-token states of each feature layer.

    `layers`: one (N, T, H) tensor per feature layer; `valid`: (N, T) bool, the tokens of each
    sequence; `completion`: (N, T) bool, its completion tokens (for `completion_mean`). Returns
    (N, layers x P x H) in fp32, every H-sized block of unit length."""
    blocks = [_pool_one(states.float(), valid.bool(), None if completion is None else completion.bool(), method)
              for states in layers]
    stacked = torch.nn.functional.normalize(torch.cat(blocks, dim=1), dim=-1)
    return stacked.flatten(1)


def whiten(generated: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Whiten each group: `generated` (G, n, D), `reference` (G, D) -> the same shapes.

    W = U diag(1/S) U^T where U, S come from the SVD of the group's samples as columns (D, n);
    both sides are multiplied by W. Singular values scale with sqrt(n), so reward sizes depend on
    the (fixed) number of samples per prompt."""
    columns = generated.float().transpose(1, 2)
    u, s, _ = torch.linalg.svd(columns, full_matrices=False)  # u: (G, D, r), s: (G, r)
    keep = s > WHITEN_TOLERANCE * s.amax(dim=1, keepdim=True).clamp(min=torch.finfo(s.dtype).tiny)
    inverse = torch.where(keep, 1.0 / s.clamp(min=torch.finfo(s.dtype).tiny), torch.zeros_like(s))

    def apply(x: torch.Tensor) -> torch.Tensor:  # x W, computed as ((x U) / S) U^T without the D x D matrix
        return ((x @ u) * inverse[:, None, :]) @ u.transpose(1, 2)

    return apply(generated.float()), apply(reference.float()[:, None, :])[:, 0]


@dataclass
class RewardBreakdown:
    """Per-sample rewards and their parts, each (G, n), and the per-group CFM loss (G,)."""

    rewards: torch.Tensor
    alignment: torch.Tensor
    """cos(g_j, t), before the coefficient and the factor 2."""
    diversity: torch.Tensor
    """mean over the other samples k of g_j . g_k, before the coefficient and the factor 2 (0 with one sample)."""
    cfm_loss: torch.Tensor
    """|mean_j g_j - t|^2 per group."""


def feature_rewards(generated: torch.Tensor, reference: torch.Tensor, alignment_coef: float = 1.0,
                    diversity_coef: float = 1.0, use_whitening: bool = False) -> RewardBreakdown:
    """The EBFT reward of every sample: `generated` (G, n, D) features of n samples for each of G
    prompts (or strided blocks), `reference` (G, D) the reference completion's features."""
    if generated.ndim != 3 or reference.ndim != 2 or generated.shape[0] != reference.shape[0] \
            or generated.shape[2] != reference.shape[1]:
        raise ValueError(f"features must be (groups, samples, dim) and (groups, dim); got {tuple(generated.shape)} "
                         f"and {tuple(reference.shape)}")
    gen, ref = (whiten(generated, reference) if use_whitening else (generated.float(), reference.float()))
    n = gen.shape[1]
    alignment = torch.nn.functional.cosine_similarity(gen, ref[:, None, :].expand_as(gen), dim=-1)
    if n > 1:
        dots = gen @ gen.transpose(1, 2)
        diversity = (dots.sum(dim=2) - dots.diagonal(dim1=1, dim2=2)) / (n - 1)
    else:
        diversity = torch.zeros_like(alignment)
    rewards = 2 * alignment_coef * alignment - 2 * diversity_coef * diversity
    cfm = (gen.mean(dim=1) - ref).pow(2).sum(dim=-1)
    return RewardBreakdown(rewards, alignment, diversity, cfm)


def effective_estimator(estimator: Estimator, samples: int) -> Estimator:
    """The estimator actually used: with one sample there is no baseline, so REINFORCE."""
    return "reinforce" if samples < 2 else estimator


def advantages(rewards: torch.Tensor, estimator: Estimator) -> torch.Tensor:
    """Per-sample advantages from (G, n) rewards, each group on its own.

    rloo: r_j - mean of the group's other rewards; group_norm: (r_j - mean) / (unbiased std + 1e-4);
    reinforce: r_j. With n = 1 every estimator is REINFORCE (`effective_estimator`)."""
    n = rewards.shape[-1]
    estimator = effective_estimator(estimator, n)
    if estimator == "reinforce":
        return rewards.clone()
    mean = rewards.mean(dim=-1, keepdim=True)
    if estimator == "rloo":
        return (rewards - mean) * n / (n - 1)
    if estimator == "group_norm":
        return (rewards - mean) / (rewards.std(dim=-1, keepdim=True) + GROUP_NORM_EPS)
    raise ValueError(f"unknown advantage_estimator {estimator!r}; use rloo, group_norm or reinforce")

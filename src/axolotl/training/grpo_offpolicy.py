"""Importance-sampling correction for rollouts of the data producer's sampler.

TRL 1.16 corrects for the gap between the sampler and the policy only when the sampler is vLLM
(`use_vllm`): it multiplies each token's policy-gradient loss by `exp(logp_policy - logp_sampler)`,
truncated or masked at `vllm_importance_sampling_cap` per `vllm_importance_sampling_mode`. The
producer's sampler is a stale copy of the policy, so the same correction applies; its modes and
caps are TRL's (same GRPOConfig fields), computed here because TRL's computation is inline in its
vLLM path.

The ratio is folded into the advantages, which TRL accepts with shape (B, T): every loss type
this applies to (grpo, bnpo, dr_grpo, dapo, cispo, sapo) is `-f(ratio, sign(A)) * A` per token,
so a non-negative weight `w` on the advantage scales the token's policy loss by exactly `w`, the
KL term is untouched (as in TRL) and zero-advantage skipping stays exact. `vespo` weights the
ratio inside its gamma function instead and is refused with the correction.

`off_policy_mask_threshold` needs nothing here: TRL's mask reads `sampling_per_token_logps`, which
the producer's rollouts carry.
"""

from __future__ import annotations

import math

import torch


def importance_weights(policy_logps: torch.Tensor, sampling_logps: torch.Tensor, mask: torch.Tensor, mode: str,
                       clip_min: float | None, clip_max: float | None) -> torch.Tensor:
    """Per-token (B, T) or per-sequence (B, 1) weights `pi_policy / pi_sampler` for `mode` in
    token_truncate, token_mask, sequence_truncate, sequence_mask: truncate clamps to
    [clip_min, clip_max], mask zeroes weights outside it. Unscored (NaN) tokens weigh 1."""
    diff = torch.nan_to_num((policy_logps - sampling_logps) * mask, nan=0.0)
    if mode.startswith("sequence"):
        diff = diff.sum(dim=-1, keepdim=True)
    elif not mode.startswith("token"):
        raise ValueError(f"unknown importance-sampling mode {mode!r}: use token_truncate, token_mask, "
                         "sequence_truncate or sequence_mask")
    ratio = torch.exp(diff)
    if mode.endswith("truncate"):
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    if not mode.endswith("mask"):
        raise ValueError(f"unknown importance-sampling mode {mode!r}")
    low = clip_min if clip_min is not None else -math.inf
    high = clip_max if clip_max is not None else math.inf
    return ratio.masked_fill((ratio < low) | (ratio > high), 0.0)


def weighted_advantages(advantages: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Advantages (B,) times importance weights (B, T) or (B, 1): the shape TRL's loss accepts."""
    return advantages.unsqueeze(1) * weights.to(advantages.dtype)

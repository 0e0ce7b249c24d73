"""Energy-based fine-tuning: rewards from matching the reference completion's features."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from axolotl.config.schema.base import ConfigModel


class EBFTConfig(ConfigModel):
    mode: Literal["structured", "strided"] = "structured"
    """structured: prompt + ground_truth rows on the GRPO loop (`trl:` keys); strided: rollouts at anchors
    inside tokenised documents, on one device (docs/ebft.md)."""
    feature_layers: list[float] = Field(default_factory=lambda: [0.25, 0.5, 0.75], min_length=1)
    """Depth fractions to read hidden states from (0.0 = embeddings, 1.0 = last layer)."""
    embed_method: Literal["last_token", "mean_pooling", "completion_mean", "concat"] = "last_token"
    """How a sequence's token states become one feature vector per layer."""
    use_whitening: bool = False
    """Whiten each group's features (SVD of the samples) before scoring."""
    alignment_coef: float = Field(default=1.0, ge=0)
    """Weight of cos(sample, reference) in the reward (times 2)."""
    diversity_coef: float = Field(default=1.0, ge=0)
    """Weight of the mean dot product with the group's other samples, subtracted (times 2)."""
    ce_coef: float = Field(default=0.0, ge=0)
    """Strided: weight of the cross-entropy on the document's supervised tokens."""
    adaptive_max_tokens: bool = True
    """Structured: cap each generation batch at gt_length_multiplier x its longest reference."""
    gt_length_multiplier: float = Field(default=1.5, ge=0.1)

    # strided mode only
    stride: int = Field(default=8, ge=1)
    """Tokens between anchors."""
    context_length: int = Field(default=8, ge=1)
    """Document tokens before its anchor that a rollout block sees."""
    generate_max_len: int = Field(default=8, ge=1)
    """Tokens sampled per block."""
    n_samples_per_prompt: int = Field(default=4, ge=1)
    """Rollouts per anchor (one group for rewards and advantages)."""
    temperature: float = Field(default=0.6, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    rl_coef: float = Field(default=1.0, ge=0)
    """Weight of the policy-gradient loss."""
    advantage_estimator: Literal["rloo", "group_norm", "reinforce"] = "rloo"
    """With one sample per anchor the trainer always uses reinforce."""
    min_completion_prefix: int = Field(default=0, ge=0)
    """Tokens into the answer (after prompt_length) before the first anchor."""

    @model_validator(mode="after")
    def _feature_layers_are_fractions(self) -> EBFTConfig:
        bad = [x for x in self.feature_layers if not 0.0 <= x <= 1.0]
        if bad:
            raise ValueError(f"`feature_layers` are fractions of depth in [0, 1]; got {bad}")
        return self

"""`plugins: [axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin]`: Apple's Cut Cross
Entropy (the `cut-cross-entropy` package, `axolotl[cce]`). Listing the plugin turns it on, as in
the reference; `cut_cross_entropy: false` keeps the plugin listed but off.

CCE computes the loss from the decoder's hidden states and the output projection in Triton
kernels that never write the logits to memory. It plugs into the same place as our own
`chunked_cross_entropy` (the trainer's loss from hidden states, `axolotl.training.loss`), so it
applies to every architecture whose logits are a plain projection of the last hidden state;
models that scale or soft-cap their logits, an adapted head and multi-process runs are refused
there, before the first step. The reference patches each architecture's forward instead (its
list of supported models); the PyPI package has no such patches, and the loss path does not need them.

CCE skips the gradient of logits whose softmax probability is below a threshold (`filter_eps`,
its default "high"): gradients match the plain loss to within bf16 rounding, not exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from axolotl.config.errors import ConfigIssue
from axolotl.config.schema.integrations import CutCrossEntropyArgs
from axolotl.integrations.base import LinearCrossEntropy, Plugin
from axolotl.integrations.requirements import require_cuda, require_packages

if TYPE_CHECKING:
    import torch

    from axolotl.config.schema import AxolotlConfig

NAME: Final = "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin"
NOT_SUPPORTED_YET: Final[dict[str, str]] = {
    "cut_cross_entropy_accum_c_fp32": "fp32 accumulation of the classifier gradient",
    "cut_cross_entropy_c_grad_chunk_size": "chunked classifier gradients",
}
"""Options of the reference's fork of cut-cross-entropy that the PyPI package does not have."""

OTHER_LOSSES: Final = ("chunked_cross_entropy", "liger_fused_linear_cross_entropy", "liger_cross_entropy")


def cut_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the token losses (labels already shifted, -100 ignored) in fp32."""
    from cut_cross_entropy import linear_cross_entropy

    _restore_legacy_matmul_precision()
    return linear_cross_entropy(hidden.to(weight.dtype), weight, labels, reduction="sum").float()


def _restore_legacy_matmul_precision() -> None:
    """cut-cross-entropy 25.1.1 reads `torch.get_float32_matmul_precision()`, which raises on torch
    >= 2.9 once anything (transformers, accelerate) has set precision through the per-backend
    `fp32_precision` API. Writing the current CUDA setting back through the legacy setter keeps
    the value and makes the legacy getter valid again. Remove when the package reads the new API."""
    import torch

    matmul = torch.backends.cuda.matmul
    current = getattr(matmul, "fp32_precision", None)
    if current is None:
        return
    try:
        torch.get_float32_matmul_precision()
    except RuntimeError:
        torch.set_float32_matmul_precision("high" if current == "tf32" else "highest")


def enabled(cfg: AxolotlConfig) -> bool:
    """On unless `cut_cross_entropy: false` (the key is optional, as in the reference)."""
    return getattr(cfg, "cut_cross_entropy", None) is not False


class CutCrossEntropyPlugin(Plugin):
    """The loss through cut-cross-entropy's `linear_cross_entropy`."""

    args = CutCrossEntropyArgs

    def check_config(self, cfg: AxolotlConfig) -> list[ConfigIssue]:
        issues = [ConfigIssue((key,), f"`{key}` is not supported yet ({what})",
                              hint="remove the key; the PyPI cut-cross-entropy has no such option")
                  for key, what in NOT_SUPPORTED_YET.items() if getattr(cfg, key, None) is not None]
        if not enabled(cfg):
            return issues
        for other in OTHER_LOSSES:
            if getattr(cfg, other, None):
                key = "cut_cross_entropy" if cfg.explicitly_set("cut_cross_entropy") else other
                issues.append(ConfigIssue((key,), f"Cut Cross Entropy (`{NAME}`) and `{other}` both replace the loss",
                                          hint="keep one of them", related=(("plugins",),)))
        return issues

    def preflight(self, cfg: AxolotlConfig) -> None:
        if not enabled(cfg):
            return
        require_packages(NAME, {"cut_cross_entropy": "cce", "triton": "cce"})
        require_cuda(NAME, "Cut Cross Entropy's kernels are Triton GPU kernels")

    def linear_cross_entropy(self, cfg: AxolotlConfig) -> LinearCrossEntropy | None:
        return cut_linear_cross_entropy if enabled(cfg) else None

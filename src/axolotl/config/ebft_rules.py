"""EBFT's cross-field rules: keys a mode would ignore, and the strided-mode constraints.

Registered into `axolotl.config.rules.RULES` when that module loads (it imports this one last).
Structured mode runs on the GRPO trainer and reads `trl:`; strided mode runs its own loop and
reads only `ebft:`, so each mode rejects the keys that configure the other. Strided mode with
flex_attention compiles its own kernels (no `torch_compile` on top) and its block masks need
reentrant activation checkpointing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from axolotl.config.enums import RLType
from axolotl.config.errors import ConfigIssue
from axolotl.config.rules import rule
from axolotl.config.schema import AxolotlConfig

STRIDED_ONLY = ("stride", "context_length", "generate_max_len", "n_samples_per_prompt", "temperature", "top_p",
                "rl_coef", "advantage_estimator", "min_completion_prefix")
"""`ebft:` keys only strided mode reads."""
STRUCTURED_ONLY = ("adaptive_max_tokens", "gt_length_multiplier")
"""`ebft:` keys only structured mode reads (the completion budget of generation)."""


def _written(block: Any, key: str) -> bool:
    """Written with a value other than the default (a saved resolved config writes every default)."""
    field = type(block).model_fields[key]
    return block.explicitly_set(key) and getattr(block, key) != field.get_default(call_default_factory=True)


def _changed_trl_keys(cfg: AxolotlConfig) -> list[str]:
    trl = cfg.trl
    return sorted(key for key, field in type(trl).model_fields.items()
                  if not field.is_required() and trl.explicitly_set(key)
                  and getattr(trl, key) != field.get_default(call_default_factory=True))


@rule
def ebft_mode_keys(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    """Keys that the chosen EBFT mode would silently ignore."""
    if cfg.rl != RLType.EBFT:
        return
    if cfg.trl.reward_funcs:
        yield ConfigIssue(("trl", "reward_funcs"), "is not read by `rl: ebft`: its reward is the feature-matching "
                          "reward of the `ebft:` block", hint="remove `trl.reward_funcs`, or use `rl: grpo` for "
                          "reward functions of your own")
    ebft = cfg.ebft
    if ebft is None:
        return
    if ebft.mode == "structured":
        for key in STRIDED_ONLY:
            if _written(ebft, key):
                yield ConfigIssue(("ebft", key), "is only read in strided mode (this config uses `ebft.mode: "
                                  "structured`)", hint="remove it, or set `ebft.mode: strided`; structured mode "
                                  "samples with `trl.temperature`, `trl.top_p` and `trl.num_generations`",
                                  related=(("ebft", "mode"),))
        return
    for key in STRUCTURED_ONLY:
        if _written(ebft, key):
            yield ConfigIssue(("ebft", key), "is only read in structured mode (strided rollouts are always "
                              "`ebft.generate_max_len` tokens)", hint="remove it, or set `ebft.mode: structured`",
                              related=(("ebft", "mode"),))
    for key in _changed_trl_keys(cfg):
        if key != "reward_funcs":
            yield ConfigIssue(("trl", key), "is not read in strided EBFT mode (the `trl:` block configures "
                              "structured mode's GRPO loop)", hint="remove it; strided mode reads `ebft.temperature`, "
                              "`ebft.top_p`, `ebft.n_samples_per_prompt`, ...", related=(("ebft", "mode"),))


@rule
def ebft_strided_constraints(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    """The constraints of strided mode (docs/ebft.md, "Strided Mode Constraints")."""
    ebft = cfg.ebft
    if cfg.rl != RLType.EBFT or ebft is None or ebft.mode != "strided":
        return
    flex = cfg.attn_implementation == "flex_attention"
    if cfg.torch_compile:
        yield ConfigIssue(("torch_compile",), "must not be set in strided EBFT mode: flex_attention compiles its "
                          "own kernels, and compiling the layers too conflicts with them (and runs out of memory)",
                          hint="remove `torch_compile`", value=cfg.torch_compile)
    if flex and cfg.activation_offloading:
        yield ConfigIssue(("activation_offloading",), "strided EBFT with flex attention cannot offload activations",
                          hint="remove activation_offloading")
    reentrant = (cfg.gradient_checkpointing_kwargs or {}).get("use_reentrant")
    if flex and cfg.gradient_checkpointing and reentrant is not True:
        yield ConfigIssue(("gradient_checkpointing_kwargs",), "strided EBFT with flex_attention needs reentrant "
                          "checkpointing (non-reentrant checkpointing fails with CheckpointError on block masks)",
                          hint="set `gradient_checkpointing_kwargs: {use_reentrant: true}`",
                          related=(("gradient_checkpointing",), ("flex_attention",)))
    if not flex:
        yield ConfigIssue(("flex_attention",), "is strongly recommended in strided EBFT mode: without it the block "
                          "mask is a dense (length x length) mask and attention cannot skip the masked tiles",
                          hint="set `flex_attention: true` on a GPU (measured on an H100: dense masks are a little "
                               "faster for 1k-token documents, flex 1.2x faster at 2k and 1.7x at 4k)",
                          severity="warning")
    if ebft.advantage_estimator in ("rloo", "group_norm") and ebft.n_samples_per_prompt < 2:
        yield ConfigIssue(("ebft", "n_samples_per_prompt"), f"`{ebft.advantage_estimator}` needs at least 2 samples; "
                          "with 1 the trainer uses `reinforce` and drops the diversity term",
                          hint="raise n_samples_per_prompt, or write `advantage_estimator: reinforce`",
                          value=ebft.n_samples_per_prompt, severity="warning")

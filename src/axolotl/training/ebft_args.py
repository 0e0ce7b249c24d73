"""What EBFT training refuses (not built yet) and checks before anything loads.

Structured mode runs on the GRPO trainer, so it refuses what GRPO refuses
(`axolotl.training.grpo_args`) and is checked the same way (batch divisibility, vLLM present).
Strided mode runs its own loop on one device: the GRPO-only machinery does not apply, but the
top-level features that loop does not implement are refused by name. Keys that a mode would
silently ignore (the other mode's `ebft:` keys, `trl:` in strided mode) are config errors, see
`axolotl.config.rules.ebft_rules`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from axolotl.process_group import launched_world_size
from axolotl.training.grpo_args import TOP_LEVEL_REFUSED, check_grpo_config, grpo_refusals

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig


def _mode(cfg: AxolotlConfig) -> str:
    return cfg.ebft.mode if cfg.ebft is not None else "structured"


def _on(value: Any) -> bool:
    return value not in (None, False, "", [], {}, 0)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def ebft_refusals(cfg: AxolotlConfig) -> list[str]:
    """One message per key of an `rl: ebft` config that EBFT training cannot honour yet."""
    messages = []
    if cfg.deepspeed or cfg.fsdp or cfg.fsdp_config is not None:
        messages.append("`deepspeed` / `fsdp_config` are not supported yet with `rl: ebft` (the feature network "
                        "runs the unsharded model; use one GPU or plain DDP)")
    if _mode(cfg) == "structured":
        messages += [message.replace("`rl: grpo`", "`rl: ebft`") for message in grpo_refusals(cfg)]
        if cfg.ebft is not None and cfg.ebft.ce_coef > 0:
            messages.append("`ebft.ce_coef` > 0 is not supported yet in structured mode (a cross-entropy term on the "
                            "references); set it to 0, or use `ebft.mode: strided`")
        return messages
    messages += [f"`{key}` is not supported yet with strided `rl: ebft` ({feature})"
                 for key, (is_on, feature) in TOP_LEVEL_REFUSED.items()
                 if key in type(cfg).model_fields and is_on(getattr(cfg, key)) and key != "chat_template_kwargs"]
    if cfg.chat_template_kwargs:
        messages.append("`chat_template_kwargs` is not supported yet with strided `rl: ebft` (the built-in strided "
                        "transforms render with the template's defaults)")
    if cfg.attn_implementation == "flex_attention" and not _has_cuda():
        messages.append("`flex_attention: true` is not supported yet with strided `rl: ebft` without a GPU (torch has "
                        "no flex_attention backward on CPU); use `sdp_attention: true` there")
    if launched_world_size() > 1:
        messages.append("strided `rl: ebft` on several processes is not supported yet (it runs on one device; the "
                        "policy is called outside the DDP wrapper, so gradients would not be synchronised)")
    if cfg.val_set_size or cfg.test_datasets:
        messages.append("evaluation (`val_set_size` / `test_datasets`) is not supported yet with strided `rl: ebft`")
    if cfg.eval_sequence_len not in (None, cfg.sequence_len):
        messages.append("`eval_sequence_len` is not supported yet with strided `rl: ebft` (there is no evaluation)")
    return messages


def check_ebft_config(cfg: AxolotlConfig) -> None:
    """Structured mode: GRPO's own up-front checks (generation batch, eval batch, vLLM installed)."""
    if _mode(cfg) == "structured":
        check_grpo_config(cfg)


def train_ebft(cfg: AxolotlConfig, extra_callbacks: Any = ()) -> Any:
    """`axolotl.training.sft.train` for `rl: ebft` (after `preflight`): the mode picks the trainer."""
    if _mode(cfg) == "strided":
        from axolotl.training.ebft_strided_trainer import train_ebft_strided

        return train_ebft_strided(cfg, extra_callbacks)
    from axolotl.training.ebft_structured import train_ebft_structured

    return train_ebft_structured(cfg, extra_callbacks)

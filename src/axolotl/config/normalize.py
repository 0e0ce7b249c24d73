"""Derived values: resolve `auto`, fill defaults that depend on other keys.

Runs on the validated config so every consumer sees one resolved value (e.g. a single
`attn_implementation`) instead of re-deriving it from several legacy flags.
"""

from __future__ import annotations

import os

from axolotl.config.enums import ATTENTION_FLAGS, ChatTemplate
from axolotl.config.environment import Environment
from axolotl.config.errors import ConfigIssue
from axolotl.config.schema import AxolotlConfig

DEFAULT_ATTENTION = "sdpa"


def normalize(cfg: AxolotlConfig, env: Environment) -> tuple[list[ConfigIssue], list[ConfigIssue]]:
    """Resolve derived keys in place; return (errors, warnings)."""
    errors: list[ConfigIssue] = []
    warnings: list[ConfigIssue] = []
    _precision(cfg, env, warnings)
    _attention(cfg, errors)
    _batch(cfg, env, errors)
    _data(cfg)
    _rl(cfg, errors)
    return errors, warnings


def _precision(cfg: AxolotlConfig, env: Environment, warnings: list[ConfigIssue]) -> None:
    if cfg.bf16 == "auto":
        cfg.bf16 = env.bf16_supported
        if not env.bf16_supported and env.cuda_available and cfg.fp16 is None:
            cfg.fp16 = True
    elif cfg.bf16 and env.cuda_available and not env.bf16_supported:
        warnings.append(ConfigIssue(("bf16",), "this GPU does not support bf16", severity="warning",
                                    hint="use `bf16: auto` or `fp16: true`"))
    if cfg.tf32 == "auto":
        cfg.tf32 = env.tf32_supported
    if cfg.torch_compile == "auto":  # off under FSDP/DeepSpeed: per-layer compilation is not tested sharded
        sharded = bool(cfg.fsdp) or cfg.fsdp_config is not None or bool(cfg.deepspeed)
        cfg.torch_compile = env.cuda_available and not sharded


def _attention(cfg: AxolotlConfig, errors: list[ConfigIssue]) -> None:
    chosen = [flag for flag in ATTENTION_FLAGS if getattr(cfg, flag)]
    if len(chosen) > 1:
        return  # reported by the one-backend rule
    implied = ATTENTION_FLAGS[chosen[0]] if chosen else None
    if cfg.attn_implementation and implied and cfg.attn_implementation != implied:
        errors.append(ConfigIssue(("attn_implementation",),
                                  f"conflicts with `{chosen[0]}: true` (which selects `{implied}`)",
                                  value=cfg.attn_implementation, hint="keep one of the two"))
        return
    cfg.attn_implementation = cfg.attn_implementation or implied or DEFAULT_ATTENTION


def _batch(cfg: AxolotlConfig, env: Environment, errors: list[ConfigIssue]) -> None:
    cfg.world_size = cfg.world_size or env.world_size
    cfg.local_rank = env.local_rank if cfg.local_rank is None else cfg.local_rank
    mbs = cfg.micro_batch_size or 1
    per_step = mbs * cfg.world_size
    if cfg.explicitly_set("batch_size") and cfg.batch_size is not None:
        if not cfg.explicitly_set("gradient_accumulation_steps"):
            if cfg.batch_size % per_step:
                errors.append(ConfigIssue(("batch_size",), "not a multiple of micro_batch_size * world_size "
                                          f"({mbs} * {cfg.world_size})", value=cfg.batch_size,
                                          hint="set `gradient_accumulation_steps` instead of `batch_size`"))
                return
            cfg.gradient_accumulation_steps = cfg.batch_size // per_step
        elif cfg.batch_size != per_step * (cfg.gradient_accumulation_steps or 1):
            errors.append(ConfigIssue(("batch_size",), "disagrees with micro_batch_size * "
                                      "gradient_accumulation_steps * world_size "
                                      f"= {per_step * (cfg.gradient_accumulation_steps or 1)}",
                                      value=cfg.batch_size, hint="remove `batch_size`; it is derived"))
            return
    cfg.gradient_accumulation_steps = cfg.gradient_accumulation_steps or 1
    cfg.micro_batch_size = mbs
    cfg.batch_size = per_step * cfg.gradient_accumulation_steps
    cfg.eval_batch_size = cfg.eval_batch_size or mbs


def _data(cfg: AxolotlConfig) -> None:
    cfg.eval_sequence_len = cfg.eval_sequence_len or cfg.sequence_len
    if cfg.eval_sample_packing is None:
        cfg.eval_sample_packing = cfg.sample_packing
    if cfg.sample_packing and cfg.pad_to_sequence_len is None:
        cfg.pad_to_sequence_len = True
    cfg.dataset_num_proc = cfg.dataset_num_proc or cfg.dataset_processes or os.cpu_count() or 1
    if cfg.pretraining_dataset and cfg.streaming is None:
        cfg.streaming = True
    if cfg.chat_template_jinja and cfg.chat_template is None:
        cfg.chat_template = ChatTemplate.JINJA


def _rl(cfg: AxolotlConfig, errors: list[ConfigIssue]) -> None:
    trl_beta = cfg.trl.beta
    if cfg.rl_beta is not None and trl_beta is not None and cfg.rl_beta != trl_beta:
        errors.append(ConfigIssue(("trl", "beta"), f"disagrees with `rl_beta: {cfg.rl_beta}`",
                                  value=trl_beta, hint="set the beta once, as `rl_beta`"))
        return
    beta = cfg.rl_beta if cfg.rl_beta is not None else trl_beta
    cfg.rl_beta = beta
    cfg.trl.beta = beta

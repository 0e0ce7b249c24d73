"""Shared by the GRPO tests: our config -> GRPOConfig -> the trainer our runs use, on the tiny model,
with no data preparation (rows and reward functions are passed in)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from axolotl.testing.configs import load


def grpo_cfg(model_dir: Path, tmp: Path, extra: dict[str, Any] | None = None, trl: dict[str, Any] | None = None) -> Any:
    keys: dict[str, Any] = {
        "base_model": str(model_dir), "rl": "grpo", "learning_rate": 1e-3, "output_dir": str(tmp / "out"),
        "datasets": [{"path": "prompts.jsonl"}], "optimizer": "adamw_torch", "save_strategy": "no",
        "micro_batch_size": 4, "lr_scheduler": "constant",
        "trl": {"num_generations": 4, "max_completion_length": 3, "reward_funcs": ["rewards.unused"],
                **(trl or {})},
    }
    keys.update(extra or {})
    return load(yaml.safe_dump(keys)).cfg


def grpo_trainer(cfg: Any, reward_funcs: list[Callable[..., Any]], rows: list[dict[str, Any]] | None = None) -> Any:
    import datasets
    import torch

    from axolotl.models.adapters import apply_adapter
    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer
    from axolotl.training.grpo import build_grpo_trainer
    from axolotl.training.grpo_args import build_grpo_args
    from axolotl.training.rewards import wrap_reward

    torch.manual_seed(0)
    tokenizer = load_tokenizer(cfg)
    model = apply_adapter(cfg, load_model(cfg, tokenizer))
    args = build_grpo_args(cfg, has_eval=False)
    rows = rows or [{"prompt": f"Question {i}:"} for i in range(8)]
    wrapped = [wrap_reward(func, f"test.{func.__name__}") for func in reward_funcs]
    return build_grpo_trainer(cfg, model, tokenizer, datasets.Dataset.from_list(rows), None, args, wrapped)

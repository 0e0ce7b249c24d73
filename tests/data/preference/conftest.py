"""Helpers for the preference-format tests: a config from a few YAML lines, and the row format
its first dataset entry resolves to (no files are read; tokenizers only where a template is)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from axolotl.config.environment import Environment
from axolotl.config.loader import load_config_text
from axolotl.data.preference.base import PreferenceContext, Row, preference_kind
from axolotl.data.preference.registry import resolve


def make_config(entry: str, rl: str = "dpo", base_model: str | Path = "org/model", extra: str = "") -> Any:
    """`entry` is the YAML of one `datasets:` item after `- `, indented by 4 spaces on later lines."""
    text = (f"base_model: {base_model}\nlearning_rate: 1e-4\nmicro_batch_size: 2\nrl: {rl}\n{extra}"
            f"datasets:\n  - {entry}\n")
    return load_config_text(text, "cfg.yml", env=Environment()).cfg


def row_format(cfg: Any, tokenizer: Any = None, index: int = 0) -> Any:
    kind = preference_kind(cfg)
    assert kind is not None
    return resolve(PreferenceContext(tokenizer=tokenizer, cfg=cfg, dataset=cfg.datasets[index], kind=kind, index=index))


def render(type_name: str, row: Row, rl: str = "dpo") -> Row:
    """The output columns of `type: <type_name>` for one row."""
    return row_format(make_config(f"path: data.jsonl\n    type: {type_name}", rl=rl))(row)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))

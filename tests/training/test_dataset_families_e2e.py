"""`axolotl train`'s library path on every SFT dataset family, in each adapter setting: full
fine-tune, LoRA and (where bitsandbytes runs) QLoRA. Each run must take real optimizer steps on
supervised tokens, lower the loss over a few steps on its small set, and save outputs that load."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from axolotl.testing import write_rows
from axolotl.testing.configs import load
from axolotl.testing.datasets import chat_rows, completion_rows, input_output_rows
from axolotl.training.sft import train

FAMILIES: dict[str, tuple[Any, dict[str, Any]]] = {
    "chat_template": (lambda: chat_rows(8), {"type": "chat_template"}),
    "completion": (lambda: completion_rows(8), {"type": "completion"}),
    "input_output": (lambda: input_output_rows(8), {"type": "input_output"}),
    "pretokenized": (None, {}),
}
ADAPTERS = {
    "full": {},
    "lora": {"adapter": "lora", "lora_r": 4, "lora_alpha": 8, "lora_target_linear": True},
    "qlora": {"adapter": "qlora", "load_in_4bit": True, "lora_r": 4, "lora_alpha": 8, "lora_target_linear": True},
}


def _pretokenized_rows(model_dir: Path) -> list[dict[str, list[int]]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    for row in input_output_rows(8):
        prompt = tokenizer(row["segments"][0]["text"])["input_ids"]
        answer = tokenizer(row["segments"][1]["text"], add_special_tokens=False)["input_ids"]
        rows.append({"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer})
    return rows


@pytest.mark.parametrize("adapter", list(ADAPTERS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_trains_and_saves(family: str, adapter: str, tiny_llama_dir: Path, tmp_path: Path) -> None:
    if adapter == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("QLoRA needs bitsandbytes (the `qlora` extra; >= 0.49 runs 4-bit on CPU)")
    make_rows, entry = FAMILIES[family]
    rows = _pretokenized_rows(tiny_llama_dir) if make_rows is None else make_rows()
    data = write_rows(rows, tmp_path / "data", "jsonl")
    keys: dict[str, Any] = {
        "base_model": str(tiny_llama_dir), "learning_rate": 1e-2, "datasets": [{"path": str(data), **entry}],
        "dataset_prepared_path": str(tmp_path / "prep"), "output_dir": str(tmp_path / "out"),
        "sequence_len": 128, "micro_batch_size": 4, "max_steps": 6, "logging_steps": 1,
        "optimizer": "adamw_torch", "lr_scheduler": "constant", "save_strategy": "no", "dataset_num_proc": 1,
        **ADAPTERS[adapter],
    }
    result = train(load(yaml.safe_dump(keys)).cfg)
    assert len(result.losses) == 6
    assert result.metrics["num_input_tokens_seen"] > 0
    assert min(result.losses[-2:]) < result.losses[0], result.losses
    out = Path(keys["output_dir"])
    saved = "model.safetensors" if adapter == "full" else "adapter_model.safetensors"
    assert (out / saved).is_file() and (out / "metrics.json").is_file() and (out / "README.md").is_file()

"""The README.md model card `axolotl train` writes next to its outputs (`training/model_card.py`):
present after full and LoRA runs, and what it says matches the config and `metrics.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

import axolotl
from axolotl.testing.configs import load
from axolotl.training.model_card import model_card
from axolotl.training.sft import train

from .test_train_e2e import make_cfg

RUN = ("micro_batch_size: 2\ngradient_accumulation_steps: 2\nmax_steps: 3\nlr_scheduler: constant\nseed: 7\n"
       "val_set_size: 0.25\neval_strategy: steps\neval_steps: 3\n")


def _card(output_dir: Path) -> tuple[dict[str, Any], str]:
    text = (output_dir / "README.md").read_text()
    assert text.startswith("---\n")
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def _row(body: str, key: str) -> str:
    """The value cell of the table row whose first cell is `key`."""
    rows = [line for line in body.splitlines() if line.startswith(f"| {key} |")]
    assert len(rows) == 1, (key, rows)
    return rows[0].split("|")[2].strip()


def test_full_finetune_card(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = make_cfg(tiny_llama_dir, tmp_path, "full", rows=16, extra=RUN)
    train(cfg)
    out = Path(cfg.output_dir)
    header, body = _card(out)
    metrics = json.loads((out / "metrics.json").read_text())

    assert header["library_name"] == "transformers" and "full-fine-tune" in header["tags"]
    assert "base_model" not in header and "datasets" not in header  # local paths are not Hub ids
    assert f"Full fine-tuning of `{tiny_llama_dir}` with Axolotl {axolotl.__version__}" in body
    assert "supervised fine-tuning (SFT)" in body
    assert f"| `{tmp_path / 'data.jsonl'}` | alpaca |  | train |" in body
    assert "0.25 of the training rows were held out" in body
    assert _row(body, "learning_rate") == "0.001" and _row(body, "optimizer") == "adamw_torch"
    assert _row(body, "effective batch size") == "4" and _row(body, "max_steps") == "3"
    assert _row(body, "seed") == "7" and _row(body, "precision") == "float32"
    assert _row(body, "final train loss (last logged step)") == f"{metrics['train_loss_history'][-1]['loss']:.4f}"
    assert _row(body, "final eval loss") == f"{metrics['eval_history'][-1]['eval_loss']:.4f}"
    assert _row(body, "steps") == "3"
    assert "[`axolotl_config.yml`](axolotl_config.yml)" in body and (out / "axolotl_config.yml").is_file()
    assert "- PEFT" not in body and "- Transformers " in body


def test_lora_card_replaces_peft_placeholder(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    cfg = make_cfg(tiny_qwen2_dir, tmp_path, "lora", rows=16,
                   extra=RUN + "adapter: lora\nlora_r: 4\nlora_alpha: 8\nlora_target_linear: true\n")
    train(cfg)
    out = Path(cfg.output_dir)
    assert (out / "adapter_model.safetensors").is_file()
    header, body = _card(out)

    assert header["library_name"] == "peft" and "lora" in header["tags"]
    assert "More Information Needed" not in body  # PEFT's template was replaced
    assert f"LoRA of `{tiny_qwen2_dir}`" in body
    assert "- rank `lora_r`: 4, `lora_alpha`: 8" in body and "target modules: every linear layer" in body
    assert "axolotl merge-lora axolotl_config.yml" in body
    assert "- PEFT " in body
    assert _row(body, "final eval loss") != ""


def test_hub_ids_go_in_the_metadata(tmp_path: Path) -> None:
    cfg = load(f"base_model: org/base-1b\nlearning_rate: 1e-4\nadapter: qlora\nload_in_4bit: true\nlora_r: 8\n"
               f"lora_alpha: 16\noutput_dir: {tmp_path / 'out'}\n"
               "datasets:\n  - {path: org/chats, type: chat_template, split: train}\n"
               "  - {path: org/chats, type: chat_template, name: extra}\n").cfg
    text = model_card(cfg, {"train_loss_history": [], "eval_history": [], "final": {}})
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["base_model"] == "org/base-1b" and header["datasets"] == ["org/chats"]
    assert "QLoRA of [org/base-1b](https://huggingface.co/org/base-1b)" in text
    assert "4 bits" in text and "No metrics were recorded." in text
    assert "| `org/chats` (extra) | chat_template |  | train |" in text

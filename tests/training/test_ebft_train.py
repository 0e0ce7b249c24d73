"""EBFT end to end on a tiny CPU model through `axolotl train`'s code path (`axolotl.cli.train.run`:
config file -> validation -> refusals -> data -> trainer -> outputs), both modes.

Pinned: `ebft/alignment` rises over the run (the policy learns to write what the reference says),
the four EBFT metrics reach metrics.json and the console shows the EBFT line.
Measured on CPU, alignment over the first -> last steps: strided (full fine-tune, 40 steps, 4 at
each end) 0.27 -> 0.55-0.71 for seeds 1-3; structured (30 steps, completion_mean features, 3 at
each end) 0.49-0.52 -> 0.61-0.65 for seeds 1-3. About 7 s each on two idle CPU cores (2-3 minutes
when the cores are shared with other jobs).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml

from axolotl.testing import write_rows

EBFT_KEYS = ("ebft/alignment", "ebft/diversity", "ebft/cfm_loss", "ebft/reward")
TEXT = "the cat sat on the mat the cat sat on the mat the cat sat"


def write_config(tmp: Path, keys: dict[str, Any]) -> Path:
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(keys))
    return path


def run_train(config: Path) -> int:
    from axolotl.cli.train import run

    return run(str(config))


def history(tmp: Path) -> list[dict[str, Any]]:
    return json.loads((tmp / "out" / "metrics.json").read_text())["train_loss_history"]


def common(model_dir: Path, tmp: Path, data: Path, data_type: str, steps: int) -> dict[str, Any]:
    return {"base_model": str(model_dir), "rl": "ebft", "lr_scheduler": "constant", "optimizer": "adamw_torch",
            "max_steps": steps, "seed": 1, "save_strategy": "no", "dataset_num_proc": 1,
            "datasets": [{"path": str(data), "type": data_type}], "output_dir": str(tmp / "out"),
            "dataset_prepared_path": str(tmp / "prepared")}


def test_strided_alignment_rises(tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    data = write_rows([{"text": TEXT} for _ in range(48)], tmp_path / "docs", "jsonl")
    keys = common(tiny_llama_dir, tmp_path, data, "ebft_pretrain.transform", 40)
    keys.update(learning_rate=0.01, micro_batch_size=1, sequence_len=64, ebft={
        "mode": "strided", "stride": 4, "context_length": 4, "generate_max_len": 4, "n_samples_per_prompt": 4,
        "temperature": 1.0, "feature_layers": [0.5, 1.0], "diversity_coef": 0.0})
    assert run_train(write_config(tmp_path, keys)) == 0
    logs = history(tmp_path)
    assert len(logs) == 40
    alignment = [entry["ebft/alignment"] for entry in logs]
    assert statistics.fmean(alignment[-4:]) > statistics.fmean(alignment[:4]) + 0.15, alignment
    for key in (*EBFT_KEYS, "ebft/rl_loss", "ebft/blocks"):
        assert all(key in entry for entry in logs), key
    assert {entry["ebft/blocks"] for entry in logs} == {4.0}  # 23 tokens with BOS and EOS: anchors 4, 8, 12, 16
    console = capsys.readouterr().err
    assert "ebft reward | align +" in console and "| divers " in console and "| cfm " in console
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_structured_alignment_rises(tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [{"input": f"Question {i}: where did the cat sit?", "output": "the cat sat on the mat"} for i in range(64)]
    data = write_rows(rows, tmp_path / "qa", "jsonl")
    keys = common(tiny_llama_dir, tmp_path, data, "ebft_opencode.transform", 30)
    keys.update(learning_rate=0.03, micro_batch_size=8,
                trl={"num_generations": 8, "max_completion_length": 12, "temperature": 1.0},
                ebft={"mode": "structured", "feature_layers": [0.5, 1.0], "diversity_coef": 0.0,
                      "embed_method": "completion_mean", "gt_length_multiplier": 1.0})
    assert run_train(write_config(tmp_path, keys)) == 0
    logs = history(tmp_path)
    assert len(logs) == 30
    alignment = [entry["ebft/alignment"] for entry in logs]
    assert statistics.fmean(alignment[-3:]) > statistics.fmean(alignment[:3]) + 0.08, alignment
    assert all(key in entry for entry in logs for key in (*EBFT_KEYS, "rewards/ebft/mean"))
    # the EBFT reward is the only reward: TRL's mean reward is it
    assert all(abs(entry["reward"] - entry["ebft/reward"]) < 1e-5 for entry in logs)
    # adaptive_max_tokens: references are 9 tokens, so with multiplier 1.0 completions stop at 9 < 12
    assert all(entry["completions/max_length"] <= 9 for entry in logs)
    assert max(entry["completions/max_length"] for entry in logs) == 9
    assert "ebft reward | align +" in capsys.readouterr().err

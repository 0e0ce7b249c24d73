"""`axolotl preprocess` on preference configs (in-process): stats, cache reuse, `--debug` view
with the prompt masked and the response trained, and bad rows reported without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from axolotl.cli.preprocess import run
from axolotl.testing import dpo_rows, kto_rows, write_rows


def write_config(tmp_path: Path, model_dir: Path, rl: str, dataset: str) -> Path:
    config = tmp_path / "cfg.yml"
    config.write_text(f"base_model: {model_dir}\nlearning_rate: 1e-4\nmicro_batch_size: 2\nrl: {rl}\n"
                      f"sequence_len: 128\ndataset_prepared_path: {tmp_path / 'prepared'}\n"
                      f"datasets:\n  - path: {dataset}\n")
    return config


def test_dpo_preprocess_then_reuse(tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_rows(dpo_rows(5), tmp_path / "pairs.jsonl", "jsonl")
    config = write_config(tmp_path, tiny_llama_dir, "dpo", f"{data}\n    type: chatml.prompt_pairs")
    assert run(str(config)) == 0
    first = capsys.readouterr().out
    assert "train rows: 5" in first and "prepared data saved at" in first
    assert run(str(config), debug=True, debug_num_examples=1) == 0
    out = capsys.readouterr().out
    assert "prepared data reused at" in out and out.count("--- example") == 1
    assert "prompt: '<|im_start|>user\\n" in out and "chosen: '" in out and "rejected: '" in out
    chosen_view = out.split("prompt + chosen:\n")[1].split("\n")[0]
    assert chosen_view.startswith("<|im_start|>(-100, ") and "assistant(-100, " in chosen_view
    assert chosen_view.endswith("<|im_end|>(5, 5)"), "response tokens are trained (label = id)"


def test_kto_debug_shows_the_label(tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_rows(kto_rows(4), tmp_path / "kto.jsonl", "jsonl")
    assert run(str(write_config(tmp_path, tiny_llama_dir, "kto", str(data))), debug=True) == 0
    out = capsys.readouterr().out
    assert out.count("--- example") == 3 and "prompt + completion:" in out
    assert "label true (desirable)" in out and "label false (undesirable)" in out


def test_bad_row_exits_1_with_its_location(tiny_llama_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rows = dpo_rows(3)
    rows[2]["rejected"] = None
    data = write_rows(rows, tmp_path / "pairs.jsonl", "jsonl")
    assert run(str(write_config(tmp_path, tiny_llama_dir, "dpo", str(data)))) == 1
    err = capsys.readouterr().err
    assert "pairs.jsonl`, row 2, field `rejected`" in err and "Traceback" not in err

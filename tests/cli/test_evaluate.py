"""`axolotl evaluate`: the real command (a subprocess), its refusals and its legacy entry point.
The numbers themselves are pinned against the trainer in tests/training/test_evaluate.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from axolotl.cli.evaluate import _options
from axolotl.testing import write_rows


def write_config(tmp_path: Path, model_dir: Path | str, extra: str = "val_set_size: 0.25\n") -> Path:
    write_rows([{"instruction": f"Say the word for {i}.", "input": "", "output": "apple"} for i in range(8)],
               tmp_path / "data", "jsonl")
    config = tmp_path / "cfg.yml"
    config.write_text(f"base_model: {model_dir}\nlearning_rate: 1e-4\noutput_dir: {tmp_path / 'out'}\n"
                      f"datasets:\n  - path: {tmp_path / 'data.jsonl'}\n    type: alpaca\n"
                      f"dataset_prepared_path: {tmp_path / 'prepared'}\nsequence_len: 128\n{extra}")
    return config


def test_evaluates_the_base_model_and_writes_metrics(cli, tiny_llama_dir: Path, tmp_path: Path) -> None:
    from axolotl.testing.configs import load
    from axolotl.training.evaluate import evaluate

    config = write_config(tmp_path, tiny_llama_dir)
    result = cli(["evaluate", str(config), "--include-train", "--eval-batch-size", "2"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"evaluated the base model {tiny_llama_dir}" in result.stdout  # no trained output yet
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines if line.split()[:1] in (["eval"], ["train"])] == \
        [["eval", "2"], ["train", "6"]]
    report = json.loads((tmp_path / "out" / "eval_metrics.json").read_text())
    assert report["model"]["kind"] == "base" and report["data"]["splits"] == ["eval", "train"]
    assert {"eval_loss", "eval_perplexity", "eval_tokens", "train_loss"} <= set(report["metrics"])
    # the command line and the library agree (same config, same cached data)
    same = evaluate(load(config.read_text(), overrides=["--eval-batch-size", "2"]).cfg)
    assert report["metrics"]["eval_loss"] == pytest.approx(same.metrics["eval_loss"], abs=1e-6)


def test_no_eval_split_names_the_keys(cli, tmp_path: Path) -> None:
    result = cli(["evaluate", str(write_config(tmp_path, "nobody/no-such-model", extra=""))], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "no eval split" in result.stderr and "`val_set_size`" in result.stderr
    assert "`test_datasets`" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("module", [None, "axolotl.cli.evaluate"], ids=["axolotl", "legacy"])
def test_a_launch_is_checked_before_the_processes_start(cli, tmp_path: Path, module: str | None) -> None:
    """Under a launcher the launching process reports a missing eval split itself, once."""
    args = [str(write_config(tmp_path, "nobody/no-such-model", extra="")), "--launcher", "torchrun", "--",
            "--nproc_per_node=2"]
    result = cli(args if module else ["evaluate", *args], module=module, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("no eval split") == 1 and "launching:" not in result.stderr


def test_legacy_options_are_separated_from_overrides() -> None:
    rest, options = _options(["--model=base", "--launcher", "python", "--include_train", "--micro-batch-size", "2"])
    assert rest == ["--micro-batch-size", "2"]
    assert options == {"model": "base", "launcher": "python", "include-train": "1"}

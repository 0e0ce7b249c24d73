"""`evaluate(cfg)` / `axolotl evaluate`: the loss the trainer logs for the same weights and data.

Pinned: after a run whose last step is evaluated, `evaluate` on its output reports the trainer's
final `eval_loss` (abs 1e-5), padded and packed, full weights and a LoRA adapter; `--model base`
reports the trainer's `eval_on_start` loss. Counts and the metrics file are checked against the
prepared data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from axolotl.testing import write_rows
from axolotl.testing.configs import load
from axolotl.training.evaluate import EVAL_METRICS_NAME, EvaluationError, evaluate
from axolotl.training.sft import train

WORDS = ("apple", "river", "stone", "cloud")
# The trainer evaluates before the first step and after the last one (step 3).
EVAL_AT_START_AND_END = ("val_set_size: 0.25\nmicro_batch_size: 2\neval_batch_size: 2\nmax_steps: 3\n"
                         "eval_strategy: steps\neval_steps: 3\neval_on_start: true\n")


def keys_for(model_dir: Path | str, tmp: Path, name: str, extra: str = "", rows: int = 16) -> dict[str, Any]:
    data = tmp / "data.jsonl"
    if not data.exists():
        write_rows([{"instruction": f"Say the word for {i}." + " Please." * (i % 3), "input": "",
                     "output": WORDS[i % len(WORDS)]} for i in range(rows)], tmp / "data", "jsonl")
    keys: dict[str, Any] = {
        "base_model": str(model_dir), "learning_rate": 1e-3,
        "datasets": [{"path": str(data), "type": "alpaca"}],
        "dataset_prepared_path": str(tmp / f"prep-{name}"), "output_dir": str(tmp / name),
        "sequence_len": 256, "optimizer": "adamw_torch", "save_strategy": "no", "dataset_num_proc": 1,
    }
    keys.update(yaml.safe_load(extra) or {})
    return keys


def cfg_of(keys: dict[str, Any]) -> Any:
    return load(yaml.safe_dump(keys)).cfg


def trainer_eval_losses(cfg: Any) -> list[float]:
    metrics = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
    return [entry["eval_loss"] for entry in metrics["eval_history"]]


@pytest.fixture(scope="module")
def full_run(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A trained full fine-tune (padded batches), evaluated by the trainer at steps 0 and 3."""
    keys = keys_for(tiny_llama_dir, tmp_path_factory.mktemp("evaluate"), "full", EVAL_AT_START_AND_END)
    train(cfg_of(keys))
    return keys


def test_trained_model_reports_the_trainers_eval_loss(full_run: dict[str, Any]) -> None:
    cfg = cfg_of(full_run)
    at_start, at_end = trainer_eval_losses(cfg)
    result = evaluate(cfg)
    assert result.source.kind == "trained" and result.source.model == cfg.output_dir
    assert result.metrics["eval_loss"] == pytest.approx(at_end, abs=1e-5)
    assert result.metrics["eval_perplexity"] == pytest.approx(math.exp(at_end), rel=1e-5)
    assert abs(at_end - at_start) > 1e-2, "training must have moved the loss for this test to mean anything"


def test_base_model_reports_the_trainers_eval_on_start_loss(full_run: dict[str, Any]) -> None:
    cfg = cfg_of(full_run)
    result = evaluate(cfg, model="base")
    assert result.source.kind == "base" and result.source.model == full_run["base_model"]
    assert result.metrics["eval_loss"] == pytest.approx(trainer_eval_losses(cfg)[0], abs=1e-5)


def test_metrics_file_and_train_split_counts(full_run: dict[str, Any]) -> None:
    from axolotl.data.pipeline import prepare_datasets
    from axolotl.models.tokenizer import load_tokenizer

    cfg = cfg_of(full_run)
    result = evaluate(cfg, include_train=True)
    prepared = prepare_datasets(cfg, load_tokenizer(cfg))  # cached: the rows evaluate saw
    for split, rows in (("eval", prepared.eval), ("train", prepared.train)):
        assert result.metrics[f"{split}_rows"] == len(rows) == {"eval": 4, "train": 12}[split]
        assert result.metrics[f"{split}_tokens"] == sum(len(row["input_ids"]) for row in rows)
        scored = sum(sum(label != -100 for label in row["labels"][1:]) for row in rows)
        assert result.metrics[f"{split}_supervised_tokens"] == scored > 0
        assert result.metrics[f"{split}_perplexity"] == pytest.approx(math.exp(result.metrics[f"{split}_loss"]))
    report = json.loads((Path(cfg.output_dir) / EVAL_METRICS_NAME).read_text())
    assert report["metrics"] == pytest.approx(result.metrics)
    assert report["model"]["kind"] == "trained" and report["model"]["adapter"] is None
    assert report["model"]["description"] == f"trained model in {cfg.output_dir}"
    assert report["data"] == {"prepared_path": str(prepared.path), "sample_packing": False,
                              "splits": ["eval", "train"]}
    assert not list(Path(cfg.output_dir).glob(f"*{EVAL_METRICS_NAME}.*")), "no temporary files left behind"


def test_packed_eval_reports_the_trainers_eval_loss(tiny_llama_dir: Path, tmp_path: Path) -> None:
    keys = keys_for(tiny_llama_dir, tmp_path, "packed", EVAL_AT_START_AND_END + "sample_packing: true\n", rows=24)
    cfg = cfg_of(keys)
    assert cfg.eval_sample_packing, "eval packs when training packs"
    train(cfg)
    result = evaluate(cfg_of(keys))
    assert result.metrics["eval_loss"] == pytest.approx(trainer_eval_losses(cfg)[-1], abs=1e-5)
    assert json.loads((Path(cfg.output_dir) / EVAL_METRICS_NAME).read_text())["data"]["sample_packing"] is True


def test_lora_adapter_in_output_dir_is_evaluated(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    keys = keys_for(tiny_qwen2_dir, tmp_path, "lora", EVAL_AT_START_AND_END.replace("eval_on_start: true\n", "")
                    + "adapter: lora\nlora_r: 4\nlora_alpha: 8\nlora_target_linear: true\nlearning_rate: 1e-2\n")
    cfg = cfg_of(keys)
    train(cfg)
    result = evaluate(cfg_of(keys))
    assert result.source.kind == "trained" and result.source.adapter == cfg.output_dir
    assert result.source.model == str(tiny_qwen2_dir)
    assert result.source.describe() == f"adapter trained in {cfg.output_dir}, over {tiny_qwen2_dir}"
    assert result.metrics["eval_loss"] == pytest.approx(trainer_eval_losses(cfg)[-1], abs=1e-5)
    base = evaluate(cfg_of(keys), model="base")
    assert base.source.adapter is None
    assert abs(base.metrics["eval_loss"] - result.metrics["eval_loss"]) > 1e-3, "the adapter must be applied"


def test_test_datasets_are_the_eval_split(tiny_llama_dir: Path, tmp_path: Path) -> None:
    held_out = write_rows([{"instruction": f"Name {i}.", "input": "", "output": "stone"} for i in range(3)],
                          tmp_path / "held_out", "jsonl")
    keys = keys_for(tiny_llama_dir, tmp_path, "held-out",
                    f"test_datasets:\n  - path: {held_out}\n    type: alpaca\n    split: train\n")
    result = evaluate(cfg_of(keys))
    assert result.source.kind == "base", "nothing was trained into output_dir"
    assert result.metrics["eval_rows"] == 3 and "train_loss" not in result.metrics
    assert math.isfinite(result.metrics["eval_loss"])


def test_no_eval_split_is_an_error_before_loading(tmp_path: Path) -> None:
    # a hub id that cannot be reached offline: any loading would fail differently
    cfg = cfg_of(keys_for("nobody/no-such-model", tmp_path, "none"))
    with pytest.raises(EvaluationError, match=r"no eval split.*`val_set_size`.*`test_datasets`"):
        evaluate(cfg)


def test_asking_for_a_trained_model_that_is_not_there(tmp_path: Path) -> None:
    cfg = cfg_of(keys_for("nobody/no-such-model", tmp_path, "none", "val_set_size: 0.25\n"))
    with pytest.raises(EvaluationError, match="holds no trained model.*axolotl train"):
        evaluate(cfg, model="trained")
    with pytest.raises(EvaluationError, match="unknown model choice"):
        evaluate(cfg, model="best")

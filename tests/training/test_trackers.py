"""Experiment trackers end to end: a tiny `train` logs to each, offline, and the logs read back.

* `use_tensorboard`: event files under `output_dir/runs/<run>/`;
* `use_wandb` with `wandb_mode: offline`: a local run folder under `WANDB_DIR`, no network
  (the API address points at a closed local port, so an attempt to reach it would fail);
* `use_mlflow` with a `file:` tracking URI: a local store with the run, its metrics and, with
  `hf_mlflow_log_artifacts`, the saved checkpoints.

Each tracker is an optional extra; its tests skip, saying so, when the package is missing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from axolotl.testing import alpaca_rows, write_rows
from axolotl.testing.configs import load
from axolotl.training.sft import train


def needs(package: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(package) is None,
                              reason=f"`{package}` is not installed (the `{package}` extra)")


@pytest.fixture(autouse=True)
def restore_environment() -> Iterator[None]:
    """`train` exports the tracker settings (WANDB_*, MLFLOW_*) for transformers' integrations."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def make_cfg(model_dir: Path, tmp: Path, extra: str) -> Any:
    data = write_rows(alpaca_rows(8), tmp / "data", "jsonl")
    keys: dict[str, Any] = {
        "base_model": str(model_dir), "learning_rate": 1e-3, "datasets": [{"path": str(data), "type": "alpaca"}],
        "dataset_prepared_path": str(tmp / "prep"), "output_dir": str(tmp / "out"), "sequence_len": 128,
        "optimizer": "adamw_torch", "save_strategy": "no", "dataset_num_proc": 1, "max_steps": 3,
    }
    keys.update(yaml.safe_load(extra))
    return load(yaml.safe_dump(keys)).cfg


@needs("tensorboard")
def test_tensorboard_event_files_hold_the_training_scalars(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(tiny_llama_dir, tmp_path, "use_tensorboard: true")
    result = train(cfg)
    events = list((Path(cfg.output_dir) / "runs").glob("*/events.out.tfevents.*"))
    assert events, "event files go to output_dir/runs/<run>/"
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_second_per_gpu"} <= tags
    assert [e.value for e in accumulator.Scalars("train/loss")] == pytest.approx(result.losses, rel=1e-5)


@needs("wandb")
def test_wandb_offline_writes_a_local_run(tiny_llama_dir: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # closed port: any network use would fail
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    (tmp_path / "wandb-dir").mkdir()
    cfg = make_cfg(tiny_llama_dir, tmp_path, "use_wandb: true\nwandb_mode: offline\nwandb_project: axo-test\n"
                                             "wandb_entity: nobody\nwandb_name: tiny-run\nwandb_run_id: abc123\n")
    train(cfg)
    import wandb

    run = wandb.run
    assert run is not None and (run.id, run.name, run.project, run.entity) == ("abc123", "tiny-run", "axo-test", "nobody")
    assert run.settings.mode == "offline"
    assert {"train/loss", "train/tokens_per_second_per_gpu"} <= set(run.summary.keys())
    assert run.config["run_name"] == "tiny-run"
    wandb.finish()  # the run stays open after `train` (transformers leaves it to the process exit)
    runs = list((tmp_path / "wandb-dir" / "wandb").glob("offline-run-*-abc123"))
    assert len(runs) == 1, "wandb_run_id names the offline run folder"
    assert (runs[0] / "run-abc123.wandb").stat().st_size > 0, "the run's local log, for `wandb sync`"


@needs("mlflow")
def test_mlflow_file_store_records_run_metrics_and_checkpoints(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    store = (tmp_path / "mlruns").as_uri()
    cfg = make_cfg(tiny_llama_dir, tmp_path, f"use_mlflow: true\nmlflow_tracking_uri: '{store}'\n"
                                             "mlflow_experiment_name: axo-exp\nmlflow_run_name: tiny-mlflow\n"
                                             "hf_mlflow_log_artifacts: true\nsave_strategy: steps\nsave_steps: 3\n")
    result = train(cfg)
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("axo-exp")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "tiny-mlflow" and run.info.status == "FINISHED"
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)]
    assert losses == pytest.approx(result.losses, rel=1e-5)
    assert client.get_metric_history(run.info.run_id, "tokens_per_second_per_gpu")
    # hf_mlflow_log_artifacts: each checkpoint is logged as a model (MLflow 3: a logged model of the
    # run; MLflow 2: an artifact folder of the run)
    if hasattr(client, "search_logged_models"):
        (logged,) = client.search_logged_models(experiment_ids=[experiment.experiment_id])
        assert (logged.name, logged.source_run_id) == ("checkpoint-3", run.info.run_id)
        copied = Path(logged.artifact_location.removeprefix("file://")) / "artifacts" / "checkpoint-3"
        assert (copied / "model.safetensors").is_file()
    else:
        assert "checkpoint-3" in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_tracker_environment_maps_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from axolotl.training.args import tracker_environment

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    cfg = load(yaml.safe_dump({
        "base_model": "m", "learning_rate": 1e-4, "datasets": [{"path": "d.jsonl", "type": "alpaca"}],
        "use_wandb": True,
        "wandb_project": "p", "wandb_entity": "e", "wandb_mode": "offline", "wandb_run_id": "r",
        "wandb_log_model": "end", "use_mlflow": True, "mlflow_tracking_uri": "file:/tmp/mlruns",
        "mlflow_experiment_name": "x", "hf_mlflow_log_artifacts": True,
    })).cfg
    assert tracker_environment(cfg) == {
        "WANDB_PROJECT": "p", "WANDB_ENTITY": "e", "WANDB_MODE": "offline", "WANDB_RUN_ID": "r",
        "WANDB_LOG_MODEL": "end", "MLFLOW_TRACKING_URI": "file:/tmp/mlruns", "MLFLOW_EXPERIMENT_NAME": "x",
        "HF_MLFLOW_LOG_ARTIFACTS": "true", "MLFLOW_ALLOW_FILE_STORE": "true",
    }
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")  # an explicit choice in the environment stands
    assert tracker_environment(cfg)["MLFLOW_ALLOW_FILE_STORE"] == "false"
    remote = cfg.model_copy(update={"mlflow_tracking_uri": "http://mlflow.internal:5000"})
    assert "MLFLOW_ALLOW_FILE_STORE" not in tracker_environment(remote)

"""`axolotl lm-eval`: clear errors without the extra or without tasks, local task files, and a
real lm-evaluation-harness run on the tiny model (when the `lm-eval` extra is installed)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from axolotl.cli.lm_eval import run
from axolotl.models.lm_eval import LMEvalError, split_tasks

from .conftest import run_cli

PLUGIN = "axolotl.integrations.lm_eval.LMEvalPlugin"
HAS_LM_EVAL = importlib.util.find_spec("lm_eval") is not None
DOCS = [
    {"question": "The sky is", "choices": ["blue", "green"], "label": 0},
    {"question": "Grass is", "choices": ["blue", "green"], "label": 1},
    {"question": "Snow is", "choices": ["white", "black"], "label": 0},
]


def write_task(folder: Path, name: str = "tiny_choice") -> Path:
    """A multiple-choice task over a local JSONL file: no hub, no network."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    task = folder / f"{name}.yaml"
    task.write_text(yaml.safe_dump({
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "label",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }))
    return task


def write_config(tmp_path: Path, model_dir: Path, tasks: list[str] | None, plugin: bool = True) -> Path:
    keys = {"base_model": str(model_dir), "learning_rate": 1e-4, "output_dir": str(tmp_path / "out")}
    if plugin:
        keys["plugins"] = [PLUGIN]
    if tasks is not None:
        keys.update({"lm_eval_tasks": tasks, "lm_eval_batch_size": 2})
    config = tmp_path / "cfg.yml"
    config.write_text(yaml.safe_dump(keys))
    return config


def test_missing_lm_eval_says_what_to_install(tiny_llama_dir: Path, tmp_path: Path, offline_inprocess: None,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` now raises ImportError
    config = write_config(tmp_path, tiny_llama_dir, ["hellaswag"])
    assert run(str(config)) == 1
    err = capsys.readouterr().err
    assert "needs lm-evaluation-harness, which is not installed" in err
    assert "pip install 'axolotl[lm-eval]'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_no_tasks_is_a_clear_error(tiny_llama_dir: Path, tmp_path: Path, offline_inprocess: None,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(write_config(tmp_path, tiny_llama_dir, None))) == 1
    assert f"add `plugins: [{PLUGIN}]` and list tasks under `lm_eval_tasks:`" in capsys.readouterr().err


def test_task_keys_need_the_plugin(tiny_llama_dir: Path, tmp_path: Path, offline_inprocess: None,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(write_config(tmp_path, tiny_llama_dir, ["hellaswag"], plugin=False))) == 1
    err = capsys.readouterr().err
    assert "lm_eval_tasks" in err and PLUGIN in err


def test_task_files_become_names_and_include_paths(tmp_path: Path) -> None:
    task = write_task(tmp_path / "tasks")
    (tmp_path / "tasks" / "with_code.yml").write_text("task: coded\nprocess_docs: !function utils.process\n")
    names, folders = split_tasks(["arc_easy", str(task), str(tmp_path / "tasks" / "with_code.yml")])
    assert names == ["arc_easy", "tiny_choice", "coded"]
    assert folders == [str((tmp_path / "tasks").resolve())]
    with pytest.raises(LMEvalError, match=r"`lm_eval_tasks\[0\]`: task file .*missing.yaml does not exist"):
        split_tasks([str(tmp_path / "missing.yaml")])


@pytest.mark.skipif(not HAS_LM_EVAL, reason="the `lm-eval` extra is not installed")
def test_unknown_task_names_are_reported_with_suggestions(tiny_llama_dir: Path, tmp_path: Path,
                                                          offline_inprocess: None,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    task = write_task(tmp_path / "tasks")
    config = write_config(tmp_path, tiny_llama_dir, [str(task), "tiny_choise"])
    assert run(str(config)) == 1
    err = capsys.readouterr().err
    assert "unknown lm-eval task `tiny_choise` (did you mean tiny_choice?)" in err


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LM_EVAL, reason="the `lm-eval` extra is not installed")
def test_local_task_runs_and_writes_results(tiny_llama_dir: Path, tmp_path: Path) -> None:
    task = write_task(tmp_path / "tasks")
    config = write_config(tmp_path, tiny_llama_dir, [str(task)])
    result = run_cli(["lm-eval", str(config)], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "tiny_choice" in result.stdout and "acc" in result.stdout
    saved = json.loads((tmp_path / "out" / "lm_eval_results.json").read_text())
    assert saved["model"] == str(tiny_llama_dir)
    accuracy = saved["results"]["tiny_choice"]["acc,none"]
    assert accuracy in (0, 1 / 3, 2 / 3, 1)  # 3 documents
    assert saved["n-samples"]["tiny_choice"]["effective"] == len(DOCS)
    assert f"{accuracy:.4f}" in result.stdout


def test_train_refuses_lm_eval_post_train() -> None:
    from axolotl.testing.configs import load
    from axolotl.training.sft import preflight
    from axolotl.training.support import NotSupportedYet

    cfg = load(yaml.safe_dump({"base_model": "tiny", "learning_rate": 1e-4, "plugins": [PLUGIN],
                               "lm_eval_tasks": ["hellaswag"], "lm_eval_post_train": True,
                               "datasets": [{"path": "data.jsonl", "type": "alpaca"}]})).cfg
    with pytest.raises(NotSupportedYet, match="`lm_eval_post_train` is not supported yet.*axolotl lm-eval"):
        preflight(cfg)

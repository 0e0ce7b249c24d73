"""lm-evaluation-harness on the trained model (`axolotl lm-eval`), through lm_eval's Python API.

Keys (they exist with `plugins: [axolotl.integrations.lm_eval.LMEvalPlugin]`): `lm_eval_tasks`
(task names, or paths of task YAML files for local tasks), `lm_eval_batch_size` (default 8),
`lm_eval_model` (the model to evaluate; default: what `train` saved in output_dir, else
`base_model`, as `axolotl inference` picks it). Results go to `output_dir/lm_eval_results.json`.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from axolotl.config.render import atomic_write_text

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig

PLUGIN = "axolotl.integrations.lm_eval.LMEvalPlugin"
RESULTS_NAME = "lm_eval_results.json"
DEFAULT_BATCH_SIZE = 8
INSTALL_HINT = "pip install 'axolotl[lm-eval]' (or pip install lm-eval)"
TASK_FILE_SUFFIXES = (".yaml", ".yml")
SAVED_KEYS = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
              "n-samples", "config", "lm_eval_version", "date")
"""What of `simple_evaluate`'s answer is written (not the environment dump or per-sample logs)."""


class LMEvalError(ValueError):
    """The config, the tasks or the environment cannot run lm-eval; the message says what to do."""


@dataclass(frozen=True)
class LMEvalResult:
    path: Path
    source: str
    table: str
    results: dict[str, Any]


def import_lm_eval() -> None:
    try:
        import lm_eval  # noqa: F401
    except ImportError as error:
        raise LMEvalError(f"`axolotl lm-eval` needs lm-evaluation-harness, which is not installed: "
                          f"{INSTALL_HINT}") from error


class _TaskYamlLoader(yaml.SafeLoader):
    """Reads task YAML files, whose `!function` tags name Python code we do not need here."""


_TaskYamlLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def split_tasks(tasks: list[str]) -> tuple[list[str], list[str]]:
    """Task names to run, and the folders of task YAML files to index (`include_path`)."""
    names, folders = [], []
    for index, task in enumerate(tasks):
        if not task.endswith(TASK_FILE_SUFFIXES):
            names.append(task)
            continue
        path = Path(task).expanduser()
        if not path.is_file():
            raise LMEvalError(f"`lm_eval_tasks[{index}]`: task file {task} does not exist")
        spec = yaml.load(path.read_text(), Loader=_TaskYamlLoader)  # noqa: S506 (a SafeLoader)
        name = spec.get("task") if isinstance(spec, dict) else None
        if not isinstance(name, str):
            raise LMEvalError(f"`lm_eval_tasks[{index}]`: {task} has no `task:` name")
        names.append(name)
        folders.append(str(path.resolve().parent))
    return names, sorted(set(folders))


def _unknown_tasks(names: list[str], known: list[str]) -> str | None:
    missing = [name for name in names if name not in known]
    if not missing:
        return None
    hints = []
    for name in missing:
        near = difflib.get_close_matches(name, known, n=3, cutoff=0.7)
        hints.append(f"`{name}`" + (f" (did you mean {', '.join(near)}?)" if near else ""))
    return ("unknown lm-eval task " + "; ".join(hints) + ". `lm-eval ls tasks` lists the built-in ones; "
            "a local task is given as the path of its YAML file")


def _source(cfg: AxolotlConfig, model_override: str | None) -> str:
    """What `load_for_inference` will load, in words."""
    from axolotl.models.inference import is_adapter_dir, is_model_dir

    output = Path(cfg.output_dir)
    if model_override:
        return model_override
    if is_model_dir(output):
        return str(output)
    if cfg.adapter and is_adapter_dir(output):
        return f"{cfg.base_model} with the adapter in {output}"
    return cfg.base_model


def lm_eval(cfg: AxolotlConfig) -> LMEvalResult:
    """Run the configured tasks on the model and write the results to output_dir."""
    from axolotl.models.inference import load_for_inference

    tasks: list[str] = getattr(cfg, "lm_eval_tasks", None) or []  # keys of the lm-eval plugin
    if not tasks:
        raise LMEvalError(f"no tasks to run: add `plugins: [{PLUGIN}]` and list tasks under `lm_eval_tasks:`")
    import_lm_eval()
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import make_table

    names, folders = split_tasks(tasks)
    # Indexing lm-eval's own task catalogue takes seconds; skip it when every task is a local file.
    builtin = len(folders) == 0 or any(not task.endswith(TASK_FILE_SUFFIXES) for task in tasks)
    manager = TaskManager(include_path=folders or None, include_defaults=builtin)
    problem = _unknown_tasks(names, manager.all_tasks)
    if problem:
        raise LMEvalError(problem)

    model_override: str | None = getattr(cfg, "lm_eval_model", None)
    source = _source(cfg, model_override)
    model, tokenizer = load_for_inference(cfg, base_model=model_override)
    import torch

    if torch.cuda.is_available() and model.device.type == "cpu":
        model.to("cuda")
    batch_size = getattr(cfg, "lm_eval_batch_size", None) or DEFAULT_BATCH_SIZE
    harness_model = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    answer = simple_evaluate(model=harness_model, tasks=names, task_manager=manager, log_samples=False)
    if answer is None:  # only ranks other than 0 of a distributed run get None
        raise LMEvalError("lm-eval returned no results")
    saved = {key: answer[key] for key in SAVED_KEYS if key in answer}
    saved["model"] = source
    path = Path(cfg.output_dir) / RESULTS_NAME
    atomic_write_text(path, json.dumps(saved, indent=2, default=str) + "\n")
    return LMEvalResult(path, source, make_table(answer), answer["results"])

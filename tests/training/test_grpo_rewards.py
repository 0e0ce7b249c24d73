"""Reward functions as GRPO calls them: loading from dotted paths (working directory or the config's
folder) or model references, the wrapper's errors (naming the function and the batch), and
`reward_num_workers` subprocesses (same rewards, other processes, whole prompt groups per worker)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from axolotl.data.user_code import UserCodeError
from axolotl.testing.configs import load
from axolotl.training.reward_workers import PooledReward, group_runs
from axolotl.training.rewards import RewardFunctionError, is_reward_model, load_reward_funcs, wrap_reward

REWARDS = '''
import os
import signal


def length(completions, **kwargs):
    return [float(len(c[0]["content"])) for c in completions]


def with_column(completions, answer, **kwargs):
    return [1.0 if c[0]["content"] == a else 0.0 for c, a in zip(completions, answer)]


def pid_and_alarm(completions, **kwargs):
    signal.signal(signal.SIGALRM, lambda *_: None)  # only works in a process's main thread
    signal.alarm(0)
    return [float(os.getpid())] * len(completions)


def group_sizes(prompts, completions, **kwargs):
    return [float(sum(p == prompt for p in prompts)) for prompt in prompts]
'''


def completions(texts: list[str]) -> list[list[dict[str, str]]]:
    return [[{"role": "assistant", "content": text}] for text in texts]


STATE = SimpleNamespace(global_step=7)


def call(func: Any, texts: list[str], **kwargs: Any) -> Any:
    prompts = [f"prompt {i // 2}" for i in range(len(texts))]
    return func(prompts=prompts, completions=completions(texts), trainer_state=STATE, **kwargs)


def raising(completions: list[Any], **kwargs: Any) -> list[float]:
    raise KeyError("answer")


def short(completions: list[Any], **kwargs: Any) -> list[float]:
    return [1.0] * (len(completions) - 1)


def words(completions: list[Any], **kwargs: Any) -> list[Any]:
    return ["good"] * len(completions)


def maybe(completions: list[Any], **kwargs: Any) -> list[Any]:
    return [None, 1, 2.5, True]


async def slow(completions: list[Any], **kwargs: Any) -> list[float]:
    await asyncio.sleep(0)
    return [0.5] * len(completions)


def test_a_raising_reward_names_the_function_and_the_batch() -> None:
    with pytest.raises(RewardFunctionError) as caught:
        call(wrap_reward(raising, "rewards.raising"), ["a", "b", "c", "d"])
    message = str(caught.value)
    assert "reward function `rewards.raising` raised KeyError: 'answer'" in message
    assert "at step 7 on a batch of 4 completions (first prompt: 'prompt 0')" in message
    assert isinstance(caught.value.__cause__, KeyError)


@pytest.mark.parametrize(("func", "message"), [
    (short, r"`rewards\.short` returned 3 rewards at step 7 on a batch of 4 completions .*expected 4"),
    (words, r"`rewards\.words` returned str 'good' for completion 0 at step 7"),
])
def test_wrong_answers_name_the_function(func: Any, message: str) -> None:
    with pytest.raises(RewardFunctionError, match=message):
        call(wrap_reward(func, f"rewards.{func.__name__}"), ["a", "b", "c", "d"])


def test_none_and_numbers_pass_as_floats() -> None:
    wrapped = wrap_reward(maybe, "rewards.maybe")
    assert wrapped.__name__ == "maybe"  # TRL logs rewards/maybe/mean
    assert call(wrapped, ["a", "b", "c", "d"]) == [None, 1.0, 2.5, 1.0]


def test_async_rewards_stay_async() -> None:
    from trl.trainer.utils import is_async_callable

    wrapped = wrap_reward(slow, "rewards.slow")
    assert is_async_callable(wrapped)
    assert asyncio.run(call(wrapped, ["a", "b"])) == [0.5, 0.5]


@pytest.mark.parametrize(("entry", "model"), [("rewards.accuracy", False), ("my_pkg.scoring.accuracy", False),
                                              ("OpenAssistant/reward-model-deberta-v3-large-v2", True),
                                              ("gpt2", True)])
def test_model_references_and_dotted_paths(entry: str, model: bool) -> None:
    assert is_reward_model(entry) is model


def cfg_with(funcs: list[str], source: Path | None = None, **trl: Any) -> Any:
    cfg = load(yaml.safe_dump({"base_model": "m/m", "learning_rate": 1e-5, "rl": "grpo", "micro_batch_size": 4,
                               "datasets": [{"path": "p.jsonl"}],
                               "trl": {"num_generations": 4, "reward_funcs": funcs, **trl}})).cfg
    if source is not None:
        cfg.axolotl_config_path = str(source)
    return cfg


def test_functions_load_from_the_config_folder_and_models_as_classifiers(tmp_path: Path,
                                                                       tiny_llama_dir: Path) -> None:
    name = f"rw_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(REWARDS)
    funcs = load_reward_funcs(cfg_with([f"{name}.length", str(tiny_llama_dir)], source=tmp_path / "cfg.yml"))
    assert call(funcs[0], ["ab", "abc"]) == [2.0, 3.0]
    assert type(funcs[1]).__name__ == "LlamaForSequenceClassification" and funcs[1].config.num_labels == 1


def test_a_model_that_cannot_load_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(RewardFunctionError, match=r"`trl\.reward_funcs\[0\]: nobody/no-such-model` is read as a "
                                                  r"reward model .* cannot be loaded"):
        load_reward_funcs(cfg_with(["nobody/no-such-model"], source=tmp_path / "cfg.yml"))


def test_import_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(UserCodeError, match=r"`trl\.reward_funcs\[0\]: no_such_module_x\.f`: cannot import"):
        load_reward_funcs(cfg_with(["no_such_module_x.f"], source=tmp_path / "cfg.yml"))


def test_group_runs_never_split_a_group() -> None:
    prompts = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    assert group_runs(prompts, 2) == [(0, 4), (4, 12)]
    assert group_runs(prompts, 3) == [(0, 4), (4, 8), (8, 12)]
    assert group_runs(prompts, 8) == [(0, 4), (4, 8), (8, 12)]
    assert group_runs(["a", "a"], 4) == [(0, 2)]


def test_workers_score_in_other_processes(tmp_path: Path) -> None:
    name = f"rw_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(REWARDS)
    cfg = cfg_with([f"{name}.length"], source=tmp_path / "cfg.yml", reward_num_workers=2)
    texts = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"]
    funcs = load_reward_funcs(cfg)
    try:
        assert isinstance(funcs[0], PooledReward) and funcs[0].__name__ == "length"
        assert call(funcs[0], texts) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        import importlib

        module = importlib.import_module(name)
        pids = call(PooledReward(module.pid_and_alarm, f"{name}.pid_and_alarm", 2, cfg), texts)
        assert os.getpid() not in pids and len(set(pids)) >= 1  # signal.alarm worked in the worker
        # each worker sees whole groups (2 completions per prompt here), and dataset columns are sliced with them
        assert call(PooledReward(module.group_sizes, f"{name}.group_sizes", 3, cfg), texts) == [2.0] * 6
        assert call(PooledReward(module.with_column, f"{name}.with_column", 2, cfg), ["x", "y"],
                    answer=["x", "z"]) == [1.0, 0.0]
    finally:
        for func in funcs:
            func.close()


def test_worker_failures_name_the_function(tmp_path: Path) -> None:
    name = f"rw_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(REWARDS)
    cfg = cfg_with([f"{name}.with_column"], source=tmp_path / "cfg.yml", reward_num_workers=2)
    pooled = load_reward_funcs(cfg)[0]
    try:
        with pytest.raises(RewardFunctionError, match=rf"`{name}\.with_column` raised TypeError: .*answer.* in a "
                                                      r"reward worker on completions 0-1 at step 7"):
            call(pooled, ["a", "b", "c", "d"])
    finally:
        pooled.close()

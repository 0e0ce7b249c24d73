"""`trl.reward_num_workers > 1`: a reward function called in worker processes.

Why: checkers such as math_verify time out with `signal.alarm()`, which only works in a
process's main thread; a worker process runs the function in its own main thread. The batch is
split into contiguous runs of whole prompt groups (completions of one prompt stay together, so a
function that compares completions of a group still sees the whole group) and the runs are
scored in parallel; the rewards come back in the original order.

Workers are started with `spawn` (a fork of a process holding torch threads can deadlock), put
the working directory and the config's folder on `sys.path`, and import the function by its
dotted path. What cannot cross a process boundary stays behind: `log_extra` and `log_metric`
(callables of the trainer) are not passed to pooled functions.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import itertools
import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from axolotl.data.user_code import add_search_folders
from axolotl.training.rewards import RewardFunctionError, checked_rewards, describe_batch, function_name

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig


def group_runs(prompts: list[Any], parts: int) -> list[tuple[int, int]]:
    """Split `range(len(prompts))` into at most `parts` contiguous `(start, stop)` runs that never cut
    a group of equal consecutive prompts."""
    starts = [i for i in range(len(prompts)) if i == 0 or prompts[i] != prompts[i - 1]]
    parts = max(1, min(parts, len(starts)))
    bounds = [starts[len(starts) * k // parts] for k in range(parts)] + [len(prompts)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _init_worker(paths: list[str]) -> None:
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)


def _score(dotted: str, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    """Runs in a worker: import the function by its path and call it on one run of groups."""
    module_name, _, attr = dotted.rpartition(".")
    func = getattr(importlib.import_module(module_name), attr)
    result = func(prompts=prompts, completions=completions, **kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    return list(result)


class PooledReward:
    """A reward function scored by `workers` processes (see the module docstring)."""

    def __init__(self, func: Callable[..., Any], dotted: str, workers: int, cfg: AxolotlConfig | None) -> None:
        self.dotted = dotted
        self.workers = workers
        self.paths = add_search_folders(cfg)
        self.__name__ = function_name(func)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.paths,))
        return self._pool

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        where = describe_batch(prompts, completions, kwargs)
        size = len(completions)
        plain = {key: value for key, value in kwargs.items() if not callable(value)}
        jobs: list[tuple[tuple[int, int], Future[list[Any]]]] = []
        for start, stop in group_runs(list(map(repr, prompts)), self.workers):
            part = {key: value[start:stop] if isinstance(value, list) and len(value) == size else value
                    for key, value in plain.items()}
            future = self._executor().submit(_score, self.dotted, prompts[start:stop], completions[start:stop], part)
            jobs.append(((start, stop), future))
        rewards: list[float | None] = []
        for (start, stop), future in jobs:
            try:
                values = future.result()
            except Exception as exc:
                raise RewardFunctionError(f"reward function `{self.dotted}` raised {type(exc).__name__}: {exc} in a "
                                          f"reward worker on completions {start}-{stop - 1} {where}") from exc
            rewards.extend(checked_rewards(values, stop - start, self.dotted,
                                           f"in a reward worker on completions {start}-{stop - 1} {where}"))
        return rewards

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __getstate__(self) -> dict[str, Any]:  # the pool stays with its owner
        return {**self.__dict__, "_pool": None}

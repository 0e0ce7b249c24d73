"""The reward functions of `trl.reward_funcs`, as GRPO calls them.

An entry is either a dotted path to a function of yours (`rewards.accuracy`, importable from the
working directory or the config's folder) or a reward model: a local model folder, a hub id
(anything with a `/`) or a name without a dot. A model is loaded here as a one-label sequence
classifier (as TRL would) and its score is the reward; a dotted path is imported here, before the
policy loads, so a typo costs nothing.

TRL calls a function as `f(prompts=..., completions=..., completion_ids=..., trainer_state=...,
log_extra=..., log_metric=..., **columns)` where `columns` are the prepared dataset's columns
other than `prompt`, one value per completion. `completions[i]` is `[{"role": "assistant",
"content": text}]` for conversation prompts and the text itself for text prompts. It returns one
float (or None: "does not apply") per completion.

Each function is wrapped so that an exception, a result of the wrong length or a value that is
not a number stops the run with a `RewardFunctionError` naming the function and the batch (step,
size, first prompt), instead of a traceback deep inside the trainer. With
`trl.reward_num_workers > 1` the calls run in subprocesses (`axolotl.training.reward_workers`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axolotl.data.user_code import import_dotted

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig


class RewardFunctionError(ValueError):
    """A reward function failed or answered something other than one number per completion."""


def is_reward_model(entry: str) -> bool:
    """A model folder or a hub id (`org/name`); dotted paths (`rewards.accuracy`) have no slash."""
    return Path(entry).expanduser().is_dir() or "/" in entry or "." not in entry


def function_name(func: Callable[..., Any]) -> str:
    return getattr(func, "__name__", type(func).__name__)


def describe_batch(prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]) -> str:
    """Where a reward call happened: step, batch size and the first prompt (shortened)."""
    state = kwargs.get("trainer_state")
    step = f"step {state.global_step}" if state is not None else "an unknown step"
    first = prompts[0] if prompts else None
    if isinstance(first, list) and first and isinstance(first[-1], dict):
        first = first[-1].get("content")
    text = repr(first)
    return f"at {step} on a batch of {len(completions)} completions (first prompt: {text[:80]}{'...' if len(text) > 80 else ''})"


def checked_rewards(values: Any, expected: int, name: str, where: str) -> list[float | None]:
    """`values` as one float or None per completion, or a `RewardFunctionError` saying what is wrong."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__"):
        raise RewardFunctionError(f"reward function `{name}` returned {type(values).__name__} {where}; it must return a "
                                  f"list with one float per completion ({expected})")
    values = list(values)
    if len(values) != expected:
        raise RewardFunctionError(f"reward function `{name}` returned {len(values)} rewards {where}; expected {expected}, "
                                  "one per completion")
    out: list[float | None] = []
    for position, value in enumerate(values):
        if value is None or isinstance(value, numbers.Real):
            out.append(None if value is None else float(value))
            continue
        try:  # a 0-d tensor or array
            out.append(float(value.item()))
        except (AttributeError, TypeError, ValueError, RuntimeError):
            raise RewardFunctionError(f"reward function `{name}` returned {type(value).__name__} {value!r:.40} for "
                                      f"completion {position} {where}; rewards are floats (or None)") from None
    return out


class CheckedReward:
    """A reward function whose failures name it and the batch (see the module docstring)."""

    def __init__(self, func: Callable[..., Any], dotted: str) -> None:
        self.func = func
        self.dotted = dotted
        self.__name__ = function_name(func)  # TRL logs `rewards/<__name__>/mean`

    def _failed(self, exc: Exception, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]) -> None:
        raise RewardFunctionError(f"reward function `{self.dotted}` raised {type(exc).__name__}: {exc} "
                                  f"{describe_batch(prompts, completions, kwargs)}") from exc

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        try:
            values = self.func(prompts=prompts, completions=completions, **kwargs)
        except RewardFunctionError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: name it and the batch
            self._failed(exc, prompts, completions, kwargs)
        return checked_rewards(values, len(completions), self.dotted, describe_batch(prompts, completions, kwargs))


class CheckedAsyncReward(CheckedReward):
    """`CheckedReward` for an `async def` reward function (TRL awaits it on its event loop)."""

    async def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:  # type: ignore[override]
        try:
            values = await self.func(prompts=prompts, completions=completions, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's code: name it and the batch
            self._failed(exc, prompts, completions, kwargs)
        return checked_rewards(values, len(completions), self.dotted, describe_batch(prompts, completions, kwargs))


def wrap_reward(func: Callable[..., Any], dotted: str) -> CheckedReward:
    import inspect

    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)
    return (CheckedAsyncReward if is_async else CheckedReward)(func, dotted)


def load_reward_funcs(cfg: AxolotlConfig) -> list[Any]:
    """`trl.reward_funcs` as GRPOTrainer takes them: reward models loaded, functions imported and
    wrapped (in a worker pool with `reward_num_workers > 1`)."""
    workers = cfg.trl.reward_num_workers
    loaded: list[Any] = []
    for index, entry in enumerate(cfg.trl.reward_funcs or []):
        if is_reward_model(entry):
            loaded.append(load_reward_model(entry, f"trl.reward_funcs[{index}]", cfg))
            continue
        func = import_dotted(entry, f"trl.reward_funcs[{index}]", cfg)
        if workers > 1:
            from axolotl.training.reward_workers import PooledReward

            loaded.append(PooledReward(func, entry, workers, cfg))
        else:
            loaded.append(wrap_reward(func, entry))
    return loaded


def load_reward_model(entry: str, key: str, cfg: AxolotlConfig) -> Any:
    """A reward model as TRL would load it (a one-label sequence classifier), with an error that names
    the key instead of a hub traceback; TRL then loads its tokenizer and places it on the device."""
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(
            str(Path(entry).expanduser()) if Path(entry).expanduser().is_dir() else entry, num_labels=1,
            trust_remote_code=bool(cfg.trust_remote_code))
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RewardFunctionError(f"`{key}: {entry}` is read as a reward model (a folder, a hub id with `/`, or a "
                                  f"name without a dot) and cannot be loaded: {first}; for a function of yours write "
                                  "`module.function`") from None


def close_reward_funcs(funcs: list[Any]) -> None:
    """Stop the worker processes of pooled reward functions."""
    for func in funcs:
        close = getattr(func, "close", None)
        if callable(close):
            close()

"""The registry of dataset `type:` names -> strategy factories.

Each strategy module registers its names where it is defined; `resolve` also accepts an
inline user-defined format (a mapping) and `module.function` transforms of the user's own.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable

from axolotl.data.errors import DataError
from axolotl.data.strategies.base import PromptStrategy, StrategyContext, StrategyFactory

STRATEGIES: dict[str, StrategyFactory] = {}

_BUILTIN_MODULES = (
    "axolotl.data.strategies.instruction",
    "axolotl.data.strategies.completion",
    "axolotl.data.strategies.input_output",
    "axolotl.data.strategies.pretokenized",
    "axolotl.data.strategies.chat_template",
    "axolotl.data.reward.stepwise",
)


def register(*names: str) -> Callable[[StrategyFactory], StrategyFactory]:
    def decorate(factory: StrategyFactory) -> StrategyFactory:
        for name in names:
            if name in STRATEGIES:
                raise AssertionError(f"dataset type `{name}` registered twice")
            STRATEGIES[name] = factory
        return factory

    return decorate


def load_builtin_strategies() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def resolve(ctx: StrategyContext) -> PromptStrategy:
    """The strategy for `ctx.dataset.type`: built-in name, inline format, or user function."""
    load_builtin_strategies()
    kind = ctx.dataset.type
    if kind is None:
        return STRATEGIES["__pretokenized__"](ctx)
    if not isinstance(kind, str):
        return STRATEGIES["__user_defined__"](ctx)
    if kind in STRATEGIES:
        return STRATEGIES[kind](ctx)
    if "." in kind:
        return _user_function(kind, ctx)
    raise DataError(f"dataset `{ctx.dataset.path}`: unknown type `{kind}`")


def _user_function(dotted: str, ctx: StrategyContext) -> PromptStrategy:
    """`module.function`: the function takes the context and returns a strategy."""
    module_name, _, attr = dotted.rpartition(".")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DataError(f"dataset `{ctx.dataset.path}`: type `{dotted}`: cannot import `{module_name}` "
                        f"({exc}); run from the folder that contains it") from None
    factory: Any = getattr(module, attr, None)
    if not callable(factory):
        raise DataError(f"dataset `{ctx.dataset.path}`: type `{dotted}`: `{module_name}` has no function `{attr}`")
    return factory(ctx)

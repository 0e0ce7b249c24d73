"""The registry of preference `type:` names -> format factories, one table per kind of method.

The same name can mean different rows for DPO and KTO (`chatml.argilla` holds a chosen and a
rejected response for DPO, one labelled completion for KTO), so pairwise and KTO formats are
registered separately. Each family module registers its names where it defines them. `resolve`
also accepts an inline `type:` mapping (user_defined), no type (rows already in the output
columns) and `module.function` transforms of the user's own.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from axolotl.data.errors import DataError, RowError
from axolotl.data.preference.base import COLUMNS, PAIRS, UNPAIRED, PreferenceContext, Row, RowFormat

FormatFactory = Callable[[PreferenceContext], RowFormat]

FORMATS: dict[str, dict[str, FormatFactory]] = {PAIRS: {}, UNPAIRED: {}}

PASSTHROUGH = "passthrough"
USER_DEFINED = "user_defined.default"

_BUILTIN_MODULES = (
    "axolotl.data.preference.chatml",
    "axolotl.data.preference.llama3",
    "axolotl.data.preference.zephyr",
    "axolotl.data.preference.chat_template",
    "axolotl.data.preference.user_defined",
    "axolotl.data.preference.passthrough",
)


def register(kind: str, *names: str) -> Callable[[FormatFactory], FormatFactory]:
    def decorate(factory: FormatFactory) -> FormatFactory:
        for name in names:
            if name in FORMATS[kind]:
                raise AssertionError(f"{kind} dataset type `{name}` registered twice")
            FORMATS[kind][name] = factory
        return factory

    return decorate


def load_builtin_formats() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def resolve(ctx: PreferenceContext) -> RowFormat:
    """The row format for `ctx.dataset.type` under the method's kind."""
    load_builtin_formats()
    table = FORMATS[ctx.kind]
    kind = ctx.dataset.type
    if kind is None:
        return table[PASSTHROUGH](ctx)
    if not isinstance(kind, str):
        return table[USER_DEFINED](ctx)
    if kind in table:
        return table[kind](ctx)
    family = kind.split(".")[0]
    if "." in kind and family not in {name.split(".")[0] for name in table}:
        return _user_function(kind, ctx)
    method = "KTO" if ctx.kind == UNPAIRED else "DPO/IPO/ORPO/SimPO"
    raise DataError(f"dataset `{ctx.name}`: unknown {method} type `{kind}`; known: {', '.join(sorted(table))}")


def _user_function(dotted: str, ctx: PreferenceContext) -> RowFormat:
    """`module.function`, called as the reference calls it: `function(cfg, dataset_idx=i)` returns a
    row transform (or `(transform, map_kwargs)`); the transform takes the row (and `tokenizer=`
    when it has that parameter) and returns the output columns."""
    module_name, _, attr = dotted.rpartition(".")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DataError(f"dataset `{ctx.name}`: type `{dotted}`: cannot import `{module_name}` ({exc}); "
                        "run from the folder that contains it") from None
    factory: Any = getattr(module, attr, None)
    if not callable(factory):
        raise DataError(f"dataset `{ctx.name}`: type `{dotted}`: `{module_name}` has no function `{attr}`")
    made = factory(ctx.cfg, dataset_idx=ctx.index)
    transform = made[0] if isinstance(made, tuple) else made
    if not callable(transform):
        raise DataError(f"dataset `{ctx.name}`: type `{dotted}` must return a row transform, not {type(made).__name__}")
    wants_tokenizer = "tokenizer" in inspect.signature(transform).parameters
    columns = COLUMNS[ctx.kind]

    def run(row: Row) -> Row:
        try:
            result = transform(dict(row), tokenizer=ctx.tokenizer) if wants_tokenizer else transform(dict(row))
        except Exception as exc:  # the user's code: report the row instead of a bare traceback
            raise RowError(f"type `{dotted}` failed on this row: {type(exc).__name__}: {exc}") from exc
        if not isinstance(result, dict):
            raise RowError(f"type `{dotted}` returned {type(result).__name__}, not a row mapping")
        return {column: result.get(column) for column in columns}

    return run

"""The per-batch work of preparation: a strategy's tokens, the length rules, and the output rows.

`TokenizeRows` is the function `datasets.map` runs in every worker. With `arrow=True` it hands
back a `pyarrow.Table` whose columns are built from flat arrays: `attention_mask` and the counts
come from the row offsets without a Python object per token, and the writer stores the table as
is instead of converting lists of lists (together about a tenth of preprocessing time).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from axolotl.data.errors import DataError, RowError
from axolotl.data.strategies.base import IGNORE_INDEX, StrategyContext, TokenizedBatch
from axolotl.data.strategies.registry import resolve

if TYPE_CHECKING:
    import pyarrow as pa

    from axolotl.config.schema import AxolotlConfig

T = TypeVar("T")
MIN_SAMPLE_LEN = 2
OUTPUT_COLUMNS = ("input_ids", "labels", "attention_mask", "length")
"""Columns of a prepared row; the map also writes `n_trained` and `drop_reason` for statistics."""


def output_features() -> Any:
    """The output types, stated: a raw column with an output's name (the per-step booleans of
    stepwise `labels`, say) would otherwise impose its own type on the tokenized column."""
    import datasets

    ids = datasets.List(datasets.Value("int32"))
    return datasets.Features({"input_ids": ids, "labels": datasets.List(datasets.Value("int64")),
                              "attention_mask": datasets.List(datasets.Value("int8")),
                              "length": datasets.Value("int64"), "n_trained": datasets.Value("int64"),
                              "drop_reason": datasets.Value("string")})


@lru_cache(maxsize=1)
def _output_schema() -> pa.Schema:
    """`output_features()` as Arrow, built once: every batch's table is made with it."""
    return output_features().arrow_schema


class TokenizeRows:
    """The `datasets.map` function: strategy + length rules, picklable for worker processes.

    Returns columns of Python lists (what streaming datasets take), or a `pyarrow.Table` with
    `arrow=True`."""

    def __init__(self, ctx: StrategyContext, name: str, *, arrow: bool = False, offset: int = 0) -> None:
        self.ctx = ctx
        self.name = name
        self.arrow = arrow
        self.offset = offset
        """Added to the row indices, so errors name the real row when a slice is tokenized."""
        self._strategy: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_strategy": None}

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> Any:
        if self._strategy is None:
            self._strategy = resolve(self.ctx)
        if self.offset:
            indices = [index + self.offset for index in indices]
        tokenized = run_naming_failed_row(self._strategy, batch, indices, self.name)
        checked = LengthRules(self.ctx.cfg, self.name).apply(tokenized, indices)
        return checked.to_table() if self.arrow else checked.to_columns()


def run_naming_failed_row(strategy: Callable[[dict[str, list[Any]]], T], batch: dict[str, list[Any]],
                          indices: list[int], name: str) -> T:
    """`strategy(batch)`; when a row of the batch is bad, the error names the dataset and that row
    (found by running the rows one at a time, so a good batch pays nothing)."""
    try:
        return strategy(batch)
    except RowError:
        pass
    for position in range(len(indices)):
        single = {column: values[position:position + 1] for column, values in batch.items()}
        try:
            strategy(single)
        except RowError as error:
            raise error.located(name, indices[position]) from None
    raise DataError(f"dataset `{name}`: a batch failed but no single row did; please report this")


class CheckedRows:
    """Rows after the length rules; a dropped row keeps its place with no tokens and its reason."""

    def __init__(self) -> None:
        self.input_ids: list[list[int]] = []
        self.labels: list[list[int]] = []
        self.reasons: list[str] = []

    def add(self, ids: list[int], labels: list[int], reason: str) -> None:
        kept = reason == ""
        self.input_ids.append(ids if kept else [])
        self.labels.append(labels if kept else [])
        self.reasons.append(reason)

    def to_columns(self) -> dict[str, list[Any]]:
        lengths = [len(ids) for ids in self.input_ids]
        return {"input_ids": self.input_ids, "labels": self.labels,
                "attention_mask": [[1] * length for length in lengths], "length": lengths,
                "n_trained": [len(labels) - labels.count(IGNORE_INDEX) for labels in self.labels],
                "drop_reason": self.reasons}

    def to_table(self) -> pa.Table:
        import pyarrow as pa

        lengths = np.fromiter(map(len, self.input_ids), dtype=np.int64, count=len(self.input_ids))
        offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        ids = np.fromiter(itertools.chain.from_iterable(self.input_ids), dtype=np.int32, count=total)
        labels = np.fromiter(itertools.chain.from_iterable(self.labels), dtype=np.int64, count=total)
        trained = np.zeros(total + 1, dtype=np.int64)
        np.cumsum(labels != IGNORE_INDEX, out=trained[1:])
        starts = pa.array(offsets)
        columns = {
            "input_ids": pa.ListArray.from_arrays(starts, pa.array(ids)),
            "labels": pa.ListArray.from_arrays(starts, pa.array(labels)),
            "attention_mask": pa.ListArray.from_arrays(starts, pa.array(np.ones(total, dtype=np.int8))),
            "length": pa.array(lengths),
            "n_trained": pa.array(trained[offsets[1:]] - trained[offsets[:-1]]),
            "drop_reason": pa.array(self.reasons, type=pa.string()),
        }
        return pa.table(columns, schema=_output_schema())


class LengthLimits:
    """`sequence_len`, `excess_length_strategy` (default drop) and `min_sample_len` (default 2) of a
    run, for the length rules of one dataset (named in errors)."""

    def __init__(self, cfg: AxolotlConfig, name: str) -> None:
        self.limit = cfg.sequence_len
        self.strategy = cfg.excess_length_strategy or "drop"
        self.min_len = cfg.min_sample_len if cfg.min_sample_len is not None else MIN_SAMPLE_LEN
        self.name = name


class LengthRules(LengthLimits):
    """Rows longer than `sequence_len` (drop / truncate / raise), too short, or with nothing to train."""

    def apply(self, result: TokenizedBatch, indices: list[int]) -> CheckedRows:
        out = CheckedRows()
        for ids, labels, source in zip(result.input_ids, result.labels, result.source_index, strict=True):
            out.add(*self._check(ids, labels, indices[source]))
        for _, reason in result.dropped:
            out.add([], [], reason)
        return out

    def _check(self, ids: list[int], labels: list[int], row: int) -> tuple[list[int], list[int], str]:
        if len(ids) > self.limit:
            if self.strategy == "truncate":
                ids, labels = ids[: self.limit], labels[: self.limit]
            elif self.strategy == "raise":
                raise DataError(f"dataset `{self.name}`, row {row}: {len(ids)} tokens exceed sequence_len "
                                f"{self.limit} (excess_length_strategy: raise)")
            else:
                return ids, labels, f"longer than sequence_len ({self.limit})"
        if len(ids) < self.min_len:
            return ids, labels, f"shorter than min_sample_len ({self.min_len})"
        if labels.count(IGNORE_INDEX) == len(labels):
            return ids, labels, "no trained tokens"
        return ids, labels, ""

"""`ebft_opencode.transform`: {input, output} rows (nvidia/OpenCodeInstruct) -> structured EBFT rows.

The instruction becomes a one-message conversation and the reference solution the
`ground_truth`; every original column is dropped, so only these two reach the trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def transform(cfg: Any, **kwargs: Any) -> tuple[Callable[..., dict[str, Any]], dict[str, Any]]:
    def row_fn(row: dict[str, Any], tokenizer: Any = None) -> dict[str, Any]:
        for key in ("input", "output"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise ValueError(f"`{key}` must be non-empty text (ebft_opencode reads `input` and `output`)")
        return {"prompt": [{"role": "user", "content": row["input"]}], "ground_truth": row["output"]}

    return row_fn, {"remove_columns": "__all__"}

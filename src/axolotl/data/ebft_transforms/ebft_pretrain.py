"""`ebft_pretrain.transform`: {text} rows (raw documents) -> strided EBFT documents.

The whole text is the document (no prompt: `prompt_length` 0, every label supervised), with the
tokenizer's own special tokens and the end-of-text token (cut to `sequence_len` by data
preparation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def transform(cfg: Any, **kwargs: Any) -> tuple[Callable[..., dict[str, Any]], dict[str, Any]]:
    def row_fn(row: dict[str, Any], tokenizer: Any = None) -> dict[str, Any]:
        if tokenizer is None:
            raise ValueError("ebft_pretrain needs the tokenizer")
        if not isinstance(row.get("text"), str) or not row["text"]:
            raise ValueError("`text` must be non-empty text (ebft_pretrain reads `text`)")
        ids = list(tokenizer(row["text"])["input_ids"])
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        return {"input_ids": ids, "labels": list(ids), "prompt_length": 0}

    return row_fn, {"remove_columns": "__all__"}

"""`ebft_strided_structured.transform`: {input, output} rows -> one tokenised document for strided mode.

The instruction is rendered as a user turn with the chat template's generation prompt (plain
text plus a newline when the tokenizer has no template), followed by the solution and the
end-of-text token (data preparation cuts it to `sequence_len`). The prompt's labels are -100 and `prompt_length`
marks where the solution starts, so anchors (and the CE term) only cover the solution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from axolotl.data.ebft_transforms._common import document, render_prompt


def transform(cfg: Any, **kwargs: Any) -> tuple[Callable[..., dict[str, Any]], dict[str, Any]]:
    def row_fn(row: dict[str, Any], tokenizer: Any = None) -> dict[str, Any]:
        for key in ("input", "output"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise ValueError(f"`{key}` must be non-empty text (ebft_strided_structured reads `input` and `output`)")
        prompt = render_prompt(tokenizer, [{"role": "user", "content": row["input"]}])
        return document(tokenizer, prompt, row["output"])

    return row_fn, {"remove_columns": "__all__"}

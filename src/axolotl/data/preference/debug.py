"""`preprocess --debug` for preference data: each rendered text, then prompt + response token by
token, the prompt masked (-100) and the response trained, as the length rule counts them
(each text tokenized on its own, without special tokens; the trainer may add bos/eos).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from axolotl.data.debug import DIM, GREEN, RESET, render_example
from axolotl.data.strategies.base import IGNORE_INDEX

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def render_preference_examples(tokenizer: PreTrainedTokenizerBase, dataset: Any, count: int, color: bool) -> str:
    blocks = []
    responses = [column for column in ("chosen", "rejected", "completion") if column in dataset.column_names]
    for index in range(min(count, len(dataset))):
        row = dataset[index]
        prompt_ids = tokenizer.encode(row["prompt"], add_special_tokens=False)
        ids = {column: tokenizer.encode(row[column], add_special_tokens=False) for column in responses}
        sizes = ", ".join(f"{column} {len(ids[column])} tokens" for column in responses)
        header = f"--- example {index}: prompt {len(prompt_ids)} tokens (masked), {sizes} (trained)"
        if "label" in row:
            header += f", label {str(row['label']).lower()} ({'desirable' if row['label'] else 'undesirable'})"
        if color:
            header += f" ({GREEN}trained{RESET}, {DIM}masked{RESET})"
        lines = [header, f"prompt: {row['prompt']!r}"]
        lines += [f"{column}: {row[column]!r}" for column in responses]
        for column in responses:
            shown = {"input_ids": prompt_ids + ids[column],
                     "labels": [IGNORE_INDEX] * len(prompt_ids) + ids[column]}
            lines += [f"prompt + {column}:", render_example(tokenizer, shown, color)]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)

"""`preprocess --debug`: show examples token by token, trained tokens visibly distinct.

On a terminal trained tokens are green and masked ones dim; in a pipe or a log each token is
written `text(label, id)` (label -100 = masked), the format users know from the reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from axolotl.data.strategies.base import IGNORE_INDEX

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

GREEN = "\033[32m"
DIM = "\033[2m"
RESET = "\033[0m"


def render_example(tokenizer: PreTrainedTokenizerBase, row: dict[str, Any], color: bool) -> str:
    pieces = []
    for token_id, label in zip(row["input_ids"], row["labels"], strict=True):
        text = tokenizer.decode([token_id])
        if color:
            shown = text.replace("\n", "\\n\n")
            pieces.append(f"{DIM if label == IGNORE_INDEX else GREEN}{shown}{RESET}")
        else:
            pieces.append(f"{text!r}({label}, {token_id})"[1:].replace("'(", "(", 1))
    joiner = "" if color else " "
    return joiner.join(pieces)


def render_pair(tokenizer: PreTrainedTokenizerBase, row: dict[str, Any], color: bool) -> str:
    """A reward-model pair: both sides as the text the model scores (no per-token labels)."""
    sides = []
    for side in ("chosen", "rejected"):
        ids = row[f"{side}_ids"]
        text = tokenizer.decode(ids)
        name = f"{GREEN}{side}{RESET}" if color and side == "chosen" else side
        sides.append(f"{name} ({len(ids)} tokens): {text if color else repr(text)}")
    return "\n".join(sides)


def render_examples(tokenizer: PreTrainedTokenizerBase, dataset: Any, count: int, color: bool) -> str:
    if "chosen_ids" in dataset.column_names:
        return "\n".join(f"--- pair {index}\n" + render_pair(tokenizer, dataset[index], color)
                         for index in range(min(count, len(dataset))))
    blocks = []
    for index in range(min(count, len(dataset))):
        row = dataset[index]
        trained = sum(1 for label in row["labels"] if label != IGNORE_INDEX)
        header = f"--- example {index}: {len(row['input_ids'])} tokens, {trained} trained"
        if color:
            header += f" ({GREEN}trained{RESET}, {DIM}masked{RESET})"
        blocks.append(header + "\n" + render_example(tokenizer, row, color))
    return "\n".join(blocks)

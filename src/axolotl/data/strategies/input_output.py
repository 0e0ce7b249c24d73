"""`type: input_output` (template-free): the user's own segments, each trained or masked.

Each segment's text is tokenized WITHOUT special tokens and the pieces are concatenated as-is:
BOS, EOS, spaces and newlines are whatever the user wrote (`<s>` in a text becomes the BOS
token when the tokenizer knows it). Labels are the ids of segments with `label: true` and -100
elsewhere.

`train_on_inputs: true` trains on every segment, `label: false` ones included: that is what the
reference does, and the flag means "train on the masked parts" for every other type too. There
is no truncation here; the pipeline applies `excess_length_strategy`.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from axolotl.data.encoding import encode_batch
from axolotl.data.errors import RowError
from axolotl.data.strategies.base import IGNORE_INDEX, Batch, StrategyContext, TokenizedBatch
from axolotl.data.strategies.registry import register


class InputOutputStrategy:
    """Masks by segment, so the user decides exactly which tokens are trained."""

    def __init__(self, ctx: StrategyContext) -> None:
        self.tokenizer = ctx.tokenizer
        self.train_on_inputs = ctx.train_on_inputs

    def __call__(self, batch: Batch) -> TokenizedBatch:
        """All segment texts of the batch go to the tokenizer in one call."""
        out = TokenizedBatch()
        texts: list[str] = []
        trained: list[bool] = []
        counts: dict[int, int] = {}
        for index, segments in enumerate(_segments_column(batch)):
            if not segments:
                out.drop(index, "no segments")
                continue
            for position, segment in enumerate(segments):
                text, label = _segment(segment, position)
                texts.append(text)
                trained.append(label or self.train_on_inputs)
            counts[index] = len(segments)
        pieces = encode_batch(self.tokenizer, texts, add_special_tokens=False) if texts else []
        start = 0
        for index, count in counts.items():
            row = slice(start, start + count)
            start += count
            out.add(index, *_assemble(pieces[row], trained[row]))
        return out


def _assemble(pieces: list[list[int]], trained: list[bool]) -> tuple[list[int], list[int]]:
    input_ids = list(chain.from_iterable(pieces))
    labels = list(chain.from_iterable(piece if keep else [IGNORE_INDEX] * len(piece)
                                      for piece, keep in zip(pieces, trained, strict=True)))
    return input_ids, labels


def _segments_column(batch: Batch) -> list[Any]:
    if "segments" not in batch:
        raise RowError("missing field `segments` (type input_output reads a list of {text, label})", "segments")
    for value in batch["segments"]:
        if value is None:
            raise RowError("missing field `segments` (type input_output reads a list of {text, label})",
                           "segments")
        if not isinstance(value, list | tuple):
            raise RowError(f"`segments` must be a list of {{text, label}}, not {type(value).__name__}", "segments")
    return batch["segments"]


def _segment(segment: Any, position: int) -> tuple[str, bool]:
    """(text, label) of one segment; a string label such as "false" is refused, not read as true."""
    if not isinstance(segment, dict):
        raise RowError(f"segment {position} must be a mapping with `text` and `label`", "segments")
    text, label = segment.get("text"), segment.get("label")
    if not isinstance(text, str):
        problem = "has no `text`" if text is None else "`text` must be a string"
        raise RowError(f"segment {position} {problem}", "segments.text")
    if not isinstance(label, bool | int):
        problem = "has no `label`" if label is None else f"`label` must be true or false, not {label!r}"
        raise RowError(f"segment {position} {problem}", "segments.label")
    return text, bool(label)


@register("input_output")
def input_output(ctx: StrategyContext) -> InputOutputStrategy:
    return InputOutputStrategy(ctx)

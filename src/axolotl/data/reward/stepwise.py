"""`type: stepwise_supervised`: a prompt, its reasoning steps and one correct/incorrect label per
step, for process reward models (token classification).

Row: `{"prompt": str, "completions": [step, ...], "labels": [bool, ...]}` (labels may also be 0/1).

Layout (the one TRL's PRM trainer uses, so a trained PRM scores traces laid out the same way):

    prompt (with the tokenizer's BOS, if it adds one) | step 1 + separator | step 2 + separator | ...

The prompt and every step are tokenized on their own (in one batched call per batch) and the ids
concatenated, so a label always sits exactly on the last token of its step's separator, whatever
the tokenizer would merge across the seams. Every other position is -100. With an empty
`step_separator` the label sits on the step's own last token.

- `train_on_last_step_only: true` keeps only the last step's label (an outcome label on the trace).
- `max_completion_length` caps the tokens of the steps (separators included); steps cut off lose
  their label. `sequence_len` then applies to the whole row like for SFT (drop / truncate / raise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from axolotl.data.encoding import encode_batch
from axolotl.data.errors import RowError
from axolotl.data.strategies.base import IGNORE_INDEX, Batch, StrategyContext, TokenizedBatch
from axolotl.data.strategies.registry import register

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_STEP_SEPARATOR = "\n"
COLUMNS = ("prompt", "completions", "labels")


def step_label(value: Any, position: int) -> int:
    """A step label as the class id the head predicts: 1 = correct, 0 = incorrect."""
    if isinstance(value, bool) or value in (0, 1):
        return int(value)
    raise RowError(f"label {position} is {value!r}; step labels are booleans (true = the step is correct) or 0/1",
                   "labels")


def layout_row(prompt_ids: list[int], step_ids: list[list[int]], separator_ids: list[int], labels: list[int],
               last_step_only: bool = False, max_completion_length: int | None = None) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one row from its already tokenized pieces (see the module docstring)."""
    completion: list[int] = []
    targets: list[int] = []
    last = len(step_ids) - 1
    for position, (step, label) in enumerate(zip(step_ids, labels, strict=True)):
        piece = step + separator_ids
        if not piece:
            raise RowError(f"step {position} is empty and `step_separator` is empty: no token can carry its label",
                           "completions")
        completion += piece
        trained = label if position == last or not last_step_only else IGNORE_INDEX
        targets += [IGNORE_INDEX] * (len(piece) - 1) + [trained]
    if max_completion_length is not None:
        completion, targets = completion[:max_completion_length], targets[:max_completion_length]
    return prompt_ids + completion, [IGNORE_INDEX] * len(prompt_ids) + targets


class StepwiseSupervisedStrategy:
    """One tokenizer call per batch for all prompts and steps."""

    def __init__(self, ctx: StrategyContext) -> None:
        entry = ctx.dataset
        self.tokenizer: PreTrainedTokenizerBase = ctx.tokenizer
        separator = getattr(entry, "step_separator", None)
        self.separator = DEFAULT_STEP_SEPARATOR if separator is None else separator
        self.separator_ids = list(self.tokenizer.encode(self.separator, add_special_tokens=False)) \
            if self.separator else []
        self.last_step_only = bool(getattr(entry, "train_on_last_step_only", False))
        self.max_completion_length = getattr(entry, "max_completion_length", None)

    def __call__(self, batch: Batch) -> TokenizedBatch:
        missing = [column for column in COLUMNS if column not in batch]
        if missing:
            raise RowError(f"the data has no {', '.join(f'`{c}`' for c in missing)} column (stepwise_supervised rows "
                           f"need prompt, completions and labels; columns: {sorted(batch)})", missing[0])
        out = TokenizedBatch()
        rows: list[tuple[int, list[int]]] = []
        prompts: list[str] = []
        steps: list[str] = []
        for index, (prompt, completions, labels) in enumerate(zip(*(batch[c] for c in COLUMNS), strict=True)):
            if not completions:
                out.drop(index, "no completion steps")
                continue
            rows.append((index, self._labels(prompt, completions, labels)))
            prompts.append(prompt)
            steps.extend(completions)
        if not rows:
            return out
        prompt_ids = encode_batch(self.tokenizer, prompts, add_special_tokens=True)
        step_ids = encode_batch(self.tokenizer, steps, add_special_tokens=False) if steps else []
        cursor = 0
        for (index, labels), ids in zip(rows, prompt_ids, strict=True):
            row_steps = [list(step) for step in step_ids[cursor:cursor + len(labels)]]
            cursor += len(labels)
            input_ids, targets = layout_row(list(ids), row_steps, self.separator_ids, labels,
                                            self.last_step_only, self.max_completion_length)
            out.add(index, input_ids, targets)
        return out

    @staticmethod
    def _labels(prompt: Any, completions: Any, labels: Any) -> list[int]:
        if not isinstance(prompt, str):
            raise RowError(f"the prompt must be a string, not {type(prompt).__name__}", "prompt")
        if not isinstance(completions, list) or not all(isinstance(step, str) for step in completions):
            raise RowError("completions must be a list of step strings", "completions")
        if not isinstance(labels, list) or len(labels) != len(completions):
            count = len(labels) if isinstance(labels, list) else type(labels).__name__
            raise RowError(f"has {count} labels for {len(completions)} completion steps; give one label per step",
                           "labels")
        return [step_label(value, position) for position, value in enumerate(labels)]


@register("stepwise_supervised")
def stepwise_supervised_strategy(ctx: StrategyContext) -> StepwiseSupervisedStrategy:
    return StepwiseSupervisedStrategy(ctx)

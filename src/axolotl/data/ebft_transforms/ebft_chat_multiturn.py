"""`ebft_chat_multiturn.*`: {messages} rows -> structured EBFT rows, choosing which assistant turn is the target.

* `transform`: the first assistant turn; the messages after it become `remaining_turns`
  (the trainer would roll them out in sequence);
* `transform_last_turn`: the last assistant turn, with the whole conversation before it as prompt;
* `transform_all_turns`: one row per assistant turn (lists of prompts and references that data
  preparation spreads into separate rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from axolotl.data.ebft_transforms._common import assistant_turns, messages_of

RowFn = Callable[..., dict[str, Any]]


def transform(cfg: Any, **kwargs: Any) -> tuple[RowFn, dict[str, Any]]:
    def row_fn(row: dict[str, Any], tokenizer: Any = None) -> dict[str, Any]:
        messages = messages_of(row)
        first = assistant_turns(messages)[0]
        return {"prompt": messages[:first], "ground_truth": messages[first]["content"],
                "remaining_turns": messages[first + 1:]}

    return row_fn, {"remove_columns": "__all__"}


def transform_last_turn(cfg: Any, **kwargs: Any) -> tuple[RowFn, dict[str, Any]]:
    def row_fn(row: dict[str, Any], tokenizer: Any = None) -> dict[str, Any]:
        messages = messages_of(row)
        last = assistant_turns(messages)[-1]
        return {"prompt": messages[:last], "ground_truth": messages[last]["content"]}

    return row_fn, {"remove_columns": "__all__"}


def transform_all_turns(cfg: Any, **kwargs: Any) -> tuple[RowFn, dict[str, Any]]:
    def row_fn(row: dict[str, Any], tokenizer: Any = None) -> dict[str, Any]:
        messages = messages_of(row)
        turns = assistant_turns(messages)
        return {"prompt": [messages[:turn] for turn in turns],
                "ground_truth": [messages[turn]["content"] for turn in turns]}

    return row_fn, {"remove_columns": "__all__"}

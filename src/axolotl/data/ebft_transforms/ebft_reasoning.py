"""`ebft_reasoning.transform`: {messages} rows of reasoning datasets -> structured EBFT rows.

The target is the last assistant turn with its reasoning: when the message carries the reasoning
in a separate `reasoning_content` (or `reasoning`) field it is put back in front of the answer as
`<think>\\n...\\n</think>\\n\\n`, so the reference reads as the model writes; content that already
holds a `<think>` block is kept as it is. The conversation before that turn is the prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from axolotl.data.ebft_transforms._common import assistant_turns, messages_of

REASONING_FIELDS = ("reasoning_content", "reasoning")


def with_reasoning(message: dict[str, Any]) -> str:
    content = message["content"]
    reasoning = next((message[key] for key in REASONING_FIELDS if isinstance(message.get(key), str) and message[key]),
                     None)
    if reasoning is None or "<think>" in content:
        return content
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{content.lstrip()}"


def transform(cfg: Any, **kwargs: Any) -> tuple[Callable[..., dict[str, Any]], dict[str, Any]]:
    def row_fn(row: dict[str, Any], tokenizer: Any = None) -> dict[str, Any]:
        messages = messages_of(row)
        last = assistant_turns(messages)[-1]
        reference = with_reasoning(row["messages"][last])
        if not reference.strip():
            raise ValueError("the last assistant message is empty")
        return {"prompt": messages[:last], "ground_truth": reference}

    return row_fn, {"remove_columns": "__all__"}

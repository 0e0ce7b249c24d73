"""`ebft_strided_chat.transform`: {messages} rows -> one tokenised document for strided mode.

Everything before the first assistant turn is the prompt (rendered with the generation prompt,
labels -100); the first assistant turn and every later message follow as the document anchors
are placed in, each later turn rendered by the chat template's own markup (cut to `sequence_len` by data
preparation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from axolotl.data.ebft_transforms._common import IGNORE_INDEX, assistant_turns, messages_of, render_prompt


def transform(cfg: Any, **kwargs: Any) -> tuple[Callable[..., dict[str, Any]], dict[str, Any]]:
    def row_fn(row: dict[str, Any], tokenizer: Any = None) -> dict[str, Any]:
        if tokenizer is None:
            raise ValueError("ebft_strided_chat needs the tokenizer")
        messages = messages_of(row)
        first = assistant_turns(messages)[0]
        prompt = render_prompt(tokenizer, messages[:first])
        if getattr(tokenizer, "chat_template", None):
            full = list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
            if full[:len(prompt)] != prompt:
                raise ValueError("the chat template renders the prompt differently inside the whole conversation; "
                                 "strided transforms need a template whose prefixes are stable")
        else:
            full = prompt + list(tokenizer("".join(f"{m['content']}\n" for m in messages[first:]),
                                           add_special_tokens=False)["input_ids"])
        return {"input_ids": full, "labels": [IGNORE_INDEX] * len(prompt) + full[len(prompt):],
                "prompt_length": len(prompt)}

    return row_fn, {"remove_columns": "__all__"}

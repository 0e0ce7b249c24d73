"""Helpers shared by the built-in EBFT transforms: reading chat rows and tokenising documents."""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100
Message = dict[str, str]


def messages_of(row: dict[str, Any]) -> list[Message]:
    """The row's `messages` as plain {role, content} dicts, with a message that names the problem."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TypeError("the row has no `messages` list (these transforms read chat rows: "
                         "{'messages': [{'role': ..., 'content': ...}, ...]})")
    out = []
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise ValueError(f"message {position} needs a text `role` and `content`")
        out.append({"role": message["role"], "content": message["content"]})
    return out


def assistant_turns(messages: list[Message]) -> list[int]:
    """Indices of the assistant messages; a conversation without one has nothing to learn."""
    turns = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
    if not turns:
        raise ValueError("the conversation has no assistant message to use as the reference")
    if turns[0] == 0:
        raise ValueError("the conversation starts with an assistant message; the first turn needs a prompt")
    return turns


def render_prompt(tokenizer: Any, prompt: list[Message]) -> list[int]:
    """Token ids of `prompt` as generation would see it: the chat template with the generation prompt."""
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])
    text = "".join(f"{message['content']}\n" for message in prompt)
    return list(tokenizer(text)["input_ids"])


def document(tokenizer: Any, prompt_ids: list[int], answer: str) -> dict[str, Any]:
    """{input_ids, labels, prompt_length} for a prompt followed by its answer and the end-of-text
    token (strided mode places anchors in the answer part only). Not cut here: data preparation
    applies `excess_length_strategy` to every strided document alike."""
    if tokenizer is None:
        raise ValueError("strided transforms need the tokenizer")
    answer_ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        answer_ids.append(tokenizer.eos_token_id)
    ids = prompt_ids + answer_ids
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids, "prompt_length": len(prompt_ids)}

"""The fixed-format families (`chatml.*`, `llama3.*`): one way of writing a turn, and the field
layouts of the public preference datasets each `type:` name stands for.

A family is a `TurnStyle`; a layout says which fields hold the system prompt, the user message
and the response(s). `register_family` registers every layout under `<family>.<layout>` for the
pairwise methods and for KTO. Rendered text (chatml shown; llama3 alike with its headers):

    prompt:    [<|im_start|>system\\n{system}<|im_end|>\\n]<|im_start|>user\\n{user}<|im_end|>\\n<|im_start|>assistant\\n
    response:  {response}<|im_end|>

The system turn appears only when the row has a non-empty `system`. Conversation layouts
(`argilla_chat`, `ultra`) read the first exchange of the conversation, as the reference does;
use `chat_template.default` or `chat_template.argilla` for multi-turn preference data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from axolotl.data.preference.base import (
    PAIRS,
    UNPAIRED,
    PreferenceContext,
    Row,
    RowFormat,
    label,
    message_content,
    message_list,
    optional_text,
    text,
)
from axolotl.data.preference.registry import register

FIELD_SYSTEM = "system"


@dataclass(frozen=True)
class TurnStyle:
    opening: str
    """Text before a turn's content; `{role}` stands for the role."""
    closing: str
    """Text after a turn's content."""
    end: str
    """What ends a response (the closing without the line break that separates turns)."""

    def turn(self, role: str, content: str) -> str:
        return self.opening.replace("{role}", role) + content + self.closing

    @property
    def response_header(self) -> str:
        return self.opening.replace("{role}", "assistant")

    def prompt(self, user: str, system: str | None = None) -> str:
        head = self.turn("system", system) if system else ""
        return head + self.turn("user", user) + self.response_header


Layout = Callable[[TurnStyle, Row], Row]


# ---- pairwise layouts: prompt, chosen, rejected -------------------------------------------------

def _pair_fields(prompt_field: str) -> Layout:
    def layout(style: TurnStyle, row: Row) -> Row:
        return {"prompt": style.prompt(text(row, prompt_field), optional_text(row, FIELD_SYSTEM)),
                "chosen": text(row, "chosen") + style.end, "rejected": text(row, "rejected") + style.end}

    return layout


def _pair_any_fields(style: TurnStyle, row: Row) -> Row:
    """`<family>` / `.default` / `.argilla`: the first of prompt/input/question/instruction the rows
    have, and chosen/rejected or chosen_response/rejected_response (argilla's column names)."""
    prompt_field = next((name for name in ("prompt", "input", "question") if name in row), "instruction")
    chosen_field = "chosen" if "chosen" in row else "chosen_response"
    rejected_field = "rejected" if "rejected" in row else "rejected_response"
    return {"prompt": style.prompt(text(row, prompt_field), optional_text(row, FIELD_SYSTEM)),
            "chosen": text(row, chosen_field) + style.end, "rejected": text(row, rejected_field) + style.end}


def _pair_conversations(style: TurnStyle, row: Row) -> Row:
    """`argilla_chat`: chosen/rejected are [user, assistant] conversations (argilla/dpo-mix-7k)."""
    chosen, rejected = message_list(row, "chosen", 2), message_list(row, "rejected", 2)
    return {"prompt": style.prompt(message_content(chosen, 0, "chosen")),
            "chosen": message_content(chosen, 1, "chosen") + style.end,
            "rejected": message_content(rejected, 1, "rejected") + style.end}


def _pair_ultra(style: TurnStyle, row: Row) -> Row:
    """`ultra`: a `prompt` column and [user, assistant] conversations (ultrafeedback binarized)."""
    chosen, rejected = message_list(row, "chosen", 2), message_list(row, "rejected", 2)
    return {"prompt": style.prompt(text(row, "prompt"), optional_text(row, FIELD_SYSTEM)),
            "chosen": message_content(chosen, 1, "chosen") + style.end,
            "rejected": message_content(rejected, 1, "rejected") + style.end}


PAIR_LAYOUTS: dict[str, Layout] = {
    "default": _pair_any_fields,
    "argilla": _pair_any_fields,
    "argilla_chat": _pair_conversations,
    "icr": _pair_fields("input"),
    "intel": _pair_fields("question"),
    "prompt_pairs": _pair_fields("prompt"),
    "ultra": _pair_ultra,
}


# ---- KTO layouts: prompt, completion, label ---------------------------------------------------

def _kto_fields(prompt_field: str) -> Layout:
    def layout(style: TurnStyle, row: Row) -> Row:
        return {"prompt": style.prompt(text(row, prompt_field), optional_text(row, FIELD_SYSTEM)),
                "completion": text(row, "completion") + style.end, "label": label(row, "label")}

    return layout


def kto_first_exchange(style: TurnStyle, row: Row) -> Row:
    """chatml `argilla_chat` (argilla/kto-mix-15k): `completion` is [user, assistant]; when it holds
    only the assistant message, the user message is the first of `chosen`."""
    completion = message_list(row, "completion", 1)
    if len(completion) >= 2:
        user, response = message_content(completion, 0, "completion"), message_content(completion, 1, "completion")
    else:
        user = message_content(message_list(row, "chosen", 1), 0, "chosen")
        response = message_content(completion, 0, "completion")
    return {"prompt": style.prompt(user), "completion": response + style.end, "label": label(row, "label")}


def kto_history(style: TurnStyle, row: Row) -> Row:
    """llama3 `argilla_chat`: every message of `completion` but the last is the prompt, written with
    its own role; the last is the completion. A one-message `completion` takes `chosen` as history."""
    completion = message_list(row, "completion", 1)
    history_field = "completion" if len(completion) >= 2 else "chosen"
    history = completion[:-1] if len(completion) >= 2 else message_list(row, "chosen", 1)
    turns = [style.turn(_role(history[position]), message_content(history, position, history_field))
             for position in range(len(history))]
    return {"prompt": "".join(turns) + style.response_header,
            "completion": message_content(completion, -1, "completion") + style.end, "label": label(row, "label")}


def _role(message: Any) -> str:
    role = message.get("role") if isinstance(message, dict) else None
    return role if isinstance(role, str) and role else "user"


def kto_layouts(argilla_chat: Layout) -> dict[str, Layout]:
    return {
        "argilla": _kto_fields("instruction"),
        "argilla_chat": argilla_chat,
        "intel": _kto_fields("question"),
        "prompt_pairs": _kto_fields("prompt"),
        "ultra": _kto_fields("prompt"),
    }


def register_family(family: str, style: TurnStyle, kto_argilla_chat: Layout) -> None:
    """`<family>` and `<family>.<layout>` for the pairwise methods, `<family>.<layout>` for KTO."""
    for layout_name, layout in PAIR_LAYOUTS.items():
        names = (family, f"{family}.{layout_name}") if layout_name == "default" else (f"{family}.{layout_name}",)
        register(PAIRS, *names)(_factory(style, layout))
    for layout_name, layout in kto_layouts(kto_argilla_chat).items():
        register(UNPAIRED, f"{family}.{layout_name}")(_factory(style, layout))


def _factory(style: TurnStyle, layout: Layout) -> Callable[[PreferenceContext], RowFormat]:
    def make(ctx: PreferenceContext) -> RowFormat:
        return lambda row: layout(style, row)

    return make

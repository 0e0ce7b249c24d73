"""`type: zephyr.nectar`: ranked answers (berkeley-nest/Nectar) in the Zephyr format.

Row: `{"prompt": str, "answers": [{"answer": str, "rank": number}, ...]}` (at least two answers).

    prompt:    <|system|>\\n</s>\\n<|user|>\\n{prompt}</s>\\n<|assistant|>\\n
    chosen:    the answer with the largest `rank`
    rejected:  the answer with the second largest `rank`

The responses get no end marker. Which answers are picked is the reference's choice, kept for
compatibility: in Nectar itself rank 1 is the best answer (see docs/compatibility.md).
"""

from __future__ import annotations

from typing import Any

from axolotl.data.errors import RowError
from axolotl.data.preference.base import PAIRS, PreferenceContext, Row, RowFormat, message_list, text
from axolotl.data.preference.registry import register


def _ranked(answers: list[Any]) -> list[tuple[float, str]]:
    ranked = []
    for position, answer in enumerate(answers):
        rank = answer.get("rank") if isinstance(answer, dict) else None
        content = answer.get("answer") if isinstance(answer, dict) else None
        if isinstance(rank, bool) or not isinstance(rank, (int, float)) or not isinstance(content, str):
            raise RowError(f"`answers` item {position} needs a text `answer` and a numeric `rank`, got {answer!r}",
                           "answers")
        ranked.append((rank, content))
    return sorted(ranked, key=lambda item: item[0])


def nectar(row: Row) -> Row:
    ranked = _ranked(message_list(row, "answers", 2))
    prompt = f"<|system|>\n</s>\n<|user|>\n{text(row, 'prompt')}</s>\n<|assistant|>\n"
    return {"prompt": prompt, "chosen": ranked[-1][1], "rejected": ranked[-2][1]}


@register(PAIRS, "zephyr.nectar")
def nectar_format(ctx: PreferenceContext) -> RowFormat:
    return nectar

"""`type: chatml.*` (and bare `chatml`): preference rows written in ChatML.

    prompt:    [<|im_start|>system\\n{system}<|im_end|>\\n]<|im_start|>user\\n{user}<|im_end|>\\n<|im_start|>assistant\\n
    response:  {response}<|im_end|>

Layouts (which fields are read) are in `turns.py`.
"""

from __future__ import annotations

from axolotl.data.preference.turns import TurnStyle, kto_first_exchange, register_family

CHATML = TurnStyle(opening="<|im_start|>{role}\n", closing="<|im_end|>\n", end="<|im_end|>")

register_family("chatml", CHATML, kto_argilla_chat=kto_first_exchange)

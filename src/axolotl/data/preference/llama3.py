"""`type: llama3.*` (and bare `llama3`): preference rows written with the Llama 3 headers.

    prompt:    [<|start_header_id|>system<|end_header_id|>\\n\\n{system}<|eot_id|>]<|start_header_id|>user<|end_header_id|>\\n\\n{user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n
    response:  {response}<|eot_id|>

No `<|begin_of_text|>`: the trainer's tokenizer adds it. Layouts are in `turns.py`.
"""

from __future__ import annotations

from axolotl.data.preference.turns import TurnStyle, kto_history, register_family

LLAMA3 = TurnStyle(opening="<|start_header_id|>{role}<|end_header_id|>\n\n", closing="<|eot_id|>", end="<|eot_id|>")

register_family("llama3", LLAMA3, kto_argilla_chat=kto_history)

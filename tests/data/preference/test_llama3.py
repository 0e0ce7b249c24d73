"""`type: llama3.*`: Llama 3 headers `<|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>`,
no `<|begin_of_text|>` (the tokenizer adds it); responses end with `<|eot_id|>`."""

from __future__ import annotations

import pytest

from .conftest import render

PROMPT = ("<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n")
SYSTEM_PROMPT = "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" + PROMPT
PAIR = {"prompt": PROMPT, "chosen": "4<|eot_id|>", "rejected": "5<|eot_id|>"}
CONVERSATIONS = {"chosen": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}],
                 "rejected": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "5"}]}


@pytest.mark.parametrize(("type_name", "row"), [
    ("llama3.argilla", {"instruction": "What is 2 + 2?", "chosen_response": "4", "rejected_response": "5"}),
    ("llama3", {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}),
    ("llama3.icr", {"input": "What is 2 + 2?", "chosen": "4", "rejected": "5"}),
    ("llama3.intel", {"question": "What is 2 + 2?", "chosen": "4", "rejected": "5"}),
    ("llama3.prompt_pairs", {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}),
    ("llama3.ultra", {"prompt": "What is 2 + 2?", **CONVERSATIONS}),
    ("llama3.argilla_chat", CONVERSATIONS),
])
def test_dpo_layouts(type_name: str, row: dict) -> None:
    assert render(type_name, row) == PAIR
    if type_name != "llama3.argilla_chat":
        assert render(type_name, {**row, "system": "Be brief."}) == {**PAIR, "prompt": SYSTEM_PROMPT}


@pytest.mark.parametrize(("type_name", "row"), [
    ("llama3.argilla", {"instruction": "What is 2 + 2?", "completion": "4", "label": False}),
    ("llama3.intel", {"question": "What is 2 + 2?", "completion": "4", "label": False}),
    ("llama3.prompt_pairs", {"prompt": "What is 2 + 2?", "completion": "4", "label": False}),
    ("llama3.ultra", {"prompt": "What is 2 + 2?", "completion": "4", "label": False}),
])
def test_kto_layouts(type_name: str, row: dict) -> None:
    expected = {"prompt": PROMPT, "completion": "4<|eot_id|>", "label": False}
    assert render(type_name, row, rl="kto") == expected
    assert render(type_name, {**row, "system": "Be brief."}, rl="kto") == {**expected, "prompt": SYSTEM_PROMPT}


def test_kto_argilla_chat_writes_the_history_with_its_roles() -> None:
    row = {"completion": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"},
                          {"role": "assistant", "content": "4"}], "label": True}
    assert render("llama3.argilla_chat", row, rl="kto") == {"prompt": SYSTEM_PROMPT, "completion": "4<|eot_id|>",
                                                             "label": True}
    two = {"completion": row["completion"][1:], "label": True}
    assert render("llama3.argilla_chat", two, rl="kto")["prompt"] == PROMPT

"""`type: chatml.*`: ChatML prompt `<|im_start|>role\\n...<|im_end|>\\n`, ending in the assistant
header; responses end with `<|im_end|>`. Expected strings are written out from the format."""

from __future__ import annotations

import re

import pytest

from axolotl.data.errors import RowError

from .conftest import render

PROMPT = "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
SYSTEM_PROMPT = ("<|im_start|>system\nBe brief.<|im_end|>\n"
                 "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n")
PAIR = {"prompt": PROMPT, "chosen": "4<|im_end|>", "rejected": "5<|im_end|>"}
PAIR_WITH_SYSTEM = {**PAIR, "prompt": SYSTEM_PROMPT}


@pytest.mark.parametrize(("type_name", "row"), [
    ("chatml.argilla", {"instruction": "What is 2 + 2?", "chosen_response": "4", "rejected_response": "5"}),
    ("chatml", {"instruction": "What is 2 + 2?", "chosen_response": "4", "rejected_response": "5"}),
    ("chatml.default", {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}),
    ("chatml.icr", {"input": "What is 2 + 2?", "chosen": "4", "rejected": "5"}),
    ("chatml.intel", {"question": "What is 2 + 2?", "chosen": "4", "rejected": "5", "system": ""}),
    ("chatml.prompt_pairs", {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5", "system": None}),
    ("chatml.ultra", {"prompt": "What is 2 + 2?",
                      "chosen": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}],
                      "rejected": [{"role": "user", "content": "What is 2 + 2?"},
                                   {"role": "assistant", "content": "5"}]}),
    ("chatml.argilla_chat", {
        "chosen": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}],
        "rejected": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "5"}]}),
])
def test_dpo_layouts_without_system(type_name: str, row: dict) -> None:
    assert render(type_name, row) == PAIR


@pytest.mark.parametrize(("type_name", "row"), [
    ("chatml.argilla", {"system": "Be brief.", "instruction": "What is 2 + 2?", "chosen_response": "4",
                        "rejected_response": "5"}),
    ("chatml.icr", {"system": "Be brief.", "input": "What is 2 + 2?", "chosen": "4", "rejected": "5"}),
    ("chatml.intel", {"system": "Be brief.", "question": "What is 2 + 2?", "chosen": "4", "rejected": "5"}),
    ("chatml.prompt_pairs", {"system": "Be brief.", "prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}),
    ("chatml.ultra", {"system": "Be brief.", "prompt": "What is 2 + 2?",
                      "chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "4"}],
                      "rejected": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "5"}]}),
])
def test_dpo_layouts_with_system(type_name: str, row: dict) -> None:
    assert render(type_name, row) == PAIR_WITH_SYSTEM


def test_argilla_chat_ignores_system_and_reads_the_first_exchange() -> None:
    """As the reference: the user turn is chosen[0], the responses chosen[1] / rejected[1]."""
    row = {"system": "ignored",
           "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                      {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Later"}],
           "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away"}]}
    assert render("chatml.argilla_chat", row) == {
        "prompt": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        "chosen": "Hello<|im_end|>", "rejected": "Go away<|im_end|>"}


def test_flexible_layout_prefers_prompt_then_input_then_question() -> None:
    row = {"question": "unused", "input": "used", "chosen": "a", "rejected": "b"}
    assert render("chatml", row)["prompt"] == "<|im_start|>user\nused<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize(("type_name", "row"), [
    ("chatml.argilla", {"instruction": "What is 2 + 2?", "completion": "4", "label": True}),
    ("chatml.intel", {"question": "What is 2 + 2?", "completion": "4", "label": True}),
    ("chatml.prompt_pairs", {"prompt": "What is 2 + 2?", "completion": "4", "label": True}),
    ("chatml.ultra", {"prompt": "What is 2 + 2?", "completion": "4", "label": True, "system": ""}),
    ("chatml.argilla_chat", {"completion": [{"role": "user", "content": "What is 2 + 2?"},
                                            {"role": "assistant", "content": "4"}], "label": True}),
    ("chatml.argilla_chat", {"chosen": [{"role": "user", "content": "What is 2 + 2?"}],
                             "completion": [{"role": "assistant", "content": "4"}], "label": True}),
])
def test_kto_layouts(type_name: str, row: dict) -> None:
    assert render(type_name, row, rl="kto") == {"prompt": PROMPT, "completion": "4<|im_end|>", "label": True}


def test_kto_system_and_label_spellings() -> None:
    row = {"system": "Be brief.", "question": "What is 2 + 2?", "completion": "5", "label": 0}
    assert render("chatml.intel", row, rl="kto") == {"prompt": SYSTEM_PROMPT, "completion": "5<|im_end|>",
                                                      "label": False}
    assert render("chatml.intel", {**row, "label": "True"}, rl="kto")["label"] is True


@pytest.mark.parametrize(("type_name", "row", "field", "message"), [
    ("chatml.intel", {"chosen": "4", "rejected": "5"}, "question", "missing `question`"),
    ("chatml.intel", {"question": None, "chosen": "4", "rejected": "5"}, "question", "missing `question` (null)"),
    ("chatml.intel", {"question": "q", "chosen": "4", "rejected": 5}, "rejected", "must be text, not a int"),
    ("chatml.ultra", {"prompt": "q", "chosen": [{"role": "user", "content": "q"}], "rejected": []}, "chosen",
     "has 1 message(s); this format needs at least 2"),
    ("chatml.argilla_chat", {"chosen": [{"role": "user"}, {"role": "assistant", "content": "4"}],
                             "rejected": [{"content": "q"}, {"content": "5"}]}, "chosen",
     "message 0 has no text `content`"),
])
def test_bad_rows_name_the_field(type_name: str, row: dict, field: str, message: str) -> None:
    with pytest.raises(RowError, match=re.escape(message)) as caught:
        render(type_name, row)
    assert caught.value.field == field


def test_kto_bad_label() -> None:
    with pytest.raises(RowError, match="`label` must be true or false") as caught:
        render("chatml.prompt_pairs", {"prompt": "q", "completion": "a", "label": "maybe"}, rl="kto")
    assert caught.value.field == "label"

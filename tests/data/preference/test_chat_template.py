"""`chat_template.default` and `chat_template.argilla`: rendered as `apply_chat_template` renders.

The tiny tokenizer's template is ChatML preceded by its bos `<s>`; the bundled `chatml` has no
bos and the bundled `llama3` writes Llama 3 headers (and trims content)."""

from __future__ import annotations

from typing import Any

import pytest

from axolotl.data.errors import RowError

from .conftest import make_config, row_format

USER = {"role": "user", "content": "What is 2 + 2?"}
TINY_PROMPT = "<s><|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"


def fmt(tokenizer: Any, entry: str, rl: str = "dpo", extra: str = "") -> Any:
    cfg = make_config(f"path: data.jsonl\n    {entry}", rl=rl, extra=extra)
    return row_format(cfg, tokenizer)


@pytest.mark.parametrize(("chosen", "rejected"), [
    ("4", "5"),
    ({"role": "assistant", "content": "4"}, {"role": "assistant", "content": "5"}),
    ([USER, {"role": "assistant", "content": "4"}], [USER, {"role": "assistant", "content": "5"}]),
])
def test_default_response_shapes(tiny_tokenizer: Any, chosen: Any, rejected: Any) -> None:
    row = {"messages": [USER], "chosen": chosen, "rejected": rejected}
    assert fmt(tiny_tokenizer, "type: chat_template.default")(row) == {
        "prompt": TINY_PROMPT, "chosen": "4<|im_end|>", "rejected": "5<|im_end|>"}


def test_default_string_messages_and_system(tiny_tokenizer: Any) -> None:
    render = fmt(tiny_tokenizer, "type: chat_template.default")
    assert render({"messages": "What is 2 + 2?", "chosen": "4", "rejected": "5"})["prompt"] == TINY_PROMPT
    row = {"messages": [{"role": "system", "content": "Be brief."}, USER], "chosen": "4", "rejected": "5"}
    assert render(row)["prompt"] == ("<s><|im_start|>system\nBe brief.<|im_end|>\n"
                                     "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n")


def test_default_fields_mappings_and_roles(tiny_tokenizer: Any) -> None:
    entry = ("type: chat_template.default\n    field_messages: conversation\n    field_chosen: good\n"
             "    field_rejected: bad\n    message_property_mappings:\n      role: from\n      content: value\n"
             "    roles:\n      user: [human]\n      assistant: [gpt]")
    row = {"conversation": [{"from": "human", "value": "What is 2 + 2?"}],
           "good": {"from": "gpt", "value": "4"}, "bad": {"from": "gpt", "value": "5"}}
    assert fmt(tiny_tokenizer, entry)(row) == {"prompt": TINY_PROMPT, "chosen": "4<|im_end|>",
                                                "rejected": "5<|im_end|>"}


def test_default_with_the_dataset_template(tiny_tokenizer: Any) -> None:
    render = fmt(tiny_tokenizer, "type: chat_template.default\n    chat_template: llama3")
    row = {"messages": [USER], "chosen": "4", "rejected": "5"}
    assert render(row) == {
        "prompt": ("<s><|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n"),
        "chosen": "4<|eot_id|>", "rejected": "5<|eot_id|>"}


def test_default_short_response_is_found_after_the_dummy_turn(tiny_tokenizer: Any) -> None:
    """`s` also occurs in the `<s>`/`system` scaffolding; the response is cut where it really is."""
    row = {"messages": [USER], "chosen": "s", "rejected": "t"}
    result = fmt(tiny_tokenizer, "type: chat_template.default")(row)
    assert (result["chosen"], result["rejected"]) == ("s<|im_end|>", "t<|im_end|>")


@pytest.mark.parametrize(("row", "field", "message"), [
    ({"messages": [{"role": "robot", "content": "hi"}], "chosen": "4", "rejected": "5"}, "messages",
     "message 0 has role 'robot'"),
    ({"messages": [USER], "chosen": "", "rejected": "5"}, "chosen", "`chosen` is empty"),
    ({"messages": [USER], "chosen": "4", "rejected": None}, "rejected", "missing `rejected`|must be a list"),
])
def test_default_bad_rows(tiny_tokenizer: Any, row: dict, field: str, message: str) -> None:
    with pytest.raises(RowError, match=message) as caught:
        fmt(tiny_tokenizer, "type: chat_template.default")(row)
    assert caught.value.field == field


def test_default_refuses_a_template_that_rewrites_the_response(tiny_tokenizer: Any) -> None:
    render = fmt(tiny_tokenizer, "type: chat_template.default\n    chat_template: llama3")
    with pytest.raises(RowError, match="verbatim"):
        render({"messages": [USER], "chosen": "  4  ", "rejected": "5"})  # llama3 trims content


ARGILLA_ROW = {"prompt": "What is 2 + 2?", "chosen": [USER, {"role": "assistant", "content": "4"}],
               "rejected": [USER, {"role": "assistant", "content": "5"}]}


@pytest.mark.parametrize("rl", ["orpo", "dpo"])
def test_argilla_single_exchange(tiny_tokenizer: Any, rl: str) -> None:
    assert fmt(tiny_tokenizer, "type: chat_template.argilla", rl=rl)(ARGILLA_ROW) == {
        "prompt": TINY_PROMPT, "chosen": "4<|im_end|>\n", "rejected": "5<|im_end|>\n"}


def test_argilla_prompt_column_is_the_single_turn_user_message(tiny_tokenizer: Any) -> None:
    row = {**ARGILLA_ROW, "prompt": "Add two and two.", "system": "Be brief."}
    result = fmt(tiny_tokenizer, "type: chat_template.argilla", rl="orpo", extra="chat_template: chatml\n")(row)
    assert result == {"prompt": ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nAdd two and two."
                                 "<|im_end|>\n<|im_start|>assistant\n"),
                      "chosen": "4<|im_end|>\n", "rejected": "5<|im_end|>\n"}


def test_argilla_multi_turn(tiny_tokenizer: Any) -> None:
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
               {"role": "user", "content": "Bye"}]
    row = {"chosen": [*history, {"role": "assistant", "content": "See you"}],
           "rejected": [*history, {"role": "assistant", "content": "Whatever"}]}
    assert fmt(tiny_tokenizer, "type: chat_template.argilla", rl="orpo")(row) == {
        "prompt": ("<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
                   "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"),
        "chosen": "See you<|im_end|>\n", "rejected": "Whatever<|im_end|>\n"}


def test_argilla_odd_conversation_is_an_error(tiny_tokenizer: Any) -> None:
    row = {"chosen": [USER, {"role": "assistant", "content": "4"}, USER], "rejected": ARGILLA_ROW["rejected"]}
    with pytest.raises(RowError, match="even number") as caught:
        fmt(tiny_tokenizer, "type: chat_template.argilla", rl="orpo")(row)
    assert caught.value.field == "chosen"

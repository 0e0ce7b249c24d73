"""Inference prompts the model the way it was trained: instruction-style datasets through their
prompt format (ending at the response header), chat datasets through the chat template."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from axolotl.data.strategies.instruction_formats import ALPACA_SYSTEM_NO_INPUT
from axolotl.models.inference import encode_prompt, format_prompt, prompt_layout
from axolotl.testing.configs import load

BASE = "base_model: m\nlearning_rate: 1.0e-4\n"


def _cfg(dataset: str):
    return load(BASE + "datasets:\n  - path: d.jsonl\n" + dataset).cfg


def test_alpaca_prompt_is_the_training_prompt() -> None:
    layout = prompt_layout(_cfg("    type: alpaca\n"))
    assert layout is not None
    text = format_prompt(None, "Name a colour.", layout=layout)  # type: ignore[arg-type]
    assert text == f"{ALPACA_SYSTEM_NO_INPUT}\n\n### Instruction:\nName a colour.\n\n### Response:\n"


def test_alpaca_chat_follows_its_conversation_style() -> None:
    layout = prompt_layout(_cfg("    type: alpaca_chat\n    conversation: chatml\n"))
    assert layout is not None
    text = format_prompt(None, "Hi", layout=layout)  # type: ignore[arg-type]
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_inline_format() -> None:
    layout = prompt_layout(_cfg("    type:\n      field_instruction: q\n      field_output: a\n"
                                "      format: 'Q: {instruction} {input} A:'\n      no_input_format: 'Q: {instruction} A:'\n"))
    assert layout is not None
    assert format_prompt(None, "2+2?", layout=layout) == "Q: 2+2? A:"  # type: ignore[arg-type]


@pytest.mark.parametrize("dataset", ["    type: chat_template\n", "    type: completion\n"])
def test_other_types_use_the_chat_template(dataset: str) -> None:
    assert prompt_layout(_cfg(dataset)) is None


def test_instruction_prompt_gets_bos_like_training(tiny_tokenizer_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    layout = prompt_layout(_cfg("    type: alpaca\n"))
    ids = encode_prompt(tokenizer, "Name a colour.", layout=layout)["input_ids"][0].tolist()
    expected = tokenizer(format_prompt(tokenizer, "Name a colour.", layout=layout))["input_ids"]
    assert ids == expected
    if tokenizer.bos_token_id is not None and tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id:
        assert ids[0] == tokenizer.bos_token_id

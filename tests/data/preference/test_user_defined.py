"""`type:` as a mapping (user_defined.default): columns and format strings from the config."""

from __future__ import annotations

import pytest

from axolotl.data.errors import DataError, RowError

from .conftest import make_config, render, row_format

ROW = {"system": "Be brief.", "question": "What is 2 + 2?", "good": "4", "bad": "5"}


def fmt(type_yaml: str, rl: str = "dpo") -> object:
    return row_format(make_config(f"path: data.jsonl\n    type:\n{type_yaml}", rl=rl))


def test_defaults_pass_the_columns_through() -> None:
    row = {"prompt": "p", "chosen": "c", "rejected": "r", "system": "s"}
    assert render("user_defined.default", row) == {"prompt": "p", "chosen": "c", "rejected": "r"}
    assert fmt("      field_prompt: prompt")(row) == {"prompt": "p", "chosen": "c", "rejected": "r"}


def test_formats_by_role_name_and_by_column_name() -> None:
    render_row = fmt("      field_prompt: question\n      field_chosen: good\n      field_rejected: bad\n"
                     "      prompt_format: '[INST] {system} {prompt} [/INST]'\n"
                     "      chosen_format: '{good}</s>'\n      rejected_format: '{rejected}</s>'")
    assert render_row(ROW) == {"prompt": "[INST] Be brief. What is 2 + 2? [/INST]", "chosen": "4</s>",
                               "rejected": "5</s>"}
    assert render_row({**ROW, "system": None})["prompt"] == "[INST]  What is 2 + 2? [/INST]"


def test_system_column_and_braces_in_values() -> None:
    render_row = fmt("      field_system: persona\n      prompt_format: '<<{persona}>> {prompt}'")
    row = {"persona": "{x}", "prompt": "use {braces}", "chosen": "{c}", "rejected": "r"}
    assert render_row(row) == {"prompt": "<<{x}>> use {braces}", "chosen": "{c}", "rejected": "r"}


def test_unknown_placeholder_is_a_config_error() -> None:
    with pytest.raises(DataError, match=r"`prompt_format` uses \{instruction\}; it can use .*\{prompt\}"):
        fmt("      prompt_format: '{instruction}'")


def test_kto() -> None:
    render_row = fmt("      field_prompt: q\n      field_completion: answer\n      field_label: ok\n"
                     "      prompt_format: \"Q: {prompt}\\nA: \"\n      completion_format: '{completion}.'", rl="kto")
    assert render_row({"q": "2 + 2?", "answer": "4", "ok": True}) == {"prompt": "Q: 2 + 2?\nA: ", "completion": "4.",
                                                                     "label": True}
    with pytest.raises(RowError, match="missing `ok`") as caught:
        render_row({"q": "2 + 2?", "answer": "4"})
    assert caught.value.field == "ok"


def test_missing_column_names_the_configured_field() -> None:
    with pytest.raises(RowError, match="missing `good`") as caught:
        fmt("      field_chosen: good")({"prompt": "p", "rejected": "r"})
    assert caught.value.field == "good"

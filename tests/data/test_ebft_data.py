"""EBFT data preparation (`axolotl.data.ebft`) and the built-in `ebft_*` transforms: the columns
each mode needs, prompt masks and lengths counted by hand on the tiny tokenizer, one row per turn,
user transforms with "__all__", and the refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from axolotl.data.errors import DataError
from axolotl.testing import write_rows
from axolotl.testing.configs import load

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye", "reasoning_content": "They leave."}]
USER_TRANSFORM = '''
def transform(cfg, **kwargs):
    def transform_fn(example, tokenizer=None):
        return {"prompt": [{"role": "user", "content": example["question"]}], "ground_truth": example["answer"]}
    return transform_fn, {"remove_columns": "__all__"}
'''


def prepare(tmp: Path, model_dir: Path, rows: list[dict[str, Any]], data_type: str | None, mode: str = "structured",
            **extra: Any) -> Any:
    from axolotl.data.ebft import prepare_ebft_datasets
    from axolotl.models.tokenizer import load_tokenizer

    data = write_rows(rows, tmp / "rows", "jsonl")
    entry = {"path": str(data), **({"type": data_type} if data_type else {})}
    keys = {"base_model": str(model_dir), "rl": "ebft", "learning_rate": 1e-5, "datasets": [entry],
            "dataset_num_proc": 1, "dataset_prepared_path": str(tmp / "prepared"), "ebft": {"mode": mode}, **extra}
    cfg = load(yaml.safe_dump(keys)).cfg
    return prepare_ebft_datasets(cfg, load_tokenizer(cfg)), load_tokenizer(cfg)


def test_opencode_rows_become_a_user_turn_and_a_reference(tmp_path: Path, tiny_llama_dir: Path) -> None:
    rows = [{"input": "Reverse a string.", "output": "def rev(s):\n    return s[::-1]", "id": 7}]
    prepared, _ = prepare(tmp_path, tiny_llama_dir, rows, "ebft_opencode.transform")
    assert prepared.train.column_names == ["prompt", "ground_truth"]  # "__all__" removed input, output, id
    assert prepared.train[0] == {"prompt": [{"role": "user", "content": "Reverse a string."}],
                                 "ground_truth": "def rev(s):\n    return s[::-1]"}


def test_strided_structured_masks_the_rendered_prompt(tmp_path: Path, tiny_llama_dir: Path) -> None:
    rows = [{"input": "Add numbers.", "output": "def add(a, b):\n    return a + b"}]
    prepared, tokenizer = prepare(tmp_path, tiny_llama_dir, rows, "ebft_strided_structured.transform", "strided")
    row = prepared.train[0]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Add numbers."}], add_generation_prompt=True,
                                           tokenize=True, return_dict=True)["input_ids"]
    answer = tokenizer("def add(a, b):\n    return a + b", add_special_tokens=False)["input_ids"]
    assert row["input_ids"] == list(prompt) + answer + [tokenizer.eos_token_id]
    assert row["prompt_length"] == len(prompt)
    assert row["labels"] == [-100] * len(prompt) + answer + [tokenizer.eos_token_id]
    assert set(prepared.train.column_names) == {"input_ids", "labels", "prompt_length"}


def test_strided_documents_are_cut_to_sequence_len_or_dropped(tmp_path: Path, tiny_llama_dir: Path) -> None:
    rows = [{"text": "the cat sat on the mat " * 20}, {"text": "short"}]
    prepared, tokenizer = prepare(tmp_path, tiny_llama_dir, rows, "ebft_pretrain.transform", "strided", sequence_len=16)
    assert sorted(len(ids) for ids in prepared.train["input_ids"]) == sorted([16, len(tokenizer("short")["input_ids"]) + 1])
    assert all(row["prompt_length"] == 0 and row["labels"] == row["input_ids"] for row in prepared.train)
    dropped, _ = prepare(tmp_path / "drop", tiny_llama_dir, rows, "ebft_pretrain.transform", "strided",
                         sequence_len=16, excess_length_strategy="drop")
    assert len(dropped.train) == 1 and dropped.stats.datasets[0].dropped == {"longer than sequence_len (16)": 1}


def test_strided_rows_without_labels_or_prompt_length_get_defaults(tmp_path: Path, tiny_llama_dir: Path) -> None:
    rows = [{"input_ids": [5, 6, 7, 8]}]
    prepared, _ = prepare(tmp_path, tiny_llama_dir, rows, None, "strided")
    assert prepared.train[0] == {"input_ids": [5, 6, 7, 8], "labels": [5, 6, 7, 8], "prompt_length": 0}
    masked, _ = prepare(tmp_path / "m", tiny_llama_dir, [{"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]}],
                        None, "strided")
    assert masked.train[0]["prompt_length"] == 2


def test_multiturn_variants(tmp_path: Path, tiny_llama_dir: Path) -> None:
    last, _ = prepare(tmp_path / "last", tiny_llama_dir, [{"messages": CHAT}], "ebft_chat_multiturn.transform_last_turn")
    assert last.train[0]["ground_truth"] == "Goodbye" and [m["content"] for m in last.train[0]["prompt"]] == \
        ["Be brief.", "Hi", "Hello", "Bye"]
    every, _ = prepare(tmp_path / "all", tiny_llama_dir, [{"messages": CHAT}],
                       "ebft_chat_multiturn.transform_all_turns")
    assert sorted(every.train["ground_truth"]) == ["Goodbye", "Hello"]
    by_reference = {row["ground_truth"]: row["prompt"] for row in every.train}
    assert [m["content"] for m in by_reference["Hello"]] == ["Be brief.", "Hi"]
    assert len(by_reference["Goodbye"]) == 4


def test_reasoning_puts_the_reasoning_back_in_front_of_the_answer(tmp_path: Path, tiny_llama_dir: Path) -> None:
    prepared, _ = prepare(tmp_path, tiny_llama_dir, [{"messages": CHAT}], "ebft_reasoning.transform")
    assert prepared.train[0]["ground_truth"] == "<think>\nThey leave.\n</think>\n\nGoodbye"


def test_strided_chat_prompt_is_everything_before_the_first_answer(tmp_path: Path, tiny_llama_dir: Path) -> None:
    prepared, tokenizer = prepare(tmp_path, tiny_llama_dir, [{"messages": CHAT[:3]}], "ebft_strided_chat.transform",
                                  "strided")
    row = prepared.train[0]
    full = tokenizer.apply_chat_template(CHAT[:3], tokenize=True, return_dict=True)["input_ids"]
    prompt = tokenizer.apply_chat_template(CHAT[:2], add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"]
    assert row["input_ids"] == list(full) and row["prompt_length"] == len(prompt)
    assert row["labels"][:len(prompt)] == [-100] * len(prompt) and row["labels"][len(prompt):] == list(full)[len(prompt):]


def test_user_transform_with_the_all_sentinel(tmp_path: Path, tiny_llama_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_ebft.py").write_text(USER_TRANSFORM)
    prepared, _ = prepare(tmp_path, tiny_llama_dir, [{"question": "2+2?", "answer": "4", "extra": 1}],
                          "my_ebft.transform")
    assert prepared.train[0] == {"prompt": [{"role": "user", "content": "2+2?"}], "ground_truth": "4"}


def test_remaining_turns_are_refused(tmp_path: Path, tiny_llama_dir: Path) -> None:
    with pytest.raises(DataError, match="remaining_turns.*multi-turn sequential rollouts are not supported yet.*"
                                        "transform_last_turn"):
        prepare(tmp_path, tiny_llama_dir, [{"messages": CHAT}], "ebft_chat_multiturn.transform")


@pytest.mark.parametrize(("rows", "data_type", "mode", "message"), [
    ([{"question": "q"}], None, "structured", "no `prompt` column after loading"),
    ([{"prompt": "q", "ground_truth": ""}], None, "structured", "row 0: `ground_truth` must be non-empty text"),
    ([{"text": "abc"}], None, "strided", "no `input_ids` column.*ebft_pretrain.transform"),
    ([{"input": "", "output": "x"}], "ebft_opencode.transform", "structured", "`input` must be non-empty text"),
])
def test_errors_name_the_problem(tmp_path: Path, tiny_llama_dir: Path, rows: list[dict[str, Any]],
                                 data_type: str | None, mode: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        prepare(tmp_path, tiny_llama_dir, rows, data_type, mode)

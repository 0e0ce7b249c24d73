"""Reward-model datasets: Bradley-Terry pairs and stepwise (process reward) rows, hand-checked.

Expected token ids are built from independent tokenizer calls (`apply_chat_template`, `encode`),
never from the code under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from axolotl.config.environment import Environment
from axolotl.config.loader import load_config_text
from axolotl.data.errors import DataError
from axolotl.data.pipeline import prepare_datasets
from axolotl.data.reward.stepwise import layout_row
from axolotl.models.tokenizer import load_tokenizer
from axolotl.testing import write_rows
from axolotl.testing.datasets import stepwise_rows

IGNORE = -100


def config(tokenizer_dir: Path, tmp: Path, method: str, entry: str, extra: str = "") -> Any:
    text = (f"base_model: {tokenizer_dir}\nlearning_rate: 1e-4\nsequence_len: 256\n{method}\n"
            f"dataset_prepared_path: {tmp / 'prep'}\ndataset_num_proc: 1\ndatasets:\n  - {entry}\n" + extra)
    return load_config_text(text, "cfg.yml", env=Environment()).cfg


def prepare(cfg: Any) -> Any:
    return prepare_datasets(cfg, load_tokenizer(cfg))


def pair_rows(n: int) -> list[dict[str, Any]]:
    return [{"system": "Be brief." if i % 2 else None, "input": f"Name a colour ({i}).",
             "chosen": f"Blue, number {i}.", "rejected": "I do not know."} for i in range(n)]


# --------------------------------------------------------------------------------------------
# Bradley-Terry pairs
# --------------------------------------------------------------------------------------------


def pairs_config(tokenizer_dir: Path, tmp: Path, rows: list[dict[str, Any]], extra: str = "",
                 kind: str = "bradley_terry.chat_template") -> Any:
    data = write_rows(rows, tmp / "pairs.jsonl", "jsonl")
    return config(tokenizer_dir, tmp, "reward_model: true", f"path: {data}\n    type: {kind}",
                  "shuffle_merged_datasets: false\n" + extra)


def test_pair_sides_are_the_chat_template_rendering(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    rows = pair_rows(4)
    cfg = pairs_config(tiny_tokenizer_dir, tmp_path, rows)
    prepared = prepare(cfg)
    tokenizer = load_tokenizer(cfg)
    assert prepared.train.column_names == ["chosen_ids", "rejected_ids", "length"]
    assert len(prepared.train) == 4 and prepared.eval is None
    for row, out in zip(rows, prepared.train, strict=True):
        prompt = ([{"role": "system", "content": row["system"]}] if row["system"] else []) + \
            [{"role": "user", "content": row["input"]}]
        for side in ("chosen", "rejected"):
            expected = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": row[side]}],
                                                     tokenize=True, return_dict=True)["input_ids"]
            assert out[f"{side}_ids"] == list(expected), side
        assert out["length"] == max(len(out["chosen_ids"]), len(out["rejected_ids"]))
    stats = prepared.stats
    assert stats.train_rows == 4 and stats.train_trained_tokens == 8, "two scores per pair"
    assert stats.train_tokens == sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in prepared.train)


def test_llama3_icr_renders_with_the_llama3_template(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    cfg = pairs_config(tiny_tokenizer_dir, tmp_path, pair_rows(2), kind="bradley_terry.llama3.icr")
    tokenizer = load_tokenizer(cfg)
    text = tokenizer.decode(prepare(cfg).train[0]["chosen_ids"])
    assert "<|start_header_id|>user<|end_header_id|>\n\nName a colour (0).<|eot_id|>" in text
    assert text.endswith("Blue, number 0.<|eot_id|>")


def test_pair_length_rules(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    rows = pair_rows(4)
    rows[1]["chosen"] = "word " * 300  # longer than sequence_len
    rows[2]["rejected"] = rows[2]["chosen"]  # nothing to learn
    prepared = prepare(pairs_config(tiny_tokenizer_dir, tmp_path, rows))
    assert len(prepared.train) == 2
    assert prepared.stats.datasets[0].dropped == {"longer than sequence_len (256)": 1,
                                                  "chosen and rejected are identical": 1}
    truncated = prepare(pairs_config(tiny_tokenizer_dir, tmp_path, rows, "excess_length_strategy: truncate\n"))
    assert len(truncated.train) == 3 and max(truncated.train["length"]) == 256
    with pytest.raises(DataError, match=r"pairs\.jsonl`, row 1: a side of \d+ tokens exceeds sequence_len"):
        prepare(pairs_config(tiny_tokenizer_dir, tmp_path, rows, "excess_length_strategy: raise\n"))


def test_pair_split_and_deduplication(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    rows = pair_rows(10) + pair_rows(2)  # two exact duplicates
    prepared = prepare(pairs_config(tiny_tokenizer_dir, tmp_path, rows,
                                    "dataset_exact_deduplication: true\nval_set_size: 0.2\n"))
    assert prepared.stats.duplicates_removed == 2
    assert (len(prepared.train), len(prepared.eval)) == (8, 2)


def test_a_bad_pair_is_named(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    rows = pair_rows(3)
    for row in rows:
        row["chosen"] = [{"role": "assistant", "content": "multi-turn"}]
    with pytest.raises(DataError, match=r"row 0, field `chosen`: must be a string"):
        prepare(pairs_config(tiny_tokenizer_dir, tmp_path, rows))
    missing = [{"input": "q", "chosen": "a"}]
    with pytest.raises(DataError, match=r"row 0, field `rejected`: the data has no `rejected` column"):
        prepare(pairs_config(tiny_tokenizer_dir, tmp_path, missing))


# --------------------------------------------------------------------------------------------
# stepwise supervised (process reward) rows
# --------------------------------------------------------------------------------------------


def stepwise_config(tokenizer_dir: Path, tmp: Path, rows: list[dict[str, Any]], entry_extra: str = "") -> Any:
    data = write_rows(rows, tmp / "steps.jsonl", "jsonl")
    return config(tokenizer_dir, tmp, "process_reward_model: true",
                  f"path: {data}\n    type: stepwise_supervised\n{entry_extra}", "shuffle_merged_datasets: false\n")


HAND_ROW = {"prompt": "Is 7 prime?", "completions": ["7 has no divisors but 1 and 7.", "So 7 is not prime."],
            "labels": [True, False]}


def test_prm_labels_sit_on_each_steps_separator(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    cfg = stepwise_config(tiny_tokenizer_dir, tmp_path, [HAND_ROW])
    tokenizer = load_tokenizer(cfg)
    prompt = tokenizer.encode(HAND_ROW["prompt"], add_special_tokens=True)
    step1, step2 = (tokenizer.encode(step, add_special_tokens=False) for step in HAND_ROW["completions"])
    newline = tokenizer.encode("\n", add_special_tokens=False)
    assert prompt[0] == tokenizer.bos_token_id and len(newline) == 1
    row = prepare(cfg).train[0]
    assert row["input_ids"] == prompt + step1 + newline + step2 + newline
    expected = [IGNORE] * (len(prompt) + len(step1)) + [1] + [IGNORE] * len(step2) + [0]
    assert row["labels"] == expected, "1 (correct) on the first step's newline, 0 on the second's, -100 elsewhere"


def test_prm_last_step_only_separator_and_completion_cap(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    cfg = stepwise_config(tiny_tokenizer_dir, tmp_path, [HAND_ROW], "    train_on_last_step_only: true\n"
                          "    step_separator: \" ###\"\n")
    tokenizer = load_tokenizer(cfg)
    separator = tokenizer.encode(" ###", add_special_tokens=False)
    assert len(separator) > 1, "a multi-token separator: the label goes on its last token"
    row = prepare(cfg).train[0]
    labelled = [(position, label) for position, label in enumerate(row["labels"]) if label != IGNORE]
    assert labelled == [(len(row["input_ids"]) - 1, 0)], "only the last step keeps its label"
    assert row["input_ids"][-len(separator):] == separator
    # the cap cuts the second step: only the first step's label survives
    ids, labels = layout_row([9], [[1, 2], [3, 4, 5]], [7], [1, 0], max_completion_length=4)
    assert (ids, labels) == ([9, 1, 2, 7, 3], [IGNORE, IGNORE, IGNORE, 1, IGNORE])
    ids, labels = layout_row([], [[1, 2], [3]], [], [0, 1])
    assert (ids, labels) == ([1, 2, 3], [IGNORE, 0, 1]), "no separator: the label sits on the step's last token"


def test_prm_rows_through_the_pipeline(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    prepared = prepare(stepwise_config(tiny_tokenizer_dir, tmp_path, stepwise_rows(6)))
    assert set(prepared.train.column_names) == {"input_ids", "labels", "attention_mask", "length"}
    assert str(prepared.train.features["labels"].feature.dtype) == "int64", \
        "the raw boolean `labels` column must not impose its type on the tokenized labels"
    trained = [[label for label in row["labels"] if label != IGNORE] for row in prepared.train]
    assert trained == [[1, 0 if i % 2 else 1] for i in range(6)], "stepwise_rows: odd rows have a wrong last step"
    assert prepared.stats.train_trained_tokens == 12


def test_prm_label_count_mismatch_is_named(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    rows = stepwise_rows(3)
    rows[1]["labels"] = [True]
    with pytest.raises(DataError, match=r"steps\.jsonl`, row 1, field `labels`: has 1 labels for 2 completion steps"):
        prepare(stepwise_config(tiny_tokenizer_dir, tmp_path, rows))


# --------------------------------------------------------------------------------------------
# axolotl preprocess
# --------------------------------------------------------------------------------------------


def test_preprocess_command_prepares_both_kinds(tiny_llama_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from axolotl.cli.preprocess import run

    pairs = write_rows(pair_rows(6), tmp_path / "pairs.jsonl", "jsonl")
    steps = write_rows(stepwise_rows(4), tmp_path / "steps.jsonl", "jsonl")
    base = f"base_model: {tiny_llama_dir}\nlearning_rate: 1e-4\ndataset_prepared_path: {tmp_path / 'prep'}\n"
    (tmp_path / "rm.yml").write_text(base + f"reward_model: true\ndatasets:\n  - path: {pairs}\n"
                                     "    type: bradley_terry.chat_template\n")
    (tmp_path / "prm.yml").write_text(base + f"process_reward_model: true\ndatasets:\n  - path: {steps}\n"
                                      "    type: stepwise_supervised\n")
    assert run(str(tmp_path / "rm.yml"), debug=True, debug_num_examples=1) == 0
    out = capsys.readouterr().out
    assert "train rows: 6" in out and "--- pair 0" in out and "prepared data saved at" in out
    assert "chosen (" in out and "rejected (" in out and "I do not know." in out
    assert run(str(tmp_path / "prm.yml"), debug=True, debug_num_examples=1) == 0
    out = capsys.readouterr().out
    assert "train rows: 4" in out and "--- example 0" in out and "(1, " in out, "a step label shows on its token"

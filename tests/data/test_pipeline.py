"""Preparation end to end: length rules, merging, splitting, and the on-disk cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from axolotl.config.environment import Environment
from axolotl.config.loader import load_config_text
from axolotl.data import pipeline
from axolotl.data.errors import DataError
from axolotl.data.fingerprint import dataset_fingerprint
from axolotl.data.pipeline import prepare_datasets
from axolotl.models.tokenizer import load_tokenizer
from axolotl.testing import alpaca_rows, write_rows


def make_config(model_dir: Path, data: Path, prepared: Path, extra: str = "", sequence_len: int = 256) -> Any:
    text = (f"base_model: {model_dir}\nlearning_rate: 1e-4\nsequence_len: {sequence_len}\n"
            f"dataset_prepared_path: {prepared}\ndatasets:\n  - path: {data}\n    type: alpaca\n" + extra)
    return load_config_text(text, "cfg.yml", env=Environment()).cfg


@pytest.fixture
def alpaca_file(tmp_path: Path) -> Path:
    return write_rows(alpaca_rows(40), tmp_path / "alpaca.jsonl", "jsonl")


def prepare(cfg: Any) -> pipeline.PreparedData:
    return prepare_datasets(cfg, load_tokenizer(cfg))


def count_tokenize_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = pipeline.TokenizeRows.__call__

    def counting(self: Any, batch: dict, indices: list[int]) -> Any:
        calls.append(len(indices))
        return original(self, batch, indices)

    monkeypatch.setattr(pipeline.TokenizeRows, "__call__", counting)
    return calls


def test_prepared_columns_and_stats(tiny_tokenizer_dir: Path, alpaca_file: Path, tmp_path: Path) -> None:
    prepared = prepare(make_config(tiny_tokenizer_dir, alpaca_file, tmp_path / "prep"))
    assert set(prepared.train.column_names) == {"input_ids", "labels", "attention_mask", "length"}
    row = prepared.train[0]
    assert len(row["input_ids"]) == len(row["labels"]) == len(row["attention_mask"]) == row["length"]
    assert prepared.stats.train_rows == 40 and prepared.stats.datasets[0].rows_in == 40
    assert 0 < prepared.stats.train_trained_tokens < prepared.stats.train_tokens
    assert (prepared.path / "stats.json").is_file() and (prepared.path / "axolotl_config.yml").is_file()


def test_second_run_reuses_the_cache_without_tokenizing(tiny_tokenizer_dir: Path, alpaca_file: Path,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(tiny_tokenizer_dir, alpaca_file, tmp_path / "prep")
    first = prepare(cfg)
    calls = count_tokenize_calls(monkeypatch)
    second = prepare(cfg)
    assert calls == [] and second.stats.reused_cache and second.path == first.path
    assert second.train["input_ids"] == first.train["input_ids"]


def test_no_prepared_path_never_reuses(tiny_tokenizer_dir: Path, alpaca_file: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = (f"base_model: {tiny_tokenizer_dir}\nlearning_rate: 1e-4\ndatasets:\n  - path: {alpaca_file}\n"
            "    type: alpaca\n")
    cfg = load_config_text(text, "cfg.yml", env=Environment()).cfg
    prepare(cfg)
    calls = count_tokenize_calls(monkeypatch)
    again = prepare(cfg)
    assert calls and not again.stats.reused_cache and again.path.parent == tmp_path / "last_run_prepared"


@pytest.mark.parametrize("change", [
    "min_sample_len: 5\n", "train_on_inputs: true\n", "special_tokens:\n  pad_token: <unk>\n",
    "chat_template: chatml\n", "val_set_size: 0.1\n", "seed: 7\n", "excess_length_strategy: truncate\n",
])
def test_token_relevant_changes_make_a_new_key(tiny_tokenizer_dir: Path, alpaca_file: Path, tmp_path: Path,
                                               change: str) -> None:
    base = make_config(tiny_tokenizer_dir, alpaca_file, tmp_path)
    changed = make_config(tiny_tokenizer_dir, alpaca_file, tmp_path, change)
    assert dataset_fingerprint(base, load_tokenizer(base)) != dataset_fingerprint(changed, load_tokenizer(changed))


def test_sequence_len_makes_a_new_key(tiny_tokenizer_dir: Path, alpaca_file: Path, tmp_path: Path) -> None:
    base = make_config(tiny_tokenizer_dir, alpaca_file, tmp_path)
    changed = make_config(tiny_tokenizer_dir, alpaca_file, tmp_path, sequence_len=128)
    assert dataset_fingerprint(base, load_tokenizer(base)) != dataset_fingerprint(changed, load_tokenizer(changed))


def test_irrelevant_changes_keep_the_key(tiny_tokenizer_dir: Path, alpaca_file: Path, tmp_path: Path) -> None:
    base = make_config(tiny_tokenizer_dir, alpaca_file, tmp_path)
    changed = make_config(tiny_tokenizer_dir, alpaca_file, tmp_path, "output_dir: elsewhere\nnum_epochs: 3\n")
    changed.learning_rate = 3e-4
    assert dataset_fingerprint(base, load_tokenizer(base)) == dataset_fingerprint(changed, load_tokenizer(changed))


def test_editing_the_data_file_makes_a_new_key(tiny_tokenizer_dir: Path, alpaca_file: Path, tmp_path: Path) -> None:
    cfg = make_config(tiny_tokenizer_dir, alpaca_file, tmp_path)
    before = dataset_fingerprint(cfg, load_tokenizer(cfg))
    alpaca_file.write_text(alpaca_file.read_text().replace("a", "b", 1))
    assert dataset_fingerprint(cfg, load_tokenizer(cfg)) != before


def test_long_rows_dropped_truncated_or_refused(tiny_tokenizer_dir: Path, alpaca_file: Path, tmp_path: Path) -> None:
    lengths = prepare(make_config(tiny_tokenizer_dir, alpaca_file, tmp_path / "a")).train["length"]
    limit = sorted(lengths)[len(lengths) // 2]
    dropped = prepare(make_config(tiny_tokenizer_dir, alpaca_file, tmp_path / "b", sequence_len=limit))
    too_long = sum(1 for n in lengths if n > limit)
    assert dropped.stats.train_rows == 40 - too_long
    assert dropped.stats.datasets[0].dropped == {f"longer than sequence_len ({limit})": too_long}
    truncated = prepare(make_config(tiny_tokenizer_dir, alpaca_file, tmp_path / "c",
                                    "excess_length_strategy: truncate\n", sequence_len=limit))
    # a truncated row whose response was cut off entirely has nothing left to train on
    assert set(truncated.stats.datasets[0].dropped) <= {"no trained tokens"}
    assert truncated.stats.train_rows + sum(truncated.stats.datasets[0].dropped.values()) == 40
    assert truncated.stats.train_rows > dropped.stats.train_rows and max(truncated.train["length"]) == limit
    with pytest.raises(DataError, match=r"row \d+: \d+ tokens exceed sequence_len"):
        prepare(make_config(tiny_tokenizer_dir, alpaca_file, tmp_path / "d",
                            "excess_length_strategy: raise\n", sequence_len=limit))


def test_val_set_size_and_dedup(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    unique = [dict(row, instruction=f"{row['instruction']} #{i}") for i, row in enumerate(alpaca_rows(20))]
    data = write_rows(unique + unique[:5], tmp_path / "dup.jsonl", "jsonl")
    prepared = prepare(make_config(tiny_tokenizer_dir, data, tmp_path / "p",
                                   "dataset_exact_deduplication: true\nval_set_size: 0.25\n"))
    assert prepared.stats.duplicates_removed == 5
    assert (prepared.stats.train_rows, prepared.stats.eval_rows) == (15, 5)
    assert prepared.eval is not None and len(prepared.eval) == 5


def test_a_bad_row_is_named(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    rows = alpaca_rows(6)
    del rows[4]["output"]
    rows[4]["oops"] = "x"
    data = write_rows(rows, tmp_path / "bad.jsonl", "jsonl")
    with pytest.raises(DataError, match=r"bad\.jsonl`, row 4, field `output`"):
        prepare(make_config(tiny_tokenizer_dir, data, tmp_path / "p"))
    assert not any((tmp_path / "p").glob("*")), "nothing half-written may remain"


@pytest.mark.parametrize(("method", "kind"), [("rl: dpo", "chatml.intel"), ("rl: kto", "chatml.argilla")])
def test_preference_and_reward_data_is_refused_as_not_supported_yet(tiny_tokenizer_dir: Path, method: str,
                                                                    kind: str) -> None:
    text = (f"base_model: {tiny_tokenizer_dir}\nlearning_rate: 1e-4\nmicro_batch_size: 2\n{method}\n"
            f"datasets:\n  - path: org/pairs\n    type: {kind}\n")
    cfg = load_config_text(text, "cfg.yml", env=Environment()).cfg
    with pytest.raises(DataError, match="is not supported yet"):
        prepare_datasets(cfg, load_tokenizer(cfg))

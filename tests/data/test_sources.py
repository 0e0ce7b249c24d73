"""Loading one dataset entry from every kind of local source, and clear errors for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from axolotl.config.schema.datasets import SFTDataset
from axolotl.data.errors import DataError
from axolotl.data.sources import _json_lines_read_directly, load_rows
from axolotl.testing import alpaca_rows, chat_rows, write_rows

ROWS = alpaca_rows(10)


def entry(**kwargs) -> SFTDataset:
    return SFTDataset(type="alpaca", **kwargs)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv", "arrow"])
def test_local_file_of_each_format(tmp_path: Path, fmt: str) -> None:
    path = write_rows(ROWS, tmp_path / f"data.{fmt}", fmt)
    rows = load_rows(entry(path=str(path)))
    assert len(rows) == 10 and rows[3]["instruction"] == ROWS[3]["instruction"]


def test_ds_type_overrides_the_extension(tmp_path: Path) -> None:
    path = write_rows(ROWS, tmp_path / "data.jsonl", "jsonl").rename(tmp_path / "data.txt.rows")
    with pytest.raises(DataError, match="set `ds_type`"):
        load_rows(entry(path=str(path)))
    assert len(load_rows(entry(path=str(path), ds_type="json"))) == 10


def test_directory_of_files_and_data_files_subset(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    write_rows(ROWS[:4], folder / "a.jsonl", "jsonl")
    write_rows(ROWS[4:], folder / "b.jsonl", "jsonl")
    assert len(load_rows(entry(path=str(folder)))) == 10
    assert len(load_rows(entry(path=str(folder), data_files=["b.jsonl"]))) == 6


def test_save_to_disk_directory(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    assert len(load_rows(entry(path=str(tmp_path / "saved"), split="train[:30%]"))) == 3


@pytest.mark.parametrize(("split", "count"), [("train[:50%]", 5), ("train[2:5]", 3), ("train[-2:]", 2)])
def test_split_slicing(tmp_path: Path, split: str, count: int) -> None:
    path = write_rows(ROWS, tmp_path / "data.jsonl", "jsonl")
    assert len(load_rows(entry(path=str(path), split=split))) == count


def test_missing_local_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset `\./nope\.jsonl`: no such file"):
        load_rows(entry(path="./nope.jsonl"))


def test_hub_id_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot be reached.*offline mode is on"):
        load_rows(entry(path="some-org/some-dataset"))


def test_remote_filesystem_without_its_package_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="s3://bucket/data.jsonl"):
        load_rows(entry(path="s3://bucket/data.jsonl"))


def _through_the_builder(path: Path):
    import datasets

    return datasets.load_dataset("json", data_files={"train": [str(path)]}, split="train")


MIXED_KEYS = [{"messages": [{"role": "user", "content": "hi", "weight": 0}], "id": 1},
              {"messages": [{"role": "user", "content": "x", "tool": None}], "id": 2}]
NULL_VALUE = [{"messages": [{"role": "user", "content": None}]}, {"messages": [{"role": "user", "content": "x"}]}]
EMPTY_OBJECT = [{"meta": {}, "text": "a"}, {"meta": {}, "text": "b"}]


@pytest.mark.parametrize("rows, direct_read", [(ROWS, True), (chat_rows(12, turns=3), True),
                                             ([{"text": "a", "extra": None}, {"text": "b", "extra": 1}], True),
                                             (MIXED_KEYS, False), (NULL_VALUE, False), (EMPTY_OBJECT, False)])
def test_json_lines_read_directly_equal_what_the_builder_reads(tmp_path: Path, rows: list[dict],
                                                                     direct_read: bool) -> None:
    path = write_rows(rows, tmp_path / "data.jsonl", "jsonl")
    direct = _json_lines_read_directly([str(path)], "train")
    assert (direct is not None) == direct_read
    assert direct is None or direct.cache_files  # file-backed, so workers hand results back by name
    expected = _through_the_builder(path)
    loaded = load_rows(entry(path=str(path)))
    assert loaded.features == expected.features and loaded.to_list() == expected.to_list()


def test_json_the_reader_refuses_takes_the_builder_path(tmp_path: Path) -> None:
    array = write_rows(ROWS, tmp_path / "array.json", "json")  # one JSON array, not JSON lines
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"a": 1, "b": "x"}\n{"a": "one", "b": "y"}\n')
    assert _json_lines_read_directly([str(array)], "train") is None or array.read_text().lstrip()[0] != "["
    assert _json_lines_read_directly([str(mixed)], "train") is None
    assert len(load_rows(entry(path=str(array)))) == 10
    assert _json_lines_read_directly([str(array)], "train[:5]") is None  # slicing stays with datasets

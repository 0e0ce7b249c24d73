"""A preparation leaves no intermediate `datasets` cache files behind once its result is saved,
and removes only the files it wrote (see `axolotl/data/scratch.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from axolotl.data import pipeline
from axolotl.data.pipeline import prepare_datasets
from axolotl.data.scratch import fresh_fingerprint, remove_scratch_files, scratch_file_name
from axolotl.models.tokenizer import load_tokenizer
from axolotl.testing import alpaca_rows, write_rows
from axolotl.testing.configs import load


def make_config(model_dir: Path, data: Path, prepared: Path, extra: str = "", sequence_len: int = 256) -> Any:
    return load(f"base_model: {model_dir}\nlearning_rate: 1e-4\nsequence_len: {sequence_len}\n"
                f"dataset_prepared_path: {prepared}\ndatasets:\n  - path: {data}\n    type: alpaca\n" + extra).cfg


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The HF datasets cache, where `load_dataset` puts a parquet source's Arrow file."""
    import datasets

    folder = tmp_path / "hf-datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", folder)
    return folder


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("cache-*.arrow"))


def test_a_cached_source_keeps_its_arrow_file_and_loses_every_intermediate(
        tiny_tokenizer_dir: Path, tmp_path: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokenizing in two worker processes, dropping long rows, shuffling and splitting each write
    files next to the source; all go once the prepared copy is saved, also on a second run."""
    monkeypatch.setattr(pipeline, "ROWS_PER_PROCESS", 10)  # two workers: sharded file names
    rows = alpaca_rows(60)
    rows[3]["output"] = "word " * 400  # dropped for length: a filter pass writes its own file
    source = write_rows(rows, tmp_path / "alpaca", "parquet")
    extra = ("val_set_size: 0.1\nshuffle_merged_datasets: true\nshuffle_before_merging_datasets: true\n"
             "dataset_num_proc: 2\n")
    for sequence_len in (128, 96):  # a new key each time: two full preparations
        cfg = make_config(tiny_tokenizer_dir, source, tmp_path / "prepared", extra, sequence_len=sequence_len)
        prepared = prepare_datasets(cfg, load_tokenizer(cfg))
        kept = prepared.stats.datasets[0]
        assert kept.dropped and kept.rows_out < 60, "the long row should have been dropped"
        assert _leftovers(hf_cache) == [], f"run at sequence_len {sequence_len} left intermediate files"
        assert list(hf_cache.rglob("parquet-train.arrow")), "the source's own Arrow file is kept for reuse"
        backing = [Path(item["filename"]) for split in (prepared.train, prepared.eval)
                   for item in split.cache_files]
        assert backing and all(prepared.path in path.parents for path in backing)
        assert len(prepared.train) + len(prepared.eval) == kept.rows_out and prepared.train[0]["input_ids"]


def test_a_directly_read_json_source_goes_with_the_intermediates(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    from datasets.fingerprint import get_temporary_cache_files_directory

    scratch = Path(get_temporary_cache_files_directory())
    before = set(_leftovers(scratch))
    source = write_rows(alpaca_rows(30), tmp_path / "alpaca", "jsonl")
    cfg = make_config(tiny_tokenizer_dir, source, tmp_path / "prepared", "val_set_size: 0.2\n")
    prepared = prepare_datasets(cfg, load_tokenizer(cfg))
    assert set(_leftovers(scratch)) == before
    assert len(prepared.train) == 24 and len(prepared.eval) == 6


def test_files_of_other_processes_are_left_alone(tmp_path: Path) -> None:
    """Several nodes may share one cache folder: only fingerprints issued here are removed."""
    import datasets

    source = tmp_path / "source"
    datasets.Dataset.from_dict({"x": list(range(8))}).save_to_disk(str(source))
    rows = datasets.load_from_disk(str(source))
    ours = rows.map(lambda row: {"y": row["x"] * 2}, new_fingerprint=fresh_fingerprint())
    foreign = source / scratch_file_name("0123456789abcdef0123456789abcdef")
    foreign.write_bytes(b"another process's file")
    assert (source / Path(ours.cache_files[0]["filename"]).name).is_file()
    assert remove_scratch_files([ours]) == 1
    assert foreign.is_file() and _leftovers(source) == [foreign.name]

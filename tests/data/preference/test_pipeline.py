"""`prepare_preference_datasets`: columns, length rule, splits, cache and errors, end to end on
small local files with the tiny tokenizer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from axolotl.config.dataset_shapes import DPO_TYPES, KTO_TYPES
from axolotl.config.environment import Environment
from axolotl.config.loader import load_config_text
from axolotl.data.errors import DataError
from axolotl.data.preference import pipeline
from axolotl.data.preference.base import PAIRS, UNPAIRED
from axolotl.data.preference.pipeline import prepare_preference_datasets
from axolotl.data.preference.registry import FORMATS, load_builtin_formats
from axolotl.models.tokenizer import load_tokenizer
from axolotl.testing import dpo_rows, kto_rows, write_rows


def intel_rows(n: int) -> list[dict]:
    return [{"system": "", "question": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}
            for row in dpo_rows(n)]


def config(tokenizer_dir: Path, tmp_path: Path, datasets: str, rl: str = "dpo", extra: str = "",
           sequence_len: int = 256) -> Any:
    text = (f"base_model: {tokenizer_dir}\nlearning_rate: 1e-4\nmicro_batch_size: 2\nrl: {rl}\n"
            f"sequence_len: {sequence_len}\ndataset_prepared_path: {tmp_path / 'prepared'}\n"
            f"datasets:\n{datasets}{extra}")
    return load_config_text(text, "cfg.yml", env=Environment()).cfg


def entry(path: Path, type_name: str | None = None) -> str:
    return f"  - path: {path}\n" + (f"    type: {type_name}\n" if type_name else "")


def prepare(cfg: Any) -> pipeline.PreparedData:
    return prepare_preference_datasets(cfg, load_tokenizer(cfg))


def count_format_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = pipeline.FormatRows.__call__

    def counting(self: Any, batch: dict, indices: list[int]) -> Any:
        calls.append(len(indices))
        return original(self, batch, indices)

    monkeypatch.setattr(pipeline.FormatRows, "__call__", counting)
    return calls


def test_every_configurable_type_has_a_format() -> None:
    load_builtin_formats()
    assert DPO_TYPES <= set(FORMATS[PAIRS])
    assert KTO_TYPES <= set(FORMATS[UNPAIRED])


def test_dpo_columns_merge_and_stats(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    intel = write_rows(intel_rows(6), tmp_path / "intel.jsonl", "jsonl")
    ready = write_rows(dpo_rows(4), tmp_path / "ready.jsonl", "jsonl")
    prepared = prepare(config(tiny_tokenizer_dir, tmp_path, entry(intel, "chatml.intel") + entry(ready)))
    assert prepared.train.column_names == ["prompt", "chosen", "rejected"] and prepared.eval is None
    rows = {row["prompt"]: row for row in prepared.train}
    assert rows["<|im_start|>user\nWhat is 1 + 3?<|im_end|>\n<|im_start|>assistant\n"] == {
        "prompt": "<|im_start|>user\nWhat is 1 + 3?<|im_end|>\n<|im_start|>assistant\n",
        "chosen": "1 + 3 = 4.<|im_end|>", "rejected": "1 + 3 = 5.<|im_end|>"}
    assert rows["What is 1 + 3?"] == {"prompt": "What is 1 + 3?", "chosen": "1 + 3 = 4.", "rejected": "1 + 3 = 5."}
    stats = prepared.stats
    assert [(d.rows_in, d.rows_out) for d in stats.datasets] == [(6, 6), (4, 4)] and stats.train_rows == 10
    assert 0 < stats.train_trained_tokens < stats.train_tokens
    assert (prepared.path / "stats.json").is_file() and (prepared.path / "axolotl_config.yml").is_file()


def test_kto_columns_and_bool_labels(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    data = write_rows(kto_rows(6), tmp_path / "kto.jsonl", "jsonl")
    prepared = prepare(config(tiny_tokenizer_dir, tmp_path, entry(data), rl="kto"))
    assert prepared.train.column_names == ["prompt", "completion", "label"]
    assert prepared.train.features["label"].dtype == "bool"
    assert sorted(prepared.train["label"]) == [False] * 3 + [True] * 3


def lengths(cfg: Any, row: dict) -> tuple[int, int, int]:
    tokenizer = load_tokenizer(cfg)
    return tuple(len(tokenizer.encode(row[key], add_special_tokens=False)) for key in ("prompt", "chosen", "rejected"))


def test_pairs_longer_than_sequence_len_are_dropped_and_counted(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    rows = dpo_rows(4)
    rows[2]["rejected"] = rows[2]["rejected"] + " Because" * 40
    data = write_rows(rows, tmp_path / "pairs.jsonl", "jsonl")
    probe = config(tiny_tokenizer_dir, tmp_path, entry(data))
    prompt, chosen, rejected = lengths(probe, rows[0])
    limit = prompt + max(chosen, rejected)  # row 0 fits exactly; the padded row 2 does not
    prepared = prepare(config(tiny_tokenizer_dir, tmp_path, entry(data), sequence_len=limit))
    assert rows[0]["prompt"] in prepared.train["prompt"] and rows[2]["prompt"] not in prepared.train["prompt"]
    assert prepared.stats.datasets[0].dropped == {f"longer than sequence_len ({limit})": 1}
    tighter = prepare(config(tiny_tokenizer_dir, tmp_path, entry(data), sequence_len=limit - 1))
    assert rows[0]["prompt"] not in tighter.train["prompt"]


def test_excess_length_raise_and_truncate(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    rows = dpo_rows(3)
    rows[1]["chosen"] = rows[1]["chosen"] + " Because" * 40
    data = write_rows(rows, tmp_path / "pairs.jsonl", "jsonl")
    with pytest.raises(DataError, match=r"pairs\.jsonl`, row 1: prompt \+ response is \d+ tokens, more than "
                                        r"sequence_len 40"):
        prepare(config(tiny_tokenizer_dir, tmp_path, entry(data), sequence_len=40,
                       extra="excess_length_strategy: raise\n"))
    cfg = config(tiny_tokenizer_dir, tmp_path, entry(data), sequence_len=40, extra="excess_length_strategy: truncate\n")
    prepared = prepare(cfg)
    row = next(r for r in prepared.train if r["prompt"] == rows[1]["prompt"])
    prompt, chosen, _ = lengths(cfg, row)
    assert prompt + chosen <= 40 and row["chosen"].startswith(rows[1]["chosen"][:8])
    assert row["rejected"] == rows[1]["rejected"] and prepared.stats.train_rows == 3


def test_val_set_size_split_is_seeded(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    data = write_rows(dpo_rows(10), tmp_path / "pairs.jsonl", "jsonl")
    cfg = config(tiny_tokenizer_dir, tmp_path, entry(data), extra="val_set_size: 0.2\nseed: 7\n")
    prepared = prepare(cfg)
    assert (len(prepared.train), len(prepared.eval)) == (8, 2)
    assert not set(prepared.train["prompt"]) & set(prepared.eval["prompt"])
    again = prepare_preference_datasets(cfg.model_copy(update={"dataset_prepared_path": str(tmp_path / "other")}),
                                        load_tokenizer(cfg))
    assert again.eval["prompt"] == prepared.eval["prompt"] and again.train["prompt"] == prepared.train["prompt"]


def test_test_datasets_are_the_eval_split(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    train = write_rows(dpo_rows(6), tmp_path / "train.jsonl", "jsonl")
    held_out = write_rows(intel_rows(3), tmp_path / "eval.jsonl", "jsonl")
    extra = f"test_datasets:\n  - path: {held_out}\n    type: chatml.intel\n"
    prepared = prepare(config(tiny_tokenizer_dir, tmp_path, entry(train), extra=extra))
    assert (len(prepared.train), len(prepared.eval)) == (6, 3)
    assert all(prompt.startswith("<|im_start|>user\n") for prompt in prepared.eval["prompt"])
    assert prepared.stats.eval_rows == 3 and prepared.stats.datasets[1].name == str(held_out)


def test_exact_deduplication(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    data = write_rows(dpo_rows(3) + dpo_rows(2), tmp_path / "pairs.jsonl", "jsonl")
    prepared = prepare(config(tiny_tokenizer_dir, tmp_path, entry(data), extra="dataset_exact_deduplication: true\n"))
    assert prepared.stats.duplicates_removed == 2 and len(prepared.train) == 3


def test_cache_is_reused_and_keyed(tiny_tokenizer_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_rows(intel_rows(5), tmp_path / "intel.jsonl", "jsonl")
    cfg = config(tiny_tokenizer_dir, tmp_path, entry(data, "chatml.intel"))
    first = prepare(cfg)
    calls = count_format_calls(monkeypatch)
    second = prepare(cfg)
    assert calls == [] and second.stats.reused_cache and second.path == first.path
    assert second.train["chosen"] == first.train["chosen"]
    other_type = prepare(config(tiny_tokenizer_dir, tmp_path, entry(data, "llama3.intel")))
    shorter = prepare(config(tiny_tokenizer_dir, tmp_path, entry(data, "chatml.intel"), sequence_len=128))
    assert len(calls) == 2 and len({first.path, other_type.path, shorter.path}) == 3


def test_bad_row_names_dataset_row_and_field(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    rows = intel_rows(5)
    del rows[3]["question"]
    data = write_rows(rows, tmp_path / "bad.jsonl", "jsonl")
    with pytest.raises(DataError, match=r"dataset `.*bad\.jsonl`, row 3, field `question`: missing `question`"):
        prepare(config(tiny_tokenizer_dir, tmp_path, entry(data, "chatml.intel")))
    assert not any((tmp_path / "prepared").glob("*")), "nothing half-written may remain"


def test_passthrough_rows_need_text(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    rows = dpo_rows(3)
    rows[1]["chosen"] = ""
    data = write_rows(rows, tmp_path / "pairs.jsonl", "jsonl")
    with pytest.raises(DataError, match=r"row 1, field `chosen`: `chosen` is empty"):
        prepare(config(tiny_tokenizer_dir, tmp_path, entry(data)))


def test_user_function_type(tiny_tokenizer_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_pairs.py").write_text(
        "def transform(cfg, dataset_idx=0, **kwargs):\n"
        "    def fn(sample, tokenizer=None):\n"
        "        return {'prompt': f'Q{dataset_idx}: ' + sample['q'], 'chosen': sample['a'], 'rejected': 'no',\n"
        "                'extra': tokenizer.eos_token}\n"
        "    return fn, {'remove_columns': ['q']}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_pairs", raising=False)
    data = write_rows([{"q": "hi", "a": "hello"}], tmp_path / "q.jsonl", "jsonl")
    prepared = prepare(config(tiny_tokenizer_dir, tmp_path, entry(data, "my_pairs.transform")))
    assert prepared.train[0] == {"prompt": "Q0: hi", "chosen": "hello", "rejected": "no"}
    broken = write_rows([{"q": "hi", "a": "hello"}, {"q": None, "a": "x"}], tmp_path / "broken.jsonl", "jsonl")
    with pytest.raises(DataError, match=r"broken\.jsonl`, row 1: type `my_pairs.transform` failed on this row: "
                                        r"TypeError"):
        prepare(config(tiny_tokenizer_dir, tmp_path, entry(broken, "my_pairs.transform")))


def test_skip_prepare_dataset_keeps_long_pairs(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    data = write_rows(dpo_rows(3), tmp_path / "pairs.jsonl", "jsonl")
    kept = prepare(config(tiny_tokenizer_dir, tmp_path, entry(data), sequence_len=4,
                          extra="skip_prepare_dataset: true\n"))
    assert kept.stats.train_rows == 3 and kept.stats.datasets[0].dropped == {}


def test_sft_config_is_refused(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    text = (f"base_model: {tiny_tokenizer_dir}\nlearning_rate: 1e-4\ndatasets:\n  - path: {tmp_path}/x.jsonl\n"
            "    type: alpaca\n")
    cfg = load_config_text(text, "cfg.yml", env=Environment()).cfg
    with pytest.raises(DataError, match="this config trains sft"):
        prepare(cfg)

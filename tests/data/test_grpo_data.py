"""GRPO prompt preparation: `type: module.function` transforms with `remove_columns` (and "__all__"),
rows that already hold a prompt, the prompt checks, the length rule and `skip_prepare_dataset`,
caching, and errors that name the dataset, the row and the transform."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from axolotl.data.errors import DataError
from axolotl.testing import write_rows
from axolotl.testing.configs import load

TRANSFORMS = '''
def chat(cfg, *args, **kwargs):
    def fn(row, tokenizer=None):
        assert tokenizer is not None
        return {"prompt": [{"role": "system", "content": "Answer."}, {"role": "user", "content": row["question"]}],
                "answer": str(row["answer"])}
    return fn, {"remove_columns": ["question"]}


def plain_keep_only(cfg, *args, **kwargs):
    def fn(row):
        return {"prompt": "Q: " + row["question"], "gold": row["answer"] * 2}
    return fn, {"remove_columns": "__all__"}


def bare(cfg, *args, dataset_idx=None, **kwargs):
    return lambda row: {"prompt": f"dataset {dataset_idx}: " + row["question"]}


def failing(cfg, *args, **kwargs):
    def fn(row):
        if row["answer"] == 3:
            raise KeyError("solution")
        return {"prompt": row["question"]}
    return fn


def no_prompt(cfg, *args, **kwargs):
    return lambda row: {"text": row["question"]}


def bad_remove(cfg, *args, **kwargs):
    return (lambda row: {"prompt": row["question"]}), {"remove_columns": ["nope"]}


def batched(cfg, *args, **kwargs):
    return (lambda row: {"prompt": row["question"]}), {"batched": True}
'''


def rows(n: int = 6) -> list[dict[str, Any]]:
    return [{"question": f"What is {i} + 1? " + "Please think. " * (i * 3), "answer": i + 1} for i in range(n)]


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A transform module with a name of its own (imported modules are cached per name)."""
    name = f"grpo_tf_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(TRANSFORMS)
    monkeypatch.chdir(tmp_path)
    return name


def cfg_of(model_dir: Path, tmp: Path, entries: list[dict[str, Any]], **extra: Any) -> Any:
    keys: dict[str, Any] = {"base_model": str(model_dir), "learning_rate": 1e-5, "rl": "grpo", "micro_batch_size": 4,
                            "datasets": entries, "dataset_prepared_path": str(tmp / "prepared"),
                            "trl": {"num_generations": 4, "reward_funcs": ["rewards.r"]}, "dataset_num_proc": 1}
    keys.update(extra)
    return load(yaml.safe_dump(keys)).cfg


def prepare(cfg: Any) -> Any:
    from axolotl.data.grpo import prepare_grpo_datasets
    from axolotl.models.tokenizer import load_tokenizer

    return prepare_grpo_datasets(cfg, load_tokenizer(cfg))


def test_transform_builds_chat_prompts_and_keeps_reward_columns(module: str, tiny_llama_dir: Path,
                                                                tmp_path: Path) -> None:
    data = write_rows(rows(), tmp_path / "q", "jsonl")
    prepared = prepare(cfg_of(tiny_llama_dir, tmp_path, [{"path": str(data), "type": f"{module}.chat"}],
                              shuffle_merged_datasets=False))
    train = prepared.train
    assert sorted(train.column_names) == ["answer", "prompt"]  # `question` removed, `answer` rewritten and kept
    first = train[0]
    assert first["prompt"] == [{"role": "system", "content": "Answer."}, {"role": "user", "content": rows()[0]["question"]}]
    assert first["answer"] == "1"
    assert prepared.stats.train_rows == 6 and prepared.stats.train_trained_tokens == 0
    assert prepared.stats.train_tokens > 6 * 10  # prompt tokens, as the chat template renders them


def test_all_sentinel_removes_every_original_column(module: str, tiny_llama_dir: Path, tmp_path: Path) -> None:
    data = write_rows(rows(), tmp_path / "q", "jsonl")
    train = prepare(cfg_of(tiny_llama_dir, tmp_path, [{"path": str(data), "type": f"{module}.plain_keep_only"}],
                           shuffle_merged_datasets=False)).train
    assert sorted(train.column_names) == ["gold", "prompt"]
    assert train[2] == {"prompt": "Q: " + rows()[2]["question"], "gold": 6}


def test_rows_with_a_prompt_need_no_type_and_keep_their_columns(tiny_llama_dir: Path, tmp_path: Path) -> None:
    data = write_rows([{"prompt": f"Say {i}", "target": i} for i in range(5)], tmp_path / "p", "jsonl")
    train = prepare(cfg_of(tiny_llama_dir, tmp_path, [{"path": str(data)}], shuffle_merged_datasets=False)).train
    assert train.column_names == ["prompt", "target"] and train[4] == {"prompt": "Say 4", "target": 4}


def test_a_transform_without_options_gets_the_dataset_index(module: str, tiny_llama_dir: Path,
                                                           tmp_path: Path) -> None:
    data = write_rows(rows(2), tmp_path / "q", "jsonl")
    entries = [{"path": str(data), "type": f"{module}.bare"}, {"path": str(data), "type": f"{module}.bare"}]
    train = prepare(cfg_of(tiny_llama_dir, tmp_path, entries, shuffle_merged_datasets=False)).train
    assert [row["prompt"][:9] for row in train] == ["dataset 0", "dataset 0", "dataset 1", "dataset 1"]
    assert sorted(train.column_names) == ["answer", "prompt", "question"]  # nothing removed


def test_length_rule_drops_long_prompts_and_skip_keeps_them(module: str, tiny_llama_dir: Path,
                                                           tmp_path: Path) -> None:
    data = write_rows(rows(), tmp_path / "q", "jsonl")
    entry = [{"path": str(data), "type": f"{module}.plain_keep_only"}]
    dropped = prepare(cfg_of(tiny_llama_dir, tmp_path, entry, sequence_len=40))
    assert 0 < dropped.stats.train_rows < 6
    assert list(dropped.stats.datasets[0].dropped) == ["prompt longer than sequence_len (40)"]
    by_prompt_len = prepare(cfg_of(tiny_llama_dir, tmp_path, entry, sequence_len=512, max_prompt_len=40))
    assert by_prompt_len.stats.train_rows == dropped.stats.train_rows
    kept = prepare(cfg_of(tiny_llama_dir, tmp_path, entry, sequence_len=40, skip_prepare_dataset=True))
    assert kept.stats.train_rows == 6 and kept.stats.length_histogram == []
    with pytest.raises(DataError, match=r"row \d+: the prompt is \d+ tokens, more than sequence_len 40"):
        prepare(cfg_of(tiny_llama_dir, tmp_path, entry, sequence_len=40, excess_length_strategy="raise"))


def test_cache_is_reused_until_the_transform_changes(module: str, tiny_llama_dir: Path, tmp_path: Path) -> None:
    data = write_rows(rows(), tmp_path / "q", "jsonl")
    cfg = cfg_of(tiny_llama_dir, tmp_path, [{"path": str(data), "type": f"{module}.chat"}])
    first = prepare(cfg)
    assert prepare(cfg).stats.reused_cache and prepare(cfg).path == first.path
    source = tmp_path / f"{module}.py"
    source.write_text(source.read_text().replace('"Answer."', '"Answer briefly."'))
    assert prepare(cfg).path != first.path


@pytest.mark.parametrize(("function", "message"), [
    ("failing", r"row 2: type `grpo_tf_\w+\.failing` failed: KeyError: 'solution'"),
    ("no_prompt", r"no `prompt` column after `type: grpo_tf_\w+\.no_prompt` \(columns: .*text"),
    ("bad_remove", r"removes columns \['nope'\] that dataset .* does not have"),
    ("batched", r"returned map options \['batched'\]: not supported yet"),
    ("missing", r"`datasets\[0\]\.type: grpo_tf_\w+\.missing`: module `grpo_tf_\w+` .* has no `missing`"),
])
def test_transform_errors_name_the_transform(function: str, message: str, module: str, tiny_llama_dir: Path,
                                             tmp_path: Path) -> None:
    data = write_rows(rows(), tmp_path / "q", "jsonl")
    with pytest.raises(DataError, match=message):
        prepare(cfg_of(tiny_llama_dir, tmp_path, [{"path": str(data), "type": f"{module}.{function}"}],
                       shuffle_merged_datasets=False))


@pytest.mark.parametrize(("prompt", "message"), [
    ("", "`prompt` is empty"), (None, r"`prompt` is missing \(null\)"),
    ([{"role": "user"}], "message 0 has no text `content`"),
])
def test_bad_prompts_name_the_row(prompt: Any, message: str, tiny_llama_dir: Path, tmp_path: Path) -> None:
    good = {"prompt": [{"role": "user", "content": "hi"}]} if isinstance(prompt, list) else {"prompt": "hi"}
    data = write_rows([good, {"prompt": prompt}], tmp_path / "p", "jsonl")
    with pytest.raises(DataError, match=rf"row 1: .*{message}"):
        prepare(cfg_of(tiny_llama_dir, tmp_path, [{"path": str(data)}], shuffle_merged_datasets=False))


def test_sft_only_entry_keys_are_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    data = write_rows([{"prompt": "hi"}], tmp_path / "p", "jsonl")
    with pytest.raises(DataError, match=r"`datasets\[0\]`: field_messages not supported yet for GRPO datasets"):
        prepare(cfg_of(tiny_llama_dir, tmp_path, [{"path": str(data), "field_messages": "conversation"}]))


def test_transform_is_found_beside_the_config(tiny_llama_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Launched from another folder: the config's own folder is searched too."""
    folder = tmp_path / "project"
    folder.mkdir()
    name = f"beside_{tmp_path.name}"
    (folder / f"{name}.py").write_text(textwrap.dedent(TRANSFORMS))
    data = write_rows(rows(2), folder / "q", "jsonl")
    config = folder / "grpo.yml"
    config.write_text(yaml.safe_dump({
        "base_model": str(tiny_llama_dir), "learning_rate": 1e-5, "rl": "grpo", "micro_batch_size": 4,
        "datasets": [{"path": str(data), "type": f"{name}.plain_keep_only"}],
        "dataset_prepared_path": str(tmp_path / "prepared"), "trl": {"num_generations": 4, "reward_funcs": ["r.r"]}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    from axolotl.config.loader import load_config

    assert prepare(load_config(config).cfg).stats.train_rows == 2

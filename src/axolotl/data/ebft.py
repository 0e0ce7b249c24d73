"""EBFT data: dataset entries -> prepared train/eval splits, cached on disk like every method's.

Per entry: load the rows, apply its `type:` (a built-in name from `axolotl.data.ebft_transforms`,
or `module.function` of your own with the transform protocol of `axolotl.data.grpo`, including
the `"__all__"` remove-columns sentinel), spread list-valued rows (`transform_all_turns` returns
one prompt and reference per assistant turn) into one row each, then check the columns the mode
needs:

* structured: `prompt` (text or conversation, measured and length-ruled exactly as GRPO prompts)
  and `ground_truth` (non-empty text). Other columns are kept and ignored by the trainer.
  `remaining_turns` (multi-turn sequential rollouts) is refused: not supported yet.
* strided: `input_ids` (token ids); `labels` (default: the ids) and `prompt_length` (default: the
  leading run of -100 labels). Documents longer than `sequence_len` are cut
  (`excess_length_strategy: truncate`, the default here: anchors work on any prefix), or dropped
  (`drop`), or stop preparation (`raise`). Only these three columns are kept.

Then merge, deduplicate, shuffle and split as every method does (`merge_and_split`).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axolotl.config.dataset_shapes import EBFT_TYPES
from axolotl.data.ebft_transforms import BUILTIN_PACKAGE
from axolotl.data.errors import DataError
from axolotl.data.fingerprint import dataset_fingerprint
from axolotl.data.grpo import (
    DROP,
    TOKENS,
    MeasurePrompts,
    check_transform_entry,
    prepare_or_reuse,
    resolve_transform,
    transformed_rows,
)
from axolotl.data.pipeline import (
    PreparedData,
    _workers,
    drop_rejected,
    entry_rows,
    int_column,
)
from axolotl.data.scratch import fresh_fingerprint
from axolotl.data.stats import DatasetStats, PreparationStats

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)
EBFT_FORMAT_VERSION = 1
"""Bump when preparation produces different rows for the same inputs."""
STRIDED_COLUMNS = ("input_ids", "labels", "prompt_length")
IGNORE_INDEX = -100


def ebft_mode(cfg: AxolotlConfig) -> str:
    return cfg.ebft.mode if cfg.ebft is not None else "structured"


def builtin_dotted(type_name: str) -> str | None:
    """The importable path of a built-in transform name (`ebft_opencode.transform`), else None."""
    return f"{BUILTIN_PACKAGE}.{type_name}" if type_name in EBFT_TYPES else None


class _BuiltinEntry:
    """An entry whose `type` points into the built-in package, for `resolve_transform`."""

    def __init__(self, entry: Any, dotted: str) -> None:
        self.type = dotted
        self._entry = entry


def transform_of(entry: Any, index: int, cfg: AxolotlConfig, where: str) -> tuple[Any, Any]:
    """(row function or None, remove_columns) of an entry: built-in names first, then your module."""
    dotted = builtin_dotted(entry.type) if isinstance(entry.type, str) else None
    return resolve_transform(_BuiltinEntry(entry, dotted) if dotted else entry, index, cfg, where)


def check_entry(entry: Any, where: str) -> None:
    """Keys of SFT prompt strategies would be ignored: refuse them by name."""
    check_transform_entry(entry, where, "EBFT", fix="use a built-in `ebft_*` type or a `module.function` transform",
                          accepted="a built-in `ebft_*.transform` or a `module.function` transform of your own")


def prepare_ebft_datasets(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Prepared train/eval splits of an `rl: ebft` config, reused from the cache when the key matches."""
    if cfg.rl is None or str(cfg.rl) != "ebft":
        raise DataError("EBFT datasets are for `rl: ebft` configs")
    if not cfg.datasets:
        raise DataError("the config has no `datasets` to prepare")
    for list_key in ("datasets", "test_datasets"):
        for index, entry in enumerate(getattr(cfg, list_key) or []):
            check_entry(entry, f"{list_key}[{index}]")
    allowed = ("drop", "raise") if ebft_mode(cfg) == "structured" else ("truncate", "drop", "raise")
    if cfg.excess_length_strategy not in (None, *allowed):
        raise DataError(f"`excess_length_strategy: {cfg.excess_length_strategy}` is not supported yet for "
                        f"{ebft_mode(cfg)} EBFT data; use one of {', '.join(allowed)}")
    def strided_trained_tokens(train: Any, stats: PreparationStats) -> None:
        # supervised = the tokens after each prompt, where anchors go
        stats.train_trained_tokens = int(stats.train_tokens - int_column(train, "prompt_length").sum())

    return prepare_or_reuse(cfg, tokenizer, ebft_fingerprint(cfg, tokenizer), "EBFT", prepare_entry,
                            finish=strided_trained_tokens if ebft_mode(cfg) == "strided" else None)


def ebft_fingerprint(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase) -> str:
    """The SFT key plus what only EBFT preparation reads: the mode, the transforms' source files and
    `trl.chat_template_kwargs` (structured prompts are measured as generation renders them)."""
    sources = []
    for list_key in ("datasets", "test_datasets"):
        for index, entry in enumerate(getattr(cfg, list_key) or []):
            if isinstance(entry.type, str):
                sources.append(_source_digest(entry, index, cfg, f"{list_key}[{index}]"))
    extra = json.dumps({"base": dataset_fingerprint(cfg, tokenizer), "v": EBFT_FORMAT_VERSION, "mode": ebft_mode(cfg),
                        "sources": sources, "excess": cfg.excess_length_strategy,
                        "chat_template_kwargs": cfg.trl.chat_template_kwargs}, sort_keys=True, default=str)
    return hashlib.sha256(extra.encode()).hexdigest()[:32]


def _source_digest(entry: Any, index: int, cfg: AxolotlConfig, where: str) -> str:
    dotted = builtin_dotted(entry.type) or entry.type
    module_name = dotted.rpartition(".")[0]
    transform_of(entry, index, cfg, where)  # imports it (and reports a bad path) the same way preparation will
    try:
        source = inspect.getsourcefile(importlib.import_module(module_name))
        return hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else dotted
    except (TypeError, OSError, ImportError):
        return dotted


def _apply(rows: Any, entry: Any, index: int, cfg: AxolotlConfig, tokenizer: Any, where: str, name: str,
           common: dict[str, Any]) -> Any:
    """The entry's transform applied (as `axolotl.data.grpo` does), list-valued rows spread out."""
    transform, remove = transform_of(entry, index, cfg, where)
    if transform is None:
        return rows
    rows = transformed_rows(rows, transform, remove, entry.type, where, name, tokenizer, common)
    if "ground_truth" in rows.column_names and isinstance(rows[0]["ground_truth"], list):
        rows = rows.map(_spread, batched=True, remove_columns=rows.column_names, desc=f"one row per turn of {name}",
                        new_fingerprint=fresh_fingerprint(), **common)
    return rows


def _spread(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Rows whose `prompt` and `ground_truth` are lists (one per turn) -> one row per turn; other
    columns are repeated."""
    out: dict[str, list[Any]] = {key: [] for key in batch}
    for position, references in enumerate(batch["ground_truth"]):
        prompts = batch["prompt"][position]
        if not isinstance(prompts, list) or len(prompts) != len(references):
            raise DataError("a transform returned a list of `ground_truth` values but not a matching list of prompts "
                            "(one prompt per reference)")
        for prompt, reference in zip(prompts, references):
            out["prompt"].append(prompt)
            out["ground_truth"].append(reference)
            for key in batch:
                if key not in ("prompt", "ground_truth"):
                    out[key].append(batch[key][position])
    return out


def prepare_entry(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, entry: Any, index: int,
                  role: str = "train") -> tuple[Any, DatasetStats]:
    """Load, transform and check one dataset entry (`merge_and_split`'s per-entry step)."""
    where = f"{'datasets' if role == 'train' else 'test_datasets'}[{index}]"
    name = entry.path or where
    rows, stats = entry_rows(entry, name)
    common = {"num_proc": _workers(cfg, len(rows)), "load_from_cache_file": False,
              "keep_in_memory": bool(cfg.dataset_keep_in_memory)}
    rows = _apply(rows, entry, index, cfg, tokenizer, where, name, common)
    source = f"`type: {entry.type}`" if entry.type else "loading (no `type:`)"
    if ebft_mode(cfg) == "strided":
        measured = _check_documents(rows, cfg, name, source, common)
    else:
        measured = _check_structured(rows, cfg, tokenizer, name, source, common)
    measured = drop_rejected(measured, stats, common["num_proc"], column=DROP)
    stats.tokens = int(int_column(measured, TOKENS).sum())
    return measured.remove_columns([DROP]), stats


def _check_structured(rows: Any, cfg: AxolotlConfig, tokenizer: Any, name: str, source: str,
                      common: dict[str, Any]) -> Any:
    for column in ("prompt", "ground_truth"):
        if column not in rows.column_names:
            raise DataError(f"dataset `{name}`: no `{column}` column after {source} (columns: "
                            f"{', '.join(rows.column_names)}); structured EBFT rows need `prompt` and `ground_truth`")
    if "remaining_turns" in rows.column_names:
        raise DataError(f"dataset `{name}` has `remaining_turns` (from {source}): multi-turn sequential rollouts are not "
                        "supported yet; use `ebft_chat_multiturn.transform_last_turn` (last turn as target) or "
                        "`ebft_chat_multiturn.transform_all_turns` (one row per turn) instead")
    for position, reference in enumerate(rows["ground_truth"]):
        if not isinstance(reference, str) or not reference.strip():
            raise DataError(f"dataset `{name}`, row {position}: `ground_truth` must be non-empty text, not "
                            f"{reference!r:.40}")
    return rows.map(MeasurePrompts(cfg, tokenizer, name), batched=True, with_indices=True,
                    desc=f"checking prompts of {name}", new_fingerprint=fresh_fingerprint(), **common)


class CheckDocuments:
    """Batched `datasets.map` function: strided documents checked, defaulted and length-ruled."""

    def __init__(self, cfg: AxolotlConfig, name: str) -> None:
        self.name = name
        self.limit = cfg.sequence_len
        self.strategy = cfg.excess_length_strategy or "truncate"

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {key: [] for key in (*STRIDED_COLUMNS, TOKENS, DROP)}
        labels_in = batch.get("labels") or [None] * len(indices)
        prompts_in = batch.get("prompt_length") or [None] * len(indices)
        for ids, labels, prompt_length, index in zip(batch["input_ids"], labels_in, prompts_in, indices, strict=True):
            if not isinstance(ids, list) or not ids or not all(isinstance(token, int) for token in ids):
                raise DataError(f"dataset `{self.name}`, row {index}: `input_ids` must be a non-empty list of token ids")
            labels = list(ids) if labels is None else list(labels)
            if len(labels) != len(ids):
                raise DataError(f"dataset `{self.name}`, row {index}: `labels` has {len(labels)} entries for "
                                f"{len(ids)} input_ids")
            if prompt_length is None:
                prompt_length = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
            reason = ""
            if self.limit and len(ids) > self.limit:
                if self.strategy == "raise":
                    raise DataError(f"dataset `{self.name}`, row {index}: {len(ids)} tokens, more than sequence_len "
                                    f"{self.limit} (excess_length_strategy: raise)")
                if self.strategy == "drop":
                    reason = f"longer than sequence_len ({self.limit})"
                ids, labels = ids[:self.limit], labels[:self.limit]
            out["input_ids"].append(ids)
            out["labels"].append(labels)
            out["prompt_length"].append(min(int(prompt_length), len(ids)))
            out[TOKENS].append(len(ids))
            out[DROP].append(reason)
        return out


def _check_documents(rows: Any, cfg: AxolotlConfig, name: str, source: str, common: dict[str, Any]) -> Any:
    if "input_ids" not in rows.column_names:
        raise DataError(f"dataset `{name}`: no `input_ids` column after {source} (columns: "
                        f"{', '.join(rows.column_names)}); strided EBFT needs tokenised documents: use "
                        "`ebft_strided_structured.transform`, `ebft_strided_chat.transform`, "
                        "`ebft_pretrain.transform` or a transform returning input_ids")
    return rows.map(CheckDocuments(cfg, name), batched=True, with_indices=True, remove_columns=rows.column_names,
                    desc=f"checking documents of {name}", new_fingerprint=fresh_fingerprint(), **common)

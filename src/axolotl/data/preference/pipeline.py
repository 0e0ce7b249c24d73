"""From a preference config's dataset entries to prepared train/eval splits, cached on disk.

Per entry: load rows, render each with its `type:` format into TEXT columns and measure them in
ONE `datasets.map` pass (the length rule drops pairs, counted by reason). Then merge,
deduplicate, shuffle and split as the SFT pipeline does, and save under
`dataset_prepared_path/<key>` with the same cache layout.

Columns of the prepared splits (what the TRL trainers read, nothing else):

- `rl: dpo | ipo | orpo | simpo`: `prompt`, `chosen`, `rejected` (str)
- `rl: kto`: `prompt`, `completion` (str), `label` (bool)

Length rule (as the reference): prompt, chosen and rejected are tokenized on their own without
special tokens; a pair is longer than `sequence_len` when prompt + chosen or prompt + rejected is.
`excess_length_strategy`: `drop` (default), `raise`, or `truncate` (responses cut to fit after
the prompt, decoded without special tokens; pairs whose prompt alone fills `sequence_len` are
dropped). `skip_prepare_dataset: true` keeps every pair. `max_prompt_len` is the trainers'.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axolotl.data.encoding import encode_batch
from axolotl.data.errors import DataError, RowError
from axolotl.data.fingerprint import dataset_fingerprint
from axolotl.data.pipeline import (
    DEFAULT_PREPARED_PATH,
    DEFAULT_SEED,
    DROP_REASON,
    PreparedData,
    _workers,
    drop_rejected,
    entry_rows,
    int_column,
    load_prepared,
    merge_and_split,
    save_prepared,
)
from axolotl.data.preference.base import COLUMNS, PreferenceContext, Row, label, preference_kind, text
from axolotl.data.preference.registry import resolve
from axolotl.data.scratch import fresh_fingerprint
from axolotl.data.stats import DatasetStats, PreparationStats, length_histogram

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)
PREFERENCE_FORMAT_VERSION = 1
"""Bump when a format renders different text for the same row."""
MEASURE_COLUMNS = ("length", "n_tokens", "n_trained")
"""Per-row counts kept until the statistics are taken: `length` is the longer of prompt + each
response, `n_tokens` all tokens the trainer reads, `n_trained` the response tokens."""


def prepare_preference_datasets(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Prepared train/eval TEXT splits for a DPO/IPO/ORPO/SimPO/KTO config, reused from the cache
    when the key matches."""
    kind = preference_kind(cfg)
    if kind is None:
        method = cfg.rl.value if cfg.rl else "sft"
        raise DataError(f"preference datasets are for `rl: dpo | ipo | orpo | simpo | kto`; this config trains {method}")
    if not cfg.datasets:
        raise DataError("the config has no `datasets` to prepare")
    key = preference_fingerprint(cfg, tokenizer, kind)
    target = Path(cfg.dataset_prepared_path or DEFAULT_PREPARED_PATH).expanduser().resolve() / key
    if cfg.dataset_prepared_path and target.is_dir():
        LOG.info("reusing prepared data at %s", target)
        return load_prepared(target, bool(cfg.dataset_keep_in_memory))
    train, evaluation, stats = _prepare(cfg, tokenizer, kind)
    return save_prepared(target, train, evaluation, stats, cfg)


def preference_fingerprint(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, kind: str) -> str:
    """The SFT key (entries, file contents, tokenizer, length and split settings) plus the kind of
    method and this module's format version."""
    base = dataset_fingerprint(cfg, tokenizer)
    extra = f"{base}|preference:{kind}|v{PREFERENCE_FORMAT_VERSION}|skip:{bool(cfg.skip_prepare_dataset)}"
    return hashlib.sha256(extra.encode()).hexdigest()[:32]


def _prepare(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, kind: str) -> tuple[Any, Any, PreparationStats]:
    seed = cfg.seed if cfg.seed is not None else DEFAULT_SEED
    stats = PreparationStats()
    train, evaluation = merge_and_split(cfg, tokenizer, functools.partial(format_entry, kind=kind),
                                        functools.partial(deduplicate, kind=kind), seed, stats)
    _final_stats(stats, train, evaluation)
    columns = list(COLUMNS[kind])
    train = train.select_columns(columns)
    evaluation = evaluation.select_columns(columns) if evaluation is not None else None
    return train, evaluation, stats


def _final_stats(stats: PreparationStats, train: Any, evaluation: Any) -> None:
    lengths = int_column(train, "length")
    stats.train_rows = len(train)
    stats.eval_rows = len(evaluation) if evaluation is not None else 0
    stats.train_tokens = int(int_column(train, "n_tokens").sum())
    stats.train_trained_tokens = int(int_column(train, "n_trained").sum())
    stats.length_histogram = length_histogram(lengths)


def format_entry(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, entry: Any, index: int, kind: str,
                 role: str = "train") -> tuple[Any, DatasetStats]:
    """Render and measure one dataset entry, applying the length rule in the same pass."""
    name = entry.path or f"{role} dataset {index}"
    rows, stats = entry_rows(entry, name)
    ctx = PreferenceContext(tokenizer=tokenizer, cfg=cfg, dataset=entry, kind=kind, index=index)
    workers = _workers(cfg, len(rows))
    mapped = rows.map(FormatRows(ctx, name), batched=True, with_indices=True, num_proc=workers,
                      remove_columns=rows.column_names, load_from_cache_file=False,
                      keep_in_memory=bool(cfg.dataset_keep_in_memory), desc=f"formatting {name}",
                      new_fingerprint=fresh_fingerprint())
    kept = drop_rejected(mapped, stats, workers)
    stats.tokens = int(int_column(kept, "n_tokens").sum())
    stats.trained_tokens = int(int_column(kept, "n_trained").sum())
    return kept.remove_columns([DROP_REASON]), stats


class FormatRows:
    """The `datasets.map` function: format + length rule, picklable for worker processes."""

    def __init__(self, ctx: PreferenceContext, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.columns = COLUMNS[ctx.kind]
        self.responses = [column for column in self.columns if column not in ("prompt", "label")]
        self.limit = ctx.cfg.sequence_len
        self.strategy = "keep" if ctx.cfg.skip_prepare_dataset else (ctx.cfg.excess_length_strategy or "drop")
        self._format: Any = resolve(ctx)  # built here so a bad `type:` fails before any row is read

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_format": None}

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        if self._format is None:
            self._format = resolve(self.ctx)
        rows = [self._formatted({column: values[position] for column, values in batch.items()}, indices[position])
                for position in range(len(indices))]
        texts = [column for column in self.columns if column != "label"]
        lengths = {column: [len(ids) for ids in self._encode([row[column] for row in rows])] for column in texts}
        out: dict[str, list[Any]] = {column: [] for column in (*self.columns, *MEASURE_COLUMNS, "drop_reason")}
        for position, row in enumerate(rows):
            sizes = {column: lengths[column][position] for column in texts}
            reason = self._length_rule(row, sizes, indices[position])
            for column in self.columns:
                out[column].append(row[column])
            prompt = sizes["prompt"]
            out["length"].append(max(prompt + sizes[column] for column in self.responses))
            out["n_tokens"].append(sum(prompt + sizes[column] for column in self.responses))
            out["n_trained"].append(sum(sizes[column] for column in self.responses))
            out["drop_reason"].append(reason)
        return out

    def _formatted(self, raw: Row, index: int) -> Row:
        try:
            row = self._format(raw)
            checked = {column: text(row, column) for column in self.columns if column != "label"}
            for column, value in checked.items():
                if not value:
                    raise RowError(f"`{column}` is empty", column)
            if "label" in self.columns:
                checked["label"] = label(row, "label")
            return checked
        except RowError as error:
            raise error.located(self.name, index) from None

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return encode_batch(self.ctx.tokenizer, texts, add_special_tokens=False)

    def _length_rule(self, row: Row, sizes: dict[str, int], index: int) -> str:
        """'' to keep the row (responses truncated in place with `truncate`), else why it is dropped."""
        prompt = sizes["prompt"]
        longest = max(prompt + sizes[column] for column in self.responses)
        if longest <= self.limit or self.strategy == "keep":
            return ""
        if self.strategy == "raise":
            raise DataError(f"dataset `{self.name}`, row {index}: prompt + response is {longest} tokens, more than "
                            f"sequence_len {self.limit} (excess_length_strategy: raise)")
        if self.strategy == "truncate":
            room = self.limit - prompt
            if room <= 0:
                return f"prompt longer than sequence_len ({self.limit})"
            for column in self.responses:
                if sizes[column] > room:
                    ids = self._encode([row[column]])[0][:room]
                    row[column] = self.ctx.tokenizer.decode(ids, skip_special_tokens=True)
                    sizes[column] = len(self._encode([row[column]])[0])
            if max(prompt + sizes[column] for column in self.responses) <= self.limit and all(
                    row[column] for column in self.responses):
                return ""
        return f"longer than sequence_len ({self.limit})"


def deduplicate(dataset: Any, kind: str) -> tuple[Any, int]:
    """Drop rows whose output columns all equal an earlier row's."""
    table = dataset.with_format("arrow")[:]
    columns = [table[column].to_pylist() for column in COLUMNS[kind]]
    seen: set[int] = set()
    keep: list[int] = []
    for position, values in enumerate(zip(*columns, strict=True)):
        digest = hash(values)
        if digest not in seen:
            seen.add(digest)
            keep.append(position)
    removed = len(dataset) - len(keep)
    return (dataset.select(keep) if removed else dataset), removed

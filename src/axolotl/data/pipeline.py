"""From the config's dataset entries to prepared train/eval splits, cached on disk.

Per entry: load rows, shard, tokenize with its strategy and apply the length rules in ONE
`datasets.map` pass (dropped rows are counted by reason, not silently lost). Then merge,
deduplicate, shuffle and split, and save atomically under `dataset_prepared_path/<key>`, where
the key covers everything that changes tokens (see `fingerprint.py`).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from axolotl.config.render import RESOLVED_CONFIG_NAME, resolved_yaml
from axolotl.data.errors import DataError
from axolotl.data.fingerprint import dataset_fingerprint
from axolotl.data.packing import pack, packing_efficiency
from axolotl.data.scratch import fresh_fingerprint, remove_scratch_files
from axolotl.data.sources import load_rows
from axolotl.data.stats import DatasetStats, PreparationStats, length_histogram
from axolotl.data.strategies.base import StrategyContext
from axolotl.data.tokenized_rows import TokenizeRows, output_features
from axolotl.process_group import init_process_group, launched_world_size

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)
DEFAULT_PREPARED_PATH = "last_run_prepared"
DEFAULT_SEED = 42
ROWS_PER_PROCESS = 5000
"""Below this many rows per worker, extra processes cost more to start than they save (each worker
unpickles the tokenizer: about a second for a 150k vocabulary)."""
STATS_FILE = "stats.json"


@dataclass
class PreparedData:
    train: datasets.Dataset
    eval: datasets.Dataset | None
    stats: PreparationStats
    path: Path


def prepare_datasets(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase,
                     reuse_cache: bool = False) -> PreparedData:
    """Prepared train/eval data for `cfg`: reused from the cache when the key matches (and
    `dataset_prepared_path` is set, or `reuse_cache`: a rank reading what its node's first rank
    just wrote)."""
    _refuse_unsupported(cfg)
    key = dataset_fingerprint(cfg, tokenizer)
    root = Path(cfg.dataset_prepared_path or DEFAULT_PREPARED_PATH).expanduser().resolve()
    target = root / key
    if (cfg.dataset_prepared_path or reuse_cache) and target.is_dir():
        LOG.info("reusing prepared data at %s", target)
        return load_prepared(target, bool(cfg.dataset_keep_in_memory))
    if cfg.reward_model:  # pairs for a reward model; every other method has SFT-shaped rows
        from axolotl.data.reward.pairs import prepare_pairs

        train, evaluation, stats = prepare_pairs(cfg, tokenizer)
    else:
        train, evaluation, stats = _prepare(cfg, tokenizer)
    return save_prepared(target, train, evaluation, stats, cfg)


def prepare_datasets_once_per_node(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Under a multi-process launch (torchrun/accelerate set WORLD_SIZE), each node's first rank
    prepares the data with `dataset_num_proc` workers while the node's other ranks wait at a
    barrier, then they load its cache: the work is done once per node, and no rank sits in a
    collective long enough to time out. A single process prepares directly."""
    if launched_world_size() <= 1:
        return prepare_datasets(cfg, tokenizer)
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    init_process_group(cfg)  # `ddp_timeout` bounds the wait for the preparation; the Trainer reuses the group
    if local_rank != 0:
        dist.barrier()  # until the node's first rank has written the cache
        return prepare_datasets(cfg, tokenizer, reuse_cache=True)
    try:
        return prepare_datasets(cfg, tokenizer)
    finally:
        dist.barrier()  # also on failure, so the waiting ranks stop waiting (and fail on the missing cache)


def _refuse_unsupported(cfg: AxolotlConfig) -> None:
    if cfg.rl:
        raise DataError(f"preparing datasets for `{cfg.rl.value}` is not supported yet (SFT datasets only)")
    if cfg.skip_prepare_dataset:
        raise DataError("`skip_prepare_dataset` is not supported yet for SFT datasets; remove it")
    if cfg.pretraining_dataset:
        raise DataError("`pretraining_dataset` is streamed during training, not prepared ahead: "
                        "`preprocess` does not support it (use `axolotl train`)")
    if not cfg.datasets:
        raise DataError("the config has no `datasets` to prepare")


def _prepare(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase) -> tuple[Any, Any, PreparationStats]:
    seed = cfg.seed if cfg.seed is not None else DEFAULT_SEED
    stats = PreparationStats()
    train, evaluation = merge_and_split(cfg, tokenizer, tokenize_entry, deduplicate, seed, stats)
    _final_stats(stats, train, evaluation, cfg)
    train = train.remove_columns(["n_trained"])
    evaluation = evaluation.remove_columns(["n_trained"]) if evaluation is not None else None
    return train, evaluation, stats


TokenizeEntry = Callable[..., tuple[Any, DatasetStats]]
"""`(cfg, tokenizer, entry, index, role="train"|"eval") -> (tokenized rows, their statistics)`."""


def merge_and_split(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, tokenize: TokenizeEntry,
                    dedupe: Callable[[Any], tuple[Any, int]], seed: int,
                    stats: PreparationStats) -> tuple[Any, Any]:
    """Every dataset entry tokenized by `tokenize`, then merged, deduplicated, shuffled and sharded
    as the config says, and split into (train, eval or None) by `test_datasets` / `val_set_size`.
    Shared by the SFT rows and the reward-model pairs, so both honour the same keys the same way."""
    import datasets

    parts = []
    for index, entry in enumerate(cfg.datasets or []):
        part, part_stats = tokenize(cfg, tokenizer, entry, index)
        parts.append(part.shuffle(seed=seed, new_fingerprint=fresh_fingerprint())
                     if cfg.shuffle_before_merging_datasets else part)
        stats.datasets.append(part_stats)
    train = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if cfg.dataset_exact_deduplication:
        train, stats.duplicates_removed = dedupe(train)
    if cfg.shuffle_merged_datasets:
        train = train.shuffle(seed=seed, new_fingerprint=fresh_fingerprint())
    if cfg.dataset_shard_num:
        train = train.shard(num_shards=cfg.dataset_shard_num, index=cfg.dataset_shard_idx or 0)
    if cfg.test_datasets:
        tests = []
        for index, entry in enumerate(cfg.test_datasets):
            part, part_stats = tokenize(cfg, tokenizer, entry, index, role="eval")
            tests.append(part)
            stats.datasets.append(part_stats)
        return train, datasets.concatenate_datasets(tests) if len(tests) > 1 else tests[0]
    size = cfg.val_set_size or 0
    if not size:
        return train, None
    if len(train) < 2:
        raise DataError(f"`val_set_size: {size}` needs at least 2 prepared rows; there are {len(train)}")
    split = train.train_test_split(test_size=size if size < 1 else int(size), seed=seed, shuffle=True,
                                   train_new_fingerprint=fresh_fingerprint(), test_new_fingerprint=fresh_fingerprint())
    return split["train"], split["test"]


def _final_stats(stats: PreparationStats, train: Any, evaluation: Any, cfg: AxolotlConfig) -> None:
    lengths = int_column(train, "length")
    if cfg.sample_packing:
        bins = pack(lengths, cfg.sequence_len, max_docs=cfg.sample_packing_bin_size or 200,
                    group_size=cfg.sample_packing_group_size or 100_000,
                    sequential=bool(cfg.sample_packing_sequentially))
        stats.packed_rows = len(bins)
        stats.packing_efficiency = packing_efficiency(lengths, bins, cfg.sequence_len)
    stats.train_rows = len(train)
    stats.eval_rows = len(evaluation) if evaluation is not None else 0
    stats.train_tokens = int(lengths.sum())
    stats.train_trained_tokens = int(int_column(train, "n_trained").sum())
    stats.length_histogram = length_histogram(lengths)


def tokenize_entry(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, entry: Any, index: int,
                   role: str = "train") -> tuple[Any, DatasetStats]:
    """Tokenize one dataset entry, applying the length rules in the same pass."""
    name = entry.path or f"{role} dataset {index}"
    rows, stats = entry_rows(entry, name)
    ctx = StrategyContext(tokenizer=tokenizer, cfg=cfg, dataset=entry)
    workers = _workers(cfg, len(rows))
    chunks = getattr(entry, "preprocess_shards", None) or 1
    mapped = _tokenize_in_chunks(rows, ctx, name, chunks, workers, bool(cfg.dataset_keep_in_memory))
    kept = drop_rejected(mapped, stats, workers)
    stats.tokens = int(int_column(kept, "length").sum())
    stats.trained_tokens = int(int_column(kept, "n_trained").sum())
    return kept.remove_columns([DROP_REASON]), stats


def entry_rows(entry: Any, name: str) -> tuple[Any, DatasetStats]:
    """The rows of one dataset entry after its `shards` selection, with their first statistics;
    an entry with no rows is an error (every method's per-entry step starts here)."""
    rows = load_rows(entry)
    shardable = hasattr(entry, "shards")  # preference and stepwise entries have no sharding keys
    if shardable and entry.shards:
        rows = rows.shard(num_shards=entry.shards, index=entry.shards_idx or 0)
    if len(rows) == 0:
        keys = "`split`, `data_files` and `shards`" if shardable else "`split` and `data_files`"
        raise DataError(f"dataset `{name}` has no rows (check {keys})")
    return rows, DatasetStats(name=name, rows_in=len(rows))


DROP_REASON = "drop_reason"
"""The column a per-entry map fills with why a row is dropped ("" for rows that stay)."""


def drop_rejected(mapped: Any, stats: DatasetStats, workers: int | None, column: str = DROP_REASON) -> Any:
    """The rows whose `column` is empty; the others are counted by reason in `stats` (and logged),
    never silently lost. The column stays: callers measure the kept rows, then remove it."""
    reasons = Counter({item["values"]: item["counts"]
                       for item in arrow_column(mapped, column).value_counts().to_pylist()})
    stats.rows_out = reasons.pop("", 0)
    stats.dropped = dict(reasons)
    if not reasons:
        return mapped
    LOG.warning("dataset %s: dropped %s", stats.name, ", ".join(f"{n} {why}" for why, n in sorted(reasons.items())))
    return mapped.filter(_kept, input_columns=[column], batched=True, num_proc=workers, load_from_cache_file=False,
                         new_fingerprint=fresh_fingerprint())


def _tokenize_in_chunks(rows: Any, ctx: StrategyContext, name: str, chunks: int, workers: int | None,
                        in_memory: bool) -> Any:
    """`preprocess_shards`: tokenize N contiguous slices one after another to bound peak memory."""
    import datasets

    size = len(rows)
    bounds = [round(size * part / chunks) for part in range(chunks + 1)]
    parts = []
    for part, (start, stop) in enumerate(itertools.pairwise(bounds)):
        piece = rows.select(range(start, stop)) if chunks > 1 else rows
        label = f"tokenizing {name}" + (f" ({part + 1}/{chunks})" if chunks > 1 else "")
        function = TokenizeRows(ctx, name, arrow=True, offset=start)
        parts.append(piece.map(function, batched=True, with_indices=True, num_proc=workers,
                               remove_columns=rows.column_names, features=output_features(),
                               load_from_cache_file=False,
                               keep_in_memory=in_memory, desc=label, new_fingerprint=fresh_fingerprint()))
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def arrow_column(dataset: Any, name: str) -> Any:
    """A column as one pyarrow array. `dataset[name]` iterates row by row in datasets >= 4 (and is
    ~10x slower on shuffled data), which dominated preparation time for large datasets. Selecting
    the column first matters on shuffled data: the row gather then copies one column, not all."""
    return dataset.select_columns([name]).with_format("arrow")[:][name]


def int_column(dataset: Any, name: str) -> np.ndarray:
    return arrow_column(dataset, name).to_numpy().astype(np.int64, copy=False)


def _kept(reasons: list[str]) -> list[bool]:
    return [reason == "" for reason in reasons]


def _workers(cfg: AxolotlConfig, rows: int) -> int | None:
    wanted = cfg.dataset_num_proc or os.cpu_count() or 1
    useful = max(1, min(wanted, rows // ROWS_PER_PROCESS))
    return useful if useful > 1 else None


def deduplicate(dataset: Any) -> tuple[Any, int]:
    """Drop rows whose input_ids and labels both equal an earlier row's."""
    seen: set[int] = set()
    keep: list[int] = []
    table = dataset.with_format("arrow")[:]
    rows = zip(table["input_ids"].to_pylist(), table["labels"].to_pylist(), strict=True)
    for position, (ids, labels) in enumerate(rows):
        digest = hash((tuple(ids), tuple(labels)))
        if digest not in seen:
            seen.add(digest)
            keep.append(position)
    removed = len(dataset) - len(keep)
    return (dataset.select(keep) if removed else dataset), removed


def _save(target: Path, train: Any, evaluation: Any, stats: PreparationStats, config_yaml: str) -> None:
    """Write to a temporary folder and rename, so a crash never leaves a half-written cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        train.save_to_disk(str(staging / "train"))
        if evaluation is not None:
            evaluation.save_to_disk(str(staging / "eval"))
        (staging / STATS_FILE).write_text(json.dumps(stats.to_dict(), indent=2))
        (staging / RESOLVED_CONFIG_NAME).write_text(config_yaml)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_prepared(target: Path, train: Any, evaluation: Any, stats: PreparationStats,
                  cfg: AxolotlConfig) -> PreparedData:
    """Save the prepared splits under `target` and hand back the saved copy, so the cache files
    the preparation wrote along the way can go (see `scratch.py`)."""
    _save(target, train, evaluation, stats, resolved_yaml(cfg))
    saved = _open_prepared(target, stats, in_memory=bool(cfg.dataset_keep_in_memory))
    removed = remove_scratch_files([train, evaluation])
    if removed:
        LOG.debug("removed %d intermediate cache files", removed)
    return saved


def load_prepared(target: Path, in_memory: bool = False) -> PreparedData:
    """Prepared data an earlier run saved under `target`."""
    raw = json.loads((target / STATS_FILE).read_text())
    per_dataset = [DatasetStats(**item) for item in raw.pop("datasets")]
    raw["length_histogram"] = [tuple(item) for item in raw["length_histogram"]]
    stats = PreparationStats(datasets=per_dataset, **raw)
    stats.reused_cache = True
    return _open_prepared(target, stats, in_memory)


def _open_prepared(target: Path, stats: PreparationStats, in_memory: bool) -> PreparedData:
    import datasets

    train = datasets.load_from_disk(str(target / "train"), keep_in_memory=in_memory)
    evaluation = (datasets.load_from_disk(str(target / "eval"), keep_in_memory=in_memory)
                  if (target / "eval").is_dir() else None)
    return PreparedData(train, evaluation, stats, target)

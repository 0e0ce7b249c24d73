"""Prepared data for `reward_model: true`: per dataset entry, load rows, tokenize pairs and apply
the length rules in ONE `datasets.map` pass (dropped pairs are counted by reason); then merge,
deduplicate, shuffle and split like SFT data. Caching, fingerprinting and saving are the SFT
pipeline's (`axolotl.data.pipeline.prepare_datasets` calls `prepare_pairs`).

Columns: `chosen_ids`, `rejected_ids`, `length` (the longer side: length grouping and the
histogram) and `n_trained` (2: one score per side; dropped before saving).

Length rules, per side: longer than `sequence_len` -> `excess_length_strategy` (drop, the default;
truncate both sides; raise); shorter than `min_sample_len` -> dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from axolotl.data.errors import DataError
from axolotl.data.pipeline import (
    DEFAULT_SEED,
    DROP_REASON,
    _workers,
    drop_rejected,
    entry_rows,
    int_column,
    merge_and_split,
)
from axolotl.data.reward.bradley_terry import PAIR_STRATEGIES, PairStrategy, TokenizedPairs
from axolotl.data.scratch import fresh_fingerprint
from axolotl.data.stats import DatasetStats, PreparationStats, length_histogram
from axolotl.data.strategies.base import StrategyContext
from axolotl.data.tokenized_rows import LengthLimits, run_naming_failed_row

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

PAIR_COLUMNS = ("chosen_ids", "rejected_ids", "length", "n_trained")
SCORES_PER_PAIR = 2


def pair_strategy(ctx: StrategyContext) -> PairStrategy:
    kind = ctx.dataset.type
    factory = PAIR_STRATEGIES.get(kind) if isinstance(kind, str) else None
    if factory is None:
        raise DataError(f"dataset `{ctx.dataset.path}`: type `{kind}` is not a reward-model pair format; "
                        f"use one of {sorted(PAIR_STRATEGIES)}")
    return factory(ctx)


def prepare_pairs(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase) -> tuple[Any, Any, PreparationStats]:
    """(train, eval or None, stats) for a reward-model config."""
    if cfg.sample_packing:
        raise DataError("`sample_packing` does not apply to reward-model pairs (each pair is padded on its own); "
                        "remove it")
    seed = cfg.seed if cfg.seed is not None else DEFAULT_SEED
    stats = PreparationStats()
    train, evaluation = merge_and_split(cfg, tokenizer, tokenize_pairs, deduplicate_pairs, seed, stats)
    lengths = int_column(train, "length")
    stats.train_rows = len(train)
    stats.eval_rows = len(evaluation) if evaluation is not None else 0
    stats.train_tokens = _pair_tokens(train)
    stats.train_trained_tokens = int(int_column(train, "n_trained").sum())
    stats.length_histogram = length_histogram(lengths)
    train = train.remove_columns(["n_trained"])
    evaluation = evaluation.remove_columns(["n_trained"]) if evaluation is not None else None
    return train, evaluation, stats


def _pair_tokens(dataset: Any) -> int:
    table = dataset.with_format("arrow")[:]
    return sum(int(table[column].combine_chunks().value_lengths().to_numpy().sum())
               for column in ("chosen_ids", "rejected_ids")) if len(dataset) else 0


def tokenize_pairs(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, entry: Any, index: int,
                   role: str = "train") -> tuple[Any, DatasetStats]:
    """Tokenize one dataset entry into pairs, applying the length rules in the same pass."""
    name = entry.path or f"{role} dataset {index}"
    rows, stats = entry_rows(entry, name)
    ctx = StrategyContext(tokenizer=tokenizer, cfg=cfg, dataset=entry)
    pair_strategy(ctx)  # an unknown type fails here, before any worker starts
    workers = _workers(cfg, len(rows))
    mapped = rows.map(TokenizePairRows(ctx, name), batched=True, with_indices=True, num_proc=workers,
                      remove_columns=rows.column_names, load_from_cache_file=False,
                      keep_in_memory=bool(cfg.dataset_keep_in_memory), desc=f"tokenizing {name}",
                      new_fingerprint=fresh_fingerprint())
    kept = drop_rejected(mapped, stats, workers)
    stats.tokens = _pair_tokens(kept)
    stats.trained_tokens = SCORES_PER_PAIR * stats.rows_out
    return kept.remove_columns([DROP_REASON]), stats


class TokenizePairRows:
    """The `datasets.map` function: pair strategy + length rules, picklable for worker processes."""

    def __init__(self, ctx: StrategyContext, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.rules = PairLengthRules(ctx.cfg, name)
        self._strategy: PairStrategy | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_strategy": None}

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        if self._strategy is None:
            self._strategy = pair_strategy(self.ctx)
        return self.rules.apply(run_naming_failed_row(self._strategy, batch, indices, self.name), indices)


class PairLengthRules(LengthLimits):
    """`sequence_len` / `excess_length_strategy` / `min_sample_len`, applied to each side of a pair."""

    def apply(self, pairs: TokenizedPairs, indices: list[int]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {column: [] for column in (*PAIR_COLUMNS, "drop_reason")}
        for chosen, rejected, source in zip(pairs.chosen_ids, pairs.rejected_ids, pairs.source_index, strict=True):
            chosen, rejected, reason = self._check(chosen, rejected, indices[source])
            self._emit(out, chosen, rejected, reason)
        for _, reason in pairs.dropped:
            self._emit(out, [], [], reason)
        return out

    def _check(self, chosen: list[int], rejected: list[int], row: int) -> tuple[list[int], list[int], str]:
        longest = max(len(chosen), len(rejected))
        if longest > self.limit:
            if self.strategy == "truncate":
                chosen, rejected = chosen[: self.limit], rejected[: self.limit]
                if chosen == rejected:
                    return chosen, rejected, f"chosen and rejected identical within sequence_len ({self.limit})"
            elif self.strategy == "raise":
                raise DataError(f"dataset `{self.name}`, row {row}: a side of {longest} tokens exceeds sequence_len "
                                f"{self.limit} (excess_length_strategy: raise)")
            else:
                return chosen, rejected, f"longer than sequence_len ({self.limit})"
        if min(len(chosen), len(rejected)) < self.min_len:
            return chosen, rejected, f"shorter than min_sample_len ({self.min_len})"
        return chosen, rejected, ""

    @staticmethod
    def _emit(out: dict[str, list[Any]], chosen: list[int], rejected: list[int], reason: str) -> None:
        kept = reason == ""
        out["chosen_ids"].append(chosen if kept else [])
        out["rejected_ids"].append(rejected if kept else [])
        out["length"].append(max(len(chosen), len(rejected)) if kept else 0)
        out["n_trained"].append(SCORES_PER_PAIR if kept else 0)
        out["drop_reason"].append(reason)


def deduplicate_pairs(dataset: Any) -> tuple[Any, int]:
    """Drop pairs whose chosen and rejected ids both equal an earlier pair's."""
    seen: set[int] = set()
    keep: list[int] = []
    table = dataset.with_format("arrow")[:]
    rows = zip(table["chosen_ids"].to_pylist(), table["rejected_ids"].to_pylist(), strict=True)
    for position, (chosen, rejected) in enumerate(rows):
        digest = hash((tuple(chosen), tuple(rejected)))
        if digest not in seen:
            seen.add(digest)
            keep.append(position)
    removed = len(dataset) - len(keep)
    return (dataset.select(keep) if removed else dataset), removed

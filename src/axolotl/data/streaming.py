"""Streamed data: `pretraining_dataset` and `streaming: true`, tokenized on the fly.

Streams have no length, so nothing is cached and `max_steps` bounds training (a validation
rule). Rows go through the same strategies and length rules as prepared data; pretraining text
is tokenized like `completion` (bos + text + eos), optionally concatenated across documents
into full `sequence_len` rows (`pretraining_sample_concatenation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from axolotl.data.errors import DataError
from axolotl.data.pipeline import DEFAULT_SEED
from axolotl.data.sources import load_rows
from axolotl.data.strategies.base import StrategyContext
from axolotl.data.tokenized_rows import TokenizeRows

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

SHUFFLE_BUFFER = 10_000


def stream_training_rows(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase) -> Any:
    """A `datasets.IterableDataset` of tokenized training rows (input_ids, labels, attention_mask)."""
    import datasets

    if cfg.pretraining_dataset:
        streams = [_pretraining_stream(cfg, tokenizer, entry) for entry in cfg.pretraining_dataset]
    elif cfg.datasets:
        streams = [_sft_stream(cfg, tokenizer, entry, index) for index, entry in enumerate(cfg.datasets)]
    else:
        raise DataError("the config has no `datasets` or `pretraining_dataset` to stream")
    merged = datasets.interleave_datasets(streams) if len(streams) > 1 else streams[0]
    if cfg.shuffle_merged_datasets:
        seed = cfg.seed if cfg.seed is not None else DEFAULT_SEED
        merged = merged.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)
    return merged


def _sft_stream(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, entry: Any, index: int) -> Any:
    rows = load_rows(entry, streaming=True)
    name = entry.path or f"dataset {index}"
    function = TokenizeRows(StrategyContext(tokenizer=tokenizer, cfg=cfg, dataset=entry), name)
    columns = _column_names(rows)
    mapped = rows.map(function, batched=True, with_indices=True, remove_columns=columns)
    kept = mapped.filter(lambda reason: reason == "", input_columns=["drop_reason"])
    return kept.remove_columns(["drop_reason", "n_trained", "length"])


def _column_names(rows: Any) -> list[str] | None:
    features = getattr(rows, "features", None)
    return list(features) if features else getattr(rows, "column_names", None)


def _pretraining_stream(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, entry: Any) -> Any:
    import datasets

    if entry.type not in (None, "pretrain"):
        return _sft_stream(cfg, tokenizer, entry, 0)
    settings = {"entry": entry, "tokenizer": tokenizer, "sequence_len": cfg.sequence_len,
                "concatenate": bool(cfg.pretraining_sample_concatenation)}
    return datasets.IterableDataset.from_generator(_pretraining_rows, gen_kwargs=settings)


def _pretraining_rows(entry: Any, tokenizer: PreTrainedTokenizerBase, sequence_len: int,
                      concatenate: bool) -> Iterator[dict[str, list[int]]]:
    """Module-level (picklable) generator: `datasets` fingerprints and may re-run it per epoch."""
    rows = load_rows(entry, streaming=True)
    if entry.skip:
        rows = rows.skip(entry.skip)
    documents = _token_documents(rows, tokenizer, entry.text_column or "text", entry.path)
    chunks = concatenated_chunks(documents, sequence_len) if concatenate else split_chunks(documents, sequence_len)
    for ids in chunks:
        yield {"input_ids": ids, "labels": list(ids), "attention_mask": [1] * len(ids)}


def _token_documents(rows: Iterable[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, column: str,
                     name: str | None) -> Iterator[list[int]]:
    """bos + text + eos per document (the tokenizer decides whether it adds a bos)."""
    for index, row in enumerate(rows):
        text = row.get(column)
        if not isinstance(text, str):
            raise DataError(f"pretraining dataset `{name}`, row {index}: column `{column}` is missing or not text "
                            "(set `text_column`)")
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
            ids.append(tokenizer.eos_token_id)
        yield ids


def concatenated_chunks(documents: Iterable[list[int]], size: int) -> Iterator[list[int]]:
    """Documents laid end to end and cut into rows of exactly `size` (the last partial row is kept)."""
    buffer: list[int] = []
    for ids in documents:
        buffer.extend(ids)
        while len(buffer) >= size:
            yield buffer[:size]
            buffer = buffer[size:]
    if buffer:
        yield buffer


def split_chunks(documents: Iterable[list[int]], size: int) -> Iterator[list[int]]:
    """Each document on its own rows: long documents are split into `size`-token pieces."""
    for ids in documents:
        for start in range(0, len(ids), size):
            yield ids[start:start + size]

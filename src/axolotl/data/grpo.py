"""GRPO prompts: dataset entries -> prepared train/eval splits with a `prompt` column, cached on disk.

GRPO generates its own completions, so preparation only builds prompts (nothing is tokenized
for training). Per entry: load rows, apply its `type:` transform, check every row's `prompt`
and, unless `skip_prepare_dataset: true`, measure it and apply the length rule. Then merge,
deduplicate, shuffle and split as every other method does (`merge_and_split`), and save under
`dataset_prepared_path/<key>`.

`type:` is either unset (the rows already hold a `prompt`) or `module.function` of your own,
imported from the working directory or the config's folder and called as
`function(cfg, dataset_idx=i)`. It returns a row function, or `(row_function, {"remove_columns":
[...]})`; `"__all__"` removes every original column (only what the row function returns is
kept). The row function gets the row (and `tokenizer=` when it takes that parameter) and returns
the new or changed columns. Every column left besides `prompt` reaches the reward functions as
a keyword argument, one value per completion.

`prompt` is either text or a conversation (a list of `{"role", "content"}` messages, rendered by
the chat template with the generation prompt, as TRL does). Length rule: a prompt longer than
`max_prompt_len` (default `sequence_len`) tokens is dropped (`excess_length_strategy: raise`
stops instead); `skip_prepare_dataset: true` keeps every prompt and measures none.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axolotl.data.errors import DataError
from axolotl.data.fingerprint import dataset_fingerprint
from axolotl.data.pipeline import (
    DEFAULT_PREPARED_PATH,
    DEFAULT_SEED,
    PreparedData,
    _workers,
    drop_rejected,
    entry_rows,
    int_column,
    load_prepared,
    merge_and_split,
    save_prepared,
)
from axolotl.data.scratch import fresh_fingerprint
from axolotl.data.stats import DatasetStats, PreparationStats, length_histogram
from axolotl.data.user_code import UserCodeError, import_dotted

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)
GRPO_FORMAT_VERSION = 1
"""Bump when preparation produces different rows for the same inputs."""
ALL_COLUMNS = "__all__"
"""`remove_columns` value that removes every original column."""
TOKENS = "__prompt_tokens"
DROP = "__drop_reason"
OUT = "__out__"
"""Prefix of the transform's output columns until they replace the originals."""
ENTRY_KEYS = frozenset({"path", "split", "data_files", "revision", "trust_remote_code", "type", "name", "ds_type",
                        "shards", "shards_idx"})
"""Keys of a dataset entry that GRPO reads; the others belong to SFT prompt strategies."""
MAP_KWARGS = frozenset({"remove_columns"})

Transform = Callable[..., dict[str, Any]]


def prepare_grpo_datasets(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Prepared train/eval prompt splits of an `rl: grpo` config, reused from the cache when the key matches."""
    if cfg.rl is None or str(cfg.rl) != "grpo":
        raise DataError("GRPO prompt datasets are for `rl: grpo` configs")
    if not cfg.datasets:
        raise DataError("the config has no `datasets` to prepare")
    for list_key in ("datasets", "test_datasets"):
        for index, entry in enumerate(getattr(cfg, list_key) or []):
            check_entry(entry, f"{list_key}[{index}]")
    if cfg.excess_length_strategy not in (None, "drop", "raise"):
        raise DataError(f"`excess_length_strategy: {cfg.excess_length_strategy}` is not supported yet for GRPO "
                        "prompts (a cut prompt would lose the question); use `drop` (default) or `raise`")
    return prepare_or_reuse(cfg, tokenizer, grpo_fingerprint(cfg, tokenizer), "GRPO", prepare_entry,
                            histogram=not cfg.skip_prepare_dataset)


def prepare_or_reuse(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, key: str, method: str,
                     prepare: Callable[..., Any], *, histogram: bool = True,
                     finish: Callable[[Any, PreparationStats], None] | None = None) -> PreparedData:
    """The cache lookup, merge/split, statistics and atomic save shared by the transform-based
    preparations (GRPO prompts, EBFT documents): only the per-entry `prepare` and the key differ.
    `finish` adds method-specific statistics before the token-count column is dropped."""
    target = Path(cfg.dataset_prepared_path or DEFAULT_PREPARED_PATH).expanduser().resolve() / key
    if cfg.dataset_prepared_path and target.is_dir():
        LOG.info("reusing prepared data at %s", target)
        return load_prepared(target, bool(cfg.dataset_keep_in_memory))
    seed = cfg.seed if cfg.seed is not None else DEFAULT_SEED
    stats = PreparationStats()
    try:
        train, evaluation = merge_and_split(cfg, tokenizer, prepare, deduplicate, seed, stats)
    except ValueError as error:
        if "concatenate" not in str(error) and "features" not in str(error).lower():
            raise
        raise DataError(f"the {method} datasets produce different columns or column types, so they cannot be merged "
                        f"({str(error).splitlines()[0]}); return the same columns from every transform") from None
    lengths = int_column(train, TOKENS)
    stats.train_rows, stats.eval_rows = len(train), len(evaluation) if evaluation is not None else 0
    stats.train_tokens = int(lengths.sum())
    stats.length_histogram = length_histogram(lengths) if histogram else []
    if finish is not None:
        finish(train, stats)
    train = train.remove_columns([TOKENS])
    evaluation = evaluation.remove_columns([TOKENS]) if evaluation is not None else None
    return save_prepared(target, train, evaluation, stats, cfg)


def check_entry(entry: Any, where: str) -> None:
    """SFT-only keys on a GRPO entry would be ignored: refuse them by name."""
    check_transform_entry(entry, where, "GRPO", fix="build the prompt in a `type: module.function` transform instead",
                          accepted="a `module.function` transform of your own (or no type when rows already hold "
                                   "`prompt`)")


def check_transform_entry(entry: Any, where: str, method: str, *, fix: str, accepted: str) -> None:
    """The entry checks of the transform-based preparations (GRPO, EBFT): keys of SFT prompt
    strategies would be ignored, and `type:` must name a dotted transform."""
    ignored = sorted(key for key in entry.model_fields_set if key not in ENTRY_KEYS
                     and getattr(entry, key) not in (None, False, [], {}))
    if ignored:
        raise DataError(f"`{where}`: {', '.join(ignored)} not supported yet for {method} datasets (they configure SFT "
                        f"prompt strategies); {fix}")
    if entry.type is not None and not (isinstance(entry.type, str) and "." in entry.type):
        raise DataError(f"`{where}.type`: {method} datasets take {accepted}, not {entry.type!r}")


def grpo_fingerprint(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase) -> str:
    """The SFT key (entries, file contents, tokenizer, length and split settings) plus what only GRPO
    preparation reads: the transforms' source files, `trl.chat_template_kwargs` and the skip flag."""
    sources = [_module_digest(entry.type, f"{list_key}[{index}].type", cfg)
               for list_key in ("datasets", "test_datasets")
               for index, entry in enumerate(getattr(cfg, list_key) or []) if isinstance(entry.type, str)]
    extra = json.dumps({"base": dataset_fingerprint(cfg, tokenizer), "v": GRPO_FORMAT_VERSION,
                        "skip": bool(cfg.skip_prepare_dataset), "sources": sources,
                        "chat_template_kwargs": cfg.trl.chat_template_kwargs}, sort_keys=True, default=str)
    return hashlib.sha256(extra.encode()).hexdigest()[:32]


def _module_digest(dotted: str, key: str, cfg: AxolotlConfig) -> str:
    """The transform's module file content, so editing rewards.py prepares the data again."""
    try:
        function = import_dotted(dotted, key, cfg)
    except UserCodeError as error:
        raise DataError(str(error)) from None
    try:
        source = inspect.getsourcefile(function)
        return hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else dotted
    except (TypeError, OSError):
        return dotted


def resolve_transform(entry: Any, index: int, cfg: AxolotlConfig, where: str) -> tuple[Transform | None, Any]:
    """(row function or None, remove_columns) of an entry's `type:`."""
    if entry.type is None:
        return None, None
    try:
        factory = import_dotted(entry.type, f"{where}.type", cfg)
    except UserCodeError as error:
        raise DataError(str(error)) from None
    try:
        made = factory(cfg, dataset_idx=index)
    except Exception as exc:
        raise DataError(f"`{where}.type: {entry.type}` raised {type(exc).__name__}: {exc}") from exc
    transform, options = (made if isinstance(made, tuple) and len(made) == 2 else (made, {}))
    if not callable(transform) or not isinstance(options, dict):
        raise DataError(f"`{where}.type: {entry.type}` must return a row function or (row function, "
                        f"{{'remove_columns': [...]}}), not {type(made).__name__}")
    unknown = sorted(set(options) - MAP_KWARGS)
    if unknown:
        raise DataError(f"`{where}.type: {entry.type}` returned map options {unknown}: not supported yet (only "
                        "`remove_columns`)")
    return transform, options.get("remove_columns")


class ApplyTransform:
    """The `datasets.map` function: the user's row function, with failures located by row."""

    def __init__(self, transform: Transform, dotted: str, name: str, tokenizer: PreTrainedTokenizerBase) -> None:
        self.transform = transform
        self.dotted = dotted
        self.name = name
        self.tokenizer = tokenizer
        parameters = inspect.signature(transform).parameters
        self.pass_tokenizer = "tokenizer" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())

    def __call__(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        try:
            result = self.transform(row, tokenizer=self.tokenizer) if self.pass_tokenizer else self.transform(row)
        except Exception as exc:
            raise DataError(f"dataset `{self.name}`, row {index}: type `{self.dotted}` failed: "
                            f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(result, dict):
            raise DataError(f"dataset `{self.name}`, row {index}: type `{self.dotted}` returned "
                            f"{type(result).__name__}, not a dict of columns")
        return {OUT + column: value for column, value in result.items()}


def prompt_problem(prompt: Any) -> str | None:
    """Why `prompt` is not a text or a conversation TRL can render, else None."""
    if isinstance(prompt, str):
        return None if prompt else "`prompt` is empty"
    if prompt is None:
        return "`prompt` is missing (null)"
    if not isinstance(prompt, list) or not prompt:
        kind = "an empty list" if prompt == [] else f"a {type(prompt).__name__}"
        return f"`prompt` must be text or a list of messages, not {kind}"
    for position, message in enumerate(prompt):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"`prompt` message {position} must be a mapping with a text `role`"
        if not isinstance(message.get("content"), str):
            return (f"`prompt` message {position} has no text `content` (got {type(message.get('content')).__name__}"
                    "; multimodal content is not supported yet)")
    return None


class MeasurePrompts:
    """Batched `datasets.map` function: check each prompt and count its tokens as the trainer renders it."""

    def __init__(self, cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, name: str) -> None:
        self.tokenizer = tokenizer
        self.name = name
        self.measure = not cfg.skip_prepare_dataset
        self.limit = cfg.max_prompt_len or cfg.sequence_len
        self.limit_key = "max_prompt_len" if cfg.max_prompt_len else "sequence_len"
        self.strategy = cfg.excess_length_strategy or "drop"
        self.template_kwargs = dict(cfg.trl.chat_template_kwargs or {})

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        prompts = batch["prompt"]
        for prompt, index in zip(prompts, indices, strict=True):
            problem = prompt_problem(prompt)
            if problem:
                raise DataError(f"dataset `{self.name}`, row {index}: {problem}")
        sizes = self._sizes(prompts) if self.measure else [0] * len(prompts)
        reasons = []
        for size, index in zip(sizes, indices, strict=True):
            if size <= self.limit:
                reasons.append("")
            elif self.strategy == "raise":
                raise DataError(f"dataset `{self.name}`, row {index}: the prompt is {size} tokens, more than "
                                f"{self.limit_key} {self.limit} (excess_length_strategy: raise)")
            else:
                reasons.append(f"prompt longer than {self.limit_key} ({self.limit})")
        return {TOKENS: sizes, DROP: reasons}

    def _sizes(self, prompts: list[Any]) -> list[int]:
        if isinstance(prompts[0], str):
            return [len(ids) for ids in self.tokenizer(prompts)["input_ids"]]
        if any(isinstance(prompt, str) for prompt in prompts):
            raise DataError(f"dataset `{self.name}`: mixes text and conversation prompts; use one shape")
        encoded = self.tokenizer.apply_chat_template(prompts, add_generation_prompt=True, tokenize=True,
                                                     return_dict=True, **self.template_kwargs)
        return [len(ids) for ids in encoded["input_ids"]]


def transformed_rows(rows: Any, transform: Transform, remove: Any, entry_type: str | None, where: str,
                     name: str, tokenizer: Any, common: dict[str, Any]) -> Any:
    """`rows` with the entry's transform applied and `remove` (a column, a list, or `"__all__"`)
    dropped; shared by GRPO and EBFT entries."""
    removed = rows.column_names if remove == ALL_COLUMNS else [remove] if isinstance(remove, str) else remove
    missing = sorted(set(removed or []) - set(rows.column_names))
    if missing:
        raise DataError(f"`{where}.type: {entry_type}` removes columns {missing} that dataset `{name}` does not "
                        f"have (it has: {', '.join(rows.column_names)})")
    apply = ApplyTransform(transform, entry_type, name, tokenizer)
    # `datasets` keeps an existing column's type when a map rewrites it (an int `answer` returned as
    # text would come back as an int), so outputs are written under new names and renamed after
    outputs = [column[len(OUT):] for column in apply(dict(rows[0]), 0)]
    removed = list(dict.fromkeys([*(removed or []), *(c for c in outputs if c in rows.column_names)]))
    rows = rows.map(apply, with_indices=True, remove_columns=removed, desc=f"transforming {name}",
                    new_fingerprint=fresh_fingerprint(), **common)
    return rows.rename_columns({column: column[len(OUT):] for column in rows.column_names if column.startswith(OUT)})


def prepare_entry(cfg: AxolotlConfig, tokenizer: PreTrainedTokenizerBase, entry: Any, index: int,
                  role: str = "train") -> tuple[Any, DatasetStats]:
    """Load, transform, check and measure one dataset entry (`merge_and_split`'s per-entry step)."""
    where = f"{'datasets' if role == 'train' else 'test_datasets'}[{index}]"
    name = entry.path or where
    rows, stats = entry_rows(entry, name)
    workers = _workers(cfg, len(rows))
    common = {"num_proc": workers, "load_from_cache_file": False, "keep_in_memory": bool(cfg.dataset_keep_in_memory)}
    transform, remove = resolve_transform(entry, index, cfg, where)
    if transform is not None:
        rows = transformed_rows(rows, transform, remove, entry.type, where, name, tokenizer, common)
    if "prompt" not in rows.column_names:
        source = f"`type: {entry.type}`" if entry.type else "loading (no `type:`)"
        raise DataError(f"dataset `{name}`: no `prompt` column after {source} (columns: "
                        f"{', '.join(rows.column_names)}); return a `prompt` from a `module.function` transform")
    measured = rows.map(MeasurePrompts(cfg, tokenizer, name), batched=True, with_indices=True,
                        desc=f"checking prompts of {name}", new_fingerprint=fresh_fingerprint(), **common)
    measured = drop_rejected(measured, stats, workers, column=DROP)
    stats.tokens = int(int_column(measured, TOKENS).sum())
    return measured.remove_columns([DROP]), stats


def deduplicate(dataset: Any) -> tuple[Any, int]:
    """Drop rows whose every column equals an earlier row's."""
    seen: set[str] = set()
    keep: list[int] = []
    for position, row in enumerate(dataset.remove_columns([TOKENS])):
        digest = json.dumps(row, sort_keys=True, default=str)
        if digest not in seen:
            seen.add(digest)
            keep.append(position)
    removed = len(dataset) - len(keep)
    return (dataset.select(keep) if removed else dataset), removed


def render_grpo_examples(tokenizer: PreTrainedTokenizerBase, rows: Any, count: int,
                         template_kwargs: dict[str, Any] | None = None) -> str:
    """The first `count` prompts as the trainer will feed them to generation, with their other columns
    (what the reward functions receive), for `axolotl preprocess --debug`."""
    blocks = []
    for index in range(min(count, len(rows))):
        row = dict(rows[index])
        prompt = row.pop("prompt")
        text = prompt if isinstance(prompt, str) else tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=False, **(template_kwargs or {}))
        columns = "\n".join(f"  {key}: {value!r:.200}" for key, value in row.items()) or "  (none)"
        blocks.append(f"--- prompt {index} (as generation sees it) ---\n{text}\n--- reward-function columns ---\n{columns}")
    return "\n".join(blocks)

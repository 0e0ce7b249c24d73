"""What a preference format is: a function from one raw row to its rendered TEXT columns.

Pairwise methods (`rl: dpo | ipo | orpo | simpo`) get `prompt`, `chosen`, `rejected`; KTO gets
`prompt`, `completion` and a boolean `label`. Nothing is tokenized here: the TRL trainers
tokenize prompt and responses themselves. A format raises `RowError` naming the field for a bad
row; the pipeline adds the dataset and the row index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from axolotl.config.enums import PAIRWISE_PREFERENCE_METHODS, RLType
from axolotl.data.errors import RowError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

PAIRS = "pairs"
UNPAIRED = "kto"
COLUMNS = {PAIRS: ("prompt", "chosen", "rejected"), UNPAIRED: ("prompt", "completion", "label")}
"""The columns each kind of method reads; every format produces exactly these."""

Row = dict[str, Any]
RowFormat = Callable[[Row], Row]


def preference_kind(cfg: AxolotlConfig) -> str | None:
    """`pairs` for DPO/IPO/ORPO/SimPO, `kto` for KTO, None for anything else."""
    if cfg.rl in PAIRWISE_PREFERENCE_METHODS:
        return PAIRS
    if cfg.rl == RLType.KTO:
        return UNPAIRED
    return None


@dataclass(frozen=True)
class PreferenceContext:
    """Everything a format may read: the tokenizer, the run config and its dataset entry."""

    tokenizer: PreTrainedTokenizerBase
    cfg: AxolotlConfig
    dataset: Any
    """A `DPODataset` or `KTODataset` entry."""
    kind: str
    index: int = 0
    """Position of the entry in its list (`datasets` or `test_datasets`)."""

    @property
    def name(self) -> str:
        return self.dataset.path or f"dataset {self.index}"

    def option(self, key: str, default: Any = None) -> Any:
        """A key of the inline `type:` mapping, else of the entry itself, else `default`."""
        inline = self.dataset.type if not isinstance(self.dataset.type, (str, type(None))) else None
        for source in (inline, self.dataset):
            value = getattr(source, key, None) if source is not None else None
            if value not in (None, ""):
                return value
        return default


def text(row: Row, field: str) -> str:
    """The row's text in `field`: missing, null or non-text values are errors naming the field."""
    if field not in row:
        raise RowError(f"missing `{field}` (the row has: {', '.join(sorted(row)) or 'no columns'})", field)
    value = row[field]
    if value is None:
        raise RowError(f"missing `{field}` (null)", field)
    if not isinstance(value, str):
        raise RowError(f"`{field}` must be text, not {_kind(value)}", field)
    return value


def optional_text(row: Row, field: str) -> str | None:
    """Text in `field` when the row has a non-empty one (an optional system prompt), else None."""
    value = row.get(field)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise RowError(f"`{field}` must be text, not {_kind(value)}", field)
    return value


def message_list(row: Row, field: str, at_least: int = 1) -> list[Any]:
    """The list of messages in `field`, with at least `at_least` of them."""
    if field not in row:
        raise RowError(f"missing `{field}` (the row has: {', '.join(sorted(row)) or 'no columns'})", field)
    value = row[field]
    if not isinstance(value, list):
        raise RowError(f"`{field}` must be a list of messages, not {_kind(value)}", field)
    if len(value) < at_least:
        raise RowError(f"`{field}` has {len(value)} message(s); this format needs at least {at_least}", field)
    return value


def message_content(messages: list[Any], position: int, field: str, key: str = "content") -> str:
    """The text of message `position` (negative counts from the end) of the list in `field`."""
    message = messages[position]
    where = len(messages) + position if position < 0 else position
    if not isinstance(message, dict):
        raise RowError(f"`{field}` message {where} is {_kind(message)}, not a mapping", field)
    value = message.get(key)
    if not isinstance(value, str):
        raise RowError(f"`{field}` message {where} has no text `{key}` (got {_kind(value)})", field)
    return value


def label(row: Row, field: str) -> bool:
    """A KTO label: true/false (also 1/0 and the words "true"/"false")."""
    if field not in row:
        raise RowError(f"missing `{field}` (the row has: {', '.join(sorted(row)) or 'no columns'})", field)
    value = row[field]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise RowError(f"`{field}` must be true or false (desirable or not), not {value!r}", field)


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"

"""No `type:` (or `type: passthrough`): the rows already hold the rendered text columns,
`prompt`/`chosen`/`rejected` (KTO: `prompt`/`completion`/`label`); they are used as they are.
"""

from __future__ import annotations

from axolotl.data.preference.base import PAIRS, UNPAIRED, PreferenceContext, Row, RowFormat, label, text
from axolotl.data.preference.registry import PASSTHROUGH, register


def pairs(row: Row) -> Row:
    return {"prompt": text(row, "prompt"), "chosen": text(row, "chosen"), "rejected": text(row, "rejected")}


def unpaired(row: Row) -> Row:
    return {"prompt": text(row, "prompt"), "completion": text(row, "completion"), "label": label(row, "label")}


@register(PAIRS, PASSTHROUGH)
def pairs_format(ctx: PreferenceContext) -> RowFormat:
    return pairs


@register(UNPAIRED, PASSTHROUGH)
def unpaired_format(ctx: PreferenceContext) -> RowFormat:
    return unpaired

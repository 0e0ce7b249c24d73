"""`type: user_defined.default`, or an inline `type:` mapping: the columns and text formats are
given in the config.

DPO keys (defaults in brackets): `field_prompt` [prompt], `field_system` [system], `field_chosen`
[chosen], `field_rejected` [rejected], `prompt_format` [`{prompt}`], `chosen_format`
[`{chosen}`], `rejected_format` [`{rejected}`].
KTO keys: `field_prompt`, `field_system`, `field_completion` [completion], `field_label` [label],
`prompt_format`, `completion_format` [`{completion}`].

A format names the row's values by role (`{prompt}`, `{system}`, `{chosen}`, `{rejected}`,
`{completion}`) or by the configured column name (`{question}` with `field_prompt: question`).
`{system}` is empty when the row has no system text. The keys are read from the `type:` mapping
first, then from the dataset entry.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from axolotl.data.errors import DataError
from axolotl.data.preference.base import (
    PAIRS,
    UNPAIRED,
    PreferenceContext,
    Row,
    RowFormat,
    label,
    optional_text,
    text,
)
from axolotl.data.preference.registry import USER_DEFINED, register


@dataclass(frozen=True)
class Slot:
    """One value of the row: its role name (the placeholder) and the column it comes from."""

    role: str
    column: str


def _placeholders(fmt: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None}


class FormattedRow:
    """Fills each output column's format with the row's values."""

    def __init__(self, ctx: PreferenceContext, slots: list[Slot], formats: dict[str, str]) -> None:
        self.slots = slots
        self.system = Slot("system", ctx.option("field_system", "system"))
        self.formats = formats
        known = {name for slot in [*slots, self.system] for name in (slot.role, slot.column)}
        used: set[str] = set()
        for key, fmt in formats.items():
            try:
                unknown = _placeholders(fmt) - known
            except ValueError as exc:
                raise DataError(f"dataset `{ctx.name}`: `{key}_format: {fmt!r}` is not a valid format ({exc})") from None
            if unknown:
                raise DataError(f"dataset `{ctx.name}`: `{key}_format` uses {{{min(unknown)}}}; it can use "
                                + ", ".join(f"{{{name}}}" for name in sorted(known)))
            used |= _placeholders(fmt)
        self.uses_system = bool(used & {self.system.role, self.system.column})

    def values(self, row: Row) -> dict[str, str]:
        values = {}
        for slot in self.slots:
            values[slot.role] = values[slot.column] = text(row, slot.column)
        if self.uses_system:
            system = optional_text(row, self.system.column) or ""
            values[self.system.role] = values[self.system.column] = system
        return values

    def render(self, row: Row) -> Row:
        values = self.values(row)
        return {key: fmt.format_map(values) for key, fmt in self.formats.items()}


@register(PAIRS, USER_DEFINED)
def pairs_format(ctx: PreferenceContext) -> RowFormat:
    slots = [Slot("prompt", ctx.option("field_prompt", "prompt")), Slot("chosen", ctx.option("field_chosen", "chosen")),
             Slot("rejected", ctx.option("field_rejected", "rejected"))]
    formats = {"prompt": ctx.option("prompt_format", "{prompt}"), "chosen": ctx.option("chosen_format", "{chosen}"),
               "rejected": ctx.option("rejected_format", "{rejected}")}
    return FormattedRow(ctx, slots, formats).render


@register(UNPAIRED, USER_DEFINED)
def unpaired_format(ctx: PreferenceContext) -> RowFormat:
    field_label = ctx.option("field_label", "label")
    if not isinstance(field_label, str):
        raise DataError(f"dataset `{ctx.name}`: `field_label` names the label column (e.g. `label`), "
                        f"not {field_label!r}")
    slots = [Slot("prompt", ctx.option("field_prompt", "prompt")),
             Slot("completion", ctx.option("field_completion", "completion"))]
    formats = {"prompt": ctx.option("prompt_format", "{prompt}"),
               "completion": ctx.option("completion_format", "{completion}")}
    formatted = FormattedRow(ctx, slots, formats)

    def render(row: Row) -> Row:
        return {**formatted.render(row), "label": label(row, field_label)}

    return render

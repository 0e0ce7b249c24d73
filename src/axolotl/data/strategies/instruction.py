"""Instruction datasets (alpaca and its relatives, and inline user-defined formats).

Every type is one `InstructionFormat` (see `instruction_formats.py`) run through the same
tokenizing function, which reproduces the reference token for token:

- the user prompt (system part + turn, up to the response header) is tokenized WITH the
  tokenizer's special tokens (so it starts with BOS when the tokenizer adds one), truncated to
  `sequence_len`, with no EOS;
- the response is tokenized separately, also truncated to `sequence_len`, EOS appended when it
  is not already last and there is room, then a leading BOS removed;
- input_ids = prompt + response; labels mask the prompt unless `train_on_inputs`.

An empty text contributes no tokens at all (not even BOS/EOS), as in the reference (metharme
excepted, see `InstructionFormat.tokenize_empty`). Rows are
never dropped for length here: the pipeline applies `excess_length_strategy` afterwards.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from axolotl.data.encoding import encode_batch
from axolotl.data.errors import DataError
from axolotl.data.strategies.base import IGNORE_INDEX, Batch, StrategyContext, StrategyFactory, TokenizedBatch
from axolotl.data.strategies.instruction_formats import (
    FORMATS,
    STYLES,
    Fields,
    InstructionFormat,
    Layout,
    Parts,
    Row,
    required,
)
from axolotl.data.strategies.registry import register

if TYPE_CHECKING:
    from axolotl.config.schema.datasets import UserDefinedPrompterType


class InstructionStrategy:
    """Tokenizes a batch of rows for one `InstructionFormat` (two tokenizer calls per batch)."""

    def __init__(self, ctx: StrategyContext, fmt: InstructionFormat) -> None:
        self.fmt = fmt
        self.tokenizer = ctx.tokenizer
        self.limit = ctx.sequence_len
        self.train_on_inputs = ctx.train_on_inputs
        self.bos: int | None = ctx.tokenizer.bos_token_id
        self.eos: int | None = ctx.tokenizer.eos_token_id

    def __call__(self, batch: Batch) -> TokenizedBatch:
        parts = self.fmt.fields.read_batch(batch)
        prompts = [self.fmt.layout.render(part) for part in parts]
        if self.fmt.joint:
            return self._joint(prompts, parts)
        return self._separate(prompts, parts)

    def _separate(self, prompts: list[str], parts: list[Parts]) -> TokenizedBatch:
        out = TokenizedBatch()
        prompt_ids = self._encode(prompts)
        responses = self._encode([part.output for part in parts])
        for index, (prompt, response) in enumerate(zip(prompt_ids, responses, strict=True)):
            response = self._strip_bos(self._append_eos(response, self.fmt.eos_count))
            input_ids = prompt + response
            labels = list(input_ids) if self.train_on_inputs else [IGNORE_INDEX] * len(prompt) + response
            out.add(index, input_ids, labels)
        return out

    def _joint(self, prompts: list[str], parts: list[Parts]) -> TokenizedBatch:
        """Prompt + response tokenized as one text; the prompt's own token count sets the mask."""
        out = TokenizedBatch()
        full_ids = self._encode([prompt + part.output for prompt, part in zip(prompts, parts, strict=True)])
        prompt_ids = self._encode(prompts)
        for index, (full, prompt) in enumerate(zip(full_ids, prompt_ids, strict=True)):
            full = self._append_eos(full, self.fmt.eos_count)
            masked = min(len(prompt), len(full))
            labels = list(full) if self.train_on_inputs else [IGNORE_INDEX] * masked + full[masked:]
            out.add(index, full, labels)
        return out

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """One batched tokenizer call; empty texts give [] unless the format tokenizes them."""
        if not texts:
            return []
        encoded = encode_batch(self.tokenizer, texts, add_special_tokens=True, max_length=self.limit)
        if self.fmt.tokenize_empty:
            return encoded
        return [ids if text else [] for text, ids in zip(texts, encoded, strict=True)]

    def _append_eos(self, ids: list[int], count: int) -> list[int]:
        """Up to `count` EOS (one fewer if already EOS-terminated), never past `sequence_len`."""
        if not ids or self.eos is None:
            return ids
        wanted = count - 1 if ids[-1] == self.eos else count
        room = self.limit - len(ids)
        return ids + [self.eos] * max(0, min(wanted, room))

    def _strip_bos(self, ids: list[int]) -> list[int]:
        return ids[1:] if ids and self.bos is not None and ids[0] == self.bos else ids


def _builtin(fmt: InstructionFormat) -> StrategyFactory:
    """The registry factory of one built-in type (the dataset entry may restyle it)."""

    def build(ctx: StrategyContext) -> InstructionStrategy:
        return InstructionStrategy(ctx, _styled(fmt, ctx))

    return build


def _styled(fmt: InstructionFormat, ctx: StrategyContext) -> InstructionFormat:
    """alpaca_chat honours `conversation:` as its prompt style, like the reference."""
    style = ctx.dataset.conversation
    if not fmt.conversation_styles or not style:
        return fmt
    if style not in STYLES:
        raise DataError(f"dataset `{_where(ctx)}`: `conversation: {style}` is not a prompt style of type "
                        f"`{ctx.dataset.type}`; use one of {', '.join(STYLES)}")
    return replace(fmt, layout=fmt.layout.restyled(style))


def _where(ctx: StrategyContext) -> str:
    """How errors name the dataset: its path, else its data files."""
    return str(ctx.dataset.path or ctx.dataset.data_files)


for _name, _format in FORMATS.items():
    register(_name)(_builtin(_format))


# --- user-defined (inline) formats -------------------------------------------------------------

USER_DEFAULTS: dict[str, str] = {
    "system_prompt": "",
    "system_format": "{system}",
    "field_system": "system",
    "field_instruction": "instruction",
    "field_input": "input",
    "field_output": "output",
    "format": "{instruction} {input} ",
    "no_input_format": "{instruction} ",
}
"""What an unset key of an inline `type:` means (the reference's defaults)."""


@register("__user_defined__")
def user_defined(ctx: StrategyContext) -> InstructionStrategy:
    """An inline `type:` mapping: fields by name, layouts with {instruction}/{input}/{system}."""
    spec = ctx.dataset.type
    if spec is None or isinstance(spec, str):
        raise DataError(f"dataset `{_where(ctx)}`: an inline format needs a `type:` mapping")
    return InstructionStrategy(ctx, user_format(spec, _where(ctx)))


def user_format(spec: UserDefinedPrompterType, where: str) -> InstructionFormat:
    """The InstructionFormat an inline `type:` describes, its layouts checked up front."""
    keys = {key: default if getattr(spec, key) is None else getattr(spec, key)
            for key, default in USER_DEFAULTS.items()}
    layout = Layout(keys["format"], keys["no_input_format"], keys["system_format"])
    _check_layout(layout, where)
    return InstructionFormat(layout, _user_fields(keys))


def _user_fields(keys: dict[str, str]) -> Fields:
    """Columns are read by name (never parsed as templates), so any column name works.

    As in the reference: input and output may be absent (""); the row's system column wins
    whenever the dataset has that column, even when empty, else `system_prompt` applies.
    """
    instruction, given_input, output, system = (keys[f"field_{part}"]
                                                for part in ("instruction", "input", "output", "system"))
    default_system = keys["system_prompt"]

    def derive(row: Row) -> dict[str, Any]:
        return {"__instruction": required(row, instruction), "__input": row.get(given_input),
                "__output": row.get(output), "__system": row.get(system) if system in row else default_system}

    return Fields("{__instruction}", "{__output}", "{__input}", system="{__system}",
                  optional=frozenset({"__input", "__output", "__system"}), derive=derive)


def _check_layout(layout: Layout, where: str) -> None:
    """Unknown placeholders fail once, at startup, instead of on every row."""
    tries = {"format": (layout.turn, {"instruction": "", "input": ""}),
             "no_input_format": (layout.turn_no_input, {"instruction": ""}),
             "system_format": (layout.system_format, {"system": ""})}
    for key, (text, values) in tries.items():
        try:
            text.format(**values)
        except (KeyError, IndexError, ValueError) as exc:
            allowed = ", ".join("{" + name + "}" for name in values)
            raise DataError(f"dataset `{where}`: `type.{key}` {text!r} cannot be filled ({exc!r}); "
                            f"it may use {allowed} (write {{{{ and }}}} for literal braces)") from None


def instruction_prompt_layout(dataset: Any) -> Layout | None:
    """The prompt layout a dataset entry trains with, when it is an instruction-style type
    (built-in or inline); None for every other type. Inference renders a user's prompt with it,
    so the model sees the header it was fine-tuned to answer after."""
    spec = dataset.type
    if spec is not None and not isinstance(spec, str):
        return user_format(spec, str(dataset.path or dataset.data_files)).layout
    fmt = FORMATS.get(spec or "")
    if fmt is None:
        return None
    style = getattr(dataset, "conversation", None)
    if fmt.conversation_styles and style in STYLES:
        return fmt.layout.restyled(style)
    return fmt.layout

"""`type: bradley_terry.chat_template` (and `bradley_terry.llama3.icr`): preference pairs for an
outcome reward model.

Row: `{"system": optional str, "input": str, "chosen": str, "rejected": str}`. Each side becomes
its own single-turn conversation, `[system,] user: input, assistant: chosen|rejected`, rendered
with the run's chat template (as `apply_chat_template` renders it, no generation prompt) and
tokenized in one batched call per batch. The output is the pair of token lists TRL's
`RewardTrainer` reads (`chosen_ids`, `rejected_ids`); there are no per-token labels, the model
scores each whole sequence.

`bradley_terry.llama3.icr` reads the same fields and always renders with the bundled Llama 3
template, whatever `chat_template:` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import jinja2

from axolotl.data.chat_templates import chat_template_for, compile_template
from axolotl.data.encoding import encode_batch
from axolotl.data.errors import RowError
from axolotl.data.strategies.chat_template import resolve_template

if TYPE_CHECKING:
    from axolotl.data.strategies.base import Batch, StrategyContext

FIELDS = ("input", "chosen", "rejected")
FIELD_SYSTEM = "system"


@dataclass
class TokenizedPairs:
    """Output rows of one input batch: a (chosen, rejected) pair per kept input row."""

    chosen_ids: list[list[int]] = field(default_factory=list)
    rejected_ids: list[list[int]] = field(default_factory=list)
    source_index: list[int] = field(default_factory=list)
    dropped: list[tuple[int, str]] = field(default_factory=list)
    """(input index, reason) of rows skipped on purpose."""


class ChatTemplatePairs:
    """Callable on a batch of rows; built once per dataset entry (and per worker process)."""

    def __init__(self, ctx: StrategyContext, template: str | None = None) -> None:
        self.tokenizer = ctx.tokenizer
        self.template = compile_template(template if template is not None else resolve_template(ctx))
        self.render_kwargs = {"add_generation_prompt": False, **self.tokenizer.special_tokens_map,
                              **(ctx.cfg.chat_template_kwargs or {})}
        self.default_system = ctx.cfg.default_system_message

    def __call__(self, batch: Batch) -> TokenizedPairs:
        missing = [name for name in FIELDS if name not in batch]
        if missing:
            raise RowError(f"the data has no {', '.join(f'`{m}`' for m in missing)} column (bradley_terry rows need "
                           f"input, chosen and rejected; columns: {sorted(batch)})", missing[0])
        out = TokenizedPairs()
        systems = batch.get(FIELD_SYSTEM) or [None] * len(batch["input"])
        texts: list[str] = []
        for index, (system, prompt, chosen, rejected) in enumerate(
                zip(systems, *(batch[name] for name in FIELDS), strict=True)):
            if chosen == rejected:
                out.dropped.append((index, "chosen and rejected are identical"))
                continue
            prefix = self._prompt(system, prompt)
            texts.append(self.render([*prefix, _turn("assistant", chosen, "chosen")]))
            texts.append(self.render([*prefix, _turn("assistant", rejected, "rejected")]))
            out.source_index.append(index)
        if texts:
            ids = encode_batch(self.tokenizer, texts, add_special_tokens=False)
            out.chosen_ids = [list(row) for row in ids[0::2]]
            out.rejected_ids = [list(row) for row in ids[1::2]]
        return out

    def _prompt(self, system: Any, prompt: Any) -> list[dict[str, str]]:
        if system is None or system == "":
            system = self.default_system
        messages = [_turn("system", system, FIELD_SYSTEM)] if system is not None else []
        return [*messages, _turn("user", prompt, "input")]

    def render(self, messages: list[dict[str, str]]) -> str:
        try:
            return self.template.render(messages=messages, tools=None, documents=None, **self.render_kwargs)
        except (jinja2.TemplateError, TypeError) as exc:
            raise RowError(f"the chat template cannot render this pair: {exc}") from None


def _turn(role: str, text: Any, column: str) -> dict[str, str]:
    if not isinstance(text, str):
        raise RowError(f"must be a string, not {type(text).__name__} (bradley_terry rows are single-turn; "
                       "flatten a conversation into `input`)", column)
    return {"role": role, "content": text}


PairStrategy = Callable[["Batch"], TokenizedPairs]

PAIR_STRATEGIES: dict[str, Callable[[StrategyContext], PairStrategy]] = {
    "bradley_terry.chat_template": ChatTemplatePairs,
    "bradley_terry.llama3.icr": lambda ctx: ChatTemplatePairs(ctx, chat_template_for("llama3", ctx.tokenizer)),
}
"""Dataset `type:` names of reward-model pairs -> strategy factories."""

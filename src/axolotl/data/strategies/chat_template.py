"""`type: chat_template`: conversations rendered by a jinja chat template, trained per turn.

Per batch: every row's messages are normalised (field mappings, role names, thinking, tools),
rendered once with the template (python jinja, as `apply_chat_template` renders them), and
all texts are tokenized in ONE batched call that also returns character offsets. Labels then
come from locating each message's text in its rendering (`chat_masking`), a linear pass. The
input_ids are exactly what `tokenizer.apply_chat_template(messages, tokenize=True)` returns.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import jinja2

from axolotl.config.enums import TOKENIZER_DEFAULT_FALLBACK_PREFIX
from axolotl.data.chat_templates import TOKENIZER_DEFAULT, chat_template_for, compile_template
from axolotl.data.encoding import encode_with_spans
from axolotl.data.errors import DataError, RowError
from axolotl.data.strategies.base import Batch, StrategyContext, TokenizedBatch
from axolotl.data.strategies.chat_masking import (
    DetailSpan,
    EndTokenRule,
    TemplateLayout,
    TurnSpec,
    build_labels,
    locate_turns,
)
from axolotl.data.strategies.registry import register

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

LOG = logging.getLogger(__name__)

DEFAULT_ROLES: dict[str, list[str]] = {
    "user": ["human", "user"], "assistant": ["gpt", "assistant"], "system": ["system"], "tool": ["tool"],
}
FIELD_SYSTEM = "system"
"""A row column whose text becomes the system turn when the conversation has none (as the reference does)."""
_RESERVED_KWARGS = ("messages", "tools", "documents")
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class ChatSettings:
    """The dataset entry's chat keys with their documented defaults applied."""

    field_messages: str
    field_tools: str
    field_thinking: str
    thinking_key: str
    mappings: dict[str, str]
    """template property -> message key in the data."""
    roles: dict[str, str]
    """role as written in the data -> role the template expects."""
    roles_to_train: frozenset[str]
    training_field: str | None
    detail_field: str | None
    split_thinking: bool
    drop_system_message: bool
    default_system_message: str | None
    train_on_inputs: bool = False

    @cached_property
    def consumed_keys(self) -> frozenset[str | None]:
        """Message keys read for a purpose; every other key is passed to the template as is."""
        return frozenset({*self.mappings.values(), self.field_thinking, self.training_field, self.detail_field})

    @classmethod
    def from_context(cls, ctx: StrategyContext) -> ChatSettings:
        ds = ctx.dataset
        mappings = {"role": ds.message_field_role or "role", "content": ds.message_field_content or "content"}
        mappings.update(ds.message_property_mappings or {})
        roles = {source: target for target, sources in (ds.roles or DEFAULT_ROLES).items() for source in sources}
        roles.update({target: target for target in (ds.roles or DEFAULT_ROLES) if target not in roles})
        wanted = ["assistant"] if ds.roles_to_train is None else ds.roles_to_train
        return cls(
            field_messages=ds.field_messages or "messages",
            field_tools=ds.field_tools or "tools",
            field_thinking=ds.field_thinking or "reasoning_content",
            thinking_key=ds.template_thinking_key or "reasoning_content",
            mappings=mappings,
            roles=roles,
            roles_to_train=frozenset(roles.get(role, role) for role in wanted),
            training_field=ds.message_field_training,
            detail_field=ds.message_field_training_detail,
            split_thinking=bool(ds.split_thinking),
            drop_system_message=bool(ds.drop_system_message),
            default_system_message=ctx.cfg.default_system_message,
            train_on_inputs=ctx.train_on_inputs,
        )


def resolve_template(ctx: StrategyContext) -> str:
    """The dataset's own choice wins; `tokenizer_default` means the run's template when one is set,
    because the run-level `chat_template:` replaces the tokenizer's."""
    cfg, ds, tokenizer = ctx.cfg, ctx.dataset, ctx.tokenizer
    run_choice = str(cfg.chat_template or ("jinja" if cfg.chat_template_jinja else TOKENIZER_DEFAULT))
    ds_jinja = getattr(ds, "chat_template_jinja", None)  # preference entries have no such key

    def run_level() -> str:
        return chat_template_for(run_choice, tokenizer, cfg.chat_template_jinja)

    if not ds.chat_template and not ds_jinja:
        return run_level()
    choice = str(ds.chat_template or "jinja")
    defers = choice == TOKENIZER_DEFAULT or choice.startswith(TOKENIZER_DEFAULT_FALLBACK_PREFIX)
    if defers and run_choice != TOKENIZER_DEFAULT:
        return run_level()
    return chat_template_for(choice, tokenizer, ds_jinja)


def end_token_rule(ctx: StrategyContext, template: str) -> EndTokenRule:
    """EOS/EOT ids and when to train them; refuses the settings the FAQ calls conflicting."""
    tokenizer, ds = ctx.tokenizer, ctx.dataset
    eos = tokenizer.eos_token
    eot_tokens = list(ctx.cfg.eot_tokens or ([eos] if eos else []))
    on_eos = ds.train_on_eos or "turn"
    on_eot = ds.train_on_eot or on_eos
    if eos in eot_tokens and on_eos != on_eot:
        raise DataError(f"dataset `{ds.path}`: conflict between train_on_eos and train_on_eot: eos_token `{eos}` is "
                        f"in eot_tokens and train_on_eos ({on_eos}) != train_on_eot ({on_eot}); make them equal or "
                        "remove the EOS token from `eot_tokens:`")
    eot_ids = set()
    for token in eot_tokens:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise DataError(f"EOT token `{token}` is encoded as multiple tokens {ids}; add it under `tokens:` or "
                            "(recommended) override an unused added token via `added_tokens_overrides:`")
        if token not in template and not (token == eos and "eos_token" in template):
            LOG.warning("EOT token %r not found in the chat template; check `eot_tokens:` and the EOS token", token)
        eot_ids.add(ids[0])
    eos_ids = frozenset() if tokenizer.eos_token_id is None else frozenset({tokenizer.eos_token_id})
    return EndTokenRule(eos_ids, frozenset(eot_ids), on_eos, on_eot)


class ChatTemplateStrategy:
    """Callable on a batch of rows; built once per dataset entry (and per worker process)."""

    def __init__(self, ctx: StrategyContext) -> None:
        if not getattr(ctx.tokenizer, "is_fast", False):
            raise DataError("`type: chat_template` needs a fast tokenizer (it reads token offsets); "
                            "remove `tokenizer_use_fast: false`")
        self.tokenizer: PreTrainedTokenizerBase = ctx.tokenizer
        self.settings = ChatSettings.from_context(ctx)
        self.train_on_inputs = ctx.train_on_inputs
        text = resolve_template(ctx)
        self.template = compile_template(text)
        extra = dict(ctx.cfg.chat_template_kwargs or {})
        reserved = [key for key in _RESERVED_KWARGS if key in extra]
        if reserved:
            raise DataError(f"`chat_template_kwargs` cannot set {reserved}: they come from the data")
        self.render_kwargs = {"add_generation_prompt": False, "documents": None,
                              **self.tokenizer.special_tokens_map, **extra}
        self.rule = end_token_rule(ctx, text)
        self.layout = self._probe_layout()

    # ---- rows -> conversations ----------------------------------------------------------------

    def __call__(self, batch: Batch) -> TokenizedBatch:
        out = TokenizedBatch()
        field = self.settings.field_messages
        if field not in batch:
            raise RowError(f"the data has no `{field}` column (columns: {sorted(batch)}); set `field_messages:`", field)
        tools_column = batch.get(self.settings.field_tools)
        system_column = batch.get(FIELD_SYSTEM)
        texts: list[str] = []
        plans: list[tuple[int, list[TurnSpec]]] = []
        for index, raw in enumerate(batch[field]):
            conversation = self._conversation(raw, system_column[index] if system_column else None)
            if conversation is None:
                out.drop(index, "empty conversation")
                continue
            messages, specs = conversation
            tools = _tools(tools_column[index] if tools_column else None, self.settings.field_tools)
            texts.append(self.render(messages, tools))
            plans.append((index, specs))
        if not texts:
            return out
        all_ids, all_spans = encode_with_spans(self.tokenizer, texts, add_special_tokens=False)
        for (index, specs), text, ids, spans in zip(plans, texts, all_ids, all_spans, strict=True):
            located = locate_turns(text, specs, self.layout, field)
            labels = build_labels(ids, spans, len(text), located, self.rule)
            out.add(index, ids, labels)
        return out

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
               add_generation_prompt: bool | None = None) -> str:
        kwargs = dict(self.render_kwargs)
        if add_generation_prompt is not None:
            kwargs["add_generation_prompt"] = add_generation_prompt
        try:
            return self.template.render(messages=messages, tools=tools, **kwargs)
        except (jinja2.TemplateError, TypeError) as exc:
            raise RowError(f"the chat template cannot render this conversation: {exc}",
                           self.settings.field_messages) from None

    def _conversation(self, raw: Any, system_text: Any) -> tuple[list[dict[str, Any]], list[TurnSpec]] | None:
        settings = self.settings
        if raw is None:
            return None
        if not isinstance(raw, list):
            raise RowError(f"messages must be a list of messages, not {type(raw).__name__}", settings.field_messages)
        turns = [self._message(message, position) for position, message in enumerate(raw)]
        starts_with_system = bool(turns) and turns[0][0]["role"] == "system"
        if isinstance(system_text, str) and system_text and turns and not starts_with_system:
            turns.insert(0, self._synthetic_system(system_text))
        if settings.drop_system_message and turns and turns[0][0]["role"] == "system":
            turns = turns[1:]
        if settings.default_system_message is not None and turns and turns[0][0]["role"] != "system":
            turns.insert(0, self._synthetic_system(settings.default_system_message))
        if not turns:
            return None
        return [message for message, _ in turns], [spec for _, spec in turns]

    def _synthetic_system(self, text: str) -> tuple[dict[str, Any], TurnSpec]:
        spec = TurnSpec(index=-1, role="system", content=(text,),
                        trainable=self.settings.train_on_inputs or "system" in self.settings.roles_to_train)
        return {"role": "system", "content": text}, spec

    def _message(self, raw: Any, position: int) -> tuple[dict[str, Any], TurnSpec]:
        settings, field = self.settings, self.settings.field_messages
        if not isinstance(raw, dict):
            raise RowError(f"message {position} is a {type(raw).__name__}, not a mapping", field)
        message = {key: raw[source] for key, source in settings.mappings.items() if raw.get(source) is not None}
        if "role" not in message:
            raise RowError(f"message {position} has no `{settings.mappings['role']}` (its role)", field)
        role = settings.roles.get(message["role"])
        if role is None:
            known = ", ".join(sorted(settings.roles))
            raise RowError(f"message {position} has unknown role `{message['role']}` (known: {known}); "
                           "map it to a template role under `roles:`", field)
        message["role"] = role
        if raw.get(settings.field_thinking) is not None:
            message[settings.thinking_key] = raw[settings.field_thinking]
        message.update({key: value for key, value in raw.items()
                        if key not in settings.consumed_keys and key not in message and value is not None})
        if settings.split_thinking and role == "assistant":
            _split_thinking(message, settings.thinking_key)
        if message.get("tool_calls"):
            message["tool_calls"] = _parsed_tool_calls(message["tool_calls"], position, field)
        training = raw.get(settings.training_field) if settings.training_field else None
        detail = raw.get(settings.detail_field) if settings.detail_field else None
        if training is not None:
            trainable = bool(training)
        elif detail is not None:
            trainable = bool(detail)
        else:
            # As in the reference: train_on_inputs trains every turn's content, never the scaffolding.
            trainable = settings.train_on_inputs or role in settings.roles_to_train
        content = message.get("content")
        reasoning = message.get(settings.thinking_key)
        spec = TurnSpec(
            index=position, role=role, content=_text_parts(content),
            reasoning=reasoning if isinstance(reasoning, str) and reasoning.strip() else None,
            tool_call_name=_first_tool_name(message.get("tool_calls")), trainable=trainable,
            detail=_detail(detail, content, position, settings.detail_field) if detail is not None else None,
        )
        return message, spec

    # ---- what the template looks like ---------------------------------------------------------

    def _probe_layout(self) -> TemplateLayout:
        """Render tiny conversations once to learn the template's separators (see chat_masking)."""
        system = {"role": "system", "content": "AxolotlProbeSystem"}
        chat = [{"role": "user", "content": "AxolotlProbeUserOne"},
                {"role": "assistant", "content": "AxolotlProbeAssistantOne"},
                {"role": "user", "content": "AxolotlProbeUserTwo"},
                {"role": "assistant", "content": "AxolotlProbeAssistantTwo"}]
        seams: dict[tuple[str | None, str], str] = {}
        ending = None
        for conversation in ([system, *chat], chat):
            text = self._try_render(conversation)
            positions = _in_order(text, [message["content"] for message in conversation]) if text else None
            if positions is None:
                continue
            previous, cursor = None, 0
            for message, at in zip(conversation, positions):
                seams.setdefault((previous, message["role"]), text[cursor:at])
                previous, cursor = message["role"], at + len(message["content"])
            ending = ending or text[cursor:].lstrip("\n").split("\n", 1)[0].strip() or None
        header = None
        with_prompt = self._try_render(chat[:1], add_generation_prompt=True)
        without = self._try_render(chat[:1], add_generation_prompt=False)
        if with_prompt is not None and without is not None and with_prompt.startswith(without):
            header = with_prompt[len(without):] or None
        markers = tuple(dict.fromkeys(filter(None, [ending, *self.tokenizer.convert_ids_to_tokens(
            sorted(self.rule.eot_ids))])))
        return TemplateLayout(seams=seams, assistant_header=header, turn_end_markers=markers)

    def _try_render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str | None:
        try:
            return self.render(messages, None, add_generation_prompt)
        except RowError:
            return None


def _in_order(text: str, pieces: list[str]) -> list[int] | None:
    positions, cursor = [], 0
    for piece in pieces:
        at = text.find(piece, cursor)
        if at < 0:
            return None
        positions.append(at)
        cursor = at + len(piece)
    return positions


def _split_thinking(message: dict[str, Any], key: str) -> None:
    """`<think>reasoning</think>answer` -> reasoning under `key`, answer as content."""
    content = message.get("content")
    if not isinstance(content, str):
        return
    start = content.find(_THINK_OPEN)
    end = content.find(_THINK_CLOSE, start + len(_THINK_OPEN)) if start >= 0 else -1
    if start < 0 or end < 0:
        return
    message[key] = content[start + len(_THINK_OPEN):end].strip()
    message["content"] = content[end + len(_THINK_CLOSE):].lstrip()


def _parsed_tool_calls(calls: Any, position: int, field: str) -> list[Any]:
    """Arguments stored as JSON text (to keep Arrow types stable) become objects for the template."""
    if not isinstance(calls, list):
        raise RowError(f"message {position}: `tool_calls` must be a list", field)
    parsed = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            try:
                arguments = json.loads(function["arguments"])
            except json.JSONDecodeError as exc:
                raise RowError(f"message {position}: tool call `{function.get('name')}` has arguments that are "
                               f"not valid JSON ({exc})", field) from None
            call = {**call, "function": {**function, "arguments": arguments}}
        parsed.append(call)
    return parsed


def _tools(raw: Any, field: str) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise RowError(f"tools must be a list of JSON-schema tool definitions, not {type(raw).__name__}", field)
    tools = []
    for tool in raw:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("parameters"), str):
            try:
                tool = {**tool, "function": {**function, "parameters": json.loads(function["parameters"])}}
            except json.JSONDecodeError as exc:
                raise RowError(f"tool `{function.get('name')}` has parameters that are not valid JSON ({exc})",
                               field) from None
        tools.append(tool)
    return tools


def _text_parts(content: Any) -> tuple[str, ...]:
    if isinstance(content, str):
        return (content,)
    if isinstance(content, list):
        return tuple(part["text"] for part in content
                     if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str))
    return ()


def _first_tool_name(calls: Any) -> str | None:
    if not calls or not isinstance(calls, list) or not isinstance(calls[0], dict):
        return None
    function = calls[0].get("function", calls[0])
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) and name else None


def _detail(detail: Any, content: Any, position: int, field: str | None) -> tuple[DetailSpan, ...]:
    """`[{begin_offset, end_offset, train}]`, offsets into the content and `end_offset` inclusive."""
    where = field or "training detail"
    if not isinstance(content, str):
        raise RowError(f"message {position}: `{where}` needs the content to be a string", where)
    if not isinstance(detail, list):
        raise RowError(f"message {position}: `{where}` must be a list of {{begin_offset, end_offset, train}}", where)
    spans = []
    for entry in detail:
        try:
            begin, end, train = int(entry["begin_offset"]), int(entry["end_offset"]), bool(entry["train"])
        except (KeyError, TypeError, ValueError):
            raise RowError(f"message {position}: `{where}` entry {entry!r} needs integer begin_offset and "
                           "end_offset and a boolean train", where) from None
        if not 0 <= begin <= end < len(content):
            raise RowError(f"message {position}: `{where}` offsets {begin}..{end} fall outside the content "
                           f"({len(content)} characters; end_offset is inclusive)", where)
        spans.append(DetailSpan(begin, end + 1, train))
    return tuple(spans)


@register("chat_template")
def chat_template_strategy(ctx: StrategyContext) -> ChatTemplateStrategy:
    return ChatTemplateStrategy(ctx)

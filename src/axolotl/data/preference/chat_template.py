"""Preference rows rendered with a jinja chat template (the dataset's `chat_template`, else the
run's, else the tokenizer's), as `tokenizer.apply_chat_template(..., tokenize=False)` renders them.

`chat_template.default` (DPO family). Row: `messages` (a list of messages, or one string = one
user message), `chosen` and `rejected` (a string = an assistant message, one message, or a list
whose last message is the response). Keys: `field_messages` [messages], `field_chosen` [chosen],
`field_rejected` [rejected], `message_property_mappings` [role: role, content: content],
`roles` [user, assistant, system, tool as themselves].

    prompt:  render(messages, add_generation_prompt=True)
    chosen:  render([user "[[dummy_message]]", chosen]) from the start of the chosen content (searched
             after the assistant header), trailing whitespace removed (ChatML: "{content}<|im_end|>")

`chat_template.argilla` (ORPO; usable with every pairwise method). Row: optional `system` and
`prompt`, and `chosen`/`rejected` conversations of alternating user/assistant messages that share
everything but the last message. The prompt is the system message, the conversation up to the
last user message (for a single exchange the user message is `prompt` when the row has one),
and the generation prompt; each response is the rest of the rendering with its last message:

    prompt:  render([system,] user, [assistant, user, ...], add_generation_prompt=True)
    chosen:  render(same + [assistant chosen[-1]])[len(prompt):]
"""

from __future__ import annotations

from typing import Any

import jinja2

from axolotl.data.chat_templates import compile_template
from axolotl.data.errors import RowError
from axolotl.data.preference.base import (
    PAIRS,
    PreferenceContext,
    Row,
    RowFormat,
    message_content,
    message_list,
    optional_text,
    text,
)
from axolotl.data.preference.registry import register
from axolotl.data.strategies.chat_template import resolve_template

DEFAULT_ROLES = {"user": ["user"], "assistant": ["assistant"], "system": ["system"], "tool": ["tool"]}
DUMMY_USER = {"role": "user", "content": "[[dummy_message]]"}
"""Rendered before a lone response so templates that expect a user turn first accept it."""


class TemplateRenderer:
    """The compiled template with the variables `apply_chat_template` passes (special tokens)."""

    def __init__(self, ctx: PreferenceContext) -> None:
        self.template = compile_template(resolve_template(ctx))
        self.kwargs = {"tools": None, "documents": None, **ctx.tokenizer.special_tokens_map,
                       **(ctx.cfg.chat_template_kwargs or {})}

    def __call__(self, messages: list[dict[str, Any]], add_generation_prompt: bool, field: str) -> str:
        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        **self.kwargs)
        except (jinja2.TemplateError, TypeError) as exc:
            raise RowError(f"the chat template cannot render this row: {exc}", field) from None


class DefaultFormat:
    """`chat_template.default`."""

    def __init__(self, ctx: PreferenceContext) -> None:
        self.render = TemplateRenderer(ctx)
        self.field_messages = ctx.option("field_messages", "messages")
        self.field_chosen = ctx.option("field_chosen", "chosen")
        self.field_rejected = ctx.option("field_rejected", "rejected")
        self.mappings = {"role": "role", "content": "content", **(ctx.option("message_property_mappings") or {})}
        roles = ctx.option("roles") or DEFAULT_ROLES
        self.roles = {target: target for target in roles}
        self.roles.update({source: target for target, sources in roles.items() for source in sources})
        self._header: str | None = None

    def __call__(self, row: Row) -> Row:
        raw = row.get(self.field_messages)
        if isinstance(raw, str):
            messages = [{"role": "user", "content": raw}]
        else:
            listed = message_list(row, self.field_messages, 1)
            messages = [self._message(item, position, self.field_messages) for position, item in enumerate(listed)]
        return {"prompt": self.render(messages, True, self.field_messages),
                "chosen": self._response(row, self.field_chosen), "rejected": self._response(row, self.field_rejected)}

    def _message(self, raw: Any, position: int | None, field: str) -> dict[str, str]:
        where = f"`{field}`" + (f" message {position}" if position is not None else "")
        if not isinstance(raw, dict):
            raise RowError(f"{where} is {type(raw).__name__}, not a mapping", field)
        role_key, content_key = self.mappings["role"], self.mappings["content"]
        role, content = raw.get(role_key), raw.get(content_key)
        if role not in self.roles:
            raise RowError(f"{where} has role {role!r} (key `{role_key}`); known roles: "
                           f"{', '.join(sorted(self.roles))}; map it under `roles:`", field)
        if not isinstance(content, str):
            raise RowError(f"{where} has no text `{content_key}`", field)
        return {"role": self.roles[role], "content": content}

    def _response(self, row: Row, field: str) -> str:
        raw = row.get(field)
        if isinstance(raw, str):
            message = {"role": "assistant", "content": raw}
        elif isinstance(raw, dict):
            message = self._message(raw, None, field)
        else:
            listed = message_list(row, field, 1)
            message = self._message(listed[-1], len(listed) - 1, field)
        if not message["content"]:
            raise RowError(f"`{field}` is empty", field)
        rendered = self.render([DUMMY_USER, message], False, field)
        start = rendered.find(message["content"], self._response_start(rendered, field))
        if start < 0:
            raise RowError(f"the chat template does not render the `{field}` text verbatim, so the response "
                           "cannot be cut out of its rendering", field)
        return rendered[start:].rstrip()

    def _response_start(self, rendered: str, field: str) -> int:
        """Where to look for the response text: after the assistant header when the template renders
        the dummy turn plus generation prompt as a prefix of the full rendering, else after the dummy
        text (the response may repeat text of the scaffolding, e.g. `s` of `<|im_start|>`)."""
        if self._header is None:
            self._header = self.render([DUMMY_USER], True, field)
        header = self._header
        if rendered.startswith(header):
            return len(header)
        return rendered.find(DUMMY_USER["content"]) + len(DUMMY_USER["content"])


class ArgillaFormat:
    """`chat_template.argilla`."""

    def __init__(self, ctx: PreferenceContext) -> None:
        self.render = TemplateRenderer(ctx)

    def __call__(self, row: Row) -> Row:
        chosen, rejected = message_list(row, "chosen", 2), message_list(row, "rejected", 2)
        if len(chosen) % 2:
            raise RowError(f"`chosen` must alternate user and assistant messages (an even number); it has "
                           f"{len(chosen)}", "chosen")
        exchanges = len(chosen) // 2
        messages = []
        system = optional_text(row, "system")
        if system:
            messages.append({"role": "system", "content": system})
        for exchange in range(exchanges):
            single_prompt = exchanges == 1 and row.get("prompt") is not None
            user = text(row, "prompt") if single_prompt else message_content(chosen, 2 * exchange, "chosen")
            messages.append({"role": "user", "content": user})
            if exchange < exchanges - 1:
                messages.append({"role": "assistant", "content": message_content(chosen, 2 * exchange + 1, "chosen")})
        prompt = self.render(messages, True, "chosen")
        return {"prompt": prompt, "chosen": self._response(messages, prompt, chosen, "chosen"),
                "rejected": self._response(messages, prompt, rejected, "rejected")}

    def _response(self, messages: list[dict[str, str]], prompt: str, conversation: list[Any], field: str) -> str:
        last = {"role": "assistant", "content": message_content(conversation, -1, field)}
        rendered = self.render([*messages, last], False, field)
        if not rendered.startswith(prompt):
            raise RowError("the chat template renders the conversation differently from its prompt (with the "
                           f"generation prompt), so the `{field}` response cannot be cut after it", field)
        return rendered[len(prompt):]


@register(PAIRS, "chat_template.default")
def default_format(ctx: PreferenceContext) -> RowFormat:
    return DefaultFormat(ctx)


@register(PAIRS, "chat_template.argilla")
def argilla_format(ctx: PreferenceContext) -> RowFormat:
    return ArgillaFormat(ctx)

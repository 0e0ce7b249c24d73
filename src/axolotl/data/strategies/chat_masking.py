"""Labels for a conversation rendered once: find each message's text, then one pass over tokens.

The conversation is rendered and tokenized a single time. Each message's text (its reasoning,
its content, the tool calls it makes) is located in the rendered string by searching forward
from the previous message, so the work is linear in the conversation length; re-rendering every
prefix (the quadratic approach) is what we avoid. A token is trained when its character span
overlaps trained text; template scaffolding (role headers, separators) is never trained, and
the end-of-turn / end-of-sequence token that follows a turn is trained per `train_on_eot` /
`train_on_eos`.

Searching for short texts in a string full of scaffolding is ambiguous ("a" occurs inside
"assistant"), so a message is first looked for exactly where the template's usual separator
from the previous message ends (the *seam*, learned once per template by rendering a probe);
only when that fails does the search fall back to scanning forward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from axolotl.data.errors import RowError
from axolotl.data.strategies.base import IGNORE_INDEX
from axolotl.data.token_spans import TokenSpans

TrainOnEnd = Literal["all", "turn", "last"]


@dataclass(frozen=True)
class DetailSpan:
    """Characters `begin`..`end` (end exclusive) of a message's content, trained or not."""

    begin: int
    end: int
    train: bool


@dataclass(frozen=True)
class TurnSpec:
    """One message as the masker needs it: its rendered texts and whether it is trained."""

    index: int
    role: str
    content: tuple[str, ...]
    """Text parts of the content in render order (one for a plain string)."""
    reasoning: str | None = None
    tool_call_name: str | None = None
    """Name of the first tool called, which every tool-calling template renders verbatim."""
    trainable: bool = False
    detail: tuple[DetailSpan, ...] | None = None

    @property
    def lead_text(self) -> str:
        """The first text of this message a reader meets in the rendering."""
        return self.reasoning or next((part for part in self.content if part), "") or self.tool_call_name or ""


@dataclass(frozen=True)
class TemplateLayout:
    """What rendering probe conversations taught us about a template (every part optional)."""

    seams: Mapping[tuple[str | None, str], str] = field(default_factory=dict)
    """Text between the end of a `prev` message's content and the start of the next one's."""
    assistant_header: str | None = None
    """What `add_generation_prompt` appends: the text that opens an assistant turn."""
    turn_end_markers: tuple[str, ...] = ()
    """Strings that close an assistant turn (e.g. `<|im_end|>`), first match wins."""


@dataclass(frozen=True)
class EndTokenRule:
    eos_ids: frozenset[int]
    eot_ids: frozenset[int]
    train_on_eos: TrainOnEnd
    train_on_eot: TrainOnEnd


@dataclass(frozen=True)
class Located:
    spec: TurnSpec
    start: int
    end: int
    content_start: int
    content_end: int
    content_shift: int
    """Leading characters of the content the template dropped (it rendered the stripped text)."""


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    shift: int = 0


def _find(text: str, piece: str, start: int, stop: int | None = None) -> _Hit | None:
    """`piece` at or after `start`; templates that trim are matched by the stripped text."""
    stop = len(text) if stop is None else stop
    at = text.find(piece, start, stop)
    if at >= 0:
        return _Hit(at, at + len(piece))
    stripped = piece.strip()
    if not stripped:
        return _Hit(start, start)
    at = text.find(stripped, start, stop)
    if at >= 0:
        return _Hit(at, at + len(stripped), len(piece) - len(piece.lstrip()))
    return None


def _at(text: str, piece: str, position: int) -> _Hit | None:
    """`piece` (or its stripped form) starting exactly at `position`."""
    if text.startswith(piece, position):
        return _Hit(position, position + len(piece))
    stripped = piece.strip()
    if not stripped:
        return _Hit(position, position)
    if text.startswith(stripped, position):
        return _Hit(position, position + len(stripped), len(piece) - len(piece.lstrip()))
    return None


def _locate_text(text: str, cursor: int, spec: TurnSpec, seam: str | None) -> tuple[Located, bool] | None:
    """Reasoning then content parts; returns the location and whether it sat right after the seam."""
    first = spec.content[0] if spec.content else ""
    anchor = cursor + len(seam) if seam is not None and text.startswith(seam, cursor) else None
    reasoning = None
    # Content right after the seam means no reasoning was rendered before it (templates drop
    # the reasoning of earlier turns); an empty content proves nothing, so then look for reasoning.
    content = _at(text, first, anchor) if anchor is not None and (first.strip() or not spec.reasoning) else None
    anchored = content is not None
    if content is None:
        reasoning = _find(text, spec.reasoning, cursor) if spec.reasoning else None
        content = _find(text, first, reasoning.end if reasoning else cursor)
    if content is None and reasoning is not None:
        # The reasoning matched somewhere later (another turn's text): this one dropped it.
        content = _find(text, first, cursor)
        reasoning = _find(text, spec.reasoning, cursor, content.start) if content and spec.reasoning else None
    if content is None:
        return None
    end = content.end
    for part in spec.content[1:]:
        hit = _find(text, part, end)
        if hit is None:
            return None
        end = hit.end
    start = reasoning.start if reasoning else content.start
    return Located(spec, start, end, content.start, content.end, content.shift), anchored


def _turn_end(text: str, start: int, layout: TemplateLayout) -> int:
    ends = [at for marker in layout.turn_end_markers if marker and (at := text.find(marker, start)) >= 0]
    return min(ends) if ends else -1


def _locate_tool_calls(text: str, cursor: int, spec: TurnSpec, layout: TemplateLayout,
                       seam: str | None) -> Located | None:
    """A content-less assistant turn: from the end of its header to the marker that closes it."""
    name_at = text.find(spec.tool_call_name or "\0", cursor)
    if name_at < 0:
        return None
    openers = [layout.assistant_header, (layout.assistant_header or "").rstrip(), seam, (seam or "").strip()]
    start = -1
    for opener in filter(None, openers):
        found = text.rfind(opener, cursor, name_at)
        if found >= 0:
            start = found + len(opener)
            break
    end = _turn_end(text, name_at, layout)
    if start < 0 or end < 0:
        return None
    return Located(spec, start, end, start, start, 0)


def locate_turns(text: str, specs: Sequence[TurnSpec], layout: TemplateLayout, field_name: str) -> list[Located]:
    """Where each message's text lies in `text`, in message order; unlocatable untrained ones are left out."""
    located: list[Located] = []
    cursor = 0
    previous_role: str | None = None
    for position, spec in enumerate(specs):
        seam = layout.seams.get((previous_role, spec.role))
        previous_role = spec.role
        bare_tool_call = spec.tool_call_name is not None and not spec.reasoning and not any(spec.content)
        anchored = False
        if bare_tool_call:
            hit = _locate_tool_calls(text, cursor, spec, layout, seam)
        else:
            found = _locate_text(text, cursor, spec, seam)
            hit, anchored = found if found else (None, False)
            if hit is not None and spec.tool_call_name is not None:
                close = _turn_end(text, hit.end, layout)
                if close >= 0:
                    hit = Located(spec, hit.start, close, hit.content_start, hit.content_end, hit.content_shift)
        if hit is None:
            if spec.trainable:
                raise RowError(f"message {spec.index} ({spec.role}) was not found in the rendered conversation: the "
                               "chat template drops or rewrites it, so it cannot be trained; check the template or "
                               "mark the message as not trained", field_name)
            continue
        located.append(hit)
        if not _moved_later(text, cursor, hit, anchored, specs[position + 1:position + 2]):
            cursor = hit.end
    return located


def _moved_later(text: str, cursor: int, hit: Located, anchored: bool, following: Sequence[TurnSpec]) -> bool:
    """A system prompt the template placed after later messages (Mistral v2/v3 put it in the last user
    turn): the cursor must stay put so the messages it jumped over are still found."""
    if anchored or hit.spec.role != "system" or not following or not following[0].lead_text:
        return False
    return text.find(following[0].lead_text, cursor, hit.start) >= 0


def _detail_ranges(loc: Located) -> list[tuple[int, int]]:
    ranges = []
    for span in loc.spec.detail or ():
        if not span.train:
            continue
        begin = max(loc.content_start + span.begin - loc.content_shift, loc.content_start)
        end = min(loc.content_start + span.end - loc.content_shift, loc.content_end)
        if begin < end:
            ranges.append((begin, end))
    return ranges


def _mark(ranges: list[tuple[int, int]], spans: TokenSpans, input_ids: Sequence[int], labels: list[int]) -> None:
    """Label every token whose character span overlaps a range (token spans are in text order)."""
    for begin, end in ranges:
        first = spans.first_ending_after(begin)
        stop = spans.first_starting_from(end)
        labels[first:stop] = input_ids[first:stop]


def build_labels(input_ids: Sequence[int], spans: TokenSpans, text_length: int,
                 located: Sequence[Located], rule: EndTokenRule) -> list[int]:
    """Labels for one rendered conversation: trained text plus the end tokens the rule selects."""
    labels = [IGNORE_INDEX] * len(input_ids)
    ordered = sorted(located, key=lambda loc: loc.start)
    ranges: list[tuple[int, int]] = []
    for loc in ordered:
        if loc.spec.trainable:
            ranges.extend(_detail_ranges(loc) if loc.spec.detail is not None else [(loc.start, loc.end)])
    _mark(ranges, spans, input_ids, labels)

    last: dict[str, int] = {}
    for k, loc in enumerate(ordered):
        stop = ordered[k + 1].start if k + 1 < len(ordered) else text_length
        eos_at, eot_at = _end_tokens(input_ids, spans, loc.end, stop, rule)
        for kind, at, mode in (("eos", eos_at, rule.train_on_eos), ("eot", eot_at, rule.train_on_eot)):
            if at < 0:
                continue
            if mode == "all" or (mode == "turn" and loc.spec.trainable):
                labels[at] = input_ids[at]
            if loc.spec.trainable:
                last[kind] = at
    for kind, mode in (("eos", rule.train_on_eos), ("eot", rule.train_on_eot)):
        if mode == "last" and kind in last:
            labels[last[kind]] = input_ids[last[kind]]
    return labels


def _end_tokens(input_ids: Sequence[int], spans: TokenSpans, begin: int, stop: int,
                rule: EndTokenRule) -> tuple[int, int]:
    """Index of the first EOS and of the first EOT token starting in [begin, stop), or -1."""
    eos_at = eot_at = -1
    for t in range(spans.first_starting_from(begin), spans.first_starting_from(stop)):
        token = input_ids[t]
        if eos_at < 0 and token in rule.eos_ids:
            eos_at = t
        if eot_at < 0 and token in rule.eot_ids:
            eot_at = t
        if eos_at >= 0 and eot_at >= 0:
            break
    return eos_at, eot_at

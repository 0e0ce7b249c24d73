"""Which tokens cover which characters of a rendered text, asked only at the few positions needed.

Chat masking needs, per turn boundary, "the first token that ends after character p" and "the
first token that starts at or after character p". Materialising every token's offsets as Python
tuples costs more than the rest of the label building together (each token becomes a tuple), so
`EncodingSpans` answers from the Rust encoding (`char_to_token`, `token_to_chars`) and checks
each answer against its neighbour token; whenever the check cannot confirm it (characters no
token covers, tokens that share characters), it falls back to `OffsetSpans`, the plain binary
search over all offsets. Both give the same answers as `bisect` over the offsets, which tokenizers
produce non-decreasing in both start and end.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any, Protocol


class TokenSpans(Protocol):
    def first_ending_after(self, position: int) -> int:
        """Index of the first token whose span ends after `position` (the token count if none)."""
        ...

    def first_starting_from(self, position: int) -> int:
        """Index of the first token whose span starts at or after `position` (the token count if none)."""
        ...


class OffsetSpans:
    """Binary search over every token's (start, end) character offsets."""

    def __init__(self, offsets: Sequence[tuple[int, int]]) -> None:
        self.starts = [start for start, _ in offsets]
        self.ends = [end for _, end in offsets]

    def first_ending_after(self, position: int) -> int:
        return bisect_right(self.ends, position)

    def first_starting_from(self, position: int) -> int:
        return bisect_left(self.starts, position)


class EncodingSpans:
    """Answers from a `tokenizers.Encoding` without copying its offsets (see the module docstring)."""

    def __init__(self, encoding: Any) -> None:
        self.encoding = encoding
        self.count = len(encoding)
        self._fallback: OffsetSpans | None = None
        self._starting: dict[int, int] = {}

    def _chars(self, token: int) -> tuple[int, int]:
        return self.encoding.token_to_chars(token)

    def _offsets(self) -> OffsetSpans:
        if self._fallback is None:
            self._fallback = OffsetSpans(self.encoding.offsets)
        return self._fallback

    def first_ending_after(self, position: int) -> int:
        if self.count == 0:
            return 0
        token = self.encoding.char_to_token(position)
        if token is None:
            if position >= self._chars(self.count - 1)[1]:
                return self.count
            return self._offsets().first_ending_after(position)
        # offsets are non-decreasing, so no earlier token can end after a character it does not reach
        return token

    def first_starting_from(self, position: int) -> int:
        # a turn's end is asked for twice (its trained range, then the end tokens after it)
        known = self._starting.get(position)
        if known is None:
            known = self._starting[position] = self._first_starting_from(position)
        return known

    def _first_starting_from(self, position: int) -> int:
        if self.count == 0:
            return 0
        token = self.encoding.char_to_token(position)
        if token is None:
            if position > self._chars(self.count - 1)[0]:
                return self.count
            return self._offsets().first_starting_from(position)
        start = self._chars(token)[0]
        if start == position:
            if token == 0 or self._chars(token - 1)[0] < position:
                return token
        elif start < position:
            following = token + 1
            if following == self.count or self._chars(following)[0] >= position:
                return following
        return self._offsets().first_starting_from(position)

"""`encode_batch` and `encode_with_spans` must give exactly what the tokenizer's own call gives,
and the spans must answer exactly what a binary search over all offsets answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from axolotl.data.encoding import encode_batch, encode_with_spans
from axolotl.data.token_spans import EncodingSpans, OffsetSpans
from axolotl.testing import alpaca_rows


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


TEXTS = [row["instruction"] + "\n\n" + row["output"] for row in alpaca_rows(50)] + ["", " leading space", "a\nb\n"]
TRICKY = ["", " ", "héllo wörld", "emoji 🙂🙂 end", "中文文本 mixed", "<s>hi</s> <s>", "tabs\t\tand  spaces  ",
          "a\n\n\nb", "ünïcödé 🙂", "<|im_start|>user\nhi<|im_end|>\n"]


@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_same_ids_as_the_tokenizer(tiny_tokenizer: Any, add_special_tokens: bool) -> None:
    expected = tiny_tokenizer(TEXTS + TRICKY, add_special_tokens=add_special_tokens)["input_ids"]
    assert encode_batch(tiny_tokenizer, TEXTS + TRICKY, add_special_tokens=add_special_tokens) == expected
    ids, spans = encode_with_spans(tiny_tokenizer, TEXTS + TRICKY, add_special_tokens=add_special_tokens)
    assert ids == expected and len(spans) == len(ids)


def test_truncation_matches_the_tokenizer(tiny_tokenizer: Any) -> None:
    ids = encode_batch(tiny_tokenizer, TEXTS, add_special_tokens=True, max_length=8)
    assert ids == tiny_tokenizer(TEXTS, add_special_tokens=True, truncation=True, max_length=8)["input_ids"]


def _assert_spans_agree(encodings: list[Any], texts: list[str]) -> None:
    for encoding, text in zip(encodings, texts, strict=True):
        fast, exact = EncodingSpans(encoding), OffsetSpans(encoding.offsets)
        for position in range(len(text) + 2):
            assert fast.first_ending_after(position) == exact.first_ending_after(position), (text, position)
            assert fast.first_starting_from(position) == exact.first_starting_from(position), (text, position)


def test_encoding_spans_match_a_search_over_all_offsets(tiny_tokenizer: Any) -> None:
    # byte-level BPE: multi-byte characters split into tokens that share one character's span
    texts = TEXTS[:10] + TRICKY
    _assert_spans_agree(tiny_tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False), texts)


def test_encoding_spans_match_when_tokens_leave_characters_uncovered() -> None:
    # a whitespace pre-tokenizer leaves the spaces between words outside every token
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = "the cat sat on a mat 🙂 é".split()
    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(["[UNK]", *words])}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    texts = ["the cat  sat", "  on a mat ", "🙂 é unknown words", "", "   "]
    _assert_spans_agree(backend.encode_batch(texts, add_special_tokens=False), texts)


def test_spans_through_a_truncating_backend_use_all_offsets(tiny_tokenizer: Any) -> None:
    import copy

    truncating = copy.deepcopy(tiny_tokenizer)
    truncating.backend_tokenizer.enable_truncation(max_length=4096)
    ids, spans = encode_with_spans(truncating, TRICKY, add_special_tokens=False)
    assert ids == tiny_tokenizer(TRICKY, add_special_tokens=False)["input_ids"]
    assert all(isinstance(span, OffsetSpans) for span in spans)


class _StubEncoding:
    """The three `tokenizers.Encoding` methods the spans use, over given offsets
    (`char_to_token` is the first token whose span contains the character, as in tokenizers)."""

    def __init__(self, offsets: list[tuple[int, int]]) -> None:
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets)

    def token_to_chars(self, token: int) -> tuple[int, int]:
        return self.offsets[token]

    def char_to_token(self, position: int) -> int | None:
        return next((t for t, (start, end) in enumerate(self.offsets) if start <= position < end), None)


@pytest.mark.parametrize("offsets", [
    [(0, 2), (2, 2), (2, 4)],          # a zero-width token (SentencePiece's lone "▁" gets (0, 0)-style spans)
    [(0, 0), (0, 3), (3, 3), (3, 3), (3, 6)],
    [(0, 1), (1, 1), (3, 5), (5, 5)],   # uncovered characters and a zero-width last token
    [(0, 3), (1, 4), (4, 6)],           # a token starting inside the previous one
    [],
])
def test_encoding_spans_fall_back_where_neighbours_do_not_confirm(offsets: list[tuple[int, int]]) -> None:
    fast, exact = EncodingSpans(_StubEncoding(offsets)), OffsetSpans(offsets)
    for position in range(8):
        assert fast.first_ending_after(position) == exact.first_ending_after(position), position
        assert fast.first_starting_from(position) == exact.first_starting_from(position), position

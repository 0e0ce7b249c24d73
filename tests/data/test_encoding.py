"""`encode_batch` must give exactly what the tokenizer's own call gives, with and without offsets
(it takes the backend's fast path without offsets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from axolotl.data.encoding import encode_batch
from axolotl.testing import alpaca_rows


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


TEXTS = [row["instruction"] + "\n\n" + row["output"] for row in alpaca_rows(50)] + ["", " leading space", "a\nb\n"]


@pytest.mark.parametrize("add_special_tokens", [True, False])
@pytest.mark.parametrize("offsets", [True, False])
def test_same_ids_and_offsets_as_the_tokenizer(tiny_tokenizer: Any, add_special_tokens: bool, offsets: bool) -> None:
    expected = tiny_tokenizer(TEXTS, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids, spans = encode_batch(tiny_tokenizer, TEXTS, add_special_tokens=add_special_tokens, offsets=offsets)
    assert ids == expected["input_ids"]
    if offsets:
        assert [list(map(tuple, row)) for row in spans] == [list(map(tuple, row)) for row in expected["offset_mapping"]]
    else:
        assert spans is None


def test_truncation_matches_the_tokenizer(tiny_tokenizer: Any) -> None:
    ids, _ = encode_batch(tiny_tokenizer, TEXTS, add_special_tokens=True, max_length=8)
    assert ids == tiny_tokenizer(TEXTS, add_special_tokens=True, truncation=True, max_length=8)["input_ids"]

"""`type: zephyr.nectar`: `<|system|>\\n</s>\\n<|user|>\\n{prompt}</s>\\n<|assistant|>\\n`, and the
two answers with the largest `rank` values as chosen (largest) and rejected (next), unterminated."""

from __future__ import annotations

import pytest

from axolotl.data.errors import RowError

from .conftest import render


def test_nectar_prompt_and_ranked_answers() -> None:
    row = {"prompt": "Name a fruit.", "answers": [{"answer": "Apple", "rank": 1}, {"answer": "Rock", "rank": 3},
                                                   {"answer": "Pear", "rank": 2}]}
    assert render("zephyr.nectar", row) == {"prompt": "<|system|>\n</s>\n<|user|>\nName a fruit.</s>\n<|assistant|>\n",
                                            "chosen": "Rock", "rejected": "Pear"}


@pytest.mark.parametrize(("answers", "message"), [
    ([{"answer": "Only", "rank": 1}], "needs at least 2"),
    ([{"answer": "A", "rank": 1}, {"answer": "B"}], "item 1 needs a text `answer` and a numeric `rank`"),
])
def test_bad_answers(answers: list, message: str) -> None:
    with pytest.raises(RowError, match=message) as caught:
        render("zephyr.nectar", {"prompt": "q", "answers": answers})
    assert caught.value.field == "answers"

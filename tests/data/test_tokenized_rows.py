"""The Arrow output of a tokenized batch holds exactly what the Python columns hold."""

from __future__ import annotations

from axolotl.data.tokenized_rows import CheckedRows, output_features


def test_table_and_columns_agree_row_for_row() -> None:
    rows = CheckedRows()
    rows.add([5, 6, 7], [-100, 6, 7], "")
    rows.add([1, 2], [-100, -100], "no trained tokens")
    rows.add([], [], "empty conversation")
    rows.add([9] * 5, [9, -100, 9, -100, 9], "")
    columns = rows.to_columns()
    table = rows.to_table()
    assert table.schema == output_features().arrow_schema
    assert table.to_pydict() == columns
    assert columns["n_trained"] == [2, 0, 0, 3]
    assert columns["attention_mask"] == [[1, 1, 1], [], [], [1] * 5]
    assert columns["length"] == [3, 0, 0, 5]


def test_an_empty_batch_gives_an_empty_table() -> None:
    table = CheckedRows().to_table()
    assert table.num_rows == 0 and table.schema == output_features().arrow_schema

"""The one Markdown-table helper of the report and the benchmarks."""

from __future__ import annotations

from study.markdown import markdown_table


def test_columns_in_the_right_range_are_right_aligned():
    lines = markdown_table(["arm", "n", "value", "note"], [["a/b", "3", "0.5", "ok"]], 1, 3)
    assert lines == [
        "| arm | n | value | note |",
        "| --- | --: | --: | --- |",
        "| a/b | 3 | 0.5 | ok |",
    ]
    assert markdown_table(["x", "y"], [], right_from=1)[1] == "| --- | --: |"  # to the last

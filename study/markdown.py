"""GitHub Markdown tables: the one helper of the study's report and the benchmarks' results files.

Standard library only: the benchmarks also run on machines that have torch and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    right_from: int = 0,
    right_to: int | None = None,
) -> list[str]:
    """The table's lines; columns `right_from` up to (not including) `right_to` are right-aligned
    (numbers), the others left-aligned (names, notes)."""
    right = range(len(header))[right_from:right_to]
    align = ["--:" if i in right else "---" for i in range(len(header))]
    return ["| " + " | ".join(cells) + " |" for cells in (header, align, *rows)]

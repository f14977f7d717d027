"""docs/design.md's training-step trace names real code, so the document cannot drift silently:
every `path.py:name` hop in its section 2 is a function or class defined in that file, and the
optimiser steps it quotes are in the functions it quotes them from."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "design.md"
SECTION = "## 2. One training step"
HOP = re.compile(r"`([\w/]+\.py):([\w.]+)`")
# the step each traced train_step ends in, as the document quotes it
STEPS = {
    ("trainables/methods/standard.py", "Standard.train_step"): "self.optimizer.step()",
    ("trainables/methods/layer_to_layer.py", "LayerToLayer.train_step"): "self.optimizer.step()",
    ("trainables/methods/greedy/base.py", "Greedy.train_group"): "self.optimizers[slot].step()",
}


def trace() -> str:
    text = DOC.read_text()
    start = text.index(SECTION)
    return text[start : text.index("\n## ", start)]


@cache
def definitions(path: Path) -> dict[str, ast.AST]:
    """Every function and class of a file by qualified name (`Class.method`)."""
    found: dict[str, ast.AST] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[prefix + child.name] = child
                if isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(path.read_text()), "")
    return found


def test_every_hop_of_the_step_trace_is_defined_where_the_doc_says():
    hops = HOP.findall(trace())
    assert len(hops) >= 30  # the trace is there, not an empty section
    missing = [
        f"{path}:{name}"
        for path, name in hops
        if not (ROOT / path).is_file() or name not in definitions(ROOT / path)
    ]
    assert missing == []


def test_the_quoted_optimiser_steps_are_in_the_quoted_functions():
    text = trace()
    for (path, name), step in STEPS.items():
        assert f"`{path}:{name}`" in text and f"`{step}`" in text
        source = ast.get_source_segment((ROOT / path).read_text(), definitions(ROOT / path)[name])
        assert step in source, (path, name, step)

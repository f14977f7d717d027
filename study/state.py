"""`<study-dir>/state/`: the spec a study was started with and what each phase has done.

One JSON file per record, replaced atomically: `spec.json` (the spec, so that a rerun with another
spec is refused), `<search>-search.json` (an arm's best config and search spend), `seeds.json`
and `equal_time_runs.json` (the seed indices a timed phase has run, and the batch under way),
`equal_time.json` (the equal-time plan: T, targets and budgets, computed once).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainables.errors import UserError

# The one spec entry a finished study may change: more seeds run only the missing ones.
RAISABLE = "budget.seeds"


class StudyState:
    """The study directory's records (see the module docstring)."""

    def __init__(self, study_dir: Path):
        self.folder = study_dir / "state"  # made by the first `put`

    def check_spec(self, spec_dict: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
        """Refuse (one-line UserError) a spec other than the one recorded, except for a raised
        budget.seeds; fewer seeds are refused too. An entry the record lacks (it predates the
        entry) counts as its value in `defaults`. Writes nothing."""
        previous = self.get("spec")
        if previous is None:
            return
        old = {**_dotted(json.loads(json.dumps(defaults or {}))), **_dotted(previous)}
        new = _dotted(json.loads(json.dumps(spec_dict)))
        changed = sorted(
            k for k in old.keys() | new.keys() if k != RAISABLE and old.get(k) != new.get(k)
        )
        if changed:
            shown = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
            raise UserError(
                f"{self.folder.parent} holds a study run with a different spec (changed: {shown}); "
                f"only {RAISABLE} may be raised on it: use another --study-dir, or the original "
                "spec and --set values"
            )
        if new[RAISABLE] < old[RAISABLE]:
            raise UserError(
                f"{RAISABLE}={new[RAISABLE]} is fewer than the {old[RAISABLE]} this study ran; "
                f"give {RAISABLE} >= {old[RAISABLE]} (more seeds run only the missing ones)"
            )

    def record_spec(self, spec_dict: dict[str, Any]) -> None:
        """Record the spec the study runs with (after `check_spec`: the first, or more seeds)."""
        self.put("spec", json.loads(json.dumps(spec_dict)))

    def get(self, name: str) -> dict[str, Any] | None:
        """A record (`spec`, `<search>-search`, `seeds`, `equal_time`, ...), or None."""
        path = self.folder / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, name: str, value: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(value, indent=2, default=str))
        tmp.replace(path)


def _dotted(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"budget": {"seeds": 3}}` -> `{"budget.seeds": 3}` (tables of `fixed` flattened too)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out

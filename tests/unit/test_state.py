"""The study directory's state: a finished study accepts more seeds and refuses any other change."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.state import StudyState
from trainables.errors import UserError

SPEC = {"name": "s", "budget": {"seeds": 3, "max_trials": 8}, "fixed": {"width": 0.25}}


def with_budget(**budget: int) -> dict:
    return {**SPEC, "budget": {**SPEC["budget"], **budget}}


def test_the_first_spec_is_recorded_and_more_seeds_are_accepted(tmp_path: Path):
    state = StudyState(tmp_path)
    state.check_spec(SPEC)
    assert not (tmp_path / "state").exists()  # checking writes nothing
    state.record_spec(SPEC)
    state.check_spec(SPEC)
    state.check_spec(with_budget(seeds=5))
    state.record_spec(with_budget(seeds=5))
    assert state.get("spec")["budget"]["seeds"] == 5


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            with_budget(max_trials=9),
            "(changed: budget.max_trials 8 -> 9); only budget.seeds may be raised",
        ),
        ({**SPEC, "fixed": {"width": 0.5}}, "(changed: fixed.width 0.25 -> 0.5)"),
        (with_budget(seeds=2), "budget.seeds=2 is fewer than the 3 this study ran"),
    ],
)
def test_any_other_change_or_fewer_seeds_is_one_line(tmp_path: Path, spec: dict, message: str):
    state = StudyState(tmp_path)
    state.record_spec(SPEC)
    with pytest.raises(UserError) as err:
        state.check_spec(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_entry_the_record_predates_counts_as_its_default(tmp_path: Path):
    state = StudyState(tmp_path)
    state.record_spec(SPEC)  # recorded before budget.studies existed
    defaults = {"budget": {"studies": 1, "seeds": 3}}
    state.check_spec(with_budget(studies=1), defaults)
    with pytest.raises(UserError, match=r"changed: budget.studies 1 -> 2\)"):
        state.check_spec(with_budget(studies=2), defaults)

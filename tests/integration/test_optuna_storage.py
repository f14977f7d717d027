"""The sweep's searcher writes each arm's search through to a real Optuna sqlite storage.

Tune's hooks are called by hand here (the sweep tests drive them through a real Tune run): the
states Optuna records, and what a resume from a saved searcher leaves in the storage.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from search_spaces import default_point, get_search_space
from study.optuna_storage import storage_url
from study.tune_arm import TrialConfigSearch
from trainables.trainable import FINAL_KEY

NAME = "seed_cnn/layer_to_layer"
ARM = ("layer_to_layer", "seed_cnn", 4, "adamw", {})


def searcher(url: str) -> TrialConfigSearch:
    return TrialConfigSearch(
        get_search_space(*ARM),
        metric="val_acc",
        mode="max",
        points_to_evaluate=[default_point(*ARM)],
        storage_url=url,
        study_name=NAME,
    )


def stored(url: str) -> list[tuple[str, str, float | None]]:
    """(Tune trial id, state, value) of every stored trial, in trial-number order."""
    trials = optuna.load_study(study_name=NAME, storage=url).trials
    return [(t.user_attrs["trial_id"], t.state.name, t.value) for t in trials]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return storage_url(tmp_path)


def run_three(search: TrialConfigSearch) -> None:
    """a: finishes (final metrics), b: stopped early after epoch 1, c: errors."""
    for epoch_acc, trial_id in ((0.5, "a"), (0.6, "b"), (0.7, "c")):
        search.suggest(trial_id)
        search.on_trial_result(trial_id, {"val_acc": epoch_acc, "training_iteration": 1})
    search.on_trial_complete("a", {"val_acc": 0.9, FINAL_KEY: {"val_acc": 0.9}})
    search.on_trial_complete("b", {"val_acc": 0.6})  # the scheduler's stop: no final metrics
    search.on_trial_complete("c", error=True)


def test_states_values_and_what_each_trial_trained_with(url: str):
    run_three(searcher(url))
    assert stored(url) == [("a", "COMPLETE", 0.9), ("b", "PRUNED", 0.6), ("c", "FAIL", None)]
    first = optuna.load_study(study_name=NAME, storage=url).trials[0]
    assert first.intermediate_values == {1: 0.5}
    assert first.params["split_ratio"] == default_point(*ARM)["split_ratio"]  # the defaults first
    assert sum(first.user_attrs["stage_fracs"]) == pytest.approx(1, abs=1e-3)  # derived, as trained


def test_resume_leaves_the_trials_of_the_saved_state(url: str, tmp_path: Path):
    search = searcher(url)
    search.suggest("a")
    search.on_trial_complete("a", {"val_acc": 0.9, FINAL_KEY: {}})
    search.suggest("b")
    search.save(str(tmp_path / "searcher.pkl"))  # what Tune's experiment state holds
    search.on_trial_complete("b", {"val_acc": 0.8, FINAL_KEY: {}})
    search.suggest("c")  # asked after the save: a resumed Tune never knows this trial
    assert [row[0] for row in stored(url)] == ["a", "b", "c"]

    resumed = searcher(url)  # as in the rerun sweep: a new searcher, then Tune restores its state
    resumed.restore(str(tmp_path / "searcher.pkl"))
    assert stored(url) == [("a", "COMPLETE", 0.9), ("b", "RUNNING", None)]
    resumed.on_trial_complete("b", {"val_acc": 0.85, FINAL_KEY: {}})  # Tune reruns b to its end
    resumed.suggest("d")
    assert stored(url) == [("a", "COMPLETE", 0.9), ("b", "COMPLETE", 0.85), ("d", "RUNNING", None)]


def test_a_new_search_replaces_an_old_study_of_the_same_name(url: str):
    run_three(searcher(url))
    searcher(url)  # the study directory searched again from scratch (its Tune results removed)
    assert stored(url) == []

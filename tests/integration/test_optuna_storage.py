"""The sweep's searcher writes each arm's search through to a real Optuna sqlite storage.

Tune's hooks are called by hand here (the sweep tests drive them through a real Tune run): the
states Optuna records, and what a resume from a saved searcher leaves in the storage.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from ray.tune.utils import flatten_dict

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


def result(val_acc: float, epoch: int, final: bool = False) -> dict:
    """A trial's result as Tune passes it to a searcher: flattened."""
    return flatten_dict(
        {
            "val_acc": val_acc,
            "training_iteration": epoch,
            **({FINAL_KEY: {"val_acc": 0.9}} if final else {}),
        }
    )


def run_three(search: TrialConfigSearch) -> None:
    """a: finishes (final metrics), b: stopped early on its epoch 2, c: errors."""
    for epoch_acc, trial_id in ((0.5, "a"), (0.6, "b"), (0.7, "c")):
        search.suggest(trial_id)
        search.on_trial_result(trial_id, result(epoch_acc, 1))
    search.on_trial_complete("a", result(0.9, 2, final=True))
    search.on_trial_complete("b", result(0.65, 2))  # the result the scheduler stopped it on
    search.on_trial_complete("c", error=True)


def test_states_values_and_what_each_trial_trained_with(url: str):
    run_three(searcher(url))
    assert stored(url) == [("a", "COMPLETE", 0.9), ("b", "PRUNED", 0.65), ("c", "FAIL", None)]
    first, second = optuna.load_study(study_name=NAME, storage=url).trials[:2]
    assert first.intermediate_values == {1: 0.5} and second.intermediate_values == {1: 0.6, 2: 0.65}
    assert first.params["split_ratio"] == default_point(*ARM)["split_ratio"]  # the defaults first
    assert sum(first.user_attrs["stage_fracs"]) == pytest.approx(1, abs=1e-3)  # derived, as trained


def test_resume_leaves_the_trials_of_the_saved_state(url: str, tmp_path: Path):
    search = searcher(url)
    search.suggest("a")
    search.on_trial_complete("a", result(0.9, 1, final=True))
    search.suggest("b")
    search.save(str(tmp_path / "searcher.pkl"))  # what Tune's experiment state holds
    search.on_trial_complete("b", result(0.8, 1, final=True))
    search.suggest("c")  # asked after the save: a resumed Tune never knows this trial
    assert [row[0] for row in stored(url)] == ["a", "b", "c"]

    resumed = searcher(url)  # as in the rerun sweep: a new searcher, then Tune restores its state
    resumed.restore(str(tmp_path / "searcher.pkl"))
    assert stored(url) == [("a", "COMPLETE", 0.9), ("b", "RUNNING", None)]
    resumed.on_trial_complete("b", result(0.85, 1, final=True))  # Tune reruns b to its end
    resumed.suggest("d")
    assert stored(url) == [("a", "COMPLETE", 0.9), ("b", "COMPLETE", 0.85), ("d", "RUNNING", None)]


def test_a_new_search_replaces_an_old_study_of_the_same_name(url: str):
    run_three(searcher(url))
    searcher(url)  # the study directory searched again from scratch (its Tune results removed)
    assert stored(url) == []

"""The sweep's phases on a real local Ray, Optuna and MLflow: the equal-time phase, a seed top-up
that redoes nothing, a control arm, and K studies (docs/phases.md)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from study_helpers import mlflow_runs, row, spec_data, tune_trial_ids

from study.equal_time import config_epochs
from study.spec import spec_from_dict
from study.sweep import run_sweep
from trainables.errors import UserError

# A module fixture runs a sweep and a top-up (about 3 min idle); its time counts in the first test,
# so the default 600 s per test can run out on a loaded machine.
pytestmark = pytest.mark.timeout(1800)

STANDARD, L2L, CONTROL = "seed_cnn/standard", "seed_cnn/layer_to_layer", "seed_cnn/standard:control"
ARMS = (STANDARD, L2L, CONTROL)
PHASES = spec_data(
    name="phases",
    methods=["standard", "layer_to_layer", "standard:control"],
    budget={"max_trials": 2, "seeds": 2, "max_failures": 0},
)
STUDIES = spec_data(
    name="studies",
    methods=["standard"],
    budget={"max_trials": 2, "seeds": 1, "studies": 2, "max_failures": 0},
)


def with_seeds(data: dict[str, Any], seeds: int, **budget: Any) -> dict[str, Any]:
    return {**data, "budget": {**data["budget"], "seeds": seeds, **budget}}


def runs_of(study_dir: Path, name: str) -> dict[str, Any]:
    """run id -> the run, for every trial run of the study."""
    return {r.info.run_id: r for r in mlflow_runs(study_dir, name, "trial")}


def where(runs, arm: str, phase: str) -> list:
    return [r for r in runs if r.data.tags["arm"] == arm and r.data.tags["phase"] == phase]


def state(study_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((study_dir / "state" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def phases(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """standard, layer_to_layer and standard:control: 2 search trials each, 2 seeds and their
    equal-time reruns; then the same spec with budget.seeds = 3 on the same study directory."""
    study_dir = tmp_path_factory.mktemp("phases")
    run_sweep(spec_from_dict(PHASES), study_dir)
    first = {
        "runs": runs_of(study_dir, "phases"),
        "plan": (study_dir / "state" / "equal_time.json").read_bytes(),
        "search_trials": {
            arm: tune_trial_ids(study_dir, f"{arm.replace('/', '-').replace(':', '-')}-search")
            for arm in ARMS
        },
    }
    report = run_sweep(spec_from_dict(with_seeds(PHASES, 3)), study_dir)
    return {"dir": study_dir, "first": first, "report": report.markdown}


def test_equal_time_phase_plans_each_arm_from_its_measured_time(phases):
    study_dir, runs = phases["dir"], list(phases["first"]["runs"].values())
    plan = json.loads(phases["first"]["plan"])
    times = {
        arm: [r.data.metrics["final/train_time_s"] for r in where(runs, arm, "seeds")]
        for arm in ARMS
    }
    budget_s = statistics.median(times[STANDARD])
    assert plan["models"]["seed_cnn"]["budget_s"] == budget_s
    budget = plan["arms"][L2L]["0"]
    assert budget["time_s"] == statistics.median(times[L2L])
    assert budget["epochs"] == pytest.approx(2 * budget_s / budget["time_s"])
    assert set(plan["arms"]) == {L2L}  # standard and its control arm are not rerun
    best = state(study_dir, "seed_cnn-standard-search")["val_acc"]
    assert plan["models"]["seed_cnn"]["target"]["val_acc"] == pytest.approx(best - 0.01)

    reruns = [r for r in runs if r.data.tags["phase"] == "equal_time"]
    assert sorted((r.data.tags["arm"], r.data.tags["pair"]) for r in reruns) == [
        (L2L, "1"),
        (L2L, "2"),
    ]
    seeds = {r.data.tags["pair"]: r for r in where(runs, L2L, "seeds")}
    for rerun in reruns:
        config = seeds[rerun.data.tags["pair"]].data.params  # the same best config and seed
        expected = config_epochs(
            best_config(study_dir, "seed_cnn-layer_to_layer"), budget["epochs"]
        )
        assert rerun.data.params == {**config, "epochs": str(expected)}


def best_config(study_dir: Path, search: str) -> dict[str, Any]:
    return state(study_dir, f"{search}-search")["config"]


def test_seed_top_up_runs_only_the_missing_seeds_and_their_reruns(phases):
    study_dir, before = phases["dir"], phases["first"]["runs"]
    after = runs_of(study_dir, "phases")
    assert set(before) <= set(after)  # nothing deleted or redone
    added = sorted(
        (r.data.tags["arm"], r.data.tags["phase"], r.data.tags["pair"])
        for run_id, r in after.items()
        if run_id not in before
    )
    assert added == sorted(
        [(arm, "seeds", "3") for arm in ARMS] + [(L2L, "equal_time", "3")]
    )  # no search trial
    for arm, trials in phases["first"]["search_trials"].items():
        search = arm.replace("/", "-").replace(":", "-") + "-search"
        assert tune_trial_ids(study_dir, search) == trials
    assert len(tune_trial_ids(study_dir, "seeds-3-3")) == 3
    assert len(tune_trial_ids(study_dir, "equal_time-3-3")) == 1
    assert state(study_dir, "seeds")["seeds"] == [1, 2, 3]
    for arm in ("standard", "layer_to_layer", "standard:control"):
        assert row(phases["report"], "Table 1", "seed_cnn", arm)[5] == "3"
    assert row(phases["report"], "Table 4", "seed_cnn", "layer_to_layer")[6] == "3"


def test_the_plan_is_computed_once_and_reused_by_the_top_up(phases):
    study_dir = phases["dir"]
    assert (study_dir / "state" / "equal_time.json").read_bytes() == phases["first"]["plan"]
    plan = json.loads(phases["first"]["plan"])
    runs = list(runs_of(study_dir, "phases").values())
    standard = [r.data.metrics["final/train_time_s"] for r in where(runs, STANDARD, "seeds")]
    assert plan["models"]["seed_cnn"]["budget_s"] != statistics.median(standard)  # not redone
    epochs = {r.data.params["epochs"] for r in where(runs, L2L, "equal_time")}
    assert len(epochs) == 1  # the top-up's rerun got the stored budget
    target = 100 * plan["models"]["seed_cnn"]["target"]["val_acc"]
    assert f"Targets: seed_cnn {target:.2f}% (standard's best search val_acc" in phases["report"]


def test_any_other_spec_change_is_refused_with_one_line(phases):
    changed = spec_from_dict(with_seeds(PHASES, 3, max_trials=3))
    with pytest.raises(UserError) as err:
        run_sweep(changed, phases["dir"])
    assert "(changed: budget.max_trials 2 -> 3); only budget.seeds may be raised" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=r"budget.seeds=2 is fewer than the 3 this study ran"):
        run_sweep(spec_from_dict(PHASES), phases["dir"])


def test_a_control_arm_has_its_own_sampler_seed_and_seed_numbers(phases):
    study_dir, report = phases["dir"], phases["report"]
    assert state(study_dir, "seed_cnn-standard-search")["sampler_seed"] == 0
    assert state(study_dir, "seed_cnn-standard-control-search")["sampler_seed"] == 1
    runs = list(runs_of(study_dir, "phases").values())
    searched = {arm: where(runs, arm, "search") for arm in (STANDARD, CONTROL)}
    assert {r.data.params["seed"] for r in searched[STANDARD]} == {"0"}
    assert {r.data.params["seed"] for r in searched[CONTROL]} == {"1000"}
    # the defaults, then TPE's first random sample, which another sampler seed draws elsewhere
    lrs = {arm: {r.data.params["lr"] for r in trials} for arm, trials in searched.items()}
    assert len(lrs[STANDARD]) == 2 and lrs[STANDARD] != lrs[CONTROL]
    seeds = {
        arm: sorted((r.data.tags["pair"], r.data.params["seed"]) for r in where(runs, arm, "seeds"))
        for arm in (STANDARD, CONTROL)
    }
    assert seeds[STANDARD] == [("1", "1"), ("2", "2"), ("3", "3")]
    assert seeds[CONTROL] == [("1", "1001"), ("2", "1002"), ("3", "1003")]
    assert row(report, "Table 2", "seed_cnn", "standard:control − standard")[2] == "3"
    assert "\nVerdict seed_cnn, standard:control vs standard, control: " in report
    assert "standard:control vs standard, equal compute" not in report
    assert "control (1 tested)" in report


@pytest.fixture(scope="module")
def studies(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """standard alone, budget.studies = 2: two searches of 2 trials, one seed each."""
    study_dir = tmp_path_factory.mktemp("studies")
    report = run_sweep(spec_from_dict(STUDIES), study_dir)
    return {"dir": study_dir, "report": report.markdown}


def test_k_studies_search_apart_and_pair_by_study_and_index(studies):
    study_dir = studies["dir"]
    names = [f"seed_cnn-standard-study{k}" for k in (0, 1)]
    assert [state(study_dir, f"{name}-search")["sampler_seed"] for name in names] == [0, 1]
    runs = list(runs_of(study_dir, "studies").values())
    search = {
        name: [r for r in runs if r.data.tags["tune_experiment"] == f"{name}-search"]
        for name in names
    }
    assert [len(trials) for trials in search.values()] == [2, 2]
    assert {r.data.params["study"] for r in search[names[1]]} == {"1"}
    lrs = [{r.data.params["lr"] for r in search[name]} for name in names]
    assert len(lrs[0]) == 2 and lrs[0] != lrs[1]  # the defaults and another random sample
    seeds = where(runs, STANDARD, "seeds")
    assert sorted(
        (r.data.tags["pair"], r.data.params["seed"], r.data.params["study"]) for r in seeds
    ) == [("0:1", "1", "0"), ("1:1", "1001", "1")]
    plan = state(study_dir, "equal_time")
    times = [r.data.metrics["final/train_time_s"] for r in seeds]
    assert plan["models"]["seed_cnn"]["budget_s"] == statistics.median(times)  # all studies' seeds
    cells = row(studies["report"], "Table 5", "seed_cnn", "standard")
    assert len(cells) == 5 and float(cells[4]) >= 0
    assert row(studies["report"], "Table 1", "seed_cnn", "standard")[5] == "2"

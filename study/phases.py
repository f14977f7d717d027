"""The sweep's timed phases, after the searches: seeds (every best config rerun with budget.seeds
seeds) and equal time (every compared arm rerun over the same seeds with a budget fit to
standard's training time, study.equal_time).

Both run in batches of seed indices 1..budget.seeds. The first batch is the Tune experiment
`seeds` (`equal_time`); raising budget.seeds on a finished study runs only the missing indices, as
`seeds-<first>-<last>` (`equal_time-<first>-<last>`). A batch is recorded in the state before it
starts, so an interrupted one is resumed under its own name and never run twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow.tracking import MlflowClient

from study import equal_time
from study.phase_check import check_phase
from study.spec import Arm, StudySpec
from study.state import StudyState

SEEDS, EQUAL_TIME = "seeds", "equal_time"
RECORDS = {
    SEEDS: "seeds",
    EQUAL_TIME: "equal_time_runs",
}  # the state record of each phase's batches


@dataclass(frozen=True)
class TimedTrial:
    """One trial of a timed phase: the arm, its study, the seed index and the config it trains."""

    arm: Arm
    study: int
    index: int
    pair: str  # the key that pairs it with the other arms' runs (StudySpec.pair)
    config: dict[str, Any]  # flat TrainConfig, seed (and the equal-time epochs) set


BestConfigs = dict[tuple[Arm, int], dict[str, Any]]  # (arm, study) -> its search's best config


def seeds_trials(spec: StudySpec, best: BestConfigs, indices: list[int]) -> list[TimedTrial]:
    """The seeds phase's trials for `indices`: every best config with the arm's seed numbers."""
    return [
        TimedTrial(
            arm,
            study,
            index,
            spec.pair(study, index),
            {**config, "seed": spec.seed_number(arm, study, index)},
        )
        for index in indices
        for (arm, study), config in best.items()
    ]


def equal_time_trials(
    spec: StudySpec, best: BestConfigs, plan: dict[str, Any], indices: list[int]
) -> list[TimedTrial]:
    """The equal-time phase's trials for `indices`: the seeds trials of the arms the plan budgets,
    with the planned epochs."""
    out = []
    for trial in seeds_trials(spec, best, indices):
        budget = plan["arms"].get(trial.arm.name, {}).get(str(trial.study))
        if budget is not None:
            epochs = equal_time.config_epochs(trial.config, budget["epochs"])
            out.append(
                TimedTrial(
                    trial.arm,
                    trial.study,
                    trial.index,
                    trial.pair,
                    {**trial.config, "epochs": epochs},
                )
            )
    return out


# (phase, experiment, trials) -> {"errored": count, "failed": first failure's reason when no
# trial finished, else None} (study.tune_arm.TuneRunner.timed)
RunBatch = Callable[[str, str, list[TimedTrial]], dict[str, Any]]


def run_batches(
    state: StudyState,
    phase: str,
    seeds: int,
    build: Callable[[list[int]], list[TimedTrial]],
    run_batch: RunBatch,
) -> None:
    """Run `phase` for the seed indices 1..`seeds` it has not run (an interrupted batch first),
    then fail the study (study.phase_check) when no batch of it had a finished trial."""
    record = state.get(RECORDS[phase]) or {"seeds": [], "errored": 0, "failed": None}
    while True:
        done = set(record["seeds"])
        batch = record.get("pending")
        if batch is None:
            missing = [index for index in range(1, seeds + 1) if index not in done]
            if not missing:
                check_phase(phase.replace("_", " "), record.get("failed"))
                return
            name = f"{phase}-{missing[0]}-{missing[-1]}" if done else phase
            batch = {"name": name, "seeds": missing}
            record = {**record, "pending": batch}
            state.put(RECORDS[phase], record)
        trials = build(batch["seeds"])
        ran = run_batch(phase, batch["name"], trials) if trials else {"errored": 0, "failed": None}
        earlier_finished = bool(done) and record.get("failed") is None
        record = {
            "seeds": sorted(done | set(batch["seeds"])),
            "errored": record["errored"] + ran["errored"],
            "failed": None if earlier_finished else ran["failed"],  # no finished trial so far
        }
        state.put(RECORDS[phase], record)


def run_timed_phases(
    spec: StudySpec,
    state: StudyState,
    best: BestConfigs,
    run_batch: RunBatch,
    client: MlflowClient,
    experiment_id: str,
    parents: dict[str, str],
) -> None:
    """The seeds phase, then (budget.equal_time) the equal-time plan, made once, and its phase."""
    if not spec.budget.seeds or not best:
        return
    seeds = spec.budget.seeds
    run_batches(state, SEEDS, seeds, lambda idx: seeds_trials(spec, best, idx), run_batch)
    if not spec.budget.equal_time:
        return
    plan = state.get(equal_time.PLAN)
    if plan is None:
        search_best = {
            (arm.name, study): state.get(f"{spec.search_name(arm, study)}-search")["val_acc"]
            for arm, study in best
        }
        times = equal_time.seeds_times(client, experiment_id)
        plan = equal_time.make_plan(spec, times, search_best)
        state.put(equal_time.PLAN, plan)
    equal_time.log_plan(client, parents, plan)
    for line in equal_time.describe(plan):
        print(f"[{EQUAL_TIME}] {line}", flush=True)
    run_batches(
        state,
        EQUAL_TIME,
        seeds,
        lambda idx: equal_time_trials(spec, best, plan, idx),
        run_batch,
    )

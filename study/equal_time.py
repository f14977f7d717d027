"""The equal-time phase's plan: the compared arms rerun with schedules that end in standard's time.

AlgoPerf's way: a schedule is part of the method and runs to its end; a run is not cut at a
deadline. Per model, T is standard's median `train_time_s` over its seeds-phase runs (every
study's). Each compared arm (a method other than standard, not a control arm) gets, per study,
`budget.epochs * T / t_arm` in budget.epochs units, t_arm being its median `train_time_s` in that
study's seeds phase, so its training takes about T. The time-to-target target is fixed before the
phase: the spec's `report.target_val_acc`, else standard's best search-phase val_acc minus
`report.target_tolerance`. The plan is computed once, stored in `<study-dir>/state/equal_time.json`
and logged on the arm runs (`equal_time.*` params, which the report reads), so a later seed top-up
reruns its new seeds with the same budgets and target.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from mlflow.tracking import MlflowClient

from study import tracking
from study.spec import Arm, StudySpec
from study.verdict import BASELINE
from trainables.config import TrainConfig
from trainables.training import check_plan

PLAN = "equal_time"  # the state record (`state/equal_time.json`)
PARAM_PREFIX = "equal_time."


def is_compared(arm: Arm) -> bool:
    """Whether the equal-time phase reruns the arm: a method other than standard, not a control."""
    return arm.method != BASELINE and not arm.is_control


def budget_epochs(epochs: float, budget_s: float, arm_s: float) -> float:
    """The arm's equal-time budget in budget.epochs units: its training then takes about
    `budget_s` (T) at the `arm_s` (t_arm) its seeds runs took for `epochs`."""
    return epochs * budget_s / arm_s


def config_epochs(config: dict[str, Any], epochs: float) -> float:
    """The TrainConfig.epochs that trains an equal-time budget of `epochs` with the arm's `config`:
    as is under a FLOPs budget (standard-epoch units take fractions), rounded under
    budget_unit=epochs; raised to the fewest whole epochs the arm's stage plan fits (>= 1 epoch
    per stage) when it does not fit."""
    wanted = epochs if config.get("budget_unit", "flops") == "flops" else max(1, round(epochs))
    for budget in (wanted, *range(max(1, math.ceil(wanted)), int(config["epochs"]))):
        try:
            check_plan(TrainConfig.from_flat({**config, "epochs": budget}))
        except ValueError:
            continue
        return budget
    return max(wanted, config["epochs"])  # more epochs than a working plan fit too


def make_plan(
    spec: StudySpec,
    seeds_times: dict[tuple[str, int], list[float]],
    search_best: dict[tuple[str, int], float],
) -> dict[str, Any]:
    """The plan from the seeds phase's training times (arm name, study) -> seconds, and the best
    search val_acc per (arm name, study). `models`: per model `budget_s` (T) and `target`
    (`val_acc`, `origin`), each absent when its source has no value; `arms`: per compared arm and
    study (a string key) `time_s` (t_arm) and `epochs` (its budget)."""
    spec_targets = spec.report.targets(spec.models)
    tolerance = spec.report.target_tolerance
    studies = range(spec.budget.studies)
    models: dict[str, dict[str, Any]] = {}
    for model in spec.models:
        base = Arm(model, BASELINE).name
        entry: dict[str, Any] = {}
        times = [t for study in studies for t in seeds_times.get((base, study), [])]
        if times:
            entry["budget_s"] = statistics.median(times)
        best = [search_best[base, study] for study in studies if (base, study) in search_best]
        if model in spec_targets:
            entry["target"] = {"val_acc": spec_targets[model], "origin": "set in the spec"}
        elif best:
            entry["target"] = {
                "val_acc": max(best) - tolerance,
                "origin": f"{BASELINE}'s best search val_acc {100 * max(best):.2f}% − "
                f"{100 * tolerance:.2f} points",
            }
        models[model] = entry
    arms: dict[str, dict[str, dict[str, float]]] = {}
    for arm, study in spec.searches():
        budget_s = models[arm.model].get("budget_s")
        times = seeds_times.get((arm.name, study))
        if is_compared(arm) and budget_s and times:
            arm_s = statistics.median(times)
            arms.setdefault(arm.name, {})[str(study)] = {
                "time_s": arm_s,
                "epochs": budget_epochs(spec.budget.epochs, budget_s, arm_s),
            }
    return {"models": models, "arms": arms}


def describe(plan: dict[str, Any]) -> list[str]:
    """The plan in console lines: per model T and the target, per compared arm its budget."""
    lines = []
    for model, entry in plan["models"].items():
        target = entry.get("target")
        aim = f"target {100 * target['val_acc']:.2f}% ({target['origin']})" if target else ""
        if "budget_s" in entry:
            lines.append(f"{model}: T = {entry['budget_s']:.1f} s ({BASELINE}'s median); {aim}")
        else:
            lines.append(f"{model}: no finished {BASELINE} seeds run sets T, so no rerun")
    for arm, studies in plan["arms"].items():
        for study, budget in studies.items():
            lines.append(
                f"{arm} (study {study}): {budget['epochs']:.2f} epochs "
                f"(its seeds runs took {budget['time_s']:.1f} s)"
            )
    return lines


def seeds_times(client: MlflowClient, experiment_id: str) -> dict[tuple[str, int], list[float]]:
    """(arm name, study) -> `final/train_time_s` of every finished seeds-phase run."""
    filters = " and ".join(
        [
            tracking.tag_filter("role", "trial"),
            tracking.tag_filter("phase", "seeds"),
            "attributes.status = 'FINISHED'",
        ]
    )
    times: dict[tuple[str, int], list[float]] = {}
    for run in tracking.find_runs(client, experiment_id, filters):
        seconds = run.data.metrics.get("final/train_time_s")
        if seconds is not None:
            key = (run.data.tags["arm"], int(run.data.params.get("study", 0)))
            times.setdefault(key, []).append(seconds)
    return times


def log_plan(client: MlflowClient, parents: dict[str, str], plan: dict[str, Any]) -> None:
    """The plan's T and target as `equal_time.*` params on every arm run of the model (the
    report's source; logging the same values again is a no-op)."""
    for arm_name, run_id in parents.items():
        entry = plan["models"].get(arm_name.split("/", 1)[0], {})
        params = {
            "budget_s": entry.get("budget_s"),
            **{f"target_{k}": v for k, v in entry.get("target", {}).items()},
        }
        tracking.log_params(
            client,
            run_id,
            {PARAM_PREFIX + k: v for k, v in params.items() if v is not None},
        )

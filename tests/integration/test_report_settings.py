"""The report's "at which settings" section over real Optuna studies in a study's sqlite storage.

Two layer_to_layer arms stored as the sweep stores them (internal stage weights as params, the
derived stage_fracs as a user attr, split_step's range conditioned on split_ratio), whose final
val_acc depends on split_ratio alone: one with 30 complete trials, one with 6.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from study.optuna_storage import storage_url
from study.report.settings import FANOVA, PED_ANOVA, load_searches
from study.report.settings_plots import arm_figures
from study.report.settings_text import arm_summary, settings_lines

MANY, FEW = "seed_cnn/layer_to_layer", "vgg11/layer_to_layer"


def add_search(
    study_dir: Path, name: str, complete: int, stopped: int, seed: int, value: float | None = None
) -> None:
    """`complete` + `stopped` trials; val_acc peaks at split_ratio 0.6, or is `value` for all."""
    rng = random.Random(seed)
    study = optuna.create_study(
        study_name=name, storage=storage_url(study_dir), direction="maximize"
    )
    for i in range(complete + stopped):
        ratio = rng.uniform(0.1, 0.9)
        fewest = 1 if ratio < 0.5 else 2  # a range conditioned on an earlier sample
        step = rng.randint(fewest, 3)
        weights = [rng.uniform(0.2, 1.0) for _ in range(step + 1)]
        params = {
            "lr": 10 ** rng.uniform(-4, -2),
            "split_ratio": ratio,
            "teacher_grad": rng.random(),
            "split_step": step,
            "aux": rng.choice(["linear", "conv"]),
            **{f"_stage_w_{j}": w for j, w in enumerate(weights)},
        }
        distributions = {
            "lr": FloatDistribution(1e-4, 1e-2, log=True),
            "split_ratio": FloatDistribution(0.1, 0.9),
            "teacher_grad": FloatDistribution(0.0, 1.0),
            "split_step": IntDistribution(fewest, 3),
            "aux": CategoricalDistribution(("linear", "conv")),
            **{f"_stage_w_{j}": FloatDistribution(0.2, 1.0) for j in range(len(weights))},
        }
        done = i < complete
        study.add_trial(
            create_trial(
                params=params,
                distributions=distributions,
                value=value or 0.9 - 0.3 * (ratio - 0.6) ** 2 - (0 if done else 0.1),
                state=TrialState.COMPLETE if done else TrialState.PRUNED,
                user_attrs={
                    "trial_id": f"t{i}",
                    "stage_fracs": [w / sum(weights) for w in weights],
                },
            )
        )


@pytest.fixture(scope="module")
def searches(tmp_path_factory: pytest.TempPathFactory):
    study_dir = tmp_path_factory.mktemp("settings")
    add_search(study_dir, MANY, complete=30, stopped=5, seed=0)
    add_search(study_dir, FEW, complete=6, stopped=0, seed=1)
    return study_dir, {search.name: search for search in load_searches(study_dir)}


def arm_rows(lines: list[str], name: str) -> list[list[str]]:
    """The importance table's rows of arm `name` (its name is on the first only)."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if "|" in line]
    start = next(i for i, row in enumerate(rows) if row[0] == name)
    end = next((i for i in range(start + 1, len(rows)) if rows[i][0]), len(rows))
    return rows[start:end]


def test_importance_table_ranks_the_knob_that_matters_and_warns_under_20(searches):
    _, found = searches
    lines = settings_lines(list(found.values()), "optuna.db")
    many, few = arm_rows(lines, MANY), arm_rows(lines, FEW)
    assert many[0][1] == "split_ratio" and float(many[0][2]) > 0.5  # first by fANOVA
    assert many[0][4] == "30 / 35"  # complete trials / search trials, no warning
    assert few[0][4] == "6 / 6 ⚠ < 20: unreliable"
    knobs = {row[1] for row in many}
    assert knobs == {"lr", "split_ratio", "teacher_grad", "split_step", "aux", "stage_fracs[0]"}
    assert all(row[3] != "—" for row in many) and all(row[3] == "—" for row in few)  # PED-ANOVA
    assert math.isclose(found[MANY].importance[FANOVA].sum(), 1.0)
    assert math.isclose(found[MANY].importance[PED_ANOVA].sum(), 1.0)


def test_paragraph_caveats_follow_the_numbers(searches):
    _, found = searches
    text = "\n".join(settings_lines(list(found.values()), "optuna.db"))
    paragraph = next(line for line in text.splitlines() if line.startswith("**layer_to_layer.**"))
    many, few = paragraph.split(f"{FEW} (")
    assert "split_ratio explains most of the variance" in many
    assert "5 trials stopped early" in many and "hint, not a ranking" not in many
    assert "with 6 complete trials (under 20) this is a hint" in few and "stopped early" not in few


def test_figures_are_written_per_arm(searches):
    study_dir, found = searches
    out = study_dir / "figures"
    out.mkdir()
    paths = arm_figures(found[MANY], out)
    assert [p.name for p in paths] == [
        "importance_seed_cnn_layer_to_layer.png",
        "knobs_seed_cnn_layer_to_layer.png",
        "split_ratio_x_teacher_grad_seed_cnn_layer_to_layer.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_an_arm_whose_trials_all_score_the_same_has_nothing_to_rank(tmp_path: Path):
    add_search(tmp_path, MANY, complete=3, stopped=0, seed=2, value=0.5)
    (search,) = load_searches(tmp_path)
    assert search.importance.empty  # fANOVA raises on a constant value
    assert arm_rows(settings_lines([search], "optuna.db"), MANY)[0][1:4] == ["—", "—", "—"]
    assert "all 3 complete trials reached 50.00% validation accuracy" in arm_summary(search)


def test_no_storage_says_so(tmp_path: Path):
    assert load_searches(tmp_path) == []
    assert "No Optuna studies in `optuna.db`" in settings_lines([], "optuna.db")[-1]

"""The equal-time plan (T, target, each compared arm's budget) and its whole-epoch conversion."""

from __future__ import annotations

import pytest

from study.equal_time import config_epochs, make_plan
from study.spec import spec_from_dict
from trainables.config import TrainConfig

SPEC = {
    "name": "plan",
    "models": ["seed_cnn"],
    "methods": ["standard", "layer_to_layer", "greedy", "standard:control"],
    "budget": {"epochs": 10},
    "report": {"target_tolerance": 0.02},
}


def test_each_compared_arm_gets_epochs_times_t_over_its_own_time():
    times = {
        ("seed_cnn/standard", 0): [10.0, 30.0, 20.0],  # T = 20
        ("seed_cnn/layer_to_layer", 0): [40.0, 45.0, 50.0],  # 45
        ("seed_cnn/greedy", 0): [5.0, 6.0],  # 5.5
        ("seed_cnn/standard:control", 0): [11.0],
    }
    best = {("seed_cnn/standard", 0): 0.9, ("seed_cnn/standard:control", 0): 0.99}
    plan = make_plan(spec_from_dict(SPEC), times, best)
    assert plan["models"]["seed_cnn"]["budget_s"] == 20.0
    target = plan["models"]["seed_cnn"]["target"]
    assert target["val_acc"] == pytest.approx(0.88)  # standard's best search val_acc - 0.02
    assert target["origin"] == "standard's best search val_acc 90.00% − 2.00 points"
    assert plan["arms"] == {  # standard sets T, and a control arm answers the control question
        "seed_cnn/layer_to_layer": {"0": {"time_s": 45.0, "epochs": pytest.approx(10 * 20 / 45)}},
        "seed_cnn/greedy": {"0": {"time_s": 5.5, "epochs": pytest.approx(10 * 20 / 5.5)}},
    }


def test_t_is_the_median_over_every_study_and_a_spec_target_wins():
    spec = spec_from_dict(
        {
            **SPEC,
            "methods": ["standard", "greedy"],
            "budget": {"epochs": 10, "studies": 2},
            "report": {"target_val_acc": 0.5},
        }
    )
    times = {
        ("seed_cnn/standard", 0): [10.0],
        ("seed_cnn/standard", 1): [30.0, 40.0],
        ("seed_cnn/greedy", 1): [15.0],
    }
    plan = make_plan(spec, times, {("seed_cnn/standard", 0): 0.9})
    assert plan["models"]["seed_cnn"] == {
        "budget_s": 30.0,
        "target": {"val_acc": 0.5, "origin": "set in the spec"},
    }
    assert plan["arms"] == {"seed_cnn/greedy": {"1": {"time_s": 15.0, "epochs": 20.0}}}
    assert make_plan(spec, {}, {})["models"]["seed_cnn"] == {
        "target": {"val_acc": 0.5, "origin": "set in the spec"}
    }  # no standard run: no T, so no arm is planned


@pytest.mark.parametrize(
    "method, unit, budget, expected",
    [
        ("standard", "flops", 2.6, 2.6),  # standard-epoch units take fractions
        ("standard", "flops", 0.3, 1),  # under one epoch: raised to the fewest that fits
        # one epoch of each of seed_cnn's 5 greedy stages costs more than 2.4 (+10%) standard
        # epochs of FLOPs: raised to the fewest whole budget that fits
        ("greedy", "flops", 2.4, 3),
        ("greedy", "epochs", 2.4, 5),  # whole epochs, >= 1 per block
        ("layer_to_layer", "flops", 2.4, 3),  # its default split schedule has 3 stages
        ("greedy", "flops", 12.4, 12.4),  # above the config's own epochs
    ],
)
def test_budgets_fit_the_unit_and_are_raised_to_the_fewest_the_plan_fits(
    method, unit, budget, expected
):
    config = TrainConfig(
        model="seed_cnn", method=method, epochs=10, width=0.125, budget_unit=unit
    ).to_flat()
    assert config_epochs(config, budget) == expected

"""`python -m study plan`: FLOPs as run_plan counts them, rates measured or estimated, JSON, and
the paper-lite spec within its GPU-hour target."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from study.plan import BENCH_DIR, PROFILES, RunCost, first_trial, study_plan
from study.spec import StudySpec, load_spec, spec_from_dict
from trainables.compute import run_plan
from trainables.data import load_dataset, train_size

REPO = Path(__file__).resolve().parents[2]
PAPER_LITE_TARGET = 24.0  # GPU-hours on an H100: one 8-GPU node in an evening


def tiny_spec(**budget):
    return spec_from_dict(
        {
            "name": "tiny",
            "dataset": "digits",
            "models": ["seed_cnn"],
            "methods": ["standard", "layer_to_layer"],
            "budget": {"epochs": 4, "max_trials": 4, "search_epochs": 10, "seeds": 2, **budget},
            "fixed": {"width": 0.25},
        }
    )


def paper(models: list[str]) -> StudySpec:
    """The paper spec with `models` and the standard arm only."""
    return dataclasses.replace(load_spec("paper"), models=models, methods=["standard"])


def test_train_size_is_what_load_dataset_gives():
    assert train_size("digits", 0.1, None) == len(load_dataset("digits").train)
    assert train_size("digits", 0.1, 100) == 100


def test_plan_flops_equal_a_hand_count_from_run_plan():
    spec = tiny_spec()
    plan = study_plan(spec, "h200")
    images = len(load_dataset("digits").train)
    standard = run_plan(spec.train_config("seed_cnn", "standard"), images)
    l2l = run_plan(first_trial(spec, "seed_cnn", "layer_to_layer"), images)
    std_arm, l2l_arm = plan.arms
    # flops unit: the search buys search_epochs standard epochs of FLOPs, the seeds whole runs
    assert std_arm.search_flops == pytest.approx(10 * standard.standard_epoch_flops, rel=0.02)
    assert std_arm.seeds_flops == pytest.approx(2 * standard.planned_flops)
    assert l2l_arm.search_flops == pytest.approx(10 * standard.standard_epoch_flops, rel=0.1)
    assert l2l_arm.seeds_flops == pytest.approx(2 * l2l.planned_flops)
    # equal time: each of layer_to_layer's 2 reruns lasts standard's seeds run; standard has none
    std_run_hours = std_arm.seeds_hours / 2
    assert l2l_arm.equal_time_hours == pytest.approx(2 * std_run_hours)
    assert std_arm.equal_time_runs == 0 and std_arm.equal_time_flops == 0
    assert plan.total_flops == pytest.approx(sum(a.flops for a in plan.arms))


def test_the_trial_cap_bounds_the_search():
    """search_epochs buys 10 trials of 4 epochs, the cap allows 3: 3 trials are planned."""
    plan = study_plan(tiny_spec(search_epochs=40, max_trials=3), "h200")
    standard = plan.arms[0]
    assert standard.search_trials == 3
    assert standard.search_flops == pytest.approx(3 * standard.run_flops)


def test_a_model_without_a_measurement_is_estimated_at_the_nearest_rate():
    spec = paper(["vgg16", "resnext"])
    plan = study_plan(spec, "h200")
    vgg16, resnext = plan.arms
    measured = json.loads((BENCH_DIR / str(PROFILES["h200"])).read_text())["models"]

    def tflop_s(model: str) -> float:
        m = measured[model]["methods"]["standard"]
        return m["img_s"] * m["gflop_per_img"] / 1e3

    assert vgg16.rate_source == "measured"
    assert vgg16.rate_tflop_s == pytest.approx(tflop_s("vgg16"))
    image_gflop = RunCost.of(spec, "resnext", "standard", plan.train_images).image_flops / 1e9
    nearest = min(
        measured,
        key=lambda m: abs(
            math.log(measured[m]["methods"]["standard"]["gflop_per_img"] / image_gflop)
        ),
    )
    assert "resnext" not in measured
    assert resnext.rate_source == f"estimated: {nearest}/standard's rate at width 1"
    assert resnext.rate_tflop_s == pytest.approx(tflop_s(nearest))
    assert resnext.device_hours == pytest.approx(resnext.flops / (tflop_s(nearest) * 1e12) / 3600)


def test_a_card_without_a_measurement_is_estimated_at_the_nearest_cards_rates():
    spec = paper(["vgg16"])
    h100, h200 = study_plan(spec, "h100"), study_plan(spec, "h200")
    assert h100.arms[0].rate_source.startswith("estimated")
    assert "no h100 measurement" in h100.device_note
    assert h100.total_device_hours == pytest.approx(h200.total_device_hours)


def test_json_carries_total_device_hours_and_the_device():
    result = subprocess.run(
        [sys.executable, "-m", "study", "plan", "--spec", "quick", "--device", "cpu", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["device"] == "cpu" and plan["hour_unit"] == "core-hours"
    assert plan["total_device_hours"] == pytest.approx(
        sum(arm["device_hours"] for arm in plan["arms"])
    )
    assert plan["total_device_hours"] > 0


def test_paper_lite_fits_24_gpu_hours_on_an_h100():
    plan = study_plan(load_spec("paper-lite"), "h100")
    assert plan.hour_unit == "GPU-hours"
    assert 0 < plan.total_device_hours <= PAPER_LITE_TARGET
    assert plan.max_device_hours == PAPER_LITE_TARGET and plan.within_limit


def test_the_plan_says_whether_it_fits_max_device_hours():
    plan = study_plan(tiny_spec(), "cpu")
    assert "max_device_hours" not in plan.render()
    plan.max_device_hours = plan.total_device_hours * 0.99
    assert plan.render().endswith(
        f"= {plan.max_device_hours:g}: exceeded: the sweep will not start"
    )
    plan.max_device_hours = plan.total_device_hours
    assert plan.render().endswith("within it")

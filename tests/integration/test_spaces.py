"""`python -m study spaces`: every arm lists the same shared nuisance knobs with the ranges its
space really samples."""

from __future__ import annotations

import optuna

from search_spaces import get_search_space
from search_spaces.common import SHARED_KNOBS
from study.cli import main
from study.spaces import describe_range
from study.spec import load_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sampled_distributions(
    spec, arm, trials: int = 6
) -> dict[str, optuna.distributions.BaseDistribution]:
    """The distributions the arm's space samples in a real Optuna TPE study, built as the sweep
    builds it."""
    base = spec.train_config(arm.model, arm.method)
    space = get_search_space(
        arm.method,
        arm.model,
        spec.budget.epochs,
        base.optimizer,
        spec.pinned(arm.method),
        spec.budget.unit,
        spec.dataset,
    )
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3)
    )
    seen: dict[str, set] = {}
    for i in range(trials):
        trial = study.ask()
        space(trial)
        for name, distribution in trial.distributions.items():
            seen.setdefault(name, set()).add(distribution)
        study.tell(trial, float(i % 3))
    shared = {name: seen[name] for name in SHARED_KNOBS if name in seen}
    assert all(
        len(d) == 1 for d in shared.values()
    )  # a shared range never depends on other samples
    return {name: next(iter(d)) for name, d in shared.items()}


def printed_arms(text: str) -> dict[str, list[str]]:
    """arm name -> its `shared` lines, from the `spaces` output."""
    arms: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and "/" in line and ":" not in line:
            current = arms.setdefault(line.strip(), [])
        elif current is not None and line.strip().startswith("shared"):
            current.append(line.strip())
    return arms


def test_quick_spec_lists_the_same_shared_knobs_for_all_six_arms(capsys):
    assert main(["spaces", "--spec", "quick"]) == 0
    out = capsys.readouterr().out
    spec = load_spec("quick")
    arms = printed_arms(out)
    assert sorted(arms) == sorted(arm.name for arm in spec.arms) and len(arms) == 6
    expected = None
    for arm in spec.arms:
        distributions = sampled_distributions(spec, arm)
        assert list(distributions) == list(SHARED_KNOBS)
        expected = expected or distributions
        assert distributions == expected  # identical Optuna distributions in every arm
        assert arms[arm.name] == [
            f"shared  {name:<18} {describe_range([d])}" for name, d in distributions.items()
        ]
    assert f"{spec.budget.search_epochs:g} standard epochs of FLOPs of search" in out
    assert "budget.unit = flops: a trial's budget, budget.epochs = 5, is the training FLOPs" in out
    assert "applies per stage" in out


def test_the_epochs_unit_says_what_it_counts(capsys):
    assert main(["spaces", "--spec", "quick", "--set", "budget.unit=epochs"]) == 0
    out = capsys.readouterr().out
    assert "budget.unit = epochs: a trial trains 5 epochs of its own method" in out
    assert "20 trial-epochs of search" in out


def test_a_shared_pin_applies_to_every_arm_and_leaves_the_spaces_identical():
    spec = load_spec("quick", ["fixed.lr=0.003", "fixed.schedule=onecycle"])
    spaces = [sampled_distributions(spec, arm) for arm in spec.arms]
    assert all(list(s) == ["weight_decay", "batch_size", "label_smoothing"] for s in spaces)
    assert all(s == spaces[0] for s in spaces)


def test_pinning_a_shared_knob_for_one_arm_is_a_one_line_error(capsys):
    assert main(["spaces", "--spec", "quick", "--set", "fixed.greedy.lr=0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: fixed.greedy.lr pins a shared knob for one arm only")
        and "\n" not in err
    )

"""Search spaces: every sample of every method's space builds a valid TrainConfig and method that
fit the budget."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from search_spaces import SEARCH_SPACES, default_point, get_search_space, num_blocks, to_flat_config
from trainables.compute import fits_budget
from trainables.config import TrainConfig
from trainables.methods import build_method
from trainables.models import build_model
from trainables.training import validate

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample_configs(
    method: str,
    model: str,
    epochs: float,
    trials: int,
    pinned: dict | None = None,
    first: dict | None = None,
    unit: str = "epochs",
) -> list[TrainConfig]:
    """Run the space through a real Optuna study (TPE) and build the TrainConfig of every sample."""
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3)
    )
    if first:
        study.enqueue_trial(first)
    space = get_search_space(method, model, epochs, pinned=pinned, unit=unit)
    configs = []
    for i in range(trials):
        trial = study.ask()
        derived = space(trial)
        flat = to_flat_config({**trial.params, **derived, **(pinned or {})})
        fixed = {"model": model, "method": method, "epochs": epochs, "budget_unit": unit}
        configs.append(TrainConfig.from_flat({**flat, **fixed}))
        study.tell(trial, float(i % 3))  # some signal so TPE's model-based phase runs
    return configs


def build(config: TrainConfig):
    """The method on a tiny model: its constructor checks that the stages fit the epochs."""
    validate(config)
    model = build_model(config.model, 10, width=0.0625)
    return build_method(config, model, 10, torch.device("cpu"), steps_per_epoch=4)


def assert_fits(config: TrainConfig) -> None:
    """The method's plan spends the budget: `epochs` whole epochs, or one epoch per stage fits the
    FLOPs budget (within BUDGET_TOLERANCE) and the plan is built from it."""
    stages = build(config).plan()
    if config.budget_unit == "epochs":
        assert sum(stage.epochs for stage in stages) == config.epochs
    else:
        assert fits_budget(config) and all(stage.epochs >= 1 for stage in stages)


@pytest.mark.parametrize("unit", ["epochs", "flops"])
@pytest.mark.parametrize("method", sorted(SEARCH_SPACES))
@pytest.mark.parametrize("model, epochs", [("seed_cnn", 3), ("vgg11", 2.5), ("densenet", 8)])
def test_every_sample_builds_a_method_that_fits_the_budget(method, model, epochs, unit):
    epochs = math.ceil(epochs) if unit == "epochs" else epochs
    # densenet's stages take the longest to count (up to ~1 s each on the CPU): fewer samples
    configs = sample_configs(
        method, model, epochs, trials=3 if model == "densenet" else 6, unit=unit
    )
    for config in configs:
        assert_fits(config)
        assert 1e-4 <= config.lr <= 1e-2 and config.batch_size in (32, 64, 128)
    assert len({c.lr for c in configs}) == len(configs)  # it does search


def test_greedy_can_give_every_vgg11_block_a_stage_at_ten_standard_epochs():
    configs = sample_configs("greedy", "vgg11", 10, trials=12, unit="flops")
    assert min(c.params["blocks_per_stage"] for c in configs) == 1
    assert all(fits_budget(c) for c in configs)


def test_layer_to_layer_stage_fracs_follow_the_split_schedule():
    from trainables.methods.layer_to_layer import split_schedule

    for config in sample_configs("layer_to_layer", "vgg11", 8, trials=10):
        p = config.params
        assert len(p["stage_fracs"]) == len(
            split_schedule(num_blocks("vgg11"), p["split_ratio"], p["split_step"])
        )
        assert sum(p["stage_fracs"]) == pytest.approx(1.0, abs=1e-3)
        assert (
            0 <= p["kd_alpha"] <= 1
            and 0 <= p["teacher_grad"] <= 1
            and p["aux"] in ("linear", "conv")
        )
        assert not any(key.startswith("_") for key in config.to_flat())


def test_default_point_is_the_first_trial_and_is_the_methods_defaults():
    for method in SEARCH_SPACES:
        first = default_point(method, "seed_cnn", 6, unit="epochs")
        config = sample_configs(method, "seed_cnn", 6, trials=1, first=first)[0]
        assert (config.lr, config.weight_decay, config.batch_size) == (1e-3, 5e-4, 64)
        assert (config.warmup_frac, config.label_smoothing) == (0.0, 0.0)
        if method == "layer_to_layer":
            from trainables.methods.layer_to_layer import LayerToLayerParams

            defaults = LayerToLayerParams()
            assert (config.params["split_ratio"], config.params["aux"]) == (
                defaults.split_ratio,
                defaults.aux,
            )
            assert len(set(config.params["stage_fracs"])) == 1  # equal stages, the method's default
        if method == "greedy":
            from trainables.methods.greedy import ANNEAL_FRAC

            assert (
                config.anneal_frac == ANNEAL_FRAC
            )  # greedy's own default: hold, then anneal each stage's last 1/4
        else:
            assert config.anneal_frac == 1.0
        build(config)


def test_pinned_values_are_not_searched():
    configs = sample_configs(
        "greedy", "vgg11", 6, trials=6, pinned={"lr": 0.005, "auto_depth": True}
    )
    assert {c.lr for c in configs} == {0.005}
    assert not any(c.params.get("decoupled") for c in configs)  # auto_depth needs sequential stages
    for config in configs:
        build(config)


def test_greedy_searches_k_only_where_the_head_has_one():
    """aux_k shapes layerCNN's (and the pooled) head: decoupled trials, whose default is DGL's own
    head, do not sample it, unless the spec pins a head that has a k; DGL's head pinned: never."""
    configs = sample_configs("greedy", "vgg11", 8, trials=12)
    assert {bool(c.params.get("decoupled")) for c in configs} == {False, True}
    for config in configs:
        assert ("aux_k" in config.params) != bool(config.params.get("decoupled"))
        build(config)
    for head, with_k in (("pooled", True), ("dgl", False)):
        for config in sample_configs("greedy", "vgg11", 8, trials=6, pinned={"aux_head": head}):
            assert ("aux_k" in config.params) == with_k
            build(config)
    first = default_point("greedy", "vgg11", 8, pinned={"decoupled": True})
    assert "aux_k" not in first and "decoupled" not in first


@pytest.mark.parametrize("method", sorted(SEARCH_SPACES))
def test_no_schedule_shape_is_searched_under_a_pinned_onecycle(method):
    configs = sample_configs(method, "seed_cnn", 6, trials=4, pinned={"schedule": "onecycle"})
    assert all(
        c.schedule == "onecycle" and c.anneal_frac is None and c.warmup_frac == 0 for c in configs
    )
    searched = sample_configs(method, "seed_cnn", 6, trials=4)
    assert len({c.anneal_frac for c in searched}) == len({c.warmup_frac for c in searched}) == 4


def test_unknown_method_has_no_space():
    with pytest.raises(
        ValueError, match="no search space for method 'sgd'; valid methods: standard"
    ):
        get_search_space("sgd", "seed_cnn", 3)


@pytest.mark.parametrize("unit", ["epochs", "flops"])
@pytest.mark.parametrize("method", sorted(SEARCH_SPACES))
def test_what_optuna_records_is_what_trains(method, unit):
    """Through the sweep's searcher (Ray's OptunaSearch less the search internals), on a budget that
    binds (vgg11: 8 blocks, 3 epochs): the TrainConfig a trial trains with holds exactly the values
    Optuna recorded, and it fits."""
    from study.tune_arm import TrialConfigSearch
    from trainables.trainable import flat_config

    model, epochs = "vgg11", 3
    searcher = TrialConfigSearch(
        get_search_space(method, model, epochs, unit=unit),
        metric="val_acc",
        mode="max",
        points_to_evaluate=[default_point(method, model, epochs, unit=unit)],
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
    )
    fixed = {"model": model, "method": method, "epochs": epochs, "budget_unit": unit}
    for i in range(12):
        suggested = searcher.suggest(f"trial_{i}")
        config = TrainConfig.from_flat({**flat_config(suggested), **fixed})
        recorded = searcher._ot_study.trials[-1].params  # the Optuna study inside OptunaSearch
        trained = config.to_flat()
        assert {k: trained[k] for k in recorded if not k.startswith("_")} == {
            k: v for k, v in recorded.items() if not k.startswith("_")
        }
        assert_fits(config)
        searcher.on_trial_complete(f"trial_{i}", {"val_acc": float(i % 3)})

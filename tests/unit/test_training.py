"""The shared fit loop with the standard method: learning, determinism, resume, divergence,
metrics."""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch

from trainables.data import ImageSet
from trainables.measure import count_params
from trainables.models import MODELS
from trainables.training import DivergedError, build_model_and_method, fit

EPOCH_KEYS = {
    "epoch",
    "stage",
    "train_loss",
    "val_loss",
    "val_acc",
    "epoch_time_s",
    "peak_mem_mb",
    "throughput_img_s",
    "lr",
}
FINAL_KEYS = {
    "test_acc",
    "train_time_s",
    "peak_mem_mb",
    "params_trained",
    "params_deployed",
    "history",
    "stage_peak_mem_mb",
    "device",
    "mem_source",
    "torch_threads",
}


def test_standard_learns_digits(make_config, digits):
    final = fit(make_config(epochs=3, width=0.5, batch_size=64), splits=digits)
    assert final["test_acc"] > 0.6  # chance is 0.1
    assert set(final) >= FINAL_KEYS
    assert (
        final["params_deployed"] == final["params_trained"] > 0 and final["train_time_s"] > 0
    )  # no aux heads
    assert final["device"].startswith("cpu: ") and final["mem_source"] in ("cpu_rss", "none")
    assert final["torch_threads"] == torch.get_num_threads()
    losses = [h["train_loss"] for h in final["history"]]
    assert losses[-1] < losses[0]


def test_a_run_without_test_scoring_never_evaluates_the_test_set(make_config, digits):
    """Search trials: fit(score_test=False) has no test metrics and never runs the test set."""
    seen = []
    # an empty test set: evaluating it would divide by zero
    empty_test = dataclasses.replace(digits, test=ImageSet(digits.test.x[:0], digits.test.y[:0]))
    final = fit(
        make_config(epochs=1, max_train_samples=64),
        callback=lambda m, _: seen.append(m),
        splits=empty_test,
        score_test=False,
    )
    assert not {"test_acc", "test_loss"} & set(final) and final["val_acc"] >= 0
    assert all(not key.startswith("test") for m in seen for key in m)
    # the load the machine was under while it trained (Linux: steal from /proc/stat)
    assert final["load_avg_start"] >= 0 and final["load_avg_end"] >= 0 and final["steal_s"] >= 0


def test_callback_gets_every_epoch_with_metrics(make_config, digits):
    seen = []
    fit(
        make_config(epochs=2, max_train_samples=128),
        callback=lambda m, _: seen.append(m),
        splits=digits,
    )
    assert [m["epoch"] for m in seen] == [1, 2]
    assert all(set(m) >= EPOCH_KEYS for m in seen)


def test_same_seed_same_result_on_cpu(make_config, digits):
    config = make_config(epochs=1, max_train_samples=128)
    a, b = fit(config, splits=digits), fit(config, splits=digits)
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    assert a["test_acc"] == b["test_acc"]
    c = fit(make_config(epochs=1, max_train_samples=128, seed=1), splits=digits)
    assert c["history"][0]["train_loss"] != a["history"][0]["train_loss"]


def test_resume_continues_from_checkpoint_bit_for_bit(make_config, digits):
    config = make_config(epochs=3, max_train_samples=128)
    straight = fit(config, splits=digits)
    saved = {}

    class Interrupted(Exception):
        pass

    def stop_after_epoch_1(metrics, checkpoint):
        buffer = io.BytesIO()
        torch.save(
            checkpoint(), buffer
        )  # the state must survive a save/load with weights_only=True
        saved["state"] = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
        raise Interrupted

    with pytest.raises(Interrupted):
        fit(config, callback=stop_after_epoch_1, splits=digits)
    epochs_run = []
    resumed = fit(
        config,
        callback=lambda m, _: epochs_run.append(m["epoch"]),
        resume=saved["state"],
        splits=digits,
    )
    assert epochs_run == [2, 3]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][-1]["train_loss"] == straight["history"][-1]["train_loss"]
    assert resumed["test_acc"] == straight["test_acc"]


def test_nan_loss_raises_diverged(make_config, digits):
    with pytest.raises(
        DivergedError, match="train_loss is nan at epoch 1"
    ):  # lr 1e6 really diverges
        fit(make_config(epochs=3, max_train_samples=64, lr=1e6), splits=digits)


@pytest.mark.parametrize(
    "override,fragment",
    [
        ({"model": "nope"}, "valid models"),
        ({"method": "nope"}, "valid methods"),
        ({"dataset": "nope"}, "valid datasets"),
        ({"not_a_knob": 1}, "unknown parameter"),
    ],
)
def test_bad_names_fail_before_training(make_config, override, fragment):
    with pytest.raises(ValueError, match=fragment):
        fit(make_config(**override))


@pytest.mark.parametrize(
    "optimizer,schedule", [("sgd", "onecycle"), ("adamw", "constant"), ("sgd", "cosine")]
)
def test_optimizers_and_schedules_train(make_config, digits, optimizer, schedule):
    final = fit(
        make_config(
            epochs=1, optimizer=optimizer, schedule=schedule, lr=0.01, max_train_samples=128
        ),
        splits=digits,
    )
    assert final["history"][0]["train_loss"] < 10 and 0 <= final["test_acc"] <= 1


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_trains_one_epoch_on_cifar_layout(make_config, tiny_cifar10, model):
    final = fit(
        make_config(model=model, dataset="cifar10", epochs=1, batch_size=16), splits=tiny_cifar10
    )
    assert len(final["history"]) == 1 and math.isfinite(final["history"][0]["train_loss"])
    assert 0.0 <= final["test_acc"] <= 1.0


def test_params_trained_include_every_aux_head_params_deployed_do_not(make_config, digits):
    from trainables.methods.layer_to_layer import build_aux_head

    config = make_config(method="layer_to_layer", epochs=4, max_train_samples=64)
    final = fit(config, splits=digits)
    method = build_model_and_method(config, digits, torch.device("cpu"))
    splits = {stage.info["split"] for stage in method.plan() if "split" in stage.info}
    heads = sum(
        count_params(build_aux_head(method.shapes[s - 1], digits.num_classes, method.params.aux))
        for s in splits
    )
    assert (
        len(splits) > 1 and heads > 0
    )  # layer_to_layer drops a stage's head when the next starts: all count
    assert final["params_deployed"] == count_params(method.model)
    assert final["params_trained"] == final["params_deployed"] + heads


@pytest.mark.parametrize("method", ["standard", "layer_to_layer", "greedy"])
def test_current_lr_is_what_the_optimiser_holds(make_config, digits, method):
    """The epoch metrics' `lr`: NaN before a stage starts, then the optimiser's learning rate."""
    config = make_config(method=method, epochs=5, lr=0.003, schedule="constant")
    method = build_model_and_method(config, digits, torch.device("cpu"))
    assert math.isnan(method.current_lr())
    method.start_stage(method.plan()[0])
    assert method.current_lr() == pytest.approx(0.003)
    method.optimizer.param_groups[0]["lr"] = 0.5  # as a schedule's step sets it
    assert method.current_lr() == 0.5

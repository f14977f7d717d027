"""The one Ray-aware module of trainables/: a Tune function trainable around `training.fit`.

`train_trial(config)` builds a TrainConfig from the trial's flat config, reports every epoch
(scalar metrics + a checkpoint) to Tune, resumes from Tune's checkpoint, and reports the final
metrics together with the last epoch. It keeps no state between calls, so Tune can reuse actors.
A diverged trial stores the reason in its checkpoint and raises; a retry of that trial raises
the same error at once, so retries (meant for lost nodes) cost no training.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

import ray
import torch
from ray import tune

from search_spaces.common import to_flat_config
from trainables.config import TrainConfig
from trainables.training import DivergedError, fit

STATE_FILE = "state.pt"
DIVERGED_KEY = "diverged"  # result and checkpoint key holding the divergence reason
ARM_CONFIG_KEY = "arm_config"  # a nested base config (the seeds phase grids over arms' best configs)
FINAL_KEY = "final"  # only in a trial's last report: the final metrics' numbers (test_acc, train_time_s, ...)
FINAL_JSON_KEY = "final_json"  # ... and all final metrics but the history, as JSON (final_metrics.json)


def train_trial(config: dict[str, Any]) -> None:
    """Train one Tune trial to the end of its budget (or until Tune stops it)."""
    train_config = TrainConfig.from_flat(flat_config(config))
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no console line per saved checkpoint
    torch.set_num_threads(trial_cpus())
    node_id = ray.get_runtime_context().get_node_id()
    resume = _load_checkpoint()
    if resume is not None and DIVERGED_KEY in resume:
        raise DivergedError(resume[DIVERGED_KEY])
    last: dict[str, Any] = {}
    deferred: dict[str, Any] = {}

    def on_epoch(metrics: dict[str, Any], checkpoint: Callable[[], dict[str, Any]]) -> None:
        last.update(metrics)
        if metrics["epoch"] == train_config.epochs:  # reported with the final metrics, once test_acc is known
            deferred.update(metrics=metrics, state=checkpoint())
        else:
            _report({**numbers(metrics), "node_id": node_id}, checkpoint())

    try:
        final = fit(train_config, on_epoch, resume=resume)
    except DivergedError as err:
        reason = f"DivergedError: {err}"
        _report({"epoch": int(last.get("epoch", 0)), "val_acc": float(last.get("val_acc", 0.0)),
                 DIVERGED_KEY: reason, "node_id": node_id}, {DIVERGED_KEY: reason})
        raise
    summary = {k: v for k, v in final.items() if k != "history"}
    report = {**numbers(deferred.get("metrics", {})), "epoch": int(final["epochs_run"]), "val_acc": final["val_acc"],
              FINAL_KEY: numbers(summary), FINAL_JSON_KEY: json.dumps(summary, default=str), "node_id": node_id}
    _report(report, deferred.get("state"))


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Tune trial config as `TrainConfig.from_flat` takes it: ARM_CONFIG_KEY unnested, search internals dropped."""
    merged = {**config.get(ARM_CONFIG_KEY, {}), **{k: v for k, v in config.items() if k != ARM_CONFIG_KEY}}
    return to_flat_config(merged)


def trial_cpus() -> int:
    """Whole CPU cores reserved for this trial (at least 1): the torch thread count."""
    resources = tune.get_context().get_trial_resources().required_resources
    return max(1, int(resources.get("CPU", 1)))


def numbers(metrics: dict[str, Any]) -> dict[str, int | float]:
    """The numeric entries (what Tune's schedulers take); lists and the rest travel in FINAL_JSON_KEY."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, Path(tmp) / STATE_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _load_checkpoint() -> dict[str, Any] | None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, weights_only=True)


def with_resources(cpu: float, gpu: float) -> Any:
    """`train_trial` with its per-trial resource request, as Tuner and Tuner.restore take it."""
    return tune.with_resources(train_trial, {"cpu": cpu, "gpu": gpu})

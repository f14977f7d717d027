"""Core pinning in a real Tune run: concurrent trials on one node hold disjoint cores, every thread
of a trial's process is pinned to them, and reused actors (after a finished or a stopped trial) pin
anew."""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ray import cloudpickle, tune
from ray.tune.experiment import Trial

from trainables.pinning import parse_core_list
from trainables.trainable import FINAL_KEY, train_trial

STOP_EPOCH = 2  # Tune stops the 4-epoch trials here; the 2-epoch ones finish


def thread_masks() -> dict[str, Any]:
    """Read from inside the trial: the allowed cores of every thread of this process."""
    masks = set()
    for status in Path("/proc/self/task").glob("*/status"):
        try:
            line = next(
                x for x in status.read_text().splitlines() if x.startswith("Cpus_allowed_list")
            )
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
        masks.add(line.split(":", 1)[1].strip())
    return {"thread_masks": sorted(masks), "pid": os.getpid(), "now": time.time()}


def pinned_trial(config: dict[str, Any]) -> None:
    started = time.time()
    train_trial(config, extra_results=lambda: {**thread_masks(), "started": started})


class Recorder(tune.Callback):
    def __init__(self) -> None:
        self.results: dict[str, list[dict[str, Any]]] = {}

    def on_trial_result(
        self, iteration: int, trials: list, trial: Trial, result: dict, **info: Any
    ) -> None:
        self.results.setdefault(trial.trial_id, []).append(dict(result))


@pytest.fixture(scope="module")
def recorded(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Recorder:
    """4 one-CPU trials, 2 at a time on the 2-CPU node, actors reused; Tune stops half of them."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    recorder = Recorder()
    config = {
        "model": "seed_cnn",
        "method": "standard",
        "dataset": "digits",
        "width": 0.125,
        "max_train_samples": 100,
        "batch_size": 32,
        "device": "cpu",
        "epochs": tune.grid_search([2, 4]),
        "seed": tune.grid_search([0, 1]),
    }
    tune.Tuner(
        tune.with_resources(pinned_trial, {"cpu": 1}),
        param_space=config,
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path_factory.mktemp("tune")),
            name="pinning",
            callbacks=[recorder],
            verbose=0,
            stop={"epoch": STOP_EPOCH},
        ),
    ).fit()
    return recorder


def test_every_thread_of_a_trial_is_pinned_to_its_own_core(recorded: Recorder):
    assert len(recorded.results) == 4
    cores: dict[str, str] = {}
    for trial_id, results in recorded.results.items():
        for result in results:
            # one mask for all threads (Tune's, Ray's, the training thread, torch's), one core
            assert len(result["thread_masks"]) == 1, result["thread_masks"]
            assert len(parse_core_list(result["thread_masks"][0])) == 1
        assert len({r["thread_masks"][0] for r in results}) == 1
        cores[trial_id] = results[0]["thread_masks"][0]
        final = results[-1].get(FINAL_KEY)
        if final is not None:  # a trial that finished records what it ran on
            assert (final["pinning"], final["cpu_cores"]) == ("exclusive", cores[trial_id])
            assert final["torch_threads"] == 1


def test_concurrent_trials_hold_disjoint_cores(recorded: Recorder):
    spans = {
        trial_id: (results[0]["started"], results[-1]["now"])
        for trial_id, results in recorded.results.items()
    }
    cores = {t: results[0]["thread_masks"][0] for t, results in recorded.results.items()}
    overlapping = [
        (a, b)
        for a, b in itertools.combinations(spans, 2)
        if spans[a][0] <= spans[b][1] and spans[b][0] <= spans[a][1]
    ]
    assert overlapping  # the two slots did train at the same time
    for a, b in overlapping:
        assert cores[a] != cores[b]


def test_reused_actors_pin_their_next_trial(recorded: Recorder):
    """A trial on an actor that ran (or was stopped in) an earlier trial is pinned all the same."""
    by_pid: dict[int, list[str]] = {}
    for trial_id, results in recorded.results.items():
        by_pid.setdefault(results[0]["pid"], []).append(trial_id)
    assert any(len(trials) > 1 for trials in by_pid.values())  # Tune did reuse an actor
    stopped = [r for r in recorded.results.values() if FINAL_KEY not in r[-1]]
    assert stopped  # and stopped a trial

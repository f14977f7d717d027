"""Harness overhead: the same short training as a plain in-process `fit` and as trials of the
sweep's Ray Tune path.

The Tune side is the sweep's own code (`study.tune_arm.TuneRunner.seeds`: reused actors, the
MLflow callback writing from the driver, per-epoch checkpoints), so the overhead is the
study's. Measured:
- `plain_s`: wall time of `fit(config)` (median; half the runs before Ray starts, half with Ray up);
- `ray_init_s`: Ray start-up (`study.sweep.init_ray`);
- `cold_trial_s`: wall time of a one-trial Tuner (new experiment, new actor);
- `warm_trial_s`: the extra wall time per trial of a K-trial Tuner over the one-trial Tuner,
  (T_K - T_1) / (K - 1): what one more trial costs in a running sweep.
Ratio `time` = warm_trial_s / plain_s; `time_cold` = (ray_init_s + cold_trial_s) / plain_s.
Ray, MLflow and Optuna are imported only here, and only when this runs.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from trainables.errors import UserError
from trainables.training import fit


def measure_harness(
    epochs: int = 3, trials: int = 4, width: float = 0.5, cpus: int = 2
) -> dict[str, Any]:
    """Plain fit vs Tune trials of seed_cnn on digits; a note instead when Ray/MLflow/Optuna are
    not installed."""
    missing = [
        name for name in ("ray", "mlflow", "optuna") if importlib.util.find_spec(name) is None
    ]
    if missing:
        return {"note": f"harness overhead not measured: {', '.join(missing)} not installed"}
    if trials < 2:
        raise UserError(
            f"harness trials={trials} is too few; valid: >= 2 (one trial is the cold reference)"
        )
    import ray
    from mlflow.tracking import MlflowClient

    from study import tracking
    from study.phases import SEEDS, seeds_trials
    from study.spec import Arm, Budget, Resources, StudySpec
    from study.sweep import init_ray, parent_run
    from study.tune_arm import TuneRunner

    def spec(seeds: int) -> StudySpec:
        return StudySpec(
            name="bench-harness",
            models=["seed_cnn"],
            methods=["standard"],
            budget=Budget(epochs=epochs, seeds=seeds, max_concurrent=1, grace_period=1),
            resources=Resources(cpu=cpus),
            fixed={"width": width},
        )

    arm = Arm("seed_cnn", "standard")
    seeds = list(range(1, trials + 1))
    torch.set_num_threads(cpus)  # what the trainable sets from the trial's CPU reservation
    plain = [
        _timed(fit, spec(trials).train_config(arm.model, arm.method, seed=s))[1]
        for s in seeds[: trials // 2]
    ]
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as tmp:
        uri = tracking.default_tracking_uri(tmp)
        client = MlflowClient(uri)
        ray_init_s = _timed(init_ray, None)[1]
        try:
            tuner_s = {}
            for n in (1, trials):
                study = spec(n)
                experiment_id = tracking.get_or_create_experiment(
                    client, f"bench-harness-{n}"
                )  # runs kept apart
                parent = parent_run(client, experiment_id, study, arm)
                runner = TuneRunner(study, str(Path(tmp) / f"tune-{n}"), uri, experiment_id)
                config = study.train_config(arm.model, arm.method).to_flat()
                trials = seeds_trials(study, {(arm, 0): config}, list(range(1, n + 1)))
                errored, tuner_s[n] = _timed(runner.timed, SEEDS, SEEDS, trials, {arm.name: parent})
                if errored:
                    raise RuntimeError(f"{errored} of {n} harness trial(s) errored; see {tmp}")
            plain += [
                _timed(fit, spec(trials).train_config(arm.model, arm.method, seed=s))[1]
                for s in seeds[trials // 2 :]
            ]
        finally:
            ray.shutdown()
    plain_s = statistics.median(plain)
    warm_trial_s = (tuner_s[trials] - tuner_s[1]) / (trials - 1)
    return {
        "ratios": {
            "harness": {
                "time": warm_trial_s / plain_s,
                "time_cold": (ray_init_s + tuner_s[1]) / plain_s,
            }
        },
        "raw": {
            "plain_s": plain_s,
            "plain_runs_s": plain,
            "ray_init_s": ray_init_s,
            "cold_trial_s": tuner_s[1],
            f"tuner_{trials}_trials_s": tuner_s[trials],
            "warm_trial_s": warm_trial_s,
        },
        "workload": {
            "model": arm.model,
            "method": arm.method,
            "dataset": "digits",
            "epochs": epochs,
            "width": width,
            "trials": trials,
            "cpus_per_trial": cpus,
        },
    }


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start

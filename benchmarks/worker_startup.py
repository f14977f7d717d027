"""Where a worker-group trial's time goes before and after it trains (`resources.workers > 1`).

Runs K trials of 2 data-parallel workers, one after another, in one Tuner on a local Ray (the
sweep's trainable, `trainables.trainable.with_resources`; seed_cnn on a few digits for one epoch,
so that start-up dominates), and splits each trial's wall time with the timings Ray Train's
controller logs for every worker group (its `[Worker Group Initialization]` lines):

- `to_controller_s`: from Tune starting the trial to the Train controller asking for the
  placement group (the trial's actor, importing the trainable, the controller actor);
- `placement_group_s`, `worker_actors_s` (the worker processes), `train_context_s` (the
  torch process group, gloo), `train_fn_launch_s` (each worker unpickling the loop, which
  imports torch and the project), `callbacks_s`: Ray Train's own split of its start-up;
- `after_start_s`: the rest of the trial's wall time, training included (`train_s`, fit's
  `train_time_s`) and the controller's polling and shut-down after it;
- `trial_s`: Tune's start to complete; `between_trials_s`: one trial's end to the next's start;
- `cpu_s`: the CPU time of every process of the run (Ray's and the trials', counted once Ray has
  shut down and reaped them, minus this process's own before Ray started), the figure that a
  busy machine distorts least.

    python -m benchmarks.worker_startup [--trials 3] [--reuse-actors] [--out FILE.json]

Ray's own knobs go in as environment variables (e.g. RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0).
Medians are printed with the load average: on a shared machine compare runs made together.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

INIT_STEPS = {
    "placement_group_s": r"Placement group ready in ([\d.]+)s",
    "worker_actors_s": r"worker actors created in ([\d.]+)s",
    "train_context_s": r"Train context initialized on workers in ([\d.]+)s",
    "train_fn_launch_s": r"Train function launched on workers in ([\d.]+)s",
    "startup_total_s": r"Worker group startup completed in ([\d.]+)s total",
}
REQUEST = "Requesting resources"


def controller_runs(session_dir: Path) -> list[dict[str, float]]:
    """Per Train controller (one per trial): when it asked for resources, and its start-up split."""
    runs = []
    for path in sorted((session_dir / "logs" / "train").glob("ray-train-sys-controller-*.log")):
        run: dict[str, float] = {}
        for line in path.read_text().splitlines():
            record = json.loads(line)
            message = record["message"]
            if message.startswith(REQUEST) and "requested_at" not in run:
                stamp = datetime.strptime(record["asctime"], "%Y-%m-%d %H:%M:%S,%f")
                run["requested_at"] = stamp.timestamp()
            for key, pattern in INIT_STEPS.items():
                found = re.search(pattern, message)
                if found and key not in run:
                    run[key] = float(found.group(1))
        if "startup_total_s" in run:
            runs.append(run)
    return sorted(runs, key=lambda r: r["requested_at"])


def measure(trials: int, reuse_actors: bool, cpus: int) -> dict[str, Any]:
    import ray
    from ray import tune
    from ray.tune.experiment import Trial

    from study.sweep import TUNE_ENV
    from trainables.trainable import FINAL_KEY, with_resources

    os.environ.update({k: os.environ.get(k, v) for k, v in TUNE_ENV.items()})
    times: dict[str, dict[str, float]] = {}

    class Clock(tune.Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
            times.setdefault(trial.trial_id, {})["start"] = time.time()

        def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info: Any):
            entry = times[trial.trial_id]
            entry["end"] = time.time()
            entry["train_s"] = trial.last_result[FINAL_KEY]["train_time_s"]

    before = os.times()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    session_dir = Path(ray._private.worker._global_node.get_session_dir_path())
    config = {
        "model": "seed_cnn",
        "method": "standard",
        "dataset": "digits",
        "epochs": 1,
        "width": 0.125,
        "max_train_samples": 64,
        "batch_size": 32,
        "seed": tune.grid_search(list(range(trials))),
    }
    start = time.time()
    with tempfile.TemporaryDirectory() as storage:
        tune.Tuner(
            with_resources(1, 0, workers=2),
            param_space=config,
            tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=reuse_actors),
            run_config=tune.RunConfig(
                storage_path=storage, name="startup", callbacks=[Clock()], verbose=0
            ),
        ).fit()
    total = time.time() - start
    runs = controller_runs(session_dir)
    ray.shutdown()
    after = os.times()
    cpu_s = sum(after[:4]) - sum(before[:4])
    ordered = sorted(times.values(), key=lambda t: t["start"])
    rows = []
    for index, (trial, run) in enumerate(zip(ordered, runs)):
        trial_s = trial["end"] - trial["start"]
        row = {
            "trial_s": trial_s,
            "to_controller_s": run["requested_at"] - trial["start"],
            **{k: run.get(k, float("nan")) for k in INIT_STEPS},
            "train_s": trial["train_s"],
            "after_start_s": trial["end"] - run["requested_at"] - run["startup_total_s"],
        }
        if index + 1 < len(ordered):
            row["between_trials_s"] = ordered[index + 1]["start"] - trial["end"]
        rows.append(row)
    keys = [*rows[0]] + ["between_trials_s"] if rows else []
    medians = {
        key: statistics.median([r[key] for r in rows if key in r])
        for key in dict.fromkeys(keys)
        if any(key in r for r in rows)
    }
    return {
        "trials": trials,
        "reuse_actors": reuse_actors,
        "cpus": cpus,
        "total_s": total,
        "per_trial_s": total / trials,
        "cpu_s": cpu_s,
        "median": medians,
        "rows": rows,
        "ray_env": {k: v for k, v in os.environ.items() if k.startswith("RAY_TRAIN_")},
        "loadavg": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--reuse-actors", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = measure(args.trials, args.reuse_actors, args.cpus)
    print(
        f"{args.trials} trials in {result['total_s']:.1f} s ({result['per_trial_s']:.1f} s each), "
        f"{result['cpu_s']:.1f} CPU-s in all processes"
    )
    print(f"load average {', '.join(f'{x:.1f}' for x in result['loadavg'])}; medians:")
    for key, value in result["median"].items():
        print(f"  {key:<20} {value:7.2f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

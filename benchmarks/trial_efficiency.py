"""`python -m benchmarks.trial_efficiency`: how close whole `study trial` runs come to the
benchmark's step speed.

The trial targets (benchmarks/README.md), per `python -m study trial ... --out T.json` run (given
as `T.json:WALL_S`, WALL_S being the whole command's wall clock):
- `throughput_ratio`: the trial's training images/s (all epochs: images / training seconds) over the
  benchmark's step images/s for the same model, method, width and batch size (target >= 0.90);
- `train_share`: training seconds over fit's wall clock (data load, training, evaluation), both
  without the
  one-time costs (target >= 0.85);
- reported beside them: `startup_s` (command wall - fit wall: interpreter start-up, imports) and
  `one_time_s` (the first epoch's excess over the median later epoch: CUDA/cuDNN initialisation,
  autotuning, compilation).
The figures are added to the benchmark's JSON (`trials`) and its Markdown is rendered again with
them.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.report import markdown
from benchmarks.run import write_results
from trainables.errors import UserError

THROUGHPUT_TARGET, TRAIN_SHARE_TARGET = 0.90, 0.85


def trial_efficiency(
    trial: dict[str, Any], command_wall_s: float, bench: dict[str, Any]
) -> dict[str, Any]:
    """The efficiency figures of one trial (its `--out` JSON) against the benchmark results
    `bench`."""
    config, history = trial["config"], trial["history"]
    epochs = [h["epoch_time_s"] for h in history]
    one_time = max(0.0, epochs[0] - statistics.median(epochs[1:])) if len(epochs) > 1 else 0.0
    train_s, wall_s = trial["train_time_s"], trial["wall_time_s"]
    entry = {
        "model": config["model"],
        "method": config["method"],
        "dataset": config["dataset"],
        "batch_size": config["batch_size"],
        "width": config["width"],
        "epochs": len(history),
        "train_img_s": trial["throughput_img_s"],
        "train_time_s": train_s,
        "fit_wall_s": wall_s,
        "command_wall_s": command_wall_s,
        "startup_s": command_wall_s - wall_s,
        "one_time_s": one_time,
        "train_share": (train_s - one_time) / (wall_s - one_time),
        "bench_img_s": float("nan"),
        "throughput_ratio": float("nan"),
        "note": "",
    }
    model = bench.get("models", {}).get(config["model"])
    if model is None or config["method"] not in model["img_s"]:
        entry["note"] = f"no benchmark of {config['model']}/{config['method']} in this run"
        return entry
    workload = model["workload"]
    if (workload["batch_size"], workload["width"]) != (config["batch_size"], config["width"]):
        entry["note"] = (
            f"benchmark ran batch {workload['batch_size']}, width {workload['width']}; the trial "
            f"batch {config['batch_size']}, width {config['width']}"
        )
        return entry
    entry["bench_img_s"] = model["img_s"][config["method"]]
    entry["throughput_ratio"] = entry["train_img_s"] / entry["bench_img_s"]
    return entry


def trial_targets(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two trial targets per trial, in the layout of `benchmarks.report.check_targets`
    (met None: n/a)."""
    checks = []
    for e in entries:
        name = f"{e['model']}/{e['method']}/{e['dataset']}"
        for key, limit in (
            ("throughput_ratio", THROUGHPUT_TARGET),
            ("train_share", TRAIN_SHARE_TARGET),
        ):
            value = e[key]
            checks.append(
                {
                    "target": f"trials.{key} >=",
                    "model": name,
                    "value": value,
                    "limit": limit,
                    "met": None if math.isnan(value) else value >= limit,
                }
            )
    return checks


def parse_trial_arg(item: str) -> tuple[Path, float]:
    """`PATH:WALL_S` -> (path, seconds)."""
    path, sep, wall = item.rpartition(":")
    try:
        if not sep:
            raise ValueError
        return Path(path), float(wall)
    except ValueError:
        raise UserError(
            f"trial {item!r}: expected PATH:WALL_S, e.g. out/resnet18.json:41.5"
        ) from None


def _none_to_nan(value: Any) -> Any:
    """JSON null (written for NaN) back to NaN, so the Markdown renders as from a live run."""
    if value is None:
        return float("nan")
    if isinstance(value, dict):
        return {k: _none_to_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_none_to_nan(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.trial_efficiency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--results",
        type=Path,
        required=True,
        help="the benchmark's <machine>-<date>.json (updated)",
    )
    p.add_argument("trials", nargs="+", metavar="TRIAL_JSON:WALL_S")
    args = p.parse_args(argv)
    try:
        trials = [parse_trial_arg(item) for item in args.trials]
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    saved = json.loads(args.results.read_text())
    results = _none_to_nan(saved)
    entries = [
        trial_efficiency(json.loads(path.read_text()), wall, results) for path, wall in trials
    ]
    results["trials"] = entries
    results["targets"] = [
        {**t, "met": t_saved["met"]}
        for t, t_saved in zip(results["targets"], saved["targets"])
        if not t["target"].startswith("trials.")
    ]  # `met` stays None (not measured), not NaN
    results["targets"] += trial_targets(entries)
    json_path, md_path = write_results(results, args.results.parent)
    print(markdown(results))
    print(f"results: {json_path}\n         {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real-data sanity check at scale: seed_cnn on the full Fashion-MNIST, every method at its
defaults, 3 seeds.

    python -m benchmarks.fashion_check --device cuda --data-dir .data/fashion-mnist --out OUT

Each (method, seed) trial is one `fit` in its own process, `--jobs` at once (small models leave a
GPU mostly idle, so trials share it). After every finished trial `fashion.json` (all trials) and
`fashion.md` (per method: test accuracy mean and sd over seeds on the full 10,000-image test set,
training time) are rewritten, so a run cut short still leaves what it finished. Not the study's
verdict: no search, each method's defaults.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from study.markdown import markdown_table
from trainables.config import TrainConfig, parse_value

METHODS = ("standard", "layer_to_layer", "greedy")
KEPT = ("test_acc", "val_acc", "train_time_s", "peak_mem_mb", "throughput_img_s", "epochs_run")


def run_one(flat: dict[str, Any]) -> dict[str, Any]:
    """One trial in a fresh process: its final metrics (no history) and its wall time including
    data load."""
    import torch

    from trainables.training import fit

    torch.set_num_threads(1)
    start = time.perf_counter()
    final = fit(TrainConfig.from_flat(flat))
    return {
        "method": flat["method"],
        "seed": flat["seed"],
        **{k: final.get(k) for k in KEPT},
        "wall_s": time.perf_counter() - start,
    }


def table(trials: list[dict[str, Any]], header: str) -> str:
    """Markdown: per method, test accuracy mean and sd over seeds, mean training and wall time."""
    rows = []
    for method in METHODS:
        runs = [t for t in trials if t["method"] == method]
        if not runs:
            continue
        acc = [t["test_acc"] for t in runs]
        sd = statistics.stdev(acc) if len(acc) > 1 else float("nan")
        mean = lambda key: statistics.fmean(t[key] for t in runs)  # noqa: E731, B023 (used at once)
        rows.append(
            [method, str(len(runs)), f"{statistics.fmean(acc):.4f}", f"{sd:.4f}"]
            + [f"{mean('train_time_s'):.1f}", f"{mean('wall_s'):.1f}"]
            + [f"{mean('throughput_img_s'):.0f}", f"{mean('peak_mem_mb'):.0f}"]
        )
    columns = ["method", "seeds", "test_acc mean", "sd", "train s", "wall s", "img/s", "peak MB"]
    lines = [header, "", *markdown_table(columns, rows, right_from=1)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the four official files (default: Debian's)",
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=3, help="trials at once")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="TrainConfig overrides for every trial (smoke runs: width, max_train_samples, epochs)",
    )
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    base: dict[str, Any] = {
        "model": "seed_cnn",
        "dataset": "fashion_mnist",
        "data_dir": args.data_dir,
        "device": args.device,
    }
    base.update({k: parse_value(v) for k, _, v in (item.partition("=") for item in args.overrides)})
    configs = [{**base, "method": m, "seed": s} for m in METHODS for s in range(1, args.seeds + 1)]
    for flat in configs:
        TrainConfig.from_flat(flat)  # a bad override fails here, not in nine workers
    args.out.mkdir(parents=True, exist_ok=True)
    header = (
        f"seed_cnn, full Fashion-MNIST (test: 10,000 images), each method at its defaults, device "
        f"{args.device}, {args.jobs} trials at once; overrides: {base}"
    )
    trials: list[dict[str, Any]] = []
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_one, flat): flat for flat in configs}
        for future in as_completed(futures):
            flat = futures[future]
            try:
                trials.append(future.result())
            except Exception as err:  # one failed trial must not lose the others' results
                print(
                    f"{flat['method']} seed {flat['seed']} failed: {type(err).__name__}: {err}",
                    flush=True,
                )
                continue
            print(
                f"{flat['method']} seed {flat['seed']}: test_acc {trials[-1]['test_acc']:.4f} "
                f"in {trials[-1]['wall_s']:.1f}s",
                flush=True,
            )
            (args.out / "fashion.json").write_text(
                json.dumps({"header": header, "trials": trials}, indent=1) + "\n"
            )
            (args.out / "fashion.md").write_text(table(trials, header))
    print(table(trials, header) + f"\ntotal {time.perf_counter() - start:.0f}s")
    return 0 if len(trials) == len(configs) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m benchmarks.run`: time and peak memory of every method as ratios to `standard`, plus
the harness overhead.

For each model the methods run interleaved (their order rotates each repeat) in this one
process; the ratios are paired per repeat and the median over repeats is reported. CPU peak
memory comes from a fresh child process per (model, method) and repeat (see
benchmarks.memory_probe); on CUDA from max_memory_allocated of the timed runs themselves.
Results: benchmarks/results/<machine>-<date>.json and .md (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import platform
import re
import socket
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.memory_probe import IsolatedMemory
from benchmarks.report import check_targets, markdown, summarise_model
from benchmarks.workload import METHOD_SETUPS, StageRun, Workload, run_workload
from study.provenance import git_commit
from trainables.errors import UserError
from trainables.measure import cpu_model, resolve_device
from trainables.training import validate

log = logging.getLogger("benchmarks")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results"
# model -> width; small enough for 2 CPU cores by default, larger with --full
WIDTHS = {
    "quick": {"seed_cnn": 0.5, "vgg16": 0.25, "resnet18": 0.25},
    "full": {"seed_cnn": 1.0, "vgg16": 0.5, "resnet18": 0.5},
}
SIZES = {
    "quick": {"batch_size": 64, "batches": 8, "warmup": 2, "repeats": 5},
    "full": {"batch_size": 128, "batches": 16, "warmup": 3, "repeats": 5},
}
MEMORY_BATCHES, MEMORY_WARMUP = (
    1,
    1,
)  # the peak is reached in the second step (optimiser state exists)
# model -> method -> per repeat: stage runs / memory probe; model -> method -> FLOPs per image and
# stage
Timings = dict[str, dict[str, list[list[StageRun]]]]
Probes = dict[str, dict[str, list[dict[str, Any]]]]
Flops = dict[str, dict[str, list[float]]]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--full", action="store_true", help="larger widths and batches, more repeats")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default: {DEFAULT_OUT})"
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="MODEL[:WIDTH]",
        help="models, optionally with a width, e.g. vgg16:0.5 (default: seed_cnn vgg16 resnet18)",
    )
    p.add_argument("--methods", nargs="+", default=list(METHOD_SETUPS), choices=list(METHOD_SETUPS))
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved repeats; the median is reported (>= 1)",
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--batches", type=int, default=None, help="timed batches per stage")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up batches per stage")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--compile", action="store_true", help="torch.compile every block and head")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: 1 on CPU, as a sweep trial with resources.cpu=1 "
        "runs, and "
        "steady when other processes share the cores; torch's default on CUDA)",
    )
    p.add_argument(
        "--no-harness", action="store_true", help="skip the Ray Tune + MLflow overhead measurement"
    )
    p.add_argument("--harness-epochs", type=int, default=3)
    p.add_argument("--harness-trials", type=int, default=4)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    log.setLevel(
        logging.DEBUG if args.verbose else logging.INFO
    )  # progress lines; the methods' logs only with -v
    try:
        results = run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    json_path, md_path = write_results(results, args.out)
    print(markdown(results))
    print(f"results: {json_path}\n         {md_path}")
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one benchmark run, as the JSON document."""
    size = SIZES["full" if args.full else "quick"]
    repeats = args.repeats if args.repeats is not None else size["repeats"]
    if repeats < 1:
        raise UserError(f"--repeats={repeats} is not valid; valid: >= 1")
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    threads = args.threads if args.threads is not None else (None if cuda else 1)
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads={threads} is not valid; valid: >= 1")
        torch.set_num_threads(threads)
    methods = [
        "standard",
        *[m for m in args.methods if m != "standard"],
    ]  # the baseline is always measured
    models = parse_models(
        args.models, WIDTHS["full" if args.full else "quick"], 0.5 if args.full else 0.25
    )
    work = {
        model: {
            method: Workload(
                model=model,
                method=method,
                width=width,
                device=device.type,
                compile=args.compile,
                batch_size=args.batch_size or size["batch_size"],
                batches=args.batches or size["batches"],
                warmup=args.warmup if args.warmup is not None else size["warmup"],
            )
            for method in methods
        }
        for model, width in models.items()
    }
    for per_model in work.values():
        for w in per_model.values():
            validate(w.config())  # names and method params, before any training
    loadavg_start = _loadavg()
    timings, memory, flops = measure_methods(work, methods, repeats, cuda)
    results: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "repeats": repeats,
        "memory_note": _memory_note(cuda),
        "models": {
            model: summarise_model(work[model], timings[model], memory[model], flops[model], cuda)
            for model in models
        },
    }
    if args.no_harness:
        results["harness"] = {"note": "harness overhead not measured (--no-harness)"}
    else:
        from benchmarks.harness import measure_harness

        log.info("harness overhead: plain fit vs Ray Tune trials")
        results["harness"] = measure_harness(
            args.harness_epochs, args.harness_trials, cpus=torch.get_num_threads()
        )
    results["machine"] = machine_info(device, loadavg_start)
    results["targets"] = check_targets(results)
    return results


def measure_methods(
    work: dict[str, dict[str, Workload]], methods: list[str], repeats: int, cuda: bool
) -> tuple[Timings, Probes, Flops]:
    """Timed runs (methods interleaved, order rotating per repeat), CPU memory probes and FLOP
    counts."""
    for (
        per_model
    ) in work.values():  # untimed: first-call costs of the process (thread pools, kernels) go here
        run_workload(dataclasses.replace(per_model["standard"], batches=1, warmup=1))
    timings: Timings = {m: {k: [] for k in methods} for m in work}
    memory: Probes = {m: {k: [] for k in methods} for m in work}
    flops: Flops = {m: {} for m in work}
    with contextlib.nullcontext() if cuda else IsolatedMemory(torch.get_num_threads()) as isolated:
        for repeat in range(repeats):
            for model in work:
                order = methods[repeat % len(methods) :] + methods[: repeat % len(methods)]
                for method in order:
                    w = work[model][method]
                    runs = run_workload(w)
                    timings[model][method].append(runs)
                    line = (
                        f"repeat {repeat + 1}/{repeats} {model}/{method}: "
                        f"{sum(r.seconds for r in runs):.2f} s"
                    )
                    small = dataclasses.replace(w, batches=MEMORY_BATCHES, warmup=MEMORY_WARMUP)
                    if (
                        isolated is not None
                    ):  # exact counts (allocator, FLOPs) are deterministic: once is enough
                        probe = isolated.measure(small, exact=repeat == 0)
                        memory[model][method].append(probe)
                        line += f", RSS {probe['rss_mb']:.0f} MB"
                        if repeat == 0:
                            flops[model][method] = probe["flops_per_img"]
                    elif repeat == 0:
                        flops[model][method] = [
                            r.flops / r.images for r in run_workload(small, count_flops=True)
                        ]
                    log.info(line)
    return timings, memory, flops


def parse_models(
    items: list[str] | None, defaults: dict[str, float], fallback: float
) -> dict[str, float]:
    """`MODEL[:WIDTH]` items -> {model: width}; models without a width get the default table's,
    else `fallback`."""
    if not items:
        return dict(defaults)
    models: dict[str, float] = {}
    for item in items:
        name, _, width = item.partition(":")
        try:
            models[name] = float(width) if width else defaults.get(name, fallback)
        except ValueError:
            raise UserError(
                f"--models item {item!r}: width {width!r} is not a number (use MODEL or MODEL:0.5)"
            ) from None
    return models


def _memory_note(cuda: bool) -> str:
    if cuda:
        return (
            "peak mem = torch.cuda.max_memory_allocated above the data, max over the measured "
            "stages; "
            "the ratios use it. No RSS on CUDA."
        )
    return (
        "peak mem = exact peak of bytes held by CPU tensors (torch.profiler allocator events, from "
        "model "
        "construction on: weights, grads, optimiser state, activations), max over the measured "
        "stages; the "
        "mem ratios use it. Peak RSS = process high-water mark above the data, a fresh process per "
        "measurement (coarser: pages, allocator cache, library buffers)."
    )


def machine_info(device: torch.device, loadavg_start: str) -> dict[str, Any]:
    """What ran the benchmark; `name` is the file-name stem (GPU name on CUDA, else the host
    name)."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", gpu or socket.gethostname()).strip("-").lower()
    return {
        "name": name,
        "device": gpu or f"CPU ({cpu_model()}, {os.cpu_count()} cores)",
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loadavg_start": loadavg_start,
        "loadavg_end": _loadavg(),
        "git_commit": git_commit(),
    }


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def write_results(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """`<out>/<machine>-<date>.json` and `.md` beside it."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{results['machine']['name']}-{results['date']}"
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(
        json.dumps(_nan_to_none(results), indent=2, default=str, allow_nan=False) + "\n"
    )
    md_path.write_text(markdown(results))
    return json_path, md_path


def _nan_to_none(value: Any) -> Any:
    """NaN (not measured) as JSON null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())

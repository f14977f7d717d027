"""Turn raw benchmark measurements into ratios against `standard`, target checks, JSON and a
Markdown table."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from benchmarks.workload import StageRun, Workload
from study.markdown import markdown_table

BASELINE = "standard"
METHOD_COLUMNS = [
    *("model", "width", "method", "epoch time (s)", "img/s", "time x std", "CPU time x std"),
    *("GFLOP/img", "FLOPs x std", "peak mem (MB)", "mem x std", "peak RSS (MB)", "RSS x std"),
]
HARNESS_COLUMNS = [
    *("plain fit (s)", "Tune trial, warm Ray (s)", "time x plain", "Ray start-up (s)"),
    *("first trial, cold (s)", "cold x plain"),
]
TRIAL_COLUMNS = [
    *("trial", "batch", "epochs", "train img/s", "bench img/s", "img/s x bench", "train s"),
    *("fit wall s", "train share", "one-time s", "start-up s", "note"),
]


@dataclass(frozen=True)
class Target:
    """A goal: `ratios.<key>.<kind>` of the listed models (None: every model) must be <= limit, or,
    with `over`, <= limit + that model's `ratios.<key>.<over>` (e.g. time within its FLOPs ratio +
    0.05)."""

    key: str
    kind: str
    limit: float
    models: tuple[str, ...] | None = None
    over: str | None = None


# layer_to_layer's time (on CPU judged by CPU time) within its FLOPs ratio + 0.05 and memory
# <= 1.05x; greedy's memory with DGL's head <= 0.40x on vgg16 and resnet18 (benchmarks/README.md);
# the Ray Tune + MLflow harness <= 1.05x a plain fit
TARGETS = (
    Target("layer_to_layer", "time", 0.05, over="flops"),
    Target("layer_to_layer", "cpu_time", 0.05, over="flops"),
    Target("layer_to_layer", "mem", 1.05),
    Target("greedy:dgl", "mem", 0.40, ("vgg16", "resnet18")),
    Target("harness", "time", 1.05),
)


def epoch_time(runs: list[StageRun], field: str = "seconds") -> float:
    """Seconds (`seconds` wall or `cpu_seconds`) per epoch over the measured stages, weighted by
    their planned epochs."""
    return sum(getattr(r, field) * r.epochs for r in runs) / sum(r.epochs for r in runs)


def median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else float("nan")


def summarise_model(
    work: dict[str, Workload],
    timings: dict[str, list[list[StageRun]]],
    memory: dict[str, list[dict[str, Any]]],
    flops: dict[str, list[float]],
    cuda: bool,
) -> dict[str, Any]:
    """One model's entry: per-method numbers, ratios to standard (paired per repeat, then the
    median), raw data.

    Memory: on CUDA the max_memory_allocated peak of the timed runs; on CPU the exact allocator
    peak (`alloc_mb`); the CPU RSS peak is reported beside it as `rss` (coarser).
    """
    methods: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for method, repeats in timings.items():
        times = [epoch_time(runs) for runs in repeats]
        cpu_times = [epoch_time(runs, "cpu_seconds") for runs in repeats]
        probes = memory.get(method, [])
        mem_runs = (
            [max(r.peak_mem_mb for r in runs) for runs in repeats]
            if cuda
            else [p["alloc_mb"] for p in probes if "alloc_mb" in p]
        )
        w = work[method]
        t = median(times)
        methods[method] = {
            "epoch_time_s": t,
            "epoch_cpu_s": median(cpu_times),
            "gflop_per_img": _epoch_mean(flops[method], repeats[0]) / 1e9,
            "img_s": w.batches * w.batch_size / t,
            "mem_mb": median(mem_runs),
            "mem_source": "cuda_max_memory_allocated" if cuda else "cpu_allocator_trace",
            "rss_mb": median([p["rss_mb"] for p in probes]) if probes else float("nan"),
            "stages": [{"index": r.index, "epochs": r.epochs, **r.info} for r in repeats[0]],
            "stage_time_s": [
                median([runs[i].seconds for runs in repeats]) for i in range(len(repeats[0]))
            ],
            "stage_mem_mb": _stage_mem(repeats, probes, cuda),
            "stage_gflop_per_img": [f / 1e9 for f in flops[method]],
        }
        raw[method] = {
            "epoch_time_s": times,
            "epoch_cpu_s": cpu_times,
            "mem_mb": mem_runs,
            "rss_mb": [p["rss_mb"] for p in probes],
        }
    ratios = (
        {m: _ratios(m, methods, raw) for m in methods if m != BASELINE}
        if BASELINE in methods
        else {}
    )
    return {
        "workload": {
            k: v
            for k, v in next(iter(work.values())).to_dict().items()
            if k not in ("model", "method")
        },
        "methods": methods,
        "ratios": ratios,
        "img_s": {m: v["img_s"] for m, v in methods.items()},
        "raw": raw,
    }


def _epoch_mean(per_stage: list[float], runs: list[StageRun]) -> float:
    """A per-stage quantity averaged over the stages, weighted by their planned epochs."""
    return sum(v * r.epochs for v, r in zip(per_stage, runs, strict=True)) / sum(
        r.epochs for r in runs
    )


def _stage_mem(
    repeats: list[list[StageRun]], probes: list[dict[str, Any]], cuda: bool
) -> list[float]:
    if cuda:
        return [median([runs[i].peak_mem_mb for runs in repeats]) for i in range(len(repeats[0]))]
    traced = [p for p in probes if "alloc_stage_mb" in p]
    return traced[0]["alloc_stage_mb"] if traced else []


def _ratios(method: str, methods: dict[str, Any], raw: dict[str, Any]) -> dict[str, float]:
    """time, cpu_time, rss: median over repeats of the paired ratio (same repeat, back to back);
    mem: ratio of peaks."""

    def paired(key: str) -> float:
        return median([m / b for m, b in zip(raw[method][key], raw[BASELINE][key]) if b > 0])

    return {
        "time": paired("epoch_time_s"),
        "cpu_time": paired("epoch_cpu_s"),
        "flops": methods[method]["gflop_per_img"] / methods[BASELINE]["gflop_per_img"],
        "mem": methods[method]["mem_mb"] / methods[BASELINE]["mem_mb"],
        "rss": paired("rss_mb"),
    }


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target against the measured ratio: value, limit, met (None when not measured)."""
    checks = []
    for target in TARGETS:
        if target.key == "harness":
            entries = {"(harness)": results.get("harness", {}).get("ratios", {})}
        else:
            entries = {
                name: model.get("ratios", {})
                for name, model in results["models"].items()
                if target.models is None or name in target.models
            }
        for name, ratios in entries.items():
            value = ratios.get(target.key, {}).get(target.kind, float("nan"))
            limit, label = target.limit, f"ratios.{target.key}.{target.kind}"
            if target.over is not None:
                limit += ratios.get(target.key, {}).get(target.over, float("nan"))
                label += f" <= {target.over} + {target.limit}"
            met = None if math.isnan(value) or math.isnan(limit) else value <= limit
            checks.append(
                {
                    "target": label,
                    "model": name,
                    "value": value,
                    "limit": round(limit, 4),
                    "met": met,
                }
            )
    return checks


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: per-model method table, harness overhead, target checks."""
    machine = results["machine"]
    lines = [
        f"# make bench: {machine['name']} ({results['date']})",
        "",
        f"{machine['device']}, torch {machine['torch']}, {machine['threads']} threads; load "
        "average "
        f"{machine['loadavg_start']} at start, {machine['loadavg_end']} at end. Ratios are to "
        "`standard`, "
        f"paired per repeat and the median of {results['repeats']} repeats. CPU time: this "
        "process's CPU seconds "
        "(all threads) in the timed epochs, less sensitive than wall time to other load on shared "
        "cores. "
        "GFLOP/img: training FLOPs per image (torch FlopCounterMode, forward + backward), "
        "load-independent.",
        f"Memory: {results['memory_note']}",
        "",
    ]
    rows = []
    for name, model in results["models"].items():
        for method, m in model["methods"].items():
            r = model["ratios"].get(
                method, {"time": 1.0, "cpu_time": 1.0, "flops": 1.0, "mem": 1.0, "rss": 1.0}
            )
            rows.append(
                [
                    name,
                    str(model["workload"]["width"]),
                    method,
                    f"{m['epoch_time_s']:.3f}",
                    f"{m['img_s']:.0f}",
                    f"{r['time']:.2f}",
                    f"{r['cpu_time']:.2f}",
                    f"{m['gflop_per_img']:.4g}",
                    f"{r['flops']:.2f}",
                    f"{m['mem_mb']:.1f}",
                    f"{r['mem']:.2f}",
                    f"{m['rss_mb']:.1f}",
                    f"{r['rss']:.2f}",
                ]
            )
    lines += markdown_table(METHOD_COLUMNS, rows, right_from=3)
    harness = results.get("harness", {})
    lines += ["", "## Harness overhead (Ray Tune trial + MLflow callback vs plain `fit`)", ""]
    if "note" in harness:
        lines.append(harness["note"])
    else:
        h, ratios = harness["raw"], harness["ratios"]["harness"]
        row = [
            f"{h['plain_s']:.2f}",
            f"{h['warm_trial_s']:.2f}",
            f"{ratios['time']:.3f}",
            f"{h['ray_init_s']:.2f}",
            f"{h['cold_trial_s']:.2f}",
            f"{ratios['time_cold']:.2f}",
        ]
        lines += markdown_table(HARNESS_COLUMNS, [row])
    if results.get("trials"):
        lines += _trials_markdown(results["trials"])
    lines += ["", "## Targets", ""]
    rows = [
        [
            c["target"],
            c["model"],
            f"{c['value']:.3f}",
            str(c["limit"]),
            "not measured" if c["met"] is None else ("yes" if c["met"] else "**no**"),
        ]
        for c in results["targets"]
    ]
    lines += markdown_table(["target", "model", "value", "limit", "met"], rows, 2, 4)
    return "\n".join(lines) + "\n"


def _trials_markdown(trials: list[dict[str, Any]]) -> list[str]:
    """Whole `study trial` runs against the benchmark (benchmarks.trial_efficiency)."""
    rows = [
        [
            f"{t['model']}/{t['method']}/{t['dataset']}",
            str(t["batch_size"]),
            str(t["epochs"]),
            f"{t['train_img_s']:.0f}",
            f"{t['bench_img_s']:.0f}",
            f"{t['throughput_ratio']:.3f}",
            f"{t['train_time_s']:.2f}",
            f"{t['fit_wall_s']:.2f}",
            f"{t['train_share']:.3f}",
            f"{t['one_time_s']:.2f}",
            f"{t['startup_s']:.2f}",
            str(t["note"]),
        ]
        for t in trials
    ]
    return [
        "",
        "## Whole trials (`python -m study trial`) vs the benchmark's step speed",
        "",
        "Training img/s over all epochs; share = training s / fit wall s, both without the first "
        "epoch's one-time excess; start-up = command wall - fit wall (interpreter, imports).",
        "",
        *markdown_table(TRIAL_COLUMNS, rows, right_from=1, right_to=11),
    ]

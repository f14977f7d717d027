"""`python -m study plan`: what a study will spend, in FLOPs and device-hours, before it spends it.

Per arm: the search budget (in the budget's unit) and trial cap, the seeds runs, the equal-time
reruns and the independent studies, their training FLOPs (trainables/compute.py, counted on the
meta device: no data, no device), and the device-hours those FLOPs take at the throughput measured
by `make bench` (benchmarks/results/). docs/plan.md says how FLOPs become hours and why the plan
is an upper bound. The sweep prints the same plan and stops when it exceeds
`budget.max_device_hours`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.equal_time import is_compared
from study.spec import StudySpec, add_spec_arguments, load_spec
from trainables.config import TrainConfig
from trainables.errors import UserError

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
# device profile -> the `make bench` file measured on it (None: not measured). The CPU profile is
# the 2-core VM measured at a load average near 6; its 2026-11-26 run saw a load of 30.
PROFILES: dict[str, str | None] = {
    "h100": None,
    "h200": "nvidia-h200-2026-11-26.json",
    "cpu": "vm-2026-11-25.json",
}
NEAREST_CARD = {"h100": "h200"}  # same tensor FLOP/s; the H200's faster memory flatters the H100
GPU_NAMES = {"H100": "h100", "H200": "h200"}  # a card's name (Ray's accelerator_type) -> profile
PLANNED_GPU = "h100"  # a GPU spec planned where no GPU is visible, or on an unknown card
STANDARD = "standard"


@dataclass(frozen=True)
class Rate:
    """Training FLOP/s of one arm on a profile, and where the number comes from."""

    flop_s: float
    source: str  # "measured", or "estimated from <model>/<method>'s rate on <profile>"

    @property
    def estimated(self) -> bool:
        return self.source != "measured"


@dataclass
class ArmPlan:
    """One arm's runs, their training FLOPs and device-hours (upper bounds: docs/plan.md)."""

    arm: str
    unit: str
    search_budget: float  # per study, in `unit`
    max_trials: int
    search_trials: float  # whole-trial equivalents the search budget buys (at most max_trials)
    seeds: int
    equal_time_runs: int  # per study
    studies: int
    run_flops: float  # one full run of the arm's base config
    search_flops: float
    seeds_flops: float
    equal_time_flops: float
    search_hours: float
    seeds_hours: float
    equal_time_hours: float
    rate_tflop_s: float
    rate_source: str

    @property
    def flops(self) -> float:
        return self.search_flops + self.seeds_flops + self.equal_time_flops

    @property
    def device_hours(self) -> float:
        return self.search_hours + self.seeds_hours + self.equal_time_hours


@dataclass
class StudyPlan:
    """Every arm's plan on one device profile, and the devices the cluster has of it."""

    spec: str
    dataset: str
    train_images: int
    device: str  # the profile: h100, h200 or cpu
    device_note: str  # how the profile was chosen, and whether its rates are measured
    devices: int  # GPUs (or CPU cores on cpu) the cluster has; 0: not known
    arms: list[ArmPlan]
    max_device_hours: float | None = None  # the spec's limit (budget.max_device_hours)

    @property
    def total_flops(self) -> float:
        return sum(arm.flops for arm in self.arms)

    @property
    def total_device_hours(self) -> float:
        return sum(arm.device_hours for arm in self.arms)

    @property
    def hour_unit(self) -> str:
        return "core-hours" if self.device == "cpu" else "GPU-hours"

    def to_json(self) -> dict[str, Any]:
        arms = [
            {**dataclasses.asdict(a), "flops": a.flops, "device_hours": a.device_hours}
            for a in self.arms
        ]
        return {
            **{k: v for k, v in dataclasses.asdict(self).items() if k != "arms"},
            "hour_unit": self.hour_unit,
            "arms": arms,
            "total_flops": self.total_flops,
            "total_device_hours": self.total_device_hours,
        }

    def render(self) -> str:
        """The plan as a researcher reads it before launching: one line per arm, then the total."""
        unit = self.arms[0].unit if self.arms else ""
        lines = [
            f"plan {self.spec!r}: {self.dataset}, {self.train_images:,} training images, budget "
            f"in {'standard epochs of FLOPs' if unit == 'flops' else 'epochs'}",
            f"device: {self.device} ({self.device_note}); one trial per device, not packed",
            f"{'arm':<26} {'search (cap)':>18} {'seeds':>5} {'eq-time':>7} {'studies':>7} "
            f"{'FLOPs':>8} {self.hour_unit:>10}",
        ]
        for a in self.arms:
            search = f"{a.search_budget:g} ({a.max_trials})"
            mark = "" if a.rate_source == "measured" else f"  {a.rate_source}"
            lines.append(
                f"{a.arm:<26} {search:>18} {a.seeds:>5} {a.equal_time_runs:>7} {a.studies:>7} "
                f"{a.flops:>8.2g} {a.device_hours:>10.3g}{mark}"
            )
        phases = " ".join(
            f"{name} {sum(getattr(a, key) for a in self.arms):.3g},"
            for name, key in (
                ("search", "search_hours"),
                ("seeds", "seeds_hours"),
                ("equal time", "equal_time_hours"),
            )
        )
        wall = (
            f"; on {self.devices} {'cores' if self.device == 'cpu' else 'GPUs'} about "
            f"{self.total_device_hours / self.devices:.3g} h if all stay busy"
            if self.devices
            else ""
        )
        lines.append(
            f"total: {self.total_flops:.3g} FLOPs, {self.total_device_hours:.3g} "
            f"{self.hour_unit} ({phases.rstrip(',')}){wall}"
        )
        lines.append("an upper bound: search trials that ASHA stops early cost less (docs/plan.md)")
        if self.max_device_hours is not None:
            verdict = "within it" if self.within_limit else "exceeded: the sweep will not start"
            lines.append(f"budget.max_device_hours = {self.max_device_hours:g}: {verdict}")
        return "\n".join(lines)

    @property
    def within_limit(self) -> bool:
        """Whether the plan fits `max_device_hours` (always, when it is unset)."""
        limit = self.max_device_hours
        return limit is None or self.total_device_hours <= limit


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan", help="what a study will spend (FLOPs, device-hours), before it spends it"
    )
    add_spec_arguments(p, "override a spec entry, e.g. --set budget.max_trials=8")
    p.add_argument(
        "--device",
        choices=sorted(PROFILES),
        default=None,
        help="plan on this device profile (default: the cluster's card, else this machine's)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address whose resources to plan on (default: $RAY_ADDRESS, else here)",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.overrides)
    if args.device is None and (args.address or os.environ.get("RAY_ADDRESS")):
        from study.sweep import init_ray

        init_ray(args.address)
    plan = study_plan(spec, args.device)
    print(json.dumps(plan.to_json(), indent=2) if args.json else plan.render())
    return 0


def study_plan(spec: StudySpec, device: str | None = None) -> StudyPlan:
    """The plan of `spec` on profile `device`, or on the cluster the sweep would see."""
    from trainables.data import train_size

    devices, note = 0, "chosen with --device"
    if device is None:
        device, devices, note = cluster_device(spec)
    config = spec.train_config(spec.models[0], spec.arms[0].method)
    images = train_size(spec.dataset, config.val_fraction, config.max_train_samples)
    rates = Rates(device)
    if rates.card != device:
        note += f"; no {device} measurement: every rate is {rates.card}'s, so estimated"
    budget = spec.budget
    arms: list[ArmPlan] = []
    for model in spec.models:
        of_model = [arm for arm in spec.arms if arm.model == model]
        runs = {arm.label: RunCost.of(spec, model, arm.method, images) for arm in of_model}
        standard_hours = (
            runs[STANDARD].flops / rates.of(runs[STANDARD]).flop_s / 3600
            if STANDARD in runs
            else 0.0
        )
        for arm in of_model:  # a control arm costs what its method does; it is never rerun
            reruns = (
                budget.seeds if budget.equal_time and is_compared(arm) and standard_hours else 0
            )
            equal_time_hours = reruns * standard_hours
            arms.append(
                arm_plan(
                    spec, model, arm.label, runs[arm.label], rates, equal_time_hours, budget.studies
                )
            )
    return StudyPlan(
        spec.name, spec.dataset, images, device, note, devices, arms, spec.budget.max_device_hours
    )


@dataclass(frozen=True)
class RunCost:
    """One full run of an arm's first search trial: the stand-in for all its trials and runs."""

    config: TrainConfig
    flops: float
    charge: float  # in the budget's unit (what the search is charged for it)
    image_flops: float  # per image and epoch, on average over its epochs

    @classmethod
    def of(cls, spec: StudySpec, model: str, method: str, images: int) -> RunCost:
        from trainables.compute import epoch_images, run_plan

        config = first_trial(spec, model, method)
        plan = run_plan(config, images)
        seen = plan.total_epochs * epoch_images(images, config.batch_size)
        return cls(config, plan.planned_flops, plan.charge, plan.planned_flops / seen)


def first_trial(spec: StudySpec, model: str, method: str) -> TrainConfig:
    """The config of the arm's first search trial: the method's defaults over the spec's base
    (greedy's defaults, unlike its bare parameters, fit the budget)."""
    from search_spaces import default_point, to_flat_config

    base = spec.train_config(model, method)
    point = default_point(
        method,
        model,
        spec.budget.epochs,
        base.optimizer,
        spec.pinned(method),
        spec.budget.unit,
        spec.dataset,
    )
    return TrainConfig.from_flat({**base.to_flat(), **to_flat_config(point)})


def arm_plan(
    spec: StudySpec,
    model: str,
    method: str,
    run: RunCost,
    rates: Rates,
    equal_time_hours: float,
    studies: int,
) -> ArmPlan:
    """One arm: the search's budget at most (or its cap's whole trials), the seeds runs, and the
    equal-time reruns, each about standard's seeds run long (`equal_time_hours` in all)."""
    budget = spec.budget
    run_flops = run.flops
    rate = rates.of(run)
    search_trials = min(float(budget.max_trials), budget.search_epochs / run.charge)
    search_flops = studies * search_trials * run_flops
    seeds_flops = studies * budget.seeds * run_flops
    equal_time_flops = studies * equal_time_hours * 3600 * rate.flop_s
    return ArmPlan(
        arm=f"{model}/{method}",
        unit=budget.unit,
        search_budget=budget.search_epochs,
        max_trials=budget.max_trials,
        search_trials=search_trials,
        seeds=budget.seeds,
        equal_time_runs=budget.seeds if equal_time_hours else 0,
        studies=studies,
        run_flops=run_flops,
        search_flops=search_flops,
        seeds_flops=seeds_flops,
        equal_time_flops=equal_time_flops,
        search_hours=search_flops / rate.flop_s / 3600,
        seeds_hours=seeds_flops / rate.flop_s / 3600,
        equal_time_hours=studies * equal_time_hours,
        rate_tflop_s=rate.flop_s / 1e12,
        rate_source=rate.source,
    )


class Rates:
    """The training FLOP/s `make bench` measured per (model, method, width) on a device profile, or
    on the nearest card measured. An arm's own measurement is one of its model, method and width
    whose FLOPs per image are within MATCH of the arm's (the same method parameters, in effect);
    any other arm gets the rate measured at the nearest FLOPs per image (log scale), the same
    method's where there is one: estimated."""

    MATCH = 0.1

    def __init__(self, device: str, folder: Path = BENCH_DIR):
        self.device = device
        self.card = device if PROFILES[device] else NEAREST_CARD[device]
        data = json.loads((folder / str(PROFILES[self.card])).read_text())
        self.entries: dict[tuple[str, str, float], tuple[float, float]] = {}
        for model, measured in data["models"].items():
            width = float(measured["workload"]["width"])
            for method, m in measured["methods"].items():
                flop_s = m["img_s"] * m["gflop_per_img"] * 1e9
                self.entries[model, method, width] = (flop_s, m["gflop_per_img"] * 1e9)

    def of(self, run: RunCost) -> Rate:
        """The rate of `run`'s arm (its model, method, width and FLOPs per image)."""
        config = run.config
        key = (config.model, config.method, float(config.width))
        if key in self.entries and self._distance(key, run.image_flops) < math.log1p(self.MATCH):
            source = "measured" if self.card == self.device else self._from(key)
            return Rate(self.entries[key][0], source)
        same = [k for k in self.entries if k[1] == config.method] or list(self.entries)
        nearest = min(same, key=lambda k: self._distance(k, run.image_flops))
        return Rate(self.entries[nearest][0], self._from(nearest))

    def _distance(self, key: tuple[str, str, float], image_flops: float) -> float:
        return abs(math.log(self.entries[key][1] / image_flops))

    def _from(self, key: tuple[str, str, float]) -> str:
        return f"estimated: {key[0]}/{key[1]}'s rate at width {key[2]:g}"


def cluster_device(spec: StudySpec) -> tuple[str, int, str]:
    """(profile, devices, how it was chosen) on the Ray cluster this process is connected to, else
    on this machine: a spec without GPUs runs on CPU cores; one with GPUs on the cluster's card."""
    import ray

    if ray.is_initialized():
        resources = ray.cluster_resources()
        where = "the Ray cluster"
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        names = [k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:")]
    else:
        import torch

        where = "this machine"
        cpus, gpus = os.cpu_count() or 1, torch.cuda.device_count()
        names = [torch.cuda.get_device_name(0)] if gpus else []
    if spec.resources.gpu == 0:
        return "cpu", cpus, f"{where}: {cpus} CPU cores, the spec asks for no GPU"
    if not gpus:
        return PLANNED_GPU, 0, f"{where} has no GPU: planned on {PLANNED_GPU}"
    profile = next((p for n, p in GPU_NAMES.items() for name in names if n in name), None)
    if profile is None:
        card = names[0] if names else "an unnamed GPU"
        return (
            PLANNED_GPU,
            gpus,
            f"{where}: {gpus} x {card}, not profiled: planned on {PLANNED_GPU}",
        )
    return profile, gpus, f"{where}: {gpus} x {names[0]}"


def check_limit(plan: StudyPlan) -> None:
    """Raise a UserError when the plan exceeds `budget.max_device_hours` (when the spec sets it)."""
    if plan.within_limit:
        return
    raise UserError(
        f"budget.max_device_hours={plan.max_device_hours:g} is exceeded: the plan needs "
        f"{plan.total_device_hours:.3g} {plan.hour_unit} on {plan.device}; lower "
        "budget.search_epochs, max_trials, seeds or epochs, or raise the limit "
        "(python -m study plan shows where the cost is)"
    )

"""What one trial asks of the Ray cluster, whether the cluster can ever place it, and how many fit
at once.

A trial of `resources.workers = 1` is one bundle {CPU: cpu, GPU: gpu} that must fit on one node.
A trial of N workers is N bundles {CPU: cpu/N, GPU: gpu/N} (Ray Train's worker group, which may
spread over nodes) plus the small bundle of the Tune trial that drives it. "Can never be placed"
is judged against the nodes alive when the sweep starts (docs/cluster.md: on an autoscaling
cluster keep at least one node of every type the study needs running, `min_workers >= 1`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.spec import StudySpec
from trainables.errors import UserError

KINDS = ("CPU", "GPU")


@dataclass(frozen=True)
class TrialRequest:
    """Per-trial resources: `workers` bundles of `cpu`/`gpu` split evenly, plus a driver bundle
    when N > 1."""

    cpu: float
    gpu: float
    workers: int = 1

    @classmethod
    def of(cls, spec: StudySpec) -> TrialRequest:
        return cls(spec.resources.cpu, spec.resources.gpu, spec.resources.workers)

    @property
    def worker_bundle(self) -> dict[str, float]:
        """What each worker (the whole trial when workers = 1) needs on one node."""
        return {"CPU": self.cpu / self.workers, "GPU": self.gpu / self.workers}

    @property
    def total(self) -> dict[str, float]:
        """All a trial holds while it runs."""
        from trainables.distributed import DRIVER_CPU  # torch: imported when needed

        driver = DRIVER_CPU if self.workers > 1 else 0.0
        return {"CPU": self.cpu + driver, "GPU": self.gpu}

    def describe(self) -> str:
        each = (
            ""
            if self.workers == 1
            else f" ({self.workers} workers of {_amounts(self.worker_bundle)})"
        )
        return f"{_amounts({'CPU': self.cpu, 'GPU': self.gpu})} per trial{each}"


def alive_nodes() -> list[dict[str, float]]:
    """CPU and GPU totals of every alive node of the connected Ray cluster."""
    import ray

    return [
        {kind: float(node["Resources"].get(kind, 0.0)) for kind in KINDS}
        for node in ray.nodes()
        if node.get("Alive")
    ]


def check_placeable(request: TrialRequest, nodes: list[dict[str, float]]) -> None:
    """Raise a UserError naming the request and the cluster when no trial could ever start."""
    bundle = request.worker_bundle
    fits_a_node = any(_fits(bundle, node) for node in nodes)
    fits_cluster = _fits(request.total, _sum(nodes))
    if fits_a_node and fits_cluster:
        return
    have = (
        "; ".join(f"node {i}: {_amounts(node)}" for i, node in enumerate(nodes, 1))
        or "no alive node"
    )
    missing = [
        kind
        for kind in KINDS
        if bundle[kind] > 0 and not any(node[kind] >= bundle[kind] for node in nodes)
    ]
    why = (
        f"no node has {' or '.join(missing)}"
        if missing and not any(_sum(nodes)[k] for k in missing)
        else "no node is large enough"
        if not fits_a_node
        else "the whole cluster is too small"
    )
    raise UserError(
        f"resources: {request.describe()} can never be placed on this Ray cluster ({why}; it has "
        f"{have}); lower resources.cpu/resources.gpu/resources.workers with --set, or add nodes"
    )


def auto_concurrency(request: TrialRequest, nodes: list[dict[str, float]]) -> int:
    """How many trials the cluster holds at once (>= 1): bundles packed per node, or the
    cluster's share."""
    if request.workers == 1:
        return max(1, sum(_copies(request.total, node) for node in nodes))
    return max(1, _copies(request.total, _sum(nodes)))


def search_limit(spec: StudySpec) -> int:
    """The most search trials worth running at once: TPE only learns from finished trials, so at
    least half of an arm's trials (and all after the random start-up ones) should see some results.
    """
    return min(
        spec.budget.max_trials,
        max(spec.search.startup_trials, math.ceil(spec.budget.max_trials / 2)),
    )


def check_data_on_driver(spec: StudySpec) -> None:
    """A CIFAR data set's folder must exist here (the driver) before any trial waits for it."""
    from trainables.data import CIFAR_FOLDERS

    if spec.dataset not in CIFAR_FOLDERS:
        return
    data_dir = spec.fixed.get("data_dir")
    if not data_dir:
        raise UserError(
            f"dataset {spec.dataset!r} needs fixed.data_dir (a folder holding "
            f"{CIFAR_FOLDERS[spec.dataset]}/); set it with --set fixed.data_dir=/path"
        )
    folder = Path(data_dir).expanduser() / CIFAR_FOLDERS[spec.dataset]
    if not folder.is_dir():
        raise UserError(
            f"dataset {spec.dataset!r}: the folder {folder} does not exist on this machine "
            f"(fixed.data_dir={data_dir!r}); every node needs it there (docs/cluster.md says how "
            f"to fetch it), or point --set fixed.data_dir=/path at a folder holding "
            f"{CIFAR_FOLDERS[spec.dataset]}/"
        )


def total_resources(nodes: list[dict[str, float]]) -> str:
    """'4 CPU, 1 GPU': the cluster's totals, for messages."""
    return _amounts(_sum(nodes))


def _fits(need: dict[str, float], have: dict[str, float]) -> bool:
    return all(need[k] <= have[k] + 1e-9 for k in KINDS)


def _copies(need: dict[str, float], have: dict[str, float]) -> int:
    return min((math.floor(have[k] / need[k] + 1e-9) for k in KINDS if need[k] > 0), default=0)


def _sum(nodes: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(node[k] for node in nodes) for k in KINDS}


def _amounts(resources: dict[str, Any]) -> str:
    return ", ".join(f"{resources[k]:g} {k}" for k in KINDS)

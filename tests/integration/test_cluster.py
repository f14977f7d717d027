"""A sweep on a simulated 2-node Ray cluster (ray.cluster_utils.Cluster) runs trials on both nodes."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pytest

from study.spec import spec_from_dict
from study.sweep import run_sweep
from study_helpers import mlflow_runs, spec_data


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    """A head and a worker node with 1 CPU each; the driver connects by address, as on a real cluster."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()


def test_trials_run_on_both_nodes(two_nodes: str, tmp_path: Path):
    import ray

    spec = spec_from_dict(spec_data(methods=["standard"], budget={"epochs": 1, "max_trials": 4, "seeds": 0}))
    ray.init(address=two_nodes, logging_level=logging.WARNING)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    run_sweep(spec, tmp_path, address=two_nodes)
    runs = mlflow_runs(tmp_path, "tiny", "trial")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["node_id"] for r in runs}) == 2  # 1 CPU per node, 2 trials at once: both nodes work

"""The documented cluster path, for real: a head and a worker node from `ray start` (own temp dirs,
ports and auth token), an `mlflow server` on 127.0.0.1, and the sweep submitted with
`ray job submit --working-dir .`. Mid-search the worker node's processes are killed: the trials it
was running must be retried from their checkpoints on the head and end FINISHED, with no MLflow
run lost or duplicated. Only the processes this test started are stopped (by PID)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_cluster import LocalCluster, wait_for
from mlflow.tracking import MlflowClient

from study import tracking

REPO = Path(__file__).resolve().parents[2]
TRIALS = 4
EPOCHS = 4
SPEC = f"""
name = "cluster"
dataset = "digits"
models = ["seed_cnn"]
methods = ["standard"]

[budget]
epochs = {EPOCHS}
max_trials = {TRIALS}
seeds = 0
grace_period = {EPOCHS}   # no early stopping: every trial runs to the end
max_failures = 2

[resources]
cpu = 1

[search]
startup_trials = {TRIALS}

[fixed]
width = 0.125
max_train_samples = 600
"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    local = LocalCluster()
    try:
        local.start_head(cpus=1)
        local.add_worker("worker", cpus=1)
        wait_for(lambda: sum(n["alive"] for n in local.nodes()) == 2, 120, "the worker node")
        yield local
    finally:
        local.stop()


def trial_runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("cluster")
    if experiment is None:
        return []
    return tracking.find_runs(
        client, experiment.experiment_id, tracking.tag_filter("role", "trial")
    )


def test_job_submit_survives_a_lost_worker_node(cluster: LocalCluster):
    _, uri = cluster.start_mlflow()
    client = MlflowClient(uri)
    spec = cluster.root / "cluster.toml"
    spec.write_text(SPEC)
    study_dir = cluster.root / "study"
    head_id = next(n["id"] for n in cluster.nodes() if n["head"])
    log = cluster.root / "job.log"
    job = cluster.submit(
        REPO,
        [
            "python",
            "-m",
            "study",
            "sweep",
            "--spec",
            str(spec),
            "--study-dir",
            str(study_dir),
            "--tracking-uri",
            uri,
        ],
        log,
    )

    # wait for a trial on the worker node that has a checkpoint (>= 1 epoch) and is still running
    def running_on_worker() -> list:
        return [
            r
            for r in trial_runs(client)
            if r.info.status == "RUNNING"
            and r.data.tags.get("node_id", head_id) != head_id
            and r.data.metrics.get("epoch", 0) >= 1
        ]

    deadline = time.monotonic() + 240
    while not (victims := running_on_worker()):
        assert job.poll() is None, (
            f"the job ended before a trial ran on the worker node:\n{log.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, (
            f"no trial ran on the worker node:\n{log.read_text()[-3000:]}"
        )
        time.sleep(0.5)
    worker_id = victims[0].data.tags["node_id"]
    finished_on_worker = {
        r.data.tags["trial_id"]
        for r in trial_runs(client)
        if r.data.tags.get("node_id") == worker_id and r.info.status == "FINISHED"
    }
    next(p for p in cluster.processes if p.name == "worker").kill()

    assert job.wait(timeout=400) == 0, log.read_text()[-5000:]
    text = log.read_text()
    assert "Job 'raysubmit_" in text and "succeeded" in text
    assert "# Study report: cluster" in text  # the job ran the whole study: search, then the report

    runs = trial_runs(client)
    ids = [r.data.tags["trial_id"] for r in runs]
    assert len(ids) == TRIALS and len(set(ids)) == TRIALS  # none lost, none duplicated
    assert {r.info.status for r in runs} == {"FINISHED"}
    by_id = {r.data.tags["trial_id"]: r for r in runs}
    for victim in victims:
        retried = by_id[victim.data.tags["trial_id"]]
        assert retried.data.tags["node_id"] == head_id  # finished on the head after its node died
        steps = [m.step for m in client.get_metric_history(retried.info.run_id, "train_loss")]
        # resumed from its checkpoint: every epoch reported once (a restart from scratch repeats
        # epoch 1)
        assert sorted(steps) == list(range(1, EPOCHS + 1)), steps
        assert "final/train_time_s" in retried.data.metrics  # it finished: its final metrics
        assert "final/test_acc" not in retried.data.metrics  # a search trial never scores test
    for trial_id in finished_on_worker:  # trials the worker had finished keep their node
        assert by_id[trial_id].data.tags["node_id"] == worker_id

"""TrialRun, the one MLflow writer of trials: each epoch is logged once, also when a retried
trial redoes epochs."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from study import tracking
from study.trial_run import TrialRun


def _epoch(epoch: int, loss: float) -> dict[str, float]:
    return {"epoch": epoch, "train_loss": loss, "val_acc": 0.5}


def test_an_epoch_redone_after_a_retry_is_logged_once(tmp_path):
    """A trial retried from an older checkpoint than its last report redoes epoch 2: the run keeps
    one point per epoch (the first), in the same writer and in one found again by a resumed driver.
    """
    client = MlflowClient(tracking.default_tracking_uri(tmp_path))
    experiment = tracking.get_or_create_experiment(client, "retry")
    run = TrialRun.create(client, experiment, "trial", {"lr": 0.1}, tags={"role": "trial"})
    for epoch, loss in ((1, 1.0), (2, 0.9), (2, 0.8), (3, 0.7)):
        run.log_epoch(_epoch(epoch, loss))
    again = TrialRun.existing(client, run.run_id)
    again.log_epoch(_epoch(3, 0.6))
    again.log_epoch(_epoch(4, 0.5))
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, "train_loss"))
    assert history == [(1, 1.0), (2, 0.9), (3, 0.7), (4, 0.5)]


def test_more_metrics_than_one_mlflow_batch_are_all_logged(tmp_path):
    """log_metrics hands MLflow one list; its client splits it under the store's 1000 per call."""
    client = MlflowClient(tracking.default_tracking_uri(tmp_path))
    experiment = tracking.get_or_create_experiment(client, "wide")
    run_id = tracking.start_run(client, experiment, "trial")
    tracking.log_metrics(client, run_id, {"probe_acc": [0.5] * 2500, "val_acc": 0.9})
    assert len(client.get_run(run_id).data.metrics) == 2501


def test_the_data_set_is_a_training_input_with_its_split_sizes(tmp_path):
    client = MlflowClient(tracking.default_tracking_uri(tmp_path))
    experiment = tracking.get_or_create_experiment(client, "data")
    run = TrialRun.create(client, experiment, "trial", {"lr": 0.1}, tags={"role": "trial"})
    sizes = {"train": 1294, "val": 144, "test": 359}
    run.log_dataset(
        {
            "name": "digits",
            "digest": "8819260a2d03f912848bfed011a09318",
            "source": "built-in loader of 'digits'",
            "sizes": sizes,
            "image_shape": [3, 32, 32],
            "num_classes": 10,
        }
    )
    [logged] = client.get_run(run.run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest) == (
        "digits",
        "8819260a2d03f912848bfed011a09318",
    )
    assert json.loads(logged.dataset.profile) == {**sizes, "num_classes": 10}
    assert [(tag.key, tag.value) for tag in logged.tags] == [("mlflow.data.context", "training")]


def test_an_epoch_its_system_samples_and_tags_are_logged_together(tmp_path):
    """The sweep's one write per report: the epoch, the system samples since the last report and
    the first report's tags; a redone epoch is not logged again, its samples are."""
    client = MlflowClient(tracking.default_tracking_uri(tmp_path))
    experiment = tracking.get_or_create_experiment(client, "together")
    run = TrialRun.create(client, experiment, "trial", {"lr": 0.1}, tags={"role": "trial"})
    sample = [{"timestamp_ms": 1000, "metrics": {"cpu_utilization_percentage": 10.0}}]
    run.log_epoch(_epoch(1, 1.0), sample, {"node_id": "node-1"})
    run.log_epoch(
        _epoch(1, 0.9), [{"timestamp_ms": 2000, "metrics": {"cpu_utilization_percentage": 20.0}}]
    )
    assert client.get_run(run.run_id).data.tags["node_id"] == "node-1"
    history = client.get_metric_history(run.run_id, "system/cpu_utilization_percentage")
    assert sorted((m.step, m.value, m.timestamp) for m in history) == [
        (0, 10.0, 1000),
        (1, 20.0, 2000),
    ]
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "train_loss")] == [
        (1, 1.0)
    ]


def test_more_metrics_than_one_batch_takes_all_land(tmp_path):
    """MLflow caps a write at 1000 metrics: a larger batch is split, its tags written once."""
    client = MlflowClient(tracking.default_tracking_uri(tmp_path))
    experiment = tracking.get_or_create_experiment(client, "large")
    run = TrialRun.create(client, experiment, "trial", {"lr": 0.1}, tags={"role": "trial"})
    metrics = tracking.metric_entities({f"m{i}": float(i) for i in range(1500)}, step=1)
    tracking.log_batch(client, run.run_id, metrics, {"node_id": "node-1"})
    data = client.get_run(run.run_id).data
    assert len(data.metrics) == 1500 and data.metrics["m1499"] == 1499.0
    assert data.tags["node_id"] == "node-1"

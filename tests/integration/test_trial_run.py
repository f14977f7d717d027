"""TrialRun, the one MLflow writer of trials: each epoch is logged once, also when a retried trial redoes epochs."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from study import tracking
from study.trial_run import TrialRun


def _epoch(epoch: int, loss: float) -> dict[str, float]:
    return {"epoch": epoch, "train_loss": loss, "val_acc": 0.5}


def test_an_epoch_redone_after_a_retry_is_logged_once(tmp_path):
    """A trial retried from an older checkpoint than its last report redoes epoch 2: the run keeps one point per
    epoch (the first), in the same writer and in one found again by a resumed driver."""
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

"""The one writer of a trial's MLflow run, shared by `study trial` (in-process) and the sweep
driver.

Layout: params = the trial's flat TrainConfig (the searched knobs among them) and every method knob
it left at its default (`run_params`); tags = MLflow's source tags, the parent link and what the
caller adds; the data set as a run input (MLflow's Dataset: name, digest, split sizes, source);
per-epoch metrics as series at step = epoch; system metrics under `system/`; fit's final metrics
once, as `final/<key>`, and its other results in `final_results.json`; text results (device,
mem_source) as tags; seeds-phase and `study trial` runs get `weights.pt`. Status FINISHED, or FAILED
with tag `error`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from study import tracking
from trainables.config import TrainConfig

SYSTEM_PREFIX = (
    "system/"  # as MLflow's SystemMetricsMonitor names them: the run's system-metrics tab
)
FINAL_PREFIX = "final/"
EPOCH_SERIES = "train_loss"  # a series every epoch logs: its steps are the epochs a run holds
FINAL_RESULTS_FILE = (
    "final_results.json"  # fit's results that are no numbers (e.g. layer_to_layer's split schedule)
)
WEIGHTS_FILE = (
    "weights.pt"  # {"model": state_dict, "aux": state_dict}; torch.load(..., weights_only=True)
)


class SplitsDataset(MetaDataset):
    """MLflow's metadata-only data set with a profile: the train/val/test sizes and the class
    count."""

    def __init__(
        self, source: DatasetSource, name: str, digest: str, schema: Schema, profile: dict[str, int]
    ):
        self._profile = profile
        super().__init__(source, name=name, digest=digest, schema=schema)

    @property
    def profile(self) -> dict[str, int]:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def run_params(config: TrainConfig) -> dict[str, Any]:
    """A trial run's params: its flat TrainConfig with every method knob, defaults included, so a
    run (and the report's Table 1b) says what it trained even where the config left a knob unset."""
    from trainables.methods import get_method

    knobs = get_method(config.method).Params.from_dict(config.params, config.method)
    return {**knobs.resolved(), **config.to_flat()}


class TrialRun:
    """One trial's MLflow run (see the module docstring for the layout)."""

    def __init__(self, client: MlflowClient, run_id: str, last_epoch: int = 0):
        self.client, self.run_id = client, run_id
        self._system_step = 0
        self._last_epoch = (
            last_epoch  # the last epoch logged: a retried trial that redoes epochs logs each once
        )

    @classmethod
    def existing(cls, client: MlflowClient, run_id: str) -> TrialRun:
        """A run found again (a resumed driver): the epochs it already holds are not logged a
        second time."""
        steps = [m.step for m in client.get_metric_history(run_id, EPOCH_SERIES)]
        return cls(client, run_id, last_epoch=max(steps, default=0))

    @classmethod
    def create(
        cls,
        client: MlflowClient,
        experiment_id: str,
        name: str,
        config: dict[str, Any],
        tags: dict[str, str],
        parent_run_id: str | None = None,
        source: str = "python -m study",
    ) -> TrialRun:
        run_id = tracking.start_run(
            client,
            experiment_id,
            name,
            config,
            tags=tags,
            parent_run_id=parent_run_id,
            source=source,
        )
        return cls(client, run_id)

    def log_dataset(self, description: dict[str, Any]) -> None:
        """The data set as a training input (what `mlflow.log_input` logs, for a run other than
        the active one)."""
        source = description["source"]
        dataset_source = (
            resolve_dataset_source(source)
            if Path(source).is_dir()
            else CodeDatasetSource({"loader": source})
        )
        schema = Schema([TensorSpec(np.dtype("uint8"), (-1, *description["image_shape"]), "image")])
        profile = {**description["sizes"], "num_classes": description["num_classes"]}
        dataset = SplitsDataset(
            dataset_source, description["name"], description["digest"], schema, profile
        )
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, "training")]
        entity = Dataset(**dataset.to_dict())  # what the fluent `log_input` logs, from public parts
        self.client.log_inputs(self.run_id, [DatasetInput(entity, tags)])

    def log_epoch(
        self,
        metrics: dict[str, Any],
        samples: list[dict[str, Any]] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """One epoch's numeric metrics as series points at step = epoch, with the system-metric
        `samples` and `tags` of the same report in one write: a trial waits for the driver at every
        report, and each write is a store transaction. A trial retried after a lost node resumes
        from its last saved checkpoint, which can be older than its last report: the epochs it
        redoes (the same numbers on CPU, where resuming is bit for bit) are not logged twice."""
        batch = self._system_metrics(samples or [])
        epoch = int(metrics["epoch"])
        if epoch > self._last_epoch:
            self._last_epoch = epoch
            batch += tracking.metric_entities(metrics, step=epoch)
        tracking.log_batch(self.client, self.run_id, batch, tags)

    def log_system(self, samples: list[dict[str, Any]]) -> None:
        """System-metric samples (`timestamp_ms`, `metrics`) as `system/<key>` series, one step per
        sample."""
        tracking.log_batch(self.client, self.run_id, self._system_metrics(samples))

    def _system_metrics(self, samples: list[dict[str, Any]]) -> list[Metric]:
        batch = []
        for sample in samples:
            batch += [
                Metric(SYSTEM_PREFIX + key, float(value), sample["timestamp_ms"], self._system_step)
                for key, value in sample["metrics"].items()
            ]
            self._system_step += 1
        return batch

    def log_weights(self, state: dict[str, Any]) -> None:
        """The trained model's and auxiliary heads' weights from a training state (a checkpoint
        of fit)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / WEIGHTS_FILE
            torch.save({"model": state["model"], "aux": state["aux"]}, path)
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, final: dict[str, Any]) -> None:
        """fit's final metrics once, as `final/<key>` (never colliding with a series), then close
        the run."""
        summary = {k: v for k, v in final.items() if k != "history"}
        numeric = tracking.scalar_metrics(summary)
        tracking.log_metrics(
            self.client,
            self.run_id,
            {FINAL_PREFIX + k: v for k, v in numeric.items()},
            step=int(final.get("epochs_run", 0)),
        )
        for key, value in summary.items():
            if isinstance(
                value, str
            ):  # text results (device, mem_source) as tags: columns of the runs table
                self.client.set_tag(self.run_id, key, value)
        structured = {
            k: v for k, v in summary.items() if isinstance(v, (list, dict)) and not _numbers(v)
        }
        if structured:
            self.client.log_dict(self.run_id, structured, FINAL_RESULTS_FILE)
        self.client.set_terminated(self.run_id, status="FINISHED")

    def stop_early(self) -> None:
        """Stopped by the scheduler: its epoch series are what it has; no final metrics."""
        self.client.set_tag(self.run_id, "early_stopped", "true")
        self.client.set_terminated(self.run_id, status="FINISHED")

    def fail(self, reason: str) -> None:
        tracking.fail_run(self.client, self.run_id, reason)


def _numbers(value: list | dict) -> bool:
    """A non-empty list of numbers (logged as `final/<key>/<i>` metrics)."""
    return (
        isinstance(value, list) and bool(value) and all(isinstance(v, (int, float)) for v in value)
    )

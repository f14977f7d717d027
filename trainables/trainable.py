"""The one Ray-aware module of trainables/: a Tune function trainable around `training.fit`.

`train_trial(config)` builds a TrainConfig from the trial's flat config, reports every epoch
(scalar metrics + a checkpoint) to Tune, resumes from Tune's checkpoint, and reports fit's final
metrics (under FINAL_KEY) with the last epoch; the first report of a run also carries the data
set's description (DATASET_KEY). A trial of several data-parallel workers runs the same loop
in each worker of a Ray Train TorchTrainer (trainables/distributed.py keeps them in step). It
keeps no state between calls, so Tune can reuse actors. Every CPU trial trains pinned to cores no
other trial of its node holds (trainables.pinning), and scores the test set only when its config
asks (SCORE_TEST_KEY: the timed phases; a search trial never sees it). A diverged trial stores the
reason in its checkpoint and raises; a retry of that trial raises the same error at once, so
retries (meant for lost nodes) cost no training.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from trainables import distributed
from trainables.config import TrainConfig
from trainables.data import describe_splits
from trainables.pinning import pinned_cores
from trainables.training import DivergedError, fit, load_splits

STATE_FILE = "state.pt"
DIVERGED_KEY = "diverged"  # result and checkpoint key holding the divergence reason
ARM_CONFIG_KEY = (
    "arm_config"  # a nested base config (the seeds phase grids over arms' best configs)
)
# what the sweep records about a trial's run (its arm label, study, pair); not trained with
RUN_TAGS_KEY = "run_tags"
FINAL_KEY = "final"  # only in a trial's last report: fit's final metrics, all but the history
DATASET_KEY = (
    "dataset"  # in the first report of each run: name, digest, split sizes and source of the data
)
SCORE_TEST_KEY = (
    "score_test"  # trial config: True in the timed phases; search trials never see test
)
WORKER_POLL_INTERVAL_S = 0.25  # how often a worker group's Ray Train controller checks its workers

ExtraResults = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class WorkerGroup:
    """A trial as `size` data-parallel workers (Ray Train), each reserving `per_worker` CPU/GPU."""

    size: int
    per_worker: dict[str, float]

    @property
    def threads(self) -> int:
        """Torch threads per worker: its whole cores (a group that fills a node leaves its driver's
        DRIVER_CPU out of the last core, which is still a core for the workers)."""
        return max(1, int(self.per_worker.get("CPU", 1) + distributed.DRIVER_CPU))

    @property
    def pinned_cpus(self) -> float:
        """The CPUs each worker pins (trainables.pinning): its whole cores; a fractional share by
        design (under one core with the driver's) stays unpinned."""
        cpu = self.per_worker.get("CPU", 1.0)
        return float(self.threads) if cpu + distributed.DRIVER_CPU >= 1 else cpu

    def trial_resources(self) -> dict[str, float]:
        """What the trial reserves, the workers and their driver, keyed as `trial_resources()` keys
        a one-process trial's."""
        return {
            "trial_cpus": self.size * self.per_worker.get("CPU", 0.0) + distributed.DRIVER_CPU,
            "trial_gpus": self.size * self.per_worker.get("GPU", 0.0),
        }


def train_trial(
    config: dict[str, Any],
    group: WorkerGroup | None = None,
    extra_results: ExtraResults | None = None,
) -> None:
    """Train one Tune trial to the end of its budget (or until Tune stops it); with a worker `group`
    as a Ray Train worker group whose rank 0 reports to Tune. `extra_results()` is merged into every
    report of a one-process trial (the sweep's system metrics). The test set is scored only when
    SCORE_TEST_KEY in the config says so (not in a search)."""
    if group is not None:
        _train_workers(config, group)
        return
    reserved = trial_resources()
    _train(
        flat_config(config),
        scores_test(config),
        tune.report,
        tune.get_checkpoint(),
        (reserved["trial_cpus"], reserved["trial_gpus"]),
        reserved,
        extra_results,
    )


def _train(
    flat: dict[str, Any],
    score_test: bool,
    report: Callable[..., None],
    checkpoint: Any,
    reserved: tuple[float, float],
    resources: dict[str, float],
    extra_results: ExtraResults | None = None,
) -> None:
    """fit() on cores of its own (trainables.pinning; `reserved` = CPUs, GPUs of this process) with
    every epoch (scalar metrics + a checkpoint from rank 0) and the final metrics sent to `report`;
    the final metrics also hold `resources` (what Ray reserved for the whole trial)."""
    node_id = ray.get_runtime_context().get_node_id()
    with pinned_cores(*reserved, node_id) as pinning:
        torch.set_num_threads(pinning.threads)
        summary_extra = {**resources, **pinning.metrics()}
        _fit_and_report(flat, score_test, report, checkpoint, node_id, summary_extra, extra_results)


def _fit_and_report(
    flat: dict[str, Any],
    score_test: bool,
    report: Callable[..., None],
    checkpoint: Any,
    node_id: str,
    summary_extra: dict[str, Any],
    extra_results: ExtraResults | None,
) -> None:
    train_config = TrainConfig.from_flat(flat)
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no console line per saved checkpoint
    resume = _load_checkpoint(checkpoint)
    if resume is not None and DIVERGED_KEY in resume:
        raise DivergedError(resume[DIVERGED_KEY])
    splits = load_splits(train_config)
    first: dict[str, Any] = {DATASET_KEY: describe_splits(splits, train_config.data_dir)}
    last: dict[str, Any] = {}
    deferred: dict[str, Any] = {}

    def send(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        extra = extra_results() if extra_results else {}
        _report(report, {**first, **metrics, **extra, "node_id": node_id}, state)
        first.clear()

    def on_epoch(metrics: dict[str, Any], checkpoint: Callable[[], dict[str, Any]]) -> None:
        last.update(metrics)
        if (
            metrics["epoch"] == metrics["epochs_total"]
        ):  # the plan's last epoch is reported with the final metrics, once test_acc is known
            deferred.update(metrics=metrics, state=checkpoint())
        else:
            send(numbers(metrics), checkpoint())

    try:
        final = fit(train_config, on_epoch, resume=resume, splits=splits, score_test=score_test)
    except DivergedError as err:
        reason = f"DivergedError: {err}"
        send(
            {
                "epoch": int(last.get("epoch", 0)),
                "compute_epochs": float(last.get("compute_epochs", 0.0)),
                "val_acc": float(last.get("val_acc", 0.0)),
                DIVERGED_KEY: reason,
            },
            {DIVERGED_KEY: reason},
        )
        raise
    summary = {**{k: v for k, v in final.items() if k != "history"}, **summary_extra}
    send(
        {
            **numbers(deferred.get("metrics", {})),
            "epoch": int(final["epochs_run"]),
            "compute_epochs": final["compute_epochs"],  # also after an early end (auto_depth)
            "val_acc": final["val_acc"],
            FINAL_KEY: summary,
        },
        deferred.get("state"),
    )


def _train_workers(config: dict[str, Any], group: WorkerGroup) -> None:
    """The trial as a TorchTrainer (gloo on CPU, NCCL on GPU) whose reports reach Tune through
    TuneReportCallback (Ray Train V2). Its checkpoints live in the trial's own storage folder, so a
    retried trial (a lost node) restarts the worker group from the last one."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    # Ray Train's watcher of node preemption is one more actor process per trial; a preempted node
    # is a lost node to Tune, which retries the trial from its last checkpoint (budget.max_failures)
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    # the controller notices that the workers finished at its next poll of them (Ray's default:
    # every 2 s, and a trial took two polls to end); polling is one small actor call per worker
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(WORKER_POLL_INTERVAL_S))
    storage = tune.get_context().get_storage()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "flat": flat_config(config),
            "score_test": scores_test(config),
            "reserved": (group.pinned_cpus, group.per_worker.get("GPU", 0.0)),
            "resources": group.trial_resources(),
        },
        scaling_config=ScalingConfig(
            num_workers=group.size,
            use_gpu=group.per_worker.get("GPU", 0) > 0,
            resources_per_worker={k: v for k, v in group.per_worker.items() if v > 0},
        ),
        run_config=RunConfig(
            name="workers",
            storage_path=storage.trial_fs_path,
            storage_filesystem=storage.storage_filesystem,
            callbacks=[TuneReportCallback()],
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    trainer.fit()


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """One data-parallel worker (torch.distributed is set up by Ray Train): all report, rank 0's
    count."""
    import ray.train

    _train(
        loop_config["flat"],
        loop_config["score_test"],
        ray.train.report,
        ray.train.get_checkpoint(),
        tuple(loop_config["reserved"]),
        loop_config["resources"],
    )


def unnested(config: dict[str, Any]) -> dict[str, Any]:
    """A Tune trial config with its ARM_CONFIG_KEY base config merged in (top level wins): the
    timed phases nest a whole config there, the search puts its samples at the top level."""
    return {**config.get(ARM_CONFIG_KEY, {}), **config}


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Tune trial config as `TrainConfig.from_flat` takes it: `unnested`, ARM_CONFIG_KEY,
    RUN_TAGS_KEY and SCORE_TEST_KEY left out."""
    return {
        k: v
        for k, v in unnested(config).items()
        if k not in (ARM_CONFIG_KEY, RUN_TAGS_KEY, SCORE_TEST_KEY)
    }


def trial_config(config: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a Tune trial config: the one conversion the sweep's driver and trials
    share (`flat_config`, then `TrainConfig.from_flat`)."""
    return TrainConfig.from_flat(flat_config(config))


def scores_test(config: dict[str, Any]) -> bool:
    """Whether a Tune trial config asks for the test score (SCORE_TEST_KEY, `unnested`): the timed
    phases' trials do, search trials never."""
    return bool(unnested(config).get(SCORE_TEST_KEY, False))


def run_tags(config: dict[str, Any]) -> dict[str, Any]:
    """The RUN_TAGS_KEY entry of a Tune trial config (`unnested`)."""
    return unnested(config).get(RUN_TAGS_KEY, {})


def trial_resources() -> dict[str, float]:
    """What Ray reserved for this trial (final metrics `trial_cpus`, `trial_gpus`: the report's
    conditions)."""
    resources = tune.get_context().get_trial_resources().required_resources
    return {
        "trial_cpus": float(resources.get("CPU", 1)),
        "trial_gpus": float(resources.get("GPU", 0)),
    }


def numbers(metrics: dict[str, Any]) -> dict[str, int | float]:
    """The numeric entries of an epoch's metrics (what Tune's schedulers and the epoch series
    take)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _report(
    report: Callable[..., None], metrics: dict[str, Any], state: dict[str, Any] | None
) -> None:
    """`report(metrics, checkpoint=...)`; only rank 0 of a worker group writes the checkpoint."""
    if state is None or distributed.rank() != 0:
        report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, Path(tmp) / STATE_FILE)
        report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _load_checkpoint(checkpoint: Any) -> dict[str, Any] | None:
    return None if checkpoint is None else load_state(checkpoint)


def load_state(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    """The training state saved in one of this trainable's checkpoints (weights_only: plain
    tensors and lists)."""
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, weights_only=True)


def with_resources(
    cpu: float,
    gpu: float,
    workers: int = 1,
    trainable: Callable[[dict[str, Any]], None] = train_trial,
) -> Any:
    """A trainable with its resource request, as Tuner and Tuner.restore take it: `trainable` itself
    (workers = 1), or a small driver whose worker group asks for `cpu`/`gpu` split over the workers.
    """
    if workers == 1:
        return tune.with_resources(trainable, {"cpu": cpu, "gpu": gpu})
    group = WorkerGroup(workers, {"CPU": cpu / workers, "GPU": gpu / workers})

    def train_trial_workers(
        config: dict[str, Any],
    ) -> None:  # a plain function: Tune can reuse its actors
        train_trial(config, group)

    return tune.with_resources(train_trial_workers, {"cpu": distributed.DRIVER_CPU})

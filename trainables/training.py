"""fit(): the one training loop every method, the CLI and Ray trials share.

It owns epochs, evaluation of the network as it stands, time and memory measurement,
divergence checks, resumable state and the per-epoch callback; the method owns the losses.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from trainables import distributed
from trainables.compute import RunPlan, run_plan
from trainables.config import TrainConfig
from trainables.data import Batcher, DataSplits, ImageSet, load_dataset
from trainables.errors import UserError
from trainables.measure import (
    MachineLoad,
    PeakMemory,
    Timer,
    count_params,
    describe_device,
    resolve_device,
    trainable_sizes,
)
from trainables.methods import Method, Stage, build_method, get_method
from trainables.models import build_model

log = logging.getLogger(__name__)

Checkpoint = dict[str, Any]
EpochCallback = Callable[[dict[str, Any], Callable[[], Checkpoint]], None]
EVAL_BATCH = 512


class DivergedError(FloatingPointError):
    """The training loss stopped being finite; the trial ends with this reason."""


def validate(config: TrainConfig) -> None:
    """Every name and range check that can run without data: call before any expensive work."""
    from trainables.data import DATASETS
    from trainables.models import MODELS

    if config.model not in MODELS:
        raise UserError(
            f"unknown model {config.model!r}; valid models: {', '.join(sorted(MODELS))}"
        )
    if config.dataset not in DATASETS:
        raise UserError(
            f"unknown dataset {config.dataset!r}; valid datasets: {', '.join(DATASETS)}"
        )
    method_cls = get_method(config.method)
    method_cls.Params.from_dict(config.params, config.method)


def check_plan(config: TrainConfig) -> None:
    """Plan the run on a shape-only (meta device) model, so that the errors that need the model
    (budget too small for the stages, stage weights of the wrong length) come before any data loads.
    Not part of `validate`: a spec's base config need not fit, the search space fits each sample."""
    run_plan(config, config.batch_size)


def check_config(config: TrainConfig) -> None:
    """The one check of a run's config before any expensive work: names and ranges (`validate`),
    then the plan (`check_plan`). Done once per config and process (cached), so the trial CLI can
    check before it opens MLflow and fit can check again at no cost."""
    _check_flat(json.dumps(config.to_flat(), sort_keys=True, default=str))


@functools.lru_cache(maxsize=32)
def _check_flat(flat_json: str) -> None:
    config = TrainConfig.from_flat(json.loads(flat_json))
    validate(config)
    check_plan(config)


def fit(
    config: TrainConfig,
    callback: EpochCallback | None = None,
    resume: Checkpoint | None = None,
    splits: DataSplits | None = None,
    verify_checksums: bool = True,
    score_test: bool = True,
) -> dict[str, Any]:
    """Train `config` to the end of its budget and return the final metrics (with `history`).

    `callback(metrics, checkpoint)` runs after every epoch; `checkpoint()` builds the state
    that `resume=` continues from. `splits` skips loading (tests, benchmarks). `score_test=False`
    (search trials): no `test_acc`/`test_loss`, the test set is never evaluated. `wall_time_s` in
    the result: this call's wall clock (data load, training, evaluation, probes; not interpreter
    start-up or imports); `load_avg_start`/`load_avg_end`/`steal_s`: the machine's load while it
    trained.
    """
    started = time.perf_counter()
    check_config(config)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if splits is None:
        splits = load_splits(config, verify_checksums)
    splits = splits.to(device)
    batcher = Batcher(splits, channels_last=uses_channels_last(config, device))
    memory = PeakMemory(device)

    plan = run_plan(config, len(splits.train))
    method = build_model_and_method(config, splits, device, plan.stage_epochs)
    model = method.model
    stages = method.plan()
    generator = torch.Generator().manual_seed(config.seed)

    progress = restore(resume, method, generator) if resume is not None else Progress()
    history, trained = progress.history, progress.trained
    stopped = progress.stopped
    load = MachineLoad()
    for run in remaining_stages(stages, progress):
        stage = run.stage
        method.start_stage(stage)
        trained.update(trainable_sizes({"model": model, "aux": method.aux_modules()}))
        distributed.prepare_model(
            [model, method.aux_modules()], device
        )  # no-op unless data-parallel
        if run.resumes and resume is not None:  # the checkpoint was taken within this stage
            method.load_state_dict(resume["method"])
        for epoch in range(run.first_epoch, run.end_epoch + 1):
            metrics = _train_epoch(config, method, stage, splits, batcher, generator, memory, epoch)
            metrics.update(compute_epochs=plan.compute_after(epoch), epochs_total=plan.total_epochs)
            metrics.update(evaluate(method, splits.val, batcher, prefix="val"))
            if epoch == run.end_epoch:
                stopped = not method.end_stage(stage, metrics)
            history.append(metrics)
            log.info(
                "epoch %d %s", epoch, {k: v for k, v in metrics.items() if not isinstance(v, list)}
            )
            if callback is not None:
                callback(
                    metrics,
                    lambda: _checkpoint(model, method, generator, history, epoch, stopped, trained),  # noqa: B023 (called at once)
                )
        if stopped:
            break

    final = _final_metrics(config, method, model, splits, batcher, history, score_test)
    final.update(compute_metrics(plan, final["epochs_run"]))
    final.update(load.finish())
    final["params_trained"] = sum(trained.values())  # aux heads included
    final.update(
        device=describe_device(device),
        mem_source=memory.source,
        torch_threads=torch.get_num_threads(),
    )
    if config.probes:
        from trainables.probes import probe_accuracies

        final["probe_acc"] = probe_accuracies(model, splits, batcher)
    final["wall_time_s"] = time.perf_counter() - started
    return final


@dataclass
class Progress:
    """How far a run got: its epochs' metrics, the epochs done, whether training ended early
    (auto_depth) and every parameter trained so far by name (layer_to_layer drops old heads)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    done_epochs: int = 0
    stopped: bool = False
    trained: dict[str, int] = field(default_factory=dict)


def restore(resume: Checkpoint, method: Method, generator: torch.Generator) -> Progress:
    """Load a checkpoint's weights and random state; the method's own state loads when its stage
    starts again (`remaining_stages`), or here when training had ended early and none will."""
    method.model.load_state_dict(resume["model"])
    method.load_aux_state_dict(resume["aux"])
    generator.set_state(resume["generator"])
    torch.set_rng_state(resume["torch_rng"])
    progress = Progress(
        list(resume["history"]),
        resume["epoch"],
        resume["stopped"],
        dict(resume.get("trained_params", {})),
    )
    log.info("resuming at epoch %d", progress.done_epochs)
    if progress.stopped:
        method.load_state_dict(resume["method"])
    return progress


@dataclass(frozen=True)
class StageRun:
    """A stage still to train: its epochs first_epoch..end_epoch (numbered over the whole run);
    `resumes`: a checkpoint was taken within it (or at its start), so its method state loads."""

    stage: Stage
    first_epoch: int
    end_epoch: int
    resumes: bool


def remaining_stages(stages: list[Stage], progress: Progress) -> list[StageRun]:
    """The stages, or what is left of them, after `progress.done_epochs` (none once training
    stopped early); a stage whose epochs are all done is skipped."""
    if progress.stopped:
        return []
    runs, start, done = [], 0, progress.done_epochs
    for stage in stages:
        end = start + stage.epochs
        if end > done:
            runs.append(StageRun(stage, max(start, done) + 1, end, start <= done))
        start = end
    return runs


def load_splits(config: TrainConfig, verify_checksums: bool = True) -> DataSplits:
    """The train/val/test splits `config` trains on (on the CPU)."""
    return load_dataset(
        config.dataset,
        config.data_dir,
        config.val_fraction,
        config.max_train_samples,
        verify_checksums=verify_checksums,
    )


def uses_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """channels_last memory format: on CUDA when the config asks for it (no gain on CPU)."""
    return config.channels_last and device.type == "cuda"


def compute_metrics(plan: RunPlan, epochs_run: int) -> dict[str, Any]:
    """What a run's plan gave it and what it used: `flops` of the epochs it ran, in standard epochs
    too (`compute_epochs`), against the whole plan's (a run that stops early uses less)."""
    used = plan.compute_after(epochs_run)
    if epochs_run < plan.total_epochs:
        log.info(
            "stopped after %d of %d epochs: used %.2f of the planned %.2f standard epochs of FLOPs",
            epochs_run,
            plan.total_epochs,
            used,
            plan.compute_epochs,
        )
    return {
        "flops": plan.flops_after(epochs_run),
        "compute_epochs": used,
        "compute_epochs_planned": plan.compute_epochs,
        "stage_epochs": list(plan.stage_epochs),
        "epochs_total": plan.total_epochs,
    }


def build_model_and_method(
    config: TrainConfig,
    splits: DataSplits,
    device: torch.device,
    stage_epochs: list[int] | None = None,
) -> Method:
    """The model of `config` on `device` and the method that trains it (fit and the benchmarks share
    this); `stage_epochs` as the run plan gave them, else the method plans itself when asked."""
    model = build_model(config.model, splits.num_classes, config.width).to(device)
    if uses_channels_last(config, device):
        model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = max(1, len(splits.train) // config.batch_size)
    method = build_method(config, model, splits.num_classes, device, steps_per_epoch, stage_epochs)
    method.aux_modules().to(device)
    return method


def _train_epoch(
    config: TrainConfig,
    method: Method,
    stage: Stage,
    splits: DataSplits,
    batcher: Batcher,
    generator: torch.Generator,
    memory: PeakMemory,
    epoch: int,
) -> dict[str, Any]:
    timer = Timer(method.device)
    memory.reset()
    method.train_mode()
    timer.start()
    sums: dict[str, torch.Tensor] = {}
    batches = 0
    images = 0
    for x, y in method.train_batches(splits.train, batcher, generator):
        for key, value in method.train_step(x, y).items():
            sums[key] = sums.get(key, 0) + value.float()
        batches += 1
        images += len(y)
    epoch_time = timer.stop()
    means = {key: float(total) / batches for key, total in sums.items()}
    if (
        distributed.world_size() > 1
    ):  # the whole batch's losses, all workers' images, the slowest worker
        keys = sorted(means)
        *loss_sums, images = distributed.sum_over_workers([means[k] for k in keys] + [images])
        means = {k: v / distributed.world_size() for k, v in zip(keys, loss_sums)}
        epoch_time, peak_mb = distributed.max_over_workers([epoch_time, memory.peak_mb()])
    else:
        peak_mb = memory.peak_mb()
    train_loss = means.pop("loss")
    if not math.isfinite(train_loss):
        raise DivergedError(
            f"train_loss is {train_loss} at epoch {epoch} ({config.model}/{config.method})"
        )
    metrics: dict[str, Any] = {
        "epoch": epoch,
        **method.stage_metrics(stage),
        "train_loss": train_loss,
    }
    metrics.update(means)
    metrics.update(
        epoch_time_s=epoch_time,
        peak_mem_mb=peak_mb,
        throughput_img_s=images / epoch_time if epoch_time > 0 else float("nan"),
        lr=method.current_lr(),
    )
    return metrics


@torch.no_grad()
def evaluate(method: Method, data: ImageSet, batcher: Batcher, prefix: str) -> dict[str, float]:
    """Loss and accuracy of the 'main' prediction and accuracy of every other head the method
    scores."""
    method.eval_mode()
    correct: dict[str, float] = {}
    loss_sum = 0.0
    for x, y in batcher.eval_batches(data, EVAL_BATCH):
        with method.autocast():
            outputs = method.predict(x)
        loss_sum += float(F.cross_entropy(outputs["main"].float(), y, reduction="sum"))
        for key, logits in outputs.items():
            correct[key] = correct.get(key, 0.0) + float((logits.argmax(1) == y).sum())
    n = len(data)
    metrics = {f"{prefix}_loss": loss_sum / n, f"{prefix}_acc": correct.pop("main") / n}
    metrics.update({f"{key}_acc": value / n for key, value in correct.items()})
    return metrics


def _final_metrics(
    config: TrainConfig,
    method: Method,
    model: torch.nn.Module,
    splits: DataSplits,
    batcher: Batcher,
    history: list[dict[str, Any]],
    score_test: bool = True,
) -> dict[str, Any]:
    test = evaluate(method, splits.test, batcher, prefix="test") if score_test else {}
    train_time = sum(h["epoch_time_s"] for h in history)
    images = sum(h["throughput_img_s"] * h["epoch_time_s"] for h in history)
    deployed = method.deployed_history(
        history
    )  # the epochs that scored the classifier `test` scores
    final: dict[str, Any] = {
        **{key: test[key] for key in ("test_acc", "test_loss") if key in test},
        "val_acc": deployed[-1]["val_acc"] if deployed else float("nan"),
        "best_val_acc": max((h["val_acc"] for h in deployed), default=float("nan")),
        "train_time_s": train_time,
        "peak_mem_mb": max((h["peak_mem_mb"] for h in history), default=float("nan")),
        "stage_peak_mem_mb": _per_stage_max(history, "peak_mem_mb"),
        "throughput_img_s": images / train_time if train_time > 0 else float("nan"),
        "params_deployed": sum(
            count_params(m) for m in method.deployed_modules()
        ),  # auto_depth: the chosen prefix
        "epochs_run": len(history),
        "workers": distributed.world_size(),  # data-parallel workers this trial really trained with
    }
    final.update(method.final_metrics())
    final["history"] = history
    return final


def _per_stage_max(history: list[dict[str, Any]], key: str) -> list[float]:
    """max(key) over the epochs of each stage, in stage order (memory honesty: every stage's
    peak)."""
    peaks: dict[int, float] = {}
    for h in history:
        peaks[h["stage"]] = max(peaks.get(h["stage"], 0.0), h[key])
    return [peaks[stage] for stage in sorted(peaks)]


def _checkpoint(
    model: torch.nn.Module,
    method: Method,
    generator: torch.Generator,
    history: list[dict[str, Any]],
    epoch: int,
    stopped: bool,
    trained: dict[str, int],
) -> Checkpoint:
    """Everything needed to continue bit-for-bit (on CPU) after `epoch`; loadable with
    weights_only=True."""
    return {
        "epoch": epoch,
        "stopped": stopped,
        "model": model.state_dict(),
        "aux": method.aux_modules().state_dict(),
        "method": method.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": list(history),
        "trained_params": dict(trained),
    }

"""`python -m study trial`: one config, in-process, no Ray (debuggable with pdb)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from study.system_metrics import SYSTEM_SAMPLES_KEY, SystemSampler
from trainables.compute import RunPlan, run_plan
from trainables.config import TrainConfig, parse_value
from trainables.data import describe_splits
from trainables.errors import UserError
from trainables.measure import resolve_device
from trainables.training import check_config, fit, load_splits

if TYPE_CHECKING:
    from study.trial_run import TrialRun

log = logging.getLogger(__name__)
SUMMARY_KEYS = (
    "test_acc",
    "val_acc",
    "best_val_acc",
    "train_time_s",
    "peak_mem_mb",
    "throughput_img_s",
    "params_trained",
    "params_deployed",
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "trial", help="train one config in-process (no Ray) and print its metrics"
    )
    p.add_argument("--model", default="seed_cnn")
    p.add_argument("--method", default="standard")
    p.add_argument("--dataset", default="digits")
    p.add_argument(
        "--epochs",
        type=float,
        default=10,
        help="the budget: standard epochs of training FLOPs (fractional allowed), or whole epochs "
        "with --set budget_unit=epochs (trainables/compute.py)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data-dir",
        default=None,
        help="fashion_mnist: folder of its four files (default: Debian's "
        "/usr/share/datasets/fashion-mnist); cifar10/cifar100: folder holding cifar-10-batches-py/ "
        "or cifar-100-python/",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any TrainConfig field or method parameter, e.g. --set lr=0.01 --set split_ratio=0.4",
    )
    p.add_argument(
        "--probes",
        action="store_true",
        help="linear probe per block after training (docs/greedy.md)",
    )
    p.add_argument("--out", type=Path, default=None, help="write final metrics + history as JSON")
    p.add_argument(
        "--tracking-uri", default=None, help="MLflow URI (default: sqlite:///./mlflow.db)"
    )
    p.add_argument("--experiment", default="trials", help="MLflow experiment name")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> TrainConfig:
    flat: dict[str, Any] = dict(
        model=args.model,
        method=args.method,
        dataset=args.dataset,
        epochs=args.epochs,
        seed=args.seed,
        data_dir=args.data_dir,
        device=args.device,
        probes=args.probes,
    )
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        flat[key.strip()] = parse_value(value)
    return TrainConfig.from_flat(flat)


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    check_config(config)  # bad names, ranges and budgets fail here, before data or MLflow
    resolve_device(config.device)  # and --device cuda without a GPU
    splits = load_splits(
        config
    )  # then missing or corrupted data, before MLflow and the progress bar
    plan = run_plan(config, len(splits.train))
    console = Console(stderr=True)
    tracker = None if args.no_mlflow else open_run(args, config)
    if tracker:
        tracker.log_dataset(describe_splits(splits, config.data_dir))
    last_state: dict[str, Any] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    ) as progress:
        task = progress.add_task(
            f"{config.model}/{config.method}", total=plan.total_epochs, status=""
        )

        def on_epoch(metrics: dict[str, Any], checkpoint: Callable[[], dict[str, Any]]) -> None:
            progress.update(task, completed=metrics["epoch"], status=_status(metrics))
            if tracker:
                tracker.log_epoch(metrics, sampler.drain()[SYSTEM_SAMPLES_KEY])
                last_state.update(
                    checkpoint()
                )  # the state dicts hold the live tensors: no copy per epoch

        try:
            with SystemSampler() as sampler:
                final = fit(config, on_epoch, splits=splits)
        except BaseException as err:
            if tracker:
                tracker.fail(f"{type(err).__name__}: {err}")
            raise
        progress.update(task, completed=final["epochs_run"])
    if tracker:
        if last_state:
            tracker.log_weights(last_state)
        tracker.finish(final)
    Console().print(_summary_table(config, final))
    print(describe_compute(config, plan, final))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"config": config.to_flat(), **final}, indent=2, default=str)
        )
        print(f"metrics written to {args.out}")
    return 0


def _status(metrics: dict[str, Any]) -> str:
    parts = [f"val_acc={metrics['val_acc']:.3f}", f"loss={metrics['train_loss']:.3f}"]
    parts += [f"{k}={metrics[k]}" for k in ("stage", "split", "block") if k in metrics]
    return " ".join(parts)


def describe_compute(config: TrainConfig, plan: RunPlan, final: dict[str, Any]) -> str:
    """The epochs per stage the run chose for its budget and the FLOPs it used."""
    budget = (
        f"{config.epochs:g} standard epochs of FLOPs"
        if config.budget_unit == "flops"
        else f"{config.epochs:g} epochs"
    )
    used = (
        f"FLOPs used: {final['flops']:.3e} = {final['compute_epochs']:.2f} standard epochs "
        f"(one standard epoch: {plan.standard_epoch_flops:.3e} FLOPs)"
    )
    if final["epochs_run"] < plan.total_epochs:
        used += (
            f"; stopped after {final['epochs_run']} of {plan.total_epochs} epochs, so less than "
            f"the planned {plan.compute_epochs:.2f}"
        )
    stages = ", ".join(str(e) for e in plan.stage_epochs)
    return f"budget: {budget}; epochs per stage: {stages}\n{used}"


def _summary_table(config: TrainConfig, final: dict[str, Any]) -> Table:
    table = Table(title=f"{config.model} / {config.method} / {config.dataset} / seed {config.seed}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in SUMMARY_KEYS:
        value = final[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    for key, value in final.items():
        if key not in SUMMARY_KEYS and key != "history":
            table.add_row(key, json.dumps(value) if isinstance(value, (list, dict)) else str(value))
    return table


def open_run(args: argparse.Namespace, config: TrainConfig) -> TrialRun:
    """The trial's MLflow run, laid out like a sweep trial's run (same writer)."""
    from mlflow.tracking import MlflowClient

    from study import tracking
    from study.trial_run import TrialRun, run_params

    uri = args.tracking_uri or tracking.default_tracking_uri(Path.cwd())
    client = MlflowClient(uri)
    experiment_id = tracking.get_or_create_experiment(client, args.experiment)
    name = f"{config.model}-{config.method}-s{config.seed}"
    tags = {"role": "cli-trial", "model": config.model, "method": config.method}
    run = TrialRun.create(
        client, experiment_id, name, run_params(config), tags, source="python -m study trial"
    )
    print(f"MLflow run {run.run_id} in {uri} (experiment {args.experiment!r})", file=sys.stderr)
    return run

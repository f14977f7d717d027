"""`python -m study ui`: the MLflow UI on 127.0.0.1 over a study's store (replaces this process;
Ctrl-C stops it).

It prints the link to the study's runs table: MLflow 3's UI opens an experiment on its GenAI
overview, so the link names the experiment, the runs view and the model-training mode.
"""

from __future__ import annotations

import argparse
import os
import sys

from mlflow.tracking import MlflowClient

from study.tracking import (
    add_store_arguments,
    existing_store_uri,
    pick_experiment,
    runs_table_url,
)
from trainables.config import check_range

HOST = "127.0.0.1"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ui", help="start the MLflow UI on 127.0.0.1 over a study's store")
    add_store_arguments(p)
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=run)


def ui_command(uri: str, port: int) -> list[str]:
    """`mlflow ui` with this interpreter's MLflow; one worker: a local UI has one user and sqlite
    one writer."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def run(args: argparse.Namespace) -> int:
    check_range("port", args.port, 1, 65535)
    uri = existing_store_uri(args.study_dir, args.tracking_uri)
    experiment = pick_experiment(MlflowClient(uri), uri, args.study_dir, args.experiment)
    if uri.startswith(("http://", "https://")):
        print(
            f"{uri} is a tracking server with its own UI; the study's runs: "
            f"{runs_table_url(uri, experiment.experiment_id)}"
        )
        return 0
    url = runs_table_url(f"http://{HOST}:{args.port}", experiment.experiment_id)
    print(
        f"MLflow UI over {uri}; the runs of {experiment.name!r}: {url} (Ctrl-C stops it)",
        flush=True,
    )
    command = ui_command(uri, args.port)
    os.execv(command[0], command)  # mlflow gets this process: its signals and exit status

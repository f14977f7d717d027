"""`python -m study ui`: the MLflow UI on 127.0.0.1 over a study's store (replaces this process; Ctrl-C stops it)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from study.tracking import existing_store_uri
from trainables.config import check_range

HOST = "127.0.0.1"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ui", help="start the MLflow UI on 127.0.0.1 over a study's store")
    p.add_argument("--study-dir", type=Path, required=True, help="the sweep's study directory")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: sqlite:///<study-dir>/mlflow.db)")
    p.set_defaults(func=run)


def ui_command(uri: str, port: int) -> list[str]:
    """`mlflow ui` with this interpreter's MLflow; one worker: a local UI has one user and sqlite one writer."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", HOST, "--port", str(port),
            "--workers", "1"]


def run(args: argparse.Namespace) -> int:
    check_range("port", args.port, 1, 65535)
    uri = existing_store_uri(args.study_dir, args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        print(f"{uri} is a tracking server: open it in a browser, it serves its own UI")
        return 0
    print(f"MLflow UI over {uri} at http://{HOST}:{args.port} (Ctrl-C stops it)", flush=True)
    command = ui_command(uri, args.port)
    os.execv(command[0], command)  # mlflow gets this process: its signals and exit status

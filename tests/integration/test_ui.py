"""`python -m study ui`: a clear error without a store, and a real MLflow UI serving the study's store."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from study import cli, tracking

REPO = Path(__file__).resolve().parents[2]


def test_missing_store_names_the_path(tmp_path, capsys):
    assert cli.main(["ui", "--study-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"no MLflow store at {tmp_path / 'runs' / 'mlflow.db'}: run a sweep first" in err
    assert not (tmp_path / "runs").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


@pytest.mark.slow
def test_ui_serves_the_study_store(tmp_path):
    client = MlflowClient(tracking.default_tracking_uri(tmp_path))
    client.create_experiment("quick", artifact_location=(tmp_path / "artifacts").as_uri())
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "study", "ui", "--study-dir", str(tmp_path), "--port", str(port)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip().endswith(f"at http://127.0.0.1:{port} (Ctrl-C stops it)")
        deadline = time.monotonic() + 120
        while True:
            try:
                assert get(f"http://127.0.0.1:{port}/health") == "OK"
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "mlflow ui did not come up"
                time.sleep(0.5)
        found = json.loads(get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10"))
        assert "quick" in {e["name"] for e in found["experiments"]}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the session this test started: mlflow and its server workers
        proc.wait(timeout=30)

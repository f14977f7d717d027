"""`python -m study ui` as a user opens it: the printed link, rendered by headless Chromium over
a small study."""

from __future__ import annotations

import os
import re
import shutil
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
from study.trial_run import TrialRun

REPO = Path(__file__).resolve().parents[2]
ARMS = ("seed_cnn/standard", "seed_cnn/layer_to_layer")
DIGITS = {
    "name": "digits",
    "digest": "0123456789abcdef0123456789abcdef",
    "source": "built-in loader of 'digits'",
    "sizes": {"train": 1294, "val": 144, "test": 359},
    "image_shape": [3, 32, 32],
    "num_classes": 10,
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--window-size=1600,1000",
    "--virtual-time-budget=20000",
    # draw every frame before the DOM and screenshot are taken: without it a lazily drawn chart was
    # often missing and the page took 3 renders even on an idle machine; with it, 1 (also with both
    # cores busy), 2026-12-06
    "--run-all-compositor-stages-before-draw",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


CHART_TRIES = 5


def test_missing_store_names_the_path(tmp_path, capsys):
    assert cli.main(["ui", "--study-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"no MLflow store at {tmp_path / 'runs' / 'mlflow.db'}: run a sweep first" in err
    assert not (tmp_path / "runs").exists()


def small_study(study_dir: Path) -> dict[str, str]:
    """A study's store as the sweep writes it: 2 arm runs, each with 2 trial runs (3 epochs); run
    name -> run id."""
    client = MlflowClient(tracking.default_tracking_uri(study_dir))
    experiment_id = tracking.get_or_create_experiment(
        client, "tiny", (study_dir / "mlartifacts").as_uri()
    )
    names = {}
    for arm in ARMS:
        model, method = arm.split("/")
        parent = tracking.start_run(
            client, experiment_id, arm, {"dataset": "digits"}, {"role": "arm", "arm": arm}
        )
        names[arm] = parent
        for trial in (1, 2):
            name = f"{arm} search t{trial}"
            run = TrialRun.create(
                client,
                experiment_id,
                name,
                {"model": model, "method": method, "lr": 0.01 * trial},
                {"role": "trial", "arm": arm, "phase": "search"},
                parent_run_id=parent,
            )
            run.log_dataset(DIGITS)
            for epoch in (1, 2, 3):
                run.log_epoch(
                    {"epoch": epoch, "val_acc": 0.5 + 0.1 * epoch, "train_loss": 1.0 / epoch}
                )
            run.finish({"test_acc": 0.8, "val_acc": 0.8, "epochs_run": 3})
            names[name] = run.run_id
        client.set_terminated(parent)
    return names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def charts_drawn(dom: str) -> bool:
    """Whether a run's metric page shows a series chart, a final metric's chart and two plots."""
    titles = 'title="val_acc"' in dom and 'title="final/test_acc"' in dom
    return titles and dom.count("js-plotly-plot") >= 2


def wait_for_health(base: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                if response.read().decode() == "OK":
                    return
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "mlflow ui did not come up"
        time.sleep(0.5)


def render(url: str, profile: Path, screenshot: Path) -> str:
    """The DOM after the page's scripts ran, and a screenshot, from one headless Chromium run."""
    flags = [
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--screenshot={screenshot}",
        "--dump-dom",
    ]
    return subprocess.run(
        ["chromium", *flags, url], capture_output=True, text=True, timeout=300
    ).stdout


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)"
)
def test_printed_link_renders_arm_and_trial_runs_and_a_chart(tmp_path):
    study_dir = tmp_path / "study"
    runs = small_study(study_dir)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "study", "ui", "--study-dir", str(study_dir), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline()
        experiment_id = (
            MlflowClient(tracking.default_tracking_uri(study_dir))
            .get_experiment_by_name("tiny")
            .experiment_id
        )
        url = re.search(r"http://\S+", line).group(0)
        assert (
            url
            == f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        )
        wait_for_health(f"http://127.0.0.1:{port}", proc)

        dom = render(url, tmp_path / "chromium", tmp_path / "runs_table.png")
        assert (tmp_path / "runs_table.png").stat().st_size > 10_000  # kept in the test's tmp dir
        for arm in ARMS:  # the arm runs, their nested trial runs folded under them
            assert f">{arm}<" in dom, f"arm run {arm!r} is not in the rendered runs table"
        # sorted by name, MLflow lists nested runs flat: every trial run is rendered, with a link to
        # its page
        flat = render(
            f"{url}&orderByKey=attributes.run_name&orderByAsc=true",
            tmp_path / "chromium",
            tmp_path / "runs_flat.png",
        )
        for name, run_id in runs.items():
            assert f">{name}<" in flat and f"#/experiments/{experiment_id}/runs/{run_id}" in flat, (
                name
            )
        assert (
            flat.count(f">digits ({DIGITS['digest']})<") == 4
        )  # the Dataset column of every trial run

        trial_id = runs[f"{ARMS[0]} search t1"]
        chart_url = (
            f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{trial_id}/model-metrics"
        )
        # the chart library and each chart load lazily: on a busy machine (the suite runs two test
        # files at once) a render can end before some of them are drawn, so render until all are
        for _ in range(CHART_TRIES):
            chart = render(chart_url, tmp_path / "chromium", tmp_path / "metric_chart.png")
            if charts_drawn(chart):
                break
        assert charts_drawn(chart), chart[-3000:]
    finally:
        os.killpg(
            proc.pid, signal.SIGTERM
        )  # the session this test started: mlflow and its server workers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

"""A user's mistake ends in one line on stderr and exit 2; a library's error keeps its traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch

from study import cli, trial

REPO = Path(__file__).resolve().parents[2]
CIFAR10_FILES = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def corrupted_cifar10(root: Path) -> Path:
    """A cifar-10-batches-py/ folder whose files exist but hold random bytes."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR10_FILES:
        (folder / name).write_bytes(os.urandom(512))
    return root


def test_trial_split_ratio_not_a_number(tmp_path: Path):
    result = run_cli(
        "trial",
        "--model",
        "seed_cnn",
        "--method",
        "layer_to_layer",
        "--dataset",
        "digits",
        "--epochs",
        "5",
        "--set",
        "split_ratio=abc",
        cwd=tmp_path,
    )
    assert_one_line_exit_2(result, "split_ratio='abc'", "number")
    assert not (tmp_path / "mlflow.db").exists()  # checked before any MLflow run is made


def test_trial_on_corrupted_cifar_names_the_folder(tmp_path: Path):
    root = corrupted_cifar10(tmp_path / "data")
    result = run_cli(
        "trial", "--dataset", "cifar10", "--data-dir", str(root), "--epochs", "1", cwd=tmp_path
    )
    assert_one_line_exit_2(result, str(root / "cifar-10-batches-py"), "md5")
    assert not (tmp_path / "mlflow.db").exists()


def in_process(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """The one stderr line of `python -m study ARGV` run in this process, checked to come with
    exit 2."""
    assert cli.main(list(argv)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    "args,fragments",
    [
        (("--set", "seed=abc"), ("seed='abc'", "expected int")),
        (("--set", "lr=2,3"), ("lr=[2, 3]", "expected float")),
        (
            ("--method", "layer_to_layer", "--set", "split_ratio=1.5"),
            ("split_ratio=1.5", "(0.0, 1.0)"),
        ),
    ],
)
def test_trial_bad_values(
    tmp_path: Path, monkeypatch, capsys, args: tuple[str, ...], fragments: tuple[str, ...]
):
    monkeypatch.chdir(tmp_path)
    line = in_process(capsys, "trial", *args)
    assert all(fragment in line for fragment in fragments), line
    assert not (tmp_path / "mlflow.db").exists()


def test_trial_on_missing_cifar_says_how_to_get_it(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = in_process(capsys, "trial", "--dataset", "cifar10", "--data-dir", str(tmp_path / "none"))
    assert str(tmp_path / "none" / "cifar-10-batches-py") in line and "download=True" in line


def test_sweep_bad_fixed_value_names_the_key(tmp_path: Path, capsys):
    line = in_process(
        capsys,
        "sweep",
        "--spec",
        "quick",
        "--study-dir",
        str(tmp_path / "q"),
        "--set",
        "fixed.width=abc",
    )
    assert "width='abc'" in line and "float" in line
    assert not (tmp_path / "q").exists()


def test_unreadable_spec(tmp_path: Path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_bytes(b'name = "\xff"\n')
    line = in_process(capsys, "sweep", "--spec", str(spec))
    assert str(spec) in line and "cannot be read" in line


@pytest.mark.parametrize("command", ["report", "ui"])
def test_missing_store(tmp_path: Path, capsys, command: str):
    line = in_process(capsys, command, "--study-dir", str(tmp_path / "none"))
    assert f"no MLflow store at {tmp_path / 'none' / 'mlflow.db'}" in line


@pytest.mark.parametrize(
    "argv,fragments",
    [
        (("trial", "--model", "nope"), ("unknown model 'nope'", "seed_cnn")),
        (("trial", "--method", "nope"), ("unknown method 'nope'", "layer_to_layer")),
        (("trial", "--set", "nope=1"), ("unknown parameter(s) nope", "'standard'")),
        (("trial", "--set", "lr"), ("--set expects KEY=VALUE", "'lr'")),
        (
            ("trial", "--model", "vgg11", "--method", "greedy", "--epochs", "3"),
            ("epochs=3.0 is too small: greedy on vgg11 has 8 stages", "a larger blocks_per_stage"),
        ),
        (
            ("trial", "--method", "layer_to_layer", "--set", "stage_fracs=1,2"),
            ("stage_fracs has 2 entries", "give 3 fractions"),
        ),
        (("sweep", "--spec", "nope"), ("spec 'nope' is neither a named spec", "quick")),
        (("sweep", "--set", "budget"), ("--set expects SECTION.KEY=VALUE", "'budget'")),
        (("sweep", "--set", "budget.nope=1"), ("unknown spec key(s) budget.nope", "max_trials")),
        (("sweep", "--set", "budget.max_concurrent=abc"), ("budget.max_concurrent='abc'", "auto")),
    ],
)
def test_project_checks_are_user_errors(
    tmp_path: Path, monkeypatch, capsys, argv: tuple[str, ...], fragments: tuple[str, ...]
):
    """Checks that once raised a plain ValueError (the CLI used to guess from the traceback)."""
    monkeypatch.chdir(tmp_path)
    line = in_process(capsys, *argv)
    assert all(fragment in line for fragment in fragments), line
    assert list(tmp_path.iterdir()) == []  # before any data, MLflow run or study folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="the check is for a machine without a GPU")
def test_cuda_without_a_gpu(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = in_process(capsys, "trial", "--device", "cuda", "--epochs", "1", "--no-mlflow")
    assert "device='cuda'" in line and "--device cpu" in line


def test_a_library_value_error_keeps_its_traceback(monkeypatch):
    """Only a UserError is the user's: a ValueError raised inside a library is a bug and propagates
    with its traceback."""

    def library_error(args) -> int:
        datetime.strptime("x", "%Y")  # ValueError from the standard library
        return 0

    monkeypatch.setattr(trial, "run", library_error)
    with pytest.raises(ValueError, match="does not match format"):
        cli.main(["trial"])

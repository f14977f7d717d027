"""`study.report` over a real MLflow sqlite store laid out like a sweep's (the MLflow layout of
study/trial_run.py and study/tracking.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from study_helpers import row

from study import tracking, verdict
from study.report import ReportResult, write_report
from study.trial_run import TrialRun, run_params
from trainables.config import TrainConfig
from trainables.errors import UserError

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 3
SEEDS = (0, 1, 2)
# Seeds-phase test accuracy per (model, method), one value per seed.
ACC = {
    ("seed_cnn", "standard"): (0.80, 0.82, 0.78),
    ("seed_cnn", "layer_to_layer"): (0.81, 0.83, 0.79),  # standard + 1 point on every seed
    ("seed_cnn", "greedy"): (0.79, 0.80, 0.75),  # standard - 1, - 2, - 3 points
    ("vgg11", "standard"): (0.60, 0.60, 0.60),
    ("vgg11", "layer_to_layer"): (0.62, 0.64, 0.66),
    ("vgg11", "greedy"): (0.55, 0.55, 0.55),
}
TIME = {
    "standard": (10.0, 20.0, 30.0),
    "layer_to_layer": (15.0, 30.0, 45.0),
    "greedy": (8.0, 16.0, 24.0),
}
MEM = {"standard": 100.0, "layer_to_layer": 150.0, "greedy": 40.0}
# The data set input a trial logs (trainables.data.describe_splits): its class count sets chance.
DATASET = {
    "name": "cifar10",
    "digest": "0" * 32,
    "source": "built-in loader of 'cifar10'",
    "sizes": {"train": 45000, "val": 5000, "test": 10000},
    "image_shape": [3, 32, 32],
    "num_classes": 10,
}

# What each method's runs trained: its knobs, epochs per stage and FLOPs in standard epochs.
KNOBS = {
    "standard": {},
    "layer_to_layer": {
        "split_ratio": 0.4123,
        "split_step": 1,
        "kd_alpha": 0.5,
        "kd_temperature": 4.0,
        "teacher_grad": 0.95,
        "finetune_frac": 0.1,
    },
    "greedy": {"aux_k": 2, "decoupled": False, "epochs_per_block": [0.25, 0.75]},
}
STAGE_EPOCHS = {"standard": [3], "layer_to_layer": [1, 1, 1], "greedy": [1, 2]}
COMPUTE = {"standard": 3.0, "layer_to_layer": 3.2, "greedy": 2.5}  # greedy: 17% under budget
SEARCH_SPENT = {"seed_cnn/standard": (30.0, 3.0, 10), "seed_cnn/greedy": (28.5, 2.5, 12)}


@pytest.fixture(scope="module")
def blank_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow sqlite file: creating one costs seconds, copying it
    milliseconds."""
    folder = tmp_path_factory.mktemp("blank")
    MlflowClient(tracking.default_tracking_uri(folder)).search_experiments()
    return folder / "mlflow.db"


def new_store(blank_db: Path, study_dir: Path, name: str) -> tuple[MlflowClient, str]:
    """An experiment in `<study_dir>/mlflow.db` whose artifacts stay in the study dir (not
    ./mlruns)."""
    uri = tracking.default_tracking_uri(study_dir)
    if not (study_dir / "mlflow.db").exists():
        shutil.copyfile(blank_db, study_dir / "mlflow.db")
    client = MlflowClient(uri)
    return client, client.create_experiment(
        name, artifact_location=(study_dir / "artifacts").as_uri()
    )


def add_arm(client: MlflowClient, exp_id: str, model: str, method: str) -> str:
    tags = {
        "role": "arm",
        "arm": f"{model}/{method}",
        "model": model,
        "method": method,
        "study": "quick",
    }
    return tracking.start_run(client, exp_id, f"{model}/{method}", tags=tags)


def add_trial(
    client: MlflowClient,
    exp_id: str,
    parent: str | None,
    model: str,
    method: str,
    phase: str,
    seed: int,
    acc: float,
    time_s: float,
    mem: float,
    error: str | None = None,
    val_curve: tuple[float, ...] | None = None,
    mem_source: str = "cuda_max_memory_allocated",
    extra: dict[str, float | str] | None = None,
) -> str:
    """A trial run as a sweep logs it: per-epoch metrics, then final metrics (or FAILED with the
    reason).

    Every epoch trains time_s / EPOCHS seconds; val_acc climbs to `acc` by 1 point an epoch unless
    `val_curve` is given. A search trial has no test accuracy (it never scores the test set);
    `extra` adds final metrics (the load a run trained under, its pinning).
    """
    tags = {
        "role": "trial",
        "arm": f"{model}/{method}",
        "model": model,
        "method": method,
        "phase": phase,
        "trial_id": f"{model}_{method}_{phase}_{seed}_{acc}",
        "study": "quick",
        **({} if phase == "search" else {"pair": str(seed)}),
    }
    config = TrainConfig(
        model=model,
        method=method,
        dataset="cifar10",
        epochs=EPOCHS,
        seed=seed,
        params=KNOBS[method],
    )
    name = f"{model}/{method}/{phase}-{seed}"
    run = TrialRun.create(client, exp_id, name, run_params(config), tags, parent)
    curve = val_curve or tuple(acc - 0.01 * (EPOCHS - epoch) for epoch in range(1, EPOCHS + 1))
    history = []
    for epoch in range(1, EPOCHS + (0 if error else 1)):
        # peak memory falls over the epochs, so the final summary (the max) differs from the last
        # epoch's value
        metrics = {
            "epoch": epoch,
            "stage": 0,
            "train_loss": 2.0 / epoch,
            "val_acc": curve[epoch - 1],
            "val_loss": 1.0,
            "epoch_time_s": time_s / EPOCHS,
            "peak_mem_mb": mem - 10 * (epoch - 1),
        }
        run.log_epoch(metrics)
        history.append(metrics)
    final = {
        "test_acc": acc,
        "train_time_s": time_s,
        "peak_mem_mb": mem,
        "params_trained": 1200,
        "params_deployed": 1000,
        "best_val_acc": max(curve),
        "val_acc": curve[-1],
        "epochs_run": len(history),
        "compute_epochs": COMPUTE[method],
        "stage_epochs": STAGE_EPOCHS[method],
        "trial_cpus": 2,
        "trial_gpus": 0,
        "torch_threads": 2,
        "device": "cpu: test CPU (2 cores)",
        "mem_source": mem_source,
        "history": history,
        **(extra or {}),
    }
    if phase == "search":
        del final["test_acc"]
    if error:  # a logged test_acc must not count
        tracking.log_metrics(
            client, run.run_id, {f"final/{k}": v for k, v in final.items()}, step=len(history)
        )
        run.fail(error)
    else:
        run.finish(final)
    return run.run_id


@pytest.fixture(scope="module")
def study(
    tmp_path_factory: pytest.TempPathFactory, blank_db: Path
) -> tuple[Path, MlflowClient, dict[str, str], ReportResult]:
    """2 models x 3 methods, 3 seeds each, 2 search trials for one arm, a diverged seeds run and
    one lost to the infrastructure; report written."""
    study_dir = tmp_path_factory.mktemp("quick")
    client, exp_id = new_store(blank_db, study_dir, "quick")
    parents = {}
    for (model, method), accs in ACC.items():
        parents[f"{model}/{method}"] = parent = add_arm(client, exp_id, model, method)
        for seed, acc, time_s in zip(SEEDS, accs, TIME[method]):
            add_trial(
                client, exp_id, parent, model, method, "seeds", seed, acc, time_s, MEM[method]
            )
    for arm, (spent, largest, trials) in SEARCH_SPENT.items():
        tracking.log_metrics(
            client,
            parents[arm],
            {
                "search/compute_spent": spent,
                "search/largest_trial": largest,
                "search/trials": trials,
            },
        )
    for acc in (0.5, 0.7):
        run_id = add_trial(
            client,
            exp_id,
            parents["seed_cnn/standard"],
            "seed_cnn",
            "standard",
            "search",
            0,
            acc,
            5.0,
            90.0,
        )
    client.set_tag(run_id, "early_stopped", "true")  # as the sweep marks a trial that ASHA stopped
    diverged = add_trial(
        client,
        exp_id,
        parents["vgg11/greedy"],
        "vgg11",
        "greedy",
        "seeds",
        3,
        0.30,
        9.0,
        40.0,
        error="DivergedError: train_loss is nan at epoch 3 (vgg11/greedy)",
    )
    TrialRun(client, diverged).log_dataset(DATASET)  # as the trial's first result logs it
    add_trial(
        client,
        exp_id,
        parents["seed_cnn/layer_to_layer"],
        "seed_cnn",
        "layer_to_layer",
        "seeds",
        4,
        0.99,
        9.0,
        40.0,
        error="RayActorError: The actor died unexpectedly before finishing this task.",
    )
    return study_dir, client, parents, write_report(study_dir)


def test_parquet_files_hold_every_trial_and_epoch(study):
    study_dir, _, _, result = study
    trials = pd.read_parquet(study_dir / "report" / "trials.parquet")
    assert len(trials) == 6 * 3 + 2 + 2
    for column in (
        "run_id",
        "status",
        "arm",
        "model",
        "method",
        "phase",
        "seed",
        "error",
        "trial_id",
        "metrics.final/test_acc",
        "metrics.final/train_time_s",
        "metrics.final/peak_mem_mb",
        "params.lr",
        "params.seed",
    ):
        assert column in trials.columns, column
    assert sorted(trials["status"].unique()) == ["FAILED", "FINISHED"]
    failed = trials[trials["status"] == "FAILED"]
    assert failed["error"].str.startswith(("DivergedError", "RayActorError")).all()
    assert list(failed["diverged"]) == [True, False] and "chance_acc" in trials

    epochs = pd.read_parquet(result.epochs_path)
    assert list(epochs.columns) == [
        "run_id",
        "arm",
        "model",
        "method",
        "phase",
        "status",
        "seed",
        "epoch",
        "val_acc",
        "train_loss",
        "epoch_time_s",
        "peak_mem_mb",
    ]
    assert len(epochs) == 20 * EPOCHS + 2 * (
        EPOCHS - 1
    )  # 20 finished runs, the failed ones stopped one epoch early
    last = epochs[(epochs["arm"] == "vgg11/standard") & (epochs["epoch"] == EPOCHS)]
    assert (
        last["peak_mem_mb"] == MEM["standard"] - 20
    ).all()  # the epoch's value, not the final summary's max


def test_table_has_every_arm_with_mean_and_ci(study):
    markdown = study[3].markdown
    assert markdown == (study[0] / "report" / "report.md").read_text()
    for model, method in ACC:
        assert len(row(markdown, "Table 1", model, method)) == 7
    # [80, 82, 78]: mean 80, sd 2, t(0.975, 2) = 4.3027 -> 4.3027 * 2 / sqrt(3) = 4.97
    assert row(markdown, "Table 1", "seed_cnn", "standard") == [
        "seed_cnn",
        "standard",
        "20.0",
        "80.00 ± 4.97",
        "100.0",
        "3",
        "0",
    ]
    # [79, 80, 75]: mean 78, sd sqrt(7) -> 4.3027 * 2.6458 / sqrt(3) = 6.57
    assert row(markdown, "Table 1", "seed_cnn", "greedy")[2:5] == ["16.0", "78.00 ± 6.57", "40.0"]
    assert row(markdown, "Table 1", "vgg11", "layer_to_layer")[3] == "64.00 ± 4.97"


def test_table_1b_says_what_each_arm_trained_and_its_compute(study):
    markdown = study[3].markdown
    assert row(markdown, "Table 1b", "seed_cnn", "layer_to_layer") == [
        "seed_cnn",
        "layer_to_layer",
        "split_ratio=0.412, split_step=1, kd_alpha=0.5, kd_temperature=4, teacher_grad=0.95, "
        "finetune_frac=0.1",
        "1,1,1",
        "3.20",
        "3/3 (budget 3)",
        "30.0",  # device-seconds: one device each, TIME's mean
        "n/a",
    ]
    greedy = row(markdown, "Table 1b", "seed_cnn", "greedy")
    assert greedy[2] == (
        "variant=sequential, aux_k=2, aux_head=layercnn, final_head=aux, blocks_per_stage=1, "
        "epochs_per_block=0.25/0.75"
    )
    assert greedy[3:6] == ["1,2", "2.50", "0/3 (budget 3)"]  # 17% under: not within 10%
    assert greedy[7] == "28.50 (12)"
    assert row(markdown, "Table 1b", "seed_cnn", "standard")[2:4] == ["—", "3"]
    assert (
        "Search compute per arm (budget.search_epochs, in the budget's unit, in trials): "
        "seed_cnn/greedy 28.50 in 12, seed_cnn/standard 30.00 in 10; the arms differ by 1.50, "
        "within one trial's cost (3.00)." in markdown
    )


def test_diverged_run_counts_at_chance_and_an_infrastructure_failure_does_not(study):
    cells = row(study[3].markdown, "Table 1", "vgg11", "greedy")
    # 55, 55, 55 and the diverged run at chance (1 / 10 classes, from its logged data set), not
    # the 30% it logged: mean 43.75, SD 22.5 -> t(0.975, 3) = 3.1824 * 22.5 / 2 = 35.80
    assert cells[3] == "43.75 ± 35.80"
    assert cells[2] == "16.0"  # its time is not in the mean: it has none
    assert cells[5:] == ["4", "1 of 4 diverged"]
    # the lost run is not counted (it would add 99%)
    assert row(study[3].markdown, "Table 1", "seed_cnn", "layer_to_layer")[3:] == [
        "81.00 ± 4.97",
        "150.0",
        "3",
        "1 other, excluded",
    ]
    assert (
        "Search phase: 2 trials, 1 stopped early by the scheduler, 0 failed." in study[3].markdown
    )


def test_paired_differences(study):
    markdown = study[3].markdown
    assert row(markdown, "Table 2", "seed_cnn", "layer_to_layer − standard") == [
        "seed_cnn",
        "layer_to_layer − standard",
        "3",
        "+1.00 ± 0.00",
        "1.50",  # the median time ratio
        "1.50 ± 0.00",
    ]
    # differences [-1, -2, -3]: mean -2, sd 1 -> 4.3027 / sqrt(3) = 2.48; ratios 0.8 and 0.4
    assert row(markdown, "Table 2", "seed_cnn", "greedy − standard")[2:] == [
        "3",
        "-2.00 ± 2.48",
        "0.80",
        "0.40 ± 0.00",
    ]
    assert row(markdown, "Table 2", "vgg11", "layer_to_layer − standard")[3] == "+4.00 ± 4.97"


def test_plots_written_and_logged_to_every_arm_run(study):
    study_dir, client, parents, result = study
    names = {path.name for path in result.plots}
    assert {
        "acc_vs_time.png",
        "acc_vs_memory.png",
        "performance_profile.png",
        "equal_time.png",
        "val_curves_seed_cnn_standard.png",
    } <= names
    assert "search_progress_seed_cnn.png" in names  # the one model whose search ran
    assert len(result.plots) == 4 + 1 + 6
    for path in result.plots:
        assert path.parent == study_dir / "report" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.parents_logged == 6
    for arm, run_id in parents.items():
        logged = {a.path: a.file_size for a in client.list_artifacts(run_id, "report")}
        expected = {
            "report.md",
            "acc_vs_time.png",
            "acc_vs_memory.png",
            "performance_profile.png",
            "search_progress_seed_cnn.png",
            "equal_time.png",
            f"val_curves_{arm.replace('/', '_')}.png",
        }
        assert set(logged) == {f"report/{name}" for name in expected}
        assert all(size > 0 for size in logged.values())


def test_search_phase_fallback(tmp_path, blank_db):
    client, exp_id = new_store(blank_db, tmp_path, "fallback")
    val_accs = {"standard": (0.60, 0.70), "layer_to_layer": (0.65, 0.75)}  # per search trial
    for method, trials in val_accs.items():
        for val, time_s in zip(trials, (5.0, 6.0)):
            add_trial(client, exp_id, None, "seed_cnn", method, "search", 0, val, time_s, 50.0)
    result = write_report(tmp_path)
    assert "† no seeds-phase runs" in result.markdown
    assert "no test accuracy, which search trials never measure" in result.markdown
    # the best by validation, shown without a test accuracy
    assert row(result.markdown, "Table 1", "seed_cnn", "standard †")[2:6] == [
        "6.0",
        "n/a",
        "50.0",
        "1",
    ]
    assert row(result.markdown, "Table 2", "seed_cnn", "layer_to_layer − standard")[2:5] == [
        "1",
        "n/a",
        "1.00",
    ]
    assert result.parents_logged == 0


def test_store_errors_name_the_problem(tmp_path, blank_db):
    with pytest.raises(UserError, match=r"no MLflow store at .*mlflow\.db: run a sweep first"):
        write_report(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()

    empty = tmp_path / "empty"
    new_store(blank_db, empty, "quick")
    with pytest.raises(
        ValueError, match=r"has no runs \(experiments: Default, quick\): run a sweep first"
    ):
        write_report(empty)

    several = tmp_path / "several"
    for name in ("a", "b"):
        client, exp_id = new_store(blank_db, several, name)
        tracking.start_run(client, exp_id, "x", tags={"role": "trial"})
    with pytest.raises(
        ValueError, match=r"several experiments .* \(a, b\) and none is named 'several'"
    ):
        write_report(several)
    with pytest.raises(ValueError, match=r"experiment 'c' not found .* Default, a, b"):
        write_report(several, experiment="c")


def test_cli_prints_the_table(study):
    out = subprocess.run(
        [sys.executable, "-m", "study", "report", "--study-dir", str(study[0])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "| seed_cnn | standard | 20.0 | 80.00 ± 4.97 |" in out.stdout
    assert "report written to" in out.stdout


# --- the equal-time phase and the verdict families ------------------------------------------------
# 3 seeds per arm, 3 epochs each. Seeds phase: standard trains 2 s an epoch, the others 1 s. The
# sweep's plan (logged on the arm runs): T = 6 s, target 86%. Equal-time phase: layer_to_layer 2 s
# an epoch (6 s), greedy 2.5 s an epoch (7.5 s: its target reached at epoch 3 comes after T).
CURVES = {
    "standard": (
        (0.70, 0.85, 0.90),
        (0.72, 0.86, 0.92),
        (0.71, 0.84, 0.91),
    ),  # reached at 6, 4, 6 s: median 6
    "layer_to_layer": ((0.80, 0.88, 0.93), (0.87, 0.90, 0.91), (0.70, 0.86, 0.95)),
    "greedy": ((0.50, 0.60, 0.70), (0.50, 0.60, 0.80), (0.40, 0.60, 0.85)),
}
TEST_ACC = {
    "standard": (0.90, 0.91, 0.92),
    "layer_to_layer": (0.95, 0.96, 0.975),
    "greedy": (0.70, 0.71, 0.69),
}
EPOCH_S = {"standard": 2.0, "layer_to_layer": 1.0, "greedy": 1.0}
TIMED_MARGIN = 2.0  # points (the spec's report.margin)
EQUAL_CURVES = {
    "layer_to_layer": ((0.87, 0.90, 0.93), (0.87, 0.90, 0.91), (0.70, 0.80, 0.95)),  # 2, 2, 6 s
    "greedy": ((0.50, 0.60, 0.90), (0.50, 0.60, 0.90), (0.50, 0.87, 0.90)),  # 7.5 (> T), 7.5, 5 s
}
EQUAL_TEST_ACC = {"layer_to_layer": (0.93, 0.94, 0.955), "greedy": (0.80, 0.82, 0.78)}
EQUAL_EPOCH_S = {"layer_to_layer": 2.0, "greedy": 2.5}
PLAN = {
    "equal_time.budget_s": "6.0",
    "equal_time.target_val_acc": "0.86",
    "equal_time.target_origin": "standard's best search val_acc 87.00% − 1.00 points",
}


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory, blank_db: Path) -> ReportResult:
    study_dir = tmp_path_factory.mktemp("timed")
    client, exp_id = new_store(blank_db, study_dir, "timed")
    for method, curves in CURVES.items():
        parent = add_arm(client, exp_id, "seed_cnn", method)
        tracking.log_params(client, parent, PLAN)  # as the sweep logs its equal-time plan
        client.log_param(parent, "report.margin", str(TIMED_MARGIN))  # as it logs [report]
        runs = [
            ("seeds", seed, acc, EPOCH_S[method] * EPOCHS, curve, None)
            for seed, (curve, acc) in enumerate(zip(curves, TEST_ACC[method]), 1)
        ]
        runs += [
            ("equal_time", seed, acc, EQUAL_EPOCH_S[method] * EPOCHS, curve, None)
            for seed, (curve, acc) in enumerate(
                zip(EQUAL_CURVES.get(method, ()), EQUAL_TEST_ACC.get(method, ())), 1
            )
        ]
        if method == "greedy":  # a failed equal-time run: a miss, and not in the accuracy
            runs.append(("equal_time", 4, 0.1, 7.5, None, "DivergedError: loss nan at epoch 3"))
        for phase, seed, acc, time_s, curve, error in runs:
            add_trial(
                client,
                exp_id,
                parent,
                "seed_cnn",
                method,
                phase,
                seed,
                acc,
                time_s,
                50.0,
                error=error,
                val_curve=curve,
                mem_source="cpu_rss",
            )
    return write_report(study_dir)


def test_time_to_target_is_measured_in_the_equal_time_phase_censored_at_t(timed):
    markdown = timed.markdown
    assert "seed_cnn 86.00% (standard's best search val_acc 87.00% − 1.00 points)" in markdown
    assert row(markdown, "Table 3", "seed_cnn", "standard")[2:] == ["86.00", "3/3", "6.0", "3.00"]
    assert row(markdown, "Table 3", "seed_cnn", "layer_to_layer")[2:] == [
        "86.00",
        "3/3",
        "2.0",
        "1.00",
    ]
    # reached at 7.5 s, 7.5 s and 5 s, and a failed run: only the 5 s one is within T = 6 s
    greedy = row(markdown, "Table 3", "seed_cnn", "greedy")
    assert greedy[2:] == ["86.00", "1/4", "∞ (miss)", "∞"]
    # profile: layer_to_layer is the best on the one workload; standard is within tau only from 3
    assert "Score (area under the profile / 3" in markdown
    assert "standard 0.33, layer_to_layer 1.00, greedy 0.00" in markdown
    assert "Warning: standard reached" not in markdown
    assert (timed.report_dir / "performance_profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_equal_time_table_shows_the_phase_test_accuracy_and_time_against_t(timed):
    assert row(timed.markdown, "Table 4", "seed_cnn", "standard") == [
        "seed_cnn",
        "standard",
        "6.0",
        "3",
        "6.0",
        "91.00 ± 2.48",
        "3",
        "0",
    ]
    # [93, 94, 95.5]: mean 94.17, sd 1.258 -> 4.3027 * 1.258 / sqrt(3) = 3.13
    assert row(timed.markdown, "Table 4", "seed_cnn", "layer_to_layer")[4:] == [
        "6.0",
        "94.17 ± 3.13",
        "3",
        "0",
    ]
    assert row(timed.markdown, "Table 4", "seed_cnn", "greedy")[4:] == [
        "7.5",
        "80.00 ± 4.97",
        "3",
        "1",
    ]
    assert (timed.report_dir / "equal_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _p_two_sided(differences: list[float]) -> float:
    """The paired t-test's p by its formula: t = mean / (sd / sqrt(n)), two-sided, n - 1 df."""
    from statistics import mean, stdev

    from scipy.stats import t as student

    n = len(differences)
    return 2 * student.sf(abs(mean(differences) / (stdev(differences) / n**0.5)), n - 1)


def _p_tost(differences: list[float], margin: float) -> float:
    """TOST by its formula: the larger one-sided p of H0 mean <= -margin and H0 mean >= margin."""
    from statistics import mean, stdev

    from scipy.stats import t as student

    n = len(differences)
    se = stdev(differences) / n**0.5
    low = student.sf((mean(differences) + margin) / se, n - 1)
    high = student.cdf((mean(differences) - margin) / se, n - 1)
    return max(low, high)


def _holm(p: dict) -> dict:
    """Holm by hand: the i-th smallest p times (m - i + 1), running maximum, capped at 1."""
    holm, running = {}, 0.0
    for i, key in enumerate(sorted(p, key=p.get)):
        running = max(running, min(1.0, (len(p) - i) * p[key]))
        holm[key] = running
    return holm


def test_verdict_lines_holm_within_each_family(timed):
    from statistics import stdev

    diffs = {  # points, other - standard per seed, per family
        "equal compute": {"layer_to_layer": [5.0, 5.0, 5.5], "greedy": [-20.0, -20.0, -23.0]},
        "equal time": {"layer_to_layer": [3.0, 3.0, 3.5], "greedy": [-10.0, -9.0, -14.0]},
    }
    outcome = {
        ("equal compute", "layer_to_layer"): "beats",
        ("equal compute", "greedy"): "loses",
        ("equal time", "layer_to_layer"): "beats",
        ("equal time", "greedy"): "loses",
    }
    lines = [line for line in timed.markdown.splitlines() if line.startswith("Verdict")]
    assert len(lines) == 4
    assert "### Equal compute (Holm family, m = 2 tested)" in timed.markdown
    assert "### Equal time (Holm family, m = 2 tested)" in timed.markdown
    for name, family in diffs.items():
        p = _holm({method: _p_two_sided(d) for method, d in family.items()})
        p_tost = {method: _p_tost(d, TIMED_MARGIN) for method, d in family.items()}
        tost = _holm(p_tost)
        for method, d in family.items():
            [line] = [
                line
                for line in lines
                if line.startswith(f"Verdict seed_cnn, {method} vs standard, {name}: ")
            ]
            mean = sum(d) / len(d)
            assert line.startswith(
                f"Verdict seed_cnn, {method} vs standard, {name}: {outcome[name, method]}; "
                f"margin ±{TIMED_MARGIN:.2f} points; effect {mean:+.2f} points test accuracy "
            ), line
            assert f"p = {_p_two_sided(d):.3g}, Holm-adjusted p = {p[method]:.3g}" in line
            assert (
                f"p_TOST = {p_tost[method]:.3g}, Holm-adjusted p_TOST = {tost[method]:.3g}" in line
            )
            assert "3 pairs" in line
            if outcome[name, method] == "inconclusive":
                needed = verdict.pairs_needed(stdev(d), TIMED_MARGIN, 0.05 / 2)
                assert (
                    f"Seeds needed for power 0.8 at α/m = 0.025, from the observed SD of the "
                    f"paired differences, {stdev(d):.2f} points (from 3 pairs;" in line
                ), line
                assert (
                    f"{needed[0]} to detect a difference of {TIMED_MARGIN:.2f} points "
                    f"(two-sided), {needed[1]} to show equivalence within ±{TIMED_MARGIN:.2f} "
                    "points (both one-sided tests)." in line
                ), line
    # pooled over all 4, greedy's equal-compute p would be adjusted by 3 or 4, not 2
    assert "over seeds only (it covers seed luck, not tuning luck)" in timed.markdown


def test_reports_read_four_outcomes_with_margin_and_never_matches(study, timed):
    outcomes = ("beats", "loses", "equivalent", "inconclusive")
    for result in (study[3], timed):
        assert "matches" not in result.markdown
        lines = [line for line in result.markdown.splitlines() if line.startswith("Verdict")]
        assert lines
        for line in lines:
            said = line.split(": ", 1)[1].split(";", 1)[0]
            assert said.split(" (by less")[0] in outcomes, line
            assert "; margin ±" in line, line
            assert ("Seeds needed" in line) == (said == "inconclusive"), line


def test_summary_line_per_method(timed):
    summary = timed.markdown[timed.markdown.index("## Summary") : timed.markdown.index("**Table 1")]
    lines = [line for line in summary.splitlines() if line.startswith("- ")]
    # one workload: layer_to_layer's 3 test accuracies all beat standard's 3, greedy's none
    assert [line.split(":")[0] for line in lines] == [
        "- layer_to_layer vs standard over 1 workload",
        "- greedy vs standard over 1 workload",
    ]
    assert "P(layer_to_layer > standard) = 1.00 (95% CI [1.00, 1.00])" in lines[0]
    assert "P(greedy > standard) = 0.00" in lines[1]
    # 5, 5, 5.5: a quarter of 3 values is 0 values, so nothing is trimmed: the mean
    assert "IQM of the test-accuracy difference +5.17 points" in lines[0]


def test_measurement_conditions_and_rss_memory(timed):
    markdown = timed.markdown
    section = markdown[markdown.index("## Measurement conditions") :]
    assert "the seeds phase and the equal-time phase (15 runs)" in section
    assert "- Device: cpu: test CPU (2 cores)." in section
    assert "- Per trial: 2 CPU(s) and 0 GPU(s) reserved, 2 torch thread(s)." in section
    assert "at most 1 of these runs trained at once" in section
    assert "process RSS high-water mark" in section
    assert row(markdown, "Table 1", "seed_cnn", "greedy")[4] == "50.0 RSS"
    assert row(markdown, "Table 2", "seed_cnn", "greedy − standard")[5] == "RSS: not compared"


# Seeds-phase training times (s): standard's 5th run ran while the machine was busy
NOISY_TIME = {
    "standard": (10.0, 10.2, 9.8, 10.1, 31.0),  # median 10.1, MAD 0.1: 31.0 is +207 MADs away
    "layer_to_layer": (12.0, 12.1, 11.9, 12.2, 12.0),  # nothing flagged
}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory, blank_db: Path) -> ReportResult:
    study_dir = tmp_path_factory.mktemp("noisy")
    client, exp_id = new_store(blank_db, study_dir, "noisy")
    for method, times in NOISY_TIME.items():
        parent = add_arm(client, exp_id, "seed_cnn", method)
        for seed, time_s in enumerate(times, 1):
            busy = method == "standard" and seed == 5
            extra = {
                "load_avg_start": 6.5 if busy else 0.5,
                "load_avg_end": 7.25 if busy else 0.75,
                "steal_s": 1.5 if busy else 0.0,
                "pinning": "exclusive",
                "cpu_cores": str(seed % 2),
            }
            add_trial(
                client, exp_id, parent, "seed_cnn", method, "seeds", seed, 0.9, time_s, 50.0,
                extra=extra,
            )  # fmt: skip
    return write_report(study_dir)


def test_a_slow_run_is_flagged_with_its_load_and_the_time_ratio_is_a_median(noisy):
    markdown = noisy.markdown
    # ratios 1.2, 1.186, 1.214, 1.208 and 12 / 31 = 0.387: the median is 1.20 (the mean 1.04)
    assert row(markdown, "Table 2", "seed_cnn", "layer_to_layer − standard")[4] == (
        "1.20 (flagged: 5)"
    )
    assert (
        "- seed_cnn/standard pair 5: 31.0 s, arm median 10.1 s (+206.9 MADs); 1-minute load "
        "average 6.50 at its start and 7.25 at its end, 1.5 s of CPU time stolen from its cores."
    ) in markdown
    assert "seed_cnn/layer_to_layer pair" not in markdown


def test_measurement_conditions_name_pinning_load_and_slot_use(noisy):
    section = noisy.markdown[noisy.markdown.index("## Measurement conditions") :]
    assert "- CPU pinning: 10 runs had cores of their own (cores 0; 1)" in section
    assert "still share the node's memory bandwidth and last-level cache" in section
    assert (
        "1-minute load average 0.50-6.50 at the runs' start and 0.75-7.25 at their end" in section
    )
    assert "stolen by the hypervisor from a run's cores: 0.0-1.5 s" in section
    assert re.search(r"- Slot time spent training: seeds \d+% \(", section)


def test_no_run_flagged_says_so(timed):
    assert "No run's training time is more than 3 MADs from its arm's median." in timed.markdown

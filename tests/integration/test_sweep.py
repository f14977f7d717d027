"""The sweep end to end on a real local Ray, Optuna and MLflow: layout, divergence, reruns that
redo nothing."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from ray import tune
from study_helpers import metric_steps, mlflow_runs, spec_data, tune_trial_ids

from study import tracking
from study.optuna_storage import storage_url
from study.provenance import git_commit
from study.spec import spec_from_dict
from study.sweep import parent_run, run_sweep
from study.trial_run import WEIGHTS_FILE
from trainables.distributed import DRIVER_CPU
from trainables.errors import UserError
from trainables.models import build_model
from trainables.trainable import FINAL_KEY

EPOCH_METRICS = {
    "val_acc",
    "val_loss",
    "train_loss",
    "epoch_time_s",
    "peak_mem_mb",
    "throughput_img_s",
    "compute_epochs",
    "epochs_total",
}
FINAL_METRICS = {
    "final/flops",
    "final/compute_epochs",
    "final/epochs_run",
    "final/stage_epochs/0",
    "final/val_acc",
    "final/train_time_s",
    "final/peak_mem_mb",
    "final/best_val_acc",
    "final/load_avg_start",
    "final/load_avg_end",
    "final/steal_s",
}
ARMS = ("seed_cnn/standard", "seed_cnn/layer_to_layer")
# retries of diverged trials are tested in test_trainable.py, the equal-time phase in test_phases.py
DATA = spec_data(budget={"max_failures": 0, "equal_time": False})
DIVERGING = spec_data(
    name="diverging",
    methods=["standard"],
    fixed={"lr": 1e6},  # the loss is NaN in epoch 1
    budget={"max_trials": 2, "seeds": 1, "max_failures": 0},
)


@pytest.fixture(scope="module")
def study(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """seed_cnn x (standard, layer_to_layer): 3 search trials of 2 epochs, then 2 seeds."""
    study_dir = tmp_path_factory.mktemp("study")
    report = run_sweep(spec_from_dict(DATA), study_dir)
    return study_dir, report


def test_one_mlflow_run_per_tune_trial_with_the_contract_layout(study):
    study_dir, _ = study
    parents = {run.data.tags["arm"]: run for run in mlflow_runs(study_dir, "tiny", "arm")}
    assert set(parents) == set(ARMS)
    runs = mlflow_runs(study_dir, "tiny", "trial")
    for arm in ARMS:
        model, method = arm.split("/")
        search = [r for r in runs if r.data.tags["arm"] == arm and r.data.tags["phase"] == "search"]
        assert {r.data.tags["trial_id"] for r in search} == set(
            tune_trial_ids(study_dir, f"{model}-{method}-search")
        )
        assert len(search) == 3
        for run in search:
            tags = run.data.tags
            assert tags[tracking.PARENT_TAG] == parents[arm].info.run_id
            assert (tags["model"], tags["method"], tags["study"], tags["role"]) == (
                model,
                method,
                "tiny",
                "trial",
            )
            assert run.data.params["model"] == model and float(run.data.params["lr"]) > 0
    seeds = [r for r in runs if r.data.tags["phase"] == "seeds"]
    assert sorted((r.data.tags["arm"], r.data.params["seed"]) for r in seeds) == [
        ("seed_cnn/layer_to_layer", "1"),
        ("seed_cnn/layer_to_layer", "2"),
        ("seed_cnn/standard", "1"),
        ("seed_cnn/standard", "2"),
    ]
    assert set(tune_trial_ids(study_dir, "seeds")) == {r.data.tags["trial_id"] for r in seeds}
    client = MlflowClient(tracking.default_tracking_uri(study_dir))
    assert "spec.toml" in {
        a.path for a in client.list_artifacts(parents["seed_cnn/standard"].info.run_id)
    }


def test_each_arm_records_the_search_compute_it_spent(study):
    """The compute each search spent (standard epochs of FLOPs: every trial's last compute_epochs),
    on the arm's parent run, in its state file (the report's source) and in the report."""
    study_dir, report = study
    parents = {run.data.tags["arm"]: run for run in mlflow_runs(study_dir, "tiny", "arm")}
    runs = mlflow_runs(study_dir, "tiny", "trial")
    client = MlflowClient(tracking.default_tracking_uri(study_dir))
    for arm in ARMS:
        search = [r for r in runs if r.data.tags["arm"] == arm and r.data.tags["phase"] == "search"]
        charged = [
            max(m.value for m in client.get_metric_history(r.info.run_id, "compute_epochs"))
            for r in search
        ]
        metrics = parents[arm].data.metrics
        assert metrics["search/compute_spent"] == pytest.approx(sum(charged))
        assert metrics["search/largest_trial"] == pytest.approx(max(charged))
        assert metrics["search/trials"] == len(search)
        assert sum(charged) <= DATA["budget"]["search_epochs"]
        assert f"{arm} {sum(charged):.2f} in {len(search)}" in report.markdown
    assert "Search compute per arm (budget.search_epochs, in the budget's unit" in report.markdown
    state = json.loads((study_dir / "state" / "seed_cnn-standard-search.json").read_text())
    assert state["search"]["compute_spent"] == pytest.approx(
        parents["seed_cnn/standard"].data.metrics["search/compute_spent"]
    )


def optuna_states(study_dir: Path, arm: str) -> dict[str, tuple[str, float | None]]:
    """Tune trial id -> (state, value) of the arm's search as stored in `<study_dir>/optuna.db`."""
    trials = optuna.load_study(study_name=arm, storage=storage_url(study_dir)).trials
    assert len({t.user_attrs["trial_id"] for t in trials}) == len(trials)  # none stored twice
    return {t.user_attrs["trial_id"]: (t.state.name, t.value) for t in trials}


def test_each_search_is_an_optuna_study_of_its_tune_trials(study):
    """Exactly the arm's Tune search trials, each with its state and its final val_acc."""
    study_dir, _ = study
    for arm in ARMS:
        model, method = arm.split("/")
        experiment = study_dir / "tune" / f"{model}-{method}-search"
        expected = {}
        for trial in tune.ExperimentAnalysis(str(experiment)).trials:
            result = trial.last_result
            if trial.status == "ERROR":
                expected[trial.trial_id] = ("FAIL", None)
            elif FINAL_KEY in result:
                expected[trial.trial_id] = ("COMPLETE", result["val_acc"])
            else:  # stopped early by ASHA: its last val_acc
                expected[trial.trial_id] = ("PRUNED", result["val_acc"])
        assert optuna_states(study_dir, arm) == expected


def test_finished_runs_hold_epoch_and_final_metrics(study):
    study_dir, _ = study
    finished = [r for r in mlflow_runs(study_dir, "tiny", "trial") if r.info.status == "FINISHED"]
    assert len(finished) == 3 + 3 + 4  # standard and layer_to_layer search trials, 2 x 2 seeds runs
    # 1-CPU trials in both phases; a seeds trial (time and memory reported) holds its core alone
    assert {
        (
            r.data.tags["phase"],
            r.data.metrics["final/trial_cpus"],
            r.data.metrics["final/torch_threads"],
        )
        for r in finished
        if "final/trial_cpus" in r.data.metrics
    } == {("search", 1.0, 1.0), ("seeds", 1.0, 1.0)}
    seeds_runs = [r for r in finished if r.data.tags["phase"] == "seeds"]
    assert {r.data.tags["mem_source"] for r in seeds_runs} == {"cpu_rss"}
    assert {r.data.tags["pinning"] for r in seeds_runs} == {"exclusive"}
    assert {r.data.tags["cpu_cores"] for r in seeds_runs} <= {"0", "1"}
    assert seeds_runs[0].data.tags["device"].startswith("cpu")
    client = MlflowClient(tracking.default_tracking_uri(study_dir))
    for run in finished:
        assert set(run.data.metrics) >= EPOCH_METRICS
        assert run.data.tags.get("node_id")
        for key in EPOCH_METRICS:  # one point per epoch: the final values never land in a series
            assert metric_steps(study_dir, run, key) == list(
                range(1, len(metric_steps(study_dir, run, key)) + 1)
            )
        if run.data.tags.get("early_stopped") == "true":
            assert not any(
                key.startswith("final/") for key in run.data.metrics
            )  # nothing recomputed for it
        else:
            assert set(run.data.metrics) >= FINAL_METRICS
            assert metric_steps(study_dir, run, "epoch_time_s") == [1, 2]
            seeds_run = run.data.tags["phase"] == "seeds"  # search runs never score the test set
            assert len(client.get_metric_history(run.info.run_id, "final/test_acc")) == seeds_run
    seeds = [r for r in finished if r.data.tags["phase"] == "seeds"]
    weights = list((study_dir / "mlartifacts").rglob(WEIGHTS_FILE))  # kept with the study
    assert len(weights) == len(seeds)
    state = torch.load(weights[0], weights_only=True)
    model = build_model("seed_cnn", num_classes=10, width=0.125)
    model.load_state_dict(state["model"])
    assert "final_results.json" in {
        a.path for a in client.list_artifacts(runs_by_arm(finished)["layer_to_layer"])
    }


def test_search_trials_never_score_the_test_set(study):
    """No test_acc in any search trial's Tune results (its final metrics included) or MLflow run;
    every seeds-phase run has one."""
    from ray import tune

    study_dir, _ = study
    for arm in ARMS:
        name = arm.replace("/", "-") + "-search"
        analysis = tune.ExperimentAnalysis(str(study_dir / "tune" / name))
        columns = [c for frame in analysis.trial_dataframes.values() for c in frame.columns]
        assert columns and not any("test_acc" in column for column in columns)
        finals = [t.last_result.get("final") for t in analysis.trials]
        assert any(finals) and not any("test_acc" in (f or {}) for f in finals)
    for run in mlflow_runs(study_dir, "tiny", "trial"):
        scored = "final/test_acc" in run.data.metrics
        assert scored == (run.data.tags["phase"] == "seeds" and run.info.status == "FINISHED")
        if scored:
            assert 0 <= run.data.metrics["final/test_acc"] <= 1


def runs_by_arm(runs: list) -> dict[str, str]:
    """method -> the id of one of its runs."""
    return {run.data.tags["method"]: run.info.run_id for run in runs}


def test_every_trial_run_has_dataset_commit_and_system_metrics(study):
    study_dir, _ = study
    client = MlflowClient(tracking.default_tracking_uri(study_dir))
    runs = mlflow_runs(study_dir, "tiny", "trial")
    for run in runs:
        (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
        assert dataset.name == "digits" and len(dataset.digest) == 32
        assert json.loads(dataset.profile)["train"] == 200
        assert run.data.tags["mlflow.source.git.commit"] == git_commit() != "unknown"
        assert "inject_nan_at_epoch" not in run.data.params and not any(
            p.startswith("_") for p in run.data.params
        )
        if run.info.status == "FINISHED":
            history = client.get_metric_history(
                run.info.run_id, "system/process_memory_rss_megabytes"
            )
            assert len(history) >= 2 and all(
                m.value > 0 for m in history
            )  # sampled in the trial's process
            assert "system/cpu_utilization_percentage" in run.data.metrics
    experiment = client.get_experiment_by_name("tiny")
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == tracking.MODEL_TRAINING_KIND


def test_arm_runs_show_best_config_and_seed_means(study):
    study_dir, _ = study
    parents = {run.data.tags["arm"]: run for run in mlflow_runs(study_dir, "tiny", "arm")}
    trials = mlflow_runs(study_dir, "tiny", "trial")
    for arm in ("seed_cnn/standard", "seed_cnn/layer_to_layer"):
        parent = parents[arm]
        seeds = [r for r in trials if r.data.tags["arm"] == arm and r.data.tags["phase"] == "seeds"]
        mean = sum(r.data.metrics["final/test_acc"] for r in seeds) / len(seeds)
        assert parent.data.metrics["final/test_acc"] == pytest.approx(mean)
        assert (
            parent.data.metrics["final/seeds"] == 2 and "final/train_time_s" in parent.data.metrics
        )
        assert {"lr", "weight_decay", "batch_size"} <= set(parent.data.params)
        assert parent.data.params["lr"] == seeds[0].data.params["lr"]


def test_diverged_trials_fail_with_the_reason_and_the_search_goes_on(
    ray_local: None, tmp_path: Path
):
    """An arm whose every trial diverges: FAILED runs with the reason, and its search ends without
    raising, naming its first failure."""
    from study.tune_arm import TuneRunner

    spec = spec_from_dict(DIVERGING)
    uri = tracking.default_tracking_uri(tmp_path)
    client = MlflowClient(uri)
    experiment_id = tracking.get_or_create_experiment(client, spec.name)
    arm = spec.arms[0]
    parent = parent_run(client, experiment_id, spec, arm)
    searched = TuneRunner(
        spec, str(tmp_path / "tune"), uri, experiment_id, 1, storage_url(tmp_path)
    ).search(arm, 0, parent, "[1/1]")
    assert searched.keys() == {"failed"}
    assert searched["failed"].startswith("seed_cnn/standard trial ")
    assert ": DivergedError: train_loss is nan at epoch 1" in searched["failed"]
    runs = mlflow_runs(tmp_path, "diverging", "trial")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FAILED"}
    assert all(
        r.data.tags["error"].startswith("DivergedError: train_loss is nan at epoch 1") for r in runs
    )
    assert set(tune_trial_ids(tmp_path, "seed_cnn-standard-search").values()) == {"ERROR"}
    assert set(optuna_states(tmp_path, arm.name).values()) == {("FAIL", None)}


def test_report_says_at_which_settings_with_its_figures(study):
    study_dir, report = study
    assert "## At which settings" in report.markdown
    for arm in ARMS:
        assert f"| {arm} |" in report.markdown  # its importance rows
        assert (study_dir / "report" / f"knobs_{arm.replace('/', '_')}.png").stat().st_size
    assert "⚠ < 20: unreliable" in report.markdown  # 3 trials per arm
    assert (
        study_dir / "report" / "split_ratio_x_teacher_grad_seed_cnn_layer_to_layer.png"
    ).exists()


def test_report_has_every_arm_and_the_verdicts(study):
    _, report = study
    for row in ("| seed_cnn | standard |", "| seed_cnn | layer_to_layer |"):
        assert row in report.markdown
    assert "\nVerdict seed_cnn, layer_to_layer vs standard, equal compute: " in report.markdown
    assert "No equal-time phase in this study (`budget.equal_time = false`" in report.markdown
    assert "- Per trial: 1 CPU(s) and 0 GPU(s) reserved, 1 torch thread(s)." in report.markdown
    assert "- CPU pinning: 4 runs had cores of their own" in report.markdown
    assert "- Slot time spent training: search " in report.markdown


def test_timed_trials_get_a_whole_device():
    from study.tune_arm import timed_resources

    assert timed_resources(2.0, 0.25) == (2.0, 1.0)  # a whole GPU, however the search packs them
    assert timed_resources(0.5, 0.0) == (1.0, 0.0)  # whole cores, pinned: no core is shared
    assert timed_resources(3.0, 0.0) == (3.0, 0.0)
    # a worker group's workers leave their driver's share: 2 x 1 CPU + 0.01 would fit no 2-CPU node
    assert timed_resources(1.0, 0.0, workers=2) == (1.0 - DRIVER_CPU / 2, 0.0)


def test_rerun_redoes_nothing_and_a_changed_spec_is_refused(study):
    study_dir, _ = study
    before = {r.info.run_id for r in mlflow_runs(study_dir, "tiny", "trial")}
    run_sweep(spec_from_dict(DATA), study_dir)
    assert {r.info.run_id for r in mlflow_runs(study_dir, "tiny", "trial")} == before
    changed = r"changed: budget.max_trials 3 -> 4\)"
    with pytest.raises(UserError, match=changed):
        run_sweep(
            spec_from_dict({**DATA, "budget": {**DATA["budget"], "max_trials": 4}}), study_dir
        )

"""The sweep end to end on a real local Ray, Optuna and MLflow: layout, divergence, reruns that redo nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from study import tracking
from study.spec import spec_from_dict
from study.sweep import run_sweep
from study_helpers import metric_steps, mlflow_runs, spec_data, tune_trial_ids

EPOCH_METRICS = {"val_acc", "val_loss", "train_loss", "epoch_time_s", "peak_mem_mb", "throughput_img_s"}
SUMMARY_METRICS = {"val_acc", "train_time_s", "peak_mem_mb", "best_val_acc"}
ARMS = ("seed_cnn/standard", "seed_cnn/layer_to_layer", "seed_cnn/greedy")
DATA = spec_data(methods=["standard", "layer_to_layer", "greedy"], fixed={"greedy": {"inject_nan_at_epoch": 1}},
                 budget={"max_failures": 0})  # retries of diverged trials are tested in test_trainable.py


@pytest.fixture(scope="module")
def study(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """seed_cnn x (standard, layer_to_layer, greedy): 3 search trials of 2 epochs, 2 seeds; greedy diverges."""
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
        assert {r.data.tags["trial_id"] for r in search} == set(tune_trial_ids(study_dir, f"{model}-{method}-search"))
        assert len(search) == 3
        for run in search:
            tags = run.data.tags
            assert tags[tracking.PARENT_TAG] == parents[arm].info.run_id
            assert (tags["model"], tags["method"], tags["study"], tags["role"]) == (model, method, "tiny", "trial")
            assert run.data.params["model"] == model and float(run.data.params["lr"]) > 0
    seeds = [r for r in runs if r.data.tags["phase"] == "seeds"]
    assert sorted((r.data.tags["arm"], r.data.params["seed"]) for r in seeds) == [
        ("seed_cnn/layer_to_layer", "1"), ("seed_cnn/layer_to_layer", "2"),
        ("seed_cnn/standard", "1"), ("seed_cnn/standard", "2")]
    assert set(tune_trial_ids(study_dir, "seeds")) == {r.data.tags["trial_id"] for r in seeds}
    client = MlflowClient(tracking.default_tracking_uri(study_dir))
    assert "spec.toml" in {a.path for a in client.list_artifacts(parents["seed_cnn/standard"].info.run_id)}


def test_each_arm_records_the_search_compute_it_spent(study):
    """The trial-epochs each search spent, on the arm's parent run and in its state file (the report's source)."""
    study_dir, report = study
    parents = {run.data.tags["arm"]: run for run in mlflow_runs(study_dir, "tiny", "arm")}
    runs = mlflow_runs(study_dir, "tiny", "trial")
    assert "Search compute per arm (budget.search_epochs; trial-epochs in trials):" in report.markdown
    for arm in ARMS:
        search = [r for r in runs if r.data.tags["arm"] == arm and r.data.tags["phase"] == "search"]
        spent = sum(max(metric_steps(study_dir, r, "val_acc"), default=0) for r in search)
        metrics = parents[arm].data.metrics
        assert (metrics["search/epochs_spent"], metrics["search/trials"]) == (spent, len(search))
        assert spent <= DATA["budget"]["epochs"] * DATA["budget"]["max_trials"]
        assert f"{arm} {spent} in {len(search)}" in report.markdown
    state = json.loads((study_dir / "state" / "seed_cnn-standard-search.json").read_text())
    assert state["search"]["epochs_spent"] == parents["seed_cnn/standard"].data.metrics["search/epochs_spent"]


def test_finished_runs_hold_epoch_and_final_metrics(study):
    study_dir, _ = study
    finished = [r for r in mlflow_runs(study_dir, "tiny", "trial") if r.info.status == "FINISHED"]
    assert len(finished) == 3 + 3 + 4  # standard and layer_to_layer search trials, 2 x 2 seeds runs
    for run in finished:
        assert SUMMARY_METRICS | EPOCH_METRICS <= set(run.data.metrics)
        assert run.data.tags.get("node_id")
        if run.data.tags.get("early_stopped") != "true":
            assert 0 <= run.data.metrics["test_acc"] <= 1
            assert metric_steps(study_dir, run, "epoch_time_s") == [1, 2]
    seeds = [r for r in finished if r.data.tags["phase"] == "seeds"]
    assert all("test_acc" in r.data.metrics for r in seeds)
    # the search packs 1-CPU trials; a seeds trial (time and memory reported) has the 2-CPU machine alone
    assert {(r.data.tags["phase"], r.data.metrics["trial_cpus"], r.data.metrics["torch_threads"]) for r in finished
            if "trial_cpus" in r.data.metrics} == {("search", 1.0, 1.0), ("seeds", 2.0, 2.0)}
    assert {r.data.tags["mem_source"] for r in seeds} == {"cpu_rss"} and seeds[0].data.tags["device"].startswith("cpu")
    client = MlflowClient(tracking.default_tracking_uri(study_dir))
    assert "final_metrics.json" in {a.path for a in client.list_artifacts(seeds[0].info.run_id)}
    assert len(list((study_dir / "mlartifacts").rglob("final_metrics.json"))) == len(finished)  # kept with the study


def test_diverged_trials_fail_with_the_reason_and_the_study_goes_on(study):
    study_dir, report = study
    greedy = [r for r in mlflow_runs(study_dir, "tiny", "trial") if r.data.tags["method"] == "greedy"]
    assert len(greedy) == 3 and {r.info.status for r in greedy} == {"FAILED"}
    assert all(r.data.tags["error"].startswith("DivergedError: train_loss is nan at epoch 1") for r in greedy)
    assert set(tune_trial_ids(study_dir, "seed_cnn-greedy-search").values()) == {"ERROR"}
    for row in ("| seed_cnn | standard |", "| seed_cnn | layer_to_layer |", "| seed_cnn | greedy"):
        assert row in report.markdown
    assert "\nVerdict seed_cnn, layer_to_layer vs standard, equal epochs: " in report.markdown
    assert "\nVerdict seed_cnn, layer_to_layer vs standard, equal time: " in report.markdown
    assert "- Per trial: 2 CPU(s) and 0 GPU(s) reserved, 2 torch thread(s)." in report.markdown
    assert "at most 1 of these runs trained at once on one node" in report.markdown


def test_seeds_trials_get_a_whole_device():
    from study.tune_arm import seeds_resources

    assert seeds_resources(2.0, 0.25, [16.0, 16.0]) == (2.0, 1.0)  # a whole GPU, however the search packs them
    assert seeds_resources(1.0, 0.0, [8.0, 4.0]) == (4.0, 0.0)  # every core of the smallest node


def test_rerun_redoes_nothing_and_a_changed_spec_is_refused(study):
    study_dir, _ = study
    before = {r.info.run_id for r in mlflow_runs(study_dir, "tiny", "trial")}
    run_sweep(spec_from_dict(DATA), study_dir)
    assert {r.info.run_id for r in mlflow_runs(study_dir, "tiny", "trial")} == before
    with pytest.raises(ValueError, match=r"different spec \(changed: budget\)"):
        run_sweep(spec_from_dict({**DATA, "budget": {**DATA["budget"], "max_trials": 4}}), study_dir)

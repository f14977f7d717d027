"""`python -m study sweep`: per arm an Optuna/ASHA search on val_acc, then the timed phases.

Each arm's search (per study when budget.studies > 1) is one Ray Tune experiment
(`<storage>/<model>-<label>-search`); the seeds phase reruns every best config with S seeds in one
experiment (`<storage>/seeds`), so its trials pack the workers evenly, and the equal-time phase
reruns the compared arms with budgets fit to standard's time (`<storage>/equal_time`;
study.phases, docs/phases.md). Rerunning the same command resumes an interrupted experiment
(Tuner.restore) and skips the ones recorded as done in `<study-dir>/state/`; rerunning it with a
larger budget.seeds runs only the missing seeds. MLflow is written from this driver process only
(study.tune_callbacks), and so is every search's Optuna study in `<study-dir>/optuna.db`
(study.optuna_storage). At the end the report is built and printed. A phase that ends with no
finished trial fails the study (study.phase_check: exit status 1, one line); Ray's tracebacks of
failed trials go to `<study-dir>/logs/sweep.log` (study.sweep_log).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.phase_check import StudyFailed, check_phase
from study.spec import Arm, StudySpec, add_spec_arguments, default_sections, load_spec
from study.state import StudyState
from study.sweep_log import study_log
from trainables.errors import UserError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from study.report import ReportResult

TUNE_ENV = {
    # save the experiment state every second (default >= 10 s): less to redo
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    # that is on purpose: no warning
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Tune's classic reporter, silent at verbose=0; ProgressCallback prints
    "RAY_AIR_NEW_OUTPUT": "0",
    # a worker group (resources.workers > 1) of processes importing torch on a busy 2-core machine
    # can take longer than Ray Train's default 60 s to start; resources that can never be placed are
    # caught up front
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "600",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="run (or resume) a study: search every arm, then rerun the best with seeds"
    )
    add_spec_arguments(
        p, "override a spec entry, e.g. --set budget.max_trials=8 --set fixed.width=0.5"
    )
    p.add_argument(
        "--study-dir",
        type=Path,
        default=None,
        help="where results live (default: runs/<spec name>)",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow URI (default: sqlite:///<study-dir>/mlflow.db; on a cluster an `mlflow "
        "server` URL)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)",
    )
    p.add_argument(
        "--storage-path",
        default=None,
        help="Tune results and checkpoints (default: <study-dir>/tune; on a cluster a shared path "
        "or s3://)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(
        args.spec, args.overrides
    )  # every spec error is raised here, before Ray starts
    study_dir = args.study_dir or Path("runs") / spec.name
    with study_log(study_dir, args.verbose) as log_file:
        try:
            report = run_sweep(spec, study_dir, args.tracking_uri, args.address, args.storage_path)
        except StudyFailed as err:
            print(f"error: study {spec.name!r} failed: {err} (log: {log_file})", file=sys.stderr)
            return 1
    print(report.markdown)
    print(f"report: {report.report_dir}")
    return 0


def run_sweep(
    spec: StudySpec,
    study_dir: Path,
    tracking_uri: str | None = None,
    address: str | None = None,
    storage_path: str | None = None,
) -> ReportResult:
    """Run or resume every arm and phase of `spec`, then build the report."""
    study_dir = Path(study_dir).expanduser().resolve()
    state = StudyState(study_dir)
    state.check_spec(spec.to_dict(), default_sections())  # refused before Ray starts
    init_ray(address, state_api=spec.resources.workers > 1)
    slots = preflight(
        spec
    )  # before anything is written or waits (and before the slow imports below)
    from study import plan

    study_plan = plan.study_plan(spec)  # on the cluster Ray sees: what the study will spend
    print(study_plan.render(), flush=True)
    plan.check_limit(study_plan)
    from mlflow.tracking import MlflowClient

    from study import optuna_storage, tracking
    from study.phases import run_timed_phases
    from study.report import write_report
    from study.tune_arm import TuneRunner

    state.record_spec(spec.to_dict())
    uri = tracking_uri or tracking.default_tracking_uri(study_dir)
    client = MlflowClient(uri)
    local_store = uri.startswith(
        ("sqlite:", "file:")
    )  # keep its artifacts with the study, not in ./mlruns
    artifacts = (
        (study_dir / "mlartifacts").as_uri() if local_store else None
    )  # a server decides for itself
    experiment_id = tracking.get_or_create_experiment(client, spec.name, artifacts)
    storage = storage_path or str(study_dir / "tune")
    optuna_url = optuna_storage.storage_url(study_dir)
    runner = TuneRunner(spec, storage, uri, experiment_id, slots, optuna_url)
    print(
        f"study {spec.name!r}: {len(spec.arms)} arms, MLflow {uri}, Tune {storage}, "
        f"Optuna {optuna_url}",
        flush=True,
    )
    parents = {arm.name: parent_run(client, experiment_id, spec, arm) for arm in spec.arms}
    best_configs: dict[tuple[Arm, int], dict[str, Any]] = {}
    search_failures: list[str] = []
    searches = spec.searches()
    for index, (arm, study) in enumerate(searches, 1):
        label = f"[{index}/{len(searches)}]"
        record = f"{spec.search_name(arm, study)}-search"
        best = state.get(record)
        if best is None:
            best = runner.search(arm, study, parents[arm.name], label)
            state.put(record, best)
        elif "config" in best:
            print(
                f"{label} {spec.search_label(arm, study)}: searched before, best val_acc "
                f"{best['val_acc']:.4f}",
                flush=True,
            )
        if "config" in best:
            best_configs[arm, study] = best["config"]
        else:
            search_failures.append(str(best.get("failed") or "no trial finished"))
    check_phase("search", None if best_configs else search_failures[0])
    searched = {arm for arm, _ in best_configs}
    for arm in spec.arms:
        if arm not in searched:
            tracking.fail_run(client, parents[arm.name], "no search trial finished")
    arm_parents = {arm.name: parents[arm.name] for arm in searched}
    run_timed_phases(
        spec,
        state,
        best_configs,
        lambda phase, name, trials: runner.timed(phase, name, trials, arm_parents),
        client,
        experiment_id,
        parents,
    )
    for arm in searched:
        configs = {
            f"study{study}." if spec.budget.studies > 1 else "": config
            for (searched_arm, study), config in best_configs.items()
            if searched_arm == arm
        }
        tracking.log_arm_summary(client, experiment_id, parents[arm.name], configs)
        client.set_terminated(parents[arm.name], status="FINISHED")
    return write_report(study_dir, uri, spec.name)


def init_ray(address: str | None, state_api: bool = False) -> None:
    """Connect to `address` / $RAY_ADDRESS, else start a local Ray; a Ray already initialised is
    used as is.

    What trial processes print (Ray Train's line per report, the workers' epoch lines, Ray's own
    notices) stays in Ray's log files (`logs/` of the Ray session folder) unless this process logs
    info (`-v`): the console shows the sweep's own line per trial.

    `state_api`: the local Ray runs its dashboard, whose address every Ray process gets in
    RAY_API_SERVER_ADDRESS. Worker-group trials need it: when Tune stops such a trial, Ray Train's
    PlacementGroupCleaner frees the group's resources after asking the state API, and without the
    address it autodetects, which fails when several Ray instances run on one machine (the group's
    resources then stay held and the next trial's workers never start).
    """
    import ray

    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)
    # Tune's default TensorBoard logger cannot write the system-metric samples a result carries
    # (MLflow gets them) and would print the whole list once per sweep as a warning
    logging.getLogger("ray.tune.logger.tensorboardx").setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {
        "logging_level": logging.WARNING,
        "log_to_driver": logging.getLogger().isEnabledFor(logging.INFO),
    }
    if address:
        ray.init(address=address, **quiet)
    elif state_api:
        with socket.socket() as s:  # a free port, so that its address can be set before Ray starts
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        ray.init(
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=port,
            **quiet,
        )
    else:
        ray.init(include_dashboard=False, **quiet)


def preflight(spec: StudySpec) -> int:
    """Fail fast (one UserError naming every problem) when the driver lacks the data or no node of
    the cluster can ever place a trial; otherwise the trials the cluster holds at once, printed."""
    from study import capacity

    nodes = capacity.alive_nodes()
    request = capacity.TrialRequest.of(spec)
    problems = []
    for check in (
        lambda: capacity.check_placeable(request, nodes),
        lambda: capacity.check_data_on_driver(spec),
    ):
        try:
            check()
        except UserError as err:
            problems.append(str(err))
    if problems:
        raise UserError("; and ".join(problems))
    slots = capacity.auto_concurrency(request, nodes)
    total = capacity.total_resources(nodes)
    print(
        f"cluster: {len(nodes)} node(s), {total}; {request.describe()}: {slots} trial(s) at once",
        flush=True,
    )
    return slots


def parent_run(client: MlflowClient, experiment_id: str, spec: StudySpec, arm: Arm) -> str:
    """The arm's parent run (found by its tags, else created with the spec as artifacts)."""
    from study import tracking

    filters = " and ".join(
        [tracking.tag_filter("role", "arm"), tracking.tag_filter("arm", arm.name)]
    )
    found = tracking.find_runs(client, experiment_id, filters)
    if found:
        return found[0].info.run_id
    tags = {
        "role": "arm",
        "arm": arm.name,
        "model": arm.model,
        "method": arm.method,
        "study": spec.name,
    }
    params = {
        "dataset": spec.dataset,
        # not budget.seeds: a later run may raise it (the arm's `final/seeds` counts its runs)
        **{f"budget.{k}": v for k, v in vars(spec.budget).items() if k != "seeds"},
        **{f"report.{k}": v for k, v in vars(spec.report).items() if v is not None},
    }  # the report reads these
    run_id = tracking.start_run(
        client, experiment_id, arm.name, params, tags=tags, source="python -m study sweep"
    )
    client.log_text(run_id, spec.source, "spec.toml")
    client.log_dict(run_id, spec.to_dict(), "spec_resolved.json")
    return run_id

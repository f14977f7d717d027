"""StudySpec: what a sweep runs (dataset, model x method arms, budget, resources, search, fixed
knobs).

Specs are TOML files; `quick` and `paper` name the files in study/specs/, any other value is a
path. `--set section.key=value` overrides any entry. Every name and range is checked here, before
Ray starts, and unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces.common import ARM_WIDE
from trainables.config import BUDGET_UNITS, TrainConfig, check_choice, check_range, parse_value
from trainables.errors import UserError

SPEC_DIR = Path(__file__).resolve().parent / "specs"
CONTROLLED = (
    "model",
    "method",
    "dataset",
    "epochs",
    "budget_unit",
    "seed",
    "params",
)  # set by the spec/sweep, not by `fixed`
# Methods whose per-epoch val_acc, at ASHA's rungs, is comparable across an arm's trials: the same
# classifier (the whole network) at every epoch, measured to rank trials as the final val_acc does
# (docs/search.md). greedy's per-epoch val_acc is the current prefix with its aux head, so trials
# with different stage plans sit at different depths at a rung: its trials run to the end.
EARLY_STOPPING_METHODS = ("standard", "layer_to_layer")
# A `methods` entry `<method>:<name>` is a control arm: the method again, searched and seeded as an
# arm of its own (docs/phases.md).
LABEL_SEPARATOR = ":"
_CONTROL_NAME = re.compile(r"[A-Za-z0-9_-]+")
# Seed numbers per random stream (study/spec.py `StudySpec.stream`): stream j's seeds-phase runs use
# seeds SEED_STRIDE * j + 1, + 2, ..., so raising budget.seeds never renumbers a seed.
SEED_STRIDE = 1000


def method_of(label: Any) -> Any:
    """The method of an arm label (`standard:control` -> `standard`); a non-string as it is."""
    return label.partition(LABEL_SEPARATOR)[0] if isinstance(label, str) else label


@dataclass(frozen=True)
class Arm:
    """One arm of a study: a model and a label, the label being a method or `<method>:<name>`."""

    model: str
    label: str

    @property
    def method(self) -> str:
        """The method the arm trains (the label up to its `:`)."""
        return method_of(self.label)

    @property
    def is_control(self) -> bool:
        """A labelled arm (`standard:control`): a control of its method's arm, not compared."""
        return LABEL_SEPARATOR in self.label

    @property
    def name(self) -> str:
        """`model/label`: the MLflow parent run's name and `arm` tag."""
        return f"{self.model}/{self.label}"

    @property
    def slug(self) -> str:
        """`model-label` with `:` as `-`: file and folder names."""
        return f"{self.model}-{self.label.replace(LABEL_SEPARATOR, '-')}"


@dataclass
class Budget:
    """Per arm: the budget per trial and its unit, search compute and trial cap, seeds of the final
    phase, ASHA, concurrency."""

    # what `epochs`, `search_epochs` and `grace_period` count (trainables/compute.py): "flops",
    # standard epochs of training FLOPs (each arm's runs derive their own epochs from them), or
    # "epochs", whole epochs of the arm's own method
    unit: str = "flops"
    epochs: float = 10  # per trial, in `unit`
    max_trials: int = 8  # cap on search trials per arm
    search_epochs: float | None = (
        None  # search compute per arm in `unit`, equal for every arm; unset: epochs x max_trials
    )
    early_stopping: bool = (
        True  # ASHA, for the methods it is valid for (study/tune_arm.py); false: no arm stops
    )
    seeds: int = 3  # may be raised on a finished study: only the missing seeds run
    studies: int = 1  # independent searches per arm, each with its own seeds phase
    equal_time: bool = True  # rerun the non-standard arms with epochs fit to standard's time
    grace_period: float = 1  # ASHA: compute (in `unit`) before a trial can be stopped
    reduction_factor: int = 2
    max_concurrent: int | str = (
        "auto"  # trials at once; "auto": what the cluster holds (study/capacity.py)
    )
    max_failures: int = 1
    # the sweep stops before it starts when its plan needs more device-hours (python -m study plan)
    max_device_hours: float | None = None

    def __post_init__(self) -> None:
        check_choice("budget.unit", self.unit, BUDGET_UNITS)
        check_range("budget.epochs", self.epochs, 0.0, None, low_open=True)
        if self.unit == "epochs" and self.epochs != int(self.epochs):
            raise UserError(
                f"budget.epochs={self.epochs!r} must be a whole number with budget.unit=epochs; "
                'use budget.unit="flops" for a fractional budget'
            )
        check_range("budget.max_trials", self.max_trials, 1, None)
        if self.search_epochs is None:
            self.search_epochs = self.epochs * self.max_trials
        check_range(
            "budget.search_epochs", self.search_epochs, self.epochs, None
        )  # at least one whole trial
        check_whole("budget.seeds", self.seeds, 0, SEED_STRIDE - 1)
        check_whole("budget.studies", self.studies, 1, None)
        if not isinstance(self.equal_time, bool):
            raise UserError(
                f"budget.equal_time={self.equal_time!r} is not valid; give true or false"
            )
        check_range("budget.grace_period", self.grace_period, 0.0, self.epochs, low_open=True)
        check_range("budget.reduction_factor", self.reduction_factor, 2, None)
        if self.max_concurrent != "auto":
            if not isinstance(self.max_concurrent, int) or isinstance(self.max_concurrent, bool):
                raise UserError(
                    f'budget.max_concurrent={self.max_concurrent!r} is not valid; give "auto" '
                    "or a whole number >= 1"
                )
            check_range("budget.max_concurrent", self.max_concurrent, 1, None)
        check_range("budget.max_failures", self.max_failures, 0, None)
        if self.max_device_hours is not None:
            check_range("budget.max_device_hours", self.max_device_hours, 0.0, None, low_open=True)


def check_whole(key: str, value: Any, low: int, high: int | None) -> None:
    """check_range for a count: also refuses a fraction (`budget.seeds=2.5`)."""
    check_range(key, value, low, high)
    if isinstance(value, float):
        raise UserError(f"{key}={value!r} is not valid; give a whole number")


@dataclass
class Resources:
    """What one trial reserves: CPU cores (also its torch threads) and GPUs (a fraction packs
    trials), split evenly over its `workers` data-parallel workers (Ray Train; 1 = the trial is one
    process)."""

    cpu: float = 1.0
    gpu: float = 0.0
    workers: int = 1

    def __post_init__(self) -> None:
        check_range("resources.cpu", self.cpu, 0.0, None, low_open=True)
        check_range("resources.gpu", self.gpu, 0.0, None)
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise UserError(
                f"resources.workers={self.workers!r} is not valid; give a whole number >= 1"
            )


@dataclass
class Search:
    """Optuna TPE: sampler seed and how many random trials come before the model-based ones."""

    sampler_seed: int = 0
    startup_trials: int = 10
    trial_seed: int = (
        0  # the training seed of every search trial; the seeds phase uses 1..budget.seeds
    )

    def __post_init__(self) -> None:
        check_range("search.startup_trials", self.startup_trials, 1, None)


@dataclass
class Report:
    """Equal-time scoring and the verdict (docs/phases.md, docs/verdict.md): the validation
    target of time-to-target, the test level and the equivalence margin."""

    target_val_acc: float | dict[str, float] | None = (
        None  # all models, or a table per model; unset: the default
    )
    # default target, per model, fixed before the equal-time phase: standard's best search-phase
    # val_acc minus this
    target_tolerance: float = 0.01
    alpha: float = 0.05  # family-wise error rate of each verdict family (Holm within a family)
    margin: float = 1.0  # points of accuracy: a smaller difference counts as equivalent (TOST)

    def __post_init__(self) -> None:
        targets = (
            self.target_val_acc
            if isinstance(self.target_val_acc, dict)
            else {"": self.target_val_acc}
        )
        for model, value in targets.items():
            if value is not None:
                check_range(
                    "report.target_val_acc" + (f".{model}" if model else ""),
                    value,
                    0.0,
                    1.0,
                    low_open=True,
                )
        check_range("report.target_tolerance", self.target_tolerance, 0.0, 1.0, high_open=True)
        check_range("report.alpha", self.alpha, 0.0, 1.0, low_open=True, high_open=True)
        check_range("report.margin", self.margin, 0.0, 100.0, low_open=True, high_open=True)

    def targets(self, models: list[str]) -> dict[str, float]:
        """The targets the spec sets, per model (models without one get the default in the
        report)."""
        if isinstance(self.target_val_acc, dict):
            return {m: float(v) for m, v in self.target_val_acc.items() if m in models}
        return (
            {} if self.target_val_acc is None else {m: float(self.target_val_acc) for m in models}
        )


@dataclass
class StudySpec:
    """One study: every (model, method) arm is searched, then its best config is rerun with
    `seeds` seeds."""

    name: str
    dataset: str = "digits"
    models: list[str] = field(default_factory=lambda: ["seed_cnn"])
    methods: list[str] = field(default_factory=lambda: ["standard", "layer_to_layer", "greedy"])
    budget: Budget = field(default_factory=Budget)
    resources: Resources = field(default_factory=Resources)
    search: Search = field(default_factory=Search)
    report: Report = field(default_factory=Report)
    fixed: dict[str, Any] = field(
        default_factory=dict
    )  # TrainConfig fields; a table per method for its params
    source: str = ""  # the spec file's text (logged with the study)

    def __post_init__(self) -> None:
        from trainables.data import DATASETS
        from trainables.methods import METHOD_NAMES
        from trainables.models import MODELS

        if not self.name or not isinstance(self.name, str):
            raise UserError(
                f"name={self.name!r} must be a non-empty string (it names the MLflow experiment)"
            )
        check_choice("dataset", self.dataset, DATASETS)
        for key, values, valid in (
            ("models", self.models, sorted(MODELS)),
            ("methods", self.methods, METHOD_NAMES),
        ):
            if not isinstance(values, list) or not values:
                raise UserError(
                    f"{key}={values!r} must be a non-empty list; valid entries: {', '.join(valid)}"
                )
            for value in values:
                check_choice(key, method_of(value) if key == "methods" else value, valid)
        check_labels(self.methods)
        for key, value in self.fixed.items():
            if key in METHOD_NAMES:
                if not isinstance(value, dict):
                    raise UserError(
                        f"fixed.{key} must be a table of {key}'s parameters, got {value!r}"
                    )
                shared = [knob for knob in ARM_WIDE if knob in value]
                if shared:
                    raise UserError(
                        f"fixed.{key}.{shared[0]} pins a shared knob for one arm only; every arm "
                        f"searches it alike: pin it for all arms as fixed.{shared[0]} "
                        f"(shared: {', '.join(ARM_WIDE)})"
                    )
            elif key not in TrainConfig.field_names() or key in CONTROLLED:
                valid = sorted((TrainConfig.field_names() - set(CONTROLLED)) | set(METHOD_NAMES))
                raise UserError(f"unknown key fixed.{key}; valid keys: {', '.join(valid)}")
        if isinstance(self.report.target_val_acc, dict):
            for model in self.report.target_val_acc:
                check_choice("report.target_val_acc.<model>", model, self.models)
        for arm in self.arms:
            self.train_config(arm.model, arm.method)  # names, ranges and method params, per arm

    @property
    def arms(self) -> list[Arm]:
        """Every (model, label) pair, in run order."""
        return [Arm(model, label) for model in self.models for label in self.methods]

    def searches(self) -> list[tuple[Arm, int]]:
        """Every (arm, study index) pair: one search each, whose best config gets its seeds."""
        return [(arm, study) for arm in self.arms for study in range(self.budget.studies)]

    def search_name(self, arm: Arm, study: int) -> str:
        """The search's name: the arm's slug (+ `-study<k>`); its Tune experiment and state
        record are `<name>-search`."""
        return arm.slug + (f"-study{study}" if self.budget.studies > 1 else "")

    def search_label(self, arm: Arm, study: int) -> str:
        """The search in console lines: the arm's name (+ ` study <k>` when K > 1)."""
        return arm.name + (f" study {study}" if self.budget.studies > 1 else "")

    def stream(self, arm: Arm, study: int) -> int:
        """The arm's independent random stream in `study`: the position of its label among the
        spec's labels of the same method, times budget.studies, plus the study index. 0 for a
        method's first label in study 0, so a plain study keeps today's seeds."""
        same = [label for label in self.methods if method_of(label) == arm.method]
        return same.index(arm.label) * self.budget.studies + study

    def sampler_seed(self, arm: Arm, study: int) -> int:
        """The TPE sampler seed of the arm's search in `study`: search.sampler_seed + its stream."""
        return self.search.sampler_seed + self.stream(arm, study)

    def search_seed(self, arm: Arm, study: int) -> int:
        """The training seed of the arm's search trials in `study` (stream 0: trial_seed)."""
        return self.search.trial_seed + SEED_STRIDE * self.stream(arm, study)

    def pair(self, study: int, index: int) -> str:
        """The key that pairs timed runs across arms: the seed index, `<study>:<index>` if K > 1."""
        return f"{study}:{index}" if self.budget.studies > 1 else str(index)

    def seed_number(self, arm: Arm, study: int, index: int) -> int:
        """The training seed of the arm's `index`-th (from 1) seeds-phase run in `study`: runs pair
        across arms by (study, index); a control arm's stream gives it seed numbers of its own."""
        return SEED_STRIDE * self.stream(arm, study) + index

    def stops_early(self, method: str) -> bool:
        """Whether ASHA may stop `method`'s search trials early (EARLY_STOPPING_METHODS, unless
        turned off)."""
        return self.budget.early_stopping and method in EARLY_STOPPING_METHODS

    def pinned(self, method: str) -> dict[str, Any]:
        """The `fixed` values that apply to `method`: shared fields and its own parameter table."""
        from trainables.methods import METHOD_NAMES

        shared = {k: v for k, v in self.fixed.items() if k not in METHOD_NAMES}
        return {**shared, **self.fixed.get(method, {})}

    def train_config(self, model: str, method: str, seed: int | None = None) -> TrainConfig:
        """The arm's base config (before search): checked like a trial's config would be."""
        from trainables.training import validate

        flat = {
            **self.pinned(method),
            "model": model,
            "method": method,
            "dataset": self.dataset,
            "epochs": self.budget.epochs,
            "budget_unit": self.budget.unit,
            "seed": self.search.trial_seed if seed is None else seed,
        }
        config = TrainConfig.from_flat(flat)
        validate(config)
        return config

    def to_dict(self) -> dict[str, Any]:
        """Everything that defines the study's results (not the source text)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "source"}


def check_labels(labels: list[str]) -> None:
    """Every arm label once; a control arm's `<method>:<name>` with a name of [A-Za-z0-9_-]."""
    for label in labels:
        name = label.partition(LABEL_SEPARATOR)[2]
        if LABEL_SEPARATOR in label and not _CONTROL_NAME.fullmatch(name):
            raise UserError(
                f"methods={label!r} is not a valid control arm label; write <method>:<name> "
                "with a name of letters, digits, _ or -, e.g. 'standard:control'"
            )
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UserError(
            f"methods lists {repeated[0]!r} more than once; give a second arm of a method its "
            f"own label, e.g. '{repeated[0]}:control'"
        )


_SECTIONS = {"budget": Budget, "resources": Resources, "search": Search, "report": Report}


def default_sections() -> dict[str, dict[str, Any]]:
    """Every section's default entries, e.g. {"budget": {"epochs": 10, ...}, ...}: what a spec
    recorded before an entry existed meant by leaving it out."""
    return {name: dataclasses.asdict(cls()) for name, cls in _SECTIONS.items()}


def add_spec_arguments(parser: argparse.ArgumentParser, set_help: str) -> None:
    """A subcommand's `--spec NAME|PATH` and repeatable `--set SECTION.KEY=VALUE` (load_spec's)."""
    parser.add_argument(
        "--spec", default="quick", help=f"a named spec ({', '.join(spec_names())}) or a .toml path"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=set_help,
    )


def spec_names() -> list[str]:
    """The named specs in study/specs/."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.toml"))


def resolve_spec_path(name_or_path: str | Path) -> Path:
    """`quick`/`paper` -> study/specs/<name>.toml; otherwise an existing TOML file."""
    text = str(name_or_path)
    if text in spec_names():
        return SPEC_DIR / f"{text}.toml"
    path = Path(text).expanduser()
    if path.suffix != ".toml" or not path.is_file():
        raise UserError(
            f"spec {text!r} is neither a named spec ({', '.join(spec_names())}) nor a .toml file"
        )
    return path


def load_spec(name_or_path: str | Path, overrides: list[str] | None = None) -> StudySpec:
    """Read a spec file, apply `section.key=value` overrides, check everything."""
    path = resolve_spec_path(name_or_path)
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(
            f"spec {path} cannot be read ({err}); give a UTF-8 TOML file you can read"
        ) from None
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"spec {path} is not valid TOML: {err}") from None
    for item in overrides or []:
        apply_override(data, item)
    return spec_from_dict(data, source)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set `a.b.c=value` in the nested dict (value parsed like `trial --set`); sections are
    created."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
    *sections, leaf = key.strip().split(".")
    node = data
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {item!r}: {section!r} is a value, not a section")
    node[leaf] = parse_value(value)


def spec_from_dict(data: dict[str, Any], source: str = "") -> StudySpec:
    """Build a StudySpec from parsed TOML; unknown keys anywhere are errors naming the valid
    keys."""
    top = {f.name for f in dataclasses.fields(StudySpec)} - {"source"}
    _reject_unknown("", data, top)
    kwargs: dict[str, Any] = {k: v for k, v in data.items() if k not in _SECTIONS}
    for section, cls in _SECTIONS.items():
        values = data.get(section, {})
        if not isinstance(values, dict):
            raise UserError(f"{section} must be a table, got {values!r}")
        _reject_unknown(f"{section}.", values, {f.name for f in dataclasses.fields(cls)})
        kwargs[section] = cls(**values)
    if "name" not in kwargs:
        raise UserError("the spec has no `name` (it names the MLflow experiment)")
    return StudySpec(**kwargs, source=source)


def _reject_unknown(prefix: str, values: dict[str, Any], valid: set[str]) -> None:
    unknown = sorted(set(values) - valid)
    if unknown:
        raise UserError(
            f"unknown spec key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(sorted(valid))}"
        )

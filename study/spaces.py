"""`python -m study spaces --spec S`: what every arm of a study will search, and the budget, before
compute is spent.

The ranges are the Optuna distributions each arm's define-by-run space really samples: the space is
run for SAMPLES random trials (no training), and a knob whose range depends on earlier samples is
shown with the union of its ranges and marked so. Shared nuisance knobs are marked `shared`.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from search_spaces import NOTES, get_search_space
from search_spaces.common import INTERNAL_PREFIX, SHARED_KNOBS
from study.equal_time import is_compared
from study.spec import Arm, Budget, StudySpec, add_spec_arguments, load_spec, method_of
from study.verdict import BASELINE

SAMPLES = 64
_PER_STAGE = re.compile(rf"^{re.escape(INTERNAL_PREFIX)}(.+)_(\d+)$")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "spaces", help="list every arm's searched knobs with their ranges, and the budget"
    )
    add_spec_arguments(p, "override a spec entry, as for sweep")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.overrides)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(describe(spec))
    return 0


def arm_distributions(
    spec: StudySpec, arm: Arm, samples: int = SAMPLES
) -> dict[str, list[BaseDistribution]]:
    """Every distinct distribution each knob of the arm's space was sampled from, over `samples`
    random trials."""
    optimizer = spec.train_config(arm.model, arm.method).optimizer
    space = get_search_space(
        arm.method,
        arm.model,
        spec.budget.epochs,
        optimizer,
        spec.pinned(arm.method),
        spec.budget.unit,
        spec.dataset,
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, list[BaseDistribution]] = defaultdict(list)
    for _ in range(samples):
        trial = study.ask()
        space(trial)
        for name, distribution in trial.distributions.items():
            if distribution not in seen[name]:
                seen[name].append(distribution)
        study.tell(trial, 0.0)
    return dict(seen)


def describe(spec: StudySpec) -> str:
    """The listing `spaces` prints: the budget, then per arm its knobs (shared first) and fixed
    values."""
    b = spec.budget
    labels = spec.methods
    stopped = [m for m in labels if spec.stops_early(method_of(m))]
    lines = [
        f"study {spec.name!r}: {spec.dataset}, {len(spec.models)} models x {len(labels)} methods = "
        f"{len(spec.arms)} arms",
        *budget_lines(b),
        "early stopping (ASHA on val_acc, grace_period {}, reduction_factor {}): {}".format(
            b.grace_period, b.reduction_factor, ", ".join(stopped) or "none"
        )
        + "".join(f"; {m}: every trial runs to the end" for m in labels if m not in stopped),
        *phase_lines(spec),
    ]
    for arm in spec.arms:
        knobs = arm_distributions(spec, arm)
        lines += ["", f"{arm.name}"]
        shared = [k for k in SHARED_KNOBS if k in knobs]
        own = [k for k in knobs if k not in SHARED_KNOBS]
        lines += [f"  shared  {k:<18} {describe_range(knobs[k])}" for k in shared]
        lines += _own_lines(own, knobs)
        pinned = spec.pinned(arm.method)
        if pinned:
            lines.append("  fixed   " + ", ".join(f"{k}={v}" for k, v in sorted(pinned.items())))
        if arm.method in NOTES:
            lines.append(f"  note    {NOTES[arm.method]}")
    return "\n".join(lines)


def budget_lines(b: Budget) -> list[str]:
    """What the budget means in its unit (budget.unit), per trial and for the search."""
    if b.unit == "flops":
        unit = "standard epochs of FLOPs"
        meaning = (
            f"budget.unit = flops: a trial's budget, budget.epochs = {b.epochs:g}, is the training "
            f"FLOPs of {b.epochs:g} epochs of standard training of the arm's model (torch's "
            "FlopCounterMode: convolutions and matmuls, forward and backward); each arm's runs "
            "derive their own whole epochs per stage from their counted FLOPs, >= 1 per stage"
        )
    else:
        unit = "trial-epochs"
        meaning = (
            f"budget.unit = epochs: a trial trains {b.epochs:g} epochs of its own method, split "
            "over its stages, whatever an epoch costs (the layer-to-layer paper's equal epochs)"
        )
    return [
        meaning,
        f"budget per arm: {b.search_epochs:g} {unit} of search (budget.search_epochs, the same for "
        f"every arm; each trial is charged what it ran), at most {b.max_trials} trials "
        f"(budget.max_trials); then the best config rerun with {b.seeds} seeds",
    ]


def phase_lines(spec: StudySpec) -> list[str]:
    """What the studies, control arms and equal-time phase add to the plan (docs/phases.md)."""
    b = spec.budget
    lines = []
    if b.studies > 1:
        lines.append(
            f"studies: {b.studies} independent searches per arm (budget.studies), each with its "
            "own sampler seed, best config and seeds phase; runs pair by (study, seed index)"
        )
    for arm in spec.arms:
        if arm.is_control and arm.model == spec.models[0]:
            first = spec.seed_number(arm, 0, 1)
            study = " in study 0" if b.studies > 1 else ""
            lines.append(
                f"control arm {arm.label}: {arm.method} searched and seeded as an arm of its own "
                f"(sampler seed {spec.sampler_seed(arm, 0)}, seeds {first}..{first + b.seeds - 1}"
                f"{study}), compared with {arm.method} in the control family"
            )
    compared = sorted({arm.label for arm in spec.arms if is_compared(arm)})
    if not b.equal_time:
        lines.append("equal-time phase: off (budget.equal_time = false)")
    elif compared:
        lines.append(
            f"equal-time phase (budget.equal_time): {', '.join(compared)} rerun over the same "
            f"seeds with epochs = {b.epochs} x T / t_arm (T: {BASELINE}'s median training time "
            "in the seeds phase, t_arm: the arm's), so each schedule runs to its end in about T; "
            "time-to-target measured there, censored at T"
        )
    return lines


def _own_lines(names: list[str], knobs: dict[str, list[BaseDistribution]]) -> list[str]:
    """The method's own knobs; its per-stage internal weights (`_w_0`, `_w_1`, ...) as one line."""
    groups: dict[str, list[str]] = {}
    for name in names:
        match = _PER_STAGE.match(name)
        groups.setdefault(f"{INTERNAL_PREFIX}{match.group(1)}_<i>" if match else name, []).append(
            name
        )
    lines = []
    for label, members in groups.items():
        distributions = [d for member in members for d in knobs[member]]
        text = describe_range(
            [d for i, d in enumerate(distributions) if d not in distributions[:i]]
        )
        if label != members[0]:
            text += f", one per stage (up to {len(members)}), normalised to sum to 1"
        lines.append(f"  own     {label:<18} {text}")
    return lines


def describe_range(distributions: list[BaseDistribution]) -> str:
    """One distribution as text; several (a range that depends on earlier samples) as their
    union, marked."""
    first = distributions[0]
    if len(distributions) > 1 and isinstance(first, (FloatDistribution, IntDistribution)):
        low, high = min(d.low for d in distributions), max(d.high for d in distributions)
        return f"{_numeric(first, low, high)} (range depends on earlier samples)"
    if isinstance(first, CategoricalDistribution):
        return "{" + ", ".join(map(str, first.choices)) + "}"
    return _numeric(first, first.low, first.high)


def _numeric(distribution: FloatDistribution | IntDistribution, low: float, high: float) -> str:
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    text = f"{kind} [{low:g}, {high:g}]"
    if distribution.log:
        text += " log"
    if distribution.step not in (None, 1):
        text += f" step {distribution.step:g}"
    return text

"""The data of the report's "at which settings" section: per arm, which searched knobs matter
and how validation accuracy moves with them, from the arms' Optuna studies (study.optuna_storage).

A knob is a searched Optuna param, except the internal weights (search_spaces.common
INTERNAL_PREFIX) that a space samples only to derive a per-stage list: their count follows the
stage count and only their ratios matter, so no single weight means anything to a reader. The list
a trial trained with (stored as a user attr) is shown as `<list>[0]`, the first stage's share of
the epochs, one number for every trial that has the list. A range conditioned on earlier samples
(split_step) is read over the union of its ranges.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from search_spaces.common import INTERNAL_PREFIX, SHARED_KNOBS
from study.optuna_storage import STORAGE_FILE, TRIAL_ID_ATTR, storage_url

RELIABLE_TRIALS = 20  # complete trials under which an importance ranking is flagged as unreliable
PED_QUANTILE = 0.1  # PED-ANOVA's target quantile (Optuna's default): what the top 10% share
PED_MIN_TOP = 2  # PED-ANOVA is computed where its top quantile holds at least this many trials
FLAT = 0.05  # fANOVA importance under which accuracy is called flat in a knob
TREND = 0.5  # |Spearman rho| from which accuracy is said to rise or fall with a knob
FANOVA_SEED = 0
FANOVA, PED_ANOVA = "fANOVA", "PED-ANOVA"
PAIR_VIEWS = {"layer_to_layer": ("split_ratio", "teacher_grad")}  # where the method's question is
FINISHED = (TrialState.COMPLETE.name, TrialState.PRUNED.name)  # trials with a val_acc to plot


@dataclass
class ArmSearch:
    """One arm's search: its trials' knobs and values, and the importance of each knob."""

    name: str  # the Optuna study: <model>/<label>[/study<k>]
    trials: pd.DataFrame  # one row per ended trial: number, state, value, one column per knob
    distributions: dict[str, BaseDistribution]  # per knob, over every trial's range
    importance: pd.DataFrame  # index: knob; columns FANOVA and PED_ANOVA (NaN: not computed)

    @property
    def arm(self) -> str:
        """`<model>/<label>`: the arm's MLflow tag."""
        return "/".join(self.name.split("/")[:2])

    @property
    def method(self) -> str:
        """The trained method (a label such as `standard:control` names its own arm)."""
        return self.name.split("/")[1].split(":")[0]

    def count(self, state: TrialState) -> int:
        return int((self.trials["state"] == state.name).sum())

    @property
    def complete(self) -> pd.DataFrame:
        return self.trials[self.trials["state"] == TrialState.COMPLETE.name]

    @property
    def reliable(self) -> bool:
        return len(self.complete) >= RELIABLE_TRIALS

    @property
    def chosen(self) -> pd.Series | None:
        """The trial whose config the seeds phase reran: the best complete one, else the best one
        stopped early (study.tune_arm.best_result)."""
        for state in FINISHED:
            rows = self.trials[self.trials["state"] == state]
            if len(rows):
                return rows.loc[rows["value"].idxmax()]
        return None

    @property
    def own_knobs(self) -> list[str]:
        """lr and the method's own knobs; every knob for a method without its own (standard)."""
        own = [knob for knob in self.distributions if knob not in SHARED_KNOBS]
        return ["lr", *own] if own else list(self.distributions)

    @property
    def pair_view(self) -> tuple[str, str] | None:
        pair = PAIR_VIEWS.get(self.method)
        return pair if pair and all(knob in self.distributions for knob in pair) else None

    @property
    def slug(self) -> str:
        """The study name in file names."""
        return self.name.replace("/", "_")

    def trend(self, knob: str) -> float | None:
        """Spearman's rho of final val_acc against a numeric knob over the complete trials."""
        rows = self.complete.dropna(subset=[knob])
        if isinstance(self.distributions[knob], CategoricalDistribution) or len(rows) < 3:
            return None
        if rows[knob].nunique() < 2 or rows["value"].nunique() < 2:
            return None
        return float(stats.spearmanr(rows[knob].astype(float), rows["value"]).statistic)


def pair_stem(pair: tuple[str, str]) -> str:
    """The start of a pair view's file name, `<knob>_x_<knob>`."""
    return "_x_".join(pair)


def load_searches(study_dir: Path) -> list[ArmSearch]:
    """Every search in `<study_dir>/optuna.db`, by study name; none without the file."""
    if not (Path(study_dir) / STORAGE_FILE).exists():
        return []
    url = storage_url(study_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return [
        arm_search(name, optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False))
        for name in sorted(optuna.get_all_study_names(storage=url))
    ]


def arm_search(name: str, trials: Sequence[FrozenTrial]) -> ArmSearch:
    """The knobs and importances of one study's ended trials."""
    ended = [trial for trial in trials if trial.state.is_finished()]
    distributions: dict[str, BaseDistribution] = {}
    rows = []
    for trial in ended:
        knobs = knob_values(trial)
        for knob in knobs:
            dist = trial.distributions.get(knob, FloatDistribution(0.0, 1.0))  # a share
            distributions[knob] = (
                _union(distributions[knob], dist) if knob in distributions else dist
            )
        rows.append(
            {"number": trial.number, "state": trial.state.name, "value": trial.value, **knobs}
        )
    frame = pd.DataFrame(rows, columns=["number", "state", "value", *distributions])
    frame["value"] = frame["value"].astype(float)
    return ArmSearch(name, frame, distributions, importances(frame, distributions))


def knob_values(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's searched params less the internal weights, and `<list>[0]` of each derived list."""
    knobs = {k: v for k, v in trial.params.items() if not k.startswith(INTERNAL_PREFIX)}
    for key, value in trial.user_attrs.items():
        if key != TRIAL_ID_ATTR and isinstance(value, list) and value:
            knobs[f"{key}[0]"] = value[0]
    return knobs


def importances(trials: pd.DataFrame, distributions: dict[str, BaseDistribution]) -> pd.DataFrame:
    """fANOVA over the knobs every complete trial has; PED-ANOVA (every knob, conditional ones too)
    where its top quantile holds PED_MIN_TOP trials. Both normalised to sum to 1. None when the
    complete trials' values do not vary (fewer than 2, or all equal): nothing to explain."""
    complete = trials[trials["state"] == TrialState.COMPLETE.name]
    columns = pd.DataFrame(columns=[FANOVA, PED_ANOVA], dtype=float)
    if complete["value"].nunique() < 2:
        return columns
    study = optuna.create_study(direction="maximize")
    for row in complete.to_dict("records"):
        params = {k: row[k] for k in distributions if _present(row[k])}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: distributions[k] for k in params},
                value=row["value"],
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's notes on small samples: the table says it
        fanova = optuna.importance.get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=FANOVA_SEED)
        )
        ped = (
            optuna.importance.get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(target_quantile=PED_QUANTILE)
            )
            if math.ceil(PED_QUANTILE * len(complete)) >= PED_MIN_TOP
            else {}
        )
    table = pd.DataFrame({FANOVA: pd.Series(fanova, dtype=float), PED_ANOVA: pd.Series(ped)})
    return table.astype(float).sort_values([FANOVA, PED_ANOVA], ascending=False)


def _present(value: Any) -> bool:
    return not (isinstance(value, float) and math.isnan(value))


def _union(a: BaseDistribution, b: BaseDistribution) -> BaseDistribution:
    """One distribution covering both (a range conditioned on earlier samples varies per trial)."""
    if a == b:
        return a
    if isinstance(a, CategoricalDistribution) and isinstance(b, CategoricalDistribution):
        return CategoricalDistribution(tuple(dict.fromkeys((*a.choices, *b.choices))))
    low, high = min(a.low, b.low), max(a.high, b.high)  # type: ignore[attr-defined]
    return type(a)(low=low, high=high, log=a.log, step=a.step)  # type: ignore[attr-defined]

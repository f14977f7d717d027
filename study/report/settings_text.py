"""The Markdown of the report's "at which settings" section: the knob-importance table and one
paragraph per method, written from the numbers of study.report.settings (prose in captions)."""

from __future__ import annotations

import math

import pandas as pd
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from study.report import captions
from study.report.frames import METHOD_ORDER
from study.report.settings import (
    FANOVA,
    FLAT,
    PED_ANOVA,
    PED_MIN_TOP,
    PED_QUANTILE,
    RELIABLE_TRIALS,
    TREND,
    ArmSearch,
    pair_stem,
)
from study.report.tables import markdown_table

MOST = 0.5  # the leading knobs named are those that together explain this share
MAX_LEADERS = 3
BEST_AT_LEAST = 2  # trials in the best quarter whose range of a knob is given


def settings_lines(searches: list[ArmSearch], storage_file: str) -> list[str]:
    """The section: the table of every arm, the figures' caption and one paragraph per method."""
    lines = [captions.SETTINGS_HEADING, ""]
    if not searches:
        return [*lines, captions.NO_SEARCHES.format(file=storage_file)]
    searches = sorted(searches, key=lambda s: (s.arm.split("/")[0], _method_rank(s.method), s.name))
    lines += [
        captions.settings_table(RELIABLE_TRIALS, PED_QUANTILE, PED_MIN_TOP, FLAT),
        "",
        *markdown_table(
            ["Arm", "Knob", FANOVA, PED_ANOVA, "Trials"],
            [row for search in searches for row in importance_rows(search)],
            right_from=2,
        ),
        "",
    ]
    pairs = sorted(
        {f"`{pair_stem(s.pair_view)}_<arm>.png` ({s.method})" for s in searches if s.pair_view}
    )
    lines += [captions.settings_figures(", ".join(pairs)), ""]
    methods = sorted({s.method for s in searches}, key=_method_rank)
    for method in methods:
        summaries = [arm_summary(s) for s in searches if s.method == method]
        lines += [f"**{method}.** " + " ".join(summaries), ""]
    return lines


def importance_rows(search: ArmSearch) -> list[list[str]]:
    """The arm's rows: one per knob, the trial count and its warning on the first."""
    trials = f"{len(search.complete)} / {len(search.trials)}"
    if not search.reliable:
        trials += f" ⚠ < {RELIABLE_TRIALS}: unreliable"
    if search.importance.empty:
        return [[search.name, "—", "—", "—", trials]]
    return [
        [search.name if i == 0 else "", knob, _share(row[FANOVA]), _share(row[PED_ANOVA])]
        + [trials if i == 0 else ""]
        for i, (knob, row) in enumerate(search.importance.iterrows())
    ]


def trials_note(search: ArmSearch) -> str:
    """The trial counts a figure's title gives."""
    return captions.trials_note(
        len(search.complete), len(search.trials), search.count(TrialState.PRUNED), RELIABLE_TRIALS
    )


def arm_summary(search: ArmSearch) -> str:
    """What the arm's search says, with the caveats its numbers call for."""
    complete, stopped = len(search.complete), search.count(TrialState.PRUNED)
    head = captions.search_counts(
        search.name, len(search.trials), complete, stopped, search.count(TrialState.FAIL)
    )
    if search.importance.empty:
        values = search.complete["value"]
        if complete > 1:  # every complete trial reached the same value
            return f"{head} {captions.nothing_varies(complete, float(values.iloc[0]))}"
        return f"{head} {captions.too_few_to_rank(complete)}"
    fanova = search.importance[FANOVA].dropna()
    sentences = [_leaders(fanova), *_top_own_knob(search, fanova)]
    one_value = [k for k in search.own_knobs if search.complete[k].nunique() == 1]
    flat = [k for k in search.own_knobs if k in fanova and fanova[k] < FLAT and k not in one_value]
    if flat:
        sentences.append(captions.flat([_with_range(search, knob) for knob in flat]))
    if one_value:
        sentences.append(
            captions.unvaried([f"{k} ({search.complete[k].dropna().iloc[0]})" for k in one_value])
        )
    ped = search.importance[PED_ANOVA].dropna()
    if len(ped) and ped.idxmax() != fanova.idxmax():
        sentences.append(captions.ped_differs(ped.idxmax(), PED_QUANTILE))
    if not search.reliable:
        sentences.append(captions.few_trials(complete, RELIABLE_TRIALS))
    if stopped:
        sentences.append(captions.stopped_apart(stopped))
    return f"{head} " + "; ".join(sentences) + "."


def _leaders(fanova: pd.Series) -> str:
    top = fanova.sort_values(ascending=False).iloc[:MAX_LEADERS]
    count = int((top.cumsum() < MOST).sum()) + 1
    if count > len(top):
        return captions.no_leader(list(top.index), float(top.sum()))
    return captions.leaders(list(top.index[:count]), list(top.iloc[:count]))


def _top_own_knob(search: ArmSearch, fanova: pd.Series) -> list[str]:
    """How accuracy moves with the method's most important own knob (lr for standard)."""
    own = fanova[[knob for knob in search.own_knobs if knob in fanova]]
    if own.empty or own.max() < FLAT:
        return []
    knob = str(own.idxmax())
    if isinstance(search.distributions[knob], CategoricalDistribution):
        means = search.complete.groupby(search.complete[knob].astype(str))["value"].mean()
        return [captions.best_choice(knob, means.to_dict())] if len(means) > 1 else []
    rho = search.trend(knob)
    if rho is None:
        return []
    count = max(BEST_AT_LEAST, math.ceil(len(search.complete) / 4))  # the best quarter
    best = search.complete.nlargest(count, "value")[knob].dropna()
    chosen = search.chosen
    return [
        captions.trend(knob, rho, TREND),
        captions.best_region(knob, best.min(), best.max(), len(best), chosen[knob]),
    ]


def _with_range(search: ArmSearch, knob: str) -> str:
    values = search.complete[knob].dropna()
    if isinstance(search.distributions[knob], CategoricalDistribution) or values.empty:
        return knob
    return f"{knob} over [{values.min():.3g}, {values.max():.3g}]"


def _share(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.2f}"


def _method_rank(method: str) -> tuple[int, str]:
    order = list(METHOD_ORDER)
    return (order.index(method) if method in order else len(order), method)

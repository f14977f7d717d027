"""Does an arm's per-epoch val_acc at ASHA's rungs rank its trials as their final val_acc does?
(docs/search.md)

Reads the search experiments of a study run without early stopping (`--set
budget.early_stopping=false`) and prints, per arm, the Spearman rank correlation between val_acc at
each rung epoch and the final val_acc, over the trials that ran to the end:
    python -m benchmarks.rung_correlation runs/rankcorr
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scipy import stats

from study.markdown import markdown_table
from study.spec import Budget


def rung_epochs(budget: Budget) -> list[int]:
    """The epochs at which ASHA compares trials: grace_period x reduction_factor^k, below the
    full budget."""
    rungs, epoch = [], budget.grace_period
    while epoch < budget.epochs:
        rungs.append(epoch)
        epoch *= budget.reduction_factor
    return rungs


def arm_correlations(experiment: Path, rungs: list[int], budget: Budget) -> tuple[int, list[str]]:
    """(trials that ran all epochs, per rung: Spearman rho of val_acc there vs the final val_acc,
    and whether the trial with the best final val_acc is in the top 1/reduction_factor at the rung,
    i.e. ASHA keeps it)."""
    from ray.tune import ExperimentAnalysis

    frames = ExperimentAnalysis(str(experiment)).trial_dataframes.values()
    full = [
        f.drop_duplicates("epoch", keep="last").set_index("epoch")["val_acc"]
        for f in frames
        if len(f) and f["epoch"].max() == budget.epochs
    ]
    finals = [series[budget.epochs] for series in full]
    best = max(range(len(full)), key=finals.__getitem__)
    cells = []
    for rung in rungs:
        at_rung = [series[rung] for series in full]
        kept = sum(value > at_rung[best] for value in at_rung) < len(full) / budget.reduction_factor
        cells.append(
            f"{stats.spearmanr(at_rung, finals).statistic:.2f} ({'kept' if kept else 'stopped'})"
        )
    return len(full), cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", type=Path)
    args = parser.parse_args()
    spec = json.loads((args.study_dir / "state" / "spec.json").read_text())
    budget = Budget(**spec["budget"])
    rungs = rung_epochs(budget)
    rows = []
    for model in spec["models"]:
        for method in spec["methods"]:
            n, cells = arm_correlations(
                args.study_dir / "tune" / f"{model}-{method}-search", rungs, budget
            )
            rows.append([f"{model}/{method}", str(n), *cells])
    header = ["arm", "n", *(f"rho at epoch {r} (final best)" for r in rungs)]
    print("\n".join(markdown_table(header, rows, right_from=1)))


if __name__ == "__main__":
    main()

"""Whether a phase of the sweep (search, seeds, equal time) produced anything to report.

A phase whose every trial failed (a diverged trial counts as failed: it has no usable result)
fails the study: `python -m study sweep` then exits 1 with one line naming the phase and the
first failure's reason, instead of writing a report with nothing in it. A phase with some failed
trials goes on; the report and the MLflow runs show which failed and why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray.tune import Result


# `package.module.SomeError: message` at the start of a line: group 1 is `SomeError: ` (a class
# name, capitalised, so that `spec.toml: ...` is not taken for one)
QUALIFIED_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)+([A-Z]\w*: )")


class StudyFailed(Exception):
    """A phase ended with no finished trial; the message is the one line the CLI prints."""


def finished(result: Result) -> bool:
    """The trial ran without error and did not diverge."""
    from trainables.trainable import DIVERGED_KEY  # torch and Ray: not before the sweep needs them

    return result.error is None and DIVERGED_KEY not in (result.metrics or {})


def failure_reason(result: Result) -> str:
    """`<model>/<method> trial <id>: <reason>`, the reason being the divergence the trial reported,
    else its error's last line."""
    from trainables.trainable import DIVERGED_KEY, flat_config

    reason = (result.metrics or {}).get(DIVERGED_KEY) or last_line(str(result.error))
    config = flat_config(result.config or {})
    trial_id = Path(result.path).name  # the sweep names trial folders by trial id
    return f"{config.get('model')}/{config.get('method')} trial {trial_id}: {reason}"


def last_line(text: str) -> str:
    """The last non-blank line of an error text (a traceback ends with the exception's message),
    the exception's module path dropped: `trainables.training.DivergedError: ...` reads
    `DivergedError: ...`, as a trial words the divergence it reports itself. (A worker group's
    error can reach Tune before the divergence its worker reported, and the report tells a diverged
    run from a failed one by that prefix.)"""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return QUALIFIED_EXCEPTION.sub(r"\1", lines[-1]) if lines else "unknown error"


def phase_failure(results: Iterable[Result]) -> str | None:
    """None when some trial of `results` finished, else the first failure's reason."""
    results = list(results)
    if any(finished(result) for result in results):
        return None
    return failure_reason(results[0]) if results else "no trial ran"


def check_phase(phase: str, failure: str | None) -> None:
    """Raise StudyFailed when `phase` ended with no finished trial (`failure`: the first failure's
    reason, from `phase_failure`)."""
    if failure is not None:
        raise StudyFailed(
            f"the {phase} phase ended with no finished trial; first failure: {failure}"
        )

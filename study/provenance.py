"""The git commit of the code that produced a result, for MLflow runs and benchmark files alike.

It asks `git` itself rather than MLflow's lookup (which needs GitPython), because the benchmarks
also run on machines that have torch and nothing else.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNKNOWN = "unknown"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The full hash of the checkout's HEAD, or 'unknown' outside a git checkout or without git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return (done.returncode == 0 and done.stdout.strip()) or UNKNOWN

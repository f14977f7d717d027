"""The one git-commit lookup that MLflow runs and benchmark files share."""

from __future__ import annotations

from mlflow.utils.git_utils import get_git_commit

from study.provenance import ROOT, git_commit


def test_git_commit_is_the_checkouts_full_hash():
    """The same commit as MLflow's own lookup (GitPython), which the benchmarks cannot use."""
    assert len(git_commit()) == 40
    assert git_commit() == get_git_commit(str(ROOT))

"""Orchestration for the l2l study: CLI, study specs, Ray Tune sweeps, MLflow tracking, reports."""

"""Integration fixtures: a real local Ray per test process and tiny study specs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from study_helpers import spec_data

from study.spec import StudySpec, spec_from_dict


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A local Ray with 2 CPUs, shared by the modules this test process runs (each start and stop
    costs about 4 CPU-s; any Ray left running is shut down first)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture
def tiny_spec() -> Callable[..., StudySpec]:
    """The tiny spec with overrides, e.g. tiny_spec(budget={"epochs": 3}, models=[...]), as a
    checked StudySpec."""
    return lambda **overrides: spec_from_dict(spec_data(**overrides))

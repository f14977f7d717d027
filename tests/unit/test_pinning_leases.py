"""trainables.pinning in one process: disjoint cores per lease, all threads pinned, released."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from trainables import pinning
from trainables.pinning import core_list, parse_core_list, pinned_cores

needs_two_cores = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and at least 2 cores",
)


def thread_cores(tid: int) -> list[int]:
    status = Path(f"/proc/self/task/{tid}/status").read_text().splitlines()
    line = next(x for x in status if x.startswith("Cpus_allowed_list"))
    return parse_core_list(line.split(":", 1)[1])


def test_core_lists_round_trip():
    assert core_list((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    assert parse_core_list("0-2,5,7-8\n") == [0, 1, 2, 5, 7, 8]
    assert core_list(()) == "" and parse_core_list("") == []


def test_fractional_or_gpu_trials_are_not_pinned():
    for cpus, gpus in ((0.5, 0.0), (1.0, 1.0)):
        with pinned_cores(cpus, gpus, uuid.uuid4().hex) as pinned:
            assert (pinned.cores, pinned.threads, pinned.mode) == ((), 1, "none")


@needs_two_cores
def test_a_lease_pins_every_thread_and_a_second_one_gets_other_cores():
    node = uuid.uuid4().hex
    home = sorted(os.sched_getaffinity(0))
    ready, done = threading.Event(), threading.Event()
    helper = threading.Thread(target=lambda: (ready.set(), done.wait()), daemon=True)
    helper.start()  # started before the lease: it must be pinned too
    ready.wait()
    try:
        with pinned_cores(1, 0, node) as first:
            assert len(first.cores) == 1 and first.threads == 1
            assert thread_cores(helper.native_id) == list(first.cores)
            assert thread_cores(threading.get_native_id()) == list(first.cores)
            with pinned_cores(1, 0, node) as second:  # another trial of the node (its own lock)
                assert len(second.cores) == 1 and set(second.cores).isdisjoint(first.cores)
                assert second.metrics() == {
                    "pinning": "exclusive",
                    "cpu_cores": str(second.cores[0]),
                }
        assert thread_cores(helper.native_id) == home  # released: the node's cores again
        with pinned_cores(2, 0, node) as both:  # both leases ended: their cores are free
            assert list(both.cores) == home[:2] or len(home) > 2
    finally:
        done.set()


@needs_two_cores
def test_no_free_cores_runs_unpinned_on_the_whole_node(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(pinning, "WAIT_S", 0.2)
    node = uuid.uuid4().hex
    home = sorted(os.sched_getaffinity(0))
    with pinned_cores(len(home), 0, node) as everything:
        assert sorted(everything.cores) == home
        with pinned_cores(1, 0, node) as late:
            assert late.mode == "none" and late.threads == 1
            assert thread_cores(threading.get_native_id()) == home

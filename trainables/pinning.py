"""Disjoint CPU cores for the trials that share a node: time measured on a core of its own.

Ray reserves CPU counts, not core IDs, so the project picks the cores itself. A trial that reserved
n >= 1 whole CPUs (and no GPU) takes n cores of its node by holding an exclusive `flock` on one
lock file per core, in a folder named after the Ray node (so two nodes, or two Ray instances on one
machine, never wait on each other). The kernel drops the locks when the process exits, so a crashed
or killed trial (Tune retries it, maybe on another actor) never leaves a core taken; a trial that
ends or is stopped releases them in `pinned_cores`' exit, before Tune starts the next trial on the
actor. Then every thread of the process (`/proc/self/task`: Ray's, the system-metrics sampler and
torch's pools, not only the caller as `os.sched_setaffinity(0)` would) is pinned to those cores,
and torch gets one thread per core. The node's cores are those of the process that started the
trial's worker (the raylet), since a reused actor's own mask is the previous trial's.

Cores are handed out first-free in an order that takes one hardware thread of every physical core
before any SMT sibling. When no free set turns up within WAIT_S (only when a node declares more
CPUs than it has cores), the trial runs unpinned and says so (`pinning` = "none").
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

WAIT_S = (
    5.0  # how long a trial waits for free cores (a stopped trial's process may still be exiting)
)
POLL_S = 0.05
LOCK_ROOT = "l2l-study-cores"  # under the temporary folder, one subfolder per Ray node
EXCLUSIVE, NONE = "exclusive", "none"


@dataclass
class Pinning:
    """The cores a trial's process runs on (empty: not pinned) and its torch thread count."""

    threads: int
    cores: tuple[int, ...] = ()

    @property
    def mode(self) -> str:
        """`exclusive` (cores of its own, every thread pinned) or `none`."""
        return EXCLUSIVE if self.cores else NONE

    def metrics(self) -> dict[str, str]:
        """What the trial records (final metrics; text values become MLflow tags)."""
        return {"pinning": self.mode, "cpu_cores": core_list(self.cores)}


@contextlib.contextmanager
def pinned_cores(cpus: float, gpus: float, node: str) -> Iterator[Pinning]:
    """Pin this process to `int(cpus)` cores of Ray node `node` that no other trial holds (a block).

    Not pinned (threads = max(1, int(cpus))): GPU trials, fractional CPU reservations (they share
    cores by design), platforms without `sched_setaffinity`, or no free cores within WAIT_S.
    """
    wanted = max(1, int(cpus))
    pinning = Pinning(threads=wanted)
    if gpus > 0 or cpus < 1 or not hasattr(os, "sched_setaffinity"):
        yield pinning
        return
    home = node_cores()
    locks, cores = _acquire(lock_folder(node), preference_order(home), wanted)
    try:
        pin_threads(cores or home)  # unpinned: the whole node, whatever a reused actor had before
        pinning.cores = cores
        if not cores:
            log.warning(
                "no %d free core(s) among %s within %g s: this trial runs unpinned",
                wanted,
                core_list(home),
                WAIT_S,
            )
        yield pinning
    finally:
        if cores:
            pin_threads(home)  # an idle reused actor leaves the cores to the next trial
        for fd in locks:
            os.close(fd)  # closing the file drops its flock


def node_cores() -> tuple[int, ...]:
    """The cores this node lends its trials: the parent's (raylet's) affinity, else this one's."""
    try:
        return tuple(sorted(os.sched_getaffinity(os.getppid())))
    except OSError:
        return tuple(sorted(os.sched_getaffinity(0)))


def preference_order(cores: tuple[int, ...]) -> list[int]:
    """`cores` with the first hardware thread of every physical core before the SMT siblings."""
    return sorted(cores, key=lambda core: (_sibling_rank(core), core))


def _sibling_rank(core: int) -> int:
    path = Path(f"/sys/devices/system/cpu/cpu{core}/topology/thread_siblings_list")
    try:
        return parse_core_list(path.read_text()).index(core)
    except (OSError, ValueError):
        return 0


def lock_folder(node: str) -> Path:
    folder = Path(tempfile.gettempdir()) / f"{LOCK_ROOT}-{os.getuid()}" / node
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _acquire(folder: Path, order: list[int], wanted: int) -> tuple[list[int], tuple[int, ...]]:
    """Lock `wanted` cores (first free in `order`), retrying until WAIT_S; ([], ()) if never."""
    import fcntl  # Unix only, like sched_setaffinity

    if wanted > len(order):
        return [], ()
    deadline = time.monotonic() + WAIT_S
    while True:
        held: list[tuple[int, int]] = []
        for core in order:
            fd = os.open(folder / f"core-{core}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held.append((core, fd))
            if len(held) == wanted:
                return [fd for _, fd in held], tuple(sorted(core for core, _ in held))
        for _, fd in held:
            os.close(fd)
        if time.monotonic() >= deadline:
            return [], ()
        time.sleep(POLL_S)


def pin_threads(cores: tuple[int, ...]) -> None:
    """Pin every thread of this process to `cores` (threads started meanwhile too)."""
    done: set[int] = set()
    while True:
        tids = {int(tid) for tid in os.listdir("/proc/self/task")} - done
        if not tids:
            return
        for tid in tids:
            with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
                os.sched_setaffinity(tid, cores)
        done |= tids


def parse_core_list(text: str) -> list[int]:
    """'0-2,5' -> [0, 1, 2, 5] (the kernel's cpu list format)."""
    cores: list[int] = []
    for part in text.strip().split(","):
        if part:
            low, _, high = part.partition("-")
            cores += range(int(low), int(high or low) + 1)
    return cores


def core_list(cores: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> '0-2,5'; () -> ''."""
    runs = [
        [core for _, core in run]
        for _, run in itertools.groupby(enumerate(sorted(cores)), lambda p: p[1] - p[0])
    ]
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)

"""The sweep's log file: what Ray logs in the driver goes to `<study-dir>/logs/sweep.log`.

The console shows one line per trial (study.tune_callbacks.ProgressCallback), a failed trial's
with its reason. Ray Tune also logs every failed trial with its whole traceback, about 40 lines,
and at the end of an experiment a line naming its failed trials: those records go to the log
file only (with `-v`, to the console as well), like Ray's start-up notice about token
authentication on the local Ray the sweep starts. Everything else keeps its
place on the console and is also written to the file. Worker-group trials print their own lines
at the driver's log level (trainables.trainable.WorkerGroup).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_FILE = Path("logs") / "sweep.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TUNE_CONTROLLER = "ray.tune.execution.tune_controller"  # logs each failed trial's traceback
TUNE_SUMMARY = ("ray.tune.tune", "Trials did not complete")  # the experiment's failed trials
FILE_ONLY = ("ray._private.authentication",)  # logger prefixes kept off the console


class OffTheConsole(logging.Filter):
    """Lets through what the console should show: not Tune's trial tracebacks and failed-trial
    summary (the console has a line per trial), not FILE_ONLY."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == TUNE_CONTROLLER and record.exc_info:
            return False
        if record.name == TUNE_SUMMARY[0] and record.getMessage().startswith(TUNE_SUMMARY[1]):
            return False
        return not record.name.startswith(FILE_ONLY)


@contextmanager
def study_log(study_dir: Path, verbose: bool = False) -> Iterator[Path]:
    """While it is open, the driver's log records (Ray's and this project's) are also written to the
    study's log file, and Ray's console handler leaves out what OffTheConsole holds back (unless
    `verbose`). Yields the file's path."""
    import ray  # noqa: F401  (importing Ray sets up the "ray" logger's console handler)

    path = Path(study_dir) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter(FORMAT))
    ray_logger = logging.getLogger("ray")  # it does not propagate: it needs a handler of its own
    consoles = [] if verbose else list(ray_logger.handlers)
    off = OffTheConsole()
    for handler in consoles:
        handler.addFilter(off)
    for logger in (ray_logger, logging.getLogger()):
        logger.addHandler(to_file)
    try:
        yield path
    finally:
        for logger in (ray_logger, logging.getLogger()):
            logger.removeHandler(to_file)
        for handler in consoles:
            handler.removeFilter(off)
        to_file.close()

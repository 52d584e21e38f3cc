"""More processes on one day's cycle, to use every core (`monitor run --workers`, `daemon.workers`).

The engine is pure and each process claims its own batches of the day's due enrollments
(services/runs.py), so parallel evaluation needs no new mechanism: the helpers are `monitor run`
processes for the same day and settings, sharing the day's `job_run` row with the process that
started them. Each enrollment is still evaluated once, whoever takes it; the last process to find
nothing due closes the day. A helper that dies leaves its batch to the others when its claim
lapses, as a daemon's would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import FrameType

from monitor import logs

#: Fewer due enrollments than this are not worth starting a process for (a process takes about a
#: second to start; the cycle evaluates a few hundred enrollments a second on one core).
WORTH_A_PROCESS = 1000


def how_many(asked: int, due: int, batch: int) -> int:
    """Processes for a cycle with `due` enrollments: `asked`, or (0) one per CPU core when the work
    is worth it; never more than there are batches."""
    wanted = asked or min(os.cpu_count() or 1, due // WORTH_A_PROCESS)
    return max(1, min(wanted, -(-due // batch)))


class Stop:
    """A process asked to stop (SIGTERM, SIGINT) finishes the batch in hand; its helpers are asked
    too (SIGTERM), so every claim is released within seconds rather than left to lapse."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.helpers: list[subprocess.Popen[bytes]] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[Stop]:
        """This process's SIGTERM and SIGINT handler while the cycle runs (the main thread's only)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        before = {sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)

    def on_signal(self, _signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        self.event.set()
        for p in self.helpers:
            if p.poll() is None:
                p.terminate()

    def asked(self) -> bool:
        return self.event.is_set()


def helper_argv(today: date, config: Path | None) -> list[str]:
    """A helper's command: `monitor run` for the day, one process, logging as this one does."""
    how = ["--log-format", logs.configured[0], "--log-level", logs.configured[1]] if logs.configured else []
    return [sys.executable, "-m", "monitor", *(["--config", str(config)] if config else []),
            "run", "--date", today.isoformat(), "--workers", "1", *how]


@contextlib.contextmanager
def helpers(count: int, today: date, *, config: Path | None, stop: Stop) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` more processes working on `today`'s cycle while the caller works on it too; waited
    for on leaving (asked to stop if the caller fails or is stopped)."""
    stop.helpers = [subprocess.Popen(helper_argv(today, config), stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
                    for _ in range(count)]
    try:
        yield stop.helpers
    except BaseException:
        stop.on_signal()
        raise
    finally:
        for p in stop.helpers:
            p.wait()
        stop.helpers = []

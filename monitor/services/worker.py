"""Run a generator in a worker process and take its items here, in order, as they come.

For CPU-bound reading that can overlap with database writes here. The worker is a fresh Python
(`python -c ...`, never a fork of this process, which holds database connections, and not
multiprocessing's spawn, which re-runs the caller's main script). Items come back as pickles
over a pipe whose buffer is the only queue, so memory stays flat; an error in the worker is
raised here, as the same exception where it can be pickled.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
ENTRY = "from monitor.services.worker import serve; serve()"


def in_worker(produce: Callable[[], Iterable[T]]) -> Iterator[T]:
    """The items of `produce()`, computed in a worker process. `produce` and the items must pickle.

    Raises:
        Exception: what `produce` raised in the worker (RuntimeError if it cannot be pickled, or if
            the worker died without a word).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # import what we import
    process = subprocess.Popen([sys.executable, "-c", ENTRY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env=env)
    assert process.stdin is not None and process.stdout is not None
    try:
        pickle.dump(produce, process.stdin)
        process.stdin.close()
        while True:
            try:
                kind, item = pickle.load(process.stdout)
            except EOFError:
                raise RuntimeError(f"the worker process stopped unexpectedly (exit code {process.wait()})") from None
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:  # also when the consumer stops early or fails: never leave the worker behind
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def serve() -> None:
    """The worker's side: read the producer from stdin, write (kind, item) pickles to stdout."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the stream
    produce = pickle.load(sys.stdin.buffer)
    try:
        for item in produce():
            pickle.dump(("item", item), out, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        try:
            pickle.dumps(e)
        except Exception:
            e = RuntimeError(f"{type(e).__name__}: {e}")
        pickle.dump(("error", e), out)
    else:
        pickle.dump(("done", None), out)
    out.close()

"""Run a generator in a worker process and take its items here, in order, as they come.

For CPU-bound reading that can overlap with database writes here. The worker is a fresh Python
(`python -c ...`, never a fork of this process, which holds database connections, and not
multiprocessing's spawn, which re-runs the caller's main script). Items come back as pickles
over a pipe, one at a time: the worker works on the next item while this process takes the last
one, and no further ahead, so memory stays flat; an error in the worker is
raised here, as the same exception where it can be pickled.
"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

T = TypeVar("T")
ENTRY = "from monitor.ingest.worker import serve; serve()"


@contextmanager
def fewer_collections(young: int = 100_000) -> Iterator[None]:
    """Collect garbage less often while batches of records are built and stored.

    A batch is ~10^5 container objects alive until it is stored. With Python's default (a
    collection every 700 new containers) the collector ran hundreds of times a batch, each older-
    generation pass walking everything alive: a quarter of the time of storing a CSV file and
    half of preparing it (bench/ingest.py). Reference cycles are still collected, only later.
    """
    before = gc.get_threshold()
    gc.set_threshold(young, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


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
            frame = _read_frame(process.stdout)
            if frame is None:
                raise RuntimeError(f"the worker process stopped unexpectedly (exit code {process.wait()})")
            kind, item = pickle.loads(frame)
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
    """The worker's side: read the producer from stdin, write (kind, item) frames to stdout."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the stream
    produce = pickle.load(sys.stdin.buffer)
    try:
        with fewer_collections():
            for item in produce():
                _write_frame(out, ("item", item))
    except Exception as e:
        try:
            pickle.dumps(e)
        except Exception:
            e = RuntimeError(f"{type(e).__name__}: {e}")
        _write_frame(out, ("error", e))
    else:
        _write_frame(out, ("done", None))
    out.close()


def _write_frame(out: IO[bytes], message: tuple[str, Any]) -> None:
    """One message as its length and its whole pickle. Pickled before it is written: pickling
    straight into the pipe made the two processes take turns, 64 KiB at a time."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(len(data).to_bytes(8, "little"))
    out.write(data)
    out.flush()


def _read_frame(stream: IO[bytes]) -> bytes | None:
    """The next message's pickle, or None at the end of the stream (also mid-message: the worker died)."""
    head = stream.read(8)
    if len(head) < 8:
        return None
    size = int.from_bytes(head, "little")
    data = stream.read(size)
    return data if len(data) == size else None

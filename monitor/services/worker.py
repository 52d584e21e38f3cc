"""Run a generator in a worker process and take its items here, in order, as they come.

For CPU-bound reading that can overlap with database writes here: the worker is spawned (never
forked: this process holds database connections), a bounded queue keeps memory flat, and an
error in the worker is raised here, as the same exception where it can be pickled.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
POLL_SECONDS = 1.0


def in_worker(produce: Callable[[], Iterable[T]], *, depth: int = 4) -> Iterator[T]:
    """The items of `produce()`, computed in a worker process. `produce` and the items must pickle.

    Raises:
        Exception: what `produce` raised in the worker (RuntimeError if it cannot be pickled, or if
            the worker died without a word).
    """
    mp = multiprocessing.get_context("spawn")
    channel: Any = mp.Queue(maxsize=depth)
    process = mp.Process(target=_work, args=(produce, channel), name="monitor-worker", daemon=True)
    process.start()
    try:
        while True:
            try:
                kind, item = channel.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not process.is_alive():
                    raise RuntimeError(f"the worker process stopped unexpectedly (exit code {process.exitcode})") \
                        from None
                continue
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:  # also when the consumer stops early or fails: never leave the worker behind
        if process.is_alive():
            process.terminate()
        process.join()
        channel.close()


def _work(produce: Callable[[], Iterable[Any]], channel: Any) -> None:
    try:
        for item in produce():
            channel.put(("item", item))
    except Exception as e:
        try:
            pickle.dumps(e)
        except Exception:
            e = RuntimeError(f"{type(e).__name__}: {e}")
        channel.put(("error", e))
        return
    channel.put(("done", None))

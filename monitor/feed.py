"""The MLLP feed of a clinic: the listener (ingest/mllp.py) bound to its database and protocols,
for `monitor mllp` and inside `monitor daemon`."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from monitor.app import App
from monitor.domain.errors import UserError
from monitor.ingest.mllp import Listener
from monitor.services.inbound import receive_messages, reconcile
from monitor.services.prepare import Context

log = logging.getLogger(__name__)


class Feed:
    """Stores, ingests and ACKs messages a group at a time (`store`, called on a worker thread)."""

    def __init__(self, a: App) -> None:
        self.app = a
        self.base = a.ingest_context()  # code mappings and critical screens, worked out once for every message

    def reload(self) -> None:
        """Use the app's protocols as they are now (after the daemon reloaded them)."""
        self.base = self.app.ingest_context()

    def context(self) -> Context:
        return replace(self.base, now=self.app.now())

    def reconcile(self) -> int:
        """Process the messages an earlier run stored but did not finish; how many."""
        with self.app.session() as s:
            return reconcile(s, ctx=self.context(), channel="mllp")

    def store(self, texts: list[str]) -> list[str]:
        with self.app.session() as s:
            return receive_messages(s, texts, ctx=self.context(), channel="mllp")

    def listener(self) -> Listener:
        return Listener(self.store, now=self.app.now, charset=self.app.settings.ingest.hl7_encoding)


async def listen(feed: Feed, host: str, port: int, *, reuse_port: bool = False) -> tuple[Listener, int]:
    """A listener serving `feed` on host:port, and the port it is bound to (UserError if it cannot)."""
    listener = feed.listener()
    try:
        return listener, await listener.start(host, port, reuse_port=reuse_port)
    except OSError as e:
        raise UserError(f"cannot listen for MLLP on {host}:{port}: {e.strerror}") from None


class Background:
    """The listener on its own thread and event loop, so a long daily cycle never delays an ACK."""

    def __init__(self, feed: Feed, host: str, port: int) -> None:
        self.feed, self.host, self.port = feed, host, port
        self.loop = asyncio.new_event_loop()
        self.stopping: asyncio.Event | None = None
        self.bound: int | None = None
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mllp", daemon=True)

    def start(self) -> int:
        """Listen (every daemon on a host may share the port: the kernel spreads connections); the
        port bound. UserError when it cannot listen."""
        self.thread.start()
        self.ready.wait()
        if self.error is not None:
            raise self.error
        assert self.bound is not None
        return self.bound

    def stop(self, timeout: float = 10) -> None:
        if self.stopping is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(timeout)

    def _run(self) -> None:
        self.loop.run_until_complete(self._serve())
        self.loop.close()

    async def _serve(self) -> None:
        try:
            listener, self.bound = await listen(self.feed, self.host, self.port, reuse_port=True)
        except BaseException as e:
            self.error = e
            self.ready.set()
            return
        self.stopping = asyncio.Event()
        self.ready.set()
        await self.stopping.wait()
        await listener.close()


def serve_forever(feed: Feed, host: str, port: int, *, started: Callable[[int], None],
                  stop_on: Callable[[asyncio.AbstractEventLoop, asyncio.Event], None]) -> None:
    """`monitor mllp`: serve on this thread until `stop_on` (which wires signals) sets the event."""

    async def serve() -> None:
        listener, bound = await listen(feed, host, port)
        stop = asyncio.Event()
        stop_on(asyncio.get_running_loop(), stop)
        started(bound)
        await stop.wait()
        await listener.close()

    asyncio.run(serve())

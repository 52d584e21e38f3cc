"""MLLP (Minimal Lower Layer Protocol) framing and an asyncio listener for HL7 v2.

A frame is <VT> message <FS><CR>. Each complete frame is handed to `handle` (run in a worker
thread, one at a time per connection, so messages are stored in the order they arrived) and
its return value is sent back framed as the acknowledgement. Bytes of an unfinished frame are
discarded when the peer disconnects: nothing partial is ever handed on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"
MAX_FRAME = 16 * 1024 * 1024  # a frame larger than this is refused, not buffered for ever


def frame(text: str) -> bytes:
    return START + text.encode("utf-8") + END


def decode(payload: bytes) -> str:
    """HL7 v2 is ASCII by default; senders use UTF-8 or Latin-1 for names."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1")


def _fields(text: str) -> list[str]:
    msh = text.lstrip("\ufeff\r\n").split("\r", 1)[0].split("\n", 1)[0]
    if not msh.startswith("MSH") or len(msh) < 4:
        return []
    return [msh[:3], *msh[4:].split(msh[3])]  # MSH-1 is the separator itself: fields[i] is MSH-(i+1)


def control_id(text: str) -> str | None:
    f = _fields(text)
    return f[9] if len(f) > 9 and f[9] else None


def ack(text: str, code: str, reason: str = "", *, now: datetime) -> str:
    """An ACK for `text` built from its MSH alone, so even a broken message gets one."""
    f = _fields(text)
    sep = text.lstrip("\ufeff\r\n")[3] if f else "|"
    enc = f[1][:4] if len(f) > 1 and f[1] else "^~\\&"

    def at(i: int) -> str:
        return f[i] if len(f) > i else ""

    stamp = now.strftime("%Y%m%d%H%M%S%z")
    msh = sep.join(["MSH", enc, at(4), at(5), at(2), at(3), stamp, "", "ACK", f"ACK{stamp}", at(10) or "P",
                    at(11) or "2.5.1"])
    text_reason = reason.replace(sep, " ").replace("\r", " ")[:200]
    msa = sep.join(["MSA", code, at(9), text_reason])
    return f"{msh}\r{msa}\r"


class Listener:
    """`await Listener(handle).start(host, port)`; `handle(text) -> ack text` may block."""

    def __init__(self, handle: Callable[[str], str]) -> None:
        self.handle = handle
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._client, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        try:
            while chunk := await reader.read(65536):
                buffer += chunk
                while (start := buffer.find(START)) >= 0 and (end := buffer.find(END, start)) >= 0:
                    payload = bytes(buffer[start + 1:end])
                    del buffer[:end + 2]
                    reply = await asyncio.to_thread(self.handle, decode(payload))
                    writer.write(frame(reply))
                    await writer.drain()
                if buffer.find(START) < 0:
                    buffer.clear()  # bytes outside any frame carry no message
                if len(buffer) > MAX_FRAME:
                    log.warning("MLLP frame over %s bytes refused; closing the connection", MAX_FRAME)
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if buffer:
                log.info("MLLP connection closed with %s bytes of an unfinished frame discarded", len(buffer))
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

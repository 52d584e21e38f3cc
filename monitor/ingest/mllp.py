"""MLLP (Minimal Lower Layer Protocol) framing and an asyncio listener for HL7 v2.

A frame is <VT> message <FS><CR>. Complete frames, from every connection, are handed to `store`
a group at a time (run in a worker thread, one group at a time, each connection's messages in the
order they arrived); its return values are sent back framed as the acknowledgements, each
connection's in the order of its frames. Bytes of an unfinished frame are discarded when the peer
disconnects: nothing partial is ever handed on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from monitor.ingest.hl7_reader import codec_for

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"
MAX_FRAME = 16 * 1024 * 1024  # a frame larger than this is refused, not buffered for ever


def frame(text: str) -> bytes:
    return START + text.encode("utf-8") + END


def decode(payload: bytes, charset: str = "UNICODE UTF-8") -> str:
    """A message as text in the character set its MSH-18 names, else `charset` (the setting
    ingest.hl7_encoding), as the HL7 file reader reads it. A byte that is not text in it is kept as
    a lone surrogate (`surrogateescape`), so the reader quarantines the record that holds it and
    the raw message is still kept; a character set monitor cannot read falls back to Latin-1."""
    codec = codec_for(msh18(payload) or charset) or "latin-1"
    return payload.decode(codec, errors="surrogateescape")


def msh18(payload: bytes) -> str:
    """MSH-18 (character set) of a message's header, read as ASCII ("" when there is none)."""
    header = payload.split(b"\r", 1)[0].split(b"\n", 1)[0]
    if not header.startswith(b"MSH") or len(header) < 4:
        return ""
    fields = header.split(header[3:4])
    return fields[17].decode("ascii", errors="replace").strip() if len(fields) > 17 else ""


STANDARD = "|^~\\&"  # field separator and encoding characters of an ACK to a message without usable ones
TRIGGER = re.compile(r"[A-Z0-9]{3}")  # an HL7 trigger event (R01)
MSA_TEXT_MAX = 80  # MSA-3 is an ST of 80 characters (HL7 v2.5.1); ERR-8 carries the whole reason
ERR_TEXT_MAX = 1000
#: HL7 table 0357 (message error condition codes) for ERR-3.
SEGMENT_SEQUENCE = "100^Segment sequence error"
INTERNAL = "207^Application internal error"
NOT_STORED = "the message could not be stored (internal error); send it again later"


@dataclass(frozen=True)
class _Header:
    """A message's MSH as an ACK needs it: the separators to answer in, and its fields, each already
    written in those separators (fields[n] is MSH-n; fields[0] is "MSH")."""

    seps: str  # field separator, then component, repetition, escape and subcomponent characters
    fields: list[str]

    def at(self, number: int) -> str:
        return self.fields[number] if len(self.fields) > number else ""

    def escape(self, text: str) -> str:
        return escape(text, self.seps)


def _header(text: str) -> _Header:
    """The MSH of `text`. With broken encoding characters its fields are still split on its field
    separator, and escaped into the standard separators the ACK then uses."""
    msh = text.lstrip("\ufeff\r\n").split("\r", 1)[0].split("\n", 1)[0]
    if not msh.startswith("MSH") or len(msh) < 4:
        return _Header(STANDARD, [])
    sep = msh[3]
    raw = ["MSH", sep, *(" ".join(f.splitlines()) for f in msh[4:].split(sep))]  # no MLLP framing byte in an ACK
    seps = sep + raw[2][:4]
    if len(set(seps)) == 5 and not any(c.isalnum() or c.isspace() for c in seps):
        return _Header(seps, raw)
    return _Header(STANDARD, ["MSH", "|", STANDARD[1:], *(escape(f, STANDARD) for f in raw[3:])])


def escape(text: str, seps: str = STANDARD) -> str:
    """Text as an HL7 field value (v2.5.1 §2.7): escape, field, component, repetition and
    subcomponent characters as \\E\\ \\F\\ \\S\\ \\R\\ \\T\\ (with the message's own escape character);
    line breaks become spaces."""
    field, comp, rep, esc, sub = list(seps)
    out = text.replace(esc, f"{esc}E{esc}")
    for char, name in ((field, "F"), (comp, "S"), (rep, "R"), (sub, "T")):
        out = out.replace(char, f"{esc}{name}{esc}")
    return " ".join(out.splitlines())


def control_id(text: str) -> str | None:
    """MSH-10 as written in the message, or None."""
    return _header(text).at(10) or None


def message_type(header: _Header) -> str:
    """`ACK^<trigger>^ACK` with the trigger event of the message's MSH-9, or `ACK` without one."""
    comp = header.seps[1]
    trigger = (header.at(9).split(header.seps[2], 1)[0].split(comp) + ["", ""])[1].strip().upper()
    return comp.join(("ACK", trigger, "ACK")) if TRIGGER.fullmatch(trigger) else "ACK"


def ack(text: str, code: str, reason: str = "", *, now: datetime, error: str = INTERNAL) -> str:
    """An ACK for `text` built from its MSH alone, so even a broken message gets one. MSH-3 to 6 are
    the message's sender and receiver swapped, MSH-9 `ACK^<trigger>^ACK`, MSH-10 unique to this ACK
    (20 characters), MSH-11 and 12 the message's; MSA-2 is the message's MSH-10. An AE or AR says
    why in MSA-3 (the first 80 characters) and in an ERR segment (ERR-3 `error`, a code of HL7 table
    0357; ERR-8 the reason), escaped in the ACK's separators."""
    h = _header(text)
    sep, comp = h.seps[0], h.seps[1]
    reason = " ".join(reason.split()) or ("" if code == "AA" else "the message was not accepted")  # one line
    msh = sep.join(["MSH", h.seps[1:], h.at(5), h.at(6), h.at(3), h.at(4), now.strftime("%Y%m%d%H%M%S%z"), "",
                    message_type(h), uuid.uuid4().hex[:20].upper(), h.at(11) or "P", h.at(12) or "2.5.1"])
    segments = [msh, sep.join(["MSA", code, h.at(10), h.escape(reason[:MSA_TEXT_MAX])])]
    if code != "AA":
        segments.append(sep.join(["ERR", "", "", error.replace("^", comp) + f"{comp}HL70357", "E", "", "", "",
                                  h.escape(reason[:ERR_TEXT_MAX])]))
    return "\r".join(segments) + "\r"


#: Messages one transaction stores at most: a group's commit, and the ACKs waiting for it, stay short.
GROUP_MAX = 200
#: Frames of one connection read ahead of their ACKs; past that the connection is not read until
#: ACKs go out (a sender writing without waiting cannot fill the listener's memory).
AHEAD_MAX = 64
#: How long a group waits for messages from other connections before it is stored (seconds):
#: senders that each wait for their ACK answer at about the same time.
WINDOW = 0.002


class Listener:
    """`await Listener(store, now=...).start(host, port)`; `store(texts) -> ack texts` may block.

    Frames from every connection are stored a group at a time (`store` runs on a worker thread,
    one group at a time): those that arrive while a group is being stored are the next group, and
    while fewer are waiting than connections are open, those that arrive within `window` too.
    Each connection's ACKs go out in the order of its frames, each when its group is committed,
    while its next frames are read. Every frame is answered and the connection stays open: a
    frame too large to keep gets an AR (its bytes are dropped up to its end), and so does every
    message of a group `store` failed on (it raised). A sender that closes its side still gets the
    ACKs of the frames it sent."""

    def __init__(self, store: Callable[[list[str]], list[str]], *, now: Callable[[], datetime],
                 charset: str = "UNICODE UTF-8", window: float = WINDOW) -> None:
        self.store, self.now, self.charset, self.window = store, now, charset, window
        self.server: asyncio.Server | None = None
        self.waiting: list[tuple[str, asyncio.Future[str]]] = []  # messages for the next group
        self.arrived = asyncio.Event()
        self.storing: asyncio.Task[None] | None = None
        self.in_flight: asyncio.Future[list[str]] | None = None  # the group being stored
        self.connections = 0

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen; the port bound. `reuse_port`: other processes (daemons) may listen on it too."""
        self.server = await asyncio.start_server(self._client, host, port, reuse_port=reuse_port or None)
        self.storing = asyncio.create_task(self._store_groups())
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and storing; a group being stored is committed first (its thread runs on)."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if self.storing is not None:
            self.storing.cancel()
            try:
                await self.storing
            except asyncio.CancelledError:
                pass
        if self.in_flight is not None:
            await asyncio.wait([self.in_flight])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = Frames()
        replies: asyncio.Queue[asyncio.Future[str] | None] = asyncio.Queue(AHEAD_MAX)
        sending = asyncio.create_task(self._send(replies, writer))
        self.connections += 1
        try:
            while chunk := await reader.read(65536):
                for payload in frames.feed(chunk):
                    await replies.put(self._answer(payload))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connections -= 1
            if frames.buffer:
                log.info("MLLP connection closed with %s bytes of an unfinished frame discarded", len(frames.buffer))
            await replies.put(None)
            await sending
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    @staticmethod
    async def _send(replies: asyncio.Queue[asyncio.Future[str] | None], writer: asyncio.StreamWriter) -> None:
        """Each ACK, in the order of the frames, once its message is committed. When the sender has
        gone, the rest are still awaited (their messages are stored), not sent."""
        gone = False
        while (reply := await replies.get()) is not None:
            text = await reply
            if gone:
                continue
            try:
                writer.write(frame(text))
                await writer.drain()
            except ConnectionError:
                gone = True

    def _answer(self, payload: bytes | TooLarge) -> asyncio.Future[str]:
        """The future ACK of a frame: at once for a frame too large, else when its group is stored."""
        reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if isinstance(payload, TooLarge):
            log.warning("MLLP frame over %s bytes refused with AR", MAX_FRAME)
            reply.set_result(ack(decode(payload.head, self.charset), "AR", f"the frame is over {MAX_FRAME} bytes and "
                                 "was not read; send the results in smaller messages", now=self.now()))
        else:
            self.waiting.append((decode(payload, self.charset), reply))
            self.arrived.set()
        return reply

    async def _store_groups(self) -> None:
        while True:
            await self.arrived.wait()
            if self.window and len(self.waiting) < self.connections:  # others may be about to send
                await asyncio.sleep(self.window)
            group, self.waiting = self.waiting[:GROUP_MAX], self.waiting[GROUP_MAX:]
            if not self.waiting:
                self.arrived.clear()
            texts = [text for text, _ in group]
            try:
                self.in_flight = asyncio.ensure_future(asyncio.to_thread(self.store, texts))
                replies = await asyncio.shield(self.in_flight)
                if len(replies) != len(texts):
                    raise RuntimeError(f"{len(texts)} messages stored, {len(replies)} ACKs")
            except Exception as e:  # the senders are told to try again later, and the next frames are read
                log.error("MLLP messages not handled (%s); answered AR", type(e).__name__)
                replies = [ack(text, "AR", NOT_STORED, now=self.now()) for text in texts]
            for (_, reply), text in zip(group, replies, strict=True):
                if not reply.done():  # done: its connection was cancelled
                    reply.set_result(text)


@dataclass(frozen=True)
class TooLarge:
    """A frame over `MAX_FRAME` bytes: only its first bytes are kept, to answer it."""

    head: bytes


class Frames:
    """MLLP frames out of a byte stream, fed as it arrives."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.skipping = False  # inside a frame too large to keep: dropping its bytes up to its end

    def feed(self, chunk: bytes) -> list[bytes | TooLarge]:
        self.buffer += chunk
        found: list[bytes | TooLarge] = []
        while True:
            if self.skipping:
                end = self.buffer.find(END)
                if end < 0:
                    del self.buffer[:max(0, len(self.buffer) - len(END) + 1)]  # keep a split FS CR
                    return found
                del self.buffer[:end + len(END)]
                self.skipping = False
            start = self.buffer.find(START)
            if start < 0:
                self.buffer.clear()  # bytes outside any frame carry no message
                return found
            end = self.buffer.find(END, start)
            if end >= 0:
                found.append(bytes(self.buffer[start + 1:end]))
                del self.buffer[:end + len(END)]
            elif len(self.buffer) - start > MAX_FRAME:
                found.append(TooLarge(bytes(self.buffer[start + 1:start + 1 + 65536])))
                del self.buffer[:start + 1]
                self.skipping = True
            else:
                del self.buffer[:start]
                return found

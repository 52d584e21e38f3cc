"""A real SMTP server for tests: aiosmtpd on a free loopback port (port 0 does not work with its
Controller: ECOSYSTEM.md gotcha 24), recording what it accepts; it can refuse a recipient with a
4xx or 5xx reply, be slow, ask for STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Sink:
    received: list[EmailMessage] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> SMTP reply, e.g. "450 try later"
    delay: float = 0.0  # seconds before accepting each message
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.received.append(msg)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.received if m["To"] == address]


class Server:
    """A running sink; `stop()` and `start()` again on the same port."""

    def __init__(self, sink: Sink, *, tls: ssl.SSLContext | None = None, implicit_tls: bool = False,
                 password: str | None = None) -> None:
        self.sink, self.port, self.tls, self.password = sink, free_port(), tls, password
        self.implicit_tls = implicit_tls  # TLS from the first byte (port 465 style), not STARTTLS
        self.controller: Controller | None = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password.decode() == self.password
        if ok:
            self.sink.logins.append(auth_data.login.decode())
        # A failure must not be "handled" (aiosmtpd then sends no reply at all); a success names its data.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> Server:
        extra: dict[str, Any] = {}
        if self.tls is not None and self.implicit_tls:
            extra |= {"ssl_context": self.tls}
        elif self.tls is not None:
            extra |= {"tls_context": self.tls, "require_starttls": True}
        if self.password is not None:
            starttls = self.tls is not None and not self.implicit_tls
            extra |= {"authenticator": self._authenticate, "auth_require_tls": starttls}
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port, **extra)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

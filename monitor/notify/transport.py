"""How an e-mail leaves: over SMTP (STARTTLS, implicit TLS or none; auth; timeouts), or as an .eml
file in a folder (the demo). A transport says how a send failed by the exception it raises:

- `Permanent`: this message will never be accepted (5xx for it, a malformed address): dead-letter it.
- `Temporary`: try this message again later (4xx for it).
- `Unreachable`: the server cannot take any message now (refused, timed out, TLS or login failed,
  the connection dropped): try again later, and stop this pass.

Error texts hold the server's reply and the address at most, never a message's content.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Protocol

from monitor.private import OWNER_ONLY_FOLDER, owner_only

ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+|[^@\s<>,;]+@localhost")


class Failed(Exception):
    pass


class Permanent(Failed):
    pass


class Temporary(Failed):
    pass


class Unreachable(Temporary):
    pass


class Transport(Protocol):
    def send(self, msg: EmailMessage) -> None: ...

    def close(self) -> None: ...


def check_address(address: str) -> None:
    if not ADDRESS.fullmatch(address):
        raise Permanent(f"{address!r} is not an e-mail address" if address else
                        "no recipient: set the coordinator's address (or digest.unassigned_to)")


def _reply(e: smtplib.SMTPResponseException) -> str:
    text = e.smtp_error.decode("utf-8", "replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
    return f"{e.smtp_code} {text}".strip()


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: str = "none"  # none, starttls, ssl
    username: str = ""
    password: str = ""
    timeout_seconds: float = 30
    ca_file: str = ""

    def __repr__(self) -> str:  # never the password
        return f"SmtpServer({self.host}:{self.port}, {self.security})"


class SmtpTransport:
    """One connection, opened at the first send and reused for the pass."""

    def __init__(self, settings: SmtpServer) -> None:
        self.settings = settings
        self.connection: smtplib.SMTP | None = None

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file or None)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        where = f"{s.host}:{s.port}"
        try:
            if s.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds,
                                                      context=self._context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        except (OSError, smtplib.SMTPException) as e:
            raise Unreachable(f"cannot connect to the SMTP server {where}: {e or type(e).__name__}") from None
        try:
            if s.security == "starttls":
                smtp.starttls(context=self._context())
            if s.username:
                smtp.login(s.username, s.password)
        except smtplib.SMTPAuthenticationError as e:
            smtp.close()
            raise Unreachable(f"the SMTP server {where} refused the login ({_reply(e)}): "
                              "check smtp.username and smtp.password") from None
        except smtplib.SMTPNotSupportedError as e:
            smtp.close()
            raise Unreachable(f"the SMTP server {where} does not offer {e}: check smtp.security") from None
        except (OSError, smtplib.SMTPException) as e:
            smtp.close()
            raise Unreachable(f"the SMTP server {where} failed during {s.security} or login: "
                              f"{e or type(e).__name__}") from None
        return smtp

    def send(self, msg: EmailMessage) -> None:
        check_address(str(msg["To"]))
        if self.connection is None:
            self.connection = self._connect()
        try:
            self.connection.send_message(msg)
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            detail = "; ".join(f"{to}: {code} {reply.decode('utf-8', 'replace')}"
                               for to, (code, reply) in e.recipients.items())
            self._drop_if_closed()
            if 421 in codes:
                raise Unreachable(f"the server is closing the connection: {detail}") from None
            raise (Permanent if all(c >= 500 for c in codes) else Temporary)(f"recipient refused: {detail}") from None
        except smtplib.SMTPSenderRefused as e:
            self._drop_if_closed()
            if e.smtp_code in (552, 554):  # this message (its size, its content)
                raise Permanent(f"the server refused the message: {_reply(e)}") from None
            raise Unreachable(f"the server refused the sender {e.sender!r} ({_reply(e)}): "
                              "check smtp.sender") from None
        except smtplib.SMTPNotSupportedError as e:  # e.g. an address that needs SMTPUTF8
            raise Permanent(f"the server cannot take this message: {e}") from None
        except smtplib.SMTPResponseException as e:
            self._drop_if_closed()
            if e.smtp_code == 421:
                self.close()
                raise Unreachable(f"the server is closing the connection: {_reply(e)}") from None
            if e.smtp_code >= 500:
                raise Permanent(f"the server refused the message: {_reply(e)}") from None
            raise Temporary(f"the server deferred the message: {_reply(e)}") from None
        except (OSError, smtplib.SMTPException) as e:
            self.close()
            raise Unreachable(f"the connection to {self.settings.host}:{self.settings.port} failed while sending: "
                              f"{e or type(e).__name__}") from None

    def _drop_if_closed(self) -> None:
        """smtplib closes the socket itself on some replies (421): the next message connects again."""
        if self.connection is not None and getattr(self.connection, "sock", None) is None:
            self.connection = None

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (OSError, smtplib.SMTPException):
                self.connection.close()
            self.connection = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class FileTransport:
    """Each message as `<key>.eml` in a folder readable by its owner only (the demo's outbox)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, msg: EmailMessage) -> None:
        check_address(str(msg["To"]))
        name = re.sub(r"[^A-Za-z0-9.@_-]+", "-", str(msg["X-Monitor-Key"] or msg["Message-ID"])).strip("-")
        try:
            self.directory.mkdir(mode=OWNER_ONLY_FOLDER, parents=True, exist_ok=True)
            with open(self.directory / f"{name}.eml", "wb", opener=owner_only) as eml:
                eml.write(msg.as_bytes())
        except OSError as e:
            raise Unreachable(f"cannot write to {self.directory}: {e.strerror}") from None

    def close(self) -> None:
        pass

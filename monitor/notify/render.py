"""One Jinja environment over templates/email; messages are stdlib EmailMessage objects."""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from monitor.paths import templates_dir


@cache
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(templates_dir() / "email"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
    )


def render(name: str, **context: Any) -> tuple[str, str]:
    """(subject, plain-text body) from `{name}.subject.txt` and `{name}.body.txt`."""
    env = environment()
    subject = env.get_template(f"{name}.subject.txt").render(**context).strip()
    body = env.get_template(f"{name}.body.txt").render(**context)
    return subject, body


def message(*, sender: str, to: str, subject: str, body: str, key: str, now: datetime) -> EmailMessage:
    """An e-mail whose Message-ID derives from `key`, so a resend is recognisable."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = format_datetime(now)
    domain = sender.rpartition("@")[2] or "monitor.invalid"
    msg["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"
    msg.set_content(body, cte="8bit")  # readable as a file; every line is short
    return msg

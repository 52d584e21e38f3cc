"""One Jinja environment over templates/email (autoescape for HTML, StrictUndefined everywhere);
messages are stdlib EmailMessage objects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, select_autoescape

from monitor.paths import templates_dir

#: Headers folded only past 100 characters: a subject is one line (folding it at 78 put the break
#: right after "Subject:", which some parsers keep as a leading space).
POLICY = policy.default.clone(max_line_length=100)


@cache
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(templates_dir() / "email"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def render(name: str, **context: Any) -> Rendered:
    """`{name}.subject.txt`, `{name}.body.txt` and, when there is one, `{name}.body.html`."""
    env = environment()
    subject = " ".join(env.get_template(f"{name}.subject.txt").render(**context).split())
    text = env.get_template(f"{name}.body.txt").render(**context)
    try:
        html: str | None = env.get_template(f"{name}.body.html").render(**context)
    except TemplateNotFound:
        html = None
    return Rendered(subject, text, html)


def message_id(key: str, sender: str) -> str:
    """A Message-ID derived from the message's natural key: a resend is recognisable as the same."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "monitor.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def message(*, sender: str, to: str, subject: str, text: str, html: str | None, key: str, msgid: str,
            at: datetime) -> EmailMessage:
    """An e-mail: text, with the HTML as its alternative when there is one."""
    msg = EmailMessage(policy=POLICY)
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = msgid
    msg["X-Monitor-Key"] = key
    msg.set_content(text, cte="8bit" if max(map(len, text.splitlines() or [""])) < 900 else "quoted-printable")
    if html is not None:
        msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg

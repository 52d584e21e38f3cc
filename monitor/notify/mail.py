"""What monitor's e-mails say and to whom: the [smtp] sender, [digest], [alerts] and web.base_url
settings as one value the services take."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Mail:
    sender: str = "monitor@localhost"
    minimal_phi: bool = True  # initials and the MRN's last four characters in bodies
    send_empty: bool = True  # a "nothing due" digest
    unassigned_to: str = ""  # the digest of enrollments without a coordinator
    base_url: str = ""  # links to patient pages
    escalate_after: timedelta = timedelta(hours=4)  # an unacknowledged critical alert, once more
    ack_covers_days: int = 30  # an acknowledged problem stays out of digests for results no worse

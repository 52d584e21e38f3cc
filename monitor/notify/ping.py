"""A dead-man's switch ping after each daily cycle, in the healthchecks.io convention: GET
`<url>/start` when a cycle starts, `<url>` when the day is done, `<url>/fail` when it failed or
an enrollment could not be evaluated (the counts in the query string). The outside service
alerts when the pings stop. A ping that cannot be sent is logged, never raised."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlencode

log = logging.getLogger(__name__)

TIMEOUT = 10  # seconds


def ping_address(url: str, kind: str, counts: Mapping[str, object] | None = None) -> str:
    """`kind`: "start", "fail" or "" (success)."""
    address = url.rstrip("/") + (f"/{kind}" if kind else "")
    return f"{address}?{urlencode(counts)}" if counts else address


def ping(url: str, kind: str, counts: Mapping[str, object] | None = None) -> bool:
    """Send one ping (nothing when `url` is empty); whether it was answered 2xx."""
    if not url:
        return False
    request = urllib.request.Request(ping_address(url, kind, counts), headers={"User-Agent": "monitor"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError, ValueError) as e:
        log.warning("ping %s not sent: %s", kind or "success", getattr(e, "reason", type(e).__name__))
        return False

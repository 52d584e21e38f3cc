"""The audit trail's hash chain: each event's hash covers its content and the hash of the event
before it, so changing or deleting an event breaks the chain after it (`monitor audit verify`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def canonical_instant(at: datetime) -> str:
    """An instant as the chain hashes it: UTC, ISO 8601, always with microseconds."""
    if at.tzinfo is None:
        raise ValueError("an audit event's time must be an aware datetime")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(prev_hash: str | None, at: datetime, actor: str, action: str, entity: str,
               entity_id: int | None, detail: Mapping[str, Any] | None) -> str:
    """SHA-256 (hex) of an audit event chained to the hash of the event before it (None for the
    first). The content is one JSON array, keys sorted and no spaces, so no two events share a
    serialisation (a field's text cannot run into the next one's)."""
    content = [prev_hash, canonical_instant(at), actor, action, entity, entity_id, detail]
    return hashlib.sha256(_canonical_json(content).encode("utf-8")).hexdigest()


#: `json.dumps(value, sort_keys=True, separators=(",", ":"))`, without building an encoder per call.
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode

"""The audit chain's hash (monitor/domain/audit.py): SHA-256 over one canonical serialisation of an
event and the hash before it; the same event gives the same hash however its time zone or key
order came, and any change to any field gives another."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitor.domain.audit import canonical_instant, event_hash

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
EVENT: tuple[Any, ...] = (None, AT, "nurse", "ack", "flag", 7, {"b": 1, "a": [1, "x"]})
#: The serialisation hashed: a JSON array, keys sorted, no spaces, the time in UTC with microseconds.
CANONICAL = '[null,"2026-03-01T09:30:00.000000+00:00","nurse","ack","flag",7,{"a":[1,"x"],"b":1}]'


def test_the_hash_is_sha256_of_the_canonical_serialisation() -> None:
    assert event_hash(*EVENT) == hashlib.sha256(CANONICAL.encode()).hexdigest()
    # Fixed, so a change to the serialisation cannot pass unnoticed (migration 0012 keeps a copy).
    assert event_hash(*EVENT) == "df5692d6690ab41cf203fb1ff8a39595ed534d89643655c1d8e17277da309678"


@pytest.mark.parametrize("at", [
    datetime(2026, 3, 1, 9, 30, tzinfo=ZoneInfo("Europe/London")),
    datetime(2026, 3, 1, 4, 30, tzinfo=ZoneInfo("America/New_York")),
    datetime(2026, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=1))),
])
def test_the_same_instant_in_any_time_zone_gives_the_same_hash(at: datetime) -> None:
    assert event_hash(None, at, *EVENT[2:]) == event_hash(*EVENT)


def test_the_order_of_the_details_keys_does_not_matter() -> None:
    assert event_hash(None, AT, "nurse", "ack", "flag", 7, {"a": [1, "x"], "b": 1}) == event_hash(*EVENT)


@pytest.mark.parametrize("position, other", [
    (0, "0" * 64), (1, AT + timedelta(microseconds=1)), (2, "nurse2"), (3, "view"), (4, "patient"), (5, 8),
    (5, None), (6, {"b": 1, "a": [1, "y"]}), (6, {}), (6, None),
])
def test_a_change_to_any_field_changes_the_hash(position: int, other: Any) -> None:
    changed = list(EVENT)
    changed[position] = other
    assert event_hash(*changed) != event_hash(*EVENT)


def test_text_cannot_move_from_one_field_to_the_next() -> None:
    assert event_hash(None, AT, "ab", "c", "e", None, {}) != event_hash(None, AT, "a", "bc", "e", None, {})


def test_an_instant_is_hashed_in_utc_with_microseconds_always() -> None:
    assert canonical_instant(datetime(2026, 7, 1, 14, 30, 15, tzinfo=ZoneInfo("Europe/London"))) == (
        "2026-07-01T13:30:15.000000+00:00")


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        event_hash(None, datetime(2026, 3, 1, 9, 30), "nurse", "ack", "flag", 7, {})

"""schemathesis against /api/openapi.json with a valid admin token: whatever the schema allows,
the API answers without a server error (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import Engine
from sqlmodel import Session

from monitor.app import App
from monitor.services import users
from monitor.web.app import create_app
from tests.integration.test_web import ADMIN, LONDON, clinic  # noqa: F401  (the fixture)

pytestmark = pytest.mark.db


@pytest.fixture
def api(clinic: Engine) -> Iterator[Any]:  # noqa: F811
    with Session(clinic) as s:
        secret = users.add_token(s, ADMIN, name="fuzz", by="test", now=datetime.now(LONDON))
        s.commit()
    a = App()
    auth = {"Authorization": f"Bearer {secret}"}
    yield schemathesis.openapi.from_asgi("/api/openapi.json", create_app(a), headers=auth), auth
    a.close()


def test_the_api_answers_whatever_the_schema_allows_without_a_server_error(api: Any) -> None:
    schema, auth = api
    answered: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5  # patients, overdue, flags, ingest hl7 and fhir
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case: Any) -> None:
            answered[case.call_and_validate(headers=auth, checks=[not_a_server_error]).status_code] += 1

        call()
    assert answered[200] > 50 and not answered[401], answered  # the token was used: the calls got through

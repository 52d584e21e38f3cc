"""The JSON API under /api: bearer tokens (`monitor tokens add`), each acting as its user (role and
sites). The shapes are the CLI's (`monitor patient --format json`, `monitor overdue`, `monitor
flags`); ingestion takes what `monitor ingest` takes and answers with the same report."""

from __future__ import annotations

import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from monitor.domain.errors import UserError
from monitor.services import views, worklists
from monitor.services.audit import audit
from monitor.services.ingest import ingest_file
from monitor.services.lookup import visible
from monitor.services.users import User
from monitor.web.auth import DB, ApiAdmin, ApiUser, app_of, clean_request, sites_of

router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(clean_request)])
MAX_BODY = 50 * 1024 * 1024  # a lab file posted whole; larger ones go through `monitor ingest`

Sort = StrEnum("Sort", {k: k for k in worklists.SORTS})  # type: ignore[misc]


class FlagStatusParam(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"
    all = "all"


@router.get("/patients/{mrn}", summary="One patient: the `monitor patient --format json` shape")
def patient(request: Request, mrn: str, s: DB, user: ApiUser) -> dict[str, Any]:
    a = app_of(request)
    found, enrollment = visible(s, sites_of(user), mrn=mrn)
    return views.patient_record(s, a.library, found, enrollment, today=a.today(), now=a.now(), actor=user.email)[0]


@router.get("/overdue", summary="The overdue review: rows with an unmet required draw, worst first, a page at a time")
def overdue(request: Request, s: DB, user: ApiUser, site: str = "", coordinator: str = "", panel: str = "",
            phase: str = "", days: Annotated[int, Query(ge=0, le=36500)] = 0, sort: Sort = Sort["days"],
            page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
            page_size: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    a = app_of(request)
    f = worklists.OverdueFilter(site=site, coordinator=coordinator, panel=panel, phase=phase, min_days=days,
                                sort=str(sort.value), page=page)
    rows, total = worklists.overdue_page(s, f, today=a.today(), sites=sites_of(user), page_size=page_size)
    audit(s, actor=user.email, action="export", entity="overdue", entity_id=None, now=a.now(), via="api",
          rows=len(rows))
    s.commit()
    return {"total": min(total, worklists.COUNT_CAP), "more": total > worklists.COUNT_CAP, "page": page,
            "page_size": page_size, "daily_run": views.last_daily_run(s), "rows": rows}


@router.get("/flags", summary="Flags (every result's), critical first, each with its `problem`, a page at a time")
def flags(request: Request, s: DB, user: ApiUser, status: FlagStatusParam = FlagStatusParam.open,
          page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
          page_size: Annotated[int, Query(ge=1, le=1000)] = 1000) -> list[dict[str, Any]]:
    rows = views.flags(s, status=status.value, sites=sites_of(user), limit=page_size, offset=(page - 1) * page_size)
    audit(s, actor=user.email, action="export", entity="flags", entity_id=None, now=app_of(request).now(), via="api",
          rows=len(rows))
    s.commit()
    return rows


async def body_of(request: Request) -> bytes:
    """The posted file, at most MAX_BODY bytes (read here, so that ingestion runs in the thread pool)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPException(413, f"at most {MAX_BODY // 1024 // 1024} MB a request; send larger files in parts")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"at most {MAX_BODY // 1024 // 1024} MB a request; send larger files in parts")
    return body


Body = Annotated[bytes, Depends(body_of)]


def _ingest(request: Request, s: DB, user: User, body: bytes, kind: str, suffix: str) -> dict[str, Any]:
    a = app_of(request)
    with tempfile.TemporaryDirectory(prefix="monitor-api-") as folder:
        path = Path(folder) / f"posted{suffix}"
        path.write_bytes(body)
        try:
            report = ingest_file(s, kind, path, a.ingest_context(), actor=user.email)
        except UserError as error:  # named as what was posted, not the temporary file
            raise UserError(str(error).replace(str(path), "the posted body")) from None
    if report.critical_flags:
        a.deliver()  # the alerts now, as `monitor ingest` sends them
    return {**report.as_dict(), "accounted": report.total == report.seen}


BODY = {"requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}}


@router.post("/ingest/hl7", summary="Ingest HL7 v2 messages (ER7 text, one or more); the ingest report",
             openapi_extra=BODY)
def ingest_hl7(request: Request, s: DB, user: ApiAdmin, body: Body) -> dict[str, Any]:
    return _ingest(request, s, user, body, "hl7", ".hl7")


@router.post("/ingest/fhir", summary="Ingest a FHIR R4 Bundle or Observation (JSON); the ingest report",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/fhir+json": {"schema": {"type": "object"}},
                 "application/json": {"schema": {"type": "object"}}}}})
def ingest_fhir(request: Request, s: DB, user: ApiAdmin, body: Body) -> dict[str, Any]:
    return _ingest(request, s, user, body, "fhir", ".json")

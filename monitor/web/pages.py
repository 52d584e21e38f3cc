"""The pages: login, the overdue review, the flag worklist, the patient page, quarantine, status
and the protocol viewer. Each reads and writes through the same services as the CLI."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict
from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from monitor.app import App
from monitor.domain.errors import UserError
from monitor.services import status as health
from monitor.services import views, worklists
from monitor.services.audit import audit
from monitor.services.flags import acknowledge
from monitor.services.lookup import visible
from monitor.services.quarantine import replay
from monitor.services.users import Limits, LoginRefused, end_session, log_in, start_session
from monitor.web.auth import DB, Admin, Csrf, PageUser, Writer, app_of, no_control, sites_of
from monitor.web.patient import patient_page, record_from_form
from monitor.web.protocols import protocol_list, protocol_rules
from monitor.web.render import page
from monitor.web.sparkline import rate_sparkline

router = APIRouter(include_in_schema=False)

#: An acknowledgement says what was done, as a code (for audit and counting) and a note.
ACK_REASONS = {
    "repeat-ordered": "repeat test ordered",
    "dose-changed": "dose reduced or withheld",
    "clinician-informed": "clinician informed",
    "known-stable": "known and stable: no action",
    "result-error": "result in error (spurious, wrong patient)",
    "other": "other (see note)",
}


def back(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303)


async def form_of(request: Request) -> dict[str, str]:
    """The posted form's text fields (read here, so that the handlers run in the thread pool)."""
    return {k: no_control(v, k) for k, v in (await request.form()).items() if isinstance(v, str)}


Form = Annotated[dict[str, str], Depends(form_of)]
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]  # a row id (an integer column on every database)


@router.get("/")
def home(user: PageUser) -> RedirectResponse:
    return back("/overdue")


@router.get("/login")
def login_form(request: Request) -> Response:
    return page(request, "login.html", {"error": None, "email": ""})


@router.post("/login", dependencies=[Csrf])
def login(request: Request, s: DB, form: Form) -> Response:
    a = app_of(request)
    w = a.settings.web
    limits = Limits(w.login_failures_per_account, w.login_failures_per_address,
                    timedelta(minutes=w.login_window_minutes))
    address = request.client.host if request.client else "unknown"
    try:
        user = log_in(s, form.get("email", ""), form.get("password", ""), address=address, now=a.now(), limits=limits)
    except LoginRefused as refused:
        status = 429 if "too many" in str(refused) else 401
        return page(request, "login.html", {"error": str(refused), "email": form.get("email", "")[:200]},
                    status=status)
    token = start_session(s, user, now=a.now())
    s.commit()
    request.session.clear()  # a new session at login: nothing from before it survives
    request.session["sid"] = token
    return back("/overdue")


@router.post("/logout", dependencies=[Csrf])
def logout(request: Request, s: DB) -> Response:
    token = request.session.get("sid")
    if isinstance(token, str):
        end_session(s, token, now=app_of(request).now())
        s.commit()
    request.session.clear()
    return back("/login")


def checked_params(request: Request) -> dict[str, str]:
    return {k: no_control(v, k) for k, v in request.query_params.items()}


def _whole(value: str | None, name: str, default: int) -> int:
    try:
        return max(1, min(int(value or default), 1_000_000))
    except ValueError:
        raise UserError(f"{name} must be a whole number") from None


def _filter(params: dict[str, str]) -> worklists.OverdueFilter:
    try:
        min_days = int(params.get("days") or 0)
    except ValueError:
        raise UserError("days must be a whole number") from None
    return worklists.OverdueFilter(site=params.get("site", ""), coordinator=params.get("coordinator", ""),
                                   panel=params.get("panel", ""), phase=params.get("phase", ""), min_days=min_days,
                                   sort=params.get("sort") or "days",
                                   page=_whole(params.get("page"), "page", 1)).checked()


@router.get("/overdue")
def overdue(request: Request, s: DB, user: PageUser) -> Response:
    a = app_of(request)
    today = a.today()
    f = _filter(checked_params(request))
    size = a.settings.web.page_size
    rows, total = worklists.overdue_page(s, f, today=today, sites=sites_of(user), page_size=size)
    query = {k: v for k, v in asdict(f).items() if v and k != "page"}
    query["days"] = query.pop("min_days", "")
    trends = worklists.site_trends(s, today=today, sites=sites_of(user))
    for t in trends:
        t["sparkline"] = rate_sparkline(t["weekly"])
    context = {"rows": rows, "total": total, "filter": f, "count_cap": worklists.COUNT_CAP,
               "choices": worklists.choices(s, sites=sites_of(user), panels=panels(a)),
               "pages": max(1, -(-total // size)), "query": urlencode({k: v for k, v in query.items() if v}),
               "sorts": list(worklists.SORTS), "trends": trends, "today": today,
               "daily_run": views.last_daily_run(s)}
    fragment = request.headers.get("hx-request") and not request.headers.get("hx-history-restore-request")
    response = page(request, "overdue_rows.html" if fragment else "overdue.html", context)
    response.headers["Vary"] = "HX-Request"
    return response


def panels(a: App) -> list[str]:
    """Every panel a protocol draws (the overdue review's panel filter)."""
    return sorted({panel for pid in a.library.ids() for panel in a.library.get(pid).panels.values()})


@router.get("/overdue.csv")
def overdue_csv(request: Request, s: DB, user: PageUser) -> Response:
    a = app_of(request)
    today = a.today()
    f = _filter(checked_params(request))
    rows = worklists.overdue_all(s, f, today=today, sites=sites_of(user))

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(views.OVERDUE_COLUMNS)
        for n, row in enumerate(rows, 1):
            writer.writerow([views.inert(row[c]) for c in views.OVERDUE_COLUMNS])
            if n % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    audit(s, actor=user.email, action="export", entity="overdue", entity_id=None, now=a.now(),
          filter={k: v for k, v in asdict(f).items() if v})
    s.commit()
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="overdue-{today.isoformat()}.csv"'})


@router.get("/flags")
def flags(request: Request, s: DB, user: PageUser) -> Response:
    a = app_of(request)
    today = a.today()
    params = checked_params(request)
    snoozed = params.get("snoozed") == "true"
    number = _whole(params.get("page"), "page", 1)
    size = a.settings.web.page_size
    problems, total = worklists.worklist(s, today=today, sites=sites_of(user), snoozed=snoozed,
                                         site=params.get("site", ""), coordinator=params.get("coordinator", ""),
                                         page=number, page_size=size)
    query = urlencode({k: v for k, v in params.items() if k in ("snoozed", "site", "coordinator") and v})
    return page(request, "flags.html", {
        "problems": problems, "total": total, "snoozed": snoozed,
        "page_number": number, "pages": max(1, -(-total // size)), "query": query,
        "choices": worklists.choices(s, sites=sites_of(user), panels=[]), "params": params,
        **acting(a, today), "daily_run": views.last_daily_run(s)})


def acting(a: App, today: date) -> dict[str, Any]:
    """What the flag forms need: the coded reasons and the dates a snooze may end on."""
    return {"reasons": ACK_REASONS, "today": today, "snooze_min": (today + timedelta(days=1)).isoformat(),
            "snooze_max": (today + timedelta(days=a.settings.web.snooze_max_days)).isoformat()}


def _next(form: dict[str, str], default: str) -> str:
    target = form.get("next", "")
    return target if target.startswith("/") and not target.startswith("//") else default


@router.post("/flags/{flag_id}/ack", dependencies=[Csrf])
def ack(request: Request, flag_id: Id, s: DB, user: Writer, form: Form) -> Response:
    a = app_of(request)
    code = form.get("reason", "")
    if code not in ACK_REASONS:
        raise UserError("choose what was done (the reason) to acknowledge a flag")
    note = worklists.typed(form.get("note", ""), "note")
    if code == "other" and not note:
        raise UserError("say what was done in the note when the reason is 'other'")
    worklists.flag_in_sites(s, flag_id, sites_of(user))
    acknowledge(s, flag_id, reason=f"{code}: {note}" if note else code, by=user.email, today=a.today(), now=a.now())
    s.commit()
    return back(_next(form, "/flags"))


@router.post("/flags/{flag_id}/snooze", dependencies=[Csrf])
def snooze(request: Request, flag_id: Id, s: DB, user: Writer, form: Form) -> Response:
    a = app_of(request)
    try:
        until = date.fromisoformat(form.get("until", ""))
    except ValueError:
        raise UserError("give the date the flag returns to the worklist (YYYY-MM-DD)") from None
    worklists.snooze(s, flag_id, until=until, reason=form.get("reason", ""), by=user.email, today=a.today(),
                     now=a.now(), max_days=a.settings.web.snooze_max_days, sites=sites_of(user))
    s.commit()
    return back(_next(form, "/flags"))


@router.post("/flags/{flag_id}/escalate", dependencies=[Csrf])
def escalate(request: Request, flag_id: Id, s: DB, user: Writer, form: Form) -> Response:
    a = app_of(request)
    worklists.escalate(s, flag_id, note=form.get("note", ""), by=user.email, mail=a.mail, now=a.now(),
                       sites=sites_of(user))
    s.commit()
    return back(_next(form, "/flags"))


@router.post("/patients/find", dependencies=[Csrf])
def find(request: Request, s: DB, user: PageUser, form: Form) -> Response:
    patient, _ = visible(s, sites_of(user), mrn=form.get("mrn", "").strip())
    return back(f"/patients/{patient.id}")


@router.get("/patients/{patient_id}")
def patient(request: Request, patient_id: Id, s: DB, user: PageUser) -> Response:
    a = app_of(request)
    context = patient_page(s, a, patient_id, user=user, today=a.today())
    return page(request, "patient.html", {**context, **acting(a, context["today"])})


@router.post("/patients/{patient_id}/record", dependencies=[Csrf])
def record(request: Request, patient_id: Id, s: DB, user: Writer, form: Form) -> Response:
    a = app_of(request)
    record_from_form(s, a, patient_id, form, user=user, today=a.today())
    return back(f"/patients/{patient_id}")


@router.get("/quarantine")
def quarantine(request: Request, s: DB, user: Admin, status: Annotated[str, Query()] = "open") -> Response:
    if status not in ("open", "all"):
        raise UserError("status must be open or all")
    rows = views.quarantine_list(s, status=status)
    return page(request, "quarantine.html", {"rows": rows, "status": status, "replayed": None})


@router.post("/quarantine/replay", dependencies=[Csrf])
def quarantine_replay(request: Request, s: DB, user: Admin) -> Response:
    a = app_of(request)
    report = replay(s, a.ingest_context(), actor=user.email, now=a.now())
    rows = views.quarantine_list(s, status="open")
    return page(request, "quarantine.html", {"rows": rows, "status": "open", "replayed": report})


@router.get("/status")
def status(request: Request, s: DB, user: PageUser) -> Response:
    a = app_of(request)
    return page(request, "status.html", {"view": health.report(s, now=a.now(), zone=a.settings.clinic.zone)})


@router.get("/protocols")
def protocols(request: Request, user: PageUser) -> Response:
    return page(request, "protocols.html", {"protocols": protocol_list(app_of(request).library)})


@router.get("/protocols/{protocol_id}")
def protocol(request: Request, protocol_id: str, user: PageUser) -> Response:
    a = app_of(request)
    if protocol_id not in set(a.library.ids()):
        raise HTTPException(404, f"no protocol {protocol_id!r}")
    return page(request, "protocol.html", protocol_rules(a.library.get(protocol_id)))


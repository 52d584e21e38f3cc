"""The web app and its API through HTTP (FastAPI's TestClient over the real app and database,
SQLite and PostgreSQL): who may see what, CSRF, rate limiting, the overdue review, the worklist,
the patient page, the API and its tokens."""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from monitor.app import App
from monitor.db.tables import AuditEvent, FlagRow, OutboxMessage, Patient, WebUser
from monitor.domain.protocol import MOST_SEVERE_FIRST, Phase
from monitor.protocols import packaged_library
from monitor.services import patients, users, views, worklists
from monitor.services.audit import verify_chain
from monitor.services.views import inert
from monitor.web.app import create_app
from tests.functional.cli import run

pytestmark = pytest.mark.db

LONDON = ZoneInfo("Europe/London")
PASSWORD = "correct horse battery"
ADMIN, NORTH, VIEWER = "admin@trust.example", "nurse.north@trust.example", "viewer@trust.example"


def today() -> date:
    return datetime.now(LONDON).date()


def enroll(engine: Engine, mrn: str, site: str, *, days: int = 200) -> None:
    request = patients.EnrollmentRequest(mrn=mrn, protocol="aih-azathioprine", start_on=today() - timedelta(days=days),
                                         weight_kg=70, phase=Phase.MAINTENANCE, tpmt="normal", nudt15="normal",
                                         coordinator=f"{site}@trust.example", site=site)
    with Session(engine) as s:
        patients.enroll(s, packaged_library(), request, today=today(), now=datetime.now(LONDON), actor="test")
        s.commit()


@pytest.fixture
def clinic(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Engine:
    """Six patients at two sites, never drawn (every panel overdue); N003 and S003 with a critical
    leukopenia yesterday, S002 a high MCV (an action flag); the day's cycle run; an admin, a
    coordinator of north and a viewer."""
    for i in range(1, 4):
        enroll(engine, f"N00{i}", "north")
        enroll(engine, f"S00{i}", "south")
    lab = tmp_path / "labs.csv"
    day = (today() - timedelta(days=1)).isoformat()
    lab.write_text("mrn,collected_at,code,value,unit\n"
                   f"N003,{day}T09:00:00,6690-2,1.1,10*9/L\nS003,{day}T09:00:00,6690-2,1.0,10*9/L\n"
                   f"S002,{day}T09:00:00,787-2,107,fL\n", encoding="utf-8")
    run(capsys, "ingest", str(lab))
    run(capsys, "run")
    with Session(engine) as s:
        now = datetime.now(LONDON)
        users.add_user(s, ADMIN, PASSWORD, role="admin", sites=[], by="test", now=now)
        users.add_user(s, NORTH, PASSWORD, role="coordinator", sites=["north"], by="test", now=now)
        users.add_user(s, VIEWER, PASSWORD, role="viewer", sites=["north"], by="test", now=now)
        s.commit()
    return engine


@pytest.fixture
def web(clinic: Engine) -> Iterator[TestClient]:
    a = App()
    with TestClient(create_app(a), base_url="https://testserver", follow_redirects=False) as client:
        yield client
    a.close()


def csrf(client: TestClient, path: str = "/login") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found, f"no CSRF field on {path}"
    return found.group(1)


def log_in(client: TestClient, email: str, password: str = PASSWORD) -> int:
    return client.post("/login", data={"email": email, "password": password, "csrf": csrf(client)}).status_code


def patient_id(engine: Engine, mrn: str) -> int:
    with Session(engine) as s:
        p = s.exec(select(Patient).where(Patient.mrn == mrn)).one()
        assert p.id is not None
        return p.id


def open_flag(engine: Engine, mrn: str, severity: str = "critical") -> int:
    with Session(engine) as s:
        flag_id = s.execute(text("SELECT f.id FROM flag f JOIN enrollment e ON e.id = f.enrollment_id "
                                 "JOIN patient p ON p.id = e.patient_id WHERE p.mrn = :m AND f.status = 'open' "
                                 "AND f.severity = :s"), {"m": mrn, "s": severity}).scalars().first()
        assert flag_id is not None, f"{mrn} has no open {severity} flag"
        return int(flag_id)


def token(engine: Engine, email: str) -> dict[str, str]:
    with Session(engine) as s:
        secret = users.add_token(s, email, name="test", by="test", now=datetime.now(LONDON))
        s.commit()
    return {"Authorization": f"Bearer {secret}"}


def test_every_page_and_api_route_refuses_anonymous_access(web: TestClient, clinic: Engine) -> None:
    pid, flag = patient_id(clinic, "N001"), open_flag(clinic, "N003")
    pages = ["/", "/overdue", "/overdue.csv", "/flags", f"/patients/{pid}", "/quarantine", "/status", "/protocols",
             "/protocols/aih-azathioprine"]
    posts = [f"/flags/{flag}/ack", f"/flags/{flag}/snooze", f"/flags/{flag}/escalate", "/patients/find",
             f"/patients/{pid}/record", "/quarantine/replay"]
    for path in pages:
        r = web.get(path)
        assert (r.status_code, r.headers.get("location")) == (303, "/login"), path
    for path in posts:
        token_ = csrf(web)
        assert web.post(path, data={"csrf": token_}).headers.get("location") == "/login", path
    for path in ["/api/patients/N001", "/api/overdue", "/api/flags", "/api/openapi.json"]:
        r = web.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
    for path in ["/api/ingest/hl7", "/api/ingest/fhir"]:
        assert web.post(path, content=b"MSH|").status_code == 401
    assert web.get("/api/overdue", headers={"Authorization": "Bearer mon_wrong"}).status_code == 401
    # every route the app has is in one of the lists above (a new one must be added here)
    routes = {path for r in web.app.routes if (path := getattr(r, "path", ""))}  # type: ignore[attr-defined]
    named = {re.sub(r"/\d+", "/{x}", p) for p in [*pages, *posts]} | {"/api/patients/{mrn}", "/api/overdue",
                                                                      "/api/flags", "/api/openapi.json",
                                                                      "/api/ingest/hl7", "/api/ingest/fhir"}
    known = {re.sub(r"\{[a-z_]+\}", "{x}", p) for p in routes} - {"/static", "/login", "/logout"}
    assert known <= {re.sub(r"\{[a-z_]+\}", "{x}", p) for p in named} | {"/protocols/{x}"}


def test_a_user_logs_in_with_an_argon2id_hash_and_the_session_cookie_is_secure_httponly_and_lax(
        web: TestClient, clinic: Engine) -> None:
    with Session(clinic) as s:
        assert s.exec(select(WebUser).where(WebUser.email == ADMIN)).one().password_hash.startswith("$argon2id$")
    assert log_in(web, ADMIN, "wrong password!") == 401
    r = web.post("/login", data={"email": ADMIN.upper(), "password": PASSWORD, "csrf": csrf(web)})
    assert r.status_code == 303 and r.headers["location"] == "/overdue"
    cookie = r.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    page = web.get("/overdue")
    assert page.status_code == 200 and "Overdue review" in page.text
    for header, value in [("x-frame-options", "DENY"), ("x-content-type-options", "nosniff"),
                          ("cache-control", "no-store"), ("referrer-policy", "no-referrer")]:
        assert page.headers[header] == value
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text) and " style=" not in page.text  # no inline script/style
    web.post("/logout", data={"csrf": csrf(web, "/overdue")})
    assert web.get("/overdue").headers["location"] == "/login"


def test_repeated_wrong_passwords_are_rate_limited_even_for_the_right_one_then(web: TestClient) -> None:
    for _ in range(5):
        assert log_in(web, NORTH, "not the password") == 401
    assert log_in(web, NORTH) == 429  # the account waits, right password or not
    assert log_in(web, ADMIN) == 303  # another account from the same address is not locked by five


def test_a_form_post_without_or_with_a_wrong_csrf_token_is_refused(web: TestClient, clinic: Engine) -> None:
    assert log_in(web, NORTH) == 303
    flag = open_flag(clinic, "N003")
    assert web.post(f"/flags/{flag}/ack", data={"reason": "repeat-ordered"}).status_code == 403
    assert web.post(f"/flags/{flag}/ack", data={"reason": "repeat-ordered", "csrf": "forged"}).status_code == 403
    assert web.post("/login", data={"email": NORTH, "password": PASSWORD}).status_code == 403
    with Session(clinic) as s:
        assert s.get(FlagRow, flag).status == "open"  # type: ignore[union-attr]


def test_a_coordinator_of_one_site_gets_404_for_another_sites_patient_on_every_route(
        web: TestClient, clinic: Engine) -> None:
    assert log_in(web, NORTH) == 303
    south, flag = patient_id(clinic, "S001"), open_flag(clinic, "S003")
    token_ = csrf(web, "/overdue")
    assert web.get(f"/patients/{south}").status_code == 404
    assert web.post(f"/patients/{south}/record", data={"what": "weight", "kg": "70", "csrf": token_}).status_code == 404
    for action in ("ack", "snooze", "escalate"):
        r = web.post(f"/flags/{flag}/{action}", data={"reason": "repeat-ordered", "until": today().isoformat(),
                                                      "csrf": token_})
        assert r.status_code == 404, action
    assert web.post("/patients/find", data={"mrn": "S001", "csrf": token_}).status_code == 404
    assert web.get(f"/patients/{patient_id(clinic, 'N001')}").status_code == 200
    overdue = web.get("/overdue").text
    assert "N001" in overdue and "S001" not in overdue
    exported = web.get("/overdue.csv").text
    assert "N001" in exported and "S001" not in exported
    flags = web.get("/flags").text
    assert "N003" in flags and "S003" not in flags
    api = token(clinic, NORTH)
    assert web.get("/api/patients/S001", headers=api).status_code == 404
    assert web.get("/api/patients/N001", headers=api).json()["mrn"] == "N001"
    assert {r["site"] for r in web.get("/api/overdue", headers=api).json()["rows"]} == {"north"}
    assert {f["mrn"] for f in web.get("/api/flags", headers=api).json()} <= {"N001", "N002", "N003"}
    assert web.get("/quarantine").status_code == 403  # admin only


def test_a_viewer_reads_but_cannot_change_anything(web: TestClient, clinic: Engine) -> None:
    assert log_in(web, VIEWER) == 303
    flag = open_flag(clinic, "N003")
    assert web.get("/flags").status_code == 200
    r = web.post(f"/flags/{flag}/ack", data={"reason": "repeat-ordered", "csrf": csrf(web, "/flags")})
    assert r.status_code == 403
    assert "Acknowledge" not in web.get("/flags").text


def test_the_overdue_review_filters_sorts_pages_and_exports_what_it_shows(web: TestClient, clinic: Engine) -> None:
    assert log_in(web, ADMIN) == 303
    everything = web.get("/api/overdue", headers=token(clinic, ADMIN), params={"page_size": 1000}).json()
    assert everything["total"] == len(everything["rows"]) > 6
    north = web.get("/overdue", params={"site": "north"}).text
    assert "N001" in north and "S001" not in north
    rows = list(csv.DictReader(io.StringIO(web.get("/overdue.csv", params={"site": "south"}).text)))
    assert rows and {r["site"] for r in rows} == {"south"}
    assert list(rows[0]) == ["mrn", "panel", "due_on", "days_overdue", "draws_unmet", "last_result_on",
                             "days_without_result", "phase", "coordinator", "site"]
    assert len(rows) == sum(1 for r in everything["rows"] if r["site"] == "south")
    by_mrn = web.get("/api/overdue", headers=token(clinic, ADMIN), params={"sort": "mrn"}).json()["rows"]
    assert [r["mrn"] for r in by_mrn] == sorted(r["mrn"] for r in by_mrn)
    assert web.get("/overdue", params={"sort": "nonsense"}).status_code == 400
    assert web.get("/overdue", params={"days": "x"}).status_code == 400
    with Session(clinic) as s:
        assert s.exec(select(AuditEvent).where(AuditEvent.action == "export")).first() is not None


def test_a_csv_cell_a_spreadsheet_would_run_is_neutralised() -> None:
    assert [inert(v) for v in ("=HYPERLINK(1)", "+1", "-2", "@SUM", "\tx", "N001", None, -3)] == \
        ["'=HYPERLINK(1)", "'+1", "'-2", "'@SUM", "'\tx", "N001", None, -3]


def test_acknowledging_a_flag_takes_it_off_the_worklist_and_snoozing_hides_it_until_its_date(
        web: TestClient, clinic: Engine) -> None:
    assert log_in(web, ADMIN) == 303
    north, south = open_flag(clinic, "N003"), open_flag(clinic, "S003")
    token_ = csrf(web, "/flags")
    assert f'id="flag-{north}"' in web.get("/flags").text
    assert web.post(f"/flags/{north}/ack", data={"reason": "other", "csrf": token_}).status_code == 400  # note needed
    r = web.post(f"/flags/{north}/ack", data={"reason": "repeat-ordered", "note": "FBC tomorrow", "csrf": token_})
    assert r.status_code == 303
    assert f'id="flag-{north}"' not in web.get("/flags").text
    with Session(clinic) as s:
        flag = s.get(FlagRow, north)
        assert flag is not None and flag.status == "acknowledged" and flag.acknowledged_by == ADMIN
        assert flag.ack_reason == "repeat-ordered: FBC tomorrow"
    soon = (today() + timedelta(days=3)).isoformat()
    refused = web.post(f"/flags/{south}/snooze", data={"until": soon, "reason": "x", "csrf": token_})
    assert refused.status_code == 400 and "critical" in refused.text  # a critical flag stays on the list
    mcv = open_flag(clinic, "S002", "action")
    too_far = (today() + timedelta(days=60)).isoformat()
    assert web.post(f"/flags/{mcv}/snooze", data={"until": too_far, "reason": "x", "csrf": token_}).status_code == 400
    assert web.post(f"/flags/{mcv}/snooze", data={"until": soon, "reason": "B12 and folate requested",
                                                  "csrf": token_}).status_code == 303
    assert f'id="flag-{mcv}"' not in web.get("/flags").text
    assert f'id="flag-{mcv}"' in web.get("/flags", params={"snoozed": "true"}).text
    again = web.post(f"/flags/{mcv}/snooze", data={"until": soon, "reason": "again", "csrf": token_})
    assert again.status_code == 400 and "snoozed until" in again.text  # not snoozed on and on
    assert web.post(f"/flags/{south}/escalate", data={"note": "please call", "csrf": token_}).status_code == 303
    with Session(clinic) as s:
        sent = s.exec(select(OutboxMessage).where(col(OutboxMessage.kind) == "escalation")).all()
        assert [m.recipient for m in sent] == ["south@trust.example"]
        assert "please call" in sent[0].text_body


def test_the_patient_page_draws_the_course_and_its_view_is_audited(web: TestClient, clinic: Engine) -> None:
    assert log_in(web, NORTH) == 303
    pid = patient_id(clinic, "N003")
    page = web.get(f"/patients/{pid}")
    assert page.status_code == 200 and "<svg" in page.text and "N003" in page.text
    assert page.headers["cache-control"] == "no-store"
    token_ = csrf(web, f"/patients/{pid}")
    r = web.post(f"/patients/{pid}/record", data={"what": "weight", "kg": "71.5", "csrf": token_})
    assert r.status_code == 303
    assert "71.5 kg" in web.get(f"/patients/{pid}").text  # in the history
    assert web.post(f"/patients/{pid}/record", data={"what": "dose", "drug": "azathioprin", "mg": "100",
                                                     "csrf": token_}).status_code == 400  # a typo: refused, named
    with Session(clinic) as s:
        actions = [(e.actor, e.action) for e in s.exec(select(AuditEvent).where(AuditEvent.entity_id == pid))]
    assert (NORTH, "view") in actions and (NORTH, "record") in actions
    assert verify_chain_of(clinic)  # the web app's events are in the chain


def verify_chain_of(engine: Engine) -> bool:
    with Session(engine) as s:
        return verify_chain(s).intact


def test_the_api_serves_json_with_a_token_and_ingests_hl7_for_an_admin_only(
        web: TestClient, clinic: Engine, external: Path) -> None:
    admin, viewer = token(clinic, ADMIN), token(clinic, VIEWER)
    schema = web.get("/api/openapi.json", headers=viewer).json()
    assert {"/api/patients/{mrn}", "/api/overdue", "/api/flags", "/api/ingest/hl7", "/api/ingest/fhir"} <= \
        set(schema["paths"]) and "/overdue" not in schema["paths"]
    hl7 = b"MSH|^~\\&|LAB|HOSP|MON|HOSP|202601010900||ORU^R01|MSG1|P|2.5.1\rPID|1||N001^^^HOSP^MR\r" \
          b"OBR|1||ORD1|58410-2^CBC^LN|||202601010830\rOBX|1|NM|6690-2^WBC^LN||5.1|10*9/L|4-11||||F\r"
    assert web.post("/api/ingest/hl7", content=hl7, headers=viewer).status_code == 403
    report = web.post("/api/ingest/hl7", content=hl7, headers=admin).json()
    assert report["accounted"] and report["seen"] == report["stored"] + report["quarantined"] + report["held"] + \
        report["duplicate"] + report["ignored"] + report["corrected"] + report["retracted"]
    fhir = next((external / "fhir").rglob("*.json"))
    fhir_report = web.post("/api/ingest/fhir", content=fhir.read_bytes(), headers=admin).json()
    assert fhir_report["accounted"]
    with Session(clinic) as s:
        users.disable_user(s, VIEWER, by="test", now=datetime.now(LONDON))
        s.commit()
    assert web.get("/api/flags", headers=viewer).status_code == 401  # a disabled user's token ends


def test_a_disabled_user_or_a_reset_password_ends_the_session(web: TestClient, clinic: Engine) -> None:
    assert log_in(web, NORTH) == 303
    assert web.get("/overdue").status_code == 200
    with Session(clinic) as s:
        users.reset_password(s, NORTH, "a brand new password", by="test", now=datetime.now(LONDON))
        s.commit()
    assert web.get("/overdue").headers["location"] == "/login"
    assert log_in(web, NORTH) == 401 and log_in(web, NORTH, "a brand new password") == 303


def test_users_and_tokens_are_managed_from_the_cli(db_url: str, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough password\n"))
    added = run(capsys, "users", "add", "Ann@Trust.example", "--role", "coordinator", "--site", "north")
    assert "coordinator, north" in added.out
    assert "no enrollment names the site 'north'" in added.err  # (none yet here: a typo would read the same)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    bad = run(capsys, "users", "add", "bob@trust.example", "--role", "admin")
    assert bad.code == 2 and "at least 12 characters" in bad.err
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough password\n"))
    assert run(capsys, "users", "add", "cat@trust.example", "--role", "viewer").code == 2  # no --site
    assert [u["email"] for u in run(capsys, "users", "list", "--format", "json").json()] == ["ann@trust.example"]
    secret = run(capsys, "tokens", "add", "--user", "ann@trust.example", "--name", "lab feed").out.strip()
    assert secret.startswith("mon_") and secret not in run(capsys, "tokens", "list").out
    assert run(capsys, "users", "disable", "ann@trust.example").code == 0
    assert run(capsys, "tokens", "list", "--format", "json").json()[0]["revoked"] is True
    assert run(capsys, "users", "disable", "nobody@trust.example").code == 2


def test_logout_ends_the_login_even_for_a_copied_cookie(web: TestClient, clinic: Engine) -> None:
    assert log_in(web, NORTH) == 303
    copied = dict(web.cookies)
    web.post("/logout", data={"csrf": csrf(web, "/overdue")})
    thief = TestClient(web.app, base_url="https://testserver", follow_redirects=False, cookies=copied)
    assert thief.get("/overdue").headers["location"] == "/login"
    with Session(clinic) as s:
        assert s.exec(select(AuditEvent).where(AuditEvent.action == "logout")).one().actor == NORTH


def test_wrong_passwords_sent_in_parallel_are_checked_no_more_often_than_the_limit(clinic: Engine) -> None:
    outcomes: list[str] = []

    def attempt() -> None:
        with Session(clinic) as s:
            try:
                users.log_in(s, NORTH, "not the password", address="10.0.0.9", now=datetime.now(LONDON))
            except users.LoginRefused as refused:
                outcomes.append(str(refused))

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 12 and sum("wrong" in o for o in outcomes) <= users.Limits().per_account


def test_hostile_input_gets_one_clear_answer_never_a_server_error(web: TestClient, clinic: Engine) -> None:
    assert web.post("/login", data={"email": "a\x00b@x.org", "password": "x", "csrf": csrf(web)}).status_code == 400
    assert log_in(web, ADMIN) == 303
    for path in ["/overdue?site=a%00b", "/overdue?coordinator=%00", "/overdue?page=99999999999999999999999",
                 "/flags?page=-3", "/patients/99999999999999999999", "/patients/2147483648", "/patients/0"]:
        r = web.get(path)
        assert r.status_code in (200, 400, 404, 422), (path, r.status_code)
        assert r.headers["x-frame-options"] == "DENY", path
    api = token(clinic, ADMIN)
    for path in ["/api/overdue?site=%00", "/api/patients/a%00b", "/api/flags?page_size=0"]:
        assert web.get(path, headers=api).status_code in (400, 422), path
    r = web.post("/api/ingest/hl7", content=b"not a message at all", headers=api)
    assert r.status_code < 500 and "/tmp" not in r.text


def test_a_patient_whose_treatment_starts_next_month_has_a_page(web: TestClient, clinic: Engine) -> None:
    enroll(clinic, "N009", "north", days=-60)
    assert log_in(web, ADMIN) == 303
    page = web.get(f"/patients/{patient_id(clinic, 'N009')}")
    assert page.status_code == 200 and "<svg" in page.text


def test_the_audit_trail_keeps_codes_and_changes_never_what_was_typed(web: TestClient, clinic: Engine) -> None:
    assert log_in(web, ADMIN) == 303
    token_ = csrf(web, "/flags")
    mcv, north = open_flag(clinic, "S002", "action"), open_flag(clinic, "N003")
    soon = (today() + timedelta(days=2)).isoformat()
    web.post(f"/flags/{mcv}/snooze", data={"until": soon, "reason": "Mrs Smith's B12", "csrf": token_})
    web.post(f"/flags/{north}/ack", data={"reason": "dose-changed", "note": "called Mrs Jones", "csrf": token_})
    web.get("/api/overdue", headers=token(clinic, ADMIN))
    with Session(clinic) as s:
        events = {e.action: e.detail for e in s.exec(select(AuditEvent))}
    assert events["ack"]["after"]["reason_code"] == "dose-changed" and events["ack"]["before"] == {"status": "open"}
    assert events["snooze"]["after"]["snoozed_until"] == soon
    assert "Smith" not in str(events) and "Jones" not in str(events)
    assert events["export"]["via"] == "api"


def test_each_site_has_its_rate_also_one_without_a_closed_day(web: TestClient, clinic: Engine) -> None:
    enroll(clinic, "E001", "east")  # after the day closed: no counts stored for east yet
    assert log_in(web, ADMIN) == 303
    rates = web.get("/overdue").text.split('id="rates"')[1].split("</table>")[0]
    assert all(f"<td>{site}</td>" in rates for site in ("north", "south", "east"))


def test_the_worklist_groups_flags_into_problems_as_the_cli_does(clinic: Engine, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    lab = tmp_path / "more.csv"
    rows = [f"S002,{(today() - timedelta(days=d)).isoformat()}T09:00:00,787-2,{106 + d % 3},fL"
            for d in (9, 6, 3)]
    rows += [f"N002,{(today() - timedelta(days=d)).isoformat()}T09:00:00,6690-2,{v},10*9/L"
             for d, v in ((8, 3.2), (2, 1.5))]
    lab.write_text("mrn,collected_at,code,value,unit\n" + "\n".join(rows) + "\n", encoding="utf-8")
    run(capsys, "ingest", str(lab))
    run(capsys, "run")
    with Session(clinic) as s:
        in_sql, total = worklists.worklist(s, today=today(), sites=None, page_size=1000)
        in_python = views.by_problem(views.flags(s, status="open"))
        first_page, _ = worklists.worklist(s, today=today(), sites=None, page_size=2)

    def key(f: dict[str, object]) -> tuple[object, ...]:
        return f["mrn"], f["problem"], f["id"], f["severity"], f["results"], f["first_observed_on"], f["value"]

    assert total == len(in_python) and sorted(map(key, in_sql)) == sorted(map(key, in_python))
    assert any(f["results"] >= 3 for f in in_sql)  # several results, one line
    ranks = [MOST_SEVERE_FIRST[f["severity"]] for f in in_sql]
    assert ranks == sorted(ranks) and [key(f) for f in first_page] == [key(f) for f in in_sql[:2]]

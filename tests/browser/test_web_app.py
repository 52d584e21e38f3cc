"""The web app as an admin and a coordinator use it: a real `monitor serve` over the demo's
database (built by `monitor demo`), driven by headless Debian chromium. Log in, filter the overdue
review by site, export the CSV, acknowledge a flag and see it leave the worklist, open a patient
and see the chart with its threshold lines; also without JavaScript. Screenshots are kept."""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

PASSWORD = "demo password 2026"
ADMIN, NURSE = "admin@trust.example", "north.nurse@trust.example"


def monitor(*args: str, cwd: Path, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "monitor", *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "MONITOR_OUTBOX__TRANSPORT": "file"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`monitor serve` over a fresh demo, with an admin and a coordinator of the north site."""
    demo = tmp_path_factory.mktemp("web") / "demo"
    monitor("demo", "--dir", str(demo), "--patients", "60", cwd=demo.parent)
    monitor("users", "add", ADMIN, "--role", "admin", cwd=demo, stdin=PASSWORD + "\n")
    monitor("users", "add", NURSE, "--role", "coordinator", "--site", "north", cwd=demo, stdin=PASSWORD + "\n")
    port = free_port()
    env = {**os.environ, "MONITOR_WEB__SECRET_KEY": "browser-test-key", "MONITOR_OUTBOX__TRANSPORT": "file"}
    log = (demo / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "monitor", "serve", "--port", str(port)], cwd=demo, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, (demo / "serve.log").read_text()
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()


def logged_in(browser: Browser, url: str, email: str, *, javascript: bool = True) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=javascript,
                                  accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(message.text)

    page.on("console", console)
    page.goto(f"{url}/overdue")
    expect(page).to_have_url(f"{url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(f"{url}/overdue")
    return page, problems


def test_an_admin_filters_the_overdue_review_by_site_and_exports_what_it_shows(
        browser: Browser, server: str, artifacts: Path) -> None:
    page, problems = logged_in(browser, server, ADMIN)
    expect(page.locator("h1")).to_have_text("Overdue review")
    everything = page.locator("table.list tbody tr").count()
    page.select_option("select[name=site]", "north")  # HTMX swaps the rows in on change
    expect(page).to_have_url(re.compile(r"/overdue\?site=north&"), timeout=5000)
    rows = page.locator("table.list tbody tr")
    expect(rows.first).to_contain_text("north")
    assert rows.count() <= everything
    sites = {rows.nth(i).locator("td").nth(9).inner_text() for i in range(rows.count())}
    assert sites == {"north"}
    page.screenshot(path=str(artifacts / "web-overdue-north.png"), full_page=True)
    with page.expect_download() as download:
        page.click("text=Export CSV")
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert exported and {r["site"] for r in exported} == {"north"}
    assert len(exported) >= rows.count()
    assert not problems, problems  # no CSP violation, no script error


def test_a_coordinator_acknowledges_a_flag_and_it_leaves_the_worklist(
        browser: Browser, server: str, artifacts: Path) -> None:
    page, problems = logged_in(browser, server, NURSE)
    page.click("nav >> text=Flags")
    first = page.locator("table.flags tbody tr").first
    row_id = first.get_attribute("id")
    assert row_id and row_id.startswith("flag-")
    first.locator("summary").click()
    first.locator("select[name=reason]").select_option("repeat-ordered")
    first.locator("input[name=note]").first.fill("repeat FBC booked")
    page.screenshot(path=str(artifacts / "web-flags-acting.png"), full_page=True)
    first.locator("button:has-text('Acknowledge')").click()
    expect(page).to_have_url(f"{server}/flags")
    expect(page.locator(f"#{row_id}")).to_have_count(0)
    assert not problems, problems


def test_a_patient_page_shows_the_chart_with_its_threshold_lines(browser: Browser, server: str,
                                                                artifacts: Path) -> None:
    page, problems = logged_in(browser, server, ADMIN)
    page.fill("#find-mrn", "DEMO0007")
    page.click("button:has-text('Open patient')")
    expect(page.locator("h1")).to_contain_text("DEMO0007")
    chart = page.locator("figure.chart svg")
    expect(chart).to_be_visible()
    assert chart.bounding_box()["height"] > 200  # type: ignore[index]
    assert chart.locator("line[stroke-dasharray]").count() >= 3  # threshold lines (WBC, neutrophils, platelets…)
    assert "WBC" in (chart.text_content() or "")
    page.screenshot(path=str(artifacts / "web-patient.png"))
    assert not problems, problems


def test_the_pages_work_without_javascript(browser: Browser, server: str) -> None:
    page, _ = logged_in(browser, server, ADMIN, javascript=False)
    page.select_option("select[name=site]", "south")
    page.click("form.filters button:has-text('Show')")
    expect(page).to_have_url(re.compile(r"/overdue\?site=south&"))
    rows = page.locator("table.list tbody tr")
    assert {rows.nth(i).locator("td").nth(9).inner_text() for i in range(rows.count())} == {"south"}

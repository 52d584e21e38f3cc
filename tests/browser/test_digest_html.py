"""The HTML digest in a real browser: headless Debian chromium driven by Playwright (never
`playwright install`), at a phone's width and a desktop's; a PNG of each kept as a test artifact
(`MONITOR_TEST_ARTIFACTS`, default `build/test-artifacts/`). The message must fetch nothing (no
external assets), run no script, and show its sections."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from monitor.domain.digest import Digest, DueLine, OverdueLine, Problem, ProposalLine, Since, StepLine, Who
from monitor.notify.mail import Mail
from monitor.services.digest import letters

DAY = date(2026, 3, 2)


def a_digest() -> Digest:
    who = [Who(f"J.S. …{i:04d}", f"https://monitor.example/patients/{i}") for i in range(30)]
    d = Digest("ann@ward.example", "Ann Nurse", DAY, since=Since(date(2026, 3, 1), 2, 1, 3))
    d.problems = [Problem(who[0], 41, "critical", "leukopenia", "WBC", "1.1", "10*9/L", DAY, DAY, 1,
                          "WBC 1.1 10*9/L is CTCAE grade 3: same-day clinician alert <b>hold</b> azathioprine"),
                  Problem(who[1], 42, "action", "macrocytosis", "MCV", "107", "fL", date(2026, 1, 2), DAY, 4,
                          "MCV 107 fL is above 105 fL: check B12, folate and TSH")]
    d.overdue = [OverdueLine(w, "CBC", date(2026, 2, 1), "maintenance", 29, 2, date(2025, 12, 1), 91) for w in who]
    d.due = [DueLine(who[2], "LFT", DAY, "induction")]
    d.upcoming = [DueLine(who[3], "CBC", date(2026, 3, 5), "maintenance")]
    d.dose_steps = [StepLine(who[4], "azathioprine", "100", DAY)]
    d.proposals = [ProposalLine(who[5], "withdrawal", "eligible to try withdrawal")]
    return d


@pytest.mark.parametrize(("name", "width"), [("phone", 375), ("desktop", 1024)])
def test_the_html_digest_reads_in_chromium_on_a_phone_and_a_desktop(browser: Browser, artifacts: Path, name: str,
                                                                    width: int) -> None:
    [letter] = letters([a_digest()], Mail(base_url="https://monitor.example"))
    assert letter.html is not None
    page = browser.new_page(viewport={"width": width, "height": 800}, java_script_enabled=False)
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url))
    page.set_content(letter.html)
    page.screenshot(path=str(artifacts / f"digest-{name}.png"), full_page=True)
    headings = [" ".join(t.split()) for t in page.locator("h1, td[style*='border-bottom:2px']").all_inner_texts()]
    assert headings == ["Daily monitoring digest", "Flags to act on (2)", "Overdue blood draws (30)", "Due today (1)",
                        "Dose steps to confirm (1)", "Phase changes for a clinician to decide (1)",
                        "Coming up in the next 7 days (1)"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
    assert "<b>hold</b>" in page.inner_text("body")  # text from the plan is escaped, never markup
    assert page.locator("script").count() == 0 and page.locator("a[href^='https://monitor.example/patients/']").count()
    assert [u for u in fetched if not u.startswith(("about:", "data:"))] == []
    assert (artifacts / f"digest-{name}.png").stat().st_size > 10_000
    page.close()

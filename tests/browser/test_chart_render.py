"""The patient timeline chart in a real browser: a realistic three years (six series, four phases,
five dose steps) inline in a page under a strict CSP, at a desktop's width and a phone's, with no
JavaScript. A PNG of each is kept (`chart.png`, `chart-phone.png`) for a human to look at."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from monitor.web.chart import Band, Point, Series, Step, Threshold, timeline_svg

START, END = date(2023, 2, 6), date(2026, 1, 30)
CSP = "default-src 'none'; img-src data:; style-src 'self'"


def page_with(body: str) -> str:
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Patient timeline</title></head><body><main>{body}</main></body></html>")


def draw_days() -> list[date]:
    """Weekly for 8 weeks, fortnightly to 3 months, monthly to a year, then every 3 months."""
    days = [START + timedelta(weeks=w) for w in range(8)] + [START + timedelta(weeks=w) for w in range(8, 13, 2)]
    days += [START + timedelta(days=91 + 30 * m) for m in range(9)]
    days += [START + timedelta(days=365 + 91 * q) for q in range(8)]
    return [d for d in days if d <= END]


def series_of(analyte: str, unit: str, level: float, swing: float, *thresholds: Threshold,
              dip: float = 0.0) -> Series:
    """Deterministic, plausible values: a slow wave, with a dip (or rise) around month five."""
    points = []
    for i, day in enumerate(draw_days()):
        months = (day - START).days / 30.4
        value = level + swing * math.sin(i * 1.3) + dip * math.exp(-((months - 5) ** 2) / 2)
        points.append(Point(day, round(value, 1 if level < 50 else 0)))
    return Series(analyte, unit, tuple(points), thresholds)


def a_chart(width: int) -> str:
    series = [
        series_of("WBC", "10*9/L", 5.6, 0.7, Threshold(3.5, "3.5 BSR leukopenia", direction="below"),
                  Threshold(2.0, "2.0 hold azathioprine", critical=True, direction="below"), dip=-2.6),
        series_of("Neutrophils", "10*9/L", 3.4, 0.6, Threshold(1.6, "1.6 BSR neutropenia", direction="below"),
                  Threshold(1.0, "1.0 hold azathioprine", critical=True, direction="below"), dip=-2.0),
        series_of("Lymphocytes", "10*9/L", 1.2, 0.3, Threshold(0.5, "0.5 BSR lymphopenia", direction="below")),
        series_of("Platelets", "10*9/L", 230, 35, Threshold(140, "140 BSR thrombocytopenia", direction="below"),
                  Threshold(50, "50 hold azathioprine", critical=True, direction="below")),
        series_of("ALT", "U/L", 28, 8, Threshold(100, "100 BSR ALT > 100", direction="above"), dip=95),
        series_of("Bilirubin", "umol/L", 9, 3, Threshold(21, "21 ULN", direction="above")),
    ]
    bands = [Band(START, date(2023, 3, 6), "baseline"), Band(date(2023, 3, 6), date(2023, 6, 5), "induction"),
             Band(date(2023, 6, 5), date(2024, 2, 5), "dose titration"),
             Band(date(2024, 2, 5), END + timedelta(days=1), "maintenance")]
    steps = [Step(date(2023, 3, 6), "50 mg"), Step(date(2023, 3, 20), "100 mg"), Step(date(2023, 6, 12), "50 mg"),
             Step(date(2023, 9, 4), "100 mg"), Step(date(2024, 2, 5), "125 mg")]
    return timeline_svg(series, bands=bands, steps=steps, start=START, end=END, width=width)


def render(browser: Browser, html: str, viewport: int, png: Path | None = None) -> tuple[list[str], dict[str, float]]:
    """The page's console errors and CSP violations, and its svg's bounding box."""
    page = browser.new_page(viewport={"width": viewport, "height": 900}, java_script_enabled=False)
    problems: list[str] = []
    fetched: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: fetched.append(r.url))
    page.set_content(html)
    if png is not None:
        page.screenshot(path=str(png), full_page=True)
    box = page.locator("svg").first.bounding_box()
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport  # no sideways scrolling
    page.close()
    assert box is not None
    assert [u for u in fetched if not u.startswith(("about:", "data:"))] == []
    return problems, {"width": box["width"], "height": box["height"]}


@pytest.mark.parametrize(("name", "viewport", "width"), [("", 940, 900), ("-phone", 375, 375)])
def test_the_chart_draws_in_chromium_under_a_strict_csp(browser: Browser, artifacts: Path, name: str, viewport: int,
                                                        width: int) -> None:
    png = artifacts / f"chart{name}.png"
    problems, box = render(browser, page_with(a_chart(width)), viewport, png)
    assert problems == []
    assert box["width"] > viewport * 0.9 and box["height"] > 500
    assert png.stat().st_size > 20_000


def test_a_csp_violation_would_be_seen(browser: Browser) -> None:
    """The check above can fail: an inline style attribute, which the chart never writes, is reported."""
    problems, _ = render(browser, page_with('<svg viewBox="0 0 10 10"><rect style="fill:red" width="5" height="5"/>'
                                            "</svg>"), 375)
    assert any("Content Security Policy" in p for p in problems), problems


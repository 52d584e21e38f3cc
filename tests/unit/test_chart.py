"""The patient timeline chart (monitor.web.chart): its SVG parsed and checked for structure, scales,
escaping and what a strict CSP would refuse."""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from pathlib import Path

import pytest

from monitor.web import chart
from monitor.web.chart import Band, Point, Series, Step, Threshold, timeline_svg

SVG = "{http://www.w3.org/2000/svg}"
START, END = date(2025, 11, 1), date(2026, 1, 31)
HOSTILE = '<script>&"'


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def wbc(*values: tuple[date, float], thresholds: tuple[Threshold, ...] = ()) -> Series:
    return Series("WBC", "10*9/L", tuple(Point(d, v) for d, v in values), thresholds)


LOW = Threshold(3.5, "3.5 BSR leukopenia")
CRITICAL = Threshold(2.0, "2.0 hold azathioprine", critical=True)
RESULTS = ((date(2025, 11, 3), 5.2), (date(2025, 12, 1), 3.1), (date(2026, 1, 5), 1.8), (date(2026, 1, 30), 4.4))


def one(element: ET.Element, path: str) -> ET.Element:
    found = element.find(path)
    assert found is not None, path
    return found


def panels(root: ET.Element) -> list[ET.Element]:
    return root.findall(f"{SVG}g[@class='panel']")


def circles(panel: ET.Element) -> list[ET.Element]:
    return [c for c in panel.iter(f"{SVG}circle") if "result" in c.get("class", "").split()]


def y_of(panel: ET.Element) -> tuple[float, float]:
    """(slope, intercept) of the panel's value-to-y mapping, read off its y-axis tick labels."""
    ticks = [(float(t.text or ""), float(t.get("y", "")) - 4) for t in panel.iter(f"{SVG}text")
             if t.get("text-anchor") == "end"]
    (v0, y0), (v1, y1) = ticks[0], ticks[-1]
    slope = (y1 - y0) / (v1 - v0)
    return slope, y0 - slope * v0


def axis_labels(root: ET.Element) -> list[tuple[float, str]]:
    axis = one(root, f"{SVG}g[@class='axis']")
    return [(float(t.get("x", "")), t.text or "") for t in axis.iter(f"{SVG}text") if t.get("font-weight") != "bold"]


def test_it_is_one_svg_labelled_by_its_title_and_a_summary() -> None:
    root = parse(timeline_svg([wbc(*RESULTS)], start=START, end=END))
    assert root.tag == f"{SVG}svg" and root.get("role") == "img" and root.get("width") == "100%"
    assert re.fullmatch(r"0 0 900 \d+(\.\d)?", root.get("viewBox", ""))
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and desc is not None
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert desc.text == "WBC 4 results, latest 4.4 10*9/L on 2026-01-30."
    assert "2025-11-01 to 2026-01-31" in (title.text or "")


def test_it_draws_one_panel_per_series_in_the_order_given() -> None:
    series = [wbc(*RESULTS), Series("ALT", "U/L", (Point(date(2025, 12, 1), 31),)),
              Series("Platelets", "10*9/L", (Point(date(2025, 12, 1), 210),))]
    found = panels(parse(timeline_svg(series, start=START, end=END)))
    headings = [list(one(p, f"{SVG}text").itertext()) for p in found]
    assert headings == [["WBC", "10*9/L"], ["ALT", "U/L"], ["Platelets", "10*9/L"]]


def test_it_draws_a_dashed_line_for_each_threshold_at_its_value() -> None:
    [panel] = panels(parse(timeline_svg([wbc(*RESULTS, thresholds=(LOW, CRITICAL))], start=START, end=END)))
    slope, intercept = y_of(panel)
    lines = panel.findall(f"{SVG}line[@class='threshold']")
    assert len(lines) == 2 and all(line.get("stroke-dasharray") for line in lines)
    for line, t in zip(lines, (LOW, CRITICAL), strict=True):
        assert float(line.get("y1", "")) == float(line.get("y2", "")) == pytest.approx(slope * t.value + intercept,
                                                                                       abs=0.1)
    assert lines[0].get("stroke") != lines[1].get("stroke")  # the critical one stands out
    assert float(lines[1].get("stroke-width", "")) > float(lines[0].get("stroke-width", ""))
    labels = [t.text for t in panel.iter(f"{SVG}text") if t.get("class") == "threshold-label"]
    assert labels == ["3.5 BSR leukopenia", "2.0 hold azathioprine"]


def test_its_y_scale_takes_in_every_result_and_threshold() -> None:
    series = Series("ALT", "U/L", (Point(date(2025, 12, 1), 20), Point(date(2026, 1, 2), 35)),
                    (Threshold(120, "120 3x ULN"),))
    [panel] = panels(parse(timeline_svg([series], start=START, end=END)))
    ticks = [float(t.text or "") for t in panel.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks[0] <= 20 and ticks[-1] >= 120 and 3 <= len(ticks) <= 7
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1 and steps.pop() in (10, 20, 25, 50)


def test_each_result_in_the_span_is_a_dot_on_the_line_at_its_value() -> None:
    before, after = (date(2025, 10, 31), 9.9), (date(2026, 2, 1), 0.1)
    [panel] = panels(parse(timeline_svg([wbc(before, *RESULTS, after)], start=START, end=END)))
    slope, intercept = y_of(panel)
    dots = circles(panel)
    assert [float(c.get("cy", "")) for c in dots] == pytest.approx([slope * v + intercept for _, v in RESULTS], abs=0.1)
    xs = [float(c.get("cx", "")) for c in dots]
    assert xs == sorted(xs) and chart.LEFT < xs[0] and xs[-1] < 900 - chart.RIGHT
    polyline = panel.find(f"{SVG}polyline")
    assert polyline is not None and len(polyline.get("points", "").split()) == len(RESULTS)


def test_results_beyond_a_threshold_are_drawn_in_a_warning_colour_and_say_which() -> None:
    [panel] = panels(parse(timeline_svg([wbc(*RESULTS, thresholds=(LOW, CRITICAL))], start=START, end=END)))
    dots = circles(panel)
    assert ["warn" in c.get("class", "") for c in dots] == [False, True, True, False]
    assert dots[1].get("fill") == chart.WARN and dots[2].get("fill") == chart.RED  # past the critical one too
    assert dots[0].get("fill") == chart.LINE
    assert [c.findtext(f"{SVG}title") for c in dots[1:3]] == [
        "WBC 3.1 10*9/L on 2025-12-01 (beyond 3.5 BSR leukopenia)",
        "WBC 1.8 10*9/L on 2026-01-05 (beyond 3.5 BSR leukopenia; 2.0 hold azathioprine)"]


def test_a_threshold_above_the_median_is_an_upper_limit_unless_it_says_otherwise() -> None:
    mostly_low = ((date(2025, 12, 1), 2.8), (date(2025, 12, 8), 3.0), (date(2025, 12, 15), 4.1))
    guessed = panels(parse(timeline_svg([wbc(*mostly_low, thresholds=(LOW,))], start=START, end=END)))[0]
    assert ["warn" in c.get("class", "") for c in circles(guessed)] == [False, False, True]  # the guess misleads
    said = Threshold(3.5, "3.5 BSR leukopenia", direction="below")
    told = panels(parse(timeline_svg([wbc(*mostly_low, thresholds=(said,))], start=START, end=END)))[0]
    assert ["warn" in c.get("class", "") for c in circles(told)] == [True, True, False]


def test_phase_bands_alternate_behind_every_panel_with_their_labels_at_the_top() -> None:
    bands = [Band(date(2025, 6, 1), date(2025, 12, 1), "induction"),
             Band(date(2025, 12, 1), date(2026, 1, 10), "titration"),
             Band(date(2026, 1, 10), date(2026, 2, 1), "maintenance"),
             Band(date(2026, 3, 1), date(2026, 4, 1), "later")]
    root = parse(timeline_svg([wbc(*RESULTS), wbc(*RESULTS)], bands=bands, start=START, end=END))
    rects = root.findall(f"{SVG}rect[@class='band']")
    assert len(rects) == 3 and rects[0].get("fill") == rects[2].get("fill") != rects[1].get("fill")
    assert float(rects[0].get("x", "")) == chart.LEFT  # cut at the chart's start
    assert float(rects[2].get("x", "")) + float(rects[2].get("width", "")) == pytest.approx(900 - chart.RIGHT)
    last_plot = one(panels(root)[-1], f"{SVG}rect")
    assert float(rects[0].get("height", "")) >= float(last_plot.get("y", "")) + chart.PLOT
    labels = root.findall(f"{SVG}text[@class='band-label']")
    assert [t.text for t in labels] == ["induction", "titration", "maintenance"]
    assert all(float(t.get("y", "")) < float(one(panels(root)[0], f"{SVG}text").get("y", "")) for t in labels)


def test_dose_steps_are_thin_vertical_lines_labelled_at_the_top() -> None:
    steps = [Step(date(2025, 12, 1), "100 mg"), Step(date(2025, 12, 2), "125 mg"), Step(date(2026, 3, 1), "150 mg")]
    root = parse(timeline_svg([wbc(*RESULTS)], steps=steps, start=START, end=END))
    drawn = root.findall(f"{SVG}g[@class='step']")
    assert [g.findtext(f"{SVG}text") for g in drawn] == ["100 mg", "125 mg"]
    xs = [re.findall(r"M([\d.]+) ", one(g, f"{SVG}path").get("d", "")) for g in drawn]
    assert all(len(set(x)) == 1 for x in xs) and float(xs[0][0]) < float(xs[1][0])
    label_ys = [float(one(g, f"{SVG}text").get("y", "")) for g in drawn]
    assert label_ys[1] > label_ys[0]  # a day apart: the second label goes below, clear of the first
    assert label_ys[1] < float(one(panels(root)[0], f"{SVG}text").get("y", ""))


def test_labels_in_one_row_never_overlap_and_no_step_line_crosses_an_earlier_label() -> None:
    steps = [Step(date(2025, 11, 3) + timedelta(days=4 * i), f"{50 + 25 * i} mg") for i in range(6)]
    labels = [(4, 50), (30, 80), (60, 110), (120, 130)]
    assert chart._lanes(labels) == [0, 1, 0, 0]
    assert chart._lanes(labels, lines=[0, 26, 56, 116]) == [0, 1, 2, 0]  # each line clear of the labels before
    assert chart._lanes([(834, 876), (849, 891)], lines=[880, 895]) == [1, 0]  # flipped left of theirs at the end
    root = parse(timeline_svg([wbc(*RESULTS)], steps=steps, start=START, end=END, width=375))
    assert len({one(g, f"{SVG}text").get("y") for g in root.findall(f"{SVG}g[@class='step']")}) == 6


def test_text_from_outside_is_escaped() -> None:
    series = Series(HOSTILE, HOSTILE, (Point(date(2025, 12, 1), 3.0),), (Threshold(3.5, HOSTILE),))
    svg = timeline_svg([series], bands=[Band(START, END, HOSTILE)], steps=[Step(date(2025, 12, 1), HOSTILE)],
                       start=START, end=END)
    root = parse(svg)
    assert "<script" not in svg
    texts = [t.text for t in root.iter(f"{SVG}text")] + [t.text for t in root.iter(f"{SVG}tspan")]
    assert texts.count(HOSTILE) == 5  # analyte, unit, threshold key, band and step labels
    assert HOSTILE in (root.findtext(f"{SVG}desc") or "") and HOSTILE in (root.findtext(f"{SVG}title") or "")


def test_characters_xml_cannot_hold_are_dropped() -> None:
    root = parse(timeline_svg([wbc(*RESULTS)], steps=[Step(date(2025, 12, 1), "100\x00 mg\x1b")], start=START, end=END))
    assert one(root, f"{SVG}g[@class='step']/{SVG}text").text == "100 mg"


def test_it_holds_nothing_a_strict_csp_would_refuse() -> None:
    svg = timeline_svg([wbc(*RESULTS, thresholds=(LOW, CRITICAL))], bands=[Band(START, END, "induction")],
                       steps=[Step(date(2025, 12, 1), "100 mg")], start=START, end=END)
    assert "<script" not in svg and not re.search(r"\sstyle=", svg) and "<style" not in svg
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for element in parse(svg).iter():
        assert not [a for a in element.attrib if a.lower().startswith("on") or a.endswith("href") or a == "style"]


def test_a_series_with_no_results_in_the_span_keeps_its_panel_saying_no_results() -> None:
    series = [wbc(*RESULTS), Series("ALT", "U/L", (Point(date(2024, 1, 1), 30),), (Threshold(100, "100 BSR"),)),
              Series("Bilirubin", "umol/L", ())]
    root = parse(timeline_svg(series, start=START, end=END))
    found = panels(root)
    assert len(found) == 3 and [len(circles(p)) for p in found] == [4, 0, 0]
    assert [t.text for p in found for t in p.iter(f"{SVG}text") if t.get("class") == "empty"] == ["no results"] * 2
    assert len(found[1].findall(f"{SVG}line[@class='threshold']")) == 1
    assert (root.findtext(f"{SVG}desc") or "").endswith("ALT no results; Bilirubin no results.")


def test_a_single_result_is_one_dot() -> None:
    root = parse(timeline_svg([wbc((date(2025, 12, 1), 4.2))], start=START, end=END))
    [panel] = panels(root)
    assert len(circles(panel)) == 1
    assert "WBC 1 result, latest 4.2" in (root.findtext(f"{SVG}desc") or "")


@pytest.mark.parametrize("value", [0.0, 5.0, 0.0001, 250_000.0])
def test_equal_values_get_a_scale_around_them(value: float) -> None:
    [panel] = panels(parse(timeline_svg([wbc((date(2025, 12, 1), value), (date(2025, 12, 9), value))],
                                        start=START, end=END)))
    slope, intercept = y_of(panel)
    top = float(one(panel, f"{SVG}rect").get("y", ""))
    assert slope < 0 and all(top <= float(c.get("cy", "")) <= top + chart.PLOT for c in circles(panel))


def test_a_one_day_span_draws_its_result_in_the_middle() -> None:
    day = date(2026, 1, 30)
    root = parse(timeline_svg([wbc((day, 3.1), (day + timedelta(1), 3.0))], start=day, end=day))
    [dot] = circles(panels(root)[0])
    assert float(dot.get("cx", "")) == pytest.approx(chart.LEFT + (900 - chart.LEFT - chart.RIGHT) / 2, abs=0.1)
    [(x, label)] = axis_labels(root)
    assert label == "30 Jan" and x == pytest.approx(float(dot.get("cx", "")))


@pytest.mark.parametrize("width", [375, 900])
@pytest.mark.parametrize("days", [1, 14, 45, 100, 365, 3 * 365, 5 * 365 + 1])
def test_the_date_axis_labels_never_overlap(days: int, width: int) -> None:
    root = parse(timeline_svg([wbc(*RESULTS)], start=START, end=START + timedelta(days=days - 1), width=width))
    labels = axis_labels(root)
    assert 1 <= len(labels) <= 20
    for (x0, a), (x1, b) in zip(labels, labels[1:], strict=False):
        assert x1 - x0 >= (chart._wide(a) + chart._wide(b)) / 2, (a, b)
    assert all(0 <= x - chart._wide(t) / 2 and x + chart._wide(t) / 2 <= width for x, t in labels)


def test_a_five_year_span_is_labelled_by_year_on_a_phone_and_by_half_year_wider() -> None:
    phone = parse(timeline_svg([wbc(*RESULTS)], start=date(2021, 2, 1), end=date(2026, 1, 31), width=375))
    assert [t for _, t in axis_labels(phone)] == ["2022", "2023", "2024", "2025", "2026"]
    wide = parse(timeline_svg([wbc(*RESULTS)], start=date(2021, 2, 1), end=date(2026, 1, 31)))
    assert [t for _, t in axis_labels(wide)] == ["Jul", "Jan"] * 5
    axis = one(wide, f"{SVG}g[@class='axis']")
    assert [t.text for t in axis.iter(f"{SVG}text") if t.get("font-weight") == "bold"] == [
        "2021", "2022", "2023", "2024", "2025", "2026"]


def test_a_two_week_span_is_labelled_by_day_with_the_year_where_it_starts_and_changes() -> None:
    root = parse(timeline_svg([wbc(*RESULTS)], start=date(2025, 12, 25), end=date(2026, 1, 7)))
    assert [t for _, t in axis_labels(root)][:3] == ["25 Dec", "26 Dec", "27 Dec"]
    axis = one(root, f"{SVG}g[@class='axis']")
    assert [t.text for t in axis.iter(f"{SVG}text") if t.get("font-weight") == "bold"] == ["2025", "2026"]


def test_a_span_of_months_is_labelled_by_month_with_the_year_at_january() -> None:
    root = parse(timeline_svg([wbc(*RESULTS)], start=date(2025, 6, 1), end=date(2026, 3, 31)))
    assert [t for _, t in axis_labels(root)] == ["Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Jan", "Feb", "Mar"]


def test_numbers_are_written_compactly() -> None:
    svg = timeline_svg([wbc((date(2025, 12, 1), 0.1 + 0.2), (date(2025, 12, 2), 1 / 3))], start=START, end=END)
    assert not re.search(r"\d\.\d{7,}", svg)  # 6 significant digits at most
    for element in parse(svg).iter():
        assert all(re.fullmatch(r"-?\d+(\.\d)?", element.get(a, "0")) for a in ("x", "y", "cx", "cy", "x1", "y2"))
    assert "0.3 10*9/L on 2025-12-01" in svg


def test_non_finite_values_are_left_out() -> None:
    root = parse(timeline_svg([wbc((date(2025, 12, 1), float("nan")), (date(2025, 12, 2), 3.3))], start=START, end=END))
    assert len(circles(panels(root)[0])) == 1


def test_the_same_input_gives_the_same_output_and_another_chart_other_ids() -> None:
    one = timeline_svg([wbc(*RESULTS)], start=START, end=END)
    assert one == timeline_svg([wbc(*RESULTS)], start=START, end=END)
    other = timeline_svg([wbc(*RESULTS[:2])], start=START, end=END)
    assert parse(one).get("aria-labelledby") != parse(other).get("aria-labelledby")


def test_a_chart_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        timeline_svg([], start=END, end=START)
    with pytest.raises(ValueError, match="no room"):
        timeline_svg([], start=START, end=END, width=100)


def test_a_chart_of_no_series_is_just_its_date_axis() -> None:
    root = parse(timeline_svg([], bands=[Band(START, END, "induction")], start=START, end=END))
    assert panels(root) == [] and [t for _, t in axis_labels(root)][:2] == ["3 Nov", "10 Nov"]  # Mondays


def test_the_chart_module_needs_only_the_standard_library() -> None:
    tree = ast.parse(Path(chart.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names} <= {"__future__"}

"""The patient timeline: lab series over time as one server-side SVG, no JavaScript (issue 16).

Small multiples: one panel per series stacked vertically over one shared date axis, each with its
own y scale (the results and the series' thresholds, padded, on round ticks), the results as a line
with a dot each, and a dashed line per threshold, keyed with its label in the panel's heading (so
no label ever hides a result). Treatment phases are alternating background bands across every
panel, dose steps thin vertical lines, both labelled at the top (in extra rows where labels would
overlap). Results beyond a threshold are drawn larger, in orange (red beyond a critical one), with
a tooltip (`<title>`) saying which.

Days: the chart spans `start` to `end` inclusive. A result sits at the middle of its day; band
edges, dose steps and month ticks at the start of theirs. Results outside the span are not drawn.

Which side of a threshold is abnormal: `Threshold.direction`, "below" (results below the value
are beyond it, as a protocol's `below`) or "above" (as `above`); the comparison is strict, as the
rules' is. Left `None`, it is guessed from the series' median (every result given, in the span or
not): a threshold under the median is a low one. The guess fails when most results are abnormal (a
patient mostly leukopenic makes 3.5 look like an upper limit), so a caller that knows should say.

Safe to inline under a strict CSP: no script, no event handlers, no `style` (presentation
attributes only), no external reference; every text from outside is XML-escaped. The same input
gives the same bytes. Text sizes are in viewBox units and the SVG scales to its container
(`width="100%"`), so render at about the width it is shown at: 900 on a desktop, 375 on a phone.
"""

from __future__ import annotations

import hashlib
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Point:
    on: date
    value: float


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str  # e.g. "3.5 BSR leukopenia"
    critical: bool = False
    direction: Literal["below", "above"] | None = None  # which side is abnormal; None: guessed (module doc)


@dataclass(frozen=True)
class Series:
    analyte: str  # e.g. "WBC"
    unit: str  # UCUM, e.g. "10*9/L"
    points: tuple[Point, ...]
    thresholds: tuple[Threshold, ...] = ()


@dataclass(frozen=True)
class Band:
    """A treatment phase."""

    start: date
    end: date  # exclusive; the last band ends at the chart's end
    label: str  # e.g. "induction"


@dataclass(frozen=True)
class Step:
    """A dose step or change."""

    on: date
    label: str  # e.g. "100 mg"


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
FONT, SMALL, ROW = 12, 11, 15  # text sizes and one row of labels, in viewBox units (wide fonts first: see _wide)
LEFT, RIGHT, PLOT, GAP, AXIS = 46, 14, 88, 12, 38  # margins, panel parts, date axis
INK, MUTED, FRAME, GRID = "#212529", "#5c636a", "#adb5bd", "#dee2e6"
LINE, WARN, AMBER, RED, STEP = "#1c4f82", "#d9480f", "#a87000", "#c92a2a", "#6741d9"
BANDS = ("#e7eef6", "#f5f7fa")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _t(text: str) -> str:
    """Outside text as XML character data (characters XML cannot hold dropped)."""
    return escape(_NOT_XML.sub("", text))


def _n(v: float) -> str:
    """A coordinate, compactly: at most one decimal."""
    s = f"{v:.1f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def _wide(text: str, size: int = SMALL) -> float:
    """About how wide a text is drawn in a sans-serif font (a little generous)."""
    return len(text) * size * 0.62


def _nice(raw: float) -> float:
    mag = 10.0 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))


def _y_scale(values: list[float]) -> tuple[float, float, list[float], int]:
    """(low, high, ticks, decimals): the values padded, out to round ticks (3 to 7 of them)."""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    lo, hi = (0.0 if 0 <= lo < pad else lo - pad), hi + pad
    step = _nice((hi - lo) / 4)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    decimals = len(f"{step:.9f}".rstrip("0").partition(".")[2])
    return first * step, last * step, [k * step for k in range(first, last + 1)], decimals


def _lanes(spans: Sequence[tuple[float, float]], lines: Sequence[float] = ()) -> list[int]:
    """The row of each label (in x order): the first where it overlaps no label placed before and,
    given the x of each label's line (a dose step's, drawn down from its label's row), where no line
    crosses a label; a new row below the rest when no row can keep both. Labels right of their lines
    are placed from the left, those flipped left of theirs (at the chart's end) from the right."""
    lanes: dict[int, int] = {}

    def fits(j: int, k: int) -> bool:
        (x0, x1), ok = spans[j], True
        for i, lane in lanes.items():
            a, b = spans[i]
            ok &= not (lane == k and a < x1 + 6 and x0 < b + 6)
            if lines:
                ok &= not (a - 2 <= lines[j] <= b + 2 and lane >= k)  # this line through that label
                ok &= not (x0 - 2 <= lines[i] <= x1 + 2 and lane <= k)  # that line through this label
        return ok

    flipped = [j for j in range(len(spans)) if lines and spans[j][1] <= lines[j]]
    for j in [j for j in range(len(spans)) if j not in flipped] + flipped[::-1]:
        lanes[j] = next((k for k in range(len(lanes) + 1) if fits(j, k)), max(lanes.values(), default=-1) + 1)
    return [lanes[j] for j in range(len(spans))]


def _in_span(s: Series, start: date, end: date) -> list[Point]:
    """The series' drawable points from `start` to `end` inclusive, in date order."""
    return sorted((p for p in s.points if start <= p.on <= end and math.isfinite(p.value)), key=lambda p: p.on)


def _beyond(v: float, t: Threshold, median: float | None) -> bool:
    low = t.direction == "below" if t.direction else median is not None and t.value < median
    return v < t.value if low else v > t.value


class _Chart:
    def __init__(self, start: date, end: date, width: int) -> None:
        self.start, self.days, self.width = start, (end - start).days + 1, width
        self.plot_w = width - LEFT - RIGHT

    def x(self, day: date, noon: bool = False) -> float:
        return LEFT + ((day - self.start).days + (0.5 if noon else 0)) / self.days * self.plot_w

    def ticks(self) -> list[tuple[float, str, bool]]:
        """(x, label, year?) for the date axis: days, Mondays, months or years, as room allows."""
        per_day, end = self.plot_w / self.days, self.start + timedelta(self.days)
        for step in (1, 2, 7, 14):
            if step * per_day >= 46:
                first = self.start if step < 7 else self.start + timedelta((7 - self.start.weekday()) % 7)
                marks = [(self.x(d, noon=True), d, f"{d.day} {MONTHS[d.month - 1]}")
                         for d in (first + timedelta(k) for k in range(0, (end - first).days, step))]
                break
        else:
            months = next((m for m in (1, 2, 3, 6, 12, 24) if m * 30.4 * per_day >= 44), 60)
            m = self.start.year * 12 + self.start.month - 1 + (self.start.day > 1)
            firsts = [date(k // 12, k % 12 + 1, 1) for k in range(m + (-m) % months, end.year * 12 + end.month, months)]
            marks = [(self.x(d), d, str(d.year) if months >= 12 else MONTHS[d.month - 1]) for d in firsts if d < end]
            if months >= 12:
                return [(x, label, False) for x, _, label in marks]
        out: list[tuple[float, str, bool]] = []
        for i, (x, d, label) in enumerate(marks):
            out.append((x, label, False))
            if i == 0 or d.year != marks[i - 1][1].year:
                out.append((x, str(d.year), True))
        return out


def timeline_svg(series: Sequence[Series], *, bands: Sequence[Band] = (), steps: Sequence[Step] = (),
                 start: date, end: date, width: int = 900) -> str:
    """The chart of `series` from `start` to `end` (inclusive) as one `<svg>` element."""
    if end < start:
        raise ValueError(f"the chart ends ({end}) before it starts ({start})")
    if width < 240:
        raise ValueError(f"a chart {width} wide has no room for its panels (240 at least)")
    c = _Chart(start, end, width)
    right = width - RIGHT
    key = hashlib.sha256(repr((series, bands, steps, start, end, width)).encode()).hexdigest()[:10]
    shown = [b for b in sorted(bands, key=lambda b: b.start) if b.end > start and b.start <= end and b.end > b.start]
    dated = [s for s in sorted(steps, key=lambda s: s.on) if start <= s.on <= end]

    def spans(xs: list[float], labels: list[str], flip: bool) -> list[tuple[float, float]]:
        """Where labels go: just right of x, or where that overflows, flush right (or, `flip`, just left of x)."""
        return [(x + 4, x + 4 + w) if x + 4 + w <= right else (x - 4 - w, x - 4) if flip else (right - w, right)
                for x, w in ((x, _wide(t)) for x, t in zip(xs, labels, strict=True))]

    band_x = [(max(c.x(b.start), LEFT), min(c.x(b.end), right)) for b in shown]
    band_spans = spans([x0 for x0, _ in band_x], [b.label for b in shown], flip=False)
    step_spans = spans([c.x(s.on) for s in dated], [s.label for s in dated], flip=True)
    band_lanes, step_lanes = _lanes(band_spans), _lanes(step_spans, [c.x(s.on) for s in dated])
    n_band, n_step = max(band_lanes, default=-1) + 1, max(step_lanes, default=-1) + 1
    top = 4 + (n_band + n_step) * ROW
    keys = [_keys(s, width) for s in series]
    heights = [(max((row for _, row, _ in k), default=0) + 1) * ROW + 5 + PLOT + GAP for k in keys]
    tops = [top + sum(heights[:i]) for i in range(len(series))]
    plots = [(y0 + h - GAP - PLOT, y0 + h - GAP) for y0, h in zip(tops, heights, strict=True)]
    bottom = top + sum(heights)
    height = bottom + AXIS

    out = [f'<rect x="0" y="0" width="{width}" height="{_n(height)}" fill="#ffffff"/>']
    out += [f'<rect class="band" x="{_n(x0)}" y="0" width="{_n(x1 - x0)}" height="{_n(bottom)}" fill="{BANDS[i % 2]}"/>'
            for i, (x0, x1) in enumerate(band_x)]
    out += [f'<text class="band-label" x="{_n(lx)}" y="{_n(4 + lane * ROW + 11)}" font-size="{SMALL}" fill="{MUTED}" '
            f'font-style="italic">{_t(b.label)}</text>'
            for b, (lx, _), lane in zip(shown, band_spans, band_lanes, strict=True)]
    ticks = c.ticks()
    for s, k, y0, plot in zip(series, keys, tops, plots, strict=True):
        out.append(_panel(s, c, k, y0, plot, ticks))
    for st, (lx, _), lane in zip(dated, step_spans, step_lanes, strict=True):
        sx, ly = _n(c.x(st.on)), 4 + (n_band + lane) * ROW
        d = f"M{sx} {_n(ly + 1)}V{_n(top)}" + "".join(f"M{sx} {_n(p0)}V{_n(p1)}" for p0, p1 in plots)
        out.append(f'<g class="step"><path d="{d}" stroke="{STEP}" stroke-width="1.2" stroke-opacity="0.75"/>'
                   f'<text x="{_n(lx)}" y="{_n(ly + 11)}" font-size="{SMALL}" fill="{STEP}" font-weight="bold">'
                   f'{_t(st.label)}</text></g>')
    axis_y = bottom - GAP
    out.append(f'<g class="axis" font-size="{SMALL}" fill="{INK}" text-anchor="middle">')
    for x, label, year in ticks:
        if x - _wide(label) / 2 < 0 or x + _wide(label) / 2 > width:
            continue
        if year:
            out.append(f'<text x="{_n(x)}" y="{_n(axis_y + 31)}" font-weight="bold">{label}</text>')
        else:
            out.append(f'<line x1="{_n(x)}" y1="{_n(axis_y)}" x2="{_n(x)}" y2="{_n(axis_y + 4)}" stroke="{FRAME}"/>'
                       f'<text x="{_n(x)}" y="{_n(axis_y + 16)}">{label}</text>')
    out.append("</g>")

    title = f"Results from {start} to {end}: {', '.join(s.analyte for s in series) or 'none'}"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {_n(height)}" width="100%" role="img" '
            f'aria-labelledby="chart-{key}-title chart-{key}-desc" font-family="DejaVu Sans, Verdana, sans-serif">'
            f'<title id="chart-{key}-title">{_t(title)}</title>'
            f'<desc id="chart-{key}-desc">{_t(_summary(series, shown, dated, start, end))}</desc>'
            + "".join(out) + "</svg>")


def _summary(series: Sequence[Series], bands: list[Band], steps: list[Step], start: date, end: date) -> str:
    parts = []
    for s in series:
        points = _in_span(s, start, end)
        parts.append(f"{s.analyte} {len(points)} result{'s' * (len(points) != 1)}, latest {points[-1].value:g} "
                     f"{s.unit} on {points[-1].on}" if points else f"{s.analyte} no results")
    if bands:
        parts.append("phases: " + ", ".join(f"{b.label} from {max(b.start, start)}" for b in bands))
    if steps:
        parts.append("dose steps: " + ", ".join(f"{s.label} on {s.on}" for s in steps))
    return "; ".join(parts) + "."


def _dash(t: Threshold) -> str:
    return (f'stroke="{RED if t.critical else AMBER}" stroke-width="{1.6 if t.critical else 1.2}" '
            'stroke-dasharray="6 4"')


def _thresholds(s: Series) -> list[Threshold]:
    return sorted((t for t in s.thresholds if math.isfinite(t.value)), key=lambda t: -t.value)  # top to bottom


def _keys(s: Series, width: int) -> list[tuple[float, int, Threshold]]:
    """Where each threshold's key (a line sample and its label) goes in the panel's heading, after
    the name and unit, in rows as wide as the chart: (x, row, threshold)."""
    x, row, out = 4 + _wide(s.analyte + s.unit, FONT) + 22, 0, []
    for t in _thresholds(s):
        if x + 24 + _wide(t.label) > width - RIGHT and x > 4:
            x, row = 4, row + 1
        out.append((x, row, t))
        x += 24 + _wide(t.label) + 12
    return out


def _panel(s: Series, c: _Chart, keys: list[tuple[float, int, Threshold]], y0: float, plot: tuple[float, float],
           ticks: list[tuple[float, str, bool]]) -> str:
    """One series' panel: its heading (name, unit, threshold keys), y scale, grid, thresholds, line and dots."""
    (p0, p1), right = plot, c.width - RIGHT
    end = c.start + timedelta(c.days - 1)
    points = _in_span(s, c.start, end)
    thresholds = _thresholds(s)
    finite = [p.value for p in s.points if math.isfinite(p.value)]
    median = statistics.median(finite) if finite else None
    out = [f'<g class="panel"><text x="4" y="{_n(y0 + 13)}" font-size="{FONT}" fill="{INK}">'
           f'<tspan font-weight="bold">{_t(s.analyte)}</tspan><tspan fill="{MUTED}" dx="6">{_t(s.unit)}</tspan></text>',
           f'<rect x="{LEFT}" y="{_n(p0)}" width="{_n(c.plot_w)}" height="{PLOT}" fill="none" stroke="{FRAME}"/>']
    out += [f'<line x1="{_n(kx)}" y1="{_n(y0 + row * ROW + 9)}" x2="{_n(kx + 20)}" y2="{_n(y0 + row * ROW + 9)}" '
            f'{_dash(t)}/><text class="threshold-label" x="{_n(kx + 24)}" y="{_n(y0 + row * ROW + 13)}" '
            f'font-size="{SMALL}" fill="{RED if t.critical else AMBER}">{_t(t.label)}</text>' for kx, row, t in keys]
    out += [f'<line x1="{_n(x)}" y1="{_n(p0)}" x2="{_n(x)}" y2="{_n(p1)}" stroke="{GRID}"/>'
            for x, _, year in ticks if not year and LEFT < x < right]
    values = [p.value for p in points] + [t.value for t in thresholds]
    if values:
        lo, hi, yticks, decimals = _y_scale(values)

        def y(v: float) -> float:
            return p1 - (v - lo) / (hi - lo) * PLOT

        for v in yticks:
            out.append(f'<line x1="{LEFT}" y1="{_n(y(v))}" x2="{_n(right)}" y2="{_n(y(v))}" stroke="{GRID}"/>'
                       f'<text x="{LEFT - 5}" y="{_n(y(v) + 4)}" font-size="{SMALL}" fill="{MUTED}" '
                       f'text-anchor="end">{v:.{decimals}f}</text>')
        for t in thresholds:
            out.append(f'<line class="threshold" x1="{LEFT}" y1="{_n(y(t.value))}" x2="{_n(right)}" '
                       f'y2="{_n(y(t.value))}" {_dash(t)}/>')
        xy = [(c.x(p.on, noon=True), y(p.value)) for p in points]
        if points:
            out.append(f'<polyline points="{" ".join(f"{_n(a)},{_n(b)}" for a, b in xy)}" fill="none" '
                       f'stroke="{LINE}" stroke-width="1.6" stroke-linejoin="round"/>')
        for p, (px, py) in zip(points, xy, strict=True):
            crossed = [t for t in thresholds if _beyond(p.value, t, median)]
            tip = f"{s.analyte} {p.value:g} {s.unit} on {p.on}"
            tip += f" (beyond {'; '.join(t.label for t in crossed)})" if crossed else ""
            fill = RED if any(t.critical for t in crossed) else WARN if crossed else LINE
            out.append(f'<circle class="{"result warn" if crossed else "result"}" cx="{_n(px)}" cy="{_n(py)}" '
                       f'r="{4.2 if crossed else 2.8}" fill="{fill}" stroke="#ffffff" stroke-width="1">'
                       f'<title>{_t(tip)}</title></circle>')
    if not points:
        mx, my = LEFT + c.plot_w / 2, (p0 + p1) / 2
        out.append(f'<rect x="{_n(mx - 40)}" y="{_n(my - 9)}" width="80" height="18" fill="#ffffff"/><text '
                   f'class="empty" x="{_n(mx)}" y="{_n(my + 4)}" font-size="{FONT}" fill="{MUTED}" '
                   'text-anchor="middle">no results</text>')
    return "".join(out) + "</g>"

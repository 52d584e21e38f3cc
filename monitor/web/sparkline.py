"""A site's overdue rate over the last weeks as a small inline SVG (drawn on the server: no JS)."""

from __future__ import annotations

from collections.abc import Sequence

WIDTH, HEIGHT, PAD = 120, 28, 2


def rate_sparkline(weekly: Sequence[float | None]) -> str:
    """A polyline of the weekly rates (0-100 %, the scale fixed so that sites compare), a gap where a
    week has no closed day; the last point is marked."""
    if not weekly:
        return ""
    step = (WIDTH - 2 * PAD) / max(1, len(weekly) - 1)

    def xy(i: int, rate: float) -> str:
        return f"{PAD + i * step:.1f},{HEIGHT - PAD - rate * (HEIGHT - 2 * PAD):.1f}"

    runs: list[list[str]] = [[]]
    for i, rate in enumerate(weekly):
        if rate is None:
            runs.append([])
        else:
            runs[-1].append(xy(i, rate))
    lines = "".join(f'<polyline points="{" ".join(r)}" fill="none" stroke="#1a4f8b" stroke-width="1.5"/>'
                    for r in runs if len(r) > 1)
    dots = "".join(f'<circle cx="{r[0].split(",")[0]}" cy="{r[0].split(",")[1]}" r="1.5" fill="#1a4f8b"/>'
                   for r in runs if len(r) == 1)
    last = next(((i, v) for i, v in reversed(list(enumerate(weekly))) if v is not None), None)
    mark = "" if last is None else (
        f'<circle cx="{xy(*last).split(",")[0]}" cy="{xy(*last).split(",")[1]}" r="2.5" fill="#b00020"/>')
    shown = [f"{100 * v:.0f} %" if v is not None else "none" for v in weekly]
    return (f'<svg class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="weekly overdue rate, oldest first: {", ".join(shown)}">'
            f'<line x1="0" y1="{HEIGHT - PAD}" x2="{WIDTH}" y2="{HEIGHT - PAD}" stroke="#c8ccd2"/>'
            f"{lines}{dots}{mark}</svg>")

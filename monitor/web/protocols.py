"""The read-only protocol viewer: each rule of a protocol file with its source, as the engine
loaded it (so what the page says is what the daily cycle applies)."""

from __future__ import annotations

from typing import Any

from monitor.domain.protocol import MonitoringProtocol, Stage, Threshold
from monitor.protocols import Library


def protocol_list(library: Library) -> list[dict[str, str]]:
    return [{"id": p.id, "title": p.title, "version": p.version}
            for p in (library.get(i) for i in sorted(library.ids()))]


def _stage(owner: str, s: Stage) -> dict[str, Any]:
    if s.at_days:
        when = "on days " + ", ".join(str(d) for d in s.at_days)
    else:
        until = (f" until day {s.until_day}" if s.until_day is not None else
                 f", {s.count} draws" if s.count is not None else "")
        stable = f" and until the dose is unchanged {s.until_dose_stable_days} days" if s.until_dose_stable_days else ""
        when = f"every {s.every_days} days{until}{stable}"
    return {"clock": owner, "id": s.id, "panels": ", ".join(s.panels), "when": when,
            "window": f"± {s.window_days} days", "source": s.source}


def _cut(t: Threshold) -> str:
    if t.below is not None:
        return f"< {t.below:g}"
    if t.above is not None:
        return f"> {t.above:g}"
    return f"> {t.above_uln_times:g} × ULN" if t.above_uln_times is not None else ""


def protocol_rules(p: MonitoringProtocol) -> dict[str, Any]:
    stages = [_stage(p.safety.title, s) for s in p.safety.stages]
    stages += [_stage(f"{phase.value.replace('_', ' ')} (disease)", s)
               for phase, clock in p.disease.items() for s in clock.stages]
    return {
        "protocol": {"id": p.id, "title": p.title, "version": p.version},
        "sources": sorted(p.sources.items()),
        "stages": stages,
        "thresholds": [{"id": t.id, "analyte": t.analyte, "cut": _cut(t), "severity": t.severity.value,
                        "action": t.action, "withhold": t.withhold, "source": t.source} for t in p.thresholds],
        "interactions": [{"id": x.id, "drugs": ", ".join(x.drugs), "severity": x.severity.value, "action": x.action,
                          "source": x.source} for x in p.interactions],
        "grading": [{"analyte": g.analyte, "term": g.term, "cuts": ", ".join("-" if c is None else f"{c:g}"
                                                                             for c in g.cuts),
                     "direction": g.direction, "source": g.source} for g in p.grading.terms.values()],
        "grading_name": f"{p.grading.name} {p.grading.version}",
    }

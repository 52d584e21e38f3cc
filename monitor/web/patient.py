"""The patient page: the course as a chart (results, threshold lines, phase bands, dose steps),
then the plan, flags and results (`monitor patient`'s view), and the forms that record doses,
weight, drugs and genotypes or confirm a phase proposal (the CLI's services)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlmodel import Session

from monitor.app import App
from monitor.domain.errors import UserError
from monitor.domain.protocol import MonitoringProtocol, Phase, Severity
from monitor.domain.snapshot import Snapshot
from monitor.services import patients
from monitor.services.lookup import visible
from monitor.services.users import User
from monitor.services.views import by_problem, patient_record
from monitor.web.auth import sites_of
from monitor.web.chart import Band, Point, Series, Step, Threshold, timeline_svg

#: What the chart draws, in this order (the analytes the drug's toxicity shows in first).
CHARTED = ("WBC", "NEUT", "LYMPH", "PLT", "ALT", "BILI")
SHOWN = timedelta(days=3 * 366)  # the chart's span: the last three years at most
GENES = ("TPMT", "NUDT15")


def _thresholds(protocol: MonitoringProtocol, analyte: str, uln: float | None) -> tuple[Threshold, ...]:
    """The protocol's cut points for an analyte as lines: absolute ones as they are, × ULN ones at the
    patient's latest upper limit (the lab's, else the protocol's fallback)."""
    lines: dict[float, Threshold] = {}
    for t in protocol.thresholds:
        if t.analyte != analyte:
            continue
        value = t.below if t.below is not None else t.above
        if value is None and t.above_uln_times is not None and uln is not None:
            value = t.above_uln_times * uln
        if value is None:
            continue
        critical = t.severity == Severity.CRITICAL
        if value not in lines or critical:
            lines[value] = Threshold(value, f"{value:g} {t.kind.replace('_', ' ')}", critical,
                                     direction="below" if t.below is not None else "above")
    return tuple(lines[v] for v in sorted(lines))


def course_chart(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date) -> str:
    # From a month before the start (never after a month before today: a start ahead shows the
    # results before it), at most three years.
    start = min(max(snapshot.start_on, today - SHOWN + timedelta(days=30)), today) - timedelta(days=30)
    series = []
    for analyte in CHARTED:
        finals = [r for r in snapshot.finals(analyte, today) if r.observed_on >= start]
        uln = next((r.ref_high for r in reversed(finals) if r.ref_high is not None), None)
        fallback = protocol.reference_ranges.get(analyte)
        uln = uln if uln is not None else (fallback.high if fallback else None)
        points = tuple(Point(r.observed_on, r.value) for r in finals)
        series.append(Series(analyte, protocol.units.get(analyte, ""), points, _thresholds(protocol, analyte, uln)))
    phases = snapshot.phases
    bands = [Band(max(p.started_on, start), phases[i + 1].started_on if i + 1 < len(phases) else today + timedelta(1),
                  p.phase.value.replace("_", " "))
             for i, p in enumerate(phases) if i + 1 >= len(phases) or phases[i + 1].started_on > start]
    steps = [Step(d.on, f"{d.dose_mg:g} mg") for d in snapshot.doses if start <= d.on <= today]
    return timeline_svg(series, bands=bands, steps=steps, start=start, end=today)


def history(snapshot: Snapshot) -> list[tuple[date, str, str]]:
    """What was recorded about the course, newest first: phases, doses, weights, genotypes, drugs."""
    events = [(p.started_on, "phase", p.phase.value.replace("_", " ") + (f": {p.reason}" if p.reason else ""))
              for p in snapshot.phases]
    events += [(d.on, "dose", f"{d.drug} {d.dose_mg:g} mg/day") for d in snapshot.doses]
    events += [(w.on, "weight", f"{w.kg:g} kg") for w in snapshot.weights]
    events += [(g.on, "genotype", f"{g.gene} {g.status}") for g in snapshot.genotypes]
    events += [(m.started_on, "drug started", m.drug) for m in snapshot.medications]
    events += [(m.stopped_on, "drug stopped", m.drug) for m in snapshot.medications if m.stopped_on]
    return sorted(events, key=lambda e: e[0], reverse=True)


def patient_page(session: Session, a: App, patient_id: int, *, user: User, today: date) -> dict[str, Any]:
    patient, enrollment = visible(session, sites_of(user), patient_id=patient_id)
    view, snapshot, protocol = patient_record(session, a.library, patient, enrollment, today=today, now=a.now(),
                                              actor=user.email)
    return {"patient_id": patient_id, "view": view, "problems": by_problem(view["flags"]),
            "chart": course_chart(snapshot, protocol, today=today), "today": today, "history": history(snapshot),
            "phases": [p.value for p in Phase], "genes": GENES, "name": patient.name}


def record_from_form(session: Session, a: App, patient_id: int, form: dict[str, str], *, user: User,
                     today: date) -> None:
    """One form on the patient page: `what` says which (dose, weight, medication, genotype, phase)."""
    patient, _ = visible(session, sites_of(user), patient_id=patient_id)
    try:
        on = date.fromisoformat(form.get("on") or today.isoformat())
    except ValueError:
        raise UserError("the date must be YYYY-MM-DD") from None
    what = form.get("what", "")
    if what == "phase":
        try:
            to = Phase(form.get("to", ""))
        except ValueError:
            raise UserError("choose the phase to change to") from None
        patients.change_phase(session, patient.mrn, to, on=on, reason=form.get("reason", ""), by=user.email,
                              today=today, now=a.now(), dates=a.settings.dates.range)
    else:
        patients.record(session, a.library, patient.mrn, _events(what, form), on=on, today=today, now=a.now(),
                        actor=user.email, dates=a.settings.dates.range)
    session.commit()


def _number(form: dict[str, str], name: str, label: str) -> float:
    try:
        return float(form.get(name, ""))
    except ValueError:
        raise UserError(f"{label} must be a number") from None


def _events(what: str, form: dict[str, str]) -> patients.Events:
    drug = form.get("drug", "").strip()
    if what == "dose":
        return patients.Events(doses=((drug, _number(form, "mg", "the dose (mg/day)")),))
    if what == "weight":
        return patients.Events(weight_kg=_number(form, "kg", "the weight (kg)"))
    if what == "start":
        return patients.Events(med_start=(drug,))
    if what == "stop":
        return patients.Events(med_stop=(drug,))
    if what == "genotype":
        gene, result = form.get("gene", ""), form.get("result", "").strip()
        if gene not in GENES:
            raise UserError("choose TPMT or NUDT15")
        return patients.Events(tpmt=result) if gene == "TPMT" else patients.Events(nudt15=result)
    raise UserError("unknown form: reload the page")

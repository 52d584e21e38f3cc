"""Load what the engine needs for a batch of enrollments, in a few queries per batch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from monitor.db.tables import (
    DoseEvent,
    Enrollment,
    FlagRow,
    GenotypeRecord,
    LabResult,
    MedicationRecord,
    Patient,
    PhaseEpisode,
    ThresholdOverride,
    WeightRecord,
)
from monitor.domain import snapshot as s
from monitor.domain.exposure import BASELINE_WINDOW
from monitor.domain.items import FlagStatus
from monitor.domain.protocol import Phase


def load_snapshots(session: Session, enrollments: Sequence[Enrollment], *, today: date) -> dict[int, s.Snapshot]:
    ids = [e.id for e in enrollments]
    pids = list({e.patient_id for e in enrollments})
    phases: dict[int, list[s.PhaseEpisode]] = defaultdict(list)
    for p in session.exec(select(PhaseEpisode).where(col(PhaseEpisode.enrollment_id).in_(ids))
                          .order_by(col(PhaseEpisode.started_on), col(PhaseEpisode.id))):
        phases[p.enrollment_id].append(s.PhaseEpisode(Phase(p.phase), p.started_on, p.reason))
    weights: dict[int, list[s.Weight]] = defaultdict(list)
    for w in session.exec(select(WeightRecord).where(col(WeightRecord.patient_id).in_(pids))):
        weights[w.patient_id].append(s.Weight(w.on, w.kg))
    doses: dict[int, list[s.DoseEvent]] = defaultdict(list)
    for d in session.exec(select(DoseEvent).where(col(DoseEvent.patient_id).in_(pids))):
        doses[d.patient_id].append(s.DoseEvent(d.drug, d.dose_mg, d.on))
    genes: dict[int, list[s.Genotype]] = defaultdict(list)
    for g in session.exec(select(GenotypeRecord).where(col(GenotypeRecord.patient_id).in_(pids))):
        genes[g.patient_id].append(s.Genotype(g.gene, g.status, g.on))
    meds: dict[int, list[s.Medication]] = defaultdict(list)
    for m in session.exec(select(MedicationRecord).where(col(MedicationRecord.patient_id).in_(pids))):
        meds[m.patient_id].append(s.Medication(m.drug, m.started_on, m.stopped_on))
    results = _results(session, pids, since=min(e.start_on for e in enrollments) - BASELINE_WINDOW, today=today)
    acknowledged, open_flags = _flags(session, ids)
    sexes: dict[int, str | None] = {pid: sex for pid, sex in session.execute(
        sa_select(col(Patient.id), col(Patient.sex)).where(col(Patient.id).in_(pids)))}
    overrides: dict[int, list[s.Override]] = defaultdict(list)
    for o in session.exec(select(ThresholdOverride).where(col(ThresholdOverride.enrollment_id).in_(ids))):
        overrides[o.enrollment_id].append(s.Override(o.rule_id, o.below, o.above, o.reason))
    snapshots: dict[int, s.Snapshot] = {}
    for e in enrollments:
        assert e.id is not None
        pid = e.patient_id
        snapshots[e.id] = s.Snapshot(
            enrollment_id=e.id, start_on=e.start_on, phases=tuple(phases[e.id]),
            weights=tuple(sorted(weights[pid], key=lambda w: w.on)),
            doses=tuple(sorted(doses[pid], key=lambda d: d.on)),
            genotypes=tuple(genes[pid]), medications=tuple(meds[pid]),
            results=tuple(r for r in results[pid] if r.observed_on >= e.start_on - BASELINE_WINDOW),
            overrides=tuple(overrides[e.id]), acknowledged=acknowledged[e.id],
            open_flags=tuple(open_flags[e.id]), sex=sexes.get(pid),
        )
    return snapshots


def _results(session: Session, pids: list[int], *, since: date, today: date) -> dict[int, list[s.Result]]:
    """The patients' results from `since` to today, not retracted, in date order.

    Results from BASELINE_WINDOW before the enrollment start: the values from before an exposure that
    began at or after enrollment. An exposure already under way at enrollment has none here, and the
    domain never takes an on-drug value for one (domain/exposure.py BEFORE_RECORDS): ULN grading."""
    results: dict[int, list[s.Result]] = defaultdict(list)
    rows = session.execute(
        sa_select(col(LabResult.id), col(LabResult.patient_id), col(LabResult.analyte), col(LabResult.value),
                  col(LabResult.observed_on), col(LabResult.status), col(LabResult.ref_low), col(LabResult.ref_high),
                  col(LabResult.observed_at))
        .where(col(LabResult.patient_id).in_(pids), col(LabResult.observed_on) >= since,
               col(LabResult.observed_on) <= today, col(LabResult.status) != "retracted")
        .order_by(col(LabResult.observed_on), col(LabResult.id)))
    for rid, pid, analyte, value, observed_on, status, low, high, at in rows:
        assert rid is not None
        results[pid].append(s.Result(rid, analyte, value, observed_on, status, low, high, at))
    return results


def _flags(session: Session, ids: list[int | None]) -> tuple[dict[int, dict[str, str]], dict[int, list[s.OpenFlag]]]:
    """The enrollments' acknowledged flags (key -> severity acknowledged) and open flags, each open one
    with its result as it is now (another value: corrected; retracted)."""
    acknowledged: dict[int, dict[str, str]] = defaultdict(dict)
    open_flags: dict[int, list[s.OpenFlag]] = defaultdict(list)
    flags = session.execute(
        sa_select(col(FlagRow.enrollment_id), col(FlagRow.key), col(FlagRow.kind), col(FlagRow.severity),
                  col(FlagRow.status), col(FlagRow.observed_on), col(FlagRow.value), col(FlagRow.result_id),
                  col(LabResult.value), col(LabResult.status), col(FlagRow.rule_id))
        .outerjoin(LabResult, col(LabResult.id) == FlagRow.result_id)
        .where(col(FlagRow.enrollment_id).in_(ids),
               col(FlagRow.status).in_((FlagStatus.OPEN, FlagStatus.ACKNOWLEDGED))))
    for eid, key, kind, severity, status, observed_on, value, result_id, now_value, now_status, rule_id in flags:
        if status == FlagStatus.ACKNOWLEDGED:
            acknowledged[eid][key] = severity
        else:
            open_flags[eid].append(s.OpenFlag(key, kind, severity, observed_on, value, result_id, now_value,
                                              now_status == "retracted", rule_id))
    return acknowledged, open_flags

"""Load what the engine needs for a batch of enrollments, in a few queries per batch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from monitor.db.tables import (
    DoseEvent,
    Enrollment,
    GenotypeRecord,
    LabResult,
    MedicationRecord,
    PhaseEpisode,
    WeightRecord,
)
from monitor.domain import snapshot as s
from monitor.domain.protocol import Phase

#: Results older than this before `today` cannot change a plan (look-backs are shorter).
RESULT_HORIZON = timedelta(days=400)


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
    results: dict[int, list[s.Result]] = defaultdict(list)
    rows = session.execute(
        sa_select(col(LabResult.id), col(LabResult.patient_id), col(LabResult.analyte), col(LabResult.value),
               col(LabResult.observed_on), col(LabResult.status), col(LabResult.ref_low), col(LabResult.ref_high))
        .where(col(LabResult.patient_id).in_(pids), col(LabResult.observed_on) >= today - RESULT_HORIZON,
               col(LabResult.observed_on) <= today)
        .order_by(col(LabResult.observed_on), col(LabResult.id))
    )
    for rid, pid, analyte, value, observed_on, status, low, high in rows:
        assert rid is not None
        results[pid].append(s.Result(rid, analyte, value, observed_on, status, low, high))
    snapshots: dict[int, s.Snapshot] = {}
    for e in enrollments:
        assert e.id is not None
        pid = e.patient_id
        snapshots[e.id] = s.Snapshot(
            enrollment_id=e.id, start_on=e.start_on, phases=tuple(phases[e.id]),
            weights=tuple(sorted(weights[pid], key=lambda w: w.on)),
            doses=tuple(sorted(doses[pid], key=lambda d: d.on)),
            genotypes=tuple(genes[pid]), medications=tuple(meds[pid]), results=tuple(results[pid]),
        )
    return snapshots

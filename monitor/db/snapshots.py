"""Load what the engine needs for a batch of enrollments, in a few queries per batch."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from datetime import date

from sqlalchemy import String, type_coerce
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

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
from monitor.db.types import read_date, read_instant
from monitor.domain import snapshot as s
from monitor.domain.exposure import BASELINE_WINDOW
from monitor.domain.items import FlagStatus
from monitor.domain.protocol import Phase


def load_snapshots(session: Session, enrollments: Sequence[Enrollment], *, today: date) -> dict[int, s.Snapshot]:
    ids = [e.id for e in enrollments]
    pids = list({e.patient_id for e in enrollments})
    con = session.connection()  # plain rows: no ORM objects for what becomes frozen domain values
    phases: dict[int, list[s.PhaseEpisode]] = defaultdict(list)
    for eid, phase, started_on, reason in con.execute(
            sa_select(col(PhaseEpisode.enrollment_id), col(PhaseEpisode.phase), col(PhaseEpisode.started_on),
                      col(PhaseEpisode.reason))
            .where(col(PhaseEpisode.enrollment_id).in_(ids))
            .order_by(col(PhaseEpisode.started_on), col(PhaseEpisode.id))):
        phases[eid].append(s.PhaseEpisode(Phase(phase), started_on, reason))
    weights: dict[int, list[s.Weight]] = defaultdict(list)
    for pid, on, kg in con.execute(
            sa_select(col(WeightRecord.patient_id), col(WeightRecord.on), col(WeightRecord.kg))
            .where(col(WeightRecord.patient_id).in_(pids))):
        weights[pid].append(s.Weight(on, kg))
    doses: dict[int, list[s.DoseEvent]] = defaultdict(list)
    for pid, drug, dose_mg, on in con.execute(
            sa_select(col(DoseEvent.patient_id), col(DoseEvent.drug), col(DoseEvent.dose_mg), col(DoseEvent.on))
            .where(col(DoseEvent.patient_id).in_(pids))):
        doses[pid].append(s.DoseEvent(drug, dose_mg, on))
    genes: dict[int, list[s.Genotype]] = defaultdict(list)
    for pid, gene, status, on in con.execute(
            sa_select(col(GenotypeRecord.patient_id), col(GenotypeRecord.gene), col(GenotypeRecord.status),
                      col(GenotypeRecord.on))
            .where(col(GenotypeRecord.patient_id).in_(pids))):
        genes[pid].append(s.Genotype(gene, status, on))
    meds: dict[int, list[s.Medication]] = defaultdict(list)
    for pid, drug, started_on, stopped_on in con.execute(
            sa_select(col(MedicationRecord.patient_id), col(MedicationRecord.drug), col(MedicationRecord.started_on),
                      col(MedicationRecord.stopped_on))
            .where(col(MedicationRecord.patient_id).in_(pids))):
        meds[pid].append(s.Medication(drug, started_on, stopped_on))
    results = _results(session, pids, since=min(e.start_on for e in enrollments) - BASELINE_WINDOW, today=today)
    acknowledged, open_flags = _flags(session, ids)
    sexes: dict[int | None, str | None] = {pid: sex for pid, sex in con.execute(
        sa_select(col(Patient.id), col(Patient.sex)).where(col(Patient.id).in_(pids)))}
    overrides: dict[int, list[s.Override]] = defaultdict(list)
    for eid, rule_id, below, above, reason in con.execute(
            sa_select(col(ThresholdOverride.enrollment_id), col(ThresholdOverride.rule_id),
                      col(ThresholdOverride.below), col(ThresholdOverride.above), col(ThresholdOverride.reason))
            .where(col(ThresholdOverride.enrollment_id).in_(ids))):
        overrides[eid].append(s.Override(rule_id, below, above, reason))
    snapshots: dict[int, s.Snapshot] = {}
    for e in enrollments:
        assert e.id is not None
        pid = e.patient_id
        snapshots[e.id] = s.Snapshot(
            enrollment_id=e.id, start_on=e.start_on, phases=tuple(phases[e.id]),
            weights=tuple(sorted(weights[pid], key=lambda w: w.on)),
            doses=tuple(sorted(doses[pid], key=lambda d: d.on)),
            genotypes=tuple(genes[pid]), medications=tuple(meds[pid]),
            results=_since(results[pid], e.start_on - BASELINE_WINDOW),
            overrides=tuple(overrides[e.id]), acknowledged=acknowledged[e.id],
            open_flags=tuple(open_flags[e.id]), sex=sexes.get(pid),
        )
    return snapshots


def _since(results: list[s.Result], day: date) -> tuple[s.Result, ...]:
    """The results (in date order) observed on or after `day`."""
    return tuple(results[bisect.bisect_left(results, day, key=lambda r: r.observed_on):])


def _results(session: Session, pids: list[int], *, since: date, today: date) -> dict[int, list[s.Result]]:
    """The patients' results from `since` to today, not retracted, in date order.

    Results from BASELINE_WINDOW before the enrollment start: the values from before an exposure that
    began at or after enrollment. An exposure already under way at enrollment has none here, and the
    domain never takes an on-drug value for one (domain/exposure.py BEFORE_RECORDS): ULN grading."""
    results: dict[int, list[s.Result]] = defaultdict(list)
    # The driver's values (no type processing per row): a draw's results share a day and a
    # collection time, each parsed once (read_date, read_instant).
    rows = session.connection().execute(
        sa_select(col(LabResult.id), col(LabResult.patient_id), col(LabResult.analyte), col(LabResult.value),
                  type_coerce(col(LabResult.observed_on), String), col(LabResult.status), col(LabResult.ref_low),
                  col(LabResult.ref_high), type_coerce(col(LabResult.observed_at), String))
        .where(col(LabResult.patient_id).in_(pids), col(LabResult.observed_on) >= since,
               col(LabResult.observed_on) <= today, col(LabResult.status) != "retracted")
        .order_by(col(LabResult.observed_on), col(LabResult.id))).all()
    result = s.Result
    for rid, pid, analyte, value, observed_on, status, low, high, at in rows:
        # a stored row has its id (typed optional by the model)
        results[pid].append(result(rid, analyte, value, read_date(observed_on), status, low, high,  # type: ignore[arg-type]
                                   read_instant(at)))
    return results


def _flags(session: Session, ids: list[int | None]) -> tuple[dict[int, dict[str, str]], dict[int, list[s.OpenFlag]]]:
    """The enrollments' acknowledged flags (key -> severity acknowledged) and open flags, each open one
    with its result as it is now (another value: corrected; retracted)."""
    acknowledged: dict[int, dict[str, str]] = defaultdict(dict)
    open_flags: dict[int, list[s.OpenFlag]] = defaultdict(list)
    flags = session.connection().execute(
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

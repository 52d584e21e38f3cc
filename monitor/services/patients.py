"""Enroll patients, record clinical events and confirm phase changes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, exists, insert
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from monitor.db.tables import (
    DoseEvent,
    Enrollment,
    GenotypeRecord,
    HeldResult,
    LabResult,
    MedicationRecord,
    Patient,
    PhaseEpisode,
    ThresholdOverride,
    WeightRecord,
)
from monitor.db.upsert import insert_ignore, one_of
from monitor.domain.dates import DEFAULT_DATES, DateRange
from monitor.domain.drugs import DrugVocabulary, fold
from monitor.domain.errors import UserError
from monitor.domain.protocol import MonitoringProtocol, Phase
from monitor.protocols import Library
from monitor.services.audit import audit
from monitor.services.checks import (
    ACTOR_CHARS,
    ADDRESS,
    ADDRESS_CHARS,
    MRN_CHARS,
    NAME_CHARS,
    SITE_CHARS,
    check_date,
    check_text,
)
from monitor.services.lookup import active_enrollment, find_patient
from monitor.services.review import mark_enrollment, mark_patients

GENOTYPES = ("normal", "intermediate", "poor", "unknown")
SEXES = ("F", "M", "U")
WEIGHT_KG = (2.0, 400.0)  # a weight outside this is a typing error, not a patient
DRUG_NAME_CHARS = 64  # the width of the drug columns (db/tables.py)


@dataclass(frozen=True, slots=True)
class EnrollmentRequest:
    mrn: str
    protocol: str
    start_on: date
    weight_kg: float
    phase: Phase = Phase.INDUCTION
    name: str | None = None
    dob: date | None = None
    sex: str | None = None
    tpmt: str | None = None
    nudt15: str | None = None
    coordinator: str | None = None
    site: str | None = None


def check_request(req: EnrollmentRequest, library: Library, *, today: date, dates: DateRange = DEFAULT_DATES) -> None:
    """Raises UserError naming the first bad field."""
    library.get(req.protocol)
    check_date(req.start_on, "start", today=today, dates=dates)
    check_text(req.mrn, "mrn", MRN_CHARS)
    for what, value, width in (("name", req.name, NAME_CHARS), ("site", req.site, SITE_CHARS)):
        if value is not None:
            check_text(value, what, width)
    if req.coordinator is not None and (len(req.coordinator) > ADDRESS_CHARS or not ADDRESS.fullmatch(req.coordinator)):
        raise UserError(f"coordinator must be an e-mail address of at most {ADDRESS_CHARS} characters, "
                        "like nurse@example.org")
    if not WEIGHT_KG[0] <= req.weight_kg <= WEIGHT_KG[1]:
        raise UserError(f"weight_kg {req.weight_kg:g} is outside {WEIGHT_KG[0]:g}-{WEIGHT_KG[1]:g} kg")
    if req.sex is not None and req.sex not in SEXES:
        raise UserError(f"sex {req.sex!r} must be one of {', '.join(SEXES)}")
    for gene, status in (("tpmt", req.tpmt), ("nudt15", req.nudt15)):
        if status is not None and status not in GENOTYPES:
            raise UserError(f"{gene} {status!r} must be one of {', '.join(GENOTYPES)}")
    if req.dob is not None and req.dob > req.start_on:
        raise UserError(f"dob {req.dob} is after the start date {req.start_on}")


def attach_held(session: Session, mrns: Collection[str]) -> Counter[int]:
    """Move the results held for these MRNs onto their patients, just enrolled (they are the
    baseline labs): one set-based statement however many patients. Returns how many each patient
    got. Ids follow the enrollments' order, then the held results': as if attached one by one."""
    if not mrns:
        return Counter()
    held, results = HeldResult.__table__, LabResult.__table__  # type: ignore[attr-defined]
    columns = [c for c in held.columns.keys() if c not in ("id", "mrn", "expires_on")]
    listed = held.c.mrn.in_(one_of(session, mrns))
    source = (sa_select(*(held.c[c] for c in columns), col(Patient.id))
              .join(Patient, col(Patient.mrn) == held.c.mrn)
              .join(Enrollment, (col(Enrollment.patient_id) == Patient.id) & (col(Enrollment.status) == "active"))
              .where(listed).order_by(col(Enrollment.id), held.c.id))
    moved = session.execute(insert(results).from_select([*columns, "patient_id"], source)
                            .returning(results.c.patient_id))
    attached = Counter(patient_id for patient_id, in moved)
    # Only what was moved: a result held for one of them since (another process) stays held.
    session.execute(delete(held).where(listed, exists().where(results.c.source_key == held.c.source_key)))
    return attached


def new_patient(req: EnrollmentRequest, *, now: datetime) -> dict[str, Any]:
    return {"mrn": req.mrn, "name": req.name, "dob": req.dob, "sex": req.sex, "created_at": now}


def new_enrollment(req: EnrollmentRequest, protocol: MonitoringProtocol, patient_id: int, *, today: date,
                   now: datetime) -> dict[str, Any]:
    """An enrollment's columns: due for review at once (from its start, if that is in the future)."""
    return {"patient_id": patient_id, "protocol_id": protocol.id, "protocol_version": protocol.version,
            "phase": req.phase.value, "phase_since": req.start_on, "start_on": req.start_on,
            "coordinator": req.coordinator, "site": req.site, "status": "active",
            "next_review_on": min(today, req.start_on), "revision": 0, "created_at": now}


def first_episode(req: EnrollmentRequest, enrollment_id: int) -> dict[str, Any]:
    return {"enrollment_id": enrollment_id, "phase": req.phase.value, "started_on": req.start_on,
            "reason": "enrollment"}


def first_weight(req: EnrollmentRequest, patient_id: int) -> dict[str, Any]:
    return {"patient_id": patient_id, "on": req.start_on, "kg": req.weight_kg}


def known_genotypes(req: EnrollmentRequest, patient_id: int, *, today: date) -> list[dict[str, Any]]:
    """The TPMT and NUDT15 statuses given (`unknown` is a status), dated at the start or today."""
    return [{"patient_id": patient_id, "gene": gene, "status": status, "on": min(req.start_on, today)}
            for gene, status in (("TPMT", req.tpmt), ("NUDT15", req.nudt15)) if status]


def clash(req: EnrollmentRequest, protocol_id: str, start_on: date) -> str | None:
    """Why `req` cannot be enrolled beside the patient's active enrollment (in `protocol_id` from
    `start_on`), or None when it is that enrollment again (enrolling it again changes nothing)."""
    if protocol_id == req.protocol and start_on == req.start_on:
        return None
    return (f"MRN {req.mrn!r} is already enrolled in {protocol_id} from {start_on}; "
            "record a phase change with `monitor phase` instead")


def enroll(session: Session, library: Library, req: EnrollmentRequest, *, today: date, now: datetime,
           actor: str, dates: DateRange = DEFAULT_DATES) -> tuple[Enrollment, bool]:
    """Enroll one patient (creating them if new). Returns (enrollment, created).

    Enrolling the same MRN in the same protocol from the same start date again changes nothing.
    A cohort is enrolled by `services.cohort.enroll_cohort`, which writes the same rows.
    """
    check_request(req, library, today=today, dates=dates)
    protocol = library.get(req.protocol)
    patient = session.exec(select(Patient).where(Patient.mrn == req.mrn)).first()
    if patient is None:
        patient = Patient(**new_patient(req, now=now))
        session.add(patient)
        session.flush()
    assert patient.id is not None
    current = session.exec(
        select(Enrollment).where(Enrollment.patient_id == patient.id, Enrollment.status == "active")
    ).first()
    if current is not None:
        if (problem := clash(req, current.protocol_id, current.start_on)) is not None:
            raise UserError(problem)
        return current, False
    enrollment = Enrollment(**new_enrollment(req, protocol, patient.id, today=today, now=now))
    session.add(enrollment)
    session.flush()
    assert enrollment.id is not None
    session.add(PhaseEpisode(**first_episode(req, enrollment.id)))
    insert_ignore(session, WeightRecord, [first_weight(req, patient.id)], ["patient_id", "on"])
    insert_ignore(session, GenotypeRecord, known_genotypes(req, patient.id, today=today), ["patient_id", "gene", "on"])
    attached = attach_held(session, [patient.mrn])[patient.id]
    session.flush()
    audit(session, actor=actor, action="enroll", entity="enrollment", entity_id=enrollment.id, now=now,
          protocol=protocol.id, attached_results=attached)
    return enrollment, True


@dataclass(frozen=True)
class Events:
    doses: tuple[tuple[str, float], ...] = ()
    weight_kg: float | None = None
    med_start: tuple[str, ...] = ()
    med_stop: tuple[str, ...] = ()
    tpmt: str | None = None
    nudt15: str | None = None
    unlisted: bool = False  # record a drug name the drug list does not know, as typed (interactions unchecked)

    def empty(self) -> bool:
        return not (self.doses or self.weight_kg is not None or self.med_start or self.med_stop
                    or self.tpmt or self.nudt15)


def generic_name(typed: str, option: str, drug_list: DrugVocabulary, *, unlisted: bool) -> str:
    """The name to store for a typed drug name: its generic name, or with `unlisted` an unknown name
    as typed (folded). Raises UserError for an unknown name, with the closest listed names."""
    generic = drug_list.canonical(typed)
    if generic is not None:
        return generic
    name = fold(typed)
    if not name or len(name) > DRUG_NAME_CHARS:
        raise UserError(f"{option} needs a drug name of 1-{DRUG_NAME_CHARS} characters")
    if unlisted:
        return name
    hint = drug_list.did_you_mean(typed) or "it is not in the drug list (drugs.toml); check the spelling"
    raise UserError(f"unknown drug {typed!r} in {option}; {hint} (or pass --unlisted to record it unchecked)")


def with_generic_names(events: Events, drug_list: DrugVocabulary) -> Events:
    """The events with every drug name as its generic name; UserError before anything is written."""
    def generic(typed: str, option: str) -> str:
        return generic_name(typed, option, drug_list, unlisted=events.unlisted)

    def dosed(typed: str) -> str:
        drug = generic(typed, "--dose")
        if members := drug_list.members(drug):
            raise UserError(f"--dose {typed!r} names a class of drugs; give the drug itself, e.g. {members[0]}")
        return drug

    return replace(events, doses=tuple((dosed(drug), mg) for drug, mg in events.doses),
                   med_start=tuple(generic(drug, "--med-start") for drug in events.med_start),
                   med_stop=tuple(generic(drug, "--med-stop") for drug in events.med_stop))


def record(session: Session, library: Library, mrn: str, events: Events, *, on: date, today: date, now: datetime,
           actor: str, dates: DateRange = DEFAULT_DATES) -> list[str]:
    """Record dated clinical events; returns a line per event written. Re-recording is a no-op.

    Drug names are stored as their generic names (config/drugs.toml), so a brand or a synonym
    triggers the same interaction rules; an unknown name is refused unless `events.unlisted`.
    Everything is checked before anything is written."""
    if events.empty():
        raise UserError("nothing to record; give --dose, --weight-kg, --med-start, --med-stop, "
                        "--tpmt or --nudt15")
    check_date(on, "--date", today=today, dates=dates)
    _check_events(events)
    events = with_generic_names(events, library.drug_list)
    named = (*(drug for drug, _ in events.doses), *events.med_start, *events.med_stop)
    unlisted = {drug for drug in named if library.drug_list.canonical(drug) is None}
    patient = find_patient(session, mrn)
    assert patient.id is not None
    writing = _Writing(session, patient.id, on, unlisted)
    writing.doses(events.doses)
    writing.weight(events.weight_kg)
    writing.started(events.med_start)
    writing.stopped(events.med_stop, library.drug_list, mrn)
    writing.genotypes(events)
    if writing.inserted or session.new or session.dirty:  # re-recording the same events is not new input
        mark_patients(session, {patient.id: min(on, today)})
    audit(session, actor=actor, action="record", entity="patient", entity_id=patient.id, now=now,
          events=len(writing.done), unlisted=len(unlisted), before=writing.replaced, after=writing.done)
    return writing.done


def _check_events(events: Events) -> None:
    """Doses, weight and genotypes in range, before anything is written."""
    for drug, mg in events.doses:
        if not 0 <= mg <= 1000:
            raise UserError(f"dose {drug}={mg:g} mg is outside 0-1000 mg")
    if events.weight_kg is not None and not WEIGHT_KG[0] <= events.weight_kg <= WEIGHT_KG[1]:
        raise UserError(f"weight {events.weight_kg:g} kg is outside {WEIGHT_KG[0]:g}-{WEIGHT_KG[1]:g} kg")
    for gene, status in (("tpmt", events.tpmt), ("nudt15", events.nudt15)):
        if status is not None and status not in GENOTYPES:
            raise UserError(f"{gene} {status!r} must be one of {', '.join(GENOTYPES)}")


@dataclass
class _Writing:
    """One `record`'s writes for one patient on one day, and a line for each."""

    session: Session
    pid: int
    on: date
    unlisted: set[str]
    done: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # what an edit changed, as it was (the audit's `before`)
    inserted: int = 0  # rows insert_ignore added (the session does not see them)

    def _unchecked(self, drug: str) -> str:
        return " (unlisted: interactions not checked)" if drug in self.unlisted else ""

    def doses(self, doses: tuple[tuple[str, float], ...]) -> None:
        for drug, mg in doses:
            existing = self.session.exec(select(DoseEvent).where(
                DoseEvent.patient_id == self.pid, DoseEvent.drug == drug, DoseEvent.on == self.on)).first()
            if existing is None:
                self.session.add(DoseEvent(patient_id=self.pid, drug=drug, dose_mg=mg, on=self.on))
            elif existing.dose_mg != mg:
                self.replaced.append(f"dose {drug} {existing.dose_mg:g} mg/day from {self.on}")
                existing.dose_mg = mg
            self.done.append(f"dose {drug} {mg:g} mg/day from {self.on}{self._unchecked(drug)}")

    def weight(self, kg: float | None) -> None:
        if kg is None:
            return
        existing = self.session.exec(select(WeightRecord).where(
            WeightRecord.patient_id == self.pid, WeightRecord.on == self.on)).first()
        if existing is None:
            self.session.add(WeightRecord(patient_id=self.pid, on=self.on, kg=kg))
        elif existing.kg != kg:
            self.replaced.append(f"weight {existing.kg:g} kg on {self.on}")
            existing.kg = kg
        self.done.append(f"weight {kg:g} kg on {self.on}")

    def started(self, drugs: tuple[str, ...]) -> None:
        for drug in drugs:
            self.inserted += len(insert_ignore(
                self.session, MedicationRecord, [{"patient_id": self.pid, "drug": drug, "started_on": self.on}],
                ["patient_id", "drug", "started_on"]))
            self.done.append(f"started {drug} on {self.on}{self._unchecked(drug)}")

    def stopped(self, drugs: tuple[str, ...], drug_list: DrugVocabulary, mrn: str) -> None:
        for drug in drugs:
            taking = [m for m in self.session.exec(select(MedicationRecord).where(
                MedicationRecord.patient_id == self.pid, col(MedicationRecord.stopped_on).is_(None)))
                if drug_list.generic(m.drug) == drug]
            if not taking:
                raise UserError(f"{drug} is not recorded as started for MRN {mrn!r}")
            for med in taking:
                med.stopped_on = self.on
            self.done.append(f"stopped {drug} on {self.on}")

    def genotypes(self, events: Events) -> None:
        for gene, status in (("TPMT", events.tpmt), ("NUDT15", events.nudt15)):
            if status is None:
                continue
            self.inserted += len(insert_ignore(
                self.session, GenotypeRecord, [{"patient_id": self.pid, "gene": gene, "status": status, "on": self.on}],
                ["patient_id", "gene", "on"]))
            self.done.append(f"{gene} {status} on {self.on}")


def change_phase(session: Session, mrn: str, to: Phase, *, on: date, reason: str, by: str, today: date,
                 now: datetime, dates: DateRange = DEFAULT_DATES) -> Enrollment:
    """A clinician confirms a phase change from a date."""
    if not reason.strip():
        raise UserError("--reason is required: say why the phase changes")
    check_text(by, "--by", ACTOR_CHARS)
    check_date(on, "--date", today=today, dates=dates)
    enrollment = active_enrollment(session, find_patient(session, mrn))
    if on < enrollment.phase_since:
        raise UserError(f"--date {on} is before the current phase began ({enrollment.phase_since})")
    if to.value == enrollment.phase:
        raise UserError(f"MRN {mrn!r} is already in {to.value} since {enrollment.phase_since}")
    assert enrollment.id is not None
    before = {"phase": enrollment.phase, "since": enrollment.phase_since.isoformat()}
    session.add(PhaseEpisode(enrollment_id=enrollment.id, phase=to.value, started_on=on, reason=reason,
                             confirmed_by=by))
    enrollment.phase, enrollment.phase_since = to.value, on
    mark_enrollment(session, enrollment.id, min(on, today))
    audit(session, actor=by, action="phase", entity="enrollment", entity_id=enrollment.id, now=now,
          to_phase=to.value, before=before, after={"phase": to.value, "since": on.isoformat()})
    return enrollment


def set_override(session: Session, library: Library, mrn: str, rule: str, *, below: float | None,
                 above: float | None, reason: str, by: str, today: date, now: datetime) -> ThresholdOverride:
    """A patient-specific threshold for one protocol rule (e.g. benign ethnic neutropenia)."""
    if not reason.strip():
        raise UserError("--reason is required: say why this patient's threshold differs")
    check_text(by, "--by", ACTOR_CHARS)
    enrollment = active_enrollment(session, find_patient(session, mrn))
    protocol = library.get(enrollment.protocol_id)
    threshold = next((t for t in protocol.thresholds if t.id == rule), None)
    if threshold is None:
        known = ", ".join(t.id for t in protocol.thresholds)
        raise UserError(f"--rule {rule!r} is not a threshold of {protocol.id}; known: {known}")
    if (threshold.below is not None) != (below is not None) or (threshold.above is not None) != (above is not None):
        side = "--below" if threshold.below is not None else "--above"
        raise UserError(f"{rule} is a {side.strip('-')} threshold: give {side} only")
    assert enrollment.id is not None
    row = session.exec(select(ThresholdOverride).where(ThresholdOverride.enrollment_id == enrollment.id,
                                                       ThresholdOverride.rule_id == rule)).first()
    if row is None:
        row = ThresholdOverride(enrollment_id=enrollment.id, rule_id=rule, reason=reason, set_by=by, set_at=now)
    row.below, row.above, row.reason, row.set_by, row.set_at = below, above, reason, by, now
    session.add(row)
    mark_enrollment(session, enrollment.id, min(enrollment.start_on, today))
    audit(session, actor=by, action="override", entity="enrollment", entity_id=enrollment.id, now=now, rule=rule)
    return row

"""Finding the patient and enrollment a command names, with one clear error when there is none."""

from __future__ import annotations

from sqlmodel import Session, col, select

from monitor.db.tables import Enrollment, Patient
from monitor.domain.errors import NotFound


def find_patient(session: Session, mrn: str) -> Patient:
    patient = session.exec(select(Patient).where(Patient.mrn == mrn)).first()
    if patient is None:
        raise NotFound(f"no patient with MRN {mrn!r}; enroll them first with `monitor enroll`")
    return patient


def active_enrollment(session: Session, patient: Patient) -> Enrollment:
    enrollment = session.exec(
        select(Enrollment).where(Enrollment.patient_id == patient.id, Enrollment.status == "active")
        .order_by(col(Enrollment.start_on).desc())
    ).first()
    if enrollment is None:
        raise NotFound(f"MRN {patient.mrn!r} has no active enrollment")
    return enrollment


def visible(session: Session, sites: tuple[str, ...] | None, *, patient_id: int | None = None,
            mrn: str | None = None) -> tuple[Patient, Enrollment]:
    """The patient (by id or MRN) and their active enrollment, if a user of these sites (None: every
    site) may see them; NotFound otherwise, worded as if there were no such patient (no probing)."""
    patient = session.get(Patient, patient_id) if patient_id is not None else \
        session.exec(select(Patient).where(Patient.mrn == mrn)).first()
    if patient is not None:
        try:
            enrollment = active_enrollment(session, patient)
        except NotFound:
            pass
        else:
            if sites is None or (enrollment.site or "") in sites:
                return patient, enrollment
    raise NotFound("no such patient")

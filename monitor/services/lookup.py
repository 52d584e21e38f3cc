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

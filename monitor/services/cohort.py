"""Enroll a clinic's cohort in one transaction: the rows `patients.enroll` writes for each request,
in the same order, written a table at a time (one executemany per table and chunk) instead of a
patient at a time, and the held results of them all attached by one statement."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlmodel import Session, SQLModel

from monitor.db.encoding import same
from monitor.db.tables import AuditEvent, Enrollment, GenotypeRecord, Patient, PhaseEpisode, WeightRecord
from monitor.db.upsert import bulk_insert, bulk_insert_ignore, select_in, temporal_encoders
from monitor.domain.audit import event_hash
from monitor.domain.errors import UserError
from monitor.protocols import Library
from monitor.services.audit import chain_head
from monitor.services.patients import (
    EnrollmentRequest,
    attach_held,
    clash,
    first_episode,
    first_weight,
    known_genotypes,
    new_enrollment,
    new_patient,
)

#: Requests written per round of inserts: the ids of one round's patients and enrollments are read
#: back with one query each, and a progress bar moves each round.
CHUNK = 10_000
MAX_LINES_SHOWN = 20


class CohortRow(NamedTuple):
    line: int  # in the cohort file, for the error that names it
    request: EnrollmentRequest


@dataclass
class CohortReport:
    enrolled: int = 0
    already_enrolled: int = 0  # the same MRN, protocol and start: nothing written
    attached_results: int = 0


Progress = Callable[[int, int], None]


def enroll_cohort(session: Session, library: Library, rows: Sequence[CohortRow], *, today: date, now: datetime,
                  actor: str, progress: Progress | None = None) -> CohortReport:
    """Enroll every row, checked already (`enroll_csv.read_enrollments`: distinct MRNs, valid
    fields), in the caller's transaction; UserError before anything is written when an MRN is
    enrolled otherwise in the database. `progress(done, total)` after each chunk."""
    report = CohortReport()
    active, patients = _enrolled_now(session, [row.request.mrn for row in rows])
    clashes: list[tuple[int, str]] = []
    todo: list[EnrollmentRequest] = []
    for line, req in rows:
        current = active.get(req.mrn)
        if current is None:
            todo.append(req)
        elif (problem := clash(req, *current)) is not None:
            clashes.append((line, problem))
        else:
            report.already_enrolled += 1
    if clashes:
        raise UserError(_clash_error(clashes))
    writer = _Writer(session, library, today=today, now=now)
    enrollments: list[int] = []
    for start in range(0, len(todo), CHUNK):
        enrollments += writer.enroll(todo[start:start + CHUNK], patients)
        if progress is not None:
            progress(min(start + CHUNK, len(todo)), len(todo))
    attached = attach_held(session, [req.mrn for req in todo])
    for start in range(0, len(todo), CHUNK):
        writer.audit(todo[start:start + CHUNK], enrollments[start:start + CHUNK], patients, attached, actor=actor)
    report.enrolled, report.attached_results = len(todo), sum(attached.values())
    return report


def _enrolled_now(session: Session, mrns: list[str]) -> tuple[dict[str, tuple[str, date]], dict[str, int]]:
    """The active enrollment (protocol id, start) of each MRN that has one, and the patient id of
    each MRN already a patient."""
    patients = dict(_select(session, Patient, ("mrn", "id"), "mrn", mrns))
    by_id = {pid: mrn for mrn, pid in patients.items()}
    active = {by_id[pid]: (protocol_id, date.fromisoformat(start) if isinstance(start, str) else start)
              for pid, protocol_id, start, status in _select(
                  session, Enrollment, ("patient_id", "protocol_id", "start_on", "status"), "patient_id", list(by_id))
              if status == "active"}
    return active, patients


def _select(session: Session, model: type[SQLModel], columns: Sequence[str], key: str,
            values: list[Any]) -> Iterator[tuple[Any, ...]]:
    for start in range(0, len(values), CHUNK):
        yield from select_in(session, model, columns, key, values[start:start + CHUNK])


def _clash_error(clashes: list[tuple[int, str]]) -> str:
    """One line: the first row whose MRN is enrolled otherwise, and the lines of any others."""
    (line, problem), others = clashes[0], [str(line) for line, _ in clashes[1:]]
    more = ""
    if len(others) == 1:
        more = f" (and 1 more row like it, line {others[0]})"
    elif others:
        listed = ", ".join(others[:MAX_LINES_SHOWN]) + (" ..." if len(others) > MAX_LINES_SHOWN else "")
        more = f" (and {len(others)} more rows like it, lines {listed})"
    return f"line {line}: {problem}{more}; nothing enrolled"


class _Writer:
    """The inserts of `patients.enroll`, a chunk of requests at a time, through the DBAPI."""

    def __init__(self, session: Session, library: Library, *, today: date, now: datetime) -> None:
        self.session, self.library, self.today, self.now = session, library, today, now
        instant, day = temporal_encoders(session)
        encoders: dict[str, Callable[[Any], Any]] = {
            "created_at": instant, "at": instant, "detail": json.dumps,
            **dict.fromkeys(("dob", "phase_since", "start_on", "next_review_on", "started_on", "on"), day)}
        self.encoders = {column: encode for column, encode in encoders.items() if encode is not same}

    def enroll(self, requests: list[EnrollmentRequest], patients: dict[str, int]) -> list[int]:
        """Insert the chunk's new patients, enrollments, first phase episodes, weights and
        genotypes; returns the enrollment ids, in the requests' order."""
        s, today, now = self.session, self.today, self.now
        new = [req for req in requests if req.mrn not in patients]
        self._insert(Patient, [new_patient(req, now=now) for req in new])
        patients.update(_select(s, Patient, ("mrn", "id"), "mrn", [req.mrn for req in new]))
        ids = [patients[req.mrn] for req in requests]
        self._insert(Enrollment, [new_enrollment(req, self.library.get(req.protocol), pid, today=today, now=now)
                                  for req, pid in zip(requests, ids, strict=True)])
        active = {pid: eid for pid, eid, status in _select(s, Enrollment, ("patient_id", "id", "status"),
                                                           "patient_id", ids) if status == "active"}
        enrollments = [active[pid] for pid in ids]
        self._insert(PhaseEpisode, [first_episode(req, eid) for req, eid in zip(requests, enrollments, strict=True)])
        # A patient enrolled before may have a weight or a genotype that day already: it is kept,
        # as `enroll` keeps it (and the rows after it get the ids they would get there).
        keep = None if len(new) == len(requests) else ("patient_id", "on")
        self._insert(WeightRecord, [first_weight(req, pid) for req, pid in zip(requests, ids, strict=True)], keep)
        self._insert(GenotypeRecord, [g for req, pid in zip(requests, ids, strict=True)
                                      for g in known_genotypes(req, pid, today=today)],
                     keep and ("patient_id", "gene", "on"))
        return enrollments

    def audit(self, requests: list[EnrollmentRequest], enrollments: list[int], patients: dict[str, int],
              attached: Counter[int], *, actor: str) -> None:
        """The audit row `enroll` writes for each enrollment (ids and counts only), chained as
        `audit.audit` chains it. The chain is computed here, before the insert: on PostgreSQL
        `chain_head` takes the chain's advisory lock first; on SQLite this transaction holds the
        write lock already, because `enroll` inserted the chunk's enrollments before this (and
        `chain_head` refuses a transaction that has not written), so nobody appends in between."""
        if not requests:
            return
        prev = chain_head(self.session)
        rows: list[dict[str, Any]] = []
        for req, eid in zip(requests, enrollments, strict=True):
            detail = {"protocol": self.library.get(req.protocol).id, "attached_results": attached[patients[req.mrn]]}
            hashed = event_hash(prev, self.now, actor, "enroll", "enrollment", eid, detail)
            rows.append({"at": self.now, "actor": actor, "action": "enroll", "entity": "enrollment", "entity_id": eid,
                         "detail": detail, "prev_hash": prev, "hash": hashed})
            prev = hashed
        self._insert(AuditEvent, rows)

    def _insert(self, model: type[SQLModel], rows: list[dict[str, Any]], keep: Sequence[str] | None = None) -> None:
        """Insert the rows; with `keep` (a natural key), those whose key is taken are left out."""
        if not rows:
            return
        columns = list(rows[0])
        encoders = [(i, encode) for i, column in enumerate(columns) if (encode := self.encoders.get(column))]
        values: list[list[Any]] = []
        for row in rows:
            cells = list(row.values())
            for i, encode in encoders:
                if cells[i] is not None:
                    cells[i] = encode(cells[i])
            values.append(cells)
        if keep is None:
            bulk_insert(self.session, model, columns, values)
        else:
            bulk_insert_ignore(self.session, model, columns, values, keep)

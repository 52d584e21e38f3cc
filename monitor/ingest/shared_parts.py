"""A quarantined record's raw text as the parts it shares with other records, then its own text.

An HL7 record's text is its message's MSH, PID and OBR segments, then its OBX (and monitor's ZMK
line); a FHIR record's is a JSON envelope that starts with the times its report's members inherit.
Kept whole in every record, one message with a large header and many bad results took a thousand
times its size in quarantine. Each part is stored once however many records share it
(services/quarantine_rows.py), so quarantine grows with the input, not with its square.
"""

from __future__ import annotations

import json

OWN_FROM = "OBX"  # an HL7 record's own text starts at its (first) OBX segment
SEGMENT_END = "\r"  # how the HL7 reader joins a record's segments
CONTEXT = '{"context": '  # a FHIR record's envelope starts with what it inherits (fhir_reader._read)
MEMBER_END = ", "
_DECODER = json.JSONDecoder()


def shared_parts(fmt: str, raw: str) -> tuple[list[str], str]:
    """(parts, own), with `"".join(parts) + own == raw`: the parts other records of the same
    message may share, then the rest. A text of no known shape is all its own."""
    if fmt == "hl7":
        return _segments_before_obx(raw)
    if fmt == "fhir":
        return _inherited_context(raw)
    return [], raw


def _segments_before_obx(raw: str) -> tuple[list[str], str]:
    parts: list[str] = []
    start = 0
    while not raw.startswith(OWN_FROM, start):
        end = raw.find(SEGMENT_END, start)
        if end < 0:
            return [], raw  # no OBX (a message quarantined whole without one): nothing to share
        parts.append(raw[start:end + 1])
        start = end + 1
    return parts, raw[start:]


def _inherited_context(raw: str) -> tuple[list[str], str]:
    if not raw.startswith(CONTEXT):
        return [], raw
    try:
        _, end = _DECODER.raw_decode(raw, len(CONTEXT))
    except ValueError:
        return [], raw
    if not raw.startswith(MEMBER_END, end):
        return [], raw
    end += len(MEMBER_END)
    return [raw[:end]], raw[end:]

"""HL7 v2 lab files (2.2-2.5.1): one record per OBX of every ORU message (ECOSYSTEM.md §5.1).

A non-empty, non-pending OBX value is an `IncomingResult` whatever its value type (text too): the
service's catalog alone decides monitored, ignored or unknown, so no possible monitored result is
dropped here. Skipped: pending or not-done results, empty values, ED/RP, messages of a known type
other than ORU. Unreadable: messages that cannot be split safely or whose type MSH-9 is not an HL7
message type (quarantined whole), OBX that cannot be stored exactly or whose text holds a NUL or a
byte that is not text in the message's character set (MSH-18, else the `hl7_encoding` setting).

The `raw` of an OBX record is its MSH, PID, OBR and OBX as received plus a `ZMK` line that is not
part of the message: the record's source key, so `from_raw` can re-read the quarantined text exactly.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import lru_cache, partial
from itertools import chain
from pathlib import Path
from typing import NamedTuple, TextIO

from monitor.domain.analytes import Catalog
from monitor.ingest.differential import Derivation, with_absolute_counts
from monitor.ingest.records import (
    IncomingResult,
    ReadOptions,
    Record,
    Skipped,
    Tally,
    Unreadable,
    UnreadableFile,
    open_text,
    parse_number,
    unstorable,
)

FORMAT = "hl7"
ENVELOPE = ("FHS", "BHS", "BTS", "FTS")  # file and batch wrappers carry no results
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the same breaks as universal-newline file reading
STRIP = " \t\x00\x0b\x1c\ufeff"  # whitespace, MLLP framing, a BOM
DRAW = "in its OBR group"  # where a %-differential's WBC must be (ingest/differential.py)
REPLAY = "ZMK"  # monitor's replay line: source key, note, order key; never part of a received message
INTERNAL = "internal reader error"
STATUS = {"F": "final", "U": "final", "C": "corrected", "A": "corrected", "P": "preliminary",
          "R": "preliminary", "S": "preliminary", "D": "retracted", "W": "retracted"}
NO_RESULT = {"I": "pending (result status I)", "O": "no result, order detail only (status O)",
             "N": "not asked (result status N)", "X": "result cannot be obtained (status X)"}
NOT_A_VALUE = {"ED": "value type ED (a document) is not a lab value",
               "RP": "value type RP (a reference pointer) is not a lab value"}
CODED = ("CE", "CWE", "CNE", "CF")
ONE_VALUE = ("NM", "SN", "ST")
#: HL7 message types (MSH-9.1; table 0076, v2.3-v2.8). One of these other than ORU is not a lab
#: result and is counted ignored; anything else is a damaged header, and the message is quarantined.
MESSAGE_TYPES = frozenset("""
    ACK ADR ADT BAR BPS BRP BRT BTS CCF CCI CCM CCQ CCR CCU CNQ CQU CRM CSU DBC DBU DEL DFT DOC DPR DSR
    EAC EAN EAR EDR EHC EQQ ERP ESR ESU INR INU LSR LSU MDM MFD MFK MFN MFQ MFR NMD NMQ NMR OMB OMD OMG
    OMI OML OMN OMP OMQ OMS OPL OPR OPU ORA ORB ORD ORF ORG ORI ORL ORM ORN ORP ORQ ORR ORS ORU ORX OSM
    OSQ OSR OSU OUL PEX PGL PIN PMU PPG PPP PPR PPT PPV PRR PTR QBP QCK QCN QRY QSB QSX QVR RAR RAS RCI
    RCL RDE RDR RDS RDY REF RER RGR RGV ROR RPA RPI RPL RPR RQA RQC RQI RQP RRA RRD RRE RRG RRI RSP RTB
    SDR SIU SLR SMD SPQ SQM SQR SRM SRR SSR SSU STC STI SUR TBR TCR TCU UDM VQQ VXQ VXR VXU VXX
""".split())
#: HL7 character sets (MSH-18, table 0211) monitor reads, as Python codecs. Another name is read if
#: Python knows it and it writes HL7's structure as ASCII does (`codec_for`).
CHARSETS = {"ASCII": "ascii", "ISO IR6": "ascii", "UNICODE UTF-8": "utf-8", "8859/1": "latin-1",
            **{f"8859/{n}": f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 15)},
            "GB 18030-2000": "gb18030", "KS X 1001": "euc_kr", "BIG-5": "big5"}
STRUCTURE = "MSHPIDOBROBX|^~\\&#\r\n 0123456789."

NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
TAIL = r"(?:\s+\S.*)?"  # a unit after the numbers: "<10 ug/dl"
RANGE = re.compile(rf"({NUM})\s*(?:-|–|_|to)\s*({NUM}){TAIL}", re.IGNORECASE)
BELOW = re.compile(rf"(?:<=?|≤)\s*({NUM}){TAIL}")
ABOVE = re.compile(rf"(?:>=?|≥)\s*({NUM}){TAIL}")
TS = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2}(?:\.\d{1,6})?)?(?:([+-])(\d{2})([0-5]\d))?")


@dataclass(frozen=True)
class _Seps:
    field: str
    comp: str
    rep: str
    esc: str
    sub: str


class _Seg(NamedTuple):
    raw: str
    name: str
    #: Index = HL7 field number (python-hl7 numbers MSH the same way); padded with empty fields
    #: to at least `FIELDS`, so that `fields[n]` needs no bounds check.
    fields: list[str]


FIELDS = 26


def _split(segment: str, seps: _Seps) -> _Seg:
    """Fields by number. MSH-1 is the field separator itself, so MSH fields shift by one.

    (python-hl7's container tree was the planned parser; profiling showed it cost four fifths of
    HL7 ingestion while the reader only needs each field's text, so fields are split here.)
    """
    fields = segment.split(seps.field)
    if fields[0] == "MSH":
        fields = ["MSH", seps.field, *fields[1:]]
    if len(fields) < FIELDS:
        fields.extend([""] * (FIELDS - len(fields)))
    return _Seg(segment, fields[0], fields)


@dataclass(frozen=True)
class _Msg:
    seps: _Seps
    options: ReadOptions
    head: list[str]  # MSH and PID as received
    mrn: str
    mrn_problem: str
    sent_at: str  # MSH-7
    catalog: Catalog  # which codes are %-differentials
    charset: str  # the character set it was read in, and from where: for a quarantine reason
    dirty: bool  # it holds a NUL, or a byte that was not text in its character set


@lru_cache(maxsize=64)
def codec_for(charset: str) -> str | None:
    """The Python codec of an HL7 character set (MSH-18 or the `hl7_encoding` setting), or None
    when monitor cannot read it: unknown, or not writing HL7's separators and digits as ASCII does
    (UTF-16, EBCDIC), so a message in it cannot be split into segments."""
    name = CHARSETS.get(" ".join(charset.split()).upper())
    if name is None:
        try:
            name = codecs.lookup(charset.strip()).name
        except (LookupError, ValueError):
            return None
    try:
        return name if STRUCTURE.encode(name) == STRUCTURE.encode("ascii") else None
    except UnicodeError:
        return None


def read_text(text: str, origin: str, options: ReadOptions, catalog: Catalog, tally: Tally | None = None,
              ) -> Iterator[Record]:
    """Records from HL7 text (already decoded): one message, a batch, or several messages one after
    another; each record counted in `tally`."""
    yield from _read_lines(LINE_BREAK.split(text), origin, options, catalog, tally or Tally(), recode=False)


def read_file(path: Path, options: ReadOptions, catalog: Catalog, tally: Tally | None = None) -> Iterator[Record]:
    """Records from an HL7 file, read message by message (the file is checked now, read lazily),
    each message in its own character set (MSH-18, else `options.hl7_encoding`).

    Raises:
        UnreadableFile: missing, or not HL7 (no MSH, FHS or BHS first).
    """
    with _open(path) as stream:
        first = next((s for s in (line.strip(STRIP) for line in stream) if s), "")
    if first[:3] not in ("MSH", "FHS", "BHS"):
        raise UnreadableFile(f"{path}: not an HL7 v2 file; it must start with an MSH, FHS or BHS segment")
    return _read_stream(path, options, catalog, tally or Tally())


def from_raw(raw: str, origin: str, options: ReadOptions, catalog: Catalog) -> Record:
    """A record this reader produced, read again from its `raw` (quarantine replay) under its key."""
    lines = [line.strip(STRIP) for line in LINE_BREAK.split(raw) if line.strip(STRIP)]
    seps = _encoding(lines[0]) if lines else None
    keyed = seps is not None and lines[-1].startswith(REPLAY + seps.field)
    replay = [_unescape(f, seps) for f in lines[-1].split(seps.field)] + ["", "", ""] if seps and keyed else []
    key, order_key = (replay[1], replay[3] or None) if replay else ("", None)
    records = list(read_text(raw, origin, options, catalog))
    if keyed:  # one OBX, or the two a count was derived from: keep the record the key names
        d = key.endswith("#abs")
        named = [r for r in records if isinstance(r, IncomingResult) and r.source_key.endswith("#abs") == d]
        records = [*named, *(r for r in records if not isinstance(r, IncomingResult))][:1]
    if len(records) != 1:
        return Unreadable(FORMAT, origin, raw, f"the quarantined text now reads as {len(records)} records; "
                          "ingest its file again")
    r = records[0]
    if isinstance(r, IncomingResult):
        return replace(r, source_key=key or r.source_key, origin=origin, raw_source=raw,
                       order_key=order_key if keyed else r.order_key)
    return replace(r, origin=origin, raw=raw) if isinstance(r, Unreadable) else replace(r, origin=origin)


def _open(path: Path) -> AbstractContextManager[TextIO]:
    return open_text(path, newline=None)  # None: CR, LF, CRLF end a line


def _read_stream(path: Path, options: ReadOptions, catalog: Catalog, tally: Tally) -> Iterator[Record]:
    with _open(path) as stream:
        yield from _read_lines(stream, path.name, options, catalog, tally, recode=True)


def _read_lines(lines: Iterable[str], name: str, options: ReadOptions, catalog: Catalog, tally: Tally, *,
                recode: bool) -> Iterator[Record]:
    """Group segments into messages (dropping batch envelopes) and read each message whole. With
    `recode`, the lines are a file's bytes read as UTF-8 (a byte that is not UTF-8 as a lone
    surrogate), and each message is decoded again in its own character set."""
    current: list[str] = []
    n = 0
    for segment in (line.strip(STRIP) for line in chain(lines, ["MSH"])):  # the sentinel flushes the last
        if segment.startswith("MSH") and current:
            yield from _read_message(current, name, n, options, catalog, tally, recode)
            current = []
        n += segment.startswith("MSH")
        if segment and segment[:3] not in ENVELOPE:
            current.append(segment)


def _read_message(segments: list[str], name: str, n: int, options: ReadOptions, catalog: Catalog, tally: Tally,
                  recode: bool) -> list[Record]:
    """The records of one message: one per OBX (each counted in `tally`), or the whole message as
    one record (counted once) when it cannot be read as a result message. With `recode`, the
    segments are decoded again in the message's character set first."""
    where = f"{name}:message {n}" if n else f"{name}:before message 1"
    seps = _encoding(segments[0]) if n else None
    segs = [_split(segment, seps) for segment in segments] if seps else []
    charset, codec = _charset(segs[0].fields[18].split(seps.rep, 1)[0].strip(), options.hl7_encoding) if seps else (
        "", None)
    codec = codec if recode else "utf-8"  # text that is not from a file is decoded already
    if problem := _whole_message_problem(segments, n, seps, charset, codec):
        tally.seen += 1
        return [Unreadable(FORMAT, where, "\r".join(segments), problem)]
    assert seps is not None and codec is not None
    if codec != "utf-8" and not all(s.isascii() for s in segments):
        segments = [s.encode("utf-8", "surrogateescape").decode(codec, "surrogateescape") for s in segments]
        segs = [_split(segment, seps) for segment in segments]
    text = "\r".join(segments)
    before = tally.seen
    try:
        return list(_read_parsed(segs, text, seps, where, options, catalog, charset, tally))
    except Exception as e:  # a reader bug must not lose the message: quarantine it whole
        tally.seen = before + 1
        return [Unreadable(FORMAT, where, text, f"{INTERNAL}: {type(e).__name__}: {e}")]


def _whole_message_problem(segments: list[str], n: int, seps: _Seps | None, charset: str, codec: str | None) -> str:
    """Why a message cannot be split into its OBX (it is quarantined whole), or ""."""
    if n == 0:
        return "segments before the first MSH header"
    if seps is None:
        shown = segments[0][4:].split(segments[0][3:4] or "|")[0]
        return (f"MSH-2 encoding characters {shown!r} are broken (4 or 5 distinct symbols such as ^~\\& are "
                "needed), so the message cannot be split safely")
    if codec is None:
        return (f"its character set, {charset}, is not one monitor reads; have the lab send UNICODE UTF-8 or "
                "8859/1 (HL7 table 0211) and say so in MSH-18")
    return ""


@lru_cache(maxsize=64)  # asked for every message of a file
def _charset(declared: str, setting: str) -> tuple[str, str | None]:
    """A message's character set (MSH-18 `declared`, else the `hl7_encoding` setting), saying where
    it comes from, and its Python codec (None if monitor cannot read it)."""
    if declared:
        return f"{declared!r} (MSH-18)", codec_for(declared)
    return f"{setting!r} (setting ingest.hl7_encoding, as MSH-18 is empty)", codec_for(setting)


def _read_parsed(segs: list[_Seg], text: str, seps: _Seps, where: str, options: ReadOptions,
                 catalog: Catalog, charset: str, tally: Tally) -> Iterator[Record]:
    msh = segs[0]
    kind = "^".join(_part(msh.fields[9], seps, i).upper() for i in (1, 2))
    if not kind.startswith("ORU^"):
        tally.seen += 1
        yield _not_a_result(kind, msh, seps, where, text)
        return
    pid = next((s for s in segs if s.name == "PID"), None)
    mrn, problem = _mrn(pid, seps, options)
    sender = "/".join(_part(msh.fields[i], seps, 1) or _part(msh.fields[i], seps, 2) for i in (3, 4))
    # no MSH-10: the message's content names it
    control = _part(msh.fields[10], seps, 1) or "sha256:" + hashlib.sha256(
        text.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    m = _Msg(seps, options, [msh.raw] + ([pid.raw] if pid else []), mrn, problem, _part(msh.fields[7], seps, 1),
             catalog, charset, bool(unstorable(text)))
    groups: list[tuple[_Seg | None, list[tuple[str, Record, _Seg]]]] = [(None, [])]  # per OBR
    k = 0
    seen: set[str] = set()
    for seg in segs:
        if seg.name == "OBR":
            groups.append((seg, []))
            seen = set()
        elif seg.name == "OBX":
            k += 1
            set_id = _part(seg.fields[1], seps, 1)
            obx_key = set_id if set_id and set_id not in seen else f"#{k}"
            seen.add(set_id)
            key = _key(f"hl7:{sender}|{control}|{len(groups) - 1}|{obx_key}")
            groups[-1][1].append(_read_obx(seg, groups[-1][0], key, f"{where}:OBX {k}", m))
    _link(groups, sender, seps)
    tally.seen += k or 1
    for obr, group in groups:
        yield from with_absolute_counts([r for _, r, _ in group], m.catalog, partial(_derived, group, m, obr), DRAW)
    if k == 0:
        yield Skipped(where, f"{kind} message has no OBX")


def _not_a_result(kind: str, msh: _Seg, s: _Seps, where: str, text: str) -> Record:
    """A message that is not ORU: ignored if MSH-9 names another HL7 message type, else (a damaged
    header: it may be a result message) quarantined whole."""
    code = kind.split("^", 1)[0]
    if code in MESSAGE_TYPES:
        return Skipped(where, f"{kind} message is not a lab result (ORU)")
    shown = msh.fields[9].split(s.rep, 1)[0][:20]
    return Unreadable(FORMAT, where, text, f"MSH-9 message type {shown!r} is not an HL7 message type, so what the "
                      "message holds is unknown (a lab result is ORU^R01); have the lab send it again with a valid "
                      "MSH-9, then ingest it again")


def _text_problem(raw: str, m: _Msg) -> str:
    """Why a record's text cannot be kept as it is (a NUL, or a byte that is not text in the
    message's character set), naming the segment, or ""."""
    for line in raw.split("\r"):
        if bad := unstorable(line):
            if bad.endswith("NUL character"):
                return f"segment {line[:3]!r} has {bad}; have the lab send it without, then ingest it again"
            return (f"segment {line[:3]!r} has {bad}, {m.charset}; have the lab give its character set in "
                    "MSH-18, or set ingest.hl7_encoding (e.g. 8859/1), then ingest the file again")
    return ""


def _read_obx(obx: _Seg, obr: _Seg | None, key: str, origin: str, m: _Msg) -> tuple[str, Record, _Seg]:
    s = m.seps
    f = obx.fields
    code = _code(f[3], s)
    raw = "\r".join([*m.head, *([obr.raw] if obr else []), obx.raw, f"{REPLAY}{s.field}{_escape(key, s)}"])
    if m.dirty and (problem := _text_problem(raw, m)):
        return code, Unreadable(FORMAT, origin, raw, problem), obx
    flag = _part(f[11], s, 1).upper()
    vtype = _part(f[2], s, 1).upper()
    reps = f[5].split(s.rep)
    value = _value(vtype, reps, s)
    status = STATUS.get(flag)
    if status != "retracted":
        empty = value in ("", '""')
        if why := NO_RESULT.get(flag) or NOT_A_VALUE.get(vtype) or ("no value" if empty else ""):
            return code, Skipped(origin, f"OBX {code or '(no code)'}: {why}"), obx

    def bad(reason: str) -> tuple[str, Record, _Seg]:
        return code, Unreadable(FORMAT, origin, raw, reason), obx

    if status is None:
        return bad(f"OBX-11 result status {flag!r} is unknown (F, C, P, D, W...)" if flag
                   else "OBX-11 result status is empty")
    if vtype in ONE_VALUE and len(reps) > 1:
        return bad(f"OBX-5 repeats ({f[5]!r}); a repeated {vtype} value cannot be stored exactly")
    if not code:
        return bad("OBX-3 has no observation code")
    if m.mrn_problem:
        return bad(m.mrn_problem)
    sent = _part(f[14], s, 1) or (_part(obr.fields[7], s, 1) if obr else "") or m.sent_at
    try:
        observed_at = _when(sent, m.options)
    except ValueError:
        return bad(f"collection time {sent!r} (OBX-14, OBR-7 or MSH-7) is not an HL7 date-time to the day"
                   if sent else "no collection time in OBX-14, OBR-7 or MSH-7")
    low, high = _range(_part(f[7], s, 1))
    return code, IncomingResult(
        format=FORMAT, source_key=key, origin=origin, raw_source=raw, mrn=m.mrn, code=code,
        value="" if value == '""' else value, unit=_part(f[6], s, 1), observed_at=observed_at,
        status=status, ref_low=low, ref_high=high,
    ), obx


def _link(groups: list[tuple[_Seg | None, list[tuple[str, Record, _Seg]]]], sender: str, s: _Seps) -> None:
    """Set each result's order key: sender, OBR-3 filler order number (else OBR-2 placer), OBX-3
    and OBX-4. A lab's correction, or the final result after a preliminary one, comes in a new
    message (a new MSH-10) but names the same order and test. A test named twice in one message
    (labs split an order over several OBR groups) is ambiguous and gets none."""
    tests: list[tuple[IncomingResult, str]] = []
    for obr, group in groups:
        order = "" if obr is None else (
            _part(obr.fields[3], s, 1) or (f"placer:{placer}" if (placer := _part(obr.fields[2], s, 1)) else ""))
        tests += [(r, f"{order}|{code}|{_part(obx.fields[4], s, 1)}") for code, r, obx in group
                  if order and isinstance(r, IncomingResult)]
    named = Counter(test for _, test in tests)
    for record, test in tests:
        if named[test] == 1:
            record.order_key = _key(f"hl7:{sender}|{test}")
            record.raw_source = s.field.join([record.raw, "", _escape(record.order_key, s)])  # ZMK|key||order


def _derived(group: list[tuple[str, Record, _Seg]], m: _Msg, obr: _Seg | None, d: Derivation) -> IncomingResult:
    """A count derived from a % and the WBC of its OBR group, keyed after the % and kept with both OBX
    (and a ZMK line naming its key) for replay."""
    s = m.seps
    obx = {id(r): seg for _, r, seg in group}
    key = _key(d.percent.source_key + "#abs")
    order_key = _key(f"{d.percent.order_key}#abs") if d.percent.order_key and d.wbc.order_key else None
    raw = "\r".join([*m.head, *([obr.raw] if obr else []), obx[id(d.wbc)].raw, obx[id(d.percent)].raw,
                     s.field.join([REPLAY, _escape(key, s), _escape(d.note, s), _escape(order_key or "", s)])])
    return d.result(key, f"{d.percent.origin}:absolute", raw, order_key)


def _encoding(msh: str) -> _Seps | None:
    """Separators from MSH-1/MSH-2, or None when they cannot split the message unambiguously."""
    if not msh.startswith("MSH") or len(msh) < 8:
        return None
    end = msh.find(msh[3], 4)
    chars = msh[3:end] if end > 0 else ""
    if not 5 <= len(chars) <= 6 or len(set(chars)) != len(chars) or any(
            c.isalnum() or c.isspace() for c in chars):
        return None  # v2.7 adds a 5th, the truncation character: `^~\&#`
    return _Seps(field=chars[0], comp=chars[1], rep=chars[2], esc=chars[3], sub=chars[4])


def _part(field: str, s: _Seps, comp: int) -> str:
    """The first subcomponent of a component (1-based) of a field's first repetition, unescaped."""
    if s.comp not in field and s.rep not in field and s.sub not in field and s.esc not in field:
        return field.strip() if comp == 1 else ""  # most fields: one plain value
    comps = field.split(s.rep, 1)[0].split(s.comp)
    return _unescape(comps[comp - 1].split(s.sub, 1)[0], s).strip() if comp <= len(comps) else ""


def _value(vtype: str, reps: list[str], s: _Seps) -> str:
    first = reps[0].split(s.comp) if reps else [""]
    if vtype == "SN":  # comparator ^ number ^ separator/suffix ^ number: `<^10` -> "<10", `^182` -> "182"
        parts = [_unescape(c, s).strip() for c in (first + ["", "", "", ""])[:4]]
        return ("" if parts[0] == "=" else parts[0]) + "".join(parts[1:])
    if vtype in CODED:
        return _part(reps[0], s, 2) or _part(reps[0], s, 1)
    return "\n".join(_unescape(r, s) for r in reps).strip()


def _code(field: str, s: _Seps) -> str:
    """OBX-3: the LOINC of the identifier or its alternate, else the primary (local) code."""
    first = field.split(s.rep, 1)[0].split(s.comp)[:6]
    c = [_unescape(x.split(s.sub, 1)[0], s).strip() for x in first] + [""] * (6 - len(first))
    if c[0] and c[2].upper() == "LN":
        return c[0]
    if c[3] and c[5].upper() == "LN":
        return c[3]
    return c[0] or c[3]


def _mrn(pid: _Seg | None, s: _Seps, options: ReadOptions) -> tuple[str, str]:
    """(MRN, "") from PID-3, or ("", why not)."""
    ids = [(_part(r, s, 1), _part(r, s, 4), _part(r, s, 5)) for r in (pid.fields[3] if pid else "").split(s.rep)]
    ids = [i for i in ids if i[0]]
    authority = options.mrn_authority.strip().upper()
    for value, issuer, kind in ids:
        if kind.upper() == options.mrn_type.upper() and (not authority or issuer.upper() == authority):
            return value, ""
    if len(ids) == 1 and not (authority and ids[0][1] and ids[0][1].upper() != authority):
        return ids[0][0], ""
    wanted = f"of type {options.mrn_type}" + (f" from {options.mrn_authority}" if authority else "")
    return "", f"no MRN {wanted} in PID-3" if pid else "no PID segment, so no MRN"


@lru_cache(maxsize=4096)  # the results of one message share their time
def _when(text: str, options: ReadOptions) -> datetime:
    """HL7 DTM; an offset is kept, a naive time is in the lab's zone, a date is noon. ValueError if not."""
    m = TS.fullmatch(text)
    if m is None or m[3] is None:
        raise ValueError(text)
    year, month, day, hour, minute = (int(g or 0) for g in m.groups()[:5])
    seconds = Decimal(m[6] or 0)
    if m[4] is None:
        return datetime.combine(date(year, month, day), time(12), options.lab_zone)
    naive = datetime(year, month, day, hour, minute, int(seconds), int(seconds % 1 * 1_000_000))
    if m[7] is None:
        return naive.replace(tzinfo=options.lab_zone)
    offset = timedelta(hours=int(m[8]), minutes=int(m[9]))
    return naive.replace(tzinfo=timezone(-offset if m[7] == "-" else offset))


def _range(text: str) -> tuple[float | None, float | None]:
    """OBX-7 as (low, high); (None, None) where it is not numeric."""
    if m := RANGE.fullmatch(text):
        low, high = parse_number(m[1]), parse_number(m[2])
        return (low, high) if low is not None and high is not None and low <= high else (None, None)
    if m := BELOW.fullmatch(text):
        return None, parse_number(m[1])
    if m := ABOVE.fullmatch(text):
        return parse_number(m[1]), None
    return None, None


def _key(key: str) -> str:
    """Source keys fit the 255-character column: a longer one is replaced by its digest."""
    return key if len(key) <= 255 else "hl7:sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _unescape(text: str, s: _Seps) -> str:
    """Decode HL7 escape sequences (v2.5 §2.7): separators, hex bytes, line breaks; drop formatting."""
    if s.esc not in text:
        return text
    names = {"F": s.field, "S": s.comp, "T": s.sub, "R": s.rep, "E": s.esc, "H": "", "N": "",
             ".br": "\n", ".sp": "\n", ".ce": "\n", ".fi": "", ".nf": ""}

    def decode(m: re.Match[str]) -> str:
        code = m[1]
        if code in names:
            return names[code]
        if code[:1] == "X" and re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", code[1:]):
            data = bytes.fromhex(code[1:])
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data.decode("latin-1")
        return "" if code[:1] in ("C", "M", "Z", ".") else m[0]  # charset and formatting escapes

    e = re.escape(s.esc)
    return re.sub(f"{e}([^{e}]*){e}", decode, text)  # re caches the compiled pattern


def _escape(text: str, s: _Seps) -> str:
    if not any(c in text for c in (s.esc, s.field, s.comp, s.rep, s.sub)):
        return text
    out = text.replace(s.esc, f"{s.esc}E{s.esc}")
    for char, name in ((s.field, "F"), (s.comp, "S"), (s.rep, "R"), (s.sub, "T")):
        out = out.replace(char, f"{s.esc}{name}{s.esc}")
    return out

"""FHIR R4 JSON lab files (an Observation, a DiagnosticReport or a Bundle) as records.

Plain dict walking (ECOSYSTEM §5.2); malformed input becomes records, never exceptions. Report
`result` and panel `hasMember` references are followed within the bundle (fullUrl, Type/id,
#contained), then the bundles around it, then the caller's `references`; members inherit subject
and time and are read once. A bundle's entries may be bundles (a collection of reports), read the
same way. An Observation found anywhere else in the document (a place no bundle entry, report or
panel lists) is quarantined where it is, never guessed at and never dropped. The patient is the
subject's MRN identifier, never guessed from a reference id. `raw` is a JSON envelope
(observation, MRN, inherited times, source key) that `from_raw` reads again for replay.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from monitor.domain.analytes import Catalog, normalise_unit
from monitor.ingest.differential import Derivation, derived_from, with_absolute_counts
from monitor.ingest.records import (
    IncomingResult,
    ReadOptions,
    Record,
    Skipped,
    Tally,
    Unreadable,
    UnreadableFile,
    parse_number,
    parse_when,
    underflows,
    unstorable,
)

Json = dict[str, Any]
FORMAT = "fhir"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
BUNDLE_TYPES = ("collection", "transaction", "searchset", "batch")
STATUS = {"final": "final", "amended": "corrected", "corrected": "corrected",
          "preliminary": "preliminary", "cancelled": "retracted", "entered-in-error": "retracted"}
NOT_LAB = {"vital-signs", "survey", "social-history", "exam", "imaging", "procedure", "therapy",
           "activity"}
FHIR_ID = re.compile(r"[A-Za-z0-9.\-]{1,64}")
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?")
NO_TARGET = "referenced Observation not in this file"
DRAW = "in its report or panel"  # where a %-differential's WBC must be (ingest/differential.py)
#: JSON nested deeper than this is not a FHIR lab file (a bundle of bundles of reports with
#: contained panels is about 20 levels): refused before it is read, so no walk runs out of stack.
MAX_DEPTH = 100


@dataclass
class _Scope:
    """One bundle (or a lone resource) of a file: its name, reader settings and what references
    can point to; a nested bundle's scope falls back to the one around it (`parent`)."""

    name: str
    options: ReadOptions
    catalog: Catalog  # which codes are monitored, and which are %-differentials
    index: dict[str, Json] = field(default_factory=dict)  # fullUrl or Type/id -> resource
    entry: dict[int, tuple[str, str]] = field(default_factory=dict)  # id(resource) -> (entry path, fullUrl)
    seen: set[int] = field(default_factory=set)  # id() of Observations already read (the whole file)
    references: dict[str, Any] = field(default_factory=dict)  # the caller's, after the file's own
    tally: Tally = field(default_factory=Tally)  # records seen (the whole file)
    whole: set[int] = field(default_factory=set)  # id() of parts kept whole as one record (the whole file)
    parent: _Scope | None = None
    place: str = ""  # where the bundle is: "" or "entry 3/"

    def nested(self, place: str) -> _Scope:
        """The scope of a bundle inside this one, at entry path `place`."""
        return _Scope(self.name, self.options, self.catalog, seen=self.seen, tally=self.tally, whole=self.whole,
                      parent=self, place=f"{place}/")

    def add(self, key: str, res: object) -> None:
        if isinstance(res, dict) and isinstance(res.get("resourceType"), str):
            if key:
                self.index.setdefault(key, res)
            if isinstance(res.get("id"), str):
                self.index.setdefault(f"{res['resourceType']}/{res['id']}", res)


@dataclass(frozen=True)
class _Context:
    """What a member inherits from its report or panel, and where `#id` references point."""

    subject: object = None
    effective: object = None
    issued: object = None
    container: Json | None = None  # the resource whose `contained` answers `#id`
    owner: tuple[str, str] = ("", "")  # its source key and origin, prefixes for contained ids
    depth: int = 0  # report and panel nesting: bounded, so a hostile file cannot exhaust the stack

    def enter(self, res: Json, key: str, origin: str, *, contained: bool) -> _Context:
        """The context of `res` and its members: its own subject and times, else inherited ones."""
        effective = (res["effectiveDateTime"] if "effectiveDateTime" in res
                     else _dict(res.get("effectivePeriod")).get("start", res.get("effectiveInstant")))
        subject, issued = res.get("subject"), res.get("issued")
        return _Context(
            subject if isinstance(subject, dict) else self.subject,
            self.effective if effective is None else effective,
            self.issued if issued is None else issued,
            self.container if contained else res,
            self.owner if contained else (key, origin),
            self.depth + 1,
        )


def _dict(v: object) -> Json:
    return v if isinstance(v, dict) else {}


def _list(v: object) -> list[Any]:
    return v if isinstance(v, list) else []


def _str(v: object) -> str:
    return v.strip() if isinstance(v, str) else ""


def _is_number(v: object) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)
            and parse_number(str(v), exponent=True) is not None)


class _NumberText(str):
    """A JSON number that a Python number would change: `-0` (an int has no sign) or a literal that
    underflows to 0 (`1e-400`). Kept as its text, so it is quarantined, never read as 0."""


def _json_float(text: str) -> float | str:
    value = float(text)
    return _NumberText(text) if underflows(text, value) else value


def _json_int(text: str) -> int | str:
    return _NumberText(text) if text == "-0" else int(text)


def _loads(text: str | bytes) -> Any:
    """JSON as `json.loads` reads it, but a number literal it would turn into 0 stays text."""
    return json.loads(text, parse_float=_json_float, parse_int=_json_int)


def _dumps(v: object) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _show(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _codes(concept: object) -> set[str]:
    return {_str(c.get("code")) for c in _list(_dict(concept).get("coding")) if isinstance(c, dict)}


def _has_value(res: Json) -> bool:
    return any(isinstance(k, str) and k.startswith("value") for k in res)


def _identity(res: Json, scope: _Scope, ctx: _Context, *, contained: bool) -> tuple[str, str]:
    """Source key and origin: `fhir:{id}|{versionId}`, else the fullUrl, else a content hash."""
    rid = _str(res.get("id"))
    rid = rid if FHIR_ID.fullmatch(rid) else ""
    if contained:
        local = rid or hashlib.sha256(_dumps(res).encode()).hexdigest()[:32]
        return f"{ctx.owner[0]}#{local}", f"{ctx.owner[1]}#{local}"
    position, full_url = scope.entry.get(id(res), ("", ""))
    if rid:
        # One key per Observation id: a new version (amended, corrected, cancelled) lands on the
        # same key and takes the service's correction or retraction path.
        key = f"fhir:{rid}"
    elif full_url and full_url.isprintable() and len(full_url) < 240:
        key = f"fhir:{full_url}"
    else:
        key = f"fhir:sha256:{hashlib.sha256(_dumps(res).encode()).hexdigest()[:32]}"
    return key, f"{scope.name}:{rid or position or key}"


def _resolve(ref: object, scope: _Scope, ctx: _Context) -> Json | None:
    if not isinstance(ref, str) or not ref.strip():
        return None
    if ref.startswith("#"):
        return next((r for r in _list(_dict(ctx.container).get("contained"))
                     if isinstance(r, dict) and r.get("id") == ref[1:]), None)
    found = scope.index.get(ref)
    if found is None:  # absolute or versioned URL: match on Type/id
        parts = ref.split("/_history/")[0].rstrip("/").split("/")
        found = scope.index.get("/".join(parts[-2:])) if len(parts) >= 2 else None
    return found if found is not None or scope.parent is None else _resolve(ref, scope.parent, ctx)


def _pick_mrn(identifiers: list[Any], options: ReadOptions) -> str | None:
    """The identifier typed `mrn_type` (from `mrn_authority` if set); a sole untyped one will do."""
    usable = [i for i in identifiers if isinstance(i, dict) and _str(i.get("value"))
              and (not options.mrn_authority or i.get("system") == options.mrn_authority)]
    typed = {_str(i["value"]) for i in usable if options.mrn_type in _codes(i.get("type"))}
    if not typed and len(identifiers) == 1 and usable and not _codes(usable[0].get("type")) - {""}:
        typed = {_str(usable[0]["value"])}
    mrn = typed.pop() if len(typed) == 1 else ""
    return mrn if mrn and len(mrn) <= 64 and mrn.isprintable() else None


def _mrn(subject: Json, scope: _Scope, ctx: _Context) -> str | None:
    """From the subject's logical identifier, else from the Patient it references in the file."""
    logical = subject.get("identifier")
    mrn = _pick_mrn([logical], scope.options) if isinstance(logical, dict) else None
    patient = _dict(_resolve(subject.get("reference"), scope, ctx)) if mrn is None else {}
    return mrn or (_pick_mrn(_list(patient.get("identifier")), scope.options)
                   if patient.get("resourceType") == "Patient" else None)


def _quantity(q: Json) -> tuple[str, str]:
    """Value text (comparator kept: `<0.5` is not a number) and unit (UCUM code if coded)."""
    v = q.get("value")
    text = "" if v is None else str(v) if isinstance(v, _NumberText) or _is_number(v) else _dumps(v)
    comparator = q.get("comparator")
    if comparator not in (None, ""):
        text = f"{comparator if isinstance(comparator, str) else _dumps(comparator)}{text}"
    code, unit = _str(q.get("code")), _str(q.get("unit"))
    return text, (code if q.get("system") == UCUM and code else unit or code)


def _value_text(res: Json) -> str:
    for k, v in res.items():
        if isinstance(k, str) and k.startswith("value"):
            if isinstance(v, str):
                return v
            if k == "valueCodeableConcept" and isinstance(v, dict):
                coding = _dict(next(iter(_list(v.get("coding"))), None))
                return _str(v.get("text")) or _str(coding.get("display")) or _str(coding.get("code"))
            return _dumps(v)
    return ""


def _range(res: Json, units: set[str]) -> tuple[float | None, float | None, str]:
    """referenceRange[0] low and high, or why they cannot be used."""
    first = _dict(next(iter(_list(res.get("referenceRange"))), None))
    bounds = {side: first.get(side) for side in ("low", "high")}
    for side, q in bounds.items():
        if q is not None and (not isinstance(q, dict) or not _is_number(q.get("value"))):
            return None, None, f"reference range {side} {_show(q)} is not a number"
        unit = _quantity(q)[1] if q is not None else ""
        if unit and normalise_unit(unit) not in units:
            return None, None, f"reference range unit {unit!r} is not the result's unit"
    low, high = (None if q is None else float(q["value"]) for q in bounds.values())
    return low, high, ""


def _read(obs: Json, ctx: _Context, scope: _Scope, key: str, origin: str, mrn: str | None = None,
          ) -> Record:
    """One Observation as a record; `ctx` holds its own or inherited subject and times."""
    context = {k: v for k, v in (("effective", ctx.effective), ("issued", ctx.issued)) if v is not None}

    def bad(reason: str) -> Unreadable:
        envelope = {"context": context, "key": key, "mrn": mrn, "observation": obs}
        return Unreadable(FORMAT, origin, _dumps(envelope), reason)

    if problem := _text_problem(obs):
        return bad(problem)
    status = STATUS.get(_str(obs.get("status")))
    if status is None:
        if obs.get("status") == "registered":
            return Skipped(origin, "pending")
        return bad(f"status {_show(obs.get('status'))} is not final, preliminary, amended, corrected, "
                   "cancelled or entered-in-error")
    categories = {code for c in _list(obs.get("category")) for code in _codes(c)}
    if categories & NOT_LAB and "laboratory" not in categories:
        return Skipped(origin, f"not a laboratory result (category {', '.join(sorted(categories))})")
    codings = [c for c in _list(_dict(obs.get("code")).get("coding"))
               if isinstance(c, dict) and _str(c.get("code"))]
    coding = next((c for c in codings if c.get("system") == LOINC), codings[0] if codings else {})
    code = _str(coding.get("code"))
    if not code:
        return bad("no test code")
    quantity = obs.get("valueQuantity")
    if isinstance(quantity, dict):
        value, unit = _quantity(quantity)
        units: set[str] | None = {normalise_unit(unit), normalise_unit(_str(quantity.get("unit")))}
    else:  # text, coded or no value: kept (to be quarantined) only if it may be a monitored result
        if scope.catalog.analyte_for(code) is None:
            return Skipped(origin, "not a quantity" if _has_value(obs) else "no value")
        value, unit, units = _value_text(obs), "", None
    if mrn is None:
        mrn = _mrn(_dict(ctx.subject if ctx.subject is not None else obs.get("subject")), scope, ctx)
        if mrn is None:
            return bad("no MRN identifier for the subject")
    when = ctx.issued if ctx.effective is None else ctx.effective
    if when is None:
        return bad("no effective or issued time")
    if not isinstance(when, str) or not DATE_TIME.fullmatch(when.strip()):
        return bad(f"effective time {_show(when)} is not a full date or date-time")
    try:
        observed_at = parse_when(when, scope.options.lab_zone)
    except (ValueError, OverflowError):
        return bad(f"effective time {_show(when)} is not a valid date or date-time")
    low, high, problem = _range(obs, units) if units is not None else (None, None, "")
    if problem:
        return bad(problem)
    envelope = {"context": context, "key": key, "mrn": mrn, "observation": obs}
    return IncomingResult(
        format=FORMAT, source_key=key, origin=origin, raw_source=_dumps(envelope), mrn=mrn, code=code,
        value=value, unit=unit, observed_at=observed_at, status=status, ref_low=low, ref_high=high,
    )


def _text_problem(obs: Json) -> str:
    """Why an Observation's text cannot be kept as it is (a NUL or a lone surrogate: a byte that
    was not UTF-8, or a JSON `\\udc00` escape), or ""."""
    for path, v in _walk(obs):
        if isinstance(v, str) and (bad := unstorable(v)):
            return f"{path or 'the Observation'} has {bad}; have the sender write it as UTF-8 JSON without it"
    return ""


def _walk(doc: object, skip: set[int] | None = None) -> Iterator[tuple[str, object]]:
    """Every value in a JSON document (keys as values too), parents first, with its path
    (`entry[0].resource`), without recursion; a part in `skip` (by id) is left out with all in it."""
    stack: list[tuple[str, object]] = [("", doc)]
    while stack:
        path, v = stack.pop()
        if skip and id(v) in skip:
            continue
        yield path, v
        if isinstance(v, dict):
            stack.extend((f"{path}.{k}" if path else str(k), x) for k, x in reversed(v.items()))
            stack.extend((path, k) for k in v)
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", x) for i, x in reversed(list(enumerate(v))))


def _depth(doc: object) -> int:
    """How deep a JSON document nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
        if children:
            deepest = max(deepest, depth)
            stack.extend((c, depth + 1) for c in children)
    return deepest


def _derived(d: Derivation) -> IncomingResult:
    """A count derived from a % and the WBC of its report or panel, kept with both for replay."""
    raw = _dumps({"derived": d.note, "derived_from": [_loads(d.wbc.raw), _loads(d.percent.raw)]})
    return d.result(f"{d.percent.source_key}#abs", f"{d.percent.origin}#abs", raw)


Leaf = tuple[Json, _Context, str, str]  # observation, its context, source key, origin


def _members(refs: list[Any], ctx: _Context, scope: _Scope) -> Iterator[Leaf | Skipped]:
    for i, ref in enumerate(refs):
        ref = _dict(ref).get("reference")
        target = _resolve(ref, scope, ctx)
        if target is None or target.get("resourceType") != "Observation" or ctx.depth > 20:
            where = ref if isinstance(ref, str) and ref.isprintable() else f"reference {i}"
            yield Skipped(f"{ctx.owner[1]}->{where}", NO_TARGET if ctx.depth <= 20 else "nested too deeply")
        else:
            yield from _leaves(target, ctx, scope, contained=isinstance(ref, str) and ref.startswith("#"))


def _leaves(res: Json, parent: _Context, scope: _Scope, *, contained: bool) -> Iterator[Leaf | Skipped]:
    """The Observations to read under a report, panel or single Observation, each once."""
    if id(res) in scope.seen:
        return
    scope.seen.add(id(res))
    key, origin = _identity(res, scope, parent, contained=contained)
    ctx = parent.enter(res, key, origin, contained=contained)
    if res.get("resourceType") == "DiagnosticReport":
        yield from _members(_list(res.get("result")), ctx, scope)
        for c in _list(res.get("contained")):
            if isinstance(c, dict) and c.get("resourceType") == "Observation":
                yield from _leaves(c, ctx, scope, contained=True)
        return
    members = _list(res.get("hasMember"))
    yield from _members(members, ctx, scope)
    if not members or _has_value(res):
        yield res, ctx, key, origin


def _group(root: Json, scope: _Scope) -> Iterator[Record]:
    """Records for one report, panel or Observation (each counted seen), the % of a draw replaced
    by their derived absolute counts."""
    records: list[Record] = []
    for leaf in _leaves(root, _Context(), scope, contained=False):
        scope.tally.seen += 1
        if isinstance(leaf, Skipped):
            records.append(leaf)
            continue
        obs, ctx, key, origin = leaf
        records.append(_read(obs, ctx, scope, key, origin))
    yield from with_absolute_counts(records, scope.catalog, _derived, DRAW)


def _bundle(doc: Json, scope: _Scope) -> Iterator[Record]:
    resources: list[Json] = []
    for i, entry in enumerate(_list(doc.get("entry"))):
        res = _dict(_dict(entry).get("resource"))
        if not isinstance(res.get("resourceType"), str):
            scope.tally.seen += 1
            yield Skipped(f"{scope.name}:{scope.place}entry {i}", "bundle entry without a resource")
            continue
        scope.entry[id(res)] = (f"{scope.place}entry {i}", _str(_dict(entry).get("fullUrl")))
        scope.add(scope.entry[id(res)][1], res)
        resources.append(res)
    if scope.parent is None:
        for ref, other in scope.references.items():
            scope.add(ref, other)
    members = {id(t) for r in resources for m in _list(r.get("hasMember"))
               if (t := _resolve(_dict(m).get("reference"), scope, _Context(container=r))) is not None}
    # Reports first, then top-level panels and single Observations, then anything left (cycles),
    # then the bundles among the entries.
    for res in resources:
        if res["resourceType"] == "DiagnosticReport":
            yield from _group(res, scope)
    for pass_ in (0, 1):
        for res in resources:
            if (res["resourceType"] == "Observation" and id(res) not in scope.seen
                    and (pass_ or id(res) not in members)):
                yield from _group(res, scope)
    for res in resources:
        if res["resourceType"] == "Bundle":
            place = scope.entry[id(res)][0]
            yield from _whole(res, scope, place) if _bundle_problem(res) else _bundle(res, scope.nested(place))


def _bundle_problem(doc: Json) -> str:
    if doc.get("type") in BUNDLE_TYPES:
        return ""
    return f"bundle type {_show(doc.get('type'))} is not read; send one of {', '.join(BUNDLE_TYPES)}"


def _whole(part: Json, scope: _Scope, place: str) -> Iterator[Record]:
    """A part of the document that cannot be read, quarantined whole as one record."""
    scope.whole.add(id(part))
    scope.tally.seen += 1
    yield Unreadable(FORMAT, f"{scope.name}:{place}" if place else scope.name, _dumps(part), _bundle_problem(part))


def _strays(doc: object, scope: _Scope) -> Iterator[Record]:
    """The Observations (results, not panels) that no bundle entry, report or panel led to, each
    quarantined where it is: their patient, time and identity would be guesses."""
    for path, v in _walk(doc, scope.whole):
        if (isinstance(v, dict) and v.get("resourceType") == "Observation" and id(v) not in scope.seen
                and (not _list(v.get("hasMember")) or _has_value(v))):
            scope.seen.add(id(v))
            scope.tally.seen += 1
            yield Unreadable(FORMAT, f"{scope.name}:{path or 'document'}", _dumps({"observation": v}),
                             f"an Observation at {path or 'the top of the document'} that no bundle entry, report "
                             "or panel lists, so its patient, time and identity are unknown; have the sender "
                             "list it as a bundle entry or a report's result")


def read_json(data: object, origin: str, options: ReadOptions, catalog: Catalog, *,
              references: dict[str, dict[str, Any]] | None = None, tally: Tally | None = None) -> Iterator[Record]:
    """Records from one parsed FHIR document; `origin` names it (usually the file name). Each is
    counted in `tally`: an Observation (in a bundle at any depth, a report, a panel, or anywhere else,
    where it is quarantined), a reference or bundle entry that leads to none, or the document whole
    when it cannot be read.

    `references` holds resources from elsewhere (a Patient, the Observations a report points
    to), keyed by reference (`Patient/x`) or fullUrl. A non-quantity value is yielded (to be
    quarantined) only if the catalog monitors its code. Never raises: malformed input becomes
    Unreadable records.
    """
    scope = _Scope(origin, options, catalog, references=dict(references or {}), tally=tally or Tally())
    doc = _dict(data)
    kind = doc.get("resourceType")
    deep = _depth(data) > MAX_DEPTH
    if deep or not isinstance(kind, str):
        scope.tally.seen += 1
        yield Unreadable(FORMAT, origin, "" if deep else _dumps(data),
                         f"JSON nested more than {MAX_DEPTH} levels deep (not kept)" if deep
                         else "not a FHIR resource (no resourceType)")
        return
    before = scope.tally.seen
    yield from _document(doc, kind, scope)
    yield from _strays(doc, scope)
    if scope.tally.seen == before:
        scope.tally.seen += 1
        yield Skipped(origin, f"a {kind[:40]} resource holds no lab result")


def _document(doc: Json, kind: str, scope: _Scope) -> Iterator[Record]:
    if kind == "Bundle":
        yield from _whole(doc, scope, "") if _bundle_problem(doc) else _bundle(doc, scope)
    elif kind in ("Observation", "DiagnosticReport"):
        for ref, other in scope.references.items():
            scope.add(ref, other)
        yield from _group(doc, scope)


def from_raw(raw: str, origin: str, options: ReadOptions, catalog: Catalog) -> Record:
    """A record this reader produced, read again from its `raw` (quarantine replay)."""
    try:
        envelope = _dict(_loads(raw))
    except (ValueError, RecursionError):
        envelope = {}
    parts = [from_raw(_dumps(p), origin, options, catalog) for p in _list(envelope.get("derived_from"))]
    if parts:
        derived = derived_from(parts, catalog, _derived, DRAW)
        if derived is None:
            return Unreadable(FORMAT, origin, raw, "the derived count's sources no longer read")
        return replace(derived, origin=origin)
    obs, context, key = envelope.get("observation"), _dict(envelope.get("context")), envelope.get("key")
    if not isinstance(obs, dict) or not isinstance(key, str):
        return Unreadable(FORMAT, origin, raw, "not a record of the FHIR reader")
    mrn = envelope.get("mrn")
    ctx = _Context(effective=context.get("effective"), issued=context.get("issued"), container=obs)
    scope = _Scope(origin, options, catalog)
    return _read(obs, ctx, scope, key, origin, mrn if isinstance(mrn, str) else None)


def read_file(path: Path, options: ReadOptions, catalog: Catalog, tally: Tally | None = None) -> Iterator[Record]:
    """Records from a FHIR JSON file. A byte that is not UTF-8 inside a JSON string does not stop
    it: the Observation that holds it is quarantined (`_text_problem`).

    Raises:
        UnreadableFile: missing, not JSON, nested deeper than `MAX_DEPTH`, or not a FHIR resource.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UnreadableFile(f"{path}: cannot open ({e.strerror})") from None
    try:
        doc = _loads(data.decode("utf-8-sig", "surrogateescape"))
    except (ValueError, RecursionError) as e:
        why = (str(e) or "nested too deeply").splitlines()[0]
        raise UnreadableFile(f"{path}: not JSON ({why})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise UnreadableFile(f"{path}: not a FHIR resource (no resourceType); send an Observation, "
                             "DiagnosticReport or Bundle as JSON")
    if _depth(doc) > MAX_DEPTH:
        raise UnreadableFile(f"{path}: JSON nested more than {MAX_DEPTH} levels deep; a FHIR lab file is far "
                             "shallower: check what was sent")
    yield from read_json(doc, path.name, options, catalog, tally=tally)

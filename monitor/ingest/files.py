"""Lab files on disk: which reader a file needs, and its records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from monitor.domain.analytes import Catalog
from monitor.ingest import csv_reader, fhir_reader, hl7_reader
from monitor.ingest.records import ReadOptions, Record, Tally, UnreadableFile


def read_file(kind: str, path: Path, options: ReadOptions, catalog: Catalog, tally: Tally | None = None,
              ) -> Iterator[Record]:
    """The records of a file in one of the formats `detect` names, each counted in `tally`."""
    if kind == "hl7":
        return hl7_reader.read_file(path, options, catalog, tally)
    if kind == "fhir":
        return fhir_reader.read_file(path, options, catalog, tally)
    return csv_reader.read_file(path, options.lab_zone, catalog, tally)


def detect(path: Path) -> str:
    """`hl7`, `fhir` or `csv`, from the first bytes (after a BOM and blank lines).

    Raises:
        UnreadableFile: the file cannot be opened.
    """
    try:
        with path.open("rb") as f:
            head = f.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as e:
        raise UnreadableFile(f"{path}: cannot open ({e.strerror})") from None
    if head.startswith((b"MSH|", b"FHS|", b"BHS|")):
        return "hl7"
    if head.startswith((b"{", b"[")):
        return "fhir"
    return "csv"

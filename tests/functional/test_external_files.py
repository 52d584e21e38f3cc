"""Every real lab file in ../shared/data/external goes through `monitor ingest` with exit 0, and a
second delivery of the same file stores nothing new (SOURCES.md describes their quirks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import EXTERNAL
from tests.functional.cli import run

FILES = sorted(p for p in EXTERNAL.glob("*/*") if p.suffix in (".hl7", ".er7", ".json", ".csv")) \
    if EXTERNAL.is_dir() else []
COUNTS = re.compile(r"(\d+) stored, (\d+) duplicate, (\d+) corrected, (\d+) retracted, (\d+) held, "
                    r"(\d+) quarantined, (\d+) ignored")


@pytest.mark.usefixtures("db_url", "external")
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_external_file_ingests_with_exit_0_and_again_without_new_rows(
        capsys: pytest.CaptureFixture[str], path: Path) -> None:
    first = run(capsys, "ingest", str(path))
    assert first.code == 0, first.err
    [counts] = COUNTS.findall(first.out)
    stored, _, _, _, held, _, _ = map(int, counts)
    again = run(capsys, "ingest", str(path))
    assert again.code == 0, again.err
    [repeat] = COUNTS.findall(again.out)
    assert int(repeat[0]) == 0 and int(repeat[4]) == 0  # nothing stored or held twice
    assert int(repeat[1]) == stored + held  # every result already received is a duplicate


def test_the_external_folder_has_files_to_test() -> None:
    if not EXTERNAL.is_dir():
        pytest.skip("../shared/data/external is absent")
    assert len(FILES) >= 27  # 12 HL7, 13 FHIR, 2 CSV (SOURCES.md)

"""The README's two commands' first one and its five-minute tour, run literally: `monitor demo`,
then every line of the tour block in README.md, each checked against what its comment claims.

The demo builds its cohort relative to today, so this runs on the real date (no frozen clock),
on the demo's own SQLite file (whatever database the rest of the suite uses).
"""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path

import pytest

from tests.functional.cli import Ran, run

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_lines() -> list[tuple[str, str]]:
    """(command, comment) of every line of the README's tour block."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## A five-minute tour\s+```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no tour block"
    lines = []
    for line in block.group(1).splitlines():
        command, _, comment = line.partition("#")
        lines.append((command.strip(), comment.strip()))
    return lines


def rows(out: str, title: str) -> list[list[str]]:
    """The rows of one table as printed outside a terminal (title, header, tab-separated rows)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    body = []
    for line in lines[start + 2:]:
        if "\t" not in line:
            break
        body.append(line.split("\t"))
    return body


def check_overdue(r: Ran) -> None:
    found = rows(r.out, "Overdue (")
    assert found, "the overdue review is empty"
    days = [int(row[3]) for row in found]
    assert days == sorted(days, reverse=True)  # worst first
    assert ["DEMO0003", "CBC"] in [row[:2] for row in found]  # only missed draws: listed
    assert "(from the daily run of" in r.out


def check_flags(r: Ran) -> None:
    found = rows(r.out, "Flags (open:")
    assert found[0][2] == "critical"  # critical first


def check_patient_7(r: Ran) -> None:
    flags = rows(r.out, "Open flags")
    assert ["critical", "leukopenia"] in [f[1:3] for f in flags]
    steps = rows(r.out, "Dose steps")
    assert [s[0] for s in steps if s[3] == "held"] == ["azathioprine"]
    assert "pending clinician review" in r.out


def check_patient_3(r: Ran) -> None:
    overdue = {row[0]: row for row in rows(r.out, "Overdue (latest required draw unmet)")}
    assert overdue["CBC"][3] == "never" and overdue["LFT"][3] == "never"
    assert int(overdue["CBC"][2]) >= 4
    assert "missed" in {row[2] for row in rows(r.out, "Due draws")}


def check_quarantine(r: Ran) -> None:
    found = rows(r.out, "Quarantine (open:")
    assert len(found) >= 2 and all(row[3] for row in found)  # each with its reason


def check_outbox(r: Ran) -> None:
    """Three digests and the critical alerts still open, all sent (the demo's file transport)."""
    assert r.out.count("\tdigest\t") == 3 and "\talert\t" in r.out
    assert "pending 0, sending 0" in r.out and "dead 0" in r.out


def check_user_added(r: Ran) -> None:
    assert "user you@example.org added: admin, every site" in r.out


CHECKS = {
    "monitor overdue": check_overdue,
    "monitor flags": check_flags,
    "monitor patient DEMO0007": check_patient_7,
    "monitor patient DEMO0003": check_patient_3,
    "monitor quarantine": check_quarantine,
    "monitor outbox": check_outbox,
    "monitor users add you@example.org --role admin": check_user_added,
}


def test_the_readme_tour_shows_what_it_promises(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONITOR_DATABASE_URL", raising=False)
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    demo = run(capsys, "demo")
    assert demo.code == 0, demo.err
    assert "monitor patient DEMO0007" in demo.out
    checked = set()
    for command, comment in tour_lines():
        if command.startswith("cd "):
            monkeypatch.chdir(command[3:])
        elif command == "monitor serve":  # it serves until stopped: tests/browser/test_web_app.py runs it
            checked.add(command)
        elif command.startswith("monitor "):
            if command.startswith("monitor users add"):
                monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
            r = run(capsys, *shlex.split(command)[1:])
            assert r.code == 0, f"{command}: {r.err}"
            assert "warning" not in r.err, f"{command}: {r.err}"
            CHECKS[command](r)
            checked.add(command)
        elif command == "cat outbox/digest-*.eml":
            mails = sorted(Path("outbox").glob("digest-*.eml"))
            assert len(mails) == 3  # one per nurse coordinator
            for mail in mails:
                text = mail.read_text(encoding="utf-8")
                assert "FLAGS TO ACT ON" in text and "OVERDUE BLOOD DRAWS" in text and "text/html" in text
            checked.add(command)
        else:
            pytest.fail(f"README tour line not understood: {command!r} ({comment})")
    assert checked == {*CHECKS, "cat outbox/digest-*.eml", "monitor serve"}

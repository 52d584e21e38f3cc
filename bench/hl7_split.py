"""Why monitor splits HL7 v2 itself: the same messages read by monitor's reader and by python-hl7.

Usage: python bench/hl7_split.py [--results 100000]
Both read the same ORU^R01 messages (bench/ingest.py's, ten OBX each) from memory and hand back,
per OBX, its code, value and unit: monitor's reader does all of its work (separators, MSH-18,
PID-3, OBR, OBX, keys, collection times); python-hl7 only parses, and the fields are then picked
out of its tree. Prints a Markdown row per reader: seconds and OBX/s (best of three runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hl7

from bench.ingest import hl7_messages
from monitor.ingest.hl7_reader import read_text
from monitor.ingest.records import IncomingResult, ReadOptions
from monitor.protocols import load_catalog

OPTIONS = ReadOptions(lab_zone=ZoneInfo("Europe/London"))


def with_monitor(messages: list[str]) -> int:
    catalog = load_catalog()
    return sum(isinstance(r, IncomingResult) for m in messages for r in read_text(m, "bench", OPTIONS, catalog))


def with_python_hl7(messages: list[str]) -> int:
    found = 0
    for m in messages:
        for segment in hl7.parse(m):
            if str(segment[0]) == "OBX":
                _code, _value, _unit = str(segment[3][0][0]), str(segment[5]), str(segment[6])
                found += 1
    return found


def best(read: Callable[[list[str]], int], messages: list[str]) -> tuple[float, int]:
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        n = read(messages)
        runs.append(time.perf_counter() - started)
    return min(runs), n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=int, default=100_000)
    args = parser.parse_args()
    messages = list(hl7_messages(args.results))
    print("| reader | OBX | seconds | OBX/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, read in (("monitor hl7_reader (everything)", with_monitor), ("python-hl7 parse only", with_python_hl7)):
        seconds, n = best(read, messages)
        print(f"| {name} | {n:,} | {seconds:.2f} | {n / seconds:,.0f} |")


if __name__ == "__main__":
    main()

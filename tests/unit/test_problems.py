"""A problem a later result settles closes by itself, with why — unless it is critical or its rule
withholds the drug, which wait for a clinician (domain.flags.settle)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from monitor.domain.protocol import Phase
from monitor.domain.snapshot import OpenFlag
from tests.unit.builders import day, plan, result, snapshot


def flags_on(analyte: str, first: float, then: float, *, open_first: bool = False) -> tuple[list[str], list[str]]:
    """The kinds of the flags on the first result, and the resolutions, with a later result `then`."""
    snap = snapshot(phase=Phase.MAINTENANCE, results=(result(analyte, first, on=day(10), id=1),
                                                      result(analyte, then, on=day(20), id=2)))
    first_flags = [f for f in plan(replace(snap, results=snap.results[:1]), day(11)).flags if f.result_id == 1]
    if open_first:
        snap = replace(snap, open_flags=tuple(OpenFlag(f.key, f.kind, f.severity, f.observed_on, f.value, 1, f.value,
                                                       rule_id=f.rule_id) for f in first_flags))
    later = plan(snap, day(21))
    return [f.kind for f in later.flags if f.result_id == 1], [r.why for r in later.resolved]


def test_an_anaemia_a_later_normal_haemoglobin_settles_closes_with_why() -> None:
    # CTCAE v5.0 grade 2 anaemia (Hb < 100 g/L): action, no withholding rule.
    kinds, resolved = flags_on("HGB", 95, 135, open_first=True)
    assert "anemia" not in kinds
    assert [w for w in resolved if w.startswith("anemia: HGB 135")] and "no longer meets the rule" in resolved[0]


def test_a_problem_the_later_result_still_meets_stays_open() -> None:
    kinds, resolved = flags_on("HGB", 95, 92, open_first=True)
    assert "anemia" in kinds and resolved == []


@pytest.mark.parametrize(("analyte", "first", "kind"), [
    pytest.param("WBC", 3.2, "leukopenia", id="BSR17 WBC<3.5 withholds: waits for an acknowledgement"),
    pytest.param("WBC", 1.5, "leukopenia", id="CTCAE5 WBC grade 3 critical: waits for an acknowledgement"),
    pytest.param("MCV", 107, "macrocytosis", id="BSR17 MCV>105 withholds: waits for an acknowledgement"),
])
def test_a_critical_or_withholding_flag_is_not_settled_by_a_normal_result(analyte: str, first: float,
                                                                           kind: str) -> None:
    normal = {"WBC": 6.0, "MCV": 90}[analyte]
    kinds, resolved = flags_on(analyte, first, normal, open_first=True)
    assert kind in kinds and resolved == []

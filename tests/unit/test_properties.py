"""Properties of `evaluate` over random snapshots: it never raises, always explains itself, and
nothing in the plan changes before `next_review_on` without new input (ARCHITECTURE.md decision 3)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.domain.plan import Plan, evaluate
from monitor.domain.protocol import Phase
from monitor.domain.snapshot import DoseEvent, PhaseEpisode, Result, Snapshot, Weight
from tests.unit.builders import CATALOG, PROTOCOL

#: database=None: keep no example database in the repository; the tier must stay fast and repeatable.
SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

DOSES = {
    "azathioprine": [0, 25, 50, 75, 100, 125, 150, 200],
    "prednisolone": [0, 5, 7.5, 10, 12.5, 15, 20, 30, 40, 60],
}


def plausible_value(analyte: str) -> st.SearchStrategy[float]:
    a = CATALOG.analytes[analyte]
    low = a.plausible.low or 0.0
    high = a.plausible.high if a.plausible.high is not None else 1e4
    return st.one_of(
        st.just(0.0),
        st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False),
        # values near the reference range, where the thresholds and grades are
        st.floats(min_value=low, max_value=min(high, 3 * (a.reference.high or 10) + 1), allow_nan=False),
    )


@st.composite
def results(draw: st.DrawFn, start: date, today: date) -> tuple[Result, ...]:
    span = (today - start).days
    found = []
    for i in range(draw(st.integers(0, 12))):
        analyte = draw(st.sampled_from(sorted(CATALOG.analytes)))
        ref = CATALOG.analytes[analyte].reference
        with_range = draw(st.booleans())
        found.append(Result(
            id=i + 1,
            analyte=analyte,
            value=draw(plausible_value(analyte)),
            observed_on=start + timedelta(days=draw(st.integers(-60, span))),
            status=draw(st.sampled_from(["final", "corrected", "preliminary"])),
            ref_low=ref.low * draw(st.floats(0.8, 1.2)) if with_range and ref.low is not None else None,
            ref_high=ref.high * draw(st.floats(0.8, 1.2)) if with_range and ref.high is not None else None,
        ))
    return tuple(found)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Snapshot, date]:
    """A snapshot and a `today` on which everything in it has already happened (no future input)."""
    start = draw(st.dates(min_value=date(2015, 1, 1), max_value=date(2035, 12, 31)))
    today = start + timedelta(days=draw(st.integers(0, 900)))
    span = (today - start).days

    phases = [PhaseEpisode(draw(st.sampled_from(list(Phase))), start)]
    for offset in sorted(draw(st.lists(st.integers(1, max(span, 1)), max_size=3))):
        if offset <= span:
            phases.append(PhaseEpisode(draw(st.sampled_from(list(Phase))), start + timedelta(days=offset)))

    weights = tuple(
        Weight(start + timedelta(days=draw(st.integers(-30, span))), draw(st.floats(30, 150)))
        for _ in range(draw(st.integers(0, 3)))
    )
    doses = []
    for _ in range(draw(st.integers(0, 6))):
        drug = draw(st.sampled_from(sorted(DOSES)))
        doses.append(DoseEvent(drug, draw(st.sampled_from(DOSES[drug])),
                               start + timedelta(days=draw(st.integers(-30, span)))))
    snap = Snapshot(
        enrollment_id=1,
        start_on=start,
        phases=tuple(phases),
        weights=weights,
        doses=tuple(doses),
        results=draw(results(start, today)),
    )
    return snap, today


def assert_explained(plan: Plan) -> None:
    for item in (*plan.draws, *plan.dose_steps, *plan.flags):
        assert item.rule_id.strip(), item
        assert item.why.strip(), item
        assert item.rule_id.startswith(f"{PROTOCOL.id}/"), item


@SETTINGS
@given(cases(), st.data())
def test_evaluate_never_raises_explains_everything_and_holds_still_until_next_review(
    case: tuple[Snapshot, date], data: st.DataObject
) -> None:
    snap, today = case
    plan = evaluate(snap, PROTOCOL, today=today)
    assert plan.as_of == today
    assert plan.next_review_on > today
    assert_explained(plan)
    assert all(d.status in {"upcoming", "due", "overdue", "missed"} for d in plan.draws)
    assert all(s.status in {"upcoming", "due", "done"} for s in plan.dose_steps)
    assert all(f.severity in {"watch", "action", "critical"} for f in plan.flags)
    assert len({f.key for f in plan.flags}) == len(plan.flags)
    assert len({(d.panel, d.due_on) for d in plan.draws}) == len(plan.draws)

    # Nothing changes before next_review_on without new input. Only draws and dose steps are compared:
    # a flag's result leaving the 90-day look-back is not a review date, and flags are stored once
    # when raised (services.daily), so it does not need to be.
    gap = (plan.next_review_on - today).days
    if gap < 2:
        return
    for n in sorted({gap - 1, data.draw(st.integers(1, gap - 1), label="days after today")}):
        later = evaluate(snap, PROTOCOL, today=today + timedelta(days=n))
        assert later.draws == plan.draws, n
        assert later.dose_steps == plan.dose_steps, n
        assert later.next_review_on == plan.next_review_on, n

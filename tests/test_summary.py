"""What supervisors read (ivr.summary), from day counters alone: the one meaning of
failed, the health strip's three states, and the comparison with the previous period."""

from __future__ import annotations

from ivr.summary import HEALTH_MIN_ATTEMPTS, HealthState, previous_period, summarize
from ivr.vocabulary import (
    Attempt,
    Count,
    DialStatus,
    Outcome,
    counter,
    dial_hour_counter,
)

DAY = "2026-11-26"


def dials(hotline: str, **statuses: int) -> dict[str, int]:
    return {counter(Count.DIAL, hotline, DialStatus(s.replace("_", "-"))): n
            for s, n in statuses.items()}


def test_a_line_with_one_failure_in_one_attempt_is_grey_never_green_nor_red():
    day = {**dials("icbf", busy=1), **dials("labour", completed=HEALTH_MIN_ATTEMPTS),
           **dials("national", no_answer=2, dropped=1, completed=1)}
    health = {h.hotline: h for h in summarize([DAY], {DAY: day}, 0, []).health}
    assert health["icbf"].state is HealthState.TOO_FEW
    assert health["labour"].state is HealthState.OK
    # Answered by a machine counts as not connected, like busy and no answer.
    assert (health["national"].attempts, health["national"].not_connected) == (4, 3)
    assert health["national"].state is HealthState.FAILING


def test_the_headline_says_reached_a_person_and_attempts_not_connected_with_their_number():
    day = {Count.CALLS: 4, counter(Count.OUTCOME, Outcome.TRANSFERRED): 2,
           counter(Count.OUTCOME, Outcome.TRANSFER_FAILED): 1,
           counter(Count.OUTCOME, Outcome.IN_PROGRESS): 1,
           **dials("icbf", completed=2, busy=3)}
    head = summarize([DAY], {DAY: day}, 0, []).headline()
    assert (head["reached_person"], head["never_reached_person"]) == (2, 1)  # 1 still going
    assert (head["attempts"], head["attempts_not_connected"]) == (5, 3)
    assert head["attempts_not_connected_pct"] == 60.0


def test_each_figure_is_compared_with_the_period_just_before():
    assert previous_period(["2026-11-25", "2026-11-26"]) == ["2026-11-23", "2026-11-24"]
    summary = summarize([DAY], {DAY: {Count.CALLS: 5}}, 0, [])
    summary.previous = summarize(["2026-11-25"], {"2026-11-25": {Count.CALLS: 7}}, 0,
                                 []).headline()
    assert summary.changes()["calls"] == -2
    assert summary.to_dict()["change_from_previous"]["calls"] == -2


def test_not_connected_attempts_by_hotline_and_hour_come_from_the_day_counters():
    day = {dial_hour_counter("icbf", 3, Attempt.NOT_CONNECTED): 2,
           dial_hour_counter("icbf", 3, Attempt.CONNECTED): 1,
           dial_hour_counter("labour", 22, Attempt.CONNECTED): 4}
    summary = summarize([DAY], {DAY: day}, 0, [])
    assert summary.not_connected_by_hour["icbf"][3] == 2
    assert summary.attempts_by_hour["icbf"][3] == 3
    assert sum(summary.not_connected_by_hour["labour"]) == 0

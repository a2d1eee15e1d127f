"""A call's record and outcome, folded from its events (ivr.call_record): pure, no Redis.

The events are built the way ivr/voice.py builds them: ids `<CallSid>:<step>.<i>` and
`<CallSid>:end`, every step event carrying the call's start `t0` (whole seconds, from the
webhook URL), and the call_ended event of the status callback carrying "now minus
CallDuration" as its start, which is never exactly t0.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest

from ivr.call_record import MAX_COUNTED_WAIT, CallRecord
from ivr.vocabulary import (
    BOGOTA,
    CallStatus,
    Category,
    Count,
    DialStatus,
    Event,
    EventKind,
    Input,
    Outcome,
    day_of,
    hour_of,
)

SID = "CA" + "ab" * 16
CALLER = "c_0123456789abcdef0123"  # a pseudonym, as ivr.events.caller_pseudonym makes them
END_STEP = 1 << 20  # the step voice.py gives the status callback's event

# 2026-03-10 15:00:00 in Bogotá; the caller's phone connected 0.8 s after t0's second.
T0 = int(datetime(2026, 3, 10, 15, 0, 0, tzinfo=BOGOTA).timestamp())
REAL_START = T0 + 0.8


def event(suffix: str, kind: str, step: int, at: float, *, started: float = T0,
          lang: str = "es", asked: str = "", call: str = SID, data: dict | None = None,
          **detail) -> Event:
    return Event(id=f"{call}:{suffix}", call=call, kind=kind, step=step, at=at,
                 started=started, lang=lang, asked=asked, data={**(data or {}), **detail})


def ended(at: float, duration: int, status: str = CallStatus.COMPLETED,
          call: str = SID) -> Event:
    """The status callback's event: its start is estimated as `at - CallDuration`."""
    return event("end", EventKind.CALL_ENDED, END_STEP, at, started=at - duration, lang="",
                 call=call, status=status, duration=duration)


def started_event(at: float = REAL_START + 0.1, call: str = SID) -> Event:
    return event("1.0", EventKind.CALL_STARTED, 1, at, asked="welcome", call=call,
                 data={"lang": "es"}, caller=CALLER)


def labour_call() -> list[Event]:
    """Says "trabajo", the Ministry of Labour is busy, the national line answers."""
    s = REAL_START
    return [
        started_event(),
        event("2.0", EventKind.MENU_ANSWERED, 2, s + 9.5, node="welcome", input="speech",
              option="2", attempt=0, category="labour"),
        event("2.1", EventKind.TRANSFER_STARTED, 2, s + 9.5, hotline="labour", target=0),
        event("3.0", EventKind.TRANSFER_ENDED, 3, s + 35.0, hotline="labour", target=0,
              status=DialStatus.BUSY, duration=0),
        event("3.1", EventKind.TRANSFER_STARTED, 3, s + 35.0, hotline="national", target=0),
        event("4.0", EventKind.TRANSFER_ENDED, 4, s + 140.0, hotline="national", target=0,
              status=DialStatus.COMPLETED, duration=95),
        ended(s + 140.3, 140),
    ]


def fold(events) -> CallRecord:
    record = CallRecord(call=SID)
    for e in events:
        record.apply(e)
    return record


# --- typical calls ----------------------------------------------------------------------


def test_a_labour_call_answered_after_a_busy_line_is_transferred():
    record = fold(labour_call())

    assert record.outcome is Outcome.TRANSFERRED
    assert record.dimensions() == {
        Count.OUTCOME: Outcome.TRANSFERRED, Count.CATEGORY: "labour", Count.LANG: "es",
        Count.HANGUP: "",
        Count.TO_TRANSFER: "10",  # 10.3 s from t0 to the first transfer, in whole seconds
        Count.INPUT: Input.SPEECH,
        Count.HOUR: "15",  # ended: counted by the Bogotá hour it started
    }
    # Two attempts, one connected: the call reached a person.
    assert (record.attempts, record.connected, record.reached_person) == (2, 1, True)
    assert record.day == "2026-03-10"
    assert record.caller == CALLER
    assert record.path_text() == "welcome:2"
    assert record.hotlines_text() == "labour:busy > national:completed"
    assert record.transfers == {2: "labour", 3: "national"}
    assert record.talk_seconds == 95
    assert (record.status, record.duration) == (CallStatus.COMPLETED, 140)
    assert record.nodes == {"welcome"}


def test_a_call_still_going_is_in_progress_and_not_yet_categorised():
    record = fold(labour_call()[:3])  # the Ministry of Labour is ringing
    assert record.outcome is Outcome.IN_PROGRESS
    assert record.dimensions()[Count.OUTCOME] == Outcome.IN_PROGRESS
    assert record.category == "labour"


def test_only_a_busy_line_then_hang_up_is_a_failed_transfer():
    events = labour_call()[:4] + [ended(REAL_START + 40, 40)]
    record = fold(events)
    assert record.outcome is Outcome.TRANSFER_FAILED
    assert record.dimensions()[Count.CATEGORY] == "labour"
    assert record.dimensions()[Count.HANGUP] == ""  # not counted as hanging up in the menu
    assert (record.attempts, record.connected, record.reached_person) == (1, 0, False)


def test_a_child_call_by_keypad_answered_at_once():
    s = REAL_START
    record = fold([
        started_event(),
        event("2.0", EventKind.MENU_ANSWERED, 2, s + 4, node="welcome", input="dtmf",
              option="1", attempt=0, category="child"),
        event("2.1", EventKind.TRANSFER_STARTED, 2, s + 4, hotline="icbf", target=0),
        event("3.0", EventKind.TRANSFER_ENDED, 3, s + 60, hotline="icbf", target=0,
              status=DialStatus.COMPLETED, duration=50),
        ended(s + 60.2, 60),
    ])
    assert record.outcome is Outcome.TRANSFERRED
    assert record.dimensions() == {Count.OUTCOME: Outcome.TRANSFERRED, Count.CATEGORY: "child",
                                   Count.LANG: "es", Count.HANGUP: "", Count.TO_TRANSFER: "4",
                                   Count.INPUT: Input.KEYPAD, Count.HOUR: "15"}


def test_three_silences_are_unclear_and_go_to_the_national_line():
    s = REAL_START
    record = fold([
        started_event(),
        event("2.0", EventKind.NO_INPUT, 2, s + 8, asked="welcome", node="welcome",
              attempt=1),
        event("3.0", EventKind.NO_INPUT, 3, s + 16, asked="welcome", node="welcome",
              attempt=2),
        event("4.0", EventKind.NO_INPUT, 4, s + 24, node="welcome", attempt=3, gave_up=True,
              category=Category.UNCLEAR),
        event("4.1", EventKind.TRANSFER_STARTED, 4, s + 24, hotline="national", target=0),
        event("5.0", EventKind.TRANSFER_ENDED, 5, s + 90, hotline="national", target=0,
              status=DialStatus.COMPLETED, duration=60),
        ended(s + 90.4, 90),
    ])
    assert record.no_input == 3
    assert record.outcome is Outcome.TRANSFERRED
    assert record.dimensions()[Count.CATEGORY] == Category.UNCLEAR
    assert record.dimensions()[Count.TO_TRANSFER] == "24"


def test_an_english_caller_is_counted_in_english_whatever_the_order():
    s = REAL_START
    events = [
        started_event(),
        event("2.0", EventKind.MENU_ANSWERED, 2, s + 5, asked="welcome", lang="en",
              node="welcome", input="dtmf", option="9", attempt=0),
        event("2.1", EventKind.LANGUAGE_CHANGED, 2, s + 5, asked="welcome", lang="en",
              data={"lang": "en"}),
        event("3.0", EventKind.MENU_ANSWERED, 3, s + 12, lang="en", node="welcome",
              input="dtmf", option="3", attempt=0, category="migrant"),
        event("3.1", EventKind.TRANSFER_STARTED, 3, s + 12, lang="en", hotline="national",
              target=0),
        ended(s + 30, 30),
    ]
    for order in (events, events[::-1]):
        record = fold(order)
        assert record.lang == "en"
        assert record.category == "migrant"
        assert record.dimensions()[Count.LANG] == "en"


# --- emergencies ------------------------------------------------------------------------


def emergency_call(*statuses: str) -> list[Event]:
    """Presses 0; the emergency chain (emergency, police, national) answers `statuses`."""
    s = REAL_START
    events = [
        started_event(),
        event("2.0", EventKind.MENU_ANSWERED, 2, s + 3, node="welcome", input="dtmf",
              option="0", attempt=0, category=Category.EMERGENCY),
    ]
    at, step = s + 3, 2
    for hotline, status in zip(("emergency", "police", "national"), statuses, strict=False):
        events.append(event(f"{step}.1", EventKind.TRANSFER_STARTED, step, at,
                            hotline=hotline, target=0))
        at, step = at + 20, step + 1
        events.append(event(f"{step}.0", EventKind.TRANSFER_ENDED, step, at, hotline=hotline,
                            target=0, status=status,
                            duration=30 if status == DialStatus.COMPLETED else 0))
    events.append(ended(at + 15, int(at + 15 - s)))
    return events


def test_an_answered_emergency_is_an_emergency_transfer():
    record = fold(emergency_call(DialStatus.COMPLETED))
    assert record.outcome is Outcome.EMERGENCY_TRANSFERRED
    assert record.dimensions()[Count.CATEGORY] == Category.EMERGENCY


def test_an_emergency_answered_by_the_police_is_still_an_emergency_transfer():
    record = fold(emergency_call(DialStatus.BUSY, DialStatus.COMPLETED))
    assert record.outcome is Outcome.EMERGENCY_TRANSFERRED
    assert record.hotlines_text() == "emergency:busy > police:completed"


def test_an_emergency_where_every_line_failed_is_a_failed_transfer():
    record = fold(emergency_call(DialStatus.FAILED, DialStatus.FAILED, DialStatus.FAILED))
    assert record.outcome is Outcome.TRANSFER_FAILED
    assert record.dimensions()[Count.CATEGORY] == Category.EMERGENCY
    assert sorted(record.transfers.values()) == ["emergency", "national", "police"]


def report_then_emergency() -> list[Event]:
    """Presses 4 (report a crime), then says "auxilio, me van a matar" at the report
    question: the emergency line answers."""
    s = REAL_START
    return [
        started_event(),
        event("2.0", EventKind.MENU_ANSWERED, 2, s + 5, asked="report", node="welcome",
              input="dtmf", option="4", attempt=0, category="report"),
        event("3.0", EventKind.MENU_ANSWERED, 3, s + 11, node="report", input="speech",
              option="0", attempt=0, category=Category.EMERGENCY),
        event("3.1", EventKind.TRANSFER_STARTED, 3, s + 11, hotline="emergency", target=0),
        event("4.0", EventKind.TRANSFER_ENDED, 4, s + 50, hotline="emergency", target=0,
              status=DialStatus.COMPLETED, duration=35),
        ended(s + 50.2, 50),
    ]


def test_an_emergency_at_the_second_question_is_an_emergency_call_in_any_order():
    """Regression: the category used to come only from the earliest answer, so this
    call was counted as "report", outcome "transferred", missing from the emergencies."""
    for order in itertools.permutations(report_then_emergency()):
        record = fold(order)
        assert record.hotlines_text() == "emergency:completed"
        assert record.outcome is Outcome.EMERGENCY_TRANSFERRED, [e.id for e in order]
        assert record.dimensions()[Count.CATEGORY] == Category.EMERGENCY


def test_two_emergency_answers_give_the_same_record_in_any_order():
    """Regression (found by tests/test_tally.py): a call that said "emergency" at two
    questions kept the step of whichever came first, so the stored record depended on
    the order the events arrived in (the category did not)."""
    s = REAL_START
    events = [
        started_event(),
        event("2.0", EventKind.MENU_ANSWERED, 2, s + 5, asked="report", node="welcome",
              input="dtmf", option="0", attempt=0, category=Category.EMERGENCY),
        event("3.0", EventKind.MENU_ANSWERED, 3, s + 11, node="report", input="speech",
              option="0", attempt=0, category=Category.EMERGENCY),
        ended(s + 20, 20),
    ]
    expected = fold(events).to_fields()
    assert expected["category_step"] == "2"
    for order in itertools.permutations(events):
        assert fold(order).to_fields() == expected, [e.id for e in order]


def test_the_earliest_answer_gives_the_category_when_no_emergency():
    s = REAL_START
    events = [
        started_event(),
        event("2.0", EventKind.MENU_ANSWERED, 2, s + 5, asked="report", node="welcome",
              input="dtmf", option="4", attempt=0, category="report"),
        event("3.0", EventKind.MENU_ANSWERED, 3, s + 9, node="report", input="dtmf",
              option="1", attempt=0, category="other"),
        ended(s + 20, 20),
    ]
    for order in itertools.permutations(events):
        assert fold(order).category == "report"


# --- hanging up in the menu -------------------------------------------------------------


def report_then_hang_up() -> list[Event]:
    """Presses 4 (report), then hangs up while asked where to report."""
    s = REAL_START
    return [
        started_event(),
        event("2.0", EventKind.MENU_ANSWERED, 2, s + 6, asked="report", node="welcome",
              input="dtmf", option="4", attempt=0, category="report"),
        ended(s + 14.5, 14),
    ]


def test_a_caller_hanging_up_in_the_menu_is_counted_at_the_last_question_asked():
    record = fold(report_then_hang_up())
    assert record.outcome is Outcome.ABANDONED_IN_MENU
    assert record.nodes == {"welcome", "report"}
    assert record.dimensions() == {Count.OUTCOME: Outcome.ABANDONED_IN_MENU,
                                   Count.CATEGORY: "report", Count.LANG: "es",
                                   Count.HANGUP: "report", Count.TO_TRANSFER: "",
                                   Count.INPUT: Input.KEYPAD, Count.HOUR: "15"}


def test_the_last_question_asked_wins_whatever_the_order():
    for order in itertools.permutations(report_then_hang_up()):
        record = fold(order)
        assert record.dimensions()[Count.HANGUP] == "report", [e.id for e in order]


def test_hanging_up_at_the_greeting_is_uncategorised():
    record = fold([started_event(), ended(REAL_START + 3.2, 3)])
    assert record.dimensions() == {Count.OUTCOME: Outcome.ABANDONED_IN_MENU,
                                   Count.CATEGORY: Category.NONE, Count.LANG: "es",
                                   Count.HANGUP: "welcome", Count.TO_TRANSFER: "",
                                   Count.INPUT: Input.NONE, Count.HOUR: "15"}


# --- any order, any number of times ---------------------------------------------------


def test_every_order_of_a_calls_events_gives_the_same_record():
    events = labour_call()  # 7 events: 5040 orders
    expected = fold(events)
    assert expected.outcome is Outcome.TRANSFERRED
    orders = 0
    for order in itertools.permutations(events):
        record = fold(order)
        assert record.to_fields() == expected.to_fields(), [e.id for e in order]
        assert record.dimensions() == expected.dimensions(), [e.id for e in order]
        orders += 1
    assert orders == 5040


def test_the_status_callback_arriving_first_does_not_move_the_calls_start():
    """Regression. Every step event carries t0 (the whole second the call began); the
    status callback's call_ended event carries "now - CallDuration" (ivr/voice.py), here
    1.1 s later. The record used to take its start and day from whichever event came
    first, so a call_ended written first (a spool replay after a Redis outage) moved the
    "to_transfer" histogram (10 s -> 9 s), the hour and, near midnight, the day.
    """
    events = labour_call()
    assert events[-1].started != T0
    in_order = fold(events)
    end_first = fold([events[-1], *events[:-1]])
    assert end_first.dimensions() == in_order.dimensions()
    assert end_first.dimensions()[Count.TO_TRANSFER] == "10"
    assert end_first.started == in_order.started == T0
    assert end_first.day == in_order.day == "2026-03-10"


def test_a_call_known_only_by_its_status_callback_has_no_day_yet():
    record = fold([labour_call()[-1]])
    assert (record.day, record.started) == ("", 0.0)
    assert record.status == CallStatus.COMPLETED
    record.apply(labour_call()[0])
    assert (record.day, record.started) == ("2026-03-10", T0)


def test_a_call_begun_in_the_last_second_of_a_day_stays_on_that_day():
    t0 = int(datetime(2026, 3, 10, 23, 59, 59, tzinfo=BOGOTA).timestamp())
    start = Event(id=f"{SID}:1.0", call=SID, kind=EventKind.CALL_STARTED, step=1,
                  at=t0 + 0.9, started=t0, lang="es", asked="welcome", data={"caller": CALLER})
    # Twilio's CallDuration is whole seconds and the callback comes a moment late: the
    # estimate falls after midnight.
    end = Event(id=f"{SID}:end", call=SID, kind=EventKind.CALL_ENDED, step=END_STEP,
                at=t0 + 31.6, started=t0 + 31.6 - 30,
                data={"status": CallStatus.COMPLETED, "duration": 30})
    assert day_of(end.started) == "2026-03-11"
    for order in ([start, end], [end, start]):
        record = fold(order)
        assert record.day == "2026-03-10"
        assert hour_of(record.started) == 23


def test_a_long_wait_is_counted_at_the_cap():
    s = REAL_START
    record = fold([
        started_event(),
        event("2.0", EventKind.NO_INPUT, 2, s + 700, asked="welcome", node="welcome",
              attempt=1),
        event("2.1", EventKind.TRANSFER_STARTED, 2, s + 700, hotline="national", target=0),
    ])
    assert record.dimensions()[Count.TO_TRANSFER] == str(MAX_COUNTED_WAIT)


def test_applying_an_event_twice_changes_nothing():
    events = labour_call()
    record = fold(events)
    before = record.to_fields()
    for e in events:
        assert record.apply(e) is False
    # Twilio repeating a request gives the same id, with a later time.
    again = Event(**{**events[3].__dict__, "at": events[3].at + 4})
    assert record.apply(again) is False
    assert record.to_fields() == before
    assert record.dimensions() == fold(events).dimensions()


def test_an_event_is_applied_once_even_with_no_input_counts():
    silence = event("2.0", EventKind.NO_INPUT, 2, REAL_START + 8, asked="welcome",
                    node="welcome", attempt=1)
    record = fold([started_event()])
    assert record.apply(silence) is True
    assert record.apply(silence) is False
    assert record.no_input == 1


def test_the_first_application_returns_true():
    record = CallRecord(call=SID)
    assert [record.apply(e) for e in labour_call()] == [True] * 7


# --- storage ------------------------------------------------------------------------------


def test_to_fields_and_from_fields_round_trip():
    record = fold(labour_call())
    record.counted = {Count.OUTCOME: Outcome.TRANSFERRED, Count.CATEGORY: "labour",
                      Count.LANG: "es"}
    fields = record.to_fields()
    assert all(isinstance(v, str) for v in fields.values())
    back = CallRecord.from_fields(SID, fields)
    assert back.to_fields() == fields
    assert back.outcome is record.outcome
    assert back.dimensions() == record.dimensions()
    assert back.counted == record.counted
    assert back.seen == record.seen
    assert (back.path, back.transfers, back.dials) == (record.path, record.transfers,
                                                       record.dials)
    assert back.category_step == record.category_step == 2


def test_a_record_stored_mid_call_goes_on_as_if_never_stored():
    """The store keeps a record between batches: what follows must fold the same."""
    events = labour_call()
    for cut in range(len(events) + 1):
        stored = CallRecord.from_fields(SID, fold(events[:cut]).to_fields())
        for e in events[cut:]:
            assert stored.apply(e) is True
        for e in events[:cut]:
            assert stored.apply(e) is False  # already seen before it was stored
        assert stored.to_fields() == fold(events).to_fields()


def test_an_empty_hash_is_a_blank_record():
    record = CallRecord.from_fields(SID, {})
    assert record == CallRecord(call=SID)
    assert record.outcome is Outcome.IN_PROGRESS
    assert record.dimensions()[Count.CATEGORY] == ""  # not counted before the call ends


# --- events as stored -------------------------------------------------------------------


def test_an_event_survives_json():
    for e in labour_call():
        assert Event.from_json(e.to_json()) == e
        assert Event.from_json(e.to_json().encode()) == e


GOOD = {"id": "CA1:1.0", "call": "CA1", "kind": EventKind.CALL_STARTED, "step": 1,
        "at": 1.5, "started": 1.0}


@pytest.mark.parametrize("raw, reason", [
    ("garbage", "not JSON"),
    ("", "not JSON"),
    (None, "not JSON"),
    (b"\xff\xfe", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('"CA1:1.0"', "not a JSON object"),
    (json.dumps({"id": "x"}), "missing call, kind, step, at, started"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "started"}), "missing started"),
    (json.dumps({**GOOD, "step": "two"}), "bad field"),
    (json.dumps({**GOOD, "at": "noon"}), "bad field"),
    (json.dumps({**GOOD, "started": None}), "bad field"),
    (json.dumps({**GOOD, "data": [1, 2]}), "bad field"),
])
def test_from_json_rejects_garbage_with_the_reason(raw, reason):
    with pytest.raises(ValueError) as caught:
        Event.from_json(raw)
    assert str(caught.value).startswith(reason)


def test_from_json_fills_the_optional_fields():
    e = Event.from_json(json.dumps(GOOD))
    assert (e.lang, e.asked, e.data) == ("", "", {})
    assert (e.step, e.at, e.started) == (1, 1.5, 1.0)


# --- Bogotá days ------------------------------------------------------------------------


def test_day_of_is_the_bogota_day():
    three_utc = datetime(2026, 3, 11, 3, 0, tzinfo=UTC).timestamp()
    assert day_of(three_utc) == "2026-03-10"  # 22:00 the evening before in Bogotá
    assert hour_of(three_utc) == 22
    assert day_of(datetime(2026, 3, 11, 4, 59, 59, tzinfo=UTC).timestamp()) == "2026-03-10"
    assert day_of(datetime(2026, 3, 11, 5, 0, 0, tzinfo=UTC).timestamp()) == "2026-03-11"
    # Colombia keeps UTC-5 all year: no daylight saving shift in July either.
    assert day_of(datetime(2026, 7, 1, 4, 30, tzinfo=UTC).timestamp()) == "2026-06-30"


def test_a_call_at_three_utc_belongs_to_the_previous_bogota_day():
    t0 = int(datetime(2026, 3, 11, 3, 0, tzinfo=UTC).timestamp())
    record = fold([
        Event(id=f"{SID}:1.0", call=SID, kind=EventKind.CALL_STARTED, step=1,
              at=t0 + 0.4, started=t0, lang="es", asked="welcome", data={"caller": CALLER}),
        Event(id=f"{SID}:end", call=SID, kind=EventKind.CALL_ENDED, step=END_STEP,
              at=t0 + 5.5, started=t0 + 0.5,
              data={"status": CallStatus.COMPLETED, "duration": 5}),
    ])
    assert record.day == "2026-03-10"

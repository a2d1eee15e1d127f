"""The tally (ivr.tally): which counters a batch of events moves. Pure: no Redis.

The events are shaped as ivr/voice.py emits them: one webhook request is one step, whose
events share the step, the time, the language and the question asked next; the status
callback's call_ended carries an estimated start, never exactly the call's.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr import filters
from ivr.call_record import CallRecord
from ivr.tally import Changes, tally
from ivr.vocabulary import (
    ANONYMOUS,
    BOGOTA,
    FINAL_CALL_STATUSES,
    TWILIO_DIAL_STATUSES,
    Attempt,
    CallStatus,
    Category,
    Count,
    DialStatus,
    Event,
    EventKind,
    Input,
    Outcome,
    counter,
    dial_hour_counter,
    hour_counter,
    hour_of_day,
)

T0 = int(datetime(2026, 3, 10, 15, 0, 0, tzinfo=BOGOTA).timestamp())  # 15:00 in Bogotá
CALLER = "c_0123456789abcdef0123"
END_STEP = 1 << 20


class Call:
    """Builds one call's events, a webhook request (a step) at a time."""

    def __init__(self, sid: str = "CA" + "ab" * 16, t0: float = T0, caller: str = CALLER):
        self.sid, self.t0, self.caller = sid, t0, caller
        self.step, self.lang, self.events = 0, "es", []

    def request(self, asked: str, *happened: tuple[EventKind, dict], lang: str = "") -> Call:
        self.step += 1
        self.lang = lang or self.lang
        at = self.t0 + 0.8 + 7.5 * self.step
        for i, (kind, data) in enumerate(happened):
            self.events.append(Event(id=f"{self.sid}:{self.step}.{i}", call=self.sid,
                                     kind=kind, step=self.step, at=at, started=self.t0,
                                     lang=self.lang, asked=asked, data=data))
        return self

    def started(self) -> Call:
        return self.request("welcome", (EventKind.CALL_STARTED,
                                        {"lang": "es", "caller": self.caller}))

    def ended(self, status: str = CallStatus.COMPLETED, late: float = 1.3) -> Call:
        at = self.t0 + 0.8 + 7.5 * self.step + late
        duration = int(at - self.t0)
        self.events.append(Event(id=f"{self.sid}:end", call=self.sid, kind=EventKind.CALL_ENDED,
                                 step=END_STEP, at=at, started=at - duration,
                                 data={"status": status, "duration": duration}))
        return self


def answered(node: str, option: str, category: str = "") -> tuple[EventKind, dict]:
    data = {"node": node, "input": "dtmf", "option": option, "attempt": 0}
    return EventKind.MENU_ANSWERED, {**data, **({"category": category} if category else {})}


def transfer(hotline: str) -> tuple[EventKind, dict]:
    return EventKind.TRANSFER_STARTED, {"hotline": hotline, "target": 0}


def dialed(hotline: str, status: str, duration: int = 0) -> tuple[EventKind, dict]:
    return EventKind.TRANSFER_ENDED, {"hotline": hotline, "target": 0, "status": status,
                                      "duration": duration}


def labour_call() -> Call:
    """Says "trabajo", the Ministry of Labour is busy, the national line answers."""
    return (Call().started()
            .request("", answered("welcome", "2", "labour"), transfer("labour"))
            .request("", dialed("labour", DialStatus.BUSY), transfer("national"))
            .request("", dialed("national", DialStatus.COMPLETED, 95))
            .ended())


# The counters a labour call moves more than once in these tests.
LABOUR_BUSY = counter(Count.DIAL, "labour", DialStatus.BUSY)
NATIONAL_ANSWERED = counter(Count.DIAL, "national", DialStatus.COMPLETED)
IN_PROGRESS = counter(Count.OUTCOME, Outcome.IN_PROGRESS)
TRANSFERRED = counter(Count.OUTCOME, Outcome.TRANSFERRED)
LABOUR = counter(Count.CATEGORY, "labour")


def nonzero(counts: Counter) -> dict:
    return {name: n for name, n in counts.items() if n}


# --- what one batch counts --------------------------------------------------------------


def test_a_labour_call_moves_each_counter_once():
    call = labour_call()
    changes = tally({}, call.events)
    day = "2026-03-10"
    assert dict(changes.days) == {day: Counter({
        Count.CALLS: 1, hour_counter(15): 1, Count.IDENTIFIED: 1,
        counter(Count.ASKED, "welcome"): 1,
        counter(Count.TRANSFER, "labour"): 1, counter(Count.TRANSFER, "national"): 1,
        LABOUR_BUSY: 1, NATIONAL_ANSWERED: 1,
        TRANSFERRED: 1, LABOUR: 1, counter(Count.LANG, "es"): 1,
        counter(Count.TO_TRANSFER, 15): 1, counter(Count.INPUT, Input.KEYPAD): 1,
        # both attempts ended at 15:00-something, Bogotá: one not connected, one connected
        dial_hour_counter("labour", 15, Attempt.NOT_CONNECTED): 1,
        dial_hour_counter("national", 15, Attempt.CONNECTED): 1,
    })}
    assert dict(changes.hours) == {hour_of_day(call.events[3].at): Counter({
        LABOUR_BUSY: 1, NATIONAL_ANSWERED: 1})}
    assert hour_of_day(call.events[3].at) == hour_of_day(call.events[5].at) == "2026-03-10T15"
    assert dict(changes.callers) == {day: {CALLER}}
    assert changes.events == call.events
    assert list(changes.records) == [call.sid]
    assert changes.records[call.sid].counted == {  # no "hangup": never counted
        Count.OUTCOME: Outcome.TRANSFERRED, Count.CATEGORY: "labour", Count.LANG: "es",
        Count.TO_TRANSFER: "15", Count.INPUT: Input.KEYPAD, Count.HOUR: "15",
        filters.COUNTED: "1"}


def test_a_caller_who_spoke_one_answer_and_keyed_another_answered_by_both():
    spoken = {"node": "report", "input": "speech", "option": "1", "attempt": 0}
    call = (Call().started()
            .request("report", answered("welcome", "4", "report"))
            .request("", (EventKind.MENU_ANSWERED, spoken))
            .ended())
    day = tally({}, call.events).days["2026-03-10"]
    assert day[counter(Count.INPUT, Input.BOTH)] == 1
    assert day[counter(Count.INPUT, Input.KEYPAD)] == day[counter(Count.INPUT, Input.SPEECH)] == 0


def test_a_caller_who_never_answered_counts_under_no_input_once_the_call_ended():
    going = Call().started()
    assert not any(name.startswith(Count.INPUT) for name in tally({}, going.events).days[
        "2026-03-10"])
    day = tally({}, going.ended().events).days["2026-03-10"]
    assert day[counter(Count.INPUT, Input.NONE)] == 1


def test_silences_and_wrong_keys_are_counted_by_their_kind():
    call = (Call().started()
            .request("welcome", (EventKind.NO_INPUT, {"node": "welcome", "attempt": 1}))
            .request("welcome", (EventKind.INVALID_INPUT, {"node": "welcome", "attempt": 2,
                                                           "input": "dtmf"}))
            .request("report", answered("welcome", "4", "report"))
            .ended())
    [day] = tally({}, call.events).days.values()
    assert (day[Count.NO_INPUT], day[Count.INVALID_INPUT]) == (1, 1)
    assert (day[counter(Count.ASKED, "welcome")],
            day[counter(Count.ASKED, "report")]) == (1, 1)  # once a question
    assert (day[counter(Count.HANGUP, "report")],
            day[counter(Count.OUTCOME, Outcome.ABANDONED_IN_MENU)]) == (1, 1)


def test_a_withheld_number_is_a_call_but_not_a_caller():
    call = Call(caller=ANONYMOUS).started()
    changes = tally({}, call.events)
    [day] = changes.days.values()
    assert day[Count.CALLS] == 1 and Count.IDENTIFIED not in day
    assert dict(changes.callers) == {}


def test_a_call_known_only_by_its_status_callback_is_counted_once_it_has_a_day():
    call = labour_call()
    end_first = tally({}, call.events[-1:])
    assert nonzero(end_first.days.get("", Counter())) == {}
    assert end_first.records[call.sid].counted == {}  # no day: nothing counted yet
    rest = tally(end_first.records, call.events[:-1])
    assert sum(nonzero(c).get(TRANSFERRED, 0) for c in rest.days.values()) == 1


def test_a_count_moves_when_a_later_batch_changes_the_calls_outcome():
    call = labour_call()
    first = tally({}, call.events[:3])  # the Ministry of Labour is ringing
    [day] = first.days.values()
    assert day[IN_PROGRESS] == 1
    assert day[LABOUR] == 1
    assert hour_counter(15) not in day  # an hour's calls are ended ones, as filters see
    second = tally(first.records, call.events[3:])
    [day] = second.days.values()
    assert day[IN_PROGRESS] == -1
    assert day[TRANSFERRED] == 1
    assert day[hour_counter(15)] == 1  # ended now: counted by the hour it started
    assert LABOUR not in day  # unchanged: not counted again
    assert Count.CALLS not in day


def test_events_seen_before_change_nothing():
    call = labour_call()
    before = tally({}, call.events).records
    again = tally(before, call.events)
    assert again.events == [] and again.records == {}
    assert all(not nonzero(c) for c in [*again.days.values(), *again.hours.values()])


def test_the_records_given_are_left_as_they_were():
    call = labour_call()
    stored = tally({}, call.events[:3]).records
    fields = {sid: r.to_fields() for sid, r in stored.items()}
    changes = tally(stored, call.events[3:])
    assert {sid: r.to_fields() for sid, r in stored.items()} == fields
    assert changes.records[call.sid] is not stored[call.sid]


def test_an_event_of_a_kind_this_version_does_not_know_is_kept_but_counts_nothing():
    call = Call().started()
    odd = Event(id=f"{call.sid}:2.0", call=call.sid, kind="something_new", step=2,
                at=T0 + 20, started=T0, lang="es", asked="welcome", data={"x": 1})
    counted = tally({}, call.events).days
    changes = tally({}, [*call.events, odd])
    assert changes.events[-1] is odd
    assert changes.days == counted


# --- any order, any batches, any number of times ----------------------------------------

HOTLINES = ("labour", "icbf", "national", "emergency")
CATEGORIES = ("child", "labour", "report", Category.EMERGENCY, Category.UNCLEAR)


@st.composite
def a_call(draw, n: int) -> list[Event]:
    """One call's events: its start, then requests as the web app makes them, then
    (usually) the status callback."""
    call = Call(sid=f"CA{n:032x}", t0=T0 + draw(st.integers(0, 86400 * 2)),
                caller=draw(st.sampled_from([CALLER, "c_99", ANONYMOUS])))
    call.started()
    for _ in range(draw(st.integers(0, 5))):
        move = draw(st.sampled_from(["silence", "wrong", "answer", "answer_and_transfer",
                                     "english", "dial", "dial_and_next"]))
        hotline = draw(st.sampled_from(HOTLINES))
        status = draw(st.sampled_from(sorted(TWILIO_DIAL_STATUSES) + [DialStatus.DROPPED]))
        category = draw(st.sampled_from(CATEGORIES))
        node = draw(st.sampled_from(["welcome", "report", "child"]))
        if move == "silence":
            call.request(node, (EventKind.NO_INPUT, {"node": node, "attempt": 1}))
        elif move == "wrong":
            call.request(node, (EventKind.INVALID_INPUT, {"node": node, "attempt": 1,
                                                          "input": "speech"}))
        elif move == "answer":
            call.request(node, answered("welcome", "4", category))
        elif move == "answer_and_transfer":
            call.request("", answered(node, "1", category), transfer(hotline))
        elif move == "english":
            call.request("welcome", answered("welcome", "9"),
                         (EventKind.LANGUAGE_CHANGED, {"lang": "en"}), lang="en")
        elif move == "dial":
            call.request("", dialed(hotline, status, 30))
        else:
            call.request("", dialed(hotline, status), transfer("national"))
    if draw(st.booleans()) or draw(st.booleans()):
        call.ended(draw(st.sampled_from(sorted(FINAL_CALL_STATUSES))),
                   late=draw(st.floats(0.1, 3.0)))
    return call.events


@st.composite
def deliveries(draw):
    """Several calls' events, and the same events as a drain may be handed them: in any
    order, some more than once, cut into batches anywhere."""
    calls = [draw(a_call(n)) for n in range(draw(st.integers(1, 4)))]
    events = [e for call in calls for e in call]
    shuffled = draw(st.permutations(events))
    again = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    delivered = list(shuffled)
    for event in again:
        delivered.insert(draw(st.integers(0, len(delivered))), event)
    cuts = sorted(draw(st.lists(st.integers(0, len(delivered)), max_size=6)))
    batches = [delivered[a:b] for a, b in zip([0, *cuts], [*cuts, len(delivered)],
                                              strict=True)]
    return events, batches


def write_all(batches: list[list[Event]]) -> tuple[Changes, dict[str, CallRecord]]:
    """What the store does batch after batch, summed: the records go to their hashes and
    come back from them (to_fields / from_fields) between batches."""
    total = Changes()
    stored: dict[str, CallRecord] = {}
    for batch in batches:
        changes = tally(stored, batch)
        for sid, record in changes.records.items():
            stored[sid] = CallRecord.from_fields(sid, record.to_fields())
        for day, counts in changes.days.items():
            total.days[day].update(counts)
        for hour, counts in changes.hours.items():
            total.hours[hour].update(counts)
        for day, callers in changes.callers.items():
            total.callers[day] |= callers
        total.events += changes.events
    return total, stored


def as_stored(records: dict[str, CallRecord]) -> dict[str, dict[str, str]]:
    """The records' hashes, a dimension counted under no value ("c:hangup": "") left
    out: the store keeps it once a count moved back to nothing (an absent field would
    leave the old value in Redis), and it reads as not counted either way."""
    return {sid: {k: v for k, v in r.to_fields().items() if v or not k.startswith("c:")}
            for sid, r in records.items()}


def counted(changes: Changes) -> tuple[dict, dict, dict]:
    days = {d: nonzero(c) for d, c in changes.days.items() if nonzero(c)}
    hours = {h: nonzero(c) for h, c in changes.hours.items() if nonzero(c)}
    return days, hours, dict(changes.callers)


@pytest.mark.slow  # a second or more
@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_any_order_any_batches_and_repeats_give_the_same_counters(delivery):
    events, batches = delivery
    once = tally({}, events)  # each event once, in order, in one batch
    total, stored = write_all(batches)
    assert counted(total) == counted(once)
    assert sorted(e.id for e in total.events) == sorted(e.id for e in events)
    assert as_stored(stored) == as_stored(once.records)


@settings(max_examples=100, deadline=None)
@given(deliveries())
def test_delivering_everything_a_second_time_changes_nothing(delivery):
    events, batches = delivery
    _, stored = write_all(batches)
    again = tally(stored, events)
    assert again.events == [] and again.records == {}
    assert counted(again) == ({}, {}, {})

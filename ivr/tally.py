"""Which counters a batch of events moves: `tally(records, events) -> Changes`. Pure: no
Redis, no Flask.

The drain (workers.drain) reads the batch's call records, tallies, and writes the changes
in one transaction (ivr.store.Store.write_batch). The rules that make the day's counters
converge whatever the order the events arrive in, and however often:
- an event counts once, the first time its call's record takes it (`CallRecord.apply`
  skips an event it has seen): calls, identified, transfer, dial, no_input,
  invalid_input, dial_hour (by the hour the attempt ended);
- asked:<node> counts a call once per question, when the call first reaches it;
- a call's dimensions (outcome, category, lang, hangup, to_transfer, input, and once it
  has ended the hour it started) count it once, under the value its whole record gives
  now; when that value changes, the count moves from the old value to the new one (the
  record keeps what it was counted under);
- the facet counts (ivr.filters: the dashboard's filters) hold each ended call once,
  under its combination of facet values with its counters, all derived from its whole
  record: a batch takes out what the record before it added and puts in what the record
  adds now. The day's index of calls by facet value moves the same way.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ivr import filters
from ivr.call_record import CallRecord
from ivr.vocabulary import (
    ANONYMOUS,
    EVENT_COUNTS,
    Attempt,
    Count,
    Event,
    EventKind,
    counter,
    dial_hour_counter,
    hour_of,
    hour_of_day,
)


@dataclass
class Changes:
    """What one batch changes. Counter deltas may be negative (a call counted under a new
    value) or zero (counted under one value, then moved back)."""

    records: dict[str, CallRecord] = field(default_factory=dict)  # calls changed, as now
    events: list[Event] = field(default_factory=list)  # taken for the first time (the log)
    days: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    hours: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    callers: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # By day: calls by facet combination; by (day, combination): its counters.
    facet_calls: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    facet_counts: dict[tuple[str, str], Counter] = field(
        default_factory=lambda: defaultdict(Counter))
    # By (day, facet, value): calls to add to its index (CallSid -> start), to take out.
    index_add: dict[tuple[str, str, str], dict[str, float]] = field(
        default_factory=lambda: defaultdict(dict))
    index_remove: dict[tuple[str, str, str], set[str]] = field(
        default_factory=lambda: defaultdict(set))
    # The alerts' inputs (ivr.alerts): each line's transfer results in order of
    # arrival, (when, DialStatus), and when the newest call of the batch started.
    attempts: dict[str, list[tuple[float, str]]] = field(
        default_factory=lambda: defaultdict(list))
    last_call: float = 0.0


def tally(records: Mapping[str, CallRecord], events: Iterable[Event]) -> Changes:
    """Fold `events` into their calls' records and decide every counter move.

    `records` are the calls' records before this batch (a call not in it has none yet);
    they are not changed: the records after the batch are in `Changes.records`.
    `days` are counter deltas by Bogotá day, `hours` dial results by Bogotá hour
    ("YYYY-MM-DDTHH", the health strip), `callers` caller pseudonyms by day.
    """
    changes = Changes()
    folding: dict[str, CallRecord] = {}
    for event in events:
        record = folding.get(event.call)
        if record is None:
            before = records.get(event.call)
            record = before.copy() if before else CallRecord(call=event.call)
            folding[event.call] = record
        nodes_before = set(record.nodes)
        if not record.apply(event):
            continue
        changes.events.append(event)
        changes.records.setdefault(event.call, record)
        day = changes.days[record.day]
        day.update(counter(Count.ASKED, node) for node in record.nodes - nodes_before)
        data = event.data
        match event.kind:
            case EventKind.CALL_STARTED:
                day[Count.CALLS] += 1
                changes.last_call = max(changes.last_call, record.started)
                if record.caller and record.caller != ANONYMOUS:
                    day[Count.IDENTIFIED] += 1
                    changes.callers[record.day].add(record.caller)
            case EventKind.TRANSFER_STARTED:
                day[counter(Count.TRANSFER, data.get("hotline", ""))] += 1
            case EventKind.TRANSFER_ENDED:
                hotline, status = data.get("hotline", ""), data.get("status", "")
                result = counter(Count.DIAL, hotline, status)
                day[result] += 1
                day[dial_hour_counter(hotline, hour_of(event.at), Attempt.of(status))] += 1
                changes.hours[hour_of_day(event.at)][result] += 1
                changes.attempts[data.get("hotline", "")].append(
                    (event.at, data.get("status", "")))
            case EventKind.NO_INPUT | EventKind.INVALID_INPUT:
                day[EVENT_COUNTS[event.kind]] += 1
    for record in changes.records.values():
        if not record.day:  # only its status callback so far: counted once it has a day
            continue
        day = changes.days[record.day]
        dims = record.dimensions()
        for dimension, value in dims.items():
            old = record.counted.get(dimension, "")
            if value != old:  # move this call's count from the old value to the new
                if old:
                    day[counter(dimension, old)] -= 1
                if value:
                    day[counter(dimension, value)] += 1
                record.counted[dimension] = value
        _move_facets(changes, records.get(record.call), record, dims)
    return changes


def _move_facets(changes: Changes, before: CallRecord | None, record: CallRecord,
                 dims: dict[str, str]) -> None:
    """Take out of the facet counts and index what `before` added, put in what `record`
    adds. Only an ended call is in them: a call's facets change at nearly every event
    while it goes on, and moving all its counters each time would cost the drain about
    a third of its speed; once ended they rarely change (a late transfer result)."""
    counted = before is not None and bool(before.counted.get(filters.COUNTED))
    if not counted and not record.status:
        return
    day = record.day
    old_key, old_counts = filters.contributions(before) if counted else ("", Counter())
    key, counts = filters.contributions(record, dims)
    record.counted[filters.COUNTED] = "1"
    if (key, counts) == (old_key, old_counts):
        return
    if counted:
        changes.facet_calls[day][old_key] -= 1
        changes.facet_counts[day, old_key].subtract(old_counts)
    changes.facet_calls[day][key] += 1
    changes.facet_counts[day, key].update(counts)
    old, new = (before.facets() if counted else {}), record.facets(dims)
    for facet in new.keys() | old.keys():
        was, now = set(old.get(facet, ())), set(new.get(facet, ()))
        for value in now - was:
            changes.index_add[day, facet, value][record.call] = record.started
        for value in was - now:
            changes.index_remove[day, facet, value].add(record.call)

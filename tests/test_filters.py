"""The dashboard's filters (ivr.filters): the facet counts converge like the day counters,
and with no filter they are the day counters of the ended calls; a filter picks exactly
the ended calls whose records have its values."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from test_tally import deliveries, labour_call, write_all

from ivr.filters import NONE, NOT_KEPT, FilterError, Filters, counters_matching
from ivr.tally import tally
from ivr.vocabulary import Facet, Input


def facet_totals(batches):
    """The facet counts and indexes that batch after batch leave, as the store keeps them."""
    stored, calls, counts, index = {}, Counter(), defaultdict(Counter), defaultdict(set)
    from ivr.call_record import CallRecord

    for batch in batches:
        changes = tally(stored, batch)
        for sid, record in changes.records.items():
            stored[sid] = CallRecord.from_fields(sid, record.to_fields())
        for day, moved in changes.facet_calls.items():
            calls.update({(day, k): n for k, n in moved.items()})
        for (day, key), moved in changes.facet_counts.items():
            counts[day, key].update(moved)
        for (day, facet, value), sids in changes.index_add.items():
            index[day, facet, value] |= set(sids)
        for (day, facet, value), sids in changes.index_remove.items():
            index[day, facet, value] -= sids
    by_day = defaultdict(dict)
    for (day, key), n in calls.items():
        if n:
            by_day[day][key] = n
    return by_day, counts, {k: v for k, v in index.items() if v}, stored


def unfiltered(by_day, counts, filters=NONE):
    return {day: {k: n for k, n in counters_matching(
        found, {key: counts[day, key] for key in found}, filters).items() if n}
        for day, found in by_day.items()}


@pytest.mark.slow  # a second or more
@settings(max_examples=200, deadline=None)
@given(deliveries())
def test_with_no_filter_the_facet_counts_are_the_day_counters(delivery):
    events, batches = delivery
    by_day, counts, _index, stored = facet_totals(batches)
    ended = {sid for sid, r in stored.items() if r.status}  # calls going on: not yet in
    total, _ = write_all([[e for e in batch if e.call in ended] for batch in batches])
    days = {d: {k: n for k, n in c.items() if n and k not in NOT_KEPT}
            for d, c in total.days.items()}
    assert unfiltered(by_day, counts) == {d: c for d, c in days.items() if c}


@pytest.mark.slow  # a second or more
@settings(max_examples=200, deadline=None)
@given(deliveries())
def test_a_filter_counts_and_lists_exactly_the_calls_with_its_value(delivery):
    events, batches = delivery
    by_day, counts, index, stored = facet_totals(batches)
    for facet in Facet:
        values = {v for r in stored.values() if r.day for v in r.facets()[facet]}
        for value in values:
            picked = Filters(**{facet.value: value})
            want = {sid for sid, r in stored.items()
                    if r.day and r.status and picked.matches(r.facets())}
            listed = set().union(*(sids for (d, f, v), sids in index.items()
                                   if f == facet and v == value))
            assert listed == want
            counted = sum(c.get("calls", 0) for c in unfiltered(by_day, counts, picked).values())
            assert counted == len(want)


def test_a_call_is_found_under_each_of_its_lines_and_by_how_it_answered():
    record = tally({}, labour_call().events).records["CA" + "ab" * 16]
    assert record.facets()[Facet.HOTLINE] == ("labour", "national")
    assert record.facets()[Facet.INPUT] == (Input.KEYPAD,)
    assert Filters(hotline="national", input="keypad").matches(record.facets())
    assert not Filters(hotline="national", input="speech").matches(record.facets())


def test_filters_come_from_the_url_and_go_back_to_it():
    filters = Filters.from_args({"hotline": "labour", "lang": " es ", "page": "2"})
    assert filters.args() == {"hotline": "labour", "lang": "es"}
    assert filters.narrowed(outcome="transferred").args() == {
        "hotline": "labour", "lang": "es", "outcome": "transferred"}
    assert not Filters.from_args({})
    with pytest.raises(FilterError):
        Filters.from_args({"hotline": "labour/es"})
    at_nine = Filters.from_args({"hour": "09", "lang": "es"})
    assert at_nine.args() == {"lang": "es", "hour": "9"}
    assert at_nine.whole_days().args() == {"lang": "es"}
    assert Filters.from_args({"hour": "0"}) and Filters().narrowed(hour="23").args() == {
        "hour": "23"}
    for wrong in ("24", "-1", "nine"):
        with pytest.raises(FilterError):
            Filters.from_args({"hour": wrong})

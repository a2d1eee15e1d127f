"""The dashboard's filters, and the counts that let every figure follow them. Pure: no
Redis, no Flask.

A filter picks calls by their facets (ivr.vocabulary.Facet: hotline, outcome, category,
language, input, the question where the caller hung up). Counting every figure for every
possible filter is impossible, and scanning calls to draw a figure is too slow, so each
day keeps its calls by *combination* of facet values (a few hundred a day, however many
calls), each combination with the counters the dashboard draws. A filtered figure adds
up the combinations the filter matches, in the day counters' own names
(`counters_matching`), so ivr.summary reads it as it reads a day's counters.

Only ended calls are in the combinations (ivr.tally: counting calls still going would
cost the drain too much), so a filtered view leaves out the few calls in progress.

The combination's key spells one value list per facet, in `Facet` order:
"labour+national/transferred/labour/es/speech//welcome/yes/national/labour+any" (a
call transferred to two lines, the first busy, no hang-up question); a key written
before a facet was added lacks its part, so a filter on that facet does not pick its
calls. ivr.store keeps, for each day, its calls by combination in one small hash, and
each combination's counters in a hash of its own: a filter reads only the combinations
it picks.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from ivr.call_record import CallRecord
from ivr.message import N_, Message
from ivr.vocabulary import (
    Attempt,
    Count,
    Facet,
    counter,
    dial_hour_counter,
    hour_counter,
    hour_of,
)

FACETS = tuple(Facet)  # the order of a combination's parts
PART, MANY = "/", "+"
# What a filter value may be: the ids of hotlines, questions and categories, outcomes,
# languages; nothing that could break a combination key or a Redis key.
VALUE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Kept in a record's "counted" fields (c:facets) once its day's facet counts hold it: a
# record counted by an older version, without them, is not taken out of them.
COUNTED = "facets"
# Day counters no filtered figure draws, so not kept by combination.
NOT_KEPT = (Count.IDENTIFIED, Count.NO_INPUT, Count.INVALID_INPUT)
HOUR = "hour"  # the filter on the hour a call started (Filters.hour)


class FilterError(ValueError):
    """A filter value we cannot use; the message says which."""

    def __init__(self, name: str):
        self.message = Message(N_("not a value for the filter %(name)s"), {"name": name})
        super().__init__(str(self.message))


@dataclass(frozen=True)
class Filters:
    """The values asked for, one per facet at most ("" = any), as in the URL."""

    hotline: str = ""
    outcome: str = ""
    category: str = ""
    lang: str = ""
    input: str = ""
    hangup: str = ""
    heard: str = ""
    reached: str = ""
    connected: str = ""
    not_connected: str = ""
    # Not a facet: the hour of day (0-23, Bogotá) the call started, a time window in each
    # day's ended calls, alone as beside a facet (ivr.store reads it from the calls by
    # start time). No combination counts it, so it narrows the calls table, the CSV and
    # the calls API, not figures.
    hour: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Filters:
        """From a query string (?hotline=labour&lang=es); a value that cannot be an id is
        a FilterError (an unknown one simply matches no call)."""
        values = {}
        for facet in FACETS:
            value = (args.get(facet.value) or "").strip()
            if value and not VALUE.fullmatch(value):
                raise FilterError(facet.value)
            values[facet.value] = value
        hour = (args.get(HOUR) or "").strip()
        if hour and not (hour.isdigit() and int(hour) < 24):
            raise FilterError(HOUR)
        return cls(**values, hour=str(int(hour)) if hour else "")

    def asked(self) -> dict[Facet, str]:
        """The facets filtered on, with their values."""
        return {facet: getattr(self, facet.value) for facet in FACETS
                if getattr(self, facet.value)}

    def args(self) -> dict[str, str]:
        """For a URL: only the filters asked for."""
        hour = {HOUR: self.hour} if self.hour else {}
        return {**{facet.value: value for facet, value in self.asked().items()}, **hour}

    def __bool__(self) -> bool:
        return bool(self.asked() or self.hour)

    def narrowed(self, **values: str) -> Filters:
        """These filters and more (a drill-down link): narrowed(outcome="transferred")."""
        return replace(self, **values)

    def whole_days(self) -> Filters:
        """These filters without the hour: what the figures can follow."""
        return replace(self, hour="")

    def matches(self, facets: Mapping[Facet, tuple[str, ...]]) -> bool:
        return all(value in facets.get(facet, ()) for facet, value in self.asked().items())


NONE = Filters()  # every call


# --- what one call adds to its day's facet counts -------------------------------------


def combination(facets: Mapping[Facet, tuple[str, ...]]) -> str:
    return PART.join(MANY.join(facets.get(facet, ())) for facet in FACETS)


@lru_cache(maxsize=8192)
def parse_combination(key: str) -> dict[Facet, tuple[str, ...]]:
    parts = key.split(PART)
    return {facet: tuple(filter(None, part.split(MANY)))
            for facet, part in zip(FACETS, parts, strict=False)}


def contributions(record: CallRecord,
                  dims: dict[str, str] | None = None) -> tuple[str, Counter]:
    """(the call's combination, the counters it adds there): what ivr.summary draws and
    the combination does not already say (its outcome, category, language, hang-up
    question, input are the combination's own, counted by its calls). Only what a
    filtered figure draws (NOT_KEPT: no repeat calls, silences or wrong keys): every
    counter here is a write per batch. `dims`: the record's dimensions(), when known."""
    dims = dims or record.dimensions()
    counts: Counter = Counter()
    counts[hour_counter(hour_of(record.started))] = 1
    seconds = dims[Count.TO_TRANSFER]
    if seconds:
        counts[counter(Count.TO_TRANSFER, seconds)] = 1
    counts.update(counter(Count.TRANSFER, h) for h in record.transfers.values())
    counts.update(counter(Count.DIAL, d) for d in record.dials.values())
    for step, dial in record.dials.items():  # a record from before dial_hours has none
        if step in record.dial_hours:
            hotline, status = dial.rsplit(":", 1)
            counts[dial_hour_counter(hotline, int(record.dial_hours[step]),
                                     Attempt.of(status))] += 1
    counts.update(counter(Count.ASKED, node) for node in record.nodes)
    return combination(record.facets(dims)), counts


# --- reading: a filter's counters --------------------------------------------------------

# The facets that are also day counters: a combination's calls count under their values.
AS_COUNTER = {Facet.OUTCOME: Count.OUTCOME, Facet.CATEGORY: Count.CATEGORY,
              Facet.LANG: Count.LANG, Facet.INPUT: Count.INPUT, Facet.HANGUP: Count.HANGUP}


def calls_matching(facet_calls: Mapping[str, int], filters: Filters) -> int:
    """How many of a day's calls (its calls by combination) the filters pick."""
    return sum(facet_calls[key] for key in combinations_matching(facet_calls, filters))


def combinations_matching(facet_calls: Mapping[str, int], filters: Filters) -> list[str]:
    """The combinations of a day (its calls by combination) that the filters pick."""
    asked = filters.asked().items()  # once, not once per combination: a day has hundreds
    return [key for key, n in facet_calls.items()
            if n and all(value in parse_combination(key).get(facet, ()) for facet, value in asked)]


def counters_matching(facet_calls: Mapping[str, int],
                      counts: Mapping[str, Mapping[str, int]],
                      filters: Filters) -> dict[str, int]:
    """A day's counters for the calls the filters pick, named as the day's counters are
    (ivr.vocabulary.Count): calls, outcome:..., dial:..., hour:..., and so on. `counts`
    has the counters of (at least) the combinations picked."""
    out: Counter = Counter()
    for key in combinations_matching(facet_calls, filters):
        n, facets = facet_calls[key], parse_combination(key)
        out[Count.CALLS] += n
        for facet, name in AS_COUNTER.items():
            for value in facets[facet]:
                out[counter(name, value)] += n
        out.update(counts.get(key, {}))
    return dict(out)

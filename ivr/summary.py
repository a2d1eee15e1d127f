"""What supervisors read: a date range's numbers, from day counters. Pure: no Redis.

The dashboard, the JSON API and `ivr report` all show this one summary, so a number
means the same everywhere. It reads only counters (never scans calls), so 30 days cost
30 small hashes whatever the number of calls.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from ivr.message import N_, Message
from ivr.vocabulary import (
    BOGOTA,
    FAILED_DIALS,
    Count,
    Outcome,
    counter,
    group_counters,
    hour_counter,
    split_counter,
    split_dial,
)

MAX_RANGE_DAYS = 366


class RangeError(ValueError):
    """A date range a person typed that we cannot use; the message says why."""

    def __init__(self, template: str, **values):
        self.message = Message(template, values)
        super().__init__(str(self.message))


def today() -> date:
    return datetime.now(BOGOTA).date()


def parse_range(start: str | None, end: str | None, preset: str | None = None) -> list[str]:
    """The days from `start` to `end` (YYYY-MM-DD, inclusive, Bogotá), or a preset:
    "today", "7" or "30" days ending today. Default: the last 7 days."""
    last = today()
    if start or end:
        try:
            first = date.fromisoformat(start) if start else None
            last = date.fromisoformat(end) if end else last
        except ValueError as e:
            raise RangeError(N_("dates must look like 2026-01-31")) from e
        first = first or last
    elif preset == "today":
        first = last
    else:
        n = {"7": 7, "30": 30}.get(preset or "7")
        if n is None:
            raise RangeError(N_("range must be today, 7 or 30"))
        first = last - timedelta(days=n - 1)
    if first > last:
        raise RangeError(N_("the first day is after the last day"))
    if (last - first).days >= MAX_RANGE_DAYS:
        raise RangeError(N_("a range is at most %(days)d days"), days=MAX_RANGE_DAYS)
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def last_hours(n: int = 24, now: datetime | None = None) -> list[str]:
    """The last `n` Bogotá hours as "YYYY-MM-DDTHH", the current one included."""
    now = (now or datetime.now(BOGOTA)).astimezone(BOGOTA)
    return [(now - timedelta(hours=i)).strftime("%Y-%m-%dT%H") for i in range(n)]


@dataclass
class HotlineRow:
    hotline: str
    transfers: int = 0
    results: dict[str, int] = field(default_factory=dict)


# A test call's result as the health strip says it (translated where it is shown).
# Results: ivr.twilio_account.LineTest.
LINE_TEST_WORDS = {"answered": N_("answered"), "busy": N_("busy"),
                   "no-answer": N_("no answer"), "failed": N_("failed"),
                   "canceled": N_("canceled"), "error": N_("error"),
                   "unknown": N_("no result")}


@dataclass
class LineTestSeen:
    """A hotline's latest test call (`ivr twilio test-line`), as stored."""

    target: str
    result: str
    error: str
    at: str  # ISO 8601, Bogotá (the pages show it with ivr.i18n.moment)

    @property
    def answered(self) -> bool:
        return self.result == "answered"

    def result_text(self) -> Message:
        """E.g. "answered" or "error 21211" (the Twilio error code)."""
        if self.result == "error" and self.error:
            return Message(N_("error %(code)s"), {"code": self.error.split(":", 1)[0]})
        return Message(LINE_TEST_WORDS.get(self.result, self.result))


@dataclass
class Health:
    hotline: str
    attempts: int
    failed: int
    flagged: bool
    last_test: LineTestSeen | None = None

    @property
    def failed_share(self) -> float:
        return self.failed / self.attempts if self.attempts else 0.0


@dataclass
class Summary:
    days: list[str]
    calls: int
    outcomes: dict[str, int]
    emergency_transfers: int
    median_seconds_to_transfer: int | None
    repeat_calls: int | None  # None: not known (a filtered summary)
    categories: dict[str, list[int]]  # category -> calls per day
    languages: dict[str, int]
    hotlines: list[HotlineRow]
    funnel: list[tuple[str, int, int]]  # (question, callers who reached it, hung up there)
    by_hour: list[int]
    health: list[Health]

    @property
    def reached(self) -> int:
        return (self.outcomes.get(Outcome.TRANSFERRED, 0)
                + self.outcomes.get(Outcome.EMERGENCY_TRANSFERRED, 0))

    def share(self, n: int) -> float:
        """n as a percentage of the calls (0 when there were none)."""
        return 100.0 * n / self.calls if self.calls else 0.0

    def headline(self) -> dict[str, float | int | None]:
        failed = self.outcomes.get(Outcome.TRANSFER_FAILED, 0)
        abandoned = self.outcomes.get(Outcome.ABANDONED_IN_MENU, 0)
        return {
            "calls": self.calls,
            "reached_hotline": self.reached,
            "reached_hotline_pct": round(self.share(self.reached), 1),
            "transfer_failed": failed,
            "transfer_failed_pct": round(self.share(failed), 1),
            "hung_up_in_menu": abandoned,
            "hung_up_in_menu_pct": round(self.share(abandoned), 1),
            "in_progress": self.outcomes.get(Outcome.IN_PROGRESS, 0),
            "emergency_transfers": self.emergency_transfers,
            # Told to hang up and dial 123, they did: what we asked, not a failure.
            "emergency_hung_up_to_dial": self.outcomes.get(Outcome.EMERGENCY_HUNG_UP_TO_DIAL, 0),
            "median_seconds_to_transfer": self.median_seconds_to_transfer,
            "repeat_calls": self.repeat_calls,
        }

    def to_dict(self) -> dict:
        out = asdict(self)
        out["health"] = [{**asdict(h), "failed_share": round(h.failed_share, 3)}
                         for h in self.health]
        out["funnel"] = [{"question": q, "reached": r, "hung_up": h} for q, r, h in self.funnel]
        return {"from": self.days[0], "to": self.days[-1], **self.headline(), **{
            k: v for k, v in out.items() if k not in ("days", "calls")}}


def summarize(
    days: list[str],
    counters: dict[str, dict[str, int]],
    unique_callers: int | None,
    recent_dials: dict[str, int],
    questions: list[str],
    health_threshold: float = 0.3,
    health_min_attempts: int = 3,
    line_tests: dict[str, dict] | None = None,
) -> Summary:
    """Add up the days' counters. `questions` orders the funnel (menu order);
    `line_tests` is each hotline's latest test call (Store.line_tests)."""
    total: Counter = Counter()
    for day in days:
        total.update(counters.get(day, {}))
    by_name = group_counters(total)
    categories = sorted(by_name.get(Count.CATEGORY, {}))
    per_day = {
        c: [counters.get(day, {}).get(counter(Count.CATEGORY, c), 0) for day in days]
        for c in categories
    }
    hotlines: dict[str, HotlineRow] = {}
    for hotline, n in by_name.get(Count.TRANSFER, {}).items():
        hotlines.setdefault(hotline, HotlineRow(hotline)).transfers = n
    for value, n in by_name.get(Count.DIAL, {}).items():
        hotline, status = split_dial(value)
        hotlines.setdefault(hotline, HotlineRow(hotline)).results[status] = n
    asked, hung = by_name.get(Count.ASKED, {}), by_name.get(Count.HANGUP, {})
    funnel_order = [q for q in questions if q in asked or q in hung]
    funnel_order += sorted((set(asked) | set(hung)) - set(funnel_order))
    return Summary(
        days=days,
        calls=total.get(Count.CALLS, 0),
        outcomes=by_name.get(Count.OUTCOME, {}),
        emergency_transfers=by_name.get(Count.OUTCOME, {}).get(Outcome.EMERGENCY_TRANSFERRED, 0),
        median_seconds_to_transfer=_median({int(k): n for k, n in
                                            by_name.get(Count.TO_TRANSFER, {}).items()}),
        repeat_calls=(None if unique_callers is None
                      else max(0, total.get(Count.IDENTIFIED, 0) - unique_callers)),
        categories=per_day,
        languages=by_name.get(Count.LANG, {}),
        hotlines=sorted(hotlines.values(), key=lambda h: -h.transfers),
        funnel=[(q, asked.get(q, 0), hung.get(q, 0)) for q in funnel_order],
        by_hour=[total.get(hour_counter(h), 0) for h in range(24)],
        health=_health(recent_dials, health_threshold, health_min_attempts, line_tests or {}),
    )


def _median(histogram: dict[int, int]) -> int | None:
    """The median of a {value: count} histogram."""
    n = sum(histogram.values())
    if not n:
        return None
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen * 2 >= n:
            return value
    return None


def _health(recent_dials: dict[str, int], threshold: float, min_attempts: int,
            line_tests: dict[str, dict]) -> list[Health]:
    """Each hotline's dial results over the last hours, flagged when too many failed,
    with its latest test call; a hotline only tested has a row too."""
    attempts: Counter = Counter()
    failed: Counter = Counter()
    for name, n in recent_dials.items():
        hotline, status = split_dial(split_counter(name)[1])
        attempts[hotline] += n
        if status in FAILED_DIALS:
            failed[hotline] += n
    tests = {h: LineTestSeen(**{k: str(t.get(k, "")) for k in ("target", "result", "error", "at")})
             for h, t in line_tests.items()}
    rows = [
        Health(h, attempts[h], failed[h],
               attempts[h] >= min_attempts and failed[h] / attempts[h] > threshold,
               tests.get(h))
        for h in sorted(set(attempts) | set(tests))
    ]
    return sorted(rows, key=lambda h: (not h.flagged, h.hotline))

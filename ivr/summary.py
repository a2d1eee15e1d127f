"""What supervisors read: a date range's numbers, from day counters. Pure: no Redis.

The dashboard, the JSON API and `ivr report` all show this one summary, so a number
means the same everywhere. It reads only counters (never scans calls), so 30 days cost
30 small hashes whatever the number of calls.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from ivr.message import N_, Message
from ivr.vocabulary import (
    BOGOTA,
    Attempt,
    Count,
    Outcome,
    counter,
    group_counters,
    hour_counter,
    split_dial,
    split_dial_hour,
)

MAX_RANGE_DAYS = 366
HEALTH_MIN_ATTEMPTS = 3  # fewer transfer attempts than this: "too few calls", never green


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


def previous_period(days: list[str]) -> list[str]:
    """The days of the same length just before `days`: what the headline compares with."""
    first = date.fromisoformat(days[0])
    return [(first - timedelta(days=len(days) - i)).isoformat() for i in range(len(days))]


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


class HealthState(StrEnum):
    """A hotline's transfers over the range: too many not connected, fine, or too few
    attempts to say (grey, never green)."""

    FAILING = "failing"
    OK = "ok"
    TOO_FEW = "too_few"


@dataclass
class Health:
    hotline: str
    attempts: int
    not_connected: int
    state: HealthState
    last_test: LineTestSeen | None = None

    @property
    def flagged(self) -> bool:
        return self.state is HealthState.FAILING

    @property
    def not_connected_share(self) -> float:
        return self.not_connected / self.attempts if self.attempts else 0.0


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
    inputs: dict[str, int] = field(default_factory=dict)  # Input -> calls
    # hotline -> not-connected attempts in each Bogotá hour of day (0-23), and all attempts
    not_connected_by_hour: dict[str, list[int]] = field(default_factory=dict)
    attempts_by_hour: dict[str, list[int]] = field(default_factory=dict)
    previous: dict | None = None  # the previous period's headline (same length, just before)

    @property
    def reached(self) -> int:
        return (self.outcomes.get(Outcome.TRANSFERRED, 0)
                + self.outcomes.get(Outcome.EMERGENCY_TRANSFERRED, 0))

    def share(self, n: int) -> float:
        """n as a percentage of the calls (0 when there were none)."""
        return 100.0 * n / self.calls if self.calls else 0.0

    @property
    def attempts(self) -> int:
        return sum(h.attempts for h in self.health)

    @property
    def not_connected(self) -> int:
        return sum(h.not_connected for h in self.health)

    def headline(self) -> dict[str, float | int | None]:
        """The headline figures. A call reached a person or never did (one still going
        is neither yet); a transfer attempt was connected or not connected."""
        never_connected = self.outcomes.get(Outcome.TRANSFER_FAILED, 0)
        abandoned = self.outcomes.get(Outcome.ABANDONED_IN_MENU, 0)
        in_progress = self.outcomes.get(Outcome.IN_PROGRESS, 0)
        never = max(0, self.calls - self.reached - in_progress)
        attempts, not_connected = self.attempts, self.not_connected
        return {
            "calls": self.calls,
            "reached_person": self.reached,
            "reached_person_pct": round(self.share(self.reached), 1),
            "never_reached_person": never,
            "never_reached_person_pct": round(self.share(never), 1),
            # ... of which: transfers tried, none connected
            "transfers_never_connected": never_connected,
            "transfers_never_connected_pct": round(self.share(never_connected), 1),
            "attempts": attempts,
            "attempts_not_connected": not_connected,
            "attempts_not_connected_pct": round(
                100.0 * not_connected / attempts if attempts else 0.0, 1),
            "hung_up_in_menu": abandoned,
            "hung_up_in_menu_pct": round(self.share(abandoned), 1),
            "in_progress": in_progress,
            "emergency_transfers": self.emergency_transfers,
            # Told to hang up and dial 123, they did: what we asked, not a failure.
            "emergency_hung_up_to_dial": self.outcomes.get(Outcome.EMERGENCY_HUNG_UP_TO_DIAL, 0),
            "median_seconds_to_transfer": self.median_seconds_to_transfer,
            "repeat_calls": self.repeat_calls,
        }

    def changes(self) -> dict[str, float | int]:
        """Each headline figure minus the previous period's (percentages in points)."""
        if self.previous is None:
            return {}
        return {k: round(v - self.previous[k], 1) if isinstance(v, float) else v - self.previous[k]
                for k, v in self.headline().items()
                if isinstance(v, int | float) and isinstance(self.previous.get(k), int | float)}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["health"] = [{**asdict(h), "not_connected_share": round(h.not_connected_share, 3)}
                         for h in self.health]
        out["funnel"] = [{"question": q, "reached": r, "hung_up": h} for q, r, h in self.funnel]
        out["change_from_previous"] = self.changes()
        return {"from": self.days[0], "to": self.days[-1], **self.headline(), **{
            k: v for k, v in out.items() if k not in ("days", "calls")}}


def summarize(
    days: list[str],
    counters: dict[str, dict[str, int]],
    unique_callers: int | None,
    questions: list[str],
    health_threshold: float = 0.3,
    health_min_attempts: int = HEALTH_MIN_ATTEMPTS,
    line_tests: dict[str, dict] | None = None,
) -> Summary:
    """Add up the days' counters. `questions` orders the funnel (menu order);
    `line_tests` is each hotline's latest test call (Store.line_tests). A hotline's health
    is over the same days as every other figure."""
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
        health=_health(by_name.get(Count.DIAL, {}), health_threshold, health_min_attempts,
                       line_tests or {}),
        inputs=by_name.get(Count.INPUT, {}),
        **_dials_by_hour(by_name.get(Count.DIAL_HOUR, {})),
    )


def _dials_by_hour(counts: dict[str, int]) -> dict[str, dict[str, list[int]]]:
    """Each hotline's attempts and not-connected attempts by Bogotá hour of day."""
    attempts: dict[str, list[int]] = {}
    not_connected: dict[str, list[int]] = {}
    for value, n in counts.items():
        hotline, hour, attempt = split_dial_hour(value)
        attempts.setdefault(hotline, [0] * 24)[hour] += n
        not_connected.setdefault(hotline, [0] * 24)
        if attempt == Attempt.NOT_CONNECTED:
            not_connected[hotline][hour] += n
    return {"attempts_by_hour": dict(sorted(attempts.items())),
            "not_connected_by_hour": dict(sorted(not_connected.items()))}


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


def _health(dials: dict[str, int], threshold: float, min_attempts: int,
            line_tests: dict[str, dict]) -> list[Health]:
    """Each hotline's transfer attempts ("<hotline>:<status>" -> n), failing when more
    than `threshold` of them were not connected, too few to say under `min_attempts`;
    with its latest test call (a hotline only tested has a row too)."""
    attempts: Counter = Counter()
    not_connected: Counter = Counter()
    for value, n in dials.items():
        hotline, status = split_dial(value)
        attempts[hotline] += n
        if Attempt.of(status) is Attempt.NOT_CONNECTED:
            not_connected[hotline] += n
    tests = {h: LineTestSeen(**{k: str(t.get(k, "")) for k in ("target", "result", "error", "at")})
             for h, t in line_tests.items()}
    rows = [Health(h, attempts[h], not_connected[h],
                   _state(attempts[h], not_connected[h], threshold, min_attempts), tests.get(h))
            for h in sorted(set(attempts) | set(tests))]
    order = list(HealthState)
    return sorted(rows, key=lambda h: (order.index(h.state), h.hotline))


def _state(attempts: int, not_connected: int, threshold: float, min_attempts: int) -> HealthState:
    if attempts < min_attempts:
        return HealthState.TOO_FEW
    return HealthState.FAILING if not_connected / attempts > threshold else HealthState.OK

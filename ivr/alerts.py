"""When to tell staff that a line fails, and what to tell them. Pure: no Redis, no Flask.

Three conditions, checked every minute by the worker (workers.alerts):
- a line's transfers over the last 60 minutes: more than `failed_share` of them not
  connected, with at least `min_attempts` of them (a rate of one call means nothing);
- a line's last `failed_in_a_row` transfers all not connected (a quiet line that broke);
- no call at all for `silence_minutes` inside `silence_hours`: our own number may be down.

An incident opens once and stays open until it recovers: for a line, when a transfer to it
connects again and no condition holds; for the silence, when a call arrives. So a line
that fails for an hour raises one alert and one recovery, never one a minute. The texts
never carry a caller's number: only lines, counts and times.

The weekly digest, mailed to the staff who ask for it (workers.alerts.send_digests), is
pushed the same way: last week (Monday to Sunday in Bogotá) against the week before
(ivr.summary.previous_period, as the dashboard's arrows), the lines that failed, and a
link to that week's dashboard; figures and lines only, never a caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from urllib.parse import urlencode

from ivr import opening_hours
from ivr.menu import OpeningHours
from ivr.message import N_, Message
from ivr.summary import Summary
from ivr.vocabulary import ANSWERED, BOGOTA

WINDOW_SECONDS = 3600  # "the last 60 minutes"
SILENCE = "silence"  # the incident key of "no call arrives"


class Problem(StrEnum):
    FAILING = "failing"  # too many not connected in the window
    FAILED_IN_A_ROW = "failed_in_a_row"  # the last M all not connected
    SILENT = "silent"  # no call arrives


@dataclass(frozen=True)
class Rules:
    failed_share: float = 0.5
    min_attempts: int = 5
    failed_in_a_row: int = 3
    silence_minutes: int = 120  # 0: never alert on silence
    silence_hours: OpeningHours = OpeningHours()  # no windows: all day, every day

    @classmethod
    def from_settings(cls, config) -> Rules:
        """The RUTA_ALERT_* settings; ValueError names the one that cannot be read."""
        windows, errors = opening_hours.read(config["RUTA_ALERT_SILENCE_HOURS"])
        if errors:
            raise ValueError(f"RUTA_ALERT_SILENCE_HOURS: {errors[0]}")
        return cls(
            failed_share=float(config["RUTA_ALERT_FAILED_SHARE"]),
            min_attempts=max(1, int(config["RUTA_ALERT_MIN_ATTEMPTS"])),
            failed_in_a_row=max(1, int(config["RUTA_ALERT_FAILED_IN_A_ROW"])),
            silence_minutes=int(config["RUTA_ALERT_SILENCE_MINUTES"]),
            silence_hours=OpeningHours(tuple(
                (day, w.start, w.end) for w in windows for day in w.days())),
        )


@dataclass(frozen=True)
class Attempt:
    """One transfer to a line: when it ended and how (a DialStatus value)."""

    at: float
    status: str

    @property
    def connected(self) -> bool:
        return self.status in ANSWERED


@dataclass(frozen=True)
class Finding:
    """A condition that holds now: which incident (`key`), and the figures behind it."""

    key: str
    problem: Problem
    hotline: str = ""
    attempts: int = 0  # transfers counted (the window's, or the last M)
    failed: int = 0  # of them, not connected
    minutes: int = 0  # SILENT: minutes since the last call

    def to_json(self) -> dict:
        return {**self.__dict__, "problem": str(self.problem)}

    @classmethod
    def from_json(cls, stored: dict) -> Finding:
        return cls(**{**stored, "problem": Problem(stored["problem"])})


def line_key(hotline: str) -> str:
    return f"line:{hotline}"


def line_findings(rules: Rules, attempts: dict[str, list[Attempt]],
                  now: float) -> dict[str, Finding]:
    """The lines failing now, by incident key. `attempts`: each line's, in any order."""
    found = {}
    for hotline, tried in attempts.items():
        tried = sorted(tried, key=lambda a: a.at)
        recent = [a for a in tried if a.at >= now - WINDOW_SECONDS]
        failed = sum(not a.connected for a in recent)
        last = tried[-rules.failed_in_a_row:]
        if len(recent) >= rules.min_attempts and failed > rules.failed_share * len(recent):
            found[line_key(hotline)] = Finding(line_key(hotline), Problem.FAILING, hotline,
                                               len(recent), failed)
        elif len(last) == rules.failed_in_a_row and not any(a.connected for a in last):
            found[line_key(hotline)] = Finding(line_key(hotline), Problem.FAILED_IN_A_ROW,
                                               hotline, len(last), len(last))
    return found


def silence_finding(rules: Rules, last_call: float, now: float) -> Finding | None:
    """No call since `last_call` for longer than the rules allow, inside their hours."""
    if rules.silence_minutes <= 0 or not rules.silence_hours.is_open(
            datetime.fromtimestamp(now, BOGOTA)):
        return None
    minutes = int((now - last_call) // 60)
    if minutes < rules.silence_minutes:
        return None
    return Finding(SILENCE, Problem.SILENT, minutes=minutes)


def recovered(key: str, since: float, attempts: dict[str, list[Attempt]],
              last_call: float) -> bool:
    """Has the incident opened at `since` recovered? A line: a transfer to it connected
    after `since`; the silence: a call started after it. (Still failing: not asked.)"""
    if key == SILENCE:
        return last_call > since
    hotline = key.removeprefix("line:")
    return any(a.connected and a.at > since for a in attempts.get(hotline, ()))


# --- what staff read (in the catalogue: the worker sends it in Spanish) -------------------

RAISED = {
    Problem.FAILING: N_("Alert: %(line)s did not connect %(failed)s of its "
                        "%(attempts)s transfers in the last 60 minutes."),
    Problem.FAILED_IN_A_ROW: N_("Alert: %(line)s did not connect its last "
                                "%(attempts)s transfers."),
    Problem.SILENT: N_("Alert: no call has arrived for %(minutes)s minutes. Check that the "
                       "hotline number answers."),
}
CLEARED = {
    Problem.FAILING: N_("Recovered: %(line)s connects calls again."),
    Problem.FAILED_IN_A_ROW: N_("Recovered: %(line)s connects calls again."),
    Problem.SILENT: N_("Recovered: calls arrive again."),
}


def message(finding: Finding, line_name, cleared: bool = False) -> Message:
    """The alert (or its recovery) for staff; `line_name` is the line's name to show."""
    template = (CLEARED if cleared else RAISED)[finding.problem]
    return Message(template, {"line": line_name, "failed": finding.failed,
                              "attempts": finding.attempts, "minutes": finding.minutes})


# --- the weekly digest ---------------------------------------------------------------------
SEND_WEEKDAY, SEND_HOUR = 0, 7  # Mondays from 07:00 in Bogotá: before the week's work

# The headline figures the digest gives, in this order: (figure, its words, a percentage
# figure shown beside it). Changes are in calls, or in points for percentages.
FIGURES = [
    ("calls", N_("Calls: %(value)s"), None),
    ("reached_person", N_("Reached a person: %(value)s (%(pct)s%%)"), "reached_person_pct"),
    ("never_reached_person", N_("Never reached a person: %(value)s (%(pct)s%%)"),
     "never_reached_person_pct"),
    ("hung_up_in_menu", N_("Hung up in the menu: %(value)s (%(pct)s%%)"), "hung_up_in_menu_pct"),
    ("attempts_not_connected", N_("Transfer attempts not connected: %(value)s of "
                                  "%(attempts)s (%(pct)s%%)"), "attempts_not_connected_pct"),
    ("emergency_transfers", N_("Emergency transfers: %(value)s"), None),
    ("repeat_calls", N_("Repeat calls: %(value)s"), None),
]


def last_week(now: datetime) -> list[str]:
    """The Bogotá days, Monday to Sunday, of the week before the one `now` is in."""
    today = now.astimezone(BOGOTA).date()
    monday = today - timedelta(days=today.weekday() + 7)
    return [(monday + timedelta(days=i)).isoformat() for i in range(7)]


def is_due(now: datetime) -> bool:
    """Is it time to send last week's digest (Monday 07:00 Bogotá, or later that week)?"""
    local = now.astimezone(BOGOTA)
    return (local.weekday(), local.hour) >= (SEND_WEEKDAY, SEND_HOUR)


def dashboard_link(base_url: str, days: list[str]) -> str:
    """The dashboard of those days (its own ?from=&to=), or "" with no public URL."""
    if not base_url:
        return ""
    return f"{base_url.rstrip('/')}/reports/?{urlencode({'from': days[0], 'to': days[-1]})}"


def digest_subject(days: list[str]) -> Message:
    first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    return Message(N_("Ruta: the week from %(first)s to %(last)s"),
                   {"first": first.isoformat(), "last": last.isoformat()})


def _signed(n: float | int) -> str:
    return f"+{n}" if n > 0 else str(n)


def digest_body(summary: Summary, line_name, link: str) -> list[Message]:
    """The digest's lines. `line_name(hotline)` is the line's name (InLanguages or str);
    `summary` must carry the previous week (reports.build_summary does)."""
    head, changes = summary.headline(), summary.changes()
    out = [digest_subject(summary.days), Message("")]
    for figure, words, pct in FIGURES:
        line = Message(words, {"value": head[figure], "pct": head.get(pct, ""),
                               "attempts": head["attempts"]})
        if figure in changes:
            change = changes[figure]
            line = Message(N_("%(figure)s; the week before: %(change)s"), {
                "figure": line, "change": _signed(change) if not pct else Message(
                    N_("%(change)s (%(points)s points)"),
                    {"change": _signed(change), "points": _signed(changes[pct])})})
        out.append(line)
    out.append(Message(""))
    failing = [h for h in summary.health if h.flagged]
    if failing:
        out.append(Message(N_("Lines failing (more transfer attempts not connected than "
                              "allowed):")))
        out += [Message(N_("- %(line)s: %(failed)s of %(attempts)s transfer attempts not "
                           "connected"), {"line": line_name(h.hotline), "failed": h.not_connected,
                                          "attempts": h.attempts}) for h in failing]
    else:
        out.append(Message(N_("No line was failing.")))
    if link:
        out += [Message(""), Message(N_("The week on the dashboard: %(link)s"), {"link": link})]
    return out

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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ivr import opening_hours
from ivr.menu import OpeningHours
from ivr.message import N_, Message
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

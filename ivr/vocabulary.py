"""The words of a call, owned here and spelled nowhere else. Pure: no Flask, Redis, Twilio.

- what can happen in a call: `EventKind`, and `Event`, one step of one call as the web
  app hands it to the drain;
- how a transfer and a call end: Twilio's statuses (`DialStatus`, `CallStatus`) and ours;
- what a call comes to: `Outcome`, and the categories the code itself gives (`Category`);
- the day counters supervisors read: their names, built and parsed here (`Count`);
- the time zone that decides a call's day and hour (`BOGOTA`).

`tests/test_vocabulary.py` fails when an event kind or a counter name is written as a
string anywhere else in ivr/, workers/, tests/ or bench/ (one test pins the stored names).
A new event kind is a member of `EventKind`, then what folds it
(`ivr.call_record.CallRecord.apply`) and what counts it (`ivr.tally`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

import orjson

# --- time: counters are per day, and the day is Bogotá's ---------------------------------

BOGOTA = ZoneInfo("America/Bogota")


def day_of(unix: float) -> str:
    """The Bogotá calendar day of a moment: counters are per day in America/Bogota."""
    return datetime.fromtimestamp(unix, BOGOTA).strftime("%Y-%m-%d")


def hour_of(unix: float) -> int:
    return datetime.fromtimestamp(unix, BOGOTA).hour


def hour_of_day(unix: float) -> str:
    """The Bogotá hour of a moment, "YYYY-MM-DDTHH": the health strip's buckets."""
    return datetime.fromtimestamp(unix, BOGOTA).strftime("%Y-%m-%dT%H")


# --- what happens in a call ---------------------------------------------------------------

ANONYMOUS = "anonymous"  # the caller of a withheld number (ivr.events.caller_pseudonym)


class EventKind(StrEnum):
    """What can happen in a call; after each, the `data` ivr.flow and ivr.voice give it."""

    CALL_STARTED = "call_started"  # lang, caller (a pseudonym, or "anonymous")
    MENU_ANSWERED = "menu_answered"  # node, input (dtmf, speech), option, attempt, category?
    NO_INPUT = "no_input"  # node, attempt; gave_up and category on the last attempt
    INVALID_INPUT = "invalid_input"  # node, attempt, input; gave_up, category as above
    LANGUAGE_CHANGED = "language_changed"  # lang
    TRANSFER_STARTED = "transfer_started"  # hotline, target
    TRANSFER_ENDED = "transfer_ended"  # hotline, target, status (a DialStatus), duration
    NUMBERS_GIVEN = "numbers_given"  # hotlines (the numbers read to the caller)
    STEP_LIMIT = "step_limit"  # step
    CALL_ENDED = "call_ended"  # status (a CallStatus), duration: the status callback
    FOLLOW_UP = "follow_up"  # a short question instead of the whole menu again


@dataclass(frozen=True)
class Event:
    """One step of one call, as the web app saw it. `id` is stable for a Twilio request.

    `kind` is kept as written (an EventKind value, or a kind this version does not know,
    which the record and the counters ignore)."""

    id: str
    call: str
    kind: str
    step: int
    at: float  # unix seconds when the webhook ran
    started: float  # unix seconds when the call started: decides the call's day
    lang: str = ""
    asked: str = ""  # the question being asked after this step, "" if none
    data: dict = field(default_factory=dict)

    def to_json(self) -> str:
        """Compact JSON, UTF-8 unescaped: what json.dumps(separators=(",", ":"),
        ensure_ascii=False) writes (but null for a NaN, which is not JSON), by orjson at a
        tenth of its cost (each webhook sends one or two events before it answers)."""
        try:
            return orjson.dumps(self.__dict__).decode()
        except TypeError:  # what orjson refuses (a lone surrogate, an int past 64 bits)
            return json.dumps(self.__dict__, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        """Parse a stored event; raises ValueError with the reason if it is not one."""
        try:
            obj = json.loads(raw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"not JSON: {e}") from e
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in ("id", "call", "kind", "step", "at", "started") if k not in obj]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        try:
            return cls(
                id=str(obj["id"]), call=str(obj["call"]), kind=str(obj["kind"]),
                step=int(obj["step"]), at=float(obj["at"]), started=float(obj["started"]),
                lang=str(obj.get("lang", "")), asked=str(obj.get("asked", "")),
                data=dict(obj.get("data") or {}),
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"bad field: {e}") from e


# --- how transfers and calls end ------------------------------------------------------------


class DialStatus(StrEnum):
    """How a transfer (<Dial>) ended: Twilio's DialCallStatus, and our DROPPED."""

    COMPLETED = "completed"
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"
    # Ours: Twilio said completed, but the line hung up before the hotline's
    # `min_answered` seconds: a machine or a line's own menu (ivr.flow.dial_result).
    DROPPED = "dropped"


ANSWERED = frozenset({DialStatus.COMPLETED, DialStatus.ANSWERED})  # someone took the call
TWILIO_DIAL_STATUSES = frozenset(DialStatus) - {DialStatus.DROPPED}
# The dials that reached nobody, in the order the hotlines chart stacks them.
FAILED_DIALS = (DialStatus.DROPPED, DialStatus.BUSY, DialStatus.NO_ANSWER, DialStatus.FAILED,
                DialStatus.CANCELED)


class Attempt(StrEnum):
    """What one transfer attempt came to, the one meaning of "failed" everywhere: a person
    took it (an ANSWERED status), or not (busy, no answer, failed, canceled, dropped)."""

    CONNECTED = "connected"
    NOT_CONNECTED = "not_connected"

    @classmethod
    def of(cls, status: str) -> Attempt:
        return cls.CONNECTED if status in ANSWERED else cls.NOT_CONNECTED


class CallStatus(StrEnum):
    """Twilio's CallStatus of a whole call (the status callback, the Calls API)."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"


# The statuses that end a call (the others, like ringing, are not events).
FINAL_CALL_STATUSES = frozenset({CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.FAILED,
                                 CallStatus.NO_ANSWER, CallStatus.CANCELED})


# --- what a call comes to -------------------------------------------------------------------


class Outcome(StrEnum):
    IN_PROGRESS = "in_progress"
    TRANSFERRED = "transferred"
    EMERGENCY_TRANSFERRED = "emergency_transferred"
    TRANSFER_FAILED = "transfer_failed"
    ABANDONED_IN_MENU = "abandoned_in_menu"
    # Someone in danger was told to hang up and dial 123 and did, before any line we
    # rang answered: what we asked of them, not a failure.
    EMERGENCY_HUNG_UP_TO_DIAL = "emergency_hung_up_to_dial"


class Input(StrEnum):
    """How a caller answered the menu: keypad, speech, both in one call, or never."""

    KEYPAD = "keypad"
    SPEECH = "speech"
    BOTH = "both"
    NONE = "none"


# The `input` an answer's event data names (ivr.flow), as the caller's way of answering.
INPUT_OF_EVENT = {"dtmf": Input.KEYPAD, "speech": Input.SPEECH}


class Category(StrEnum):
    """The categories the code gives a call; the menu's options add their own ("child",
    "labour"...: config/menu.toml)."""

    EMERGENCY = "emergency"  # danger at any question: wins over every other answer
    UNCLEAR = "unclear"  # nothing understood by the last attempt: the default line
    NONE = "none"  # the call ended before any answer


class Facet(StrEnum):
    """What the dashboard filters calls on (its URL parameters): each a value of the
    whole call record (ivr.call_record.CallRecord.facets), kept for each day as calls per
    combination of values (ivr.filters) and as an index of the day's calls by value
    (ivr.store)."""

    HOTLINE = "hotline"  # a line the call was transferred to (a call may have several)
    OUTCOME = "outcome"
    CATEGORY = "category"
    LANG = "lang"
    INPUT = "input"  # an Input
    HANGUP = "hangup"  # the question where the caller hung up (abandoned in the menu)
    HEARD = "heard"  # a question the caller heard (the funnel's steps)
    REACHED = "reached"  # REACHED_YES or REACHED_NO: the call reached a person, or never did
    # The lines where one of its transfer attempts was connected, or not connected (then
    # also ANY_HOTLINE): the calls behind the attempts' figures.
    CONNECTED = "connected"
    NOT_CONNECTED = "not_connected"


REACHED_YES, REACHED_NO = "yes", "no"
ANY_HOTLINE = "any"


# --- the day counters ------------------------------------------------------------------------


class Count(StrEnum):
    """The names in a day's counters ({ruta}:day:<YYYY-MM-DD>): a name alone, or
    `<name>:<value>`. From OUTCOME to HOUR, a call counts once, under the value its
    whole record gives now (ivr.tally moves it when that changes); the others count
    events."""

    CALLS = "calls"  # calls started
    IDENTIFIED = "identified"  # ... with a caller ID: repeat calls = this - distinct callers
    TRANSFER = "transfer"  # transfer:<hotline>: transfers started
    # dial:<hotline>:<DialStatus>: transfers ended (also in the hour hashes, for the
    # health strip)
    DIAL = "dial"
    ASKED = "asked"  # asked:<node>: calls that reached the question
    NO_INPUT = "no_input"  # questions met with silence
    INVALID_INPUT = "invalid_input"  # answers not understood
    OUTCOME = "outcome"  # outcome:<Outcome>
    CATEGORY = "category"  # category:<category>
    LANG = "lang"  # lang:<language>
    HANGUP = "hangup"  # hangup:<node>: abandoned in the menu at that question
    # to_transfer:<seconds>: from the start to the first transfer, whole seconds up to
    # ivr.call_record.MAX_COUNTED_WAIT (a histogram: the dashboard reads its median)
    TO_TRANSFER = "to_transfer"
    INPUT = "input"  # input:<Input>: how the caller answered
    HOUR = "hour"  # hour:<HH>: ended calls that started in that Bogotá hour
    # dial_hour:<hotline>:<HH>:<Attempt>: transfers ended in that Bogotá hour of day (the
    # failures heat map)
    DIAL_HOUR = "dial_hour"


# The event kinds counted by their own name.
EVENT_COUNTS = {EventKind.NO_INPUT: Count.NO_INPUT, EventKind.INVALID_INPUT: Count.INVALID_INPUT}


def counter(name: Count, *values: object) -> str:
    """A counter's full name: counter(Count.DIAL, "labour", "busy") -> "dial:labour:busy"."""
    return ":".join((name, *map(str, values))) if values else str(name)


def hour_counter(hour: int) -> str:
    """hour:<HH>, the hour two digits: "hour:07"."""
    return counter(Count.HOUR, f"{hour:02d}")


def dial_hour_counter(hotline: str, hour: int, attempt: Attempt) -> str:
    """dial_hour:<hotline>:<HH>:<Attempt>: "dial_hour:labour:07:not_connected"."""
    return counter(Count.DIAL_HOUR, hotline, f"{hour:02d}", attempt)


def split_dial_hour(value: str) -> tuple[str, int, str]:
    """(hotline, hour, attempt) of a dial_hour counter's value: "labour:07:connected"."""
    hotline, hour, attempt = value.rsplit(":", 2)
    return hotline, int(hour), attempt


def split_counter(full: str) -> tuple[str, str]:
    """(name, value): "dial:labour:busy" -> ("dial", "labour:busy"); "calls" -> ("calls", "")."""
    name, _, value = full.partition(":")
    return name, value


def split_dial(value: str) -> tuple[str, str]:
    """(hotline, status) of a dial counter's value: "labour:busy" -> ("labour", "busy")."""
    hotline, _, status = value.partition(":")
    return hotline, status


def group_counters(totals: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """The counters that have a value, by name, zeros left out:
    {"dial:labour:busy": 2, "calls": 5} -> {"dial": {"labour:busy": 2}}."""
    grouped: dict[str, dict[str, int]] = {}
    for full, n in totals.items():
        name, value = split_counter(full)
        if value and n:
            grouped.setdefault(name, {})[value] = n
    return grouped

"""One call's timeline: its events as kept for it, and the steps a supervisor reads. Pure.

The drain keeps each event a call's record takes, once, in a short form (`line`): the
call's id and start are the record's, so they are left out. `steps(record, lines)` puts
them back in order (events may arrive late or out of order) and reads each as a `Step`:
when it happened, the seconds since the call started, and only the facts a supervisor
needs. Never the words a caller said (the events do not carry them, and `Step` has no
field for them), never a phone number (the caller is the record's pseudonym).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ivr.call_record import CallRecord
from ivr.vocabulary import Event, EventKind


def line(event: Event) -> str:
    """An event as its call's timeline keeps it: [id suffix, kind, step, at, lang, asked,
    data]; about half the bytes of the event's JSON."""
    suffix = event.id.removeprefix(f"{event.call}:")
    return json.dumps([suffix, event.kind, event.step, event.at, event.lang, event.asked,
                       event.data], separators=(",", ":"), ensure_ascii=False)


def event_of(record: CallRecord, stored: str) -> Event:
    """The event a `line` keeps, back with its call's id and start."""
    suffix, kind, step, at, lang, asked, data = json.loads(stored)
    return Event(id=f"{record.call}:{suffix}", call=record.call, kind=kind, step=step, at=at,
                 started=record.started, lang=lang, asked=asked, data=data)


@dataclass(frozen=True)
class Step:
    """One event as the timeline shows it. Empty fields do not apply to its kind."""

    kind: str  # an EventKind value
    at: float  # unix seconds
    since_start: int  # whole seconds since the call started
    question: str = ""  # the question answered, or not answered
    heard: str = ""  # the question the caller heard next ("" if none)
    input: str = ""  # "dtmf" (a key) or "speech" (the caller spoke)
    key: str = ""  # the key pressed, or the option the words matched
    certainty: float | None = None  # how surely the words matched the option (0 to 1)
    attempt: int = 0
    gave_up: bool = False  # the last attempt: the call goes to the default line
    follow_up: str = ""  # "danger" or "either": the short question asked instead
    options: tuple[str, ...] = ()  # the keys the follow-up offered
    lang: str = ""  # the language chosen
    hotline: str = ""
    target: int = 0  # which of the hotline's numbers (0: its first)
    ring_seconds: int | None = None  # about: from the transfer's start to its end, less talk
    result: str = ""  # a DialStatus for a transfer, a CallStatus for the call's end
    talk_seconds: int = 0
    hotlines: tuple[str, ...] = ()  # the lines whose numbers were read to the caller
    call_seconds: int = 0  # at the call's end: how long it lasted


def _order(event: Event) -> tuple:
    """Time, then the webhook's step, then the event's place in its webhook ("3.1")."""
    place = event.id.rsplit(".", 1)[-1]
    return event.at, event.step, int(place) if place.isdigit() else 0


def steps(record: CallRecord, lines: list[str]) -> list[Step]:
    """The call's events in order, each read as a Step (kinds this version does not know
    are left out)."""
    events = sorted((event_of(record, raw) for raw in lines), key=_order)
    start = record.started or (events[0].at if events else 0.0)
    out: list[Step] = []
    ringing_since: dict[tuple[str, int], float] = {}  # (hotline, target) -> started
    for event in events:
        try:
            kind = EventKind(event.kind)
        except ValueError:
            continue
        data = event.data
        base = {"kind": kind.value, "at": event.at,
                "since_start": max(0, int(event.at - start)), "heard": event.asked}
        hotline, target = str(data.get("hotline", "")), int(data.get("target") or 0)
        match kind:
            case EventKind.MENU_ANSWERED | EventKind.NO_INPUT | EventKind.INVALID_INPUT:
                score = data.get("score")
                step = Step(**base, question=str(data.get("node", "")),
                            input=str(data.get("input", "")),
                            key=str(data.get("option", "")) if kind == EventKind.MENU_ANSWERED
                            else "",
                            certainty=float(score) if score is not None else None,
                            attempt=int(data.get("attempt") or 0),
                            gave_up=bool(data.get("gave_up")))
            case EventKind.FOLLOW_UP:
                step = Step(**base, question=str(data.get("node", "")),
                            follow_up=str(data.get("ask", "")),
                            options=tuple(map(str, data.get("options") or ())))
            case EventKind.CALL_STARTED | EventKind.LANGUAGE_CHANGED:
                step = Step(**base, lang=str(data.get("lang", "")))
            case EventKind.TRANSFER_STARTED:
                ringing_since[hotline, target] = event.at
                step = Step(**base, hotline=hotline, target=target)
            case EventKind.TRANSFER_ENDED:
                talk = int(data.get("duration") or 0)
                began = ringing_since.pop((hotline, target), None)
                step = Step(**base, hotline=hotline, target=target,
                            result=str(data.get("status", "")), talk_seconds=talk,
                            ring_seconds=None if began is None
                            else max(0, round(event.at - began - talk)))
            case EventKind.NUMBERS_GIVEN:
                step = Step(**base, hotlines=tuple(map(str, data.get("hotlines") or ())))
            case EventKind.CALL_ENDED:
                step = Step(**base, result=str(data.get("status", "")),
                            call_seconds=int(data.get("duration") or 0))
            case _:  # STEP_LIMIT: the call reached the step limit
                step = Step(**base)
        out.append(step)
    return out

"""A call's record and its outcome, folded from its events in any order. Pure: no Redis.

Twilio's callbacks and our spool replays can deliver a call's events late, twice, or out
of order. So a record keeps, for each fact, the step it came from, and everything a
supervisor counts (outcome, category, language, where the caller hung up...) is derived
from the whole record each time. The tally (ivr.tally) counts a derived value when it
first appears and moves the count when it changes, so the day's counters converge on the
truth once every event has arrived, whatever their order, and a repeated event changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ivr.vocabulary import (
    ANSWERED,
    ANY_HOTLINE,
    INPUT_OF_EVENT,
    REACHED_NO,
    REACHED_YES,
    Attempt,
    Category,
    Count,
    DialStatus,
    Event,
    EventKind,
    Facet,
    Input,
    Outcome,
    day_of,
    hour_of,
)

MAX_COUNTED_WAIT = 600  # seconds to transfer above this are counted as this


@dataclass
class CallRecord:
    """What we know of one call; stored as a Redis hash of strings (see `to_fields`)."""

    call: str
    day: str = ""
    started: float = 0.0
    first_seen: float = 0.0
    last_seen: float = 0.0
    caller: str = ""  # keyed pseudonym, never the number
    lang: str = ""
    lang_step: int = -1
    asked: str = ""  # the last question asked, and the step that asked it
    asked_step: int = -1
    category: str = ""  # from the earliest answer that has one
    category_step: int = 1 << 30
    path: dict[int, str] = field(default_factory=dict)  # step -> "node:key"
    nodes: set[str] = field(default_factory=set)  # questions the caller reached
    transfers: dict[int, str] = field(default_factory=dict)  # step -> hotline
    dials: dict[int, str] = field(default_factory=dict)  # step -> "hotline:status"
    dial_hours: dict[int, str] = field(default_factory=dict)  # step -> Bogotá hour it ended
    first_transfer_at: float = 0.0
    talk_seconds: int = 0
    status: str = ""  # the call's final CallStatus, once the status callback came
    duration: int = 0
    no_input: int = 0
    invalid_input: int = 0
    inputs: set[str] = field(default_factory=set)  # how the caller answered: Input values
    seen: set[str] = field(default_factory=set)  # events applied (id without the CallSid)
    counted: dict[str, str] = field(default_factory=dict)  # dimension -> value counted

    # --- folding events -----------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Fold one event in; False (and no change) if it was applied before."""
        seen_as = event.id.removeprefix(f"{event.call}:")  # the call's own ids, kept short
        if seen_as in self.seen:
            return False
        self.seen.add(seen_as)
        # The call's start (and so its day) comes from the webhooks' events, which all
        # carry the exact start; the status callback's is an estimate: never use it.
        if not self.day and event.kind != EventKind.CALL_ENDED:
            self.day, self.started = day_of(event.started), event.started
        self.first_seen = min(self.first_seen or event.at, event.at)
        self.last_seen = max(self.last_seen, event.at)
        if event.lang and event.step >= self.lang_step:
            self.lang, self.lang_step = event.lang, event.step
        if event.asked:
            self.nodes.add(event.asked)
            if event.step >= self.asked_step:
                self.asked, self.asked_step = event.asked, event.step
        data = event.data
        category = str(data.get("category") or "")
        # The earliest answer says what the call is about, but an emergency at any
        # question makes it an emergency call (whatever order the events arrive in).
        if category:
            emergency, was_emergency = (category == Category.EMERGENCY,
                                        self.category == Category.EMERGENCY)
            if (emergency and not was_emergency) or (
                    emergency == was_emergency and event.step < self.category_step):
                self.category, self.category_step = category, event.step
        match event.kind:
            case EventKind.CALL_STARTED:
                self.caller = str(data.get("caller", ""))
            case EventKind.MENU_ANSWERED:
                self.path[event.step] = f"{data.get('node', '')}:{data.get('option', '')}"
                self._answered_by(data)
            case EventKind.NO_INPUT:
                self.no_input += 1
            case EventKind.INVALID_INPUT:
                self.invalid_input += 1
                self._answered_by(data)  # not understood, but the caller did answer
            case EventKind.TRANSFER_STARTED:
                self.transfers[event.step] = str(data.get("hotline", ""))
                if not self.first_transfer_at or event.at < self.first_transfer_at:
                    self.first_transfer_at = event.at
            case EventKind.TRANSFER_ENDED:
                self.dials[event.step] = f"{data.get('hotline', '')}:{data.get('status', '')}"
                self.dial_hours[event.step] = f"{hour_of(event.at):02d}"
                self.talk_seconds += int(data.get("duration") or 0)
            case EventKind.CALL_ENDED:
                self.status = str(data.get("status", ""))
                self.duration = int(data.get("duration") or 0)
        return True

    def _answered_by(self, data: dict) -> None:
        way = INPUT_OF_EVENT.get(str(data.get("input", "")))
        if way:
            self.inputs.add(way.value)

    def copy(self) -> CallRecord:
        """A copy sharing no set or dict with this record: folding into it leaves this one."""
        return replace(self, path=dict(self.path), nodes=set(self.nodes),
                       transfers=dict(self.transfers), dials=dict(self.dials),
                       dial_hours=dict(self.dial_hours),
                       inputs=set(self.inputs), seen=set(self.seen),
                       counted=dict(self.counted))

    # --- what supervisors count -------------------------------------------------------

    @property
    def outcome(self) -> Outcome:
        if any(d.rsplit(":", 1)[1] in ANSWERED for d in self.dials.values()):
            if self.category == Category.EMERGENCY:
                return Outcome.EMERGENCY_TRANSFERRED
            return Outcome.TRANSFERRED
        if not self.status:
            return Outcome.IN_PROGRESS
        if self.category == Category.EMERGENCY and self._hung_up_while_connecting():
            return Outcome.EMERGENCY_HUNG_UP_TO_DIAL
        if self.transfers:
            return Outcome.TRANSFER_FAILED
        return Outcome.ABANDONED_IN_MENU

    def _hung_up_while_connecting(self) -> bool:
        """The caller ended the call while we were still connecting them: no transfer, or
        the last one started was not over (or canceled, as a hang-up while ringing may
        be reported). A caller who heard every line fail did not leave to dial 123."""
        if not self.transfers:
            return True
        last_dial = max(self.dials, default=0)
        return (max(self.transfers) > last_dial
                or self.dials[last_dial].rsplit(":", 1)[1] == DialStatus.CANCELED)

    @property
    def reached_person(self) -> bool:
        """A person took one of its transfers: "reached a person", else it never did."""
        return self.outcome in (Outcome.TRANSFERRED, Outcome.EMERGENCY_TRANSFERRED)

    @property
    def attempts(self) -> int:
        """Transfer attempts ended (connected or not)."""
        return len(self.dials)

    @property
    def connected(self) -> int:
        """Transfer attempts a person took."""
        return sum(Attempt.of(d.rsplit(":", 1)[1]) is Attempt.CONNECTED
                   for d in self.dials.values())

    @property
    def input(self) -> str:
        """How the caller answered (an Input value); "" while a call that never answered
        is still going (it may yet)."""
        if len(self.inputs) > 1:
            return Input.BOTH.value
        if self.inputs:
            return next(iter(self.inputs))
        return Input.NONE.value if self.status else ""

    def dimensions(self) -> dict[str, str]:
        """The values this call adds to the day's counters, by counter (empty: not
        counted)."""
        outcome = self.outcome
        seconds = ""  # a histogram by the second: the dashboard reads the median from it
        if self.first_transfer_at and self.started:
            seconds = str(min(max(0, int(self.first_transfer_at - self.started)),
                              MAX_COUNTED_WAIT))
        return {
            Count.OUTCOME: outcome.value,
            Count.CATEGORY: self.category or (Category.NONE.value if self.status else ""),
            Count.LANG: self.lang,
            Count.HANGUP: self.asked if outcome is Outcome.ABANDONED_IN_MENU else "",
            Count.TO_TRANSFER: seconds,
            Count.INPUT: self.input,
            # Once ended, as every filter sees calls: an hour's bar counts the calls its
            # link lists (a call still going has only its start).
            Count.HOUR: f"{hour_of(self.started):02d}" if self.status and self.started else "",
        }

    def facets(self, dims: dict[str, str] | None = None) -> dict[Facet, tuple[str, ...]]:
        """The values the dashboard's filters match this call on; a call transferred to
        two lines has both, a call with no value for a facet has none (). `dims`: its
        dimensions(), when the caller has them already."""
        dims = dims or self.dimensions()
        one = {Facet.OUTCOME: dims[Count.OUTCOME], Facet.CATEGORY: dims[Count.CATEGORY],
               Facet.LANG: dims[Count.LANG], Facet.HANGUP: dims[Count.HANGUP],
               Facet.INPUT: dims[Count.INPUT]}
        lines: dict[Attempt, set[str]] = {Attempt.CONNECTED: set(), Attempt.NOT_CONNECTED: set()}
        for dial in self.dials.values():
            hotline, status = dial.rsplit(":", 1)
            lines[Attempt.of(status)].add(hotline)
        missed = sorted(lines[Attempt.NOT_CONNECTED])
        # A call still going has not "never reached" anyone yet.
        reached = (REACHED_YES,) if self.reached_person else (REACHED_NO,) if self.status else ()
        return {Facet.HOTLINE: tuple(sorted(set(self.transfers.values()) - {""})),
                **{facet: (value,) if value else () for facet, value in one.items()},
                Facet.HEARD: tuple(sorted(self.nodes)),
                Facet.REACHED: reached,
                Facet.CONNECTED: tuple(sorted(lines[Attempt.CONNECTED])),
                Facet.NOT_CONNECTED: (*missed, ANY_HOTLINE) if missed else ()}

    # --- storage as a flat hash -------------------------------------------------------

    def to_fields(self) -> dict[str, str]:
        fields = {
            "day": self.day, "started": f"{self.started:.3f}",
            "first_seen": f"{self.first_seen:.3f}", "last_seen": f"{self.last_seen:.3f}",
            "caller": self.caller, "lang": self.lang, "lang_step": str(self.lang_step),
            "asked": self.asked, "asked_step": str(self.asked_step),
            "category": self.category, "category_step": str(self.category_step),
            "path": _steps_to_str(self.path), "nodes": ",".join(sorted(self.nodes)),
            "transfers": _steps_to_str(self.transfers), "dials": _steps_to_str(self.dials),
            "dial_hours": _steps_to_str(self.dial_hours),
            "first_transfer_at": f"{self.first_transfer_at:.3f}",
            "talk_seconds": str(self.talk_seconds), "status": self.status,
            "duration": str(self.duration), "no_input": str(self.no_input),
            "invalid_input": str(self.invalid_input), "outcome": self.outcome.value,
            "inputs": ",".join(sorted(self.inputs)), "seen": ",".join(sorted(self.seen)),
        }
        fields |= {f"c:{dim}": value for dim, value in self.counted.items()}
        return fields

    @classmethod
    def from_fields(cls, call: str, fields: dict[str, str]) -> CallRecord:
        if not fields:
            return cls(call=call)
        get = fields.get
        return cls(
            call=call, day=get("day", ""), started=float(get("started", 0)),
            first_seen=float(get("first_seen", 0)), last_seen=float(get("last_seen", 0)),
            caller=get("caller", ""), lang=get("lang", ""),
            lang_step=int(get("lang_step", -1)), asked=get("asked", ""),
            asked_step=int(get("asked_step", -1)), category=get("category", ""),
            category_step=int(get("category_step", 1 << 30)),
            path=_str_to_steps(get("path", "")),
            nodes=set(filter(None, get("nodes", "").split(","))),
            transfers=_str_to_steps(get("transfers", "")),
            dials=_str_to_steps(get("dials", "")),
            dial_hours=_str_to_steps(get("dial_hours", "")),
            first_transfer_at=float(get("first_transfer_at", 0)),
            talk_seconds=int(get("talk_seconds", 0)), status=get("status", ""),
            duration=int(get("duration", 0)), no_input=int(get("no_input", 0)),
            invalid_input=int(get("invalid_input", 0)),
            inputs=set(filter(None, get("inputs", "").split(","))),
            seen=set(filter(None, get("seen", "").split(","))),
            counted={k[2:]: v for k, v in fields.items() if k.startswith("c:")},
        )

    # --- readable views ---------------------------------------------------------------

    def path_text(self) -> str:
        """The answers in order: "welcome:4 > report:1"."""
        return " > ".join(self.path[s] for s in sorted(self.path))

    def hotlines_text(self) -> str:
        """Transfers and how they ended: "labour:busy > national:completed"."""
        ended = " > ".join(self.dials[s] for s in sorted(self.dials))
        ringing = [h for s, h in sorted(self.transfers.items()) if s > max(self.dials, default=0)]
        return " > ".join(filter(None, [ended, *(f"{h}:ringing" for h in ringing)]))

    @property
    def seconds_to_transfer(self) -> int | None:
        if not (self.first_transfer_at and self.started):
            return None
        return max(0, int(self.first_transfer_at - self.started))


def _steps_to_str(steps: dict[int, str]) -> str:
    return "|".join(f"{s}={v}" for s, v in sorted(steps.items()))


def _str_to_steps(raw: str) -> dict[int, str]:
    out = {}
    for part in filter(None, raw.split("|")):
        step, _, value = part.partition("=")
        out[int(step)] = value
    return out

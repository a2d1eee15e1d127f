"""The menu engine: (menu, call state, what the caller did) -> the next Step.

Pure functions over the dataclasses of `ivr.menu`: no Flask, no Twilio, no Redis, so
every path of a call can be unit-tested in microseconds. The call's position travels in
a `CallState` that the web layer writes into the next webhook URL (signed by Twilio), so
no session store is needed. Every function also returns the events that happened, for
the web layer to emit.

Rules that keep a caller from being left in silence or cut off:
- silence or an answer we do not understand re-asks the question, up to
  `menu.max_attempts` times, then transfers to the default (national) line;
- 0 or an emergency word at any question: first what to do right now from the caller's
  own phone (hang up and dial 123), then the offer to stay while we connect them to the
  emergency line (or, when it has no dial target, the default line);
- a busy, unanswered or failed target is followed by the hotline's next target, then its
  fallback hotline, then the default line; a closed hotline, or one with no target
  Twilio can dial, is skipped after telling the caller its number;
- a `completed` transfer shorter than the hotline's `min_answered` seconds was a machine
  or a line's own menu that hung up: the next target is tried;
- a call rings hotlines for at most `menu.ring_budget` seconds in all, then hears the
  numbers;
- when every line failed, the caller hears the numbers to call, twice and slowly, can
  press a key to hear them again, and is told goodbye before the call hangs up;
- a call has a step limit, so no loop goes on forever.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum

from ivr import speech
from ivr.menu import Hotline, Menu, Node, numbers_of, spoken_number, word_count
from ivr.speech import Decision
from ivr.vocabulary import ANSWERED, TWILIO_DIAL_STATUSES, Category, DialStatus, EventKind

MIN_RING = 10  # seconds: a ring shorter than this is not worth starting
SCREEN_TIMEOUT = 5  # seconds the answering side has to press a key after the whisper


class Phase(StrEnum):
    """Which question a webhook answers; also the last part of its URL."""

    MENU = "menu"
    DIAL = "dial"
    NUMBERS = "numbers"
    SCREEN = "screen"  # the whisper to the answering side of a screened transfer


@dataclass(frozen=True)
class FlowEvent:
    """Something that happened in a call, before the web layer adds the CallSid."""

    kind: EventKind
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CallState:
    """Where a call is; written into the next webhook URL, so keep it small."""

    lang: str
    phase: Phase = Phase.MENU
    node: str = ""  # the question being asked (menu phase)
    attempt: int = 0  # answers at this question that led nowhere
    hotline: str = ""  # the hotline being dialed (dial phase)
    target: int = 0  # index into that hotline's dial list
    tried: tuple[str, ...] = ()  # hotlines given up on, in order
    step: int = 0  # webhook steps so far in this call
    started: int = 0  # unix time the call started: every event of a call gets its day
    category: str = ""  # what the call is about (the screening whisper says it)
    rung: int = 0  # seconds hotlines have rung so far in this call (the ring budget)
    ask: str = ""  # how the question is put: "" whole, "d" danger? ("d1": a no is 1),
    # "e12" 1 or 2?, "k" only the keys

    def changed(self, **changes) -> CallState:
        """This state with `changes`, as dataclasses.replace makes it at a fifth of its
        cost (a webhook makes several): no field has a check or a factory to run."""
        if not changes.keys() <= _STATE_FIELDS:
            raise TypeError(f"not a CallState field: {sorted(changes.keys() - _STATE_FIELDS)}")
        state = object.__new__(CallState)
        state.__dict__.update(self.__dict__, **changes)
        return state

    def to_params(self) -> dict[str, str]:
        """Query-string parameters; empty fields are left out."""
        params = {"l": self.lang, "s": str(self.step), "t0": str(self.started)}
        if self.phase is Phase.MENU:
            params |= {"n": self.node, "a": str(self.attempt)}
        else:
            params |= {"h": self.hotline, "t": str(self.target)}
        if self.tried:
            params["tr"] = ".".join(self.tried)
        if self.category:
            params["c"] = self.category
        if self.rung:
            params["r"] = str(self.rung)
        if self.ask and self.phase is Phase.MENU:
            params["q"] = self.ask
        return params

    @classmethod
    def from_params(cls, phase: Phase, params, menu: Menu) -> CallState:
        """Rebuild a state from a webhook's query string; unknown values fall back safely.

        The URL is signed by Twilio, but the menu may have been changed since it was
        written, so a node or hotline that no longer exists restarts at a safe place.
        """
        get = params.get
        lang, node, hotline = get("l", ""), get("n", ""), get("h", "")
        tried = get("tr")
        state = object.__new__(cls)  # as changed(): a frozen dataclass's __init__ costs more
        state.__dict__.update(
            lang=lang if lang in menu.languages else menu.languages[0],
            phase=phase,
            node=node if node and node in menu.nodes else menu.start,
            attempt=_small_int(get("a")),
            hotline=hotline if hotline in menu.hotlines else "",
            target=_small_int(get("t")),
            tried=tuple(h for h in tried.split(".") if h in menu.hotlines) if tried else (),
            step=_small_int(get("s")),
            started=_unix_seconds(get("t0")),
            category=_word(get("c")),
            rung=_small_int(get("r")),
            ask=_follow_up(get("q")),
        )
        return state


_STATE_FIELDS = frozenset(f.name for f in fields(CallState))
# How our URLs write a state's values (anything else falls back): compiled once, as a
# webhook reads several.
SMALL_INT, UNIX_SECONDS = re.compile(r"\d{1,4}"), re.compile(r"[0-9]{1,10}")
FOLLOW_UP, WORD = re.compile(r"d\d?|k|e\d\d"), re.compile(r"[a-z_]{1,24}")


def _small_int(raw) -> int:
    return int(raw) if raw and SMALL_INT.fullmatch(str(raw)) else 0


def _follow_up(raw) -> str:
    """A follow-up as our URLs write it ("d", "d1", "k", "e12"); anything else: the whole
    menu."""
    return raw if raw and FOLLOW_UP.fullmatch(str(raw)) else ""


def _word(raw) -> str:
    """A category id as our URLs write it; anything else is no category."""
    return raw if raw and WORD.fullmatch(str(raw)) else ""


def _unix_seconds(raw) -> int:
    """The call's start as our URLs write it; anything else (too long for a float, "²"
    that passes str.isdigit() but not int()) is 0, and events then use the time now."""
    return int(raw) if raw and UNIX_SECONDS.fullmatch(str(raw)) else 0


@dataclass(frozen=True)
class Answer:
    """What the caller did at a question, as Twilio reports it."""

    digits: str = ""
    speech: str = ""
    confidence: float | None = None

    @property
    def silent(self) -> bool:
        return not self.digits.strip() and not self.speech.strip()


# --- what the caller hears next: rendered to TwiML by ivr.twiml -----------------------


@dataclass(frozen=True)
class Say:
    """Words for the caller: read by the voice, or, with `recording` (a recording's file
    name, ivr.recordings.Recording.name), played; `text` is then its transcript."""

    text: str
    voice: str
    language: str
    slow: bool = False  # numbers a caller should write down
    recording: str = ""


@dataclass(frozen=True)
class Pause:
    seconds: int = 1


@dataclass(frozen=True)
class Ask:
    """Say the prompts while listening; the answer (or silence) is posted to `resume`.

    With `goodbye` set, silence ends the call with those words instead of coming back.
    """

    prompts: tuple[Say | Pause, ...]
    resume: CallState
    speech_language: str
    hints: tuple[str, ...] = ()
    timeout: int = 6
    speech: bool = True
    goodbye: tuple[Say, ...] = ()
    # A question made once per menu version keeps its TwiML here (ivr.twiml fills it, by
    # our number and audio URL), shared by every call that hears it; None: made for one.
    rendered: dict | None = field(default=None, compare=False, repr=False)

    def resuming(self, resume: CallState) -> Ask:
        """This question, answered back to `resume` (a copy that shares its prompts and
        TwiML; cheaper than dataclasses.replace, and a webhook asks one each time)."""
        ask = object.__new__(Ask)
        ask.__dict__.update(self.__dict__, resume=resume)
        return ask


@dataclass(frozen=True)
class Transfer:
    """Say the prompts, then ring one target; the dial status is posted to `resume`.

    `ring_seconds` is how long the target should really ring (the renderer subtracts the
    padding Twilio adds). The hotline sees our number, not the caller's (who may be on a
    watched phone), unless the hotline is marked `show_caller` (the emergency line may
    need to call back). With `screen` set, the answering side first hears a whisper
    fetched from that state's URL and must press a key before the caller is connected.
    """

    prompts: tuple[Say, ...]
    target: str
    resume: CallState
    ring_seconds: int
    show_caller: bool = False
    screen: CallState | None = None
    # As Ask's: a transfer made once per menu version keeps its TwiML here.
    rendered: dict | None = field(default=None, compare=False, repr=False)

    def resuming(self, resume: CallState) -> Transfer:
        """This transfer, reporting back to `resume` (and its whisper fetched for it): a
        copy that shares its prompts and TwiML."""
        transfer = object.__new__(Transfer)
        screen = resume.changed(phase=Phase.SCREEN) if self.screen is not None else None
        transfer.__dict__.update(self.__dict__, resume=resume, screen=screen)
        return transfer


@dataclass(frozen=True)
class Screen:
    """The whisper to a screened hotline: a key within `timeout` seconds connects the
    caller (the key is posted to `accept`); silence hangs up on that side only."""

    prompts: tuple[Say, ...]
    accept: CallState
    timeout: int = SCREEN_TIMEOUT


@dataclass(frozen=True)
class Bridge:
    """The answering side accepted: its TwiML ends, and Twilio connects the two calls."""


@dataclass(frozen=True)
class Hangup:
    prompts: tuple[Say, ...] = ()


Step = Ask | Transfer | Hangup | Screen | Bridge


@dataclass(frozen=True)
class Result:
    step: Step
    events: tuple[FlowEvent, ...] = ()


# --- the webhooks' entry points -------------------------------------------------------


def start(menu: Menu, now: datetime, caller: str = "") -> Result:
    """A new call: greet the caller and ask the first question in the first language.
    `caller` is already a pseudonym: the engine never sees a phone number."""
    lang = menu.languages[0]
    state = CallState(lang=lang, node=menu.start, step=1, started=int(now.timestamp()))
    started = FlowEvent(EventKind.CALL_STARTED, {"lang": lang, "caller": caller})
    return _ask(menu, state, greet=True, events=(started,))


def answer(menu: Menu, state: CallState, given: Answer, now: datetime) -> Result:
    """The caller answered (or did not answer) the question `state.node`."""
    state = state.changed(step=state.step + 1)
    if state.step > menu.step_limit and given.digits.strip() != menu.emergency_key:
        return _wind_up(menu, state)
    node = menu.nodes[state.node]
    if given.silent and state.ask.startswith("d"):
        # Silence after "is someone in danger right now?" from a caller who showed a sign
        # of it: they may not be able to speak. The safe path whatever the reason.
        silent = FlowEvent(EventKind.NO_INPUT, {
            "node": node.id, "attempt": state.attempt + 1, "asked": "d",
            "category": Category.EMERGENCY})
        return _emergency(menu, state.changed(ask=""), now, events=(silent,))
    if given.silent:
        return _retry(menu, state, node, "no_input", EventKind.NO_INPUT, now)
    decision, kind = _understand(menu, state, node, given)
    if decision.action == "no" and state.ask.startswith("d"):
        if state.ask[1:] and node.option(state.ask[1:]):  # nobody in danger: the line
            decision = Decision("route", state.ask[1:], score=1.0, method="keyword")
        else:  # nobody in danger, and no line yet: only the keys, short
            return _ask(menu, state.changed(ask="k"))
    # Unsure: one short question. The danger question may come at any follow-up (safety
    # first), but only once; the either/or only instead of the whole question.
    if (decision.action == "ask_danger" and not state.ask.startswith("d")) or (
            decision.action == "either" and not state.ask):
        return _follow(menu, state, node, decision)
    key = decision.key if decision.action in ("route", "danger") else None
    if key is None:
        return _retry(menu, state, node, "invalid", EventKind.INVALID_INPUT, now, given)
    option = node.option(key)
    category = (Category.EMERGENCY if key == menu.emergency_key
                else option.category if option else "")
    answered = FlowEvent(EventKind.MENU_ANSWERED, {
        "node": node.id, "input": kind, "option": key, "attempt": state.attempt,
        **({"category": category} if category else {}),
        **({"asked": state.ask[:1]} if state.ask else {}),
        **({"decided": decision.method, "score": decision.score} if kind == "speech" else {}),
    })
    state = state.changed(ask="")
    if key == menu.repeat_key:
        return _ask(menu, state, events=(answered,))
    if key == menu.emergency_key:
        return _emergency(menu, state, now, events=(answered,))
    other = menu.language_at_key(state.lang, key) if node.offers_language else None
    if other:
        changed = FlowEvent(EventKind.LANGUAGE_CHANGED, {"lang": other})
        return _ask(menu, state.changed(lang=other, attempt=0), events=(answered, changed))
    state = state.changed(category=category or state.category)
    if option.next:
        return _ask(menu, state.changed(node=option.next, attempt=0), events=(answered,))
    return _transfer(menu, state, option.hotline, now, events=(answered,))


def dial_result(
    menu: Menu, state: CallState, status: str, duration: int, now: datetime
) -> Result:
    """Twilio reports how the <Dial> to `state.hotline`'s target ended.

    `completed` only says the far end answered: a machine or a line's own menu that
    answers and hangs up comes back `completed` too, with a short `duration`. Below the
    hotline's `min_answered` seconds (plus the whisper, on a screened line) the transfer
    counts as dropped and the next target is tried. `state.rung` is the ringing before
    this dial: an unanswered or dropped dial spends the whole ring it was given.
    """
    # The counters keep Twilio's statuses only (and our DROPPED, below).
    status = status if status in TWILIO_DIAL_STATUSES else DialStatus.FAILED
    hotline = menu.hotlines.get(state.hotline)
    if status in ANSWERED and hotline and duration < answered_threshold(menu, hotline):
        status = DialStatus.DROPPED
    rung = state.rung
    if status in (DialStatus.NO_ANSWER, DialStatus.DROPPED):
        rung += ring_for(menu, state.rung)
    state = state.changed(step=state.step + 1, rung=rung)
    ended = FlowEvent(EventKind.TRANSFER_ENDED, {
        "hotline": state.hotline, "target": state.target, "status": status,
        "duration": duration,
    })
    if status in ANSWERED:
        return Result(Hangup(_says(menu, state.lang, "goodbye")), (ended,))
    if state.step > menu.step_limit:
        result = _wind_up(menu, state)
        return Result(result.step, (ended, *result.events))
    if not state.hotline:  # the line was removed from the directory mid-call
        return _transfer(menu, state, menu.default_hotline, now, events=(ended,))
    return _transfer(menu, state, state.hotline, now, target=state.target + 1, events=(ended,))


def numbers_answer(menu: Menu, state: CallState, given: Answer, now: datetime) -> Result:
    """After the numbers were read: 0 tries the emergency line again, another key reads
    the numbers again, silence ends the call."""
    state = state.changed(step=state.step + 1)
    if given.silent or state.step > menu.step_limit:
        return Result(Hangup(_says(menu, state.lang, "goodbye")))
    if given.digits.strip() == menu.emergency_key:
        answered = FlowEvent(EventKind.MENU_ANSWERED, {
            "node": "numbers", "input": "dtmf", "option": menu.emergency_key,
            "category": Category.EMERGENCY,
        })
        return _emergency(menu, state.changed(tried=(), rung=0), now, events=(answered,))
    return _numbers(menu, state, intro=False)


def screen(menu: Menu, state: CallState, given: Answer) -> Result:
    """A screened hotline answered: whisper what the call is about and in which language
    (never who is calling), in the first language, the hotlines'; a key connects."""
    if given.digits.strip():
        return Result(Bridge())
    return Result(Screen(whisper(menu, state.category, state.lang),
                         state.changed(phase=Phase.SCREEN)))


def whisper(menu: Menu, category: str, caller_lang: str) -> tuple[Say, ...]:
    """What a screened hotline hears before it accepts the call."""
    lang = menu.languages[0]
    texts = menu.prompts[lang]
    about = texts.get(f"about_{category}") or texts.get("about_unclear", "")
    language = texts.get(f"language_{caller_lang}", caller_lang)
    return _says(menu, lang, "screen_whisper", about=about, language=language)


def answered_threshold(menu: Menu, hotline: Hotline) -> int:
    """Seconds a `completed` transfer must last to count as answered by a person.

    On a screened line the whisper and its key window come first. Twilio does not
    document whether `DialCallDuration` counts them, nor which status a refused whisper
    gives, so the threshold counts them in: a whisper nobody accepted is never taken
    for a connected call (the caller is offered the next target instead).
    """
    if not hotline.screen:
        return hotline.min_answered
    words = sum(word_count(s.text) for s in whisper(menu, Category.UNCLEAR, menu.languages[0]))
    return hotline.min_answered + SCREEN_TIMEOUT + math.ceil(words * 60 / menu.words_per_minute)


def ring_for(menu: Menu, rung: int) -> int:
    """Seconds the next target may ring, given `rung` seconds already spent."""
    return max(0, min(menu.ring_timeout, menu.ring_budget - rung))


# --- the pieces -----------------------------------------------------------------------


def _understand(menu: Menu, state: CallState, node: Node, given: Answer):
    """(a speech.Decision, "dtmf" or "speech") for the caller's answer."""
    valid = {o.key for o in node.options} | {menu.emergency_key, menu.repeat_key}
    if node.offers_language and not state.ask:
        valid |= {menu.voices[lang].key for lang in menu.offered_languages(state.lang)}
    digits = given.digits.strip()
    if digits:
        return Decision("route" if digits in valid else "none", digits, method="digit"), "dtmf"
    lang = state.lang
    if state.ask.startswith("d"):  # "¿Alguien está en peligro ahora mismo? Diga sí o 0."
        if speech.best_match(given.speech, [("yes", menu.yes_words.get(lang, ()))], lang):
            return Decision("danger", menu.emergency_key, score=1.0, method="keyword"), "speech"
        if speech.tokens(given.speech) in (["no"], ["nope"], ["no", "no"]):
            return Decision("no"), "speech"
    decision = menu.matchers[node.id, lang].decide(given.speech)
    # Danger wins whatever Twilio's Confidence says (it may be low, missing or wrong: a
    # frightened whisper is recognised with low confidence). Other answers keep the
    # threshold; a missing Confidence is no reason to doubt them.
    low = given.confidence is not None and given.confidence < menu.min_confidence
    if low and decision.action not in ("danger", "ask_danger"):
        return Decision("none", score=decision.score), "speech"
    if decision.action == "route" and decision.key not in valid:
        return Decision("none", score=decision.score), "speech"
    if state.ask.startswith("e") and decision.action == "either":  # still between the two
        return Decision("none", score=decision.score), "speech"
    return decision, "speech"


def _follow(menu: Menu, state: CallState, node: Node, decision: Decision) -> Result:
    """Unsure: one short question instead of the whole menu again. Is someone in danger
    now (a yes or 0 goes to the emergency path)? Or which of the two closest options?"""
    ask = ("d" + (decision.key or "") if decision.action == "ask_danger"
           else "e" + "".join(decision.keys))
    event = FlowEvent(EventKind.FOLLOW_UP, {
        "node": node.id, "ask": "danger" if ask[0] == "d" else "either",
        "options": [menu.emergency_key, *ask[1:]] if ask[0] == "d" else list(decision.keys),
        "attempt": state.attempt, "decided": decision.method, "score": decision.score,
    })
    return _ask(menu, state.changed(ask=ask, attempt=state.attempt + 1), events=(event,))


def _retry(menu, state, node, prompt_key, kind, now, given: Answer | None = None) -> Result:
    """Ask again after silence or a wrong answer; after too many, go to the default line."""
    attempt = state.attempt + 1
    detail = {"node": node.id, "attempt": attempt}
    if given is not None:
        detail["input"] = "dtmf" if given.digits.strip() else "speech"
    if attempt >= menu.max_attempts:
        event = FlowEvent(kind, {**detail, "gave_up": True, "category": Category.UNCLEAR})
        state = state.changed(category=state.category or Category.UNCLEAR)
        lead = _says(menu, state.lang, prompt_key)
        return _transfer(menu, state, menu.default_hotline, now, lead=lead, events=(event,))
    event = FlowEvent(kind, detail)
    # The whole question once more, then only its keys: never the whole menu three times.
    ask = "k" if attempt >= menu.max_attempts - 1 else ""
    return _ask(menu, state.changed(attempt=attempt, ask=ask), lead=prompt_key,
                events=(event,))


def _ask(menu, state, *, greet=False, lead="", events=()) -> Result:
    """Ask `state.node` (after the prompt `lead`, e.g. "no_input"). The question is the
    same for every call of a menu version but for where it resumes, so it is made once
    per version (Menu.questions) and each call gets it with its own position."""
    key = (state.node, state.lang, state.ask, greet, lead)
    question = menu.questions.get(key)
    if question is None:
        question = menu.questions[key] = _question(menu, state, greet, lead)
    return Result(question.resuming(state.changed(phase=Phase.MENU, hotline="", target=0)),
                  tuple(events))


def _question(menu, state, greet: bool, lead: str) -> Ask:
    node = menu.nodes[state.node]
    lang = state.lang
    prompts = list(_says(menu, lang, lead) if lead else ())
    if state.ask:
        prompts += _follow_up_prompts(menu, node, state)
    else:
        if greet and node.greeting:
            prompts += _says(menu, lang, node.greeting)
        offer = tuple(say for other in menu.offered_languages(lang)
                      for say in _says(menu, other, "language_offer")
                      ) if node.offers_language else ()
        # The caller of the first language hears the offer before the menu (they may not
        # understand it); one who already switched hears the way back after it.
        first = lang == menu.languages[0]
        question = _says(menu, lang, node.prompt)
        prompts += [*offer, *question] if first else [*question, *offer]
    return Ask(
        prompts=tuple(prompts),
        resume=state.changed(phase=Phase.MENU, hotline="", target=0),
        speech_language=menu.voices[lang].speech_language,
        hints=hints(menu, node, lang, state.ask),
        timeout=menu.gather_timeout,
        speech=menu.voices[lang].listens,  # a language no recogniser knows: keypad only
        rendered={},
    )


def _follow_up_prompts(menu: Menu, node: Node, state: CallState) -> tuple[Say, ...]:
    """The short forms of a question: danger?, one of two options?, or only the keys."""
    lang = state.lang
    if state.ask.startswith("d"):
        return _says(menu, lang, "danger_question")
    if state.ask.startswith("e"):
        first, second = (node.option(k) for k in state.ask[1:3])
        if first and second:
            return _says(menu, lang, "either_or", first=first.labels.get(lang, first.key),
                         first_key=first.key, second=second.labels.get(lang, second.key),
                         second_key=second.key)
    says = _says(menu, lang, "keys_only", key=menu.emergency_key)
    for o in node.options:
        says += _says(menu, lang, "keys_item", label=o.labels.get(lang, o.key), key=o.key)
    return says


def hints(menu: Menu, node: Node, lang: str, ask: str = "") -> tuple[str, ...]:
    """Twilio's speech hints for a question (ivr.menu.speech_hints, made with the menu:
    a webhook only looks them up)."""
    return menu.hints.get((node.id, lang, ask.startswith("d")), ())


def _emergency(menu: Menu, state: CallState, now: datetime, events=()) -> Result:
    """Someone is in danger: the very first words say what to do from the caller's own
    phone (Twilio cannot dial 123), then we offer to stay on the line while we connect
    them to the emergency line, or along its chain when it has no target of its own."""
    emergency = menu.hotlines[menu.emergency_hotline]
    advice = _says(menu, state.lang, "emergency_advice", number=spoken_number(emergency.say))
    state = state.changed(category=Category.EMERGENCY)
    return _transfer(menu, state, emergency.id, now, lead=advice, events=events,
                     announce="emergency_stay", told=(emergency.id,))


def _transfer(menu, state, hotline_id, now, *, target=0, lead=(), events=(),
              announce="transfer", told=()) -> Result:
    """Ring the first reachable target along the hotline's fallback chain.

    A hotline that is closed, has no target Twilio can dial, or whose targets all
    failed, is given up on: the caller is told its number (unless `told` already did),
    and the chain moves to its fallback, then to the default hotline. Past the call's
    ring budget nothing more rings: the caller hears the numbers.

    Where it goes is the same for every call of a menu version that starts it from the
    same place while the same lines are open, so it is worked out once for each
    (Menu.transfers) and each call gets it with its own position: a line that closes
    at the hour is skipped from that minute on.
    """
    lead, ring = tuple(lead), ring_for(menu, state.rung)
    key = (state.lang, hotline_id, target, lead, announce, told, state.tried, ring,
           menu.open_now(now))
    route = menu.transfers.get(key)
    if route is None:
        if len(menu.transfers) >= TRANSFERS_KEPT:
            menu.transfers.clear()  # odd URLs' worth of tried lines: start again
        route = menu.transfers[key] = _route(menu, state, hotline_id, now, target, lead,
                                             announce, told, ring)
    if isinstance(route, Transfer):
        at = route.resume
        resume = state.changed(phase=Phase.DIAL, hotline=at.hotline, target=at.target,
                               tried=at.tried)
        started = FlowEvent(EventKind.TRANSFER_STARTED, {
            "hotline": at.hotline, "target": at.target,
        })
        return Result(route.resuming(resume), (*events, started))
    tried, prompts = route  # nothing rings: the numbers of the lines given up on
    result = _numbers(menu, state.changed(phase=Phase.NUMBERS, tried=tried), lead=prompts)
    return Result(result.step, (*events, *result.events))


TRANSFERS_KEPT = 4096  # a menu version's transfers: far more than its paths


def _route(menu, state, hotline_id, now, target, lead, announce, told, ring):
    """Where `_transfer` goes: the Transfer (its TwiML kept with it), or, when nothing
    can ring, (the lines given up on, what the caller hears before their numbers)."""
    lang, prompts, tried = state.lang, list(lead), state.tried
    hotline: Hotline | None = menu.hotlines[hotline_id]
    while hotline is not None and ring >= MIN_RING:
        if hotline.hours.is_open(now) and target < len(hotline.dial):
            if target == 0:
                prompts += _says(menu, lang, announce, hotline=hotline.names[lang])
            else:  # the same hotline's next target: say why the ringing starts again
                prompts += _says(menu, lang, "still_trying")
            resume = state.changed(phase=Phase.DIAL, hotline=hotline.id, target=target,
                                   tried=tried)
            screen = resume.changed(phase=Phase.SCREEN) if hotline.screen else None
            return Transfer(tuple(prompts), hotline.dial[target], resume, ring,
                            hotline.show_caller, screen, rendered={})
        tried = (*tried, hotline.id)
        given_up, hotline = hotline, _next_in_chain(menu, hotline, tried)
        # A line with targets was closed or failed; one without any is called directly.
        key = "unreachable" if given_up.dial else "direct_only"
        target = 0
        if hotline is not None and given_up.id not in told:  # at the end: the numbers
            prompts += _says(menu, lang, key, hotline=given_up.names[lang],
                             number=spoken_number(given_up.say), slow=True)
    if hotline is not None:  # the ring budget is spent: its number is read with the rest
        tried = (*tried, hotline.id)
    return tried, tuple(prompts)


def _next_in_chain(menu: Menu, hotline: Hotline, tried) -> Hotline | None:
    for hid in (hotline.fallback, menu.default_hotline):
        if hid and hid not in tried:
            return menu.hotlines[hid]
    return None


def _numbers(menu, state, *, lead=(), intro=True) -> Result:
    """Read the numbers of the lines we tried, twice and slowly; a key reads them again."""
    lang = state.lang
    listed = list(dict.fromkeys([*state.tried, menu.default_hotline]))
    items = []
    for hid in listed:
        h = menu.hotlines[hid]
        items += _says(menu, lang, "numbers_item", hotline=h.names[lang],
                       number=spoken_number(h.say), slow=True)
    prompts = [*lead, *(_says(menu, lang, "numbers_intro") if intro else ())]
    prompts += [*items, Pause(1), *items, *_says(menu, lang, "numbers_again")]
    step = Ask(
        prompts=tuple(prompts),
        resume=state.changed(phase=Phase.NUMBERS),
        speech_language=menu.voices[lang].speech_language,
        timeout=menu.gather_timeout,
        speech=False,
        goodbye=_says(menu, lang, "goodbye"),
    )
    event = FlowEvent(EventKind.NUMBERS_GIVEN, {"hotlines": listed})
    return Result(step, (event,) if intro else ())


def _wind_up(menu: Menu, state: CallState) -> Result:
    """The step limit is reached: give the default line's number and end the call."""
    h = menu.hotlines[menu.default_hotline]
    prompts = _says(menu, state.lang, "numbers_item", hotline=h.names[state.lang],
                    number=spoken_number(h.say), slow=True)
    prompts += _says(menu, state.lang, "goodbye")
    return Result(Hangup(prompts), (FlowEvent(EventKind.STEP_LIMIT, {"step": state.step}),))


def out_of_service(menu: Menu) -> Hangup:
    """What Twilio's Fallback URL plays when our webhooks cannot answer at all: a static
    TwiML that can ask nothing, so in every language the default line's number, read
    slowly twice, then goodbye."""
    h = menu.hotlines[menu.default_hotline]
    prompts: list[Say | Pause] = []
    for lang in menu.languages:
        says = _says(menu, lang, "out_of_service", slow=True, hotline=h.names[lang],
                     number=spoken_number(h.say))
        prompts += [*says, Pause(1), *says, Pause(1)]
    return Hangup((*prompts, *_says(menu, menu.languages[0], "goodbye")))


def _says(menu: Menu, lang: str, prompt: str, /, slow: bool = False,
          **values: str) -> tuple[Say, ...]:
    """The prompt as the caller hears it: read by the language's voice, or its recording
    played, then the numbers it holds read (by the first language's voice for a language
    that has none: digits are understood across the border). Made once per menu version:
    the values come from the menu too."""
    key = (lang, prompt, slow, *values.items())
    said = menu.spoken.get(key)
    if said is None:
        said = menu.spoken[key] = _say(menu, lang, prompt, slow, values)
    return said


def _say(menu: Menu, lang: str, prompt: str, slow: bool, values: dict) -> tuple[Say, ...]:
    voice = menu.voices[lang]
    text = menu.text(lang, prompt, **values)
    recording = menu.recording(lang, prompt)
    if recording is None:
        return (Say(text, voice.voice, voice.say_language, slow),)
    numbers = numbers_of(menu, lang, prompt, **values)
    reader = voice if voice.speaks else menu.voices[menu.languages[0]]
    return (Say(text, voice.voice, voice.say_language, slow, recording.name),
            *((Say(numbers, reader.voice, reader.say_language, True),) if numbers else ()))


def question(menu: Menu, lang: str, node: str, greet: bool = False) -> Ask:
    """The step that asks `node` in `lang` (the admin page shows its TwiML)."""
    return _ask(menu, CallState(lang=lang, node=node, step=1), greet=greet).step


def numbers_instead(menu: Menu, result: Result) -> Result:
    """The same moment without its transfer: the caller hears the numbers to call.
    For a transfer that cannot be placed safely (no caller ID of ours to show)."""
    step = result.step
    tried = (*step.resume.tried, step.resume.hotline)
    events = tuple(e for e in result.events if e.kind is not EventKind.TRANSFER_STARTED)
    numbers = _numbers(menu, step.resume.changed(phase=Phase.NUMBERS, tried=tried),
                       lead=list(step.prompts[:-1]))  # all but "Le comunico con ..."
    return Result(numbers.step, (*events, *numbers.events))


def safe_transfer(menu: Menu, lang: str) -> Result:
    """Last resort when something broke: straight to the default line's first target."""
    lang = lang if lang in menu.languages else menu.languages[0]
    hotline = menu.hotlines[menu.default_hotline]
    state = CallState(lang=lang, phase=Phase.DIAL, hotline=hotline.id, step=menu.step_limit)
    prompts = _says(menu, lang, "transfer", hotline=hotline.names[lang])
    return Result(Transfer(prompts, hotline.dial[0], state, menu.ring_timeout,
                           hotline.show_caller))

"""The Twilio webhooks: parse the request, ask the flow, render TwiML, emit events.

Thin on purpose: every decision is in `ivr.flow`. Routes: POST /voice (the number's Voice
URL), /voice/menu, /voice/dial and /voice/numbers (the URLs our TwiML names, with the
call's position in the query string), /voice/screen (the whisper a screened hotline hears
before it accepts), and /voice/status (the status callback). And GET /audio/<name>: a
recorded prompt, fetched by Twilio for a <Play> (public: its name is its content's hash).

Each webhook is a function of a `Webhook` (the request's form and query, and the app),
free of Flask's request context: the Flask views below adapt to it, and so does
`ivr.fast_webhooks`, which answers the ordinary case without Flask.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from urllib.parse import urlencode

import redis
from flask import Blueprint, Response, abort, current_app, g, request

from ivr import events, flow, ops, services, store, twiml
from ivr.flow import Answer, Ask, CallState, Phase, Transfer
from ivr.menu import E164
from ivr.recordings import CONTENT_TYPES
from ivr.security import twilio_signed
from ivr.vocabulary import FINAL_CALL_STATUSES, Event, EventKind

log = logging.getLogger(__name__)
PREFIX = "/voice"
bp = Blueprint("voice", __name__, url_prefix=PREFIX)
XML = "text/xml"
audio_bp = Blueprint("audio", __name__)
AUDIO_PATH = "/audio/"  # + a recording's name: `<sha256>.wav` or `.mp3`
AUDIO_CACHE = "public, max-age=31536000, immutable"  # its name changes with its content


@dataclass
class Webhook:
    """One signed Twilio request, as the webhooks read it."""

    form: Mapping[str, str]
    args: Mapping[str, str]
    config: Mapping[str, object]
    running: services.Services
    events_out: bool = False  # its events are in Redis or the spool: it must not run again


def _state(hook: Webhook, phase: Phase, menu) -> CallState:
    return CallState.from_params(phase, hook.args, menu)


def _answer(form: Mapping[str, str]) -> Answer:
    try:
        confidence = float(form["Confidence"]) if form.get("Confidence") else None
    except ValueError:
        confidence = 0.0
    return Answer(
        digits=form.get("Digits", "")[:32],
        speech=form.get("SpeechResult", "")[:500],
        confidence=confidence,
    )


def _seconds(raw: str | None) -> int:
    """A duration Twilio sends; anything but plain ASCII digits counts as 0."""
    return int(raw) if raw and re.fullmatch(r"[0-9]{1,7}", raw) else 0


def _now() -> datetime:
    return datetime.now(UTC)


def _resume_url(base: str, state: CallState) -> str:
    """Where Twilio posts next; absolute when we know our public URL."""
    path = f"{PREFIX}/{state.phase.value}?{_query(state.to_params())}"
    return base + path if base else path


# The characters urlencode leaves as they are (our parameters' names are all such).
UNESCAPED = re.compile(r"[A-Za-z0-9_.~-]*")


def _query(params: dict[str, str]) -> str:
    """urlencode(params), written directly when no value needs escaping (ids, numbers:
    a call's position nearly always), at a fifth of urlencode's cost."""
    if UNESCAPED.fullmatch("".join(params.values())):
        return "&".join([f"{name}={value}" for name, value in params.items()])
    return urlencode(params)


def _url_for(hook: Webhook) -> Callable[[CallState], str]:
    return partial(_resume_url, str(hook.config["PUBLIC_BASE_URL"]).rstrip("/"))


def _respond(hook: Webhook, result: flow.Result, before: CallState | None = None) -> bytes:
    """TwiML for the step; the step's events leave for Redis (or the spool) here."""
    caller_id = _caller_id(hook)
    result = _placeable(hook, result, caller_id)
    step = result.step
    after = getattr(step, "resume", None) or before
    number = (before.step + 1) if before else 1
    asked = after.node if isinstance(step, Ask) and after.phase is Phase.MENU else ""
    sid, now = hook.form.get("CallSid", ""), _now().timestamp()  # a step's events: one time
    _emit(hook, [
        _event(sid, now, f"{number}.{i}", e.kind.value, number, after.started, after.lang,
               asked, e.detail)
        for i, e in enumerate(result.events)
    ])
    # the Prometheus counters, after the events that matter more
    ops.count(hook.running.metrics, result.events)
    return twiml.body(step, _url_for(hook), caller_id, _audio_url(hook))


def _audio_url(hook: Webhook) -> str:
    """Where Twilio fetches recordings: absolute when we know our public URL."""
    return str(hook.config["PUBLIC_BASE_URL"]).rstrip("/") + AUDIO_PATH


@audio_bp.get(AUDIO_PATH + "<sha256>.<kind>")
def audio(sha256: str, kind: str):
    """A recorded prompt, for Twilio's <Play> and the admins' "try the call": no login
    (Twilio sends none), cached for ever, 404 for a name we do not hold."""
    name = f"{sha256}.{kind}"
    if kind not in CONTENT_TYPES or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        abort(404)
    running = services.of()
    shipped = running.shipped.audio_files.get(name)
    data = shipped.read_bytes() if shipped else None
    if data is None and running.redis is not None:
        try:
            data = store.audio(running.redis, sha256)
        except redis.RedisError:
            abort(503)
    if data is None:
        abort(404)
    response = Response(data, mimetype=CONTENT_TYPES[kind])
    response.headers["Cache-Control"] = AUDIO_CACHE
    return response


def _placeable(hook: Webhook, result: flow.Result, caller_id: str | None) -> flow.Result:
    """The result, unless it is a transfer we cannot place safely: without a number of
    ours to show, Twilio would pass the caller's own number on to the hotline. Then the
    caller hears the numbers to call instead, and the log says why."""
    if isinstance(result.step, Transfer) and not result.step.show_caller and not caller_id:
        log.error("no caller ID for a transfer (set RUTA_CALLER_ID): numbers read instead")
        return flow.numbers_instead(hook.running.live_menu.get(), result)
    return result


def _caller_id(hook: Webhook) -> str | None:
    """The number hotlines see: RUTA_CALLER_ID, else the number the caller dialled
    (Twilio's `To`) when it is E.164. A `sip:` or other `To` gives none: Twilio would
    then show the caller's own number, so no such transfer is placed."""
    ours = hook.config["RUTA_CALLER_ID"]
    if ours:
        return ours
    to = hook.form.get("To", "")
    return to if E164.match(to) else None


def _event(sid: str, now: float, suffix, kind, step, started, lang, asked, data) -> Event:
    """An event of call `sid` at `now`, whose id is the same each time Twilio repeats this
    request."""
    return Event(id=f"{sid}:{suffix}", call=sid, kind=kind, step=step, at=now,
                 started=float(started or now), lang=lang, asked=asked, data=data)


def _emit(hook: Webhook, happened: list[Event]) -> None:
    emitter = hook.running.emitter
    if emitter and happened and hook.form.get("CallSid"):  # no CallSid: no call to file
        hook.events_out = True  # from here on, even half sent: never run twice
        emitter.emit(happened)


# --- the webhooks, as functions of a Webhook: TwiML (UTF-8), or None for "204 No Content"


def on_incoming(hook: Webhook) -> bytes:
    """A new call on our number. The caller ID becomes a pseudonym here, and only here."""
    running = hook.running
    running.caller_key.note_in_use(running.redis)  # once: from when this key is in use
    caller = events.caller_pseudonym(hook.form.get("From"), running.caller_key.secret)
    return _respond(hook, flow.start(running.live_menu.get(), _now(), caller))


def on_menu(hook: Webhook) -> bytes:
    """The caller's answer to a question, or the Redirect that follows silence."""
    menu = hook.running.live_menu.get()  # once per request: a new version may arrive
    state = _state(hook, Phase.MENU, menu)
    return _respond(hook, flow.answer(menu, state, _answer(hook.form), _now()), state)


def on_dial(hook: Webhook) -> bytes:
    """How a transfer ended (busy, no-answer, failed, canceled or completed)."""
    status = hook.form.get("DialCallStatus", "failed")
    seconds = _seconds(hook.form.get("DialCallDuration"))
    menu = hook.running.live_menu.get()
    state = _state(hook, Phase.DIAL, menu)
    return _respond(hook, flow.dial_result(menu, state, status, seconds, _now()), state)


def on_numbers(hook: Webhook) -> bytes:
    """A key pressed after the numbers were read: read them again."""
    menu = hook.running.live_menu.get()
    state = _state(hook, Phase.NUMBERS, menu)
    return _respond(hook, flow.numbers_answer(menu, state, _answer(hook.form), _now()), state)


def on_screen(hook: Webhook) -> bytes:
    """A screened hotline answered (Twilio's <Number url>): the whisper, then its key.

    This request is about the hotline's side of the call (its CallSid is that leg's),
    so it emits nothing; the caller's <Dial> action reports how the transfer ended.
    """
    menu = hook.running.live_menu.get()
    result = flow.screen(menu, _state(hook, Phase.SCREEN, menu), _answer(hook.form))
    return twiml.body(result.step, _url_for(hook), audio_url=_audio_url(hook))


def on_status(hook: Webhook) -> None:
    """Twilio's status callback: the call's final state and length."""
    call_status = hook.form.get("CallStatus", "")
    if call_status in FINAL_CALL_STATUSES:  # ringing, in-progress...: not an ending
        duration = _seconds(hook.form.get("CallDuration"))
        now = _now().timestamp()
        _emit(hook, [_event(hook.form.get("CallSid", ""), now, "end",
                            EventKind.CALL_ENDED.value, 1 << 20, now - duration, "", "",
                            {"status": call_status, "duration": duration})])
    return None


def safety_net(hook: Webhook) -> bytes:
    """A bug must not cut a caller off: the call goes to the default line instead."""
    log.exception("webhook failed; sending the caller to the default hotline")
    ops.count_failure(hook.running.metrics)
    try:
        lang = hook.args.get("l", "")
    except Exception:  # noqa: BLE001 - an unreadable query string: Spanish, the default
        lang = ""
    result = flow.safe_transfer(hook.running.live_menu.get(), lang)
    caller_id = _caller_id(hook)
    result = _placeable(hook, result, caller_id)
    return twiml.body(result.step, _url_for(hook), caller_id, _audio_url(hook))


# Each webhook's path, and the function that answers it.
WEBHOOKS: dict[str, Callable[[Webhook], bytes | None]] = {
    PREFIX: on_incoming, f"{PREFIX}/menu": on_menu, f"{PREFIX}/dial": on_dial,
    f"{PREFIX}/numbers": on_numbers, f"{PREFIX}/screen": on_screen,
    f"{PREFIX}/status": on_status,
}


# --- Flask's views: thin adapters ------------------------------------------------------


def _webhook() -> Webhook:
    """This request, as the webhooks read it (its form and query already read by the
    signature check)."""
    return Webhook(request.form, request.args, current_app.config, services.of())


def _xml(body: bytes) -> Response:
    return Response(body, mimetype=XML)


@bp.post("")
@twilio_signed
def incoming():
    return _xml(on_incoming(_webhook()))


@bp.post("/menu")
@twilio_signed
def menu():
    return _xml(on_menu(_webhook()))


@bp.post("/dial")
@twilio_signed
def dial():
    return _xml(on_dial(_webhook()))


@bp.post("/numbers")
@twilio_signed
def numbers():
    return _xml(on_numbers(_webhook()))


@bp.post("/screen")
@twilio_signed
def screen():
    return _xml(on_screen(_webhook()))


@bp.post("/status")
@twilio_signed
def status():
    on_status(_webhook())
    return Response(status=204)


@bp.errorhandler(Exception)
def never_silent(error):
    """A bug must not cut a caller off: hand the call to the default line instead."""
    if getattr(error, "code", None):  # HTTP errors (the 403 of a bad signature) stay as they are
        return error
    if not g.get("twilio_verified"):  # it broke before the signature was checked
        return Response(status=403)
    return _xml(safety_net(_webhook()))

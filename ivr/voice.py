"""The Twilio webhooks: parse the request, ask the flow, render TwiML, emit events.

Thin on purpose: every decision is in `ivr.flow`. Routes: POST /voice (the number's Voice
URL), /voice/menu, /voice/dial and /voice/numbers (the URLs our TwiML names, with the
call's position in the query string), /voice/screen (the whisper a screened hotline hears
before it accepts), and /voice/status (the status callback). And GET /audio/<name>: a
recorded prompt, fetched by Twilio for a <Play> (public: its name is its content's hash).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from urllib.parse import urlencode

import redis
from flask import Blueprint, Response, abort, current_app, g, request

from ivr import events, flow, ops, services, store, twiml
from ivr.flow import Answer, Ask, CallState, Phase, Transfer
from ivr.menu import E164, Menu
from ivr.recordings import CONTENT_TYPES
from ivr.security import twilio_signed
from ivr.services import current_menu
from ivr.vocabulary import FINAL_CALL_STATUSES, Event, EventKind

log = logging.getLogger(__name__)
bp = Blueprint("voice", __name__, url_prefix="/voice")
audio_bp = Blueprint("audio", __name__)
AUDIO_PATH = "/audio/"  # + a recording's name: `<sha256>.wav` or `.mp3`
AUDIO_CACHE = "public, max-age=31536000, immutable"  # its name changes with its content


def _state(phase: Phase, menu: Menu) -> CallState:
    return CallState.from_params(phase, request.args, menu)


def _answer() -> Answer:
    try:
        confidence = float(request.form["Confidence"]) if request.form.get("Confidence") else None
    except ValueError:
        confidence = 0.0
    return Answer(
        digits=request.form.get("Digits", "")[:32],
        speech=request.form.get("SpeechResult", "")[:500],
        confidence=confidence,
    )


def _seconds(raw: str | None) -> int:
    """A duration Twilio sends; anything but plain ASCII digits counts as 0."""
    return int(raw) if raw and re.fullmatch(r"[0-9]{1,7}", raw) else 0


def _now() -> datetime:
    return datetime.now(UTC)


def _resume_url(state: CallState) -> str:
    """Where Twilio posts next; absolute when we know our public URL."""
    path = f"{bp.url_prefix}/{state.phase.value}?{urlencode(state.to_params())}"
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return base + path if base else path


def _respond(result: flow.Result, before: CallState | None = None) -> Response:
    """TwiML for the step; the step's events leave for Redis (or the spool) here."""
    caller_id = _caller_id()
    result = _placeable(result, caller_id)
    step = result.step
    after = getattr(step, "resume", None) or before
    number = (before.step + 1) if before else 1
    asked = after.node if isinstance(step, Ask) and after.phase is Phase.MENU else ""
    _emit([
        _event(f"{number}.{i}", e.kind.value, number, after.started, after.lang, asked, e.detail)
        for i, e in enumerate(result.events)
    ])
    ops.count(result.events)  # the Prometheus counters, after the events that matter more
    return Response(twiml.render(step, _resume_url, caller_id, _audio_url()),
                    mimetype="text/xml")


def _audio_url() -> str:
    """Where Twilio fetches recordings: absolute when we know our public URL."""
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + AUDIO_PATH


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


def _placeable(result: flow.Result, caller_id: str | None) -> flow.Result:
    """The result, unless it is a transfer we cannot place safely: without a number of
    ours to show, Twilio would pass the caller's own number on to the hotline. Then the
    caller hears the numbers to call instead, and the log says why."""
    if isinstance(result.step, Transfer) and not result.step.show_caller and not caller_id:
        log.error("no caller ID for a transfer (set RUTA_CALLER_ID): numbers read instead")
        return flow.numbers_instead(current_menu(), result)
    return result


def _caller_id() -> str | None:
    """The number hotlines see: RUTA_CALLER_ID, else the number the caller dialled
    (Twilio's `To`) when it is E.164. A `sip:` or other `To` gives none: Twilio would
    then show the caller's own number, so no such transfer is placed."""
    ours = current_app.config["RUTA_CALLER_ID"]
    if ours:
        return ours
    to = request.form.get("To", "")
    return to if E164.match(to) else None


def _event(suffix, kind, step, started, lang, asked, data) -> Event:
    """An event whose id is the same each time Twilio repeats this request."""
    sid = request.form.get("CallSid", "")
    now = _now().timestamp()
    return Event(id=f"{sid}:{suffix}", call=sid, kind=kind, step=step, at=now,
                 started=float(started or now), lang=lang, asked=asked, data=data)


def _emit(happened: list[Event]) -> None:
    emitter = services.of().emitter
    if emitter and happened and request.form.get("CallSid"):  # no CallSid: no call to file
        emitter.emit(happened)


@bp.post("")
@twilio_signed
def incoming():
    """A new call on our number. The caller ID becomes a pseudonym here, and only here."""
    running = services.of()
    running.caller_key.note_in_use(running.redis)  # once: from when this key is in use
    caller = events.caller_pseudonym(request.form.get("From"), running.caller_key.secret)
    return _respond(flow.start(current_menu(), _now(), caller))


@bp.post("/menu")
@twilio_signed
def menu():
    """The caller's answer to a question, or the Redirect that follows silence."""
    menu = current_menu()  # once per request: a new version may arrive meanwhile
    state = _state(Phase.MENU, menu)
    return _respond(flow.answer(menu, state, _answer(), _now()), state)


@bp.post("/dial")
@twilio_signed
def dial():
    """How a transfer ended (busy, no-answer, failed, canceled or completed)."""
    status = request.form.get("DialCallStatus", "failed")
    seconds = _seconds(request.form.get("DialCallDuration"))
    menu = current_menu()
    state = _state(Phase.DIAL, menu)
    return _respond(flow.dial_result(menu, state, status, seconds, _now()), state)


@bp.post("/numbers")
@twilio_signed
def numbers():
    """A key pressed after the numbers were read: read them again."""
    menu = current_menu()
    state = _state(Phase.NUMBERS, menu)
    return _respond(flow.numbers_answer(menu, state, _answer(), _now()), state)


@bp.post("/screen")
@twilio_signed
def screen():
    """A screened hotline answered (Twilio's <Number url>): the whisper, then its key.

    This request is about the hotline's side of the call (its CallSid is that leg's),
    so it emits nothing; the caller's <Dial> action reports how the transfer ended.
    """
    menu = current_menu()
    result = flow.screen(menu, _state(Phase.SCREEN, menu), _answer())
    return Response(twiml.render(result.step, _resume_url, audio_url=_audio_url()),
                    mimetype="text/xml")


@bp.post("/status")
@twilio_signed
def status():
    """Twilio's status callback: the call's final state and length."""
    call_status = request.form.get("CallStatus", "")
    if call_status in FINAL_CALL_STATUSES:  # ringing, in-progress...: not an ending
        duration = _seconds(request.form.get("CallDuration"))
        started = _now().timestamp() - duration
        _emit([_event("end", EventKind.CALL_ENDED.value, 1 << 20, started, "", "",
                      {"status": call_status, "duration": duration})])
    return Response(status=204)


@bp.errorhandler(Exception)
def never_silent(error):
    """A bug must not cut a caller off: hand the call to the default line instead."""
    if getattr(error, "code", None):  # HTTP errors (the 403 of a bad signature) stay as they are
        return error
    if not g.get("twilio_verified"):  # it broke before the signature was checked
        return Response(status=403)
    log.exception("webhook failed; sending the caller to the default hotline")
    ops.count_failure()
    menu = current_menu()
    try:
        lang = request.args.get("l", "")
    except Exception:  # noqa: BLE001 - an unreadable query string: Spanish, the default
        lang = ""
    result = flow.safe_transfer(menu, lang)
    caller_id = _caller_id()
    result = _placeable(result, caller_id)
    return Response(twiml.render(result.step, _resume_url, caller_id, _audio_url()),
                    mimetype="text/xml")

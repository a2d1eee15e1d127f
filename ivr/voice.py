"""The Twilio webhooks: parse the request, ask the flow, render TwiML, emit events.

Thin on purpose: every decision is in `ivr.flow`. Routes: POST /voice (the number's Voice
URL), /voice/menu, /voice/dial and /voice/numbers (the URLs our TwiML names, with the
call's position in the query string), and /voice/status (the status callback).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, request, url_for

from ivr import events, flow, twiml
from ivr.flow import Answer, CallState, Phase
from ivr.menu import Menu
from ivr.security import twilio_signed

log = logging.getLogger(__name__)
bp = Blueprint("voice", __name__, url_prefix="/voice")


def current_menu() -> Menu:
    return current_app.extensions["ruta.menu"]


def _state(phase: Phase) -> CallState:
    return CallState.from_params(phase, request.args, current_menu())


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


def _now() -> datetime:
    return datetime.now(UTC)


def _resume_url(state: CallState) -> str:
    """Where Twilio posts next; absolute when we know our public URL."""
    path = url_for(f"voice.{state.phase.value}") + "?" + urlencode(state.to_params())
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return base + path if base else path


def _respond(result: flow.Result) -> Response:
    # The one place where what happened in a call leaves the web process.
    events.emit(request.form.get("CallSid", ""), result.events)
    return Response(twiml.render(result.step, _resume_url), mimetype="text/xml")


@bp.post("")
@twilio_signed
def incoming():
    """A new call on our number."""
    return _respond(flow.start(current_menu(), _now()))


@bp.post("/menu")
@twilio_signed
def menu():
    """The caller's answer to a question, or the Redirect that follows silence."""
    return _respond(flow.answer(current_menu(), _state(Phase.MENU), _answer(), _now()))


@bp.post("/dial")
@twilio_signed
def dial():
    """How a transfer ended (busy, no-answer, failed, canceled or completed)."""
    status = request.form.get("DialCallStatus", "failed")
    duration = request.form.get("DialCallDuration", "0")
    seconds = int(duration) if duration.isdigit() else 0
    return _respond(flow.dial_result(current_menu(), _state(Phase.DIAL), status, seconds, _now()))


@bp.post("/numbers")
@twilio_signed
def numbers():
    """A key pressed after the numbers were read: read them again."""
    return _respond(flow.numbers_answer(current_menu(), _state(Phase.NUMBERS), _answer()))


@bp.post("/status")
@twilio_signed
def status():
    """Twilio's status callback: the call's final state and length."""
    duration = request.form.get("CallDuration", "")
    ended = flow.FlowEvent(flow.EventKind.CALL_ENDED, {
        "status": request.form.get("CallStatus", ""),
        "duration": int(duration) if duration.isdigit() else 0,
    })
    events.emit(request.form.get("CallSid", ""), (ended,))
    return Response(status=204)


@bp.errorhandler(Exception)
def never_silent(error):
    """A bug must not cut a caller off: hand the call to the default line instead."""
    if getattr(error, "code", None):  # HTTP errors (the 403 of a bad signature) stay as they are
        return error
    log.exception("webhook failed; sending the caller to the default hotline")
    menu = current_menu()
    result = flow.safe_transfer(menu, request.args.get("l", ""))
    return Response(twiml.render(result.step, _resume_url), mimetype="text/xml")

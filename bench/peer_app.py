"""The peer for bench/webhook: what Twilio's samples lead a user to build instead of Ruta.

A Flask app in the shape of Twilio's Python quickstarts: a decorator validating each
request with twilio's `RequestValidator` on `request.url`, TwiML built with
`VoiceResponse`, and one RQ `enqueue` per webhook to log the outcome for a worker. The
same two requests as ours: the first question (/voice) and an answer (/voice/menu,
Digits=2: a transfer).
"""

import os
from functools import wraps

from flask import Flask, Response, abort, request
from redis import Redis
from rq import Queue
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Gather, VoiceResponse

app = Flask(__name__)
OUTCOME_JOB = "bench.peer_app.log_outcome"  # never run here: the bench has no worker
HOTLINES = {"1": "+5718000918080", "2": "+576015550100"}


def validate_twilio_request(view):
    """The quickstarts' decorator: 403 unless the signature is Twilio's."""

    @wraps(view)
    def checked(*args, **kwargs):
        validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
        if not validator.validate(request.url, request.form,
                                  request.headers.get("X-Twilio-Signature", "")):
            abort(403)
        return view(*args, **kwargs)

    return checked


def log_outcome(call_sid: str, what: str, detail: str = "") -> None:
    """The job a worker would run: keep what happened in the call."""


@app.post("/voice")
@validate_twilio_request
def voice():
    app.config["QUEUE"].enqueue(OUTCOME_JOB, request.form["CallSid"], "started")
    response = VoiceResponse()
    gather = Gather(input="dtmf speech", action="/voice/menu", num_digits=1, timeout=6,
                    language="es-CO")
    gather.say("Línea Ruta. Su llamada es confidencial.", voice="Polly.Lupe-Neural",
               language="es-US")
    gather.say("Si alguien está en peligro ahora, marque 0.", voice="Polly.Lupe-Neural",
               language="es-US")
    response.append(gather)
    response.redirect("/voice/menu", method="POST")
    return Response(str(response), mimetype="text/xml")


@app.post("/voice/menu")
@validate_twilio_request
def menu():
    digits = request.form.get("Digits", "")
    app.config["QUEUE"].enqueue(OUTCOME_JOB, request.form["CallSid"], "answered", digits)
    response = VoiceResponse()
    if digits in HOTLINES:
        response.say("Le comunicamos ahora.", voice="Polly.Lupe-Neural", language="es-US")
        response.dial(HOTLINES[digits], caller_id="+576015550100", timeout=25,
                      action="/voice/dial")
    else:
        response.redirect("/voice", method="POST")
    return Response(str(response), mimetype="text/xml")


def create_app():
    app.config["QUEUE"] = Queue("peer", connection=Redis.from_url(os.environ["REDIS_URL"]))
    return app

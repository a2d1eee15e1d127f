"""Who may call our endpoints: Twilio, proven by its request signature."""

from __future__ import annotations

import functools

from flask import abort, current_app, request
from twilio.request_validator import RequestValidator


def public_url() -> str:
    """The URL Twilio called: behind a TLS proxy the app sees http://, so rebuild it."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    if not base:
        return request.url
    query = request.query_string.decode()
    return base + request.path + (f"?{query}" if query else "")


def twilio_signed(view):
    """Refuse (403, no TwiML) a request whose X-Twilio-Signature is missing or wrong."""

    @functools.wraps(view)
    def checked(*args, **kwargs):
        signature = request.headers.get("X-Twilio-Signature", "")
        validator = RequestValidator(current_app.config["TWILIO_AUTH_TOKEN"])
        if not signature or not validator.validate(public_url(), request.form, signature):
            abort(403)
        return view(*args, **kwargs)

    return checked

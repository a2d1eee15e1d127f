"""The Twilio webhooks' ordinary case answered without Flask, at a bare app's cost.

A WSGI layer in front of Flask. It answers a webhook (`ivr.voice.WEBHOOKS`) only when
the request is what Twilio sends: POST, form-encoded with a length within the limit, a
plain Host, no repeated parameter, and a valid signature. It then runs the same webhook
function as the Flask view (`ivr.voice`), so the answer and the events are the same; it
skips what costs time without changing them: the request context, URL matching, the
before/after hooks and Werkzeug's parsers.

Everything else goes to Flask unchanged (the body read is handed on as sent): other
methods and paths, odd bodies or hosts, every 403 and 400, and any error before the
events are out (Flask then does it all again, and meets the same error). An error after
the events are out gets the safety-net transfer here, as Flask would give it: the step
must not run twice. RUTA_FAST_WEBHOOKS=0 turns it off.
"""

from __future__ import annotations

import base64
import hmac
import io
import re
from functools import cached_property
from urllib.parse import unquote

import werkzeug.urls  # noqa: F401 - registers the "werkzeug.url_quote" decoding errors
from werkzeug.http import HTTP_STATUS_CODES

from ivr import logs, services, voice

FORM_TYPES = frozenset({"application/x-www-form-urlencoded",
                        "application/x-www-form-urlencoded; charset=utf-8"})
# A Host Werkzeug keeps as it is: lower case, no IDNA label to decode ("xn--"), a port
# written as a number is (no default port to drop, checked apart).
PLAIN_HOST = re.compile(r"[a-z0-9.-]+(:[1-9][0-9]{0,4})?")
DIGITS = re.compile(r"[0-9]{1,9}")
DEFAULT_PORT = {"http": ":80", "https": ":443"}
XML_HEADERS = "text/xml; charset=utf-8"
# What Werkzeug's Response(status=204) sends.
NO_CONTENT = ("204 " + HTTP_STATUS_CODES[204].upper(),
              [("Content-Type", "text/html; charset=utf-8")])


def init_app(app) -> None:
    """Put the fast path in front of Flask, unless RUTA_FAST_WEBHOOKS is off. Call it
    before ops.init_app, so the webhook timing covers both."""
    if app.config["RUTA_FAST_WEBHOOKS"]:
        app.wsgi_app = FastWebhooks(app, app.wsgi_app)


class FastWebhooks:
    """The WSGI layer: the ordinary webhook here, everything else to `flask`."""

    def __init__(self, app, flask):
        self.app, self.flask = app, flask

    @cached_property
    def keys(self) -> list:
        """An HMAC-SHA1 keyed by each auth token of ours, copied for each request."""
        config = self.app.config
        tokens = (config["TWILIO_AUTH_TOKEN"], config.get("TWILIO_SECONDARY_AUTH_TOKEN"))
        return [hmac.new(t.encode(), digestmod="sha1") for t in tokens if t]

    def __call__(self, environ, start_response):
        webhook = voice.WEBHOOKS.get(environ.get("PATH_INFO"))
        if webhook is None or environ.get("REQUEST_METHOD") != "POST":
            return self.flask(environ, start_response)
        body = self._body(environ)
        if body is None:
            return self.flask(environ, start_response)
        environ["wsgi.input"] = io.BytesIO(body)  # for Flask, if it gets the request after all
        try:
            form, query = _fields(body), _fields(environ.get("QUERY_STRING", "").encode("latin-1"))
        except ValueError:  # not UTF-8, or a repeated parameter: Flask's to answer
            return self.flask(environ, start_response)
        url = self._public_url(environ)
        if url is None or not self._signed(url, form, environ.get("HTTP_X_TWILIO_SIGNATURE")):
            return self.flask(environ, start_response)
        hook = voice.Webhook(form, query, self.app.config, services.of(self.app))
        shown = logs.FAST_WEBHOOK_FORM.set(form)  # log lines: the CallSid, no caller
        try:
            try:
                answer = webhook(hook)
            except Exception:
                if not hook.events_out:
                    environ["wsgi.input"].seek(0)
                    return self.flask(environ, start_response)
                answer = voice.safety_net(hook)  # logs the error, as Flask's handler does
        finally:
            logs.FAST_WEBHOOK_FORM.reset(shown)
        if answer is None:
            start_response(*NO_CONTENT)
            return []
        start_response("200 OK", [("Content-Type", XML_HEADERS),
                                  ("Content-Length", str(len(answer)))])
        return [answer]

    def _body(self, environ) -> bytes | None:
        """The form as sent, when it is an ordinary one: None hands the request on."""
        length = environ.get("CONTENT_LENGTH", "")
        if (environ.get("CONTENT_TYPE") not in FORM_TYPES or not DIGITS.fullmatch(length)
                or int(length) > self.app.config["MAX_CONTENT_LENGTH"]
                or "HTTP_TRANSFER_ENCODING" in environ):
            return None
        body = environ["wsgi.input"].read(int(length))
        if len(body) != int(length):  # cut short: Flask says what it says about that
            environ["wsgi.input"] = io.BytesIO(body)
            return None
        return body

    def _public_url(self, environ) -> str | None:
        """The URL Twilio signed, as ivr.security.public_url builds it; None when the
        Host is not plain (Werkzeug would change it)."""
        base = str(self.app.config["PUBLIC_BASE_URL"]).rstrip("/")
        if not base:
            scheme, host = environ.get("wsgi.url_scheme"), environ.get("HTTP_HOST", "")
            if environ.get("SCRIPT_NAME") or not _plain(scheme, host):
                return None
            base = f"{scheme}://{host}"
        query = environ.get("QUERY_STRING", "").encode("latin-1").decode(errors="replace")
        return base + environ["PATH_INFO"] + (f"?{query}" if query else "")

    def _signed(self, url: str, form: dict[str, str], signature: str | None) -> bool:
        """Twilio's signature (the URL, then each field's name and value in name order)
        by one of our tokens, as twilio's RequestValidator computes it for a form with no
        repeated field; its port variants are left to Flask's check."""
        if not signature:
            return False
        data = (url + "".join(name + form[name] for name in sorted(form))).encode()
        for key in self.keys:
            mac = key.copy()
            mac.update(data)
            if hmac.compare_digest(base64.b64encode(mac.digest()), signature.encode()):
                return True
        return False


def _plain(scheme: str, host: str) -> bool:
    """True if Werkzeug's root URL is `scheme://host` as it is."""
    if scheme not in DEFAULT_PORT or not (match := PLAIN_HOST.fullmatch(host)):
        return False
    port = match.group(1)
    return ("xn--" not in host and port != DEFAULT_PORT[scheme]
            and (not port or int(port[1:]) <= 65535))


def _fields(raw: bytes) -> dict[str, str]:
    """A form or query string parsed as Werkzeug parses it (urllib's parse_qsl, blank
    values kept, bad escapes left as sent), with only the escaped parts unquoted: most of
    Twilio's fields have none. ValueError if it is not UTF-8 or a name repeats."""
    pairs = [pair.partition("=") for pair in raw.decode().split("&") if pair]
    fields = {(_unquoted(name) if "%" in name or "+" in name else name):
              (_unquoted(value) if "%" in value or "+" in value else value)
              for name, _, value in pairs}
    if len(fields) != len(pairs):
        raise ValueError("a repeated parameter")
    return fields


# "2B" -> "+": each escape of an ASCII character, in either case. Twilio escapes only
# such ("%2B57300..."), and a table look-up costs a third of unquote's.
ASCII_ESCAPES = {a + b: chr(int(a + b, 16))
                 for a in "01234567" for b in "0123456789abcdefABCDEF"}


def _unquoted(text: str) -> str:
    """unquote(text with "+" as a space, errors="werkzeug.url_quote"), as Werkzeug
    does it; escapes of ASCII characters decoded here, anything else by unquote."""
    text = text.replace("+", " ")
    first, *rest = text.split("%")
    decoded = [first]
    for part in rest:
        char = ASCII_ESCAPES.get(part[:2])
        if char is None:  # a multi-byte character, or a bad escape: unquote's rules
            return unquote(text, errors="werkzeug.url_quote")
        decoded += (char, part[2:])
    return "".join(decoded)

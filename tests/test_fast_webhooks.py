"""The fast path (ivr.fast_webhooks) against Flask alone: the same answers, the same events.

Two apps on the session's Redis, one with RUTA_FAST_WEBHOOKS on and one with it off (and
two more behind a proxy, with PUBLIC_BASE_URL), get the same requests: the hostile-input
generators of tests/test_hostile.py, sent with right, wrong or no signatures, odd content
types, hosts and methods. Status, headers,
body and the events in Redis must be byte for byte the same. The clock is held still
for both (the start time travels in the TwiML's URLs).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlencode

import pytest
import redis
from conftest import TOKEN
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hostile import WEBHOOKS, state_queries, twilio_forms
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from ivr import create_app, flow, logs, store, twiml, voice
from ivr.fast_webhooks import FastWebhooks

NOW = datetime(2026, 11, 20, 15, 30, 12, 345678, tzinfo=UTC)
FORM = "application/x-www-form-urlencoded"
VALIDATOR = RequestValidator(TOKEN)
ORDINARY_HOST = "http://ruta.test"
PUBLIC = "https://ruta.example.org"  # PUBLIC_BASE_URL behind a proxy
# Hosts the fast path takes as they are, and hosts Werkzeug rewrites (case, a default
# port, IDNA, a port out of range or written with a zero), which go to Flask.
HOSTS = [ORDINARY_HOST, "http://ruta.test:8000", "https://ruta.test", "http://10.0.0.7:5000",
         "http://RUTA.test", "http://ruta.test:80", "https://ruta.test:443",
         "http://xn--rta-2na.test", "http://ruta.test:99999", "http://ruta.test:08000",
         "http://ruta.test:", "http://[::1]:8000", "http://ruta_test"]
CONTENT_TYPES = [FORM, FORM, FORM, f"{FORM}; charset=utf-8", f"{FORM}; charset=latin-1",
                 "text/plain", "multipart/form-data; boundary=x"]


def layer_of(app) -> FastWebhooks:
    """The fast path among the app's WSGI layers."""
    layer = app.wsgi_app
    while not isinstance(layer, FastWebhooks):
        layer = layer.wsgi_app
    return layer


@pytest.fixture(scope="module")
def apps(redis_server, tmp_path_factory):
    """The app with the fast path, the app without, and the requests the first handed
    on to Flask."""
    config = {
        "RUTA_ENV": "development", "TWILIO_AUTH_TOKEN": TOKEN, "SECRET_KEY": "test-secret-key",
        "CALLER_ID_KEY": "test-caller-id-key", "REDIS_URL": redis_server.url,
        "PUBLIC_BASE_URL": "", "RUTA_SPOOL_DIR": str(tmp_path_factory.mktemp("fast") / "spool"),
    }
    fast = create_app({**config, "RUTA_FAST_WEBHOOKS": True})
    flask_only = create_app({**config, "RUTA_FAST_WEBHOOKS": False})
    # Behind a TLS proxy: the URL Twilio signed is PUBLIC_BASE_URL's, whatever the Host.
    proxied = {**config, "PUBLIC_BASE_URL": PUBLIC}
    behind_proxy = (create_app({**proxied, "RUTA_FAST_WEBHOOKS": True}),
                    create_app({**proxied, "RUTA_FAST_WEBHOOKS": False}))
    handed = []
    layer = layer_of(fast)
    inner = layer.flask

    def record(environ, start_response):
        handed.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    layer.flask = record
    r = redis.Redis.from_url(redis_server.url)
    try:
        yield SimpleNamespace(fast=fast, flask_only=flask_only, handed=handed, redis=r,
                              pairs={"direct": (fast, flask_only), "proxied": behind_proxy})
    finally:
        r.close()


def redis_state(r: redis.Redis) -> tuple[list[bytes], list[bytes]]:
    """The events on the stream, in order, and every key's name (RQ's job ids left out)."""
    events = [fields[b"e"] for _, fields in r.xrange(store.EVENTS)]
    keys = sorted(re.sub(rb"[0-9a-f-]{32,36}", b"<job>", key) for key in r.scan_iter())
    return events, keys


def exchange(app, r: redis.Redis, method: str, host: str, path: str, body: bytes,
             headers: dict) -> tuple:
    """One request from an empty Redis: what came back and what was kept."""
    r.flushdb()
    scheme, _, netloc = host.partition("://")  # the Host header as sent, however odd
    resp = app.test_client().open(path, method=method, base_url=f"{scheme}://ruta.test",
                                  data=body, headers={**headers, "Host": netloc})
    return resp.status, resp.headers.to_wsgi_list(), resp.get_data(), redis_state(r)


def both(apps, method, host, path, query, pairs, headers, which="direct") -> tuple[tuple, tuple]:
    """The same request through the fast path and through Flask alone, at NOW."""
    full = path + (f"?{query}" if query else "")
    body = urlencode(pairs).encode()
    fast, flask_only = apps.pairs[which]
    with pytest.MonkeyPatch.context() as clock:
        clock.setattr(voice, "_now", lambda: NOW)
        return (exchange(fast, apps.redis, method, host, full, body, headers),
                exchange(flask_only, apps.redis, method, host, full, body, headers))


def signed(host: str, path: str, query: str, pairs) -> str:
    url = host + path + (f"?{query}" if query else "")
    return VALIDATOR.compute_signature(url, MultiDict(pairs))


@pytest.mark.slow  # a second or more
@given(path=st.sampled_from(WEBHOOKS), form=st.data(), query=state_queries(),
       host=st.sampled_from(HOSTS), content_type=st.sampled_from(CONTENT_TYPES),
       signature=st.sampled_from(["right", "right", "right", "wrong", "none"]),
       method=st.sampled_from(["POST"] * 6 + ["GET", "PUT"]),
       which=st.sampled_from(["direct", "proxied"]))
@settings(max_examples=200, deadline=None)
def test_the_fast_path_answers_and_keeps_what_flask_does(apps, path, form, query, host,
                                                         content_type, signature, method,
                                                         which):
    pairs, _ = form.draw(twilio_forms(path))
    headers = {"Content-Type": content_type}
    signed_base = PUBLIC if which == "proxied" else host
    if signature == "right":
        headers["X-Twilio-Signature"] = signed(signed_base, path, query, pairs)
    elif signature == "wrong":
        headers["X-Twilio-Signature"] = signed(signed_base, path, query + "&n=report", pairs)
    fast, flask_only = both(apps, method, host, path, query, pairs, headers, which)
    assert fast == flask_only


def ordinary(path: str, query: str = "", **fields) -> tuple:
    pairs = list({"CallSid": "CA" + "7" * 32, "From": "+573001234567",
                  "To": "+576015550100", "CallStatus": "in-progress", **fields}.items())
    headers = {"Content-Type": FORM,
               "X-Twilio-Signature": signed(ORDINARY_HOST, path, query, pairs)}
    return path, query, pairs, headers


ANSWER = "l=es&s=1&t0=1795380000&n=welcome&a=0"


@pytest.mark.parametrize("path, query, fields", [
    ("/voice", "", {}),
    ("/voice/menu", ANSWER, {"Digits": "2"}),
    ("/voice/status", "", {"CallStatus": "completed", "CallDuration": "42"}),
])
def test_twilios_ordinary_requests_are_answered_without_flask(apps, path, query, fields):
    path, query, pairs, headers = ordinary(path, query, **fields)
    apps.handed.clear()
    fast, flask_only = both(apps, "POST", ORDINARY_HOST, path, query, pairs, headers)
    assert apps.handed == []  # the fast path answered
    assert fast == flask_only
    assert fast[0] in ("200 OK", "204 NO CONTENT") and fast[3][0]  # events kept


# What a caller said, as a form may escape it: lower-case escapes, accents and emoji,
# escapes cut short or not escapes at all, a UTF-8 sequence cut short.
SAID_ESCAPED = ["trabajo+forzado%2c+%c3%a9l+me+%3D+oblig%C3%B3", "me+pag%c3%a1n+100%+menos",
                "cortado%2", "%e2%82", "caf%C3%A9%20%F0%9F%98%80%7e%7E%41%5a", "%%41%g1+%"]


@pytest.mark.parametrize("said", SAID_ESCAPED)
def test_a_callers_words_however_escaped_are_read_as_flask_reads_them(apps, said):
    """The fast path's own unquoting of a form: the same answer and the same events as
    Flask's, for the escapes Twilio sends and for those it never would."""
    body = ("CallSid=CA" + "7" * 32 + "&From=%2B573001234567&To=%2b576015550100"
            "&SpeechResult=" + said + "&Confidence=0.9").encode()
    pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="werkzeug.url_quote")
    assert len(pairs) == 5  # no name repeats: the fast path's to answer
    path, query = "/voice/menu", ANSWER
    headers = {"Content-Type": FORM,
               "X-Twilio-Signature": signed(ORDINARY_HOST, path, query, pairs)}
    apps.handed.clear()
    answers = []
    with pytest.MonkeyPatch.context() as clock:
        clock.setattr(voice, "_now", lambda: NOW)
        for app in (apps.fast, apps.flask_only):
            answers.append(exchange(app, apps.redis, "POST", ORDINARY_HOST,
                                    f"{path}?{query}", body, headers))
    assert apps.handed == []  # the fast path answered
    fast, flask_only = answers
    assert fast == flask_only and fast[0] == "200 OK" and fast[3][0]


def test_a_request_signed_wrong_goes_to_flask_and_gets_its_403(apps):
    path, query, pairs, headers = ordinary("/voice")
    headers["X-Twilio-Signature"] = "x" + headers["X-Twilio-Signature"][1:]
    apps.handed.clear()
    fast, flask_only = both(apps, "POST", ORDINARY_HOST, path, query, pairs, headers)
    assert apps.handed == ["/voice"]
    assert fast == flask_only and fast[0] == "403 FORBIDDEN" and fast[3] == ([], [])


class Lines(logging.Handler):
    """Log lines as ivr.logs writes them in development."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logs.TextFormatter())
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_an_error_after_the_events_are_out_gets_the_safety_net_once(apps, monkeypatch):
    """The step's events are kept, then rendering fails: the caller goes to the default
    line, from the fast path as from Flask, and the step is not run a second time. The
    log line names the call and hides the caller's number, from both."""
    render = twiml.body
    failures = []

    def fails_once(step, *args):
        if not failures:
            failures.append(step)
            raise RuntimeError("a bug in rendering, for +573001234567")
        return render(step, *args)

    path, query, pairs, headers = ordinary("/voice/menu", ANSWER, Digits="2")
    answers, logged = [], []
    for app in (apps.fast, apps.flask_only):
        failures.clear()
        monkeypatch.setattr(twiml, "body", fails_once)
        monkeypatch.setattr(voice, "_now", lambda: NOW)
        lines = Lines()
        logging.getLogger("ivr.voice").addHandler(lines)
        try:
            answers.append(exchange(app, apps.redis, "POST", ORDINARY_HOST, f"{path}?{query}",
                                    urlencode(pairs).encode(), headers))
        finally:
            logging.getLogger("ivr.voice").removeHandler(lines)
        logged.append(lines.lines)
    fast, flask_only = answers
    assert fast == flask_only
    # The same line from both (after its time); the tracebacks differ by where they pass.
    assert [[line.split(" ", 2)[2].split("\n")[0] for line in lines] for lines in logged] == [
        [f"ERROR ivr.voice [CA{'7' * 32}]: webhook failed; sending the caller to the default "
         "hotline"]] * 2
    for lines in logged:
        assert "for [caller]" in lines[0] and "3001234567" not in lines[0]
    assert fast[0] == "200 OK" and b"<Dial" in fast[2]  # the safety net's transfer
    events = fast[3][0]
    assert events and len(events) == len(set(events))  # the step's events, once


def test_an_error_before_the_events_are_out_is_flasks_to_answer(apps, monkeypatch):
    path, query, pairs, headers = ordinary("/voice/menu", ANSWER, Digits="2")

    def broken(*args):
        raise RuntimeError("a bug in the flow")

    monkeypatch.setattr(flow, "answer", broken)
    apps.handed.clear()
    fast, flask_only = both(apps, "POST", ORDINARY_HOST, path, query, pairs, headers)
    assert apps.handed == ["/voice/menu"]
    assert fast == flask_only and fast[0] == "200 OK" and b"<Dial" in fast[2]

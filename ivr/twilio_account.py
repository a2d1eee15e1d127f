"""Go-live against Twilio's REST API, through twilio's own `Client` (no hand-written HTTP).

Point our number at Ruta (`connect`), read it back (`check`), and place a real test call
to one hotline target (`place_test_call`). Functions take a `Client`; no click, no Redis:
`ivr twilio ...` (ivr.cli) prints and records what they return.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from ivr.menu import E164, Voice, is_dialable
from ivr.vocabulary import FINAL_CALL_STATUSES, CallStatus

TEST_MESSAGE = ("Esta es una llamada de prueba de conexión de la línea Ruta. "
                "No necesita hacer nada. Gracias.")
# Hosts where plain http is allowed: the tests' local stand-ins, never a real deploy.
LOCAL_HOSTS = ("127.0.0.1", "localhost")
ANY_URL = object()  # `check` without a fallback URL to compare: any https URL will do


class GoLiveError(Exception):
    """Something an operator must fix before we talk to Twilio; the message says what."""


class MissingCredentials(GoLiveError):
    """No usable Twilio credentials in the environment."""


def client_from_env(environ: Mapping[str, str] = os.environ) -> Client:
    """A twilio Client from TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN, or an API key
    (TWILIO_API_KEY + TWILIO_API_SECRET, with TWILIO_ACCOUNT_SID).

    RUTA_TWILIO_API_URL (tests and staging only) replaces https://api.twilio.com.
    """
    sid = environ.get("TWILIO_ACCOUNT_SID", "")
    key, secret = environ.get("TWILIO_API_KEY", ""), environ.get("TWILIO_API_SECRET", "")
    token = environ.get("TWILIO_AUTH_TOKEN", "")
    if not sid:
        raise MissingCredentials("set TWILIO_ACCOUNT_SID (AC...) and TWILIO_AUTH_TOKEN, "
                                 "or TWILIO_API_KEY and TWILIO_API_SECRET")
    if key or secret:
        if not (key and secret):
            raise MissingCredentials("an API key needs both TWILIO_API_KEY and TWILIO_API_SECRET")
        client = Client(key, secret, sid)  # the key authenticates, the SID names the account
    elif token:
        client = Client(sid, token, sid)
    else:
        raise MissingCredentials("set TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and "
                                 "TWILIO_API_SECRET) with TWILIO_ACCOUNT_SID")
    api_url = environ.get("RUTA_TWILIO_API_URL", "")
    if api_url:
        # Domain.base_url is what every API request's URL is built from (Domain.absolute_url).
        client.api.base_url = api_url.rstrip("/")
        # An exported TWILIO_EDGE/TWILIO_REGION would rewrite that host name: not wanted here.
        client.edge = client.region = None
    return client


def _checked_url(url: str, what: str) -> str:
    """`url` without a trailing slash, if it is https (or http on this machine)."""
    parts = urlsplit(url or "")
    local = parts.scheme == "http" and parts.hostname in LOCAL_HOSTS
    if not parts.netloc or not (parts.scheme == "https" or local):
        raise GoLiveError(f"{what} must be an https:// URL (http only for 127.0.0.1 or "
                          f"localhost), not {url!r}")
    return url.rstrip("/")


def expected_config(public_base_url: str, fallback_url) -> dict[str, object]:
    """The number's voice settings Ruta needs, by the names twilio-python gives them.

    `fallback_url` is the TwiML Bin holding `ivr fallback-twiml`'s output, or ANY_URL.
    """
    if not public_base_url:
        raise GoLiveError("PUBLIC_BASE_URL is not set: it must be the https URL Twilio "
                          "calls, e.g. https://ruta.example.org")
    base = _checked_url(public_base_url, "PUBLIC_BASE_URL")
    if fallback_url is not ANY_URL:
        fallback_url = _checked_url(fallback_url, "--fallback-url")
    return {
        "voice_url": f"{base}/voice",
        "voice_method": "POST",
        "status_callback": f"{base}/voice/status",
        "status_callback_method": "POST",
        "voice_fallback_url": fallback_url,
        "voice_fallback_method": "POST",
    }


def find_number(client: Client, number: str):
    """The account's IncomingPhoneNumber for `number` (E.164)."""
    if not E164.match(number):
        raise GoLiveError(f"--number must be E.164, like +576015550100, not {number!r}")
    # PhoneNumber filters by partial match and wildcards: keep the exact one only.
    found = [n for n in client.incoming_phone_numbers.list(phone_number=number)
             if n.phone_number == number]
    if not found:
        raise GoLiveError(f"{number} is not a number of this Twilio account")
    return found[0]


@dataclass(frozen=True)
class FieldState:
    """One voice setting: what Ruta wants and what Twilio holds."""

    name: str
    expected: object
    found: str | None

    @property
    def ok(self) -> bool:
        if self.expected is ANY_URL:
            return bool(self.found) and str(self.found).startswith("https://")
        return self.found == self.expected

    def expected_text(self) -> str:
        return "any https URL" if self.expected is ANY_URL else str(self.expected)


def compare(number, expected: dict[str, object]) -> list[FieldState]:
    """Each expected field against the number's current value."""
    return [FieldState(name, want, getattr(number, name, None))
            for name, want in expected.items()]


def connect(client: Client, number: str, expected: dict[str, object],
            dry_run: bool = False) -> tuple[str, list[FieldState]]:
    """Set the number's voice settings (unless `dry_run`); returns its SID and each
    field's value before the change."""
    if any(v is ANY_URL for v in expected.values()):
        raise GoLiveError("connect needs the fallback URL itself")
    found = find_number(client, number)
    before = compare(found, expected)
    if not dry_run:
        client.incoming_phone_numbers(found.sid).update(**expected)
    return found.sid, before


def check(client: Client, number: str, expected: dict[str, object]) -> list[FieldState]:
    """The number's voice settings, each ok or not."""
    return compare(find_number(client, number), expected)


# --- a real call to one hotline target ---------------------------------------------------


def caller_id(value: str | None) -> str:
    """RUTA_CALLER_ID, checked: the E.164 number of ours a test call comes from."""
    if not value or not E164.match(value):
        raise GoLiveError("set RUTA_CALLER_ID to our number in E.164 (+57...): the caller "
                          f"ID hotlines see and test calls come from (now {value or 'unset'!r})")
    return value


def check_target(target: str) -> str:
    """A target Twilio can dial, or why not (it cannot dial short codes: 13224)."""
    if not is_dialable(target):
        raise GoLiveError(f"{target!r} is not an E.164 number or a SIP URI: Twilio cannot "
                          "dial it (short codes and national forms fail with 13224); put "
                          "an E.164 number or a SIP route agreed with the line's owner in "
                          "the hotline directory")
    return target


def line_test_twiml(voice: Voice) -> str:
    """What the hotline hears: the test sentence twice in Spanish, then we hang up."""
    response = VoiceResponse()
    for _ in range(2):
        response.say(TEST_MESSAGE, voice=voice.voice, language=voice.say_language)
    response.hangup()
    return str(response)


@dataclass(frozen=True)
class LineTest:
    """What Twilio reported for a test call.

    result: answered, busy, no-answer, failed, canceled (Twilio's final call statuses,
    completed read as answered), error (the create was refused) or unknown (no final
    status within the wait).
    """

    target: str
    result: str
    call_sid: str = ""
    status: str = ""
    duration: int | None = None
    error: str = ""  # "21211: The 'To' number ... is not a valid phone number."


def place_test_call(
    client: Client,
    target: str,
    from_number: str,
    twiml: str,
    every: float = 2.0,
    limit: float = 90.0,
    sleep: Callable[[float], None] = time.sleep,
) -> LineTest:
    """Call `target` from `from_number` with `twiml` and wait for its final status."""
    check_target(target)
    try:
        call = client.calls.create(to=target, from_=from_number, twiml=twiml)
    except TwilioRestException as e:
        return LineTest(target, "error", error=f"{e.code}: {e.msg}")
    status, duration = call.status, call.duration
    deadline = time.monotonic() + limit
    while status not in FINAL_CALL_STATUSES:
        if time.monotonic() >= deadline:
            return LineTest(target, "unknown", call.sid, status or "")
        sleep(every)
        fetched = client.calls(call.sid).fetch()
        status, duration = fetched.status, fetched.duration
    result = "answered" if status == CallStatus.COMPLETED else status
    seconds = int(duration) if duration and str(duration).isdigit() else None
    return LineTest(target, result, call.sid, status, seconds)

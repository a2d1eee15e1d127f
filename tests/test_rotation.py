"""Rotating the Twilio auth token costs no call (docs/deploy.md, "Rotating the auth
token"). Whole calls are signed with twilio's own RequestValidator by the token Twilio
uses at each step, and played through a fleet of real web processes (apps) that a load
balancer takes turns on, half of them still on the old settings while a roll is under way.
"""

from __future__ import annotations

import itertools

import pytest
from conftest import BASE_URL
from twilio.request_validator import RequestValidator

from ivr import create_app
from ivr.simulator import Move, SimulatedCall, flask_transport

OLD = "old-auth-token-0123456789abcdef0"
NEW = "new-auth-token-fedcba9876543210f"
UNKNOWN = "not-our-token-00000000000000000"
MOVES = [Move("press", "1")]  # the ICBF line: /voice, a menu answer, two dials, a status
DIALS = ["busy", "completed"]


class Fleet:
    """Web processes behind a round-robin load balancer; remembers every answer's status."""

    def __init__(self, apps):
        self.clients = itertools.cycle([flask_transport(a) for a in apps])
        self.statuses: list[int] = []

    def post(self, url, params, headers):
        status, body = next(self.clients)(url, params, headers)
        self.statuses.append(status)
        return status, body


def call(fleet: Fleet, token: str, promote_after: int | None = None):
    """A whole call signed by `token`; with `promote_after`, Twilio switches to NEW (the
    console's "promote") after that many requests, mid-call."""
    simulated = SimulatedCall(BASE_URL, token, transport=fleet.post)
    if promote_after is not None:
        def post(url, params, headers):
            if len(fleet.statuses) == promote_after:
                simulated.validator = RequestValidator(NEW)  # what Twilio signs with now
                headers = {"X-Twilio-Signature":
                           simulated.validator.compute_signature(url, params)}
            return fleet.post(url, params, headers)
        simulated.transport = post
    return simulated.run(list(MOVES), list(DIALS))


@pytest.fixture
def web(app_config, redis_client):
    """web(primary, secondary=""): one web process started with those settings."""

    def start(primary: str, secondary: str = ""):
        return create_app({**app_config, "TWILIO_AUTH_TOKEN": primary,
                           "TWILIO_SECONDARY_AUTH_TOKEN": secondary})

    return start


def all_answered(statuses: list[int]) -> bool:
    """Every request got its answer: TwiML (200), or 204 for the status callback."""
    return bool(statuses) and all(status in (200, 204) for status in statuses)


def answered_by(fleet: Fleet, token: str) -> list[str]:
    """Place two calls (so each process of a two-process fleet takes requests of both)."""
    dialed = []
    for _ in range(2):
        before = len(fleet.statuses)
        transcript = call(fleet, token)
        assert all_answered(fleet.statuses[before:]), (
            f"a call signed by the token Twilio uses was refused: {fleet.statuses[before:]}")
        dialed.append(transcript.dialed)
    return dialed


def refused(fleet: Fleet, token: str) -> bool:
    """True when a call signed by `token` is refused at its first request (403)."""
    with pytest.raises(RuntimeError, match="answered HTTP 403"):
        call(fleet, token)
    return fleet.statuses[-1] == 403


def test_no_call_is_lost_at_any_step_of_an_auth_token_rotation(web):
    expected = [["+5718000918080", "+5718000522020"]] * 2  # ICBF busy, then national answers

    # 0. Before: every process knows OLD only, and Twilio signs with it.
    fleet = Fleet([web(OLD), web(OLD)])
    assert answered_by(fleet, OLD) == expected
    assert refused(fleet, UNKNOWN) and refused(fleet, NEW)

    # 1. The secondary token is created in the console. Twilio still signs with OLD.
    # 2. TWILIO_SECONDARY_AUTH_TOKEN=NEW, rolled one process at a time: mid-roll, then done.
    mid_roll = Fleet([web(OLD, NEW), web(OLD)])
    assert answered_by(mid_roll, OLD) == expected
    assert refused(mid_roll, UNKNOWN)
    rolled = Fleet([web(OLD, NEW), web(OLD, NEW)])
    assert answered_by(rolled, OLD) == expected
    assert refused(rolled, UNKNOWN)

    # 3. Promoted in the console: from now on Twilio signs with NEW, even within a call
    # that began before (its first two requests by OLD, the rest by NEW).
    before = len(rolled.statuses)
    assert call(rolled, OLD, promote_after=before + 2).dialed == expected[0]
    assert all_answered(rolled.statuses[before:])
    assert len(rolled.statuses) - before > 3  # some requests were signed by NEW
    assert answered_by(rolled, NEW) == expected
    assert refused(rolled, UNKNOWN)

    # 4. TWILIO_AUTH_TOKEN=NEW, the secondary unset, rolled again: mid-roll, then done.
    mid_roll = Fleet([web(NEW), web(OLD, NEW)])
    assert answered_by(mid_roll, NEW) == expected
    assert refused(mid_roll, UNKNOWN)
    done = Fleet([web(NEW), web(NEW)])
    assert answered_by(done, NEW) == expected
    # The old token, which may have leaked, opens nothing any more.
    assert refused(done, OLD) and refused(done, UNKNOWN)


def test_an_unset_secondary_token_never_accepts_an_empty_key_signature(web):
    """An empty secondary must not turn into an HMAC key anyone can sign with."""
    fleet = Fleet([web(OLD, "")])
    assert refused(fleet, "")
    assert answered_by(fleet, OLD)

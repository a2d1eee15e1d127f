"""What a deploy relies on: the Fallback URL's TwiML, gunicorn's settings, and a web role
that stops (SIGTERM) without losing the events of any call it answered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import redis

from ivr import store
from ivr.procfile import service_env, start_web, stop_processes, wait_for_web
from ivr.redis_server import free_port
from ivr.simulator import SimulatedCall, http_transport
from ivr.vocabulary import Event

pytestmark = pytest.mark.slow  # real servers or browsers: `-m "not slow"` skips them

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NATIONAL_SPOKEN = "0 1, 8 0 0 0, 5 2 2, 0 2 0"  # 01 8000 522 020, digit by digit


def ivr(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ivr"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=env)


# --- the Fallback URL -----------------------------------------------------------------


def test_the_fallback_twiml_gives_the_national_number_in_each_language_then_hangs_up():
    done = ivr("fallback-twiml")
    assert done.returncode == 0, done.stderr
    root = ET.fromstring(done.stdout)
    assert root.tag == "Response"
    verbs = [child.tag for child in root]
    # Static (a TwiML Bin): nothing that would post back to a Ruta that is down.
    assert set(verbs) <= {"Say", "Pause", "Hangup"}
    assert verbs[-1] == "Hangup"
    said = ["".join(say.itertext()) for say in root.iter("Say")]
    spanish = [s for s in said if "Llame a la Línea Nacional contra la Trata" in s]
    english = [s for s in said if "Please call the National Anti-Trafficking Line" in s]
    assert len(spanish) == 2 and len(english) == 2  # each read twice
    assert all(NATIONAL_SPOKEN in s for s in spanish + english)
    assert said.index(spanish[0]) < said.index(english[0])  # Spanish first


def test_the_fallback_twiml_follows_the_published_prompts(redis_server, redis_client, tmp_path):
    from ivr import menu as menu_config
    from ivr.versions import ConfigVersions

    versions = ConfigVersions(redis_client, menu_config.read_shipped())
    versions.save_draft({"prompts": {"es": {
        "out_of_service": "Estamos en mantenimiento. Marque a {hotline}: {number}."}}}, "ana")
    assert versions.publish("ana", "fallback wording") is not None
    env = dict(os.environ, REDIS_URL=redis_server.url)
    live = ivr("fallback-twiml", "--live", env=env)
    assert live.returncode == 0, live.stderr
    assert f"Estamos en mantenimiento. Marque a la Línea Nacional contra la Trata de " \
           f"Personas: {NATIONAL_SPOKEN}." in live.stdout
    shipped = ivr("fallback-twiml", env=env)  # the files, unless --live is asked for
    assert "mantenimiento" not in shipped.stdout


def test_the_fallback_twiml_refuses_prompts_without_its_sentence(tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for lang in ("es", "en"):
        text = (REPO / "prompts" / f"{lang}.toml").read_text(encoding="utf-8")
        kept = [line for line in text.splitlines() if not line.startswith("out_of_service")]
        (prompts / f"{lang}.toml").write_text("\n".join(kept) + "\n", encoding="utf-8")
    done = ivr("fallback-twiml", "--prompts-dir", str(prompts))
    assert done.returncode != 0
    assert "out_of_service" in done.stderr
    assert "<Response" not in done.stdout


# --- gunicorn's settings --------------------------------------------------------------


def test_gunicorn_refuses_a_timeout_twilio_would_not_wait_for(tmp_path, redis_server):
    env = service_env(redis_server.url, tmp_path / "spool", free_port())
    log = tmp_path / "web.log"
    web = start_web(env | {"WEB_TIMEOUT": "20"}, log)
    try:
        assert web.wait(timeout=30) != 0
    finally:
        stop_processes(web)
    assert "WEB_TIMEOUT=20: keep it under 15 s" in log.read_text()


# --- a web process stopped mid-flood ----------------------------------------------------


def test_a_web_role_stopped_mid_flood_keeps_the_events_of_every_call_it_answered(tmp_path):
    """SIGTERM (a deploy) while calls arrive: every call that got TwiML has its events in
    Redis; the others got no answer at all (Twilio then plays the Fallback URL), and
    none got an error."""
    from ivr.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    port = free_port()
    env = service_env(server.url, tmp_path / "spool", port)
    log = tmp_path / "web.log"
    web = start_web(env, log)
    base = f"http://127.0.0.1:{port}"
    answered: dict[str, int] = {}
    refused = 0
    stop = threading.Event()
    lock = threading.Lock()

    def place_calls(n: int):
        nonlocal refused
        caller = SimulatedCall(base, env["TWILIO_AUTH_TOKEN"], http_transport)
        i = 0
        while not stop.is_set():
            sid = f"CA{n:02d}{i:030d}"
            i += 1
            try:
                status, _ = caller.signed_post(base + "/voice", {
                    "CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+573001234567",
                    "To": "+576015550100", "CallStatus": "ringing", "Direction": "inbound"})
            except OSError:  # refused or reset: the server is going away
                with lock:
                    refused += 1
                continue
            with lock:
                answered[sid] = status

    try:
        wait_for_web(base, web, log, timeout=30)
        callers = [threading.Thread(target=place_calls, args=(n,)) for n in range(8)]
        for t in callers:
            t.start()
        while len(answered) < 150 and web.poll() is None:  # in the middle of a flood
            stop.wait(0.02)
        web.send_signal(signal.SIGTERM)
        assert web.wait(timeout=30) == 0, log.read_text()[-2000:]
        stop.set()
        for t in callers:
            t.join(timeout=30)

        assert answered and refused  # calls were answered, and came on after the stop
        assert set(answered.values()) == {200}, "a call got an error, not TwiML"
        r = redis.Redis.from_url(server.url, decode_responses=True)
        in_redis = {Event.from_json(fields["e"]).call
                    for _, fields in r.xrange(store.EVENTS)}
        assert in_redis == set(answered)
    finally:
        stop.set()
        stop_processes(web)
        server.stop()

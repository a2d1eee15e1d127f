"""Rotating CALLER_ID_KEY (ivr.caller_keys): old pseudonyms stay as they are, new calls
get new ones, and the reports say from when. Real Redis, the real app and its webhooks,
the real drain, `ivr` through click's CliRunner.

The web records each key the first time it uses one, by fingerprint; the report pages,
the CSV and `ivr report` read those moments and run without the key.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

import redis
from click.testing import CliRunner
from test_admin import Staff
from test_browser import drain

from ivr import caller_keys, create_app, services, store
from ivr.caller_keys import KeyEpochs
from ivr.cli import main as ivr_main
from ivr.redis_server import RedisServer, free_port
from ivr.simulator import Move, SimulatedCall, flask_transport
from ivr.versions import AuditAction
from ivr.vocabulary import BOGOTA

PHONE = "+573001234567"
OLD_KEY, NEW_KEY = "the-key-before-the-rotation", "the-key-after-the-rotation"
NOTICE_ES = "Los seudónimos de quienes llaman cambiaron el"
NOTICE_EN = "Caller pseudonyms changed on"


def ivr(redis_server, *args):
    """`ivr ARGS` as an operator runs it: with REDIS_URL and no CALLER_ID_KEY at all."""
    runner = CliRunner(env={"REDIS_URL": redis_server.url, "USER": "ops-laura",
                            "CALLER_ID_KEY": None})
    return runner.invoke(ivr_main, list(args))


def web(app_config, key: str):
    return create_app({**app_config, "CALLER_ID_KEY": key})


def call(app, caller: str = PHONE) -> str:
    """One whole signed call through `app`'s webhooks; returns its CallSid."""
    token = app.config["TWILIO_AUTH_TOKEN"]
    simulated = SimulatedCall("http://ruta.test", token, transport=flask_transport(app),
                              caller=caller)
    return simulated.run([Move("press", "1")], ["completed"]).call_sid


def everything_in(r: redis.Redis) -> str:
    """Every key and value Redis holds, as one text (to look for a secret in it)."""
    parts = []
    for key in r.scan_iter(count=1000):
        kind = r.type(key)
        value = {"string": lambda k: r.get(k), "hash": r.hgetall, "set": r.smembers,
                 "zset": lambda k: r.zrange(k, 0, -1, withscores=True),
                 "list": lambda k: r.lrange(k, 0, -1), "stream": r.xrange}[kind](key)
        parts.append(f"{key} {value}")
    return "\n".join(parts)


def test_the_web_records_its_keys_fingerprint_once_and_never_the_key(app_config, redis_client):
    web(app_config, OLD_KEY)
    first = KeyEpochs.read(redis_client).epochs
    assert [e.fingerprint for e in first] == [caller_keys.fingerprint(OLD_KEY.encode())]
    assert abs(first[0].since - datetime.now(BOGOTA)) < timedelta(seconds=30)
    web(app_config, OLD_KEY)  # another web process, same key: the first moment stays
    assert KeyEpochs.read(redis_client).epochs == first
    assert KeyEpochs.read(redis_client).changes() == []  # the first key changed nothing
    # A rotation done only by changing the environment is recorded as well.
    web(app_config, NEW_KEY)
    later = KeyEpochs.read(redis_client)
    assert [e.fingerprint for e in later.changes()] == [
        caller_keys.fingerprint(NEW_KEY.encode())]
    held = everything_in(redis_client)
    assert OLD_KEY not in held and NEW_KEY not in held


def test_a_key_first_used_while_redis_was_down_is_recorded_by_the_next_call(app_config,
                                                                             tmp_path):
    port = free_port()
    app = web({**app_config, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}, NEW_KEY)
    server = RedisServer(tmp_path / "late-redis", port=port).start()
    try:
        r = redis.Redis.from_url(server.url, decode_responses=True)
        assert KeyEpochs.read(r).epochs == []  # started without Redis: nothing recorded
        call(app)
        assert [e.fingerprint for e in KeyEpochs.read(r).epochs] == [
            caller_keys.fingerprint(NEW_KEY.encode())]
    finally:
        server.stop()


def test_rotate_prints_a_new_key_once_and_keeps_only_its_fingerprint(app_config,
                                                                     redis_server,
                                                                     redis_client):
    web(app_config, OLD_KEY)
    done = ivr(redis_server, "caller-key", "rotate")
    assert done.exit_code == 0, done.output
    key = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert "CALLER_ID_KEY" in done.stderr and "not the worker" in done.stderr
    fingerprint = caller_keys.fingerprint(key.encode())
    made = redis_client.xrevrange(store.AUDIT, count=1)[0][1]
    assert (made["who"], made["action"], made["detail"]) == (
        "cli:ops-laura", AuditAction.CALLER_KEY_MADE, fingerprint)
    # Nothing changes for callers until the web runs with it.
    assert KeyEpochs.read(redis_client).changes() == []
    assert key not in everything_in(redis_client)
    web(app_config, key)
    history = ivr(redis_server, "caller-key", "history").output.splitlines()
    assert [line.split()[0] for line in history] == [
        caller_keys.fingerprint(OLD_KEY.encode()), fingerprint]
    assert history[-1].endswith("(newest)")
    assert ivr(redis_server, "caller-key", "rotate").stdout.strip() != key


def test_the_reports_say_when_pseudonyms_changed_and_read_no_key(app_config, redis_server,
                                                                 redis_client):
    """The same caller before and after a rotation: two callers, no repeat call, and the
    dashboard, the CSV and `ivr report` say why, from when."""
    before = call(web(app_config, OLD_KEY))
    drain(redis_server.url)
    rotated = web(app_config, NEW_KEY)
    after = call(rotated)
    drain(redis_server.url)
    change = KeyEpochs.read(redis_client).changes()[0].since

    reports = create_app({**app_config, "CALLER_ID_KEY": ""})  # a web host without the key
    spanish = Staff(reports, "ana", "supervisor", lang="es")
    page = spanish.page("/reports?range=today")
    notice = re.search(rf"{NOTICE_ES} ([^:]+:\d\d[^:]*):", page)
    assert notice, page
    assert f"{change:%d/%m/%Y}, {change:%-I:%M}" in notice[1]
    assert re.search(r'data-stat="repeat"><span class="n">0</span>', page)
    yesterday = (datetime.now(BOGOTA) - timedelta(days=1)).date().isoformat()
    assert NOTICE_ES not in spanish.page(f"/reports?from={yesterday}&to={yesterday}")

    rows = {row["call_sid"]: row for row in csv.DictReader(io.StringIO(
        spanish.page("/reports/calls.csv?range=today")))}
    assert rows[before]["caller"] != rows[after]["caller"]  # one caller, two pseudonyms
    assert datetime.fromisoformat(rows[after]["caller_key_since"]) == change.replace(
        microsecond=0)
    assert datetime.fromisoformat(rows[before]["caller_key_since"]) < change

    english = ivr(redis_server, "report", "--lang", "en")
    assert english.exit_code == 0, english.output
    assert f"{NOTICE_EN} {change:%Y-%m-%d %H:%M}" in english.output


def test_one_key_all_along_counts_the_repeat_call_and_says_nothing(app, redis_server):
    call(app)
    call(app)
    drain(redis_server.url)
    page = Staff(app, "ana", "supervisor", lang="es").page("/reports?range=today")
    assert re.search(r'data-stat="repeat"><span class="n">1</span>', page)
    assert NOTICE_ES not in page
    assert services.of(app).caller_key.recorded


def test_a_host_without_the_key_records_no_change_of_pseudonyms(app_config, redis_client):
    """A reports host (no CALLER_ID_KEY) makes a throwaway key: starting it must not show
    supervisors a change of pseudonyms that no caller met."""
    web(app_config, OLD_KEY)
    create_app({**app_config, "CALLER_ID_KEY": ""})
    assert [e.fingerprint for e in KeyEpochs.read(redis_client).epochs] == [
        caller_keys.fingerprint(OLD_KEY.encode())]

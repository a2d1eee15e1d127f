"""Calls counted end to end through the real write path.

Webhooks emit events (ivr.events) to the Redis stream, or to the spool when Redis is
down; RQ drain jobs (workers.drain) fold them into call records and day counters
(ivr.store); `ivr report` shows the counters. Everything here is real: redis-server,
`rq worker` subprocesses of workers.worker.RutaWorker, gunicorn, Twilio-signed requests.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from click.testing import CliRunner
from conftest import CONNECTED_HOTLINES, redis_contents, wait_until, wait_until_or_none
from rq import Queue
from twilio.request_validator import RequestValidator

from ivr import create_app, procfile, redis_url, store
from ivr.cli import main
from ivr.events import Emitter, Spool
from ivr.procfile import Supervised, service_env, stop_processes, wait_for_web
from ivr.redis_server import RedisServer, free_port
from ivr.simulator import Move, SimulatedCall, flask_transport, http_transport
from ivr.vocabulary import (
    CallStatus,
    Count,
    DialStatus,
    Event,
    EventKind,
    Outcome,
    counter,
    day_of,
    split_counter,
)
from workers.drain import Drainer

pytestmark = pytest.mark.slow  # real servers or browsers: `-m "not slow"` skips them

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BASE_URL = "http://ruta.test"
NATIONAL = "+5718000522020"
ICBF = "+5718000918080"  # the shipped ICBF line's one target; "+5716000144" comes first
# on the connected directory
CALLER = "+573001234567"
DIGITS = "3001234567"  # the caller's number without the country code: never stored


@pytest.fixture
def app_config(app_config):
    """Every line with a target Twilio can dial (conftest.CONNECTED_HOTLINES), so the
    calls in process below ring the chains they count (Labour, then the national line;
    emergency, Police, national). The calls over HTTP (the outage) use the shipped
    directory."""
    return {**app_config, "RUTA_MENU_OVERRIDES": CONNECTED_HOTLINES}


# --- helpers ------------------------------------------------------------------------------


def today() -> str:
    return day_of(time.time())


def counters(r: redis.Redis, day: str) -> dict[str, int]:
    return store.Store(redis_url.decoding(r)).day_counters(day)


def report(url: str, day: str) -> dict:
    """`ivr report --day DAY --json`, as the command prints it."""
    result = CliRunner(env={"REDIS_URL": url}).invoke(main, ["report", "--day", day, "--json"])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return json.loads(result.output)


def report_view(printed: dict) -> dict:
    """The report's counts by group: calls, category, lang, outcome, hangup, hotline."""
    return {
        "calls": printed["calls"],
        "category": {c: sum(per_day) for c, per_day in printed["categories"].items()},
        "lang": printed["languages"],
        "outcome": printed["outcomes"],
        "hangup": {q["question"]: q["hung_up"] for q in printed["funnel"] if q["hung_up"]},
        "hotline": {h["hotline"]: {"transfers": h["transfers"], "results": h["results"]}
                    for h in printed["hotlines"]},
    }


@contextlib.contextmanager
def running(args: list[str], env: dict, log: Path):
    """A subprocess with its output in `log`, always ended on the way out."""
    proc = procfile.start(args, env, log)
    try:
        yield proc
    finally:
        stop_processes(proc)


def burst_worker(url: str, spool_dir: Path, *extra: str) -> str:
    """Run `rq worker --burst` until the queue is empty; return its output."""
    env = service_env(url, spool_dir)
    done = subprocess.run([*procfile.commands(env)["worker"], "--burst", *extra], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def rq_queue(url: str) -> Queue:
    return Queue(store.QUEUE, connection=redis.Redis.from_url(url))


def stream_events(r: redis.Redis) -> list[Event]:
    return [Event.from_json(fields["e"]) for _, fields in r.xrange(store.EVENTS)]


# The calls of a varied day: (name, caller's moves, hotlines' answers, numbers dialed).
DAY = [
    ("child by keypad", [Move("press", "1")], [], ["+5716000144"]),
    ("labour by speech, busy then completed", [Move("say", "me ofrecieron un trabajo falso")],
     ["busy", "completed"], ["+5716000120", NATIONAL]),
    ("three silences", [Move("silent")] * 3, [], [NATIONAL]),
    ("emergency, every line failed", [Move("press", "0")], ["failed"] * 3,
     ["+5716000123", "+5716000155", NATIONAL]),
    ("hangs up at the first question", [], [], []),
    ("english migrant", [Move("press", "9"), Move("press", "3")], [], [NATIONAL]),
    ("hangs up at the report question", [Move("press", "4")], [], []),
    ("emergency by speech, answered", [Move("say", "es una emergencia")], [],
     ["+5716000123"]),
]

DAY_REPORT = {
    "calls": 8,
    "category": {"child": 1, "labour": 1, "unclear": 1, "emergency": 2, "none": 1,
                 "migrant": 1, "report": 1},
    "lang": {"es": 7, "en": 1},
    "outcome": {"transferred": 4, "transfer_failed": 1, "abandoned_in_menu": 2,
                "emergency_transferred": 1},
    "hangup": {"welcome": 1, "report": 1},
    "hotline": {
        "icbf": {"transfers": 1, "results": {"completed": 1}},
        "labour": {"transfers": 1, "results": {"busy": 1}},
        "national": {"transfers": 4, "results": {"completed": 3, "failed": 1}},
        "emergency": {"transfers": 2, "results": {"failed": 1, "completed": 1}},
        "police": {"transfers": 1, "results": {"failed": 1}},
    },
}

DAY_OUTCOMES = ["transferred", "transferred", "transferred", "transfer_failed",
                "abandoned_in_menu", "transferred", "abandoned_in_menu",
                "emergency_transferred"]


def place_the_day(simulate) -> list:
    calls = []
    for name, moves, dials, dialed in DAY:
        call = simulate(moves, dials)
        assert call.dialed == dialed, name
        calls.append(call)
    return calls


# --- a. a day of calls, written by a real worker, in the report ---------------------------


def test_a_day_of_calls_is_reported_exactly(simulate, redis_server, redis_client, app):
    day = today()
    calls = place_the_day(simulate)
    assert redis_client.xlen(store.EVENTS) > 0  # nothing is written before a worker runs
    assert counters(redis_client, day) == {}

    burst_worker(redis_server.url, Path(app.config["RUTA_SPOOL_DIR"]))

    printed = report(redis_server.url, day)
    assert (printed["from"], printed["to"]) == (day, day)
    assert report_view(printed) == DAY_REPORT
    assert printed["emergency_transfers"] == 1
    assert printed["reached_person"] == 5  # transferred and emergency_transferred
    assert printed["in_progress"] == 0
    assert printed["repeat_calls"] == len(DAY) - 1  # the same caller all day
    assert {q["question"]: q["reached"] for q in printed["funnel"]} == {"welcome": 8,
                                                                       "report": 1}
    st = store.Store(redis_client)
    assert [st.call(c.call_sid).outcome.value for c in calls] == DAY_OUTCOMES
    assert st.call(calls[5].call_sid).lang == "en"
    assert st.calls_page([day], 0, 1000)[1] == len(DAY)
    assert st.backlog() == {"waiting": 0, "pending": 0}
    assert st.dead_letters() == []
    counted = counters(redis_client, day)
    assert counted[Count.NO_INPUT] == 3
    assert sum(v for k, v in counted.items() if split_counter(k)[0] == Count.HOUR) == len(DAY)


def test_writing_every_event_again_changes_nothing(simulate, redis_client):
    place_the_day(simulate)
    Drainer(redis_url.decoding(redis_client)).run()
    first = counters(redis_client, today())
    assert first[Count.CALLS] == len(DAY)
    # Everything again: the log of written events replayed into the stream.
    for _, fields in redis_client.xrange(store.LOG):
        redis_client.xadd(store.EVENTS, fields)
    Drainer(redis_url.decoding(redis_client)).run()
    assert counters(redis_client, today()) == first
    assert redis_client.xlen(store.EVENTS) == 0


def test_an_events_text_reaches_redis_as_its_json_says(redis_server, redis_client, tmp_path):
    """Accents, an emoji, a number past 32 bits: an event is kept byte for byte as its
    JSON, on the webhooks' connection (and after Redis lost the script)."""
    emitter = Emitter(redis.Redis.from_url(redis_server.url), Spool(tmp_path / "spool"))
    sid = "CA" + "1" * 32
    sent = [Event(id=f"{sid}:2.{i}", call=sid, kind=EventKind.MENU_ANSWERED.value, step=2,
                  at=1795380004.25, started=1795380000, lang="es",
                  data={"hotline": "la Línea Púrpura ¿sí? 😀", "n": 2**40 + i})
            for i in range(2)]
    assert emitter.emit(sent[:1]) == "redis"
    redis_client.script_flush()
    assert emitter.emit(sent[1:]) == "redis"
    kept = [fields["e"] for _, fields in redis_client.xrange(store.EVENTS)]
    assert kept == [e.to_json() for e in sent]
    assert json.loads(kept[0])["data"]["hotline"] == "la Línea Púrpura ¿sí? 😀"


def test_calls_are_counted_after_redis_drops_the_webs_connections_and_its_scripts(
        simulate, redis_client, app_config):
    """A web thread keeps its Redis connection between calls: one Redis closed while idle
    (its `timeout`, a proxy, a restart) and a script cache Redis emptied spool nothing."""
    simulate([Move("press", "1")])
    redis_client.script_flush()
    simulate([Move("press", "1")])
    assert redis_client.client_kill_filter(_type="normal", skipme=True) >= 1
    simulate([Move("press", "1")])
    assert Spool(app_config["RUTA_SPOOL_DIR"]).size() == 0
    Drainer(redis_url.decoding(redis_client)).run()
    assert counters(redis_client, today())[Count.CALLS] == 3


# --- b. Twilio repeating its callbacks ---------------------------------------------------


def repeating_transport(app, repeated: list, paths=("/voice/dial", "/voice/status")):
    """Posts every /voice/dial and /voice/status request twice, as Twilio may."""
    post = flask_transport(app)

    def send(url, params, headers):
        first = post(url, params, headers)
        if urlsplit(url).path in paths:
            repeated.append((url, params, headers))
            again = post(url, params, headers)
            assert again == first  # the same request gets the same answer
        return first

    return send


def test_repeated_twilio_callbacks_are_counted_once(app, redis_client):
    repeated = []
    token = app.config["TWILIO_AUTH_TOKEN"]
    caller = SimulatedCall(BASE_URL, token, transport=repeating_transport(app, repeated))
    labour = caller.run([Move("press", "2")], ["busy", "completed"])
    child = caller.run([Move("press", "1")], ["no-answer", "busy", "completed"])
    assert labour.dialed == ["+5716000120", NATIONAL]
    assert child.dialed == ["+5716000144", ICBF, NATIONAL]
    assert len(repeated) == (2 + 1) + (3 + 1)  # each dial result and each status callback

    r = redis_url.decoding(redis_client)
    Drainer(r).run()
    day = today()
    expected = {
        Count.CALLS: 2,
        counter(Count.TRANSFER, "labour"): 1,
        counter(Count.DIAL, "labour", DialStatus.BUSY): 1,
        counter(Count.TRANSFER, "icbf"): 2,
        counter(Count.DIAL, "icbf", DialStatus.NO_ANSWER): 1,
        counter(Count.DIAL, "icbf", DialStatus.BUSY): 1,
        counter(Count.TRANSFER, "national"): 2,
        counter(Count.DIAL, "national", DialStatus.COMPLETED): 2,
        counter(Count.OUTCOME, Outcome.TRANSFERRED): 2,
        counter(Count.CATEGORY, "labour"): 1, counter(Count.CATEGORY, "child"): 1,
        counter(Count.LANG, "es"): 2,
    }
    first = counters(redis_client, day)
    assert {k: first.get(k) for k in expected} == expected
    assert sum(v for k, v in first.items() if split_counter(k)[0] == Count.OUTCOME) == 2
    st = store.Store(r)
    assert st.call(labour.call_sid).hotlines_text() == "labour:busy > national:completed"
    assert st.call(child.call_sid).talk_seconds == 95  # one answered transfer, not two
    logged = r.xlen(store.LOG)

    # Twilio tries yet again after everything was written: still nothing changes.
    post = flask_transport(app)
    for url, params, headers in repeated:
        assert post(url, params, headers)[0] in (200, 204)
    assert Drainer(r).run().written == 0
    assert counters(redis_client, day) == first
    assert r.xlen(store.LOG) == logged


# --- c. events out of order ----------------------------------------------------------------


def nonzero(counted: dict[str, int]) -> dict[str, int]:
    """A day's counters without those that went up and back down to 0."""
    return {k: v for k, v in counted.items() if v}


def write_one_by_one(r, events: list[Event], day: str) -> dict[str, int]:
    """Write each event as its own batch; no counter may ever go below zero."""
    r.flushdb()
    st = store.Store(r)
    for e in events:
        st.write_batch([e], [], None)
        negative = {k: v for k, v in st.day_counters(day).items() if v < 0}
        assert not negative, f"after {e.id} ({e.kind}): {negative}"
    return st.day_counters(day)


def records(r, sids, day: str) -> dict[str, dict]:
    """What a supervisor sees of each call, and where the day's call list puts it."""
    st = store.Store(r)
    listed = dict(r.zrange(store.day_calls_key(day), 0, -1, withscores=True))
    out = {}
    for sid in sids:
        record = st.call(sid)
        out[sid] = {"outcome": record.outcome, "category": record.category,
                    "lang": record.lang, "path": record.path_text(),
                    "dials": record.hotlines_text(), "status": record.status,
                    "dimensions": record.dimensions(), "day": record.day,
                    "started": record.started, "listed_at": listed.get(sid)}
    return out


def test_events_out_of_order_give_the_same_counts(simulate, redis_client):
    calls = place_the_day(simulate)
    events = stream_events(redis_client)
    sids = [c.call_sid for c in calls]
    day = today()

    in_order = write_one_by_one(redis_client, events, day)
    assert in_order[Count.CALLS] == len(DAY)
    expected_records = records(redis_client, sids, day)
    assert all(r["listed_at"] for r in expected_records.values())
    redis_client.flushdb()
    store.Store(redis_client).write_batch(events, [], None)  # all in one batch
    assert nonzero(store.Store(redis_client).day_counters(day)) == nonzero(in_order)

    # The status callbacks first: each call is known only by its end for a while.
    ends = [e for e in events if e.kind == EventKind.CALL_ENDED]
    rest = [e for e in events if e.kind != EventKind.CALL_ENDED]
    end_first = write_one_by_one(redis_client, ends + rest, day)
    assert nonzero(end_first) == nonzero(in_order)
    assert records(redis_client, sids, day) == expected_records

    backwards = write_one_by_one(redis_client, events[::-1], day)
    assert nonzero(backwards) == nonzero(in_order)
    assert records(redis_client, sids, day) == expected_records

    shuffled = list(events)
    random.Random(20260310).shuffle(shuffled)
    redis_client.flushdb()
    st = store.Store(redis_client)
    for i in range(0, len(shuffled), 7):  # in small batches, each a transaction
        st.write_batch(shuffled[i:i + 7], [], None)
        assert min(st.day_counters(day).values()) >= 0
    assert nonzero(st.day_counters(day)) == nonzero(in_order)
    assert records(redis_client, sids, day) == expected_records
    assert redis_client.xlen(store.LOG) == len(events)  # each written once


# --- d. entries that are not events --------------------------------------------------------


def test_a_bad_stream_entry_goes_to_the_dead_letters_and_the_rest_is_written(
        simulate, redis_server, redis_client):
    first = simulate([Move("press", "1")])
    bad_ids = {
        redis_client.xadd(store.EVENTS, {"e": "this is not an event"}): "not JSON",
        redis_client.xadd(store.EVENTS, {"other": "field"}): "not JSON",
        redis_client.xadd(store.EVENTS, {"e": json.dumps({"id": "CAx:1.0", "call": "CAx"})}):
            "missing kind, step, at, started",
        # Parses, but its start is no moment at all: writing it fails.
        redis_client.xadd(store.EVENTS, {"e": json.dumps({
            "id": "CAy:1.0", "call": "CAy", "kind": EventKind.CALL_STARTED, "step": 1,
            "at": time.time(), "started": float("nan")})}): "write failed",
    }
    second = simulate([Move("press", "2")], ["busy", "completed"])

    stats = Drainer(redis_url.decoding(redis_client)).run()
    assert stats.dead == 4

    st = store.Store(redis_client)
    assert st.call(first.call_sid).outcome is Outcome.TRANSFERRED
    assert st.call(second.call_sid).hotlines_text() == "labour:busy > national:completed"
    assert st.call("CAx") is None and st.call("CAy") is None
    counted = counters(redis_client, today())
    assert counted[Count.CALLS] == 2
    assert counted[counter(Count.OUTCOME, Outcome.TRANSFERRED)] == 2
    assert st.backlog() == {"waiting": 0, "pending": 0}

    dead = {fields["entry"]: fields for _, fields in st.dead_letters()}
    assert set(dead) == set(bad_ids)
    for entry_id, reason in bad_ids.items():
        assert reason in dead[entry_id]["reason"], dead[entry_id]
    assert dead[next(iter(bad_ids))]["e"] == "this is not an event"

    result = CliRunner(env={"REDIS_URL": redis_server.url}).invoke(main, ["events", "dead"])
    assert result.exit_code == 0, result.output
    assert "4 dead letter(s)" in result.output
    for _, fields in st.dead_letters():  # shown by the id the entry had in the stream
        assert f"{fields['entry']}  {fields['reason']}" in result.output
    assert "unreadable event: not JSON" in result.output
    assert "this is not an event" in result.output

    # A second drain files nothing twice.
    Drainer(redis_url.decoding(redis_client)).run()
    assert len(st.dead_letters()) == 4


# --- e. Redis down while calls come in -----------------------------------------------------


ROUTES = [  # (moves, dial results, numbers dialed, category): the shipped directory
    ([Move("press", "1")], [], [ICBF], "child"),
    ([Move("say", "mi hija de doce años")], ["busy", "completed"], [ICBF, NATIONAL], "child"),
    # The Ministry of Labour has no target yet: its number is read, the national line rings.
    ([Move("say", "me ofrecieron un trabajo falso")], [], [NATIONAL], "labour"),
    ([Move("press", "3")], [], [NATIONAL], "migrant"),
    ([Move("say", "no sé qué hacer")], [], [NATIONAL], "other"),
]


class CallPlacer(threading.Thread):
    """Places calls over HTTP one after another until told to stop."""

    def __init__(self, base: str, token: str):
        super().__init__(daemon=True)
        self.base, self.token = base, token
        self.placed: list[tuple[float, int, object]] = []  # (start, route, transcript)
        self.statuses: list[tuple[str, int]] = []
        self.errors: list[BaseException] = []
        self.halt = threading.Event()

    def transport(self, url, params, headers):
        status, body = http_transport(url, params, headers)
        self.statuses.append((urlsplit(url).path, status))
        return status, body

    def run(self):
        i = 0
        while not self.halt.is_set():
            moves, dials, _, _ = ROUTES[i % len(ROUTES)]
            began = time.monotonic()
            try:
                call = SimulatedCall(self.base, self.token, transport=self.transport,
                                     caller=CALLER).run(moves, dials)
                self.placed.append((began, i % len(ROUTES), call))
            except Exception as e:  # a call that could not be played to its end
                self.errors.append(e)
            i += 1
            time.sleep(0.02)


@dataclass
class Outage:
    """What happened when Redis went down for 3 s while calls came in."""

    redis_url: str
    placer: CallPlacer
    down_at: float
    up_at: float
    spooled: int  # events in the spool just before Redis came back
    spool_text: str
    drain_running_at_stop: bool
    worker_exits: list[int]  # exit codes of exits nobody asked for
    counted: dict  # the state once written (or at the deadline)
    converged: bool
    days: list[str]
    logs: str


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    """Own Redis (kept on disk), gunicorn with 2 workers, a RutaWorker started with the
    Procfile's line and kept running; calls over HTTP; Redis stopped for 3 s mid-burst
    and started again on its port. Nothing replays the spool but the worker's sweep."""
    tmp = tmp_path_factory.mktemp("outage")
    server = RedisServer(tmp / "redis", persist=True).start()
    spool_dir = tmp / "spool"
    token = "pipeline-token"
    env = service_env(server.url, spool_dir, token=token)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web_log, worker_log = tmp / "gunicorn.log", tmp / "worker.log"
    r = redis.Redis.from_url(server.url, decode_responses=True)
    st = store.Store(r)
    worker = Supervised(procfile.commands(env)["worker"], env, worker_log)
    placer = None
    day = today()
    try:
        with running(procfile.commands(env | {"PORT": str(port)})["web"], env,
                     web_log) as web:
            worker.start()
            wait_for_web(base, web, web_log, timeout=20)
            placer = CallPlacer(base, token)
            placer.start()
            wait_until(lambda: len(placer.placed) >= 10, 20, "calls placed with Redis up")
            # Stop Redis while the worker runs a drain (it stays while calls come in).
            started_jobs = rq_queue(server.url).started_job_registry
            drain_running = bool(wait_until_or_none(lambda: started_jobs.count, 10))
            server.stop()
            down_at = time.monotonic()
            time.sleep(3)  # calls go on with Redis down
            spooled = Spool(spool_dir).size()
            spool_text = "".join(p.read_text() for p in Spool(spool_dir).files())
            server.start()
            up_at = time.monotonic()
            time.sleep(1.5)
            placer.halt.set()
            placer.join(timeout=30)
            n = len(placer.placed)

            def state():
                days = sorted({day, today()})
                total = Counter()
                for d in days:
                    total.update(st.day_counters(d))
                return {"calls": total[Count.CALLS], "spooled": Spool(spool_dir).size(),
                        **st.backlog()}

            # The worker's sweep replays the spool and starts a drain.
            converged = wait_until_or_none(
                lambda: (lambda s: s["calls"] >= n and not s["spooled"] and not s["waiting"])(
                    state()), 40)
            time.sleep(0.5)  # anything still on its way would show as a double count
        worker.stop()
        yield Outage(
            redis_url=server.url, placer=placer, down_at=down_at, up_at=up_at,
            spooled=spooled, spool_text=spool_text, drain_running_at_stop=drain_running,
            worker_exits=list(worker.exits), counted=state(),
            converged=bool(converged), days=sorted({day, today()}),
            logs=web_log.read_text(errors="replace") + worker_log.read_text(errors="replace"),
        )
    finally:
        if placer is not None:
            placer.halt.set()
            placer.join(timeout=30)
        worker.stop()
        server.stop()


def test_every_call_is_routed_while_redis_is_down(outage):
    placer = outage.placer
    assert not placer.is_alive()
    assert placer.errors == []
    assert {status for _, status in placer.statuses} <= {200, 204}, placer.statuses
    for _, route, call in placer.placed:
        assert call.hung_up_by == "ruta", call.lines
        assert call.dialed == ROUTES[route][2]
    during = [p for p in placer.placed if outage.down_at < p[0] < outage.up_at - 0.5]
    assert len(during) >= 5, "too few calls while Redis was down to show anything"
    assert outage.spooled > 0, "nothing was spooled while Redis was down"
    assert "webhook failed" not in outage.logs  # no caller was sent to the safe transfer


def test_after_redis_comes_back_every_call_is_counted_once(outage):
    placed = outage.placer.placed
    n = len(placed)
    assert outage.converged, f"{n} calls placed; once Redis came back: {outage.counted}"
    r = redis.Redis.from_url(outage.redis_url, decode_responses=True)
    st = store.Store(r)
    total = Counter()
    for d in outage.days:
        total.update(st.day_counters(d))
    assert total[Count.CALLS] == n
    assert total[counter(Count.OUTCOME, Outcome.TRANSFERRED)] == n
    expected = Counter(ROUTES[route][3] for _, route, _ in placed)
    assert {c: total[counter(Count.CATEGORY, c)] for c in expected} == dict(expected)
    assert total[counter(Count.DIAL, "icbf", DialStatus.BUSY)] == sum(
        ROUTES[route][1][:1] == ["busy"] for _, route, _ in placed)
    assert total[counter(Count.LANG, "es")] == n
    listed = [sid for d in outage.days for sid in r.zrange(store.day_calls_key(d), 0, -1)]
    assert sorted(listed) == sorted(call.call_sid for _, _, call in placed)
    for _, _, call in placed:
        record = st.call(call.call_sid)
        assert record is not None, call.call_sid
        assert {"1.0", "end"} <= record.seen
        assert record.outcome is Outcome.TRANSFERRED
    assert st.backlog() == {"waiting": 0, "pending": 0}
    assert st.dead_letters() == []


def test_the_worker_survives_redis_going_down_during_a_drain(outage):
    """Regression: when Redis went away while a drain job ran (under steady calls a drain
    is nearly always running), RQ's bookkeeping after the failed job needed Redis too and
    the worker logged "found an unhandled exception, quitting..." and exited, leaving
    nobody to replay the spool. (A supervisor thread would restart it, as a Procfile
    platform does, so the counts above are checked either way.)
    """
    assert outage.drain_running_at_stop
    assert outage.worker_exits == [], "the worker exited while Redis was down"


# --- f. a worker killed mid-drain ---------------------------------------------------------


CATEGORIES = ["child", "labour", "migrant", "other"]


def a_calls_events(i: int, t0: int) -> list[Event]:
    sid = f"CA{i:032d}"
    category = CATEGORIES[i % len(CATEGORIES)]
    hotline = {"child": "icbf", "labour": "labour"}.get(category, "national")
    at = t0 + 0.5

    def ev(suffix, kind, step, offset, **data):
        return Event(id=f"{sid}:{suffix}", call=sid, kind=kind, step=step, at=at + offset,
                     started=t0, lang="es", asked="welcome" if step == 1 else "", data=data)

    return [
        ev("1.0", EventKind.CALL_STARTED, 1, 0, lang="es", caller="c_0123456789abcdef0123"),
        ev("2.0", EventKind.MENU_ANSWERED, 2, 4, node="welcome", input="dtmf",
           option=str(CATEGORIES.index(category) + 1), attempt=0, category=category),
        ev("2.1", EventKind.TRANSFER_STARTED, 2, 4, hotline=hotline, target=0),
        ev("3.0", EventKind.TRANSFER_ENDED, 3, 60, hotline=hotline, target=0,
           status=DialStatus.COMPLETED, duration=50),
        ev("end", EventKind.CALL_ENDED, 1 << 20, 61, status=CallStatus.COMPLETED, duration=61),
    ]


def test_a_worker_killed_mid_drain_loses_nothing_and_counts_nothing_twice(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    spool_dir = tmp_path / "spool"
    env = service_env(server.url, spool_dir)
    n = 3000
    t0 = int(time.time())
    day = day_of(t0)
    try:
        raw = redis.Redis.from_url(server.url)
        r = redis.Redis.from_url(server.url, decode_responses=True)
        emitter = Emitter(raw, Spool(spool_dir))
        events = [e for i in range(n) for e in a_calls_events(i, t0)]
        for i in range(0, len(events), 500):
            assert emitter.emit(events[i:i + 500]) == "redis"
        assert r.xlen(store.EVENTS) == len(events) == 5 * n

        def calls():
            return int(r.hget(store.day_key(day), Count.CALLS) or 0)

        with running(procfile.commands(env)["worker"], env,
                     tmp_path / "worker1.log") as first:
            wait_until(lambda: calls() > 0, 30, "the first worker writing", every=0.002)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        at_kill = calls()
        assert 0 < at_kill < n, f"killed too late: {at_kill} of {n} calls already written"
        time.sleep(0.5)
        assert calls() == at_kill  # nobody writes any more

        # The dead drain's lock lasts 15 s and its unacknowledged entries are claimed
        # once idle 20 s: the new worker's sweep (every 10 s) starts the drain that does.
        # (Started with the Procfile's line, the sweep once ran only every 10 minutes:
        # rq's CLI passes its own --maintenance-interval.)
        with running(procfile.commands(env)["worker"], env,
                     tmp_path / "worker2.log"):
            wait_until(lambda: calls() >= n and r.xlen(store.EVENTS) == 0, 60,
                       f"all {n} calls written after the kill (at {at_kill})", every=0.2,
                       state=lambda: {"calls": calls(), **store.Store(r).backlog()})
            time.sleep(0.5)

        st = store.Store(r)
        counted = st.day_counters(day)
        assert counted[Count.CALLS] == n
        assert counted[counter(Count.OUTCOME, Outcome.TRANSFERRED)] == n
        assert {c: counted[counter(Count.CATEGORY, c)] for c in CATEGORIES} == \
            {c: n // len(CATEGORIES) for c in CATEGORIES}
        assert counted[counter(Count.DIAL, "national", DialStatus.COMPLETED)] == n // 2
        assert r.xlen(store.LOG) == len(events)  # each event written exactly once
        assert r.zcard(store.day_calls_key(day)) == n
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.hget(store.call_key(f"CA{i:032d}"), "seen")
        seen = pipe.execute()
        missing = [i for i, s in enumerate(seen) if s is None]
        assert missing == []
        assert {s for s in seen} == {"1.0,2.0,2.1,3.0,end"}
        assert st.backlog() == {"waiting": 0, "pending": 0}
        assert st.dead_letters() == []
    finally:
        server.stop()


def test_a_worker_stopped_mid_drain_finishes_it_before_it_exits(tmp_path):
    """A deploy stops workers with SIGTERM: RQ's warm shutdown lets the running drain end,
    so the worker leaves nothing taken and unwritten, and exits cleanly."""
    server = RedisServer(tmp_path / "redis").start()
    env = service_env(server.url, tmp_path / "spool")
    n = 3000
    t0 = int(time.time())
    try:
        raw = redis.Redis.from_url(server.url)
        r = redis.Redis.from_url(server.url, decode_responses=True)
        emitter = Emitter(raw, Spool(tmp_path / "spool"))
        events = [e for i in range(n) for e in a_calls_events(i, t0)]
        for i in range(0, len(events), 500):
            assert emitter.emit(events[i:i + 500]) == "redis"

        def calls():
            return int(r.hget(store.day_key(day_of(t0)), Count.CALLS) or 0)

        log = tmp_path / "worker.log"
        with running(procfile.commands(env)["worker"], env, log) as worker:
            wait_until(lambda: calls() > 0, 30, "the worker writing", every=0.002)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0, log.read_text()
            at_stop = calls()
        assert "warm shut down requested" in log.read_text()
        assert at_stop == n  # the drain it was running wrote everything before the exit
        assert r.xlen(store.LOG) == len(events)
        assert store.Store(r).backlog() == {"waiting": 0, "pending": 0}
    finally:
        server.stop()


# --- g. privacy -----------------------------------------------------------------------------


def everything_in_redis(url: str) -> tuple[list[bytes], Counter]:
    return redis_contents(redis.Redis.from_url(url))


def without_from(app):
    """A transport for a caller whose number Twilio does not send at all."""
    post = flask_transport(app)
    validator = RequestValidator(app.config["TWILIO_AUTH_TOKEN"])

    def send(url, params, headers):
        params = {k: v for k, v in params.items() if k != "From"}
        return post(url, params, {"X-Twilio-Signature": validator.compute_signature(url, params)})

    return send


def test_the_callers_number_is_never_stored_nor_logged(app, app_config, simulate, redis_server,
                                                      redis_client, caplog, tmp_path):
    caplog.set_level("DEBUG")
    token = app.config["TWILIO_AUTH_TOKEN"]
    same_1 = simulate([Move("press", "2")], ["busy", "completed"], caller=CALLER)
    same_2 = simulate([Move("press", "1")], caller=CALLER)
    national = simulate([Move("silent")] * 3, caller=DIGITS)
    spaced = simulate([Move("press", "3")], caller="+57 300 123 4567")
    anonymous = simulate([Move("press", "5")], caller="anonymous")
    missing = SimulatedCall(BASE_URL, token, transport=without_from(app)).run(
        [Move("press", "3")])

    # A web process that cannot reach Redis spools its calls to disk.
    spool_dir = tmp_path / "down-spool"
    down = create_app({**app_config, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                       "RUTA_SPOOL_DIR": str(spool_dir)})
    spooled = SimulatedCall(BASE_URL, token, transport=flask_transport(down),
                            caller=CALLER).run([Move("press", "2")])
    spool_text = "".join(p.read_text() for p in Spool(spool_dir).files())
    assert spooled.call_sid in spool_text
    Spool(spool_dir).replay(redis_client)

    worker_output = burst_worker(redis_server.url, Path(app.config["RUTA_SPOOL_DIR"]),
                                 "--logging_level", "DEBUG")

    st = store.Store(redis_client)
    pseudonym = st.call(same_1.call_sid).caller
    assert pseudonym.startswith("c_")
    assert st.call(same_2.call_sid).caller == pseudonym
    assert st.call(spooled.call_sid).caller == pseudonym  # the same across web processes
    assert st.call(spaced.call_sid).caller == pseudonym  # the same digits
    assert st.call(national.call_sid).caller.startswith("c_")
    assert st.call(anonymous.call_sid).caller == "anonymous"
    assert st.call(missing.call_sid).caller == "anonymous"
    assert counters(redis_client, today())[Count.CALLS] == 7

    stored, types = everything_in_redis(redis_server.url)
    assert {"hash", "stream", "zset"} <= set(types)  # call records, the log, day indexes
    assert any(k.startswith("rq:job:") for k in redis_client.keys("rq:*"))  # jobs scanned
    assert any(pseudonym.encode() in piece for piece in stored)  # the scan sees the data
    for form in (DIGITS, "573001234567", "300 123 4567"):
        assert not [p for p in stored if form.encode() in p], f"{form} stored in Redis"
        assert form not in caplog.text
        assert form not in worker_output
        assert form not in spool_text
    assert "Redis unreachable" in caplog.text  # the spooling web process did log
    assert "drain" in worker_output


def test_an_outage_leaves_no_number_in_the_spool_nor_the_logs(outage):
    assert outage.spooled > 0
    assert "c_" in outage.spool_text  # the spool holds the pseudonym...
    assert "Redis unreachable" in outage.logs
    for form in (DIGITS, "573001234567"):
        assert form not in outage.spool_text  # ...never the number
        assert form not in outage.logs  # gunicorn's and the worker's output
    stored, _ = everything_in_redis(outage.redis_url)
    assert not [p for p in stored if DIGITS.encode() in p]

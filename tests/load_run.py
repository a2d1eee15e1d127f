"""A load run: many simulated callers against the Procfile's web + worker + Redis, then
the check that every call was counted once. tests/test_load.py and tests/test_scale.py
run it small; bench/load runs it at full size and prints its figures.

`run_load` starts a real redis-server (kept on disk, so it survives a stop), gunicorn as
the Procfile's `web:` line and ONE RQ worker as its `worker:` line (kept running the way a
Procfile platform does: restarted when it exits), all on loopback, sharing one spool
directory as on one host (ivr.procfile). N callers then each play one whole
Twilio-signed call over HTTP (`ivr.simulator.SimulatedCall`): one of SCENARIOS, the
menu by keypad or speech, in Spanish or English, transfers with busy / no-answer /
failed hotlines, hang-ups in the menu, silence, and the status callback at the end.
Their start times are spread over the window, and each waits a think time (1-4 s,
times `pace`) between a TwiML answer and its next move, like a person listening to a
prompt.

Measured: calls/s, webhook latency p50/p99, the lag from the last call's end to the
report (the day counters) being complete, and per call the lag from its status callback
to its record holding its final outcome. Then `check` holds every call against what was
placed: each call counted once, each event written once (no event id twice in the event
log, none missing from a call's record), the counters equal to what the calls did, and
nothing left in the stream or the spool.

`chaos`: the same run with Redis stopped for a while at a third of the window and the
worker killed with SIGKILL once at two thirds (and started again). The target is the
same: no failed or silent call, nothing lost, nothing counted twice, once Redis is back
and the spool replayed.

Imported by bench/load_bench.py too: it needs nothing of pytest's.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from ivr import menu as menu_config
from ivr import store
from ivr.events import Spool
from ivr.procfile import (
    Supervised,
    commands,
    service_env,
    start_web,
    stop_processes,
    wait_for_web,
    wait_for_worker,
)
from ivr.redis_server import RedisServer, free_port
from ivr.simulator import CallTranscript, Move, SimulatedCall, http_transport
from ivr.vocabulary import ANONYMOUS, Count, DialStatus, counter, day_of

SHIPPED = menu_config.load()
# The shipped directory's dial targets; the lines with none (Labour, Police, Prosecutor,
# emergency) read their number and go on to the national line.
NATIONAL = "+5718000522020"
ICBF = "+5718000918080"
BOGOTA = "+573503085507"


# --- the calls -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One kind of call: the caller's moves, the hotlines' answers, and what must follow."""

    name: str
    weight: int  # how often, relative to the others
    moves: tuple[Move, ...]
    dials: tuple[str, ...]  # DialCallStatus of each transfer, in order
    dialed: tuple[str, ...]  # numbers Ruta must dial, in order
    ends: str  # expected hung_up_by: "ruta" (goodbye + Hangup) or "caller" (in the menu)
    outcome: str
    category: str
    lang: str
    hangup: str = ""  # the question where the caller hung up (abandoned in the menu)


def press(key: str) -> Move:
    return Move("press", key)


def say(text: str, confidence: float = 0.92) -> Move:
    return Move("say", text, confidence)


SILENT = Move("silent")

SCENARIOS = [
    Scenario("child, keypad", 3, (press("1"),), ("completed",), (ICBF,), "ruta",
             "transferred", "child", "es"),
    Scenario("child, speech, no answer then national", 2, (say("mi hija de doce años"),),
             ("no-answer", "completed"), (ICBF, NATIONAL), "ruta", "transferred", "child",
             "es"),
    Scenario("child, a machine answers, then national", 1, (press("1"),),
             ("machine", "completed"), (ICBF, NATIONAL), "ruta", "transferred", "child", "es"),
    Scenario("labour, speech: 120 read, national", 3, (say("me ofrecieron un trabajo falso"),),
             ("completed",), (NATIONAL,), "ruta", "transferred", "labour", "es"),
    Scenario("labour, english keypad", 1, (press("9"), press("2")), ("completed",),
             (NATIONAL,), "ruta", "transferred", "labour", "en"),
    Scenario("migrant, speech", 2, (say("soy venezolano"),), ("completed",), (NATIONAL,),
             "ruta", "transferred", "migrant", "es"),
    Scenario("migrant, english speech", 1,
             (say("english"), say("I am a migrant from Venezuela")), ("completed",),
             (NATIONAL,), "ruta", "transferred", "migrant", "en"),
    Scenario("report, prosecutor: 122 read, national", 1, (press("4"), press("1")),
             ("completed",), (NATIONAL,), "ruta", "transferred", "report", "es"),
    Scenario("report, bogota by speech", 1, (say("quiero poner una denuncia"), say("en bogotá")),
             ("completed",), (BOGOTA,), "ruta", "transferred", "report", "es"),
    Scenario("not sure, national busy, numbers read", 1, (press("5"), SILENT), ("busy",),
             (NATIONAL,), "ruta", "transfer_failed", "other", "es"),
    Scenario("emergency, speech", 1, (say("es una emergencia, me están pegando"),),
             ("completed",), (NATIONAL,), "ruta", "emergency_transferred", "emergency", "es"),
    Scenario("emergency, hangs up to dial 123", 1, (press("0"),), ("canceled",), (NATIONAL,),
             "caller", "emergency_hung_up_to_dial", "emergency", "es"),
    Scenario("emergency, every line failed", 1, (press("0"), SILENT), ("failed",),
             (NATIONAL,), "ruta", "transfer_failed", "emergency", "es"),
    Scenario("three silences", 1, (SILENT, SILENT, SILENT), ("completed",), (NATIONAL,),
             "ruta", "transferred", "unclear", "es"),
    Scenario("wrong key, then labour", 1, (press("7"), press("2")), ("completed",),
             (NATIONAL,), "ruta", "transferred", "labour", "es"),
    Scenario("mumbled, then migrant", 1, (say("eh pues", 0.1), press("3")), ("completed",),
             (NATIONAL,), "ruta", "transferred", "migrant", "es"),
    Scenario("hangs up at the first question", 2, (), (), (), "caller", "abandoned_in_menu",
             "none", "es", "welcome"),
    Scenario("hangs up at the report question", 1, (press("4"),), (), (), "caller",
             "abandoned_in_menu", "report", "es", "report"),
    Scenario("silent, then hangs up", 1, (SILENT,), (), (), "caller", "abandoned_in_menu",
             "none", "es", "welcome"),
    Scenario("english, then hangs up", 1, (press("9"),), (), (), "caller",
             "abandoned_in_menu", "none", "en", "welcome"),
]


@dataclass
class Request:
    path: str
    query: dict
    params: dict
    status: int | None  # None: no HTTP answer at all
    seconds: float


class Caller(threading.Thread):
    """One caller: waits for its start time, plays one call, keeps every request."""

    def __init__(self, index: int, scenario: Scenario, start_at: float, base: str,
                 token: str, pace: float, seed: int):
        super().__init__(daemon=True, name=f"caller-{index}")
        self.index, self.scenario, self.start_at = index, scenario, start_at
        self.base, self.token, self.pace = base, token, pace
        self.rng = random.Random(seed)
        digits = self.rng.randrange(10**6, 10**7)
        self.number = "anonymous" if self.rng.random() < 0.05 else f"+57300{digits}"
        self.send = http_transport  # how a request reaches the web (tests: a balancer)
        self.requests: list[Request] = []
        self.transcript: CallTranscript | None = None
        self.error = ""
        self.began = 0.0  # wall clock, time.time()
        self.ended = 0.0  # when its status callback was answered (0: never)
        self.finished = 0.0  # when the caller was done, status callback or not
        self.final_at = 0.0  # when its record first showed the final outcome (lag poller)
        self.sid = ""

    def transport(self, url: str, params: dict, headers: dict) -> tuple[int, str]:
        parts = urllib.parse.urlsplit(url)
        if self.requests:  # listening to the prompt, thinking, pressing: 1-4 s a move
            time.sleep(self.rng.uniform(1.0, 4.0) * self.pace)
        else:
            self.sid = params.get("CallSid", "")
        t0 = time.perf_counter()
        try:
            status, body = self.send(url, params, headers)
        except Exception:
            self.requests.append(Request(parts.path, dict(urllib.parse.parse_qsl(parts.query)),
                                         params, None, time.perf_counter() - t0))
            raise
        self.requests.append(Request(parts.path, dict(urllib.parse.parse_qsl(parts.query)),
                                     params, status, time.perf_counter() - t0))
        if parts.path.endswith("/voice/status"):
            self.ended = time.time()
        return status, body

    def run(self) -> None:
        time.sleep(max(0.0, self.start_at - time.time()))
        self.began = time.time()
        s = self.scenario
        try:
            self.transcript = SimulatedCall(self.base, self.token, transport=self.transport,
                                            caller=self.number).run(s.moves, s.dials)
        except Exception as e:  # a call that could not be played to its end
            self.error = f"{type(e).__name__}: {e}"[:300]
        self.finished = time.time()

    # --- what this call must have left behind --------------------------------------

    @property
    def started(self) -> bool:
        """Its first webhook was answered, so its start was emitted: it must be counted."""
        return bool(self.requests) and self.requests[0].status == 200

    def problems(self) -> list[str]:
        """Why this call failed or went silent (empty: it went as it should)."""
        s, t, out = self.scenario, self.transcript, []
        if self.error:
            out.append(self.error)
        for r in self.requests:
            ok = (200, 204) if r.path.endswith("/voice/status") else (200,)
            if r.status not in ok:
                out.append(f"{r.path} answered {r.status}")
        if t is None:
            return out or ["no transcript"]
        if t.hung_up_by not in ("ruta", "caller"):
            out.append(f"call ended: {t.hung_up_by}")  # cut off, or the step limit
        elif t.hung_up_by != s.ends:
            out.append(f"ended by {t.hung_up_by}, expected {s.ends}")
        if s.dialed and not t.dialed:
            out.append("never transferred")
        elif tuple(t.dialed) != s.dialed:
            out.append(f"dialed {t.dialed}, expected {list(s.dialed)}")
        if not self.requests or not self.requests[-1].path.endswith("/voice/status"):
            out.append("no status callback")
        return out

    def expected_event_ids(self) -> set[str]:
        """Event ids (without the CallSid) its record must hold: every webhook step but
        a silent after-the-numbers one emits at least "<step>.0"; the status callback
        emits "end"."""
        ids = set()
        for step, r in enumerate(self.requests, 1):
            if r.path.endswith("/voice/status"):
                ids.add("end")
            elif r.path.endswith("/voice/numbers") and r.params.get("Digits") != "0":
                continue
            else:
                ids.add(f"{step}.0")
        return ids

    def expected_counts(self) -> Counter:
        """Its share of the day's counters (only for a call played to its end)."""
        s, c = self.scenario, Counter()
        if not self.started:
            return c
        c[counter(Count.CALLS)] += 1
        for r in self.requests:
            if r.path.endswith("/voice/dial"):
                hotline = r.query.get("h", "")
                c[counter(Count.TRANSFER, hotline)] += 1
                status = r.params.get("DialCallStatus", "")
                if status == DialStatus.COMPLETED and int(
                        r.params.get("DialCallDuration") or 0) < (
                        SHIPPED.hotlines[hotline].min_answered):
                    status = DialStatus.DROPPED  # a machine: Ruta counts it so, and rings on
                c[counter(Count.DIAL, hotline, status)] += 1
            elif (r.path.endswith("/voice/menu") and not r.params.get("Digits")
                  and not r.params.get("SpeechResult")):
                c[counter(Count.NO_INPUT)] += 1
        c[f"sum:{Count.HOUR}"] += 1  # each call counted in one hour of the day
        if self.number != ANONYMOUS:
            c[counter(Count.IDENTIFIED)] += 1
        if s.dialed:
            c[f"sum:{Count.TO_TRANSFER}"] += 1  # seconds to its first transfer, once
        c[counter(Count.OUTCOME, s.outcome)] += 1
        c[counter(Count.CATEGORY, s.category)] += 1
        c[counter(Count.LANG, s.lang)] += 1
        if s.hangup:
            c[counter(Count.HANGUP, s.hangup)] += 1
        return c


# Counters checked against what the calls did: those moved by one event each, and those
# derived from a whole call.
EVENT_COUNTERS = re.compile(
    rf"^({Count.CALLS}|{Count.TRANSFER}:.*|{Count.DIAL}:.*|{Count.NO_INPUT})$")
DERIVED_COUNTERS = re.compile(rf"^({Count.OUTCOME}:|{Count.CATEGORY}:|{Count.LANG}:|"
                              rf"{Count.HANGUP}:|sum:|{Count.IDENTIFIED}$)")


def plan_calls(callers: int, seconds: float, seed: int) -> list[tuple[float, Scenario]]:
    """(start offset, scenario) of each caller: starts spread over the window at random."""
    rng = random.Random(seed)
    weights = [s.weight for s in SCENARIOS]
    offsets = sorted(rng.uniform(0, seconds) for _ in range(callers))
    return [(offset, rng.choices(SCENARIOS, weights)[0]) for offset in offsets]


# --- the run ---------------------------------------------------------------------------


@dataclass
class Chaos:
    outage_seconds: float
    redis_down_at: float = 0.0  # offsets from the first call's planned start
    redis_up_at: float = 0.0
    spooled: int = 0  # events in the spool just before Redis came back
    killed_at: float = 0.0
    killed_mid_drain: bool = False
    killed_pid: int | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class LoadResult:
    callers: int
    chaos: Chaos | None
    calls: int = 0  # calls placed (their first webhook answered)
    failed: dict[str, list[str]] = field(default_factory=dict)  # call -> problems
    wall_seconds: float = 0.0
    calls_per_s: float = 0.0
    requests: int = 0
    webhook_p50_ms: float = 0.0
    webhook_p99_ms: float = 0.0
    webhook_max_ms: float = 0.0
    report_lag_s: float | None = None  # last call's end -> report complete (None: never)
    call_lag_p50_s: float | None = None
    call_lag_p99_s: float | None = None
    counted: int = 0  # the day counters' `calls`
    lost: int = 0  # events missing from call records, and counted calls missing
    double: int = 0  # events written twice, and counts above what the calls did
    mismatched: dict[str, tuple[int, int]] = field(default_factory=dict)  # key: (want, got)
    wrong_records: dict[str, str] = field(default_factory=dict)  # call -> what is wrong
    left: dict[str, int] = field(default_factory=dict)  # stream, pending, spool, dead
    worker_exits: list[int] = field(default_factory=list)
    worker_starts: int = 0
    logs: str = ""  # tails of the services' logs, when something failed

    def reasons(self) -> list[str]:
        """Why the run does not pass (empty: it passes)."""
        checks = [
            (self.calls == self.callers, f"{self.callers - self.calls} calls never started"),
            (not self.failed, f"{len(self.failed)} failed or silent calls"),
            (self.report_lag_s is not None, "the report was never complete"),
            (self.counted == self.calls, f"{self.counted} calls counted of {self.calls}"),
            (self.lost == 0, f"{self.lost} lost"),
            (self.double == 0, f"{self.double} counted twice"),
            (not self.mismatched, f"{len(self.mismatched)} counters off"),
            (not self.wrong_records, f"{len(self.wrong_records)} call records wrong"),
            (not any(self.left.values()), f"left behind: {self.left}"),
            (not (self.chaos and self.chaos.errors), "the chaos did not go as planned"),
        ]
        return [why for ok, why in checks if not ok]

    @property
    def passed(self) -> bool:
        return not self.reasons()

    def result_line(self) -> str:
        def num(v, fmt):
            return "none" if v is None else format(v, fmt)

        return (f"RESULT calls={self.calls} failed={len(self.failed)} "
                f"calls_per_s={self.calls_per_s:.2f} webhook_p50_ms={self.webhook_p50_ms:.1f} "
                f"webhook_p99_ms={self.webhook_p99_ms:.1f} "
                f"report_lag_s={num(self.report_lag_s, '.2f')} counted={self.counted} "
                f"lost={self.lost} double={self.double} "
                f"chaos={'yes' if self.chaos else 'no'} pass={'yes' if self.passed else 'no'}")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


class LagWatcher(threading.Thread):
    """Notes when each ended call's record first shows its final outcome (a pipeline of
    HMGETs over the calls still waiting, a few times a second)."""

    def __init__(self, url: str, callers: list[Caller], every: float = 0.2):
        super().__init__(daemon=True, name="lag-watcher")
        self.r = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=0.3,
                                      socket_timeout=2)
        self.callers, self.every = callers, every
        self.halt = threading.Event()

    def poll_once(self) -> int:
        waiting = [c for c in self.callers if c.ended and not c.final_at and c.sid]
        if not waiting:
            return 0
        try:
            pipe = self.r.pipeline(transaction=False)
            for c in waiting:
                pipe.hmget(store.call_key(c.sid), "status", "outcome")
            found = pipe.execute()
        except redis.RedisError:
            return len(waiting)
        now = time.time()
        for c, (status, outcome) in zip(waiting, found, strict=True):
            if status and outcome == c.scenario.outcome:
                c.final_at = now
        return len(waiting)

    def run(self) -> None:
        while not self.halt.is_set():
            self.poll_once()
            self.halt.wait(self.every)


def counters_over(r: redis.Redis, days: list[str]) -> Counter:
    """The days' counters added up, with "sum:hour" and "sum:to_transfer" (the totals of
    the calls-by-hour and seconds-to-transfer histograms)."""
    total = Counter()
    for d in days:
        total.update({k: int(v) for k, v in r.hgetall(store.day_key(d)).items()})
    for histogram in ("hour", "to_transfer"):
        total[f"sum:{histogram}"] = sum(v for k, v in total.items()
                                        if k.startswith(f"{histogram}:"))
    return total


def leftovers(r: redis.Redis, spool: Spool) -> dict[str, int]:
    backlog = store.Store(r).backlog()
    return {"stream": backlog["waiting"], "pending": backlog["pending"],
            "spool": spool.size(), "dead": r.xlen(store.DEAD_LETTER)}


def run_load(callers: int = 200, seconds: float = 60.0, pace: float = 1.0,
             chaos: bool = False, outage_seconds: float = 10.0,
             report_timeout: float | None = None, seed: int = 20261122,
             out: Callable[[str], None] = print) -> LoadResult:
    """Start the services, place the calls (with chaos if asked), wait for the report,
    check it; everything started is stopped and removed on the way out."""
    if report_timeout is None:
        report_timeout = 120.0 if chaos else 60.0
    tmp = Path(tempfile.mkdtemp(prefix="ruta-load-run-"))
    server = RedisServer(tmp / "redis", persist=True)
    spool_dir = tmp / "spool"
    web: subprocess.Popen | None = None
    worker: Supervised | None = None
    watcher: LagWatcher | None = None
    chaos_thread: threading.Thread | None = None
    result = LoadResult(callers=callers, chaos=Chaos(outage_seconds) if chaos else None)
    web_log, worker_log = tmp / "web.log", tmp / "worker.log"
    try:
        server.start()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = service_env(server.url, spool_dir, port)
        procfile_lines = commands(env)
        r = redis.Redis.from_url(server.url, decode_responses=True)
        web = start_web(env, web_log)
        worker = Supervised(procfile_lines["worker"], env, worker_log)
        worker.start()
        wait_for_web(base, web, web_log)
        wait_for_worker(r, worker)
        out(f"web:    {' '.join(shlex.quote(a) for a in procfile_lines['web'])}")
        out(f"worker: {' '.join(shlex.quote(a) for a in procfile_lines['worker'])}")
        out(f"{callers} callers over {seconds:g} s, think time 1-4 s x {pace:g}"
            + (f"; chaos: Redis down {outage_seconds:g} s at {seconds / 3:.0f} s, the "
               f"worker SIGKILLed at {2 * seconds / 3:.0f} s" if chaos else ""))

        t0 = time.time() + 0.5
        plan = plan_calls(callers, seconds, seed)
        token = env["TWILIO_AUTH_TOKEN"]
        people = [Caller(i, s, t0 + offset, base, token, pace, seed * 1000 + i)
                  for i, (offset, s) in enumerate(plan)]
        days_seen = {day_of(t0)}
        watcher = LagWatcher(server.url, people)
        watcher.start()
        for c in people:
            c.start()
        if chaos:
            chaos_thread = threading.Thread(
                target=_chaos, args=(result.chaos, server, worker, r, spool_dir, t0, seconds),
                daemon=True, name="chaos")
            chaos_thread.start()
        for c in people:
            c.join(timeout=max(1.0, t0 + seconds + 600 - time.time()))
        if chaos_thread is not None:
            chaos_thread.join(timeout=60)
        last_end = max((c.finished for c in people), default=time.time())
        first = min((c.began for c in people if c.began), default=t0)
        days_seen.add(day_of(time.time()))
        days = sorted(days_seen)

        # --- the calls ------------------------------------------------------------
        result.calls = sum(c.started for c in people)
        result.failed = {f"{c.index} {c.scenario.name} {c.sid}": p
                         for c in people if (p := c.problems())}
        result.wall_seconds = last_end - first
        result.calls_per_s = len(people) / result.wall_seconds if result.wall_seconds else 0
        latencies = [q.seconds * 1000 for c in people for q in c.requests
                     if q.status is not None]
        result.requests = len(latencies)
        result.webhook_p50_ms = percentile(latencies, 50) or 0.0
        result.webhook_p99_ms = percentile(latencies, 99) or 0.0
        result.webhook_max_ms = max(latencies, default=0.0)
        out(f"calls: {result.calls} placed in {result.wall_seconds:.1f} s "
            f"(first start to last end): {result.calls_per_s:.2f} calls/s, "
            f"{result.requests} webhook requests, "
            f"{result.requests / result.wall_seconds if result.wall_seconds else 0:.1f} req/s, "
            f"at most {max_concurrent(people)} calls at once")
        out(f"webhooks: p50 {result.webhook_p50_ms:.1f} ms, p99 {result.webhook_p99_ms:.1f} ms, "
            f"max {result.webhook_max_ms:.1f} ms")
        mix = Counter(c.scenario.name for c in people)
        out("mix: " + ", ".join(f"{name} {n}" for name, n in mix.most_common()))
        out(f"failed or silent calls: {len(result.failed)}")
        for who, problems in list(result.failed.items())[:10]:
            out(f"  {who}: {'; '.join(problems)}")
        if result.chaos:
            ch = result.chaos
            out(f"chaos: Redis down from {ch.redis_down_at:.1f} s to {ch.redis_up_at:.1f} s "
                f"({ch.spooled} events spooled meanwhile); worker pid {ch.killed_pid} "
                f"SIGKILLed at {ch.killed_at:.1f} s"
                f"{' in the middle of a drain' if ch.killed_mid_drain else ''}")
            for e in ch.errors:
                out(f"  chaos error: {e}")

        # --- the report ------------------------------------------------------------
        placed = [c for c in people if c.started]
        spool = Spool(spool_dir)
        deadline = last_end + report_timeout
        complete_at = None
        state: dict = {}
        while True:
            try:
                counted = counters_over(r, days)["calls"]
                waiting = watcher.poll_once()
                state = {"calls": counted, "not final": waiting, **leftovers(r, spool)}
                if counted >= len(placed) and waiting == 0:
                    complete_at = time.time()
                    break
            except redis.RedisError as e:
                state = {"redis": str(e)}
            if time.time() > deadline:
                break
            time.sleep(0.1)
        watcher.halt.set()
        if complete_at is not None:
            result.report_lag_s = max(0.0, complete_at - last_end)
            # The stream and the spool empty too (they should be by now), then a moment
            # for anything still on its way to show up as a double count.
            while time.time() < deadline and any(
                    v for k, v in leftovers(r, spool).items() if k != "dead"):
                time.sleep(0.2)
            time.sleep(1.0)
            out(f"report: complete {result.report_lag_s:.2f} s after the last call ended")
        else:
            out(f"report: NOT complete {report_timeout:g} s after the last call ended: {state}")
        lags = [c.final_at - c.ended for c in placed if c.final_at and c.ended]
        result.call_lag_p50_s = percentile(lags, 50)
        result.call_lag_p99_s = percentile(lags, 99)
        if lags:
            out(f"per call, status callback to final record: p50 {result.call_lag_p50_s:.2f} s, "
                f"p99 {result.call_lag_p99_s:.2f} s, max {max(lags):.2f} s "
                f"({len(lags)} of {len(placed)} calls seen final)")

        check(result, r, spool, placed, days, out)
        result.worker_exits = list(worker.exits)
        result.worker_starts = worker.started_count
        out(f"worker: started {worker.started_count} time(s); exits nobody asked for: "
            f"{worker.exits or 'none'}")
        out(f"pass: {'yes' if result.passed else 'no, ' + '; '.join(result.reasons())}")
        if not result.passed:
            result.logs = (_tail(worker_log, "worker") + _tail(web_log, "web"))
        return result
    finally:
        if watcher is not None:
            watcher.halt.set()
        if worker is not None:
            worker.stop()
        stop_processes(web)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def check(result: LoadResult, r: redis.Redis, spool: Spool, placed: list[Caller],
          days: list[str], out: Callable[[str], None]) -> None:
    """Every call counted once, every event written once, nothing left waiting."""
    total = counters_over(r, days)
    result.counted = total["calls"]
    want = Counter()
    for c in placed:
        want.update(c.expected_counts())
    keys = {k for k in {*want, *total}
            if EVENT_COUNTERS.match(k) or DERIVED_COUNTERS.match(k)}
    result.mismatched = {k: (want[k], total[k]) for k in sorted(keys) if want[k] != total[k]}
    excess = sum(max(0, total[k] - want[k]) for k in keys if EVENT_COUNTERS.match(k))

    # Each call's record: there, final, and holding every event of the call exactly once.
    pipe = r.pipeline(transaction=False)
    for c in placed:
        pipe.hgetall(store.call_key(c.sid))
    records = pipe.execute()
    listed = {sid for d in days for sid in r.zrange(store.day_calls_key(d), 0, -1)}
    missing_events = 0
    for c, rec in zip(placed, records, strict=True):
        who = f"{c.index} {c.scenario.name} {c.sid}"
        if not rec:
            result.wrong_records[who] = "no record"
            missing_events += len(c.expected_event_ids())
            continue
        seen = set(filter(None, rec.get("seen", "").split(",")))
        lost = c.expected_event_ids() - seen
        missing_events += len(lost)
        s = c.scenario
        got = (rec.get("outcome"), rec.get("category") or "none", rec.get("lang"),
               rec.get("status"))
        wanted = (s.outcome, s.category, s.lang, "completed")
        problems = []
        if lost:
            problems.append(f"events missing: {sorted(lost)}")
        if got != wanted:
            problems.append(f"(outcome, category, lang, status) {got}, expected {wanted}")
        if c.sid not in listed:
            problems.append("not in the day's list of calls")
        if problems:
            result.wrong_records[who] = "; ".join(problems)
    ours = {c.sid for c in placed}
    strangers = listed - ours
    if strangers:
        result.wrong_records["(unknown calls listed)"] = ", ".join(sorted(strangers)[:5])

    # The event log holds each written event once: an id twice is an event counted twice.
    logged = Counter()
    last = "-"
    while True:
        batch = r.xrange(store.LOG, min=last, count=5000)
        if last != "-":
            batch = batch[1:]
        if not batch:
            break
        for _, fields in batch:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                logged[json.loads(fields["e"])["id"]] += 1
        last = batch[-1][0]
    twice = sum(n - 1 for n in logged.values() if n > 1)

    result.lost = missing_events + max(0, len(placed) - result.counted)
    result.double = twice + excess
    result.left = leftovers(r, spool)
    out(f"counted: {result.counted} calls of {len(placed)} placed; events written "
        f"{sum(logged.values())} ({twice} twice); events missing from records "
        f"{missing_events}; counters off: {len(result.mismatched)}")
    for k, (w, g) in list(result.mismatched.items())[:15]:
        out(f"  counter {k}: expected {w}, got {g}")
    for who, what in list(result.wrong_records.items())[:10]:
        out(f"  record {who}: {what}")
    out(f"left: {result.left['stream']} in the stream, {result.left['pending']} pending, "
        f"{result.left['spool']} in the spool, {result.left['dead']} dead letters")


def _chaos(ch: Chaos, server: RedisServer, worker: Supervised, r: redis.Redis,
           spool_dir: Path, t0: float, seconds: float) -> None:
    """Redis stopped for a while at a third of the window; the worker SIGKILLed once at
    two thirds (preferably in the middle of a drain), restarted by its supervisor."""
    try:
        time.sleep(max(0.0, t0 + seconds / 3 - time.time()))
        server.stop()
        ch.redis_down_at = time.time() - t0
        time.sleep(ch.outage_seconds)
        ch.spooled = Spool(spool_dir).size()
        server.start()
        ch.redis_up_at = time.time() - t0
        time.sleep(max(0.0, t0 + 2 * seconds / 3 - time.time()))
        # A drain job is running when the worker holds the write lock: wait a little
        # for one so the kill leaves entries read and not acknowledged.
        deadline = time.monotonic() + min(3.0, seconds / 10)
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if r.exists(store.DRAIN_LOCK):
                    ch.killed_mid_drain = True
                    break
            time.sleep(0.005)
        ch.killed_pid = worker.kill()
        ch.killed_at = time.time() - t0
        if ch.killed_pid is None:
            ch.errors.append("no worker process was running to kill")
    except Exception as e:  # reported, and fails the run
        ch.errors.append(f"{type(e).__name__}: {e}")
        with contextlib.suppress(Exception):
            if server.process is None:
                server.start()


def max_concurrent(people: list[Caller]) -> int:
    edges = sorted([(c.began, 1) for c in people if c.began]
                   + [(c.finished, -1) for c in people if c.began])
    most = now = 0
    for _, d in edges:
        now += d
        most = max(most, now)
    return most


def _tail(log: Path, name: str, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return f"--- last lines of the {name} log ---\n" + "\n".join(text[-lines:]) + "\n"


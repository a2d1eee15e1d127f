"""Scale out: several web and worker processes behave like one, and the key layout is
ready for Redis Cluster.

- Two gunicorn web processes and two `rq worker` processes (the Procfile's lines) on one
  real Redis, a burst of signed calls spread over both webs as by a load balancer, some
  callbacks repeated: every call counted once, by both workers.
- Every key Ruta writes (and every key a Lua script or a transaction touches) is in ONE
  cluster slot: the `{ruta}` hash tag (ivr/store.py says why).
- A real three-master Redis Cluster runs the emit script, the drain's transaction, a
  publish and staff accounts; RQ's own commands are refused there.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import json
import re
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from click.testing import CliRunner
from conftest import TOKEN, wait_until
from load_run import SCENARIOS, Caller, LoadResult, check
from redis.crc import key_slot
from redis.exceptions import MovedError
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FinishedJobRegistry

from ivr import StartupError, create_app, events, procfile, redis_url, security, store
from ivr.cli import main
from ivr.events import APPEND_EVENTS, Spool
from ivr.menu import read_shipped
from ivr.procfile import Supervised, service_env, stop_processes, wait_for_web
from ivr.redis_server import RedisServer, free_port
from ivr.simulator import Move, SimulatedCall, flask_transport, http_transport
from ivr.staff import StaffAccounts
from ivr.versions import ConfigVersions
from ivr.vocabulary import Count, Event, EventKind, counter, day_of, split_counter
from workers import worker as ruta_worker
from workers.drain import Drainer

pytestmark = pytest.mark.slow  # real servers or browsers: `-m "not slow"` skips them

REPO = Path(__file__).resolve().parent.parent
PUBLIC = "http://ruta.test"  # the one address Twilio knows; both webs sit behind it
SLOT = key_slot(store.PREFIX.encode())  # the slot of the {ruta} hash tag
CALLBACKS = ("/voice/dial", "/voice/status")  # what Twilio may send twice


# --- 1. two webs, two workers --------------------------------------------------------------


class Balancer:
    """Both web processes behind PUBLIC, as behind a load balancer: requests take turns.
    For a call marked `repeat`, every dial result and status callback is sent a second
    time, as Twilio may, and the second one reaches the other process: it must get the
    same answer."""

    def __init__(self, bases: list[str]):
        self.bases = bases
        self.turn = itertools.count()
        self.served: list[str] = []  # the web that answered each request
        self.repeated: list[str] = []

    def sender(self, repeat: bool):
        def send(url: str, params: dict, headers: dict) -> tuple[int, str]:
            turn = next(self.turn)
            answer = self.post(turn, url, params, headers)
            if repeat and urlsplit(url).path in CALLBACKS:
                again = self.post(turn + 1, url, params, headers)
                assert again == answer, f"{url} answered {again} after {answer}"
                self.repeated.append(url)
            return answer

        return send

    def post(self, turn: int, url: str, params: dict, headers: dict) -> tuple[int, str]:
        base = self.bases[turn % len(self.bases)]
        self.served.append(base)
        return http_transport(base + url[len(PUBLIC):], params, headers)


def report_counts(printed: dict) -> Counter:
    """`ivr report --json` as counters named like the day's (the REPORTED ones): calls,
    category:, lang:, outcome:, hangup:, transfer:<hotline>, dial:<hotline>:<status>."""
    out = Counter({Count.CALLS: printed["calls"]})
    out.update({counter(Count.CATEGORY, c): sum(per_day)
                for c, per_day in printed["categories"].items()})
    out.update({counter(Count.LANG, k): v for k, v in printed["languages"].items()})
    out.update({counter(Count.OUTCOME, k): v for k, v in printed["outcomes"].items()})
    out.update({counter(Count.HANGUP, q["question"]): q["hung_up"] for q in printed["funnel"]})
    for h in printed["hotlines"]:
        out[counter(Count.TRANSFER, h["hotline"])] += h["transfers"]
        out.update({counter(Count.DIAL, h["hotline"], s): n for s, n in h["results"].items()})
    return +out  # without zeros


# The day's counters `ivr report` shows in full.
REPORTED = {Count.CALLS, Count.CATEGORY, Count.LANG, Count.OUTCOME, Count.HANGUP,
            Count.TRANSFER, Count.DIAL}


def drains_by_worker(r: redis.Redis) -> dict[str, int]:
    """Events each worker wrote, from the results of its finished drain jobs."""
    ids = FinishedJobRegistry(store.QUEUE, connection=r).get_job_ids()
    written: Counter = Counter()
    for job in Job.fetch_many(ids, connection=r):
        if job and job.func_name == events.DRAIN_JOB:
            written[job.worker_name] += (job.return_value() or {}).get("written", 0)
    return dict(written)


def test_two_webs_and_two_workers_count_every_call_exactly_once(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    r = redis.Redis.from_url(server.url, decode_responses=True)
    webs, workers, spools = [], [], []
    try:
        for host in (1, 2):  # two hosts: each its web, its worker and its spool
            port = free_port()
            spools.append(Spool(tmp_path / f"spool{host}"))
            env = {**service_env(server.url, spools[-1].directory, port, token=TOKEN),
                   "PUBLIC_BASE_URL": PUBLIC}
            commands = procfile.commands(env)
            log = tmp_path / f"web{host}.log"
            web = procfile.start(commands["web"], env, log)
            webs.append((f"http://127.0.0.1:{port}", web, log))
            workers.append(Supervised(commands["worker"], env, tmp_path / f"worker{host}.log"))
            workers[-1].start()
        for base, web, log in webs:
            wait_for_web(base, web, log)
        wait_until(lambda: len(Worker.all(connection=r)) == 2, 30, "both workers registered")

        # Every scenario of the load benchmark three times, in three waves (a drain
        # ends between two waves, so the next one may go to the other worker).
        balancer = Balancer([base for base, _, _ in webs])
        t0 = time.time() + 0.2
        callers = []
        for i, scenario in enumerate(SCENARIOS * 3):
            wave = i // len(SCENARIOS)
            caller = Caller(i, scenario, t0 + 1.5 * wave, PUBLIC, TOKEN, pace=0,
                            seed=20261123 + i)
            caller.send = balancer.sender(repeat=i % 3 == 0)
            callers.append(caller)
        for c in callers:
            c.start()
        for c in callers:
            c.join(timeout=60)
        failed = {f"{c.index} {c.scenario.name}": c.problems() for c in callers if c.problems()}
        assert failed == {}
        assert len(balancer.repeated) >= len(callers) // 3  # at least each status callback
        assert Counter(balancer.served).keys() == {base for base, _, _ in webs}

        days = sorted({day_of(t0), day_of(time.time())})

        def state():
            total = sum((Counter(store.Store(r).day_counters(d)) for d in days), Counter())
            return {"calls": total[Count.CALLS], **store.Store(r).backlog(),
                    "spooled": sum(s.size() for s in spools)}

        wait_until(lambda: (lambda s: s["calls"] >= len(callers) and not s["waiting"]
                            and not s["pending"] and not s["spooled"])(state()),
                   20, "every call written", state=state)
        time.sleep(0.5)  # anything still on its way would show as a count too many

        result = LoadResult(callers=len(callers), chaos=None)
        lines: list[str] = []
        check(result, r, spools[0], callers, days, lines.append)  # once, none lost, all right
        assert (result.counted, result.lost, result.double) == (len(callers), 0, 0), lines
        assert result.mismatched == {} and result.wrong_records == {}, lines
        assert not any(result.left.values()) and spools[1].size() == 0, result.left

        expected = sum((c.expected_counts() for c in callers), Counter())
        printed = CliRunner(env={"REDIS_URL": server.url}).invoke(
            main, ["report", "--from", days[0], "--to", days[-1], "--json"])
        assert printed.exit_code == 0, printed.output
        assert report_counts(json.loads(printed.output)) == Counter(
            {k: v for k, v in expected.items() if split_counter(k)[0] in REPORTED and v})

        written = drains_by_worker(redis.Redis.from_url(server.url))
        assert len(written) == 2 and all(written.values()), f"events written by: {written}"
        assert sum(written.values()) == r.xlen(store.LOG)
        assert [w.exits for w in workers] == [[], []]
    finally:
        for w in workers:
            w.stop()
        for _, web, _ in webs:
            stop_processes(web)
        server.stop()


# --- 2. one slot for every key -------------------------------------------------------------


class Monitor(threading.Thread):
    """Every command the server runs (MONITOR), as (client, args): "lua" for the commands
    of a script, in order, MULTI ... EXEC included."""

    END = b"ruta-monitor-end"

    def __init__(self, port: int):
        super().__init__(daemon=True, name="monitor")
        self.port = port
        self.conn = redis.Connection(port=port, socket_timeout=10)
        self.conn.connect()
        self.conn.send_command("MONITOR")
        assert self.conn.read_response() in (b"OK", "OK")
        self.commands: list[tuple[str, list[bytes]]] = []

    def run(self) -> None:
        line = re.compile(rb"^\S+ \[\d+ ([^\]]+)\] (.*)$", re.S)
        while True:
            m = line.match(self.conn.read_response())
            args = [codecs.escape_decode(a)[0]
                    for a in re.findall(rb'"((?:[^"\\]|\\.)*)"', m[2], re.S)]
            if args == [b"ECHO", self.END]:
                return
            self.commands.append((m[1].decode(), args))

    def stop(self) -> list[tuple[str, list[bytes]]]:
        redis.Redis(port=self.port).echo(self.END)
        self.join(timeout=30)
        self.conn.disconnect()
        return self.commands


def slot(key: str | bytes) -> int:
    return key_slot(key.encode() if isinstance(key, str) else key)


def keys_touched(port: int, commands) -> tuple[set[str], set[str], set[str]]:
    """(every key, the keys of Lua scripts' commands, the keys WATCHed or inside MULTI)."""
    r = redis.Redis(port=port, decode_responses=True)
    every, in_scripts, in_transactions = set(), set(), set()
    in_multi: set[str] = set()
    for client, args in commands:
        name = args[0].upper()
        if name == b"MULTI":
            in_multi.add(client)
        elif name in (b"EXEC", b"DISCARD"):
            in_multi.discard(client)
        try:
            keys = set(r.command_getkeys(*args))
        except redis.ResponseError:  # a command without keys
            continue
        every |= keys
        if client == "lua":
            in_scripts |= keys
        if client in in_multi or name == b"WATCH":
            in_transactions |= keys
    return every, in_scripts, in_transactions


def twice(app):
    """Twilio's dial results and status callbacks, each sent twice."""
    post = flask_transport(app)

    def send(url, params, headers):
        if urlsplit(url).path in CALLBACKS:
            post(url, params, headers)
        return post(url, params, headers)

    return send


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)[1]


def test_every_key_ruta_touches_is_in_one_cluster_slot(app, app_config, redis_server,
                                                       redis_client, tmp_path):
    monitor = Monitor(redis_server.port)
    monitor.start()
    try:
        # Calls, Twilio repeating itself; one from a web process that found Redis down.
        caller = SimulatedCall("http://ruta.test", TOKEN, transport=twice(app))
        calls = [caller.run([Move("press", "2")], ["busy", "completed"]),
                 caller.run([Move("say", "es una emergencia")], ["failed", "completed"]),
                 caller.run([Move("press", "4")])]
        down = create_app({**app_config, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                           "RUTA_SPOOL_DIR": str(tmp_path / "down")})
        SimulatedCall("http://ruta.test", TOKEN, transport=flask_transport(down)).run(
            [Move("press", "1")])
        spool = Spool(tmp_path / "down")
        ruta_worker.sweep(redis.Redis.from_url(redis_server.url), spool)  # replays it
        Drainer(redis_url.decoding(redis_client)).run()  # the drain job's code
        # Staff: accounts and tokens from the command line, a failed login on the web.
        cli = CliRunner(env={"REDIS_URL": redis_server.url})
        for args, given in ((["users", "add", "ana", "--role", "admin"], "a long password\n"),
                            (["users", "add", "luis", "--role", "supervisor"], "another one!\n"),
                            (["users", "remove", "luis"], None), (["tokens", "add", "bi"], None),
                            (["tokens", "add", "old"], None), (["tokens", "remove", "old"], None)):
            done = cli.invoke(main, args, input=given)
            assert done.exit_code == 0, done.output
        web = app.test_client()
        failed = web.post("/login", data={"name": "ana", "password": "not it at all",
                                          "csrf_token": csrf_of(web.get("/login").text)})
        assert failed.status_code == 401
        # A session: a login, a page, a password change that ends it.
        web = app.test_client()
        assert web.post("/login", data={"name": "ana", "password": "a long password",
                                        "csrf_token": csrf_of(web.get("/login").text)}
                        ).status_code == 302
        assert web.get("/reports").status_code == 200
        done = cli.invoke(main, ["users", "password", "ana"], input="a new long password\n")
        assert done.exit_code == 0, done.output
        # An administrator's draft, publish and rollback.
        versions = ConfigVersions(redis_url.decoding(redis_client), read_shipped(
            app.config["RUTA_CONFIG_DIR"], app.config["RUTA_PROMPTS_DIR"]))
        versions.save_draft({"prompts": {"es": {"goodbye": "Gracias. Cuídese."}}}, "ana")
        assert versions.publish("ana", "shorter goodbye") == 1
        assert versions.rollback(0, "ana", "back to the files") == 2
    finally:
        commands = monitor.stop()

    every, in_scripts, in_transactions = keys_touched(redis_server.port, commands)
    ours = {k for k in every if not k.startswith("rq:")}
    day = day_of(time.time())
    assert {store.DRAIN_LOCK, store.LOG, store.EVENTS, store.day_key(day),
            store.day_calls_key(day), store.call_key(calls[0].call_sid), store.CONFIG_DRAFT,
            store.CONFIG_VERSION, store.config_version_key(1), store.USERS,
            store.user_key("ana"), store.TOKENS,
            store.user_sessions_key("ana")} <= in_transactions
    assert {store.EVENTS, store.DRAIN_SCHEDULED} <= in_scripts
    assert any(k.startswith(store.LIMITS_PREFIX) for k in ours)
    assert {k: slot(k) for k in ours if slot(k) != SLOT} == {}
    assert {k for k in in_scripts | in_transactions
            if slot(k) != SLOT and not k.startswith("rq:")} == set()
    stored = set(redis_client.scan_iter(count=1000))
    assert {k for k in stored if not k.startswith("rq:") and slot(k) != SLOT} == set()
    assert len({k for k in stored if not k.startswith("rq:")}) >= 15


# --- 3. a real Redis Cluster ----------------------------------------------------------------


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536:
            with contextlib.suppress(OSError), socket.create_server(("127.0.0.1", port + 10000)):
                return port


@pytest.fixture
def cluster(tmp_path):
    """Three masters, slots assigned by thirds (no redis-cli): yields their servers."""
    nodes = [RedisServer(tmp_path / f"node{i}", port=cluster_port(), extra_args=[
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", "1000"]) for i in range(3)]
    try:
        for node in nodes:
            node.start()
        clients = [redis.Redis(port=n.port, decode_responses=True) for n in nodes]
        for c, (lo, hi) in zip(clients, [(0, 5460), (5461, 10922), (10923, 16383)],
                               strict=True):
            c.execute_command("CLUSTER", "ADDSLOTS", *range(lo, hi + 1))
        for node in nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        wait_until(lambda: all("cluster_state:ok" in str(c.execute_command("CLUSTER", "INFO"))
                               and "cluster_known_nodes:3" in str(
                                   c.execute_command("CLUSTER", "INFO")) for c in clients),
                   20, "the cluster agreeing")
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def test_the_emit_script_and_the_drain_run_on_a_real_cluster(cluster, simulate,
                                                             redis_client):
    # A few calls' events, as the web emits them (taken from the test Redis).
    calls = [simulate([Move("press", "1")], ["busy", "completed"]),  # ICBF busy, national
             simulate([Move("press", "2")]), simulate([])]  # Labour read, national; a hang-up
    raws = [fields["e"] for _, fields in redis_client.xrange(store.EVENTS)]
    lo, hi, owner_port = next((lo, hi, int(node[1])) for lo, hi, node, *_ in redis.Redis(
        port=cluster[0].port).execute_command("CLUSTER", "SLOTS") if lo <= SLOT <= hi)
    assert owner_port != cluster[0].port  # the test must not pass by luck of the first node
    owner = redis.Redis(port=owner_port)  # a plain client: the server itself checks slots

    emit = owner.register_script(APPEND_EVENTS)
    for raw in raws:  # the emit script: XADD the events + SET NX PX the drain flag
        emit(keys=[store.EVENTS, store.DRAIN_SCHEDULED], args=[events.DRAIN_EVERY_MS, raw])
    text = redis_url.decoding(owner)
    stats = Drainer(text).run()  # lock, consumer group, the MULTI/EXEC of each batch
    assert stats.written == len(raws)
    st = store.Store(text)
    assert st.day_counters(day_of(time.time()))[Count.CALLS] == len(calls)
    assert st.call(calls[0].call_sid).hotlines_text() == "icbf:busy > national:completed"

    versions = ConfigVersions(text, read_shipped())
    versions.save_draft({"prompts": {"es": {"goodbye": "Gracias."}}}, "ana")
    assert versions.publish("ana", "on a cluster") == 1  # WATCH, MULTI, EVAL, EXEC
    accounts = StaffAccounts(text)
    accounts.save_user("ana", "admin", security.hash_password("a long password"))
    accounts.save_token("bi", "supervisor", "0" * 64)
    assert accounts.user("ana")["role"] == "admin" and accounts.tokens() == ["bi"]

    # What a second hash tag would meet: a transaction over two slots is refused...
    other = next(k for k in (f"{{x{i}}}" for i in range(10_000))
                 if slot(k) != SLOT and lo <= slot(k) <= hi)
    with pytest.raises(redis.ResponseError, match="same slot"):  # CROSSSLOT
        pipe = owner.pipeline()
        pipe.set(store.DRAIN_SCHEDULED, 1)
        pipe.set(other, 1)
        pipe.execute()
    # ...and RQ's own keys are not cluster-safe: enqueueing a drain job fails.
    with pytest.raises(redis.ResponseError) as refused:
        events.enqueue_drain(Queue(store.QUEUE, connection=owner))
    assert "same slot" in str(refused.value) or isinstance(refused.value, MovedError)


# --- 4. moving data written before the hash tag ---------------------------------------------


def test_migrate_keys_renames_the_old_layout_keeping_ttls(redis_server, redis_client):
    r = redis_client
    r.hset("ruta:user:ana", mapping={"role": "admin", "password": "x"})
    r.sadd("ruta:users", "ana")
    r.hset("ruta:call:CA1", "day", "2026-11-22")
    r.expire("ruta:call:CA1", 3600)
    r.xadd("ruta:events", {"e": "{}"})
    r.xgroup_create("ruta:events", store.WRITERS, id="0")
    r.set("ruta:config:version", 3)
    r.set(store.CONFIG_VERSION, 1)  # already written under the new name: left alone
    r.set("rq:queue:x", "not ours")
    done = CliRunner(env={"REDIS_URL": redis_server.url}).invoke(
        main, ["redis", "migrate-keys"])
    assert done.exit_code == 1
    assert "renamed 4 key(s) from ruta:* to {ruta}:*" in done.output
    assert "ruta:config:version" in done.output
    accounts = StaffAccounts(r)
    assert accounts.user("ana")["role"] == "admin" and [n for n, _ in accounts.users()] == ["ana"]
    assert 3500 < r.ttl(store.call_key("CA1")) <= 3600
    assert store.Store(r).backlog() == {"waiting": 1, "pending": 0}
    assert r.xinfo_groups(store.EVENTS)[0]["name"] == store.WRITERS
    assert (r.get(store.CONFIG_VERSION), r.get("ruta:config:version")) == ("1", "3")
    assert r.get("rq:queue:x") == "not ours"


def test_old_layout_data_stops_web_and_worker_until_migrated(redis_server, redis_client,
                                                              app_config, tmp_path):
    """Started on a Redis with data under the old names, the new code would serve the
    shipped menu (not the published one), lose the staff accounts and leave events
    where no drain looks: it refuses to start and says what to run."""
    r = redis_client
    old = Event(id="CAold:1.0", call="CAold", kind=EventKind.CALL_STARTED, step=1, at=1.0,
                started=1.0, lang="es", asked="", data={}).to_json()
    r.xadd("ruta:events", {"e": old})
    r.set("ruta:config:version", 2)
    with pytest.raises(StartupError, match="ivr redis migrate-keys"):
        create_app(app_config)
    env = service_env(redis_server.url, tmp_path / "spool")
    worker = subprocess.run(procfile.commands(env)["worker"] + ["--burst"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert worker.returncode != 0
    assert "ivr redis migrate-keys" in worker.stdout + worker.stderr

    # Events written meanwhile under the new name do not stop the old ones from moving.
    r.xadd(store.EVENTS, {"e": "new"})
    done = CliRunner(env={"REDIS_URL": redis_server.url}).invoke(main, ["redis", "migrate-keys"])
    assert done.exit_code == 0, done.output
    assert [fields["e"] for _, fields in r.xrange(store.EVENTS)] == ["new", old]
    assert not r.exists("ruta:events")
    create_app(app_config)  # starts now

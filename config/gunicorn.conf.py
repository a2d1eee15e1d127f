"""gunicorn settings for Ruta's web role (the Procfile's `web:` line), from the environment.

    WEB_CONCURRENCY       worker processes (default 4; about two per core, the low end of
                          gunicorn's own advice). Each webhook waits for Redis to take
                          its events before it answers: with one worker per core, a core
                          sits idle while its worker waits (bench/webhook prints how
                          idle the machine is). A worker holds about 64 MB
    WEB_THREADS           threads per worker (default 1: sync workers; a webhook does not
                          wait on anything slow, so more processes beat more threads)
    WEB_TIMEOUT           seconds before a stuck worker is replaced (default 10, must stay
                          under the 15 s Twilio waits for a webhook)
    WEB_GRACEFUL_TIMEOUT  seconds a stopping worker gets to finish its requests (default 20)

    PROMETHEUS_MULTIPROC_DIR  a folder of this server's own where each worker keeps its
                          Prometheus counters, so that /metrics (answered by any one
                          worker) sums them all. Production must set it, to an empty
                          folder that nothing else uses: its counter files are wiped when
                          gunicorn starts (below). `ivr dev` makes a fresh one in
                          .ruta-dev/metrics. Unset, each scrape sees the counts of one
                          worker only (gunicorn warns at start).

On SIGTERM (a deploy, a scale-down) gunicorn stops accepting, lets each worker finish the
request in hand, then exits. A webhook's events are in Redis (or the spool) before its
answer leaves, so a stop loses none.

gunicorn's own messages are written like the app's (ivr.logs: JSON lines in production).
"""

import os
import re
from pathlib import Path

from gunicorn.glogging import Logger


def _positive_int(name: str, default: int) -> int:
    value = int(os.environ.get(name) or default)
    if value < 1:
        raise SystemExit(f"{name} must be at least 1, not {value}")
    return value


workers = _positive_int("WEB_CONCURRENCY", 4)
threads = _positive_int("WEB_THREADS", 1)
timeout = _positive_int("WEB_TIMEOUT", 10)
if timeout >= 15:
    raise SystemExit(f"WEB_TIMEOUT={timeout}: keep it under 15 s, Twilio's webhook timeout, so "
                     "a stuck worker is replaced while the caller can still be answered")
graceful_timeout = _positive_int("WEB_GRACEFUL_TIMEOUT", 20)
keepalive = 5  # seconds; used with WEB_THREADS > 1 only (sync workers close each connection)
# Request lines and headers: Twilio's are small; anything near these limits is not Twilio.
limit_request_line = 8190
limit_request_fields = 60


class RutaLogger(Logger):
    """gunicorn's logger, writing its own messages (booting, a worker killed...) like the
    app writes its lines: JSON in production (ivr.logs)."""

    def setup(self, cfg):
        super().setup(cfg)
        from ivr import logs, settings

        if logs.log_format(settings.load()) == "json":
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(logs.JsonFormatter())


logger_class = RutaLogger

# prometheus_client's files: counter_<pid>.db, histogram_<pid>.db, gauge_<mode>_<pid>.db...
_METRICS_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


def on_starting(server):
    """Before any worker: train the speech models once, and wipe the last run's counter
    files (a restart starts from 0, as Prometheus expects of a counter; left there, a dead
    run's counts would add up)."""
    _train_speech_models(server)
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        if server.cfg.workers > 1:
            server.log.warning("PROMETHEUS_MULTIPROC_DIR is not set: each /metrics scrape "
                               "shows the counts of the one worker that answers it")
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    for path in Path(folder).iterdir():
        if _METRICS_FILE.fullmatch(path.name):
            path.unlink(missing_ok=True)


def _train_speech_models(server):
    """The shipped menu's speech matchers, trained here in the master (scikit-learn's
    import and the training take a few seconds): the workers fork with them in their
    cache and boot in well under WEB_TIMEOUT, which also counts a worker's boot."""
    try:
        from ivr import menu, settings

        config = settings.load()
        menu.load(config["RUTA_CONFIG_DIR"], config["RUTA_PROMPTS_DIR"])
    except Exception as e:  # noqa: BLE001 - a broken menu: each worker says why, and stops
        server.log.warning("speech models not trained before the workers: %s", e)


def post_worker_init(worker):
    """The app is loaded: move its long-lived objects (the menu, the speech models) out
    of the garbage collector's way. Without this a full collection, scanning them all,
    stalls a webhook now and then for several milliseconds."""
    import gc

    gc.collect()
    gc.freeze()


def child_exit(server, worker):
    """A worker ended: its live gauges go (its counters stay counted)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

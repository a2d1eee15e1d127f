"""The RQ worker Ruta runs: `rq worker -w workers.worker.RutaWorker ruta`.

A `SimpleWorker` (jobs run in the worker process: our drain jobs are our own code, and a
fork per job would cost more than the job) that always runs RQ's scheduler (so failed
drains are retried) and every few seconds also sweeps:
- replays the local event spool into Redis once Redis answers again;
- starts a drain when events wait with no drain coming (an enqueue lost with Redis, or
  entries left by a drain that was killed), so they are written within a minute, not at
  RQ's ten-minute maintenance.
"""

from __future__ import annotations

import logging
import time

import redis
from rq import Queue, SimpleWorker

from ivr import events, key_migration, logs, settings, store
from workers import alerts, drain

log = logging.getLogger(__name__)

SWEEP_SECONDS = 10


class _QuietSweeps(logging.Filter):
    """RQ logs each registry clean-up at INFO; with our sweep every 10 s that is some 17,000
    lines a day that say nothing. Those are dropped; every other line of RQ's stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Worker %s: cleaning")


class RutaWorker(SimpleWorker):
    def __init__(self, *args, **kwargs):
        config = settings.load()
        # Log lines like the web's (RUTA_LOG_FORMAT: JSON in production), RQ's own too.
        logs.configure(logs.log_format(config))
        logs.adopt("rq.worker", "rq.job")
        rq_log = logging.getLogger("rq.worker")
        if not any(isinstance(f, _QuietSweeps) for f in rq_log.filters):
            rq_log.addFilter(_QuietSweeps())
        if config["RUTA_ENV"] == "development":  # `ivr dev`: the clock's jobs said quietly
            logs.quiet_routine_jobs("rq.worker", *alerts.ROUTINE_JOBS)
        super().__init__(*args, **kwargs)
        try:
            if key_migration.has_legacy_keys(self.connection):
                raise SystemExit(f"Ruta's worker will not start: {key_migration.LEGACY_HELP}")
        except redis.RedisError:
            pass  # Redis down: the worker waits for it like any other time
        # `rq worker` always passes its own --maintenance-interval (600 s): ours wins.
        self.maintenance_interval = SWEEP_SECONDS
        self.spool = events.Spool(config["RUTA_SPOOL_DIR"])

    def work(self, *args, **kwargs):
        # A failed drain is retried (RQ's Retry) only by a worker that runs the scheduler:
        # ours always does, however it was started.
        kwargs["with_scheduler"] = True
        return super().work(*args, **kwargs)

    @property
    def dequeue_timeout(self) -> int:
        # Wake up when idle so the sweep runs (RQ's default waits about 400 s).
        return SWEEP_SECONDS

    def execute_job(self, job, queue):
        """Run a job; if Redis goes away meanwhile, wait for it instead of quitting.

        RQ's own bookkeeping after a job needs Redis, and an error there makes the
        worker exit, leaving nobody to replay the spool when Redis is back. The job's
        events stay in the stream, so the next drain writes them.
        """
        try:
            return super().execute_job(job, queue)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            self.log.warning("Redis went away during job %s (%s); waiting for it", job.id, e)
            self._wait_for_redis()

    def _wait_for_redis(self) -> None:
        while not self._stop_requested:
            try:
                self.connection.ping()
                return
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(1)

    def run_maintenance_tasks(self):
        super().run_maintenance_tasks()
        try:
            sweep(self.connection, self.spool)
        except redis.RedisError as e:
            log.warning("sweep skipped, Redis unreachable: %s", e)


def sweep(connection: redis.Redis, spool: events.Spool) -> None:
    """Replay the spool, and start a drain if events wait with none coming."""
    queue = Queue(store.QUEUE, connection=connection)
    moved = spool.replay(connection, queue)
    if moved:
        log.info("replayed %d spooled events", moved)
    r = drain.text_client(connection)
    drain.ensure_group(r)
    if drain.work_waiting(r) and r.set(store.DRAIN_SCHEDULED, 1, nx=True, px=1000):
        events.enqueue_drain(queue)

"""The RQ job that writes call events to Redis: `workers.drain.drain`.

One drain job reads the `{ruta}:events` stream in batches through the consumer group
"writers" and folds each batch into call records and day counters in one transaction
(`Store.write_batch`), which also acknowledges and deletes the entries. Why this shape:

- RQ costs about 60 Redis commands a job, so one job per event would not keep up; a
  drain job costs that once for hundreds of events.
- Only one drain writes at a time (a redis-py `Lock`, checked again inside the
  transaction with WATCH), so folding a call's record is never raced, and several
  workers behave exactly like one. A drain that finds the lock taken simply ends: the
  lock holder looks for new entries after it lets go of the lock.
- A drain killed mid-batch leaves its entries pending in the group; the next lock holder
  claims entries idle longer than the lock's lifetime (XAUTOCLAIM), so they are written
  within about half a minute, once. The worker's sweep (workers.worker) starts a drain
  when entries wait with no drain coming.
- Writing is idempotent by event id, so at-least-once delivery counts once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass

import redis
from rq import Queue, get_current_job

from ivr import events, redis_url, settings, store
from ivr.vocabulary import Event

log = logging.getLogger(__name__)

BATCH = 1000
LOCK_SECONDS = 15  # a drain that dies holds the lock (and its entries) this long at most
CLAIM_IDLE_MS = (LOCK_SECONDS + 5) * 1000  # older pending entries belong to a dead drain
MAX_SECONDS = 60  # then the job ends and enqueues the next, so RQ's timeout never hits


@dataclass
class DrainStats:
    read: int = 0
    written: int = 0
    dead: int = 0
    busy: bool = False


def consumer_name() -> str:
    """Unique per process: a retried job in the same process finds its own pending entries."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Drainer:
    """Moves events from the stream into call records and counters."""

    def __init__(self, r: redis.Redis, retention_days: int = 180, batch: int = BATCH,
                 claim_idle_ms: int = CLAIM_IDLE_MS):
        self.r = r  # decodes responses
        self.store = store.Store(r, retention_days)
        self.batch = batch
        self.claim_idle_ms = claim_idle_ms
        self.consumer = consumer_name()

    def run(self, max_seconds: float = MAX_SECONDS) -> DrainStats:
        """Drain until the stream is empty (or time is up); see the module doc."""
        stats = DrainStats()
        deadline = time.monotonic() + max_seconds
        ensure_group(self.r)
        while True:
            lock = self.r.lock(store.DRAIN_LOCK, timeout=LOCK_SECONDS, blocking=False)
            if not lock.acquire():
                stats.busy = True  # the holder will see our entries after it lets go
                return stats
            try:
                self._drain(lock, stats, deadline)
            except store.LostLock:
                log.warning("drain lost its lock to another drain; stopping")
                return stats
            finally:
                with contextlib.suppress(redis.exceptions.LockError):
                    lock.release()  # fails only if it expired: someone else may hold it
            if time.monotonic() > deadline:
                events.enqueue_drain(Queue(store.QUEUE, connection=self.r))
                return stats
            # Entries may have come while we held the lock, from webhooks that did not
            # enqueue a drain because the "scheduled" flag was set, or whose drain found
            # the lock taken: we stay until no entry waits and the flag has expired.
            if work_waiting(self.r, self.claim_idle_ms):
                continue
            flag_ms = self.r.pttl(store.DRAIN_SCHEDULED)
            if flag_ms > 0:
                time.sleep(flag_ms / 1000 + 0.005)
                continue
            self.store.trim_log()
            return stats

    def _drain(self, lock, stats: DrainStats, deadline: float) -> None:
        token = lock.local.token
        while time.monotonic() < deadline:
            entries = self._own_pending() or self._claim_abandoned() or self._read_new()
            if not entries:
                return
            stats.read += len(entries)
            written, dead = self._write(entries, token)
            stats.written += written
            stats.dead += dead
            lock.reacquire()  # back to a full lifetime: we are alive and working

    def _own_pending(self):
        """Entries this process read but did not acknowledge (a failed, retried job)."""
        reply = self.r.xreadgroup(store.WRITERS, self.consumer, {store.EVENTS: "0"},
                                  count=self.batch)
        return reply[0][1] if reply else []

    def _claim_abandoned(self):
        """Entries read by a drain that died before it wrote them."""
        reply = self.r.xautoclaim(store.EVENTS, store.WRITERS, self.consumer,
                                  min_idle_time=self.claim_idle_ms, start_id="0-0",
                                  count=self.batch)
        return reply[1]

    def _read_new(self):
        reply = self.r.xreadgroup(store.WRITERS, self.consumer, {store.EVENTS: ">"},
                                  count=self.batch)
        return reply[0][1] if reply else []

    def _write(self, entries, token) -> tuple[int, int]:
        """Write one batch; an entry that is not an event goes to the dead letters."""
        parsed, raws, done, dead = [], [], [], []
        for entry_id, fields in entries:
            if not fields:  # deleted from the stream after it was read: nothing to write
                done.append(entry_id)
                continue
            raw = fields.get("e")
            try:
                parsed.append(Event.from_json(raw))
                raws.append(raw)
                done.append(entry_id)
            except ValueError as e:
                dead.append((entry_id, raw, f"unreadable event: {e}"))
        done += [entry_id for entry_id, _, _ in dead]
        try:
            return self.store.write_batch(parsed, done, token, dead, raws), len(dead)
        except (redis.ConnectionError, redis.TimeoutError, store.LostLock):
            raise  # Redis is sick or we lost the lock: RQ retries the job later
        except Exception as e:  # a bug or a strange event: find the bad one, keep the rest
            if len(entries) == 1:
                entry_id = entries[0][0]
                log.exception("event %s cannot be written; filed as dead letter", entry_id)
                reason = f"write failed: {type(e).__name__}: {e}"
                self.store.write_batch([], [entry_id], token, [(entry_id, raw, reason)])
                return 0, 1
            results = [self._write([entry], token) for entry in entries]
            return sum(r[0] for r in results), sum(r[1] for r in results)


def ensure_group(r: redis.Redis) -> None:
    try:
        r.xgroup_create(store.EVENTS, store.WRITERS, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


def work_waiting(r: redis.Redis, claim_idle_ms: int = CLAIM_IDLE_MS) -> bool:
    """True if entries wait that no drain has read, or that a dead drain left behind."""
    try:
        pending = r.xpending(store.EVENTS, store.WRITERS)["pending"]
    except redis.ResponseError:
        pending = 0
    if r.xlen(store.EVENTS) > pending:
        return True
    if not pending:
        return False
    stale = r.xpending_range(store.EVENTS, store.WRITERS, min="-", max="+", count=1,
                             idle=claim_idle_ms)
    return bool(stale)


def drain(max_seconds: float = MAX_SECONDS) -> dict:
    """The RQ job: write waiting events. Enqueued by the web app and the worker's sweep."""
    r = text_client(get_current_job().connection)
    config = settings.load()
    stats = Drainer(r, int(config["RUTA_RETENTION_DAYS"])).run(max_seconds)
    return stats.__dict__


_clients: dict[int, redis.Redis] = {}


def text_client(connection: redis.Redis) -> redis.Redis:
    """One decoding client per worker connection, reused by every job of the process."""
    key = id(connection.connection_pool)
    if key not in _clients:
        _clients[key] = redis_url.decoding(connection)
    return _clients[key]

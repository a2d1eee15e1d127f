"""Events on their way out of the web process: to a Redis stream, or to the spool.

`Emitter.emit()` costs a webhook one Redis round trip on its thread's kept connection
(taken from the client's pool once, not per request): one script appends the call's
events to the `{ruta}:events` stream and sets a `SET NX PX` flag; only the
request that sets the flag (a few times a second at most) also enqueues an RQ drain job
(`workers.drain.drain`), which writes the events to the call records and counters.

When Redis cannot be reached the call goes on exactly as normal: the events are
appended to a local spool file (one JSON object a line, fsync'd) and Redis is not tried
again for a moment. `Spool.replay()` (run by the worker on its own, and by
`ivr spool replay`) puts them back on the stream; the writer skips events it has seen,
so a replay never counts anything twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import hiredis
import redis
from rq import Queue, Retry

from ivr import redis_url, store
from ivr.caller_keys import CallerKey
from ivr.vocabulary import ANONYMOUS, Event

log = logging.getLogger(__name__)

DRAIN_JOB = "workers.drain.drain"  # by name: web code never imports job code
DRAIN_EVERY_MS = 200  # at most one drain job enqueued per this many ms
REDIS_DOWN_PAUSE = 2.0  # seconds to spool without trying Redis after a failure
# XADD each event, then SET NX PX the flag; returns 1 when this call set the flag.
APPEND_EVENTS = """
for i = 2, #ARGV do redis.call('XADD', KEYS[1], '*', 'e', ARGV[i]) end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""


def connect(config) -> tuple[redis.Redis | None, Emitter | None, CallerKey]:
    """The webhooks' Redis client, their Emitter and the callers' pseudonym key.

    The web's client fails fast and never retries: a webhook must not wait on a sick
    Redis, it spools instead. Each web thread keeps one connection: an emit is one round trip.
    """
    client = None
    if config["REDIS_URL"]:  # any REDIS_URL form; Sentinel: the sentinels fail fast too
        client = redis_url.connect(config["REDIS_URL"], fail_fast=True)
    # An admin's "try the call" preview is not a call: its events are not kept.
    emitter = None if config["RUTA_PREVIEW"] else Emitter(client, Spool(config["RUTA_SPOOL_DIR"]))
    # Its own secret, never derived from SECRET_KEY (which every staff-facing process
    # holds): production refuses to start without it. In development, unset, each process
    # makes a throwaway one (`ivr dev` gives web and worker one to share).
    secret = config["CALLER_ID_KEY"] or secrets.token_hex(32)
    return client, emitter, CallerKey(secret.encode(), record=emitter is not None)


def caller_pseudonym(number: str | None, key: bytes) -> str:
    """A keyed pseudonym for a caller ID: the same caller gets the same one, nobody can
    turn it back into the number without the key. Withheld numbers are "anonymous"."""
    digits = re.sub(r"[^\d]", "", number or "")
    if len(digits) < 5:  # "anonymous", "unknown", "restricted", empty...
        return ANONYMOUS
    return "c_" + hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()[:20]


class Spool:
    """Append-only files of events that could not reach Redis, one per process."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def path(self) -> Path:
        return self.directory / f"events-{os.getpid()}.jsonl"

    def append(self, events: Iterable[Event]) -> None:
        """Write the events durably (fsync) before the webhook answers."""
        data = "".join(e.to_json() + "\n" for e in events).encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path()
        while True:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # A replay may have taken this file away between open and lock: start over.
                if os.path.exists(path) and os.fstat(fd).st_ino == os.stat(path).st_ino:
                    os.write(fd, data)
                    os.fsync(fd)
                    return
            finally:
                os.close(fd)

    def files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob("events-*.jsonl*"))

    def size(self, limit: int | None = None) -> int:
        """Events waiting in the spool (lines in its files). With `limit`, counting stops
        once the count is past it (it returns limit + 1): cheap however big the spool."""
        total = 0
        for path in self.files():
            try:
                f = path.open("rb")
            except FileNotFoundError:  # replayed meanwhile
                continue
            with f:
                last = b"\n"
                while chunk := f.read(1 << 20):
                    total += chunk.count(b"\n")
                    last = chunk[-1:]
                    if limit is not None and total > limit:
                        return limit + 1
                total += last != b"\n"  # a last line cut short still waits
            if limit is not None and total > limit:
                return limit + 1
        return total

    def replay(self, r: redis.Redis, queue: Queue | None = None) -> int:
        """Move spooled events to the Redis stream; return how many lines were moved.

        Each file is first renamed (new events go to a fresh file), then locked (so a
        writer that opened it just before finishes first), then copied to the stream and
        removed. If Redis fails half way the renamed file stays, and the next replay
        sends all of it again: the writer skips what it has already seen.
        """
        moved = 0
        for path in self.files():
            taking = path
            if not path.name.endswith(".replaying"):
                taking = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.replaying")
                try:
                    path.rename(taking)
                except FileNotFoundError:
                    continue
            with taking.open("rb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                lines = [line.rstrip(b"\n") for line in f if line.strip()]
            pipe = r.pipeline(transaction=False)
            for line in lines:
                # Lines are not parsed here: the writer files bad ones in the dead letters.
                pipe.xadd(store.EVENTS, {"e": line})
            pipe.execute()
            taking.unlink(missing_ok=True)  # a concurrent replay may have sent it too
            moved += len(lines)
        if moved and queue is not None:
            enqueue_drain(queue)
        return moved


def enqueue_drain(queue: Queue) -> None:
    """Ask a worker to write the waiting events (retried, then kept in RQ's failed list)."""
    queue.enqueue(DRAIN_JOB, retry=Retry(max=3, interval=[1, 5, 15]), job_timeout=120,
                  result_ttl=60, failure_ttl=7 * 24 * 3600)


class Emitter:
    """Sends a webhook's events to Redis, or to the spool when Redis is down."""

    def __init__(self, r: redis.Redis | None, spool: Spool):
        self.r = r  # None: no Redis configured, everything goes to the spool
        self.queue = Queue(store.QUEUE, connection=r) if r is not None else None
        self.spool = spool
        self._append = r.register_script(APPEND_EVENTS) if r is not None else None
        self._redis_down_until = 0.0
        self._lock = threading.Lock()
        self._kept = threading.local()  # each web thread's own connection, held between emits

    def emit(self, events: list[Event]) -> str:
        """Hand the events on; returns where they went: "redis" or "spool"."""
        if not events:
            return "none"
        if self.r is None or time.monotonic() < self._redis_down_until:
            self.spool.append(events)
            return "spool"
        try:
            # One command: append the events and claim the "drain scheduled" flag.
            scheduled = self._append_events([e.to_json() for e in events])
            if scheduled:
                enqueue_drain(self.queue)
            return "redis"
        except redis.RedisError as e:
            # Some events may have reached the stream: the writer skips duplicates.
            with self._lock:
                self._redis_down_until = time.monotonic() + REDIS_DOWN_PAUSE
            log.warning("Redis unreachable (%s); spooling %d events", type(e).__name__,
                        len(events))
            self.spool.append(events)
            return "spool"

    def _append_events(self, lines: list[str]) -> int:
        """Run APPEND_EVENTS on this thread's kept connection: the pool's get and release
        cost more than the round trip. The connection keeps the client's options (TLS,
        AUTH, Sentinel, time-outs, health checks); any error drops it, so the next emit
        connects afresh (after a failover, to the new master)."""
        conn = self._connection()
        command = (2, store.EVENTS, store.DRAIN_SCHEDULED, DRAIN_EVERY_MS, *lines)
        try:
            try:
                # Packed by hiredis itself: what redis-py's send_command does, without
                # its copies of the arguments (a third of the client's work per emit).
                conn.send_packed_command([hiredis.pack_command(
                    ("EVALSHA", self._append.sha, *command))])
                return conn.read_response()
            except redis.exceptions.NoScriptError:  # a restarted Redis: send the script
                conn.send_packed_command([hiredis.pack_command(
                    ("EVAL", APPEND_EVENTS, *command))])
                return conn.read_response()
        except BaseException:
            self._kept.conn = None
            conn.disconnect()
            self.r.connection_pool.release(conn)
            raise

    def _connection(self):
        conn = getattr(self._kept, "conn", None)
        if conn is None or self._kept.pid != os.getpid():  # a forked child connects anew
            conn = self.r.connection_pool.get_connection()
            self._kept.conn, self._kept.pid = conn, os.getpid()
            return conn
        # As the pool checks a connection it hands out: one Redis (or its `timeout`, or a
        # proxy) closed while idle is reconnected now rather than failing the emit.
        try:
            if conn.can_read():
                raise redis.ConnectionError("the kept connection has data or was closed")
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            conn.connect()
        return conn

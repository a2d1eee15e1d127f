"""How `rq worker` connects: the Procfile's worker runs

    rq worker --config workers.rq_settings --connection-class workers.rq_settings.Redis \\
              --worker-class workers.worker.RutaWorker ruta

RQ's command line builds its connection as `<connection class>.from_url(REDIS_URL)`, with
REDIS_URL from this settings module. RQ's own `from_url` (redis-py's) knows redis://,
rediss:// and unix:// only; ours is `ivr.redis_url.connect`, so the worker takes every
form of REDIS_URL the web app takes, Sentinel included, read by `ivr.settings` like every
other setting. The URL (and its password) stays off the process list, too.
"""

from __future__ import annotations

import redis

from ivr import redis_url, settings, store

REDIS_URL = settings.load()["REDIS_URL"]
if not REDIS_URL:  # RQ would quietly try localhost:6379
    raise SystemExit("REDIS_URL is not set: the worker needs the Redis the web app uses")
QUEUES = [store.QUEUE]  # when the command line names none


class Redis(redis.Redis):
    """RQ's `--connection-class`: only `from_url` is ours. The client it returns is a
    plain redis.Redis (RQ rebuilds a connection from its class and pool in the scheduler
    process it forks)."""

    @classmethod
    def from_url(cls, url: str, **kwargs) -> redis.Redis:
        return redis_url.connect(url, **kwargs)

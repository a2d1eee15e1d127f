"""Alerts kept in Redis: what the check reads, the open incidents, the list staff see.

The alert check (workers.alerts) reads each line's latest transfers and the newest call
(`inputs`), never the calls themselves: one round trip for any number of calls. An
incident opens with HSETNX and closes with HDEL, so even two checks at once raise it
once and clear it once. `r` must decode responses (`ivr.redis_url.decoding`).
"""

from __future__ import annotations

import json
import time

import redis

from ivr import store
from ivr.alerts import Attempt, Finding
from ivr.message import Message


def inputs(r: redis.Redis, now: float) -> tuple[dict[str, list[Attempt]], float]:
    """(each line's latest transfers, when the newest call started). Before any call,
    the time the check first ran stands in for it, so a number dead from its first day
    still raises the silence alert."""
    lines = sorted(r.smembers(store.ATTEMPT_LINES))
    read = r.pipeline(transaction=False)
    read.zadd(store.LAST_CALL, {"watching": now}, nx=True)
    read.zscore(store.LAST_CALL, "call")
    read.zscore(store.LAST_CALL, "watching")
    for hotline in lines:
        read.lrange(store.attempts_key(hotline), 0, store.ATTEMPTS_KEPT - 1)
    _, last_call, watching, *lists = read.execute()
    attempts = {}
    for hotline, entries in zip(lines, lists, strict=True):
        attempts[hotline] = [Attempt(float(at), status) for at, _, status in
                             (entry.partition("|") for entry in entries)]
    return attempts, float(last_call or watching or now)


def open_incidents(r: redis.Redis) -> dict[str, tuple[float, Finding]]:
    """The open incidents: key -> (when it opened, what was found then)."""
    found = {}
    for key, raw in r.hgetall(store.ALERTS_OPEN).items():
        stored = json.loads(raw)
        found[key] = (stored["since"], Finding.from_json(stored["finding"]))
    return found


def open_incident(r: redis.Redis, finding: Finding, text: Message, now: float) -> bool:
    """Open the incident, unless it is open: True if this call opened it (and logged it)."""
    if not r.hsetnx(store.ALERTS_OPEN, finding.key, json.dumps(
            {"since": now, "finding": finding.to_json()})):
        return False
    _log(r, "raised", finding, text, now)
    return True


def close_incident(r: redis.Redis, finding: Finding, text: Message, now: float) -> bool:
    """Close the incident: True if this call closed it (and logged the recovery)."""
    if not r.hdel(store.ALERTS_OPEN, finding.key):
        return False
    _log(r, "cleared", finding, text, now)
    return True


def _log(r: redis.Redis, state: str, finding: Finding, text: Message, now: float) -> None:
    with r.pipeline() as pipe:
        pipe.lpush(store.ALERTS_LOG, json.dumps({
            "at": now, "state": state, "key": finding.key, "hotline": finding.hotline,
            "problem": str(finding.problem), "text": text.to_json()}))
        pipe.ltrim(store.ALERTS_LOG, 0, store.ALERTS_KEPT - 1)
        pipe.execute()


def recent(r: redis.Redis, count: int = 10) -> list[dict]:
    """The latest alerts and recoveries, newest first: {at, state, hotline, problem,
    text (a Message, shown in the reader's language)}."""
    entries = [json.loads(raw) for raw in r.lrange(store.ALERTS_LOG, 0, count - 1)]
    for entry in entries:
        entry["text"] = Message.from_json(entry["text"])
    return entries


def check_lock(r: redis.Redis, seconds: int) -> bool:
    """Take the check's lock for `seconds`: False if another check holds it."""
    return bool(r.set(store.ALERT_CHECK_LOCK, str(time.time()), nx=True, ex=seconds))

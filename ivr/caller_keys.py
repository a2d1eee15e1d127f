"""Which `CALLER_ID_KEY` made the callers' pseudonyms, from when: by fingerprint only.

A pseudonym is an HMAC of the caller's number under the key (ivr.events), so rotating the
key (`ivr caller-key rotate`, docs/deploy.md) leaves old pseudonyms as they are and gives
every caller a new one from then on: a caller heard before and after the change counts
as two, and repeat calls across it cannot be seen. The reports say so, and from when.

The web process knows its key; the first time one uses a key, it records the key's
fingerprint (an HMAC of a fixed label under the key: it tells keys apart and gives
nothing of them) with that moment in `{ruta}:caller-keys`, whether the key came from
`ivr caller-key rotate` or was simply changed in the environment. The worker, the report
pages and `ivr report` read those moments and never need the key.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime

import redis

from ivr.store import CALLER_KEYS
from ivr.vocabulary import BOGOTA

FINGERPRINT_LABEL = b"ruta CALLER_ID_KEY fingerprint"


def fingerprint(key: bytes) -> str:
    """Names a key without giving it away: the same key always gets the same name."""
    return hmac.new(key, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class KeyEpoch:
    fingerprint: str
    since: datetime  # when a web process first pseudonymised with it (Bogotá)


class CallerKey:
    """The web's key of callers' pseudonyms, and whether Redis knows since when it is used."""

    def __init__(self, secret: bytes, record: bool = True):
        self.secret = secret
        self.fingerprint = fingerprint(secret)
        self.recorded = not record  # an admin's "try the call" preview records nothing

    def note_in_use(self, r: redis.Redis | None) -> None:
        """Record that this key is in use from now, unless recorded before (by any web
        process: the first one's moment stays). Tried at start and then on each new call
        until Redis has answered once, so a key set while Redis was down is recorded too;
        after that it costs a call nothing."""
        if self.recorded or r is None:
            return
        try:
            r.zadd(CALLER_KEYS, {self.fingerprint: time.time()}, nx=True)
        except redis.RedisError:  # calls go on; the next one tries again
            return
        self.recorded = True


class KeyEpochs:
    """The keys used so far, oldest first, as the reports read them (never the keys)."""

    def __init__(self, epochs: list[KeyEpoch]):
        self.epochs = sorted(epochs, key=lambda e: e.since)
        # In whole seconds, as a call's start is kept: a call begun in the second a key
        # was first used was made with it.
        self._starts = [e.since.replace(microsecond=0) for e in self.epochs]

    @classmethod
    def read(cls, r: redis.Redis) -> KeyEpochs:
        return cls([KeyEpoch(_text(fp), datetime.fromtimestamp(score, BOGOTA))
                    for fp, score in r.zrange(CALLER_KEYS, 0, -1, withscores=True)])

    def changes(self) -> list[KeyEpoch]:
        """The keys that replaced another: the first one recorded changed nothing."""
        return self.epochs[1:]

    def changes_between(self, start: datetime, end: datetime) -> list[KeyEpoch]:
        """Changes in [start, end): a range holding one counts some callers twice."""
        return [e for e in self.changes() if start <= e.since < end]

    def since(self, at: datetime) -> datetime | None:
        """When the key in use at `at` started (None: no key recorded before `at`)."""
        i = bisect.bisect_right(self._starts, at)
        return self._starts[i - 1] if i else None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value

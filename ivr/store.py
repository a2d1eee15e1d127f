"""Every Redis key Ruta uses, and every read and write of call data.

Nobody else formats a key string. Every key starts with the hash tag `{ruta}:`, so in a
Redis Cluster all of them live in one slot (why: below). The layout:

    {ruta}:events              stream: events emitted by the web app, not yet written
                               (consumer group "writers"; an entry is deleted once written)
    {ruta}:events:dead         stream: entries that could not be used, with the reason
    {ruta}:log                 stream: every event written, once (trimmed to the retention)
    {ruta}:call:<CallSid>      hash: one call's record (ivr.call_record.CallRecord)
    {ruta}:timeline:<CallSid>  list: the call's events, each once, in the order written
                               (ivr.timeline.line): its timeline page
    {ruta}:caller:<pseudonym>  sorted set: a caller's calls (CallSid by start), within the
                               retention: how often they called (never for "anonymous")
    {ruta}:calls:<YYYY-MM-DD>  sorted set: the day's calls by start time
    {ruta}:day:<YYYY-MM-DD>    hash: the day's counters (kept for ever)
    {ruta}:facets:<YYYY-MM-DD> hash: the day's calls by combination of facet values (the
                               dashboard's filters, ivr.filters)
    {ruta}:facet:<YYYY-MM-DD>:<combination> hash: that combination's counters
    {ruta}:calls:<YYYY-MM-DD>:<facet>=<value> sorted set: the day's calls with that value,
                               by start time (a filtered calls table)
    {ruta}:callers:<YYYY-MM-DD> HyperLogLog: the day's caller pseudonyms (repeat calls)
    {ruta}:hour:<YYYY-MM-DDTHH> hash: dial results in that hour (the 24-hour health strip)
    {ruta}:user:<name>         hash: a staff account (role, password hash)
    {ruta}:users               set: staff account names
    {ruta}:token:<sha256>      hash: an API token's name and role (the token is not kept)
    {ruta}:tokens              hash: API token name -> its sha256
    {ruta}:session:<sha256>    hash: a staff session (user, created, seen, address, agent,
                               data); the id the cookie carries is not kept (ivr.sessions)
    {ruta}:sessions:<name>     sorted set: a person's sessions (sha256) by when they end
    {ruta}:config:version      the configuration version web processes serve (0: files)
    {ruta}:config:seq          the last version number given out
    {ruta}:config:v:<n>        hash: version n (overrides document, author, time, note)
    {ruta}:config:draft        JSON: the administrators' draft
    {ruta}:audio:<sha256>      bytes: a recorded prompt (WAV or MP3) by its content's
                               sha256, kept for ever: drafts and versions name it
    {ruta}:audit               stream: who published, rolled back, changed a user... (kept)
    {ruta}:security            stream: signed-in staff's and operators' logins, logouts,
                               two-step changes, ended sessions (capped; ivr.sessions)
    {ruta}:failed-logins       stream: failed logins and sign-in codes, which anyone can
                               cause (capped apart, so they push none of the above out)
    {ruta}:caller-keys         sorted set: each CALLER_ID_KEY's fingerprint, by when the
                               web first used it (ivr.caller_keys; the key is not kept)
    {ruta}:migrations          hash: a one-time migration's name -> when it ran, its result
                               (ivr.key_migration)
    {ruta}:line_tests          hash: hotline -> its last test call, JSON {target, result,
                               error, at} (`ivr twilio test-line`)
    {ruta}:attempts:<hotline>  list: the line's latest transfer results, "<unix>|<status>",
                               newest first (capped; the alert check reads them)
    {ruta}:attempts            set: the lines that have such a list
    {ruta}:last-call           sorted set: "call" -> when the newest call started;
                               "watching" -> when the alert check first ran
    {ruta}:alerts:open         hash: an open incident's key -> JSON (ivr.incidents)
    {ruta}:alerts              list: alerts raised and cleared, newest first (capped)
    {ruta}:alerts:check        lock: the one alert check running right now
    {ruta}:drain:scheduled     flag: a drain job was enqueued in the last moments
    {ruta}:drain:lock          lock: the one drain writing right now
    {ruta}:limits:...          failed logins, by client address and account name (the
                               `limits` library's keys, under our prefix; they expire)

Days are America/Bogota days. Call records, timelines, day indexes, callers' calls and the
log expire after the retention period (RUTA_RETENTION_DAYS, default 180), and so do the facet
counts and indexes (a filter reads the calls the table can still list); the day counters stay.

One hash tag, so one slot, on purpose. Redis Cluster runs a Lua script or a MULTI/EXEC
only when all its keys are in one slot (CROSSSLOT otherwise), and ours span the layout:
the emit script appends to the events stream and sets the drain flag; a drain's
transaction WATCHes the lock, writes call records, day counters, day indexes, callers,
hour hashes and the log, and acknowledges the events stream; a publish WATCHes the draft
and writes a version and the version counter; an account or a token is written with its
index. A tag per call cannot work: writing a call also moves the day's counters and the
log, which every call shares, in the all-or-nothing batch exactly-once counting rests
on; tags per subsystem would spread nothing that matters (the write path is nearly all
the traffic). All of Ruta fits one server many times over (~3.8 KB a call;
one drain writes thousands of events a second), so a cluster would give Ruta
availability, not scale. RQ's own keys (`rq:*`) are not tagged and RQ does not run on a
cluster: Redis Sentinel is the supported way to survive a server's loss (docs/design.md).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import islice

import redis
from rq import Queue

from ivr import redis_url, timeline
from ivr.call_record import CallRecord
from ivr.filters import NONE, Filters, calls_matching, combinations_matching, counters_matching
from ivr.tally import tally
from ivr.vocabulary import ANONYMOUS, BOGOTA, REACHED_NO, REACHED_YES, Event, Facet, day_of

PREFIX = "{ruta}:"  # the hash tag: every key in one cluster slot (see above)
EVENTS = f"{PREFIX}events"
DEAD_LETTER = f"{PREFIX}events:dead"
LOG = f"{PREFIX}log"
WRITERS = "writers"  # the consumer group that writes events
DRAIN_SCHEDULED = f"{PREFIX}drain:scheduled"
DRAIN_LOCK = f"{PREFIX}drain:lock"
ATTEMPT_LINES = f"{PREFIX}attempts"
ATTEMPTS_KEPT = 200  # per line: the alert check's 60 minutes, and its last M, fit in it
LAST_CALL = f"{PREFIX}last-call"
ALERTS_OPEN = f"{PREFIX}alerts:open"
ALERTS_LOG = f"{PREFIX}alerts"
ALERTS_KEPT = 200
ALERT_CHECK_LOCK = f"{PREFIX}alerts:check"
LIMITS_PREFIX = f"{PREFIX}limits"  # the login limiter's (`limits`) keys start with this
QUEUE = "ruta"  # the RQ queue our workers listen on (RQ's keys: rq:queue:ruta, ...)


def call_key(call_sid: str) -> str:
    return f"{PREFIX}call:{call_sid}"


def timeline_key(call_sid: str) -> str:
    return f"{PREFIX}timeline:{call_sid}"


def caller_calls_key(pseudonym: str) -> str:
    return f"{PREFIX}caller:{pseudonym}"


def day_calls_key(day: str) -> str:
    return f"{PREFIX}calls:{day}"


def day_key(day: str) -> str:
    return f"{PREFIX}day:{day}"


def facets_key(day: str) -> str:
    return f"{PREFIX}facets:{day}"


def facet_counts_key(day: str, combination: str) -> str:
    return f"{PREFIX}facet:{day}:{combination}"


def facet_calls_key(day: str, facet: str, value: str) -> str:
    return f"{PREFIX}calls:{day}:{facet}={value}"


def day_callers_key(day: str) -> str:
    return f"{PREFIX}callers:{day}"


def hour_key(hour: str) -> str:
    """`hour` is "YYYY-MM-DDTHH" in Bogotá time."""
    return f"{PREFIX}hour:{hour}"


def attempts_key(hotline: str) -> str:
    return f"{PREFIX}attempts:{hotline}"


def digest_sent_key(week: str, name: str) -> str:
    """Set when `name`'s digest of the week starting `week` (its Monday) is sent: once."""
    return f"{PREFIX}digest:{week}:{name}"


def user_key(name: str) -> str:
    return f"{PREFIX}user:{name}"


def token_key(token_hash: str) -> str:
    return f"{PREFIX}token:{token_hash}"


def session_key(session_hash: str) -> str:
    return f"{PREFIX}session:{session_hash}"


def user_sessions_key(name: str) -> str:
    return f"{PREFIX}sessions:{name}"


USERS = f"{PREFIX}users"
TOKENS = f"{PREFIX}tokens"
CONFIG_VERSION = f"{PREFIX}config:version"
CONFIG_VERSION_SEQ = f"{PREFIX}config:seq"
CONFIG_DRAFT = f"{PREFIX}config:draft"
# Moves at every change to the draft (save, publish request, approval, discard...): what a
# form names as the draft it was made on (ivr.versions.ConfigVersions.revision).
CONFIG_DRAFT_REVISION = f"{PREFIX}config:draft:revision"
# Each revision's draft, by revision number (a stream, ids "<revision>-0", capped): what
# another admin changed since a page was made.
CONFIG_DRAFTS_KEPT = f"{PREFIX}config:drafts"
# The drafts a rollback replaced or an admin discarded, newest first (a capped list).
CONFIG_DRAFTS_SET_ASIDE = f"{PREFIX}config:drafts:set-aside"
AUDIT = f"{PREFIX}audit"
SECURITY_LOG = f"{PREFIX}security"
FAILED_LOGINS = f"{PREFIX}failed-logins"
LINE_TESTS = f"{PREFIX}line_tests"
CALLER_KEYS = f"{PREFIX}caller-keys"
MIGRATIONS = f"{PREFIX}migrations"


def config_version_key(number: int) -> str:
    return f"{PREFIX}config:v:{number}"


def audio_key(sha256: str) -> str:
    return f"{PREFIX}audio:{sha256}"


def keep_audio(r: redis.Redis, sha256: str, data: bytes) -> None:
    """Keep a recording's bytes under their sha256 (the same bytes: once)."""
    r.set(audio_key(sha256), data, nx=True)


def audio(r: redis.Redis, sha256: str) -> bytes | None:
    """A recording's bytes (`r` must not decode responses), or None."""
    return r.get(audio_key(sha256))

HOUR_KEEP_SECONDS = 3 * 24 * 3600


def staff_pages_client(config) -> redis.Redis | None:
    """The staff pages' Redis client (decoded answers), or None without Redis."""
    url = config["REDIS_URL"]
    # Bounded waits: a staff page must not hold a web worker (which also answers webhooks)
    # for long while Redis is unreachable.
    return redis_url.connect(url, decode_responses=True, socket_connect_timeout=1,
                             socket_timeout=5) if url else None


# Many counters of many hashes moved in one command, each hash then given its expiry:
# KEYS are the hashes; ARGV, for each, its number of counters, then counter and delta
# pairs, then the expiry (Unix seconds). A batch moves hundreds of facet counters, and a
# command each cost the drain more than the counting itself.
HINCRBY_MANY = """
local at = 1
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  for i = at + 1, at + 2 * n, 2 do
    redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
  end
  at = at + 2 * n + 1
  redis.call('EXPIREAT', key, ARGV[at])
  at = at + 1
end
"""


class LostLock(Exception):
    """Another drain took the write lock: this one must stop without writing."""


class Store:
    """Reads and writes call data; `r` must decode responses (see `redis_url.decoding`)."""

    def __init__(self, r: redis.Redis, retention_days: int = 180):
        self.r = r
        self.retention = timedelta(days=retention_days)
        self.hincrby_many = r.register_script(HINCRBY_MANY)

    # --- writing (the drain job) ----------------------------------------------------

    def write_batch(
        self,
        events: list[Event],
        done_ids: list[str],
        lock_token: str | bytes | None,
        dead: list[tuple[str, str, str]] = (),
        raws: list[str] | None = None,
    ) -> int:
        """Fold `events` into call records and day counters, in one transaction: read
        the calls' records, tally (ivr.tally decides every counter move), write.

        The same transaction acknowledges and deletes the stream entries `done_ids`, and
        files `dead` (entry id, raw, reason) in the dead-letter stream, so a batch is
        written entirely or not at all. It runs only while this drain still holds the
        write lock (WATCH), so two drains never fold the same call at once. Events
        already applied are skipped: returns how many were new. `raws`, the events' JSON
        as read from the stream, saves encoding them again for the log.
        """
        sids = list(dict.fromkeys(e.call for e in events))
        read = self.r.pipeline(transaction=False)
        for sid in sids:
            read.hgetall(call_key(sid))
        stored = dict(zip(sids, read.execute(), strict=True))  # what Redis holds now
        changes = tally({sid: CallRecord.from_fields(sid, fields)
                         for sid, fields in stored.items() if fields}, events)
        raw_of = {id(e): raw for e, raw in zip(events, raws, strict=True)} if raws else {}
        lines: dict[str, list[str]] = {}  # the calls' new timeline entries
        for event in changes.events:
            lines.setdefault(event.call, []).append(timeline.line(event))

        with self.r.pipeline() as pipe:
            try:
                if lock_token is not None:
                    pipe.watch(DRAIN_LOCK)
                    if _as_text(pipe.get(DRAIN_LOCK)) != _as_text(lock_token):
                        raise LostLock
                pipe.multi()
                for sid, record in changes.records.items():
                    before = stored[sid]
                    fields = record.to_fields()
                    # Only what changed: most batches touch a few fields of a call.
                    pipe.hset(call_key(sid), mapping={
                        k: v for k, v in fields.items() if before.get(k) != v})
                    pipe.rpush(timeline_key(sid), *lines[sid])  # (before its expiry is set)
                    if before.get("day") != record.day or not before:  # new, or now dated
                        keep_until = self._expiry(record.day)
                        pipe.expireat(call_key(sid), keep_until)
                        pipe.expireat(timeline_key(sid), keep_until)
                        if record.day:
                            pipe.zadd(day_calls_key(record.day), {sid: record.started})
                            pipe.expireat(day_calls_key(record.day), keep_until)
                    if record.caller != before.get("caller", "") and record.day:
                        self._index_caller(pipe, record)
                for day, counts in changes.days.items():
                    for name, delta in counts.items():
                        if delta:
                            pipe.hincrby(day_key(day), name, delta)
                self.write_facets(pipe, changes)
                for day, pseudonyms in changes.callers.items():
                    pipe.pfadd(day_callers_key(day), *pseudonyms)
                    pipe.expireat(day_callers_key(day), self._expiry(day))
                for hour, counts in changes.hours.items():
                    for name, delta in counts.items():
                        pipe.hincrby(hour_key(hour), name, delta)
                    pipe.expire(hour_key(hour), HOUR_KEEP_SECONDS)
                for hotline, results in changes.attempts.items():
                    pipe.lpush(attempts_key(hotline), *(f"{at}|{st}" for at, st in results))
                    pipe.ltrim(attempts_key(hotline), 0, ATTEMPTS_KEPT - 1)
                    pipe.expire(attempts_key(hotline), HOUR_KEEP_SECONDS)
                    pipe.sadd(ATTEMPT_LINES, hotline)
                if changes.last_call:
                    pipe.zadd(LAST_CALL, {"call": changes.last_call}, gt=True)
                for event in changes.events:  # (the plain command: redis-py's xadd() is slower)
                    pipe.execute_command("XADD", LOG, "*", "e",
                                         raw_of.get(id(event)) or event.to_json())
                for entry_id, raw, reason in dead:
                    pipe.xadd(DEAD_LETTER, {"entry": entry_id, "e": raw or "", "reason": reason})
                if done_ids:
                    pipe.xack(EVENTS, WRITERS, *done_ids)
                    pipe.xdel(EVENTS, *done_ids)
                pipe.execute()
            except redis.WatchError as e:
                raise LostLock from e
        return len(changes.events)

    def _index_caller(self, pipe, record: CallRecord) -> None:
        """File the call under its caller's pseudonym, and forget that caller's calls
        older than the retention: the key lives as long as its newest call's record."""
        if record.caller in ("", ANONYMOUS):
            return
        key = caller_calls_key(record.caller)
        pipe.zadd(key, {record.call: record.started})
        pipe.zremrangebyscore(key, "-inf", f"({self._retained_since()}")
        # Never earlier than today's calls' records (Redis 6.2 has no EXPIREAT GT).
        pipe.expireat(key, max(self._expiry(record.day), self._expiry(day_of(time.time()))))

    def _retained_since(self) -> float:
        """The oldest start time the retention still keeps."""
        return time.time() - self.retention.total_seconds()

    def write_facets(self, pipe, changes) -> None:
        """The facet counts and indexes a batch moves (ivr.tally), kept as long as calls."""
        moves = {facets_key(day): (day, counts) for day, counts in changes.facet_calls.items()}
        moves |= {facet_counts_key(day, key): (day, counts)
                  for (day, key), counts in changes.facet_counts.items()}
        keys, args = [], []
        for key, (day, counts) in moves.items():
            moved = [(name, delta) for name, delta in counts.items() if delta]
            if moved:
                keys.append(key)
                args += [len(moved), *(x for pair in moved for x in pair), self._expiry(day)]
        if keys:
            self.hincrby_many(keys=keys, args=args, client=pipe)
        for (day, facet, value), calls in changes.index_add.items():
            pipe.zadd(facet_calls_key(day, facet, value), calls)
            pipe.expireat(facet_calls_key(day, facet, value), self._expiry(day))
        for (day, facet, value), calls in changes.index_remove.items():
            pipe.zrem(facet_calls_key(day, facet, value), *calls)

    def trim_log(self) -> None:
        """Drop logged events older than the retention period."""
        cutoff_ms = int((datetime.now(BOGOTA) - self.retention).timestamp() * 1000)
        self.r.xtrim(LOG, minid=cutoff_ms, approximate=True)

    def _expiry(self, day: str) -> int:
        """End of the retention period of a day's data (from today if no day yet)."""
        if not day:
            return int((datetime.now(BOGOTA) + self.retention).timestamp())
        return _day_end(day) + int(self.retention.total_seconds())

    # --- reading (reports, the command line) ------------------------------------------

    def day_counters(self, day: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(day_key(day)).items()}

    def call(self, call_sid: str) -> CallRecord | None:
        fields = self.r.hgetall(call_key(call_sid))
        return CallRecord.from_fields(call_sid, fields) if fields else None

    def timeline(self, call_sid: str) -> tuple[CallRecord, list[str], int] | None:
        """A call's record, its timeline's entries (ivr.timeline.line) and how many calls
        its caller's pseudonym made within the retention (0: withheld number); None if
        no such call is kept. Two round trips, whatever the data's size."""
        read = self.r.pipeline(transaction=False)
        read.hgetall(call_key(call_sid))
        read.lrange(timeline_key(call_sid), 0, -1)
        fields, lines = read.execute()
        if not fields:
            return None
        record = CallRecord.from_fields(call_sid, fields)
        calls = 0
        if record.caller not in ("", ANONYMOUS):
            # At least this one: calls written before callers' calls were kept are not
            # in the set.
            calls = max(1, self.r.zcount(caller_calls_key(record.caller),
                                         self._retained_since(), "+inf"))
        return record, lines, calls

    def counters_for(self, days: list[str]) -> dict[str, dict[str, int]]:
        """Each day's counters, in one round trip."""
        return self._day_hashes(days, day_key)

    def _day_hashes(self, days: list[str], key_of) -> dict[str, dict[str, int]]:
        """Each day's hash of counts at `key_of(day)`, in one round trip."""
        read = self.r.pipeline(transaction=False)
        for day in days:
            read.hgetall(key_of(day))
        found = zip(days, read.execute(), strict=True)
        return {day: {k: int(v) for k, v in fields.items()} for day, fields in found}

    def filtered_counters(self, days: list[str], filters: Filters) -> dict[str, dict[str, int]]:
        """Each day's counters for the calls `filters` pick (ivr.filters), named as the
        day counters are: the days' small combination hashes, then only the counters of
        the combinations picked (two round trips, whatever the number of calls)."""
        by_day = self._facet_calls(days)
        picked = [(day, key) for day in days
                  for key in combinations_matching(by_day[day], filters)]
        read = self.r.pipeline(transaction=False)
        for day, key in picked:
            read.hgetall(facet_counts_key(day, key))
        counts: dict[str, dict[str, dict[str, int]]] = {day: {} for day in days}
        for (day, key), fields in zip(picked, read.execute(), strict=True):
            counts[day][key] = {k: int(v) for k, v in fields.items()}
        return {day: counters_matching(by_day[day], counts[day], filters) for day in days}

    def _facet_calls(self, days: list[str]) -> dict[str, dict[str, int]]:
        """Each day's calls by facet combination, in one round trip."""
        return self._day_hashes(days, facets_key)

    def unique_callers(self, days: list[str]) -> int:
        """Distinct caller pseudonyms over the days (HyperLogLog: within about 1%)."""
        return self.r.pfcount(*[day_callers_key(d) for d in days]) if days else 0

    def recent_dials(self, hours: list[str]) -> dict[str, int]:
        """Dial results ("dial:<hotline>:<status>") summed over the given hours."""
        read = self.r.pipeline(transaction=False)
        for hour in hours:
            read.hgetall(hour_key(hour))
        total: Counter = Counter()
        for fields in read.execute():
            total.update({k: int(v) for k, v in fields.items()})
        return dict(total)

    def count_calls(self, days: list[str], filters: Filters = NONE) -> int:
        return sum(self._matching_sizes(days, filters) if filters else self._day_sizes(days))

    def _matching_sizes(self, days: list[str], filters: Filters) -> list[int]:
        """How many calls of each day `filters` pick: from the day's combinations, or
        its ended calls by start time in the hour; both, by reading that hour's calls."""
        if not filters.hour:
            return [calls_matching(found, filters) for found in self._facet_calls(days).values()]
        if filters.asked():
            return [sum(1 for _sid in self._day_matching(day, filters)) for day in days]
        read = self.r.pipeline(transaction=False)
        for day in days:
            for key in _ended_indexes(day):
                read.zcount(key, *_hour_window(day, filters.hour))
        counts = read.execute()
        return [reached + never for reached, never in zip(counts[::2], counts[1::2], strict=True)]

    def _day_sizes(self, days: list[str]) -> list[int]:
        """How many calls each day has, in one round trip."""
        read = self.r.pipeline(transaction=False)
        for day in days:
            read.zcard(day_calls_key(day))
        return read.execute()

    def calls_page(self, days_newest_first: list[str], offset: int, limit: int,
                   filters: Filters = NONE):
        """One page of the calls of these days that `filters` pick, newest first, and
        how many they pick in all."""
        sizes = (self._matching_sizes(days_newest_first, filters) if filters else
                 self._day_sizes(days_newest_first))
        total, picked = sum(sizes), []
        skip = offset
        for day, size in zip(days_newest_first, sizes, strict=True):
            if len(picked) >= limit:
                break
            if skip >= size:
                skip -= size
                continue
            want = limit - len(picked)
            if filters:
                found = self._day_matching(day, filters, newest_first=True)
                picked += list(islice(found, skip, skip + want))
            else:
                picked += self.r.zrevrange(day_calls_key(day), skip, skip + want - 1)
            skip = 0
        return self._records(picked), total

    def iter_calls(self, days: list[str], chunk: int = 500, filters: Filters = NONE):
        """Every call of the days that `filters` pick, oldest first, read `chunk` at a
        time (flat memory)."""
        for day in days:
            if filters:
                found = self._day_matching(day, filters, chunk=chunk)
                while sids := list(islice(found, chunk)):
                    yield from self._records(sids)
                continue
            start = 0
            while True:
                sids = self.r.zrange(day_calls_key(day), start, start + chunk - 1)
                if not sids:
                    break
                yield from self._records(sids)
                start += chunk

    def _day_matching(self, day: str, filters: Filters, newest_first: bool = False,
                      chunk: int = 500):
        """The CallSids of one day that `filters` pick, in start order: the smallest of
        the filters' indexes (the day's calls if only the hour is asked) read `chunk` at
        a time within the hour, each call checked in the others (`_kept`)."""
        keys = _indexes(day, filters)
        read = self.r.pipeline(transaction=False)
        for key in keys:
            read.zcard(key)
        smallest, *others = [k for _n, k in sorted(zip(read.execute(), keys, strict=True))]
        low, high = _hour_window(day, filters.hour)
        start = 0
        while True:
            sids = (self.r.zrevrangebyscore(smallest, high, low, start=start, num=chunk)
                    if newest_first else
                    self.r.zrangebyscore(smallest, low, high, start=start, num=chunk))
            if not sids:
                return
            yield from self._kept(day, filters, others, sids)
            start += chunk

    def _kept(self, day: str, filters: Filters, others: list[str], sids: list[str]) -> list[str]:
        """The `sids` read from a filter's first index that `filters` pick: those in all
        the `others`; with the hour alone (read from the day's calls, which hold calls
        still going too), the ended ones, as every facet's index holds only them."""
        if filters.asked() or not sids:
            return self._in_all(others, sids)
        read = self.r.pipeline(transaction=False)
        for key in _ended_indexes(day):
            read.zmscore(key, sids)
        reached, never = read.execute()
        return [sid for sid, yes, no in zip(sids, reached, never, strict=True)
                if yes is not None or no is not None]

    def _in_all(self, keys: list[str], sids: list[str]) -> list[str]:
        """The `sids` found in every one of these indexes (sorted sets), in their order."""
        if not keys or not sids:
            return sids
        read = self.r.pipeline(transaction=False)
        for key in keys:
            read.zmscore(key, sids)
        found = read.execute()
        return [sid for i, sid in enumerate(sids)
                if all(scores[i] is not None for scores in found)]

    def calls_from(self, days: list[str], position: tuple[int, int], limit: int,
                   filters: Filters = NONE):
        """Up to `limit` calls of the days that `filters` pick, oldest first, from
        `position` (day index, offset in that day), and where the next read starts (None
        after the last day). A long export reads its range this way, part by part, in
        separate jobs."""
        if filters:
            return self._matching_from(days, position, limit, filters)
        day, offset = position
        sids: list[str] = []
        while day < len(days) and len(sids) < limit:
            got = self.r.zrange(day_calls_key(days[day]), offset,
                                offset + limit - len(sids) - 1)
            sids += got
            offset += len(got)
            if len(sids) < limit:  # this day is over
                day, offset = day + 1, 0
        return self._records(sids), ((day, offset) if day < len(days) else None)

    def _matching_from(self, days: list[str], position: tuple[int, int], limit: int,
                       filters: Filters):
        """calls_from, filtered: the offset is in the day's index of the first facet
        filtered on (the same index from part to part, whatever the indexes' sizes)."""
        day, offset = position
        sids: list[str] = []
        while day < len(days) and len(sids) < limit:
            first, *others = _indexes(days[day], filters)
            want = limit - len(sids)
            got = self.r.zrangebyscore(first, *_hour_window(days[day], filters.hour),
                                       start=offset, num=want)
            offset += len(got)
            sids += self._kept(days[day], filters, others, got)
            if len(got) < want:  # this day is over
                day, offset = day + 1, 0
        return self._records(sids), ((day, offset) if day < len(days) else None)

    def _records(self, sids: list[str]) -> list[CallRecord]:
        read = self.r.pipeline(transaction=False)
        for sid in sids:
            read.hgetall(call_key(sid))
        found = zip(sids, read.execute(), strict=True)
        return [CallRecord.from_fields(sid, fields) for sid, fields in found if fields]

    # --- test calls to the hotlines (`ivr twilio test-line`) --------------------------

    def record_line_test(self, hotline: str, target: str, result: str, at: datetime,
                         error: str = "") -> None:
        """Keep a hotline's latest test call (one per hotline: the newest wins)."""
        self.r.hset(LINE_TESTS, hotline, json.dumps(
            {"target": target, "result": result, "error": error,
             "at": at.astimezone(BOGOTA).isoformat(timespec="seconds")}))

    def line_tests(self) -> dict[str, dict]:
        """Each hotline's latest test call: {target, result, error, at (ISO, Bogotá)}."""
        return {hotline: json.loads(raw) for hotline, raw in self.r.hgetall(LINE_TESTS).items()}

    def dead_letters(self, count: int = 100) -> list[tuple[str, dict]]:
        return self.r.xrevrange(DEAD_LETTER, count=count)

    def backlog(self) -> dict[str, int]:
        """Events waiting to be written: in the stream, and of those, delivered but unacked."""
        waiting = self.r.xlen(EVENTS)
        try:
            pending = self.r.xpending(EVENTS, WRITERS)["pending"]
        except redis.ResponseError:  # no group yet: nothing was ever drained
            pending = 0
        return {"waiting": waiting, "pending": pending}


def work_counts(r: redis.Redis) -> dict[str, int]:
    """What waits to be written, in one round trip and without writing (for /readyz and
    /metrics): drain jobs in the RQ queue, failed drain jobs RQ keeps, events in the
    stream."""
    queue = Queue(QUEUE, connection=r)  # RQ's own keys, named by RQ
    failed = queue.failed_job_registry.key
    read = r.pipeline(transaction=False)
    read.llen(queue.key)
    # RQ scores a failed job by when it expires (-1: never) and drops the expired ones,
    # scores 0 to now, only when someone cleans the registry up: not counted here.
    read.zcard(failed)
    read.zcount(failed, 0, time.time())
    read.xlen(EVENTS)
    jobs, failed_all, expired, events = read.execute()
    return {"queued_jobs": int(jobs), "failed_jobs": int(failed_all) - int(expired),
            "events_waiting": int(events)}


@lru_cache(maxsize=1024)
def _indexes(day: str, filters: Filters) -> list[str]:
    """The sorted sets of a day's calls (by start time) a filtered read intersects."""
    return ([facet_calls_key(day, f, v) for f, v in filters.asked().items()]
            or [day_calls_key(day)])


def _ended_indexes(day: str) -> list[str]:
    """A day's ended calls, in two indexes that share none: each reached a person or
    never did (ivr.call_record.CallRecord.facets); a call still going is in neither."""
    return [facet_calls_key(day, Facet.REACHED, value) for value in (REACHED_YES, REACHED_NO)]


def _hour_window(day: str, hour: str) -> tuple[int | str, int | str]:
    """The scores (start times) of a day's calls that started in that hour (Bogotá, no
    daylight saving time), for ZRANGEBYSCORE; the whole day if no hour is asked."""
    if not hour:
        return "-inf", "+inf"
    start = _day_end(day) - 86400 + int(hour) * 3600
    return start, f"({start + 3600}"


def _day_end(day: str) -> int:
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=BOGOTA)
    return int((start + timedelta(days=1)).timestamp())


def _as_text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value

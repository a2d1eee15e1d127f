"""Exports too big to stream within the web timeout, built by the worker in parts.

A supervisor asks for a range with more calls than the web streams in a few seconds
(`ivr.reports.CSV_MAX_ROWS`); the web starts an export here and shows its progress. The
RQ job (`workers.exports.export_part`, enqueued by name) writes one part at a time, at
most PART_ROWS calls, each a whole CSV file (header included), gzip-compressed into one
Redis string, then enqueues the next part. Why parts:

- the worker is a SimpleWorker that also drains the call events: a job of a few seconds
  at a time lets the drains queued meanwhile run in between, where a 1,000,000-call
  export in one job would hold them for minutes;
- each part downloads within the web timeout (a few MB compressed), and a part has
  fewer rows than Excel's limit (1,048,576).

Keys (all expire KEEP_SECONDS after the export was asked for):
    {ruta}:export:<id>            hash: who asked, form, language, query, progress, parts
    {ruta}:export:<id>:part:<n>   string: part n, a gzip file of the CSV text
    {ruta}:export:asked:<digest>  string: the id of the export for the same person, form,
                                  language and query (asking twice does not build twice)
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import redis
from rq import Queue, Retry

from ivr.store import PREFIX, QUEUE

EXPORT_JOB = "workers.exports.export_part"  # by name: web code never imports job code
PART_ROWS = 50_000  # about 10 s of the worker's time, about 3 MB compressed
KEEP_SECONDS = 24 * 3600
PROGRESS_EVERY = 2_000  # rows written between two progress notes
READ_BYTES = 1 << 20  # a download reads its part this many bytes at a time


def export_key(export_id: str) -> str:
    return f"{PREFIX}export:{export_id}"


def part_key(export_id: str, part: int) -> str:
    return f"{PREFIX}export:{export_id}:part:{part}"


def asked_key(who: str, form: str, lang: str, query: dict) -> str:
    asked = json.dumps([who, form, lang, sorted(query.items())])
    return f"{PREFIX}export:asked:{hashlib.sha256(asked.encode()).hexdigest()[:32]}"


class State(StrEnum):
    WORKING = "working"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Part:
    rows: int
    first: str  # when its first call started (ISO, Bogotá); "" when it has no call
    last: str


@dataclass(frozen=True)
class Export:
    id: str
    who: str  # the staff member who asked: nobody else sees or downloads it
    form: str  # ivr.exports.Form's value
    lang: str  # the reader's language (the Excel form's headers and names)
    query: dict  # the request's parameters (the range, and any filter)
    stem: str  # the file name's stem, "ruta-calls-2026-11-01-to-2026-11-30"
    total: int  # calls in the range when it was asked for
    asked_at: float
    state: State = State.WORKING
    done: int = 0  # rows written so far
    position: tuple[int, int] = (0, 0)  # where the next part starts: (day index, offset)
    parts: list[Part] = field(default_factory=list)

    @property
    def percent(self) -> int:
        if self.state is State.DONE:
            return 100
        return min(99, 100 * self.done // self.total) if self.total else 0


def start(r: redis.Redis, who: str, form: str, lang: str, query: dict, stem: str,
          total: int) -> str:
    """The id of an export of `query` for `who`: the one already asked for, or a new one
    whose first part is enqueued."""
    asked = asked_key(who, form, lang, query)
    export_id = secrets.token_urlsafe(12)
    if not r.set(asked, export_id, nx=True, ex=KEEP_SECONDS):
        existing = r.get(asked)
        if existing and r.exists(export_key(_text(existing))):
            return _text(existing)
        r.set(asked, export_id, ex=KEEP_SECONDS)
    key = export_key(export_id)
    r.hset(key, mapping={
        "who": who, "form": form, "lang": lang, "query": json.dumps(query), "stem": stem,
        "total": total, "asked_at": time.time(), "state": State.WORKING.value, "done": 0,
        "position": "0,0", "parts": "[]"})
    r.expire(key, KEEP_SECONDS)
    enqueue_part(r, export_id)
    return export_id


def enqueue_part(r: redis.Redis, export_id: str) -> None:
    """The job that writes the export's next part. A failed one is retried from the same
    position: a part is written whole or written again."""
    Queue(QUEUE, connection=r).enqueue(
        EXPORT_JOB, export_id, retry=Retry(max=3, interval=[5, 30, 120]), job_timeout=600,
        result_ttl=60, failure_ttl=KEEP_SECONDS)


def read(r: redis.Redis, export_id: str) -> Export | None:
    fields = {_text(k): _text(v) for k, v in r.hgetall(export_key(export_id)).items()}
    if not fields:
        return None
    day, offset = fields["position"].split(",")
    return Export(
        id=export_id, who=fields["who"], form=fields["form"], lang=fields["lang"],
        query=json.loads(fields["query"]), stem=fields["stem"], total=int(fields["total"]),
        asked_at=float(fields["asked_at"]), state=State(fields["state"]),
        done=int(fields["done"]), position=(int(day), int(offset)),
        parts=[Part(**p) for p in json.loads(fields["parts"])])


def note_progress(r: redis.Redis, export: Export, rows_in_part: int) -> None:
    """The progress page's count, while a part is written."""
    r.hset(export_key(export.id), "done", export.done + rows_in_part)


def new_part(r: redis.Redis, export: Export) -> str:
    """The key part number len(export.parts) is written to, emptied (a retried part is
    written again from its start)."""
    key = part_key(export.id, len(export.parts))
    r.delete(key)
    return key


def append(r: redis.Redis, key: str, data: bytes) -> None:
    """More of a part's compressed bytes."""
    pipe = r.pipeline(transaction=False)
    pipe.append(key, data)
    pipe.expire(key, KEEP_SECONDS)
    pipe.execute()


def part_written(r: redis.Redis, export: Export, part: Part | None,
                 next_position: tuple[int, int] | None) -> None:
    """Part done: note it and its rows, then enqueue the next one, or say it is done
    (with no part when the last one ended exactly where the range does)."""
    parts = [p.__dict__ for p in export.parts] + ([part.__dict__] if part else [])
    fields = {"parts": json.dumps(parts), "done": export.done + (part.rows if part else 0)}
    if next_position is None:
        fields["state"] = State.DONE.value
    else:
        fields["position"] = f"{next_position[0]},{next_position[1]}"
    r.hset(export_key(export.id), mapping=fields)
    if next_position is not None:
        enqueue_part(r, export.id)


def failed(r: redis.Redis, export_id: str) -> None:
    if r.exists(export_key(export_id)):
        r.hset(export_key(export_id), "state", State.FAILED.value)


def part_size(r: redis.Redis, export_id: str, part: int) -> int:
    return r.strlen(part_key(export_id, part))


def part_bytes(r: redis.Redis, export_id: str, part: int) -> Iterator[bytes]:
    """A part's gzip bytes, READ_BYTES at a time (flat memory however big it is)."""
    key, start = part_key(export_id, part), 0
    while True:
        piece = r.getrange(key, start, start + READ_BYTES - 1)
        if not piece:
            return
        yield piece
        start += len(piece)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value

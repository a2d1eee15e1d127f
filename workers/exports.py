"""The RQ job that writes one part of a big CSV export: `workers.exports.export_part`.

Enqueued by the web (ivr.export_jobs.start) and by itself for the next part. It writes
the same rows as the web's stream (ivr.reports.csv_rows, in the asker's language for the
Excel form), gzip-compressed into Redis as it goes: memory stays flat whatever the range.
"""

from __future__ import annotations

import zlib
from datetime import datetime

import redis
from flask import Flask
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from rq import get_current_job

from ivr import create_app, export_jobs, exports, reports, services
from ivr.caller_keys import KeyEpochs
from ivr.export_jobs import Export, Part
from ivr.filters import NONE, FilterError, Filters
from ivr.summary import RangeError, parse_range
from ivr.vocabulary import BOGOTA

READ_CALLS = 500  # calls read from Redis at a time, as ivr.store.iter_calls does
_apps: list[Flask] = []


def export_part(export_id: str) -> dict:
    """The RQ job: the export's next part (retried whole by RQ if it fails)."""
    job = get_current_job()
    try:
        return write_part(job.connection, export_id, app())
    except Exception:
        if not job.retries_left:
            export_jobs.failed(job.connection, export_id)
        raise


def app() -> Flask:
    """The web app, as the web builds it from the same settings: its catalogue, its
    names and the published menu. Made once per worker process."""
    if not _apps:
        _apps.append(create_app())
    return _apps[0]


def write_part(r: redis.Redis, export_id: str, web: Flask) -> dict:
    """Write the export's next part into Redis and enqueue the one after it."""
    export = export_jobs.read(r, export_id)
    if export is None or export.state is not export_jobs.State.WORKING:
        return {"written": 0}  # expired, or finished by an earlier run
    try:
        days = parse_range(export.query.get("from"), export.query.get("to"),
                           export.query.get("range"))
    except RangeError:
        days = []  # checked when asked for; "range=today" cannot go bad
    reading = _Reading(r, services.of(web).store, days, export)
    first_batch = reading.next_batch()
    if not first_batch and export.parts:  # the last part ended where the range does
        export_jobs.part_written(r, export, None, None)
        return {"written": 0}
    form = exports.Form(export.form)
    key = export_jobs.new_part(r, export)
    gzip = zlib.compressobj(wbits=31)
    with web.test_request_context(), force_locale(export.lang):
        reader = exports.Reader(get_locale(), _, reports.csv_names())
        rows = reports.csv_rows(reading.records(first_batch), form,
                                KeyEpochs.read(services.of(web).store.r))
        for piece in exports.write(form, exports.CALL_COLUMNS, rows,
                                   reader if form is exports.Form.EXCEL else None):
            if data := gzip.compress(piece.encode()):
                export_jobs.append(r, key, data)
    export_jobs.append(r, key, gzip.flush())
    export_jobs.part_written(r, export, Part(reading.rows, reading.first, reading.last),
                             reading.position)
    return {"written": reading.rows}


class _Reading:
    """One part's calls, read READ_CALLS at a time from where the last part ended;
    how many, the first's and the last's start, and where the next part starts."""

    def __init__(self, r: redis.Redis, store, days: list[str], export: Export):
        self.r, self.store, self.days, self.export = r, store, days, export
        try:  # the dashboard's filters, as the web read them when asked
            self.filters = Filters.from_args(export.query)
        except FilterError:
            self.filters, self.days = NONE, []  # checked when asked for: cannot happen
        self.position = export.position if self.days else None
        self.rows = 0
        self.first = self.last = ""

    def next_batch(self) -> list:
        if self.position is None or self.rows >= export_jobs.PART_ROWS:
            return []
        limit = min(READ_CALLS, export_jobs.PART_ROWS - self.rows)
        records, self.position = self.store.calls_from(self.days, self.position, limit,
                                                       self.filters)
        if records:
            self.first = self.first or _iso(records[0].started)
            self.last = _iso(records[-1].started)
        noted = self.rows // export_jobs.PROGRESS_EVERY
        self.rows += len(records)
        if self.rows // export_jobs.PROGRESS_EVERY > noted:
            export_jobs.note_progress(self.r, self.export, self.rows)
        return records

    def records(self, first_batch: list):
        batch = first_batch
        while batch:
            yield from batch
            batch = self.next_batch()


def _iso(started: float | None) -> str:
    return datetime.fromtimestamp(started, BOGOTA).isoformat(timespec="seconds") \
        if started else ""

"""Exports too big for the web's stream (ivr.export_jobs, ivr.downloads, workers.exports):
the supervisor is sent to a progress page in Spanish, a real RQ worker writes the file in
parts, and the parts together hold exactly the rows the web would have streamed. Real
app, real Redis, real RQ worker (in this process), calls played through the webhooks."""

from __future__ import annotations

import gzip
from datetime import datetime

import pytest
import redis
from rq import Queue, SimpleWorker
from test_exports import (  # noqa: F401 - calls and one_going are fixtures
    CALLER,
    PHONE_DIGITS,
    calls,
    data_rows,
    excel_rows,
    log_in,
    one_going,
)

import workers.exports
from ivr import export_jobs, reports, store
from ivr.vocabulary import BOGOTA


@pytest.fixture
def worker(app_config, redis_server, monkeypatch):
    """run(): a real RQ worker, in this process, works the queue until it is empty. Its
    jobs build the app from the environment, as the Procfile's worker does."""
    for name in ("REDIS_URL", "SECRET_KEY", "CALLER_ID_KEY", "RUTA_ENV", "RUTA_SPOOL_DIR",
                 "TWILIO_AUTH_TOKEN"):
        monkeypatch.setenv(name, app_config[name])
    monkeypatch.setattr(workers.exports, "_apps", [])
    connection = redis.Redis.from_url(redis_server.url)

    def run():
        SimpleWorker([Queue(store.QUEUE, connection=connection)],
                     connection=connection).work(burst=True)

    return run


@pytest.mark.slow  # a second or more
@pytest.mark.usefixtures("calls")  # three of today's calls
@pytest.mark.parametrize(("form", "part_rows", "parts"), [("excel", 2, 2), ("datos", 3, 1)])
def test_a_range_too_big_to_stream_is_built_in_parts_with_its_progress_shown(
        app, worker, monkeypatch, form, part_rows, parts):
    marta = log_in(app, "marta", "supervisor", "es")
    streamed = marta.get(f"/reports/calls.csv?range=today&form={form}")
    assert streamed.status_code == 200
    read = excel_rows if form == "excel" else data_rows
    header, *every_row = read(streamed.get_data())
    assert len(every_row) == 3

    monkeypatch.setattr(reports, "CSV_MAX_ROWS", 2)  # three calls: too many to stream
    monkeypatch.setattr(export_jobs, "PART_ROWS", part_rows)
    asked = marta.get(f"/reports/calls.csv?range=today&form={form}")
    assert asked.status_code == 302
    page_url = asked.headers["Location"]
    assert marta.get(f"/reports/calls.csv?range=today&form={form}").headers[
        "Location"] == page_url  # asking again does not build it twice

    waiting = marta.get(page_url)
    assert waiting.status_code == 200 and waiting.headers["Refresh"] == "3"
    assert "Preparando el archivo: 0 de 3 llamadas" in waiting.text
    assert log_in(app, "ana", "supervisor", "es").get(page_url).status_code == 404

    worker()
    ready = marta.get(page_url)
    assert "Refresh" not in ready.headers
    assert "Listo" in ready.text and "Preparando" not in ready.text
    links = [f"{page_url}/{n}" for n in range(parts)]
    assert all(link in ready.text for link in links)
    assert f"{page_url}/{parts}" not in ready.text

    rows = []
    for link in links:
        got = marta.get(link)
        assert got.status_code == 200 and got.mimetype == "text/csv"
        assert "attachment" in got.headers["Content-Disposition"]
        part_header, *part_rows_read = read(got.get_data())
        assert part_header == header  # each part opens on its own, headers first
        rows += part_rows_read
        # A browser takes the part as stored, gzip, and saves the same CSV.
        packed = marta.get(link, headers={"Accept-Encoding": "gzip, deflate"})
        assert packed.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(packed.get_data()) == got.get_data()
        assert PHONE_DIGITS not in got.text and CALLER not in got.text
    assert rows == every_row


@pytest.mark.slow  # a second or more
@pytest.mark.usefixtures("one_going")
@pytest.mark.parametrize("narrower", ["category=labour", "hour=H", "hour=H&category=labour"])
def test_a_filtered_export_built_by_the_worker_has_the_filtered_calls_only(
        app, worker, monkeypatch, narrower, twilio):
    """Three of today's calls, two of them about work, and one still going: a filter,
    the hour alone too, lists the ended calls only."""
    marta = log_in(app, "marta", "supervisor", "es")
    header, *every = data_rows(marta.get("/reports/calls.csv?range=today").get_data())
    first = next(row for row in every if twilio.call_sid not in row)  # the first ended
    started = datetime.fromisoformat(first[header.index("started")])
    narrower = narrower.replace("H", str(started.astimezone(BOGOTA).hour))  # first call's
    asked = f"/reports/calls.csv?range=today&form=datos&{narrower}"
    header, *streamed = data_rows(marta.get(asked).get_data())
    assert 0 < len(streamed) < (3 if "category" in narrower else 4)
    assert first in streamed or "category" in narrower
    assert not [row for row in streamed if twilio.call_sid in row]  # the call going

    monkeypatch.setattr(reports, "CSV_MAX_ROWS", 1)  # too many to stream: the worker's
    monkeypatch.setattr(export_jobs, "PART_ROWS", 1)  # one call a part
    page_url = marta.get(asked).headers["Location"]
    worker()
    rows = []
    for n in range(len(streamed)):
        part_header, *part_rows = data_rows(marta.get(f"{page_url}/{n}").get_data())
        rows += part_rows
    assert marta.get(f"{page_url}/{len(streamed)}").status_code == 404
    assert rows == streamed


@pytest.mark.slow  # a benchmark run: a real web, worker and Redis, 25 s
def test_bench_reports_runs_to_its_end_and_its_checks_pass_on_a_small_month(tmp_path):
    """`bench/reports` (its full run is 1,000,000 calls: minutes) on 6,000 calls over 3
    days, whole: the bulk load equals the real write path, every figure it times meets its
    target, every export (the worker's parts, the web's stream) has every row, and it
    says pass=yes. The issue's "the benchmark figures hold", kept from breaking."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(repo / "bench" / "reports_bench.py"), "--calls", "6000",
         "--days", "3", "--procs", "1"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    result = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert result.startswith("RESULT calls=6000 ")
    assert "equivalent=yes" in result and result.endswith("pass=yes")
    assert "FAILED" not in done.stdout

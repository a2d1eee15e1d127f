"""bench/reports: what supervisors wait for over a month of calls, against raw floors.

Loads N simulated calls (default 1,000,000) spread over the last D days (default 30,
Bogotá days up to now) into a fresh redis-server, then times what the staff pages read:

- the dashboard summary of the D days (`reports.build_summary`: counters only), target
  under 200 ms; floor: the raw pipelined HGETALL of the D day hashes alone;
- the first page of the calls table, newest first (`Store.calls_page` + `call_row`),
  target under 100 ms; floor: the same round trips (ZCARDs, ZREVRANGE, HGETALLs) raw;
- one call's timeline page (`/reports/calls/<CallSid>`, the `call_timeline` view rendered
  whole, for calls spread over the range), target under 50 ms; floor: its reads raw
  (HGETALL and LRANGE pipelined, then ZCOUNT of the caller's calls);
- the alert check the worker runs every minute (`workers.alerts.check`), target under
  20 ms; floor: its one pipelined read of the lines' latest transfers (`incidents.inputs`);
- the whole range's CSV as the worker builds it (`workers.exports.write_part`, part by
  part, gzip into Redis), in rows/s, with the tracemalloc peak of its first part and of
  its biggest; then every part downloaded through the web's download view, rows counted;
- one day's CSV export through the web export's own code (the `calls_csv` view's stream:
  `Store.iter_calls` + `call_row` + csv) into a sink that only counts bytes, in rows/s,
  with its tracemalloc peak for the whole day and for its first tenth (flat memory);
  floor: raw ZRANGE + pipelined HGETALL of the same day, without building rows.

Loading 1M calls through `Store.write_batch` (one read and one transaction per 500
events) would take far longer than the reads we measure, so the calls are loaded by a
bulk equivalent: each call's events are folded and counted by the tally write_batch uses
(`ivr.tally`), and the same keys get the same values through big
non-transactional pipelines, with the day and hour counters summed in Python first. The
event log stream ({ruta}:log) is skipped. To prove the equivalence, the first 2,000 calls
also go through the REAL `Store.write_batch` (time-ordered batches of 500 events, with
repeated deliveries) into db 1 and through the bulk path into db 2, and every key is
compared. The last line is key=value pairs for scripts.
"""

from __future__ import annotations

import argparse
import gzip
import math
import multiprocessing
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import types
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr import menu as menu_config  # noqa: E402
from ivr import store, timeline  # noqa: E402
from ivr.redis_server import RedisServer  # noqa: E402
from ivr.summary import parse_range, today  # noqa: E402
from ivr.tally import tally  # noqa: E402
from ivr.vocabulary import ANONYMOUS, BOGOTA, Event, EventKind, day_of  # noqa: E402

CHUNK = 2_000  # calls generated (and written) per task; the equivalence sample is chunk 0
RUNS = 20
TRACED_PARTS = 3
SEED = 11
DIAL_STATUSES = ["completed", "busy", "no-answer", "failed", "canceled"]
DIAL_WEIGHTS = [76, 9, 10, 4, 1]
# What callers pick at the first question (keys of config/menu.toml): 0 is the emergency
# key, * repeats the question.
WELCOME_KEYS = ["1", "2", "3", "4", "5", "0", "*"]
WELCOME_WEIGHTS = [23, 26, 14, 12, 18, 5, 2]
REPORT_KEYS = ["1", "2", "0", "*"]
REPORT_WEIGHTS = [58, 35, 5, 2]
# Calls by Bogotá hour of day (relative weights, 10 = busiest).
HOUR_WEIGHTS = [2, 1, 1, 1, 1, 2, 4, 6, 8, 9, 10, 10, 9, 9, 9, 9, 8, 8, 7, 7, 6, 5, 4, 3]

# Set in the parent before the pool forks, so every process simulates the same calls.
G: dict = {}


# --- simulated calls ----------------------------------------------------------------------


def caller_for(rng: random.Random, n_total: int) -> str:
    """A caller pseudonym (as ivr.events.caller_pseudonym makes them); some call again."""
    if rng.random() < 0.07:
        return "anonymous"
    k = rng.randrange(max(1, int(n_total * 0.8)))
    return f"c_{(k * 0x9E3779B97F4A7C15) & ((1 << 80) - 1):020x}"


def simulate_call(i: int, started: float, rng: random.Random, menu, n_total: int,
                  now: float) -> list[Event]:
    """One call's events as the webhooks emit them (ivr.voice + ivr.flow with the shipped
    menu): ids "<sid>:<step>.<n>", `asked` the question asked after the step, events of
    one webhook share its step, the status callback's event is "<sid>:end"."""
    sid = f"CA{i:032x}"
    out: list[Event] = []
    state = {"lang": menu.languages[0], "step": 1, "t": started}

    def request(asked: str, *happened: tuple[str, dict]) -> None:
        step, at = state["step"], round(state["t"], 3)
        for n, (kind, data) in enumerate(happened):
            out.append(Event(id=f"{sid}:{step}.{n}", call=sid, kind=kind, step=step, at=at,
                             started=started, lang=state["lang"], asked=asked, data=data))

    def later(lo: float, hi: float) -> None:
        state["t"] += rng.uniform(lo, hi)
        state["step"] += 1

    request(menu.start, (EventKind.CALL_STARTED, {"lang": state["lang"],
                                                  "caller": caller_for(rng, n_total)}))
    if rng.random() < 0.12:  # an English speaker presses 9
        later(8, 20)
        state["lang"] = menu.other_language(state["lang"])
        request(menu.start, (EventKind.MENU_ANSWERED, {
                    "node": menu.start, "input": "dtmf", "option": menu.language_key,
                    "attempt": 0}),
                (EventKind.LANGUAGE_CHANGED, {"lang": state["lang"]}))
    node, attempt, transfer = menu.start, 0, None
    while transfer is None:
        roll = rng.random()
        hang_up = 0.07 if node == menu.start else 0.12
        if roll < hang_up:  # hangs up at this question: the call ends in the menu
            break
        later(12, 30)
        if roll < hang_up + 0.13:  # silence or a key/word we do not understand
            attempt += 1
            kind = EventKind.NO_INPUT if rng.random() < 0.55 else EventKind.INVALID_INPUT
            detail = {"node": node, "attempt": attempt}
            if kind == EventKind.INVALID_INPUT:
                detail["input"] = "dtmf" if rng.random() < 0.6 else "speech"
            if attempt >= menu.max_attempts:
                detail |= {"gave_up": True, "category": "unclear"}
                transfer = menu.default_hotline
                request("", (kind, detail), (EventKind.TRANSFER_STARTED,
                                             {"hotline": transfer, "target": 0}))
            else:
                request(node, (kind, detail))
            continue
        keys, weights = ((WELCOME_KEYS, WELCOME_WEIGHTS) if node == menu.start
                         else (REPORT_KEYS, REPORT_WEIGHTS))
        key = rng.choices(keys, weights)[0]
        option = menu.nodes[node].option(key)
        category = ("emergency" if key == menu.emergency_key
                    else option.category if option else "")
        answered = (EventKind.MENU_ANSWERED, {
            "node": node, "input": "speech" if rng.random() < 0.4 else "dtmf", "option": key,
            "attempt": attempt, **({"category": category} if category else {})})
        if key == menu.repeat_key:
            request(node, answered)
        elif option is not None and option.next:
            node, attempt = option.next, 0
            request(node, answered)
        else:
            transfer = menu.emergency_hotline if key == menu.emergency_key else option.hotline
            request("", answered, (EventKind.TRANSFER_STARTED, {"hotline": transfer, "target": 0}))

    if transfer is not None:  # ring the hotline's targets, then its fallback chain
        hotline, target, tried = menu.hotlines[transfer], 0, []
        while True:
            status = rng.choices(DIAL_STATUSES, DIAL_WEIGHTS)[0]
            talk = rng.randint(40, 1200) if status == "completed" else 0
            ring = {"completed": (4, 20), "busy": (1, 4), "no-answer": (25, 27),
                    "failed": (0.5, 2), "canceled": (3, 20)}[status]
            later(ring[0] + talk, ring[1] + talk)
            ended = (EventKind.TRANSFER_ENDED, {"hotline": hotline.id, "target": target,
                                                "status": status, "duration": talk})
            if status in ("completed", "canceled"):  # talked, or the caller gave up ringing
                request("", ended)
                break
            target += 1
            if target >= len(hotline.dial):
                tried.append(hotline.id)
                nxt = next((h for h in (hotline.fallback, menu.default_hotline)
                            if h and h not in tried), None)
                if nxt is None:  # chain exhausted: the numbers are read out
                    request("", ended, (EventKind.NUMBERS_GIVEN, {"hotlines": list(dict.fromkeys(
                        [*tried, menu.default_hotline]))}))
                    state["t"] += rng.uniform(30, 60)
                    break
                hotline, target = menu.hotlines[nxt], 0
            request("", ended, (EventKind.TRANSFER_STARTED, {"hotline": hotline.id,
                                                             "target": target}))
    end = round(state["t"] + rng.uniform(1, 4), 3)
    if rng.random() > 0.003:  # now and then Twilio's status callback never arrives
        out.append(Event(id=f"{sid}:end", call=sid, kind=EventKind.CALL_ENDED, step=1 << 20,
                         at=end, started=started, data={"status": "completed",
                                                        "duration": int(end - started)}))
    return [e for e in out if e.at <= now]  # a call still going has not sent the rest


def chunk_calls(chunk: int) -> list[list[Event]]:
    """The calls of one chunk; the same whichever process makes them."""
    n_total, now, first = G["calls"], G["now"], G["first"]
    rng = random.Random(SEED * 1_000_003 + chunk)
    calls = []
    for i in range(chunk * CHUNK, min(n_total, (chunk + 1) * CHUNK)):
        while True:  # more calls by day than by night
            started = round(first + rng.random() * (now - first), 3)
            hour = int((started - 5 * 3600) % 86400 // 3600)  # Bogotá is UTC-5, no DST
            if rng.random() * 10 < HOUR_WEIGHTS[hour]:
                break
        calls.append(simulate_call(i, started, rng, G["menu"], n_total, now))
    return calls


# --- the bulk write path ---------------------------------------------------------------------


def fold(calls: list[list[Event]]):
    """The tally Store.write_batch uses (ivr.tally), of all of a call's events at once:
    records, counter deltas, facet counts, accepted events, the lines' attempts."""
    return tally({}, (event for events in calls for event in events))


def timeline_lines(changes) -> dict[str, list[str]]:
    """Each call's timeline lines, as Store.write_batch writes them (ivr.timeline)."""
    lines: dict[str, list[str]] = {}
    for event in changes.events:
        lines.setdefault(event.call, []).append(timeline.line(event))
    return lines


def latest_attempts(changes) -> tuple[dict, float]:
    """The alert check's inputs: each line's latest transfer results (time order) and
    when the newest call started."""
    latest = {hotline: sorted(tried, key=lambda a: a[0])[-store.ATTEMPTS_KEPT:]
              for hotline, tried in changes.attempts.items()}
    return latest, changes.last_call


def merge_attempts(into: tuple[dict, float], more: tuple[dict, float]) -> tuple[dict, float]:
    """Two chunks' alert inputs as one: each line's latest ATTEMPTS_KEPT, the newest call."""
    lines = dict(into[0])
    for hotline, tried in more[0].items():
        lines[hotline] = sorted([*lines.get(hotline, []), *tried],
                                key=lambda a: a[0])[-store.ATTEMPTS_KEPT:]
    return lines, max(into[1], more[1])


def write_attempts(r: redis.Redis, latest: tuple[dict, float]) -> None:
    """The lists and the newest call's time Store.write_batch keeps for the alert check."""
    lines, last_call = latest
    pipe = r.pipeline(transaction=False)
    for hotline, tried in lines.items():
        pipe.lpush(store.attempts_key(hotline), *(f"{at}|{st}" for at, st in tried))
        pipe.expire(store.attempts_key(hotline), store.HOUR_KEEP_SECONDS)
        pipe.sadd(store.ATTEMPT_LINES, hotline)
    if last_call:
        pipe.zadd(store.LAST_CALL, {"call": last_call}, gt=True)
    pipe.execute()


def write_calls(r: redis.Redis, changes, expiry) -> None:
    """Call hashes and timelines, day indexes, facet counts and indexes
    (Store.write_facets), callers' calls and the caller HyperLogLogs, in one pipeline."""
    records, callers = list(changes.records.values()), changes.callers
    lines = timeline_lines(changes)
    pipe = r.pipeline(transaction=False)
    store.Store(r).write_facets(pipe, changes)
    days = set()
    today_expiry = expiry(day_of(time.time()))
    for record in records:
        key = store.call_key(record.call)
        pipe.hset(key, mapping=record.to_fields())
        pipe.expireat(key, expiry(record.day))
        pipe.rpush(store.timeline_key(record.call), *lines[record.call])
        pipe.expireat(store.timeline_key(record.call), expiry(record.day))
        pipe.zadd(store.day_calls_key(record.day), {record.call: record.started})
        if record.caller and record.caller != ANONYMOUS:
            pipe.zadd(store.caller_calls_key(record.caller), {record.call: record.started})
            pipe.expireat(store.caller_calls_key(record.caller),
                          max(expiry(record.day), today_expiry))
        days.add(record.day)
    for day in days:
        pipe.expireat(store.day_calls_key(day), expiry(day))
    for day, pseudonyms in callers.items():
        pipe.pfadd(store.day_callers_key(day), *pseudonyms)
        pipe.expireat(store.day_callers_key(day), expiry(day))
    pipe.execute()


def write_counters(r: redis.Redis, counters, hours) -> None:
    pipe = r.pipeline(transaction=False)
    for day, counts in counters.items():
        for name, delta in counts.items():
            if delta:
                pipe.hincrby(store.day_key(day), name, delta)
    for hour, counts in hours.items():
        for name, delta in counts.items():
            pipe.hincrby(store.hour_key(hour), name, delta)
        pipe.expire(store.hour_key(hour), store.HOUR_KEEP_SECONDS)
    pipe.execute()


def merge(into: dict[str, Counter], more: dict[str, Counter]) -> None:
    for key, counts in more.items():
        into.setdefault(key, Counter()).update(counts)


def load_chunk(chunk: int, r: redis.Redis | None = None):
    """Simulate, fold and write one chunk; the counters go back to the caller to sum."""
    calls = chunk_calls(chunk)
    changes = fold(calls)
    write_calls(r or G["r"], changes, G["expiry"])
    return (len(calls), sum(map(len, calls)), dict(changes.days), dict(changes.hours),
            latest_attempts(changes))


def pool_init(url: str) -> None:
    G["r"] = redis.Redis.from_url(url)


# --- the real write path, for the equivalence check --------------------------------------


def real_write(r_text: redis.Redis, calls: list[list[Event]], batch: int) -> tuple[int, float]:
    """The calls' events through Store.write_batch, as the drain delivers them: in time
    order, `batch` at a time, 3% of them delivered a second time later on."""
    rng = random.Random(SEED)
    stream = sorted((e for events in calls for e in events), key=lambda e: e.at)
    for e in rng.sample(stream, len(stream) * 3 // 100):
        stream.insert(rng.randrange(stream.index(e) + 1, len(stream) + 1), e)
    real = store.Store(r_text)
    t0 = time.perf_counter()
    for n in range(0, len(stream), batch):
        real.write_batch(stream[n:n + batch], [], None)
    return len(stream), time.perf_counter() - t0


def compare_dbs(real: redis.Redis, bulk: redis.Redis,
                took: float = 0.0) -> tuple[list[str], int, int]:
    """Every key but the log, real vs bulk: (differences, keys compared, zero fields).
    TTLs may differ by 5 s plus `took`, the seconds between the real path's first write
    and the bulk path's: a relative EXPIRE (hour keys, the lines' latest transfers) set
    early in the real write runs out sooner than the bulk path's."""
    # A facet combination a call left in the real path (its outcome moved on) stays as a
    # hash of zeros; the bulk path never wrote it. Same numbers.
    real_keys = {k for k in real.scan_iter(count=1000) if k != store.LOG and not (
        k.startswith(store.facet_counts_key("", "")[:-2])
        and not any(v != "0" for v in real.hvals(k)))}
    bulk_keys = set(bulk.scan_iter(count=1000))
    problems = [f"only in real path: {k}" for k in sorted(real_keys - bulk_keys)[:5]]
    problems += [f"only in bulk path: {k}" for k in sorted(bulk_keys - real_keys)[:5]]
    zero_fields = 0
    for key in sorted(real_keys & bulk_keys):
        kind = real.type(key)
        if kind != bulk.type(key):
            problems.append(f"{key}: type {kind} vs {bulk.type(key)}")
            continue
        if kind == "hash":
            a, b = real.hgetall(key), bulk.hgetall(key)
            if key.startswith((store.day_key(""), store.hour_key(""), store.facets_key(""),
                               store.facet_counts_key("", "")[:-2])):
                # A count moved between two batches (in_progress -> transferred) leaves a
                # field at 0 in the real path; the bulk path never writes it. Same numbers.
                zero_fields += sum(1 for v in a.values() if v == "0")
                a = {k: v for k, v in a.items() if v != "0"}
            same = a == b
        elif kind == "zset":
            same = (real.zrange(key, 0, -1, withscores=True)
                    == bulk.zrange(key, 0, -1, withscores=True))
        elif kind == "string":  # HyperLogLog
            same = real.pfcount(key) == bulk.pfcount(key)
        elif kind == "list" and ":timeline:" in key:  # the page orders it by time
            same = sorted(real.lrange(key, 0, -1)) == sorted(bulk.lrange(key, 0, -1))
        elif kind == "list":  # a line's latest transfers
            same = real.lrange(key, 0, -1) == bulk.lrange(key, 0, -1)
        elif kind == "set":
            same = real.smembers(key) == bulk.smembers(key)
        else:
            same = False
        if not same:
            problems.append(f"{key}: {kind} values differ")
        if abs(real.ttl(key) - bulk.ttl(key)) > 5 + took:
            problems.append(f"{key}: TTL {real.ttl(key)} vs {bulk.ttl(key)}")
    return problems, len(real_keys | bulk_keys), zero_fields


# --- timing helpers ----------------------------------------------------------------------------


def timed(*fns, runs: int = RUNS, warmup: int = 2) -> list[tuple[float, float, object]]:
    """[(median ms, p95 ms, last result)] of each function, run in turns (a floor and
    what it is the floor of see the same machine), after `warmup` unmeasured rounds."""
    times: list[list[float]] = [[] for _ in fns]
    out: list[object] = [None] * len(fns)
    for n in range(warmup + runs):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            out[i] = fn()
            if n >= warmup:
                times[i].append((time.perf_counter() - t0) * 1000)
    stats = []
    for ts, result in zip(times, out, strict=True):
        ts.sort()
        stats.append((statistics.median(ts), ts[math.ceil(0.95 * len(ts)) - 1], result))
    return stats


class Sink:
    """A download that discards what it gets and counts it."""

    def __init__(self, stop_after: int | None = None):
        self.bytes = self.rows = 0
        self.stop_after = stop_after

    def take(self, chunks) -> None:
        for chunk in chunks:
            self.bytes += len(chunk)
            self.rows += chunk.count(b"\n")
            if self.stop_after and self.bytes >= self.stop_after:
                break
        close = getattr(chunks, "close", None)
        if close:
            close()


def make_exporter(url: str, tmp: Path):
    """export(day, sink): the web export's own stream for ?from=day&to=day, and its name.

    The `calls_csv` view is called under a request context with the staff check peeled
    off (functools.wraps keeps the view as __wrapped__); if the app cannot be built here,
    an inline copy of the view's loop is used and says so."""
    try:
        from ivr import create_app, reports

        app = create_app({"RUTA_ENV": "development", "REDIS_URL": url, "SECRET_KEY": "bench",
                          "RUTA_SPOOL_DIR": str(tmp / "spool")})
        view = reports.calls_csv.__wrapped__
        # A day of this bench holds more calls than the web streams (the view would start
        # a worker export, measured below): the limit is lifted to time the stream whose
        # rate sets it.
        reports.CSV_MAX_ROWS = 10**9
        G["app"] = app

        def export(day: str, sink: Sink) -> None:
            with app.test_request_context(f"/reports/calls.csv?from={day}&to={day}"):
                sink.take(view().iter_encoded())

        return export, "the calls_csv view's stream (iter_calls + call_row + ivr.exports.write)"
    except Exception as e:  # noqa: BLE001 - fall back, and say why
        from ivr import exports
        from ivr.reports import call_row

        text_store = store.Store(redis.Redis.from_url(url, decode_responses=True))

        def rows(day: str):
            calls = (call_row(record) for record in text_store.iter_calls([day]))
            for piece in exports.write(exports.Form.DATA, exports.CALL_COLUMNS, calls):
                yield piece.encode()

        def export(day: str, sink: Sink) -> None:
            sink.take(rows(day))

        return export, f"an inline copy of calls_csv's loop (app failed: {e!r})"


def big_export(url: str, days: list[str], loaded: int) -> dict:
    """The whole range in the Excel form (the heavier: names, dates and decimals in
    Spanish), as the worker builds it: `write_part` once per part, as each RQ job does.
    A first pass is timed; a second, under tracemalloc, notes the peak of each of its
    first TRACED_PARTS parts (a part's memory does not depend on the parts before it)."""
    from ivr import export_jobs
    from workers.exports import write_part

    r = redis.Redis.from_url(url)
    query = {"from": days[0], "to": days[-1], "form": "excel"}

    def build(who: str, traced: bool, most: int = 10**9) -> tuple[str, list[float]]:
        export_id = export_jobs.start(r, who, "excel", "es_CO", query, "bench", loaded)
        peaks = []
        while (export_jobs.read(r, export_id).state is export_jobs.State.WORKING
               and len(peaks) < most):
            if traced:
                tracemalloc.reset_peak()
            write_part(r, export_id, G["app"])
            if traced:
                peaks.append(tracemalloc.get_traced_memory()[1] / 1024)
        return export_id, peaks

    t0 = time.perf_counter()
    export_id, _ = build("bench", traced=False)
    seconds = time.perf_counter() - t0
    export = export_jobs.read(r, export_id)
    mib = sum(export_jobs.part_size(r, export_id, n) for n in range(len(export.parts))) / 2**20
    tracemalloc.start()  # slows the build down: the first parts only
    traced_id, peaks = build("bench-traced", traced=True, most=TRACED_PARTS)
    tracemalloc.stop()
    r.delete(*[export_jobs.part_key(traced_id, n) for n in range(len(peaks))])
    first_kb, max_kb = peaks[0], max(peaks)
    flat = max_kb <= first_kb * 1.25 + 64

    from ivr import downloads

    app, rows, slowest = G["app"], 0, 0.0
    # The view only serves the one who asked: here, the bench's own name.
    downloads.current_staff = lambda: types.SimpleNamespace(name="bench")
    for n in range(len(export.parts)):  # as a browser takes them: gzip, as stored
        sink = Sink()
        t1 = time.perf_counter()
        with app.test_request_context(f"/reports/exports/{export_id}/{n}",
                                      headers={"Accept-Encoding": "gzip"}):
            sink.take(downloads.download.__wrapped__(export_id, n).iter_encoded())
        slowest = max(slowest, (time.perf_counter() - t1) * 1000)
        rows += gzip.decompress(b"".join(export_jobs.part_bytes(r, export_id, n))).count(
            b"\n") - 1  # minus each part's header
    rate = export.done / seconds
    print(f"CSV of all {len(days)} days by the worker (workers.exports.write_part, Excel form, "
          f"{export_jobs.PART_ROWS:,} calls a part): {export.done:,} rows in {seconds:.0f} s = "
          f"{rate:,.0f} rows/s, {len(export.parts)} parts, {mib:.1f} MiB gzip in Redis; "
          f"memory (tracemalloc peak) first part {first_kb:,.0f} KiB, biggest of the first "
          f"{len(peaks)} "
          f"{max_kb:,.0f} KiB: {'flat' if flat else 'GROWS with the rows'}; downloads read "
          f"back {rows:,} rows, slowest part {slowest:.0f} ms through the download view")
    return {"rows": rows, "flat": flat, "rate": rate, "seconds": seconds, "mib": mib,
            "parts": len(export.parts), "first_kb": first_kb, "max_kb": max_kb,
            "download_ms": slowest}


def make_timeline_page(url: str, tmp: Path):
    """show(sid) -> the HTML of /reports/calls/<sid>: the `call_timeline` view under a
    request context, the staff check peeled off (as make_exporter does), in Spanish."""
    from ivr import create_app, reports

    app = create_app({"RUTA_ENV": "development", "REDIS_URL": url, "SECRET_KEY": "bench",
                      "RUTA_SPOOL_DIR": str(tmp / "spool-timeline")})
    view = reports.call_timeline.__wrapped__

    def show(sid: str) -> str:
        with app.test_request_context(f"/reports/calls/{sid}",
                                      headers={"Accept-Language": "es-CO"}):
            return view(sid)

    return show, "the call_timeline view, rendered"


def time_alert_check(url: str, now: float) -> tuple[float, float, float, list[str]]:
    """(median ms, p95 ms, floor median ms, what the first run raised) of the alert check
    as the worker runs it, on the loaded lines' latest transfers; no channel is set, so an
    alert only logs a warning (its delivery is another job, not timed here)."""
    import logging

    from ivr import incidents
    from workers import alerts as alert_jobs

    logging.getLogger("workers.alerts").setLevel(logging.ERROR)
    client, text = redis.Redis.from_url(url), redis.Redis.from_url(url, decode_responses=True)
    first = alert_jobs.check(client, now=now)
    (floor_ms, _, _), (check_ms, check_p95, _) = timed(
        lambda: incidents.inputs(text, now), lambda: alert_jobs.check(client, now=now))
    return check_ms, check_p95, floor_ms, first.get("raised", [])


# --- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--procs", type=int, default=2,
                        help="processes simulating and writing calls (1 = no multiprocessing)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ruta-bench-reports-"))
    server = RedisServer(tmp / "redis").start()
    try:
        ok = run(server, args, tmp)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


def run(server: RedisServer, args, tmp: Path) -> bool:
    url = server.url  # db 0
    base = url.rsplit("/", 1)[0]
    r = redis.Redis.from_url(url)
    menu = menu_config.load()
    now_dt = datetime.now(BOGOTA)
    first_day = now_dt.date() - timedelta(days=args.days - 1)
    G.update(calls=args.calls, now=round(now_dt.timestamp(), 3), menu=menu,
             first=datetime.combine(first_day, datetime.min.time(), BOGOTA).timestamp(),
             expiry=store.Store(r)._expiry)  # the retention write_batch uses (180 days)
    print(f"{args.calls:,} simulated calls over {args.days} Bogotá days "
          f"({first_day} to {now_dt.date()}, up to {now_dt:%H:%M}), redis-server "
          f"{r.info('server')['redis_version']} on port {server.port}, no persistence",
          flush=True)

    # --- 1. the bulk path equals the real write path (on the first chunk) ---------------
    sample = chunk_calls(0)
    real_db = redis.Redis.from_url(f"{base}/1", decode_responses=True)
    bulk_db = redis.Redis.from_url(f"{base}/2", decode_responses=True)
    from workers.drain import BATCH

    started = time.perf_counter()
    n_events, real_s = real_write(real_db, sample, BATCH)
    _, _, counters, hours, latest = load_chunk(0, redis.Redis.from_url(f"{base}/2"))
    write_counters(bulk_db, counters, hours)
    write_attempts(bulk_db, latest)
    problems, keys, zeros = compare_dbs(real_db, bulk_db, time.perf_counter() - started)
    same = not problems
    print(f"real Store.write_batch on {len(sample):,} calls: {n_events:,} events in batches "
          f"of {BATCH} (time order, 3% delivered twice) at {n_events / real_s:,.0f} events/s "
          f"= {len(sample) / real_s:,.0f} calls/s")
    print(f"bulk == real write path on {len(sample):,} calls: {'yes' if same else 'no'} "
          f"({keys:,} keys compared: call hashes and timelines, day indexes, day and "
          f"hour counters, caller HLLs and callers' calls, TTLs; the real path also left "
          f"{zeros} counter fields at 0 where a call's count moved between batches, which "
          f"the bulk path does not write)")
    for p in problems[:10]:
        print(f"  DIFFERENT {p}")
    real_db.flushdb()
    bulk_db.flushdb()
    if not same:
        print(f"RESULT calls={args.calls} pass=no equivalent=no")
        return False

    # --- 2. bulk load -----------------------------------------------------------------------
    empty = int(r.info("memory")["used_memory"])
    chunks = range(math.ceil(args.calls / CHUNK))
    counters, hours, latest = {}, {}, ({}, 0.0)
    loaded = events = 0
    t0 = time.perf_counter()
    if args.procs > 1:
        with multiprocessing.get_context("fork").Pool(args.procs, pool_init, (url,)) as pool:
            for n, e, c, h, a in pool.imap_unordered(load_chunk, chunks):
                loaded, events = loaded + n, events + e
                merge(counters, c)
                merge(hours, h)
                latest = merge_attempts(latest, a)
    else:
        pool_init(url)
        for chunk in chunks:
            n, e, c, h, a = load_chunk(chunk)
            loaded, events = loaded + n, events + e
            merge(counters, c)
            merge(hours, h)
            latest = merge_attempts(latest, a)
    write_counters(r, counters, hours)
    write_attempts(r, latest)
    load_s = time.perf_counter() - t0
    load_rate = loaded / load_s
    used = int(r.info("memory")["used_memory"]) - empty
    per_call = used / loaded
    some = [store.call_key(f"CA{i:032x}") for i in range(0, loaded, max(1, loaded // 500))]
    hash_bytes = statistics.mean(r.memory_usage(k) or 0 for k in some)
    line_bytes = statistics.mean(r.memory_usage(store.timeline_key(k.rsplit(":", 1)[1])) or 0
                                 for k in some)
    print(f"bulk load: {loaded:,} calls ({events:,} events) in {load_s:.1f} s = "
          f"{load_rate:,.0f} calls/s with {args.procs} process(es) simulating and writing; "
          f"{store.LOG} (the event log stream) skipped")
    print(f"redis memory: {used / 2**20:,.0f} MiB used = {per_call:,.0f} bytes per call "
          f"(call hash about {hash_bytes:,.0f} B, timeline about {line_bytes:,.0f} B; plus day "
          f"index, callers' calls and counters; no event log)")

    # --- 3. the dashboard summary -------------------------------------------------------------
    from ivr import reports

    text = redis.Redis.from_url(url, decode_responses=True)
    staff_store = store.Store(text)
    days = parse_range((today() - timedelta(days=args.days - 1)).isoformat(),
                       today().isoformat())
    threshold = 0.3  # RUTA_HEALTH_FAILED_SHARE's default

    def floor_summary():
        read = text.pipeline(transaction=False)
        for day in days:
            read.hgetall(store.day_key(day))
        return read.execute()

    (floor_p50, floor_p95, _), (sum_p50, sum_p95, summary) = timed(
        floor_summary, lambda: reports.build_summary(staff_store, menu, days, threshold))
    head = summary.headline()
    fields = sum(len(h) for h in floor_summary())
    print(f"summary of {len(days)} days (build_summary, {RUNS} runs): median "
          f"{sum_p50:.2f} ms, p95 {sum_p95:.2f} ms (target 200 ms); floor (pipelined "
          f"HGETALL of the {len(days)} day hashes, {fields:,} fields): median "
          f"{floor_p50:.2f} ms, p95 {floor_p95:.2f} ms; ratio {sum_p50 / floor_p50:.1f}x")
    outcomes_total = sum(summary.outcomes.values())
    print(f"  it says: {head['calls']:,} calls, reached a person "
          f"{head['reached_person_pct']}%, never reached a person "
          f"{head['never_reached_person_pct']}%, "
          f"hung up in menu {head['hung_up_in_menu_pct']}%, in progress "
          f"{head['in_progress']}, emergency transfers {head['emergency_transfers']:,}, "
          f"median {head['median_seconds_to_transfer']} s to transfer, repeat calls "
          f"{head['repeat_calls']:,}, languages {summary.languages}")
    summary_ok = summary.calls == loaded and outcomes_total == loaded

    # --- 3b. the same, filtered: one hotline, one language (the facet counts) ------------
    from ivr.filters import Filters

    picked = Filters(hotline="labour", lang=menu.languages[0])
    (fsum_p50, fsum_p95, fsummary), (fpage_p50, fpage_p95, (frecords, ftotal)) = timed(
        lambda: reports.build_summary(staff_store, menu, days, threshold, picked),
        lambda: staff_store.calls_page(list(reversed(days)), 0, 25, picked))
    print(f"filtered summary ({picked.args()}) of {len(days)} days: median "
          f"{fsum_p50:.2f} ms, p95 {fsum_p95:.2f} ms (target 300 ms); it says "
          f"{fsummary.calls:,} calls; its first calls page: median {fpage_p50:.2f} ms, "
          f"p95 {fpage_p95:.2f} ms (target 100 ms), {ftotal:,} calls in all")
    filtered_ok = (fsummary.calls == ftotal and len(frecords) == min(25, ftotal)
                   and all(picked.matches(r.facets()) for r in frecords))

    # --- 4. the first page of the calls table ---------------------------------------------------
    newest_first = list(reversed(days))

    def page():
        records, total = staff_store.calls_page(newest_first, 0, 25)
        return [reports.call_row(rec) for rec in records], total

    def floor_page():
        read = text.pipeline(transaction=False)
        for day in newest_first:
            read.zcard(store.day_calls_key(day))
        sizes, sids = read.execute(), []
        for day, size in zip(newest_first, sizes, strict=True):
            if len(sids) >= 25:
                break
            if size:
                sids += text.zrevrange(store.day_calls_key(day), 0, 25 - len(sids) - 1)
        read = text.pipeline(transaction=False)
        for sid in sids:
            read.hgetall(store.call_key(sid))
        return read.execute()

    total = sum(text.zcard(store.day_calls_key(d)) for d in days)
    (pfloor_p50, pfloor_p95, _), (page_p50, page_p95, (rows, _)), (only_p50, _, _), \
        (last_p50, _, _) = timed(
            floor_page, page, lambda: staff_store.calls_page(newest_first, 0, 25),
            lambda: staff_store.calls_page(newest_first, total - 25, 25))
    print(f"calls table, first page of 25 of {total:,} (calls_page + call_row, {RUNS} runs): "
          f"median {page_p50:.2f} ms, p95 {page_p95:.2f} ms (target 100 ms); calls_page "
          f"alone {only_p50:.2f} ms; floor (ZCARD x{len(days)}, ZREVRANGE, 25 HGETALL, "
          f"raw): median {pfloor_p50:.2f} ms, p95 {pfloor_p95:.2f} ms; ratio "
          f"{page_p50 / pfloor_p50:.1f}x; last page {last_p50:.2f} ms")
    page_ok = len(rows) == 25 and total == loaded

    # --- 5. one call's timeline page --------------------------------------------------------------
    show_call, how_page = make_timeline_page(url, tmp)
    spread = [f"CA{i:032x}" for i in range(0, loaded, max(1, loaded // 97))]  # 1 in ~10,000
    turn = {"page": 0, "floor": 0}

    def next_sid(who: str) -> str:
        turn[who] += 1
        return spread[turn[who] % len(spread)]

    def timeline_page():
        return show_call(next_sid("page"))

    def floor_timeline():
        read = text.pipeline(transaction=False)
        sid = next_sid("floor")
        read.hgetall(store.call_key(sid))
        read.lrange(store.timeline_key(sid), 0, -1)
        fields, lines = read.execute()
        return text.zcount(store.caller_calls_key(fields.get("caller", "")), "-inf", "+inf")

    (tfloor_p50, _, _), (tl_p50, tl_p95, html) = timed(floor_timeline, timeline_page,
                                                      runs=len(spread))
    steps_shown = html.count("<li data-kind=")
    print(f"one call's timeline via {how_page} ({len(spread)} calls spread over the range): "
          f"median {tl_p50:.2f} ms, p95 {tl_p95:.2f} ms (target 50 ms); floor (HGETALL + "
          f"LRANGE pipelined, ZCOUNT): median {tfloor_p50:.2f} ms; the last page showed "
          f"{steps_shown} steps")
    timeline_ok = steps_shown > 1

    # --- 5b. the alert check (the worker's job every minute) -----------------------------------
    alert_ms, alert_p95, alert_floor_ms, alert_did = time_alert_check(url, G["now"])
    print(f"alert check (workers.alerts.check over every line's latest transfers, {RUNS} "
          f"runs): median {alert_ms:.2f} ms, p95 {alert_p95:.2f} ms (target 20 ms); floor "
          f"(incidents.inputs alone: one pipelined read): median {alert_floor_ms:.2f} ms; "
          f"first run raised {alert_did}")

    # --- 6. one day's CSV export -----------------------------------------------------------------
    export, how = make_exporter(url, tmp)
    day = days[-2] if len(days) > 1 else days[-1]  # yesterday: a whole day
    day_calls = text.zcard(store.day_calls_key(day))

    def floor_csv():
        n, start = 0, 0
        while True:
            sids = text.zrange(store.day_calls_key(day), start, start + 499)
            if not sids:
                return n
            read = text.pipeline(transaction=False)
            for sid in sids:
                read.hgetall(store.call_key(sid))
            n += len(read.execute())
            start += 500

    def export_all() -> Sink:
        sink = Sink()
        export(day, sink)
        return sink

    csv_runs = 5
    (f_p50, _, floor_rows), (c_p50, _, sink) = timed(floor_csv, export_all, runs=csv_runs,
                                                     warmup=1)
    floor_rate = floor_rows / (f_p50 / 1000)
    csv_rows, csv_bytes = sink.rows - 1, sink.bytes  # minus the header line
    csv_rate = csv_rows / (c_p50 / 1000)
    print(f"CSV export of {day} via {how}: {csv_rows:,} rows, {csv_bytes / 2**20:.1f} MiB in "
          f"{c_p50:.0f} ms (median of {csv_runs}) = {csv_rate:,.0f} rows/s; floor (ZRANGE "
          f"500 at a time + pipelined HGETALL, no rows built): {floor_rate:,.0f} rows/s; "
          f"ratio {csv_rate / floor_rate:.2f}")

    def peak_kb(stop_after: int | None) -> tuple[float, int]:
        part = Sink(stop_after)
        tracemalloc.start()
        export(day, part)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return peak / 1024, part.rows

    peak_kb(csv_bytes // 10)  # warm: anything allocated once per process is made now
    small_kb, small_rows = peak_kb(csv_bytes // 10)
    full_kb, full_rows = peak_kb(None)
    flat = full_kb <= small_kb * 1.25 + 64
    print(f"CSV memory (tracemalloc peak): first tenth ({small_rows - 1:,} rows) {small_kb:,.0f} "
          f"KiB, whole day ({full_rows - 1:,} rows) {full_kb:,.0f} KiB: "
          f"{'flat' if flat else 'GROWS with the rows'}")
    csv_ok = csv_rows == day_calls and flat

    # --- 6. the whole range's CSV, built by the worker in parts --------------------------------
    big = big_export(url, days, loaded)
    big_ok = big["rows"] == loaded and big["flat"]

    ok = (summary_ok and page_ok and csv_ok and big_ok and timeline_ok and filtered_ok
          and sum_p50 < 200 and page_p50 < 100 and tl_p50 < 50 and alert_ms < 20
          and fsum_p50 < 300 and fpage_p50 < 100)
    checks = {"summary counts every call": summary_ok, "page has 25 rows of all calls": page_ok,
              "a call's timeline shows its steps": timeline_ok,
              "filtered summary and page agree": filtered_ok,
              "worker export has every row, flat memory": big_ok,
              "CSV has every row, flat memory": csv_ok}
    for name, good in checks.items():
        if not good:
            print(f"FAILED: {name}")
    print(f"RESULT calls={loaded} load_calls_per_s={load_rate:.0f} "
          f"summary_ms_p50={sum_p50:.2f} summary_ms_p95={sum_p95:.2f} summary_ms_target=200 "
          f"summary_floor_ms_p50={floor_p50:.2f} page_ms_p50={page_p50:.2f} "
          f"page_ms_p95={page_p95:.2f} page_ms_target=100 page_floor_ms_p50={pfloor_p50:.2f} "
          f"timeline_ms_p50={tl_p50:.2f} timeline_ms_p95={tl_p95:.2f} timeline_ms_target=50 "
          f"timeline_floor_ms_p50={tfloor_p50:.2f} "
          f"alert_check_ms_p50={alert_ms:.2f} alert_check_ms_p95={alert_p95:.2f} "
          f"alert_check_ms_target=20 alert_check_floor_ms_p50={alert_floor_ms:.2f} "
          f"filtered_summary_ms_p50={fsum_p50:.2f} filtered_summary_ms_target=300 "
          f"filtered_page_ms_p50={fpage_p50:.2f} filtered_page_ms_target=100 "
          f"csv_rows_per_s={csv_rate:.0f} csv_floor_rows_per_s={floor_rate:.0f} "
          f"csv_peak_kb_small={small_kb:.0f} csv_peak_kb_full={full_kb:.0f} "
          f"export_rows_per_s={big['rate']:.0f} export_s={big['seconds']:.0f} "
          f"export_parts={big['parts']} export_mib={big['mib']:.1f} "
          f"export_peak_kb_first={big['first_kb']:.0f} export_peak_kb_max={big['max_kb']:.0f} "
          f"download_part_ms_max={big['download_ms']:.0f} "
          f"bytes_per_call={per_call:.0f} equivalent=yes pass={'yes' if ok else 'no'}")
    return ok


if __name__ == "__main__":
    main()

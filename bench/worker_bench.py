"""bench/worker: how fast one worker process writes call events, against a floor.

Emits N simulated calls' events through the web app's real `Emitter` (measuring what an
emit costs a webhook), starts ONE real RQ worker process (`rq worker --burst` with
Ruta's worker class) and times it until every event is written. The floor, measured in
the same run on the same Redis: the same number of events written with plain redis-py
pipelines (two writes per event: the call hash and a day counter, no reads, no dedupe).
Also prints Redis memory per stored call. The last line is key=value pairs for scripts.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr import events, store  # noqa: E402
from ivr.redis_server import RedisServer  # noqa: E402
from ivr.vocabulary import Event, EventKind, day_of  # noqa: E402

HOTLINES = ["icbf", "labour", "national", "prosecutor", "bogota", "emergency"]
CATEGORIES = {"1": "child", "2": "labour", "3": "migrant", "4": "report", "5": "other"}


def call_events(n: int, started: float) -> list[Event]:
    """One simulated call's events, shaped like real ones (5 to 8 events)."""
    sid = f"CA{n:032x}"
    key = random.choice(list(CATEGORIES))
    hotline = random.choice(HOTLINES)
    out = []

    def add(step, kind, asked="", **data):
        out.append(Event(id=f"{sid}:{step}.{len(out)}", call=sid, kind=kind, step=step,
                         at=started + step * 4, started=started, lang="es", asked=asked,
                         data=data))

    add(1, EventKind.CALL_STARTED, asked="welcome", lang="es", caller=f"c_{n % 5000:020x}")
    if random.random() < 0.15:
        add(2, EventKind.NO_INPUT, asked="welcome", node="welcome", attempt=1)
    add(3, EventKind.MENU_ANSWERED, node="welcome", input="dtmf", option=key,
        category=CATEGORIES[key], attempt=0)
    add(3, EventKind.TRANSFER_STARTED, hotline=hotline, target=0)
    status = random.choice(["completed", "completed", "busy", "no-answer"])
    add(4, EventKind.TRANSFER_ENDED, hotline=hotline, target=0, status=status, duration=60)
    if status != "completed":
        add(5, EventKind.TRANSFER_STARTED, hotline="national", target=0)
        add(6, EventKind.TRANSFER_ENDED, hotline="national", target=0, status="completed",
            duration=90)
    out.append(Event(id=f"{sid}:end", call=sid, kind=EventKind.CALL_ENDED, step=1 << 20,
                     at=started + 200, started=started, data={"status": "completed",
                                                              "duration": 200}))
    return out


def _time_in_drain_jobs(r: redis.Redis) -> float:
    """Seconds the worker spent in drain jobs (RQ records each job's start and end)."""
    from rq import Queue
    from rq.job import Job

    registry = Queue(store.QUEUE, connection=r).finished_job_registry
    jobs = [j for j in Job.fetch_many(registry.get_job_ids(), connection=r) if j]
    durations = sorted((j.ended_at - j.started_at).total_seconds() for j in jobs)
    import os
    if os.environ.get("BENCH_DEBUG"):
        print("drain jobs:", len(jobs), "longest:", durations[-5:], "results:",
              [j.return_value() for j in jobs][:3])
    return sum(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="about this many events")
    args = parser.parse_args()
    random.seed(7)
    tmp = Path(tempfile.mkdtemp(prefix="ruta-bench-"))
    server = RedisServer(tmp / "redis").start()
    try:
        run(server.url, args.events, tmp)
    finally:
        server.stop()


def run(url: str, target_events: int, tmp: Path) -> None:
    r = redis.Redis.from_url(url)
    text = redis.Redis.from_url(url, decode_responses=True)
    now = time.time()
    calls, all_events = [], []
    while len(all_events) < target_events:
        evs = call_events(len(calls), now - random.random() * 3600)
        calls.append(evs)
        all_events += evs
    print(f"{len(all_events)} events of {len(calls)} calls", flush=True)

    # --- floor: the same number of events, two plain pipelined writes each ----------
    day = day_of(now)
    t0 = time.perf_counter()
    pipe = r.pipeline(transaction=False)
    for i, e in enumerate(all_events, 1):
        pipe.hset(f"floor:call:{e.call}", e.kind, e.step)
        pipe.hincrby(f"floor:day:{day}", e.kind, 1)
        if i % 500 == 0:
            pipe.execute()
    pipe.execute()
    floor_s = time.perf_counter() - t0
    floor_rate = len(all_events) / floor_s
    r.delete(*r.keys("floor:*"))
    print(f"floor (redis-py pipeline, 2 writes/event): {floor_rate:,.0f} events/s")

    # --- emit: the web side, one webhook's events at a time ---------------------------
    before_cmds = int(r.info("stats")["total_commands_processed"])
    emitter = events.Emitter(r, events.Spool(tmp / "spool"))
    by_request: list[list[Event]] = []
    for evs in calls:  # group a call's events by webhook request (same step)
        steps: dict[int, list[Event]] = {}
        for e in evs:
            steps.setdefault(e.step, []).append(e)
        by_request += steps.values()
    t0 = time.perf_counter()
    for group in by_request:
        emitter.emit(group)
    emit_s = time.perf_counter() - t0
    cmds = int(r.info("stats")["total_commands_processed"]) - before_cmds
    jobs = len(r.lrange(f"rq:queue:{store.QUEUE}", 0, -1))
    print(f"emit(): {emit_s / len(by_request) * 1e6:.0f} µs per webhook, 1 round trip "
          f"(+ an RQ enqueue on {jobs} of {len(by_request)} emits), "
          f"{cmds / len(by_request):.1f} Redis commands per emit on average")

    # --- one worker process drains everything ------------------------------------------
    env = dict(os.environ, REDIS_URL=url, RUTA_SPOOL_DIR=str(tmp / "spool"))
    rq = Path(sys.executable).parent / "rq"
    t0 = time.perf_counter()
    worker = subprocess.Popen(
        [str(rq), "worker", "--burst", "--worker-class", "workers.worker.RutaWorker",
         "--url", url, "--logging_level", "WARNING", store.QUEUE],
        env=env, cwd=ROOT,
    )
    worker.wait(timeout=600)
    worker_s = time.perf_counter() - t0
    drain_s = _time_in_drain_jobs(r)
    left = text.xlen(store.EVENTS)
    counted = sum(int(text.hget(store.day_key(d), "calls") or 0)
                  for d in {day_of(evs[0].started) for evs in calls})
    rate = len(all_events) / drain_s
    print(f"worker: {rate:,.0f} events/s while its drain jobs ran ({drain_s:.2f} s); "
          f"{len(all_events) / worker_s:,.0f} events/s counting the process start "
          f"({worker_s:.2f} s); {left} left in the stream, {counted} of {len(calls)} calls "
          "counted")

    # --- memory per stored call -------------------------------------------------------
    used = int(text.info("memory")["used_memory"])
    sample = [text.memory_usage(store.call_key(evs[0].call)) or 0 for evs in calls[:200]]
    lines = [text.memory_usage(store.timeline_key(evs[0].call)) or 0 for evs in calls[:200]]
    log_bytes = text.memory_usage(store.LOG) or 0
    per_call = used / len(calls)
    print(f"memory: {per_call:,.0f} bytes per stored call in all (call hash about "
          f"{sum(sample) / len(sample):,.0f} B, timeline about {sum(lines) / len(lines):,.0f} "
          f"B, event log {log_bytes / len(calls):,.0f} B)")
    ok = counted == len(calls) and left == 0 and rate >= 10_000
    print(f"RESULT events={len(all_events)} worker_events_per_s={rate:.0f} "
          f"floor_events_per_s={floor_rate:.0f} ratio={rate / floor_rate:.3f} "
          f"target_events_per_s=10000 exactly_once={'yes' if counted == len(calls) else 'no'} "
          f"bytes_per_call={per_call:.0f} emit_us={emit_s / len(by_request) * 1e6:.0f} "
          f"pass={'yes' if ok else 'no'}")


if __name__ == "__main__":
    main()

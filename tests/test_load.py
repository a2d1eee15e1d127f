"""Short runs of the load run (tests/load_run.py, which bench/load runs at full size):
real redis-server, gunicorn and `rq worker` started from the Procfile's lines, callers
over HTTP, with and without chaos.

These tests only choose a small, fast run and say what must hold: no failed or silent
call, every call counted once, every event written once, nothing left in the stream or
the spool.
"""

from __future__ import annotations

import load_run
import pytest
from conftest import TOKEN

from ivr import create_app
from ivr.simulator import SimulatedCall, flask_transport

pytestmark = pytest.mark.slow  # real servers or browsers: `-m "not slow"` skips them


def show(result: load_run.LoadResult, printed: list[str]) -> str:
    """What the run printed, and the services' logs if it failed: the assertion message."""
    return "\n".join([*printed, result.logs, result.result_line()])


def test_every_scenario_of_the_benchmark_routes_as_it_declares(tmp_path):
    """The benchmark's table of calls, played in-process: a routing change shows up here
    as itself, not as failed calls under load."""
    app = create_app({
        "RUTA_ENV": "development", "TESTING": True, "TWILIO_AUTH_TOKEN": TOKEN,
        "SECRET_KEY": "x", "REDIS_URL": "", "PUBLIC_BASE_URL": "",
        "RUTA_SPOOL_DIR": str(tmp_path / "spool"),
    })
    for s in load_run.SCENARIOS:
        call = SimulatedCall("http://ruta.test", TOKEN,
                             transport=flask_transport(app)).run(s.moves, s.dials)
        assert (tuple(call.dialed), call.hung_up_by) == (s.dialed, s.ends), s.name


def test_without_chaos_the_report_counts_every_call_placed():
    printed: list[str] = []
    result = load_run.run_load(callers=10, seconds=3, pace=0.1, report_timeout=30,
                               seed=7, out=printed.append)
    why = show(result, printed)
    assert result.calls == 10, why
    assert result.failed == {}, why
    assert result.report_lag_s is not None, why
    assert result.counted == result.calls, why
    assert (result.lost, result.double) == (0, 0), why
    assert result.mismatched == {} and result.wrong_records == {}, why
    assert not any(result.left.values()), why
    assert result.passed, why


@pytest.fixture(scope="module")
def chaos_run():
    """30 callers over 15 s, fast; Redis down 4 s at 5 s; the worker SIGKILLed at 10 s
    (in a drain if one runs). A drain killed holding the lock leaves its entries to be
    claimed after 20 s idle, on the next worker's 10 s sweep: about 30 s after the kill
    at worst, so the report gets 50 s."""
    printed: list[str] = []
    result = load_run.run_load(callers=30, seconds=15, pace=0.1, chaos=True,
                               outage_seconds=4, report_timeout=50, seed=20261122,
                               out=printed.append)
    return result, printed


def test_chaos_fails_no_call_loses_nothing_and_counts_nothing_twice(chaos_run):
    result, printed = chaos_run
    why = show(result, printed)
    chaos = result.chaos
    assert chaos.errors == [], why
    assert chaos.spooled > 0, f"nothing was spooled while Redis was down\n{why}"
    assert chaos.killed_pid is not None, why
    assert result.calls == 30, why
    assert result.failed == {}, why
    assert result.report_lag_s is not None, why
    assert result.counted == result.calls, why
    assert result.lost == 0, why
    assert result.double == 0, why
    assert result.mismatched == {}, why
    assert result.wrong_records == {}, why
    assert result.left == {"stream": 0, "pending": 0, "spool": 0, "dead": 0}, why
    assert result.passed, why


def test_chaos_the_worker_only_exits_when_killed(chaos_run):
    """Redis going away must not make the worker quit (then only a platform's restart
    would replay the spool); the one SIGKILL is followed by exactly one restart."""
    result, printed = chaos_run
    assert result.worker_exits == [], show(result, printed)
    assert result.worker_starts == 2, show(result, printed)

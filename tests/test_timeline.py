"""One call's timeline (/reports/calls/<CallSid>): every event in order, with its time and
the seconds since the call started; the caller only as a pseudonym, with how often it
called; never the number, never the words said. Calls placed through the webhooks and
written by the real drain into a real Redis."""

from __future__ import annotations

import random
import re
import time
from html import unescape

import pytest
from conftest import CONNECTED_HOTLINES
from test_admin import Staff

from ivr import store, timeline
from ivr.call_record import CallRecord
from ivr.simulator import Move
from ivr.tally import tally
from ivr.vocabulary import Event, EventKind
from workers.drain import Drainer

CALLER = "+573001234567"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RUTA_MENU_OVERRIDES": CONNECTED_HOTLINES}


def text_of(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def timeline_items(html: str) -> list[str]:
    return [text_of(li) for li in re.findall(r'<li data-kind="[^"]+">(.*?)</li>', html, re.S)]


# --- pure: order, ring time, seconds since the start --------------------------------------


def test_events_arriving_out_of_order_and_twice_read_in_the_order_they_happened():
    t0 = 1_700_000_000.0
    sid = "CA" + "7" * 32

    def ev(suffix, kind, step, at, **data):
        return Event(id=f"{sid}:{suffix}", call=sid, kind=kind, step=step, at=t0 + at,
                     started=t0, lang="es", asked="", data=data)

    events = [
        ev("1.0", EventKind.CALL_STARTED, 1, 0, lang="es", caller="c_1"),
        ev("2.0", EventKind.MENU_ANSWERED, 2, 14.2, node="welcome", input="speech",
           option="2", attempt=0, category="labour", decided="keyword", score=0.83),
        ev("2.1", EventKind.TRANSFER_STARTED, 2, 14.2, hotline="labour", target=0),
        ev("3.0", EventKind.TRANSFER_ENDED, 3, 17.0, hotline="labour", target=0,
           status="busy", duration=0),
        ev("3.1", EventKind.TRANSFER_STARTED, 3, 17.0, hotline="national", target=0),
        ev("4.0", EventKind.TRANSFER_ENDED, 4, 139.0, hotline="national", target=0,
           status="completed", duration=110),
        ev("end", EventKind.CALL_ENDED, 1 << 20, 141.0, status="completed", duration=141),
    ]
    shuffled = events + events[2:4]  # two delivered twice
    random.Random(3).shuffle(shuffled)
    changes = tally({}, shuffled)
    record = changes.records[sid]
    lines = [timeline.line(e) for e in changes.events]
    assert len(lines) == len(events)  # each event kept once

    steps = timeline.steps(record, lines)
    assert [s.kind for s in steps] == [e.kind for e in events]
    assert [s.since_start for s in steps] == [0, 14, 14, 17, 17, 139, 141]
    spoke = steps[1]
    assert (spoke.input, spoke.key, spoke.certainty) == ("speech", "2", 0.83)
    busy, answered = steps[3], steps[5]
    assert (busy.hotline, busy.result, busy.ring_seconds) == ("labour", "busy", 3)
    assert (answered.result, answered.talk_seconds, answered.ring_seconds) == (
        "completed", 110, 12)  # 122 s from its start to its end, less 110 s of talk
    assert steps[-1].call_seconds == 141


# --- the page, from calls placed through the webhooks ----------------------------------------


def test_a_supervisor_goes_from_the_calls_table_to_one_calls_timeline(
        app, simulate, redis_client):
    call = simulate([Move("say", "me ofrecieron un trabajo falso")], ["busy", "completed"],
                    caller=CALLER)
    simulate([Move("press", "1")], [], caller=CALLER)  # the same caller, again
    assert Drainer(redis_client).run(5).dead == 0
    marta = Staff(app, "marta", role="supervisor", lang="es")

    table = marta.page("/reports?range=today")
    link = f"/reports/calls/{call.call_sid}"
    assert f'href="{link}"' in table  # the row links to the call's page
    page = marta.page(link)
    items = timeline_items(page)

    assert "Ruta contestó la llamada" in items[0]
    # The answer by voice: the option it matched and how sure, never the words said.
    assert any("voz, coincidió con la opción 2 (certeza" in i for i in items), items
    assert "trabajo" not in page and "ofrecieron" not in page
    # Each transfer with its result; the answered one with its talk time.
    transfers = [i for i in items if "número 1:" in i]
    assert "ocupada" in transfers[0]
    assert re.search(r"contestada, unos \d+ s timbrando, \d+ s de conversación", transfers[1])
    assert "La llamada terminó" in items[-1]
    # Every step with its time of day and the seconds since the start, in order.
    seconds = [int(m) for m in re.findall(r"\+(\d+) s", " ".join(items))]
    assert len(seconds) == len(items) and seconds == sorted(seconds)
    # The caller: a pseudonym and how often it called; never the number.
    facts = text_of(page.split('class="timeline"')[0])
    assert "2 llamadas de esta persona en los últimos 180 días" in facts
    assert "3001234567" not in page


def test_a_withheld_number_is_said_so_and_an_unknown_call_is_not_found(
        app, simulate, redis_client):
    call = simulate([Move("press", "1")], [], caller="anonymous")
    assert Drainer(redis_client).run(5).dead == 0
    tom = Staff(app, "tom", role="supervisor", lang="en")
    assert "number withheld" in text_of(tom.page(f"/reports/calls/{call.call_sid}"))
    missing = tom.client.get("/reports/calls/CA" + "0" * 32)
    assert missing.status_code == 404
    assert "older than the retention period" in text_of(missing.text)
    anonymous = tom.client.__class__(app)  # a browser with no session
    assert anonymous.get(f"/reports/calls/{call.call_sid}").status_code in (302, 401)


# --- what the drain keeps ----------------------------------------------------------------------


def test_a_redelivered_event_shows_once_and_the_timeline_goes_with_the_record(
        app, simulate, redis_client):
    call = simulate([Move("press", "2")], ["no-answer", "completed"], caller=CALLER)
    raws = [fields["e"] for _, fields in redis_client.xrange(store.EVENTS)]
    assert Drainer(redis_client).run(5).dead == 0
    key, record_key = store.timeline_key(call.call_sid), store.call_key(call.call_sid)
    kept = redis_client.lrange(key, 0, -1)
    assert len(kept) == len(raws)
    # The spool's replay or a retried drain delivers the whole call again: nothing new.
    store.Store(redis_client).write_batch([Event.from_json(r) for r in raws], [], None)
    assert redis_client.lrange(key, 0, -1) == kept
    assert abs(redis_client.ttl(key) - redis_client.ttl(record_key)) <= 1


def test_a_callers_calls_older_than_the_retention_are_not_counted(redis_client):
    now = time.time()
    old = store.Store(redis_client, retention_days=2)

    def call(sid: str, days_ago: float) -> None:
        at = now - days_ago * 86400
        old.write_batch([Event(id=f"{sid}:1.0", call=sid, kind=EventKind.CALL_STARTED,
                               step=1, at=at, started=at, lang="es",
                               data={"lang": "es", "caller": "c_repeat"})], [], None)

    call("CA1", 5)  # its record is long gone
    call("CA2", 1)
    call("CA3", 0)
    record, _lines, calls = old.timeline("CA3")
    assert isinstance(record, CallRecord) and calls == 2
    # A call written before callers' calls were kept still counts itself.
    redis_client.delete(store.caller_calls_key("c_repeat"))
    assert old.timeline("CA3")[2] == 1

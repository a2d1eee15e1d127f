"""The call vocabulary (ivr.vocabulary): the names stored in Redis pinned, counter names
built and parsed back, and its one-owner rule checked against the source of ivr/,
workers/, tests/ and bench/."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr import vocabulary
from ivr.vocabulary import (
    ANSWERED,
    FAILED_DIALS,
    FINAL_CALL_STATUSES,
    TWILIO_DIAL_STATUSES,
    Attempt,
    CallStatus,
    Category,
    Count,
    DialStatus,
    Event,
    EventKind,
    Input,
    Outcome,
    counter,
    dial_hour_counter,
    group_counters,
    hour_counter,
    split_counter,
    split_dial,
    split_dial_hour,
)

REPO = Path(__file__).resolve().parent.parent
OWNER = REPO / "ivr" / "vocabulary.py"
CHECKED = ("ivr", "workers", "tests", "bench")
# The one test outside the owner allowed to spell the stored names: it pins them.
CONTRACT = ("tests/test_vocabulary.py", "test_the_names_stored_in_redis_stay_as_they_are")
# Strings spelled like an event kind that mean something else: (module, the kind whose
# spelling it shares): what it means there.
SAME_SPELLING_OTHER_MEANING = {
    ("ivr/call_record.py", EventKind.NO_INPUT): "a field of the call's hash: its count of them",
    ("ivr/call_record.py", EventKind.INVALID_INPUT):
        "a field of the call's hash: its count of them",
    ("ivr/reports.py", EventKind.NO_INPUT): "a column of the calls export (CSV and JSON)",
    ("ivr/reports.py", EventKind.INVALID_INPUT): "a column of the calls export (CSV and JSON)",
    ("ivr/exports.py", EventKind.NO_INPUT): "a column of the calls CSV (its data form's id)",
    ("ivr/exports.py", EventKind.INVALID_INPUT):
        "a column of the calls CSV (its data form's id)",
    ("ivr/menu.py", EventKind.NO_INPUT): "a prompt's name (prompts/*.toml)",
    ("ivr/menu.py", EventKind.STEP_LIMIT): "a menu setting (config/menu.toml)",
    ("ivr/flow.py", EventKind.NO_INPUT): "the prompt a silence is answered with",
    ("ivr/i18n.py", EventKind.NO_INPUT): "a prompt's name, named for staff",
    ("tests/test_flow.py", EventKind.NO_INPUT): "the prompt a silence is answered with",
}


# What a step's event may hold: text in any script (a lone surrogate too), counts (big
# ones too), scores, lists of ids.
DETAIL_VALUES = st.one_of(st.text(), st.text("añ\ud800\udfff", max_size=3),
                          st.integers(-(2**70), 2**70),
                          st.floats(allow_nan=False, allow_infinity=False),
                          st.lists(st.text(), max_size=3))


@given(st.dictionaries(st.text(), DETAIL_VALUES, max_size=6), st.text(max_size=40))
def test_an_event_reaches_the_worker_as_sent_in_compact_json_unescaped(detail, call):
    """The web writes each event as one JSON line (orjson): the worker reads back the
    same event, and the line is what json.dumps wrote before (compact, UTF-8 as is)."""
    event = Event(id=f"{call}:2.0", call=call, kind=EventKind.MENU_ANSWERED.value, step=2,
                  at=1795380000.25, started=1795379990.0, lang="es", asked="welcome",
                  data=detail)
    line = event.to_json()
    before = json.dumps(event.__dict__, separators=(",", ":"), ensure_ascii=False)
    assert Event.from_json(line) == event
    assert json.loads(line) == json.loads(before)
    if not any(isinstance(v, float) for v in detail.values()):  # 1e-05 is 0.00001 now
        assert line == before


# --- the stored names: a contract ---------------------------------------------------------


def test_the_names_stored_in_redis_stay_as_they_are():
    """Events in the stream and the log, the day and hour counters, the call records and
    the exports hold these spellings: renaming one would leave stored data uncounted and
    break what reads the exports. The only test that spells them (CONTRACT)."""
    assert {k.value for k in EventKind} == {
        "call_started", "menu_answered", "no_input", "invalid_input", "language_changed",
        "transfer_started", "transfer_ended", "numbers_given", "step_limit", "call_ended",
        "follow_up"}
    assert {s.value for s in DialStatus} == {
        "completed", "answered", "busy", "no-answer", "failed", "canceled", "dropped"}
    assert {s.value for s in CallStatus} == {
        "queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer",
        "canceled"}
    assert {o.value for o in Outcome} == {
        "in_progress", "transferred", "emergency_transferred", "transfer_failed",
        "abandoned_in_menu", "emergency_hung_up_to_dial"}
    assert {c.value for c in Category} == {"emergency", "unclear", "none"}
    assert {c.value for c in Count} == {
        "calls", "identified", "hour", "transfer", "dial", "asked", "no_input",
        "invalid_input", "outcome", "category", "lang", "hangup", "to_transfer", "input",
        "dial_hour"}
    assert {a.value for a in Attempt} == {"connected", "not_connected"}
    assert {i.value for i in Input} == {"keypad", "speech", "both", "none"}
    # Counter names as the day and hour hashes hold them.
    assert counter(Count.CALLS) == "calls"
    assert counter(Count.DIAL, "icbf", DialStatus.COMPLETED) == "dial:icbf:completed"
    assert counter(Count.DIAL, "labour", DialStatus.NO_ANSWER) == "dial:labour:no-answer"
    assert counter(Count.ASKED, "welcome") == "asked:welcome"
    assert counter(Count.HANGUP, "report") == "hangup:report"
    assert counter(Count.OUTCOME, Outcome.TRANSFERRED) == "outcome:transferred"
    assert counter(Count.CATEGORY, Category.NONE) == "category:none"
    assert counter(Count.TO_TRANSFER, 12) == "to_transfer:12"
    assert counter(Count.INPUT, Input.SPEECH) == "input:speech"
    assert (dial_hour_counter("labour", 7, Attempt.NOT_CONNECTED)
            == "dial_hour:labour:07:not_connected")
    assert hour_counter(7) == "hour:07"
    assert hour_counter(23) == "hour:23"


# --- counter names ---------------------------------------------------------------------


def test_counter_names_parse_back_to_what_built_them():
    for name, values in [(Count.DIAL, ("labour", DialStatus.BUSY)), (Count.HANGUP, ("report",)),
                         (Count.OUTCOME, (Outcome.TRANSFERRED,)), (Count.CALLS, ())]:
        full = counter(name, *values)
        assert split_counter(full) == (name, ":".join(values))
    dial = split_counter(counter(Count.DIAL, "icbf", DialStatus.COMPLETED))[1]
    assert split_dial(dial) == ("icbf", DialStatus.COMPLETED)
    by_hour = split_counter(dial_hour_counter("icbf", 9, Attempt.CONNECTED))[1]
    assert split_dial_hour(by_hour) == ("icbf", 9, Attempt.CONNECTED)


def test_an_attempt_is_connected_only_when_a_person_took_it():
    assert {s for s in DialStatus if Attempt.of(s) is Attempt.CONNECTED} == ANSWERED
    assert Attempt.of(DialStatus.DROPPED) is Attempt.NOT_CONNECTED


def test_grouped_counters_leave_out_zeros_and_plain_names():
    totals = {Count.CALLS: 5, Count.NO_INPUT: 2, counter(Count.DIAL, "labour", DialStatus.BUSY): 2,
              counter(Count.DIAL, "icbf", DialStatus.COMPLETED): 0,
              counter(Count.OUTCOME, Outcome.TRANSFERRED): 3, hour_counter(9): 1}
    assert group_counters(totals) == {
        Count.DIAL: {"labour:busy": 2}, Count.OUTCOME: {Outcome.TRANSFERRED: 3},
        Count.HOUR: {"09": 1}}


def test_the_status_sets_agree():
    assert ANSWERED <= TWILIO_DIAL_STATUSES
    assert DialStatus.DROPPED not in TWILIO_DIAL_STATUSES  # ours, never Twilio's
    assert set(FAILED_DIALS) | ANSWERED == set(DialStatus)
    assert not set(FAILED_DIALS) & ANSWERED
    assert CallStatus.RINGING not in FINAL_CALL_STATUSES
    assert CallStatus.COMPLETED in FINAL_CALL_STATUSES


# --- one owner -------------------------------------------------------------------------


def sources() -> list[Path]:
    return sorted(p for top in CHECKED for p in (REPO / top).rglob("*.py") if p != OWNER)


def strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string in the code, docstrings left out; an f-string gives
    its leading text (`f"dial:{h}"` -> "dial:")."""
    found, docstrings, inside_fstrings = [], set(), set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) \
                and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            docstrings.add(id(body[0].value))
        if isinstance(node, ast.JoinedStr):
            inside_fstrings.update(id(v) for v in node.values)
            first = node.values[0] if node.values else None
            if isinstance(first, ast.Constant):
                found.append((node.lineno, first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings | inside_fstrings:
            found.append((node.lineno, node.value))
    return sorted(found)


# A counter's name then a colon, as in "dial:" or "outcome:transferred"; not prose such as
# "calls: 12 placed in 3 s" (a colon, then a space).
COUNTER_NAME = re.compile("(?:" + "|".join(re.escape(c.value) for c in Count) + r"):(?!\s)")


def spelled_out(source: str, where: str) -> list[str]:
    """Event kinds and counter names written as strings in one module's source."""
    tree = ast.parse(source)
    if where == CONTRACT[0]:  # pinning the stored names is that one test's point
        tree.body = [node for node in tree.body if getattr(node, "name", "") != CONTRACT[1]]
    kinds = {k.value for k in EventKind}
    found = []
    for line, text in strings(tree):
        if text in kinds and (where, text) not in SAME_SPELLING_OTHER_MEANING:
            found.append(f"{where}:{line}: event kind {text!r}: use EventKind")
        elif COUNTER_NAME.match(text):
            found.append(f"{where}:{line}: counter name {text!r}: use vocabulary.counter")
    return found


@pytest.mark.slow  # a second or more
def test_no_event_kind_or_counter_name_is_spelled_outside_the_vocabulary():
    found = [problem for path in sources()
             for problem in spelled_out(path.read_text(encoding="utf-8"),
                                        path.relative_to(REPO).as_posix())]
    assert found == []


def test_the_check_finds_what_it_looks_for():
    source = ('"""Docstrings may say call_started."""\n'
              'KIND = "call_started"\n'
              'def f(h):\n    return f"dial:{h}:busy"\n'
              'ASKED = "asked:" + "welcome"\n'
              'PROMPT = "no_input"\n'
              'LINE = f"calls: {n} placed"\n')
    found = spelled_out(source, "ivr/example.py")
    assert [p.split(": ", 1)[1] for p in found] == [
        "event kind 'call_started': use EventKind",
        "counter name 'dial:': use vocabulary.counter",
        "counter name 'asked:': use vocabulary.counter",
        "event kind 'no_input': use EventKind",  # allowed in ivr/menu.py, not here
    ]
    assert found[0].startswith("ivr/example.py:2: ")
    assert spelled_out('PROMPT = "no_input"\n', "ivr/menu.py") == []


def test_only_the_contract_spells_the_stored_names_in_its_module():
    """The rest of this module is held to the rule like any other, and the contract's
    spellings are all that the exception lets through."""
    here = Path(__file__).read_text(encoding="utf-8")
    assert spelled_out(here, CONTRACT[0]) == []
    [contract] = [node for node in ast.parse(here).body
                  if getattr(node, "name", "") == CONTRACT[1]]
    lines = {int(problem.split(":")[1]) for problem in spelled_out(here, "tests/other.py")}
    assert lines and all(contract.lineno <= n <= contract.end_lineno for n in lines)


@pytest.mark.parametrize("where, text", sorted(SAME_SPELLING_OTHER_MEANING))
def test_each_allowed_spelling_is_still_there(where, text):
    """An entry nobody needs any more must go, or it would hide a real one later."""
    tree = ast.parse((REPO / where).read_text(encoding="utf-8"))
    assert text in {t for _, t in strings(tree)}


@pytest.mark.slow  # a second or more
def test_the_time_zone_and_the_vocabularys_classes_have_one_owner():
    owned = {"EventKind", "Event", "DialStatus", "CallStatus", "Outcome", "Category", "Count"}
    found = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name in owned:
                found.append(f"{path.name}: class {node.name}")
            called = getattr(node, "func", None)
            if isinstance(node, ast.Call) and "ZoneInfo" in (getattr(called, "id", ""),
                                                             getattr(called, "attr", "")):
                found.append(f"{path.name}:{node.lineno}: ZoneInfo(...): use vocabulary.BOGOTA")
    assert found == []
    assert all(hasattr(vocabulary, name) for name in owned)

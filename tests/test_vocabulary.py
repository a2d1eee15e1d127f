"""The call vocabulary (ivr.vocabulary): counter names built and parsed back, and its
one-owner rule checked against the source of ivr/ and workers/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ivr import vocabulary
from ivr.vocabulary import (
    ANSWERED,
    FAILED_DIALS,
    FINAL_CALL_STATUSES,
    TWILIO_DIAL_STATUSES,
    Count,
    DialStatus,
    EventKind,
    counter,
    group_counters,
    hour_counter,
    split_counter,
    split_dial,
)

REPO = Path(__file__).resolve().parent.parent
OWNER = REPO / "ivr" / "vocabulary.py"
# Strings spelled like an event kind that mean something else, and why.
SAME_SPELLING_OTHER_MEANING = {
    ("ivr/call_record.py", "no_input"): "a field of the call's hash: its count of them",
    ("ivr/call_record.py", "invalid_input"): "a field of the call's hash: its count of them",
    ("ivr/reports.py", "no_input"): "a column of the calls export (CSV and JSON)",
    ("ivr/reports.py", "invalid_input"): "a column of the calls export (CSV and JSON)",
    ("ivr/menu.py", "no_input"): "a prompt's name (prompts/*.toml)",
    ("ivr/menu.py", "step_limit"): "a menu setting (config/menu.toml)",
    ("ivr/flow.py", "no_input"): "the prompt a silence is answered with",
}


# --- counter names ---------------------------------------------------------------------


def test_counter_names_are_built_as_the_day_hashes_hold_them():
    assert counter(Count.CALLS) == "calls"
    assert counter(Count.DIAL, "labour", DialStatus.NO_ANSWER) == "dial:labour:no-answer"
    assert counter(Count.ASKED, "welcome") == "asked:welcome"
    assert counter(Count.TO_TRANSFER, 12) == "to_transfer:12"
    assert hour_counter(7) == "hour:07"
    assert hour_counter(23) == "hour:23"


def test_counter_names_parse_back_to_what_built_them():
    for name, values in [(Count.DIAL, ("labour", "busy")), (Count.HANGUP, ("report",)),
                         (Count.OUTCOME, ("transferred",)), (Count.CALLS, ())]:
        full = counter(name, *values)
        assert split_counter(full) == (name, ":".join(values))
    assert split_dial(split_counter(counter(Count.DIAL, "icbf", "completed"))[1]) == (
        "icbf", "completed")


def test_grouped_counters_leave_out_zeros_and_plain_names():
    totals = {"calls": 5, "no_input": 2, "dial:labour:busy": 2, "dial:icbf:completed": 0,
              "outcome:transferred": 3, "hour:09": 1}
    assert group_counters(totals) == {"dial": {"labour:busy": 2},
                                      "outcome": {"transferred": 3}, "hour": {"09": 1}}


def test_the_status_sets_agree():
    assert ANSWERED <= TWILIO_DIAL_STATUSES
    assert DialStatus.DROPPED not in TWILIO_DIAL_STATUSES  # ours, never Twilio's
    assert set(FAILED_DIALS) | ANSWERED == set(DialStatus)
    assert not set(FAILED_DIALS) & ANSWERED
    assert "ringing" not in FINAL_CALL_STATUSES and "completed" in FINAL_CALL_STATUSES


# --- one owner -------------------------------------------------------------------------


def sources() -> list[Path]:
    return sorted(p for top in ("ivr", "workers") for p in (REPO / top).rglob("*.py")
                  if p != OWNER)


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


def spelled_out(source: str, where: str) -> list[str]:
    """Event kinds and counter names written as strings in one module's source."""
    kinds = {k.value for k in EventKind}
    counter_names = tuple(f"{c.value}:" for c in Count)
    found = []
    for line, text in strings(ast.parse(source)):
        if text in kinds and (where, text) not in SAME_SPELLING_OTHER_MEANING:
            found.append(f"{where}:{line}: event kind {text!r}: use EventKind")
        elif text.startswith(counter_names):
            found.append(f"{where}:{line}: counter name {text!r}: use vocabulary.counter")
    return found


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
              'PROMPT = "no_input"\n')
    found = spelled_out(source, "ivr/example.py")
    assert [p.split(": ", 1)[1] for p in found] == [
        "event kind 'call_started': use EventKind",
        "counter name 'dial:': use vocabulary.counter",
        "counter name 'asked:': use vocabulary.counter",
        "event kind 'no_input': use EventKind",  # allowed in ivr/menu.py, not here
    ]
    assert found[0].startswith("ivr/example.py:2: ")
    assert spelled_out('PROMPT = "no_input"\n', "ivr/menu.py") == []


@pytest.mark.parametrize("where, text", sorted(SAME_SPELLING_OTHER_MEANING))
def test_each_allowed_spelling_is_still_there(where, text):
    """An entry nobody needs any more must go, or it would hide a real one later."""
    tree = ast.parse((REPO / where).read_text(encoding="utf-8"))
    assert text in {t for _, t in strings(tree)}


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

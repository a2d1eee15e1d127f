"""The pure menu engine (ivr.flow): what a caller hears and where they go, step by step.

No Flask, no Twilio, no Redis: the shipped menu, a fixed clock, and the engine's Results.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, time

import pytest
from conftest import connected_menu

from ivr import flow, twiml
from ivr.flow import (
    Answer,
    Ask,
    CallState,
    FlowEvent,
    Hangup,
    Pause,
    Phase,
    Say,
    Transfer,
)
from ivr.menu import OpeningHours
from ivr.vocabulary import EventKind

NOW = datetime(2025, 3, 5, 15, 0, tzinfo=UTC)  # Wednesday 10:00 in Bogotá (UTC-5)
SATURDAY = datetime(2025, 3, 8, 17, 0, tzinfo=UTC)  # Saturday 12:00 in Bogotá
MENU = connected_menu()  # every line dialable (the chains); the shipped paths:
# tests/test_live_network.py
BUSY_STATUSES = ["busy", "no-answer", "failed", "canceled"]


# --- helpers ------------------------------------------------------------------------


def texts(step) -> list[str]:
    """The sentences a step says, in order (pauses left out)."""
    return [p.text for p in step.prompts if isinstance(p, Say)]


def kinds(result: flow.Result) -> list[EventKind]:
    return [e.kind for e in result.events]


def has_detail(event: FlowEvent, kind: EventKind, **detail) -> bool:
    """The event is of `kind` and its detail holds (at least) these values."""
    return event.kind is kind and detail.items() <= event.detail.items()


def say(lang: str, key: str, menu=MENU, **values) -> str:
    return menu.text(lang, key, **values)


def welcome(lang: str = "es", menu=MENU) -> CallState:
    """The state of a call that has just heard the main menu."""
    return dataclasses.replace(flow.start(menu, NOW).step.resume, lang=lang)


def press(state: CallState, key: str, menu=MENU, now=NOW) -> flow.Result:
    return flow.answer(menu, state, Answer(digits=key), now)


def silence(state: CallState, menu=MENU) -> flow.Result:
    return flow.answer(menu, state, Answer(), NOW)


def dial(state: CallState, status: str, menu=MENU, now=NOW, duration: int = 0):
    return flow.dial_result(menu, state, status, duration, now)


def name(hid: str, lang: str = "es", menu=MENU) -> str:
    return menu.hotlines[hid].names[lang]


def capitalised(hid: str, lang: str, menu=MENU) -> str:
    """A hotline's name at the start of a sentence: "la Fiscalía" -> "La Fiscalía"."""
    text = menu.hotlines[hid].names[lang]
    return text[:1].upper() + text[1:]


def unreachable(hid: str, lang: str = "es", menu=MENU) -> str:
    """What a caller hears when `hid` is given up on."""
    return menu.text(lang, "unreachable", hotline=capitalised(hid, lang, menu),
                     number=flow.spoken_number(menu.hotlines[hid].say))


def numbers_item(hid: str, lang: str = "es", menu=MENU) -> str:
    """How a hotline's number is read out at the end of a failed call."""
    return menu.text(lang, "numbers_item", hotline=capitalised(hid, lang, menu),
                     number=flow.spoken_number(menu.hotlines[hid].say))


def with_hours(menu, **hours: OpeningHours):
    """A copy of `menu` with some hotlines' opening hours replaced."""
    hotlines = dict(menu.hotlines)
    for hid, h in hours.items():
        hotlines[hid] = dataclasses.replace(hotlines[hid], hours=h)
    return dataclasses.replace(menu, hotlines=hotlines)


WEEKDAYS_7_TO_19 = OpeningHours(tuple((d, time(7, 0), time(19, 0)) for d in range(5)))


# --- the start of a call ------------------------------------------------------------


def test_start_greets_in_spanish_offers_english_and_asks_welcome():
    """A new call hears the Spanish greeting, the English offer, then the main menu."""
    result = flow.start(MENU, NOW)
    step = result.step
    assert isinstance(step, Ask)
    assert texts(step) == [
        say("es", "greeting"), say("en", "language_offer"), say("es", "main_menu"),
    ]
    assert step.prompts[0].voice == MENU.voices["es"].voice
    assert step.prompts[1].voice == MENU.voices["en"].voice  # the offer in an English voice
    assert step.prompts[1].language == MENU.voices["en"].say_language
    assert step.resume == CallState(lang="es", phase=Phase.MENU, node="welcome", step=1,
                                    started=int(NOW.timestamp()))
    assert step.speech and step.speech_language == "es-CO"
    assert step.timeout == MENU.gather_timeout
    assert {"niño", "emergencia", "inglés"} <= set(step.hints)
    assert result.events == (FlowEvent(EventKind.CALL_STARTED, {"lang": "es", "caller": ""}),)


def test_a_new_menu_version_is_heard_at_once_though_the_old_ones_prompts_are_kept():
    """What callers hear is made once per menu version (prompts, their TwiML): a menu with
    another greeting, made after the first was heard, says its own and the first its."""
    def heard(menu) -> tuple[str, str]:
        step = flow.start(menu, NOW).step
        return texts(step)[0], twiml.render(step, lambda state: "/voice/menu")

    old_text, old_xml = heard(MENU)
    new = "Línea Ruta, nueva versión."
    changed = dataclasses.replace(
        MENU, prompts={**MENU.prompts, "es": {**MENU.prompts["es"], "greeting": new}})
    new_text, new_xml = heard(changed)
    assert (old_text, new_text) == (say("es", "greeting"), new)
    assert new in new_xml and new not in old_xml
    assert heard(MENU) == (old_text, old_xml)
    # The question asked again after silence, likewise: its lead and its question.
    retry = "No le escuché, versión nueva."
    changed = dataclasses.replace(
        MENU, prompts={**MENU.prompts, "es": {**MENU.prompts["es"], "no_input": retry}})
    assert texts(silence(welcome()).step)[0] == say("es", "no_input")
    assert texts(silence(welcome(menu=changed), menu=changed).step)[0] == retry
    # A transfer, likewise: a version that moves the labour line dials its new number.
    press(welcome(), "2")
    moved = dataclasses.replace(MENU, hotlines={
        **MENU.hotlines, "labour": dataclasses.replace(MENU.hotlines["labour"],
                                                       dial=("+5716000999",))})
    assert dialled(press(welcome(menu=moved), "2", menu=moved).step) == "+5716000999"
    assert dialled(press(welcome(), "2").step) == "+5716000120"
    assert texts(silence(welcome()).step)[0] == say("es", "no_input")


def test_two_calls_asked_the_same_question_each_answer_back_to_their_own_position():
    """A question is made once per menu version, but each call's TwiML sends its answer
    (and its silence) back to where that call is: its step, start and attempt."""
    def asked_again(step: int, started: int) -> tuple[Ask, ET.Element]:
        state = dataclasses.replace(welcome(), step=step, started=started)
        ask = silence(state).step
        return ask, ET.fromstring(twiml.render(ask, position))

    def position(state: CallState) -> str:
        return f"/voice/menu?s={state.step}&t0={state.started}&a={state.attempt}"

    first, first_xml = asked_again(1, 1741186800)
    later, later_xml = asked_again(7, 1741190400)
    assert texts(first) == texts(later)
    for xml, url in [(first_xml, "/voice/menu?s=2&t0=1741186800&a=1"),
                     (later_xml, "/voice/menu?s=8&t0=1741190400&a=1")]:
        assert xml.find("./Gather").get("action") == url
        assert xml.find("./Redirect").text == url


# --- keypad answers -----------------------------------------------------------------


@pytest.mark.parametrize(("key", "hotline"), [
    ("1", "icbf"), ("2", "labour"), ("3", "national"), ("5", "national"),
])
def test_keypad_option_transfers_to_its_hotline(key, hotline):
    """Pressing 1, 2, 3 or 5 says which line it is and rings its first target."""
    result = press(welcome(), key)
    step = result.step
    assert isinstance(step, Transfer)
    assert step.target == MENU.hotlines[hotline].dial[0]
    assert texts(step) == [say("es", "transfer", hotline=name(hotline))]
    assert step.ring_seconds == MENU.ring_timeout
    assert (step.resume.phase, step.resume.hotline, step.resume.target) == (
        Phase.DIAL, hotline, 0)
    answered, started = result.events
    assert has_detail(answered, EventKind.MENU_ANSWERED,
                      node="welcome", input="dtmf", option=key, attempt=0)
    assert started == FlowEvent(EventKind.TRANSFER_STARTED, {"hotline": hotline, "target": 0})


def test_key_4_asks_where_to_report():
    """4 asks the follow-up question, without greeting or language offer."""
    result = press(welcome(), "4")
    step = result.step
    assert isinstance(step, Ask)
    assert texts(step) == [say("es", "report_menu")]
    assert (step.resume.node, step.resume.attempt, step.resume.step) == ("report", 0, 2)
    assert kinds(result) == [EventKind.MENU_ANSWERED]


@pytest.mark.parametrize(("key", "hotline", "target"), [
    ("1", "prosecutor", "+5716000122"), ("2", "bogota", "+573503085507"),
])
def test_report_node_transfers(key, hotline, target):
    """At the report question 1 is the Fiscalía and 2 Bogotá's Mayor's Office."""
    report = press(welcome(), "4").step.resume
    result = press(report, key)
    assert isinstance(result.step, Transfer)
    assert result.step.target == target
    assert result.step.resume.hotline == hotline
    assert has_detail(result.events[0], EventKind.MENU_ANSWERED,
                      node="report", input="dtmf", option=key, attempt=0)


@pytest.mark.parametrize("node", ["welcome", "report"])
def test_zero_goes_to_emergency_at_every_question(node):
    """0, whatever the question: first hang up and dial 123, then the offer to stay while
    the emergency line rings."""
    state = dataclasses.replace(welcome(), node=node)
    result = press(state, "0")
    assert isinstance(result.step, Transfer)
    assert result.step.target == "+5716000123"
    assert texts(result.step) == [
        "Si alguien está en peligro, cuelgue y marque 1 2 3.",
        say("es", "emergency_stay", hotline=name("emergency")),
    ]
    assert kinds(result) == [EventKind.MENU_ANSWERED, EventKind.TRANSFER_STARTED]


def test_star_repeats_the_question_without_counting_an_attempt():
    """* says the question again and keeps the attempt count as it was."""
    state = silence(welcome()).step.resume  # one attempt used
    assert state.attempt == 1
    for _ in range(MENU.max_attempts + 2):
        result = press(state, "*")
        assert isinstance(result.step, Ask)
        assert texts(result.step) == [say("en", "language_offer"), say("es", "main_menu")]
        assert result.step.resume.attempt == 1
        assert result.events[0].detail["option"] == "*"
        state = result.step.resume


def test_nine_switches_to_english_and_english_menu_offers_spanish_after_question():
    """9 asks again in English; the Spanish offer comes after the English menu."""
    state = silence(welcome()).step.resume
    result = press(state, "9")
    step = result.step
    assert texts(step) == [say("en", "main_menu"), say("es", "language_offer")]
    assert step.prompts[-1].voice == MENU.voices["es"].voice
    assert step.resume.lang == "en" and step.resume.attempt == 0
    assert step.speech_language == "en-US"
    assert "child" in step.hints and "niño" not in step.hints
    assert kinds(result) == [EventKind.MENU_ANSWERED, EventKind.LANGUAGE_CHANGED]
    assert result.events[1].detail == {"lang": "en"}


def test_nine_again_switches_back_to_spanish():
    """From the English menu, 9 returns to Spanish with the English offer first."""
    english = press(welcome(), "9").step.resume
    step = press(english, "9").step
    assert step.resume.lang == "es"
    assert texts(step) == [say("en", "language_offer"), say("es", "main_menu")]


def test_english_caller_hears_english_everywhere():
    """After 9, the transfer and the follow-up question are in English."""
    english = press(welcome(), "9").step.resume
    assert texts(press(english, "2").step) == [say("en", "transfer", hotline=name("labour", "en"))]
    assert texts(press(english, "4").step) == [say("en", "report_menu")]


def test_nine_is_invalid_where_no_language_is_offered():
    """At the report question 9 is not an option."""
    report = press(welcome(), "4").step.resume
    result = press(report, "9")
    assert texts(result.step)[0] == say("es", "invalid")
    assert result.step.resume.lang == "es"


# --- silence and wrong answers ----------------------------------------------------------


def test_no_input_re_asks_with_the_no_input_prompt():
    """Silence: "No escuché su respuesta", then the question again."""
    result = silence(welcome())
    assert isinstance(result.step, Ask)
    assert texts(result.step) == [
        say("es", "no_input"), say("en", "language_offer"), say("es", "main_menu")]
    assert result.step.resume.attempt == 1
    assert result.events == (FlowEvent(EventKind.NO_INPUT, {"node": "welcome", "attempt": 1}),)


def test_no_input_max_attempts_times_goes_to_national():
    """After max_attempts silences the caller is put through to the national line."""
    state = welcome()
    for attempt in range(1, MENU.max_attempts):
        result = silence(state)
        assert isinstance(result.step, Ask), attempt
        state = result.step.resume
    result = silence(state)
    assert isinstance(result.step, Transfer)
    assert result.step.target == MENU.hotlines["national"].dial[0]
    assert texts(result.step) == [say("es", "no_input"),
                                  say("es", "transfer", hotline=name("national"))]
    assert kinds(result) == [EventKind.NO_INPUT, EventKind.TRANSFER_STARTED]
    assert has_detail(result.events[0], EventKind.NO_INPUT,
                      attempt=MENU.max_attempts, gave_up=True)


@pytest.mark.parametrize("key", ["6", "7", "8", "#"])
def test_invalid_key_re_asks_with_the_invalid_prompt(key):
    """A key the menu does not offer: "Perdone, no le entendí", then the question."""
    result = press(welcome(), key)
    assert texts(result.step)[0] == say("es", "invalid")
    assert texts(result.step)[1:] == [say("en", "language_offer"), say("es", "main_menu")]
    assert result.step.resume.attempt == 1
    assert result.events == (FlowEvent(
        EventKind.INVALID_INPUT, {"node": "welcome", "attempt": 1, "input": "dtmf"}),)
    assert "gave_up" not in result.events[0].detail


def test_invalid_key_max_attempts_times_goes_to_national():
    """After max_attempts wrong keys the caller is put through to the national line."""
    state = welcome()
    for _ in range(MENU.max_attempts - 1):
        state = press(state, "7").step.resume
    result = press(state, "7")
    assert isinstance(result.step, Transfer)
    assert result.step.resume.hotline == "national"
    assert texts(result.step)[0] == say("es", "invalid")
    assert has_detail(result.events[0], EventKind.INVALID_INPUT, gave_up=True)


def test_silence_and_wrong_keys_count_together():
    """A silence then two wrong keys also reaches the national line."""
    state = silence(welcome()).step.resume
    state = press(state, "8").step.resume
    result = press(state, "6")
    assert isinstance(result.step, Transfer)
    assert result.step.resume.hotline == "national"


def test_attempts_restart_at_a_new_question():
    """Two silences at welcome, then 4: the report question gets its own attempts."""
    state = silence(silence(welcome()).step.resume).step.resume
    report = press(state, "4").step.resume
    assert report.attempt == 0
    again = silence(report)
    assert isinstance(again.step, Ask)
    assert texts(again.step) == [say("es", "no_input"), say("es", "report_menu")]


# --- after a transfer: dial results ------------------------------------------------------


def transferred(key: str = "1", lang: str = "es") -> CallState:
    """The state of a call ringing the hotline of welcome's `key`."""
    step = press(welcome(lang), key).step
    assert isinstance(step, Transfer)
    return step.resume


@pytest.mark.parametrize("status", ["completed", "answered"])
def test_answered_transfer_ends_with_goodbye(status):
    """Someone took the call: when it ends the caller hears goodbye and Ruta hangs up."""
    result = dial(transferred(), status, duration=312)
    assert isinstance(result.step, Hangup)
    assert texts(result.step) == [say("es", "goodbye")]
    assert result.events == (FlowEvent(EventKind.TRANSFER_ENDED, {
        "hotline": "icbf", "target": 0, "status": status, "duration": 312}),)


@pytest.mark.parametrize("status", BUSY_STATUSES)
def test_failed_target_tries_the_same_hotlines_next_target(status):
    """ICBF's first number fails: "Seguimos intentando" and its second number rings."""
    result = dial(transferred("1"), status)
    step = result.step
    assert isinstance(step, Transfer)
    assert step.target == MENU.hotlines["icbf"].dial[1]
    assert texts(step) == [say("es", "still_trying")]
    assert (step.resume.hotline, step.resume.target, step.resume.tried) == ("icbf", 1, ())
    assert kinds(result) == [EventKind.TRANSFER_ENDED, EventKind.TRANSFER_STARTED]
    assert result.events[1].detail == {"hotline": "icbf", "target": 1}


@pytest.mark.parametrize("status", ["", "COMPLETED", "ringing", "x" * 200])
def test_a_status_twilio_never_sends_counts_as_a_failed_transfer(status):
    """Whatever arrives as DialCallStatus, the caller goes on to the next number, and the
    day's counters (kept for ever) only ever see Twilio's own statuses."""
    result = dial(transferred("1"), status)
    assert [e.detail["status"] for e in result.events
            if e.kind is EventKind.TRANSFER_ENDED] == ["failed"]
    assert isinstance(result.step, Transfer)
    assert result.step.target == MENU.hotlines["icbf"].dial[1]  # ICBF's second number


@pytest.mark.parametrize("status", BUSY_STATUSES)
def test_hotline_with_all_targets_failed_falls_back_naming_its_number(status):
    """Both ICBF numbers fail: the caller hears ICBF's number, then the national line rings."""
    second = dial(transferred("1"), "busy").step.resume
    result = dial(second, status)
    step = result.step
    assert isinstance(step, Transfer)
    assert step.target == MENU.hotlines["national"].dial[0]
    assert texts(step) == [unreachable("icbf"), say("es", "transfer", hotline=name("national"))]
    assert "1 4 4" in texts(step)[0]
    assert texts(step)[0].startswith("La línea del ICBF")  # capitalised at sentence start
    assert step.prompts[0].slow is True
    assert step.resume.tried == ("icbf",)
    assert (step.resume.hotline, step.resume.target) == ("national", 0)


def test_everything_failed_reads_the_numbers_twice_slowly():
    """ICBF and the national line fail: an Ask that reads both numbers twice, slowly."""
    state = dial(dial(transferred("1"), "busy").step.resume, "no-answer").step.resume
    result = dial(state, "failed")
    step = result.step
    assert isinstance(step, Ask)
    assert step.speech is False  # keys only: no speech after the numbers
    items = [numbers_item("icbf"), numbers_item("national")]
    assert texts(step) == [say("es", "numbers_intro"), *items, *items,
                           say("es", "numbers_again")]
    assert isinstance(step.prompts[3], Pause)  # a breath between the two readings
    assert all(p.slow for p in step.prompts if isinstance(p, Say) and p.text in items)
    assert "0 1, 8 0 0 0, 5 2 2, 0 2 0" in items[1]
    assert step.goodbye == (Say(say("es", "goodbye"), MENU.voices["es"].voice,
                                MENU.voices["es"].say_language),)
    assert step.resume.phase is Phase.NUMBERS
    assert step.resume.tried == ("icbf", "national")
    assert kinds(result) == [EventKind.TRANSFER_ENDED, EventKind.NUMBERS_GIVEN]
    assert result.events[1].detail == {"hotlines": ["icbf", "national"]}


def test_emergency_chain_goes_police_then_national_then_numbers():
    """Emergency fails -> police (its fallback) -> national -> the three numbers."""
    state = press(welcome(), "0").step.resume
    to_police = dial(state, "failed").step
    assert to_police.target == "+5716000155"
    assert texts(to_police) == [unreachable("emergency"),
                                say("es", "transfer", hotline=name("police"))]
    to_national = dial(to_police.resume, "busy").step
    assert to_national.target == MENU.hotlines["national"].dial[0]
    assert texts(to_national)[0] == unreachable("police")
    numbers = dial(to_national.resume, "no-answer").step
    assert isinstance(numbers, Ask)
    said = texts(numbers)
    for hid in ("emergency", "police", "national"):
        assert said.count(numbers_item(hid)) == 2


def test_english_caller_hears_the_fallback_in_english():
    """An English caller's failed line is named and numbered in English."""
    state = transferred("2", lang="en")
    step = dial(state, "busy").step
    assert texts(step) == [unreachable("labour", "en"),
                           say("en", "transfer", hotline=name("national", "en"))]
    assert "1 2 0" in texts(step)[0]


def test_numbers_answer_repeats_on_a_key_and_hangs_up_on_silence():
    """After the numbers: a key reads them again (no intro), silence says goodbye."""
    state = dial(dial(transferred("2"), "busy").step.resume, "busy").step.resume
    assert state.phase is Phase.NUMBERS
    again = flow.numbers_answer(MENU, state, Answer(digits="1"), NOW)
    items = [numbers_item("labour"), numbers_item("national")]
    assert isinstance(again.step, Ask)
    assert texts(again.step) == [*items, *items, say("es", "numbers_again")]
    assert again.events == ()
    assert again.step.resume.step == state.step + 1
    bye = flow.numbers_answer(MENU, again.step.resume, Answer(), NOW)
    assert isinstance(bye.step, Hangup)
    assert texts(bye.step) == [say("es", "goodbye")]


def test_zero_after_the_numbers_tries_the_emergency_line_again():
    """After the numbers, 0 rings the emergency line again, from the start of its chain."""
    state = dial(dial(transferred("2"), "busy").step.resume, "busy").step.resume
    result = flow.numbers_answer(MENU, state, Answer(digits="0"), NOW)
    assert isinstance(result.step, Transfer)
    assert texts(result.step)[0] == "Si alguien está en peligro, cuelgue y marque 1 2 3."
    assert result.step.target == "+5716000123"
    assert result.step.resume.tried == ()
    assert has_detail(result.events[0], EventKind.MENU_ANSWERED, option="0")
    assert result.events[-1] == FlowEvent(EventKind.TRANSFER_STARTED,
                                          {"hotline": "emergency", "target": 0})


# --- the step limit -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["*", "9"])
def test_step_limit_ends_a_call_that_loops_forever(key):
    """A caller pressing * (or 9) forever is given the national number and hung up on."""
    state, asks = welcome(), 0
    for _ in range(MENU.step_limit + 5):
        result = press(state, key)
        if isinstance(result.step, Hangup):
            break
        asks += 1
        state = result.step.resume
    else:
        pytest.fail("the call never ended")
    assert asks == MENU.step_limit - 1  # start is step 1; step 41 ends the call
    assert texts(result.step) == [numbers_item("national", state.lang),
                                  say(state.lang, "goodbye")]
    assert result.step.prompts[0].slow
    assert result.events == (FlowEvent(EventKind.STEP_LIMIT, {"step": MENU.step_limit + 1}),)


def test_step_limit_ends_a_call_in_the_dial_phase():
    """A failed transfer past the step limit winds up instead of ringing again."""
    state = dataclasses.replace(transferred("1"), step=MENU.step_limit)
    result = dial(state, "busy")
    assert isinstance(result.step, Hangup)
    assert kinds(result) == [EventKind.TRANSFER_ENDED, EventKind.STEP_LIMIT]


def test_step_limit_ends_the_numbers_phase():
    """Pressing a key after the numbers forever still ends the call."""
    state = dial(dial(transferred("2"), "busy").step.resume, "busy").step.resume
    state = dataclasses.replace(state, step=MENU.step_limit)
    assert isinstance(flow.numbers_answer(MENU, state, Answer(digits="1"), NOW).step, Hangup)


# --- opening hours ------------------------------------------------------------------


def test_open_hotline_is_rung_within_its_hours():
    """Wednesday 10:00 in Bogotá, a Mon-Fri 07-19 labour line rings."""
    menu = with_hours(MENU, labour=WEEKDAYS_7_TO_19)
    step = press(welcome(menu=menu), "2", menu=menu).step
    assert step.target == "+5716000120"


def test_closed_hotline_is_skipped_to_its_fallback():
    """On Saturday the labour line is closed: its number is given and national rings."""
    menu = with_hours(MENU, labour=WEEKDAYS_7_TO_19)
    result = press(welcome(menu=menu), "2", menu=menu, now=SATURDAY)
    step = result.step
    assert isinstance(step, Transfer)
    assert step.target == menu.hotlines["national"].dial[0]
    assert texts(step) == [unreachable("labour", menu=menu),
                           say("es", "transfer", hotline=name("national"))]
    assert step.resume.tried == ("labour",)
    assert result.events[-1].detail == {"hotline": "national", "target": 0}


@pytest.mark.parametrize(("utc", "is_open"), [
    (datetime(2025, 3, 5, 12, 0, tzinfo=UTC), True),  # Wed 07:00 Bogotá: opens
    (datetime(2025, 3, 5, 11, 59, tzinfo=UTC), False),  # Wed 06:59
    (datetime(2025, 3, 5, 23, 59, tzinfo=UTC), True),  # Wed 18:59
    (datetime(2025, 3, 6, 0, 0, tzinfo=UTC), False),  # Wed 19:00 Bogotá (Thu in UTC)
    (datetime(2025, 3, 8, 0, 30, tzinfo=UTC), False),  # Fri 19:30 Bogotá (Sat in UTC)
    (datetime(2025, 3, 10, 13, 0, tzinfo=UTC), True),  # Mon 08:00
    (datetime(2025, 3, 9, 15, 0, tzinfo=UTC), False),  # Sunday
])
def test_opening_hours_are_bogota_time(utc, is_open):
    """Hours are read in America/Bogota time, whatever the server's clock zone."""
    menu = with_hours(MENU, labour=WEEKDAYS_7_TO_19)
    step = press(welcome(menu=menu), "2", menu=menu, now=utc).step
    assert (step.resume.hotline == "labour") is is_open


def dialled(step) -> str:
    """The number Twilio is told to dial, as our TwiML says it."""
    xml = ET.fromstring(twiml.render(step, lambda state: "/voice/dial", "+576015550100"))
    return xml.find("./Dial/Number").text


def test_a_line_that_closes_at_the_hour_is_no_longer_dialled_from_that_minute():
    """A transfer's route is worked out once per menu version and the lines open now: the
    same version and answer at 18:59:59 dials the labour line, at 19:00 tells its number
    and dials the national line, and at 18:59 the next day dials the labour line again."""
    menu = with_hours(MENU, labour=WEEKDAYS_7_TO_19)

    def heard(now: datetime) -> tuple[list[str], str]:
        step = press(welcome(menu=menu), "2", menu=menu, now=now).step
        return texts(step), dialled(step)

    open_ = ([say("es", "transfer", hotline=name("labour"))], "+5716000120")
    assert heard(datetime(2025, 3, 5, 23, 59, 59, tzinfo=UTC)) == open_  # Wed 18:59:59
    assert heard(datetime(2025, 3, 6, 0, 0, tzinfo=UTC)) == (  # Wed 19:00 Bogotá
        [unreachable("labour", menu=menu), say("es", "transfer", hotline=name("national"))],
        menu.hotlines["national"].dial[0])
    assert heard(datetime(2025, 3, 6, 23, 59, tzinfo=UTC)) == open_  # Thu 18:59


def test_each_call_gets_a_transfer_made_once_with_its_own_position():
    """Two calls put through at the same point share the route, not the position: each
    transfer reports back (and its events are filed) for its own call's step and day."""
    first = press(welcome(), "1")
    later = dataclasses.replace(welcome(), step=7, started=int(SATURDAY.timestamp()))
    second = press(later, "1", now=SATURDAY)
    assert texts(first.step) == texts(second.step)
    assert dialled(first.step) == dialled(second.step)
    assert (first.step.resume.step, first.step.resume.started) == (2, int(NOW.timestamp()))
    assert (second.step.resume.step, second.step.resume.started) == (
        8, int(SATURDAY.timestamp()))
    urls = [twiml.render(r.step, lambda state: f"/voice/dial?s={state.step}", "+576015550100")
            for r in (first, second)]
    assert 'action="/voice/dial?s=2"' in urls[0] and 'action="/voice/dial?s=8"' in urls[1]


def test_closed_hotline_with_two_targets_is_skipped_entirely():
    """A closed ICBF is not rung on either of its numbers."""
    menu = with_hours(MENU, icbf=WEEKDAYS_7_TO_19)
    step = press(welcome(menu=menu), "1", menu=menu, now=SATURDAY).step
    assert step.resume.hotline == "national"
    assert step.target not in menu.hotlines["icbf"].dial


def test_every_line_closed_gives_the_numbers():
    """If the chosen line and the national line are both closed, the numbers are read."""
    menu = with_hours(MENU, labour=WEEKDAYS_7_TO_19, national=WEEKDAYS_7_TO_19)
    result = press(welcome(menu=menu), "2", menu=menu, now=SATURDAY)
    assert isinstance(result.step, Ask) and result.step.speech is False
    assert texts(result.step)[0] == unreachable("labour", menu=menu)
    assert texts(result.step).count(numbers_item("national", menu=menu)) == 2
    assert kinds(result) == [EventKind.MENU_ANSWERED, EventKind.NUMBERS_GIVEN]


def test_closed_fallback_is_skipped_after_busy_targets():
    """Emergency fails at night; a closed police line is skipped straight to national."""
    menu = with_hours(MENU, police=WEEKDAYS_7_TO_19)
    state = press(welcome(menu=menu), "0", menu=menu, now=SATURDAY).step.resume
    step = dial(state, "failed", menu=menu, now=SATURDAY).step
    assert step.resume.hotline == "national"
    assert texts(step)[:2] == [unreachable("emergency", menu=menu),
                               unreachable("police", menu=menu)]
    assert step.resume.tried == ("emergency", "police")


# --- the call state in the webhook URL -----------------------------------------------


def test_menu_state_round_trips_through_params():
    """A question's state survives being written into the URL and read back."""
    state = CallState(lang="en", phase=Phase.MENU, node="report", attempt=2,
                      tried=("labour", "national"), step=17, started=int(NOW.timestamp()))
    params = state.to_params()
    assert params == {"l": "en", "s": "17", "n": "report", "a": "2", "tr": "labour.national",
                      "t0": str(int(NOW.timestamp()))}
    assert CallState.from_params(Phase.MENU, params, MENU) == state


def test_dial_state_round_trips_through_params():
    """A transfer's state keeps its hotline, target and tried lines through the URL."""
    state = CallState(lang="es", phase=Phase.DIAL, node="welcome", hotline="icbf",
                      target=1, tried=("emergency",), step=9, started=1741186800)
    params = state.to_params()
    assert "n" not in params and "a" not in params
    assert CallState.from_params(Phase.DIAL, params, MENU) == state


def test_state_from_the_engine_round_trips():
    """Every resume state of a real call survives the URL (the fields its phase uses)."""
    state = dial(transferred("1"), "busy").step.resume
    back = CallState.from_params(Phase.DIAL, state.to_params(), MENU)
    assert (back.lang, back.hotline, back.target, back.tried, back.step) == (
        state.lang, state.hotline, state.target, state.tried, state.step)


@pytest.mark.parametrize(("params", "field", "value"), [
    ({"l": "fr"}, "lang", "es"),
    ({}, "lang", "es"),
    ({"n": "gone"}, "node", "welcome"),
    ({"n": ""}, "node", "welcome"),
    ({"h": "gone"}, "hotline", ""),
    ({"tr": "icbf.gone.labour"}, "tried", ("icbf", "labour")),
    ({"a": "-1"}, "attempt", 0),
    ({"a": "x"}, "attempt", 0),
    ({"t": "1e3"}, "target", 0),
    ({"s": "99999"}, "step", 0),
    ({"t0": "yesterday"}, "started", 0),
    ({"t0": "17953800000"}, "started", 0),
    ({"tr": ""}, "tried", ()),
    ({"c": "Child"}, "category", ""),
    ({"c": "child"}, "category", "child"),
    ({"r": "²"}, "rung", 0),
    ({"r": "85"}, "rung", 85),
    ({"q": "e1"}, "ask", ""),
    ({"q": "d1"}, "ask", "d1"),
])
def test_unknown_values_in_params_fall_back_safely(params, field, value):
    """A node, hotline or language no longer in the menu, or junk numbers, are replaced."""
    state = CallState.from_params(Phase.MENU, params, MENU)
    assert getattr(state, field) == value


def test_state_with_a_removed_node_asks_the_start_question():
    """An answer posted for a node that no longer exists is treated as the welcome menu."""
    state = CallState.from_params(Phase.MENU, {"l": "es", "n": "gone", "s": "3"}, MENU)
    result = press(state, "2")
    assert result.step.resume.hotline == "labour"


def test_failed_transfer_to_a_removed_hotline_still_reaches_the_national_line():
    """A busy line whose id vanished from the config must not cut the caller off."""
    params = {"l": "es", "h": "gone", "t": "0", "s": "4"}
    state = CallState.from_params(Phase.DIAL, params, MENU)
    result = dial(state, "busy")
    assert isinstance(result.step, Transfer)
    assert result.step.resume.hotline == "national"


# --- whole calls, as event sequences ----------------------------------------------------


def test_events_of_a_call_that_fails_everywhere():
    """Each step returns the events of what just happened, in order."""
    r = flow.start(MENU, NOW)
    seen = [kinds(r)]
    r = silence(r.step.resume)
    seen.append(kinds(r))
    r = press(r.step.resume, "9")
    seen.append(kinds(r))
    r = flow.answer(MENU, r.step.resume, Answer(speech="my daughter", confidence=0.8), NOW)
    seen.append(kinds(r))
    for _ in range(2):
        r = dial(r.step.resume, "busy")
        seen.append(kinds(r))
    r = dial(r.step.resume, "failed")
    seen.append(kinds(r))
    r = flow.numbers_answer(MENU, r.step.resume, Answer(digits="1"), NOW)
    seen.append(kinds(r))
    E = EventKind
    assert seen == [
        [E.CALL_STARTED],
        [E.NO_INPUT],
        [E.MENU_ANSWERED, E.LANGUAGE_CHANGED],
        [E.MENU_ANSWERED, E.TRANSFER_STARTED],
        [E.TRANSFER_ENDED, E.TRANSFER_STARTED],
        [E.TRANSFER_ENDED, E.TRANSFER_STARTED],
        [E.TRANSFER_ENDED, E.NUMBERS_GIVEN],
        [],
    ]


def test_speech_answer_event_says_speech():
    """A spoken answer is recorded as input "speech" with the option it matched."""
    r = flow.answer(MENU, welcome(), Answer(speech="soy venezolano", confidence=0.8), NOW)
    assert has_detail(r.events[0], EventKind.MENU_ANSWERED,
                      node="welcome", input="speech", option="3", attempt=0)


def test_safe_transfer_rings_the_national_line_in_a_known_language():
    """The last resort after an error rings the national line, in Spanish if unsure."""
    result = flow.safe_transfer(MENU, "xx")
    assert isinstance(result.step, Transfer)
    assert result.step.target == MENU.hotlines["national"].dial[0]
    assert texts(result.step) == [say("es", "transfer", hotline=name("national"))]
    english = flow.safe_transfer(MENU, "en")
    assert texts(english.step) == [say("en", "transfer", hotline=name("national", "en"))]


def test_spoken_number_groups_digits_for_writing_down():
    """A number is read digit by digit, with a pause between its groups."""
    assert flow.spoken_number("01 8000 522 020") == "0 1, 8 0 0 0, 5 2 2, 0 2 0"
    assert flow.spoken_number("144") == "1 4 4"

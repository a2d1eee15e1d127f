"""The call as Twilio's live network really places it (issue 11).

Twilio's <Number> takes E.164 only and cannot dial Colombian short codes; it adds about
5 s to <Dial timeout>; `completed` means something answered, a machine included. These
tests walk whole calls through the real webhooks with the simulator, which plays
Twilio's part by those rules, and check the pure engine's answers to each of them.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from conftest import TOKEN, Twilio
from twilio.twiml.voice_response import VoiceResponse

from ivr import StartupError, create_app, flow, twiml
from ivr import menu as menu_config
from ivr.call_record import CallRecord
from ivr.flow import Answer, Ask, Hangup, Transfer
from ivr.simulator import Move, SimulatedCall, flask_transport
from ivr.versions import ConfigVersions
from ivr.vocabulary import (
    CallStatus,
    Category,
    Count,
    DialStatus,
    Event,
    EventKind,
    Outcome,
    counter,
)

NOW = datetime(2025, 3, 5, 15, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Bogotá
E164_OR_SIP = re.compile(r"^(\+[1-9]\d{6,14}|sips?:[^@\s]+@\S+)$")
ADVICE_ES = "Si alguien está en peligro, cuelgue y marque 1 2 3."
SHIPPED = menu_config.load()


def simulate(app, moves, dials=(), caller="+573001234567"):
    call = SimulatedCall("http://ruta.test", TOKEN, transport=flask_transport(app),
                         caller=caller)
    return call.run(moves, dials)


def press(*keys: str) -> list[Move]:
    return [Move("press", k) for k in keys]


def connected_menu(**hotline_overrides) -> menu_config.Menu:
    """The shipped files with some hotlines' fields overridden, as an admin would."""
    return menu_config.build(menu_config.read_shipped(),
                             {"hotlines": hotline_overrides} if hotline_overrides else None)


# --- dial targets: E.164 or SIP, nothing else ---------------------------------------


def test_the_shipped_directory_dials_nothing_twilio_cannot_dial():
    """Every dial target shipped is E.164 or SIP; the short codes are only read out."""
    targets = [t for h in SHIPPED.hotlines.values() for t in h.dial]
    assert targets and all(E164_OR_SIP.match(t) for t in targets)
    for hid, code in [("labour", "120"), ("police", "155"), ("prosecutor", "122"),
                      ("emergency", "123")]:
        assert SHIPPED.hotlines[hid].say == code


@pytest.mark.parametrize("target", ["123", "144", "601 3779999", "018000918080", "tel:123"])
def test_a_short_code_as_dial_target_is_an_error_not_a_warning(target):
    with pytest.raises(menu_config.ConfigError) as e:
        connected_menu(labour={"dial": [target]})
    assert any(f"{target!r} cannot be dialled by Twilio" in p for p in e.value.problems)


def test_publishing_a_short_code_as_dial_target_is_refused(redis_client):
    versions = ConfigVersions(redis_client, menu_config.read_shipped())
    versions.save_draft({"hotlines": {"emergency": {"dial": ["123"]}}}, "ana")
    _, problems = versions.check(versions.draft()["doc"])
    assert any("'123' cannot be dialled by Twilio" in p for p in problems)


def test_the_default_line_must_have_a_dial_target():
    with pytest.raises(menu_config.ConfigError) as e:
        connected_menu(national={"dial": []})
    assert any("the default line needs at least one" in p for p in e.value.problems)


# --- every path of the shipped menu, with Twilio's rules ------------------------------

PATHS = [press(k) for k in "01235"] + [press("4", "1"), press("4", "2"), press("4", "0")]
PATHS += [[Move("press", "9"), *p] for p in PATHS]
DIAL_PATTERNS = [
    (), ("busy",) * 6, ("no-answer",) * 6, ("failed",) * 6, ("machine", "completed"),
    ("machine",) * 6, ("canceled", "busy", "no-answer"),
]


@pytest.mark.parametrize(("moves", "dials"), list(itertools.product(PATHS, DIAL_PATTERNS)),
                         ids=lambda v: "-".join(m.value if hasattr(m, "value") else m
                                                for m in v) or "answered")
def test_every_path_reaches_a_person_or_the_numbers_without_a_short_code(app, moves, dials):
    call = simulate(app, moves, dials)
    assert all(E164_OR_SIP.match(t) for t in call.dialed), call.dialed
    said = call.heard()
    reached = any(line.who == "hotline" and line.text in ("answers", "connected")
                  for line in call.lines)
    numbers_read = "0 1, 8 0 0 0, 5 2 2, 0 2 0" in said  # the national line's number
    assert reached or numbers_read, "\n".join(map(str, call.lines))
    assert call.hung_up_by in ("ruta", "caller")
    if reached:
        assert call.lines[-1].who == "ruta" and call.hung_up_by == "ruta"  # goodbye


def words_until(lines, sentence: str, after: str) -> int:
    """Spoken words from the caller's move `after` up to and including `sentence`."""
    start = next(i for i, line in enumerate(lines) if line.text == after)
    words = 0
    for line in lines[start + 1:]:
        if line.who != "ruta":
            continue
        words += len(re.findall(r"[\w']+", line.text))
        if sentence in line.text:
            return words
    raise AssertionError(f"{sentence!r} never said")


@pytest.mark.parametrize("moves", [press("0"), press("4", "0"), press("9", "0"),
                                   [Move("say", "nos tienen encerrados")],
                                   [Move("say", "me van a matar", confidence=0.05)]])
def test_an_emergency_caller_hears_hang_up_and_dial_123_within_10_seconds(app, moves):
    call = simulate(app, moves, ["completed"])
    after = {"press": f"presses {moves[-1].value}", "say": f'says "{moves[-1].value}"'}
    english = moves[0].value == "9"
    advice = "If someone is in danger, hang up and dial 1 2 3." if english else ADVICE_ES
    words = words_until(call.lines, advice, after[moves[-1].kind])
    assert words * 60 / SHIPPED.words_per_minute <= 10
    # then the offer to stay, and a line that really rings
    assert call.dialed == [SHIPPED.hotlines["national"].dial[0]]


def test_an_emergency_word_wins_when_confidence_is_missing_or_low():
    state = flow.start(SHIPPED, NOW).step.resume
    for confidence in (None, 0.0, 0.01):
        result = flow.answer(SHIPPED, state, Answer(speech="auxilio", confidence=confidence),
                             NOW)
        assert isinstance(result.step, Transfer)
        assert result.step.prompts[0].text == ADVICE_ES
    ordinary = flow.answer(SHIPPED, state, Answer(speech="trabajo", confidence=0.01), NOW)
    assert isinstance(ordinary.step, Ask)  # not understood: asked again
    assert ordinary.events[0].kind is EventKind.INVALID_INPUT


def test_a_line_without_a_dial_target_gives_its_number_then_connects_the_national_line(app):
    call = simulate(app, press("2"), ["completed"])
    said = [line.text for line in call.lines if line.who == "ruta"]
    assert "Para la línea del Ministerio del Trabajo, llame usted al 1 2 0." in said
    assert call.dialed == [SHIPPED.hotlines["national"].dial[0]]


# --- ring time and the ring budget ----------------------------------------------------


def test_the_dial_timeout_leaves_room_for_twilios_five_seconds(app):
    call = simulate(app, press("1"), ["completed"])
    assert "+5718000918080 (rings up to 25 s)" in [line.text for line in call.lines]
    step = flow.answer(SHIPPED, flow.start(SHIPPED, NOW).step.resume, Answer(digits="1"),
                       NOW).step
    dial = ET.fromstring(twiml.render(step, lambda s: "/x", "+576015550100")).find("Dial")
    assert dial.get("timeout") == str(SHIPPED.ring_timeout - 5)
    # The call is answered long before: answerOnBridge would change nothing.
    assert dial.get("answerOnBridge") is None


def test_past_the_ring_budget_the_caller_hears_the_numbers():
    """Five targets that never answer: 25 + 25 + 25 + 15 s of ringing, then numbers."""
    many = [f"+57160001440{i}" for i in range(5)]
    menu = connected_menu(icbf={"dial": many})
    result = flow.answer(menu, flow.start(menu, NOW).step.resume, Answer(digits="1"), NOW)
    rings = []
    while isinstance(result.step, Transfer):
        rings.append(result.step.ring_seconds)
        result = flow.dial_result(menu, result.step.resume, "no-answer", 0, NOW)
    assert rings == [25, 25, 25, 15] and sum(rings) == menu.ring_budget
    assert isinstance(result.step, Ask) and not result.step.speech  # the numbers
    said = " ".join(p.text for p in result.step.prompts if hasattr(p, "text"))
    assert "1 4 4" in said and "0 1, 8 0 0 0" in said


def test_busy_lines_do_not_spend_the_ring_budget():
    menu = connected_menu(icbf={"dial": ["+5716000144", "+5716000145"]})
    state = flow.answer(menu, flow.start(menu, NOW).step.resume, Answer(digits="1"),
                        NOW).step.resume
    after = flow.dial_result(menu, state, "busy", 0, NOW).step
    assert isinstance(after, Transfer) and after.resume.rung == 0


# --- completed is not a person: machines, menus, screening -----------------------------


@pytest.mark.parametrize(("duration", "connected"), [(0, False), (7, False), (8, True),
                                                     (300, True)])
def test_a_short_completed_transfer_tries_the_next_target(duration, connected):
    state = flow.answer(SHIPPED, flow.start(SHIPPED, NOW).step.resume, Answer(digits="1"),
                        NOW).step.resume
    result = flow.dial_result(SHIPPED, state, "completed", duration, NOW)
    ended = result.events[0]
    assert ended.kind is EventKind.TRANSFER_ENDED
    if connected:
        assert isinstance(result.step, Hangup) and ended.detail["status"] == "completed"
    else:
        assert ended.detail["status"] == "dropped"
        assert isinstance(result.step, Transfer)
        assert result.step.target == SHIPPED.hotlines["national"].dial[0]


def test_a_machine_answering_is_counted_as_dropped_and_the_next_line_rings(app):
    call = simulate(app, press("1"), ["machine", "completed"])
    assert call.dialed == ["+5718000918080", "+5718000522020"]
    assert "a machine answers and hangs up" in [line.text for line in call.lines]
    assert call.lines[-1].text == SHIPPED.text("es", "goodbye")


@pytest.fixture
def screened_app(app_config, redis_client):
    """The shipped directory with the ICBF line screening its calls."""
    return create_app({**app_config,
                       "RUTA_MENU_OVERRIDES": {"hotlines": {"icbf": {"screen": True}}}})


def test_a_screened_line_hears_what_the_call_is_about_and_accepts_with_a_key(screened_app):
    call = simulate(screened_app, press("1"), ["completed"])
    heard = [line.text for line in call.lines if line.who == "hotline"]
    assert heard[0] == ('hears "Llamada de la línea Ruta: situación de un niño o niña, en '
                        'español. Marque 1 para aceptar."')
    assert heard[1:] == ["presses 1", "connected"]
    assert call.dialed == ["+5718000918080"]
    assert call.lines[-1].text == SHIPPED.text("es", "goodbye")


def test_the_whisper_names_the_callers_language_never_their_number(screened_app):
    caller = "+573001234567"
    call = simulate(screened_app, [Move("press", "9"), Move("say", "my daughter")],
                    ["completed"], caller=caller)
    whisper = next(line.text for line in call.lines if line.who == "hotline")
    assert "en inglés" in whisper and "niño o niña" in whisper
    assert "3001234567" not in whisper and "3 0 0 1" not in whisper


def test_a_machine_on_a_screened_line_never_counts_as_connected(screened_app):
    """No key after the whisper: Twilio hangs up that side; whatever status and length it
    then reports, the caller is offered the next line."""
    call = simulate(screened_app, press("1"), ["machine", "completed"])
    assert "a machine: no key, Twilio hangs up its side" in [line.text for line in call.lines]
    assert call.dialed == ["+5718000918080", "+5718000522020"]
    icbf = connected_menu(icbf={"screen": True}).hotlines["icbf"]
    menu = connected_menu(icbf={"screen": True})
    assert flow.answered_threshold(menu, icbf) > icbf.min_answered + flow.SCREEN_TIMEOUT


def test_the_whisper_webhook_needs_twilios_signature(screened_app):
    resp = screened_app.test_client().post("/voice/screen?l=es&h=icbf&t=0&s=2&t0=1",
                                           data={"CallSid": "CA" + "2" * 32})
    assert resp.status_code == 403


# --- caller ID --------------------------------------------------------------------------


def dial_of(app, to: str, key="1") -> ET.Element:
    """The TwiML answering `key` at the first question of a call made to `to`."""
    twilio = Twilio(app.test_client())
    action = twilio.twiml("/voice", To=to).find("Gather").get("action")
    return twilio.twiml(action, To=to, Digits=key)


def test_hotlines_see_ruta_caller_id_when_set(app_config, redis_client):
    app = create_app({**app_config, "RUTA_CALLER_ID": "+576015550199"})
    answer = dial_of(app, "+576015550100")
    assert answer.find("Dial").get("callerId") == "+576015550199"


def test_a_sip_to_without_ruta_caller_id_never_passes_the_callers_number(app):
    answer = dial_of(app, "sip:ruta@example.sip.twilio.com")
    assert answer.find("Dial") is None  # no transfer that would show the caller's number
    said = " ".join("".join(s.itertext()) for s in answer.iter("Say"))
    assert "1 4 4" in said and "0 1, 8 0 0 0" in said  # the numbers instead


def test_refusing_to_start_with_a_caller_id_that_is_not_e164(app_config):
    with pytest.raises(StartupError):
        create_app({**app_config, "RUTA_CALLER_ID": "6015550199"})


# --- counting the caller who hangs up to dial 123 ----------------------------------------


def record(*events: tuple[EventKind, int, dict]) -> CallRecord:
    rec = CallRecord(call="CA1")
    for kind, step, data in events:
        rec.apply(Event(id=f"CA1:{kind}{step}", call="CA1", kind=kind, step=step, at=1e9,
                        started=1e9, data=data))
    return rec


EMERGENCY = (EventKind.MENU_ANSWERED, 2,
             {"node": "welcome", "option": "0", "category": Category.EMERGENCY})
RINGING = (EventKind.TRANSFER_STARTED, 2, {"hotline": "national", "target": 0})


def test_hanging_up_to_dial_123_is_counted_as_such_not_as_a_failure():
    ended = (EventKind.CALL_ENDED, 1 << 20, {"status": CallStatus.COMPLETED, "duration": 20})
    assert record(EMERGENCY, RINGING, ended).outcome is Outcome.EMERGENCY_HUNG_UP_TO_DIAL
    busy = (EventKind.TRANSFER_ENDED, 3, {"hotline": "national", "status": DialStatus.BUSY})
    numbers = (EventKind.NUMBERS_GIVEN, 3, {"hotlines": ["emergency", "national"]})
    failed = record(EMERGENCY, RINGING, busy, numbers, ended)
    assert failed.outcome is Outcome.TRANSFER_FAILED  # every line failed, then the numbers
    labour = (EventKind.MENU_ANSWERED, 2,
              {"node": "welcome", "option": "2", "category": "labour"})
    assert record(labour, RINGING, ended).outcome is Outcome.TRANSFER_FAILED


def test_a_dropped_transfer_is_not_a_reached_hotline():
    dropped = (EventKind.TRANSFER_ENDED, 3,
               {"hotline": "national", "status": DialStatus.DROPPED, "duration": 3})
    ended = (EventKind.CALL_ENDED, 1 << 20, {"status": CallStatus.COMPLETED, "duration": 20})
    labour = (EventKind.MENU_ANSWERED, 2,
              {"node": "welcome", "option": "2", "category": "labour"})
    assert record(labour, RINGING, dropped, ended).outcome is Outcome.TRANSFER_FAILED


def test_the_engine_keeps_the_category_for_the_whisper():
    state = flow.start(SHIPPED, NOW).step.resume
    state = flow.answer(SHIPPED, state, Answer(digits="4"), NOW).step.resume
    step = flow.answer(SHIPPED, state, Answer(digits="1"), NOW).step
    assert dataclasses.asdict(step.resume)["category"] == "report"


def test_the_simulator_rings_nothing_for_a_number_that_is_not_e164():
    """Were a <Number> that is not E.164 ever sent, `ivr call` and the try-the-call panel
    show what Twilio's rules say: nothing rings, and the dial is reported failed."""
    posted = []

    def transport(url, params, headers):
        posted.append((url, params))
        response = VoiceResponse()
        if url.endswith("/voice"):
            response.dial(action="/voice/dial", timeout=20).number("144")
        else:
            response.hangup()
        return 200, str(response)

    call = SimulatedCall("http://ruta.test", TOKEN, transport=transport).run([], ["completed"])
    lines = [line.text for line in call.lines]
    assert "144: not an E.164 number, Twilio cannot dial it (error 13224): nothing rings" in (
        lines)
    assert "completed" not in lines  # the hotline's answer was never used
    assert posted[1][0] == "http://ruta.test/voice/dial"
    assert posted[1][1]["DialCallStatus"] == "failed"


def test_the_dashboard_counts_callers_who_hung_up_to_dial_123():
    from ivr.summary import summarize

    day = {Count.CALLS: 3, counter(Count.OUTCOME, Outcome.EMERGENCY_HUNG_UP_TO_DIAL): 2,
           counter(Count.OUTCOME, Outcome.TRANSFERRED): 1,
           counter(Count.DIAL, "icbf", DialStatus.DROPPED): 1,
           counter(Count.DIAL, "icbf", DialStatus.COMPLETED): 1}
    summary = summarize(["2026-11-26"], {"2026-11-26": day}, 3, ["welcome"])
    headline = summary.headline()
    assert headline["emergency_hung_up_to_dial"] == 2
    assert headline["transfers_never_connected"] == 0  # not counted as failures

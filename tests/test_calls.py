"""Whole calls, played end to end the way Twilio plays them: signed webhooks, TwiML
followed verb by verb, the caller's moves answering each question.

In-process through the app (the `simulate` fixture), through `ivr call`, and once
against a real gunicorn server in a subprocess.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import CONNECTED_HOTLINES

from ivr import services
from ivr.cli import main
from ivr.procfile import service_env, start_web, stop_processes, wait_for_web
from ivr.redis_server import free_port
from ivr.simulator import Move

NATIONAL = "+5718000522020"
ICBF = "+5718000918080"
CALLER = "+573001234567"
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def app_config(app_config):
    """Every line with a target Twilio can dial (conftest.CONNECTED_HOTLINES): the calls
    below reach the line they chose. The shipped directory: tests/test_live_network.py."""
    return {**app_config, "RUTA_MENU_OVERRIDES": CONNECTED_HOTLINES}


# How each language starts its transfer sentence, and the voice it is said in; someone
# in danger first hears to dial 123, then the offer to stay on the line.
TRANSFER = {"es": ("Le comunico con ", "es-US"), "en": ("Connecting you to ", "en-US")}
STAY = {"es": ("Si no puede llamar, no cuelgue: le comunico con ", "es-US"),
        "en": ("If you cannot call, stay on the line: connecting you to ", "en-US")}
GOODBYE = {"es": "Gracias por llamar", "en": "Thank you for calling"}

# route: (keys, words said at each question per language, first number dialed,
#         a piece of the hotline's name per language)
ROUTES = {
    "1 icbf": (
        ["1"],
        {"es": ["mi hija de doce años"], "en": ["it is about my daughter"]},
        "+5716000144", {"es": "ICBF", "en": "ICBF"},
    ),
    "2 labour": (
        ["2"],
        {"es": ["me ofrecieron un trabajo falso"], "en": ["a false job offer"]},
        "+5716000120", {"es": "Ministerio del Trabajo", "en": "Ministry of Labour"},
    ),
    "3 national": (
        ["3"],
        {"es": ["soy venezolano y no tengo papeles"], "en": ["I am a migrant from venezuela"]},
        NATIONAL, {"es": "Línea Nacional contra la Trata", "en": "National Anti-Trafficking"},
    ),
    "4-1 prosecutor": (
        ["4", "1"],
        {"es": ["quiero denunciar", "en la fiscalía"],
         "en": ["I want to report a crime", "the prosecutor"]},
        "+5716000122", {"es": "Fiscalía", "en": "Prosecutor"},
    ),
    "4-2 bogota": (
        ["4", "2"],
        {"es": ["quiero denunciar", "estoy en bogotá"],
         "en": ["I want to report a crime", "I am in bogota"]},
        "+573503085507", {"es": "Alcaldía de Bogotá", "en": "Bogotá Mayor"},
    ),
    "5 national": (
        ["5"],
        {"es": ["no sé qué hacer"], "en": ["I'm not sure"]},
        NATIONAL, {"es": "Línea Nacional contra la Trata", "en": "National Anti-Trafficking"},
    ),
    "0 emergency": (
        ["0"],
        {"es": ["es una emergencia"], "en": ["someone is in danger"]},
        "+5716000123", {"es": "emergencias", "en": "emergency line"},
    ),
}


def moves_for(route: str, lang: str, by: str) -> list[Move]:
    keys, words, _, _ = ROUTES[route]
    if by == "keypad":
        switch = [Move("press", "9")] if lang == "en" else []
        return switch + [Move("press", k) for k in keys]
    switch = [Move("say", "english")] if lang == "en" else []
    return switch + [Move("say", w) for w in words[lang]]


def ruta_lines(call) -> list:
    return [line for line in call.lines if line.who == "ruta"]


def said(call, sentence: str) -> int:
    """How many times Ruta said exactly `sentence`."""
    return sum(1 for line in ruta_lines(call) if line.text == sentence)


def sentence_before_first_dial(call):
    first_dial = next(i for i, line in enumerate(call.lines) if line.who == "dial")
    return next(line for line in reversed(call.lines[:first_dial]) if line.who == "ruta")


@pytest.mark.parametrize("by", ["keypad", "speech"])
@pytest.mark.parametrize("lang", ["es", "en"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_every_path_of_the_menu(simulate, route, lang, by):
    _, _, number, name = ROUTES[route]
    call = simulate(moves_for(route, lang, by))

    assert call.dialed[:1] == [number]
    sentence = sentence_before_first_dial(call)
    start, language = (STAY if route == "0 emergency" else TRANSFER)[lang]
    assert sentence.text.startswith(start), sentence.text
    assert name[lang] in sentence.text
    assert sentence.language == language
    # The hotline answered (the default): Ruta says goodbye and hangs up itself.
    assert call.dialed == [number]
    assert ruta_lines(call)[-1].text.startswith(GOODBYE[lang])
    assert call.hung_up_by == "ruta"


def test_english_callers_hear_the_menu_in_english(simulate):
    call = simulate([Move("press", "9"), Move("press", "2")])
    after_switch = call.lines[next(i for i, line in enumerate(call.lines)
                                   if line.text == "presses 9"):]
    menu = [line for line in after_switch if line.who == "ruta" and "press 2" in line.text]
    assert menu and all(line.language == "en-US" for line in menu)
    assert any(line.text == "Para español, marque 9." and line.language == "es-US"
               for line in after_switch)


# --- callers who do not answer, or answer wrong -------------------------------------


def test_three_silences_go_to_the_national_line(simulate):
    call = simulate([Move("silent")] * 3)
    assert said(call, "No escuché su respuesta.") == 3
    assert call.dialed == [NATIONAL]
    assert sentence_before_first_dial(call).text.startswith("Le comunico con la Línea Nacional")
    assert call.hung_up_by == "ruta"


def test_two_silences_then_an_answer_still_reach_the_choice(simulate):
    call = simulate([Move("silent"), Move("silent"), Move("press", "2")])
    assert said(call, "No escuché su respuesta.") == 2
    assert call.dialed == ["+5716000120"]


def test_three_invalid_keys_go_to_the_national_line(simulate):
    call = simulate([Move("press", "7")] * 3)
    assert said(call, "Perdone, no le entendí.") == 3
    assert call.dialed == [NATIONAL]
    assert call.hung_up_by == "ruta"


def test_three_invalid_answers_in_english_go_to_the_national_line(simulate):
    call = simulate([Move("press", "9"), Move("press", "8"), Move("say", "purple elephants"),
                     Move("press", "6")])
    assert said(call, "Sorry, I did not understand.") == 3
    assert call.dialed == [NATIONAL]
    assert sentence_before_first_dial(call).text.startswith("Connecting you to the National")


# --- hotlines that do not answer --------------------------------------------------------


CHAINS = {
    "labour": ("2", ["+5716000120", NATIONAL], ["La línea del Ministerio del Trabajo: 1 2 0."]),
    "icbf": ("1", ["+5716000144", ICBF, NATIONAL],
             ["La línea del ICBF para niños, niñas y adolescentes: 1 4 4."]),
}
NATIONAL_ITEM = "La Línea Nacional contra la Trata de Personas: 0 1, 8 0 0 0, 5 2 2, 0 2 0."


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed"])
@pytest.mark.parametrize("chain", list(CHAINS))
def test_when_every_line_fails_the_numbers_are_read_and_the_call_ends_politely(
        simulate, chain, status):
    key, targets, items = CHAINS[chain]
    call = simulate([Move("press", key), Move("press", "1"), Move("silent")],
                    dial_results=[status] * len(targets))

    assert call.dialed == targets
    for item in [*items, NATIONAL_ITEM]:
        assert said(call, item) == 4  # twice, then twice again after pressing 1
    again = "Para escucharlos otra vez, marque 1. Si alguien está en peligro, marque 0."
    assert said(call, again) == 2
    assert said(call, "No pudimos comunicarle. Tome nota de estos números.") == 1
    # Silence after the numbers: goodbye, then Ruta hangs up.
    assert ruta_lines(call)[-1].text == "Gracias por llamar. Cuídese mucho. Hasta luego."
    assert call.hung_up_by == "ruta"


def test_a_second_target_of_the_same_hotline_is_announced(simulate):
    call = simulate([Move("press", "1")], dial_results=["busy", "completed"])
    assert call.dialed == ["+5716000144", ICBF]
    assert said(call, "Seguimos intentando. Un momento, por favor.") == 1
    assert call.hung_up_by == "ruta"


def test_the_emergency_chain_is_emergency_then_police_then_national(simulate):
    call = simulate([Move("press", "0")], dial_results=["busy", "no-answer", "completed"])
    assert call.dialed == ["+5716000123", "+5716000155", NATIONAL]
    heard = call.heard()
    assert "La línea de emergencias no contesta. Puede llamar usted al 1 2 3." in heard
    assert "La Línea Púrpura de la Policía Nacional no contesta." in heard
    assert ruta_lines(call)[-1].text.startswith("Gracias por llamar")
    assert call.hung_up_by == "ruta"


def test_an_emergency_word_wins_at_the_second_question(simulate):
    call = simulate([Move("press", "4"), Move("say", "auxilio me van a matar")])
    assert call.dialed == ["+5716000123"]


# --- calls that would go on forever ---------------------------------------------------


def test_a_caller_repeating_forever_is_wound_up_with_a_goodbye(app, simulate):
    limit = services.of(app).live_menu.get().step_limit
    call = simulate([Move("press", "*")] * 200)
    assert call.hung_up_by == "ruta"  # not the simulator's own request limit
    assert call.requests <= limit + 1
    assert call.dialed == []
    last = ruta_lines(call)
    assert last[-1].text.startswith("Gracias por llamar")
    assert last[-2].text == NATIONAL_ITEM  # the number to call before the goodbye


# --- privacy -----------------------------------------------------------------------------


def test_the_caller_number_is_never_spoken_nor_logged(simulate, caplog):
    caplog.set_level(logging.DEBUG)
    call = simulate([Move("press", "2")], dial_results=["busy", "busy"], caller=CALLER)
    national = CALLER.removeprefix("+57")  # 3001234567
    spaced = " ".join(national)
    transcript = "\n".join(str(line) for line in call.lines)
    assert call.dialed == ["+5716000120", NATIONAL]
    for form in (CALLER, national, spaced):
        assert form not in transcript
        assert form not in caplog.text


# --- ivr call ---------------------------------------------------------------------------


def dial_lines(output: str) -> list[str]:
    return [line.split("▸", 1)[1].split("(")[0].strip()
            for line in output.splitlines() if line.strip().startswith("dial ▸")]


def test_ivr_call_in_process_with_a_busy_hotline():
    """The shipped directory: ICBF busy, then the national line answers."""
    result = CliRunner().invoke(main, ["call", "--press", "1", "--dial-result", "busy"])
    assert result.exit_code == 0, result.output
    assert "Le comunico con la línea del ICBF para niños, niñas y adolescentes. No cuelgue." in (
        result.output)
    assert dial_lines(result.output) == [ICBF, NATIONAL]
    assert "La línea del ICBF para niños, niñas y adolescentes no contesta." in result.output


def test_ivr_call_in_process_reads_a_short_code_it_cannot_dial():
    """The shipped Ministry of Labour line has no dial target yet: its number is read,
    then the national line rings."""
    result = CliRunner().invoke(main, ["call", "--press", "2"])
    assert result.exit_code == 0, result.output
    assert "Para la línea del Ministerio del Trabajo, llame usted al 1 2 0." in result.output
    assert dial_lines(result.output) == [NATIONAL]


def test_ivr_call_with_an_anonymous_caller():
    result = CliRunner().invoke(main, ["call", "--from", "anonymous", "--say", "soy migrante"])
    assert result.exit_code == 0, result.output
    assert dial_lines(result.output) == [NATIONAL]


def test_ivr_call_in_process_works_when_PUBLIC_BASE_URL_is_exported():
    """In-process `ivr call` signs for its own URL, whatever PUBLIC_BASE_URL the shell
    exports (an operator smoke-testing the menu on a production host)."""
    result = CliRunner(env={"PUBLIC_BASE_URL": "https://ruta.example.org"}).invoke(
        main, ["call", "--press", "1"])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert dial_lines(result.output) == [ICBF]


@pytest.mark.parametrize("args, message", [
    (["--press", "12"], "--press takes one key"),
    (["--dial-result", "maybe"], "--dial-result must be one of"),
    (["--press"], "incomplete move"),
    (["--shout", "help"], "unknown or incomplete move"),
])
def test_ivr_call_refuses_bad_moves(args, message):
    result = CliRunner().invoke(main, ["call", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "dial ▸" not in result.output  # no call was placed


# --- a real server -----------------------------------------------------------------------


@pytest.mark.slow
def test_ivr_call_against_a_real_gunicorn_server(redis_server, tmp_path):
    port = free_port()
    token = secrets.token_hex(16)
    env = service_env(redis_server.url, tmp_path / "spool", port, token=token)
    log = tmp_path / "web.log"
    server = start_web(env | {"WEB_CONCURRENCY": "1"}, log)  # the Procfile's web line
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_web(base, server, log)
        # An unsigned request is refused by the real server too.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(base + "/voice", data=b"",
                                                          method="POST"), timeout=5)
        assert refused.value.code == 403
        done = subprocess.run(
            [str(BIN / "ivr"), "call", "--url", base, "--token", token,
             "--say", "me ofrecieron un trabajo falso"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        assert "Para la línea del Ministerio del Trabajo, llame usted al 1 2 0." in done.stdout
        assert dial_lines(done.stdout) == [NATIONAL]
        assert "Gracias por llamar" in done.stdout

        wrong = subprocess.run(
            [str(BIN / "ivr"), "call", "--url", base, "--token", "not-the-token",
             "--press", "2"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
        assert wrong.returncode != 0
        assert "403" in wrong.stderr + wrong.stdout
        assert dial_lines(wrong.stdout) == []
    finally:
        stop_processes(server)

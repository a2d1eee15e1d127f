"""The Twilio webhooks, one request at a time: the TwiML a caller's phone call follows,
and who may call the webhooks at all (X-Twilio-Signature).

Every request is signed with twilio's own RequestValidator and every answer is parsed
with ElementTree; nothing is mocked except, once, a flow function made to fail on
purpose to show that a bug still ends in a transfer, not in silence.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
from conftest import CONNECTED_HOTLINES
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

import ivr
import ivr.flow
from ivr import create_app, events, services, store, voice
from ivr.vocabulary import EventKind

NATIONAL = "+5718000522020"
E164_OR_SIP = re.compile(r"^(\+[1-9]\d{6,14}|sips?:[^@\s]+@\S+)$")
PUBLIC = "https://ruta.example.org"
MENU = "/voice/menu?l=es&s=1&n=welcome&a=0"  # the first question, as /voice names it

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_config(app_config):
    """Every line with a target Twilio can dial (conftest.CONNECTED_HOTLINES), so each
    option's transfer rings its own line; the shipped directory: test_live_network.py."""
    return {**app_config, "RUTA_MENU_OVERRIDES": CONNECTED_HOTLINES}


def query(url: str) -> dict[str, str]:
    """The query-string parameters of a TwiML URL, one value each."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def says(element: ET.Element, path: str = ".//Say") -> list[ET.Element]:
    return element.findall(path)


def text(say: ET.Element) -> str:
    """What a <Say> speaks (also when the words sit inside <prosody>)."""
    return "".join(say.itertext()).strip()


def is_twiml(body: str) -> bool:
    try:
        return ET.fromstring(body).tag == "Response"
    except ET.ParseError:
        return False


def signed_post(client, validator, url: str, params: dict, signed_url: str | None = None):
    """POST `params` to `url` with a valid signature over `signed_url` (default: `url`)."""
    signature = validator.compute_signature(signed_url or url, params)
    return client.post(url, data=params, headers={"X-Twilio-Signature": signature})


# --- POST /voice: the first question ------------------------------------------------


def test_incoming_call_is_asked_by_keypad_or_voice_in_colombian_spanish(twilio):
    response = twilio.twiml("/voice")
    gather = response.find("./Gather[@action]")
    assert gather is not None
    assert gather.get("input") == "dtmf speech"
    assert gather.get("language") == "es-CO"
    assert gather.get("numDigits") == "1"
    assert gather.get("method") == "POST"
    hints = [h.strip() for h in gather.get("hints", "").split(",")]
    # Words of each option, an emergency word and the way to English are all hinted.
    for word in ("niño", "trabajo", "venezolano", "denunciar", "emergencia", "english"):
        assert word in hints


def test_the_question_url_carries_the_call_position(twilio):
    action = twilio.twiml("/voice").find("./Gather").get("action")
    assert urlsplit(action).path == "/voice/menu"
    position = query(action)
    assert position["n"] == "welcome"
    assert position["l"] == "es"
    assert position["a"] == "0"
    assert position["s"] == "1"


# A call position's values: ids and numbers as our URLs write them, with now and then a
# character that needs escaping, or any text.
POSITION_VALUES = st.one_of(st.text("az09_.-~", max_size=8),
                            st.text("az09_.-~ &=+%/?#ñé\n", max_size=8),
                            st.text(st.characters(blacklist_categories=("Cs",))))


@given(st.dictionaries(st.sampled_from(["l", "s", "t0", "n", "a", "h", "t", "tr", "c", "q"]),
                       POSITION_VALUES))
def test_the_next_url_reads_back_the_position_it_was_written_with(params):
    """Twilio posts the caller's next move to the URL our TwiML names: whatever the
    position holds (an id with an accent, a space, an ampersand), it is written as
    urlencode writes it and reads back the same, or the caller would be lost."""
    query = voice._query(params)
    assert query == urlencode(params)
    assert dict(parse_qsl(query, keep_blank_values=True)) == params


def test_each_character_that_needs_escaping_is_escaped_in_the_next_url():
    """One odd character among plain ones is enough to need urlencode's escaping."""
    for odd in " &=+%/?#ñé\n":
        params = {"l": "es", "s": "2", "n": f"trata{odd}personas"}
        assert voice._query(params) == urlencode(params), odd


def test_greeting_and_menu_in_spanish_voice_with_the_english_offer_in_english(twilio):
    response = twilio.twiml("/voice")
    spoken = says(response, "./Gather/Say[@language]")
    assert len(spoken) == len(says(response, "./Gather/Say"))  # every Say has a language
    by_text = {text(s): s.get("language") for s in spoken}
    assert by_text["For English, press 9."] == "en-US"
    spanish = [t for t, lang in by_text.items() if lang == "es-US"]
    assert any("confidencial" in t for t in spanish)  # the greeting
    assert any("marque 2" in t for t in spanish)  # the menu
    assert all(lang in ("es-US", "en-US") for lang in by_text.values())


def test_silence_is_followed_by_a_redirect_to_the_same_question(twilio):
    response = twilio.twiml("/voice")
    verbs = [child.tag for child in response]
    assert verbs == ["Gather", "Redirect"]
    redirect = response.find("./Redirect")
    assert redirect.get("method") == "POST"
    assert redirect.text.strip() == response.find("./Gather").get("action")


def test_following_the_redirect_without_an_answer_asks_again(twilio):
    redirect = twilio.twiml("/voice").find("./Redirect").text.strip()
    again = twilio.twiml(redirect)  # Twilio follows it with no Digits, no SpeechResult
    gather = again.find("./Gather[@action]")
    assert gather is not None
    first = says(gather, "./Say")[0]
    assert text(first) == "No escuché su respuesta."
    assert first.get("language") == "es-US"
    assert any("marque 1" in text(s) for s in says(gather, "./Say"))
    assert query(gather.get("action"))["a"] == "1"  # the attempt is counted
    assert again.find("./Redirect") is not None


def test_nine_switches_to_english_with_the_way_back_in_spanish(twilio):
    response = twilio.twiml(MENU, Digits="9")
    gather = response.find("./Gather[@action]")
    assert gather.get("language") == "en-US"
    by_text = {text(s): s.get("language") for s in says(gather, "./Say")}
    assert by_text["Para español, marque 9."] == "es-US"
    assert any("press 2" in t and lang == "en-US" for t, lang in by_text.items())
    assert query(gather.get("action"))["l"] == "en"


# --- transfers -------------------------------------------------------------------------


def test_choosing_an_option_dials_the_hotline(twilio):
    response = twilio.twiml(MENU, Digits="2")
    assert response.find("./Gather") is None
    dial = response.find("./Dial[@action]")
    assert dial is not None
    assert dial.get("answerOnBridge") is None  # the call is answered already
    assert int(dial.get("timeout")) > 0
    assert dial.get("method") == "POST"
    assert urlsplit(dial.get("action")).path == "/voice/dial"
    position = query(dial.get("action"))
    assert position["h"] == "labour"
    assert position["t"] == "0"
    number = response.find("./Dial/Number")
    assert number.text.strip() == "+5716000120"
    assert E164_OR_SIP.match(number.text.strip())
    sentence = response.find("./Say[@language]")
    assert text(sentence).startswith("Le comunico con la línea del Ministerio del Trabajo")
    assert sentence.get("language") == "es-US"


def test_a_hotline_sees_our_number_not_the_callers(twilio):
    """A caller may be on a phone someone else watches: no line gets a number to call back."""
    dial = twilio.twiml(MENU, Digits="2").find("./Dial")
    assert dial.get("callerId") == twilio.params()["To"]
    assert twilio.params()["From"] not in ET.tostring(dial, encoding="unicode")


def test_the_emergency_line_sees_the_callers_number(twilio):
    """Emergency services may need to call back or locate the caller (show_caller)."""
    dial = twilio.twiml(MENU, Digits="0").find("./Dial")
    assert dial.find("./Number").text.strip() == "+5716000123"
    assert dial.get("callerId") is None  # Twilio then passes the caller's own number


@pytest.mark.parametrize("key, number", [("1", "+5716000144"), ("3", NATIONAL),
                                         ("5", NATIONAL), ("0", "+5716000123")])
def test_every_dial_target_is_an_e164_number(twilio, key, number):
    response = twilio.twiml(MENU, Digits=key)
    target = response.find("./Dial/Number").text.strip()
    assert target == number
    assert E164_OR_SIP.match(target)
    assert response.find("./Dial").get("answerOnBridge") is None


def test_a_sip_route_is_dialed_as_sip(app_config, twilio, tmp_path):
    config_dir = tmp_path / "config"
    shutil.copytree(REPO / "config", config_dir)
    hotlines = config_dir / "hotlines.toml"
    original = hotlines.read_text(encoding="utf-8")
    labour = original.index("[labour]")
    changed = original[:labour] + original[labour:].replace(
        "dial = []", 'dial = ["sip:labour@carrier.example"]', 1)
    hotlines.write_text(changed, encoding="utf-8")
    app = create_app({**app_config, "RUTA_CONFIG_DIR": str(config_dir),
                      "RUTA_MENU_OVERRIDES": None})
    twilio.client = app.test_client()

    response = twilio.twiml(MENU, Digits="2")
    assert response.find("./Dial/Number") is None
    assert response.find("./Dial/Sip").text.strip() == "sip:labour@carrier.example"
    assert response.find("./Dial").get("answerOnBridge") is None


def test_a_busy_hotline_is_followed_by_the_national_line(twilio):
    dial_url = twilio.twiml(MENU, Digits="2").find("./Dial").get("action")
    response = twilio.twiml(urlsplit(dial_url).path + "?" + urlsplit(dial_url).query,
                            DialCallStatus="busy", DialCallDuration="0")
    assert response.find("./Dial/Number").text.strip() == NATIONAL
    spoken = [text(s) for s in says(response, "./Say")]
    assert any("no contesta" in t and "1 2 0" in t for t in spoken)


def test_an_answered_transfer_ends_with_goodbye(twilio):
    dial_url = twilio.twiml(MENU, Digits="2").find("./Dial").get("action")
    response = twilio.twiml(urlsplit(dial_url).path + "?" + urlsplit(dial_url).query,
                            DialCallStatus="completed", DialCallDuration="95")
    assert [child.tag for child in response] == ["Say", "Hangup"]
    assert text(response.find("./Say")).startswith("Gracias por llamar")
    assert response.find("./Dial") is None


def test_status_callback_answers_204_without_twiml(twilio):
    resp = twilio.post("/voice/status", CallStatus="completed", CallDuration="42")
    assert resp.status_code == 204
    assert resp.get_data() == b""


def test_a_steps_events_are_filed_at_one_moment(twilio, redis_client):
    """The answer and the transfer it starts are one step: the call's page shows them at
    the same moment, in the engine's order. A call that ended after 42 s started 42 s
    before its end."""
    twilio.twiml(MENU, Digits="2")
    twilio.post("/voice/status", CallStatus="completed", CallDuration="42")
    answered, started, ended = (json.loads(fields["e"])
                                for _, fields in redis_client.xrange(store.EVENTS))
    assert [answered["kind"], started["kind"], ended["kind"]] == [
        EventKind.MENU_ANSWERED, EventKind.TRANSFER_STARTED, EventKind.CALL_ENDED]
    assert answered["at"] == started["at"]
    assert ended["started"] == ended["at"] - 42


# --- signatures ------------------------------------------------------------------------


def test_missing_signature_is_refused_without_twiml(client, twilio):
    resp = client.post("http://ruta.test/voice", data=twilio.params())
    assert resp.status_code == 403
    assert not is_twiml(resp.get_data(as_text=True))


def test_forged_signature_is_refused(twilio):
    resp = twilio.post("/voice", signature="bm90IGEgcmVhbCBzaWduYXR1cmU=")
    assert resp.status_code == 403
    assert not is_twiml(resp.get_data(as_text=True))


def test_signature_with_the_wrong_token_is_refused(client, twilio):
    params = twilio.params()
    resp = signed_post(client, RequestValidator("some-other-account-token"),
                       "http://ruta.test/voice", params)
    assert resp.status_code == 403
    assert signed_post(client, twilio.validator, "http://ruta.test/voice",
                       params).status_code == 200


def test_tampered_digits_are_refused(client, twilio):
    url = "http://ruta.test" + MENU
    signature = twilio.validator.compute_signature(url, twilio.params(Digits="5"))
    resp = client.post(url, data=twilio.params(Digits="0"),
                       headers={"X-Twilio-Signature": signature})
    assert resp.status_code == 403
    assert not is_twiml(resp.get_data(as_text=True))


def test_a_replay_with_a_repeated_parameter_reordered_is_refused_and_nothing_written(
        app, client, twilio):
    """Twilio's signature covers repeated values sorted, not in order: a captured
    "Digits=1&Digits=0" replayed as "Digits=0&Digits=1" keeps its signature, and would
    turn a child-line answer into an emergency one. Twilio never repeats a parameter."""
    url = "http://ruta.test" + MENU
    captured = MultiDict([*twilio.params().items(), ("Digits", "1"), ("Digits", "0")])
    signature = twilio.validator.compute_signature(url, captured)
    replayed = MultiDict([*twilio.params().items(), ("Digits", "0"), ("Digits", "1")])
    assert twilio.validator.validate(url, replayed, signature)  # the signature still holds
    emitted = services.of(app).redis.xlen(store.EVENTS)
    resp = client.post(url, data=replayed, headers={"X-Twilio-Signature": signature})
    assert resp.status_code == 400
    assert not is_twiml(resp.get_data(as_text=True))
    assert services.of(app).redis.xlen(store.EVENTS) == emitted  # nothing written


def test_tampered_position_in_the_query_string_is_refused(twilio):
    tampered = MENU.replace("n=welcome", "n=report")
    resp = twilio.post(tampered, signed_url="http://ruta.test" + MENU, Digits="1")
    assert resp.status_code == 403
    assert not is_twiml(resp.get_data(as_text=True))
    # The same request signed as sent goes through.
    assert twilio.post(tampered, Digits="1").status_code == 200


def test_behind_a_proxy_the_public_url_is_the_one_checked(app_config, twilio):
    app = create_app({**app_config, "PUBLIC_BASE_URL": PUBLIC})
    client = app.test_client()
    params = twilio.params()
    internal = "http://internal:8000/voice"

    resp = signed_post(client, twilio.validator, internal, params, signed_url=PUBLIC + "/voice")
    assert resp.status_code == 200
    response = ET.fromstring(resp.get_data(as_text=True))
    action = response.find("./Gather").get("action")
    assert action.startswith(PUBLIC + "/voice/menu?")
    assert response.find("./Redirect").text.strip() == action

    refused = signed_post(client, twilio.validator, internal, params)
    assert refused.status_code == 403


def test_behind_a_proxy_every_webhook_url_is_absolute_on_the_public_base(app_config, twilio):
    app = create_app({**app_config, "PUBLIC_BASE_URL": PUBLIC + "/"})
    client = app.test_client()
    action = ET.fromstring(signed_post(
        client, twilio.validator, "http://internal:8000/voice", twilio.params(),
        signed_url=PUBLIC + "/voice").get_data(as_text=True)).find("./Gather").get("action")
    parts = urlsplit(action)
    assert (parts.scheme, parts.netloc) == ("https", "ruta.example.org")

    # Twilio posts the answer to that URL; the proxy hands it on as http://internal:8000.
    resp = signed_post(client, twilio.validator,
                       "http://internal:8000" + parts.path + "?" + parts.query,
                       twilio.params(Digits="2"), signed_url=action)
    assert resp.status_code == 200
    dial = ET.fromstring(resp.get_data(as_text=True)).find("./Dial[@action]")
    assert dial.get("action").startswith(PUBLIC + "/voice/dial?")
    assert dial.find("./Number").text.strip() == "+5716000120"


# --- caller ID is optional ---------------------------------------------------------------


@pytest.mark.parametrize("caller", ["+573001234567", "anonymous", "unknown", None])
def test_a_hidden_caller_id_routes_like_any_number(client, twilio, caller):
    def params(**extra):
        p = twilio.params(**extra)
        if caller is None:
            del p["From"]
        else:
            p["From"] = caller
        return p

    first = signed_post(client, twilio.validator, "http://ruta.test/voice", params())
    assert first.status_code == 200
    gather = ET.fromstring(first.get_data(as_text=True)).find("./Gather[@action]")
    assert query(gather.get("action"))["n"] == "welcome"

    url = "http://ruta.test" + urlsplit(gather.get("action")).path + "?" + urlsplit(
        gather.get("action")).query
    second = signed_post(client, twilio.validator, url, params(Digits="2"))
    assert second.status_code == 200
    assert ET.fromstring(second.get_data(as_text=True)).find("./Dial/Number").text == "+5716000120"


# --- start-up ------------------------------------------------------------------------------


SECRETS = ("TWILIO_AUTH_TOKEN", "SECRET_KEY", "CALLER_ID_KEY")


@pytest.mark.parametrize("missing", [("TWILIO_AUTH_TOKEN",), ("SECRET_KEY",),
                                     ("CALLER_ID_KEY",), SECRETS])
def test_production_refuses_to_start_without_its_secrets(redis_server, missing):
    config = {"RUTA_ENV": "production", "TWILIO_AUTH_TOKEN": "a-token",
              "SECRET_KEY": "a-secret", "CALLER_ID_KEY": "a-caller-key",
              "REDIS_URL": redis_server.url}
    config.update({name: "" for name in missing})
    with pytest.raises(ivr.StartupError) as raised:
        create_app(config)
    for name in missing:
        assert name in str(raised.value)
    for name in set(SECRETS) - set(missing):
        assert name not in str(raised.value)


def test_production_starts_with_its_secrets(redis_server):
    app = create_app({"RUTA_ENV": "production", "TWILIO_AUTH_TOKEN": "a-token",
                      "SECRET_KEY": "a-secret", "CALLER_ID_KEY": "a-caller-key",
                      "REDIS_URL": redis_server.url})
    assert app.config["RUTA_ENV"] == "production"


def test_the_pseudonym_key_is_never_derived_from_the_secret_key(redis_server):
    """Every web host holds SECRET_KEY: a pseudonym key derived from it would let any of
    them undo pseudonyms by enumerating numbers. Two development apps with the same
    SECRET_KEY and no CALLER_ID_KEY give the same number different pseudonyms."""
    config = {"RUTA_ENV": "development", "TWILIO_AUTH_TOKEN": "a-token",
              "SECRET_KEY": "a-secret", "REDIS_URL": redis_server.url}
    one, two = (services.of(create_app(config)).caller_key.secret for _ in range(2))
    assert one != two
    assert events.caller_pseudonym("+573001234567", one) != events.caller_pseudonym(
        "+573001234567", two)


# --- prompts are text, not markup ---------------------------------------------------------


def test_markup_characters_in_a_prompt_are_spoken_as_written(app_config, twilio, tmp_path):
    greeting = 'Línea "Ruta" <24 h> & \'confidencial\': R&D </Say><Hangup/>'
    prompts_dir = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", prompts_dir)
    es = prompts_dir / "es.toml"
    original = es.read_text(encoding="utf-8")
    changed, count = re.subn(r"(?m)^greeting = .*$",
                             lambda _: "greeting = " + json.dumps(greeting, ensure_ascii=False),
                             original)
    assert count == 1
    es.write_text(changed, encoding="utf-8")
    app = create_app({**app_config, "RUTA_PROMPTS_DIR": str(prompts_dir)})
    twilio.client = app.test_client()

    response = twilio.twiml("/voice")
    assert [child.tag for child in response] == ["Gather", "Redirect"]  # no injected Hangup
    first = response.find("./Gather/Say")
    assert text(first) == greeting
    assert response.find(".//Hangup") is None


# --- a bug must not cut a caller off ------------------------------------------------------


@pytest.mark.parametrize("lang, sentence", [
    ("es", "Le comunico con la Línea Nacional contra la Trata de Personas"),
    ("en", "Connecting you to the National Anti-Trafficking Line"),
])
def test_a_failing_flow_hands_the_caller_to_the_national_line(twilio, monkeypatch, lang,
                                                              sentence):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug in the menu engine")

    monkeypatch.setattr(ivr.flow, "answer", broken)
    response = twilio.twiml(MENU.replace("l=es", f"l={lang}"), Digits="2")
    assert response.find("./Dial/Number").text.strip() == NATIONAL
    assert response.find("./Dial").get("answerOnBridge") is None
    assert response.find("./Dial").get("action")
    assert text(response.find("./Say")).startswith(sentence)


# --- odd and hostile requests ------------------------------------------------------------


def test_a_duration_in_non_ascii_digits_does_not_break_the_transfer_chain(twilio):
    """'²' passes str.isdigit() but not int(): the caller still gets the next target."""
    dial = "/voice/dial?l=es&s=3&t0=1795380000&h=icbf&t=0"
    response = twilio.twiml(dial, DialCallStatus="busy", DialCallDuration="²")
    assert response.find("./Dial/Number").text.strip() == "+5718000918080"  # ICBF's 2nd
    assert twilio.post("/voice/status", CallStatus="completed",
                       CallDuration="²" * 5000).status_code == 204


def test_an_unreadable_query_string_is_refused_not_a_server_error(app_config):
    """Behind a proxy, garbage bytes in the URL of an unsigned request: 403, never 500."""
    app = create_app({**app_config, "PUBLIC_BASE_URL": "https://ruta.example.org"})
    response = app.test_client().post(
        "/voice/menu", environ_overrides={"QUERY_STRING": "l=es&x=\xff"},
        data={"CallSid": "CA1"}, headers={"X-Twilio-Signature": "forged"})
    assert response.status_code == 403
    assert b"<Response" not in response.data  # no TwiML


def failed_logins(client, name: str, addresses: list[str]) -> list[int]:
    """Wrong-password logins for `name`, one from each client address (via the proxy)."""
    codes = []
    for address in addresses:
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        codes.append(client.post("/login", data={
            "name": name, "password": "wrong password", "csrf_token": token,
        }, headers={"X-Forwarded-For": address}).status_code)
    return codes


@pytest.mark.slow
def test_failed_logins_are_counted_per_address_and_per_name_behind_a_proxy(app_config):
    """Someone guessing at one proxy address does not lock everyone else out, and an
    account cannot be guessed at from many addresses."""
    from ivr import security

    app = create_app({**app_config, "RUTA_TRUSTED_PROXIES": 1})
    services.of(app).staff.save_user(
        "ana", "admin", security.hash_password("correct horse battery"))
    client = app.test_client()
    assert failed_logins(client, "nobody", ["203.0.113.9"] * 5) == [401] * 5
    assert failed_logins(client, "nobody", ["203.0.113.9"]) == [429]  # that address
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    ok = client.post("/login", data={"name": "ana", "password": "correct horse battery",
                                     "csrf_token": token},
                     headers={"X-Forwarded-For": "198.51.100.7"})
    assert ok.status_code == 302  # ana, elsewhere, is not locked out
    spread = [f"192.0.2.{i}" for i in range(1, 7)]
    attacker = app.test_client()  # not ana's browser, which now holds her device cookie
    assert failed_logins(attacker, "ana", spread) == [401] * 5 + [429]  # that account

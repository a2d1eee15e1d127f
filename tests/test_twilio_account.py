"""`ivr twilio connect | check | test-line`: twilio's real Client against a local stand-in
of Twilio's REST API (tests/twilio_api_server.py), results read back from a real Redis."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from test_admin import Staff
from twilio_api_server import TwilioApiServer, twilio_error

from ivr import create_app, i18n
from ivr.cli import main
from ivr.store import CONFIG_VERSION, Store, config_version_key
from ivr.summary import summarize
from ivr.twilio_account import TEST_MESSAGE, GoLiveError, check_target
from ivr.vocabulary import Count, DialStatus, counter

OUR_NUMBER = "+576015550100"
CALLER_ID = "+576015550199"
BASE = "https://ruta.example.org"
BIN = "https://handler.twilio.com/twiml/EH" + "0" * 32
NATIONAL = "+5718000522020"  # the national line's first target, as shipped
ICBF = "+5718000918080"  # ICBF's toll-free number, its first dialable target
VOICE_FIELDS = {"VoiceUrl": f"{BASE}/voice", "VoiceMethod": "POST",
                "StatusCallback": f"{BASE}/voice/status", "StatusCallbackMethod": "POST",
                "VoiceFallbackUrl": BIN, "VoiceFallbackMethod": "POST"}


@pytest.fixture
def api():
    server = TwilioApiServer().start()
    server.add_number(OUR_NUMBER)
    server.add_number("+576015550101")  # another number of the account, left alone
    yield server
    server.stop()


@pytest.fixture
def ivr(api, redis_server, redis_client):
    """ivr(*args, **env) runs the command with the account's credentials and our stand-in."""

    def run(*args, **env):
        base_env = {
            "TWILIO_ACCOUNT_SID": api.account_sid, "TWILIO_AUTH_TOKEN": api.password,
            "TWILIO_API_KEY": None, "TWILIO_API_SECRET": None, "TWILIO_EDGE": None,
            "TWILIO_REGION": None, "RUTA_TWILIO_API_URL": api.url, "PUBLIC_BASE_URL": BASE,
            "RUTA_CALLER_ID": CALLER_ID, "REDIS_URL": redis_server.url,
            "RUTA_CONFIG_DIR": None, "RUTA_PROMPTS_DIR": None,
        }
        return CliRunner().invoke(main, ["twilio", *args], env={**base_env, **env})

    return run


def our_number(api) -> dict:
    return next(n for n in api.numbers.values() if n["phone_number"] == OUR_NUMBER)


# --- connect and check ---------------------------------------------------------------------


def test_connect_dry_run_prints_each_field_and_changes_nothing(api, ivr):
    before = dict(our_number(api))
    result = ivr("connect", "--number", OUR_NUMBER, "--fallback-url", BIN, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"voice_url               (empty)  ->  {BASE}/voice" in result.output
    assert "voice_method            POST  ->  POST  (unchanged)" in result.output
    assert "dry run: nothing changed" in result.output
    assert api.requests_to("POST", ".json") == []
    assert our_number(api) == before


def test_connect_points_every_voice_field_at_ruta_and_check_agrees(api, ivr):
    result = ivr("connect", "--number", OUR_NUMBER, "--fallback-url", BIN)
    assert result.exit_code == 0, result.output
    (update,) = api.requests_to("POST", ".json")
    assert update.path.endswith(f"/IncomingPhoneNumbers/{our_number(api)['sid']}.json")
    assert update.form == VOICE_FIELDS
    assert all(s.authorized for s in api.sent)

    result = ivr("check", "--number", OUR_NUMBER, "--fallback-url", BIN)
    assert result.exit_code == 0, result.output
    assert result.output.count("  ok  ") == 6
    assert "MISMATCH" not in result.output


def test_check_shows_a_changed_field_as_a_mismatch(api, ivr):
    assert ivr("connect", "--number", OUR_NUMBER, "--fallback-url", BIN).exit_code == 0
    our_number(api)["voice_url"] = "https://old-ivr.example.org/answer"  # someone edited it

    result = ivr("check", "--number", OUR_NUMBER, "--fallback-url", BIN)
    assert result.exit_code == 1
    assert (f"MISMATCH  voice_url               expected {BASE}/voice, "
            "found https://old-ivr.example.org/answer") in result.output
    assert result.output.count("  ok  ") == 5


def test_check_without_a_fallback_url_wants_one_set(api, ivr):
    result = ivr("check", "--number", OUR_NUMBER)
    assert result.exit_code == 1
    assert "MISMATCH  voice_fallback_url      expected any https URL, found (empty)" in (
        result.output)


def test_a_number_not_in_the_account_is_an_error(api, ivr):
    for command in ("check", "connect"):
        result = ivr(command, "--number", "+576015550999", "--fallback-url", BIN)
        assert result.exit_code == 1
        assert "+576015550999 is not a number of this Twilio account" in result.output
    assert api.requests_to("POST", ".json") == []


@pytest.mark.parametrize("base", ["", "http://ruta.example.org", "ruta.example.org"])
def test_connect_refuses_a_public_base_url_twilio_should_not_call(api, ivr, base):
    result = ivr("connect", "--number", OUR_NUMBER, "--fallback-url", BIN,
                 PUBLIC_BASE_URL=base)
    assert result.exit_code == 1
    assert "PUBLIC_BASE_URL" in result.output
    assert api.sent == []


def test_connect_allows_plain_http_on_this_machine(api, ivr):
    result = ivr("connect", "--number", OUR_NUMBER, "--fallback-url", BIN,
                 PUBLIC_BASE_URL="http://127.0.0.1:5000/")
    assert result.exit_code == 0, result.output
    assert api.requests_to("POST", ".json")[0].form["VoiceUrl"] == "http://127.0.0.1:5000/voice"


def test_missing_credentials_exit_2_and_send_nothing(api, ivr):
    for env in ({"TWILIO_ACCOUNT_SID": None}, {"TWILIO_AUTH_TOKEN": None},
                {"TWILIO_AUTH_TOKEN": None, "TWILIO_API_KEY": "SK" + "1" * 32}):
        result = ivr("check", "--number", OUR_NUMBER, **env)
        assert result.exit_code == 2, (env, result.output)
        assert "Twilio credentials" in result.output
    assert api.sent == []


def test_credentials_twilio_refuses_are_one_clear_line(api, ivr):
    result = ivr("check", "--number", OUR_NUMBER, TWILIO_AUTH_TOKEN="not-the-token")
    assert result.exit_code == 1
    assert "Twilio refused the credentials (HTTP 401, error 20003)" in result.output
    assert "Traceback" not in result.output


def test_test_line_without_redis_says_so_in_one_line(api, ivr):
    result = ivr("test-line", "national", "--yes", REDIS_URL="redis://127.0.0.1:1")
    assert result.exit_code == 1
    assert "Redis (REDIS_URL) cannot be reached" in result.output
    assert api.sent == []


def test_an_api_key_works_in_place_of_the_auth_token():
    key, secret = "SK" + "1" * 32, "api-key-secret"
    server = TwilioApiServer(username=key, password=secret).start()
    try:
        server.add_number(OUR_NUMBER)
        env = {"TWILIO_ACCOUNT_SID": server.account_sid, "TWILIO_AUTH_TOKEN": None,
               "TWILIO_API_KEY": key, "TWILIO_API_SECRET": secret,
               "RUTA_TWILIO_API_URL": server.url, "PUBLIC_BASE_URL": BASE}
        result = CliRunner().invoke(main, ["twilio", "connect", "--number", OUR_NUMBER,
                                           "--fallback-url", BIN], env=env)
        assert result.exit_code == 0, result.output
        assert server.sent and all(s.authorized for s in server.sent)
        # The API key authenticates; the URL still names the account.
        assert server.sent[0].path.startswith(f"/2010-04-01/Accounts/{server.account_sid}/")
    finally:
        server.stop()


# --- test-line -----------------------------------------------------------------------------


def test_line(ivr, *args, **env):
    return ivr("test-line", *args, "--poll-every", "0.01", "--wait", "5", **env)


test_line.__test__ = False  # a helper, not a test


def test_test_line_without_yes_refuses_and_calls_nobody(api, ivr, redis_client):
    result = test_line(ivr, "national")
    assert result.exit_code == 1
    assert f"this rings a real hotline: national target 1 ({NATIONAL})" in result.output
    assert "--yes" in result.output
    assert api.sent == []
    assert Store(redis_client).line_tests() == {}


def test_test_line_calls_the_target_says_the_test_twice_and_records_answered(
        api, ivr, redis_client):
    result = test_line(ivr, "national", "--yes")
    assert result.exit_code == 0, result.output
    assert f"national target 1 ({NATIONAL}): answered (completed, 12 s)" in result.output

    (create,) = api.requests_to("POST", "Calls.json")
    assert create.form["To"] == NATIONAL
    assert create.form["From"] == CALLER_ID
    twiml = ET.fromstring(create.form["Twiml"])
    says = twiml.findall("./Say")
    assert [s.text for s in says] == [TEST_MESSAGE, TEST_MESSAGE]
    assert {(s.get("voice"), s.get("language")) for s in says} == {("Polly.Lupe-Neural", "es-US")}
    assert [child.tag for child in twiml] == ["Say", "Say", "Hangup"]
    (sid,) = api.calls
    assert len(api.requests_to("GET", f"/Calls/{sid}.json")) == 2  # ringing, then completed

    saved = Store(redis_client).line_tests()["national"]
    assert (saved["target"], saved["result"], saved["error"]) == (NATIONAL, "answered", "")
    assert saved["at"].endswith("-05:00")  # Bogotá time


@pytest.mark.parametrize("ends", ["busy", "no-answer", "failed"])
def test_test_line_says_how_an_unanswered_call_ended(api, ivr, redis_client, ends):
    api.call_ends = ends
    result = test_line(ivr, "national", "--yes")
    assert result.exit_code == 1
    assert f"national target 1 ({NATIONAL}): {ends}\n" in result.output
    assert Store(redis_client).line_tests()["national"]["result"] == ends


def test_a_call_with_no_final_status_in_time_is_unknown(api, ivr, redis_client):
    api.call_ends = "in-progress"  # still going when we stop waiting
    result = ivr("test-line", "national", "--yes", "--poll-every", "0.01", "--wait", "0.3")
    assert result.exit_code == 1
    assert "no final status after 0.3 s (last: in-progress); see call CA" in result.output
    assert Store(redis_client).line_tests()["national"]["result"] == "unknown"


def test_test_line_prints_twilios_error_code_and_records_it(api, ivr, redis_client):
    api.call_error = twilio_error(
        21211, f"The 'To' number {NATIONAL} is not a valid phone number.", 400)
    result = test_line(ivr, "national", "--yes")
    assert result.exit_code == 1
    assert "error 21211:" in result.output
    assert f"The 'To' number {NATIONAL} is not a valid phone number." in result.output
    assert api.requests_to("GET", ".json") == []  # no call to follow
    saved = Store(redis_client).line_tests()["national"]
    assert saved["result"] == "error" and saved["error"].startswith("21211: ")


def test_a_short_code_target_is_refused_before_any_request(api, ivr, redis_client):
    # test-line's own check on a target: Twilio cannot dial a short code.
    with pytest.raises(GoLiveError, match="'144' is not an E.164 number or a SIP URI"):
        check_target("144")
    assert check_target(NATIONAL) == NATIONAL
    # The directory can no longer hold one (checking and publishing refuse it), but a
    # version published while a short code was only a warning may still be live.
    redis_client.hset(config_version_key(1), mapping={
        "doc": json.dumps({"hotlines": {"labour": {"dial": ["120"]}}}), "author": "bob",
        "at": "2026-10-01T10:00:00-05:00", "note": "the Ministry's short code",
        "kind": "publish", "approved_by": ""})
    redis_client.set(CONFIG_VERSION, 1)
    result = test_line(ivr, "labour", "--yes")
    assert result.exit_code == 1
    assert "the live version does not check" in result.output
    assert "'120' cannot be dialled by Twilio" in result.output
    assert api.sent == []
    assert Store(redis_client).line_tests() == {}


def test_a_hotline_with_no_dial_target_is_refused_before_any_request(api, ivr, redis_client):
    result = test_line(ivr, "labour", "--yes")  # dial = [], as shipped: 120 is a short code
    assert result.exit_code == 1
    assert "labour has no dial target yet: callers are told to call 120 themselves" in (
        result.output)
    assert api.sent == []
    assert Store(redis_client).line_tests() == {}


def test_test_line_wants_our_caller_id_and_a_target_that_exists(api, ivr):
    result = test_line(ivr, "national", "--yes", RUTA_CALLER_ID="6015550199")
    assert result.exit_code == 1 and "RUTA_CALLER_ID" in result.output
    result = test_line(ivr, "national", "--target", "3", "--yes")
    assert result.exit_code == 2 and "--target 1 to 1" in result.output
    assert api.sent == []


# --- the supervisors see it ----------------------------------------------------------------


def test_the_dashboard_health_strip_shows_the_last_test_per_hotline(
        api, ivr, app_config, redis_client):
    assert test_line(ivr, "national", "--yes").exit_code == 0
    api.call_ends = "busy"
    assert test_line(ivr, "icbf", "--yes").exit_code == 1  # ICBF's toll-free number

    app = create_app(app_config)
    client = Staff(app, "ana", "supervisor", lang="es").client  # through the login form
    html = client.get("/reports").get_data(as_text=True)
    strip = html[html.index('class="health"'):html.index('class="headline"')]
    assert "última prueba: contestada, " in strip
    assert "última prueba: ocupada, " in strip
    national = strip[strip.index('data-hotline="national"'):]
    assert "sin transferencias" in national[:400]  # ana reads Spanish

    # The audit log names each test's line and result in its reader's language.
    admin = Staff(app, "tom", "admin", lang="en").client
    for reader, said in [(admin, f"ICBF child protection line {ICBF}: busy"),
                         (Staff(app, "eva", "admin", lang="es").client,
                          f"Línea del ICBF para niños, niñas y adolescentes, {ICBF}: ocupada")]:
        assert said in reader.get("/admin/audit").get_data(as_text=True)


def test_a_hotline_only_tested_gets_a_health_row_in_bogota_time():
    tests = {"bogota": {"target": "+573503085507", "result": "error",
                        "error": "13224: invalid number", "at": "2026-11-26T15:12:09+00:00"}}
    busy = {counter(Count.DIAL, "national", DialStatus.BUSY): 1}
    summary = summarize(["2026-11-26"], {"2026-11-26": busy}, 0, [], line_tests=tests)
    rows = {h.hotline: h for h in summary.health}
    assert rows["bogota"].attempts == 0 and not rows["bogota"].flagged
    assert str(rows["bogota"].last_test.result_text()) == "error 13224"  # English, untranslated
    # Shown in Bogotá time, in the reader's forms (Spanish outside a request).
    assert i18n.moment(rows["bogota"].last_test.at) == "26/11/2026, 10:12\u202fa.\u202fm."
    assert rows["national"].last_test is None
    assert summary.to_dict()["health"][0]["last_test"]["result"] == "error"

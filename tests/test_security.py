"""What protects the app as a whole: request size limits, oversized URLs and headers, the
security headers of staff pages, the session cookie's flags, and no debug mode in
production. The real app and a real Redis; one test runs the real gunicorn."""

from __future__ import annotations

import io
import re
import secrets
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import TOKEN, Twilio

from ivr import StartupError, create_app, security, services, store
from ivr.procfile import start_web, wait_for_web
from ivr.redis_server import free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GUNICORN_CONFIG = REPO / "config" / "gunicorn.conf.py"
LIMIT = 256 * 1024
PASSWORD = "correct horse battery"
PRODUCTION = "https://ruta.example.org"


def quick_hash(password: str) -> str:
    """Real scrypt at a low cost (read from the hash), so a login takes milliseconds."""
    from werkzeug.security import generate_password_hash

    return generate_password_hash(password, method="scrypt:1024:8:1")


def csrf_token(page: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def log_in(client, name="ana", password=PASSWORD, base="", headers=None):
    """GET the login form, POST it with its CSRF token; returns the POST's response."""
    page = client.get(base + "/login").get_data(as_text=True)
    return client.post(base + "/login", headers=headers or {}, data={
        "name": name, "password": password, "csrf_token": csrf_token(page)})


@pytest.fixture
def admin(app):
    services.of(app).staff.save_user("ana", "admin", quick_hash(PASSWORD))
    return app


@pytest.fixture
def production(redis_server, redis_client, tmp_path):
    app = create_app({
        "RUTA_ENV": "production", "TWILIO_AUTH_TOKEN": TOKEN, "SECRET_KEY": "a-secret",
        "CALLER_ID_KEY": "a-caller-key",
        "REDIS_URL": redis_server.url, "RUTA_SPOOL_DIR": str(tmp_path / "spool"),
        "PUBLIC_BASE_URL": PRODUCTION,
    })
    services.of(app).staff.save_user("ana", "admin", quick_hash(PASSWORD))
    return app


# --- 1. request size ---------------------------------------------------------------------------


def test_the_limit_is_64_kib_by_default(app):
    assert app.config["MAX_CONTENT_LENGTH"] == LIMIT


@pytest.mark.parametrize("path", ["/voice", "/voice/menu?l=es&s=1&n=welcome&a=0",
                                  "/voice/dial", "/voice/numbers", "/voice/status"])
def test_a_webhook_body_over_the_limit_is_refused_with_413(twilio, redis_client, path):
    resp = twilio.post(path, SpeechResult="a" * LIMIT)  # signed: the size alone refuses it
    assert resp.status_code == 413
    assert b"<Response" not in resp.data
    # No event was filed: Redis holds only what the app wrote at its start.
    assert set(redis_client.keys()) == {store.CALLER_KEYS, store.MIGRATIONS}
    # Just under the limit is a normal request.
    room = LIMIT - len("&SpeechResult=") - len(
        "&".join(f"{k}={v}" for k, v in twilio.params().items())) - 200
    assert twilio.post(path, SpeechResult="a" * room).status_code in (200, 204)


@pytest.mark.parametrize("path", ["/login", "/admin/prompts", "/admin/try", "/logout",
                                  "/reports"])
def test_a_staff_body_over_the_limit_is_refused_with_413(admin, path):
    client = admin.test_client()
    assert log_in(client).status_code == 302
    resp = client.post(path, data={"name": "x" * LIMIT})
    assert resp.status_code == 413
    # Refused before the CSRF check or the view: a small body gets their answers.
    assert client.post(path, data={"name": "x"}).status_code != 413


def test_the_examples_form_takes_one_languages_phrases_and_no_more(admin):
    """One option's example phrases in one language may pass the general limit (the
    danger phrases of one language are over 130 KB): that form has a limit of its own,
    and is refused with 413 above it, before the CSRF check."""
    client = admin.test_client()
    assert log_in(client).status_code == 302
    big = "x" * (LIMIT + 1000)
    assert client.post("/admin/examples", data={"name": big}).status_code == 400  # CSRF
    over = "x" * security.LARGER_BODIES["admin.examples"]
    assert client.post("/admin/examples", data={"name": over}).status_code == 413
    assert client.post("/admin/prompts", data={"name": big}).status_code == 413


def chunked_post(client, path: str, body: bytes):
    """A body without Content-Length (chunked), as a server that de-chunks hands it on."""
    return client.post(path, input_stream=io.BytesIO(body),
                       content_type="application/x-www-form-urlencoded",
                       headers={"Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


def test_a_body_without_a_length_over_the_limit_is_refused_with_413(admin, twilio):
    client = admin.test_client()
    assert chunked_post(client, "/login", b"name=" + b"x" * LIMIT).status_code == 413
    # Under the limit, the form is read as sent: a login goes through.
    page = client.get("/login").get_data(as_text=True)
    body = urlencode({"name": "ana", "password": PASSWORD, "csrf_token": csrf_token(page),
                      "padding": "x" * (LIMIT - 500)}).encode()
    assert chunked_post(client, "/login", body).status_code == 302


@pytest.mark.parametrize("path", ["/voice", "/voice/menu", "/voice/status", "/login",
                                  "/reports", "/admin", "/api/reports/summary", "/nowhere"])
def test_oversized_query_strings_and_headers_are_never_a_server_error(client, twilio, path):
    huge = "x" * 200_000
    for resp in (
        client.get(f"{path}?q={huge}&l={huge}&from={huge}"),
        client.post(f"{path}?l={huge}&n={huge}&t0={'9' * 100_000}", data=twilio.params(),
                    headers={"X-Twilio-Signature": huge}),
        client.get(path, headers={"X-Twilio-Signature": huge, "Cookie": f"session={huge}",
                                  "Authorization": f"Bearer {huge}", "Referer": huge,
                                  "X-Forwarded-For": huge, "Accept-Language": huge}),
        client.get(path, headers={f"X-Junk-{i}": "y" * 1000 for i in range(500)}),
    ):
        assert resp.status_code < 500, (path, resp.status_code)


def test_a_signed_request_with_a_huge_query_string_gets_twiml(twilio):
    huge = "%C3%A9" * 20_000
    twiml = twilio.twiml(f"/voice/menu?l=es&s=1&n=welcome&a=0&x={huge}&t0={'9' * 5000}",
                         Digits="1")
    assert twiml.find("./Dial/Number").text == "+5718000918080"  # ICBF, the caller's choice


@pytest.mark.slow
def test_gunicorn_refuses_oversized_lines_and_headers_without_a_server_error(
        redis_server, tmp_path):
    """The Procfile's server in front: what never reaches the app is still a 4xx."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "RUTA_ENV": "development", "TWILIO_AUTH_TOKEN": TOKEN,
           "SECRET_KEY": secrets.token_hex(8), "REDIS_URL": redis_server.url,
           "RUTA_SPOOL_DIR": str(tmp_path / "spool"), "WEB_CONCURRENCY": "1",
           "PORT": str(port)}
    server = start_web(env, tmp_path / "web.log")
    try:
        wait_for_web(f"http://127.0.0.1:{port}", server, tmp_path / "web.log")

        def status(request: bytes) -> int:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                        s.sendall(request)
                        reply = s.recv(200)
                        return int(reply.split()[1])
                except (ConnectionRefusedError, IndexError):
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.1)

        def request(target: str, headers: str = "", body: bytes = b"") -> bytes:
            return (f"POST {target} HTTP/1.1\r\nHost: ruta.test\r\n{headers}"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body

        assert status(request("/voice")) == 403  # up, and unsigned is refused
        assert 400 <= status(request("/voice/menu?l=" + "x" * 20_000)) < 500
        assert 400 <= status(request("/login", "X-Junk: " + "y" * 20_000 + "\r\n")) < 500
        many = "".join(f"X-Junk-{i}: y\r\n" for i in range(200))
        assert 400 <= status(request("/voice", many)) < 500
        assert status(request("/voice", body=b"x=" + b"y" * LIMIT)) == 413
        chunk = b"x=" + b"y" * LIMIT
        chunked = (b"POST /login HTTP/1.1\r\nHost: ruta.test\r\nTransfer-Encoding: chunked\r\n"
                   b"Content-Type: application/x-www-form-urlencoded\r\nConnection: close"
                   b"\r\n\r\n" + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
        assert status(chunked) == 413
    finally:
        server.terminate()
        server.wait(timeout=15)


# --- 2. the session cookie ------------------------------------------------------------------------


def set_cookie(resp, name: str = "session=") -> str:
    """The one Set-Cookie header of `resp` whose text starts with `name`."""
    cookies = [v for k, v in resp.headers.items()
               if k == "Set-Cookie" and v.startswith(name)]
    assert len(cookies) == 1, cookies
    return cookies[0]


def test_the_login_cookie_is_secure_httponly_and_samesite_in_production(production):
    client = production.test_client()
    # A browser sends a same-origin Referer with a form post; over https Flask-WTF's CSRF
    # check requires one.
    resp = log_in(client, base=PRODUCTION, headers={"Referer": PRODUCTION + "/login"})
    assert resp.status_code == 302
    cookie = set_cookie(resp)
    assert cookie.startswith("session=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "expires", "path"} <= attributes
    assert "SameSite=Lax" in cookie
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", cookie).group(1))
    assert expires - datetime.now(UTC) < timedelta(hours=8, minutes=1)  # not Flask's 31 days
    # The device cookie (failed logins, below): as guarded, and sent to the login form only.
    device = set_cookie(resp, "ruta_device_")
    assert {"Secure", "HttpOnly", "SameSite=Strict", "Path=/login"} <= {
        part.strip() for part in device.split(";")}


def test_in_development_the_cookie_is_not_secure_but_still_httponly(admin):
    resp = log_in(admin.test_client())
    assert resp.status_code == 302
    cookie = set_cookie(resp)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie


# --- 3. security headers on staff pages -----------------------------------------------------------


STAFF_PAGES = ["/login", "/reports", "/reports/calls.csv", "/api/reports/summary", "/admin",
               "/admin/prompts", "/admin/hotlines", "/admin/try", "/admin/history",
               "/admin/audit", "/admin/audit.csv", "/nowhere"]


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_staff_pages_carry_the_security_headers(admin, path):
    client = admin.test_client()
    log_in(client)
    resp = client.get(path)
    csp = resp.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "form-action 'self'",
                      "base-uri 'none'", "object-src 'none'"):
        assert directive in csp
    assert "unsafe" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in resp.headers  # development: plain http


def test_a_logged_out_visitor_gets_them_too_and_the_stylesheet_may_be_cached(client):
    resp = client.get("/reports")
    assert resp.status_code == 302
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Content-Security-Policy" in resp.headers
    css = client.get("/static/ruta.css")
    assert css.status_code == 200
    assert css.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" not in css.headers.get("Cache-Control", "")


def test_production_adds_hsts(production):
    resp = production.test_client().get(PRODUCTION + "/login")
    assert resp.headers["Strict-Transport-Security"] == security.HSTS
    assert "includeSubDomains" not in security.HSTS
    assert int(security.HSTS.removeprefix("max-age=")) >= 180 * 86400


def test_webhooks_get_no_browser_headers(twilio):
    resp = twilio.post("/voice")
    assert resp.status_code == 200
    assert "Content-Security-Policy" not in resp.headers
    assert "Set-Cookie" not in resp.headers


# A <script> only as an empty element that loads one of our files from /static.
OUR_SCRIPT_ONLY = (r"<script(?! src=\"\{\{ url_for\('static', filename='\w+\.js'\) \}\}\""
                   r" defer></script>)")


def test_templates_need_nothing_the_policy_forbids():
    """No inline script, inline style, inline event handler or outside resource in any
    template or in the charts (a script is a file of our own, from /static): the browser
    tests load them under the policy with no violation."""
    sources = [*REPO.glob("ivr/templates/**/*.html"), REPO / "ivr" / "charts.py"]
    assert len(sources) > 5
    for source in sources:
        text = source.read_text(encoding="utf-8")
        for pattern in (OUR_SCRIPT_ONLY, r"<style", r"\sstyle=", r"\son[a-z]+=", r"javascript:",
                        r"(src|href|action|data)=\S*https?:", r"url\("):
            assert not re.search(pattern, text), f"{pattern} in {source.name}"


def test_over_https_a_form_post_without_a_referer_is_refused(production):
    """Why the Referrer-Policy is same-origin, not no-referrer."""
    resp = log_in(production.test_client(), base=PRODUCTION)
    assert resp.status_code == 400


# --- 4. no debug mode ----------------------------------------------------------------------------


def test_production_is_never_in_debug_mode(production):
    assert production.debug is False


@pytest.mark.parametrize("how", ["env", "config"])
def test_production_refuses_to_start_in_debug_mode(redis_server, monkeypatch, how):
    config = {"RUTA_ENV": "production", "TWILIO_AUTH_TOKEN": TOKEN, "SECRET_KEY": "a-secret",
              "CALLER_ID_KEY": "a-caller-key", "REDIS_URL": redis_server.url}
    if how == "env":
        monkeypatch.setenv("FLASK_DEBUG", "1")
    else:
        config["DEBUG"] = True
    with pytest.raises(StartupError, match="debug"):
        create_app(config)


@pytest.mark.parametrize("env", ["prod", "Production", "staging", ""])
def test_an_unknown_ruta_env_does_not_skip_the_production_checks(redis_server, env):
    """A typo must not start a public line without its auth token and in debug mode."""
    with pytest.raises(StartupError, match="RUTA_ENV"):
        create_app({"RUTA_ENV": env, "TWILIO_AUTH_TOKEN": "", "SECRET_KEY": "",
                    "REDIS_URL": redis_server.url, "DEBUG": True})


def test_an_error_in_production_shows_no_traceback(production):
    production.config["PROPAGATE_EXCEPTIONS"] = False

    @production.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    resp = production.test_client().get(PRODUCTION + "/boom")
    assert resp.status_code == 500
    assert b"secret detail" not in resp.data and b"Traceback" not in resp.data


def test_nothing_runs_flasks_debugger():
    """`ivr dev` and the Procfile run gunicorn, never `app.run` or Werkzeug's debugger."""
    sources = [*REPO.glob("ivr/**/*.py"), *REPO.glob("workers/**/*.py"),
               *REPO.glob("bench/**/*"), *REPO.glob("scripts/*"), REPO / "Procfile"]
    for source in sources:
        if source.is_file():
            text = source.read_text(encoding="utf-8", errors="replace")
            for pattern in (r"\bapp\.run\(", r"run_simple", r"DebuggedApplication",
                            r"use_debugger", r"debug\s*=\s*True", r"flask\s+run",
                            r"--debug\b", r"--reload\b"):
                assert not re.search(pattern, text), f"{pattern} in {source}"
    cli = (REPO / "ivr" / "cli.py").read_text(encoding="utf-8")
    assert "procfile.commands(" in cli and 'RUTA_ENV="development"' in cli  # the Procfile's
    assert re.search(r"^web: gunicorn ", (REPO / "Procfile").read_text(), re.M)  # lines


def test_an_unsigned_webhook_is_still_refused_in_production(production):
    twilio = Twilio(production.test_client(), base_url=PRODUCTION)
    assert twilio.post("/voice", signature="forged").status_code == 403


# --- 5. failed logins cannot keep an account's owner out (OWASP's device cookies) ---------------


@pytest.fixture
def behind_proxy(app_config, redis_client):
    """An app behind one proxy (the client's address from X-Forwarded-For), two accounts."""
    app = create_app({**app_config, "RUTA_TRUSTED_PROXIES": 1})
    for name in ("ana", "marta"):
        services.of(app).staff.save_user(name, "admin", quick_hash(PASSWORD))
    return app


def attempt(client, name: str, password: str, address: str) -> int:
    """A login from `address`: 302 in, 401 wrong, 429 refused before the password is read."""
    return log_in(client, name, password, headers={"X-Forwarded-For": address}).status_code


def browser_that_logged_in(app, name: str, address: str):
    """A browser that has logged in as `name` before (it holds the device cookie), now
    logged out."""
    client = app.test_client()
    assert attempt(client, name, PASSWORD, address) == 302
    client.delete_cookie("session")
    return client


def test_a_spray_at_a_name_from_anywhere_does_not_keep_its_owner_out(behind_proxy):
    anas = browser_that_logged_in(behind_proxy, "ana", "198.51.100.7")
    attacker = behind_proxy.test_client()
    sprayed = [attempt(attacker, "ana", f"guess {i}", f"192.0.2.{i}") for i in range(1, 41)]
    assert sprayed[:5] == [401] * 5 and set(sprayed[5:]) == {429}  # the name is limited...
    assert attempt(attacker, "ana", PASSWORD, "192.0.2.99") == 429  # ...for everyone else,
    assert attempt(anas, "ana", PASSWORD, "198.51.100.7") == 302  # not for ana's browser


def test_failures_from_a_device_cookie_count_against_that_cookie_alone(behind_proxy):
    anas = browser_that_logged_in(behind_proxy, "ana", "198.51.100.7")
    typos = [attempt(anas, "ana", f"typo {i}", "198.51.100.7") for i in range(6)]
    assert typos == [401] * 5 + [429]
    assert attempt(anas, "ana", PASSWORD, "198.51.100.7") == 429  # that browser waits
    # Neither the name nor the address was counted.
    assert attempt(behind_proxy.test_client(), "ana", PASSWORD, "203.0.113.5") == 302
    assert attempt(behind_proxy.test_client(), "marta", PASSWORD, "198.51.100.7") == 302


def test_a_device_cookie_is_trusted_for_its_own_name_and_signature_only(behind_proxy):
    martas = browser_that_logged_in(behind_proxy, "marta", "198.51.100.8")
    anas = behind_proxy.test_client()
    login = log_in(anas, "ana", headers={"X-Forwarded-For": "198.51.100.7"})
    name, value = next(v.split(";")[0].split("=", 1) for k, v in login.headers.items()
                       if k == "Set-Cookie" and v.startswith("ruta_device_"))
    attacker = behind_proxy.test_client()
    for i in range(5):
        assert attempt(attacker, "ana", f"guess {i}", f"192.0.2.{i}") == 401
    assert attempt(martas, "ana", PASSWORD, "198.51.100.8") == 429  # marta's: not for ana
    tampered = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    attacker.set_cookie(name, tampered, path="/login")
    assert attempt(attacker, "ana", PASSWORD, "192.0.2.50") == 429  # a forged one: no
    attacker.set_cookie(name, value, path="/login")  # ana's own, stolen: counted on its own
    assert attempt(attacker, "ana", "wrong again", "192.0.2.50") == 401


def test_addresses_of_one_ipv6_block_share_one_allowance(behind_proxy):
    """An IPv6 customer holds a /64: 2^64 addresses, never 2^64 allowances."""
    attacker = behind_proxy.test_client()
    sprayed = [attempt(attacker, f"name {i}", "guess", f"2001:db8:1:2::{i + 1:x}")
               for i in range(6)]
    assert sprayed == [401] * 5 + [429]
    assert attempt(attacker, "marta", PASSWORD, "2001:db8:1:2:ffff::9") == 429
    assert attempt(attacker, "marta", PASSWORD, "2001:db8:1:3::1") == 302  # next block


@pytest.mark.parametrize(("setting", "warned"), [("", False), ("0", True)])
def test_admin_pages_say_when_the_two_person_rule_is_turned_off(
        redis_server, redis_client, tmp_path, setting, warned):
    """Production's default is two administrators a publish: turned off, every admin page
    says so (in the reader's language)."""
    app = create_app({
        "RUTA_ENV": "production", "TWILIO_AUTH_TOKEN": TOKEN, "SECRET_KEY": "a-secret",
        "CALLER_ID_KEY": "a-caller-key", "REDIS_URL": redis_server.url,
        "RUTA_SPOOL_DIR": str(tmp_path / "spool"), "PUBLIC_BASE_URL": PRODUCTION,
        "RUTA_TWO_PERSON_RULE": setting,
        # ana has no two-step sign-in: optional, so the admin pages open to her
        # (required, they would not: tests/test_two_factor.py).
        "RUTA_ADMIN_TOTP": "optional"})
    services.of(app).staff.save_user("ana", "admin", quick_hash(PASSWORD), lang="es")
    client = app.test_client()
    resp = log_in(client, base=PRODUCTION, headers={"Referer": PRODUCTION + "/login"})
    assert resp.status_code == 302
    for path in ("/admin", "/admin/prompts", "/admin/hotlines", "/admin/audit"):
        answer = client.get(PRODUCTION + path)
        assert answer.status_code == 200, path
        page = answer.get_data(as_text=True)
        assert ("La regla de dos personas está desactivada" in page) is warned, path

"""Two-step sign-in (ivr.two_factor): set up on the account page, asked for after the
password, required of administrators in production. Through the real pages, with real
CSRF tokens and a real Redis; each code is computed by pyotp from the secret the page
shows, as a person's authenticator app computes it.
"""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from click.testing import CliRunner
from test_admin import PASSWORD, QUICK_HASH, csrf_of, flashes, parse

from ivr import StartupError, create_app, services, store
from ivr.cli import main as ivr_main

PRODUCTION = "https://ruta.example.org"


class Browser:
    """Someone at their own browser (a test client, its cookies) on `base`."""

    def __init__(self, app, base: str = ""):
        self.client, self.base = app.test_client(), base
        # Over https Flask-WTF wants a same-site Referer on every form post.
        self.headers = {"Referer": base + "/login"} if base else {}

    def get(self, path: str, **kw):
        return self.client.get(self.base + path, headers=self.headers, **kw)

    def post(self, path: str, data: dict, form_at: str | None = None, **kw):
        """POST `data` with the CSRF token of the page at `form_at` (else `path`)."""
        token = csrf_of(self.get(form_at or path).text)
        return self.client.post(self.base + path, headers=self.headers,
                                data={"csrf_token": token, **data}, **kw)

    def password(self, name: str = "ana", password: str = PASSWORD):
        return self.post("/login", {"name": name, "password": password})

    def code(self, code: str):
        return self.post("/login/code", {"code": code})

    def opens(self, path: str) -> bool:
        return self.get(path).status_code == 200


def add(app, name: str = "ana", role: str = "admin") -> None:
    services.of(app).staff.save_user(name, role, QUICK_HASH, "en")


def logged_in(app, name: str = "ana", base: str = "") -> Browser:
    """A browser logged in as `name`, who has no two-step sign-in yet."""
    browser = Browser(app, base)
    resp = browser.password(name)
    assert resp.status_code == 302 and "/login" not in resp.headers["Location"], resp.text
    return browser


def code_at(secret: str, seconds_from_now: float = 0) -> str:
    """What the app shows now, or in 30 s (a later time step)."""
    return pyotp.TOTP(secret).at(time.time() + seconds_from_now)


def set_up(browser: Browser) -> tuple[str, list[str]]:
    """Set up two-step sign-in as a person does: read the secret off the page, type
    the app's code; returns (the secret, the recovery codes shown)."""
    page = browser.get("/account/two-factor")
    assert page.status_code == 200
    secret = secret_on(page.text)
    done = browser.post("/account/two-factor", {"code": code_at(secret), "password": PASSWORD},
                        form_at="/account/two-factor")
    assert done.status_code == 200, done.text
    return secret, recovery_codes_on(done.text)


def secret_on(html: str) -> str:
    """The key the set-up page shows for typing, without its spaces."""
    return "".join(parse(html).all("code")[0].text().split())


def recovery_codes_on(html: str) -> list[str]:
    return [li.text().strip() for ul in parse(html).all("ul", cls="recovery-codes")
            for li in ul.all("li")]


def security_log(app, log: str = store.SECURITY_LOG) -> list[tuple[str, str]]:
    r = services.of(app).store.r
    return [(e["who"], e["action"]) for _, e in r.xrange(log)]


def failed_logins(app) -> list[tuple[str, str]]:
    """The failed logins' stream: what anyone can cause stays out of the security log."""
    return security_log(app, store.FAILED_LOGINS)


@pytest.fixture
def ana(app):
    add(app)
    return logged_in(app)


# --- setting it up ------------------------------------------------------------------------


def test_set_up_with_the_code_of_the_secret_shown_then_recovery_codes_shown_once(app, ana):
    page = ana.get("/account/two-factor").text
    svg = parse(page).all("svg", cls="qr")
    assert len(svg) == 1 and svg[0].all("path")  # the QR code, drawn on the server
    secret = secret_on(page)
    assert len(secret) == 32 and secret_on(ana.get("/account/two-factor").text) == secret
    # A code that is not the app's: still off.
    wrong = ana.post("/account/two-factor", {"code": "000000", "password": PASSWORD},
                     form_at="/account/two-factor")
    assert wrong.status_code == 400 and "not the code your app shows" in wrong.text
    assert "Off: you sign in with your password alone." in ana.get("/account").text
    done = ana.post("/account/two-factor", {"code": code_at(secret), "password": PASSWORD},
                    form_at="/account/two-factor")
    codes = recovery_codes_on(done.text)
    assert len(codes) == len(set(codes)) == 10
    account = ana.get("/account").text
    assert "On: you sign in with your password and a code" in account
    assert "10 recovery codes left." in account
    # Shown once: the set-up page now leads back to the account page, and Redis keeps
    # no code in clear.
    again = ana.get("/account/two-factor")
    assert again.status_code == 302 and again.headers["Location"] == "/account"
    kept = " ".join(f"{k} {v}" for k, v in
                    services.of(app).store.r.hgetall(store.user_key("ana")).items())
    assert not any(code.replace("-", "") in kept.replace("-", "") for code in codes)
    assert ("ana", "two-step sign-in turned on") in security_log(app)


def test_setting_it_up_takes_the_password_so_a_session_left_open_cannot(app, ana):
    """Someone at a computer where ana's session was left open, with their own phone:
    without her password they cannot tie her account to it (and lock her out)."""
    secret = secret_on(ana.get("/account/two-factor").text)
    tries = [ana.post("/account/two-factor", {"code": code_at(secret), "password": guess},
                      form_at="/account/two-factor") for guess in ("", "a guess")]
    assert not any(recovery_codes_on(t.text) for t in tries)
    assert "Enter your password." in tries[0].text
    assert "Wrong password: two-step sign-in is still off." in tries[1].text
    assert "Off: you sign in with your password alone." in ana.get("/account").text
    assert Browser(app).password().headers["Location"] == "/reports"  # no code asked
    assert ("ana", "failed login") in failed_logins(app)
    # Nor is the session a way to guess her password past the slow-down.
    guesses = [ana.post("/account/two-factor", {"code": code_at(secret),
                                                "password": f"guess {i}"},
                        form_at="/account/two-factor") for i in range(5)]
    assert "Too many failed logins" in guesses[-1].text
    assert all("Wrong password" in g.text for g in guesses[:4])


def test_setting_it_up_ends_the_other_sessions_opened_by_password_alone(app, ana):
    elsewhere = logged_in(app)  # ana's password, typed somewhere else
    set_up(ana)
    assert not elsewhere.opens("/reports")
    assert ana.opens("/reports")


# --- signing in -----------------------------------------------------------------------------


def test_login_asks_for_the_code_after_the_password_and_only_then_starts_a_session(app, ana):
    secret, _codes = set_up(ana)
    browser = Browser(app)
    resp = browser.password()
    assert resp.status_code == 302 and resp.headers["Location"] == "/login/code"
    assert browser.get("/reports").status_code == 302  # no session yet
    assert browser.get("/login/code").status_code == 200
    assert browser.code("123456").status_code == 401  # wrong
    assert not browser.opens("/reports")
    assert browser.code(code_at(secret, 30)).status_code == 302
    assert browser.opens("/reports") and browser.opens("/admin")
    assert ("ana", "failed sign-in code") in failed_logins(app)


def test_a_code_already_used_is_refused_within_its_window(app, ana):
    started = time.time()
    secret, _codes = set_up(ana)
    # The code set-up used, or (if a 30 s step ended meanwhile) the one before it: refused
    # either way. Taken now, it could be the next step's, which is rightly accepted.
    enrolment_code = code_at(secret, started - time.time())
    first = Browser(app)
    first.password()
    assert first.code(enrolment_code).status_code == 401  # used to set it up
    later = code_at(secret, 30)
    assert first.code(later).status_code == 302
    second = Browser(app)  # someone who saw that code typed
    second.password()
    assert second.code(later).status_code == 401
    assert second.code(code_at(secret, -30)).status_code == 401  # older than the last used
    assert not second.opens("/reports")


def test_a_recovery_code_signs_in_once(app, ana):
    _secret, codes = set_up(ana)
    browser = Browser(app)
    browser.password()
    assert browser.code(codes[0].upper().replace("-", " ")).status_code == 302  # as typed
    assert browser.opens("/reports")
    again = Browser(app)
    again.password()
    assert again.code(codes[0]).status_code == 401
    assert again.code(codes[1]).status_code == 302
    assert "8 recovery codes left." in again.get("/account").text
    assert ("ana", "recovery code used") in security_log(app)


def test_wrong_codes_are_slowed_down_like_wrong_passwords(app, ana):
    secret, _codes = set_up(ana)
    browser = Browser(app)
    browser.password()
    tries = [browser.code(f"{i:06d}").status_code for i in range(6)]
    assert tries == [401] * 5 + [429]
    assert browser.code(code_at(secret, 30)).status_code == 429  # even the right one
    assert failed_logins(app).count(("ana", "failed sign-in code")) == 5
    assert ("ana", "failed sign-in code") not in security_log(app)  # kept apart


ACCOUNT_CHANGED = ("Log in again: your account changed, or you signed in elsewhere, since "
                   "you typed your password.")


def sent_back_to_login(browser: Browser) -> bool:
    """The code step refuses this browser: back to the login page, saying why."""
    english = {**browser.headers, "Accept-Language": "en"}
    resp = browser.client.get(browser.base + "/login/code", headers=english)
    if resp.status_code != 302 or resp.headers["Location"] != "/login":
        return False
    said = browser.client.get(browser.base + "/login", headers=english)
    return flashes(said.text, "error") == [ACCOUNT_CHANGED]


def holding(app, cookie: str) -> Browser:
    """Another browser, holding a copy of a session cookie."""
    browser = Browser(app)
    browser.client.set_cookie("session", cookie)
    return browser


@pytest.mark.parametrize("change", [
    ["users", "password", "ana", "--password-stdin"], ["users", "totp-reset", "ana"],
    ["users", "role", "ana", "--role", "supervisor"]])
def test_a_password_step_waiting_for_its_code_is_void_once_the_account_changes(
        app, ana, redis_server, change):
    secret, _codes = set_up(ana)
    thief = Browser(app)  # has ana's password; waits for a code
    assert thief.password().headers["Location"] == "/login/code"
    runner = CliRunner(env={"REDIS_URL": redis_server.url, "USER": "ops-laura"})
    assert runner.invoke(ivr_main, change, input="a brand new password\n").exit_code == 0
    assert sent_back_to_login(thief)
    assert not thief.opens("/reports")


def test_a_copy_of_the_password_step_is_void_once_its_sign_in_is_done(app, ana):
    secret, _codes = set_up(ana)
    browser = Browser(app)
    browser.password()
    copy = browser.client.get_cookie("session").value  # taken before the code is typed
    assert browser.code(code_at(secret, 30)).status_code == 302
    browser.post("/logout", {}, form_at="/reports")
    assert sent_back_to_login(holding(app, copy))  # no later code may finish it


def test_the_code_step_needs_the_password_first(app, ana):
    set_up(ana)
    browser = Browser(app)
    resp = browser.get("/login/code")
    assert resp.status_code == 302 and resp.headers["Location"] == "/login"
    wrong_password = browser.password(password="not the password")
    assert wrong_password.status_code == 401
    assert browser.get("/login/code").status_code == 302


def test_an_account_without_it_still_signs_in_with_its_password(app):
    add(app, "marta", "supervisor")
    marta = logged_in(app, "marta")
    assert marta.opens("/reports")


# --- turning it off, and the operator's reset --------------------------------------------


def test_turning_it_off_needs_a_code_and_ends_the_other_sessions(app, ana):
    secret, _codes = set_up(ana)
    elsewhere = Browser(app)
    elsewhere.password()
    assert elsewhere.code(code_at(secret, 30)).status_code == 302
    refused = ana.post("/account/two-factor/off", {"code": "000000"}, form_at="/account",
                       follow_redirects=True)
    assert flashes(refused.text, "error") == [
        "Wrong code, or one already used: two-step sign-in is still on."]
    assert elsewhere.opens("/reports")
    off = ana.post("/account/two-factor/off", {"code": code_at(secret, -30)},
                   form_at="/account", follow_redirects=True)
    # -30 s: older than the code `elsewhere` used, so refused too; a recovery code works.
    assert "still on" in off.text
    off = ana.post("/account/two-factor/off", {"code": _codes[0]}, form_at="/account",
                   follow_redirects=True)
    assert flashes(off.text) == ["Two-step sign-in is off: you sign in with your password "
                                 "alone."]
    assert ana.opens("/reports") and not elsewhere.opens("/reports")
    assert logged_in(app).opens("/reports")  # the password alone again
    assert ("ana", "two-step sign-in turned off") in security_log(app)


def test_ivr_users_totp_reset_turns_it_off_and_ends_every_session(app, ana, redis_server):
    set_up(ana)
    runner = CliRunner(env={"REDIS_URL": redis_server.url, "USER": "ops-laura"})
    listed = runner.invoke(ivr_main, ["users", "list"]).output
    assert re.search(r"^ana .*two-step$", listed, re.M)
    result = runner.invoke(ivr_main, ["users", "totp-reset", "ana"])
    assert result.exit_code == 0, result.output
    # Whoever sets it up first owns the account: the operator is told to change the password.
    assert "ivr users password ana" in result.output
    assert not ana.opens("/reports")
    assert logged_in(app).opens("/account")  # the password alone, to set it up again
    assert ("cli:ops-laura", "two-step sign-in reset") in security_log(app)
    unknown = runner.invoke(ivr_main, ["users", "totp-reset", "nobody"])
    assert unknown.exit_code != 0 and "no user named nobody" in unknown.output


# --- RUTA_ADMIN_TOTP ----------------------------------------------------------------------


@pytest.fixture
def production(redis_server, redis_client, tmp_path):
    """make(**settings): the app as production runs it, with ana (admin) and marta
    (supervisor), neither with two-step sign-in."""
    def make(**settings):
        app = create_app({
            "RUTA_ENV": "production", "TWILIO_AUTH_TOKEN": "a-token", "SECRET_KEY": "a-secret",
            "CALLER_ID_KEY": "a-caller-key", "REDIS_URL": redis_server.url,
            "RUTA_SPOOL_DIR": str(tmp_path / "spool"), "PUBLIC_BASE_URL": PRODUCTION,
            **settings})
        add(app)
        add(app, "marta", "supervisor")
        return app

    return make


ADMIN_PAGES = ["/admin", "/admin/prompts", "/admin/hotlines", "/admin/audit",
               "/admin/audit.csv", "/admin/sessions", "/admin/try"]


def test_in_production_an_admin_without_it_is_sent_to_set_it_up(production):
    app = production()
    ana = logged_in(app, base=PRODUCTION)
    page = ana.get("/admin", follow_redirects=True).text
    assert flashes(page, "error") == [
        "Administrators sign in with a code from an app on their phone: set up two-step "
        "sign-in to open the administration pages."]
    assert "Administrators need it to open the administration pages." in page
    assert parse(page).all("svg", cls="qr")  # the set-up page: they may set it up
    for path in ADMIN_PAGES:
        resp = ana.get(path)
        assert resp.status_code == 302, path
        assert resp.headers["Location"] == "/account/two-factor", path
    refused = ana.post("/admin/publish", {"note": "x"}, form_at="/reports")
    assert refused.status_code == 302
    assert ana.opens("/reports")  # the reports stay open to them
    assert logged_in(app, "marta", base=PRODUCTION).opens("/reports")  # not required
    set_up(ana)
    assert all(ana.opens(path) for path in ADMIN_PAGES)


def test_when_optional_an_admin_without_it_opens_the_admin_pages(production):
    ana = logged_in(production(RUTA_ADMIN_TOTP="optional"), base=PRODUCTION)
    assert all(ana.opens(path) for path in ADMIN_PAGES)


def test_development_makes_it_optional_unless_required(app_config, redis_client):
    add(dev := create_app(app_config))
    assert logged_in(dev).opens("/admin")
    add(strict := create_app({**app_config, "RUTA_ADMIN_TOTP": "required"}))
    assert logged_in(strict).get("/admin").status_code == 302


def test_a_mistyped_setting_refuses_to_start(app_config):
    with pytest.raises(StartupError, match="RUTA_ADMIN_TOTP"):
        create_app({**app_config, "RUTA_ADMIN_TOTP": "requierd"})

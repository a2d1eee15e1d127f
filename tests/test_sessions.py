"""Staff sessions kept in Redis (ivr.sessions) and the security log, through the real
login form, the real app and a real Redis; the `ivr users` commands through click.

Each of the security review's findings about sessions and the audit log is a test here:
an old cookie opened the staff pages after logout, a password change or a removal and
re-adding; the cookie's lifetime slid with every request; anyone could write the text
they typed at the login page into the audit log, and push real entries out of it.
"""

from __future__ import annotations

import csv
import io
import time

import pytest
from click.testing import CliRunner
from test_admin import PASSWORD, QUICK_HASH, Staff, add_user, csrf_of, parse
from test_security import quick_hash

from ivr import create_app, services, store
from ivr.cli import main as ivr_main
from ivr.redis_server import free_port
from ivr.sessions import (
    FAILED_LOGINS_KEEP,
    SecurityEvent,
    credentials_of,
    log_security_event,
    session_hash,
)

STAFF_PAGES = ("/reports", "/reports/calls.csv", "/admin")
NEW_PASSWORD = "a brand new password"


def cookie_of(staff: Staff) -> str:
    return staff.client.get_cookie("session").value


def browser_holding(app, cookie: str):
    """Another browser, holding a copy of a session cookie (a stolen one, say)."""
    client = app.test_client()
    client.set_cookie("session", cookie)
    return client


def opens(client) -> list[int]:
    """What the staff pages answer: 200 each while the session is open."""
    return [client.get(path).status_code for path in STAFF_PAGES]


def logged_out(client) -> bool:
    """Every staff page sends this browser to the login page."""
    answers = [client.get(path) for path in STAFF_PAGES]
    return all(a.status_code == 302 and a.headers["Location"].startswith("/login")
               for a in answers)


def cli(redis_server, *args, input=None):
    runner = CliRunner(env={"REDIS_URL": redis_server.url, "USER": "ops-laura"})
    return runner.invoke(ivr_main, list(args), input=input)


def backdate(app, name: str, **seconds_ago: float) -> None:
    """Make `name`'s sessions look older: created= and seen= seconds ago."""
    r = services.of(app).store.r
    for session in services.of(app).sessions.of_user(name):
        r.hset(store.session_key(session.handle),
               mapping={field: repr(time.time() - ago) for field, ago in seconds_ago.items()})


def security_log(r, log: str = store.SECURITY_LOG) -> list[tuple[str, str, str]]:
    return [(e["who"], e["action"], e["detail"]) for _, e in r.xrange(log)]


def failed_logins(r) -> list[tuple[str, str, str]]:
    return security_log(r, store.FAILED_LOGINS)


def rows_of(page, table: str) -> list[list[str]]:
    """A table's cells on the audit page, row by row (newest first)."""
    return [[td.text().strip() for td in tr.all("td")]
            for tr in page.one("table", cls=table).all("tr") if tr.all("td")]


@pytest.fixture
def ana(app):
    return Staff(app, "ana")


# --- 1. an ended session opens nothing ------------------------------------------------------


def test_logout_ends_the_session_so_a_copy_of_the_cookie_opens_nothing(app, ana):
    stolen = browser_holding(app, cookie_of(ana))
    assert opens(stolen) == [200, 200, 200]
    ana.post("/logout")
    assert logged_out(stolen)
    assert logged_out(ana.client)
    assert services.of(app).sessions.of_user("ana") == []


def test_a_password_change_ends_every_session_at_once(app, ana, redis_server):
    elsewhere = Staff(app, "ana", add=False)  # her second browser
    stolen = browser_holding(app, cookie_of(ana))
    result = cli(redis_server, "users", "password", "ana", "--password-stdin",
                 input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert all(logged_out(c) for c in (ana.client, elsewhere.client, stolen))
    # The new password opens a new session; the old one no longer does.
    client = app.test_client()
    for password, status in ((PASSWORD, 401), (NEW_PASSWORD, 302)):
        token = csrf_of(client.get("/login").text)
        assert client.post("/login", data={"name": "ana", "password": password,
                                           "csrf_token": token}).status_code == status
    assert opens(client) == [200, 200, 200]
    assert ("cli:ops-laura", "password changed", "ana") in [
        (e["who"], e["action"], e["detail"]) for _, e in app_audit(app)]


def app_audit(app):
    return services.of(app).store.r.xrange(store.AUDIT)


def test_a_role_change_ends_the_sessions_of_that_person(app, ana, redis_server):
    stolen = browser_holding(app, cookie_of(ana))
    result = cli(redis_server, "users", "role", "ana", "--role", "supervisor")
    assert result.exit_code == 0, result.output
    assert logged_out(ana.client) and logged_out(stolen)
    again = Staff(app, "ana", add=False)
    assert again.client.get("/admin").status_code == 403  # a supervisor now


def test_removing_and_adding_the_name_again_brings_no_old_session_back(app, ana, redis_server):
    cookie = cookie_of(ana)
    assert cli(redis_server, "users", "remove", "ana").exit_code == 0
    assert cli(redis_server, "users", "add", "ana", "--role", "admin", "--password-stdin",
               input=NEW_PASSWORD + "\n").exit_code == 0
    assert logged_out(browser_holding(app, cookie))


@pytest.mark.parametrize("change", ["password", "removal"])
def test_a_login_checked_before_a_change_starts_no_session_after_it(app, change):
    """A login in flight (its password checked, its session not yet started) while an
    operator changes a stolen password or removes the account: it must not land after
    the change has ended every session."""
    accounts, sessions = services.of(app).staff, services.of(app).sessions
    accounts.save_user("ana", "admin", QUICK_HASH)
    checked = credentials_of(accounts.user("ana"))  # the password read, and matched
    if change == "password":
        accounts.set_password("ana", quick_hash(PASSWORD))  # a new salt: a new hash
    else:
        accounts.remove_user("ana")
        accounts.save_user("ana", "admin", quick_hash(PASSWORD))  # the name, someone new
    assert sessions.start("ana", "192.0.2.1", "a browser", checked) is None
    assert sessions.of_user("ana") == []
    assert sessions.start("ana", "192.0.2.1", "a browser",
                          credentials_of(accounts.user("ana"))) is not None


def test_adding_a_name_that_exists_is_refused_and_changes_nothing(app, ana, redis_server):
    before = services.of(app).staff.user("ana")
    result = cli(redis_server, "users", "add", "ana", "--role", "supervisor",
                 "--password-stdin", input=NEW_PASSWORD + "\n")
    assert result.exit_code != 0
    assert "ivr users password ana" in result.output
    assert services.of(app).staff.user("ana") == before
    assert opens(ana.client) == [200, 200, 200]
    assert cli(redis_server, "users", "password", "nobody", "--password-stdin",
               input=NEW_PASSWORD + "\n").exit_code != 0


def test_the_cookie_carries_the_session_id_alone_and_redis_keeps_only_its_hash(
        app, ana, redis_client):
    cookie = app.session_interface.get_signing_serializer(app).loads(cookie_of(ana))
    assert list(cookie) == ["sid"]
    sid = cookie["sid"]
    record = redis_client.hgetall(store.session_key(session_hash(sid)))
    assert record["user"] == "ana" and record["address"] == "127.0.0.1"
    assert record["agent"].startswith("Werkzeug/")  # the test client's User-Agent
    assert "csrf_token" in record["data"]  # the session's contents are kept here
    everything = " ".join(f"{k} {v}" for key in redis_client.scan_iter()
                          if redis_client.type(key) == "hash"
                          for k, v in redis_client.hgetall(key).items())
    assert sid not in everything and not any(sid in key for key in redis_client.scan_iter())


# --- 1. lifetimes: 8 hours at most, 30 minutes unused ---------------------------------------


def test_the_cookie_expires_when_the_session_ends_and_is_never_sent_again(app):
    add = services.of(app).staff.save_user
    add("ana", "admin", QUICK_HASH)
    client = app.test_client()
    token = csrf_of(client.get("/login").text)
    login = client.post("/login", data={"name": "ana", "password": PASSWORD,
                                        "csrf_token": token})
    assert [v for k, v in login.headers.items() if k == "Set-Cookie" and "session=" in v]
    expires = client.get_cookie("session").expires.timestamp()
    # Pages, a form that changes the session's contents (a flash): no cookie is re-sent,
    # so nothing slides its end.
    token = csrf_of(client.get("/admin/prompts").text)
    answers = [client.get("/reports"), client.get("/admin/audit"),
               client.post("/admin/discard", data={"csrf_token": token}),
               client.get("/admin")]
    for answer in answers:
        assert not [v for k, v in answer.headers.items()
                    if k == "Set-Cookie" and v.startswith("session=")]
    session = services.of(app).sessions.of_user("ana")[0]
    assert abs(expires - (session.created + 8 * 3600)) <= 1  # the session's own end


def test_a_session_ends_eight_hours_after_login_however_busy(app, ana):
    backdate(app, "ana", created=8 * 3600 - 60, seen=1)
    assert opens(ana.client) == [200, 200, 200]
    backdate(app, "ana", created=8 * 3600 + 1, seen=1)
    assert logged_out(ana.client)


@pytest.mark.parametrize("idle_minutes", [None, 5])
def test_a_session_left_unused_ends_after_the_idle_timeout(app_config, redis_client,
                                                           idle_minutes):
    config = {**app_config, "RUTA_SESSION_IDLE_MINUTES": idle_minutes or 30}
    app = create_app(config)
    ana = Staff(app, "ana")
    minutes = idle_minutes or 30  # the default
    handle = services.of(app).sessions.of_user("ana")[0].handle
    assert redis_client.ttl(store.session_key(handle)) <= minutes * 60  # Redis drops it then
    backdate(app, "ana", seen=(minutes - 1) * 60)
    assert opens(ana.client) == [200, 200, 200]
    backdate(app, "ana", seen=minutes * 60 + 1)
    assert logged_out(ana.client)


# --- 1. who is logged in, and ending their sessions ---------------------------------------


def test_ivr_users_sessions_lists_them_and_revoke_ends_them(app, redis_server, redis_client):
    ana = Staff(app, "ana")
    elsewhere = Staff(app, "ana", add=False)
    listed = cli(redis_server, "users", "sessions", "ana")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 2
    assert all("127.0.0.1" in line and "Werkzeug/" in line for line in lines)
    revoked = cli(redis_server, "users", "revoke", "ana")
    assert revoked.exit_code == 0 and revoked.output.strip() == "2 session(s) of ana ended"
    assert logged_out(ana.client) and logged_out(elsewhere.client)
    assert cli(redis_server, "users", "sessions", "ana").output.strip() == (
        "no open sessions for ana")
    assert ("cli:ops-laura", "sessions ended", "ana: 2") in security_log(redis_client)


def test_a_browser_name_cannot_write_terminal_controls_into_ivr_users_sessions(
        app, redis_server):
    """A staff member's User-Agent, shown to the operator: escape sequences in it could
    rewrite the operator's terminal (its title, its clipboard, what it shows)."""
    add_user(app, "ana", "admin", "en")
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = (
        "Firefox\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x9b1A\u202eok")
    token = csrf_of(client.get("/login").text)
    assert client.post("/login", data={"name": "ana", "password": PASSWORD,
                                       "csrf_token": token}).status_code == 302
    listed = cli(redis_server, "users", "sessions", "ana").output
    assert "Firefox]52;c;cm0gLXJmIH4=[2J1Aok" in listed
    assert all(c.isprintable() for c in listed.replace("\n", ""))


def test_an_admin_sees_who_is_logged_in_and_ends_one_session(app, redis_client):
    ana = Staff(app, "ana")
    marta = Staff(app, "marta", "supervisor")
    table = parse(ana.page("/admin/sessions")).one("table", cls="sessions")
    rows = {tr.attrs["data-session"]: [td.text().strip() for td in tr.all("td")]
            for tr in table.all("tr") if tr.attrs.get("data-session")}
    assert sorted(r[0] for r in rows.values()) == ["ana (this browser)", "marta"]
    martas = next(h for h, r in rows.items() if r[0] == "marta")
    assert ana.post("/admin/sessions/end", {"session": martas}).status_code == 200
    assert logged_out(marta.client)
    assert ana.client.get("/admin").status_code == 200
    assert ("ana", "sessions ended", "marta: 1") in security_log(redis_client)
    assert marta.client.get("/admin/sessions").status_code == 302  # and it is admins' only
    assert Staff(app, "marta", "supervisor", add=False).client.get(
        "/admin/sessions").status_code == 403


# --- 5. nobody writes what they typed into the logs ----------------------------------------


def test_failed_logins_keep_no_typed_text_and_never_touch_the_audit_log(app, client, ana,
                                                                         redis_client):
    audit_before = redis_client.xrange(store.AUDIT)
    typed = ['<b onmouseover="x()">bob</b>', '=HYPERLINK("http://evil.example")',
             "correct horse battery"]  # a password typed in the name field
    for name in [*typed, "ana "]:
        token = csrf_of(client.get("/login").text)
        assert client.post("/login", data={"name": name, "password": "wrong password!",
                                           "csrf_token": token}).status_code == 401
    token = csrf_of(client.get("/login").text)
    assert client.post("/login", data={"name": "ana", "password": "wrong password!",
                                       "csrf_token": token}).status_code == 401
    assert redis_client.xrange(store.AUDIT) == audit_before  # the audit page is as it was
    assert failed_logins(redis_client) == [("", "failed login, unknown name", "127.0.0.1")] * 4 + [
        ("ana", "failed login", "127.0.0.1")]
    assert [e[1] for e in security_log(redis_client)] == ["login"]  # ana's own, alone
    dump = " ".join(f"{k} {v}" for key in redis_client.scan_iter()
                    if redis_client.type(key) == "stream"
                    for _, e in redis_client.xrange(key) for k, v in e.items())
    for name in typed:
        assert name not in dump, name


def test_a_flood_of_anonymous_failed_logins_pushes_nothing_out_of_the_audit_page(
        app, ana, redis_client):
    """Anyone can fail to log in, as often as they like: those failures fill a capped
    stream and a section of their own, never the audit log or the security log, so the
    staff's logins and ended sessions stay on the page."""
    ana.edit("/admin/prompts", {"prompt:es:goodbye": "Gracias por llamar."})
    Staff(app, "marta", "supervisor")  # logged in, in a browser of her own
    martas = services.of(app).sessions.of_user("marta")[0].handle
    assert ana.post("/admin/sessions/end", {"session": martas}).status_code == 200
    audit_before = redis_client.xrange(store.AUDIT)
    security_before = security_log(redis_client)
    assert [e[:2] for e in security_before] == [
        ("ana", "login"), ("marta", "login"), ("ana", "sessions ended")]

    stranger = app.test_client()  # through the real login form first...
    for name in ("marta", "nobody-here"):
        token = csrf_of(stranger.get("/login").text)
        assert stranger.post("/login", data={"name": name, "password": "wrong password!",
                                             "csrf_token": token}).status_code == 401
    assert failed_logins(redis_client) == [("marta", "failed login", "127.0.0.1"),
                                           ("", "failed login, unknown name", "127.0.0.1")]
    r = services.of(app).store.r  # ...then as many as a script would send
    for _ in range(FAILED_LOGINS_KEEP + 500):
        log_security_event(r, SecurityEvent.LOGIN_FAILED_UNKNOWN, "", "203.0.113.9")
    assert redis_client.xlen(store.FAILED_LOGINS) <= FAILED_LOGINS_KEEP + 200  # trimmed
    assert redis_client.xrange(store.AUDIT) == audit_before
    assert security_log(redis_client) == security_before

    page = parse(ana.page("/admin/audit"))
    assert [row[2] for row in rows_of(page, "audit")][:1] == ["draft saved"]
    assert [row[1:3] for row in rows_of(page, "security-log")] == [
        ["ana", "sessions ended"], ["marta", "logged in"], ["ana", "logged in"]]
    failures = rows_of(page, "failed-logins")
    assert len(failures) == 200
    assert {tuple(row[1:]) for row in failures} == {
        ("", "failed login, unknown name", "203.0.113.9")}
    exported = list(csv.reader(io.StringIO(
        ana.client.get("/admin/audit.csv?log=failed-logins").text)))
    assert exported[0] == ["at", "who", "action", "detail"]
    assert len(exported) - 1 == redis_client.xlen(store.FAILED_LOGINS)
    security_csv = list(csv.reader(io.StringIO(
        ana.client.get("/admin/audit.csv?log=security").text)))
    assert [row[1:3] for row in security_csv[1:]] == [list(e[:2]) for e in security_before]


def test_while_redis_is_unreachable_a_session_cookie_is_no_server_error(app_config):
    """Sessions cannot be read: the person is logged out for now, their cookie kept."""
    app = create_app({**app_config, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    client = app.test_client()
    cookie = app.session_interface.get_signing_serializer(app).dumps({"sid": "some-id"})
    client.set_cookie("session", cookie)
    resp = client.get("/reports")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")
    assert "Set-Cookie" not in resp.headers
    assert client.get("/login").status_code == 200

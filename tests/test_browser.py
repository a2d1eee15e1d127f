"""The supervisors' pages in a real browser: Chromium (Debian's) driven by Playwright,
against the app served on a real port, with calls played through the webhooks and
written to a real Redis by the real drain.

Screenshots of the dashboard (desktop and phone) are saved under test-output/.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import http.cookiejar
import io
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from conftest import CHROMIUM, CONNECTED_HOTLINES, TEST_OUTPUT

if not os.path.exists(CHROMIUM):
    pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install "
                "chromium); CI installs it", allow_module_level=True)

import redis  # noqa: E402
from babel.dates import format_date  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from playwright.sync_api import Error as PlaywrightError  # noqa: E402

from ivr import create_app, redis_url, security, services, store  # noqa: E402
from ivr.cli import main as ivr_main  # noqa: E402
from ivr.exports import CALL_COLUMNS  # noqa: E402

CSV_COLUMNS = [c.id for c in CALL_COLUMNS]  # the data form's header
from ivr.simulator import Move  # noqa: E402
from ivr.vocabulary import BOGOTA, Event  # noqa: E402
from workers.drain import Drainer  # noqa: E402

pytestmark = pytest.mark.slow  # real servers or browsers: `-m "not slow"` skips them

PHONE = "+573001234567"
PHONE_DIGITS = "3001234567"  # must never reach a supervisor, in any form
PASSWORD = "correct horse battery"
CHART_TITLES = [
    "Calls per day, by what they were about",
    "Transfers per hotline, by result",
    "Callers at each question, and who hung up",
    "Calls by hour of day (Bogotá)",
]

# Today's calls: (caller's moves, hotlines' answers, category, outcome, hotlines text).
TODAY = [
    ([Move("press", "1")], [], "child", "transferred", "icbf:completed"),
    ([Move("say", "es sobre mi hija de doce años")], [], "child", "transferred",
     "icbf:completed"),
    ([Move("press", "2")], ["busy", "completed"], "labour", "transferred",
     "labour:busy > national:completed"),
    ([Move("press", "0")], ["failed"] * 3, "emergency", "transfer_failed",
     "emergency:failed > police:failed > national:failed"),
    ([], [], "", "abandoned_in_menu", ""),
]
# Calls ten days ago (same shape).
OLD = [
    ([Move("press", "3")], [], "migrant", "transferred", "national:completed"),
    ([Move("press", "4")], [], "report", "abandoned_in_menu", ""),
]
OLD_DAYS = 10


# --- the browser and the served app -------------------------------------------------------


@pytest.fixture
def app_config(app_config):
    """Every line with a target Twilio can dial (conftest.CONNECTED_HOTLINES), so the
    seeded calls reach the lines they chose and their chains (labour busy, then the
    national line; emergency, police, national) show on the dashboard."""
    return {**app_config, "RUTA_MENU_OVERRIDES": CONNECTED_HOTLINES}


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    return context.new_page()


# --- seeding --------------------------------------------------------------------------------


@functools.cache
def password_hash(password: str) -> str:
    return security.hash_password(password)  # scrypt: slow on purpose, so only once


def add_user(app, name: str, role: str, password: str = PASSWORD, lang: str = "en") -> None:
    """An account that reads the pages in English, the language these tests check them in
    (the browser asks for en-US too, Chromium's default here); the Spanish ones: below."""
    services.of(app).staff.save_user(name, role, password_hash(password), lang)


def drain(url: str) -> None:
    stats = Drainer(redis_url.decoding(redis.Redis.from_url(url))).run(5)
    assert stats.dead == 0


def play(simulate, calls) -> list[tuple[str, tuple]]:
    """Play each call through the webhooks; returns [(CallSid, the call's row of TODAY/OLD)]."""
    placed = []
    for spec in calls:
        moves, dials = spec[0], spec[1]
        transcript = simulate(list(moves), list(dials), caller=PHONE)
        placed.append((transcript.call_sid, spec))
    return placed


def seed_old(simulate, redis_client, days_ago: int = OLD_DAYS) -> list[tuple[str, tuple]]:
    """Play OLD through the webhooks, then write their events as if `days_ago` days ago."""
    assert redis_client.xlen(store.EVENTS) == 0
    placed = play(simulate, OLD)
    entries = redis_client.xrange(store.EVENTS)
    shift = days_ago * 86400
    events = [dataclasses.replace(e, at=e.at - shift, started=e.started - shift)
              for e in (Event.from_json(fields["e"]) for _, fields in entries)]
    redis_client.xdel(store.EVENTS, *[entry_id for entry_id, _ in entries])
    store.Store(redis_client).write_batch(events, [], None)
    return placed


@pytest.fixture
def seeded(simulate, redis_client, redis_server):
    """Five calls today and two ten days ago, all from PHONE, in Redis."""
    old = seed_old(simulate, redis_client)
    today = play(simulate, TODAY)
    drain(redis_server.url)
    assert redis_client.xlen(store.EVENTS) == 0
    return {"today": today, "old": old}


def bogota_day(days_ago: int = 0) -> str:
    return (datetime.now(BOGOTA) - timedelta(days=days_ago)).strftime("%Y-%m-%d")


def shown_day(day: str, lang: str = "en") -> str:
    """A day as the pages write it (CLDR): "Nov 26, 2026" (en), "26/11/2026" (es)."""
    return format_date(date.fromisoformat(day), "medium", locale={"en": "en", "es": "es_CO"}[lang])


# What an English reader sees instead of the ids (ivr.i18n and config/hotlines.toml).
CATEGORY_EN = {"child": "Children", "labour": "Work", "migrant": "Migrants",
               "report": "Reporting a crime", "emergency": "Emergency", "": ""}
OUTCOME_EN = {"transferred": "Transferred", "transfer_failed": "Transfers never connected",
              "abandoned_in_menu": "Hung up in the menu"}
HOTLINE_EN = {"icbf": "ICBF child protection line", "labour": "Ministry of Labour line",
              "national": "National Anti-Trafficking Line", "emergency": "Emergency line",
              "police": "National Police line"}
RESULT_EN = {"completed": "answered", "busy": "busy", "failed": "failed"}


def shown_hotlines(text: str) -> str:
    """"labour:busy > national:completed" as the calls table shows it in English."""
    return " › ".join(f"{HOTLINE_EN[h]} ({RESULT_EN[result]})"
                      for h, result in (d.split(":") for d in text.split(" > ") if d))


# --- what a person does and sees -------------------------------------------------------------


def log_in(page, base: str, name: str, password: str = PASSWORD, path: str = "/login"):
    """Fill and send the login form; returns the response of the page it lands on."""
    page.goto(base + path)
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Log in").click()
    return nav.value


def stat(page, name: str) -> str:
    """A headline number as shown, e.g. "60%" or "57.1%" (CLDR's English)."""
    return page.locator(f'[data-stat="{name}"] .n').inner_text().strip()


def table_rows(page) -> dict[str, list[str]]:
    """The calls table: CallSid -> the cells' texts."""
    rows = {}
    for row in page.locator("table.calls tbody tr").all():
        rows[row.get_attribute("data-call")] = [c.strip() for c in
                                                row.locator("td").all_inner_texts()]
    return rows


def screenshot(page, name: str) -> None:
    TEST_OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(TEST_OUTPUT / name), full_page=True)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, data: dict | None = None, headers: dict | None = None,
          opener=None) -> tuple[int, dict, str]:
    """GET (or POST a form) without following redirects: (status, headers, body)."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers or {})
    opener = opener or urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


# --- 1. the dashboard -----------------------------------------------------------------------


def test_supervisor_logs_in_and_sees_the_days_numbers_charts_and_calls(app, base, page,
                                                                      seeded):
    add_user(app, "marta", "supervisor")
    landed = log_in(page, base, "marta")
    assert landed.status == 200
    assert urllib.parse.urlsplit(page.url).path == "/reports"
    assert page.locator("header .who").inner_text() == "marta · supervisor"

    # The last 7 days by default: today's five calls, not the two of ten days ago.
    assert page.locator("h1").inner_text() == (
        f"Calls from {shown_day(bogota_day(6))} to {shown_day(bogota_day())}")
    assert page.locator('[data-stat="calls"]').inner_text().split()[:2] == ["5", "calls"]
    assert stat(page, "reached") == "60%"
    assert "reached a person (3)" in page.locator('[data-stat="reached"]').inner_text()
    assert stat(page, "never-reached") == "40%"
    assert "never reached a person (2)" in page.locator(
        '[data-stat="never-reached"]').inner_text()
    # Seven transfer attempts today, four not connected (busy, and the three failed).
    assert stat(page, "not-connected") == "57.1%"
    assert "(4 of 7 attempts)" in page.locator('[data-stat="not-connected"]').inner_text()
    # The previous 7 days hold the two calls of ten days ago.
    assert page.locator('[data-stat="calls"] .change').inner_text() == (
        "▲ up 3 on the previous 7 days")
    assert stat(page, "hung-up") == "20%"
    assert "hung up in the menu (1)" in page.locator('[data-stat="hung-up"]').inner_text()
    assert stat(page, "emergency") == "0"  # the emergency call reached nobody
    assert stat(page, "repeat") == "4"  # five calls from one number

    # The charts, each an SVG with its title, drawn from these calls: the first four here.
    charts = page.locator("section.charts figure svg")
    assert charts.count() == 7
    titles = [charts.nth(i).locator(":scope > title").text_content() for i in range(4)]
    assert titles == CHART_TITLES
    for i in range(4):
        box = charts.nth(i).bounding_box()
        assert box and box["width"] > 200 and box["height"] > 50, (titles[i], box)
    per_day = charts.nth(0).locator(":scope > desc").text_content()
    for category in ("child", "labour", "emergency"):  # named, never by their ids
        assert CATEGORY_EN[category] in per_day and category not in per_day
    hotlines = charts.nth(1).locator(":scope > desc").text_content()
    for hotline in ("icbf", "labour", "national", "emergency", "police"):
        assert HOTLINE_EN[hotline] in hotlines and hotline not in hotlines

    # The calls table: one row per call, newest first, with what happened.
    assert "(5, newest first)" in page.locator(".table-head h2").inner_text()
    rows = table_rows(page)
    assert set(rows) == {sid for sid, _ in seeded["today"]}
    times = [cells[0] for cells in rows.values()]
    assert times == sorted(times, reverse=True)  # newest first
    for sid, (_, _, category, outcome, hotlines_text) in seeded["today"]:
        time_cell, lang, about, _path, hotline_cell, outcome_cell, *_, caller = rows[sid]
        assert time_cell.startswith(shown_day(bogota_day()) + ", "), time_cell
        assert lang == "Español"
        assert about == CATEGORY_EN[category]
        assert hotline_cell == shown_hotlines(hotlines_text)
        assert outcome_cell == OUTCOME_EN[outcome]
        assert caller.startswith("c_")
    body = page.locator("body").inner_text()
    assert PHONE_DIGITS not in body and PHONE_DIGITS not in page.content()
    screenshot(page, "dashboard-desktop.png")


# --- 2. the date range ------------------------------------------------------------------------


def test_switching_the_range_counts_the_right_days(app, base, page, seeded):
    add_user(app, "marta", "supervisor")
    log_in(page, base, "marta")
    old_day = bogota_day(OLD_DAYS)

    page.get_by_role("link", name="7 days").click()
    page.wait_for_url("**/reports?range=7")
    assert page.get_by_role("link", name="7 days").get_attribute("aria-current") == "page"
    assert stat(page, "calls") == "5"
    assert not set(table_rows(page)) & {sid for sid, _ in seeded["old"]}

    page.get_by_role("link", name="30 days").click()
    page.wait_for_url("**/reports?range=30")
    assert page.get_by_role("link", name="30 days").get_attribute("aria-current") == "page"
    assert page.locator("h1").inner_text() == (
        f"Calls from {shown_day(bogota_day(29))} to {shown_day(bogota_day())}")
    assert stat(page, "calls") == "7"
    assert stat(page, "reached") == "57.1%"  # 4 of 7
    assert stat(page, "hung-up") == "28.6%"  # 2 of 7
    order = list(table_rows(page))  # newest first: today's calls, then the old ones
    assert set(order[:5]) == {sid for sid, _ in seeded["today"]}
    assert set(order[5:]) == {sid for sid, _ in seeded["old"]}

    page.get_by_role("link", name="Today").click()
    page.wait_for_url("**/reports?range=today")
    assert stat(page, "calls") == "5"

    # A custom range, typed in the form: just the day ten days ago.
    page.get_by_label("From", exact=True).fill(old_day)
    page.get_by_label("To", exact=True).fill(old_day)
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**/reports?from={old_day}&to={old_day}")
    assert page.locator("h1").inner_text() == (
        f"Calls from {shown_day(old_day)} to {shown_day(old_day)}")
    assert stat(page, "calls") == "2"
    assert stat(page, "reached") == "50%"
    rows = table_rows(page)
    assert set(rows) == {sid for sid, _ in seeded["old"]}
    for sid, (_, _, category, outcome, _) in seeded["old"]:
        assert rows[sid][0].startswith(shown_day(old_day) + ", ")
        assert rows[sid][2] == CATEGORY_EN[category]
        assert rows[sid][5] == OUTCOME_EN[outcome]

    # The first day after the last: the error page says why.
    page.get_by_label("From", exact=True).fill(bogota_day())
    page.get_by_label("To", exact=True).fill(old_day)
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Show").click()
    assert nav.value.status == 400
    assert page.get_by_role("alert").inner_text() == "the first day is after the last day"

    # A date that is not one.
    response = page.goto(base + "/reports?from=2026-02-30&to=2026-03-01")
    assert response.status == 400
    assert page.locator("h1").inner_text() == "That request could not be used"
    assert page.get_by_role("alert").inner_text() == "dates must look like 2026-01-31"
    page.get_by_role("link", name="Back to the reports").click()
    page.wait_for_url("**/reports")
    assert stat(page, "calls") == "5"


# --- 3. the CSV -------------------------------------------------------------------------------


def download_csv(page) -> tuple[str, str]:
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV data", exact=True).click()
    download = info.value
    return download.suggested_filename, Path(download.path()).read_text(encoding="utf-8")


def test_csv_download_has_the_ranges_calls_and_no_phone_number(app, base, page, seeded):
    add_user(app, "marta", "supervisor")
    log_in(page, base, "marta")
    want = {sid: spec for sid, spec in seeded["today"] + seeded["old"]}

    # The default range (7 days): today's five calls, oldest first.
    name, text = download_csv(page)
    assert name == f"ruta-calls-{bogota_day(6)}-to-{bogota_day()}.csv"
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == CSV_COLUMNS
    rows = list(reader)
    assert sorted(r["call_sid"] for r in rows) == sorted(sid for sid, _ in seeded["today"])
    assert PHONE_DIGITS not in text

    # 30 days: the two old calls too, first.
    page.get_by_role("link", name="30 days").click()
    page.wait_for_url("**/reports?range=30")
    name, text = download_csv(page)
    assert name == f"ruta-calls-{bogota_day(29)}-to-{bogota_day()}.csv"
    assert PHONE_DIGITS not in text
    assert PHONE_DIGITS not in text.replace(" ", "").replace("-", "")
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == CSV_COLUMNS
    rows = list(reader)
    # Oldest first: the two old calls, then today's (calls are timed to the second).
    assert {r["call_sid"] for r in rows[:2]} == {sid for sid, _ in seeded["old"]}
    assert {r["call_sid"] for r in rows[2:]} == {sid for sid, _ in seeded["today"]}
    started = [datetime.fromisoformat(r["started"]) for r in rows]
    assert started == sorted(started)
    callers = set()
    for row in rows:
        _, _, category, outcome, hotlines_text = want[row["call_sid"]]
        assert row["category"] == category, row
        assert row["outcome"] == outcome, row
        assert row["hotlines"] == hotlines_text, row
        assert row["language"] == "es"
        assert row["call_status"] == "completed"
        callers.add(row["caller"])
    assert len(callers) == 1 and callers.pop().startswith("c_")  # one pseudonym, no number
    old_day = bogota_day(OLD_DAYS)
    assert [r["started"][:10] for r in rows[:2]] == [old_day, old_day]
    assert all(r["started"].endswith("-05:00") for r in rows)  # Bogotá time


# --- 4. roles ---------------------------------------------------------------------------------


def test_a_supervisor_is_refused_the_admin_pages(app, base, page):
    add_user(app, "marta", "supervisor")
    log_in(page, base, "marta")
    assert page.get_by_role("link", name="Reports").is_visible()
    assert page.get_by_role("link", name="Admin").count() == 0
    for path in ("/admin", "/admin/prompts", "/admin/hotlines", "/admin/examples"):
        response = page.goto(base + path)
        assert response.status == 403, path
        assert "This page is not for your account" in page.locator("body").inner_text()
        assert page.locator("textarea").count() == 0


def test_an_admin_sees_the_prompts(app, base, page):
    add_user(app, "ana", "admin")
    log_in(page, base, "ana")
    assert page.locator("header .who").inner_text() == "ana · administrator"
    page.get_by_role("link", name="Administration", exact=True).click()
    page.wait_for_url("**/admin")
    assert page.locator("h1").inner_text() == "Administration"
    page.get_by_role("navigation", name="Administration").get_by_role(
        "link", name="Prompts").click()
    page.wait_for_url("**/admin/prompts")
    assert page.locator("h1").inner_text() == "What callers hear"
    shipped = services.of(app).shipped.prompts
    prompt = page.locator("fieldset#prompt-main_menu")
    for lang, name in (("es", "Español"), ("en", "English")):  # each in its own language
        text = prompt.get_by_label(name, exact=True)
        assert text.get_attribute("lang") == lang
        assert text.input_value() == shipped[lang]["main_menu"].strip()
    keys = {k for texts in shipped.values() for k in texts}
    assert page.locator("fieldset.prompt").count() == len(keys) >= 10


# Collects every Content-Security-Policy violation a page reports, from its first script on.
LISTEN_FOR_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline")));
"""


def test_dashboard_and_admin_pages_load_with_no_csp_violation(app, base, page, seeded):
    """The policy (no script, no inline style, only our own stylesheet and forms) allows
    all the pages use, charts included: not one violation, on the console or reported."""
    console = []
    page.on("console", lambda m: console.append(m.text))
    page.add_init_script(LISTEN_FOR_CSP)
    add_user(app, "ana", "admin")
    log_in(page, base, "ana")  # the login page and its form post, under the policy too
    for path in ("/reports", "/reports?range=30", "/admin", "/admin/prompts",
                 "/admin/hotlines", "/admin/examples", "/admin/try", "/admin/history",
                 "/admin/audit"):
        response = page.goto(base + path)
        assert response.status == 200, path
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert page.evaluate("getComputedStyle(document.body).margin") == "0px"  # ruta.css
        if path.startswith("/reports"):
            assert page.locator("figure svg").count() == 7  # the charts, drawn
        assert page.evaluate("window.__csp") == [], path
    # A form post on /admin/try (form-action 'self'), then its answer.
    page.goto(base + "/admin/try")
    with page.expect_navigation():
        page.get_by_role("group", name="Keypad").get_by_role("button", name="2",
                                                             exact=True).click()
    # The panel plays the shipped directory: the labour line has no target Twilio can
    # dial yet, so the caller hears its number and is connected to the national line.
    transcript = page.locator("section.transcript").inner_text()
    assert "llame usted al 1 2 0." in transcript
    assert "Dialled: +5718000522020" in transcript
    assert page.evaluate("window.__csp") == []
    assert not [m for m in console if "Content Security Policy" in m], console

    # The listener does hear a violation: an inline style, which the policy refuses.
    page.evaluate("document.body.setAttribute('style', 'background: red')")
    page.wait_for_function("window.__csp.length > 0")
    assert page.evaluate("window.__csp")[0].startswith("style-src")


# --- 5. without logging in ------------------------------------------------------------------


def test_pages_and_api_need_a_login_or_a_token(app, base, page, seeded, redis_server):
    for path in ("/reports", "/reports/calls.csv", "/reports?range=30", "/admin"):
        status, headers, _ = fetch(base + path)
        assert status == 302, path
        location = urllib.parse.urlsplit(headers["Location"])
        assert location.path == "/login", path
        assert urllib.parse.parse_qs(location.query)["next"] == [path], path
    for path in ("/api/reports/summary", "/api/reports/calls"):
        status, headers, body = fetch(base + path)
        assert status == 401, path
        assert headers["Content-Type"] == "application/json"
        assert "Bearer" in json.loads(body)["error"]
        assert "calls" not in json.loads(body)

    # In the browser: the login page, and after it the page asked for.
    page.goto(base + "/reports?range=30")
    assert urllib.parse.urlsplit(page.url).path == "/login"
    assert page.locator("h1").inner_text() == "Log in"
    add_user(app, "marta", "supervisor")
    page.get_by_label("Name").fill("marta")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/reports?range=30")
    assert stat(page, "calls") == "7"

    # An API token made with `ivr tokens add`.
    result = CliRunner(env={"REDIS_URL": redis_server.url}).invoke(
        ivr_main, ["tokens", "add", "dashboards"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("ruta_")
    status, _, body = fetch(base + "/api/reports/summary?range=30",
                            headers={"Authorization": f"Bearer {token}"})
    assert status == 200
    summary = json.loads(body)
    assert (summary["calls"], summary["reached_person"]) == (7, 4)
    assert summary["outcomes"] == {"transferred": 4, "transfer_failed": 1,
                                   "abandoned_in_menu": 2}
    status, _, body = fetch(base + "/api/reports/calls?range=30",
                            headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and json.loads(body)["total"] == 7
    assert PHONE_DIGITS not in body
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), "", "ruta_nope"):
        status, _, body = fetch(base + "/api/reports/summary",
                                headers={"Authorization": f"Bearer {bad}"})
        assert status == 401, bad
        assert "calls" not in json.loads(body)


# --- 6. login security ----------------------------------------------------------------------


def test_wrong_password_then_too_many_failed_logins(app_config, redis_client, browser,
                                                    serve_app):
    app = create_app(app_config)  # a fresh app; Redis (and its limiter keys) was just emptied
    assert not redis_client.keys(f"{store.LIMITS_PREFIX}*")
    add_user(app, "marta", "supervisor")
    base, stop = serve_app(app)
    ctx = browser.new_context(locale="en-US")
    try:
        page = ctx.new_page()

        def fails(name, password):
            response = log_in(page, base, name, password)
            assert response.status == 401
            assert page.get_by_role("alert").inner_text() == "Wrong name or password."
            assert page.get_by_label("Name").input_value() == name  # kept, to fix a typo
            assert page.get_by_label("Password").input_value() == ""
            assert urllib.parse.urlsplit(page.url).path == "/login"

        fails("marta", "not the password")
        for _ in range(3):
            fails("nobody", PASSWORD)
        # Logging in successfully does not count: twice, after four failures.
        for _ in range(2):
            ctx.clear_cookies()
            assert log_in(page, base, "marta").status == 200
            assert urllib.parse.urlsplit(page.url).path == "/reports"
        ctx.clear_cookies()
        fails("marta", "still not it")  # the fifth failure in the minute
        # The sixth attempt in the minute is refused, even with the right password.
        response = log_in(page, base, "marta", PASSWORD)
        assert response.status == 429
        assert page.get_by_role("alert").inner_text() == (
            "Too many failed logins: wait a minute and try again.")
        assert page.goto(base + "/reports").url.startswith(base + "/login")
        assert redis_client.keys(f"{store.LIMITS_PREFIX}*")  # in Redis, shared by every worker
    finally:
        ctx.close()
        stop()


def test_login_form_without_csrf_token_is_refused(app, base):
    add_user(app, "marta", "supervisor")
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPCookieProcessor(jar))
    status, _, body = fetch(base + "/login", opener=opener)
    assert status == 200 and 'name="csrf_token"' in body
    # The right name and password, but no token: refused, and not logged in.
    status, headers, body = fetch(base + "/login", {"name": "marta", "password": PASSWORD},
                                  opener=opener)
    assert status == 400
    assert "Este formulario venció" in body  # the CSRF check's page, Spanish by default
    assert "Location" not in headers
    assert fetch(base + "/reports", opener=opener)[0] == 302
    # A made-up token is refused too.
    status, _, _ = fetch(base + "/login", {"name": "marta", "password": PASSWORD,
                                           "csrf_token": "made-up"}, opener=opener)
    assert status == 400
    assert fetch(base + "/reports", opener=opener)[0] == 302


def test_session_cookie_is_httponly_and_hidden_from_scripts(app, base, page, context):
    # (SameSite is checked on the raw Set-Cookie in tests/test_security.py: Playwright
    # reports a cookie without it as "Lax".)
    add_user(app, "marta", "supervisor")
    log_in(page, base, "marta")
    cookies = {c["name"]: c for c in context.cookies()}
    device = [name for name in cookies if name.startswith("ruta_device_")]
    assert set(cookies) == {"session", *device} and len(device) == 1
    assert cookies["session"]["httpOnly"] is cookies[device[0]]["httpOnly"] is True
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    # Logging out (a form with its CSRF token) ends the session.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    assert page.goto(base + "/reports").url.startswith(base + "/login")


def test_her_browser_logs_in_while_her_name_is_sprayed_and_a_copied_cookie_opens_nothing(
        app, base, browser):
    """In Chromium: the device cookie a login leaves (sent to the login form only, and
    same-site only) lets marta in while someone else's wrong passwords for her name are
    refused; and her session cookie, copied before she logged out, opens nothing after."""
    add_user(app, "marta", "supervisor")
    martas, attackers = browser.new_context(), browser.new_context()
    try:
        page = martas.new_page()
        log_in(page, base, "marta")
        assert urllib.parse.urlsplit(page.url).path == "/reports"
        cookies = {c["name"]: c for c in martas.cookies()}
        device = next(c for name, c in cookies.items() if name.startswith("ruta_device_"))
        assert (device["path"], device["sameSite"]) == ("/login", "Strict")
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url("**/login")

        stolen = attackers.new_page()
        attackers.add_cookies([cookies["session"]])
        assert stolen.goto(base + "/reports").url.startswith(base + "/login")
        sprayed = [log_in(stolen, base, "marta", f"guess number {i}").status
                   for i in range(6)]
        assert sprayed == [401] * 5 + [429]  # her name, from this address, is limited
        assert log_in(stolen, base, "marta").status == 429  # even with her password

        assert log_in(page, base, "marta").status == 200  # her own browser gets in
        assert urllib.parse.urlsplit(page.url).path == "/reports"
    finally:
        martas.close()
        attackers.close()


def test_an_admin_sets_up_two_step_sign_in_then_logs_in_with_the_apps_code(app, base, page):
    """In Chromium, as production asks of an admin: the QR code drawn, the app's code
    (pyotp, from the key shown) turning it on, the recovery codes, then a login that
    asks for the code and goes on where it was headed."""
    app.config["RUTA_ADMIN_TOTP"] = "required"
    add_user(app, "ana", "admin")
    log_in(page, base, "ana", path="/login?next=/admin/prompts")
    assert urllib.parse.urlsplit(page.url).path == "/account/two-factor"  # sent to set up
    assert "set up two-step sign-in" in page.locator("p.flash.error").inner_text()
    qr = page.locator("figure.qr-code svg").bounding_box()
    assert qr and qr["width"] >= 200 and qr["width"] == qr["height"]  # drawn, to scan
    secret = page.locator("main code").first.inner_text().replace(" ", "")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    with page.expect_navigation():
        page.get_by_role("button", name="Turn on two-step sign-in").click()
    assert len(page.locator("ul.recovery-codes li").all_inner_texts()) == 10
    page.get_by_role("link", name="I have written them down").click()
    assert "10 recovery codes left." in page.locator("main").inner_text()
    assert page.goto(base + "/admin").status == 200
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")

    log_in(page, base, "ana", path="/login?next=/admin/prompts")
    assert urllib.parse.urlsplit(page.url).path == "/login/code"
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(time.time() + 30))
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    assert urllib.parse.urlsplit(page.url).path == "/admin/prompts"


def test_a_removed_account_is_out_at_its_next_request(app, base, page):
    add_user(app, "marta", "supervisor")
    log_in(page, base, "marta")
    assert services.of(app).staff.remove_user("marta")
    page.reload()
    assert urllib.parse.urlsplit(page.url).path == "/login"


@pytest.mark.parametrize("next_path", [
    pytest.param("//{elsewhere}/reports", id="double-slash"),
    pytest.param("/\\{elsewhere}/reports", id="backslash"),
    pytest.param("/\t/{elsewhere}/reports", id="tab-then-slash"),
    pytest.param("/\n/{elsewhere}/reports", id="newline-then-slash"),
])
def test_login_next_stays_on_this_site(app, base, page, next_path):
    """After logging in, ?next= may only lead to a page of this site, and the login
    still works whatever ?next= holds. `elsewhere` is this same server under another
    name (localhost instead of 127.0.0.1): another site as far as the browser knows."""
    add_user(app, "marta", "supervisor")
    here = urllib.parse.urlsplit(base).netloc
    elsewhere = here.replace("127.0.0.1", "localhost")
    visited = []
    page.on("request", lambda request: visited.append(request.url))
    landed = None
    try:
        landed = log_in(page, base, "marta",
                        path="/login?next=" + urllib.parse.quote(next_path.format(
                            elsewhere=elsewhere)))
    except PlaywrightError as e:  # the navigation failed: `visited` tells where it went
        print(e)
    hosts = {urllib.parse.urlsplit(url).netloc for url in visited}
    assert hosts == {here}, f"the login sent the browser to {hosts - {here}}: {visited}"
    assert landed is not None and landed.status < 500, (
        f"logging in with this ?next= answers HTTP {landed and landed.status}")


# --- 7. a phone -----------------------------------------------------------------------------


def test_dashboard_fits_a_phone_and_the_calls_table_stacks(app, browser, base, seeded):
    add_user(app, "marta", "supervisor")
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                              has_touch=True, locale="en-US")
    try:
        page = ctx.new_page()
        log_in(page, base, "marta")
        page.goto(base + "/reports?range=30")
        assert stat(page, "calls") == "7"
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[1] == 390
        assert width[0] <= width[1], f"the page scrolls sideways: {width}"
        for i in range(4):
            chart = page.locator("section.charts svg").nth(i).bounding_box()
            assert chart["x"] >= 0 and chart["x"] + chart["width"] <= 390
        screenshot(page, "dashboard-phone.png")
        # Each call is a stack of cells, each under its heading's name: nothing sideways,
        # nothing hidden, the caller's pseudonym included.
        box = page.locator("section.card .scroll").last
        sizes = box.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert sizes[0] <= sizes[1], f"the calls table scrolls sideways: {sizes}"
        row = box.locator("table.calls tbody tr").first
        for cell in row.locator("td").all():
            cell_box = cell.bounding_box()
            assert cell_box["x"] >= 0 and cell_box["x"] + cell_box["width"] <= 390
        label = row.locator("td").last.evaluate(
            "e => getComputedStyle(e, '::before').content")
        assert label == '"Caller"'
    finally:
        ctx.close()


# --- 8. no calls ------------------------------------------------------------------------------


def test_no_calls_yet(app, base, page):
    add_user(app, "marta", "supervisor")
    log_in(page, base, "marta")
    empty = page.locator("section.empty")
    assert empty.locator("h2").inner_text() == "No calls yet"
    assert "ivr call" in empty.inner_text()
    assert stat(page, "calls") == "0"
    assert stat(page, "reached") == "0%"
    assert page.locator("section.charts").count() == 0
    assert page.locator("table.calls").count() == 0
    assert "(0, newest first)" in page.locator(".table-head h2").inner_text()
    _, text = download_csv(page)
    assert list(csv.reader(io.StringIO(text))) == [CSV_COLUMNS]


def test_every_field_of_the_changed_admin_pages_has_a_label(app, base, page):
    """The hotlines page (screening, minimum answer, callers' numbers) and the example
    phrases page: a screen reader names every field a person can fill in."""
    add_user(app, "ana", "admin")
    log_in(page, base, "ana")
    for path in ("/admin/hotlines", "/admin/examples"):
        page.goto(base + path)
        fields = page.locator("textarea, select, input:not([type=hidden])")
        assert fields.count() > 10, path
        unnamed = [fields.nth(i).get_attribute("name") for i in range(fields.count())
                   if not fields.nth(i).evaluate("e => e.labels.length")]
        assert unnamed == [], path
        page.screenshot(path=str(TEST_OUTPUT / f"admin-{path.rsplit('/', 1)[1]}.png"),
                        full_page=False)


# --- 9. in Spanish, and in English ----------------------------------------------------------


def test_a_supervisor_whose_browser_asks_for_spanish_reads_spanish(app, browser, base, seeded):
    """Chromium set to Colombian Spanish; marta's account has the default language."""
    add_user(app, "marta", "supervisor", lang="es")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="es-CO")
    try:
        page = ctx.new_page()
        page.goto(base + "/login")
        assert page.locator("html").get_attribute("lang") == "es-CO"
        assert page.locator("h1").inner_text() == "Iniciar sesión"
        page.get_by_label("Usuario").fill("marta")
        page.get_by_label("Contraseña").fill("not the password")
        with page.expect_navigation():
            page.get_by_role("button", name="Iniciar sesión").click()
        assert page.get_by_role("alert").inner_text() == "Usuario o contraseña incorrectos."
        page.get_by_label("Contraseña").fill(PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name="Iniciar sesión").click()

        assert urllib.parse.urlsplit(page.url).path == "/reports"
        assert page.locator("html").get_attribute("lang") == "es-CO"
        assert page.locator("h1").inner_text() == (
            f"Llamadas del {shown_day(bogota_day(6), 'es')} al {shown_day(bogota_day(), 'es')}")
        assert page.locator("header .who").inner_text() == "marta · supervisor(a)"
        assert page.get_by_role("link", name="Reportes").is_visible()
        assert page.get_by_role("button", name="Cerrar sesión").is_visible()
        assert page.locator('[data-stat="calls"]').inner_text().split()[:2] == ["5", "llamadas"]
        assert "hablaron con una persona (3)" in page.locator(
            '[data-stat="reached"]').inner_text()
        assert page.locator('[data-stat="calls"] .change').inner_text() == (
            "▲ 3 más que los 7 días anteriores")
        charts = page.locator("section.charts figure svg")
        titles = [charts.nth(i).locator(":scope > title").text_content() for i in range(4)]
        assert titles == ["Llamadas por día, según el motivo",
                          "Transferencias por línea, según el resultado",
                          "Personas en cada pregunta, y quiénes colgaron",
                          "Llamadas por hora del día (Bogotá)"]
        assert "llegaron" in charts.nth(2).locator(":scope > desc").text_content()
        headers = page.locator("table.calls thead th").all_inner_texts()
        assert headers[:3] == ["Hora", "Idioma", "Motivo"]
        assert "(5, las más recientes primero)" in page.locator(".table-head h2").inner_text()
        screenshot(page, "dashboard-es.png")

        # An error, in the staff layout and in Spanish.
        response = page.goto(base + "/reports?from=2026-02-30")
        assert response.status == 400
        assert page.locator("h1").inner_text() == "No se pudo usar esa solicitud"
        assert page.get_by_role("alert").inner_text() == (
            "las fechas deben tener la forma 2026-01-31")
        assert page.locator("html").get_attribute("lang") == "es-CO"
        assert page.get_by_role("link", name="Volver a los reportes").is_visible()
    finally:
        ctx.close()


def test_an_english_speaking_admin_reads_english_whatever_the_browser_asks(app, browser,
                                                                           base, seeded):
    """Before login the browser decides (Spanish here); after, ana's account (English)."""
    add_user(app, "ana", "admin", lang="en")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="es-CO")
    try:
        page = ctx.new_page()
        page.goto(base + "/login")
        assert page.locator("h1").inner_text() == "Iniciar sesión"
        page.get_by_label("Usuario").fill("ana")
        page.get_by_label("Contraseña").fill(PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name="Iniciar sesión").click()
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.locator("h1").inner_text() == (
            f"Calls from {shown_day(bogota_day(6))} to {shown_day(bogota_day())}")
        assert page.locator("header .who").inner_text() == "ana · administrator"
        page.get_by_role("link", name="Administration", exact=True).click()
        page.wait_for_url("**/admin")
        assert page.locator("h1").inner_text() == "Administration"
        page.goto(base + "/admin/prompts")
        greeting = page.locator("fieldset#prompt-greeting")
        # English page; the Spanish prompt keeps its own language.
        assert greeting.get_by_label("Español", exact=True).get_attribute("lang") == "es"

        # She switches to Spanish on her account page, reached from the header.
        page.locator("header .who").click()
        page.wait_for_url("**/account")
        account = page.locator("section").filter(has=page.get_by_label("Español"))
        account.get_by_label("Español").check()
        with page.expect_navigation():
            account.get_by_role("button", name="Save").click()
        assert page.locator("html").get_attribute("lang") == "es-CO"
        assert page.get_by_role("status").inner_text() == (
            "Guardado: estas páginas están en Español.")
        page.goto(base + "/admin")
        assert page.locator("h1").inner_text() == "Administración"
    finally:
        ctx.close()


def test_every_figure_links_to_exactly_the_calls_it_counts(app, base, page, seeded):
    """Headline numbers, health chips, funnel steps and every bar of the charts lead to
    the calls table filtered to their calls: the table's total is the figure's number,
    and the filter stays in the URL (a bookmark shows the same). A figure of transfer
    attempts leads to the calls that had such an attempt: at most as many calls as
    attempts, each with one."""
    add_user(app, "sofia", "supervisor")
    log_in(page, base, "sofia")
    page.goto(base + "/reports?range=30")
    links = []
    for a in page.locator('[data-stat] a, .health a, ul.drill a').all():
        href, text = a.get_attribute("href"), a.inner_text()
        shown = re.findall(r"\d+", text)
        links.append((href, int(shown[0]) if shown else None))
    bars = page.locator("section.charts svg a")
    for a in bars.all():  # each named by its bar's tooltip, ending in the figure
        name = a.get_attribute("aria-label")
        assert name == a.locator("title").text_content()
        href = a.get_attribute("href")
        # A result's segment (busy...) leads to the calls with any attempt not connected.
        figure = None if "not_connected=" in href else int(re.findall(r"\d+", name)[-1])
        links.append((href, figure))
    assert bars.count() >= 12
    # An hour's bar or heat-map cell (the table's calls started in that hour): a
    # sample of them, each page a second on this machine.
    by_hour = [link for link in links if "hour=" in link[0]]
    bar_links = [link for link in by_hour if "not_connected=" not in link[0]]
    cell_links = [link for link in by_hour if "not_connected=" in link[0]]
    assert bar_links and cell_links
    # The seeded calls start within an hour or two: an hour without a bar lists none.
    empty = min(set(range(24)) - {int(re.search(r"hour=(\d+)", href)[1])
                                  for href, _n in by_hour})
    no_calls = [(re.sub(r"hour=\d+", f"hour={empty}", sample[0]), 0)
                for sample in (bar_links[0], cell_links[0])]
    links = ([link for link in links if link not in by_hour]
             + bar_links[::4] + cell_links[::4] + no_calls)
    assert page.locator("section.charts svg").first.get_attribute("role") == "group"
    checked = attempts = 0
    for href, shown in links:
        page.goto(base + href)
        assert "range=30" in page.url or re.search(r"from=([-\d]+)&to=\1", page.url), href
        total = int(re.search(r"\((\d+),", page.locator("#calls-heading").inner_text())[1])
        hotlines = [cells[4] for cells in table_rows(page).values()]
        if line := re.search(r"[?&](not_)?connected=(\w+)", href):
            assert shown is None or (total <= shown and (total > 0) == (shown > 0)), href
            assert shown is not None or total > 0, href
            if line[2] != "any":
                said = re.escape(HOTLINE_EN[line[2]]) + (r" \((?!answered)" if line[1]
                                                         else r" \(answered")
                assert all(re.search(said, cell) for cell in hotlines), href
            attempts += 1
        elif shown is not None:
            assert total == shown, href
            checked += 1
        if "outcome=" in href:
            outcome = href.split("outcome=")[1].split("&")[0].split("#")[0]
            assert all(c == OUTCOME_EN.get(outcome, c) for c in
                       page.locator("table.calls td.outcome").all_inner_texts())
    assert checked >= 15 and attempts >= 4
    page.goto(base + "/reports?range=30&hotline=labour")
    assert page.locator('select[name="hotline"]').input_value() == "labour"
    assert page.locator(".health li").count() <= 1

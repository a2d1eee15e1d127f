"""The administrators' pages in a real browser: Debian's Chromium driven by Playwright,
against the app served on a real port (werkzeug), with Twilio-signed calls placed over
HTTP against that same running server, which is never restarted.

Screenshots of /admin/prompts and /admin/try are saved under test-output/.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import CHROMIUM, TEST_OUTPUT

if not os.path.exists(CHROMIUM):
    pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install "
                "chromium); CI installs it", allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

from ivr import (
    services,
    store,  # noqa: E402
)
from ivr.menu import read_shipped  # noqa: E402
from ivr.simulator import Move, SimulatedCall  # noqa: E402
from ivr.versions import ConfigVersions  # noqa: E402

pytestmark = pytest.mark.slow  # real servers or browsers: `-m "not slow"` skips them

PASSWORD = "correct horse battery"
# Real scrypt at a low cost, so a login takes milliseconds (the cost is read from the hash).
QUICK_HASH = generate_password_hash(PASSWORD, method="scrypt:1024:8:1")
SHIPPED = read_shipped()
ES_GREETING = SHIPPED.prompts["es"]["greeting"]
EN_GREETING = SHIPPED.prompts["en"]["greeting"]
ICBF = "Le comunico con la línea del ICBF para niños, niñas y adolescentes. No cuelgue."
NATIONAL = "Le comunico con la Línea Nacional contra la Trata de Personas. No cuelgue."


# --- the browser and the served app (as in test_browser.py) -----------------------------


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    yield ctx.new_page()
    ctx.close()


def add_user(app, name: str, role: str) -> None:
    """An account that reads the pages in English, the language these tests check them in."""
    services.of(app).staff.save_user(name, role, QUICK_HASH, "en")


def log_in(page, base: str, name: str):
    page.goto(base + "/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def click_and_wait(page, locator):
    with page.expect_navigation():
        locator.click()


def screenshot(page, name: str) -> None:
    TEST_OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(TEST_OUTPUT / name), full_page=True)


# --- calls over HTTP, against the same running server -----------------------------------


def greeting(base: str, app) -> str:
    """Place a signed call over HTTP; the first thing the caller hears."""
    call = SimulatedCall(base, app.config["TWILIO_AUTH_TOKEN"])  # http_transport
    return call.run([]).lines[0].text


def greeting_within(base: str, app, expected: str, seconds: float = 3.0) -> str:
    """Call until the greeting is `expected` (the server looks for a new version at most
    once a second); return the last greeting heard."""
    deadline = time.monotonic() + seconds
    while True:
        heard = greeting(base, app)
        if heard == expected or time.monotonic() > deadline:
            return heard
        time.sleep(0.1)


def prompt_field(page, lang: str, key: str):
    return page.locator(f'textarea[name="prompt:{lang}:{key}"]')


def flash(page, kind: str = "status"):
    """The flash messages: role "status" (done) or "alert" (refused)."""
    return page.locator(f'main > p.flash[role="{kind}"]')


# --- 1. edit, see the problem, fix, publish, callers hear it, roll back ----------------------


def test_admin_edits_fixes_publishes_and_rolls_back_and_callers_hear_each_change(
        app, base, page, redis_client):
    # The deployment has been in use: bob published version 1 (a shorter goodbye).
    versions = ConfigVersions(services.of(app).store.r, services.of(app).shipped)
    versions.save_draft({"prompts": {"es": {"goodbye": "Gracias por llamar. Cuídese."}}},
                        "bob")
    assert versions.publish("bob", "shorter goodbye") == 1
    assert greeting(base, app) == ES_GREETING  # the server is serving, and keeps running

    add_user(app, "ana", "admin")
    log_in(page, base, "ana")
    click_and_wait(page, page.locator("header nav").get_by_role("link", name="Administration"))
    expect(page.locator("h1")).to_have_text("Administration")
    click_and_wait(page, page.locator("nav.subnav").get_by_role("link", name="Prompts"))
    expect(page.locator("h1")).to_have_text("What callers hear")

    # Edit the Spanish greeting, and (by mistake) empty the English one.
    new = "Línea Ruta. Le escuchamos, es confidencial."
    expect(prompt_field(page, "es", "greeting")).to_have_value(ES_GREETING)
    prompt_field(page, "es", "greeting").fill(new)
    prompt_field(page, "en", "greeting").fill("")
    click_and_wait(page, page.get_by_role("button", name="Save to draft"))
    expect(flash(page, "alert")).to_have_text(
        "Draft saved, but it cannot be published yet: the problems are listed below.")
    expect(prompt_field(page, "es", "greeting")).to_have_value(new)

    # A summary at the top, focused, links to the field.
    summary = page.locator("section.problems-summary")
    expect(summary).to_be_focused()
    expect(summary.get_by_role("link")).to_have_text(
        ["Greeting (English): this prompt is empty"])
    summary.get_by_role("link").click()
    assert page.evaluate("location.hash") == "#prompt:en:greeting"

    # The problem is shown right under the emptied field, and only there.
    english = prompt_field(page, "en", "greeting")
    expect(english).to_have_attribute("aria-invalid", "true")
    problems = page.locator('[id="prompt:en:greeting-problems"]')
    expect(problems).to_have_text("this prompt is empty")
    expect(problems).to_be_visible()
    field_box, list_box = english.bounding_box(), problems.bounding_box()
    assert 0 <= list_box["y"] - (field_box["y"] + field_box["height"]) < 40
    assert abs(list_box["x"] - field_box["x"]) < 40  # same column: the English one
    expect(prompt_field(page, "es", "greeting")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("[aria-invalid]")).to_have_count(1)
    english.scroll_into_view_if_needed()
    screenshot(page, "admin-prompts.png")

    # Publishing is refused, saying why.
    click_and_wait(page, page.locator("nav.subnav").get_by_role("link", name="Overview"))
    expect(page.locator("h3.error")).to_have_text("It cannot be published yet:")
    page.get_by_label("What changed, and why (required)").fill("friendlier greeting")
    click_and_wait(page, page.get_by_role("button", name="Publish"))
    expect(flash(page, "alert")).to_have_text(["Greeting (English): this prompt is empty"])
    assert int(redis_client.get(store.CONFIG_VERSION)) == 1
    assert greeting(base, app) == ES_GREETING

    # Fix it, publish with a note: the next call hears the new greeting.
    click_and_wait(page, page.locator("nav.subnav").get_by_role("link", name="Prompts"))
    prompt_field(page, "en", "greeting").fill(EN_GREETING)
    click_and_wait(page, page.get_by_role("button", name="Save to draft"))
    expect(page.locator("[aria-invalid]")).to_have_count(0)
    click_and_wait(page, page.locator("nav.subnav").get_by_role("link", name="Overview"))
    expect(page.locator("h3.error")).to_have_count(0)
    changes = page.locator("table.diff tbody tr")
    expect(changes).to_have_count(1)
    expect(changes.locator("td")).to_have_text(["Greeting (Español)", ES_GREETING, new])
    publish = page.get_by_role("button", name="Publish")
    note = page.get_by_label("What changed, and why (required)")
    publish.click()  # no note: the browser itself asks for one, nothing is sent
    assert note.evaluate("e => e.validity.valueMissing") is True
    assert int(redis_client.get(store.CONFIG_VERSION)) == 1
    note.fill("friendlier greeting")
    click_and_wait(page, publish)
    expect(flash(page)).to_have_text("Version 2 is live: callers hear it from their next call.")
    expect(page.locator(".status-line")).to_contain_text(
        "Live: version 2 (ana, ")
    assert greeting_within(base, app, new) == new

    # History: roll back to version 1, and the next call hears the old greeting again.
    click_and_wait(page, page.locator("nav.subnav").get_by_role("link", name="History"))
    rows = page.locator("table.versions tbody tr")
    expect(rows).to_have_count(3)  # versions 2 and 1, then 0: the shipped files
    expect(rows.nth(0).locator("td").nth(3)).to_have_text("friendlier greeting")
    expect(rows.nth(1).locator("td").nth(3)).to_have_text("shorter goodbye")
    expect(page.locator("table.diff tbody tr").locator("td")).to_have_text(
        ["Greeting (Español)", ES_GREETING, new])
    page.get_by_label("Why roll back to version 1").fill("the old greeting tested better")
    click_and_wait(page, page.get_by_role("button", name="Roll back to 1"))
    expect(flash(page)).to_have_text("Rolled back: version 3 is live.")
    expect(rows).to_have_count(4)
    expect(rows.nth(0).locator("td").nth(0)).to_have_text("3 (live)")
    expect(rows.nth(0).locator("td").nth(3)).to_have_text(
        "rollback to version 1: the old greeting tested better")
    assert greeting_within(base, app, ES_GREETING) == ES_GREETING
    goodbye = SimulatedCall(base, app.config["TWILIO_AUTH_TOKEN"]).run(
        [Move("press", "2")]).lines[-1].text
    assert goodbye == "Gracias por llamar. Cuídese."  # version 1 is whole again


def test_history_offers_a_rollback_to_the_shipped_files_after_the_first_publish(
        app, base, page):
    """After the very first publish, the history offers a rollback to version 0, the
    shipped files, so an administrator can undo it from the page."""
    add_user(app, "ana", "admin")
    log_in(page, base, "ana")
    page.goto(base + "/admin/prompts")
    prompt_field(page, "es", "greeting").fill("Línea Ruta. Texto nuevo.")
    click_and_wait(page, page.get_by_role("button", name="Save to draft"))
    page.goto(base + "/admin")
    page.get_by_label("What changed, and why (required)").fill("new greeting")
    click_and_wait(page, page.get_by_role("button", name="Publish"))
    expect(flash(page)).to_have_text("Version 1 is live: callers hear it from their next call.")
    page.goto(base + "/admin/history")
    expect(page.get_by_role("button", name="Roll back to 0")).to_have_count(1, timeout=1000)


# --- 2. try the call -------------------------------------------------------------------------


def test_try_the_call_panel_plays_a_busy_icbf_line_then_the_national_line(
        app, base, page, redis_client):
    """The panel plays the shipped directory: ICBF's toll-free number is busy, so the
    caller hears ICBF's number to call and its fallback, the national line, rings."""
    add_user(app, "ana", "admin")
    log_in(page, base, "ana")
    page.goto(base + "/admin")
    click_and_wait(page, page.locator("nav.subnav").get_by_role("link", name="Try the call"))
    expect(page.locator("h1")).to_have_text("Try the call")
    lines = page.locator("section.transcript li")
    expect(lines.first).to_contain_text(ES_GREETING)
    events = redis_client.xlen(store.EVENTS)

    answers = page.get_by_label("When a hotline is dialled, it")
    expect(answers.locator("option")).to_have_text(
        ["answers", "is a machine that hangs up", "is busy", "does not answer", "fails"])
    answers.select_option(label="is busy")
    keypad = page.get_by_role("group", name="Keypad")
    click_and_wait(page, keypad.get_by_role("button", name="1", exact=True))
    texts = [" ".join(t.split()) for t in lines.all_inner_texts()]
    icbf = next(i for i, t in enumerate(texts) if t.endswith(ICBF))
    assert texts[icbf + 1].startswith("dial +5718000918080 "), texts
    assert texts[icbf + 2] == "hotline busy", texts
    assert texts[icbf + 3].endswith("Puede llamar usted al 1 4 4."), texts
    national = next(i for i, t in enumerate(texts) if t.endswith(NATIONAL))
    assert national > icbf + 3
    assert texts[national + 1].startswith("dial +5718000522020 "), texts
    assert texts[national + 2] == "hotline busy", texts
    expect(page.locator("section.transcript")).to_contain_text(
        "Dialled: +5718000918080, +5718000522020")
    expect(page.locator("section.transcript .stat-line")).to_contain_text(
        "spoken before the transfer started")
    expect(answers).to_have_value("busy")
    assert redis_client.xlen(store.EVENTS) == events  # a preview is not a call
    screenshot(page, "admin-try.png")

    # Hanging up starts again from the greeting.
    click_and_wait(page, page.get_by_role("button", name="Hang up and start again"))
    expect(page.locator("section.transcript")).not_to_contain_text("Dialled")
    expect(lines.first).to_contain_text(ES_GREETING)


# --- 3. a supervisor -------------------------------------------------------------------------


def test_a_supervisor_cannot_reach_the_admin_pages(app, base, page):
    add_user(app, "marta", "supervisor")
    log_in(page, base, "marta")
    expect(page.locator("header .who")).to_have_text("marta · supervisor")
    expect(page.get_by_role("link", name="Reports")).to_be_visible()
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    for path in ("/admin", "/admin/prompts", "/admin/try", "/admin/history"):
        response = page.goto(base + path)
        assert response.status == 403, path
        expect(page.locator("body")).to_contain_text("This page is not for your account")
        expect(page.get_by_role("link", name="Admin")).to_have_count(0)
        expect(page.locator("main textarea, main form")).to_have_count(0)


# --- 5. two administrators at once --------------------------------------------------------


def test_two_administrators_editing_at_once_never_lose_a_change(app, base, browser,
                                                                 redis_client):
    """Ana and Bob, each in their own browser, open the prompts page. Ana saves the
    goodbye; Bob, whose page still shows the old one, saves the greeting: refused, with
    what Ana changed and what he tried, word by word. He opens the page again and saves:
    both changes are in the draft. A publish from a page older than the draft publishes
    nothing. Bob's page counts the spoken seconds as he types."""
    add_user(app, "ana", "admin")
    add_user(app, "bob", "admin")
    contexts = [browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
                for _ in range(2)]
    ana, bob = (ctx.new_page() for ctx in contexts)
    try:
        for person, name in ((ana, "ana"), (bob, "bob")):
            log_in(person, base, name)
            person.goto(base + "/admin/prompts")
        anas = "Gracias por llamar. Que esté bien. Hasta luego."
        prompt_field(ana, "es", "goodbye").fill(anas)
        click_and_wait(ana, ana.get_by_role("button", name="Save to draft"))
        expect(flash(ana)).to_have_text("Draft saved. It is not live until you publish it.")

        bobs = "Línea Ruta. Le escuchamos, es confidencial."
        prompt_field(bob, "es", "greeting").fill(bobs)
        click_and_wait(bob, bob.get_by_role("button", name="Save to draft"))
        expect(bob.locator("h1")).to_have_text("Another administrator changed the draft")
        expect(bob.locator("section.moved")).to_contain_text("Changed since by: ana.")
        theirs = bob.locator("section.theirs table.diff tbody tr")
        expect(theirs.locator("td").first).to_have_text("Goodbye (Español)")
        expect(theirs.locator("del")).to_have_text(["Cuídese mucho."])
        expect(theirs.locator("ins")).to_have_text(["Que esté bien."])
        expect(bob.locator("section.yours table.diff tbody tr td").first).to_have_text(
            "Greeting (Español)")
        assert json.loads(redis_client.get(store.CONFIG_DRAFT))["doc"] == {
            "prompts": {"es": {"goodbye": anas}}}  # Ana's change, whole

        click_and_wait(bob, bob.get_by_role("link", name="Open the page again"))
        expect(prompt_field(bob, "es", "goodbye")).to_have_value(anas)
        prompt_field(bob, "es", "greeting").fill(bobs)
        click_and_wait(bob, bob.get_by_role("button", name="Save to draft"))
        expect(flash(bob)).to_have_text("Draft saved. It is not live until you publish it.")
        assert json.loads(redis_client.get(store.CONFIG_DRAFT))["doc"] == {
            "prompts": {"es": {"goodbye": anas, "greeting": bobs}}}

        # Ana's overview was made before Bob's save: her publish goes nowhere.
        ana.goto(base + "/admin")
        ana.get_by_label("What changed, and why (required)").fill("kinder goodbye")
        prompt_field(bob, "es", "transfer").fill("Un momento.")
        click_and_wait(bob, bob.get_by_role("button", name="Save to draft"))
        click_and_wait(ana, ana.get_by_role("button", name="Publish"))
        expect(ana.locator("h1")).to_have_text("Another administrator changed the draft")
        expect(ana.locator("section.theirs table.diff tbody tr td").first).to_have_text(
            "Before a transfer (Español)")
        assert int(redis_client.get(store.CONFIG_VERSION) or 0) == 0

        # As Bob types, the spoken seconds of each path follow (nothing saved).
        national = bob.locator('tr[data-path="es 5 -> national"] td.seconds')
        expect(national).not_to_contain_text("over the budget")
        prompt_field(bob, "es", "transfer").fill(
            "Le comunico con {hotline}. " + "Por favor siga en la línea. " * 10)
        expect(national).to_contain_text("over the budget")
        assert json.loads(redis_client.get(store.CONFIG_DRAFT))["doc"]["prompts"]["es"][
            "transfer"] == "Un momento."
    finally:
        for ctx in contexts:
            ctx.close()

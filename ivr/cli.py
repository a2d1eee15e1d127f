"""The `ivr` command: run a local service, place simulated calls, check the config."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import click
import redis
from rq import Queue
from twilio.base.exceptions import TwilioException, TwilioRestException

from ivr import caller_keys, key_migration, message, procfile, security, settings, staff, store
from ivr import menu as menu_config
from ivr.caller_keys import KeyEpochs
from ivr.events import Spool
from ivr.sessions import SecurityEvent, Sessions, log_security_event
from ivr.simulator import SimulatedCall, flask_transport, parse_moves
from ivr.staff import StaffAccounts
from ivr.versions import AuditAction, audit
from ivr.vocabulary import BOGOTA

DEV_DIR = Path(os.environ.get("RUTA_DEV_DIR", ".ruta-dev"))


@click.group()
def main():
    """Ruta: route callers to the anti-trafficking hotlines of Colombia."""


# --- ivr config check --------------------------------------------------------------


@main.group()
def config():
    """The menu, hotline directory and prompts."""


@config.command("check")
@click.option("--config-dir", default=str(menu_config.CONFIG_DIR), show_default=True)
@click.option("--prompts-dir", default=str(menu_config.PROMPTS_DIR), show_default=True)
def config_check(config_dir, prompts_dir):
    """Check the configuration; print problems, warnings and spoken seconds per path."""
    try:
        menu = menu_config.load(config_dir, prompts_dir)
    except menu_config.ConfigError as e:
        click.echo(f"{len(e.problems)} problem(s):", err=True)
        for problem in e.problems:
            click.echo(f"  error: {problem}", err=True)
        sys.exit(1)
    click.echo(f"menu ok: {len(menu.nodes)} questions, {len(menu.hotlines)} hotlines, "
               f"languages {', '.join(menu.languages)}")
    for lang in menu.languages:
        voice = menu.voices[lang]
        said = f"voice {voice.voice}" if voice.speaks else "no voice: recordings only"
        heard = "keypad and speech" if voice.listens else "keypad only"
        click.echo(f"  language {lang} (key {voice.key}): {said}, {heard}, "
                   f"{len(menu.recordings.get(lang, {}))} recording(s)")
    click.echo(f"spoken seconds before the transfer, or the number of a line Twilio cannot "
               f"dial (budget {menu.budget_seconds:g} s, {menu.words_per_minute} words a "
               "minute):")
    for path in menu_config.spoken_paths(menu):
        flag = "  OVER BUDGET" if path.seconds > menu.budget_seconds else ""
        click.echo(f"  {path.label:<38} {path.seconds:5.1f} s{flag}")
    for warning in menu.warnings:
        click.echo(f"  warning: {warning}")
    for hotline in menu.hotlines.values():  # the few lines that break the caller's cover
        if hotline.show_caller:
            click.echo(f"  notice: hotline {hotline.id} receives callers' real numbers "
                       "(show_caller = true)")


@main.command("fallback-twiml")
@click.option("--config-dir", default=str(menu_config.CONFIG_DIR), show_default=True)
@click.option("--prompts-dir", default=str(menu_config.PROMPTS_DIR), show_default=True)
@click.option("--live", is_flag=True,
              help="Use the prompts administrators published (needs REDIS_URL).")
def fallback_twiml(config_dir, prompts_dir, live):
    """Print the TwiML for the number's Fallback URL (host it as a TwiML Bin).

    Twilio plays it when our webhooks fail or time out: the default line's number in
    every language, then it hangs up. Run it again after that number changes.
    """
    from ivr import flow, twiml

    if live:
        menu = _live_menu()
    else:
        try:
            menu = menu_config.load(config_dir, prompts_dir)
        except menu_config.ConfigError as e:
            raise click.ClickException("; ".join(e.problems)) from e
    # A TwiML Bin is not on our host: recordings are fetched from PUBLIC_BASE_URL.
    from ivr.voice import AUDIO_PATH

    audio = settings.load()["PUBLIC_BASE_URL"].rstrip("/") + AUDIO_PATH
    click.echo(twiml.render(flow.out_of_service(menu), url_for=lambda _: "", audio_url=audio))


# --- ivr call ------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--url", help="A running Ruta (e.g. http://127.0.0.1:5000); default: in-process.")
@click.option("--token", envvar="TWILIO_AUTH_TOKEN",
              help="The auth token the server checks (default: the running `ivr dev`'s).")
@click.option("--from", "caller", default="+573001234567", show_default=True,
              help='Caller ID Twilio would send ("anonymous" works too).')
@click.pass_context
def call(ctx, url, token, caller):
    """Place a simulated call and print what the caller hears and what is dialed.

    The caller's moves follow, in order, one per question: --press KEY, --say "TEXT",
    --silent. The hotlines answer each transfer in order with --dial-result
    completed|machine|busy|no-answer|failed|canceled (default: completed; machine:
    answers and hangs up at once, as a voicemail does). A caller out of
    moves hangs up at the next question.

    Example: ivr call --press 9 --say "a false job offer" --dial-result busy
    """
    try:
        moves, dial_results = parse_moves(ctx.args)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    if url:
        token = token or _dev_env().get("TWILIO_AUTH_TOKEN")
        if not token:
            raise click.UsageError("--token (or TWILIO_AUTH_TOKEN) is needed to sign requests")
        simulated = SimulatedCall(url, token, caller=caller)
    else:
        from ivr import create_app

        token = secrets.token_hex(16)
        # Signed for our own made-up URL, whatever PUBLIC_BASE_URL this shell exports.
        # Events go to the Redis we know of (they then show in reports), else a temp spool.
        redis_url = os.environ.get("REDIS_URL") or _dev_env().get("REDIS_URL", "")
        app = create_app({"RUTA_ENV": "development", "TWILIO_AUTH_TOKEN": token,
                          "SECRET_KEY": secrets.token_hex(16), "PUBLIC_BASE_URL": "",
                          "REDIS_URL": redis_url,
                          "RUTA_SPOOL_DIR": os.environ.get("RUTA_SPOOL_DIR")
                          or tempfile.mkdtemp(prefix="ruta-call-spool-")})
        url = "http://ruta.local"
        simulated = SimulatedCall(url, token, transport=flask_transport(app), caller=caller)
    transcript = simulated.run(moves, dial_results, on_line=lambda line: click.echo(str(line)))
    click.echo(f"  (call {transcript.call_sid}: {transcript.requests} webhook requests, "
               f"dialed {', '.join(transcript.dialed) or 'nothing'})")


# --- ivr dev -------------------------------------------------------------------------


@main.command()
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
def dev(port, host):
    """Run web + worker (+ an embedded Redis when REDIS_URL is unset) on this machine."""
    from ivr.redis_server import RedisServer

    env = dict(os.environ, RUTA_ENV="development")
    env.setdefault("RUTA_SPOOL_DIR", str(DEV_DIR / "spool"))  # shared by web and worker
    # gunicorn's workers keep their Prometheus counters here; /metrics sums them all.
    metrics_dir = (DEV_DIR / "metrics").resolve()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    for name in ("TWILIO_AUTH_TOKEN", "SECRET_KEY", "CALLER_ID_KEY"):
        if not env.get(name):
            env[name] = secrets.token_hex(16)
            click.echo(f"throwaway {name}={env[name]}")
    redis_server = None
    if not env.get("REDIS_URL"):
        redis_server = RedisServer(DEV_DIR / "redis", persist=True).start()
        env["REDIS_URL"] = redis_server.url
        click.echo(f"embedded Redis at {redis_server.url} (data in {DEV_DIR / 'redis'})")
    # The Procfile's web, worker and cron, started here rather than at the repository's root:
    # relative paths in this shell's environment keep their meaning.
    lines = procfile.commands(env | {"PORT": str(port)}, host=host)
    # The caller ID key is the web's alone: the worker never needs it (ivr.caller_keys).
    worker_env = {k: v for k, v in env.items() if k != "CALLER_ID_KEY"}
    children = [procfile.start(lines["web"], env, cwd=None),
                procfile.start(lines["worker"], worker_env, cwd=None),
                *([procfile.start(lines["cron"], worker_env, cwd=None)] if "cron" in lines
                  else [])]
    base = f"http://{host}:{port}"
    DEV_DIR.mkdir(exist_ok=True)
    (DEV_DIR / "env").write_text(
        "".join(f"{k}={env[k]}\n" for k in ("REDIS_URL", "TWILIO_AUTH_TOKEN")))
    click.echo(f"\nRuta is running at {base}  (Twilio's Voice URL would be {base}/voice)")
    click.echo("Place a simulated call from another terminal:")
    click.echo(f"  .venv/bin/ivr call --url {base} --press 2 --dial-result busy")
    click.echo("and see it counted:\n  .venv/bin/ivr report")
    click.echo(f"Health, readiness and metrics: {base}/healthz  {base}/readyz  {base}/metrics")
    click.echo(f"Reports and admin pages: add yourself with\n  .venv/bin/ivr users add NAME "
               f"--role admin\nthen log in at {base}/login")
    click.echo("Stop with Ctrl-C.\n")

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        click.echo("a process stopped; shutting down", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        procfile.stop_processes(*children)
        if redis_server:
            redis_server.stop()
        (DEV_DIR / "env").unlink(missing_ok=True)


def _dev_env() -> dict[str, str]:
    """REDIS_URL and TWILIO_AUTH_TOKEN of a running `ivr dev`, if any."""
    path = DEV_DIR / "env"
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _redis():
    """A decoding client on REDIS_URL, or on the running `ivr dev`'s Redis."""
    from ivr import redis_url

    url = os.environ.get("REDIS_URL") or _dev_env().get("REDIS_URL")
    if not url:
        raise click.UsageError("set REDIS_URL (or start `ivr dev`, whose Redis is used)")
    return redis_url.connect(url, decode_responses=True)


# --- ivr report ----------------------------------------------------------------------


@main.command()
@click.option("--day", help="One day, YYYY-MM-DD (America/Bogota).")
@click.option("--from", "start", help="First day, YYYY-MM-DD.")
@click.option("--to", "end", help="Last day, YYYY-MM-DD (default: today).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="table and json: the summary; csv: every call.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--lang", type=click.Choice(message.LANGUAGES), default=None,
              help="The table's language (default: the environment's locale, LC_ALL, "
                   "LC_MESSAGES or LANG; Spanish unless it is English). The csv and json "
                   "formats are for scripts: always the same ids.")
def report(day, start, end, fmt, as_json, lang):
    """Calls of a day or range (default: today): the numbers supervisors see."""
    from ivr import exports, i18n
    from ivr.reports import build_summary, call_row
    from ivr.summary import RangeError, parse_range

    if day:
        start = end = day
    try:
        days = parse_range(start, end, None if (start or end) else "today")
    except RangeError as e:
        raise click.UsageError(str(e)) from e
    s = store.Store(_redis())
    fmt = "json" if as_json else fmt
    if fmt == "csv":
        epochs = KeyEpochs.read(s.r)
        rows = (call_row(record, epochs) for record in s.iter_calls(days))
        for piece in exports.write(exports.Form.DATA, exports.CALL_COLUMNS, rows):
            sys.stdout.write(piece)
        return
    config = settings.load()
    menu = menu_config.load(config["RUTA_CONFIG_DIR"], config["RUTA_PROMPTS_DIR"])
    summary = build_summary(s, menu, days, float(config["RUTA_HEALTH_FAILED_SHARE"]))
    if fmt == "json":
        click.echo(json.dumps(summary.to_dict(), indent=2, sort_keys=True))
        return
    from ivr.reports import day_span

    changes = KeyEpochs.read(s.r).changes_between(*day_span(days))
    _print_report(summary, menu, days, lang or i18n.environment_language(), changes)


def _print_report(summary, menu, days: list[str], lang: str, key_changes=()) -> None:
    """`ivr report`'s table, in `lang` from the staff pages' catalogue and with their
    names and forms (ivr.i18n): "Niños", "Línea del ICBF…", "1.234", "87,7 %"."""
    from ivr import i18n

    _ = i18n.catalogue(lang).gettext
    # Every count said with its plural form ("1 llamada", "2 llamadas"; Spanish verbs
    # agree with it too): `num` is the count as the reader writes it.
    ngettext = i18n.catalogue(lang).ngettext

    def number(n) -> str:
        return i18n.number(n, lang)

    def share(pct) -> str:  # the summary's percentages: 87.7 -> "87,7 %" in Spanish
        return i18n.percent(pct, lang=lang)

    head = summary.headline()
    first, last = i18n.day(days[0], lang), i18n.day(days[-1], lang)
    span = first if len(days) == 1 else _("%(first)s to %(last)s") % {
        "first": first, "last": last}
    click.echo(ngettext("%(span)s (America/Bogota): %(num)s call",
                        "%(span)s (America/Bogota): %(num)s calls", summary.calls) % {
        "span": span, "num": number(summary.calls)})
    if not summary.calls:
        click.echo(_("No calls yet — place one with `ivr call`."))
        return
    reached, never = head["reached_person"], head["never_reached_person"]
    hung_up, attempts = head["hung_up_in_menu"], head["attempts"]
    click.echo("  " + ", ".join([
        ngettext("%(num)s reached a person (%(share)s)",
                 "%(num)s reached a person (%(share)s)", reached) % {
            "num": number(reached), "share": share(head["reached_person_pct"])},
        ngettext("%(num)s never reached a person (%(share)s)",
                 "%(num)s never reached a person (%(share)s)", never) % {
            "num": number(never), "share": share(head["never_reached_person_pct"])},
        ngettext("%(num)s hung up in the menu (%(share)s)",
                 "%(num)s hung up in the menu (%(share)s)", hung_up) % {
            "num": number(hung_up), "share": share(head["hung_up_in_menu_pct"])}]))
    click.echo("  " + ngettext(
        "%(num)s transfer attempt: %(not_connected)s not connected (%(share)s)",
        "%(num)s transfer attempts: %(not_connected)s not connected (%(share)s)", attempts) % {
        "num": number(attempts),
        "not_connected": number(head["attempts_not_connected"]),
        "share": share(head["attempts_not_connected_pct"])})
    groups = {
        _("by category:"): {i18n.category_name(c, _): sum(v)
                            for c, v in summary.categories.items()},
        _("by language:"): {i18n.LANGUAGE_NAMES.get(code, code): n
                            for code, n in summary.languages.items()},
        _("by outcome:"): {i18n.outcome_name(o, _): n for o, n in summary.outcomes.items()},
        _("by question where they hung up:"): {
            i18n.question_name(q, _): h for q, _n, h in summary.funnel if h},
    }
    for title, counts in groups.items():
        click.echo(f"  {title}")
        width = max(map(len, counts), default=0) + 2
        for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            click.echo(f"    {name:<{width}}{number(n):>6}")
    click.echo("  " + _("transfers by hotline (dial results):"))
    no_result = _("no result yet")
    names = {row.hotline: i18n.hotline_name(row.hotline, menu, lang) for row in summary.hotlines}
    width = max(map(len, names.values()), default=0) + 2
    for row in summary.hotlines:
        results: dict[str, int] = {}  # by name: "answered" stands for several statuses
        for status, n in sorted(row.results.items()):
            name = i18n.dial_result_name(status, _)
            results[name] = results.get(name, 0) + n
        said = ", ".join(f"{name} {number(n)}" for name, n in results.items())
        click.echo(f"    {names[row.hotline]:<{width}}{number(row.transfers):>6}"
                   f"  ({said or no_result})")
    for change in key_changes:  # as the dashboard says it
        click.echo("  " + _(
            "Caller pseudonyms changed on %(when)s: calls before then are not matched with "
            "later ones, so a caller heard on both sides counts as two callers and this "
            "range's repeat calls are undercounted.") % {
            "when": _local_time(change.since.timestamp())})


def _line_test_detail(menu, hotline: str, number: str, result: str) -> message.Message:
    """An audit entry's "ICBF child protection line +57…: busy": the directory's name
    and the result in the reader's language."""
    from ivr import i18n
    from ivr.summary import LINE_TEST_WORDS

    name = message.InLanguages({lang: i18n.hotline_name(hotline, menu, lang)
                                for lang in message.LANGUAGES})
    return message.Message(message.N_("%(hotline)s %(number)s: %(result)s"), {
        "hotline": name, "number": number,
        "result": message.Message(LINE_TEST_WORDS.get(result, result))})


# --- ivr spool, ivr jobs, ivr events, ivr redis ----------------------------------------


@main.group()
def spool():
    """Events kept on disk while Redis was down."""


@spool.command("status")
def spool_status():
    """How many events wait in the spool."""
    folder = settings.load()["RUTA_SPOOL_DIR"]
    click.echo(f"{Spool(folder).size()} events waiting in {folder}")


@spool.command("replay")
def spool_replay():
    """Send the spooled events to Redis now (the worker also does it on its own)."""
    r = _redis()
    moved = Spool(settings.load()["RUTA_SPOOL_DIR"]).replay(r, Queue(store.QUEUE, connection=r))
    click.echo(f"replayed {moved} events")


@main.group()
def jobs():
    """RQ jobs that write events: the failed ones."""


@jobs.command("failed")
def jobs_failed():
    """List jobs that failed after their retries (their events are still waiting)."""
    r = _redis()
    queue = Queue(store.QUEUE, connection=r)
    ids = queue.failed_job_registry.get_job_ids()
    backlog = store.Store(r).backlog()
    click.echo(f"{len(ids)} failed job(s); {backlog['waiting']} events waiting to be written")
    for job in queue.job_class.fetch_many(ids, connection=r):
        if job:
            result = job.latest_result()
            error = (result.exc_string or "").strip().splitlines()[-1:] if result else []
            click.echo(f"  {job.id}  {job.func_name}  {error[0] if error else ''}")


@jobs.command("requeue")
def jobs_requeue():
    """Run every failed job again."""
    queue = Queue(store.QUEUE, connection=_redis())
    ids = queue.failed_job_registry.get_job_ids()
    for job_id in ids:
        queue.failed_job_registry.requeue(job_id)
    click.echo(f"requeued {len(ids)} job(s)")


@main.group("events")
def events_group():
    """The event stream."""


@events_group.command("dead")
@click.option("--count", default=20, show_default=True)
def events_dead(count):
    """Entries that could not be written, with the reason (newest first)."""
    entries = store.Store(_redis()).dead_letters(count)
    click.echo(f"{len(entries)} dead letter(s)")
    for _, fields in entries:  # "entry": the id it had in the events stream
        click.echo(f"  {fields.get('entry', '')}  {fields.get('reason', '')}: "
                   f"{fields.get('e', '')[:120]}")


@main.group("redis")
def redis_group():
    """Ruta's keys in Redis."""


@redis_group.command("migrate-keys")
def redis_migrate_keys():
    """Rename keys of the layout before the cluster hash tag (ruta:*) to {ruta}:*.

    Run once, with web and workers stopped, on a Redis that holds data written before
    the upgrade; nothing is deleted."""
    renamed, left = key_migration.migrate_legacy_keys(_redis())
    click.echo(f"renamed {renamed} key(s) from {key_migration.LEGACY_PREFIX}* to {store.PREFIX}*")
    if left:
        click.echo(f"{len(left)} key(s) left as they were: the new name is taken "
                   f"(e.g. {', '.join(left[:5])})", err=True)
        sys.exit(1)


@redis_group.command("forget-typed-logins")
def redis_forget_typed_logins():
    """Remove the failed logins older versions kept in the audit log with the name typed.

    The web does it on its first start after the upgrade; this does it now. Safe to run
    again."""
    removed = key_migration.forget_typed_failed_logins(_redis(), _operator())
    click.echo(f"removed {removed} failed login(s) that kept the typed name from the audit log")


# --- ivr caller-key ----------------------------------------------------------------------


@main.group("caller-key")
def caller_key_group():
    """CALLER_ID_KEY, the key of callers' pseudonyms (held by the web processes only)."""


@caller_key_group.command("rotate")
def caller_key_rotate():
    """Make a new CALLER_ID_KEY and print it once, for the web processes' environment.

    Nothing changes until the web runs with it: from its first use new calls get new
    pseudonyms, old ones stay as they are, and the reports say from when (a caller heard
    on both sides counts as two). Redis keeps the key's fingerprint, never the key."""
    key = secrets.token_hex(32)
    fingerprint = caller_keys.fingerprint(key.encode())
    audit(_redis(), _operator(), AuditAction.CALLER_KEY_MADE, fingerprint)
    click.echo(key)
    click.echo(f"fingerprint {fingerprint}. Shown once, kept nowhere: set it as "
               "CALLER_ID_KEY on every web process (not the worker) and restart them "
               "(docs/deploy.md, Rotating the caller ID key).", err=True)


@caller_key_group.command("history")
def caller_key_history():
    """Each key used so far, by fingerprint, and from when (Bogotá time)."""
    epochs = KeyEpochs.read(_redis()).epochs
    if not epochs:
        click.echo("no key recorded yet: the web records its key at its first start")
    for n, epoch in enumerate(epochs):
        newest = "  (newest)" if n == len(epochs) - 1 else ""
        click.echo(f"{epoch.fingerprint}  in use since {epoch.since:%Y-%m-%d %H:%M:%S}{newest}")


# --- ivr users, ivr tokens -------------------------------------------------------------


def _accounts() -> StaffAccounts:
    return StaffAccounts(_redis())


def _operator() -> str:
    """Who ran an `ivr` command, for the audit log."""
    return f"cli:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'unknown'}"


@main.group()
def users():
    """Staff accounts: supervisors read reports, admins also change the menu."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(security.ROLES), required=True)
@click.option("--lang", type=click.Choice(message.LANGUAGES), default=message.DEFAULT_LANGUAGE,
              show_default=True, help="The language of their pages (they can change it).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def users_add(name, role, lang, password_stdin):
    """Add a staff account (`ivr users password` and `ivr users role` change one)."""
    if not re.fullmatch(r"[\w.@-]{1,64}", name):
        raise click.UsageError("NAME: letters, digits, . @ _ - (at most 64)")
    if _accounts().user(name):
        raise click.ClickException(f"user {name} exists: `ivr users password {name}` changes "
                                   f"the password, `ivr users role {name}` the role")
    password = _new_password(password_stdin)
    s = _accounts()
    s.save_user(name, role, security.hash_password(password), lang)
    audit(s.r, _operator(), AuditAction.USER_SAVED, _account_detail(name, role))
    click.echo(f"user {name} saved with role {role}")


def _account_detail(name: str, role: str) -> message.Message:
    """An audit entry's "ana (administrator)", the role said in the reader's language."""
    from ivr.i18n import ROLE_NAMES

    return message.Message(message.N_("%(name)s (%(role)s)"), {
        "name": name, "role": message.Message(ROLE_NAMES.get(role, role))})


@users.command("list")
def users_list():
    """Every staff account, its role and its language; "two-step": signs in with a code."""
    found = _accounts().users()
    if not found:
        click.echo("no users yet: add one with `ivr users add NAME --role admin`")
    for name, fields in found:
        click.echo(f"{name:<24}{fields.get('role', '?'):<12}{staff.language_of(fields):<4}"
                   f"since {fields.get('created', '?')}"
                   + ("  two-step" if staff.has_two_factor(fields) else ""))


@users.command("remove")
@click.argument("name")
def users_remove(name):
    """Remove a staff account; its sessions end at once."""
    s = _accounts()
    if not s.remove_user(name):
        raise click.ClickException(f"no user named {name}")
    audit(s.r, _operator(), AuditAction.USER_REMOVED, name)
    click.echo(f"user {name} removed")


def _new_password(from_stdin: bool) -> str:
    """A password typed twice, or read from stdin (one line): 10 characters or more."""
    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 10:
        raise click.UsageError("the password must have at least 10 characters")
    return password


@users.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def users_password(name, password_stdin):
    """Change a staff account's password; its sessions end at once."""
    password = _new_password(password_stdin)
    s = _accounts()
    if not s.set_password(name, security.hash_password(password)):
        raise click.ClickException(f"no user named {name}")
    audit(s.r, _operator(), AuditAction.PASSWORD_CHANGED, name)
    click.echo(f"password of {name} changed; their sessions are ended")


@users.command("role")
@click.argument("name")
@click.option("--role", type=click.Choice(security.ROLES), required=True)
def users_role(name, role):
    """Change a staff account's role; its sessions end at once."""
    s = _accounts()
    if not s.set_role(name, role):
        raise click.ClickException(f"no user named {name}")
    audit(s.r, _operator(), AuditAction.ROLE_CHANGED, _account_detail(name, role))
    click.echo(f"user {name} now has role {role}; their sessions are ended")


@users.command("sessions")
@click.argument("name")
def users_sessions(name):
    """A staff member's open sessions: since when, last used, address and browser."""
    found = _sessions().of_user(name)
    if not found:
        click.echo(f"no open sessions for {name}")
    for s in found:
        click.echo(f"{s.handle[:12]}  since {_local_time(s.created)}  last used "
                   f"{_local_time(s.seen)}  {s.address:<15}  {s.agent[:60]}")


@users.command("revoke")
@click.argument("name")
def users_revoke(name):
    """End every session of a staff member at once (they must log in again)."""
    sessions = _sessions()
    ended = sessions.end_all(name)
    log_security_event(sessions.r, SecurityEvent.SESSIONS_ENDED, _operator(),
                       f"{name}: {ended}")
    click.echo(f"{ended} session(s) of {name} ended")


@users.command("totp-reset")
@click.argument("name")
def users_totp_reset(name):
    """Turn off a staff member's two-step sign-in (a lost phone, no recovery code left):
    their sessions end; they sign in with their password and set it up again."""
    s = _accounts()
    if not s.turn_off_two_factor(name):
        raise click.ClickException(f"no user named {name}")
    log_security_event(s.r, SecurityEvent.TWO_FACTOR_RESET, _operator(), name)
    click.echo(f"two-step sign-in of {name} reset; their sessions are ended")
    # Whoever sets up two-step sign-in first owns the account: a reset without a new
    # password lets anyone who knew the old one get there first (docs/deploy.md).
    click.echo(f"give {name} a new password too: ivr users password {name}")


def _sessions() -> Sessions:
    config = settings.load()
    return Sessions(_redis(), timedelta(hours=int(config["RUTA_SESSION_HOURS"])),
                    timedelta(minutes=int(config["RUTA_SESSION_IDLE_MINUTES"])))


def _local_time(unix: float) -> str:
    return f"{datetime.fromtimestamp(unix, BOGOTA):%Y-%m-%d %H:%M}"


@main.group()
def tokens():
    """API tokens for /api/reports/* (sent as Authorization: Bearer TOKEN)."""


@tokens.command("add")
@click.argument("name")
def tokens_add(name):
    """Create a read-only reports token; it is printed once and not kept in clear."""
    token, token_hash = security.new_api_token()
    s = _accounts()
    s.remove_token(name)
    s.save_token(name, "supervisor", token_hash)
    audit(s.r, _operator(), AuditAction.TOKEN_CREATED, name)
    click.echo(token)


@tokens.command("list")
def tokens_list():
    for name in _accounts().tokens():
        click.echo(name)


@tokens.command("remove")
@click.argument("name")
def tokens_remove(name):
    s = _accounts()
    if not s.remove_token(name):
        raise click.ClickException(f"no token named {name}")
    audit(s.r, _operator(), AuditAction.TOKEN_REMOVED, name)
    click.echo(f"token {name} removed")


# --- ivr prompts: the admin page's draft / publish / history, as files ---------------------


def _versions():
    from ivr.versions import ConfigVersions

    config = settings.load()
    shipped = menu_config.read_shipped(config["RUTA_CONFIG_DIR"], config["RUTA_PROMPTS_DIR"])
    return ConfigVersions(_redis(), shipped, settings.two_person_rule(config))


def _live_menu():
    """The menu callers get now: the newest published version (needs Redis)."""
    v = _versions()
    try:
        menu, problems = v.check(v.document(v.latest()))
    except redis.RedisError as e:
        raise click.ClickException(f"Redis (REDIS_URL) cannot be reached: {e}") from e
    if menu is None:
        raise click.ClickException("the live version does not check: " + "; ".join(problems))
    return menu


@main.group()
def prompts():
    """Prompts as files, so a change can be reviewed in a pull request."""


@prompts.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
def prompts_export(directory):
    """Write the live prompts to DIRECTORY/<language>.toml."""
    v = _versions()
    doc = v.document(v.latest())
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for lang, texts in v.shipped.prompts.items():
        merged = {**texts, **(doc.get("prompts", {}).get(lang) or {})}
        # A JSON string is a valid TOML basic string: no TOML writer needed.
        body = "".join(f"{key} = {json.dumps(text, ensure_ascii=False)}\n"
                       for key, text in sorted(merged.items()))
        (folder / f"{lang}.toml").write_text(
            f"# Ruta prompts ({lang}), version {v.latest()}\n{body}", encoding="utf-8")
    click.echo(f"wrote version {v.latest()}'s prompts to {folder}")


@prompts.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def prompts_import(directory):
    """Put the prompts of DIRECTORY/<language>.toml into the draft (not live yet)."""
    import tomllib

    from ivr.versions import PublishError

    v = _versions()
    seen = v.revision()  # the draft these files are laid over: refused if it moves meanwhile
    texts: dict[str, dict[str, str]] = {}
    for lang, shipped in v.shipped.prompts.items():
        path = Path(directory) / f"{lang}.toml"
        if not path.exists():
            continue
        try:
            found = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise click.ClickException(f"{path}: not valid TOML: {e}") from e
        texts[lang] = {k: str(t) for k, t in found.items() if str(t) != shipped.get(k)}
    doc = {**v.draft_or_live(), "prompts": texts}
    try:
        v.save_draft(doc, _operator(), seen)
    except PublishError as e:
        raise click.ClickException(f"not saved: {e}") from e
    _, problems = v.check(doc)
    click.echo(f"draft saved from {directory}")
    for problem in problems:
        click.echo(f"  error: {problem}", err=True)
    if problems:
        click.echo("fix these before `ivr prompts publish`", err=True)
    why = v.approval_reasons(doc)
    if why:  # the draft holds hotline edits made on /admin
        _needs_approval_on_admin(why, "the draft cannot be published from here")


def _needs_approval_on_admin(why: list[str], what: str) -> None:
    """Say why a second administrator must approve, and where (a person logged in on
    /admin, never a shell user, so that the two people are two staff accounts)."""
    for reason in why:
        click.echo(f"  needs approval: {reason}", err=True)
    click.echo(f"{what}: a second administrator must approve it on /admin (ask for "
               "approval there; another administrator approves it)", err=True)


@prompts.command("publish")
@click.option("--note", required=True, help="What changed, and why.")
def prompts_publish(note):
    """Publish the draft (checked exactly as the admin page does)."""
    from ivr.versions import PublishError

    v = _versions()
    draft = v.draft()
    why = v.approval_reasons(draft["doc"]) if draft else []
    if why:  # refused alone, whatever RUTA_TWO_PERSON_RULE says; the draft is kept
        _needs_approval_on_admin(why, "not published")
        sys.exit(1)
    try:
        number = v.publish(_operator(), note)
    except PublishError as e:
        for problem in e.problems:
            click.echo(f"  error: {problem}", err=True)
        raise click.ClickException("not published") from e
    click.echo("waiting for a second admin's approval" if number is None
               else f"version {number} is live")


@prompts.command("history")
def prompts_history():
    """Every published version, newest first."""
    v = _versions()
    found = v.history()
    if not found:
        click.echo("nothing published: callers hear the shipped files (version 0)")
    latest = v.latest()
    for ver in found:
        live = " (live)" if ver.number == latest else ""
        click.echo(f"{ver.number:>4}{live:<7} {ver.at}  {ver.author:<16} {ver.note}")


@prompts.command("rollback")
@click.argument("number", type=int)
@click.option("--note", required=True, help="Why.")
def prompts_rollback(number, note):
    """Make version NUMBER live again (as a new version)."""
    from ivr.versions import PublishError

    v = _versions()
    try:
        why = v.approval_reasons(v.document(number))
    except KeyError:
        why = []  # no such version: rollback() says so
    if why:
        _needs_approval_on_admin(why, "not rolled back")
        sys.exit(1)
    try:
        new = v.rollback(number, _operator(), note)
    except PublishError as e:
        for problem in e.problems:
            click.echo(f"  error: {problem}", err=True)
        raise click.ClickException("not rolled back") from e
    click.echo("waiting for a second admin's approval" if new is None
               else f"version {new} is live (a copy of version {number})")


# --- ivr twilio: go-live against Twilio's REST API ------------------------------------------


@main.group("twilio")
def twilio_group():
    """Point our Twilio number at Ruta, check it, and prove each hotline answers.

    Credentials: TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN, or with an API key
    (TWILIO_API_KEY, TWILIO_API_SECRET).
    """


def _twilio_client():
    """twilio's Client from the environment, or exit 2 saying what is missing."""
    from ivr import twilio_account

    try:
        return twilio_account.client_from_env()
    except twilio_account.MissingCredentials as e:
        click.echo(f"Error: Twilio credentials: {e}", err=True)
        sys.exit(2)


def _expected(fallback_url):
    from ivr import twilio_account

    try:
        return twilio_account.expected_config(settings.load()["PUBLIC_BASE_URL"], fallback_url)
    except twilio_account.GoLiveError as e:
        raise click.ClickException(str(e)) from e


def _twilio_error(e: Exception) -> str:
    """An error for a person: Twilio's code and message when Twilio refused."""
    if isinstance(e, TwilioRestException):
        return f"Twilio refused ({e.code}): {e.msg}"
    if isinstance(e, TwilioException) and "HTTP 401" in str(e):  # a list() page refused
        return ("Twilio refused the credentials (HTTP 401, error 20003): check "
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and "
                "TWILIO_API_SECRET")
    return str(e)


NUMBER_HELP = "Our Twilio number, E.164 (+57...)."
FALLBACK_HELP = "The URL of the TwiML Bin holding `ivr fallback-twiml`'s output."


@twilio_group.command("connect")
@click.option("--number", required=True, help=NUMBER_HELP)
@click.option("--fallback-url", required=True, help=FALLBACK_HELP)
@click.option("--dry-run", is_flag=True, help="Print each field's current and new value only.")
def twilio_connect(number, fallback_url, dry_run):
    """Set the number's Voice URL, status callback and Fallback URL (from PUBLIC_BASE_URL)."""
    from ivr import twilio_account

    expected = _expected(fallback_url)
    client = _twilio_client()
    try:
        sid, before = twilio_account.connect(client, number, expected, dry_run)
    except (twilio_account.GoLiveError, TwilioException) as e:
        raise click.ClickException(_twilio_error(e)) from e
    click.echo(f"{number} ({sid}):")
    for f in before:
        click.echo(f"  {f.name:<24}{f.found or '(empty)'}  ->  {f.expected}"
                   + ("  (unchanged)" if f.ok else ""))
    changed = sum(not f.ok for f in before)
    if dry_run:
        click.echo(f"dry run: nothing changed ({changed} field(s) would change)")
    else:
        click.echo(f"updated: {changed} field(s) changed. Check it with "
                   f"`ivr twilio check --number {number} --fallback-url {fallback_url}`")


@twilio_group.command("check")
@click.option("--number", required=True, help=NUMBER_HELP)
@click.option("--fallback-url", help=FALLBACK_HELP + " Without it, any https URL is accepted.")
def twilio_check(number, fallback_url):
    """Read the number's voice settings back: each ok or MISMATCH; exit 1 on any mismatch."""
    from ivr import twilio_account

    expected = _expected(fallback_url or twilio_account.ANY_URL)
    client = _twilio_client()
    try:
        fields = twilio_account.check(client, number, expected)
    except (twilio_account.GoLiveError, TwilioException) as e:
        raise click.ClickException(_twilio_error(e)) from e
    for f in fields:
        if f.ok:
            click.echo(f"  ok        {f.name:<24}{f.found}")
        else:
            click.echo(f"  MISMATCH  {f.name:<24}expected {f.expected_text()}, "
                       f"found {f.found or '(empty)'}")
    bad = [f.name for f in fields if not f.ok]
    if bad:
        click.echo(f"{number}: {len(bad)} field(s) wrong; fix with `ivr twilio connect`",
                   err=True)
        sys.exit(1)
    click.echo(f"{number}: every voice setting points at Ruta")


@twilio_group.command("test-line")
@click.argument("hotline")
@click.option("--target", default=1, show_default=True,
              help="Which of the hotline's dial targets, 1 = the first.")
@click.option("--yes", is_flag=True,
              help="Place the call: it rings a real hotline (agree it with its owner first).")
@click.option("--wait", default=90.0, show_default=True,
              help="Seconds to wait for the call's final status.")
@click.option("--poll-every", default=2.0, show_default=True,
              help="Seconds between two looks at the call's status.")
def twilio_test_line(hotline, target, yes, wait, poll_every):
    """Place a real test call from RUTA_CALLER_ID to one dial target of HOTLINE (live
    menu) and print what Twilio reports: answered, busy, no-answer, failed or an error.

    The line hears, in Spanish, twice, that this is a connection test needing no action;
    then we hang up. The result shows on the supervisors' health strip.
    """
    from datetime import datetime

    from ivr import twilio_account
    from ivr.vocabulary import BOGOTA

    menu = _live_menu()
    line = menu.hotlines.get(hotline)
    if line is None:
        raise click.UsageError(f"no hotline {hotline!r}; hotlines: {', '.join(menu.hotlines)}")
    if not line.dial:
        click.echo(f"{hotline} has no dial target yet: callers are told to call {line.say} "
                   "themselves and are connected to its fallback. Give it an E.164 number or "
                   "a SIP route agreed with the line's owner (config/hotlines.toml or "
                   "/admin/hotlines), then test it.", err=True)
        sys.exit(1)
    if not 1 <= target <= len(line.dial):
        raise click.UsageError(f"{hotline} has {len(line.dial)} dial target(s): "
                               f"--target 1 to {len(line.dial)}")
    number = line.dial[target - 1]
    try:
        twilio_account.check_target(number)
        from_number = twilio_account.caller_id(settings.load()["RUTA_CALLER_ID"])
    except twilio_account.GoLiveError as e:
        raise click.ClickException(str(e)) from e
    if not yes:
        raise click.ClickException(
            f"this rings a real hotline: {hotline} target {target} ({number}) from "
            f"{from_number}. Agree it with the line's owner, then add --yes.")
    client = _twilio_client()
    voice = menu.voices[menu.languages[0]]
    click.echo(f"calling {hotline} target {target} ({number}) from {from_number}...")
    test = twilio_account.place_test_call(client, number, from_number,
                                          twilio_account.line_test_twiml(voice),
                                          every=poll_every, limit=wait)
    match test.result:
        case "answered":
            seconds = f", {test.duration} s" if test.duration is not None else ""
            said = f"answered (completed{seconds})"
        case "error":
            said = f"error {test.error}"
        case "unknown":
            said = (f"no final status after {wait:g} s (last: {test.status or 'none'}); "
                    f"see call {test.call_sid} in Twilio's console")
        case _:
            said = test.result
    click.echo(f"{hotline} target {target} ({number}): {said}")
    s = store.Store(_redis())
    s.record_line_test(hotline, number, test.result, datetime.now(BOGOTA), test.error)
    audit(s.r, _operator(), AuditAction.LINE_TEST, _line_test_detail(menu, hotline, number,
                                                                     test.result))
    if test.result != "answered":
        sys.exit(1)

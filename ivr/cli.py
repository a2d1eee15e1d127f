"""The `ivr` command: run a local service, place simulated calls, check the config."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import click
from rq import Queue

from ivr import menu as menu_config
from ivr import settings, store
from ivr.events import Spool
from ivr.simulator import SimulatedCall, flask_transport, parse_moves

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
    click.echo(f"spoken seconds before the transfer (budget {menu.budget_seconds:g} s, "
               f"{menu.words_per_minute} words a minute):")
    for path in menu_config.spoken_paths(menu):
        flag = "  OVER BUDGET" if path.seconds > menu.budget_seconds else ""
        click.echo(f"  {path.label:<28} {path.seconds:5.1f} s{flag}")
    for warning in menu.warnings:
        click.echo(f"  warning: {warning}")


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
    completed|busy|no-answer|failed|canceled (default: completed). A caller out of
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
    for name in ("TWILIO_AUTH_TOKEN", "SECRET_KEY"):
        if not env.get(name):
            env[name] = secrets.token_hex(16)
            click.echo(f"throwaway {name}={env[name]}")
    redis_server = None
    if not env.get("REDIS_URL"):
        redis_server = RedisServer(DEV_DIR / "redis", persist=True).start()
        env["REDIS_URL"] = redis_server.url
        click.echo(f"embedded Redis at {redis_server.url} (data in {DEV_DIR / 'redis'})")
    bin_dir = Path(sys.executable).parent
    children = [
        subprocess.Popen([_tool(bin_dir, "gunicorn"), "--bind", f"{host}:{port}",
                          "--workers", "2", "--timeout", "10", "ivr:create_app()"], env=env),
        subprocess.Popen([_tool(bin_dir, "rq"), "worker", "--worker-class",
                          "workers.worker.RutaWorker", "--url", env["REDIS_URL"], store.QUEUE],
                         env=env),
    ]
    base = f"http://{host}:{port}"
    DEV_DIR.mkdir(exist_ok=True)
    (DEV_DIR / "env").write_text(
        "".join(f"{k}={env[k]}\n" for k in ("REDIS_URL", "TWILIO_AUTH_TOKEN")))
    click.echo(f"\nRuta is running at {base}  (Twilio's Voice URL would be {base}/voice)")
    click.echo("Place a simulated call from another terminal:")
    click.echo(f"  .venv/bin/ivr call --url {base} --press 2 --dial-result busy")
    click.echo("and see it counted:\n  .venv/bin/ivr report")
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
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
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
    import redis

    url = os.environ.get("REDIS_URL") or _dev_env().get("REDIS_URL")
    if not url:
        raise click.UsageError("set REDIS_URL (or start `ivr dev`, whose Redis is used)")
    return redis.Redis.from_url(url, decode_responses=True)


# --- ivr report ----------------------------------------------------------------------


@main.command()
@click.option("--day", help="YYYY-MM-DD in America/Bogota (default: today).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def report(day, as_json):
    """A day's totals: calls by category, language, outcome and hotline."""
    from ivr.outcomes import day_of

    day = day or day_of(time.time())
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError as e:
        raise click.UsageError(f"--day must look like 2026-01-31, got {day!r}") from e
    totals = day_totals(store.Store(_redis()).day_counters(day))
    if as_json:
        click.echo(json.dumps({"day": day, **totals}, indent=2, sort_keys=True))
        return
    click.echo(f"{day} (America/Bogota): {totals['calls']} calls")
    if not totals["calls"]:
        click.echo("No calls yet — place one with `ivr call`.")
    for group in ("category", "lang", "outcome", "hangup"):
        click.echo(f"  by {group}:")
        for name, n in sorted(totals[group].items(), key=lambda kv: -kv[1]):
            click.echo(f"    {name:<24}{n:>6}")
    click.echo("  transfers by hotline (dial results):")
    for hotline, row in sorted(totals["hotline"].items()):
        results = ", ".join(f"{k} {v}" for k, v in sorted(row["results"].items()))
        click.echo(f"    {hotline:<24}{row['transfers']:>6}  ({results or 'no result yet'})")


def day_totals(counters: dict[str, int]) -> dict:
    """Group a day's flat counters ("outcome:transferred": 3...) for people."""
    totals = {"calls": counters.get("calls", 0), "category": {}, "lang": {}, "outcome": {},
              "hotline": {}, "hangup": {}}
    for name, n in counters.items():
        kind, _, value = name.partition(":")
        if kind in ("category", "lang", "outcome", "hangup") and n:
            totals[kind][value] = n
        elif kind == "transfer":
            totals["hotline"].setdefault(value, {"transfers": 0, "results": {}})["transfers"] = n
        elif kind == "dial":
            hotline, _, status = value.partition(":")
            row = totals["hotline"].setdefault(hotline, {"transfers": 0, "results": {}})
            row["results"][status] = n
    return totals


# --- ivr spool, ivr jobs, ivr events -------------------------------------------------


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
    for entry_id, fields in entries:
        click.echo(f"  {entry_id}  {fields.get('reason', '')}: {fields.get('e', '')[:120]}")


def _tool(bin_dir: Path, name: str) -> str:
    """A console script of this virtualenv (falls back to PATH)."""
    path = bin_dir / name
    return str(path) if path.exists() else (shutil.which(name) or name)

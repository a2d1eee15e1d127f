"""The `ivr` command: run a local service, place simulated calls, check the config."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from ivr import menu as menu_config
from ivr.simulator import SimulatedCall, flask_transport, parse_moves

DEV_DIR = Path(os.environ.get("RUTA_DEV_DIR", ".ruta-dev"))
QUEUE = "ruta"


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
@click.option("--token", envvar="TWILIO_AUTH_TOKEN", help="The auth token the server checks.")
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
        if not token:
            raise click.UsageError("--token (or TWILIO_AUTH_TOKEN) is needed to sign requests")
        simulated = SimulatedCall(url, token, caller=caller)
    else:
        from ivr import create_app

        token = secrets.token_hex(16)
        app = create_app({"RUTA_ENV": "development", "TWILIO_AUTH_TOKEN": token,
                          "SECRET_KEY": secrets.token_hex(16)})
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
        subprocess.Popen([_tool(bin_dir, "rq"), "worker", "--url", env["REDIS_URL"], QUEUE],
                         env=env),
    ]
    base = f"http://{host}:{port}"
    click.echo(f"\nRuta is running at {base}  (Twilio's Voice URL would be {base}/voice)")
    click.echo("Place a simulated call from another terminal:")
    click.echo(f"  .venv/bin/ivr call --url {base} --token {env['TWILIO_AUTH_TOKEN']} "
               "--press 2 --dial-result busy")
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


def _tool(bin_dir: Path, name: str) -> str:
    """A console script of this virtualenv (falls back to PATH)."""
    path = bin_dir / name
    return str(path) if path.exists() else (shutil.which(name) or name)

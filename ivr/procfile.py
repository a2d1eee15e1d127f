"""Run the Procfile's processes on this machine, as a Procfile platform does.

`ivr dev`, the tests and the benchmarks all start the web and the worker from the
Procfile's own lines, so what they run is what is deployed: `commands()` reads those
lines, `service_env()` is the environment of a throwaway local deployment, and the rest
starts, waits for, supervises (restarts on exit) and stops the processes.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import redis

from ivr import store

# At the repository's root, where a platform runs its lines from.
PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"
BIN = Path(sys.executable).parent  # this virtualenv's console scripts (gunicorn, rq)
# Made once per Python process: every web and worker one test session or benchmark starts
# checks the same signatures and derives the same caller pseudonyms.
THROWAWAY_TOKEN = secrets.token_hex(16)
THROWAWAY_SECRET_KEY = secrets.token_hex(16)
THROWAWAY_CALLER_ID_KEY = secrets.token_hex(32)


def commands(env: dict, host: str = "127.0.0.1",
             procfile: Path = PROCFILE) -> dict[str, list[str]]:
    """The Procfile's lines as argument lists, $VAR and ${VAR:-default} expanded from
    `env`, its programs taken from this virtualenv, the web bound to `host` instead of
    every interface, and its relative file arguments (gunicorn's config) made absolute,
    so the processes may start in any directory."""
    def expand(text: str) -> str:
        def one(m: re.Match) -> str:
            name, default = m.group(1) or m.group(3), m.group(2)
            return env.get(name) or (default or "")
        return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", one, text)

    def absolute(arg: str) -> str:
        path = procfile.parent / arg
        return str(path) if "/" in arg and not arg.startswith("/") and path.exists() else arg

    lines = {}
    for line in procfile.read_text().splitlines():
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or name.strip().startswith("#"):
            continue
        args = shlex.split(expand(command))
        if (BIN / args[0]).exists():
            args[0] = str(BIN / args[0])
        args = [absolute(re.sub(r"^0\.0\.0\.0:", f"{host}:", a)) for a in args]
        lines[name.strip()] = args
    missing = {"web", "worker"} - set(lines)
    if missing:
        raise RuntimeError(f"the Procfile has no {' or '.join(sorted(missing))} line")
    return lines


def service_env(redis_url: str, spool_dir: Path, port: int | None = None,
                token: str = THROWAWAY_TOKEN) -> dict:
    """The environment of a web or worker process of a throwaway deployment on this host:
    this shell's, without the settings that would make it someone else's deployment."""
    drop = ("PUBLIC_BASE_URL", "RUTA_CONFIG_DIR", "RUTA_PROMPTS_DIR", "CALLER_ID_KEY",
            "WEB_CONCURRENCY", "RUTA_TWO_PERSON_RULE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(RUTA_ENV="development", TWILIO_AUTH_TOKEN=token,
               SECRET_KEY=THROWAWAY_SECRET_KEY, CALLER_ID_KEY=THROWAWAY_CALLER_ID_KEY,
               REDIS_URL=redis_url,
               RUTA_SPOOL_DIR=str(spool_dir), PYTHONUNBUFFERED="1")
    if port is not None:
        env["PORT"] = str(port)
    return env


def start(args: list[str], env: dict, log: Path | None = None,
          cwd: Path | None = PROCFILE.parent) -> subprocess.Popen:
    """One process, its output added to `log` (None: this process's own output)."""
    if log is None:
        return subprocess.Popen(args, cwd=cwd, env=env)
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def start_web(env: dict, log: Path) -> subprocess.Popen:
    """The Procfile's `web:` line on loopback at env["PORT"], its output added to `log`."""
    return start(commands(env)["web"], env, log)


def wait_for_web(base: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    """Until GET /healthz answers 200; fails early, with the log's end, if it exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer in {timeout:g} s: "
                       f"{log.read_text(errors='replace')[-2000:]}")


def stop_processes(*procs: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM to each one still running, all at once (they stop in parallel); then
    SIGKILL to any that has not ended `timeout` seconds later."""
    running = [p for p in procs if p is not None and p.poll() is None]
    for proc in running:
        proc.terminate()
    for proc in running:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Supervised(threading.Thread):
    """Keeps one process running the way a Procfile platform does: restarted on exit."""

    def __init__(self, args: list[str], env: dict, log: Path):
        super().__init__(daemon=True, name="supervisor")
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen | None = None
        self.exits: list[int] = []  # exit codes of exits nobody asked for
        self.killed: list[int] = []  # pids we killed on purpose
        self.started_count = 0
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.halt.is_set():
            with self.lock:
                if self.halt.is_set():
                    return
                self.proc = start(self.args, self.env, self.log)
                self.started_count += 1
            proc = self.proc
            code = proc.wait()
            if not self.halt.is_set():
                if proc.pid not in self.killed:
                    self.exits.append(code)
                time.sleep(0.5)

    def kill(self) -> int | None:
        """SIGKILL the running process (it is started again); returns its pid."""
        with self.lock:
            proc = self.proc
            if proc is None or proc.poll() is not None:
                return None
            self.killed.append(proc.pid)
            proc.send_signal(signal.SIGKILL)
            return proc.pid

    def stop(self) -> None:
        with self.lock:
            self.halt.set()
            stop_processes(self.proc)
        self.join(timeout=15)


def wait_for_worker(r: redis.Redis, supervisor: Supervised, timeout: float = 30) -> None:
    """Until the worker has registered with RQ (so the first drains do not wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if r.scard("rq:workers") or r.scard(f"rq:workers:{store.QUEUE}"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the worker did not register in {timeout:g} s: "
                       f"{supervisor.log.read_text(errors='replace')[-2000:]}")

"""bench/webhook: the full signed webhook path against a bare Flask floor and a peer.

Three apps run under the Procfile's gunicorn settings (config/gunicorn.conf.py: 4 sync
workers) on loopback and are loaded by wrk (Debian's package) with the same connections
and duration: the floor (bench/floor_app.py: bare Flask answering TwiML, nothing else),
the peer (bench/peer_app.py: what Twilio's samples lead a user to build, RequestValidator
on request.url and one RQ enqueue per webhook) and ours. Ours and the peer get real
Twilio-signed POSTs (signature computed with twilio's RequestValidator for the URL wrk
calls) for the first question (/voice) and for a menu answer (/voice/menu, Digits=2: a
transfer); ours emits its events to a real Redis. Prints requests/s, latency and app CPU
per request for each (the median of --rounds rounds of all five), how much of the
machine's CPU sat idle meanwhile (a worker waiting on Redis leaves its core to others,
or to nobody), the ratios to the floor and to the peer (the medians of the rounds'
ratios), and a RESULT line.

With --in-process N the three apps are called as WSGI apps in this one process instead,
N requests each per round, and only the CPU a request costs (the least of the rounds) is
printed: no gunicorn, no wrk, no sockets but Redis's, so it is steadier on a busy shared
machine than throughput, and it is what a change to the app's own code is measured by.
Without gunicorn's own cost per request (a few hundred us) the ratios are steeper than
under gunicorn; compare them only with each other.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from statistics import median

from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.redis_server import RedisServer, free_port  # noqa: E402

TOKEN = "bench-token-0123456789"
BASE_PARAMS = {
    "CallSid": "CA" + "b" * 32, "AccountSid": "AC" + "0" * 32, "From": "+573001234567",
    "To": "+576015550100", "CallStatus": "in-progress", "ApiVersion": "2010-04-01",
    "Direction": "inbound",
}

# The two requests ours and the peer answer: the first question, and an answer (a transfer).
REQUESTS = [
    ("voice", "/voice", {}),
    ("answer", "/voice/menu?l=es&s=1&t0=1795380000&n=welcome&a=0", {"Digits": "2"}),
]
WHAT = {"peer": "Twilio-sample Flask, RQ enqueue", "ruta": "signed, flow, TwiML, events"}


def wrk_script(path: str, body: str, signature: str, folder: Path) -> Path:
    script = folder / f"{hashlib.sha256((path + signature).encode()).hexdigest()[:12]}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.path = {lua_string(path)}\n"
        f"wrk.body = {lua_string(body)}\n"
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["X-Twilio-Signature"] = {lua_string(signature)}\n'
    )
    return script


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def serve(app: str, port: int, env: dict) -> subprocess.Popen:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    process = subprocess.Popen(
        [str(gunicorn), "--config", "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning", app],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60  # a busy shared machine starts gunicorn slowly
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz-none", timeout=0.5)
        except urllib.error.HTTPError:
            return process  # it answers (404 is fine)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{app} did not start")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far (Linux /proc)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def idle_and_total_ticks() -> tuple[int, int]:
    """The whole machine's idle (and I/O wait) ticks and all its ticks so far (/proc/stat)."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)


def workers_of(server: subprocess.Popen) -> list[int]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def run_wrk(port: int, script: Path, connections: int, seconds: int,
            app_pids: list[int], redis_pid: int) -> dict:
    """Load one app with wrk; also what each request cost in CPU, in the app's workers
    and in Redis: on a saturated machine throughput is CPU, so this says where it goes."""
    app_before, redis_before = cpu_seconds(app_pids), cpu_seconds([redis_pid])
    idle_before, total_before = idle_and_total_ticks()
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    idle_after, total_after = idle_and_total_ticks()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    app_cpu = (cpu_seconds(app_pids) - app_before) / requests * 1e6
    redis_cpu = (cpu_seconds([redis_pid]) - redis_before) / requests * 1e6
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(errors.group(1)) if errors else 0,
            "app_cpu_us": app_cpu, "redis_cpu_us": redis_cpu,
            "idle": (idle_after - idle_before) / max(total_after - total_before, 1)}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def wsgi_request(path: str, body: str, signature: str) -> dict:
    """The WSGI environ gunicorn would hand an app for wrk's request."""
    path, _, query = path.partition("?")
    return {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": query,
            "SCRIPT_NAME": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:8000",
            "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
            "wsgi.input": io.BytesIO(body.encode()), "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "CONTENT_LENGTH": str(len(body.encode())), "HTTP_X_TWILIO_SIGNATURE": signature}


def in_process(requests: int, rounds: int, env: dict) -> None:
    """CPU per request of the floor, the peer and ours, each called as a WSGI app here."""
    os.environ.update(env)
    from bench import floor_app, peer_app
    from ivr import create_app

    apps = {"floor": floor_app.create_app(), "peer": peer_app.create_app(),
            "ruta": create_app()}
    validator = RequestValidator(TOKEN)
    targets = {"floor": ("floor", "/voice", urllib.parse.urlencode(BASE_PARAMS), "-")}
    for name, path, extra in REQUESTS:
        params = {**BASE_PARAMS, **extra}
        signature = validator.compute_signature(f"http://127.0.0.1:8000{path}", params)
        for app in ("peer", "ruta"):
            targets[f"{app} {name}"] = (app, path, urllib.parse.urlencode(params), signature)

    def answered(status, headers):
        assert status.startswith("200"), status

    def cpu_us(target: str, n: int) -> float:
        app, path, body, signature = targets[target]
        environs = [wsgi_request(path, body, signature) for _ in range(n)]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        before = usage.ru_utime + usage.ru_stime
        for environ in environs:
            b"".join(apps[app](environ, answered))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return (usage.ru_utime + usage.ru_stime - before) / n * 1e6

    for target in targets:  # warm up: first requests build caches, import lazily
        cpu_us(target, 200)
    rounds_cpu = [{target: cpu_us(target, requests) for target in targets}
                  for _ in range(rounds)]
    # The least of the rounds: a neighbour's work only ever adds to a request's CPU.
    cpu = {target: min(r[target] for r in rounds_cpu) for target in targets}
    for target in list(targets)[1:]:
        app, name = target.split()
        print(f"{target:<11} CPU/request {cpu[target]:.0f} us ({cpu[target] / cpu['floor']:.2f}x "
              f"the floor's {cpu['floor']:.0f} us)" + (
                  f", {cpu[target] / cpu[f'peer {name}']:.2f}x the peer's" if app == "ruta"
                  else ""))
    worst = max(cpu[t] for t in targets if t.startswith("ruta")) / cpu["floor"]
    print(f"RESULT mode=in_process floor_cpu_us={cpu['floor']:.0f} "
          f"voice_cpu_us={cpu['ruta voice']:.0f} answer_cpu_us={cpu['ruta answer']:.0f} "
          f"peer_answer_cpu_us={cpu['peer answer']:.0f} cpu_ratio={worst:.2f} "
          f"requests={requests} rounds={rounds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=5, help="per target and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-process", type=int, metavar="N", default=0,
                        help="CPU per request only: N requests per app and round, in process")
    args = parser.parse_args()
    if not args.in_process and not shutil.which("wrk"):
        sys.exit("bench/webhook needs wrk: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="ruta-bench-webhook-"))
    redis_server = RedisServer(tmp / "redis").start()
    env = dict(os.environ, RUTA_ENV="development", TWILIO_AUTH_TOKEN=TOKEN,
               SECRET_KEY="bench", REDIS_URL=redis_server.url, PUBLIC_BASE_URL="",
               RUTA_SPOOL_DIR=str(tmp / "spool"))
    if args.in_process:
        try:
            in_process(args.in_process, args.rounds, env)
        finally:
            redis_server.stop()
        return
    processes = []
    try:
        floor_port, peer_port, our_port = free_port(), free_port(), free_port()
        processes.append(serve("bench.floor_app:create_app()", floor_port, env))
        processes.append(serve("bench.peer_app:create_app()", peer_port, env))
        processes.append(serve("ivr:create_app()", our_port, env))
        floor_pids, peer_pids, our_pids = (workers_of(p) for p in processes)
        validator = RequestValidator(TOKEN)
        floor_script = wrk_script("/voice", urllib.parse.urlencode(BASE_PARAMS), "-", tmp)
        targets = {"floor": (floor_port, floor_script, floor_pids)}
        for name, path, extra in REQUESTS:
            params = {**BASE_PARAMS, **extra}
            for app, port, pids in [("peer", peer_port, peer_pids), ("ruta", our_port, our_pids)]:
                signature = validator.compute_signature(f"http://127.0.0.1:{port}{path}", params)
                script = wrk_script(path, urllib.parse.urlencode(params), signature, tmp)
                targets[f"{app} {name}"] = (port, script, pids)
        redis_pid = redis_server.process.pid
        # Rounds of all five back to back: a neighbour's burst of CPU then hits one
        # round's figures, and the median round is what we report.
        for port, script, pids in list(targets.values())[:3]:  # warm up each app
            run_wrk(port, script, args.connections, 2, pids, redis_pid)
        rounds = []
        for n in range(args.rounds):
            runs = {name: run_wrk(port, script, args.connections, args.seconds, pids,
                                  redis_pid)
                    for name, (port, script, pids) in targets.items()}
            rounds.append(runs)
            print(f"round {n + 1}: " + ", ".join(
                f"{name} {r['rps']:,.0f} req/s p99 {r['p99']:.1f} ms"
                + (f" ({r['rps'] / runs['floor']['rps']:.2f}x)" if name != "floor" else "")
                for name, r in runs.items()))
        figures = ("rps", "p50", "p99", "app_cpu_us", "redis_cpu_us", "idle")
        floor = {k: median(r["floor"][k] for r in rounds) for k in figures}
        print(f"floor       (bare Flask + VoiceResponse): {floor['rps']:,.0f} req/s, "
              f"p50 {floor['p50']:.1f} ms, p99 {floor['p99']:.1f} ms, "
              f"CPU/request {floor['app_cpu_us']:.0f} us, machine idle {floor['idle']:.1%}")
        results = {}
        for target in list(targets)[1:]:
            app, name = target.split()
            results[target] = {
                "ratio": median(r[target]["rps"] / r["floor"]["rps"] for r in rounds),
                "cpu_ratio": median(r[target]["app_cpu_us"] / r["floor"]["app_cpu_us"]
                                    for r in rounds),
                "non2xx": sum(r[target]["non2xx"] for r in rounds),
                **{k: median(r[target][k] for r in rounds) for k in figures},
            }
            if app == "ruta":
                results[target]["to_peer"] = median(
                    r[target]["rps"] / r[f"peer {name}"]["rps"] for r in rounds)
            r = results[target]
            print(f"{target:<11} ({WHAT[app]}): {r['rps']:,.0f} req/s, "
                  f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, non-2xx {r['non2xx']}, "
                  f"{r['ratio']:.2f}x the floor"
                  + (f", {r['to_peer']:.2f}x the peer" if "to_peer" in r else "")
                  + f", CPU/request {r['app_cpu_us']:.0f} us ({r['cpu_ratio']:.2f}x the floor's)"
                  f" + Redis {r['redis_cpu_us']:.0f} us, machine idle {r['idle']:.1%}")
        ours = {name: r for name, r in results.items() if name.startswith("ruta")}
        worst = min(r["ratio"] for r in ours.values())
        to_peer = min(r["to_peer"] for r in ours.values())
        cpu = max(r["cpu_ratio"] for r in ours.values())
        peer = min(r["ratio"] for name, r in results.items() if name.startswith("peer"))
        p99 = max(r["p99"] for r in ours.values())
        errors = sum(r["non2xx"] for r in results.values())
        idle = max(r["idle"] for r in ours.values())
        ok = worst >= 0.9 and to_peer >= 2 and p99 < 25 and cpu <= 1.1 and errors == 0
        print(f"RESULT floor_rps={floor['rps']:.0f} "
              f"voice_rps={ours['ruta voice']['rps']:.0f} "
              f"answer_rps={ours['ruta answer']['rps']:.0f} ratio={worst:.3f} target_ratio=0.9 "
              f"peer_ratio={peer:.3f} to_peer={to_peer:.2f} target_to_peer=2 "
              f"p99_ms={p99:.1f} target_p99_ms=25 non2xx={errors} "
              f"floor_cpu_us={floor['app_cpu_us']:.0f} "
              f"answer_cpu_us={ours['ruta answer']['app_cpu_us']:.0f} "
              f"peer_answer_cpu_us={results['peer answer']['app_cpu_us']:.0f} "
              f"cpu_ratio={cpu:.2f} target_cpu_ratio=1.1 "
              f"idle_floor={floor['idle']:.3f} idle_ours={idle:.3f} "
              f"workers={len(our_pids)} connections={args.connections} rounds={args.rounds} "
              f"pass={'yes' if ok else 'no'}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        redis_server.stop()


if __name__ == "__main__":
    main()

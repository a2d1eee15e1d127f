"""The Procfile's lines as `ivr dev`, the tests and the benchmarks run them (ivr.procfile),
and the harness's one home: no test imports from bench/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ivr import procfile

REPO = Path(__file__).resolve().parent.parent


def test_the_shipped_procfile_runs_gunicorn_and_the_rq_worker_from_this_virtualenv():
    lines = procfile.commands({"PORT": "5123"})
    web, worker = lines["web"], lines["worker"]
    assert web[0] == str(procfile.BIN / "gunicorn") and worker[0] == str(procfile.BIN / "rq")
    assert web[web.index("--bind") + 1] == "127.0.0.1:5123"  # loopback, not every interface
    config = Path(web[web.index("--config") + 1])
    assert config.is_absolute() and config == REPO / "config" / "gunicorn.conf.py"
    assert web[-1] == "ivr:create_app()"
    assert worker[1:] == ["worker", "--config", "workers.rq_settings", "--connection-class",
                          "workers.rq_settings.Redis", "--worker-class",
                          "workers.worker.RutaWorker", "ruta"]


def test_variables_are_expanded_and_the_host_is_the_one_asked_for(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "web.py").write_text("")
    lines = tmp_path / "Procfile"
    lines.write_text("# a comment: not a process\n"
                     "web: server -c conf/web.py --bind 0.0.0.0:$PORT --workers ${N:-2}\n"
                     "worker: drain --queue ${QUEUE:-ruta} --name $MISSING\n")
    found = procfile.commands({"PORT": "80", "QUEUE": "other"}, host="0.0.0.0",
                              procfile=lines)
    assert found == {
        "web": ["server", "-c", str(tmp_path / "conf" / "web.py"), "--bind", "0.0.0.0:80",
                "--workers", "2"],
        "worker": ["drain", "--queue", "other", "--name"],
    }


def test_a_procfile_without_a_worker_line_is_refused(tmp_path):
    lines = tmp_path / "Procfile"
    lines.write_text("web: server\n")
    with pytest.raises(RuntimeError, match="no worker line"):
        procfile.commands({}, procfile=lines)


def test_processes_of_one_deployment_share_its_token_and_key(tmp_path):
    """Two webs behind one balancer check the same signatures and derive the same caller
    pseudonyms; none of this shell's deployment settings leak in."""
    first = procfile.service_env("redis://127.0.0.1:1/0", tmp_path / "a", 8001)
    second = procfile.service_env("redis://127.0.0.1:1/0", tmp_path / "b", 8002)
    for name in ("TWILIO_AUTH_TOKEN", "SECRET_KEY"):
        assert first[name] == second[name] and len(first[name]) == 32
    assert (first["PORT"], first["RUTA_SPOOL_DIR"]) == ("8001", str(tmp_path / "a"))
    assert first["RUTA_ENV"] == "development" and "PUBLIC_BASE_URL" not in first


def bench_imports(source: str) -> list[str]:
    """The modules of bench/ that a Python source imports."""
    bench_modules = {"bench"} | {p.stem for p in (REPO / "bench").glob("*.py")}
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in bench_modules]
    return found


def test_no_test_imports_from_bench():
    """bench/ holds benchmarks only: what tests share with them lives in the package
    (ivr.procfile) or in tests/ (load_run.py), and bench/ imports it from there."""
    imports = {p.name: found for p in sorted((REPO / "tests").glob("*.py"))
               if (found := bench_imports(p.read_text(encoding="utf-8")))}
    assert imports == {}


def test_bench_imports_are_found_however_they_are_written():
    assert bench_imports("from bench.load_bench import run_load\nimport bench\n"
                         "import understanding_bench as u\nfrom load_bench import TOKEN\n"
                         "import ivr.procfile\nfrom . import load_bench\n") == [
        "bench.load_bench", "bench", "understanding_bench", "load_bench"]

"""scripts/audit, the dependency audit scripts/test runs: a warning in one line, whatever
pip-audit finds or however it fails, and never a hang. pip-audit itself needs PyPI's
advisory data, so here a stand-in plays its part (PIP_AUDIT), printing what the real one
prints in each case."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FLASK = {"name": "flask", "version": "3.1.3", "vulns": []}
OLD_JINJA = {"name": "jinja2", "version": "3.1.2", "vulns": [
    {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"], "aliases": [], "description": ""}]}
NOT_ON_INDEX = {"name": "redis", "skip_reason": "Dependency not found on PyPI and could not "
                "be audited: redis (7.0.1)"}


def fake_pip_audit(tmp_path: Path, report: dict | None = None, exit_code: int = 0,
                   stderr: str = "", sleep: float = 0) -> Path:
    """An executable that acts as pip-audit: writes `report` to --output, then exits."""
    script = tmp_path / "pip-audit"
    script.write_text(f"""#!/usr/bin/env python3
import json, sys, time
time.sleep({sleep})
args = sys.argv[1:]
report = {json.dumps(report)!r}
if report != "null":
    open(args[args.index("--output") + 1], "w").write(report)
sys.stderr.write({stderr!r})
sys.exit({exit_code})
""")
    script.chmod(0o755)
    return script


def audit(pip_audit: Path | None, **env) -> tuple[int, list[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [str(REPO / "scripts" / "audit")], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PIP_AUDIT": str(pip_audit or "/nonexistent/pip-audit"), **env})
    return done.returncode, (done.stdout + done.stderr).splitlines(), \
        time.monotonic() - started


@pytest.mark.parametrize("report, line", [
    ({"dependencies": [FLASK, OLD_JINJA]},
     "WARNING dependency audit: 1 known vulnerabilities: jinja2 3.1.2 GHSA-h5c8-rqwp-cp95 "
     "(fixed in 3.1.3)"),
    ({"dependencies": [FLASK]}, "dependency audit: no known vulnerabilities in 1 packages"),
    ({"dependencies": [FLASK, NOT_ON_INDEX]},
     "dependency audit: no known vulnerabilities in 1 packages; 1 of 2 could not be looked "
     "up (no network, or an index without PyPI's advisory data?)"),
    ({"dependencies": [NOT_ON_INDEX]},
     "WARNING dependency audit: not done, none of 1 packages could be looked up (no "
     "network, or an index without PyPI's advisory data?)"),
])
def test_what_pip_audit_found_is_one_line_and_never_a_failure(tmp_path, report, line):
    # pip-audit exits 1 when it finds something: still not a failure of the run.
    code, lines, _ = audit(fake_pip_audit(tmp_path, report, exit_code=1 if "1 known" in line
                                          else 0))
    assert (code, lines) == (0, [line])


def test_without_network_it_says_so_in_one_line(tmp_path):
    code, lines, _ = audit(fake_pip_audit(
        tmp_path, None, exit_code=1,
        stderr="Traceback...\nrequests.exceptions.ConnectionError: Name or service not known\n"))
    assert code == 0
    assert lines == ["WARNING dependency audit: not done, pip-audit failed (exit 1; no "
                     "network?): requests.exceptions.ConnectionError: Name or service not known"]


@pytest.mark.slow
def test_a_hanging_audit_is_given_up_on_in_time(tmp_path):
    code, lines, seconds = audit(fake_pip_audit(tmp_path, {"dependencies": []}, sleep=60),
                                 RUTA_AUDIT_SECONDS="1")
    assert code == 0
    assert lines == ["WARNING dependency audit: not done, pip-audit gave up after 1 s "
                     "(no network?)"]
    assert seconds < 10


def test_missing_or_skipped(tmp_path):
    assert audit(None)[:2] == (0, ["WARNING dependency audit: not done, pip-audit is not "
                                   "installed (pip install -e '.[dev]')"])
    assert audit(None, RUTA_AUDIT="0")[:2] == (0, ["dependency audit: skipped (RUTA_AUDIT=0)"])

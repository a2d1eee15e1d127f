"""The docs point at tests as evidence: each test they name must exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = ["docs/threat-model.md", "docs/deploy.md"]


def named_tests(text: str) -> list[tuple[str | None, str]]:
    """(file or None, test name) for each `tests/file.py::test_x` or `::test_x`."""
    return re.findall(r"(?:(tests/\w+\.py))?::(test_\w+)", text)


@pytest.mark.parametrize("doc", DOCS)
def test_every_test_a_doc_names_exists(doc):
    text = (REPO / doc).read_text(encoding="utf-8")
    sources = {p.relative_to(REPO).as_posix(): p.read_text(encoding="utf-8")
               for p in (REPO / "tests").glob("test_*.py")}
    named = named_tests(text)
    assert named, f"{doc} names no test"
    missing = []
    for file, name in named:
        where = [file] if file else list(sources)
        if not any(f"def {name}(" in sources.get(f, "") for f in where):
            missing.append(f"{file or ''}::{name}")
    assert missing == []


def test_named_tests_are_found_with_and_without_their_file():
    assert named_tests("`tests/test_a.py::test_one`, `::test_two`") == [
        ("tests/test_a.py", "test_one"), ("", "test_two")]


def test_the_readmes_example_call_is_what_ivr_call_prints():
    """The quick start's transcript is generated, not typed: run its command again."""
    from click.testing import CliRunner

    from ivr.cli import main

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command, shown = re.search(r"```sh\n\.venv/bin/ivr call ([^\n]+)\n```\n```\n(.*?)```",
                               readme, re.S).groups()
    args = [a.strip('"') for a in re.findall(r'"[^"]*"|\S+', command)]
    result = CliRunner().invoke(main, ["call", *args])
    assert result.exit_code == 0, result.output
    printed = [line for line in result.output.splitlines() if not line.startswith("  (call ")]
    assert printed == shown.rstrip("\n").splitlines()


@pytest.mark.slow
def test_the_readmes_understanding_figures_are_what_the_benchmark_measures():
    """bench/understanding's figures in the README's Performance table are its own (run as
    a benchmark is, and read from its RESULT line: no test imports from bench/)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "bench/understanding_bench.py"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("RESULT "), done.stdout
    result = {k: float(v) for k, v in (pair.split("=") for pair in last.split()[1:])}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `bench/understanding`"))
    assert f"first-try accuracy {result['accuracy']:.1%}" in row
    assert f"emergency recall {result['emergency_recall']:.1%} at once" in row
    assert f"{result['emergency_recall_with_question']:.1%} with the danger question" in row
    assert f"false emergencies {result['false_emergency']:.1%}" in row
    assert f"at least {result['worst_group']:.1%}" in row

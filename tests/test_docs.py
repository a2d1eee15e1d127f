"""The docs say what the code does.

Each test a doc names as evidence exists; each figure a doc states that could drift (a
batch size, a timeout, a default, a limit) is computed here from the code and looked for
in the doc's text; each command a doc shows is one the code has; each link leads to a
heading that exists. Benchmark timings cannot be computed again in a test: they are
dated measurements in docs/performance.md, whose commands are checked to exist.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import re
import runpy
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = "README.md"
DOCS = [README, *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
# The docs whose tables cite a test for each claim.
EVIDENCE_DOCS = ["docs/threat-model.md", "docs/deploy.md"]
README_MAX_LINES = 250
# The README's example call: its command, then what `ivr call` prints for it.
EXAMPLE_CALL = re.compile(r"```sh\n\.venv/bin/ivr call ([^\n]+)\n```\n```\n(.*?)```", re.S)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}
# Numbers the README may state that no constant of ours decides.
NOT_OURS = {
    "164": "E.164, the numbering standard's name",
    "123": "Colombia's emergency short code, which Twilio cannot dial",
    "404": "an HTTP status", "413": "an HTTP status", "503": "an HTTP status",
}
# Settings only the app sets for itself, never an operator (the admin preview's).
INTERNAL_SETTINGS = {"RUTA_PREVIEW", "RUTA_MENU_OVERRIDES"}


def read(doc: str) -> str:
    return (REPO / doc).read_text(encoding="utf-8")


def flat(text: str) -> str:
    """Whitespace collapsed: a figure's sentence may wrap across lines."""
    return " ".join(text.split())


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def code_spans(text: str) -> list[str]:
    """Every line of a fenced block and every inline `span`, whitespace collapsed."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    lines = [line for block in blocks for line in block.splitlines()]
    inline = re.findall(r"`([^`]+)`", without_code_blocks(text))
    return [flat(s) for s in [*lines, *inline]]


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of each row of the first table from the line holding `heading` on."""
    section = text[text.rfind("\n", 0, text.index(heading)) + 1:]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif rows:
            break
    return rows[2:]  # past the header and its rule


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# --- tests named as evidence --------------------------------------------------------------


def named_tests(text: str) -> list[tuple[str | None, str]]:
    """(file or None, test name) for each `tests/file.py::test_x` or `::test_x`."""
    return re.findall(r"(?:(tests/\w+\.py))?::(test_\w+)", text)


@pytest.mark.parametrize("doc", DOCS)
def test_every_test_a_doc_names_exists(doc):
    text = read(doc)
    sources = {p.relative_to(REPO).as_posix(): p.read_text(encoding="utf-8")
               for p in (REPO / "tests").glob("test_*.py")}
    missing = []
    for file, name in named_tests(text):
        where = [file] if file else list(sources)
        if not any(f"def {name}(" in sources.get(f, "") for f in where):
            missing.append(f"{file or ''}::{name}")
    assert missing == []


@pytest.mark.parametrize("doc", EVIDENCE_DOCS)
def test_the_evidence_docs_name_their_tests(doc):
    assert named_tests(read(doc)), f"{doc} names no test"


def test_named_tests_are_found_with_and_without_their_file():
    assert named_tests("`tests/test_a.py::test_one`, `::test_two`") == [
        ("tests/test_a.py", "test_one"), ("", "test_two")]


# --- shape and links ----------------------------------------------------------------------


def test_the_readme_is_at_most_250_lines():
    """What a new user needs; design, operations and performance live in docs/."""
    assert len(read(README).splitlines()) <= README_MAX_LINES


def test_the_readmes_quick_subset_is_a_registered_marker():
    markers = tomllib.loads(read("pyproject.toml"))["tool"]["pytest"]["ini_options"]["markers"]
    assert './scripts/test -m "not slow"' in read(README)
    assert any(marker.startswith("slow:") for marker in markers)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_slugs_are_githubs():
    assert slug("7. Hotlines, short codes and caller ID") == "7-hotlines-short-codes-and-caller-id"
    assert slug("Redis: URL forms, Sentinel, Cluster") == "redis-url-forms-sentinel-cluster"


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_to_a_file_of_ours_leads_to_it_and_its_heading(doc):
    text = without_code_blocks(read(doc))
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (REPO / doc).parent / path if path else REPO / doc
        if not file.exists():
            broken.append(target)
        elif anchor:
            headings = re.findall(r"^#+ (.+)$", without_code_blocks(file.read_text()), re.M)
            if anchor not in {slug(h) for h in headings}:
                broken.append(target)
    assert broken == []


# --- figures ------------------------------------------------------------------------------


def shipped_menu():
    from ivr import menu

    return menu.load()


def cli_option_default(command: str, option: str):
    from ivr.cli import main

    return next(p.default for p in main.commands[command].params if p.name == option)


def shortest_password() -> int:
    """The length `ivr users add` and `ivr users password` ask for (one check), from the
    message a short one is refused with (before any Redis is needed)."""
    from click.testing import CliRunner

    from ivr.cli import main

    result = CliRunner().invoke(main, ["users", "password", "x", "--password-stdin"],
                                input="short\n")
    assert result.exit_code != 0
    return int(re.search(r"at least (\d+) characters", result.output).group(1))


def lines_without_a_dial_target(menu) -> list[str]:
    return [name for name, line in menu.hotlines.items() if not line.dial]


# Each option of the README's default tree: its phrase, and where the menu sends the key.
TREE = [
    ("1 a child or adolescent → ICBF", "welcome", "1", "icbf"),
    ("2 work, forced labour or a false job offer → Ministry of Labour", "welcome", "2",
     "labour"),
    ("3 a migrant → national line", "welcome", "3", "national"),
    ("4 report a crime → a follow-up question", "welcome", "4", "report"),
    ("(1 the Prosecutor's Office", "report", "1", "prosecutor"),
    ("2 the Bogotá complaint line)", "report", "2", "bogota"),
    ("5 not sure → national line", "welcome", "5", "national"),
]


def readme_figures() -> list[str]:
    from ivr import security

    m = shipped_menu()
    python = tomllib.loads(read("pyproject.toml"))["project"]["requires-python"]
    return [
        f"Python {python.removeprefix('>=')} or newer",
        f"http://{cli_option_default('dev', 'host')}:{cli_option_default('dev', 'port')}",
        f"({shortest_password()} characters or more)",
        f"budget of {m.budget_seconds:g} seconds at {m.words_per_minute} words a minute",
        f'"For English, press {m.language_key}"',
        f'`{m.emergency_key}` or "emergencia',
        f"`{m.repeat_key}` repeats",
        f"After {m.max_attempts} silences",
        f"{NUMBER_WORDS[len(lines_without_a_dial_target(m))]} lines have none yet",
        f"{NUMBER_WORDS[len(security.ROLES)].capitalize()} roles",
        "not connected more than this share of its attempts in the range shown",
        *(phrase for phrase, *_ in TREE),
    ]


def doc_figures() -> list[tuple[str, str]]:
    """(doc, the words it must say), each built from the code's own value."""
    from hypothesis import settings as hypothesis_settings

    from ivr import (
        events,
        export_jobs,
        flow,
        menu,
        ops,
        recordings,
        redis_url,
        reports,
        security,
        sessions,
        speech,
        store,
        summary,
        twiml,
        versions,
    )
    from ivr import settings as ruta_settings
    from ivr.call_record import MAX_COUNTED_WAIT
    from ivr.twilio_account import place_test_call
    from workers import drain, worker

    m = shipped_menu()
    min_answered = tomllib.loads(read("config/menu.toml"))["min_answered_seconds"]
    fast = redis_url.fail_fast_options()
    fail_fast = (f"({fast['socket_connect_timeout']:g} s to connect, "
                 f"{fast['socket_timeout']:g} s a reply, no retries)")
    claim_seconds = drain.CLAIM_IDLE_MS // 1000
    retention = ruta_settings.DEFAULTS["RUTA_RETENTION_DAYS"]
    pseudonym = events.caller_pseudonym("+573001234567", b"key")
    per_minute, per_hour = (limit.amount for limit in security.FAILED_LOGIN_LIMITS)
    session_hours = session_lifetime_hours()
    buckets = ops.LATENCY_BUCKETS
    audit_seconds = re.search(r"RUTA_AUDIT_SECONDS:-(\d+)", read("scripts/audit"))[1]
    check_every = {1.0: "once a second"}.get(versions.CHECK_EVERY,
                                              f"once every {versions.CHECK_EVERY:g} s")
    learn, test = (len(read(f"bench/understanding_set/{part}.jsonl").splitlines())
                   for part in ("learn", "test"))
    test_call_wait = inspect.signature(place_test_call).parameters["limit"].default
    gunicorn = gunicorn_settings({})
    undialable = lines_without_a_dial_target(m)
    presets = range_presets()
    return [
        ("README.md", figure) for figure in readme_figures()
    ] + [
        ("docs/staff.md", f"a WAV or MP3 of at most {recordings.MAX_BYTES // 1_000_000} MB "
                          f"and {recordings.MAX_SECONDS} s"),
        ("docs/staff.md", f"(default the last {len(summary.parse_range(None, None))}; "
                          f"presets {presets[0]}, {' or '.join(presets[1:])} days"),
        ("docs/staff.md", f"`?range={'|'.join(presets)}`"),
        ("docs/staff.md", "transfer attempts over the range shown"),
        ("docs/staff.md", "with at least "
         f"{inspect.signature(summary.summarize).parameters['health_min_attempts'].default}"
         " attempts"),
        ("docs/staff.md", f"{reports.PER_PAGE} a page"),
        ("docs/staff.md", f"up to {reports.CSV_MAX_ROWS:,} calls"),
        ("docs/staff.md", f"parts of at most {export_jobs.PART_ROWS:,} calls"),
        ("docs/staff.md", f"kept {export_jobs.KEEP_SECONDS // 3600} hours"),
        ("docs/staff.md", f"version counter in Redis at most {check_every}"),
        ("docs/staff.md", f"in the history (the latest {versions.SET_ASIDE_KEPT})"),
        ("docs/design.md", f"at `words_per_minute` ({m.words_per_minute})"),
        ("docs/design.md", f"over `budget_seconds` ({m.budget_seconds:g})"),
        ("docs/design.md", "Today the longest path is "
         f"{max(path.seconds for path in menu.spoken_paths(m)):.1f} s."),
        ("docs/design.md", f"letter {speech.NGRAM}-grams"),
        ("docs/design.md", f"an age under {speech.ADULT_AGE}"),
        ("docs/design.md", f"(at most {menu.MAX_HINTS}, of at most {menu.MAX_HINT_CHARS} "
                           "characters)"),
        ("docs/design.md", f"after a {ORDINALS[m.max_attempts]} the national line rings"),
        ("docs/design.md", f"{learn + test} utterances"),
        ("docs/design.md", f"split into the {learn} the examples come from and a test part "
                           f"of {test}"),
        ("docs/design.md", f"Twilio adds about {twiml.TWILIO_RING_PADDING} s to "
                           f"`<Dial timeout>`, so the TwiML asks for `ring_timeout` − "
                           f"{twiml.TWILIO_RING_PADDING}"),
        ("docs/design.md", f"`ring_timeout` seconds of `config/menu.toml` ({m.ring_timeout})"),
        ("docs/design.md", f"`ring_budget` seconds in all ({m.ring_budget})"),
        ("docs/design.md", f"`min_answered_seconds` ({min_answered})"),
        ("docs/design.md", f"without a key in {flow.SCREEN_TIMEOUT} s"),
        ("docs/design.md", f"SET NX PX {events.DRAIN_EVERY_MS} flag"),
        ("docs/design.md", f"reads batches of {drain.BATCH:,}"),
        ("docs/design.md", f"XAUTOCLAIM after {claim_seconds} s"),
        ("docs/design.md", f"the next drain claims them after {claim_seconds} s"),
        ("docs/design.md", f"A drain job ends after {drain.MAX_SECONDS} s"),
        ("docs/design.md", f"sweeps every {worker.SWEEP_SECONDS} s"),
        ("docs/design.md", fail_fast),
        ("docs/design.md", f"without trying Redis for {events.REDIS_DOWN_PAUSE:g} s"),
        ("docs/design.md", f"`{pseudonym[:2]}` + {len(pseudonym) - 2} hex digits"),
        ("docs/design.md", f"kept {store.HOUR_KEEP_SECONDS // 86400} days"),
        ("docs/design.md", f"capped at {MAX_COUNTED_WAIT}"),
        ("docs/design.md", f"`RUTA_RETENTION_DAYS` (default {retention})"),
        ("docs/design.md", f"lasting {session_hours} hours"),
        ("docs/design.md", f"{per_minute} per minute and {per_hour} per hour"),
        ("docs/design.md", f"Content-Security-Policy (`{security.CONTENT_SECURITY_POLICY}`"),
        *(("docs/design.md", f"`{name}: {value}`")
          for name, value in security.STAFF_HEADERS.items()
          if name != "Content-Security-Policy"),
        ("docs/design.md", f"`Strict-Transport-Security: {security.HSTS}`"),
        ("docs/design.md", "Each test runs "
         f"{hypothesis_settings.get_profile('ruta').max_examples} examples"),
        ("docs/design.md", "`HYPOTHESIS_PROFILE=thorough` runs "
         f"{hypothesis_settings.get_profile('thorough').max_examples} each"),
        ("docs/design.md", f"`RUTA_AUDIT_SECONDS`, default {audit_seconds}"),
        ("docs/operations.md", f"port {redis_url.SENTINEL_PORT} by default"),
        ("docs/operations.md", fail_fast),
        ("docs/operations.md", f"at its next sweep (every {worker.SWEEP_SECONDS} s)"),
        ("docs/operations.md", f"buckets {buckets[0] * 1000:g} ms to {buckets[-1]:g} s"),
        ("docs/operations.md", f"counting stops past {ops.SPOOL_COUNT_CAP:,}"),
        ("docs/deploy.md", f"refused at {gunicorn_timeout_limit()} or more"),
        ("docs/deploy.md", f"a drain runs at most {drain.MAX_SECONDS} s"),
        ("docs/deploy.md", f"It waits up to {test_call_wait:g} s"),
        ("docs/deploy.md", f"`RUTA_RETENTION_DAYS` (default {retention})"),
        ("docs/deploy.md", f"(`min_answered_seconds`, {min_answered}:"),
        ("docs/deploy.md", f"replays it every {worker.SWEEP_SECONDS} s"),
        ("docs/deploy.md", "(as shipped: "
         f"{', '.join(LINE_NAMES[name] for name in undialable)})"),
        ("docs/threat-model.md", f"cookies lasting {session_hours} h"),
        ("docs/threat-model.md",
         f"{ruta_settings.DEFAULTS['RUTA_SESSION_IDLE_MINUTES']} minutes unused or "
         f"{ruta_settings.DEFAULTS['RUTA_SESSION_HOURS']} hours after login"),
        ("docs/staff.md", f"the latest {sessions.SECURITY_LOG_KEEP:,} or so"),
        ("docs/staff.md", f"also the latest {sessions.FAILED_LOGINS_KEEP:,} or so"),
        ("docs/performance.md", f"at most {reports.CSV_MAX_ROWS:,} calls"),
        ("docs/performance.md", f"one part of at most {export_jobs.PART_ROWS:,} calls"),
        ("docs/performance.md", f"`WEB_TIMEOUT` ({gunicorn['timeout']} s by default)"),
        ("docs/performance.md", f"`config/gunicorn.conf.py`: {gunicorn['workers']} sync workers"),
        ("docs/performance.md", f"{retention} days at"),
        ("docs/performance.md", f"claimed after {claim_seconds} s"),
        *benchmark_figures(),
    ]


# How deploy.md names the lines Twilio cannot dial yet.
LINE_NAMES = {"labour": "Labour", "police": "Police", "prosecutor": "Prosecutor's Office",
              "emergency": "emergency", "icbf": "ICBF", "national": "national",
              "bogota": "Bogotá"}


def range_presets() -> list[str]:
    """The `range=` values the reports take."""
    from ivr.summary import RangeError, parse_range

    presets = []
    for preset in ["today", *map(str, range(1, 367))]:
        with contextlib.suppress(RangeError):
            parse_range(None, None, preset)
            presets.append(preset)
    return presets


def session_lifetime_hours() -> int:
    """How long a staff session lasts, as the app is configured."""
    from ivr import create_app

    app = create_app({"RUTA_ENV": "development", "TESTING": True, "REDIS_URL": "",
                      "SECRET_KEY": "k", "TWILIO_AUTH_TOKEN": "t"})
    return int(app.config["PERMANENT_SESSION_LIFETIME"].total_seconds() // 3600)


def test_every_figure_the_docs_state_is_the_codes():
    texts = {doc: flat(read(doc)) for doc in DOCS}
    missing = [(doc, words) for doc, words in doc_figures() if words not in texts[doc]]
    assert missing == []


def test_every_number_in_the_readme_is_one_a_test_checks():
    """A number added to the README must come with its check here (or in NOT_OURS)."""
    text = EXAMPLE_CALL.sub("", read(README))  # generated: see the example call's test
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets: see the links' test
    checked = {n for figure in readme_figures() for n in NUMBER.findall(figure)}
    checked |= {n for row in table_rows(read(README), "## Configuration")
                for n in NUMBER.findall(row[1])}  # see the settings table's test
    assert sorted(set(NUMBER.findall(text)) - checked - set(NOT_OURS)) == []


def test_the_readmes_default_tree_is_the_shipped_menus():
    m = shipped_menu()
    readme = flat(read(README))
    for phrase, node, key, goes_to in TREE:
        assert phrase in readme
        option = next(o for o in m.nodes[node].options if o.key == key)
        assert goes_to in (option.hotline, option.next), phrase


def test_the_readmes_settings_table_gives_each_settings_default():
    from ivr import settings
    from ivr.cli import DEV_DIR

    defaults = {name: shown(value) for name, value in settings.DEFAULTS.items()}
    if "RUTA_DEV_DIR" not in os.environ:
        defaults["RUTA_DEV_DIR"] = str(DEV_DIR)
    listed = {}
    for names, default, _meaning in table_rows(read(README), "## Configuration"):
        values = ticked(default) or [""] * len(ticked(names))
        assert len(values) == len(ticked(names)), names
        listed.update(zip(ticked(names), values, strict=True))
    wrong = {name: (value, defaults[name]) for name, value in listed.items()
             if name in defaults and value != defaults[name]}
    assert wrong == {}
    read_by_code = set(settings.DEFAULTS) - INTERNAL_SETTINGS | environment_names()
    assert sorted(read_by_code - set(listed)) == []


def shown(value) -> str:
    """A default as the README shows it: a folder of ours relative to the repository, a
    switch as 1 or 0 (how the environment sets it)."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, str) and value.startswith(str(REPO)):
        return Path(value).relative_to(REPO).as_posix()
    return str(value)


def environment_names() -> set[str]:
    """Every `os.environ` name read by the web app, the worker and their configuration."""
    names = set()
    for folder in ("ivr", "workers", "config"):
        for path in (REPO / folder).rglob("*.py"):
            names |= set(re.findall(r'os\.environ(?:\.get\(|\[)"([A-Z_]+)"', path.read_text()))
    return names


def gunicorn_settings(environment: dict[str, str]) -> dict:
    """config/gunicorn.conf.py's settings, read as gunicorn reads them, in `environment`."""
    saved = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("WEB_")}
    os.environ.update(environment)
    try:
        return runpy.run_path(str(REPO / "config" / "gunicorn.conf.py"))
    finally:
        for name in environment:
            os.environ.pop(name, None)
        os.environ.update(saved)


def gunicorn_timeout_limit() -> int:
    """The first WEB_TIMEOUT gunicorn.conf.py refuses."""
    for seconds in range(1, 121):
        try:
            gunicorn_settings({"WEB_TIMEOUT": str(seconds)})
        except SystemExit:
            return seconds
    raise AssertionError("no WEB_TIMEOUT refused")


def test_deploys_gunicorn_table_gives_its_defaults():
    settings = gunicorn_settings({})
    meaning = {"WEB_CONCURRENCY": "workers", "WEB_THREADS": "threads",
               "WEB_TIMEOUT": "timeout", "WEB_GRACEFUL_TIMEOUT": "graceful_timeout"}
    rows = table_rows(read("docs/deploy.md"), "reads its settings from the environment")
    assert {ticked(name)[0]: default for name, default, _ in rows} == {
        name: str(settings[key]) for name, key in meaning.items()}


# --- benchmarks ---------------------------------------------------------------------------


def bench_source(command: str) -> Path:
    """The Python file a `bench/NAME` script runs."""
    script = (REPO / command).read_text()
    return REPO / re.search(r"(bench/\w+\.py)", script)[1]


def bench_options(command: str) -> dict[str, object]:
    """A benchmark's `--option: default`, read from its argparse calls."""
    options = {}
    for node in ast.walk(ast.parse(bench_source(command).read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            options[node.args[0].value] = ast.literal_eval(default) if default else None
    return options


def bench_constant(command: str, name: str):
    """A module-level constant of a benchmark, read from its source (tests never import
    from bench/)."""
    for node in ast.parse(bench_source(command).read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == name
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{command} has no constant {name}")


def bench_default(command: str, function: str, parameter: str):
    """The default value of a benchmark function's parameter, read from its source."""
    for node in ast.walk(ast.parse(bench_source(command).read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            args = node.args.args[-len(node.args.defaults):] if node.args.defaults else []
            for arg, default in zip(args, node.args.defaults, strict=True):
                if arg.arg == parameter:
                    return ast.literal_eval(default)
    raise AssertionError(f"{command} has no {function}({parameter}=...)")


def bench_target(command: str, key: str) -> str:
    """A target its RESULT line prints as a constant, `key=value`."""
    return re.search(rf"{key}=([\d.]+)", bench_source(command).read_text())[1]


def benchmark_figures() -> list[tuple[str, str]]:
    """The parameters and targets docs/performance.md states for each benchmark."""
    from ivr import export_jobs

    worker, reports = bench_options("bench/worker"), bench_options("bench/reports")
    webhook, load = bench_options("bench/webhook"), bench_options("bench/load")
    parts = -(-reports["--calls"] // export_jobs.PART_ROWS)  # the worker's export, rounded up
    per_call = int(re.search(r"Redis memory per stored call \| ([\d,]+) B",
                             read("docs/performance.md"))[1].replace(",", ""))
    return [("docs/performance.md", figure) for figure in [
        f"{worker['--events']:,} events",
        f"{reports['--calls']:,} calls over {reports['--days']} days",
        f"real write path on {bench_constant('bench/reports', 'CHUNK'):,} calls",
        f"(target {bench_target('bench/reports', 'summary_ms_target')};",
        f"(target {bench_target('bench/reports', 'page_ms_target')})",
        f"{reports['--procs']} loading processes",
        f"each read timed in {bench_constant('bench/reports', 'RUNS')} runs",
        f"(target {bench_target('bench/reports', 'filtered_summary_ms_target')}, now met)",
        f"(target {bench_target('bench/reports', 'filtered_page_ms_target')})",
        f"(target {bench_target('bench/reports', 'timeline_ms_target')})",
        f"(target {bench_target('bench/reports', 'alert_check_ms_target')})",
        f"all {reports['--calls']:,} calls built by the worker in {parts} parts of "
        f"{export_jobs.PART_ROWS:,} calls",
        f"wrk with {webhook['--connections']} connections, {webhook['--rounds']} rounds",
        f"({webhook['--seconds']} s each)",
        f"(0.9×, ≥ {bench_target('bench/webhook', 'target_to_peer')}× the peer, "
        f"p99 < {bench_target('bench/webhook', 'target_p99_ms')} ms; CPU ≤ "
        f"{bench_target('bench/webhook', 'target_cpu_ratio')}× the floor's)"
        if bench_target("bench/webhook", "target_ratio") == "0.9" else "target_ratio",
        f"{load['--callers']} callers over {load['--seconds']:g} s",
        f"Redis stopped for {load['--outage']:g} s",
        "leave-one-writer-out cross-validation",
        f"A call kept takes about {per_call / 1000:.1f} KB",
    ]]


def test_every_benchmark_and_script_the_docs_show_exists_with_its_options():
    wrong = []
    for doc in DOCS:
        for span in code_spans(read(doc)):
            for command, rest in re.findall(r"\b((?:bench|scripts)/[a-z]+)\b(?![_./])(.*)",
                                            span):
                path = REPO / command
                if path.is_dir():
                    continue
                if not (path.is_file() and os.access(path, os.X_OK)):
                    wrong.append(f"{doc}: {command}")
                elif command.startswith("bench/"):
                    known = bench_options(command)
                    wrong += [f"{doc}: {command} {option}" for option in
                              re.findall(r"--[a-z][a-z-]*", rest) if option not in known]
    assert wrong == []


def test_every_ivr_command_the_docs_show_exists_with_its_options():
    import click

    from ivr.cli import main

    wrong = []
    for doc in DOCS:
        for span in code_spans(read(doc)):
            for words in re.findall(r"(?:^|/bin/)ivr (.*)", span):
                command, rest = main, words.split()
                while isinstance(command, click.Group) and rest and rest[0] in command.commands:
                    command = command.commands[rest.pop(0)]
                if command is main:
                    wrong.append(f"{doc}: ivr {words}")
                    continue
                known = {o for p in command.params for o in p.opts}
                if command.context_settings.get("ignore_unknown_options"):
                    known |= set(re.findall(r"--[a-z][a-z-]*", command.help))  # its own
                wrong += [f"{doc}: ivr {words}: {option}" for option in
                          re.findall(r"--[a-z][a-z-]*", " ".join(rest)) if option not in known]
    assert wrong == []


# --- what Redis and /metrics hold ---------------------------------------------------------


def place_two_calls(simulate) -> None:
    """Through the real webhooks: one transferred, one abandoned after a silence and a
    wrong key: between them, every counter there is."""
    from ivr.simulator import Move

    simulate([Move("press", "1")], ["completed"])
    simulate([Move("silent"), Move("press", "8")])


def test_the_day_counters_design_lists_are_the_ones_a_drain_writes(simulate, redis_client):
    from ivr import redis_url, store
    from ivr.vocabulary import day_of, split_counter
    from workers.drain import Drainer

    place_two_calls(simulate)
    Drainer(redis_url.decoding(redis_client)).run()
    written = {split_counter(name)[0]
               for name in redis_client.hgetall(store.day_key(day_of(time.time())))}
    layout = read("docs/design.md").split("### The Redis layout", 1)[1].split("\n#", 1)[0]
    listed = {span.split(":")[0] for line in layout.splitlines()
              if re.match(r"- `", line) for span in ticked(line.split("`:")[0] + "`")}
    assert listed == written


def test_the_to_transfer_counter_counts_whole_seconds_up_to_its_cap():
    from ivr.call_record import MAX_COUNTED_WAIT, CallRecord
    from ivr.vocabulary import Count, Event, EventKind

    def waited(seconds: float) -> str:
        record = CallRecord(call="CA1")
        for step, (kind, at) in enumerate([(EventKind.CALL_STARTED, 0.0),
                                           (EventKind.TRANSFER_STARTED, seconds)], start=1):
            record.apply(Event(id=f"CA1:{step}", call="CA1", kind=kind, step=step,
                               at=1_800_000_000 + at, started=1_800_000_000,
                               data={"hotline": "national"}))
        return record.dimensions()[Count.TO_TRANSFER]

    assert waited(7.4) == "7"
    assert waited(MAX_COUNTED_WAIT * 10) == str(MAX_COUNTED_WAIT)


def test_the_metrics_operations_lists_are_the_ones_metrics_serves(client):
    served = dict(re.findall(r"^# TYPE (\S+) (\S+)$", client.get("/metrics").get_data(True),
                             re.M))
    served = {name: kind for name, kind in served.items() if name.startswith("ruta_")}
    listed = {ticked(name)[0].split("{")[0]: kind
              for name, kind, _ in table_rows(read("docs/operations.md"), "| metric |")}
    assert listed == served


# --- generated and measured ---------------------------------------------------------------


def test_the_readmes_example_call_is_what_ivr_call_prints():
    """The quick start's transcript is generated, not typed: run its command again."""
    from click.testing import CliRunner

    from ivr.cli import main

    command, shown_output = EXAMPLE_CALL.search(read(README)).groups()
    args = [a.strip('"') for a in re.findall(r'"[^"]*"|\S+', command)]
    result = CliRunner().invoke(main, ["call", *args])
    assert result.exit_code == 0, result.output
    printed = [line for line in result.output.splitlines() if not line.startswith("  (call ")]
    assert printed == shown_output.rstrip("\n").splitlines()


def understanding_row() -> str:
    text = read("docs/performance.md")
    return next(line for line in text.splitlines() if line.startswith("| `bench/understanding`"))


@pytest.mark.slow
def run_understanding_bench(*flags: str) -> str:
    """bench/understanding's output, run as a benchmark is (no test imports from bench/)."""
    done = subprocess.run([sys.executable, "bench/understanding_bench.py", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_understanding_figures_are_what_the_benchmark_measures():
    """bench/understanding's figures in docs/performance.md are its own (its RESULT line)."""
    out = run_understanding_bench()
    last = out.splitlines()[-1]
    assert last.startswith("RESULT "), out
    result = {k: float(v) for k, v in (pair.split("=") for pair in last.split()[1:])}
    tested = int(re.search(r"== test part .*: (\d+) utterances", out)[1])
    row = understanding_row()
    assert f"the {tested} utterances of the test part" in row
    assert f"first-try accuracy {result['accuracy']:.1%}" in row
    assert f"emergency recall {result['emergency_recall']:.1%} at once" in row
    assert f"{result['emergency_recall_with_question']:.1%} with the danger question" in row
    assert f"false emergencies {result['false_emergency']:.1%}" in row
    assert f"at least {result['worst_group']:.1%}" in row
    elsewhere = int(result["child_elsewhere"])
    said = {0: "no utterance", 1: "1 utterance"}.get(elsewhere, f"{elsewhere} utterances")
    assert f"{said} naming a child sent to another line" in row


@pytest.mark.slow
def test_the_cross_validation_figure_is_what_the_benchmark_measures():
    """`bench/understanding --learn --peer`: the learn part's cross-validated accuracy, the
    matcher's and the plain classifier's on the same split."""
    out = run_understanding_bench("--learn", "--peer", "--no-test")
    learned = int(re.search(r"== learn part, leave-one-writer-out cross-validation: (\d+) "
                            r"utterances", out)[1])
    matcher, peer = re.findall(r"first-try accuracy +([\d.]+%)", out)
    assert f"on the {learned:,} of the learn part: {matcher}; " in understanding_row()
    assert f"a plain TF-IDF classifier on the same split, `--peer`: {peer})" in (
        understanding_row())
    (matcher_found, peer_found) = re.findall(r"([\d.]+%) with the danger question", out)
    (matcher_elsewhere, peer_elsewhere) = re.findall(r"child sent elsewhere +(\d+)", out)
    assert (f"the peer finds fewer emergencies, {peer_found} against {matcher_found} with the "
            f"question, and sends {peer_elsewhere} children elsewhere against "
            f"{matcher_elsewhere}") in understanding_row()


def test_the_filters_documented_are_the_ones_the_url_takes():
    from ivr.filters import HOUR
    from ivr.vocabulary import ANY_HOTLINE, REACHED_NO, REACHED_YES, Facet, Input

    text = " ".join(read("docs/staff.md").split())
    said = text[text.index("**Filters**"):text.index("one value each")]
    assert set(re.findall(r"`(\w+)(?:=\w+)?`", said)) == {
        *Facet, *Input, REACHED_YES, REACHED_NO, HOUR}
    assert f"`not_connected={ANY_HOTLINE}`" in said

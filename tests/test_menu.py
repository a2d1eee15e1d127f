"""Loading and checking config/menu.toml, config/hotlines.toml and prompts/*.toml.

Each broken configuration is a copy of the shipped files in tmp_path with one TOML edit,
so a test fails if the rule it checks stops reporting the mistake an operator made.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr import menu as menu_config
from ivr.cli import main
from ivr.menu import ConfigError

SHIPPED = menu_config.load()


# --- helpers ------------------------------------------------------------------------


def copy_config(tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the shipped config/ and prompts/ directories."""
    config = shutil.copytree(menu_config.CONFIG_DIR, tmp_path / "config")
    prompts = shutil.copytree(menu_config.PROMPTS_DIR, tmp_path / "prompts")
    return Path(config), Path(prompts)


def edit(path: Path, pattern: str, replacement: str, count: int = 1) -> None:
    """Replace `pattern` (a multi-line regex) in the file; the pattern must be there."""
    text = path.read_text(encoding="utf-8")
    new, n = re.subn(pattern, replacement, text, count=count, flags=re.MULTILINE)
    assert n, f"{pattern!r} not found in {path}: the shipped file changed, update the test"
    path.write_text(new, encoding="utf-8")


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n" + text, encoding="utf-8")


def problems_of(config: Path, prompts: Path) -> list[str]:
    """The problems load() reports for these directories (it must refuse them)."""
    with pytest.raises(ConfigError) as caught:
        menu_config.load(config, prompts)
    assert str(caught.value).startswith("invalid configuration:")
    return caught.value.problems


def in_section(path: Path, header: str, pattern: str, replacement: str) -> None:
    """Like edit(), but only inside the TOML section that starts with `header`."""
    text = path.read_text(encoding="utf-8")
    start = text.index(header)
    nxt = re.search(r"^\[", text[start + len(header):], flags=re.MULTILINE)
    end = start + len(header) + nxt.start() if nxt else len(text)
    section, n = re.subn(pattern, replacement, text[start:end], count=1, flags=re.MULTILINE)
    assert n, f"{pattern!r} not found in {header} of {path}"
    path.write_text(text[:start] + section + text[end:], encoding="utf-8")


# --- the shipped configuration ------------------------------------------------------------


def test_shipped_config_loads_without_problems():
    """The files in the repository load: two languages, the welcome question, 7 lines."""
    assert SHIPPED.start == "welcome"
    assert SHIPPED.languages == ("es", "en")
    assert {"welcome", "report"} <= set(SHIPPED.nodes)
    assert {"national", "icbf", "labour", "emergency"} <= set(SHIPPED.hotlines)
    assert not any("budget" in w for w in SHIPPED.warnings)


def test_shipped_spoken_paths_are_within_budget():
    """No caller hears more than budget_seconds of prompts before a transfer starts."""
    paths = menu_config.spoken_paths(SHIPPED)
    over = [f"{p.label}: {p.seconds:.1f}" for p in paths if p.seconds > SHIPPED.budget_seconds]
    assert not over


def test_spoken_paths_cover_every_option_in_every_language():
    """Every option of every question has a path, in each language, plus the 0 key."""
    labels = {p.label for p in menu_config.spoken_paths(SHIPPED)}
    told = " (number read)"  # a line Twilio cannot dial yet: its number is what they get
    assert {"es 1 -> icbf", f"es 2 -> labour{told}", f"es 4 1 -> prosecutor{told}",
            "es 4 2 -> bogota", "en 9 1 -> icbf", "en 9 4 2 -> bogota",
            f"es 0 -> emergency{told}"} <= labels
    for lang in SHIPPED.languages:
        assert sum(label.startswith(lang + " ") for label in labels) == 7  # 6 + emergency


def test_spoken_paths_count_only_up_to_the_offering_sentence():
    """Barge-in: option 1 (offered early) is heard sooner than option 5 (offered last)."""
    seconds = {p.label.removesuffix(" (number read)"): p.seconds
               for p in menu_config.spoken_paths(SHIPPED)}
    assert 0 < seconds["es 0 -> emergency"] < seconds["es 1 -> icbf"] < seconds["es 5 -> national"]
    assert seconds["es 4 1 -> prosecutor"] < seconds["es 4 2 -> bogota"]
    for p in menu_config.spoken_paths(SHIPPED):
        assert p.seconds == pytest.approx(p.words * 60 / SHIPPED.words_per_minute)


def test_english_emergency_path_counts_the_language_switch():
    """An English caller hears the greeting and "For English, press 9" before pressing 0,
    then what to do right now: the emergency number (the line has no dial target yet)."""
    en_0 = next(p for p in menu_config.spoken_paths(SHIPPED)
                if p.language == "en" and p.hotline == "emergency")
    en_texts = SHIPPED.prompts["en"]
    heard = [SHIPPED.prompts["es"]["greeting"], en_texts["language_offer"],
             menu_config.sentences(en_texts["main_menu"])[0],
             "If someone is in danger, hang up and dial 1 2 3."]
    assert en_0.words == sum(menu_config.word_count(t) for t in heard)
    assert not en_0.connected


def test_every_line_without_a_dial_target_gets_a_warning():
    """Each line still waiting for an E.164 number or SIP route is named in a warning."""
    waiting = {h.id for h in SHIPPED.hotlines.values() if not h.dial}
    assert waiting == {"labour", "police", "prosecutor", "emergency"}
    warned = {w.split(":")[0].removeprefix("hotline ") for w in SHIPPED.warnings
              if "no dial target" in w}
    assert warned == waiting


def test_e164_or_sip_target_has_no_warning(tmp_path):
    """Replacing a short code by an E.164 number or a SIP route silences its warning."""
    config, prompts = copy_config(tmp_path)
    in_section(config / "hotlines.toml", "[labour]", r"^dial = .*$", 'dial = ["+5712345678"]')
    in_section(config / "hotlines.toml", "[police]", r"^dial = .*$",
               'dial = ["sip:purpura@carrier.example"]')
    assert [w for w in SHIPPED.warnings if w.startswith(("hotline labour", "hotline police"))]
    menu = menu_config.load(config, prompts)
    assert not [w for w in menu.warnings if w.startswith(("hotline labour", "hotline police"))]
    assert menu.hotlines["police"].dial == ("sip:purpura@carrier.example",)


@pytest.mark.parametrize(("target", "ok"), [
    ("+5718000522020", True), ("sip:line@carrier.example", True),
    ("sips:line@carrier.example", True), ("144", False), ("018000522020", False),
    ("+57 1 8000", False), ("sip:nobody", False), ("", False),
])
def test_is_dialable(target, ok):
    """Only E.164 numbers and SIP URIs count as something Twilio can dial."""
    assert menu_config.is_dialable(target) is ok


def test_hours_are_parsed_into_bogota_windows(tmp_path):
    """"mon-fri 07:00-19:00" and a wrapping "sat-mon" range become weekly windows."""
    config, prompts = copy_config(tmp_path)
    in_section(config / "hotlines.toml", "[labour]", r"^say = .*$",
               'say = "120"\nhours = ["mon-fri 07:00-19:00", "sat-mon 08:00-12:00"]')
    hours = menu_config.load(config, prompts).hotlines["labour"].hours
    days = sorted({d for d, _, _ in hours.windows})
    assert days == [0, 1, 2, 3, 4, 5, 6]
    assert (5, time(8), time(12)) in hours.windows and (0, time(8), time(12)) in hours.windows
    assert hours.is_open(datetime(2025, 3, 8, 14, 0, tzinfo=UTC))  # Sat 09:00 Bogotá
    assert not hours.is_open(datetime(2025, 3, 8, 18, 0, tzinfo=UTC))  # Sat 13:00 Bogotá
    assert SHIPPED.hotlines["national"].hours.is_open(datetime(2025, 3, 9, 8, tzinfo=UTC))


def test_hours_in_spanish_are_the_same_windows(tmp_path):
    """hotlines.toml may name the days in Spanish (ivr/opening_hours.py): same windows."""
    config, prompts = copy_config(tmp_path)
    in_section(config / "hotlines.toml", "[labour]", r"^say = .*$",
               'say = "120"\nhours = ["lun-vie 07:00-19:00", "Sábado-lunes 08:00-12:00"]')
    spanish = menu_config.load(config, prompts).hotlines["labour"].hours
    in_section(config / "hotlines.toml", "[labour]", r"^hours = .*$",
               'hours = ["mon-fri 07:00-19:00", "sat-mon 08:00-12:00"]')
    assert menu_config.load(config, prompts).hotlines["labour"].hours == spanish


# --- every validation rule: a broken copy and the problem it must report ---------------------

H, M, ES, EN = "hotlines.toml", "menu.toml", "es.toml", "en.toml"

BROKEN = [
    # (what the operator got wrong, file, regex, replacement, the problem it must report)
    ("option names an unknown hotline", M, r'^hotline = "labour"', 'hotline = "labor"',
     "node welcome, key 2: unknown hotline 'labor'"),
    ("option names an unknown node", M, r'^next = "report"', 'next = "reporte"',
     "node welcome, key 4: unknown node 'reporte'"),
    ("duplicate key", M, r'^key = "5"', 'key = "4"',
     "node welcome, option 5: duplicate key 4"),
    ("key is not one digit", M, r'^key = "5"', 'key = "10"',
     "node welcome, option 5: key must be one digit, got '10'"),
    ("reserved key 0 used by an option", M, r'^key = "5"', 'key = "0"',
     "node welcome: key 0 is reserved"),
    ("language key 9 used at the start node", M, r'^key = "5"', 'key = "9"',
     "node welcome: key 9 is reserved"),
    ("option with both next and hotline", M, r'^hotline = "icbf"',
     'hotline = "icbf"\nnext = "report"',
     "node welcome, option 1: needs exactly one of `next` or `hotline`"),
    ("option with no speech words in English", M, r"^speech\.en = ", "speech.fr = ",
     "node welcome, key 1: no speech words for en"),
    ("start node missing", M, r'^start = "welcome"', "",
     "menu.toml: `start` (the first node) is missing"),
    ("start node does not exist", M, r'^start = "welcome"', 'start = "bienvenida"',
     "menu.toml: start node 'bienvenida' does not exist"),
    ("default hotline unknown", M, r'^default_hotline = "national"',
     'default_hotline = "nacional"', "menu.toml: hotline 'nacional' is not in hotlines.toml"),
    ("emergency hotline unknown", M, r'^emergency_hotline = "emergency"',
     'emergency_hotline = "123"', "menu.toml: hotline '123' is not in hotlines.toml"),
    ("voice settings missing for a language", M, r"^\[voices\.en\]", "[voices.fr]",
     "voices.en: missing voice settings for language en"),
    ("missing prompt in a language", EN, r"^still_trying = .*\n", "",
     "prompts/en: prompt 'still_trying': this prompt is missing"),
    ("missing node prompt in a language", ES, r'^report_menu = """(?:.|\n)*?"""\n', "",
     "prompts/es: prompt 'report_menu': this prompt is missing"),
    ("empty prompt", ES, r"^goodbye = .*$", 'goodbye = ""',
     "prompts/es: prompt 'goodbye': this prompt is empty"),
    ("blank prompt", EN, r"^invalid = .*$", 'invalid = "   "',
     "prompts/en: prompt 'invalid': this prompt is empty"),
    ("unknown placeholder", ES, r"^transfer = .*$", 'transfer = "Le comunico con {linea}."',
     "prompts/es: prompt 'transfer': {linea} cannot be filled in here; this prompt may use "
     "{hotline}"),
    ("placeholder in a prompt that takes none", EN, r"^goodbye = .*$",
     'goodbye = "Goodbye from {hotline}."',
     "prompts/en: prompt 'goodbye': {hotline} cannot be filled in here; this prompt uses no "
     "placeholders"),
    ("unbalanced brace in a prompt", EN, r"^goodbye = .*$", 'goodbye = "Goodbye {"',
     "prompts/en: prompt 'goodbye': it cannot be read: "),
    ("prompt never names an offered key", EN, r"press 3\.", "press three.",
     "prompts/en: prompt 'main_menu': it never names key 3"),
    ("hotline name missing in a language", H, r"^name\.en = .*$", "",
     "hotline national: missing name.en"),
    ("default line with nothing to dial", H, r'^dial = \["\+5718000522020"\]', "dial = []",
     "hotline national: the default line needs at least one E.164 number or SIP URI to dial"),
    ("short code as dial target", H, r'^dial = \["\+573503085507"\]', 'dial = ["123"]',
     "hotline bogota: '123' cannot be dialled by Twilio"),
    ("say is not digits", H, r'^say = "120"', 'say = "ciento veinte"',
     "hotline labour: the number said to callers must be the digits a caller can dial"),
    ("fallback to an unknown hotline", H, r'^fallback = "national"\n\n\[labour\]',
     'fallback = "nacional"\n\n[labour]',
     "hotline icbf: fallback 'nacional' is not a hotline"),
    ("invalid E.164 number", H, r'^dial = \["\+573503085507"\]', 'dial = ["+57 350 308 5507"]',
     "hotline bogota: '+57 350 308 5507' is not a valid E.164 number"),
    ("E.164 number too short", H, r'^dial = \["\+573503085507"\]', 'dial = ["+5735"]',
     "hotline bogota: '+5735' is not a valid E.164 number"),
    ("invalid SIP URI", H, r'^dial = \["\+573503085507"\]', 'dial = ["sip:bogota"]',
     "hotline bogota: 'sip:bogota' is not a valid SIP URI"),
    ("hours in words", H, r'^say = "120"', 'say = "120"\nhours = "lunes a viernes 8-5"',
     "hotline labour: hours: 'lunes a viernes 8-5' must look like 'mon-fri 08:00-17:00"),
    ("hours with an unknown day", H, r'^say = "120"',
     'say = "120"\nhours = ["lnu-vie 07:00-19:00"]',
     "hotline labour: hours: unknown day 'lnu'"),
    ("hours with an impossible time", H, r'^say = "120"',
     'say = "120"\nhours = ["mon-fri 07:00-25:00"]',
     "hotline labour: hours: impossible time in 'mon-fri 07:00-25:00'"),
    ("hours ending before they start", H, r'^say = "120"',
     'say = "120"\nhours = ["mon-fri 19:00-07:00"]',
     "hotline labour: hours: 'mon-fri 19:00-07:00' must end after it starts"),
    ("hotlines.toml not valid TOML", H, r"^\[national\]", "[national",
     "hotlines.toml: not valid TOML"),
    ("a hotline that is not a table", H, r"\A", 'stray = "x"\n',
     "hotline stray: expected a table"),
]


@pytest.mark.parametrize(("file", "pattern", "replacement", "message"),
                         [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_config_reports_a_clear_problem(tmp_path, file, pattern, replacement, message):
    """The mistake stops the load, and the problem list says what and where."""
    config, prompts = copy_config(tmp_path)
    edit((prompts if file in (ES, EN) else config) / file, pattern, replacement)
    problems = problems_of(config, prompts)
    assert any(message in p for p in problems), problems


def test_unreachable_node_is_reported(tmp_path):
    """A question no option leads to is an error naming it."""
    config, prompts = copy_config(tmp_path)
    append(config / M, '[nodes.orphan]\nprompt = "report_menu"\n\n[[nodes.orphan.options]]\n'
           'key = "1"\nhotline = "national"\nspeech.es = ["uno"]\nspeech.en = ["one"]\n\n'
           '[[nodes.orphan.options]]\nkey = "2"\nhotline = "bogota"\n'
           'speech.es = ["dos"]\nspeech.en = ["two"]\n')
    problems = problems_of(config, prompts)
    assert problems == ["node orphan: unreachable from the start node 'welcome'"]


def test_node_with_no_options_is_reported(tmp_path):
    """A question with no options is an error."""
    config, prompts = copy_config(tmp_path)
    append(config / M, '[nodes.empty]\nprompt = "report_menu"\n')
    assert "node empty: has no options" in problems_of(config, prompts)


def test_node_with_no_path_to_a_hotline_is_reported(tmp_path):
    """A question whose options only loop back never transfers anyone: an error."""
    config, prompts = copy_config(tmp_path)
    in_section(config / M, "[[nodes.report.options]]", r'^hotline = "prosecutor"',
               'next = "report"')
    text = (config / M).read_text(encoding="utf-8")
    (config / M).write_text(text.replace('hotline = "bogota"', 'next = "report"'),
                            encoding="utf-8")
    problems = problems_of(config, prompts)
    assert "node report: no path from here ends at a hotline" in problems
    assert not any(p.startswith("node welcome") for p in problems)  # welcome still reaches


def test_fallback_cycle_is_reported(tmp_path):
    """national -> police -> national would ring forever: an error showing the cycle."""
    config, prompts = copy_config(tmp_path)
    edit(config / H, r"^\[national\]", '[national]\nfallback = "police"')
    problems = problems_of(config, prompts)
    assert ("hotline national: fallback cycle the National Anti-Trafficking Line -> the "
            "National Police line -> the National Anti-Trafficking Line") in problems


def test_all_problems_are_reported_at_once(tmp_path):
    """Several mistakes in several files are all listed, not just the first."""
    config, prompts = copy_config(tmp_path)
    edit(config / M, r'^hotline = "labour"', 'hotline = "labor"')
    edit(config / H, r'^dial = \["\+573503085507"\]', 'dial = ["+57-350"]')
    edit(prompts / ES, r"^goodbye = .*$", 'goodbye = ""')
    problems = problems_of(config, prompts)
    assert len(problems) >= 3
    assert {p.split(":")[0] for p in problems} >= {
        "node welcome, key 2", "hotline bogota", "prompts/es"}


def test_missing_file_is_reported(tmp_path):
    """A missing prompts file names the file."""
    config, prompts = copy_config(tmp_path)
    (prompts / EN).unlink()
    problems = problems_of(config, prompts)
    assert problems == [f"{prompts / EN}: file not found"]


def test_prompt_override_is_checked_like_a_file():
    """An override that empties a prompt is refused like an empty prompt in the file."""
    with pytest.raises(ConfigError) as caught:
        menu_config.load(overrides={"prompts": {"es": {"goodbye": "  "}}})
    assert "prompts/es: prompt 'goodbye': this prompt is empty" in caught.value.problems


def test_over_budget_path_is_a_warning_not_an_error(tmp_path):
    """A menu too long to hear within budget_seconds still loads, with a warning per path."""
    config, prompts = copy_config(tmp_path)
    edit(config / M, r"^budget_seconds = \d+", "budget_seconds = 20")
    menu = menu_config.load(config, prompts)
    over = [w for w in menu.warnings if "budget" in w]
    expected = [p for p in menu_config.spoken_paths(menu) if p.seconds > 20]
    assert expected and len(over) == len(expected)
    assert any(w.startswith("path es 5 -> national:") and "over the 20 s budget" in w
               for w in over)


# --- ivr config check ---------------------------------------------------------------


def test_cli_config_check_ok_prints_each_paths_seconds():
    """`ivr config check` exits 0 and prints every path with its spoken seconds."""
    result = CliRunner().invoke(main, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "menu ok" in result.stdout
    for path in menu_config.spoken_paths(SHIPPED):
        assert re.search(rf"{re.escape(path.label)}\s+{path.seconds:.1f} s", result.stdout)
    assert "OVER BUDGET" not in result.stdout
    assert "warning: hotline labour: no dial target; callers are told to call 120" in (
        result.stdout)


def test_cli_config_check_flags_over_budget_paths(tmp_path):
    """A path over budget is marked OVER BUDGET, and the check still passes."""
    config, prompts = copy_config(tmp_path)
    edit(config / M, r"^budget_seconds = \d+", "budget_seconds = 20")
    result = CliRunner().invoke(
        main, ["config", "check", "--config-dir", str(config), "--prompts-dir", str(prompts)])
    assert result.exit_code == 0
    assert re.search(r"es 5 -> national\s+\d+\.\d s  OVER BUDGET", result.stdout)


def test_cli_config_check_names_each_line_that_gets_callers_real_numbers(tmp_path):
    """A plain notice per `show_caller` line: the shipped emergency line, and any other
    an operator marks."""
    notice = "notice: hotline {} receives callers' real numbers (show_caller = true)"
    result = CliRunner().invoke(main, ["config", "check"])
    assert result.exit_code == 0, result.output
    notices = [ln.strip() for ln in result.stdout.splitlines() if "notice:" in ln]
    assert notices == [notice.format("emergency")]

    config, prompts = copy_config(tmp_path)
    edit(config / "hotlines.toml", r'^say = "120"$', 'say = "120"\nshow_caller = true')
    result = CliRunner().invoke(
        main, ["config", "check", "--config-dir", str(config), "--prompts-dir", str(prompts)])
    assert result.exit_code == 0, result.output
    notices = [ln.strip() for ln in result.stdout.splitlines() if "notice:" in ln]
    assert notices == [notice.format("labour"), notice.format("emergency")]


def test_cli_config_check_broken_dir_exits_1_and_lists_problems(tmp_path):
    """A broken copy: exit status 1 and every problem printed."""
    config, prompts = copy_config(tmp_path)
    edit(config / M, r'^hotline = "labour"', 'hotline = "labor"')
    edit(prompts / EN, r"press 3\.", "press three.")
    expected = problems_of(config, prompts)
    result = CliRunner().invoke(
        main, ["config", "check", "--config-dir", str(config), "--prompts-dir", str(prompts)])
    assert result.exit_code == 1
    assert f"{len(expected)} problem(s):" in result.stderr
    for problem in expected:
        assert f"error: {problem}" in result.stderr
    assert "menu ok" not in result.output

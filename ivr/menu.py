"""Load and check the menu tree, the hotline directory and the prompts.

Everything the call flow needs becomes frozen dataclasses here, once, at start-up, so a
webhook never reads a file or a database to route a caller. `load()` raises `ConfigError`
listing every problem it found; `check()` also returns the warnings and the spoken-seconds
figure of every path (what `ivr config check` prints).
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from functools import cached_property, lru_cache
from itertools import chain, zip_longest
from pathlib import Path

from ivr import opening_hours
from ivr.message import N_, InLanguages, Message
from ivr.recordings import Recording, RecordingRefused, checked
from ivr.speech import Choice, Danger, Matcher
from ivr.vocabulary import BOGOTA, Category

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
PROMPTS_DIR = ROOT / "prompts"

# Placeholders each prompt may use; any other one is a configuration error.
PROMPT_PLACEHOLDERS: dict[str, set[str]] = {
    "transfer": {"hotline"},
    "unreachable": {"hotline", "number"},
    "direct_only": {"hotline", "number"},
    "numbers_item": {"hotline", "number"},
    "out_of_service": {"hotline", "number"},
    "emergency_advice": {"number"},
    "emergency_stay": {"hotline"},
    "screen_whisper": {"about", "language"},
    "either_or": {"first", "first_key", "second", "second_key"},
    "keys_only": {"key"},
    "keys_item": {"label", "key"},
}
# Placeholders that are numbers: a recorded prompt plays its recording, then says these
# with text-to-speech (no recording can hold every number).
NUMBER_PLACEHOLDERS = ("number", "key", "first_key", "second_key")
RECORDING_KINDS = ("wav", "mp3")  # a shipped recording: prompts/<lang>/<prompt>.wav
# Prompts the engine itself says, whatever the menu tree looks like.
ENGINE_PROMPTS = [
    "language_offer", "no_input", "invalid", "transfer", "unreachable", "direct_only",
    "still_trying", "numbers_intro", "numbers_item", "numbers_again", "goodbye",
    "out_of_service", "emergency_advice", "emergency_stay", "danger_question", "either_or",
    "keys_only", "keys_item",
]
# The engine's prompts by part of the call, in the order a caller meets them (the admin's
# prompts page lists them so, the questions' own prompts after "start").
PROMPTS_BY_PART = {
    "start": ("greeting", "language_offer"),
    "not_understood": ("no_input", "invalid", "danger_question", "either_or", "keys_only",
                       "keys_item"),
    "transfer": ("transfer", "still_trying", "direct_only", "emergency_advice",
                 "emergency_stay"),
    "failure": ("unreachable", "out_of_service"),
    "numbers": ("numbers_intro", "numbers_item", "numbers_again"),
    "goodbye": ("goodbye",),
}
# Said to a hotline that screens its calls (`screen = true`), in the first language
# only: the lines are Colombian. `about_<category>` names what the call is about.
SCREEN_PROMPT = "screen_whisper"

DANGER_EXAMPLES = "danger"  # config/examples.toml: how callers say someone is in danger
MAX_EXAMPLE_CHARS = 500  # callers ramble: the evaluation set's longest is 415
SIP_URI = re.compile(r"^sips?:[^@\s]+@[^\s]+$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class Problem(str):
    """A problem an administrator can cause or fix on /admin. As a string, for the command
    line and the logs, where it is in the files and what is wrong, in English ("hotline
    labour: '144' cannot be dialled..."); for the admin pages, apart: `field`, the form
    field it belongs to ("hotline:labour:dial", "prompt:es:goodbye", "language:es"; the
    pages name it for their reader, ivr.i18n.field_label), and `message`, what is wrong (a
    Message, or anything with `text(lang)`), shown in the reader's language."""

    field: str
    message: Message

    def __new__(cls, where: str, message, field: str) -> Problem:
        problem = super().__new__(cls, f"{where}: {message}")
        problem.field, problem.message = field, message
        return problem


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason, one per line (those
    an administrator can cause on /admin are Problems, shown translated)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"- {p}" for p in problems))


@dataclass(frozen=True)
class OpeningHours:
    """Weekly opening windows in Bogotá time; no windows means open 24/7."""

    windows: tuple[tuple[int, time, time], ...] = ()

    def is_open(self, now: datetime) -> bool:
        if not self.windows:
            return True
        local = now.astimezone(BOGOTA)
        return any(
            day == local.weekday() and start <= local.time() < end
            for day, start, end in self.windows
        )


@dataclass(frozen=True)
class Hotline:
    id: str
    names: dict[str, str]
    dial: tuple[str, ...]
    say: str
    hours: OpeningHours = OpeningHours()
    fallback: str | None = None
    show_caller: bool = False  # pass the caller's number on (else the line sees ours)
    screen: bool = False  # the answering side must press a key before we connect
    min_answered: int = 8  # a `completed` transfer shorter than this was a machine


@dataclass(frozen=True)
class Option:
    key: str
    speech: dict[str, tuple[str, ...]]
    next: str | None = None
    hotline: str | None = None
    category: str = ""  # what the call is about, for reports ("child", "labour"...)
    priority: bool = False  # heard at all, it wins over the other options' words
    examples: dict[str, tuple[str, ...]] = field(default_factory=dict)  # how callers say it
    labels: dict[str, str] = field(default_factory=dict)  # its name in a short question
    # Keywords said of grown-ups or places too ("la pelada", "una charla en el colegio"): they
    # count toward a priority option, but do not win for it alone.
    loose: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Its callers are often in danger now (a child taken, migrants held, a worker locked
    # in): a sign of danger heard with it asks the danger question sooner.
    near_danger: bool = False

    def keywords(self, lang: str) -> tuple[str, ...]:
        return (*self.speech.get(lang, ()), *self.loose.get(lang, ()))


@dataclass(frozen=True)
class Node:
    id: str
    prompt: str
    options: tuple[Option, ...]
    greeting: str | None = None
    offers_language: bool = False

    def option(self, key: str) -> Option | None:
        return next((o for o in self.options if o.key == key), None)


@dataclass(frozen=True)
class Voice:
    """How a language is spoken and heard: its text-to-speech voice and language ("" for
    none: every prompt it needs is recorded), its speech recognition language ("" for
    none: keypad only), the key that picks it at the language question, and its name in
    itself ("Wayuunaiki") for the staff pages."""

    voice: str
    say_language: str
    speech_language: str
    key: str = "9"
    name: str = ""

    @property
    def speaks(self) -> bool:
        return bool(self.voice)

    @property
    def listens(self) -> bool:
        return bool(self.speech_language)


@dataclass(frozen=True)
class Menu:
    """The whole routing configuration, as the call flow sees it."""

    start: str
    languages: tuple[str, ...]
    nodes: dict[str, Node]
    hotlines: dict[str, Hotline]
    prompts: dict[str, dict[str, str]]  # language -> key -> text
    voices: dict[str, Voice]
    emergency_words: dict[str, tuple[str, ...]]
    danger_named: dict[str, tuple[str, ...]]  # said and not denied: the emergency path
    language_words: dict[str, tuple[str, ...]]
    danger_examples: dict[str, tuple[str, ...]] = field(default_factory=dict)
    yes_words: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # language -> ((kind, word beginnings), ...): weak signs the danger detector weighs
    danger_signs: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = field(
        default_factory=dict)
    # likewise, signs that say "not now" (a past tense, a wish to report): they weigh
    # against danger, and never explain a decision for it
    not_now_signs: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = field(
        default_factory=dict)
    default_hotline: str = "national"
    emergency_hotline: str = "emergency"
    emergency_key: str = "0"
    repeat_key: str = "*"
    language_key: str = "9"
    max_attempts: int = 3
    gather_timeout: int = 6
    ring_timeout: int = 25  # seconds a target really rings (Twilio's padding included)
    ring_budget: int = 90  # seconds of ringing over every target of one call
    min_confidence: float = 0.3
    step_limit: int = 40
    budget_seconds: float = 30
    words_per_minute: int = 150
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # (node, language) -> the speech matcher for that question, built with the menu
    matchers: dict[tuple[str, str], Matcher] = field(default_factory=dict, compare=False)
    # (node, language, after the danger question) -> Twilio's speech hints, likewise
    hints: dict[tuple[str, str, bool], tuple[str, ...]] = field(default_factory=dict,
                                                                compare=False)
    recordings: dict[str, dict[str, Recording]] = field(default_factory=dict)  # lang -> key
    # (language, prompt, slow, values) -> what a caller hears (ivr.flow's Says): the same
    # for every call of this version, so made once. Not an argument: a menu made from
    # this one (dataclasses.replace) starts empty rather than share stale prompts.
    spoken: dict[tuple, tuple] = field(default_factory=dict, init=False, compare=False,
                                       repr=False)
    # (node, language, follow-up, greeted, lead prompt) -> the question (ivr.flow's Ask)
    # as every call of this version hears it, likewise made once.
    questions: dict[tuple, object] = field(default_factory=dict, init=False, compare=False,
                                           repr=False)
    # (where a transfer starts, which lines are open now) -> where it goes (ivr.flow), the
    # same for every call of this version at such an hour, likewise made once.
    transfers: dict[tuple, object] = field(default_factory=dict, init=False, compare=False,
                                           repr=False)

    def recording(self, language: str, key: str) -> Recording | None:
        """The recording a caller hears for prompt `key` in `language`, if it has one."""
        return self.recordings.get(language, {}).get(key)

    def text(self, language: str, key: str, /, **values: str) -> str:
        """The prompt `key` in `language`, placeholders filled; a sentence that starts
        with a placeholder starts with a capital ("{hotline} no contesta" -> "La ...")."""
        text = self.prompts[language][key].format(**values)
        return text[:1].upper() + text[1:]

    def other_language(self, language: str) -> str:
        """The language a caller's words for "the other language" switch to: from the
        first, the second; from any other, back to the first."""
        others = [lang for lang in self.languages if lang != language]
        return others[0] if others else language

    def offered_languages(self, language: str) -> tuple[str, ...]:
        """The languages the language question offers a caller of `language`: from the
        first, every other one; from any other, the way back to the first."""
        first = self.languages[0]
        return tuple(lang for lang in self.languages if lang != first) \
            if language == first else (first,)

    @cached_property
    def timed_hotlines(self) -> tuple[Hotline, ...]:
        """The hotlines with opening hours: the others are always open."""
        return tuple(h for h in self.hotlines.values() if h.hours.windows)

    def open_now(self, now: datetime) -> tuple[bool, ...]:
        """Whether each hotline with opening hours is open at `now`: all of the time of
        day a transfer's route depends on."""
        return tuple(h.hours.is_open(now) for h in self.timed_hotlines)

    def language_at_key(self, language: str, key: str) -> str | None:
        """The language a key picks at the language question, asked in `language`."""
        return next((lang for lang in self.offered_languages(language)
                     if self.voices[lang].key == key), None)


def is_dialable(target: str) -> bool:
    """True for what Twilio's <Dial> can reach: an E.164 number or a SIP URI."""
    return bool(E164.match(target) or SIP_URI.match(target))


def screen_prompts(menu: Menu) -> list[str]:
    """The prompts a screening hotline hears: the whisper, the language names and what a
    call can be about (every category of the menu, an emergency, and an unclear call)."""
    categories = {o.category for n in menu.nodes.values() for o in n.options if o.category}
    return [SCREEN_PROMPT, *(f"language_{lang}" for lang in menu.languages),
            *(f"about_{c}" for c in sorted(categories | {Category.EMERGENCY, Category.UNCLEAR}))]


@dataclass(frozen=True)
class Shipped:
    """The files as shipped, parsed once; administrators' overrides apply on top."""

    menu: dict
    hotlines: dict
    prompts: dict[str, dict[str, str]]
    examples: dict = field(default_factory=dict)  # "node.key" or "danger" -> lang -> phrases
    recordings: dict[str, dict[str, Recording]] = field(default_factory=dict)  # lang -> key
    audio_files: dict[str, Path] = field(default_factory=dict)  # Recording.name -> its file


# What an administrator may override (see ivr/versions.py): the rest stays in the files.
# Turning `show_caller` on, or changing `dial` on a line that has it, needs a second
# admin's approval (versions.ConfigVersions.approval_reasons).
HOTLINE_FIELDS = ("dial", "say", "hours", "fallback", "show_caller", "screen",
                  "min_answered_seconds")
VOICE_FIELDS = ("voice", "say_language", "speech_language")


def read_shipped(config_dir: Path | str = CONFIG_DIR,
                 prompts_dir: Path | str = PROMPTS_DIR) -> Shipped:
    """Parse the shipped files; raise ConfigError if one is missing or not TOML."""
    config_dir, prompts_dir = Path(config_dir), Path(prompts_dir)
    problems: list[str] = []
    menu_raw = _read_toml(config_dir / "menu.toml", problems)
    hotlines_raw = _read_toml(config_dir / "hotlines.toml", problems)
    languages = menu_raw.get("languages", ["es", "en"])
    prompts = {lang: _read_toml(prompts_dir / f"{lang}.toml", problems) for lang in languages}
    examples = _flat_examples(_read_toml(config_dir / "examples.toml", problems))
    recordings, files = _read_recordings(prompts_dir, languages, problems)
    if problems:
        raise ConfigError(problems)
    return Shipped(menu_raw, hotlines_raw, prompts, examples, recordings, files)


def _read_recordings(prompts_dir: Path, languages, problems: list[str]):
    """The shipped recordings, prompts/<lang>/<prompt>.wav (or .mp3), checked as an
    upload is: (lang -> prompt -> Recording, Recording.name -> file)."""
    recordings: dict[str, dict[str, Recording]] = {}
    files: dict[str, Path] = {}
    for lang in languages:
        folder = prompts_dir / lang
        found = sorted(f for kind in RECORDING_KINDS for f in folder.glob(f"*.{kind}"))
        for path in found if folder.is_dir() else ():
            try:
                recording = checked(path.read_bytes(), path.name)
            except RecordingRefused as e:
                problems.append(f"{path}: {e}")
                continue
            recordings.setdefault(lang, {})[path.stem] = recording
            files[recording.name] = path
    return recordings, files


def _flat_examples(raw: dict) -> dict:
    """[welcome.1] es = [...] -> {"welcome.1": {"es": [...]}}; [danger] stays "danger"."""
    flat = {}
    for name, value in raw.items():
        if name == DANGER_EXAMPLES or not isinstance(value, dict):
            flat[name] = value
            continue
        for key, langs in value.items():
            flat[f"{name}.{key}"] = langs
    return flat


def load(
    config_dir: Path | str = CONFIG_DIR,
    prompts_dir: Path | str = PROMPTS_DIR,
    overrides: dict | None = None,
) -> Menu:
    """Read and check the shipped files (and any overrides); raise ConfigError if broken."""
    return build(read_shipped(config_dir, prompts_dir), overrides)


def build(shipped: Shipped, overrides: dict | None = None, strict: bool = False,
          speech: bool = True) -> Menu:
    """The menu from the shipped files with an administrator's overrides applied.

    Raises ConfigError with every problem. `strict` (a publish) also refuses what is
    only a warning for shipped files: a path over the spoken-seconds budget. Without
    `speech` (a process that never hears a caller: the worker) no speech model is
    trained, which is most of a build's seconds.
    """
    overrides = overrides or {}
    problems: list[str] = []
    menu_raw = _copied(shipped.menu)
    hotlines_raw = _copied(shipped.hotlines)
    prompts = {lang: dict(texts) for lang, texts in shipped.prompts.items()}
    for lang, texts in (overrides.get("prompts") or {}).items():
        if lang not in prompts:
            problems.append(f"prompts/{lang}: no such language")
            continue
        prompts[lang].update(texts)
    for hid, fields in (overrides.get("hotlines") or {}).items():
        if hid not in hotlines_raw:
            problems.append(f"hotline {hid}: no such hotline in hotlines.toml")
            continue
        hotlines_raw[hid].update({k: v for k, v in fields.items() if k in HOTLINE_FIELDS})
        if not hotlines_raw[hid].get("fallback"):
            hotlines_raw[hid].pop("fallback", None)
    for lang, fields in (overrides.get("voices") or {}).items():
        voices = menu_raw.setdefault("voices", {})
        if lang not in voices:
            problems.append(f"voices.{lang}: no such language")
            continue
        voices[lang].update({k: v for k, v in fields.items() if k in VOICE_FIELDS})
    examples = dict(shipped.examples)  # read only below: an override replaces a name's table
    for name, langs in (overrides.get("examples") or {}).items():
        examples[name] = {**(examples.get(name) or {}), **langs}
    recordings = {lang: dict(found) for lang, found in shipped.recordings.items()}
    for lang, found in (overrides.get("recordings") or {}).items():
        for key, raw in found.items():  # None: a shipped recording taken away
            if raw:
                recordings.setdefault(lang, {})[key] = Recording.from_json(raw)
            else:
                recordings.get(lang, {}).pop(key, None)
    languages = tuple(menu_raw.get("languages", ["es", "en"]))
    menu = _build(menu_raw, hotlines_raw, prompts, examples, languages, problems)
    if menu:
        menu = replace(menu, recordings=recordings)
    warnings = _validate(menu, problems) if menu else []
    if menu:
        options = {f"{n.id}.{o.key}" for n in menu.nodes.values() for o in n.options}
        for name in sorted(set(examples) - options - {DANGER_EXAMPLES}):
            problems.append(f"examples {name}: no such question and option")
    if strict:
        problems += [w for w in warnings if w.startswith("path ")]
    if problems:
        raise ConfigError(problems)
    return replace(menu, warnings=tuple(warnings), matchers=matchers(menu) if speech else {},
                   hints=speech_hints(menu))



def _read_toml(path: Path, problems: list[str]) -> dict:
    """The file's content, parsed once per version of the file: thousands of example
    phrases cost tens of ms to parse, and every app and every check reads them. A copy,
    so no caller can change what the next one reads."""
    try:
        stat = path.stat()
        return _copied(_parsed_toml(path, stat.st_mtime_ns, stat.st_size))
    except FileNotFoundError:
        problems.append(f"{path}: file not found")
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{path}: not valid TOML: {e}")
    return {}


def _copied(value):
    """A copy of parsed TOML: new tables and arrays; strings, numbers and times are
    immutable and shared (copy.deepcopy's bookkeeping cost four times more)."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value


@lru_cache(maxsize=32)
def _parsed_toml(path: Path, mtime_ns: int, size: int) -> dict:
    """One version of a TOML file (known by its time and size), parsed."""
    with path.open("rb") as f:
        return tomllib.load(f)


def _build(menu_raw, hotlines_raw, prompts, examples, languages, problems) -> Menu | None:
    hotlines = {}
    for hid, raw in hotlines_raw.items():
        if not isinstance(raw, dict):
            problems.append(f"hotline {hid}: expected a table")
            continue
        dial = raw.get("dial") or []
        if isinstance(dial, str):
            dial = [dial]
        min_answered = raw.get("min_answered_seconds",
                               menu_raw.get("min_answered_seconds", 8))
        if not isinstance(min_answered, int) or not 0 <= min_answered <= 120:
            problems.append(Problem(f"hotline {hid}", Message(N_(
                "the fewest seconds of a real answer must be 0 to 120")),
                f"hotline:{hid}:min_answered_seconds"))
            min_answered = 8
        hotlines[hid] = Hotline(
            id=hid,
            names=dict(raw.get("name", {})),
            dial=tuple(str(t).strip() for t in dial),
            say=str(raw.get("say", "")).strip(),
            hours=_parse_hours(hid, raw.get("hours", "24/7"), problems),
            fallback=raw.get("fallback"),
            show_caller=bool(raw.get("show_caller", False)),
            screen=bool(raw.get("screen", False)),
            min_answered=min_answered,
        )
    nodes = {}
    for nid, raw in (menu_raw.get("nodes") or {}).items():
        options = []
        seen_keys: set[str] = set()
        for i, opt in enumerate(raw.get("options", [])):
            key = str(opt.get("key", ""))
            where = f"node {nid}, option {i + 1}"
            if not re.fullmatch(r"[0-9]", key):
                problems.append(f"{where}: key must be one digit, got {key!r}")
            if key in seen_keys:
                problems.append(f"{where}: duplicate key {key}")
            seen_keys.add(key)
            if bool(opt.get("next")) == bool(opt.get("hotline")):
                problems.append(f"{where}: needs exactly one of `next` or `hotline`")
            speech = {lang: tuple(words) for lang, words in (opt.get("speech") or {}).items()}
            said = _phrases(f"{nid}.{key}", examples.get(f"{nid}.{key}"), problems)
            options.append(Option(key, speech, opt.get("next"), opt.get("hotline"),
                                  str(opt.get("category", "")), bool(opt.get("priority")),
                                  said, {lang: str(text) for lang, text in
                                         (opt.get("label") or {}).items()},
                                  _words(opt.get("loose")), bool(opt.get("near_danger"))))
        nodes[nid] = Node(
            id=nid,
            prompt=raw.get("prompt", ""),
            options=tuple(options),
            greeting=raw.get("greeting"),
            offers_language=bool(raw.get("offers_language", False)),
        )
    voices = {}
    for lang in languages:
        v = (menu_raw.get("voices") or {}).get(lang)
        if not v:
            problems.append(f"voices.{lang}: missing voice settings for language {lang}")
            continue
        voices[lang] = Voice(v.get("voice", ""), v.get("say_language", lang),
                             v.get("speech_language", lang),
                             str(v.get("key", menu_raw.get("language_key", "9"))),
                             str(v.get("name", "")))
    settings = {
        k: menu_raw[k]
        for k in (
            "start", "default_hotline", "emergency_hotline", "emergency_key", "repeat_key",
            "language_key", "max_attempts", "gather_timeout", "ring_timeout",
            "ring_budget", "min_confidence", "step_limit", "budget_seconds", "words_per_minute",
        )
        if k in menu_raw
    }
    if "start" not in settings:
        problems.append("menu.toml: `start` (the first node) is missing")
        return None
    return Menu(
        languages=languages,
        nodes=nodes,
        hotlines=hotlines,
        prompts=prompts,
        voices=voices,
        emergency_words=_words(menu_raw.get("emergency_words")),
        danger_named=_words(menu_raw.get("danger_named")),
        language_words=_words(menu_raw.get("language_words")),
        danger_examples=_phrases(DANGER_EXAMPLES, examples.get(DANGER_EXAMPLES), problems),
        yes_words=_words(menu_raw.get("yes_words")),
        danger_signs=_signs(menu_raw.get("danger_signs")),
        not_now_signs=_signs(menu_raw.get("not_now_signs")),
        **settings,
    )


def _phrases(name: str, raw, problems: list[str]) -> dict[str, tuple[str, ...]]:
    """Example phrases per language (of examples.toml's `name`): lists of short strings."""
    out = {}
    for lang, phrases in (raw or {}).items():
        where, field = f"examples {name}.{lang}", f"examples:{name}:{lang}"
        if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
            problems.append(Problem(where, Message(N_("must be a list of phrases")), field))
            continue
        long = [p for p in phrases if len(p) > MAX_EXAMPLE_CHARS]
        if long:
            problems.append(Problem(where, Message(N_(
                "%(count)d phrase(s) longer than %(most)d characters"),
                {"count": len(long), "most": MAX_EXAMPLE_CHARS}), field))
        out[lang] = tuple(p.strip() for p in phrases if p.strip())
    return out


MAX_HINTS, MAX_HINT_CHARS = 500, 100  # Twilio's limits on <Gather hints>


def speech_hints(menu: Menu) -> dict[tuple[str, str, bool], tuple[str, ...]]:
    """Twilio's speech hints per (question, language, after the danger question): the yes
    words after that question, the options' keywords, the danger words, the language
    words where offered, then example phrases, one of each option's and of danger's in
    turn (so that no one line's examples fill the list); at most 500 entries of at most
    100 characters, as Twilio documents. Made once per menu version, and only as far as
    the 500th: thousands of examples are too many to sort through on every webhook."""
    out = {}
    for node in menu.nodes.values():
        for lang in menu.languages:
            for danger_question in (False, True):
                yes = menu.yes_words.get(lang, ()) if danger_question else ()
                out[node.id, lang, danger_question] = _first_hints(
                    chain(yes, _hint_candidates(menu, node, lang)))
    return out


def _hint_candidates(menu: Menu, node: Node, lang: str) -> Iterator[str]:
    yield from (w for o in node.options for w in o.keywords(lang))
    yield from menu.emergency_words.get(lang, ())
    if node.offers_language:
        yield from menu.language_words.get(lang, ())
    phrases = [o.examples.get(lang, ()) for o in node.options]
    for turn in zip_longest(*phrases, menu.danger_examples.get(lang, ())):
        yield from (phrase for phrase in turn if phrase is not None)


def _first_hints(said: Iterable[str]) -> tuple[str, ...]:
    """The first MAX_HINTS different entries, each without commas (Twilio's separator)
    and cut to MAX_HINT_CHARS."""
    kept: dict[str, None] = {}
    for entry in said:
        entry = entry.replace(",", " ")[:MAX_HINT_CHARS].strip()
        if entry:
            kept[entry] = None
            if len(kept) == MAX_HINTS:
                break
    return tuple(kept)


def matchers(menu: Menu, questions: Iterable[str] | None = None
             ) -> dict[tuple[str, str], Matcher]:
    """A speech matcher per question (of `questions`, else all) and language: keywords
    and examples of its options (and of the language switch where offered), danger words
    and examples first."""
    nodes = (list(menu.nodes.values()) if questions is None
             else [menu.nodes[q] for q in questions])
    out = {}
    for lang in menu.languages:
        # An example of danger may also be an option's ("my girl of 15 is locked in"):
        # it is not a sign of no danger. The options' keywords teach that a short answer
        # naming a line ("en Bogotá", "Spanish please") is none.
        dangerous = set(menu.danger_examples.get(lang, ()))
        others = tuple(t for n in menu.nodes.values() for o in n.options
                       for t in (*o.examples.get(lang, ()), *o.keywords(lang))
                       if t not in dangerous)
        danger = Danger(lang, menu.emergency_words.get(lang, ()),
                        menu.danger_examples.get(lang, ()), others,
                        menu.danger_signs.get(lang, ()), menu.danger_named.get(lang, ()),
                        menu.not_now_signs.get(lang, ()))
        for node in nodes:
            choices = [Choice(o.key, o.keywords(lang), o.examples.get(lang, ()),
                              o.priority, o.loose.get(lang, ()), o.near_danger)
                       for o in node.options]
            if node.offers_language:  # words for "the other language" (Menu.other_language)
                choices.append(Choice(menu.voices[menu.other_language(lang)].key,
                                      menu.language_words.get(lang, ())))
            out[node.id, lang] = Matcher(lang, choices, danger, menu.emergency_key)
    return out


def _signs(raw) -> dict[str, tuple[tuple[str, tuple[str, ...]], ...]]:
    """A [danger_signs] or [not_now_signs] table: language -> ((kind, beginnings), ...)."""
    return {lang: tuple((kind, tuple(words)) for kind, words in kinds.items())
            for lang, kinds in (raw or {}).items()}


def _words(raw) -> dict[str, tuple[str, ...]]:
    return {lang: tuple(words) for lang, words in (raw or {}).items()}


def _parse_hours(hid: str, raw, problems: list[str]) -> OpeningHours:
    """"24/7" or ["mon-fri 07:00-19:00", "sáb 08:00-12:00"] -> OpeningHours; the days
    in English or Spanish (ivr.opening_hours)."""
    windows, errors = opening_hours.read(raw)
    # The error says itself in the reader's language (HoursError.text: ivr.i18n.shown).
    problems.extend(Problem(f"hotline {hid}: hours", e.unnamed(), f"hotline:{hid}:hours")
                    for e in errors)
    return OpeningHours(tuple((day, w.start, w.end) for w in windows for day in w.days()))


def _validate(menu: Menu, problems: list[str]) -> list[str]:
    """Append every problem; return the warnings (usable, but an operator should act)."""
    warnings: list[str] = []
    names = {hid: InLanguages(h.names) for hid, h in menu.hotlines.items()}  # in messages
    for hid in (menu.default_hotline, menu.emergency_hotline):
        if hid not in menu.hotlines:
            problems.append(f"menu.toml: hotline {hid!r} is not in hotlines.toml")
    for h in menu.hotlines.values():
        for lang in menu.languages:
            if not h.names.get(lang, "").strip():
                problems.append(Problem(f"hotline {h.id}", Message(
                    N_("missing name.%(lang)s"), {"lang": lang}), f"hotline:{h.id}"))
        where, field = f"hotline {h.id}", f"hotline:{h.id}:"
        if not h.dial and h.id == menu.default_hotline:
            problems.append(Problem(where, Message(N_(
                "the default line needs at least one E.164 number or SIP URI to dial")),
                field + "dial"))
        if not re.fullmatch(r"[\d ]+", h.say):
            problems.append(Problem(where, Message(N_(
                "the number said to callers must be the digits a caller can dial")),
                field + "say"))
        if h.fallback and h.fallback not in menu.hotlines:
            problems.append(Problem(where, Message(N_(
                "fallback %(fallback)r is not a hotline"), {"fallback": h.fallback}),
                field + "fallback"))
        for target in h.dial:
            # Twilio's <Number> takes E.164 only and cannot dial Colombian short codes;
            # what it does after such a <Dial> is not documented, so never send one.
            if target.startswith("+") and not E164.match(target):
                problems.append(Problem(where, Message(N_(
                    "%(target)r is not a valid E.164 number"), {"target": target}),
                    field + "dial"))
            elif target.startswith("sip") and not SIP_URI.match(target):
                problems.append(Problem(where, Message(N_(
                    "%(target)r is not a valid SIP URI"), {"target": target}), field + "dial"))
            elif not is_dialable(target):
                problems.append(Problem(where, Message(N_(
                    "%(target)r cannot be dialled by Twilio (a short code or national form); "
                    "a dial target is an E.164 number (+57...) or a SIP URI. Give the number "
                    "callers dial themselves as the number said to callers"),
                    {"target": target}), field + "dial"))
        if not h.dial and h.id != menu.default_hotline:
            fallback = h.fallback or menu.default_hotline
            warnings.append(Problem(where, Message(N_(
                "no dial target; callers are told to call %(say)s themselves and are "
                "connected to its fallback, %(fallback)s"),
                {"say": h.say, "fallback": names.get(fallback, fallback)}), field + "dial"))
    for h in menu.hotlines.values():
        chain, hid = [], h.id
        while hid and hid in menu.hotlines and hid not in chain:
            chain.append(hid)
            hid = menu.hotlines[hid].fallback
        if hid in chain:
            cycle = Message.joined([names[c] for c in [*chain, hid]], " -> ")
            problems.append(Problem(f"hotline {h.id}", Message(
                N_("fallback cycle %(cycle)s"), {"cycle": cycle}), f"hotline:{h.id}:fallback"))

    for lang in menu.languages:
        texts = menu.prompts.get(lang, {})
        needed = set(ENGINE_PROMPTS) | {n.prompt for n in menu.nodes.values()}
        needed |= {n.greeting for n in menu.nodes.values() if n.greeting}
        if lang == menu.languages[0] and any(h.screen for h in menu.hotlines.values()):
            needed |= set(screen_prompts(menu))
        speaks = lang not in menu.voices or menu.voices[lang].speaks
        for key in sorted(needed):
            text = texts.get(key)
            if text is None:
                problems.append(_prompt_problem(lang, key, Message(N_(
                    "this prompt is missing"))))
            elif not str(text).strip():
                problems.append(_prompt_problem(lang, key, Message(N_(
                    "this prompt is empty"))))
            # The text stays the transcript; with no voice to read it, a caller hears
            # nothing but the recording.
            if not speaks and menu.recording(lang, key) is None:
                problems.append(_prompt_problem(lang, key, Message(N_(
                    "this language has no text-to-speech voice: this prompt needs a "
                    "recording"))))
        for key, text in texts.items():
            allowed = PROMPT_PLACEHOLDERS.get(key, set())
            try:
                used = {f for _, f, _, _ in string.Formatter().parse(str(text)) if f is not None}
            except ValueError as e:
                problems.append(_prompt_problem(lang, key, Message(N_(
                    "it cannot be read: %(error)s"), {"error": e})))
                continue
            for name in sorted(used - allowed):  # said with what the prompt may use
                problems.append(_prompt_problem(lang, key, Message(N_(
                    "{%(name)s} cannot be filled in here; this prompt may use %(allowed)s"),
                    {"name": name, "allowed": " ".join(f"{{{a}}}" for a in sorted(allowed))})
                    if allowed else Message(N_(
                        "{%(name)s} cannot be filled in here; this prompt uses no "
                        "placeholders"), {"name": name})))

    _validate_language_keys(menu, problems)
    if menu.start not in menu.nodes:
        problems.append(f"menu.toml: start node {menu.start!r} does not exist")
        return warnings
    for node in menu.nodes.values():
        if not node.options:
            problems.append(f"node {node.id}: has no options")
        for opt in node.options:
            if opt.next and opt.next not in menu.nodes:
                problems.append(f"node {node.id}, key {opt.key}: unknown node {opt.next!r}")
            if opt.hotline and opt.hotline not in menu.hotlines:
                problems.append(f"node {node.id}, key {opt.key}: unknown hotline {opt.hotline!r}")
            languages_keys = ({v.key for v in menu.voices.values()} if node.offers_language
                              else set())
            if opt.key == menu.emergency_key or opt.key in languages_keys:
                problems.append(f"node {node.id}: key {opt.key} is reserved")
            for lang in menu.languages:
                prompt = menu.prompts.get(lang, {}).get(node.prompt, "")
                if prompt and offering_sentence(prompt, opt.key) is None:
                    problems.append(_prompt_problem(lang, node.prompt, Message(N_(
                        "it never names key %(option)s"), {"option": opt.key})))
                listens = lang not in menu.voices or menu.voices[lang].listens
                if listens and not opt.speech.get(lang):  # keypad-only: needs none
                    problems.append(f"node {node.id}, key {opt.key}: no speech words for {lang}")
    reachable, stack = set(), [menu.start]
    while stack:
        nid = stack.pop()
        if nid in reachable or nid not in menu.nodes:
            continue
        reachable.add(nid)
        stack.extend(o.next for o in menu.nodes[nid].options if o.next)
    for nid in sorted(set(menu.nodes) - reachable):
        problems.append(f"node {nid}: unreachable from the start node {menu.start!r}")
    for nid in sorted(reachable):
        if not _reaches_hotline(menu, nid, set()):
            problems.append(f"node {nid}: no path from here ends at a hotline")
    if not problems:
        for path in spoken_paths(menu):
            if path.seconds > menu.budget_seconds:
                warnings.append(Problem(f"path {path.label}", Message(N_(
                    "keys %(keys)s to %(hotline)s: %(seconds).1f spoken seconds before the "
                    "transfer, over the %(budget)g s budget"), {
                        "keys": " ".join(path.keys) or "—", "seconds": path.seconds,
                        "hotline": names[path.hotline], "budget": menu.budget_seconds}),
                    f"language:{path.language}"))
    return warnings


def _validate_language_keys(menu: Menu, problems: list[str]) -> None:
    """Each language's key is one digit, and no two languages offered together share
    one (ivr.menu.Menu.offered_languages)."""
    for lang, voice in menu.voices.items():
        if not re.fullmatch(r"[0-9]", voice.key) or voice.key == menu.emergency_key:
            problems.append(Problem(f"voices.{lang}", Message(N_(
                "the key that picks this language must be one digit other than %(key)s"),
                {"key": menu.emergency_key}), f"language:{lang}"))
    for lang in menu.languages[:1]:
        offered = [o for o in menu.offered_languages(lang) if o in menu.voices]
        keys = [menu.voices[o].key for o in offered]
        for other in offered:
            if keys.count(menu.voices[other].key) > 1:
                problems.append(Problem(f"voices.{other}", Message(N_(
                    "another language is picked with key %(key)s too"),
                    {"key": menu.voices[other].key}), f"language:{other}"))


def _prompt_problem(lang: str, key: str, message: Message) -> Problem:
    return Problem(f"prompts/{lang}: prompt {key!r}", message, f"prompt:{lang}:{key}")


def _reaches_hotline(menu: Menu, nid: str, seen: set[str]) -> bool:
    if nid in seen:
        return False
    seen.add(nid)
    return any(
        o.hotline or (o.next in menu.nodes and _reaches_hotline(menu, o.next, seen))
        for o in menu.nodes[nid].options
    )


# --- spoken-seconds budget ---------------------------------------------------------


def offering_sentence(prompt: str, key: str) -> int | None:
    """Index of the first sentence of `prompt` that names `key` as a digit, or None."""
    for i, sentence in enumerate(sentences(prompt)):
        if re.search(rf"(?<![\d]){re.escape(key)}(?![\d])", sentence):
            return i
    return None


def spoken_number(number: str) -> str:
    """Digits a caller can write down: "01 8000 522 020" -> "0 1, 8 0 0 0, 5 2 2, 0 2 0"."""
    return ", ".join(" ".join(group) for group in number.split())


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def word_count(text: str) -> int:
    return len(re.findall(r"[\w']+", text))


@dataclass(frozen=True)
class SpokenPath:
    language: str
    keys: tuple[str, ...]
    hotline: str
    words: int
    seconds: float
    connected: bool = True  # False: the line cannot be dialled, its number is read

    @property
    def label(self) -> str:
        told = "" if self.connected else " (number read)"
        return f"{self.language} {' '.join(self.keys)} -> {self.hotline}{told}"


def spoken_paths(menu: Menu) -> list[SpokenPath]:
    """Every path from the greeting to a transfer, with the words a caller hears first
    (to its ring, or to its number for a line Twilio cannot dial).

    A caller who presses (or says) their option as soon as it is offered cuts the prompt
    there (Twilio's <Gather> barge-in), so a step counts the prompt up to and including
    the sentence that offers the option taken; a language switch at the start counts the
    greeting and the offers before the menu is heard again in the other language. A
    recorded prompt counts its recording's real length, whole, and its numbers' words.
    """
    paths = []
    first = menu.languages[0]
    start = menu.nodes[menu.start]
    greeting = heard(menu, first, start.greeting) if start.greeting else []
    offers = [item for lang in menu.offered_languages(first)
              for item in heard(menu, lang, "language_offer")] if start.offers_language else []
    for lang in menu.languages:
        # The first language's menu starts with the offers of the others (see flow._ask).
        said, keys = [*greeting, *offers], []
        if lang != first:
            keys.append(menu.voices[lang].key)
        _walk(menu, menu.start, lang, said, keys, (), paths)
    emergency = menu.hotlines[menu.emergency_hotline]
    for lang in menu.languages:  # 0 is offered in the first sentence of the main menu
        prompt = menu.prompts[lang][start.prompt]
        idx = offering_sentence(prompt, menu.emergency_key)
        if idx is not None:
            said, keys = [*greeting, *offers], [menu.emergency_key]
            if lang != first:
                keys.insert(0, menu.voices[lang].key)
            said += heard(menu, lang, start.prompt, upto=idx)
            said += heard(menu, lang, "emergency_advice", number=spoken_number(emergency.say))
            paths.append(_spoken(menu, lang, tuple(keys), emergency, said,
                                 announce="emergency_stay", told=(emergency.id,)))
    return paths


def heard(menu: Menu, lang: str, key: str, /, upto: int | None = None,
          **values: str) -> list[str | float]:
    """What a caller hears of prompt `key`: its recording's seconds and the numbers said
    after it, or its text (up to sentence `upto` where a key press cuts it)."""
    recording = menu.recording(lang, key)
    if recording is not None:
        return [recording.seconds, numbers_of(menu, lang, key, **values)]
    text = menu.text(lang, key, **values)
    return [" ".join(sentences(text)[: upto + 1]) if upto is not None else text]


def numbers_of(menu: Menu, lang: str, key: str, /, **values: str) -> str:
    """The numbers prompt `key` says (its number placeholders, filled), in its order."""
    used = [f for _, f, _, _ in string.Formatter().parse(menu.prompts[lang][key])
            if f in NUMBER_PLACEHOLDERS]
    return ", ".join(values[f] for f in used if values.get(f))


def _walk(menu, nid, lang, said, keys, visited, paths):
    node = menu.nodes[nid]
    visited = (*visited, nid)
    prompt = menu.prompts[lang][node.prompt]
    for opt in node.options:
        idx = offering_sentence(prompt, opt.key) or 0
        step_heard = [*said, *heard(menu, lang, node.prompt, upto=idx)]
        if opt.hotline:
            hotline = menu.hotlines[opt.hotline]
            paths.append(_spoken(menu, lang, (*keys, opt.key), hotline, step_heard))
        elif opt.next and opt.next not in visited:
            _walk(menu, opt.next, lang, step_heard, [*keys, opt.key], visited, paths)


def _spoken(menu: Menu, lang: str, keys, hotline: Hotline, said: list[str | float],
            announce: str = "transfer", told=()) -> SpokenPath:
    """The path's words until the caller is given the line they chose: its ring, or, for
    a line Twilio cannot dial, its number read to them (as ivr.flow says it)."""
    if hotline.dial:
        last = heard(menu, lang, announce, hotline=hotline.names[lang])
    elif hotline.id in told:  # the emergency advice already gave its number
        last = []
    else:
        last = heard(menu, lang, "direct_only", hotline=hotline.names[lang],
                     number=spoken_number(hotline.say))
    items = [*said, *last]
    words = sum(word_count(t) for t in items if isinstance(t, str))
    recorded = sum(t for t in items if isinstance(t, float))
    return SpokenPath(lang, tuple(keys), hotline.id, words,
                      recorded + words * 60 / menu.words_per_minute,
                      connected=bool(hotline.dial))

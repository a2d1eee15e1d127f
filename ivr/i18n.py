"""The staff pages' language: Spanish (Colombia) first, English too. Flask-Babel.

Every string a person reads on a staff page comes from the catalogues in
ivr/translations/<lang>/LC_MESSAGES/messages.po, whose msgids are English (the code's
language, and what is shown when a catalogue lacks an entry). setup.py compiles them to
.mo files when the package is installed; scripts/translations extracts and updates them.

Whose language: a logged-in person's is a setting of their account (ivr.staff, `ivr users
add --lang`, the /account page); before login the browser's Accept-Language chooses, and
Spanish when it names neither. Twilio's webhooks, the JSON API and the health endpoints
never ask: what they say stays as it is.

What a page shows is in the reader's forms (each reads `get_locale()`): numbers, dates,
times and percentages through Babel's CLDR data (`number`, `day`, `moment`, `percent`:
26/11/2026, 7:40 a. m., 87,7 %, 1.234 in Spanish), always in Bogotá time, which the
staff layout states once; and display names, never ids, for hotlines (the directory's
names), categories, outcomes, dial results and questions (the tables below). The ids
stay in URLs, the JSON API and the data CSV.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from babel import Locale, dates, numbers
from babel.support import NullTranslations, Translations
from flask import has_app_context, has_request_context, request
from flask_babel import Babel, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from ivr import security, services
from ivr.menu import DANGER_EXAMPLES, Problem
from ivr.message import DEFAULT_LANGUAGE, LANGUAGES, N_, Message
from ivr.sessions import SecurityEvent
from ivr.versions import AuditAction
from ivr.versions import audit_detail as stored_detail
from ivr.vocabulary import BOGOTA, Category, DialStatus, Input, Outcome

log = logging.getLogger(__name__)

LOCALES = {"es": "es_CO", "en": "en"}  # es_CO falls back to the es catalogue
# Each language named in itself (with its own lang attribute where it is shown).
LANGUAGE_NAMES = {"es": "Español", "en": "English"}
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
# The time zone of every date and time on the staff pages, named for the reader once a page.
TIME_ZONE = "America/Bogota"

babel = Babel()


def language_of_request() -> str:
    """es or en: the account's language for a logged-in person, else the browser's."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    staff = security.staff_if_readable()
    if staff is not None:
        return staff.lang
    return browser_language(request.accept_languages)


def browser_language(accepted) -> str:
    """The first of our languages the browser asks for, by its main tag: "en-GB, es;q=0.5"
    is English (Werkzeug's best_match would prefer the exact "es"); Spanish if none."""
    for value, quality in accepted:  # best first
        main = value.split("-")[0].lower()
        if quality > 0 and main in LANGUAGES:
            return main
    return DEFAULT_LANGUAGE


def environment_language(environ: Mapping[str, str] = os.environ) -> str:
    """es or en for the command line: the first locale variable set, in the order gettext
    reads them (LC_ALL, LC_MESSAGES, LANG), by its main tag; Spanish when it is Spanish,
    unset, or none of ours (C, POSIX, fr_FR...)."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if environ.get(name):
            main = environ[name].split(".")[0].replace("-", "_").split("_")[0].lower()
            return main if main in LANGUAGES else DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


def catalogue(lang: str) -> NullTranslations:
    """The staff pages' catalogue of `lang` outside Flask (the command line): English
    as written when it was never compiled."""
    return Translations.load(str(TRANSLATIONS), [LOCALES[lang]])


def select_locale() -> str:
    return LOCALES[language_of_request()]


def html_lang() -> str:
    """The page's lang attribute: es-CO or en."""
    return str(get_locale() or LOCALES[DEFAULT_LANGUAGE]).replace("_", "-")


def page_language() -> str:
    """es or en: the language of the page being made."""
    locale = get_locale() if has_request_context() else None
    return locale.language if locale else DEFAULT_LANGUAGE


def shown(message: Message | Problem | str) -> str:
    """An engine's message (ivr.message) in the reader's language; a configuration
    problem after the name of what it is about ("Línea del Ministerio del Trabajo,
    Destinos de marcación: ..."); a text that says itself in several languages
    (`text(lang)`) in the reader's; plain text as it is."""
    if isinstance(message, Problem):
        where = field_label(message.field)
        what = _in_reader_language(message.message)
        return f"{where}: {what}" if where else what
    if not isinstance(message, Message):
        return _in_reader_language(message)
    if not message.values:
        return _(message.template)
    return _(message.template, **{k: _in_reader_language(v) for k, v in message.values.items()})


def _in_reader_language(value):
    """A message's value: a message inside it translated too, and a value that speaks
    both languages itself (`text(lang)`: ivr.opening_hours.HoursError) in the reader's."""
    if isinstance(value, Message):
        return shown(value)
    if callable(getattr(value, "text", None)):
        return value.text(page_language())
    return value


# --- locale formats (Babel's CLDR data, in the page's locale; Bogotá time) ---------------


def _locale(lang: str | None = None) -> Locale:
    """The locale of `lang` (the command line's), else the page's."""
    if lang:
        return Locale.parse(LOCALES[lang])
    return (get_locale() if has_request_context() else None) or Locale.parse(
        LOCALES[DEFAULT_LANGUAGE])


def number(n: int | float, lang: str | None = None) -> str:
    """1234 -> "1.234" (es), "1,234" (en)."""
    return numbers.format_decimal(n, locale=_locale(lang))


def decimal(value: float, places: int) -> str:
    """A measure with a fixed number of decimals: 0.5 -> "0,50" (es), "0.50" (en)."""
    return numbers.format_decimal(value, "0." + "0" * places, locale=_locale())


def percent(value: float, decimals: int = 1, lang: str | None = None) -> str:
    """A percentage given as 87.66 -> "87,7 %" (es), "87.7%" (en); at most `decimals`
    decimals, none when they are zero. Spanish takes the pattern of CLDR's `es`, with
    its space before %, as the RAE and Colombia's NTC 1486 write it (CLDR's es_CO
    drops the space)."""
    share = Decimal(str(round(value, decimals))).normalize() / 100
    return numbers.format_percent(share, locale=_locale(lang).language,
                                  decimal_quantization=False)


def _moment_of(value: str | datetime) -> datetime | None:
    """A stored moment: ISO 8601 with its offset, or "YYYY-MM-DD HH:MM:SS" in Bogotá."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if value.tzinfo else value.replace(tzinfo=BOGOTA)


def moment(value: str | datetime) -> str:
    """A date and time in Bogotá: "26/11/2026, 7:40 a. m." (es), "Nov 26, 2026, 7:40 AM"
    (en). A text that is no moment is shown as it is."""
    at = _moment_of(value)
    if at is None:
        return str(value)
    locale = _locale()
    return locale.datetime_formats["medium"].format(
        dates.format_time(at, "short", tzinfo=BOGOTA, locale=locale),
        dates.format_date(at.astimezone(BOGOTA), "medium", locale=locale))


def clock(at: float | datetime) -> str:
    """A moment (unix seconds, or a datetime) as a time of day to the second, in Bogotá:
    "7:40:05 a. m." (es), "7:40:05 AM" (en)."""
    if not isinstance(at, datetime):
        at = datetime.fromtimestamp(at, BOGOTA)
    return dates.format_time(at, "medium", tzinfo=BOGOTA, locale=_locale())


def day(value: str | date, lang: str | None = None) -> str:
    """A calendar day, "2026-11-26" -> "26/11/2026" (es), "Nov 26, 2026" (en)."""
    try:
        value = date.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)
    return dates.format_date(value, "medium", locale=_locale(lang))


def day_of_month(value: str) -> str:
    """A chart's day label, "2026-11-26" -> "26/11" (es), "11/26" (en)."""
    return dates.format_skeleton("dM", date.fromisoformat(value), locale=_locale())


# --- display names of ids (the ids themselves stay in URLs, the API and the data CSV) -----

# The tables of names hold msgids (N_), translated where they are read: by the page's
# Flask-Babel, or by the catalogue `ivr report` is given (`gettext=`).
ROLE_NAMES = {"supervisor": N_("supervisor"), "admin": N_("administrator")}
AUDIT_ACTION_NAMES = {
    AuditAction.LOGIN: _l("logged in"),
    AuditAction.LOGIN_FAILED: _l("failed login"),
    AuditAction.DRAFT_SAVED: _l("draft saved"),
    AuditAction.DRAFT_DISCARDED: _l("draft discarded"),
    AuditAction.DRAFT_RESTORED: _l("draft brought back"),
    AuditAction.PUBLISH: _l("published"),
    AuditAction.PUBLISH_REQUESTED: _l("publish requested"),
    AuditAction.ROLLBACK: _l("rolled back"),
    AuditAction.ROLLBACK_REQUESTED: _l("rollback requested"),
    AuditAction.USER_SAVED: _l("account saved"),
    AuditAction.USER_REMOVED: _l("account removed"),
    AuditAction.PASSWORD_CHANGED: _l("password changed"),
    AuditAction.ROLE_CHANGED: _l("role changed"),
    AuditAction.LANGUAGE_CHANGED: _l("language changed"),
    AuditAction.TOKEN_CREATED: _l("API token created"),
    AuditAction.TOKEN_REMOVED: _l("API token removed"),
    AuditAction.LINE_TEST: _l("line test"),
    AuditAction.CALLER_KEY_MADE: _l("new caller pseudonym key made"),
    AuditAction.TYPED_LOGINS_REMOVED: _l("old failed logins removed (they kept the typed name)"),
}

SECURITY_EVENT_NAMES = {
    SecurityEvent.LOGIN: _l("logged in"),
    SecurityEvent.LOGOUT: _l("logged out"),
    SecurityEvent.LOGIN_FAILED: _l("failed login"),
    SecurityEvent.LOGIN_FAILED_UNKNOWN: _l("failed login, unknown name"),
    SecurityEvent.SESSIONS_ENDED: _l("sessions ended"),
    SecurityEvent.CODE_FAILED: _l("failed sign-in code"),
    SecurityEvent.RECOVERY_CODE_USED: _l("recovery code used"),
    SecurityEvent.TWO_FACTOR_ON: _l("two-step sign-in turned on"),
    SecurityEvent.TWO_FACTOR_OFF: _l("two-step sign-in turned off"),
    SecurityEvent.TWO_FACTOR_RESET: _l("two-step sign-in reset"),
}


# How transfers ended, as the hotlines chart's legend says it ("answered" stands for
# every status in ivr.vocabulary.ANSWERED).
DIAL_RESULT_NAMES = {
    DialStatus.ANSWERED: N_("answered"),
    DialStatus.COMPLETED: N_("answered"),
    DialStatus.DROPPED: N_("dropped (a machine)"),
    DialStatus.BUSY: N_("busy"),
    DialStatus.NO_ANSWER: N_("no answer"),
    DialStatus.FAILED: N_("failed"),
    DialStatus.CANCELED: N_("canceled"),
}


# What a call was about: the menu's categories (config/menu.toml) and the code's own.
CATEGORY_NAMES = {
    "child": N_("Children"),
    "labour": N_("Work"),
    "migrant": N_("Migrants"),
    "report": N_("Reporting a crime"),
    "other": N_("Something else"),
    Category.EMERGENCY: N_("Emergency"),
    Category.UNCLEAR: N_("Not understood"),
    Category.NONE: N_("Hung up before answering"),
}
OUTCOME_NAMES = {
    Outcome.IN_PROGRESS: N_("In progress"),
    Outcome.TRANSFERRED: N_("Transferred"),
    Outcome.EMERGENCY_TRANSFERRED: N_("Transferred to emergencies"),
    Outcome.TRANSFER_FAILED: N_("Transfers never connected"),
    Outcome.ABANDONED_IN_MENU: N_("Hung up in the menu"),
    Outcome.EMERGENCY_HUNG_UP_TO_DIAL: N_("Hung up to dial 123"),
}
# How a caller answered the menu (ivr.vocabulary.Input).
INPUT_NAMES = {Input.KEYPAD: N_("keypad"), Input.SPEECH: N_("speech"),
               Input.BOTH: N_("keypad and speech"), Input.NONE: N_("never answered")}
# The menu's questions (config/menu.toml's nodes), by what they ask.
QUESTION_NAMES = {
    "welcome": N_("What the call is about"),
    "report": N_("Where to report a crime"),
}
# What callers hear (prompts/<lang>.toml), by what each prompt is for.
PROMPT_NAMES = {
    "greeting": N_("Greeting"),
    "language_offer": N_("Offer of the other language"),
    "main_menu": N_("Main menu: what the call is about"),
    "report_menu": N_("Menu: where to report a crime"),
    "no_input": N_("When the caller says nothing"),
    "invalid": N_("When the answer is not understood"),
    "transfer": N_("Before a transfer"),
    "unreachable": N_("When a line does not answer"),
    "numbers_intro": N_("Before the numbers to write down"),
    "numbers_item": N_("Each number to write down"),
    "numbers_again": N_("Offer to hear the numbers again"),
    "goodbye": N_("Goodbye"),
    "still_trying": N_("While the line keeps ringing"),
    "out_of_service": N_("When Ruta cannot answer"),
    "emergency_advice": N_("Emergency: the number to call"),
    "emergency_stay": N_("Emergency: stay on the line"),
    "direct_only": N_("A line the caller must call themselves"),
    "danger_question": N_("Is someone in danger right now?"),
    "either_or": N_("Between two options"),
    "keys_only": N_("Keys only, after a second miss"),
    "keys_item": N_("Each key, after a second miss"),
    "screen_whisper": N_("To a screening line, before the caller is connected"),
    "language_es": N_("To a screening line: the word for Spanish"),
    "language_en": N_("To a screening line: the word for English"),
}
# When a caller hears each prompt: one line beside it on the prompts page.
PROMPT_WHEN = {
    "greeting": N_("First words of every call."),
    "language_offer": N_("Right after the greeting, in the other language."),
    "main_menu": N_("After the greeting: the first question."),
    "report_menu": N_("After a caller chooses to report a crime."),
    "no_input": N_("When a caller says and presses nothing at a question; the question follows."),
    "invalid": N_("When what a caller said or pressed matches no option; the question follows."),
    "danger_question": N_("When a caller's words may mean someone is in danger."),
    "either_or": N_("When a caller's words fit two options equally."),
    "keys_only": N_("After a second miss: the options are then read as keys only."),
    "keys_item": N_("After a second miss, once for each option."),
    "transfer": N_("Just before a caller is connected to a line."),
    "still_trying": N_("While a line keeps ringing, before its next number is tried."),
    "direct_only": N_("For a line Twilio cannot dial: its number, for the caller to dial."),
    "emergency_advice": N_("When a caller says someone is in danger: the number to call."),
    "emergency_stay": N_("Right after the emergency number, before connecting."),
    "unreachable": N_("When no number of a line answers."),
    "out_of_service": N_("When Ruta itself fails: instead of the whole call."),
    "numbers_intro": N_("When no line could be reached, before the numbers."),
    "numbers_item": N_("Once for each number to write down."),
    "numbers_again": N_("After the numbers."),
    "goodbye": N_("Last words, before Ruta hangs up."),
    "screen_whisper": N_("Heard by whoever answers a screening line, never by the caller."),
}
# What each placeholder a prompt may use is filled with (ivr.menu.PROMPT_PLACEHOLDERS).
PLACEHOLDER_NAMES = {
    "hotline": N_("a line's name"),
    "number": N_("a number, read digit by digit"),
    "about": N_("what the call is about"),
    "language": N_("the caller's language"),
    "first": N_("the first option"),
    "first_key": N_("its key"),
    "second": N_("the second option"),
    "second_key": N_("its key"),
    "key": N_("a key"),
    "label": N_("an option"),
}
# The screening line hears what a call is about (ivr.menu.screen_prompts): about_<category>.
ABOUT_PROMPT = "about_"
HOTLINE_FIELD_NAMES = {
    "dial": N_("Dial targets"),
    "say": N_("Number said to callers"),
    "hours": N_("Opening hours"),
    "fallback": N_("Fallback hotline"),
    "show_caller": N_("Gets the caller's real number"),
    "screen": N_("Screens calls"),
    "min_answered_seconds": N_("Fewest seconds of a real answer"),
}
VOICE_FIELD_NAMES = {
    "voice": N_("Twilio voice"),
    "say_language": N_("Spoken language"),
    "speech_language": N_("Speech recognition language"),
}
# A directory name as the menu says it in a sentence ("Le comunico con la línea del
# ICBF"), without its article when it stands alone as a label.
ARTICLES = {"es": ("la ", "el ", "los ", "las "), "en": ("the ",)}


def _name(table: Mapping[str, str], key: str, gettext=None) -> str:
    """`key`'s name in `table`, through `gettext` (the page's when None); an id without
    a name as it is."""
    msgid = table.get(key)
    return (gettext or _)(msgid) if msgid else key


def dial_result_names(results) -> dict[str, str]:
    """{dial result id: its name} for the results given (ids without a name: as they are)."""
    return {r: dial_result_name(r) for r in results}


def category_name(category: str, gettext=None) -> str:
    return _name(CATEGORY_NAMES, category, gettext)


def outcome_name(outcome: str, gettext=None) -> str:
    return _name(OUTCOME_NAMES, outcome, gettext)


# A language as the reader calls it (LANGUAGE_NAMES name each language in itself).
LANGUAGE_NAMES_READ = {"es": N_("Spanish"), "en": N_("English")}


def language_read(lang: str, gettext=None) -> str:
    """A language named in the reader's language: "inglés" for a Spanish reader."""
    return _name(LANGUAGE_NAMES_READ, lang, gettext)


def input_name(way: str, gettext=None) -> str:
    return _name(INPUT_NAMES, way, gettext)


def question_name(node: str, gettext=None) -> str:
    return _name(QUESTION_NAMES, node, gettext)


def dial_result_name(result: str, gettext=None) -> str:
    return _name(DIAL_RESULT_NAMES, result, gettext)


def hotline_name(hotline: str, menu=None, lang: str | None = None) -> str:
    """A hotline's name from the directory in the reader's language, as a label: "Línea
    del ICBF para niños, niñas y adolescentes" (an unknown id as it is). The live menu
    and the page's language unless given (`ivr report` gives its own)."""
    if menu is None and has_app_context():
        menu = services.current_menu()
    line = menu.hotlines.get(hotline) if menu is not None else None
    lang = lang or page_language()
    name = (line.names.get(lang) or line.names.get(DEFAULT_LANGUAGE)) if line else None
    return as_label(name, lang) if name else hotline


def as_label(name: str, lang: str | None = None) -> str:
    """A directory name as a label: "la línea del ICBF" -> "Línea del ICBF"."""
    for article in ARTICLES.get(lang or page_language(), ()):
        if name.lower().startswith(article) and len(name) > len(article):
            name = name[len(article):]
            break
    return name[:1].upper() + name[1:]


def prompt_name(key: str) -> str:
    """What a prompt is for, "Despedida" (a key without a name: as it is)."""
    if key.startswith(ABOUT_PROMPT) and key not in PROMPT_NAMES:
        return _("To a screening line: what the call is about, %(category)s",
                 category=category_name(key.removeprefix(ABOUT_PROMPT)))
    return _name(PROMPT_NAMES, key)


def prompt_when(key: str) -> str:
    """When a caller hears the prompt `key`, in one line ("" when not said)."""
    if key.startswith(ABOUT_PROMPT) or key.startswith("language_") and key != "language_offer":
        return _("Heard by whoever answers a screening line, never by the caller.")
    return _name(PROMPT_WHEN, key) if key in PROMPT_WHEN else ""


def placeholder_name(name: str) -> str:
    """What a prompt's placeholder ({hotline}) is filled with."""
    return _name(PLACEHOLDER_NAMES, name)


def field_label(field: str) -> str:
    """What an admin form's field id (ivr.menu.Problem.field, ivr.versions.effective)
    stands for, in the reader's language: "hotline:labour:dial" -> "Línea del Ministerio
    del Trabajo, Destinos de marcación"; "prompt:es:goodbye" -> "Despedida (Español)"."""
    kind, first, second = (field.split(":", 3) + ["", ""])[:3]
    language = own_name(first)
    match kind:
        case "hotline":
            line = hotline_name(first)
            return f"{line}, {_name(HOTLINE_FIELD_NAMES, second)}" if second else line
        case "prompt":
            return f"{prompt_name(second)} ({language})"
        case "recording":
            return _("Recording: %(prompt)s (%(language)s)", prompt=prompt_name(second),
                     language=language)
        case "voice":
            return f"{_('Voice for %(language)s', language=language)}, " \
                   f"{_name(VOICE_FIELD_NAMES, second)}"
        case "examples":
            return _("How callers say it: %(option)s (%(language)s)",
                     option=option_name(first), language=own_name(second))
        case "language":
            return language
    return field


def option_name(name: str) -> str:
    """An option of examples.toml ("welcome.2", "danger") as staff read it: its label in
    the live menu in the reader's language, with its key."""
    if name == DANGER_EXAMPLES:
        return _("someone is in danger now")
    menu = services.current_menu() if has_app_context() else None
    question, _dot, key = name.partition(".")
    node = menu.nodes.get(question) if menu is not None else None
    option = node.option(key) if node else None
    if option is None or not option.labels:
        return name
    lang = page_language()
    label = option.labels.get(lang) or next(iter(option.labels.values()))
    return _("%(label)s (key %(key)s)", label=label, key=key)


def audit_action(action: str) -> str:
    """An audit entry's action as staff read it (an unknown one as it was stored)."""
    return str(AUDIT_ACTION_NAMES.get(action, action))


def audit_detail(entry: Mapping[str, str]) -> str:
    """An audit entry's detail in the reader's language (one kept as English text before
    details were kept as messages: as it is)."""
    return shown(stored_detail(entry))


def security_event(action: str) -> str:
    """A security log entry's action as staff read it (an unknown one as it was stored)."""
    return str(SECURITY_EVENT_NAMES.get(action, action))


def role_name(role: str) -> str:
    return _name(ROLE_NAMES, role)


def language_name(lang: str) -> Markup:
    """A language's own name, marked with its language for screen readers."""
    return Markup('<span lang="{0}">{1}</span>').format(lang, own_name(lang))


def own_name(lang: str) -> str:
    """A language's name in itself: a staff language's, else the one config/menu.toml
    gives a callers' language ("Wayuunaiki"), else its code."""
    if lang in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[lang]
    voice = services.current_menu().voices.get(lang) if has_app_context() else None
    return (voice.name if voice else "") or lang


def init_app(app) -> None:
    """Flask-Babel with our locale choice; the template helpers; a warning when the
    catalogues were never compiled (the pages would be in English)."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", LOCALES[DEFAULT_LANGUAGE])
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "America/Bogota")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals.update(html_lang=html_lang, page_language=page_language,
                                 language_name=language_name, time_zone=TIME_ZONE)
    for name_of in (shown, audit_action, audit_detail, security_event, role_name, category_name,
                    outcome_name, question_name, dial_result_name, hotline_name, as_label, number,
                    percent, moment, day, prompt_name, field_label, prompt_when,
                    placeholder_name):
        app.add_template_filter(name_of)
    missing = [lang for lang in LANGUAGES if lang != "en" and not any(
        (TRANSLATIONS / lang / "LC_MESSAGES").glob("*.mo"))]
    if missing and not app.config.get("RUTA_PREVIEW"):
        log.warning("no compiled translations for %s under %s: the staff pages will be in "
                    "English; reinstall Ruta (pip install -e . compiles them)",
                    ", ".join(missing), TRANSLATIONS)

"""The staff pages' language: Spanish (Colombia) first, English too. Flask-Babel.

Every string a person reads on a staff page comes from the catalogues in
ivr/translations/<lang>/LC_MESSAGES/messages.po, whose msgids are English (the code's
language, and what is shown when a catalogue lacks an entry). setup.py compiles them to
.mo files when the package is installed; scripts/translations extracts and updates them.

Whose language: a logged-in person's is a setting of their account (ivr.staff, `ivr users
add --lang`, the /account page); before login the browser's Accept-Language chooses, and
Spanish when it names neither. Twilio's webhooks, the JSON API and the health endpoints
never ask: what they say stays as it is.

Where a later part plugs in: locale formats of numbers and dates (flask_babel's
format_* functions, or a filter registered in `init_app` below), display names of ids
(a filter beside `audit_action` below), each reads `get_locale()`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import has_request_context, request
from flask_babel import Babel, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from ivr import security
from ivr.message import Message
from ivr.sessions import SecurityEvent
from ivr.staff import DEFAULT_LANGUAGE, LANGUAGES
from ivr.versions import AuditAction
from ivr.vocabulary import DialStatus

log = logging.getLogger(__name__)

LOCALES = {"es": "es_CO", "en": "en"}  # es_CO falls back to the es catalogue
# Each language named in itself (with its own lang attribute where it is shown).
LANGUAGE_NAMES = {"es": "Español", "en": "English"}
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

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


def select_locale() -> str:
    return LOCALES[language_of_request()]


def html_lang() -> str:
    """The page's lang attribute: es-CO or en."""
    return str(get_locale() or LOCALES[DEFAULT_LANGUAGE]).replace("_", "-")


def page_language() -> str:
    """es or en: the language of the page being made."""
    locale = get_locale() if has_request_context() else None
    return locale.language if locale else DEFAULT_LANGUAGE


def shown(message: Message | str) -> str:
    """An engine's message (ivr.message) in the reader's language; plain text as it is."""
    if not isinstance(message, Message):
        return message
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


# --- display names of ids (the ids themselves stay in URLs, the API and the data CSV) -----

ROLE_NAMES = {"supervisor": _l("supervisor"), "admin": _l("administrator")}
AUDIT_ACTION_NAMES = {
    AuditAction.LOGIN: _l("logged in"),
    AuditAction.LOGIN_FAILED: _l("failed login"),
    AuditAction.DRAFT_SAVED: _l("draft saved"),
    AuditAction.DRAFT_DISCARDED: _l("draft discarded"),
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
}

SECURITY_EVENT_NAMES = {
    SecurityEvent.LOGIN: _l("logged in"),
    SecurityEvent.LOGOUT: _l("logged out"),
    SecurityEvent.LOGIN_FAILED: _l("failed login"),
    SecurityEvent.LOGIN_FAILED_UNKNOWN: _l("failed login, unknown name"),
    SecurityEvent.SESSIONS_ENDED: _l("sessions ended"),
}


# How transfers ended, as the hotlines chart's legend says it ("answered" stands for
# every status in ivr.vocabulary.ANSWERED).
DIAL_RESULT_NAMES = {
    DialStatus.ANSWERED: _l("answered"),
    DialStatus.COMPLETED: _l("answered"),
    DialStatus.DROPPED: _l("dropped (a machine)"),
    DialStatus.BUSY: _l("busy"),
    DialStatus.NO_ANSWER: _l("no answer"),
    DialStatus.FAILED: _l("failed"),
    DialStatus.CANCELED: _l("canceled"),
}


def dial_result_names(results) -> dict[str, str]:
    """{dial result id: its name} for the results given (ids without a name: as they are)."""
    return {r: str(DIAL_RESULT_NAMES.get(r, r)) for r in results}


def audit_action(action: str) -> str:
    """An audit entry's action as staff read it (an unknown one as it was stored)."""
    return str(AUDIT_ACTION_NAMES.get(action, action))


def security_event(action: str) -> str:
    """A security log entry's action as staff read it (an unknown one as it was stored)."""
    return str(SECURITY_EVENT_NAMES.get(action, action))


def role_name(role: str) -> str:
    return str(ROLE_NAMES.get(role, role))


def language_name(lang: str) -> Markup:
    """A language's own name, marked with its language for screen readers."""
    return Markup('<span lang="{0}">{1}</span>').format(lang, LANGUAGE_NAMES.get(lang, lang))


def init_app(app) -> None:
    """Flask-Babel with our locale choice; the template helpers; a warning when the
    catalogues were never compiled (the pages would be in English)."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", LOCALES[DEFAULT_LANGUAGE])
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "America/Bogota")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals.update(html_lang=html_lang, page_language=page_language,
                                 language_name=language_name)
    app.add_template_filter(shown)
    app.add_template_filter(audit_action)
    app.add_template_filter(security_event)
    app.add_template_filter(role_name)
    missing = [lang for lang in LANGUAGES if lang != "en" and not any(
        (TRANSLATIONS / lang / "LC_MESSAGES").glob("*.mo"))]
    if missing and not app.config.get("RUTA_PREVIEW"):
        log.warning("no compiled translations for %s under %s: the staff pages will be in "
                    "English; reinstall Ruta (pip install -e . compiles them)",
                    ", ".join(missing), TRANSLATIONS)

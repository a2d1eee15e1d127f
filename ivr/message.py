"""Messages that modules free of Flask give for people to read. Pure: no Flask, no Babel.

The engine (ivr.menu, ivr.summary, ivr.simulator...) says what happened in English, the
catalogue's language; the staff pages translate it when they show it (ivr.i18n.shown),
while the command line, the logs and the JSON API print it as it is. `N_` marks the
English template for `pybabel extract` (babel.cfg) without translating anything here.
"""

from __future__ import annotations

# The languages staff read the pages in (ivr.i18n): Spanish unless their account says
# English. An account saved before languages existed has none, and reads Spanish.
LANGUAGES = ("es", "en")
DEFAULT_LANGUAGE = "es"


def N_(template: str) -> str:  # noqa: N802 (gettext's own name for the marker)
    """Marks `template` for the catalogue; it is translated where it is shown."""
    return template


class Message(str):
    """The English text, as a string (like markupsafe.Markup), that keeps the template in
    the catalogue (with %(name)s places) and the values that fill it, so that a page can
    show it in its reader's language. Everything that reads it as a string (a test, the
    CLI, a "where: what" parser) reads the English. A value may be a Message itself, or
    anything with `text(lang)` (ivr.opening_hours.HoursError): shown in the reader's
    language too."""

    template: str
    values: dict[str, object]

    def __new__(cls, template: str, values: dict[str, object] | None = None) -> Message:
        values = dict(values or {})
        text = super().__new__(cls, template % values if values else template)
        text.template, text.values = template, values
        return text

    def to_json(self) -> dict:
        """Kept this way (e.g. in a draft, an audit entry) so it can be shown in any
        language later; a message or a name in several languages among the values too."""
        return {"template": self.template, "values": {
            k: v.to_json() if isinstance(v, Message | InLanguages) else v
            for k, v in self.values.items()}}

    @classmethod
    def from_json(cls, stored: dict | str) -> Message:
        """From to_json's form, or a plain string kept before messages were (as it is)."""
        if isinstance(stored, str):
            return cls(stored)
        return cls(stored["template"], {k: _value_from_json(v) for k, v in
                                        (stored.get("values") or {}).items()})

    @classmethod
    def joined(cls, parts: list, separator: str = "; ") -> Message:
        """Messages (or plain texts) one after the other, each shown in the reader's
        language (the template of places alone needs no translation)."""
        return cls(separator.join(f"%(part{i})s" for i in range(len(parts))),
                   {f"part{i}": part for i, part in enumerate(parts)})


class InLanguages(dict):
    """A value said differently in each language, {"es": …, "en": …}: a hotline's name
    from the directory at the time. Shown in the reader's language (`text`); as a
    string, in English like the message around it."""

    def text(self, lang: str) -> str:
        return self.get(lang) or self.get(DEFAULT_LANGUAGE) or next(iter(self.values()), "")

    def __str__(self) -> str:
        return self.text("en")

    def to_json(self) -> dict:
        return {"in_languages": dict(self)}


def _value_from_json(value):
    if isinstance(value, dict) and "template" in value:
        return Message.from_json(value)
    if isinstance(value, dict) and "in_languages" in value:
        return InLanguages(value["in_languages"])
    return value

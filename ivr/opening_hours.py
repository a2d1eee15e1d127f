"""Opening hours as staff write them: weekday names in Spanish or English, one stored form.

A hotline's hours are "24/7" or windows like "mon-fri 07:00-19:00" (Bogotá time), a list
in config/hotlines.toml and in published versions, "; "-separated in the admin form.
Staff may write the days in either language, full or abbreviated, with or without
accents, in any case ("lun-vie", "Lunes-Viernes", "mié", "mon-fri"). What is stored is
always the English abbreviation, the form the files and versions already hold; what is
shown is the staff member's language. Pure: no Flask, no Redis.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import time

from ivr.message import DEFAULT_LANGUAGE

ALWAYS = "24/7"
# How each language names the days, Monday first: (shown, also understood). The English
# abbreviations are also the stored form.
DAY_NAMES = {
    "es": (("lun", "lunes"), ("mar", "martes"), ("mié", "miércoles"), ("jue", "jueves"),
           ("vie", "viernes"), ("sáb", "sábado"), ("dom", "domingo")),
    "en": (("mon", "monday"), ("tue", "tuesday"), ("wed", "wednesday"), ("thu", "thursday"),
           ("fri", "friday"), ("sat", "saturday"), ("sun", "sunday")),
}
STORED_LANGUAGE = "en"  # config files and published versions: keep them valid as they are

# Every text staff read from this module, by language: the one place the translation
# catalogue (Flask-Babel) will take over.
TEXTS = {
    "field": {"es": "horario", "en": "hours"},
    "unknown_day": {"es": "día desconocido «{value}»", "en": "unknown day '{value}'"},
    "shape": {"es": "no se entiende «{value}»: escriba por ejemplo «lun-vie 08:00-17:00; "
                    "sáb 08:00-12:00» o «24/7»",
              "en": "'{value}' must look like 'mon-fri 08:00-17:00; sat 08:00-12:00' "
                    "or '24/7'"},
    "impossible_time": {"es": "hora imposible en «{value}»",
                        "en": "impossible time in '{value}'"},
    "ends_before_start": {"es": "«{value}» termina antes de empezar",
                          "en": "'{value}' must end after it starts"},
}

WINDOW = re.compile(r"\s*(\w+)(?:\s*-\s*(\w+))?\s+(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)\s*")


def _folded(word: str) -> str:
    """"Miércoles" -> "miercoles": how a day name is looked up, accents and case aside."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


DAY_OF = {_folded(name): day for names in DAY_NAMES.values()
          for day, spellings in enumerate(names) for name in spellings}


class HoursError(ValueError):
    """One window that cannot be read; `text(lang)` says why, naming the field."""

    def __init__(self, kind: str, value: str, named: bool = True):
        self.kind, self.value, self.named = kind, value, named
        super().__init__(self.text("en"))

    def text(self, lang: str) -> str:
        lang = language(lang)
        said = TEXTS[self.kind][lang].format(value=self.value)
        return f"{TEXTS['field'][lang]}: {said}" if self.named else said

    def unnamed(self) -> HoursError:
        """The same error without the field's name: said next to the field, or after it."""
        return HoursError(self.kind, self.value, named=False)


@dataclass(frozen=True)
class Window:
    """Days `first` to `last` (0 = Monday; a range may wrap past Sunday), start to end."""

    first: int
    last: int
    start: time
    end: time

    def days(self) -> list[int]:
        if self.first <= self.last:
            return list(range(self.first, self.last + 1))
        return [*range(self.first, 7), *range(self.last + 1)]

    def text(self, lang: str = STORED_LANGUAGE) -> str:
        """"mon-fri 08:00-17:00" in English (the stored form), "lun-vie ..." in Spanish."""
        names = [shown for shown, _ in DAY_NAMES[language(lang)]]
        days = names[self.first] + ("" if self.last == self.first else f"-{names[self.last]}")
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M}"


def language(lang: str | None) -> str:
    """"es_CO", "en-GB", "EN" -> "es", "en"; a language without day names -> Spanish."""
    base = re.split(r"[-_]", (lang or "").strip())[0].lower()
    return base if base in DAY_NAMES else DEFAULT_LANGUAGE


def window(spec: str) -> Window:
    """"lun-vie 08:00-17:00", "Monday 08:00-12:00"... -> Window; HoursError if not."""
    spec = unicodedata.normalize("NFC", spec)  # "é" as one character, as \w expects
    m = WINDOW.fullmatch(spec)
    if not m:
        raise HoursError("shape", spec.strip())
    for name in (m[1], m[2]):
        if name is not None and _folded(name) not in DAY_OF:
            raise HoursError("unknown_day", name)
    try:
        start, end = time(int(m[3]), int(m[4])), time(int(m[5]), int(m[6]))
    except ValueError:
        raise HoursError("impossible_time", spec.strip()) from None
    if end <= start:
        raise HoursError("ends_before_start", spec.strip())
    first = DAY_OF[_folded(m[1])]
    return Window(first, DAY_OF[_folded(m[2] or m[1])], start, end)


def parts(raw) -> list[str]:
    """The windows as written: from "24/7", a TOML list, or the form's "a; b" text.

    No parts means open 24/7.
    """
    if raw is None:
        return []
    if isinstance(raw, str):
        items = re.split(r"[;\n]", raw)
    else:  # anything else TOML or a draft may hold is a window that cannot be read
        items = list(raw) if isinstance(raw, list | tuple) else [raw]
    found = [str(item).strip() for item in items if str(item).strip()]
    return [] if found == [ALWAYS] else found


def read(raw) -> tuple[list[Window], list[HoursError]]:
    """Every window that can be read, and an error for each one that cannot."""
    windows, errors = [], []
    for part in parts(raw):
        try:
            windows.append(window(part))
        except HoursError as e:
            errors.append(e)
    return windows, errors


def stored(raw) -> str | list[str]:
    """What config and versions hold: "24/7", or each window in English abbreviations.

    A window that cannot be read is kept as typed, so the check can name it.
    """
    return [_rewritten(part, STORED_LANGUAGE) for part in parts(raw)] or ALWAYS


def shown(raw, lang: str) -> str:
    """The hours as staff read and edit them: "lun-vie 08:00-17:00; sáb 08:00-12:00"."""
    return "; ".join(_rewritten(part, lang) for part in parts(raw)) or ALWAYS


def problems(raw, lang: str) -> list[str]:
    """Why these hours cannot be used, in `lang`, one line a window ([] if they can)."""
    return [e.text(lang) for e in read(raw)[1]]


def _rewritten(part: str, lang: str) -> str:
    try:
        return window(part).text(lang)
    except HoursError:
        return part

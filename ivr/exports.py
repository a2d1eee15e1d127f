"""The CSV exports, in two forms. Pure: no Flask, no Redis.

"datos" (the default, for scripts): RFC 4180, comma-separated, UTF-8 without a byte-order
mark, the stable English column ids, values as stored (ISO dates, a point in decimals).
"excel" (for a person opening it in a spreadsheet): semicolon-separated, the way a Spanish
Excel splits columns; UTF-8 with a byte-order mark, without which Excel reads the accents
as Latin-1; headers in the reader's language; decimal commas and dates as the reader's
locale writes them. In both, a cell a spreadsheet would run as a formula is defused.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from babel import Locale
from babel.dates import format_datetime, get_date_format
from babel.numbers import format_decimal

from ivr.message import N_

CHUNK = 64 * 1024  # characters buffered before a streamed piece is handed on
BOM = "\ufeff"


class Form(StrEnum):
    """The two forms, by the value of the `form` parameter that asks for them."""

    DATA = "datos"
    EXCEL = "excel"

    @classmethod
    def asked(cls, value: str | None) -> Form:
        """The form a request's parameter names; the data form when it names none (the
        URL scripts use today keeps its answer). An unknown one raises ValueError."""
        return cls(value) if value else cls.DATA


@dataclass(frozen=True)
class Column:
    id: str  # the data form's header: scripts rely on it, never translated
    header: str  # the Excel form's header: its English msgid, translated on the way out
    when: bool = False  # a date and time (a datetime, or "YYYY-MM-DD HH:MM:SS" text)


CALL_COLUMNS = (
    Column("call_sid", N_("Call")),
    Column("started", N_("Started"), when=True),
    Column("language", N_("Language")),
    Column("category", N_("About")),
    Column("path", N_("Path")),
    Column("hotlines", N_("Hotlines")),
    Column("outcome", N_("Outcome")),
    # The one meaning of failed: an attempt connected or not; a call reached a person or not.
    Column("reached_person", N_("Reached a person")),
    Column("attempts", N_("Transfer attempts")),
    Column("not_connected", N_("Attempts not connected")),
    Column("call_status", N_("Call status")),
    Column("duration_s", N_("Call length (s)")),
    Column("talk_s", N_("Talk time (s)")),
    Column("seconds_to_transfer", N_("Seconds to transfer")),
    Column("no_input", N_("Questions unanswered")),
    Column("invalid_input", N_("Answers not understood")),
    Column("caller", N_("Caller (pseudonym)")),
    # Pseudonyms made with different keys never match (ivr.caller_keys).
    Column("caller_key_since", N_("Pseudonym key in use since"), when=True),
)
AUDIT_COLUMNS = (
    Column("at", N_("When"), when=True),
    Column("who", N_("Who")),
    Column("action", N_("What")),
    Column("detail", N_("Detail")),
)


def csv_safe(value):
    """A cell a spreadsheet will not run: text starting with = + - @ (or a tab or CR) is
    prefixed with an apostrophe. Numbers stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@dataclass(frozen=True)
class Reader:
    """Who an Excel export is for: their locale, their catalogue's gettext, and display
    names for the ids of some columns ({column id: id -> name}, e.g. audit actions)."""

    locale: Locale
    gettext: Callable[[str], str]
    names: Mapping[str, Callable[[str], str]] | None = None


def excel_cell(value, locale: Locale, when: bool = False):
    """A value as a spreadsheet in `locale` reads it: "1234,5" and "26/11/2026 07:40:00"
    in Spanish (Colombia). Whole numbers and text stay as they are."""
    if isinstance(value, float):
        return format_decimal(value, locale=locale, group_separator=False)
    if when and isinstance(value, str) and value:
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value  # not a date after all: as it was stored
    if isinstance(value, datetime):
        return format_datetime(value, _date_time_pattern(locale), locale=locale)
    return value


@functools.lru_cache(maxsize=16)  # once per locale, not once per cell
def _date_time_pattern(locale: Locale) -> str:
    """The locale's short date with the year in full (a spreadsheet reads "26/11/26" as
    1926 in some settings), and a 24-hour time every spreadsheet reads."""
    date = re.sub(r"y+", "y", get_date_format("short", locale=locale).pattern)
    return f"{date} HH:mm:ss"


def write(form: Form, columns: Iterable[Column], rows: Iterable[Mapping],
          reader: Reader | None = None) -> Iterator[str]:
    """The CSV text of `rows` (dicts by column id), in pieces of about CHUNK characters so
    that a long export streams with flat memory. `reader` is needed for the Excel form."""
    columns = tuple(columns)
    buffer = io.StringIO()
    if form is Form.DATA:
        writer = csv.writer(buffer)  # RFC 4180: commas, quotes doubled, CRLF line ends
        writer.writerow([c.id for c in columns])
    else:
        if reader is None:
            raise ValueError("the Excel form needs a reader (locale and catalogue)")
        buffer.write(BOM)
        writer = csv.writer(buffer, delimiter=";")
        writer.writerow([reader.gettext(c.header) for c in columns])
    for row in rows:
        if form is Form.DATA:
            writer.writerow([csv_safe(row.get(c.id, "")) for c in columns])
        else:
            writer.writerow([_excel_value(row.get(c.id, ""), c, reader) for c in columns])
        if buffer.tell() > CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _excel_value(value, column: Column, reader: Reader):
    """A cell of the Excel form: its display name, defused, then in the reader's format
    (defused first, so that a negative number formatted "-1,5" stays a number)."""
    name = (reader.names or {}).get(column.id)
    return excel_cell(csv_safe(name(value) if name else value), reader.locale, column.when)


def filename(stem: str, form: Form) -> str:
    """ruta-calls-….csv for scripts, ruta-calls-…-excel.csv for a spreadsheet: both can
    sit side by side in a downloads folder."""
    return f"{stem}.csv" if form is Form.DATA else f"{stem}-excel.csv"

"""Opening hours as staff write them (ivr/opening_hours.py): days in Spanish or English,
stored one way, shown in the staff member's language, errors that name the field."""

from __future__ import annotations

from datetime import time

import pytest

from ivr import opening_hours
from ivr.opening_hours import HoursError, Window

WEEKDAYS_8_TO_17 = Window(0, 4, time(8), time(17))


@pytest.mark.parametrize("spec", [
    "mon-fri 08:00-17:00", "lun-vie 08:00-17:00", "LUN-VIE 08:00-17:00",
    "Lunes-Viernes 08:00-17:00", "monday-friday 08:00-17:00", "Monday-Friday 08:00-17:00",
    "lunes-fri 08:00-17:00", "  lun - vie   08:00 - 17:00 ",
])
def test_weekdays_in_either_language_any_case_are_the_same_window(spec):
    assert opening_hours.window(spec) == WEEKDAYS_8_TO_17


@pytest.mark.parametrize(("names", "day"), [
    (["lun", "lunes", "mon", "monday"], 0),
    (["mar", "martes", "tue", "tuesday"], 1),
    (["mié", "mie", "MIÉ", "miércoles", "miercoles", "Miércoles", "wed", "wednesday"], 2),
    (["jue", "jueves", "thu", "thursday"], 3),
    (["vie", "viernes", "fri", "friday"], 4),
    (["sáb", "sab", "sábado", "sabado", "SÁBADO", "sat", "saturday"], 5),
    (["dom", "domingo", "sun", "sunday"], 6),
])
def test_every_spelling_of_a_day(names, day):
    for name in names:
        assert opening_hours.window(f"{name} 08:00-12:00") == Window(day, day, time(8),
                                                                     time(12)), name


def test_an_accent_typed_as_two_characters_is_the_same_day():
    """A browser or keyboard may send "é" as "e" plus a combining accent."""
    assert opening_hours.window("mie\u0301 08:00-12:00").first == 2


def test_a_range_may_wrap_past_sunday():
    assert opening_hours.window("sáb-lun 08:00-12:00").days() == [5, 6, 0]


@pytest.mark.parametrize(("typed", "stored"), [
    ("lun-vie 08:00-17:00", ["mon-fri 08:00-17:00"]),
    ("mon-fri 08:00-17:00", ["mon-fri 08:00-17:00"]),
    ("Lunes-Viernes 08:00-17:00; sábado 08:00-12:00",
     ["mon-fri 08:00-17:00", "sat 08:00-12:00"]),
    ("lun-vie 08:00-17:00\ndom-dom 09:00-10:00", ["mon-fri 08:00-17:00", "sun 09:00-10:00"]),
    (["lun-vie 08:00-17:00"], ["mon-fri 08:00-17:00"]),  # a list, as in hotlines.toml
    ("24/7", "24/7"), (" 24/7 ", "24/7"), ("", "24/7"), (None, "24/7"), ([], "24/7"),
    ("lnu-vie 08:00-17:00", ["lnu-vie 08:00-17:00"]),  # kept as typed, for the check
])
def test_hours_are_stored_in_one_form(typed, stored):
    """English abbreviations, the form config files and published versions hold."""
    assert opening_hours.stored(typed) == stored


@pytest.mark.parametrize(("lang", "text"), [
    ("es", "lun-vie 08:00-17:00; mié 08:00-12:00; sáb 08:00-12:00"),
    ("en", "mon-fri 08:00-17:00; wed 08:00-12:00; sat 08:00-12:00"),
    ("es_CO", "lun-vie 08:00-17:00; mié 08:00-12:00; sáb 08:00-12:00"),
    ("en-GB", "mon-fri 08:00-17:00; wed 08:00-12:00; sat 08:00-12:00"),
    ("fr", "lun-vie 08:00-17:00; mié 08:00-12:00; sáb 08:00-12:00"),  # Spanish by default
])
def test_hours_are_shown_in_the_staff_members_language(lang, text):
    stored = ["mon-fri 08:00-17:00", "wed 08:00-12:00", "sat 08:00-12:00"]
    assert opening_hours.shown(stored, lang) == text


def test_what_is_shown_is_read_back_to_what_was_stored():
    stored = ["mon-fri 07:00-19:00", "sat-sun 08:00-12:00", "thu 20:00-23:59"]
    for lang in opening_hours.DAY_NAMES:
        assert opening_hours.stored(opening_hours.shown(stored, lang)) == stored
    assert opening_hours.shown("24/7", "es") == "24/7"


def test_a_window_that_cannot_be_read_is_shown_as_typed():
    assert opening_hours.shown(["lnu-vie 08:00-17:00", "sat 08:00-12:00"], "es") == (
        "lnu-vie 08:00-17:00; sáb 08:00-12:00")


@pytest.mark.parametrize(("typed", "es", "en"), [
    ("lnu-vie 08:00-17:00", "horario: día desconocido «lnu»", "hours: unknown day 'lnu'"),
    ("lun-vier 08:00-17:00", "horario: día desconocido «vier»", "hours: unknown day 'vier'"),
    ("lunes a viernes 8-5",
     "horario: no se entiende «lunes a viernes 8-5»: escriba por ejemplo "
     "«lun-vie 08:00-17:00; sáb 08:00-12:00» o «24/7»",
     "hours: 'lunes a viernes 8-5' must look like 'mon-fri 08:00-17:00; sat 08:00-12:00' "
     "or '24/7'"),
    ("lun-vie 07:00-25:00", "horario: hora imposible en «lun-vie 07:00-25:00»",
     "hours: impossible time in 'lun-vie 07:00-25:00'"),
    ("lun-vie 19:00-07:00", "horario: «lun-vie 19:00-07:00» termina antes de empezar",
     "hours: 'lun-vie 19:00-07:00' must end after it starts"),
])
def test_bad_hours_say_why_naming_the_field_in_the_staff_members_language(typed, es, en):
    with pytest.raises(HoursError) as caught:
        opening_hours.window(typed)
    assert caught.value.text("es") == es
    assert caught.value.text("en") == en == str(caught.value)
    assert opening_hours.problems(typed, "es") == [es]


def test_each_bad_window_is_named_and_the_good_ones_are_kept():
    windows, errors = opening_hours.read("lun-vie 08:00-17:00; lnu 08:00-12:00; dmo 09:00-10:00")
    assert windows == [WEEKDAYS_8_TO_17]
    assert [e.text("es") for e in errors] == ["horario: día desconocido «lnu»",
                                             "horario: día desconocido «dmo»"]
    assert opening_hours.problems("lun-vie 08:00-17:00", "es") == []
    assert opening_hours.problems(7, "en") == [
        "hours: '7' must look like 'mon-fri 08:00-17:00; sat 08:00-12:00' or '24/7'"]


def test_every_message_has_both_languages():
    """The texts the translation catalogue will take over, all in one table."""
    for kind, texts in opening_hours.TEXTS.items():
        assert set(texts) == set(opening_hours.DAY_NAMES), kind

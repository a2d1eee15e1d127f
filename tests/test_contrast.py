"""Contrast of every colour the staff pages use, computed (WCAG 2.2 AA): text at least
4.5:1 on its background, chart marks (bars, legend swatches, the axis) at least 3:1 on the
white card they are drawn on. The colours are read from ivr/static/ruta.css and
ivr/charts.py themselves, so a new colour is checked the day it is added.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivr import charts

CSS = Path(__file__).resolve().parent.parent / "ivr" / "static" / "ruta.css"
TEXT_MIN = 4.5  # WCAG 1.4.3, normal-size text
MARK_MIN = 3.0  # WCAG 1.4.11, graphical objects a reader needs

# Rules that set a text colour but no background, and sit on something other than the
# page (--bg) or a card (--card): the selector's start -> the backgrounds under it.
ON_DARK = {"header.top": ["--ink"], "button.link": ["--ink"]}
# Text drawn inside a coloured chip: the line test's result sits in a health chip of
# either colour.
INSIDE = {".health .line-test": ["#e7f4ea", "#fbe9e7", "#ececec"]}


def luminance(color: str) -> float:
    """Relative luminance (WCAG 2.x) of #rgb or #rrggbb."""
    h = color.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = [int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ratio(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_ratio_matches_known_values():
    assert ratio("#000", "#fff") == pytest.approx(21)
    assert ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert ratio("#1b7f3b", "#e7f4ea") == pytest.approx(4.47, abs=0.01)  # the old green chip


# --- the stylesheet --------------------------------------------------------------------------


def css_rules() -> tuple[dict[str, str], list[tuple[str, dict[str, str]]]]:
    """(the :root variables, [(selector, {property: value})]) of ruta.css."""
    text = re.sub(r"/\*.*?\*/", "", CSS.read_text(), flags=re.S)
    rules = []
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
        decls = dict((k.strip(), v.strip()) for k, _, v in
                     (d.partition(":") for d in body.split(";") if ":" in d))
        rules.append((" ".join(selector.split()), decls))
    root = next(d for s, d in rules if s == ":root")
    return root, rules


def resolve(value: str, root: dict[str, str]) -> str | None:
    """A colour value as #hex: var(--x) looked up; None for none/transparent/inherit."""
    m = re.fullmatch(r"var\((--[\w-]+)\)", value)
    if m:
        value = root[m[1]]
    m = re.search(r"#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b", value)
    return m[0] if m else None


def text_pairs() -> list[tuple[str, str, str]]:
    """(selector, text colour, background) for every rule that colours text."""
    root, rules = css_rules()
    pairs = []
    for selector, decls in rules:
        fg = resolve(decls.get("color", ""), root)
        if not fg:
            continue
        bg = resolve(decls.get("background", decls.get("background-color", "")), root)
        if bg:
            unders = [bg]
        else:
            unders = next((b for start, b in {**ON_DARK, **INSIDE}.items()
                           if selector.startswith(start)), ["--bg", "--card"])
        pairs += [(selector, fg, resolve(f"var({u})", root) if u.startswith("--") else u)
                  for u in unders]
    return pairs


def test_the_stylesheet_colours_text_at_4_5_to_1_or_more():
    pairs = text_pairs()
    assert len(pairs) > 20  # the parser found the rules (a broken regex would find none)
    low = [(sel, fg, bg, round(ratio(fg, bg), 2)) for sel, fg, bg in pairs
           if ratio(fg, bg) < TEXT_MIN]
    assert not low, low


def test_the_health_chips_and_flash_messages_are_among_the_pairs_checked():
    checked = {(sel, fg.lower(), bg.lower()) for sel, fg, bg in text_pairs()}
    root, _ = css_rules()
    assert (".health li.ok", root["--ok"].lower(), "#e7f4ea") in checked
    assert (".health li.bad", root["--bad"].lower(), "#fbe9e7") in checked
    assert (".flash.error", root["--bad"].lower(), "#fbe9e7") in checked


# --- the charts ------------------------------------------------------------------------------


def chart_background() -> str:
    """Charts sit on a card: its background."""
    root, _ = css_rules()
    return root["--card"]


def test_chart_text_is_4_5_to_1_or_more_on_the_card():
    for name, color in (("TEXT", charts.TEXT), ("MUTED", charts.MUTED)):
        assert ratio(color, chart_background()) >= TEXT_MIN, (name, color)


def test_every_chart_mark_is_3_to_1_or_more_on_the_card():
    # The gridlines (charts.GRID) are decoration: the numbers are in the bars' tooltips,
    # the <desc> and the table under each chart, so they may stay faint.
    marks = {**{f"series {k}": v for k, v in charts.SERIES_COLORS.items()},
             **{f"fallback {i}": c for i, c in enumerate(charts.FALLBACK_COLORS)},
             "reached": charts.REACHED_COLOR, "hung up": charts.HUNG_UP_COLOR,
             "columns": charts.COLUMN_COLOR, "axis": charts.AXIS,
             **{f"heat {i}": c for i, c in enumerate(charts.HEAT_COLORS)}}
    low = {name: (color, round(ratio(color, chart_background()), 2))
           for name, color in marks.items() if ratio(color, chart_background()) < MARK_MIN}
    assert not low, low

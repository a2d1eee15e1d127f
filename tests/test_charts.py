"""The dashboard's server-side SVG charts (ivr.charts), read back the way a viewer sees them.

Each SVG is parsed with ElementTree; data marks are the rects of class "seg" (legend
swatches are class "key"), and every mark's <title> tooltip names what it shows.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from ivr import charts
from ivr.charts import (
    FALLBACK_COLORS,
    SERIES_COLORS,
    color_for,
    columns,
    data_table,
    funnel,
    stacked_bars,
    stacked_columns,
)

NS = "{http://www.w3.org/2000/svg}"
EVIL = '<script>alert(1)</script> & "x"'
DAYS_7 = [f"11-{d:02d}" for d in range(1, 8)]
DAYS_30 = [f"11-{d:02d}" for d in range(1, 31)]
HOURS = [f"{h:02d}" for h in range(24)]
CATEGORIES = ["child", "labour", "migrant", "report", "other", "emergency", "unclear", "none"]
OUTCOMES = ["transferred", "emergency_transferred", "transfer_failed", "abandoned_in_menu",
            "in_progress"]
DIALS = ["completed", "answered", "busy", "no-answer", "failed", "canceled"]


def parse(chart) -> ET.Element:
    assert isinstance(chart, Markup)
    root = ET.fromstring(str(chart))
    assert root.tag == f"{NS}svg"
    return root


def of_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{NS}{tag}") if cls in (e.get("class") or "").split()]


def segs(root: ET.Element, cls: str = "seg") -> list[ET.Element]:
    return of_class(root, "rect", cls)


def texts(root: ET.Element, cls: str) -> list[str]:
    return [e.text for e in of_class(root, "text", cls)]


def tip(rect: ET.Element) -> str:
    return rect.find(f"{NS}title").text


def by_tip(root: ET.Element) -> dict[str, ET.Element]:
    return {tip(r): r for r in segs(root)}


def num(e: ET.Element, attr: str) -> float:
    return float(e.get(attr))


def view_box(root: ET.Element) -> tuple[float, float]:
    _, _, w, h = map(float, root.get("viewBox").split())
    return w, h


def title_and_desc(root: ET.Element) -> tuple[str, str]:
    title, desc = root.find(f"{NS}title"), root.find(f"{NS}desc")
    assert title is not None and desc is not None
    return title.text, desc.text


def proportional(lengths: list[float], values: list[int]) -> None:
    """Each length over its value is the same, within 1%."""
    ratios = [length / v for length, v in zip(lengths, values, strict=True)]
    assert max(ratios) / min(ratios) < 1.01, ratios


def sample_charts() -> list[Markup]:
    return [
        stacked_columns(DAYS_7, {"child": [3, 0, 1, 2, 0, 5, 1], "labour": [9, 2, 0, 0, 1, 1, 0]},
                        "Calls per day"),
        stacked_bars(["ICBF", "Mintrabajo"], {"completed": [40, 3], "busy": [2, 10]},
                     "Transfers"),
        funnel([("language", 120, 5), ("topic", 100, 30)], "Hang-ups"),
        columns(HOURS, list(range(24)), "Calls by hour"),
        columns([], [], "Empty"),
    ]


# --- every chart --------------------------------------------------------------------------

@pytest.mark.parametrize("chart", sample_charts())
def test_svg_scales_and_is_labelled_for_screen_readers(chart):
    root = parse(chart)
    assert root.get("width") == "100%"
    assert root.get("height") is None  # the viewBox gives the aspect ratio
    assert root.get("role") == "img"
    assert root.get("font-family") == "inherit"
    ids = root.get("aria-labelledby").split()
    assert [e.tag for i in ids for e in root.iter() if e.get("id") == i] == [
        f"{NS}title", f"{NS}desc"]
    title, desc = title_and_desc(root)
    assert title and desc.startswith(title)


@pytest.mark.parametrize("chart", sample_charts())
def test_text_stays_readable_on_a_phone(chart):
    root = parse(chart)
    width, _ = view_box(root)
    for t in root.iter(f"{NS}text"):
        px_on_phone = float(t.get("font-size") or root.get("font-size")) * 360 / width
        assert px_on_phone >= 10.5, t.text


@pytest.mark.parametrize("chart", sample_charts())
def test_marks_stay_inside_the_view_box(chart):
    root = parse(chart)
    width, height = view_box(root)
    for r in root.iter(f"{NS}rect"):
        x, y, w, h = (num(r, a) for a in ("x", "y", "width", "height"))
        assert x >= 0 and y >= 0 and x + w <= width + 0.01 and y + h <= height + 0.01
        assert w > 0 and h > 0
    for t in root.iter(f"{NS}text"):
        assert 0 <= num(t, "x") <= width and 0 < num(t, "y") <= height


def test_distinct_charts_get_distinct_ids():
    ids = [parse(c).get("aria-labelledby") for c in sample_charts()]
    assert len(set(ids)) == len(ids)
    assert stacked_columns(DAYS_7, {"a": [1] * 7}, "T") == stacked_columns(
        DAYS_7, {"a": [1] * 7}, "T")  # deterministic output


# --- stacked columns ----------------------------------------------------------------------

def test_stacked_columns_draw_one_rect_per_non_zero_segment():
    series = {"child": [2, 0, 4], "labour": [1, 3, 0], "none": [0, 0, 0]}
    root = parse(stacked_columns(["11-01", "11-02", "11-03"], series, "Calls per day"))
    assert sorted(by_tip(root)) == sorted(
        ["11-01 · child: 2", "11-01 · labour: 1", "11-02 · labour: 3", "11-03 · child: 4"])
    for rect in segs(root):
        assert rect.get("fill") == SERIES_COLORS[tip(rect).split(" · ")[1].split(":")[0]]


def test_stacked_column_heights_are_proportional_and_stacked():
    series = {"child": [10, 20, 5], "labour": [5, 0, 10], "migrant": [1, 7, 3]}
    root = parse(stacked_columns(["a", "b", "c"], series, "Calls"))
    marks = by_tip(root)
    assert num(marks["b · child: 20"], "height") == pytest.approx(
        2 * num(marks["a · child: 10"], "height"), rel=0.01)
    values = [int(t.rsplit(": ", 1)[1]) for t in marks]
    proportional([num(r, "height") for r in marks.values()], values)
    for label in "abc":  # one column: same x and width, each segment on top of the last
        col = sorted((r for t, r in marks.items() if t.startswith(f"{label} ·")),
                     key=lambda r: -num(r, "y"))
        assert len({(r.get("x"), r.get("width")) for r in col}) == 1
        for lower, upper in zip(col, col[1:], strict=False):
            assert num(upper, "y") + num(upper, "height") == pytest.approx(num(lower, "y"),
                                                                           abs=0.02)


def test_stacked_columns_list_each_series_in_the_legend():
    series = {name: [i + 1, 0] for i, name in enumerate(CATEGORIES)}
    root = parse(stacked_columns(["11-01", "11-02"], series, "Calls"))
    assert texts(root, "legend") == CATEGORIES
    assert [k.get("fill") for k in segs(root, "key")] == [SERIES_COLORS[c] for c in CATEGORIES]


def test_display_names_change_the_legend_but_not_the_colour():
    root = parse(stacked_columns(["11-01"], {"child": [2], "labour": [1]}, "Llamadas",
                                 names={"child": "Niñez"}))
    assert texts(root, "legend") == ["Niñez", "labour"]
    assert segs(root, "key")[0].get("fill") == SERIES_COLORS["child"]
    assert "11-01: 3 (Niñez 2, labour 1)" in title_and_desc(root)[1]


def test_stacked_columns_desc_states_the_values():
    series = {"child": [3, 0, 0], "labour": [9, 30, 0]}
    root = parse(stacked_columns(["2026-11-01", "2026-11-02", "2026-11-03"], series,
                                 "Calls per day"))
    title, desc = title_and_desc(root)
    assert title == "Calls per day"
    assert desc == ("Calls per day, from 2026-11-01 to 2026-11-03: 2026-11-01: 12 "
                    "(child 3, labour 9); 2026-11-02: 30 (labour 30); 2026-11-03: 0.")


@pytest.mark.parametrize("peak", [1, 2, 3, 4, 7, 10, 37, 100, 101, 999, 12345])
def test_y_axis_has_3_to_5_round_gridlines(peak):
    root = parse(columns(["a", "b"], [peak, 0], "Calls"))
    ticks = [int(t) for t in texts(root, "tick")]
    assert 3 <= len(ticks) <= 5 and ticks[0] == 0 and ticks[-1] >= peak
    step = ticks[1]
    assert all(b - a == step for a, b in zip(ticks, ticks[1:], strict=False))
    assert re.fullmatch(r"[125]0*", str(step))
    assert ticks[-2] < peak or len(ticks) == 3  # no needless gridline above the data


def test_a_column_reaching_a_gridline_value_touches_that_gridline():
    root = parse(columns(["a", "b"], [20, 10], "Calls"))
    lines = {t.text: t for t in of_class(root, "text", "tick")}
    grid_y = {float(line.get("y1")) for line in root.iter(f"{NS}line")}
    tops = [num(r, "y") for r in segs(root)]
    assert set(lines) == {"0", "5", "10", "15", "20"}
    assert all(any(abs(top - y) < 0.02 for y in grid_y) for top in tops)


def test_thirty_days_of_labels_are_thinned_to_stay_legible():
    root = parse(stacked_columns(DAYS_30, {"child": [1] * 30, "other": [2] * 30}, "Calls"))
    shown = texts(root, "xlabel")
    assert 5 <= len(shown) <= 10 and shown[0] == "11-01"
    positions = [num(t, "x") for t in of_class(root, "text", "xlabel")]
    gaps = [b - a for a, b in zip(positions, positions[1:], strict=False)]
    assert max(gaps) - min(gaps) < 0.1  # evenly spaced
    assert min(gaps) > len("11-01") * 12 * 0.6  # wider than a label: no overlap
    assert len(segs(root)) == 60  # every day is still drawn


def test_a_year_of_days_still_draws_and_thins():
    days = [f"d{i}" for i in range(366)]
    root = parse(stacked_columns(days, {"child": [i % 3 for i in range(366)]}, "Calls"))
    assert len(texts(root, "xlabel")) <= 10
    assert len(segs(root)) == sum(1 for i in range(366) if i % 3)


def test_short_ranges_print_every_label():
    root = parse(stacked_columns(DAYS_7, {"child": [1] * 7}, "Calls"))
    assert texts(root, "xlabel") == DAYS_7


# --- stacked bars -------------------------------------------------------------------------

HOTLINES = ["ICBF 141", "Mintrabajo", "Policía"]
DIAL_SERIES = {"answered": [40, 10, 0], "busy": [2, 10, 0], "no-answer": [0, 15, 1],
               "failed": [0, 5, 0], "canceled": [1, 0, 0]}


def test_stacked_bars_draw_non_zero_segments_with_totals():
    root = parse(stacked_bars(HOTLINES, DIAL_SERIES, "Transfers by hotline"))
    non_zero = sum(1 for vals in DIAL_SERIES.values() for v in vals if v)
    assert len(segs(root)) == non_zero
    assert texts(root, "row") == HOTLINES
    assert texts(root, "total") == ["43", "40", "1"]
    assert texts(root, "legend") == list(DIAL_SERIES)


def test_stacked_bar_widths_are_proportional_and_end_at_the_total():
    root = parse(stacked_bars(HOTLINES, DIAL_SERIES, "Transfers"))
    marks = by_tip(root)
    assert num(marks["Mintrabajo · no-answer: 15"], "width") == pytest.approx(
        3 * num(marks["Mintrabajo · failed: 5"], "width"), rel=0.01)
    proportional([num(r, "width") for r in marks.values()],
                 [int(t.rsplit(": ", 1)[1]) for t in marks])
    totals = of_class(root, "text", "total")
    for row, total in zip(HOTLINES, totals, strict=True):
        bar = sorted((r for t, r in marks.items() if t.startswith(f"{row} ·")),
                     key=lambda r: num(r, "x"))
        for left, right in zip(bar, bar[1:], strict=False):  # segments touch, in order
            assert num(left, "x") + num(left, "width") == pytest.approx(num(right, "x"),
                                                                        abs=0.02)
        assert num(total, "x") > num(bar[-1], "x") + num(bar[-1], "width")


def test_failed_dials_are_warm_and_answered_ones_are_not():
    def rgb(color):
        return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))

    for name in ("busy", "no-answer", "failed", "transfer_failed", "abandoned_in_menu"):
        r, _, b = rgb(SERIES_COLORS[name])
        assert r > b + 80, name
    for name in ("completed", "answered", "transferred"):
        r, _, b = rgb(SERIES_COLORS[name])
        assert b > r + 60, name


def test_stacked_bars_desc_states_the_values():
    _, desc = title_and_desc(parse(stacked_bars(HOTLINES, DIAL_SERIES, "Transfers")))
    assert desc == ("Transfers: ICBF 141: 43 (answered 40, busy 2, canceled 1); Mintrabajo: 40 "
                    "(answered 10, busy 10, no-answer 15, failed 5); Policía: 1 (no-answer 1).")


def test_a_row_with_no_calls_shows_zero_and_no_bar():
    root = parse(stacked_bars(["A", "B"], {"answered": [5, 0]}, "Transfers"))
    assert texts(root, "total") == ["5", "0"]
    assert len(segs(root)) == 1


def test_a_long_row_label_is_cut_but_kept_whole_in_the_tooltip():
    long = "Línea nacional contra la trata de personas del Ministerio del Interior"
    root = parse(stacked_bars([long], {"answered": [3]}, "Transfers"))
    (shown,) = texts(root, "row")
    assert shown.endswith("…") and long.startswith(shown[:-1])
    assert tip(segs(root)[0]) == f"{long} · answered: 3"


# --- funnel -------------------------------------------------------------------------------

QUESTIONS = [("language", 120, 5), ("danger", 115, 20), ("topic", 60, 30), ("end", 30, 0)]


def test_funnel_draws_reached_and_hung_up_bars_with_numbers():
    root = parse(funnel(QUESTIONS, "Where callers hung up"))
    reached, hung = segs(root, "reached"), segs(root, "hung")
    assert len(reached) == 4 and len(hung) == 3  # "end" lost nobody
    proportional([num(r, "width") for r in reached], [r for _, r, _ in QUESTIONS])
    proportional([num(r, "width") for r in reached[:3] + hung],
                 [r for _, r, _ in QUESTIONS[:3]] + [h for _, _, h in QUESTIONS[:3]])
    # topic: half of those who reached it hung up there
    assert num(hung[2], "width") == pytest.approx(num(reached[2], "width") / 2, rel=0.01)
    for bar, part in zip(reached, hung, strict=False):  # the hung-up part ends the bar
        assert num(part, "x") + num(part, "width") == pytest.approx(
            num(bar, "x") + num(bar, "width"), abs=0.02)
        assert num(part, "y") == num(bar, "y")
    assert texts(root, "row") == ["language", "danger", "topic", "end"]
    assert texts(root, "total") == ["120 reached · 5 hung up (4%)",
                                    "115 reached · 20 hung up (17%)",
                                    "60 reached · 30 hung up (50%)",
                                    "30 reached · 0 hung up (0%)"]
    assert texts(root, "legend") == ["reached", "hung up here"]


def test_funnel_desc_states_the_values():
    _, desc = title_and_desc(parse(funnel(QUESTIONS[:2], "Hang-ups")))
    assert desc == "Hang-ups: language: 120 reached, 5 hung up; danger: 115 reached, 20 hung up."


def test_funnel_never_draws_more_hang_ups_than_arrivals():
    root = parse(funnel([("q", 10, 25), ("r", 0, 0)], "Hang-ups"))
    (bar,), (part,) = segs(root, "reached"), segs(root, "hung")
    assert bar.get("width") == part.get("width")
    assert texts(root, "total")[1] == "0 reached · 0 hung up"


# --- columns ------------------------------------------------------------------------------

def test_columns_by_hour():
    values = [0, 0, 1, 0, 0, 0, 2, 4, 8, 16, 12, 10, 9, 9, 8, 7, 6, 5, 4, 3, 2, 2, 1, 0]
    root = parse(columns(HOURS, values, "Calls by hour of day"))
    marks = segs(root)
    assert len(marks) == sum(1 for v in values if v)
    proportional([num(r, "height") for r in marks], [v for v in values if v])
    assert num(marks[-1], "x") > num(marks[0], "x")
    shown = texts(root, "xlabel")
    assert shown[0] == "00" and len(shown) <= 12
    _, desc = title_and_desc(root)
    assert desc.startswith("Calls by hour of day, from 00 to 23: 00: 0; 01: 0; 02: 1; ")
    assert desc.endswith("22: 1; 23: 0.")


# --- escaping -----------------------------------------------------------------------------

@pytest.mark.parametrize("chart", [
    lambda: stacked_columns([EVIL, "b"], {EVIL: [1, 2]}, EVIL),
    lambda: stacked_bars([EVIL], {EVIL: [3]}, EVIL),
    lambda: funnel([(EVIL, 4, 1)], EVIL),
    lambda: columns([EVIL, "b"], [1, 2], EVIL),
    lambda: columns([EVIL], [0], EVIL),
])
def test_labels_are_escaped(chart):
    svg = chart()
    assert "<script" not in str(svg)
    root = parse(svg)
    title, desc = title_and_desc(root)
    assert title == EVIL and EVIL in desc
    shown = [t.text for t in root.iter(f"{NS}text")] + [tip(r) for r in segs(root)]
    assert any(EVIL in (s or "") for s in shown) or "No data" in shown


# --- no data ------------------------------------------------------------------------------

@pytest.mark.parametrize("chart", [
    lambda: stacked_columns([], {}, "Calls"),
    lambda: stacked_columns(DAYS_7, {}, "Calls"),
    lambda: stacked_columns(DAYS_7, {"child": [0] * 7, "labour": [0] * 7}, "Calls"),
    lambda: stacked_bars([], {"answered": []}, "Transfers"),
    lambda: stacked_bars(HOTLINES, {"answered": [0, 0, 0]}, "Transfers"),
    lambda: funnel([], "Hang-ups"),
    lambda: funnel([("language", 0, 0)], "Hang-ups"),
    lambda: columns([], [], "By hour"),
    lambda: columns(HOURS, [0] * 24, "By hour"),
    lambda: columns(["a"], [-3], "By hour"),
])
def test_empty_or_all_zero_data_says_no_data(chart):
    root = parse(chart())
    assert [t.text for t in root.iter(f"{NS}text")] == ["No data"]
    assert segs(root) == []
    title, desc = title_and_desc(root)
    assert desc == f"{title}: no data."


def test_mismatched_lengths_are_a_programming_error():
    with pytest.raises(ValueError, match="series 'child' has 2 values for 3 labels"):
        stacked_columns(["a", "b", "c"], {"child": [1, 2]}, "Calls")
    with pytest.raises(ValueError):
        stacked_bars(["a"], {"busy": [1, 2]}, "Transfers")
    with pytest.raises(ValueError):
        columns(["a"], [1, 2], "Calls")


def test_negative_counts_draw_as_zero():
    root = parse(columns(["a", "b"], [-5, 4], "Calls"))
    assert len(segs(root)) == 1
    assert "a: 0; b: 4" in title_and_desc(root)[1]


# --- colours ------------------------------------------------------------------------------

def test_series_colors_cover_the_known_names_and_are_distinct_hex():
    assert set(CATEGORIES + OUTCOMES + DIALS) <= set(SERIES_COLORS)
    colors = [c.upper() for c in SERIES_COLORS.values()]
    assert all(re.fullmatch(r"#[0-9A-F]{6}", c) for c in colors + list(FALLBACK_COLORS))
    assert len(set(colors)) == len(colors)


def test_unknown_series_get_a_stable_fallback_colour_never_repeated_in_a_chart():
    assert color_for("child") == SERIES_COLORS["child"]
    assert color_for("voicemail") == color_for("voicemail") in FALLBACK_COLORS
    names = [f"series{i}" for i in range(len(FALLBACK_COLORS))]
    root = parse(stacked_columns(["a"], {n: [1] for n in names}, "Calls"))
    fills = [k.get("fill") for k in segs(root, "key")]
    assert len(set(fills)) == len(fills)
    again = parse(stacked_columns(["a"], {n: [1] for n in names}, "Calls"))
    assert [k.get("fill") for k in segs(again, "key")] == fills


def test_nice_gridline_steps_are_integers():
    for peak in range(1, 2000, 7):
        ticks = [int(t) for t in texts(parse(columns(["a"], [peak], "C")), "tick")]
        step = ticks[1] - ticks[0]
        assert math.log10(step / int(str(step)[0])).is_integer()


def test_a_charts_data_table_writes_its_numbers_and_shares_in_the_forms_given():
    """The table under a chart writes counts with `number` and shares with `percent`
    (the dashboard passes ivr.i18n's: "1.234", "87,7 %"); a row without a share is blank."""
    table = data_table("Question", ["Welcome", "Report <b>"],
                       {"reached": [1234, 0], "hung up": [1082, 0]}, total="In all",
                       number=lambda n: f"{n:,}".replace(",", "."),
                       shares={"share": [87.66, None]}, percent=lambda p: f"{p:.1f} %")
    rows = re.findall(r"<tr>(.*?)</tr>", str(table))
    cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in rows]
    assert cells == [["Question", "reached", "hung up", "In all", "share"],
                     ["Welcome", "1.234", "1.082", "2.316", "87.7 %"],
                     ["Report &lt;b&gt;", "0", "0", "0", ""]]


def test_the_heat_map_darkens_with_the_value_and_says_every_cell_in_words():
    hours = [f"{h:02d}" for h in range(24)]
    svg = str(charts.heat_map(["ICBF", "Labour"], hours,
                              [[0] * 3 + [4] + [0] * 20, [1] + [0] * 23], "Not connected",
                              out_of=[[0] * 3 + [5] + [0] * 20, [2] + [0] * 23]))
    cells = re.findall(r'<rect class="seg"[^>]*fill="(#\w+)"', svg)
    assert cells == [charts.HEAT_COLORS[-1], charts.HEAT_COLORS[0]]  # 4 darkest, 1 lightest
    assert "ICBF: 03 4 of 5; Labour: 00 1 of 2." in svg
    assert "No data" in str(charts.heat_map(["ICBF"], hours, [[0] * 24], "Not connected"))

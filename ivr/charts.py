"""Charts for the supervisors' dashboard, drawn on the server as inline SVG. Pure: no I/O.

No JavaScript, no CDN, no build step: each function returns one `<svg>` element as
markupsafe.Markup, ready for a template (`{{ chart }}`). The SVG has a viewBox and
width="100%", so it scales to its container; the viewBox is 400 units wide so that text
of 12-13 units stays about 11-12 px on a 360 px phone. On a wide screen give the
container a max-width (e.g. `.ruta-chart { max-width: 40rem }`) or the text grows too.

Every label and series name is escaped. Each chart carries a <title> and a <desc> that
states its data in words (aria-labelledby points at both) for screen readers, and every
bar has a <title> tooltip with its number. Given a `link` (a function of the bar's place
that returns a URL), every bar is an SVG <a> to it, named by that tooltip: the calls
table filtered to the calls the bar counts.

The few words a chart adds itself (a legend, "no data") are English msgids of the staff
pages' catalogue: the caller passes its `gettext` (Flask-Babel's) to have them in the
reader's language; titles, labels and series names come translated from the caller, and
its `number` and `percent` (ivr.i18n's) write the numbers in the reader's forms.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Callable, Mapping, Sequence

from markupsafe import Markup, escape

from ivr.vocabulary import Category, DialStatus, Outcome

SVG_NS = "http://www.w3.org/2000/svg"
WIDTH = 400  # viewBox width; ~0.9 px per unit on a 360 px phone
PAD = 8
FONT = 13  # labels, legend, totals
SMALL = 12  # axis ticks and x labels
PLOT_H = 160  # height of a column chart's plotting area
BAR_H = 14  # thickness of a horizontal bar
TEXT = "#222222"
MUTED = "#555555"
GRID = "#E2E2E2"
AXIS = "#888888"

# Fixed colours, so a series keeps its colour across every chart. Every one has at least
# 3:1 contrast on the white card (WCAG 2.2 non-text contrast; tests/test_contrast.py), and
# within each group (one chart shows one group) any two stay at least 20 CIE76 units apart
# under simulated protan-, deutan- and tritanopia (Machado et al. 2009, full severity).
SERIES_COLORS: dict[str, str] = {
    # Call categories: darkened from the Okabe-Ito palette, greys-ish for "no real category".
    "child": "#BB7700",
    "labour": "#6666AA",
    "migrant": "#008844",
    "report": "#0088FF",
    "other": "#773344",
    Category.EMERGENCY: "#992211",
    Category.UNCLEAR: "#553366",
    Category.NONE: "#998888",
    # Outcomes: darkened from Paul Tol's "vibrant" colours; the failures warm.
    Outcome.TRANSFERRED: "#3300DD",
    Outcome.EMERGENCY_TRANSFERRED: "#2288CC",
    Outcome.TRANSFER_FAILED: "#FF5511",
    Outcome.ABANDONED_IN_MENU: "#CC7755",
    Outcome.EMERGENCY_HUNG_UP_TO_DIAL: "#224422",
    Outcome.IN_PROGRESS: "#888899",
    # Dial results: answered in blues; busy / no-answer / failed warm and of clearly
    # different lightness, so a hotline that fails stands out to every viewer.
    DialStatus.COMPLETED: "#4477AA",
    DialStatus.ANSWERED: "#114488",
    DialStatus.DROPPED: "#EE5566",  # answered by a machine or a menu that hung up
    DialStatus.BUSY: "#AA8800",
    DialStatus.NO_ANSWER: "#990044",
    DialStatus.FAILED: "#554400",
    DialStatus.CANCELED: "#3399BB",
}
# For names not above (darkened from Paul Tol's "muted" palette), picked by a stable hash
# of the name.
FALLBACK_COLORS = ("#6655DD", "#0099CC", "#115544", "#779900", "#665511", "#AA8855",
                   "#CC7788", "#CC2299", "#771199")
REACHED_COLOR = "#0072B2"  # funnel: callers who reached a question
HUNG_UP_COLOR = "#D55E00"  # funnel: callers who hung up there
COLUMN_COLOR = "#0072B2"  # simple columns
# The heat map's levels, from few to many: one hue growing darker, each 3:1 or more on
# the white card and each clearly darker than the one before. A cell with none is left
# unfilled (its outline is decoration: the numbers are in the tooltips and the table).
HEAT_COLORS = ("#E06C00", "#B23F12", "#86260A", "#4F1104")
HEAT_ROW_H = 16


# gettext(msgid, **values) -> the text: Flask-Babel's, or `english` (the msgid as it is).
Gettext = Callable[..., str]


def english(msgid: str, **values) -> str:
    return msgid % values if values else msgid


# A bar's drill-down URL, from its place in the chart (row or column index, then series,
# or cell column), or None for no link.
Link = Callable[..., str | None]

# How a chart writes a count and a percentage (given as 0-100): plain by default.
Number = Callable[[int], str]
Percent = Callable[[float], str]


def whole_percent(value: float) -> str:
    return f"{value:.0f}%"


def color_for(name: str) -> str:
    """The colour of a series: fixed for known names, a stable hash-picked one otherwise."""
    if name in SERIES_COLORS:
        return SERIES_COLORS[name]
    return FALLBACK_COLORS[zlib.crc32(name.encode()) % len(FALLBACK_COLORS)]


def stacked_columns(labels: list[str], series: dict[str, list[int]], title: str, *,
                    names: Mapping[str, str] | None = None, link: Link | None = None,
                    gettext: Gettext = english, number: Number = str) -> Markup:
    """Vertical columns, one per label (e.g. a day), stacked by series, with legend and
    y-axis; `link(i, series)` is a segment's URL."""
    data = _series(series, len(labels))
    totals = [sum(col) for col in zip(*data.values(), strict=True)] if data else []
    if not any(totals):
        return _no_data(title, gettext)
    colors, shown = _palette(data), _display(data, names)
    cols = [[(data[s][i], colors[s], f"{labels[i]} · {shown[s]}: {number(data[s][i])}",
              link(i, s) if link else None) for s in data] for i in range(len(labels))]
    parts = [f"{label}: {number(total)}{_breakdown(data, shown, i, number)}"
             for i, (label, total) in enumerate(zip(labels, totals, strict=True))]
    desc = f"{title}, {_span(labels, gettext)}: {'; '.join(parts)}."
    legend, y = _legend([(shown[s], colors[s]) for s in data], PAD)
    body, height = _column_plot(labels, cols, y + 6, number)
    return _svg("stacked_columns", title, desc, height, legend + body, linked=bool(link))


def stacked_bars(rows: list[str], series: dict[str, list[int]], title: str, *,
                 names: Mapping[str, str] | None = None, link: Link | None = None,
                 gettext: Gettext = english, number: Number = str) -> Markup:
    """Horizontal bars, one per row (e.g. a hotline), stacked by series, each ending in a
    total; `link(i, series)` is a segment's URL."""
    data = _series(series, len(rows))
    totals = [sum(col) for col in zip(*data.values(), strict=True)] if data else []
    if not any(totals):
        return _no_data(title, gettext)
    colors, shown = _palette(data), _display(data, names)
    parts = [f"{row}: {number(total)}{_breakdown(data, shown, i, number)}"
             for i, (row, total) in enumerate(zip(rows, totals, strict=True))]
    desc = f"{title}: {'; '.join(parts)}."
    legend, y = _legend([(shown[s], colors[s]) for s in data], PAD)
    y += 4
    # Leave room after the longest bar for its total.
    peak = max(totals)
    bar_max = WIDTH - 2 * PAD - _text_width(number(peak), FONT) - 6
    out = [legend]
    for i, row in enumerate(rows):
        out.append(_text(PAD, y + FONT, _fit(row, WIDTH - 2 * PAD, FONT), cls="row"))
        y += FONT + 5
        x = float(PAD)
        for s in data:
            w = data[s][i] / peak * bar_max
            if w:
                tip = f"{row} · {shown[s]}: {number(data[s][i])}"
                out.append(_rect(x, y, w, BAR_H, colors[s], tip,
                                 href=link(i, s) if link else None))
            x += w
        out.append(_text(x + 4, y + BAR_H - 3, number(totals[i]), cls="total"))
        y += BAR_H + 10
    return _svg("stacked_bars", title, desc, y, "".join(out), linked=bool(link))


def funnel(rows: list[tuple[str, int, int]], title: str, *, link: Link | None = None,
           gettext: Gettext = english, number: Number = str,
           percent: Percent = whole_percent) -> Markup:
    """Per menu question: a bar for the callers who reached it, its hung-up part drawn
    inside; `link(i, "reached" or "hung_up")` is a part's URL."""
    clean = [(str(label), max(0, int(r)), min(max(0, int(h)), max(0, int(r))))
             for label, r, h in rows]  # more hang-ups than arrivals cannot be drawn
    top = max((r for _, r, _ in clean), default=0)
    if not top:
        return _no_data(title, gettext)
    desc = f"{title}: " + "; ".join(
        gettext("%(question)s: %(reached)s reached, %(hung_up)s hung up",
                question=label, reached=number(r), hung_up=number(h))
        for label, r, h in clean) + "."
    legend, y = _legend([(gettext("reached"), REACHED_COLOR),
                         (gettext("hung up here"), HUNG_UP_COLOR)], PAD)
    y += 4
    bar_max = WIDTH - 2 * PAD
    out = [legend]
    for i, (label, reached, hung) in enumerate(clean):
        # The numbers sit right-aligned on the label's line, so the bar can use the full width.
        numbers = gettext("%(reached)s reached · %(hung_up)s hung up",
                          reached=number(reached), hung_up=number(hung)) + (
            f" ({percent(100 * hung / reached)})" if reached else "")
        room = WIDTH - 2 * PAD - _text_width(numbers, FONT) - 8
        out.append(_text(PAD, y + FONT, _fit(label, room, FONT), cls="row"))
        out.append(_text(WIDTH - PAD, y + FONT, numbers, anchor="end", cls="total"))
        y += FONT + 5
        w_reached, w_hung = reached / top * bar_max, hung / top * bar_max
        if w_reached:
            out.append(_rect(PAD, y, w_reached, BAR_H, REACHED_COLOR,
                             gettext("%(question)s · reached: %(n)s", question=label,
                                     n=number(reached)), cls="seg reached",
                             href=link(i, "reached") if link else None))
        if w_hung:  # at the bar's end: the callers lost at this question
            out.append(_rect(PAD + w_reached - w_hung, y, w_hung, BAR_H, HUNG_UP_COLOR,
                             gettext("%(question)s · hung up: %(n)s", question=label,
                                     n=number(hung)), cls="seg hung",
                             href=link(i, "hung_up") if link else None))
        y += BAR_H + 10
    return _svg("funnel", title, desc, y, "".join(out), linked=bool(link))


def columns(labels: list[str], values: list[int], title: str, *, link: Link | None = None,
            gettext: Gettext = english, number: Number = str) -> Markup:
    """Simple vertical columns (e.g. calls by hour of day), with a y-axis; `link(i)` is a
    column's URL."""
    counts = _counts(values, len(labels), "values")
    if not any(counts):
        return _no_data(title, gettext)
    cols = [[(v, COLUMN_COLOR, f"{label}: {number(v)}", link(i) if link else None)]
            for i, (label, v) in enumerate(zip(labels, counts, strict=True))]
    desc = f"{title}, {_span(labels, gettext)}: " + "; ".join(
        f"{label}: {number(v)}" for label, v in zip(labels, counts, strict=True)) + "."
    body, height = _column_plot(labels, cols, PAD + 4, number)
    return _svg("columns", title, desc, height, body, linked=bool(link))


def heat_map(rows: list[str], columns: list[str], values: Sequence[Sequence[int]],
             title: str, *, out_of: Sequence[Sequence[int]] | None = None,
             link: Link | None = None, gettext: Gettext = english,
             number: Number = str) -> Markup:
    """A grid of cells, one row per label (e.g. a hotline), one column per column label
    (e.g. an hour of day), each cell darker the larger its value; `out_of` gives what
    each value is a part of (e.g. all attempts), for the tooltips and the description;
    `link(i, j)` is a cell's URL."""
    grid = [_counts(vals, len(columns), f"row {row!r}") for row, vals in
            zip(rows, values, strict=True)]
    whole = ([_counts(vals, len(columns), f"row {row!r}") for row, vals in
              zip(rows, out_of, strict=True)] if out_of is not None else None)
    peak = max((v for vals in grid for v in vals), default=0)
    if not peak:
        return _no_data(title, gettext)

    def said(i: int, j: int) -> str:
        n = number(grid[i][j])
        return gettext("%(n)s of %(of)s", n=n, of=number(whole[i][j])) if whole else n

    desc = f"{title}: " + "; ".join(
        f"{row}: " + ", ".join(f"{columns[j]} {said(i, j)}" for j in range(len(columns))
                               if grid[i][j])
        for i, row in enumerate(rows) if any(grid[i])) + "."
    levels = len(HEAT_COLORS)
    # Level k holds the values v with (v - 1) * levels // peak == k (as drawn below).
    bounds = [(-(-peak * k // levels) + 1, -(-peak * (k + 1) // levels)) for k in range(levels)]
    legend, y = _legend([(f"{number(lo)}–{number(hi)}" if hi > lo else number(hi), color)
                         for (lo, hi), color in zip(bounds, HEAT_COLORS, strict=True)
                         if hi >= lo], PAD)
    label_w = min(max(_text_width(r, SMALL) for r in rows), WIDTH * 0.3)
    x0 = PAD + label_w + 6
    cell_w = (WIDTH - PAD - x0) / len(columns)
    out = [legend]
    y += 2
    for i, row in enumerate(rows):
        out.append(_text(PAD, y + HEAT_ROW_H - 4, _fit(row, label_w, SMALL), size=SMALL,
                         cls="row"))
        for j, v in enumerate(grid[i]):
            x = x0 + j * cell_w
            if v:
                level = min(levels - 1, (v - 1) * levels // peak)
                tip = f"{row} · {columns[j]}: {said(i, j)}"
                out.append(_rect(x, y, cell_w, HEAT_ROW_H, HEAT_COLORS[level], tip,
                                 href=link(i, j) if link else None))
            else:
                out.append(f'<rect class="empty-cell" x="{_f(x)}" y="{_f(y)}" '
                           f'width="{_f(cell_w)}" height="{HEAT_ROW_H}" fill="none" '
                           f'stroke="{GRID}" stroke-width="0.5"/>')
        y += HEAT_ROW_H + 2
    col_w = max(_text_width(c, SMALL) for c in columns)
    for j in _thinned(len(columns), col_w, WIDTH - PAD - x0):
        out.append(_text(x0 + (j + 0.5) * cell_w, y + SMALL + 2, columns[j], anchor="middle",
                         size=SMALL, fill=MUTED, cls="xlabel"))
    return _svg("heat_map", title, desc, y + SMALL + 8, "".join(out), linked=bool(link))


def data_table(row_header: str, rows: Sequence[str], columns: Mapping[str, Sequence[int]],
               *, total: str | None = None, number: Number = str,
               shares: Mapping[str, Sequence[float | None]] | None = None,
               percent: Percent = whole_percent) -> Markup:
    """The numbers a chart draws as an HTML <table>: one row per label, one column per
    series (keys are the columns' headers, already in the reader's language), a column
    summing each row when `total` (its header) is given, then the `shares` columns
    (percentages 0-100, None for none). Counts written by `number`, shares by `percent`
    (ivr.i18n's: "1.234", "87,7 %"). For everyone who cannot see the chart's colours or
    read its small text."""
    data = {str(name): _counts(vals, len(rows), f"column {name!r}")
            for name, vals in columns.items()}
    shares = {str(name): list(vals) for name, vals in (shares or {}).items()}
    for name, vals in shares.items():
        if len(vals) != len(rows):
            raise ValueError(f"column {name!r} has {len(vals)} values for {len(rows)} labels")
    heads = [row_header, *data] + ([total] if total else []) + list(shares)
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in heads)
    body = []
    for i, row in enumerate(rows):
        cells = [number(vals[i]) for vals in data.values()] + (
            [number(sum(vals[i] for vals in data.values()))] if total else []) + [
            "" if vals[i] is None else percent(vals[i]) for vals in shares.values()]
        body.append(f'<tr><th scope="row">{escape(row)}</th>'
                    + "".join(f'<td class="num">{escape(c)}</td>' for c in cells) + "</tr>")
    return Markup(f'<table class="chart-data"><thead><tr>{head}</tr></thead>'
                  f'<tbody>{"".join(body)}</tbody></table>')


# --- data ------------------------------------------------------------------------------

def _counts(values: Sequence[int], n: int, what: str) -> list[int]:
    """Values as non-negative ints; a count below zero cannot be drawn, so it shows as 0."""
    if len(values) != n:
        raise ValueError(f"{what} has {len(values)} values for {n} labels")
    return [max(0, int(v)) for v in values]


def _series(series: Mapping[str, Sequence[int]], n: int) -> dict[str, list[int]]:
    return {str(name): _counts(vals, n, f"series {name!r}") for name, vals in series.items()}


def _display(data: Mapping[str, object], names: Mapping[str, str] | None) -> dict[str, str]:
    return {s: (names or {}).get(s, s) for s in data}


def _palette(data: Mapping[str, object]) -> dict[str, str]:
    """Colours for one chart: known names fixed, unknown ones hash-picked but not repeated."""
    colors = {s: SERIES_COLORS[s] for s in data if s in SERIES_COLORS}
    used = set(colors.values())
    for s in data:
        if s not in colors:
            start = zlib.crc32(s.encode())
            picks = [FALLBACK_COLORS[(start + k) % len(FALLBACK_COLORS)]
                     for k in range(len(FALLBACK_COLORS))]
            colors[s] = next((c for c in picks if c not in used), picks[0])
            used.add(colors[s])
    return {s: colors[s] for s in data}


def _breakdown(data: Mapping[str, list[int]], shown: Mapping[str, str], i: int,
               number: Number) -> str:
    parts = [f"{shown[s]} {number(vals[i])}" for s, vals in data.items() if vals[i]]
    return f" ({', '.join(parts)})" if parts else ""


def _span(labels: Sequence[str], gettext: Gettext) -> str:
    if len(labels) == 1:
        return labels[0]
    return gettext("from %(first)s to %(last)s", first=labels[0], last=labels[-1])


def _nice_axis(peak: int) -> tuple[int, int]:
    """(top, step): a round step (1, 2 or 5 × 10^n) giving 3 to 5 gridlines from 0 to top."""
    step = 1
    while math.ceil(peak / step) > 4:  # next of 1, 2, 5, 10, 20, 50...
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    return max(2, math.ceil(peak / step)) * step, step


def _thinned(n: int, label_width: float, plot_width: float) -> list[int]:
    """Indices of the x labels to print: every k-th from the first, so none overlap."""
    fit = max(1, int(plot_width // (label_width + 8)))
    step = math.ceil(n / fit) if n else 1
    return list(range(0, n, step))


# --- drawing ---------------------------------------------------------------------------

def _column_plot(labels: Sequence[str], cols: list[list[tuple[int, str, str, str | None]]],
                 top_y: float, number: Number) -> tuple[str, float]:
    """Gridlines, y ticks, stacked columns and thinned x labels; returns (svg, bottom y)."""
    top, step = _nice_axis(max(sum(v for v, *_rest in col) for col in cols))
    x0 = PAD + _text_width(number(top), SMALL) + 6
    x1 = WIDTH - PAD
    base = top_y + SMALL / 2 + PLOT_H  # room above the top gridline for its tick text
    out = []
    for v in range(0, top + 1, step):
        y = base - v / top * PLOT_H
        out.append(f'<line x1="{_f(x0)}" y1="{_f(y)}" x2="{_f(x1)}" y2="{_f(y)}" '
                   f'stroke="{AXIS if v == 0 else GRID}" stroke-width="1"/>')
        out.append(_text(x0 - 4, y + SMALL * 0.35, number(v), anchor="end", size=SMALL,
                         fill=MUTED, cls="tick"))
    slot = (x1 - x0) / len(cols)
    bar_w = slot * 0.75
    for i, col in enumerate(cols):
        x, y = x0 + i * slot + (slot - bar_w) / 2, base
        for value, color, tip, href in col:
            if value:
                h = value / top * PLOT_H
                y -= h
                out.append(_rect(x, y, bar_w, h, color, tip, href=href))
    label_w = max(_text_width(str(label), SMALL) for label in labels)
    for i in _thinned(len(labels), label_w, x1 - x0):
        # Centred under its column, but kept inside the viewBox at both ends.
        cx = min(max(x0 + (i + 0.5) * slot, label_w / 2 + 2), WIDTH - label_w / 2 - 2)
        out.append(_text(cx, base + SMALL + 4, str(labels[i]), anchor="middle", size=SMALL,
                         fill=MUTED, cls="xlabel"))
    return "".join(out), base + SMALL + 10


def _legend(items: list[tuple[str, str]], y: float) -> tuple[str, float]:
    """Swatch + name items flowing in rows across the width; returns (svg, y below it)."""
    out, x, line = [], float(PAD), FONT + 4
    for name, color in items:
        w = 14 + _text_width(name, FONT) + 12
        if x > PAD and x + w > WIDTH - PAD:
            x, y = float(PAD), y + line
        out.append(f'<rect class="key" x="{_f(x)}" y="{_f(y + 2)}" width="10" height="10" '
                   f'fill="{color}"/>')
        out.append(_text(x + 14, y + 11, name, cls="legend"))
        x += w
    return "".join(out), y + line + 2


def _svg(kind: str, title: str, desc: str, height: float, body: str,
         linked: bool = False) -> Markup:
    # ids from the content: stable output, and distinct for different charts on one page.
    uid = "chart-" + hashlib.sha1(f"{kind}\0{title}\0{desc}".encode()).hexdigest()[:10]
    # An image's inside is hidden from screen readers, links and all: a chart with links
    # is a group, so each bar's link is reached by its name.
    role = "group" if linked else "img"
    return Markup(
        f'<svg xmlns="{SVG_NS}" class="ruta-chart" viewBox="0 0 {WIDTH} {_f(height)}" '
        f'width="100%" role="{role}" aria-labelledby="{uid}-t {uid}-d" '
        f'font-family="inherit" font-size="{FONT}" fill="{TEXT}">'
        f'<title id="{uid}-t">{escape(title)}</title><desc id="{uid}-d">{escape(desc)}</desc>'
        f"{body}</svg>")


def _no_data(title: str, gettext: Gettext) -> Markup:
    body = _text(WIDTH / 2, 30, gettext("No data"), anchor="middle", fill=MUTED, cls="empty")
    return _svg("empty", title, gettext("%(title)s: no data.", title=title), 48, body)


def _rect(x: float, y: float, w: float, h: float, color: str, tip: str,
          cls: str = "seg", href: str | None = None) -> str:
    # A thin white outline keeps neighbouring segments apart even when colours are close,
    # but it would swallow a sliver (a year of days gives columns under 1 unit wide).
    outline = ' stroke="#FFFFFF" stroke-width="0.5"' if min(w, h) >= 3 else ""
    rect = (f'<rect class="{cls}" x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" '
            f'fill="{color}"{outline}><title>{escape(tip)}</title></rect>')
    if href is None:
        return rect
    return f'<a class="drill" href="{escape(href)}" aria-label="{escape(tip)}">{rect}</a>'


def _text(x: float, y: float, s: str, *, anchor: str = "start", size: int = FONT,
          fill: str = TEXT, cls: str = "") -> str:
    return (f'<text class="{cls}" x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}" '
            f'font-size="{size}" fill="{fill}">{escape(s)}</text>')


def _text_width(s: str, size: float) -> float:
    """A generous estimate of rendered width (we cannot measure fonts on the server)."""
    return len(s) * size * 0.6


def _fit(s: str, width: float, size: float) -> str:
    """The text cut with an ellipsis to fit `width` (the full text is in the tooltip/desc)."""
    fits = max(1, int(width // (size * 0.6)))
    return s if len(s) <= fits else s[: fits - 1] + "…"


def _f(x: float) -> str:
    """A coordinate with 2 decimals at most: small SVG, proportions kept within 0.01 unit."""
    return f"{x:.2f}".rstrip("0").rstrip(".")

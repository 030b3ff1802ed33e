"""Charts drawn on the server as inline SVG: they need no JavaScript or network, print, and scale
to any width (a viewBox drawn at width 100%). Each carries a <title> and <desc>; the template
that shows one also renders its figures as a table (dashboard/_chart.html).

The y axis steps by a round number (whole for counts: no "2.5 calls"); tick labels are short
("$1.5k") and every other x label has the class x-minor, so a phone's narrow chart can draw
larger text and drop half the x labels (static/css/app.css) instead of shrinking them."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from itertools import count
from math import ceil, floor, log10

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from plans.templatetags.money import MINUS, usd

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 72, 12, 12, 38
MAX_TICKS = 4
_ids = count(1)


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float | int | Decimal, ...]
    css: str = "series-1"


@dataclass(frozen=True)
class Chart:
    """What a chart shows: labels along the x axis and one or more series of numbers."""

    title: str
    labels: tuple[str, ...]
    series: tuple[Series, ...]
    kind: str = "bar"  # bar | line
    unit: str = ""

    @property
    def is_empty(self) -> bool:
        return not self.labels


def nice_step(value: float, *, whole: bool = False) -> Decimal:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value`; for counts a whole
    number (1, 2, 5, 10, 20, 25, ...), so every tick is a number of calls one can make."""
    if value <= 0:
        return Decimal(1)
    power = Decimal(10) ** floor(log10(value))
    for factor in ("1", "2", "2.5", "5", "10"):
        step = Decimal(factor) * power
        if step >= Decimal(str(value)) and (not whole or (step >= 1 and step == step.to_integral_value())):
            return step
    return max(Decimal(10) * power, Decimal(1))  # whole and below 1: one call a step


def axis_ticks(largest: float, *, whole: bool) -> list[Decimal]:
    """At most MAX_TICKS + 1 round values from 0 to the first step at or above `largest`."""
    step = nice_step(largest / MAX_TICKS, whole=whole)
    steps = max(1, ceil(Decimal(str(largest)) / step)) if largest > 0 else 1
    return [step * i for i in range(steps + 1)]


def _fmt(value: float | int | Decimal, unit: str) -> str:
    """Labels format the value as given (a Decimal stays a Decimal: money never goes through float)."""
    if unit == "$":
        return usd(value)
    whole = value == int(value)
    text = f"{abs(value):,.0f}" if whole else f"{abs(value):,.1f}"
    return f"{MINUS}{text}" if value < 0 else text


def _short(value: Decimal, unit: str) -> str:
    """A tick label: `$1.5k`, `250k`, `2M`; below a thousand the figure itself."""
    for size, suffix in ((Decimal(1_000_000), "M"), (Decimal(1_000), "k")):
        if abs(value) >= size:
            scaled = (abs(value) / size).normalize()
            return f"{MINUS if value < 0 else ''}{'$' if unit == '$' else ''}{scaled:f}{suffix}"
    return _fmt(value, unit)


def _y(value: float, top: float) -> float:
    plot = HEIGHT - TOP - BOTTOM
    return round(TOP + plot - (value / top) * plot, 1)


def _axis(ticks: list[Decimal], unit: str) -> str:
    top = float(ticks[-1])
    parts = []
    for value in ticks:
        y = _y(float(value), top)
        parts.append(format_html(
            '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
            '<text class="tick y-tick" x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>',
            LEFT, WIDTH - RIGHT, y, y, LEFT - 6, y, _short(value, unit),
        ))
    return "".join(parts)


def _x_labels(labels: tuple[str, ...], slot: float) -> str:
    every = max(1, ceil(len(labels) / 8))  # at most ~8 labels, so they never overlap
    return format_html_join("", '<text class="tick x-tick{}" x="{}" y="{}" text-anchor="middle">{}</text>', (
        (" x-minor" if (i // every) % 2 else "", round(LEFT + slot * (i + 0.5), 1), HEIGHT - 6, label)
        for i, label in enumerate(labels) if i % every == 0
    ))


def _bars(chart: Chart, top: float, slot: float) -> str:
    n = len(chart.series)
    width = slot * 0.8 / n
    parts = []
    for s_index, series in enumerate(chart.series):
        for i, (label, value) in enumerate(zip(chart.labels, series.values)):
            y = _y(max(float(value), 0.0), top)
            x = round(LEFT + slot * i + slot * 0.1 + width * s_index, 1)
            parts.append(format_html(
                '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{}: {} {}</title></rect>',
                series.css, x, y, round(width, 1), round(HEIGHT - BOTTOM - y, 1),
                label, _fmt(value, chart.unit), series.name,
            ))
    return "".join(parts)


def _lines(chart: Chart, top: float, slot: float) -> str:
    parts = []
    for series in chart.series:
        points = [(round(LEFT + slot * (i + 0.5), 1), _y(float(v), top)) for i, v in enumerate(series.values)]
        parts.append(format_html('<polyline class="line {}" points="{}"/>', series.css,
                                 " ".join(f"{x},{y}" for x, y in points)))
        parts.append(format_html_join("", '<circle class="{}" cx="{}" cy="{}" r="3"><title>{}: {} {}</title></circle>', (
            (series.css, x, y, label, _fmt(v, chart.unit), series.name)
            for (x, y), label, v in zip(points, chart.labels, series.values)
        )))
    return "".join(parts)


def chart_svg(chart: Chart) -> SafeString:
    """The chart as an <svg> element; every label is escaped (company names reach some charts)."""
    uid = f"chart-{next(_ids)}"
    largest = max((float(v) for s in chart.series for v in s.values), default=0)
    ticks = axis_ticks(largest, whole=all(isinstance(v, int) for s in chart.series for v in s.values))
    top = float(ticks[-1])
    slot = (WIDTH - LEFT - RIGHT) / max(len(chart.labels), 1)
    body = _bars(chart, top, slot) if chart.kind == "bar" else _lines(chart, top, slot)
    desc = _describe(chart)
    return format_html(
        '<svg class="chart chart-{}" viewBox="0 0 {} {}" width="100%" preserveAspectRatio="xMidYMid meet" '
        'role="img" aria-labelledby="{}-t {}-d" xmlns="http://www.w3.org/2000/svg">'
        '<title id="{}-t">{}</title><desc id="{}-d">{}</desc>{}{}<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}"/>{}</svg>',
        chart.kind, WIDTH, HEIGHT, uid, uid, uid, chart.title, uid, desc,
        mark_safe(_axis(ticks, chart.unit)), mark_safe(_x_labels(chart.labels, slot)),
        LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, HEIGHT - BOTTOM, mark_safe(body),
    )


def _describe(chart: Chart) -> str:
    """A one-sentence text alternative: range, and the total or last value of each series."""
    if chart.is_empty:
        return "No data yet."
    parts = []
    for series in chart.series:
        peak = max(series.values)
        peak_label = chart.labels[list(series.values).index(peak)]
        parts.append(f"{series.name}: highest {_fmt(peak, chart.unit)} ({peak_label}), last {_fmt(series.values[-1], chart.unit)}")
    return f"{chart.labels[0]} to {chart.labels[-1]}. " + "; ".join(parts) + "."

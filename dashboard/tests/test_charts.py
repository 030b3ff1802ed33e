"""Server-drawn SVG charts: scalable, titled, described, escaped, and never a float for money."""
from __future__ import annotations

import re
from decimal import Decimal
from xml.etree import ElementTree

from django.template import Context, Template

from dashboard.charts import Chart, Series, axis_ticks, chart_svg

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)


def test_a_bar_chart_scales_to_its_box_and_has_a_title_and_a_description():
    chart = Chart("Calls per day", ("1 Nov", "2 Nov", "3 Nov"), (Series("calls", (10, 0, 25)),))

    root = _parse(chart_svg(chart))

    assert root.get("viewBox") == "0 0 640 240" and root.get("width") == "100%" and root.get("role") == "img"
    assert root.find(f"{SVG}title").text == "Calls per day"
    assert root.find(f"{SVG}desc").text == "1 Nov to 3 Nov. calls: highest 25 (3 Nov), last 25."
    bars = root.findall(f"{SVG}rect")
    assert len(bars) == 3 and [b.find(f"{SVG}title").text for b in bars][2] == "3 Nov: 25 calls"
    assert float(bars[1].get("height")) == 0 and float(bars[2].get("height")) > float(bars[0].get("height"))


def test_a_line_chart_draws_one_polyline_per_series_with_labelled_points():
    chart = Chart("MRR", ("Oct", "Nov"), (Series("MRR", (Decimal("49.00"), Decimal("1345.50"))),), kind="line", unit="$")

    root = _parse(chart_svg(chart))

    assert len(root.findall(f"{SVG}polyline")) == 1
    assert [c.find(f"{SVG}title").text for c in root.findall(f"{SVG}circle")] == ["Oct: $49 MRR", "Nov: $1,345.50 MRR"]


def test_labels_from_customers_are_escaped():
    chart = Chart("<script>", ("<b>&",), (Series("x", (1,)),))

    svg = chart_svg(chart)

    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;&amp;" in svg
    _parse(svg)


def test_an_empty_chart_still_renders_and_says_so():
    root = _parse(chart_svg(Chart("Nothing", (), (Series("x", ()),))))

    assert root.find(f"{SVG}desc").text == "No data yet."


def test_the_axis_top_is_a_round_number_above_the_largest_value():
    assert [axis_ticks(v, whole=False)[-1] for v in (0, 7, 10, 11, 240, 260, 999_999)] == [1, 8, 10, 15, 300, 300, 1_000_000]


def test_the_template_tag_adds_the_figures_as_a_table():
    chart = Chart("Overage", ("Sep",), (Series("overage", (Decimal("12.34"),)),), unit="$")

    html = Template("{% load charts %}{% chart c %}").render(Context({"c": chart}))

    assert html.count("<svg") == 1 and "<details" in html
    assert re.search(r'<th scope="row">Sep</th><td class="num">\$12.34</td>', html)

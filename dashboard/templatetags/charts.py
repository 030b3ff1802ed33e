"""{% chart c %}: an inline SVG chart followed by the same figures as a table."""
from __future__ import annotations

from django import template

from dashboard.charts import Chart, chart_svg

register = template.Library()


@register.inclusion_tag("dashboard/_chart.html")
def chart(chart: Chart, caption: str = "") -> dict:
    rows = [(label, [series.values[i] for series in chart.series]) for i, label in enumerate(chart.labels)]
    return {"chart": chart, "svg": chart_svg(chart), "rows": rows, "caption": caption or chart.title}

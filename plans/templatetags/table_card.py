"""{% table_card "keys" "API keys" %}<thead>…</tbody>{% endtable_card %}: a titled card holding one
table that scrolls inside itself on a narrow screen (a keyboard can reach it, a screen reader
hears its title), so each page writes only its table's head and rows.

It lives in the lowest app with template tags, like `money`, so every app's templates may load it.
"""
from __future__ import annotations

from django import template
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

register = template.Library()


class TableCardNode(template.Node):
    def __init__(self, section_id, title, nodelist):
        self.section_id, self.title, self.nodelist = section_id, title, nodelist

    def render(self, context):
        return render_to_string("_table_card.html", {
            "id": self.section_id.resolve(context), "title": self.title.resolve(context),
            # The table was rendered by the template engine, which escaped every value in it.
            "table": mark_safe(self.nodelist.render(context)),
        })


@register.tag
def table_card(parser, token):
    bits = token.split_contents()
    if len(bits) != 3:
        raise template.TemplateSyntaxError(f"{bits[0]} takes a section id and a title")
    nodelist = parser.parse(("endtable_card",))
    parser.delete_first_token()
    return TableCardNode(parser.compile_filter(bits[1]), parser.compile_filter(bits[2]), nodelist)

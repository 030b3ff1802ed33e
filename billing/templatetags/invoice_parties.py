"""The invoice page's "From" and "Billed to": the same lines the invoice PDF prints."""
from __future__ import annotations

from django import template

from billing.invoice_pdf import buyer_lines, seller_lines

register = template.Library()


@register.simple_tag
def invoice_seller() -> list[str]:
    return seller_lines()


@register.simple_tag
def invoice_buyer(customer) -> list[str]:
    return buyer_lines(customer)

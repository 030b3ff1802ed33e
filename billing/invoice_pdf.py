"""An issued invoice as a PDF document: the printable invoice page's content, plus the seller
and the customer's billing details (README "Billing").

Every figure is the stored Invoice / InvoiceLine value, formatted by the same filters the page
uses; nothing is recomputed here. Drawn with fpdf2 in a Unicode TTF font found on the system
(DejaVu Sans, Debian's fonts-dejavu-core); without one it falls back to the PDF core font, and
any character the font cannot draw prints as "?" rather than failing the whole document.
"""
from __future__ import annotations

import html
import logging
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from fpdf import FPDF
from fpdf.fonts import FontFace

from accounts.models import Customer
from plans.templatetags.money import dollars, line_rate

from .models import BillingDetails, Invoice

FONT_FAMILY = "InvoiceSans"
# Regular and bold faces, first found wins. Fallbacks cover what DejaVu lacks (CJK) when installed.
FONT_CANDIDATES = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf"),
)
FALLBACK_FONTS = (
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)
CORE_FONT = "Helvetica"
# fontTools logs every step of subsetting the font at INFO: one PDF would fill the log.
logging.getLogger("fontTools").setLevel(logging.WARNING)


@lru_cache(maxsize=1)
def _font_files() -> tuple[tuple[str, str] | None, tuple[str, ...]]:
    main = next(((r, b) for r, b in FONT_CANDIDATES if Path(r).is_file() and Path(b).is_file()), None)
    fallbacks = tuple(path for path in FALLBACK_FONTS if Path(path).is_file()) if main else ()
    return main, fallbacks


class _InvoiceDocument(FPDF):
    def __init__(self) -> None:
        super().__init__(format="A4", unit="mm")
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(18, 18, 18)
        main, fallbacks = _font_files()
        self.face = CORE_FONT
        if main:
            self.add_font(FONT_FAMILY, "", main[0])
            self.add_font(FONT_FAMILY, "B", main[1])
            names = []
            for index, path in enumerate(fallbacks):
                self.add_font(f"{FONT_FAMILY}Fallback{index}", "", path)
                names.append(f"{FONT_FAMILY}Fallback{index}")
            self.face = FONT_FAMILY
            if names:
                self.set_fallback_fonts(names, exact_match=False)
        self.set_font(self.face, size=10)

    def safe(self, text: object) -> str:
        """`text` with what no loaded font can draw as "?": a name in any script never breaks the PDF."""
        text = str(text)
        if self.face == CORE_FONT:
            for wide, narrow in (("−", "-"), ("–", "-"), ("—", "-"), ("•", "*"), ("×", "x"), ("’", "'")):
                text = text.replace(wide, narrow)
            return text.encode("latin-1", "replace").decode("latin-1")
        fonts = [self.fonts[key] for key in self.fonts]
        return "".join(
            char if char in "\n\r\t" or any(ord(char) in font.cmap for font in fonts) else "?" for char in text
        )

    def write_lines(self, text: str, *, bold: bool = False, size: float = 10, width: float = 0) -> None:
        self.set_font(self.face, "B" if bold else "", size)
        self.multi_cell(width, 5, self.safe(text), new_x="LMARGIN", new_y="NEXT")


def _address_lines(text: str) -> list[str]:
    lines = text.replace(" | ", "\n").replace("\\n", "\n").splitlines()
    return [line.strip() for line in lines if line.strip()]


def seller_lines() -> list[str]:
    lines = [settings.SELLER_NAME, *_address_lines(settings.SELLER_ADDRESS)]
    if settings.SELLER_TAX_ID:
        lines.append(f"Tax ID: {settings.SELLER_TAX_ID}")
    return lines


def buyer_lines(customer: Customer) -> list[str]:
    details = BillingDetails.objects.filter(customer=customer).first()
    if details is None:
        return [customer.company, customer.email]
    lines = [details.name or customer.company, *_address_lines(details.address)]
    if details.country:
        lines.append(details.country)
    if details.tax_id:
        lines.append(f"Tax ID: {details.tax_id}")
    lines.append(customer.email)
    return lines


def _paid_phrase(invoice: Invoice) -> str:
    """The invoice page's "how it was paid" (templates/billing/_paid_by.html), rendered the same way."""
    from django.template.loader import render_to_string

    return html.unescape(render_to_string("billing/_paid_by.html", {"invoice": invoice}).strip())


def invoice_pdf_filename(invoice: Invoice) -> str:
    return f"{invoice.number or f'invoice-{invoice.pk}'}.pdf"


def invoice_pdf(*, invoice: Invoice) -> bytes:
    """The PDF of an issued invoice (a draft has no number and is never a document)."""
    if invoice.status == Invoice.Status.DRAFT:
        raise ValueError("A draft invoice has no PDF: it is issued first.")
    doc = _InvoiceDocument()
    doc.set_title(f"Invoice {invoice.number}")
    doc.set_author(settings.SELLER_NAME)
    doc.add_page()

    doc.write_lines(f"Invoice {invoice.number}", bold=True, size=18)
    doc.write_lines(f"Period {invoice.period} (UTC){' · final invoice' if invoice.is_final else ''}", size=9)
    doc.write_lines(f"Status: {invoice.get_status_display()}", size=9)
    doc.ln(4)

    facts = [
        ("Issued", f"{invoice.issued_at:%d %B %Y}" if invoice.issued_at else "—"),
        ("Paid", f"{invoice.paid_at:%d %B %Y}" if invoice.paid_at else "—"),
        ("Plan at period end", invoice.plan.name if invoice.plan_id else "—"),
    ]
    half = (doc.epw - 6) / 2
    top = doc.get_y()
    doc.write_lines("From", bold=True, width=half)
    doc.write_lines("\n".join(seller_lines()), width=half)
    left_bottom = doc.get_y()
    doc.set_xy(doc.l_margin + half + 6, top)
    doc.set_left_margin(doc.l_margin + half + 6)
    doc.write_lines("Billed to", bold=True, width=half)
    doc.write_lines("\n".join(buyer_lines(invoice.customer)), width=half)
    doc.set_left_margin(18)
    doc.set_y(max(left_bottom, doc.get_y()) + 4)
    for label, value in facts:
        doc.write_lines(f"{label}: {value}", size=9)
    doc.ln(4)

    doc.set_font(doc.face, size=9)
    bold = FontFace(emphasis="BOLD")
    with doc.table(col_widths=(90, 55, 29), text_align=("LEFT", "RIGHT", "RIGHT"), line_height=6,
                   headings_style=bold, first_row_as_headings=True) as table:
        table.row(["Description", "Rate", "Amount"])
        lines = list(invoice.lines.all())
        for line in lines:
            table.row([doc.safe(line.description), doc.safe(line_rate(line, invoice.period)),
                       doc.safe(dollars(line.amount))])
        if not lines:
            table.row(["No charges this period.", "", ""])
        table.row(["Subtotal", "", doc.safe(dollars(invoice.subtotal))])
        table.row([f"Total ({invoice.currency})", "", doc.safe(dollars(invoice.total))], style=bold)
    doc.ln(3)
    doc.write_lines(f"{invoice.calls:,} billable API calls in the period.", size=9)
    if invoice.status == Invoice.Status.PAID:
        doc.write_lines(f"{_paid_phrase(invoice)}.", size=9)
    elif invoice.status == Invoice.Status.OPEN:
        doc.write_lines("Payment due: we charge the card on file.", size=9)
    return bytes(doc.output())
